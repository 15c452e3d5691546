//go:build !linux

package junkwatch

import (
	"io/fs"
	"time"
)

// changeTime is the file's mtime where the ctime is not read.
func changeTime(fi fs.FileInfo) time.Time { return fi.ModTime() }
