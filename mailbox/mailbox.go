// Package mailbox owns the local recipients of moat: users, aliases and
// catch-all addresses of the local domains, delivery into their Maildirs
// (through mailbox/maildir, with quotas), and the user passwords that the
// submission listener checks.
//
// A Directory is an immutable snapshot built by New from Config, safe for
// concurrent use; a configuration reload builds a new one. It never
// touches the network.
//
// Address rules, each decided here:
//   - Domains compare case-insensitively (RFC 5321 §2.4); local parts too,
//     by ASCII case folding (RFC 5321 §2.4 leaves it to the receiving
//     host; Postfix and Dovecot fold as well).
//   - A subaddress ("alice+lists@", RFC 5233) is looked up as written
//     first, then without the part from the first delimiter on; mail is
//     delivered to the base mailbox.
//   - A login name, and a sender address an authenticated user writes,
//     is folded by internal/mailname (blanks around, Unicode NFKC, case,
//     UTS-46 for the domain, a trailing dot) and resolved as a
//     recipient (subaddress stripped) by LoginName: the one key of a
//     user for the lock-out, the sending limits, send-as and the logs.
//     Authenticate takes every folded spelling of a user's address, but
//     not a subaddress of it.
//   - "postmaster" (any case, with or without a local domain) always
//     exists (RFC 5321 §4.5.1); see Expand for where it goes.
//   - The accepted address syntax is narrow (see SafePath): an address
//     that could steer a Maildir path out of Root does not exist.
//
// Mail that the rules marked as junk (DeliverTo with Delivery.Junk) goes
// into the user's junk folder, Config.JunkFolder ("Junk" by default), laid
// out as Dovecot's and Courier's Maildir++ expect:
//
//	<Root>/<domain>/<localpart>/            INBOX: tmp/ new/ cur/
//	<Root>/<domain>/<localpart>/.Junk/      the folder: tmp/ new/ cur/ and
//	                                        an empty maildirfolder file
//
// created on demand with the same durability as INBOX delivery. An IMAP
// server pointed at the same Maildir (Dovecot: mail_location =
// maildir:~/Maildir, its default LAYOUT=Maildir++) shows it as the
// folder "Junk"; give it the \Junk special-use flag (RFC 6154) there so
// that clients use it as their spam folder. The user's quota counts the
// whole mailbox, folders included. "INBOX" as the folder delivers junk to
// the inbox, for users who sort with Sieve on the X-Spam-* fields.
package mailbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"moat/internal/reply"
	"moat/mailbox/maildir"
)

// Bounds on alias expansion.
const (
	// MaxAliasDepth is how many alias hops Expand follows.
	MaxAliasDepth = 10
	// MaxExpansion is how many addresses one recipient may expand to.
	MaxExpansion = 1000
)

// Replies for recipients that cannot be delivered; all permanent.
var (
	// An alias loop: RFC 3463 §3.5 X.4.6 "routing loop detected".
	replyLoop = reply.New(550, 4, 6, "Alias loop detected")
	// Too many targets: X.5.3 "too many recipients" (RFC 3463 §3.6).
	replyTooMany = reply.New(550, 5, 3, "Alias expands to too many recipients")
)

type user struct {
	hash  string
	quota int64
}

// Directory is an immutable view of the local recipients.
type Directory struct {
	root         string
	domains      map[string]bool
	domainOrder  []string // as configured, normalized
	users        map[string]user
	usersByDom   map[string][]string // sorted
	firstUser    string              // smallest user address overall
	aliases      map[string][]string
	catchAll     map[string]string
	delims       string
	defaultQuota int64
	sendAs       map[string][]string
	junkFolder   string // "" : junk goes to INBOX
}

// New builds a Directory: it loads the users file and checks everything
// Validate checks. Building has no side effect on disk.
func New(cfg Config, localDomains []string) (*Directory, error) {
	return build(cfg, localDomains)
}

