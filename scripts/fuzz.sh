#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for $FUZZTIME each: a
# duration (10s) or an iteration count (1000x), as go test -fuzztime takes.
# Crashers land in the package's testdata/fuzz/<Target>/ and become
# regression inputs of `go test` from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
failed=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -h -o '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
	for t in $targets; do
		echo "== $pkg $t ($fuzztime)"
		if ! go test -run '^$' -fuzz "^${t}\$" -fuzztime "$fuzztime" "$pkg"; then
			failed=$((failed + 1))
		fi
	done
done
if [ "$failed" -gt 0 ]; then
	echo "fuzz: $failed target(s) failed"
	exit 1
fi
echo "fuzz: all targets ran clean"
