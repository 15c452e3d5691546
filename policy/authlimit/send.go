package authlimit

import (
	"fmt"
	"math"
	"time"

	"moat/internal/reply"
)

// Replies of the sending rates; AllowMessage returns copies with the
// numbers in the text.
var (
	// ReplyRateMessages: RFC 3463 §3.8 X.7.1 "delivery not authorized"
	// for now (450: try later).
	ReplyRateMessages = reply.New(450, 7, 1, "Sending rate limit reached")
	// ReplyRateRecipients: RFC 5321 §4.5.3.1.10 and RFC 3463 §3.6 X.5.3
	// "too many recipients" (452: try later).
	ReplyRateRecipients = reply.New(452, 5, 3, "Recipient rate limit reached")
	// ReplyTooManyForRate: more recipients in one message than an hour
	// allows, so waiting cannot help (RFC 3463 §3.6 X.5.3, permanent).
	ReplyTooManyForRate = reply.New(550, 5, 3, "Too many recipients for the hourly limit")
)

// bucket is a token bucket that holds one hour's allowance.
type bucket struct {
	tokens float64
	last   time.Time
}

// refill adds the tokens earned since last, up to capacity.
func (b *bucket) refill(capacity float64, now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(capacity, b.tokens+el.Hours()*capacity)
	}
	b.last = now
}

// wait is how long until the bucket holds need tokens.
func (b *bucket) wait(capacity, need float64) time.Duration {
	missing := need - b.tokens
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / capacity * float64(time.Hour))
}

// sendState is one user's pair of buckets.
type sendState struct {
	msgs, rcpts bucket
}

// AllowMessage is asked when an authenticated user's message is about to
// be accepted, with its number of recipients. It takes one message and
// rcpts recipients from the user's hourly allowance, or takes nothing and
// returns a *reply.Reply: 450 4.7.1 (messages), 452 4.5.3 (recipients),
// or 550 5.5.3 when rcpts alone exceeds recipients_per_hour.
func (l *Limiter) AllowMessage(user string, rcpts int) error {
	m, r := l.send.MessagesPerHour, l.send.RecipientsPerHour
	if m == 0 && r == 0 {
		return nil
	}
	rcpts = max(rcpts, 0)
	if r > 0 && rcpts > r {
		l.stats[reasonRateRecipients].Add(1)
		return ReplyTooManyForRate.Withf("Message has %d recipients, more than the %d an hour allowed", rcpts, r)
	}
	k, _ := userKey(user) // "" shares one bucket: the caller always knows the user
	now := l.now()
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	st, ok := l.rates.Get(k)
	if !ok {
		st = &sendState{msgs: bucket{tokens: float64(m), last: now}, rcpts: bucket{tokens: float64(r), last: now}}
		l.rates.Add(k, st)
	}
	if m > 0 {
		st.msgs.refill(float64(m), now)
		if st.msgs.tokens < 1 {
			l.stats[reasonRateMessages].Add(1)
			return ReplyRateMessages.Withf("Sending rate limit of %d messages an hour reached, try again in %s",
				m, roundUp(st.msgs.wait(float64(m), 1)))
		}
	}
	if r > 0 {
		st.rcpts.refill(float64(r), now)
		if st.rcpts.tokens < float64(rcpts) {
			l.stats[reasonRateRecipients].Add(1)
			return ReplyRateRecipients.Withf("Sending rate limit of %d recipients an hour reached, try again in %s",
				r, roundUp(st.rcpts.wait(float64(r), float64(rcpts))))
		}
	}
	if m > 0 {
		st.msgs.tokens--
	}
	if r > 0 {
		st.rcpts.tokens -= float64(rcpts)
	}
	return nil
}

// roundUp shows a wait to the next whole second (under a minute) or minute.
func roundUp(d time.Duration) string {
	if d < time.Minute {
		s := max((d+time.Second-1)/time.Second, 1)
		return fmt.Sprintf("%d s", s)
	}
	return fmt.Sprintf("%d min", (d+time.Minute-1)/time.Minute)
}
