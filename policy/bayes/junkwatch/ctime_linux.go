package junkwatch

import (
	"io/fs"
	"syscall"
	"time"
)

// changeTime is the later of a file's ctime and mtime: a Maildir move (a
// rename or a link) changes the ctime only.
func changeTime(fi fs.FileInfo) time.Time {
	t := fi.ModTime()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if c := time.Unix(st.Ctim.Sec, st.Ctim.Nsec); c.After(t) {
			t = c
		}
	}
	return t
}
