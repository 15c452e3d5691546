#!/usr/bin/env bash
# make interop: installs the peers (scripts/peers.sh), builds moat once,
# and runs the interop tests (tag interop) against smtp-source/smtp-sink,
# swaks and Dovecot LMTP, each started by its test on a free 127.0.0.1 port;
# then prints moat's and SpamAssassin's verdicts side by side (a report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/peers.sh
make --no-print-directory build
MOAT_PEERS_REQUIRED=1 MOAT_BIN=bin/moat go test -tags interop -count=1 -timeout 10m ${INTEROP_FLAGS:--v} ./test/interop/...
# moat and SpamAssassin side by side over the repository's test messages:
# a report, never a failure of the run.
bash scripts/sa-compare.sh || echo "sa-compare: no report (exit $?)"
