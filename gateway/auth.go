package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"go.uber.org/zap"

	"moat/gateway/smtpd"
	"moat/internal/maillog"
	"moat/internal/reply"
)

// Authenticator checks submission credentials and says which addresses a
// user may send as (mailbox.Directory).
type Authenticator interface {
	// LoginName returns the one canonical name of the user that a login
	// name or a sender address means, whatever its spelling (case, a
	// trailing dot, blanks, Unicode look-alikes, a subaddress); ok is
	// false when it is no local address. Everything keyed on a user
	// (lock-out, sending limits, send-as, logs) uses it (issue 27).
	LoginName(name string) (key string, ok bool)
	// Authenticate checks password for the login name.
	Authenticate(login, password string) (bool, error)
	// SendAs lists the canonical addresses user may send as.
	SendAs(user string) []string
}

// AuthLimiter bounds password guessing and what a user may send
// (policy/authlimit).
type AuthLimiter interface {
	// BeforeAuth returns how long to wait before answering, or a reply
	// when the client or the user is locked out.
	BeforeAuth(ip netip.Addr, user string) (time.Duration, error)
	AuthFailed(ip netip.Addr, user string)
	AuthSucceeded(ip netip.Addr, user string)
	// AllowMessage counts one message to rcpts recipients, or refuses.
	AllowMessage(user string, rcpts int) error
}

var (
	errAuthRequired = reply.New(530, 7, 0, "Authentication required")          // RFC 4954 §6
	errNotYours     = reply.New(550, 7, 1, "Sender address not owned by user") // RFC 6409 §8.1
	errAuthTemp     = reply.New(454, 7, 0, "Temporary authentication failure")
	errAuthzid      = reply.New(535, 7, 8, "Authentication credentials invalid")
	// A SASL response that does not follow its mechanism's syntax (RFC
	// 4616 §2 for PLAIN) is a syntax error, as undecodable base64 is
	// (RFC 4954 §4: 501); X.5.2 "syntax error" (RFC 3463 §3.6).
	errAuthMalformed = reply.New(501, 5, 2, "Malformed authentication data")
)

var _ smtpd.AuthSession = (*session)(nil)

// authAllowed: AUTH on submission listeners, and on mx listeners only
// when the operator enabled it. smtpd itself refuses AUTH before TLS
// (RFC 4954 §4), and does not advertise it.
func (s *session) authAllowed() bool {
	return s.state.Users != nil && (s.cfg.Mode == "submission" || s.cfg.Auth)
}

// AuthMechanisms lists PLAIN (RFC 4616) and LOGIN.
func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts a SASL exchange.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.authAllowed() {
		return nil, reply.AuthUnsupported
	}
	switch mech {
	case sasl.Plain:
		return &plainServer{s: s}, nil
	case sasl.Login:
		return &loginServer{s: s}, nil
	}
	return nil, reply.AuthUnknownMechanism
}

var _ smtpd.AuthMalformedCounter = (*session)(nil)

// AuthMalformed counts a response smtpd refused as not base64 (it sent
// 501 5.5.2 itself) as a failed attempt.
func (s *session) AuthMalformed(mech string) {
	s.authMalformed(mech, errors.New("response is not base64"))
}

// authMalformed counts a malformed exchange as a failed attempt of the
// client address (no user name can be trusted from it) and returns the
// 501 5.5.2 to send (issue 27 item 5).
func (s *session) authMalformed(mech string, cause error) error {
	if lim := s.checks.authLimiter(); lim != nil {
		lim.AuthFailed(s.t.Facts.Conn.IP, "")
	}
	s.log.Info("malformed AUTH", zap.String("mechanism", mech), zap.Error(cause))
	s.authFailure("", "malformed", errAuthMalformed)
	return errAuthMalformed.With(cause)
}

