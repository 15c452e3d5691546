package rules

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Reload compiles the rule set of cfg and swaps it into e. On error the
// engine keeps its current set and the error names every problem.
func Reload(cfg Config, opt LoadOptions, e *Engine) error {
	s, err := Load(cfg, opt)
	if err != nil {
		return err
	}
	e.Swap(s)
	return nil
}

// WatchOptions tunes Watch.
type WatchOptions struct {
	Load     LoadOptions
	Debounce time.Duration // quiet time before reloading; default 250ms
	// OnReload is called after each successful reload (may be nil).
	OnReload func(*Set)
}

// Watch reloads the rules when a rule file, a list file or a directory
// holding them changes (fsnotify, debounced), until ctx ends. A failed
// reload is passed to onErr and the old set stays in force. Watching the
// directories catches editors that replace files by rename.
func Watch(ctx context.Context, cfg Config, e *Engine, opt WatchOptions, onErr func(error)) error {
	if opt.Debounce <= 0 {
		opt.Debounce = 250 * time.Millisecond
	}
	if onErr == nil {
		onErr = func(error) {}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	dirs := map[string]bool{}
	for _, g := range cfg.Paths {
		dirs[globDir(g)] = true
	}
	for _, l := range cfg.Lists {
		dirs[filepath.Dir(l)] = true
	}
	var errs []error
	for d := range dirs {
		if err := w.Add(d); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(dirs) && len(dirs) > 0 {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		onErr(err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(opt.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			onErr(err)
		case <-timer.C:
			s, err := Load(cfg, opt.Load)
			if err != nil {
				onErr(err)
				continue
			}
			e.Swap(s)
			if opt.OnReload != nil {
				opt.OnReload(s)
			}
		}
	}
}

// globDir returns the directory part of a glob before its first pattern
// element.
func globDir(g string) string {
	d := filepath.Dir(g)
	for strings.ContainsAny(d, "*?[") {
		d = filepath.Dir(d)
	}
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d
	}
	return "."
}
