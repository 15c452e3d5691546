// Package atomicfile replaces a file's contents durably: a reader sees
// the old contents or the new, never a mix, and after WriteFile returns
// nil a crash keeps the new contents (ARCHITECTURE.md, "Durability": write temp, fsync,
// rename, fsync the directory).
package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile writes data to a temporary file beside path with the given
// mode, syncs it, renames it over path and syncs the directory. On error
// the temporary file is removed and path is untouched.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, nil)
}

// WriteFileOwned is WriteFile for a file an administrator's command
// writes for the daemon (a users file, a DKIM key): run as root, the file
// keeps the owner and group it had, and a new file takes those of its
// directory, so that a daemon running as its own user (the data
// directory's owner) can still read what root wrote. Otherwise it is
// WriteFile.
func WriteFileOwned(path string, data []byte, mode os.FileMode) error {
	uid, gid, ok := OwnerFor(path)
	if !ok {
		return write(path, data, mode, nil)
	}
	return write(path, data, mode, func(f *os.File) error { return f.Chown(uid, gid) })
}

// OwnerFor is the owner and group a file written at path as root should
// have: the existing file's, else its directory's. ok is false when not
// running as root (files are then the caller's) or nothing is there.
func OwnerFor(path string) (uid, gid int, ok bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	fi, err := os.Stat(path)
	if err != nil {
		if fi, err = os.Stat(filepath.Dir(path)); err != nil {
			return 0, 0, false
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}

func write(path string, data []byte, mode os.FileMode, prepare func(*os.File) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if prepare != nil {
		err = prepare(f)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
