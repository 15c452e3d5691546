package mtasts

import (
	"errors"
	"fmt"
	"strings"
)

// Record is a parsed `_mta-sts` TXT record (RFC 8461 §3.1).
type Record struct {
	ID string
}

// ErrNoRecord is returned by ParseRecords when no TXT record is an
// MTA-STS record, and by Lookup when the domain has none.
var ErrNoRecord = errors.New("no MTA-STS TXT record")

// ParseRecord parses one TXT record's text: "v=STSv1; id=...;" with
// optional white space around the fields and a trailing ";".
func ParseRecord(s string) (Record, error) {
	if len(s) > 1024 {
		return Record{}, errors.New("TXT record too long")
	}
	fields := strings.Split(s, ";")
	var rec Record
	for i, f := range fields {
		f = strings.Trim(f, " \t")
		if f == "" {
			if i == len(fields)-1 && i > 0 {
				break // a trailing ";"
			}
			return Record{}, fmt.Errorf("empty field in %q", s)
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Record{}, fmt.Errorf("field %q without =", f)
		}
		if i == 0 {
			// §3.1: the version field comes first and is exactly STSv1.
			if k != "v" || v != "STSv1" {
				return Record{}, fmt.Errorf("record does not start with v=STSv1")
			}
			continue
		}
		if k == "id" && rec.ID == "" {
			if !validID(v) {
				return Record{}, fmt.Errorf("id %q is not 1 to 32 letters and digits", v)
			}
			rec.ID = v
		}
		// §3.1: other fields are extensions, ignored.
	}
	if rec.ID == "" {
		return Record{}, errors.New("record has no id")
	}
	return rec, nil
}

func validID(v string) bool {
	if len(v) < 1 || len(v) > 32 {
		return false
	}
	for _, c := range []byte(v) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// ParseRecords picks the MTA-STS record among a name's TXT records: the
// ones that start with "v=STSv1"; none is ErrNoRecord, more than one is
// an error (§3.1: senders treat that as no record).
func ParseRecords(txts []string) (Record, error) {
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1") {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return Record{}, ErrNoRecord
	case 1:
		return ParseRecord(found[0])
	default:
		return Record{}, fmt.Errorf("%d MTA-STS TXT records", len(found))
	}
}