// checkPassword verifies one credential under the limiter. Every key is
// the canonical user the directory gives for the login name, so a second
// spelling of a user is the same user to the lock-out, the sending
// limits, the send-as check and the log; after success the session's
// user is that canonical address. The password is never logged.
func (s *session) checkPassword(authzid, login, pass string) error {
	ip := s.t.Facts.Conn.IP
	users := s.state.Users
	user, _ := users.LoginName(login)
	if authzid != "" {
		if az, _ := users.LoginName(authzid); az != user {
			// RFC 4616 §2: we do not let one user act for another.
			s.authFailure(user, "authzid", errAuthzid)
			return errAuthzid
		}
	}
	lim := s.checks.authLimiter()
	if lim != nil {
		delay, err := lim.BeforeAuth(ip, user)
		if err != nil {
			r := reply.From(err, s.t.Facts.Conn.ID)
			s.authFailure(user, "locked", r)
			return r
		}
		if delay > 0 {
			time.Sleep(delay)
		}
	}
	ok, err := users.Authenticate(login, pass)
	if err != nil {
		s.log.Warn("authentication backend failed", zap.String("user", user), zap.Error(err))
		return errAuthTemp
	}
	if !ok {
		if lim != nil {
			lim.AuthFailed(ip, user)
		}
		s.authFailure(user, "bad_password", reply.AuthFailed)
		return reply.AuthFailed
	}
	if lim != nil {
		lim.AuthSucceeded(ip, user)
	}
	s.t.Facts.Conn.AuthUser = user
	s.log.Info("authenticated", zap.String("user", user), zap.String("client", ip.String()))
	return nil
}

// authFailure logs and counts one failed AUTH; r is the reply the
// client gets, as the mail log shows it.
func (s *session) authFailure(user, reason string, r *reply.Reply) {
	s.rejected++
	s.log.Info("authentication failed", zap.String("user", user), zap.String("reason", reason),
		zap.String("client", s.t.Facts.Conn.IP.String()))
	if s.checks != nil && s.checks.AuthFailure != nil {
		s.checks.AuthFailure(reason)
	}
	// Always event=rejected (a 454 lock-out too): fail2ban's moat-auth
	// filter reads these lines.
	client := s.t.Facts.Conn.IP.String()
	s.checks.mailLog().Log(maillog.Event{Kind: maillog.Rejected, ConnID: s.t.Facts.Conn.ID, Client: client,
		HELO: s.t.Facts.Conn.HELO, Reply: replyText(r), Verdict: "auth:" + reason, Stage: "auth", Reason: reason})
	s.checks.refused("auth", reason, maillog.Rejected, client)
}

// plainServer is the server side of PLAIN (RFC 4616 §2).
type plainServer struct {
	s     *session
	asked bool
}

func (p *plainServer) Next(resp []byte) ([]byte, bool, error) {
	if resp == nil && !p.asked {
		// No initial response: an empty challenge asks for it (RFC 4954 §4).
		p.asked = true
		return []byte{}, false, nil
	}
	authzid, authcid, passwd, err := parsePlain(resp)
	if err != nil {
		return nil, false, p.s.authMalformed(sasl.Plain, err)
	}
	return nil, true, p.s.checkPassword(authzid, authcid, passwd)
}

// parsePlain splits a PLAIN message, RFC 4616 §2:
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd
//	authcid = 1*SAFE, passwd = 1*SAFE, SAFE = UTF8 but NUL
//
// So exactly two NULs, a non-empty identity and password, all UTF-8.
func parsePlain(b []byte) (authzid, authcid, passwd string, err error) {
	f := bytes.SplitN(b, []byte{0}, 4)
	switch {
	case len(f) != 3:
		return "", "", "", fmt.Errorf("PLAIN message has %d NUL-separated fields, want 3", len(f))
	case len(f[1]) == 0:
		return "", "", "", errors.New("PLAIN message has an empty authentication identity")
	case len(f[2]) == 0:
		return "", "", "", errors.New("PLAIN message has an empty password")
	case !utf8.Valid(b):
		return "", "", "", errors.New("PLAIN message is not UTF-8")
	}
	return string(f[0]), string(f[1]), string(f[2]), nil
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): "Username:" and "Password:" challenges.
// A user name that is empty or holds a NUL, and a password that holds a
// NUL, are malformed as in PLAIN.
type loginServer struct {
	s    *session
	user string
	step int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if len(resp) == 0 {
			return []byte("Username:"), false, nil
		}
		// An initial response carries the user name.
		fallthrough
	case 1:
		if len(resp) == 0 || bytes.IndexByte(resp, 0) >= 0 {
			return nil, false, l.s.authMalformed(sasl.Login, errors.New("LOGIN user name empty or with NUL"))
		}
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		if bytes.IndexByte(resp, 0) >= 0 {
			return nil, false, l.s.authMalformed(sasl.Login, errors.New("LOGIN password with NUL"))
		}
		return nil, true, l.s.checkPassword("", l.user, string(resp))
	}
	return nil, false, l.s.authMalformed(sasl.Login, errors.New("LOGIN response after the last step"))
}
