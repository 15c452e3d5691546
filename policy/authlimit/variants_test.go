package authlimit

import (
	"net/netip"
	"testing"
)

// userVariants are spellings of bob@moat.test that the mailbox directory
// resolves to the same user, or that look like it (issue 27 item 3): each
// must share bob's lock-out and his sending buckets.
var userVariants = []string{
	"bob@moat.test",
	"BOB@MOAT.TEST",
	"Bob@Moat.Test",
	"bob@moat.test.",
	"BOB@MOAT.TEST.",
	" bob@moat.test ",
	"\tbob@moat.test.\t",
	"bob@ｍｏａｔ.test",       // fullwidth domain (UTS-46 maps it)
	"bob@moat。test",       // ideographic full stop
	"bob@moat．test",       // fullwidth full stop
	"bob@mo\u00adat.test", // soft hyphen (UTS-46 drops it)
	"ｂｏｂ@moat.test",       // fullwidth local part (NFKC)
	"\u00a0bob@moat.test", // no-break space around
}

func TestUserVariantsShareLockout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Auth.DelayBase = 0
	ip := netip.MustParseAddr("192.0.2.77")
	for _, locker := range userVariants {
		l, _ := newLimiter(t, cfg)
		for range cfg.Auth.PerUser.MaxFailures {
			l.AuthFailed(netip.Addr{}, locker)
		}
		for _, v := range userVariants {
			_, err := l.BeforeAuth(ip, v)
			wantLocked(t, err, "locked by "+locker+", tried as "+v)
		}
	}
}

// A failure under any variant counts toward the one user's threshold.
func TestUserVariantsCountTogether(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Auth.DelayBase = 0
	cfg.Auth.PerUser.MaxFailures = len(userVariants)
	l, _ := newLimiter(t, cfg)
	for _, v := range userVariants {
		if _, err := l.BeforeAuth(netip.Addr{}, "bob@moat.test"); err != nil {
			t.Fatalf("locked before %d failures: %v", len(userVariants), err)
		}
		l.AuthFailed(netip.Addr{}, v)
	}
	_, err := l.BeforeAuth(netip.Addr{}, "bob@moat.test")
	wantLocked(t, err, "after one failure per variant")
}

func TestUserVariantsShareSendBucket(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Send.MessagesPerHour = len(userVariants)
	l, _ := newLimiter(t, cfg)
	for _, v := range userVariants {
		if err := l.AllowMessage(v, 1); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
	}
	for _, v := range userVariants {
		if err := l.AllowMessage(v, 1); err == nil {
			t.Fatalf("%q: a fresh bucket after the hour's %d messages", v, len(userVariants))
		}
	}
}
