// Package spool is moat's durable queue: every message accepted with
// "250 2.0.0 Ok: queued as <id>" (RFC 5321 §4.1.1.4, §6.1: once the server
// has accepted the message it has taken responsibility for delivering it or
// reporting the failure) is held here until the queue manager has handed
// each recipient on or bounced it.
//
// # Layout
//
// Under the spool directory:
//
//	lock           flock(2)-ed by the one read-write Spool (a second daemon fails to open)
//	tmp/           files being written; anything here at Open is garbage and removed
//	queue/<id>.msg the message bytes, exactly as received (CRLF), never rewritten
//	queue/<id>.env the envelope record (JSON, versioned, at most MaxEnvelopeSize bytes)
//	corrupt/       records set aside at Open because they did not parse or had no partner
//
// queue/ is one flat directory: ext4 and XFS index large directories, and a
// single directory lets one fsync commit every rename of a batch. Ids are
// [0-9A-Za-z], 16 characters, time-ordered (microseconds, base 62) with a
// counter and random suffix, so a listing sorts roughly by arrival.
//
// # The envelope file is the commit record
//
// A message exists for the queue if and only if queue/<id>.env exists. Put
// makes it exist as the very last step, and only after the .msg beside it
// is durable:
//
//  1. Put writes tmp/<id>.msg.N and tmp/<id>.env.M.
//  2. It makes their bytes durable: with SyncFiles (default) an fsync of
//     each file from the Put's own goroutine (concurrent fsyncs share one
//     journal commit in ext4/XFS); with SyncFS one syncfs(2) of the spool's
//     filesystem shared by every Put waiting at that moment (group commit).
//  3. It renames tmp/<id>.msg.N → queue/<id>.msg, then tmp/<id>.env.M →
//     queue/<id>.env.
//  4. It joins a group for ONE fsync of queue/: the fsync must have
//     STARTED after the Put's renames, and covers every rename made before
//     it started, so one directory fsync commits a whole batch.
//  5. Only then does Put return nil, and the gateway send 250.
//
// Crash argument, at every instant:
//
//   - before 4 completes, Put has not returned nil, so nothing was
//     acknowledged. On disk there may be files in tmp/ (removed at Open), a
//     queue/<id>.msg without its .env (renamed, dir not yet synced: set aside
//     to corrupt/ at Open, never delivered: it was never acknowledged), or
//     even a complete pair whose rename reached the disk early; that one is
//     delivered though the client saw no 250 and will retry: a duplicate,
//     never a loss.
//   - after 4, the .env and .msg names are in a synced directory and their
//     bytes were synced in 2 before the names existed, so no crash can
//     yield a name pointing at missing or short data.
//
// Update replaces the envelope the same way (temp file, sync, rename over,
// directory sync) through the same group syncs: a crash leaves either the
// old or the new record, never a mix. Losing an un-synced Update can at
// worst repeat a delivery attempt (a duplicate). Remove unlinks the .env
// first (the message leaves the queue atomically), then the .msg; a crash
// between the two leaves an orphan .msg that Open sets aside.
//
// Open never deletes a message: a record that does not parse, is larger
// than MaxEnvelopeSize, or has no .msg is moved to corrupt/ for the operator.
//
// # Group commit
//
// A group sync (group.go) has one leader that runs the sync while later
// callers queue for the next one; a caller is released only by a sync that
// started after its own writes. With SyncFiles a Put costs two file fsyncs
// that the journal merges with those of concurrent Puts, two renames and a
// share of one directory fsync; with SyncFS a share of one syncfs and of
// one directory fsync. While one group's directory fsync runs the next
// group's data syncs proceed (a two-stage pipeline). SyncEach (per-message
// fsync of each file and of the directory) is kept for comparison.
// BenchmarkPut measures the modes; on a shared 2-core ext4 VM, 2 KiB
// messages, 20 writers: SyncFiles ≈ 2,300 msg/s, SyncEach ≈ 1,600,
// SyncFS ≈ 1,200 (the root filesystem was busy with other writers).
//
// Disk full (ENOSPC, EDQUOT) comes back from Put as an error matching
// ErrNoSpace, so the gateway can answer 452 4.3.1 (RFC 3463 §3.4 "mail
// system full"); the temp files are removed and nothing becomes visible.
package spool
