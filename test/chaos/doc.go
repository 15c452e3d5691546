// Package chaos holds moat's crash test: moat is killed with SIGKILL at
// random moments while clients send and the queue delivers, restarted on
// the same data_dir, and at the end every message that got a 250 must
// have reached its destination (a recording sink, or a local Maildir with
// no truncated file). Built only with the chaos tag (`make chaos`), so
// `go test ./...` skips it. This is moat's first promise (ARCHITECTURE.md), tested
// from outside the process.
package chaos
