package authlimit

// Reasons for a refusal or a failure, one counter each.
const (
	ReasonBadPassword    = "bad_password"    // AuthFailed was called
	ReasonLockedIP       = "locked_ip"       // BeforeAuth refused: the client is locked out
	ReasonLockedUser     = "locked_user"     // BeforeAuth refused: the user is locked out
	ReasonRateMessages   = "rate_messages"   // AllowMessage refused: messages an hour
	ReasonRateRecipients = "rate_recipients" // AllowMessage refused: recipients an hour
)

const (
	reasonBadPassword = iota
	reasonLockedIP
	reasonLockedUser
	reasonRateMessages
	reasonRateRecipients
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonBadPassword, ReasonLockedIP, ReasonLockedUser, ReasonRateMessages, ReasonRateRecipients,
}

// Reasons returns every reason, in a stable order (for metrics).
func Reasons() []string { return append([]string(nil), reasonNames[:]...) }

// Stats is a snapshot of the counters since New.
type Stats struct {
	// Failures counts by reason (the Reason… constants), every reason
	// present.
	Failures map[string]uint64
	// IPLockouts and UserLockouts count the lock-outs started.
	IPLockouts, UserLockouts uint64
}

// Stats returns the counters.
func (l *Limiter) Stats() Stats {
	s := Stats{Failures: make(map[string]uint64, numReasons)}
	for i, name := range reasonNames {
		s.Failures[name] = l.stats[i].Load()
	}
	s.IPLockouts = l.locks[0].Load()
	s.UserLockouts = l.locks[1].Load()
	return s
}
