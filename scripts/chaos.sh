#!/usr/bin/env bash
# make chaos: builds moat once and runs the crash test (tag chaos): moat is
# killed with SIGKILL CHAOS_CYCLES times (default 20) while CHAOS_MESSAGES
# messages (default 1000) are sent and delivered, and every message that got
# a 250 must arrive. CI: CHAOS_CYCLES=5 CHAOS_MESSAGES=300.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build
MOAT_BIN=bin/moat go test -tags chaos -count=1 -timeout 15m ${CHAOS_FLAGS:--v} ./test/chaos/...
