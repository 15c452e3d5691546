package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"moat/mailbox"
)

// maxPasswordLine bounds the line read for a password (mailbox refuses
// passwords longer than 1024 bytes).
const maxPasswordLine = 4096

// userCommand is `moat user add|passwd|delete ADDRESS`: it edits the
// users_file of the mailboxes (mailbox.AddUser and friends; the file is
// replaced atomically). A running `moat serve` sees the change on its
// next configuration reload.
//
// The password is read from standard input, never from the command line
// (where ps and shell history would show it). On a terminal it is asked
// twice with echo turned off (by stty: golang.org/x/term is not a
// dependency); otherwise the first line of the input is the password:
//
//	read -rs PW && printf '%s\n' "$PW" | moat user add alice@example.org --config moat.yaml
func userCommand() *cobra.Command {
	var o userOpts
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Add, delete and set the password of users in mailboxes.users_file",
		Long: `Add, delete and set the password of users in mailboxes.users_file.

The password is read from standard input, never from the command line. On a
terminal it is asked twice without echo; otherwise the first line of the
input is the password, e.g.:

  read -rs PW && printf '%s\n' "$PW" | moat user add alice@example.org --config moat.yaml

With --config the address must be in domains.local and the users file is
mailboxes.users_file (unless --users-file is given). With --users-file
alone the domain is not checked.`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&o.config, "config", "", "configuration file (its mailboxes.users_file and domains.local are used)")
	cmd.PersistentFlags().StringVar(&o.usersFile, "users-file", "", "users file to edit (overrides mailboxes.users_file)")

	cmd.AddCommand(&cobra.Command{
		Use:   "add ADDRESS",
		Short: "Add a user with a password read from standard input",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, cfg, err := o.targetAdding(c, args[0])
			if err != nil {
				return err
			}
			if inConfigUsers(cfg, args[0]) {
				return fmt.Errorf("user add: %s is already in mailboxes.users of %s", args[0], o.config)
			}
			pw, err := readNewPassword(c)
			if err != nil {
				return err
			}
			if err := mailbox.AddUser(path, args[0], pw); err != nil {
				return fmt.Errorf("user add: %w", err)
			}
			fmt.Fprintf(c.OutOrStdout(), "added %s to %s\n", args[0], path)
			checkAfter(c, cfg, path)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "passwd ADDRESS",
		Short: "Set a user's password, read from standard input",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, cfg, err := o.target(c, args[0])
			if err != nil {
				return err
			}
			pw, err := readNewPassword(c)
			if err != nil {
				return err
			}
			if err := mailbox.SetPassword(path, args[0], pw); err != nil {
				return fmt.Errorf("user passwd: %w", err)
			}
			fmt.Fprintf(c.OutOrStdout(), "password of %s changed in %s\n", args[0], path)
			checkAfter(c, cfg, path)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "delete ADDRESS",
		Short: "Remove a user from the users file (the Maildir is kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path, cfg, err := o.target(c, args[0])
			if err != nil {
				return err
			}
			if err := mailbox.DeleteUser(path, args[0]); err != nil {
				return fmt.Errorf("user delete: %w", err)
			}
			fmt.Fprintf(c.OutOrStdout(), "deleted %s from %s (its Maildir is kept)\n", args[0], path)
			checkAfter(c, cfg, path)
			return nil
		},
	})
	return cmd
}

type userOpts struct {
	config    string
	usersFile string
}

// target returns the users file to edit, after checking that addr is in
// a local domain when a configuration is given.
func (o *userOpts) target(c *cobra.Command, addr string) (string, *Config, error) {
	return o.resolve(c, addr, false)
}

// targetAdding is target for `user add`: the configuration is checked as
// it will be once addr is a user, so that an alias or catch-all naming
// the first user does not stop that user from being added.
func (o *userOpts) targetAdding(c *cobra.Command, addr string) (string, *Config, error) {
	return o.resolve(c, addr, true)
}

