package maildir

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// File is the part of *os.File that Deliver writes through.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// FS is the file system Deliver works on. OS is the real one; tests wrap
// it to make chosen operations fail (chasquid's safeio idea, without a
// package-level switch).
type FS interface {
	// Mkdir creates one directory (not its parents).
	Mkdir(name string, perm fs.FileMode) error
	Stat(name string) (fs.FileInfo, error)
	// Create creates name exclusively (O_EXCL): it fails if name exists.
	Create(name string, perm fs.FileMode) (File, error)
	Link(oldname, newname string) error
	Rename(oldname, newname string) error
	Remove(name string) error
	// SyncDir fsyncs a directory so that entries created in it are durable.
	SyncDir(name string) error
	// OpenDir opens a directory for reading in chunks (quota scans).
	OpenDir(name string) (DirReader, error)
	// ReadFile and AppendFile serve the maildirsize quota cache.
	ReadFile(name string, max int64) ([]byte, fs.FileInfo, error)
	AppendFile(name string, data []byte) error
	// WriteFileAtomic replaces name by data (temp file and rename, no
	// fsync: used only for the quota cache, which is rebuilt if lost).
	WriteFileAtomic(name string, data []byte) error
}

// DirReader reads a directory in bounded chunks.
type DirReader interface {
	ReadDir(n int) ([]fs.DirEntry, error)
	Close() error
}

// OS is the operating system's file system.
type OS struct{}

var _ FS = OS{}

// Mkdir implements FS.
func (OS) Mkdir(name string, perm fs.FileMode) error { return os.Mkdir(name, perm) }

// Stat implements FS.
func (OS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// Create implements FS.
func (OS) Create(name string, perm fs.FileMode) (File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
}

// Link implements FS.
func (OS) Link(oldname, newname string) error { return os.Link(oldname, newname) }

// Rename implements FS.
func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS.
func (OS) Remove(name string) error { return os.Remove(name) }

// SyncDir implements FS.
func (OS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// OpenDir implements FS.
func (OS) OpenDir(name string) (DirReader, error) { return os.Open(name) }

// ReadFile implements FS: it reads at most max bytes.
func (OS) ReadFile(name string, max int64) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	return b, fi, err
}

// AppendFile implements FS. One write with O_APPEND, so that concurrent
// small appends do not interleave (POSIX write(2) on O_APPEND files).
func (OS) AppendFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// WriteFileAtomic implements FS.
func (OS) WriteFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".maildirsize-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