func build(cfg Config, localDomains []string) (*Directory, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	d := &Directory{
		root:     cfg.Root,
		domains:  map[string]bool{},
		users:    map[string]user{},
		aliases:  map[string][]string{},
		catchAll: map[string]string{},
		delims:   DefaultRecipientDelimiter,
	}
	if cfg.Root == "" {
		bad("mailboxes.root: must be set")
	}
	if cfg.RecipientDelimiter != nil {
		d.delims = *cfg.RecipientDelimiter
		if err := checkDelimiter(d.delims); err != nil {
			bad("mailboxes.recipient_delimiter: %v", err)
		}
	}
	switch jf := cfg.JunkFolder; {
	case jf == "":
		d.junkFolder = DefaultJunkFolder
	case strings.EqualFold(jf, "INBOX"):
	case !maildir.ValidFolder(jf):
		bad("mailboxes.junk_folder: %q is not a folder name (letters, digits, _ - and . between parts)", jf)
	default:
		d.junkFolder = jf
	}
	var err error
	if d.defaultQuota, err = ParseSize(cfg.Quota); err != nil {
		bad("mailboxes.quota: %v", err)
	}
	for i, dom := range localDomains {
		n := normalizeDomain(dom)
		if err := checkDomain(n); err != nil {
			bad("domains.local[%d]: %q: %v", i, dom, err)
			continue
		}
		if !d.domains[n] {
			d.domains[n] = true
			d.domainOrder = append(d.domainOrder, n)
		}
	}

	// localKey checks that addr is a valid address in a local domain.
	localKey := func(addr string) (string, error) {
		k, err := normalize(addr)
		if err != nil {
			return "", err
		}
		if !d.domains[domainOf(k)] {
			return "", fmt.Errorf("domain %s is not in domains.local", domainOf(k))
		}
		return k, nil
	}

	for _, addr := range sortedKeys(cfg.Users) {
		uc := cfg.Users[addr]
		key, err := localKey(addr)
		if err != nil {
			bad("mailboxes.users.%s: %v", addr, err)
			continue
		}
		if _, dup := d.users[key]; dup {
			bad("mailboxes.users.%s: defined twice (addresses are case-insensitive)", addr)
			continue
		}
		u := user{hash: uc.PasswordHash, quota: d.defaultQuota}
		if u.hash != "" {
			if err := checkHash(u.hash); err != nil {
				bad("mailboxes.users.%s.password_hash: %v", addr, err)
			}
		}
		if uc.Quota != "" {
			if u.quota, err = ParseSize(uc.Quota); err != nil {
				bad("mailboxes.users.%s.quota: %v", addr, err)
			}
		}
		d.users[key] = u
	}
	if cfg.UsersFile != "" {
		fileUsers, err := loadUsersFile(cfg.UsersFile)
		if err != nil {
			bad("mailboxes.users_file: %v", err)
		}
		for _, fu := range fileUsers {
			key, err := localKey(fu.Addr)
			if err != nil {
				bad("mailboxes.users_file: %s:%d: %s: %v", cfg.UsersFile, fu.Line, fu.Addr, err)
				continue
			}
			if _, dup := d.users[key]; dup {
				bad("mailboxes.users_file: %s:%d: %s is also in mailboxes.users", cfg.UsersFile, fu.Line, fu.Addr)
				continue
			}
			u := user{hash: fu.Hash, quota: d.defaultQuota}
			if fu.HasQuota {
				u.quota = fu.Quota
			}
			d.users[key] = u
		}
	}
	d.usersByDom = map[string][]string{}
	for k := range d.users {
		dom := domainOf(k)
		d.usersByDom[dom] = append(d.usersByDom[dom], k)
		if d.firstUser == "" || k < d.firstUser {
			d.firstUser = k
		}
	}
	for _, l := range d.usersByDom {
		sort.Strings(l)
	}

	for _, addr := range sortedKeys(cfg.Aliases) {
		targets, err := aliasTargets(cfg.Aliases[addr])
		if err != nil {
			bad("mailboxes.aliases.%s: %v", addr, err)
			continue
		}
		key, err := localKey(addr)
		if err != nil {
			bad("mailboxes.aliases.%s: %v", addr, err)
			continue
		}
		if _, dup := d.aliases[key]; dup {
			bad("mailboxes.aliases.%s: defined twice (addresses are case-insensitive)", addr)
			continue
		}
		if len(targets) == 0 {
			bad("mailboxes.aliases.%s: no target", addr)
			continue
		}
		if len(targets) > MaxExpansion {
			bad("mailboxes.aliases.%s: more than %d targets", addr, MaxExpansion)
			continue
		}
		ok := true
		for i, t := range targets {
			t = strings.TrimSpace(t)
			if _, _, err := parseAddr(t); err != nil {
				bad("mailboxes.aliases.%s: target %q: %v", addr, t, err)
				ok = false
			}
			targets[i] = t
		}
		if ok {
			d.aliases[key] = targets
		}
	}
	for _, dom := range sortedKeys(cfg.CatchAll) {
		target := strings.TrimSpace(cfg.CatchAll[dom])
		n := normalizeDomain(dom)
		if !d.domains[n] {
			bad("mailboxes.catch_all.%s: domain is not in domains.local", dom)
			continue
		}
		if _, _, err := parseAddr(target); err != nil {
			bad("mailboxes.catch_all.%s: target %q: %v", dom, target, err)
			continue
		}
		d.catchAll[n] = target
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// Every alias and catch-all must expand: no loop, no unknown local
	// target. This also fills SendAs.
	d.sendAs = map[string][]string{}
	for _, key := range sortedKeys(d.aliases) {
		out, err := d.Expand(key)
		if err != nil {
			bad("mailboxes.aliases.%s: %v", key, causeOf(err))
			continue
		}
		for _, o := range out {
			if _, ok := d.users[o]; ok {
				d.sendAs[o] = append(d.sendAs[o], key)
			}
		}
	}
	for _, dom := range sortedKeys(d.catchAll) {
		if _, err := d.Expand(d.catchAll[dom]); err != nil {
			bad("mailboxes.catch_all.%s: %v", dom, causeOf(err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

func causeOf(err error) error {
	var r *reply.Reply
	if errors.As(err, &r) && r.Cause != nil {
		return r.Cause
	}
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func domainOf(key string) string { return key[strings.LastIndexByte(key, '@')+1:] }

// Root returns the directory that holds the Maildirs.
func (d *Directory) Root() string { return d.root }

// IsLocalDomain reports whether domain is one of domains.local
// (case-insensitive, a trailing dot ignored).
func (d *Directory) IsLocalDomain(domain string) bool {
	return d.domains[normalizeDomain(domain)]
}

// kind of a resolved local address.
type kind int

const (
	none kind = iota
	isUser
	isAlias
)

// resolve finds the user or alias that a normalized local address names:
// the address as written, then its base address without a subaddress.
func (d *Directory) resolve(key string) (string, kind) {
	if k := d.kindOf(key); k != none {
		return key, k
	}
	if base := d.base(key); base != key {
		if k := d.kindOf(base); k != none {
			return base, k
		}
	}
	return key, none
}

func (d *Directory) kindOf(key string) kind {
	if _, ok := d.aliases[key]; ok {
		return isAlias // an alias wins over a user of the same name
	}
	if _, ok := d.users[key]; ok {
		return isUser
	}
	return none
}

// base strips a subaddress: "alice+x@d" becomes "alice@d" (RFC 5233).
// A delimiter at the start of the local part is not a delimiter.
func (d *Directory) base(key string) string {
	if d.delims == "" {
		return key
	}
	at := strings.LastIndexByte(key, '@')
	if i := strings.IndexAny(key[:at], d.delims); i > 0 {
		return key[:i] + key[at:]
	}
	return key
}

// isPostmaster reports whether the local part is "postmaster" (RFC 5321
// §4.5.1: case-insensitive).
func isPostmaster(key string) bool { return strings.HasPrefix(key, "postmaster@") }

// Exists reports whether addr is a local recipient: a user, an alias,
// postmaster (bare or at a local domain), or any address of a domain with
// a catch-all. Addresses outside the local domains, and addresses that are
// not safe as Maildir paths (see SafePath), do not exist: the gateway
// answers those 550 5.1.1.
func (d *Directory) Exists(addr string) bool {
	if strings.EqualFold(addr, "postmaster") {
		return len(d.domainOrder) > 0
	}
	key, err := normalize(addr)
	if err != nil || !d.domains[domainOf(key)] {
		return false
	}
	if _, k := d.resolve(key); k != none {
		return true
	}
	if isPostmaster(key) {
		return true
	}
	_, ok := d.catchAll[domainOf(key)]
	return ok
}

// Expand returns the final addresses that mail to addr goes to: local
// users (normalized, without subaddress) and remote addresses (domain in
// lower case, local part as written), without duplicates, in order of
// discovery. A remote addr is returned as is; the caller routes it.
//
// Aliases are followed to MaxAliasDepth hops; an alias that names itself
// (alice@ -> [alice@, archive@]) means the user of that name, any other
// cycle is a loop (550 5.4.6). An unknown local address falls to its
// domain's catch-all. postmaster@<domain> without a user or alias of that
// name goes to the first user of that domain (in sorted order), else to
// the domain's catch-all, else to the first user of all; a bare
// "postmaster" means postmaster@ the first local domain. With no user at
// all it is an error (550 5.1.1), as is any other unknown address.
func (d *Directory) Expand(addr string) ([]string, error) {
	if strings.EqualFold(addr, "postmaster") {
		if len(d.domainOrder) == 0 {
			return nil, reply.NoSuchUser.With(errors.New("postmaster: no local domain"))
		}
		addr = "postmaster@" + d.domainOrder[0]
	}
	e := expander{d: d, seen: map[string]bool{}}
	if err := e.expand(addr, nil); err != nil {
		return nil, err
	}
	return e.out, nil
}

type expander struct {
	d    *Directory
	out  []string
	seen map[string]bool
}

func (e *expander) add(a string) error {
	if e.seen[a] {
		return nil
	}
	if len(e.out) >= MaxExpansion {
		return replyTooMany.With(fmt.Errorf("more than %d addresses", MaxExpansion))
	}
	e.seen[a] = true
	e.out = append(e.out, a)
	return nil
}

// expand follows addr; path holds the aliases (and "@domain" catch-alls)
// being expanded, to find loops.
func (e *expander) expand(addr string, path []string) error {
	d := e.d
	if len(path) > MaxAliasDepth {
		return replyLoop.With(fmt.Errorf("%s: more than %d alias hops: %s", addr, MaxAliasDepth, strings.Join(path, " -> ")))
	}
	l, dom, err := parseAddr(addr)
	if err != nil {
		return reply.BadRcptSyntax.With(fmt.Errorf("%q: %w", addr, err))
	}
	dom = strings.ToLower(dom)
	if !d.domains[dom] {
		return e.add(l + "@" + dom)
	}
	key, k := d.resolve(strings.ToLower(l) + "@" + dom)
	switch k {
	case isUser:
		return e.add(key)
	case isAlias:
		if slices.Contains(path, key) {
			return replyLoop.With(fmt.Errorf("alias loop: %s -> %s", strings.Join(path, " -> "), key))
		}
		next := append(slices.Clip(path), key)
		for _, t := range d.aliases[key] {
			if tk, err := normalize(t); err == nil {
				if rk, _ := d.resolve(tk); rk == key {
					// The alias names itself: the user of that name.
					if _, ok := d.users[key]; !ok {
						return replyLoop.With(fmt.Errorf("alias %s names itself but is no user", key))
					}
					if err := e.add(key); err != nil {
						return err
					}
					continue
				}
			}
			if err := e.expand(t, next); err != nil {
				return err
			}
		}
		return nil
	}
	if isPostmaster(key) {
		if target := d.postmasterTarget(dom); target != "" {
			return e.add(target)
		}
	}
	if target, ok := d.catchAll[dom]; ok {
		marker := "@" + dom
		if slices.Contains(path, marker) {
			return replyLoop.With(fmt.Errorf("catch-all loop: %s -> %s", strings.Join(path, " -> "), target))
		}
		return e.expand(target, append(slices.Clip(path), marker))
	}
	return reply.NoSuchUser.With(fmt.Errorf("%s: no such user", addr))
}

// postmasterTarget is the user that postmaster@dom goes to when no user
// or alias of that name exists: the domain's first user; else, when the
// domain has a catch-all, "" (the catch-all takes it); else the first
// user of all.
func (d *Directory) postmasterTarget(dom string) string {
	if l := d.usersByDom[dom]; len(l) > 0 {
		return l[0]
	}
	if _, ok := d.catchAll[dom]; ok {
		return ""
	}
	return d.firstUser
}

// Deliver writes msg into the Maildir of mailbox (a user address as
// Expand returns it; a subaddress is delivered to the base mailbox) at
// Root/<domain>/<localpart>/, applying the user's quota. A nil error
// means the message is durable. An unknown user is a permanent 550 5.1.1;
// a full mailbox a temporary 452 4.2.2 (see maildir.MailboxFull); other
// errors are temporary.
func (d *Directory) Deliver(ctx context.Context, mailbox string, msg io.Reader) error {
	return d.deliver(ctx, mailbox, "", msg)
}

func (d *Directory) deliver(ctx context.Context, mailbox, folder string, msg io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := normalize(mailbox)
	if err != nil {
		return reply.NoSuchUser.With(fmt.Errorf("%q: %w", mailbox, err))
	}
	key, _ = d.resolve(key)
	u, ok := d.users[key]
	if !ok {
		return reply.NoSuchUser.With(fmt.Errorf("%s: not a local mailbox", mailbox))
	}
	dir, err := SafePath(d.root, key)
	if err != nil {
		return reply.NoSuchUser.With(err)
	}
	_, err = maildir.Deliver(dir, &ctxReader{ctx: ctx, r: msg}, maildir.Options{Quota: u.quota, Folder: folder})
	return err
}

// DeliverFinal is final delivery into mailbox of a message whose
// envelope sender is sender ("" for the null reverse-path): it puts
// the Return-Path header on top, then delivers as Deliver. RFC 5321
// §4.4: the server that makes final delivery inserts Return-Path with
// the reverse-path of the MAIL command, and only it does.
func (d *Directory) DeliverFinal(ctx context.Context, sender, mailbox string, msg io.Reader) error {
	return d.DeliverTo(ctx, Delivery{Sender: sender, Mailbox: mailbox}, msg)
}

// Delivery is one final delivery into a local mailbox.
type Delivery struct {
	Sender  string // envelope sender, "" for the null reverse-path
	Mailbox string // a user address as Expand returns it
	// Junk files the message into the junk folder (Config.JunkFolder)
	// rather than the inbox. The quota is the whole mailbox's.
	Junk bool
}

// DeliverTo is DeliverFinal with the message's destination folder chosen
// by del.Junk.
func (d *Directory) DeliverTo(ctx context.Context, del Delivery, msg io.Reader) error {
	if strings.ContainsAny(del.Sender, "\r\n") {
		// The SMTP server never accepts one; a header must not be split.
		return fmt.Errorf("sender %q: line break in a reverse-path", del.Sender)
	}
	folder := ""
	if del.Junk {
		folder = d.junkFolder
	}
	rp := "Return-Path: <" + del.Sender + ">\r\n"
	return d.deliver(ctx, del.Mailbox, folder, io.MultiReader(strings.NewReader(rp), msg))
}

// JunkFolder is the Maildir++ folder junk is delivered into, "" when it
// goes to the inbox.
func (d *Directory) JunkFolder() string { return d.junkFolder }

// ctxReader stops a copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Authenticate checks a password for the user that the login name addr
// names: any spelling that internal/mailname.Fold maps to the user's
// address (case, a trailing dot, blanks, Unicode look-alikes), but not a
// subaddress ("bob+tag@" is no login; LoginName still counts its
// failures as bob's). An unknown user, a user without a password and a wrong password
// all return false, after the same work (a dummy argon2id verification
// for the first two), so timing does not tell which. An error means the
// stored hash is unusable.
func (d *Directory) Authenticate(addr, password string) (bool, error) {
	var hash string
	if key, ok := d.loginKey(addr); ok {
		hash = d.users[key].hash
	}
	if hash == "" || len(password) > maxPasswordLen {
		_, _ = verifyPassword(dummyHash, password[:min(len(password), maxPasswordLen)])
		return false, nil
	}
	return verifyPassword(hash, password)
}

// SendAs returns the addresses user (any spelling, see LoginName) may
// use as sender: its own canonical address first, then the aliases whose
// expansion includes it, sorted. An unknown user gets nil.
func (d *Directory) SendAs(user string) []string {
	key, ok := d.LoginName(user)
	if !ok {
		return nil
	}
	if _, ok := d.users[key]; !ok {
		return nil
	}
	out := []string{key}
	for _, a := range d.sendAs[key] {
		if a != key {
			out = append(out, a)
		}
	}
	slices.SortFunc(out[1:], cmp.Compare)
	return out
}
