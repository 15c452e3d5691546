package main

import (
	"path/filepath"

	"moat/relay/dane"
	"moat/relay/mtasts"
	"moat/relay/smtpout"
)

// outboundTLS holds what MX delivery's TLS policies need across reloads:
// the MTA-STS policy cache and the DANE resolver (issue 26). Both are
// made once, at start-up (mta_sts and dane are not reloaded).
type outboundTLS struct {
	mtasts *mtasts.Manager // nil: mta_sts.enabled false
	store  *mtasts.BoltStore
	dane   *dane.Resolver // nil: dane.enabled false
}

// newOutboundTLS builds them: MTA-STS policies are cached in Redis when
// cluster.redis is set (shared by the fleet), else in
// <data_dir>/mtasts.db.
func (a *app) newOutboundTLS(cfg *Config) (*outboundTLS, error) {
	o := &outboundTLS{}
	if cfg.DANE.Enabled {
		o.dane = dane.NewResolver(cfg.DNS.Servers, cfg.DANE.Timeout)
	}
	if !cfg.MTASTS.Outbound.Enabled {
		return o, nil
	}
	var store mtasts.Store
	if a.cluster != nil {
		c, err := a.cluster.Cache("mta-sts", cfg.MTASTS.Outbound.CacheSize)
		if err != nil {
			return nil, err
		}
		store = mtasts.KVStore{KV: c}
	} else {
		st, err := mtasts.OpenBolt(filepath.Join(cfg.DataDir, "mtasts.db"), cfg.MTASTS.Outbound.CacheSize)
		if err != nil {
			return nil, err
		}
		o.store, store = st, st
	}
	m, err := mtasts.NewManager(mtasts.Options{
		Resolver:  a.resolver,
		Fetcher:   mtasts.NewFetcher(mtasts.FetcherOptions{Timeout: cfg.MTASTS.Outbound.FetchTimeout}),
		Store:     store,
		CacheSize: cfg.MTASTS.Outbound.CacheSize,
	})
	if err != nil {
		if o.store != nil {
			o.store.Close()
		}
		return nil, err
	}
	o.mtasts = m
	return o, nil
}

// apply sets the MX delivery options.
func (o *outboundTLS) apply(cfg *Config, opt *smtpout.Options) {
	if o == nil {
		return
	}
	opt.TLSPolicies = cfg.TLSPolicy.Normalized()
	opt.MTASTS = o.mtasts
	opt.DANE = o.dane
}

func (o *outboundTLS) close() {
	if o != nil && o.store != nil {
		o.store.Close()
	}
}
