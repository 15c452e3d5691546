package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSpoolFilesystem(t *testing.T) {
	m, _ := newTest(t)
	m.SpoolFilesystem(t.TempDir())
	n, err := testutil.GatherAndCount(m.Registry(), "moat_spool_filesystem_avail_bytes", "moat_spool_filesystem_size_bytes")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d spool file system series", n)
	}
	// The values are whatever the disk says; the collector is tested
	// with a fake statfs.
	c := &fsCollector{dir: "x", stat: func(string) (uint64, uint64, bool) { return 10 << 20, 100 << 20, true }}
	want := `# HELP moat_spool_filesystem_avail_bytes Bytes free for moat on the file system that holds the spool (what an unprivileged user may still write), read at each scrape.
# TYPE moat_spool_filesystem_avail_bytes gauge
moat_spool_filesystem_avail_bytes 1.048576e+07
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "moat_spool_filesystem_avail_bytes"); err != nil {
		t.Error(err)
	}
	gone := &fsCollector{dir: "x", stat: func(string) (uint64, uint64, bool) { return 0, 0, false }}
	if n := testutil.CollectAndCount(gone); n != 0 {
		t.Errorf("%d series for an unreadable dir", n)
	}
}
