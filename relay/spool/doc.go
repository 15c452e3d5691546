// Package spool is moat's durable queue: every message accepted with
// "250 2.0.0 Ok: queued as <id>" (RFC 5321 §4.1.1.4, §6.1: once the server
// has accepted the message it has taken responsibility for delivering it or
// reporting the failure) is held here until the queue manager has handed
// each recipient on or bounced it.
//
// The spool is an append-only log of segment files with an in-memory
// index, written with group commit: N concurrent Puts cost one
// fdatasync, not 2N file creations, 2N fsyncs, 2N renames and a directory
// fsync as in the earlier file-per-message layout.
//
// # Layout
//
// Under the spool directory:
//
//	lock              flock(2)-ed by the one read-write Spool (a second daemon fails to open)
//	queue/<n>.seg     log segments, n = 16 hex digits, increasing, never reused
//	tmp/              staging of messages over 1 MiB (unlinked at once); emptied at Open
//	corrupt/          damaged segments (after salvage) and files in queue/ that are not segments
//
// Ids are [0-9A-Za-z], 16 characters, time-ordered (microseconds, base
// 62) with a random suffix, so a listing sorts roughly by arrival.
//
// # Record format
//
// A segment is a sequence of records, each (little endian):
//
//	magic u32 "TAOM" | hdrCRC u32 | kind u8 | idLen u8 | 0 u16 | envLen u32 |
//	msgLen u64 | msgCRC u32 | 0 u32 | segment number u64 | offset u64 |
//	id | envelope | message
//
// hdrCRC is CRC-32C (Castagnoli) of the header from kind on, the id and
// the envelope; msgCRC of the message; offset is where the record
// starts in its segment. The envelope is the versioned JSON
// record of ParseEnvelope (at most MaxEnvelopeSize bytes). Kinds:
//
//	put    envelope + message: the message enters the queue
//	state  envelope: the new state of a queued message (Update)
//	tomb   id only: the message left the queue (Remove)
//
// A record is valid only if every field is in bounds, both checksums
// match, the envelope parses and names the record's id, and the header
// names the segment and offset it is at: stale blocks that reappear in a
// crashed file's tail (ext4 without a journal may expose them) never pass
// as records, neither copies from a deleted segment nor from elsewhere.
//
// # Group commit
//
// Put reads the message (in memory up to 1 MiB, else into an unlinked
// temp file), then under one mutex appends its record at the tracked end
// of the current segment, and queues itself for the committer. One
// committer goroutine takes every record queued so far, issues ONE
// fdatasync of the current segment, and only then wakes their callers:
// no Put returns before a sync that started after its record was
// written has completed. Records appended during a sync form the next
// batch. Update is the same with a state record. Remove appends a tombstone
// and returns without waiting; the next batch's sync (at the latest the
// one at Close) makes it durable.
//
// The current segment is kept zero-filled 1 MiB ahead of its last record
// (written, not fallocated), so that a batch's fdatasync finds its blocks
// allocated and the file's length already durable: it writes the data and
// flushes the disk cache, with no journal commit for the growth. On ext4
// that halves the time and CPU of a sync. A record never starts with a
// zero byte, so the zeros read as the end of the log.
//
// A segment rolls at Options.SegmentSize (64 MiB): the old segment is
// cut back to its last record and fdatasynced in full, the new file
// created and the directory fsynced, once per segment, not per message.
// So every segment but the last is complete on disk. Without room for
// the zeros ahead (a full disk), the record is appended without them.
//
// On a write error (ENOSPC, EDQUOT → ErrNoSpace, RFC 3463 §3.4 "mail
// system full", 452 4.3.1) the segment is cut back to where the record
// began: nothing of it is visible, now or after a restart. If the cut or
// a sync fails the segment is never appended to again (the next record
// rolls) and the callers of that batch get the error; a Put that failed
// that way also appends a tombstone for its record, in case it reached the
// disk (the client was told to retry: at worst a duplicate).
//
// # Crash argument
//
// At every instant the disk holds: complete, synced segments; the current
// segment, whose bytes up to the last completed fdatasync are durable and
// whose tail after it may be any prefix of the records written since,
// then the zeros written ahead (or garbage, on ext4 without a journal); and maybe a new empty segment whose
// creation was not yet synced (no record is written into it before its
// directory fsync). A Put returned nil only after an fdatasync covering
// its record, so every acknowledged message is in the durable part. Open
// replays all segments in order: the last valid Put of an id sets its
// message, later state records replace its envelope, a tombstone removes
// it. An undecodable tail of the LAST segment is records whose callers
// never got nil: it is cut off, and so is a tail of zeros in any segment
// (one whose cut at roll failed). Undecodable bytes anywhere else
// (corruption, or a segment whose sync failed) make the segment damaged:
// every record after the damage is found again by magic and full
// verification, every parseable live message and every tombstone that
// still cancels a record elsewhere is written again, whole, to the new
// segment and synced, and only then is the damaged segment moved to
// corrupt/. Open never deletes a message that parses.
//
// What a crash can undo is never acknowledged-and-lost: an Update's state
// record is synced before Update returns; a tombstone not yet synced
// brings its message back after a restart, which is then delivered again
// (a duplicate, never a loss: the queue's at-least-once contract).
//
// # Reclaiming space
//
// The index counts, per segment, the live references into it: message
// data, latest envelope, and tombstones that cancel a record in another,
// still existing segment. A segment that is no longer current and has no
// reference is deleted by a background goroutine: unlink, directory
// fsync, and only then are the tombstones it pinned released, so a
// tombstone never disappears while the record it cancels can come back.
//
// Compaction: long-lived messages (deferred, held) would keep whole
// segments alive. A segment sealed for longer than Options.CompactAge (10
// minutes) whose live records fill under a quarter of it has its live
// messages written again (current envelope + message, one put record
// each, group-committed) to the current segment; the index then points at
// the copy and the old segment dies. Update and Remove of an id are
// serialized with its move (striped id locks), so a copy never overtakes
// a newer state. A crash mid-way leaves both copies: replay keeps the
// later one, which is identical. Worst case without compaction would be
// one segment per long-lived message; with it, live data is at least a
// quarter of the sealed segments older than CompactAge.
//
// # Reading
//
// Open(id) returns a section reader on the segment file (opened per
// call, so a segment deleted after its messages left stays readable by
// who opened it). OpenReadOnly scans the segments without the lock and
// without changing anything (torn and damaged records skipped) so that
// `moat queue list` works while the daemon runs; its List scans again.
//
// Any file in queue/ that is not a segment is set aside to corrupt/ at
// Open (never deleted), with the damaged segments.
package spool
