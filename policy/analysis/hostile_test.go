package analysis

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"moat/policy/content"
)

// Hostile input ends with a truncated or malformed fact, never a crash or
// unbounded work.

func TestHugeSingleLineHTML(t *testing.T) {
	var b strings.Builder
	b.Grow(25 << 20)
	b.WriteString(`<html><body><a href="http://x.example/`)
	for b.Len() < 25<<20 {
		b.WriteString("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	}
	r := analyze(t, htmlMsg(b.String()), Input{})
	r.All()
	if !r.HTML().Truncated || !r.URLs().Truncated || !r.Text().Truncated {
		t.Errorf("html %+v", *r.HTML())
	}
	if r.HTML().Bytes > DefaultOptions().MaxHTMLBytes {
		t.Errorf("tokenised %d bytes", r.HTML().Bytes)
	}
}

func TestManyURLs(t *testing.T) {
	var b strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&b, "http://h%d.example/ ", i)
	}
	r := analyze(t, textMsg(b.String()), Input{})
	f := r.URLs()
	if f.Count != 10000 || len(f.List) != DefaultOptions().MaxURLs || !f.Truncated {
		t.Errorf("count %d kept %d truncated %v", f.Count, len(f.List), f.Truncated)
	}
	// The scan bound stops counting too.
	r = analyze(t, textMsg(b.String()), Input{Options: Options{MaxURLScan: 500, MaxURLs: 10}})
	if f := r.URLs(); f.Count != 500 || !f.Truncated {
		t.Errorf("count %d", f.Count)
	}
}

func TestNestedParts(t *testing.T) {
	// 1,000 nested multiparts: deeper than MaxDepth.
	var b strings.Builder
	const n = 1000
	b.WriteString(stdHdr + "\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n", n-1)
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	r := analyze(t, []byte(b.String()), Input{})
	r.All()
	if f := r.MIME(); !f.Truncated || f.Depth != DefaultOptions().MaxDepth {
		t.Errorf("mime %+v", *f)
	}
	// With room for them, all 1,000 parts are visited.
	r = analyze(t, []byte(b.String()), Input{Options: Options{MaxDepth: 2000, MaxParts: 2000}})
	if f := r.MIME(); f.Truncated || f.Parts != n+1 || f.Depth != n {
		t.Errorf("mime parts %d depth %d truncated %v", f.Parts, f.Depth, f.Truncated)
	}
	// 1,000 sibling parts, and more than MaxParts.
	parts := make([]string, 1500)
	for i := range parts {
		parts[i] = "Content-Type: text/plain\r\n\r\nhello http://x.example/"
	}
	r = analyze(t, msg(stdHdr+"\nContent-Type: multipart/mixed; boundary=s", multipart("mixed", "s", parts...)), Input{})
	if f := r.MIME(); !f.Truncated || f.Parts != DefaultOptions().MaxParts {
		t.Errorf("siblings parts %d truncated %v", f.Parts, f.Truncated)
	}
}

// zipBomb builds a zip whose end record claims a huge central directory
// and whose one member claims huge sizes.
func zipBomb(members int) []byte {
	var b bytes.Buffer
	// one central directory entry claiming 4 GiB sizes
	cd := make([]byte, 46)
	binary.LittleEndian.PutUint32(cd[0:], 0x02014b50)
	binary.LittleEndian.PutUint32(cd[20:], 0xfffffff0) // compressed size
	binary.LittleEndian.PutUint32(cd[24:], 0xfffffff0) // uncompressed size
	binary.LittleEndian.PutUint16(cd[28:], 5)          // name length
	b.Write(cd)
	b.WriteString("a.exe")
	eocd := make([]byte, 22)
	binary.LittleEndian.PutUint32(eocd[0:], 0x06054b50)
	binary.LittleEndian.PutUint16(eocd[8:], uint16(members))  // entries on disk
	binary.LittleEndian.PutUint16(eocd[10:], uint16(members)) // entries
	binary.LittleEndian.PutUint32(eocd[12:], 51)              // directory size
	binary.LittleEndian.PutUint32(eocd[16:], 0)               // directory offset
	b.Write(eocd)
	return b.Bytes()
}

func TestZipBomb(t *testing.T) {
	// Claims 65,535 members in a 73-byte file: refused, costs nothing.
	f := analyze(t, attachMsg("application/zip", "bomb.zip", "base64", zipBomb(65535)), Input{}).MIME()
	if !f.ZipUnreadable {
		t.Errorf("bomb: %+v", *f)
	}
	// One member claiming 4 GiB: listed, never inflated.
	f = analyze(t, attachMsg("application/zip", "bomb.zip", "base64", zipBomb(1)), Input{}).MIME()
	if f.Archives != 1 || !f.ZipExecutable {
		t.Errorf("one member: %+v", *f)
	}
	// Many real members: the listing stops at MaxZipMembers.
	names := make([]string, 50)
	for i := range names {
		names[i] = fmt.Sprintf("f%d.txt", i)
	}
	f = analyze(t, attachMsg("application/zip", "many.zip", "base64", zipBytes(t, names...)), Input{Options: Options{MaxZipMembers: 10}}).MIME()
	if !f.ZipTruncated || !f.Truncated || len(f.ZipMembers) != 10 {
		t.Errorf("many: %+v", *f)
	}
	// An archive too big for MaxPartBytes cannot be listed.
	f = analyze(t, attachMsg("application/zip", "big.zip", "base64", zipBytes(t, names...)), Input{Options: Options{MaxPartBytes: 100}}).MIME()
	if !f.ZipUnreadable || !f.Truncated {
		t.Errorf("big: %+v", *f)
	}
}

func TestInvalidCharsets(t *testing.T) {
	for _, cs := range []string{"x-unknown", "utf-7\"\"", strings.Repeat("a", 300), "us-ascii", "utf-8"} {
		raw := msg(stdHdr+"\nContent-Type: text/plain; charset=\""+cs+"\"\nContent-Transfer-Encoding: 8bit", "\xff\xfe\x1b$B\x00abc\xe9")
		r := analyze(t, raw, Input{})
		r.All()
		f := r.MIME()
		if !f.UnknownCharset && !f.Malformed && !f.CharsetMismatch {
			t.Errorf("%q: %+v", cs, *f)
		}
	}
	// Charsets that exist take bytes of all kinds without a fact.
	for _, cs := range []string{"utf-16", "iso-2022-jp", "windows-1251"} {
		raw := msg(stdHdr+"\nContent-Type: text/plain; charset=\""+cs+"\"\nContent-Transfer-Encoding: 8bit", "\xff\xfe\x1b$B\x00abc\xe9")
		r := analyze(t, raw, Input{})
		r.All()
		if f := r.MIME(); f.UnknownCharset || f.Malformed {
			t.Errorf("%q: %+v", cs, *f)
		}
	}
}

func TestBadBase64Attachment(t *testing.T) {
	body := base64.StdEncoding.EncodeToString([]byte("MZ hello")) + "!!!@@@"
	raw := msg(stdHdr+"\nContent-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64", body)
	if f := analyze(t, raw, Input{}).MIME(); !f.BadBase64 {
		t.Errorf("%+v", *f)
	}
}

func TestDeadline(t *testing.T) {
	m, err := content.Parse(htmlMsg(`<p>x</p>`), content.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Analyze(ctx, m, Input{Now: time.Now()})
	if !r.MIME().Truncated || !r.HTML().Truncated || !r.URLs().Truncated {
		t.Errorf("a done context leaves no truncated fact: %+v", *r.MIME())
	}
}
