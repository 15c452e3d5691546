//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package metrics

// fsStat is not implemented here: the spool file system gauges are left out.
func fsStat(string) (avail, size uint64, ok bool) { return 0, 0, false }
