package metrics

import "github.com/prometheus/client_golang/prometheus"

var (
	spoolFSAvailDesc = prometheus.NewDesc("moat_spool_filesystem_avail_bytes",
		"Bytes free for moat on the file system that holds the spool (what an unprivileged user may still write), read at each scrape.", nil, nil)
	spoolFSSizeDesc = prometheus.NewDesc("moat_spool_filesystem_size_bytes",
		"Size of the file system that holds the spool, read at each scrape.", nil, nil)
)

// SpoolFilesystem exports moat_spool_filesystem_avail_bytes and
// moat_spool_filesystem_size_bytes for the file system holding dir (the
// spool directory), read at each scrape: when it is full, the gateway
// answers 452 4.3.1 (RFC 3463 §3.4) and mail waits at the senders. A
// scrape where dir cannot be read, or a system without statfs, exports
// neither. Call it once.
func (m *Metrics) SpoolFilesystem(dir string) {
	_ = m.reg.Register(&fsCollector{dir: dir, stat: fsStat})
}

type fsCollector struct {
	dir  string
	stat func(dir string) (avail, size uint64, ok bool)
}

func (c *fsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- spoolFSAvailDesc
	ch <- spoolFSSizeDesc
}

func (c *fsCollector) Collect(ch chan<- prometheus.Metric) {
	avail, size, ok := c.stat(c.dir)
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(spoolFSAvailDesc, prometheus.GaugeValue, float64(avail))
	ch <- prometheus.MustNewConstMetric(spoolFSSizeDesc, prometheus.GaugeValue, float64(size))
}
