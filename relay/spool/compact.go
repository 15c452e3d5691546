package spool

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sync"
	"time"
)

func (s *Spool) idLock(id string) *sync.Mutex {
	h := fnv.New32a()
	io.WriteString(h, id)
	return &s.idLocks[h.Sum32()%idStripes]
}

// compact rewrites the live messages of every segment sealed before
// now-CompactAge whose live messages fill less than a quarter of it, so
// that the segment dies and is deleted: a few long-lived messages do not
// pin whole segments. It runs in the reaper goroutine.
func (s *Spool) compact(now time.Time) {
	type cand struct {
		g   *segment
		ids []string
	}
	s.mu.Lock()
	live := map[*segment]int64{}
	ids := map[*segment][]string{}
	for id, e := range s.index {
		if e.data.sealed && !e.data.gone {
			live[e.data] += e.head + e.n
			ids[e.data] = append(ids[e.data], id)
		}
	}
	var todo []cand
	for g, n := range live {
		if now.Sub(g.sealedAt) >= s.opt.CompactAge && n*4 < g.size {
			todo = append(todo, cand{g, ids[g]})
		}
	}
	s.mu.Unlock()
	for _, c := range todo {
		for _, id := range c.ids {
			if err := s.move(id, c.g); err != nil {
				break // kept as it is; tried again at the next tick
			}
		}
	}
}

// move writes message id, if it still lives in g, again to the current
// segment as a Put record with its current envelope, and points the index
// at the copy once a sync covers it. The id lock keeps Update and Remove
// of id out meanwhile, so the copy never overtakes a newer state.
func (s *Spool) move(id string, from *segment) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	lk := s.idLock(id)
	lk.Lock()
	defer lk.Unlock()
	s.mu.Lock()
	e := s.index[id]
	if e == nil || e.data != from {
		s.mu.Unlock()
		return nil
	}
	env, path, off, n := e.env, from.path, e.off, e.n
	s.mu.Unlock()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := s.stage(io.NewSectionReader(f, off, n), n)
	if err != nil {
		return err
	}
	defer m.close()
	if m.n != n {
		return fmt.Errorf("spool: compacting %s: short read", id)
	}
	_, b, err := encodeClone(env)
	if err != nil {
		return err
	}
	g, noff, ch, err := s.append(kindPut, id, b, m, 2, true)
	if err != nil {
		return err
	}
	err = <-ch
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// The copy may reach the disk all the same (it equals the
		// original, so replaying it changes nothing), but a later
		// tombstone would pin only the original: keep g, references
		// and all, until the next Open replays everything in order.
		return err
	}
	s.release(e.data, 1)
	s.release(e.state, 1)
	e.data, e.state, e.off, e.head = g, g, noff, int64(hdrSize+len(id)+len(b))
	return nil
}
