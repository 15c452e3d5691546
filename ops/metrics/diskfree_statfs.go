//go:build linux || darwin || freebsd || netbsd || openbsd

package metrics

import "syscall"

// fsStat is statfs(2) of dir: the blocks free to unprivileged users
// (f_bavail) and all blocks, in bytes.
func fsStat(dir string) (avail, size uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	bs := uint64(st.Bsize)
	return uint64(st.Bavail) * bs, uint64(st.Blocks) * bs, true
}
