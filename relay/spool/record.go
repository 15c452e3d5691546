package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Record kinds.
const (
	kindPut   = 1 // envelope + message: a message enters the queue
	kindState = 2 // envelope only: the latest state of a queued message
	kindTomb  = 3 // id only: the message left the queue
)

// Record header, little endian (see the package doc):
//
//	0  magic   uint32  recMagic
//	4  hdrCRC  uint32  crc32c of bytes 8..32 of the header, the id and the envelope
//	8  kind    uint8
//	9  idLen   uint8
//	10 zero    uint16
//	12 envLen  uint32
//	16 msgLen  uint64
//	24 msgCRC  uint32  crc32c of the message bytes
//	28 zero    uint32
//	32 segSeq  uint64  the number of the segment the record was written to
//	40 offset  uint64  the offset of the record in that segment
const (
	hdrSize  = 48
	recMagic = 0x4d4f4154 // "TAOM" on disk
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendHeader appends the header and the id+envelope bytes of a record
// to dst.
func appendHeader(dst []byte, kind byte, id string, env []byte, msgLen int64, msgCRC uint32, segSeq uint64, off int64) []byte {
	dst = slices.Grow(dst, hdrSize+len(id)+len(env))
	at := len(dst)
	dst = dst[:at+hdrSize+len(id)+len(env)]
	b := dst[at:]
	clear(b[:hdrSize])
	binary.LittleEndian.PutUint32(b[0:], recMagic)
	b[8] = kind
	b[9] = byte(len(id))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(env)))
	binary.LittleEndian.PutUint64(b[16:], uint64(msgLen))
	binary.LittleEndian.PutUint32(b[24:], msgCRC)
	binary.LittleEndian.PutUint64(b[32:], segSeq)
	binary.LittleEndian.PutUint64(b[40:], uint64(off))
	copy(b[hdrSize:], id)
	copy(b[hdrSize+len(id):], env)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return dst
}

// rec is one decoded record.
type rec struct {
	kind   byte
	id     string
	env    *Envelope // kindPut, kindState
	off    int64     // of the record
	msgOff int64     // of the message bytes
	msgLen int64
	end    int64 // offset after the record
}

var errTorn = errors.New("spool: record runs past the end of the segment")

// decodeRecord reads and fully verifies the record at off of a segment of
// size bytes numbered segSeq: magic, lengths within bounds, both
// checksums, a parseable envelope naming the same id. It never panics and
// never allocates more than MaxEnvelopeSize+64 bytes for one record.
func decodeRecord(r io.ReaderAt, off, size int64, segSeq uint64) (rec, error) {
	var h [hdrSize]byte
	if size-off < hdrSize {
		return rec{}, errTorn
	}
	if _, err := r.ReadAt(h[:], off); err != nil {
		return rec{}, err
	}
	if binary.LittleEndian.Uint32(h[0:]) != recMagic {
		return rec{}, errors.New("spool: bad record magic")
	}
	kind, idLen := h[8], int64(h[9])
	envLen := int64(binary.LittleEndian.Uint32(h[12:]))
	msgLen := binary.LittleEndian.Uint64(h[16:])
	if binary.LittleEndian.Uint16(h[10:]) != 0 || binary.LittleEndian.Uint32(h[28:]) != 0 || binary.LittleEndian.Uint64(h[32:]) != segSeq || binary.LittleEndian.Uint64(h[40:]) != uint64(off) {
		return rec{}, errors.New("spool: record header of another segment or place")
	}
	if kind < kindPut || kind > kindTomb || idLen == 0 || envLen > MaxEnvelopeSize || msgLen > 1<<62 {
		return rec{}, errors.New("spool: bad record header")
	}
	if (kind == kindTomb) != (envLen == 0) || (kind != kindPut && msgLen != 0) {
		return rec{}, errors.New("spool: bad record header")
	}
	end := off + hdrSize + idLen + envLen
	if end > size || int64(msgLen) > size-end {
		return rec{}, errTorn
	}
	body := make([]byte, idLen+envLen)
	if _, err := r.ReadAt(body, off+hdrSize); err != nil {
		return rec{}, err
	}
	c := crc32.Update(crc32.Checksum(h[8:], castagnoli), castagnoli, body)
	if c != binary.LittleEndian.Uint32(h[4:]) {
		return rec{}, errors.New("spool: record header checksum mismatch")
	}
	out := rec{kind: kind, id: string(body[:idLen]), off: off, msgOff: end, msgLen: int64(msgLen), end: end + int64(msgLen)}
	if !ValidID(out.id) {
		return rec{}, fmt.Errorf("spool: bad queue id %q in record", out.id)
	}
	if msgLen > 0 {
		hw := crc32.New(castagnoli)
		if _, err := io.Copy(hw, io.NewSectionReader(r, end, int64(msgLen))); err != nil {
			return rec{}, err
		}
		if hw.Sum32() != binary.LittleEndian.Uint32(h[24:]) {
			return rec{}, errors.New("spool: message checksum mismatch")
		}
	} else if binary.LittleEndian.Uint32(h[24:]) != 0 {
		return rec{}, errors.New("spool: bad record header")
	}
	if kind != kindTomb {
		env, err := ParseEnvelope(body[idLen:])
		if err != nil {
			return rec{}, err
		}
		if env.ID != out.id {
			return rec{}, fmt.Errorf("spool: record %s holds envelope of %q", out.id, env.ID)
		}
		out.env = env
	}
	return out, nil
}

// windowReader is an io.ReaderAt over r that reads ahead in windows, so
// that scanning a segment costs one pread per window, not per record.
type windowReader struct {
	r    io.ReaderAt
	size int64
	base int64
	buf  []byte
}

func newWindowReader(r io.ReaderAt, size int64) *windowReader {
	return &windowReader{r: r, size: size, buf: make([]byte, 0, 1<<20)}
}

func (w *windowReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		o := off + int64(n)
		if o >= w.size {
			return n, io.EOF
		}
		if o < w.base || o >= w.base+int64(len(w.buf)) {
			k := min(int64(cap(w.buf)), w.size-o)
			w.buf = w.buf[:k]
			m, err := w.r.ReadAt(w.buf, o)
			w.buf, w.base = w.buf[:m], o
			if m == 0 {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return n, err
			}
		}
		n += copy(p[n:], w.buf[o-w.base:])
	}
	return n, nil
}

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
