#!/usr/bin/env bash
# sa-compare.sh: moat and SpamAssassin side by side over the test messages
# of the repository (rules/testdata/corpus: SpamAssassin's, rspamd's and
# enmime's test mail, each folder with its licence). For every message it
# prints moat's score and verdict (moat rules score with the shipped rule
# pack, offline: no DNS, no classifier) and SpamAssassin's (spamassassin
# -L: local tests only, no network, no Bayes, no auto-welcomelist), then
# the totals. A report, not a gate: it exits 0 whatever the verdicts, and
# every SpamAssassin run is bounded by a timeout.
#
#   bash scripts/sa-compare.sh            # needs spamassassin (scripts/peers.sh)
#   MOAT_BIN=bin/moat SA_TIMEOUT=60 bash scripts/sa-compare.sh
set -uo pipefail
cd "$(dirname "$0")/.."

corpus=rules/testdata/corpus
sa_timeout=${SA_TIMEOUT:-60}
moat=${MOAT_BIN:-bin/moat}

if ! command -v spamassassin >/dev/null 2>&1; then
	echo "sa-compare: spamassassin is not installed (bash scripts/peers.sh installs it); skipped"
	exit 0
fi
if [ ! -x "$moat" ]; then
	if ! timeout 600 go build -o "$moat" ./cmd/moat; then
		echo "sa-compare: could not build moat; skipped"
		exit 0
	fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The labels: SpamAssassin's spam/ and rspamd's spam-like test messages
# are spam, the rest (SpamAssassin's nice/, rspamd's ham, newsletter and
# transactional mail, enmime's parser tests) is ham.
: >"$work/spam.list"
: >"$work/ham.list"
while IFS= read -r f; do
	case "$f" in
	*/LICENSE* | */NOTICE | */SOURCES.md) continue ;;
	*/spamassassin/spam/* | */rspamd/gtube.eml | */rspamd/spam.eml | */rspamd/exe_attm.eml | */rspamd/bad_ext.*)
		echo "$PWD/$f" >>"$work/spam.list" ;;
	*) echo "$PWD/$f" >>"$work/ham.list" ;;
	esac
done < <(find "$corpus" -type f | sort)

cat >"$work/moat.yaml" <<EOF
data_dir: $work/data
rules:
  paths: ["$PWD/deploy/rules/*.yaml"]
  lists:
    allow_senders: $PWD/deploy/rules/allow-senders.txt
    deny_senders: $PWD/deploy/rules/deny-senders.txt
EOF

if ! timeout 300 "$moat" rules score --config "$work/moat.yaml" --spam "$work/spam.list" --ham "$work/ham.list" \
	--messages "$work/moat.jsonl" >"$work/moat.txt" 2>"$work/moat.err"; then
	echo "sa-compare: moat rules score failed:"
	cat "$work/moat.err"
	exit 0
fi

# SpamAssassin, one process a message: -L (local tests only), Bayes and
# the auto-welcomelist off, no user state written.
mkdir -p "$work/sa-home"
sa_one() {
	HOME="$work/sa-home" timeout "$sa_timeout" spamassassin -L -t \
		--cf='use_bayes 0' --cf='bayes_auto_learn 0' --cf='use_auto_whitelist 0' <"$1" 2>/dev/null |
		sed -n '/^$/q;/^X-Spam-Status:/,/^[^ \t]/p' | tr -d '\r\n\t' | sed 's/X-Spam-Status: *//'
}

printf '%-52s %-5s %8s %-20s %8s %s\n' message class moat "moat verdict" SA "SA verdict"
tot=0 moat_caught=0 sa_caught=0 agree=0 sa_failed=0
declare -A cls_tot cls_moat cls_sa
while IFS=$'\t' read -r path class score verdict; do
	status=$(sa_one "$path")
	sa_score=$(sed -n 's/.*score=\(-\{0,1\}[0-9.]*\).*/\1/p' <<<"$status")
	sa_verdict=no
	case "$status" in
	Yes,*) sa_verdict=spam ;;
	No,*) sa_verdict=ham ;;
	*) sa_verdict="failed"; sa_score="-"; sa_failed=$((sa_failed + 1)) ;;
	esac
	moat_is=ham
	case "$verdict" in reject | quarantine | junk | tagged | discard) moat_is=spam ;; esac
	tot=$((tot + 1))
	cls_tot[$class]=$((${cls_tot[$class]:-0} + 1))
	if [ "$moat_is" = spam ]; then
		moat_caught=$((moat_caught + 1))
		cls_moat[$class]=$((${cls_moat[$class]:-0} + 1))
	fi
	if [ "$sa_verdict" = spam ]; then
		sa_caught=$((sa_caught + 1))
		cls_sa[$class]=$((${cls_sa[$class]:-0} + 1))
	fi
	[ "$moat_is" = "$sa_verdict" ] && agree=$((agree + 1))
	printf '%-52s %-5s %8s %-20s %8s %s\n' "${path#"$PWD/$corpus/"}" "$class" "$score" "$verdict" "${sa_score:--}" "$sa_verdict"
done < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print("\t".join([d["path"], d["class"], "%.1f" % d.get("score", 0), d.get("verdict") or "unreadable"]))
' "$work/moat.jsonl" | sort)

echo
echo "totals: $tot messages; flagged as spam (refused, quarantined, junk or tagged) by moat $moat_caught, by SpamAssassin $sa_caught; same verdict on $agree"
for c in spam ham; do
	echo "  $c: ${cls_tot[$c]:-0} messages; moat flagged ${cls_moat[$c]:-0}, SpamAssassin flagged ${cls_sa[$c]:-0}"
done
[ "$sa_failed" -gt 0 ] && echo "  SpamAssassin gave no verdict (timeout or error) on $sa_failed message(s)"
echo "(a report, not a gate: moat offline with deploy/rules, no DNS; SpamAssassin -L, no Bayes)"
exit 0
