package mailbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"moat/internal/atomicfile"
	"os"
	"strings"
)

// Limits on a users file, so that a broken or hostile file cannot take
// unbounded memory or time.
const (
	MaxUsersFileLine  = 4096
	MaxUsersFileLines = 1 << 20
	MaxUsersFileSize  = 64 << 20
)

// FileUser is one user line of a users file.
type FileUser struct {
	Addr     string // as written
	Hash     string // "" when the user cannot log in
	Quota    int64
	HasQuota bool // a third field was given
	Line     int  // 1-based
}

// ParseUsersFile reads a users file: one user a line,
// "address:hash[:quota]", like a Dovecot passwd-file cut down to three
// fields. Blank lines and lines starting with '#' (after leading blanks)
// are ignored; a trailing CR is dropped. The hash is bcrypt or argon2id
// (optionally with Dovecot's "{BLF-CRYPT}" or "{ARGON2ID}" prefix) or
// empty; the quota is a size as in ParseSize. Lines are at most
// MaxUsersFileLine bytes and the file at most MaxUsersFileLines lines.
// Errors name the line: "<name>:3: ...". Addresses are checked for
// syntax here; the local-domain check is the Directory's.
func ParseUsersFile(r io.Reader, name string) ([]FileUser, error) {
	sc := bufio.NewScanner(io.LimitReader(r, MaxUsersFileSize+1))
	sc.Buffer(make([]byte, 0, 512), MaxUsersFileLine+2)
	var out []FileUser
	seen := map[string]int{}
	n := 0
	read := 0
	for sc.Scan() {
		n++
		read += len(sc.Bytes()) + 1
		if n > MaxUsersFileLines {
			return nil, fmt.Errorf("%s: more than %d lines", name, MaxUsersFileLines)
		}
		if read > MaxUsersFileSize {
			return nil, fmt.Errorf("%s: larger than %d bytes", name, MaxUsersFileSize)
		}
		u, skip, err := parseUserLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if skip {
			continue
		}
		u.Line = n
		key, _ := normalize(u.Addr)
		if first, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s:%d: %s already defined on line %d", name, n, u.Addr, first)
		}
		seen[key] = n
		out = append(out, u)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, n+1, MaxUsersFileLine)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// parseUserLine parses one line; skip is true for blank and comment lines.
func parseUserLine(line string) (u FileUser, skip bool, err error) {
	line = strings.TrimSuffix(line, "\r")
	if len(line) > MaxUsersFileLine {
		return u, false, fmt.Errorf("line longer than %d bytes", MaxUsersFileLine)
	}
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' {
		return u, true, nil
	}
	fields := strings.Split(t, ":")
	if len(fields) > 3 {
		return u, false, errors.New(`want "address:hash[:quota]", found more than three fields`)
	}
	u.Addr = strings.TrimSpace(fields[0])
	if _, err := normalize(u.Addr); err != nil {
		return u, false, fmt.Errorf("address %q: %w", u.Addr, err)
	}
	if len(fields) > 1 {
		u.Hash = strings.TrimSpace(fields[1])
		if u.Hash != "" {
			if err := checkHash(u.Hash); err != nil {
				return u, false, fmt.Errorf("%s: %w", u.Addr, err)
			}
		}
	}
	if len(fields) > 2 {
		q, err := ParseSize(fields[2])
		if err != nil {
			return u, false, fmt.Errorf("%s: quota: %w", u.Addr, err)
		}
		u.Quota, u.HasQuota = q, true
	}
	return u, false, nil
}

// loadUsersFile reads and parses a users file from disk.
func loadUsersFile(path string) ([]FileUser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseUsersFile(f, path)
}

// AddUser adds addr with a new argon2id hash of password to the users
// file at path, creating the file (mode 0600) if needed. It fails if the
// address is already there.
func AddUser(path, addr, password string) error {
	key, err := normalize(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return rewriteUsersFile(path, true, func(lines []string, users map[string]int) ([]string, error) {
		if i, ok := users[key]; ok {
			return nil, fmt.Errorf("%s:%d: %s already exists", path, i+1, addr)
		}
		return append(lines, addr+":"+hash), nil
	})
}

// SetPassword replaces the hash of addr in the users file at path,
// keeping its quota field.
func SetPassword(path, addr, password string) error {
	key, err := normalize(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return rewriteUsersFile(path, false, func(lines []string, users map[string]int) ([]string, error) {
		i, ok := users[key]
		if !ok {
			return nil, fmt.Errorf("%s: no user %s", path, addr)
		}
		u, _, _ := parseUserLine(lines[i])
		l := u.Addr + ":" + hash
		if fields := strings.Split(strings.TrimSpace(strings.TrimSuffix(lines[i], "\r")), ":"); len(fields) == 3 {
			l += ":" + strings.TrimSpace(fields[2])
		}
		lines[i] = l
		return lines, nil
	})
}

// DeleteUser removes addr's line from the users file at path.
func DeleteUser(path, addr string) error {
	key, err := normalize(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	return rewriteUsersFile(path, false, func(lines []string, users map[string]int) ([]string, error) {
		i, ok := users[key]
		if !ok {
			return nil, fmt.Errorf("%s: no user %s", path, addr)
		}
		return append(lines[:i], lines[i+1:]...), nil
	})
}

// rewriteUsersFile reads the file as lines, lets edit change them, and
// replaces the file atomically: a temporary file in the same directory is
// written and fsynced, renamed over the old one, and the directory is
// fsynced. Comments and other lines are kept as they were. A file that
// does not parse is not rewritten. There is no lock: one writer at a
// time (the moat CLI) is assumed.
func rewriteUsersFile(path string, create bool, edit func(lines []string, users map[string]int) ([]string, error)) error {
	data, err := os.ReadFile(path)
	mode := os.FileMode(0o600)
	switch {
	case err == nil:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	case errors.Is(err, os.ErrNotExist) && create:
		data = nil
	default:
		return err
	}
	if len(data) > MaxUsersFileSize {
		return fmt.Errorf("%s: larger than %d bytes", path, MaxUsersFileSize)
	}
	if _, err := ParseUsersFile(bytes.NewReader(data), path); err != nil {
		return fmt.Errorf("refusing to rewrite: %w", err)
	}
	text := string(data)
	var lines []string
	if text != "" {
		lines = strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	}
	users := map[string]int{}
	for i, l := range lines {
		if u, skip, err := parseUserLine(l); err == nil && !skip {
			key, _ := normalize(u.Addr)
			users[key] = i
		}
	}
	lines, err = edit(lines, users)
	if err != nil {
		return err
	}
	out := strings.Join(lines, "\n")
	if len(lines) > 0 {
		out += "\n"
	}
	// Written by root for the daemon's user: the file keeps its owner
	// (a new one takes the directory's), or moat could not read it.
	return atomicfile.WriteFileOwned(path, []byte(out), mode)
}
