package gateway

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"go.uber.org/zap"

	"moat/gateway/smtpd"
	"moat/internal/maillog"
	"moat/internal/reply"
)

// Authenticator checks submission credentials and says which addresses a
// user may send as (mailbox.Directory).
type Authenticator interface {
	Authenticate(addr, password string) (bool, error)
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
		return sasl.NewPlainServer(s.checkPassword), nil
	case sasl.Login:
		return &loginServer{check: s.checkPassword}, nil
	}
	return nil, reply.AuthUnknownMechanism
}

// checkPassword verifies one credential under the limiter. The password
// is never logged.
func (s *session) checkPassword(authzid, user, pass string) error {
	ip := s.t.Facts.Conn.IP
	user = strings.ToLower(strings.TrimSpace(user))
	if authzid != "" && !strings.EqualFold(authzid, user) {
		// RFC 4616 §2: we do not let one user act for another.
		s.authFailure(user, "authzid", errAuthzid)
		return errAuthzid
	}
	lim := s.checks.authLimiter()
	if lim != nil {
		delay, err := lim.BeforeAuth(ip, user)
		if err != nil {
			s.authFailure(user, "locked", reply.From(err, s.t.Facts.Conn.ID))
			return reply.From(err, s.t.Facts.Conn.ID)
		}
		if delay > 0 {
			time.Sleep(delay)
		}
	}
	ok, err := s.state.Users.Authenticate(user, pass)
	if err != nil {
		s.log.Warn("authentication backend failed", zap.String("user", user), zap.Error(err))
		return errAuthTemp
	}
	if !ok {
		if lim != nil {
			lim.AuthFailed(ip, user)
		}
		s.authFailure(user, "bad_password", reply.New(535, 7, 8, "Authentication credentials invalid"))
		return reply.AuthFailed
	}
	if lim != nil {
		lim.AuthSucceeded(ip, user)
	}
	s.t.Facts.Conn.AuthUser = user
	s.log.Info("authenticated", zap.String("user", user), zap.String("client", ip.String()))
	return nil
}

func (s *session) authFailure(user, reason string, r *reply.Reply) {
	s.rejected++
	s.log.Info("authentication failed", zap.String("user", user), zap.String("reason", reason),
		zap.String("client", s.t.Facts.Conn.IP.String()))
	if s.checks != nil && s.checks.AuthFailure != nil {
		s.checks.AuthFailure(reason)
	}
	if ml := s.checks.mailLog(); ml != nil {
		ml.Log(maillog.Event{Kind: maillog.Rejected, ConnID: s.t.Facts.Conn.ID, Client: s.t.Facts.Conn.IP.String(),
			HELO: s.t.Facts.Conn.HELO, Reply: fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text), Verdict: "auth:" + reason})
	}
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): "Username:" and "Password:" challenges.
type loginServer struct {
	check func(authzid, user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if len(resp) > 0 { // initial response carries the user name
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check("", l.user, string(resp))
	}
	return nil, false, errors.New("unexpected LOGIN response")
}

// headerAddresses returns the addresses of an address-list header value
// (RFC 5322 §3.4); an unparsable value yields itself, which then matches
// no owned address.
func headerAddresses(v string) []string {
	list, err := mail.ParseAddressList(v)
	if err != nil || len(list) == 0 {
		return []string{v}
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.Address
	}
	return out
}
