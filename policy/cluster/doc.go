// Package cluster shares moat's short-lived policy state between the
// nodes of a cluster through one Redis server (github.com/redis/go-redis/v9):
// the rule engine's rate limits and greylist triplets (RFC 6647 §2), the
// connection guard's per-IP and per-prefix connection rate buckets and its
// pregreet pass cache, the submission listeners' failed-AUTH counts and
// lock-outs (policy/authlimit), and a generic TTL cache (e.g. for
// recipient callaheads).
//
// Redis is an optimisation, never a dependency of mail flow. Every call
// runs under a short deadline (cluster.redis.timeout, default 50ms); on an
// error or a timeout the caller gets the answer of node-local state (the
// same bounded LRUs a single node uses) and the Client skips Redis for a
// short back-off (cluster.redis.backoff, default 1s) instead of paying the
// timeout on every call. A change between up and down is logged once and
// reported through Options.OnStateChange (for a metric) and Stats. So an
// SMTP session is never held up on Redis for longer than the timeout, and
// a Redis outage turns the cluster into independent nodes, each as strict
// as a single moat.
//
// What stays node-local, on purpose: the count of live connections
// (guard per_ip/per_prefix max_concurrent and max_connections). A live
// connection belongs to one node's sockets; a shared counter would have to
// be decremented by the node that holds it, and a node that crashes or is
// cut off from Redis would leave counts that never come down and lock
// clients out until they expire. Connection rates, greylist triplets and
// pregreet passes are facts about the past with a natural expiry, so they
// share safely.
//
// Keys are cluster.redis.key_prefix (default "moat:") followed by a kind
// ("rl:" limiter windows, "gl:" greylist triplets, "tb:" guard token
// buckets, "pg:" pregreet passes, "af:" and "al:" failed-AUTH counts and
// lock-outs, "c:<name>:" caches) and the caller's
// key; a key longer than 200 bytes is replaced by its SHA-256. Times
// stored in Redis come from the nodes' clocks, which must be kept in sync
// (NTP); a clock behind the others only makes its node stricter.
//
// This package is a leaf: it imports neither rules nor gateway. The
// types it satisfies (store.Limiter, store.Greylister, guard.SharedState,
// authlimit.Shared) use only standard and policy/store types, so cmd/moat
// plugs a *Client's views in directly.
//
// The test against a real redis-server is tagged interop and runs when
// $REDIS_SERVER names the binary.
package cluster
