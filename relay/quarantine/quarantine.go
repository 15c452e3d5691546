// Package quarantine owns the quarantine: a second spool,
// <data_dir>/quarantine, that holds the messages a rule set aside
// (action quarantine), and the two decisions an operator takes on them:
// release (deliver after all, through the delivery spool) and delete.
//
// The daemon holds both spools open and locked; it serves these
// operations through its admin API with a *Quarantine. When no daemon
// runs, the CLI opens the spools itself (OpenOffline, ReleaseOffline):
// their locks then prove that no daemon is using them.
//
// A release keeps the no-loss promise (ARCHITECTURE.md): the copy in the
// delivery spool is durable before the quarantined copy is removed.
package quarantine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"moat/relay/spool"
)

// Dir returns the quarantine directory of a data_dir.
func Dir(dataDir string) string { return filepath.Join(dataDir, "quarantine") }

// Quarantine is the quarantine spool of a running daemon joined to its
// delivery spool and its queue manager.
type Quarantine struct {
	q, main *spool.Spool
	notify  func(id string)
	// mu serializes release and delete, so that two operators releasing
	// the same message at once queue it once.
	mu sync.Mutex
	// released, when set, is told each release (see OnRelease).
	released Released
	maxBytes int64
}

// Released is told a message that was released: its envelope as
// released (the new queue id) and its bytes. It runs after the release
// succeeded and cannot fail it; it should not block for long (the daemon
// learns the message as ham, bounded by its own timeout).
type Released func(ctx context.Context, env *spool.Envelope, raw []byte)

// DefaultHookMaxBytes bounds the bytes read for a Released hook when no
// bound is given.
const DefaultHookMaxBytes = 64 << 20

// OnRelease sets the hook told every later release; a message larger
// than maxBytes (<= 0: DefaultHookMaxBytes) is released without it.
// Call it before serving.
func (q *Quarantine) OnRelease(fn Released, maxBytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released, q.maxBytes = fn, maxBytes
}

// readBounded reads message id of sp when it is at most max bytes; nil
// otherwise.
func readBounded(sp *spool.Spool, id string, max int64) []byte {
	if max <= 0 {
		max = DefaultHookMaxBytes
	}
	r, err := sp.Open(id)
	if err != nil {
		return nil
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil || int64(len(b)) > max {
		return nil
	}
	return b
}

// releaseThen releases message id (Release) and, when fn is set and the
// message was queued, tells fn. The bytes are read before the release
// (which removes the quarantined copy).
func releaseThen(ctx context.Context, q, main *spool.Spool, id string, fn Released, max int64, notify func(string)) (string, error) {
	var raw []byte
	if fn != nil {
		raw = readBounded(q, id, max)
	}
	newID, err := Release(ctx, q, main, id, time.Now())
	var env *spool.Envelope
	if newID != "" && fn != nil && raw != nil {
		// before the queue manager hears of it (and may deliver it)
		env, _ = main.Get(newID)
	}
	if newID != "" && notify != nil {
		notify(newID)
	}
	if env != nil {
		fn(ctx, env, raw)
	}
	return newID, err
}

// New joins the quarantine spool q, the delivery spool main and the
// queue manager's Notify. notify may be nil (the queue's periodic scan
// then finds a released message).
func New(q, main *spool.Spool, notify func(id string)) *Quarantine {
	return &Quarantine{q: q, main: main, notify: notify}
}

// List returns the envelopes of the quarantined messages.
func (q *Quarantine) List() ([]*spool.Envelope, error) { return q.q.List() }

// Len is the number of quarantined messages.
func (q *Quarantine) Len() (int, error) { return q.q.Len() }

// Get returns one quarantined message's envelope.
func (q *Quarantine) Get(id string) (*spool.Envelope, error) { return q.q.Get(id) }

// Open returns one quarantined message's bytes.
func (q *Quarantine) Open(id string) (io.ReadCloser, error) { return q.q.Open(id) }

// Release moves message id into the delivery spool (see Release),
// notifies the queue manager and returns the new queue id.
func (q *Quarantine) Release(ctx context.Context, id string) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return releaseThen(ctx, q.q, q.main, id, q.released, q.maxBytes, q.notify)
}

