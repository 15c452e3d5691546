package main

import (
	"fmt"

	"moat/gateway"
	"moat/internal/dnsres"
	"moat/policy/bayes"
	"moat/policy/uribl"
	"moat/rules"
)

// contentChecks are the resources of the content fact groups (message
// analysis, URI blocklists, classifier), made once per process: the URI
// blocklist checker with its answer cache, and the classifier's store.
type contentChecks struct {
	opt   gateway.ContentOptions
	store bayes.Store // nil: no classifier
	// note says why the classifier is off in an offline run, if it is.
	note string
}

// newContentChecks builds the content checks of cfg. res asks the URI
// blocklists (nil: none). offline is moat rules test and score: stored
// mail is judged at the time it was received, and a classifier store
// held by a running daemon leaves the classifier off with a note instead
// of failing.
func newContentChecks(cfg *Config, res dnsres.Resolver, offline bool) (*contentChecks, error) {
	cc := &contentChecks{}
	if offline {
		cc.opt.Now = gateway.ReceivedTime
	}
	if res != nil && len(cfg.URIBL.Zones) > 0 {
		c, err := uribl.New(cfg.URIBL, res, uribl.Options{})
		if err != nil {
			return nil, err
		}
		cc.opt.URIBL = c
	}
	if cfg.Bayes.Enabled {
		store, where, err := openBayesStore(cfg, offline, liveRedisTimeout)
		switch {
		case err != nil && offline:
			cc.note = fmt.Sprintf("classifier off: %v", err)
		case err != nil:
			return nil, fmt.Errorf("bayes: %w", err)
		default:
			cc.store = store
			cc.opt.Bayes = bayes.New(store, cfg.Bayes.Options())
			if offline {
				cc.note = "classifier: " + where
			}
		}
	}
	return cc, nil
}

// factGroups are the content fact groups; a nil contentChecks gives them
// for type-checking only (moat rules check, check-config).
func (cc *contentChecks) factGroups() []rules.FactGroup {
	if cc == nil {
		return gateway.ContentFactGroups(gateway.ContentOptions{})
	}
	return gateway.ContentFactGroups(cc.opt)
}

// Close releases the classifier's store.
func (cc *contentChecks) Close() error {
	if cc == nil || cc.store == nil {
		return nil
	}
	return cc.store.Close()
}