func (o *userOpts) resolve(c *cobra.Command, addr string, adding bool) (string, *Config, error) {
	if o.config == "" {
		if o.usersFile == "" {
			return "", nil, errors.New("give --config FILE (its mailboxes.users_file) or --users-file PATH")
		}
		fmt.Fprintln(c.ErrOrStderr(), "moat: no --config: not checking that the domain is in domains.local")
		return o.usersFile, nil, nil
	}
	cfg, err := loadConfig(o.config)
	if cfg == nil {
		return "", nil, err
	}
	// The users file itself may be missing (first user) or hold the line
	// being fixed; the mailbox functions parse it before rewriting it.
	// Any other configuration error stops us.
	if err != nil {
		other := otherThanUsersFile(err)
		if len(other) > 0 && adding {
			after := *cfg
			after.Mailboxes.Users = maps.Clone(cfg.Mailboxes.Users)
			if after.Mailboxes.Users == nil {
				after.Mailboxes.Users = map[string]mailbox.UserConfig{}
			}
			after.Mailboxes.Users[addr] = mailbox.UserConfig{}
			other = otherThanUsersFile(after.Validate())
		}
		if len(other) > 0 {
			return "", nil, fmt.Errorf("%s is not valid:\n  %s", o.config, strings.Join(other, "\n  "))
		}
	}
	path := o.usersFile
	if path == "" {
		path = cfg.Mailboxes.UsersFile
	}
	if path == "" {
		return "", nil, fmt.Errorf("%s: mailboxes.users_file is not set (set it, or give --users-file)", o.config)
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 1 || at == len(addr)-1 {
		return "", nil, fmt.Errorf("%q is not an address of the form local@domain", addr)
	}
	dom := strings.TrimSuffix(addr[at+1:], ".")
	for _, d := range cfg.Domains.Local {
		if strings.EqualFold(strings.TrimSuffix(d, "."), dom) {
			return path, cfg, nil
		}
	}
	return "", nil, fmt.Errorf("%s: domain %s is not in domains.local %v", addr, dom, cfg.Domains.Local)
}

// otherThanUsersFile lists the errors of err that are not about
// mailboxes.users_file itself.
func otherThanUsersFile(err error) []string {
	var other []string
	for _, l := range errorLines(err) {
		if !strings.HasPrefix(l, "mailboxes.users_file:") {
			other = append(other, l)
		}
	}
	return other
}

// inConfigUsers reports whether addr is one of mailboxes.users (the
// server refuses a user defined in both places).
func inConfigUsers(cfg *Config, addr string) bool {
	if cfg == nil {
		return false
	}
	for u := range cfg.Mailboxes.Users {
		if strings.EqualFold(u, addr) {
			return true
		}
	}
	return false
}

// checkAfter warns when the configuration does not load with the edited
// users file, so the operator learns it now and not at the next reload.
func checkAfter(c *cobra.Command, cfg *Config, path string) {
	if cfg == nil {
		return
	}
	mc := cfg.Mailboxes
	mc.UsersFile = path
	if err := mc.Validate(cfg.Domains.Local); err != nil {
		fmt.Fprintln(c.ErrOrStderr(), "moat: warning: the mailboxes section does not load with this users file:")
		for _, l := range errorLines(err) {
			fmt.Fprintln(c.ErrOrStderr(), "  "+l)
		}
	}
}

// readNewPassword reads the password from the command's input: twice
// without echo on a terminal, else one line.
func readNewPassword(c *cobra.Command) (string, error) {
	in := c.InOrStdin()
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		return promptPassword(f, c.ErrOrStderr())
	}
	br := bufio.NewReaderSize(in, 512)
	pw, err := readPasswordLine(br)
	if err != nil {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	return pw, nil
}

// readPasswordLine reads one line, without its CR LF, bounded; a last
// line without a newline counts.
func readPasswordLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxPasswordLine {
			return "", fmt.Errorf("line longer than %d bytes", maxPasswordLine)
		}
		if err == nil || errors.Is(err, io.EOF) {
			if errors.Is(err, io.EOF) && len(b) == 0 {
				return "", errors.New("no password given (empty input)")
			}
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}

// isTerminal reports whether f is a character device: a terminal, for
// our purpose (on /dev/null, stty fails and we say to pipe instead).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// promptPassword asks for the password twice on the terminal tty with
// echo off. Without stty it refuses rather than echo the password.
func promptPassword(tty *os.File, out io.Writer) (string, error) {
	stty := func(arg string) error {
		cmd := exec.Command("stty", arg)
		cmd.Stdin = tty
		return cmd.Run()
	}
	if err := stty("-echo"); err != nil {
		return "", fmt.Errorf("cannot turn off the terminal echo (stty: %v); pipe the password instead: "+
			`read -rs PW && printf '%%s\n' "$PW" | moat user ...`, err)
	}
	// Put the echo back whatever happens, also on Ctrl-C.
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
			_ = stty("echo")
			fmt.Fprintln(out)
			os.Exit(130)
		case <-done:
		}
	}()
	defer func() {
		signal.Stop(sig)
		close(done)
		_ = stty("echo")
	}()
	br := bufio.NewReaderSize(tty, 512)
	fmt.Fprint(out, "New password: ")
	pw, err := readPasswordLine(br)
	fmt.Fprintln(out)
	if err != nil {
		return "", err
	}
	fmt.Fprint(out, "Again: ")
	again, err := readPasswordLine(br)
	fmt.Fprintln(out)
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the two passwords differ")
	}
	return pw, nil
}