// Delete removes message id without notice to anyone.
func (q *Quarantine) Delete(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.q.Remove(id)
}

// Release moves message id from the quarantine spool q into the delivery
// spool main under a new id, and returns that id. The copy in main is
// made durable first (spool.Put returns only after its fsyncs), and only
// then is the quarantined copy removed: a crash between the two leaves
// the message in both places, released twice at worst (a duplicate),
// never lost. When only the removal fails, the new id is returned with
// the error: the message is queued and still shown in quarantine.
//
// The released envelope keeps sender, recipients (still pending; their
// routes as decided at RCPT) and client details, with its delivery state
// reset, and Received set to now: the queue's maximum age counts from
// the release, not from the arrival in quarantine (the Received header
// in the message still shows the arrival). The caller notifies the queue
// manager.
func Release(ctx context.Context, q, main *spool.Spool, id string, now time.Time) (string, error) {
	env, err := q.Get(id)
	if err != nil {
		return "", err
	}
	msg, err := q.Open(id)
	if err != nil {
		return "", err
	}
	defer msg.Close()
	rel := env.Clone()
	rel.ID = main.NewID()
	rel.Received = now
	rel.Attempts, rel.NextAttempt, rel.LastError = 0, time.Time{}, ""
	rel.Held, rel.DelayWarned = false, false
	rel.Quarantine = nil // the delivery queue's records carry no reason
	for i := range rel.Recipients {
		r := &rel.Recipients[i]
		if r.Status != spool.StatusPending {
			continue
		}
		r.Attempts, r.LastError, r.LastAttempt = 0, "", time.Time{}
	}
	if err := main.Put(ctx, rel, msg); err != nil {
		return "", fmt.Errorf("queueing %s: %w", id, err)
	}
	msg.Close()
	if err := q.Remove(id); err != nil && !errors.Is(err, spool.ErrNotFound) {
		return rel.ID, fmt.Errorf("queued as %s, but removing it from quarantine failed: %w", rel.ID, err)
	}
	return rel.ID, nil
}

// ErrNoQuarantine is returned by OpenOffline when dir holds no
// quarantine.
var ErrNoQuarantine = errors.New("there is no quarantine")

// OpenOffline opens the quarantine at dir read-write, for use when no
// daemon runs. It never creates one (a wrong data_dir must not grow a
// quarantine), and fails when the daemon holds the spool's lock.
func OpenOffline(dir string) (*spool.Spool, error) {
	if _, err := os.Stat(filepath.Join(dir, "queue")); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoQuarantine, err)
	}
	return spool.Open(dir, spool.Options{})
}

// ReleaseOffline releases message id from the quarantine at dir into the
// delivery spool at spoolDir, opening both (see OpenOffline); delivery
// starts when the daemon next runs.
func ReleaseOffline(ctx context.Context, dir, spoolDir, id string) (string, error) {
	return ReleaseOfflineThen(ctx, dir, spoolDir, id, nil, 0)
}

// ReleaseOfflineThen is ReleaseOffline that tells fn the released
// message (see Released, OnRelease).
func ReleaseOfflineThen(ctx context.Context, dir, spoolDir, id string, fn Released, maxBytes int64) (string, error) {
	q, err := OpenOffline(dir)
	if err != nil {
		return "", err
	}
	defer q.Close()
	main, err := spool.Open(spoolDir, spool.Options{})
	if err != nil {
		return "", err
	}
	defer main.Close()
	return releaseThen(ctx, q, main, id, fn, maxBytes, nil)
}

// DeleteOffline deletes message id from the quarantine at dir (see
// OpenOffline).
func DeleteOffline(dir, id string) error {
	q, err := OpenOffline(dir)
	if err != nil {
		return err
	}
	defer q.Close()
	return q.Remove(id)
}
