package smtpout

import "moat/relay/transport"

// Chained transactions. RFC 2920 §3.1 lets the transfer of a message
// open a command group: the MAIL of the next transaction may follow the
// final dot of the one before, without waiting for its reply.
//
// When every session to a destination is in use, a delivery waiting for
// one registers as a rider (limiter.acquireOrRide). A session about to
// send the final dot of its message claims the longest-waiting rider,
// if the server pipelines and the session may carry one more message,
// and writes the rider's XFORWARD, MAIL, RCPT and DATA commands after
// the dot, in the same write. Once the reply to the dot has come, and
// the session stays usable, the delivery it was serving hands the
// session, with its slot, to the rider, which reads the replies to its
// commands and sends its message (session.carry). Back to back, each
// message then costs one round trip and one write instead of two.
//
// Nothing of a rider's message is sent before it holds the session, so
// whatever goes wrong before then costs no duplicate: when the session
// fails or the server closes it (421) after the dot, the rider is handed
// nil and waits for a session as before; when the first reply to its
// commands never comes, carry reports the session stale and the rider
// tries a new one (deliverChunk), as with a dead pooled session.

// claimRider claims a rider for this session's destination and builds
// its commands, or returns nil: not with LMTP (one reply per recipient
// after the dot), not without PIPELINING, not past MaxMessagesPerConn,
// and not for a message this session would refuse or convert (the rider
// then finds that out on its own).
func (s *session) claimRider() *rider {
	if s.lim.noChain || s.lmtp || !s.pipeline || s.used >= s.maxUsed {
		return nil
	}
	r := s.lim.claim(s.key)
	if r == nil {
		return nil
	}
	if bad, err := s.refuse(r.msg, r.rcpts); err != nil || len(bad) > 0 {
		handBack(r)
		return nil
	}
	if need, err := s.needs(r.msg); err != nil || need != 0 {
		// To be converted first (sevenbit.go): it goes on its own.
		handBack(r)
		return nil
	}
	r.g = s.commands(r.msg, r.rcpts, false)
	return r
}

// handBack returns a claimed rider to waiting for a session.
func handBack(r *rider) {
	if r != nil {
		r.g = nil
		r.handed <- nil
	}
}

// handOn gives s, and its slot, to the rider it carries; false when it
// carries none.
func (s *session) handOn() bool {
	r := s.next
	if r == nil {
		return false
	}
	s.next = nil
	r.handed <- s
	return true
}

func newRider(key string, msg *transport.Message, rcpts []string) *rider {
	return &rider{key: key, msg: msg, rcpts: rcpts, handed: make(chan *session, 1)}
}
