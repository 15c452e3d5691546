package main

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"moat/policy/cluster"
	"moat/relay/mtasts"
)

// TestMTASTSPolicyInRedis: with cluster.redis set, an MTA-STS policy one
// node cached is found by another (through policy/cluster's cache).
func TestMTASTSPolicyInRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	store := func() mtasts.Store {
		cfg := cluster.DefaultConfig()
		cfg.Redis.Address = mr.Addr()
		c, err := cluster.New(cfg, cluster.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		kv, err := c.Cache("mta-sts", 10)
		if err != nil {
			t.Fatal(err)
		}
		return mtasts.KVStore{KV: kv}
	}
	a, b := store(), store()
	ctx := context.Background()
	now := time.Now()
	a.Put(ctx, mtasts.Entry{Domain: "example.com", ID: "x1", Fetched: now, Expires: now.Add(time.Hour),
		Policy: &mtasts.Policy{Mode: mtasts.ModeEnforce, MX: []string{"mx.example.com"}, MaxAge: time.Hour}})
	e, ok := b.Get(ctx, "example.com")
	if !ok || e.ID != "x1" || !e.Policy.Match("mx.example.com") {
		t.Fatalf("%+v %v", e, ok)
	}
	if len(mr.Keys()) == 0 {
		t.Error("nothing in Redis")
	}
}
