// Package rules owns moat's rule-file language: it loads YAML rule files,
// compiles and type-checks their conditions (github.com/expr-lang/expr
// against a typed environment of facts), evaluates them into a Verdict at
// each SMTP stage, applies the built-in authentication policy (RFC 7489
// §6.6.2) and score thresholds, and reloads rule sets atomically.
//
// Evaluation semantics (rules/README.md is the user-facing version):
//
//   - Files matched by rules.paths run in file-name order, rules top to
//     bottom; only the rules of the current stage run.
//   - Each fact is available from a stage on (rcpt only at the rcpt
//     stage); a condition that reads a fact not yet known is a load error.
//   - The first terminal action wins (accept, reject, tempfail, greylist,
//     discard, quarantine) and ends the stage. accept also skips the auth
//     policy and thresholds, and the gateway carries it to later stages
//     (Facts.Accepted). A greylist whose triplet already waited long enough
//     does not stop: evaluation continues.
//   - Non-terminal actions accumulate: score adds to the running score
//     (later conditions see it), add_header appends, route and redirect:
//     the last match wins (a route acts at every stage: the gateway gives
//     it to every recipient the stage covers, see gateway.Txn.applyRoute),
//     log only records the hit, junk marks the
//     message as spam (Verdict.Junk; a later terminal action still
//     decides).
//   - dry_run rules that match are recorded in Verdict.DryRunHits and
//     Explain and counted by the Observer, but never act (no score either).
//   - After the data-stage rules, when none decided: the auth policy
//     (DMARC reject/quarantine/temperror, SPF fail score), then the
//     thresholds: rules.score.reject (checked after every stage),
//     .greylist and .tag (after DATA; reaching tag marks junk, as the junk
//     action does). At the data stage Verdict.Tests lists the score and
//     junk rules of the whole transaction, for SpamHeaders (X-Spam-*).
//   - A rule that fails at run time (a division by zero, a limiter error)
//     turns the stage into 451 4.3.0 with an incident id and Verdict.Err;
//     it never accepts silently.
//   - Facts are the fields of the typed env (env.go), plus fact groups:
//     a FactGroup (built in, like attachments, or handed in through
//     LoadOptions.FactGroups by the checks that produce it) is one
//     top-level name whose value has the type of its Zero. At load a patch
//     turns the name into a call of a typed function (so member access is
//     type-checked as for the built-in facts); at run time that call
//     computes the group once per message (Compute, or the value a check
//     stored with Facts.SetGroup) and caches it in Facts, where
//     Engine.Group also reads it. Evaluation of rules that read no group
//     is unchanged.
//   - hits (Facts.Hits plus the rules matched earlier in this stage) lets
//     a rule combine others (meta rules).
//   - Every reply made here carries "[incident XXXXXXXXXX]"; the same id is
//     in Verdict.IncidentID for the log line (Explain).
package rules
