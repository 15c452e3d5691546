#!/usr/bin/env bash
# make bench: moat against Postfix and the ceiling, on loopback, in one go.
#
#   (a) moat relaying a relay domain to smtp-sink, with the full chain on:
#       SPF, DKIM verification and DMARC against the DNS stub serving the
#       sender domain's records, and the shipped rules of deploy/rules (content pack included)
#   (b) a private Postfix instance relaying the same domain to smtp-sink
#   (c) smtp-sink alone (the ceiling: the client talks to the sink itself)
#   (moat-base, on request) moat as in (a) with the baseline rule files
#       only (10- to 30-): beside (a), what the content pack costs
#   (moat-scan, on request) moat as in (a) plus the
#       four content scanners of issue 22 on loopback, each configured in
#       moat's scanners: (rspamd, SpamAssassin's spamd, clamd and
#       clamav-milter in front of it, all from Debian, offline: clamd on a
#       one-signature database, rspamd's DNS at the stub). Their CPU is
#       reported apart from moat's (bench/results/bench-scanners.csv).
#       BENCH_SCANNERS (types moat calls, default "clamd milter spamd
#       rspamd"), BENCH_SPAMD_CHILDREN (cores + 1), BENCH_SCAN_TIMEOUT (60s).
#
# Each case: bench/loadgen sends BENCH_MESSAGES messages of BENCH_SIZE bytes
# from BENCH_SESSIONS concurrent sessions (BENCH_PER_CONN messages per
# connection) and measures end-of-DATA→250 latency; the rate is messages
# divided by the time from the first connection to the last message counted
# by smtp-sink. CPU is utime+stime of the server's processes (/proc), memory
# the peak of their summed PSS sampled every 0.2 s. Then, as a
# cross-check with a client no one here wrote, Postfix's smtp-source sends
# the same count of the same signed message again (-F; one message per
# connection, as on port 25), measured the same way (to the sink, CPU).
#
# Profiling: BENCH_CASES=moat BENCH_MOAT_BIN=/tmp/moat-unstripped
# BENCH_PERF=/tmp/moat.perf bash scripts/bench.sh, then perf report -i FILE.
#
# BENCH_ROUNDS (3) rounds of every case, one after the other. Writes
# bench/results/bench.csv (one line per case and round),
# bench/results/bench.svg and prints a Markdown table of the medians and
# the ratios of each round. Every server listens on 127.0.0.1 only and is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=peers.sh
source scripts/peers.sh
peers_install

N=${BENCH_MESSAGES:-20000}
C=${BENCH_SESSIONS:-20}
SIZE=${BENCH_SIZE:-2048}
PER_CONN=${BENCH_PER_CONN:-10}
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-240}
CASES=${BENCH_CASES:-"postfix moat sink"}
# The machine's speed drifts by tens of percent over minutes: the cases
# run in rounds (all of them, then all again) and the report takes each
# ratio within a round and the median over rounds. moat runs between the
# two cases it is compared with, so that each ratio compares runs made
# one after the other (Postfix's run takes a minute; moat's and the
# sink's, seconds).
ROUNDS=${BENCH_ROUNDS:-3}
RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"

W=$(mktemp -d /tmp/moat-bench.XXXXXX)
chmod 755 "$W" # Postfix's and smtp-sink's users must reach their files
PIDS=()
PF_DIRS=()
cleanup() {
	local p d
	for d in "${PF_DIRS[@]}"; do postfix -c "$d/etc" stop >/dev/null 2>&1 || true; done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$W"
}
trap cleanup EXIT

echo "== building moat, loadgen, dnsstub, report" >&2
make --no-print-directory build >/dev/null
go build -o "$W/loadgen" ./bench/loadgen
go build -o "$W/dnsstub" ./bench/dnsstub
go build -o "$W/report" ./bench/report

CLK_TCK=$(getconf CLK_TCK)
# The full chain: the sender domain publishes SPF, DMARC (p=reject) and a
# DKIM key, and every message is DKIM-signed (rsa-2048, signed once by the
# load client), so moat runs SPF, DKIM verification and DMARC for real.
"$ROOT/bin/moat" dkim keygen --domain client.test --selector bench --algorithm rsa-2048 --out "$W/dkim.key" >"$W/dkim.txt"
DKIM_TXT=$(grep -o 'v=DKIM1;[^"]*' "$W/dkim.txt" | tail -1)
# The same signed message for smtp-source -F.
"$W/loadgen" -size "$SIZE" -from sender@client.test -to rcpt@relay.test -dkim-key "$W/dkim.key" -write-message "$W/signed.eml"
DNSPORT=$(free_port)
"$W/dnsstub" -addr "127.0.0.1:$DNSPORT" \
	-txt "client.test=v=spf1 ip4:127.0.0.0/8 -all" \
	-txt "_dmarc.client.test=v=DMARC1; p=reject" \
	-txt "bench._domainkey.client.test=$DKIM_TXT" &
PIDS+=($!)

# ticks PID...: utime+stime of each live PID plus cutime+cstime (reaped
# children) of each, summed.
ticks() {
	local p s=0 t
	for p in "$@"; do
		t=$(awk '{print $14+$15+$16+$17}' "/proc/$p/stat" 2>/dev/null || echo 0)
		s=$((s + t))
	done
	echo "$s"
}
# tree PID: the process and its children (Postfix: master and its daemons).
tree() { echo "$1" $(ps -o pid= --ppid "$1" 2>/dev/null || true); }
# pss_kb PID...: summed proportional set size.
pss_kb() {
	local p s=0 v
	for p in "$@"; do
		v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		s=$((s + ${v:-0}))
	done
	echo "$s"
}
# sampler ROOTPID OUTFILE: writes the peak PSS (kB) of ROOTPID's tree.
sampler() {
	local root=$1 out=$2 peak=0 v
	while kill -0 "$root" 2>/dev/null; do
		v=$(pss_kb $(tree "$root"))
		[ "$v" -gt "$peak" ] && peak=$v && echo "$peak" >"$out"
		sleep 0.2
	done
}
now() { date +%s.%N; }

start_sink() { # start_sink NAME -> sets SINK_ADDR SINK_OUT SINK_PID
	local port
	port=$(free_port)
	SINK_ADDR=127.0.0.1:$port
	SINK_OUT=$W/$1.sink.out
	smtp-sink -c -u nobody "$SINK_ADDR" 1024 >"$SINK_OUT" 2>&1 &
	SINK_PID=$!
	PIDS+=("$SINK_PID")
	wait_port 127.0.0.1 "$port" 10
}
sink_count() { tr '\r' '\n' <"$SINK_OUT" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2 || echo 0; }
wait_sink() { # wait_sink COUNT: until smtp-sink has COUNT messages
	local want=$1 deadline got
	deadline=$(($(date +%s) + DRAIN_TIMEOUT))
	while :; do
		got=$(sink_count)
		[ "${got:-0}" -ge "$want" ] && return 0
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "bench: smtp-sink has ${got:-0} of $want messages after ${DRAIN_TIMEOUT}s" >&2
			return 1
		fi
		sleep 0.05
	done
}

# bench_rules lists the shipped rule files but the rate limit, quoted for YAML.
bench_rules() {
	local f out=""
	for f in "$ROOT"/deploy/rules/*.yaml; do
		case $f in */40-ratelimit.yaml) continue ;; esac
		out+="${out:+, }\"$f\""
	done
	printf '%s' "$out"
}

start_moat() { # [RULES] -> SERVER_ADDR SERVER_PID
	local port dir=$W/moat rules=${1:-${BENCH_RULES:-$(bench_rules)}}
	rm -rf "$dir" # each round starts from an empty spool
	mkdir -p "$dir"
	port=$(free_port)
	SERVER_ADDR=127.0.0.1:$port
	cat >"$dir/moat.yaml" <<EOF
hostname: moat.bench.test
data_dir: $dir/data
log: {level: info, format: json}
listeners:
  - {name: mx, address: "$SERVER_ADDR", mode: mx, tls: none}
trusted_networks: []
admin: {address: ""}
dns: {servers: ["127.0.0.1:$DNSPORT"], timeout: 2s}
rules:
  # The shipped rule files, content pack included, and their list files
  # (40-ratelimit is left out: it would throttle the one sender domain of
  # the benchmark). BENCH_RULES replaces the list.
  paths: [$rules]
  lists: {allow_senders: "$ROOT/deploy/rules/allow-senders.txt", deny_senders: "$ROOT/deploy/rules/deny-senders.txt"}
guard:
  per_ip: {rate_per_minute: 0, burst: 0, max_concurrent: 0}
  per_prefix: {rate_per_minute: 0, burst: 0, max_concurrent: 0}
domains:
  local: []
  relay: {relay.test: sink}
routes:
  sink: {type: smtp, address: "$SINK_ADDR", tls: none}
${BENCH_MOAT_EXTRA:-}
${MOAT_SCANNERS:-}
EOF
	"${BENCH_MOAT_BIN:-$ROOT/bin/moat}" serve --config "$dir/moat.yaml" >"$dir/moat.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	wait_port 127.0.0.1 "$port" 20
}

start_postfix() { # -> SERVER_ADDR SERVER_PID (master)
	local port dir=$W/postfix
	rm -rf "$dir"
	mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
	chown postfix "$dir/data"
	port=$(free_port)
	SERVER_ADDR=127.0.0.1:$port
	# A plain relay with Postfix's defaults (it fsyncs its queue files);
	# no chroot, no DNS, logging to a file (postlogd).
	cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = relay.test
transport_maps = inline:{ relay.test=smtp:[${SINK_ADDR%:*}]:${SINK_ADDR##*:} }
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
biff = no
EOF
	# The service table is shared with the interop tests' Postfix.
	{ echo "$SERVER_ADDR inet n - n - - smtpd"; cat "$ROOT/test/testenv/postfix-master.cf"; } >"$dir/etc/master.cf"
	[ ${#PF_DIRS[@]} -gt 0 ] || PF_DIRS+=("$dir")
	if ! postfix -c "$dir/etc" start >"$dir/start.log" 2>&1; then
		cat "$dir/start.log" "$dir/maillog" >&2 2>/dev/null || true
		return 1
	fi
	wait_port 127.0.0.1 "$port" 20
	SERVER_PID=$(tr -d ' ' <"$dir/spool/pid/master.pid")
}

# The content scanners of the moat-scan case, started once and shared by
# every round. Each listens on a free 127.0.0.1 port and runs as its
# Debian user when we are root. SCAN_PIDS: name=pid of each.
SCAN_PIDS=()
# scan_ready KIND ADDR: one readiness probe (clamd zPING, spamd PING,
# rspamd /ping); exit status 0 when the scanner answers as it should.
scan_ready() {
	python3 - "$1" "$2" <<'PY' 2>/dev/null
import socket, sys, urllib.request
kind, addr = sys.argv[1], sys.argv[2]
if kind == "rspamd":
    body = urllib.request.urlopen("http://%s/ping" % addr, timeout=2).read()
    sys.exit(0 if body.strip().startswith(b"pong") else 1)
host, port = addr.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=2)
s.settimeout(5)
s.sendall(b"zPING\0" if kind == "clamd" else b"PING SPAMC/1.5\r\n\r\n")
s.shutdown(socket.SHUT_WR)
out = s.recv(200)
sys.exit(0 if b"PONG" in out else 1)
PY
}
wait_scanner() { # wait_scanner KIND ADDR SECONDS
	local i
	for ((i = 0; i < $3 * 5; i++)); do
		scan_ready "$1" "$2" && return 0
		sleep 0.2
	done
	echo "bench: $1 on $2 not ready after $3 s" >&2
	return 1
}
scan_pid() { # scan_pid NAME: the PID of that scanner
	local e
	for e in "${SCAN_PIDS[@]}"; do [ "${e%%=*}" = "$1" ] && echo "${e#*=}" && return 0; done
	echo 0
}
# scan_ticks: "name=ticks ..." of each scanner's process tree.
scan_ticks() {
	local e out=""
	for e in "${SCAN_PIDS[@]}"; do out+="${e%%=*}=$(ticks $(tree "${e#*=}")) "; done
	echo "$out"
}
# scan_cpu BEFORE AFTER N: CPU seconds per 1000 messages of each scanner
# and their total, as "name=x ... total=y".
scan_cpu() {
	awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" -v n="$3" 'BEGIN{
		na = split(a, A, " "); split(b, B, " "); tot = 0
		for (i = 1; i <= na; i++) { split(A[i], x, "="); split(B[i], y, "="); v = (y[2]-x[2])/hz/n*1000; tot += v; printf "%s=%.4f ", x[1], v }
		printf "total=%.4f", tot }'
}
start_scanners() { # -> MOAT_SCANNERS (moat's scanners: YAML), SCAN_PIDS
	[ ${#SCAN_PIDS[@]} -gt 0 ] && return 0
	local d=$W/scanners cport mport sport nport t0 root=0
	[ "$(id -u)" = 0 ] && root=1
	mkdir -p "$d/clamd/db" "$d/milter" "$d/spamd" "$d/rspamd"/{local.d,override.d,db,run,log}
	chmod -R 755 "$d"
	t0=$(now)
	cport=$(free_port)
	mport=$(free_port)
	sport=$(free_port)
	nport=$(free_port)
	# spamd: local tests only, no per-user config, a child per core and one.
	local spamd_args=(--listen "127.0.0.1:$sport" -x -L --syslog stderr --allowed-ips 127.0.0.1
		--max-children "${BENCH_SPAMD_CHILDREN:-$(($(nproc) + 1))}" --min-children 2)
	[ "$root" = 1 ] && spamd_args+=(-u nobody)
	spamd "${spamd_args[@]}" >"$d/spamd/spamd.log" 2>&1 &
	SCAN_PIDS+=("spamd=$!")
	PIDS+=($!)
	# rspamd: Debian's stock rules; workers on free ports, DNS at the stub,
	# remote fuzzy off, the hyperscan cache shared with the interop tests.
	local hs=/tmp/moat-rspamd-hs-cache
	mkdir -p "$hs"
	printf 'bind_socket = "127.0.0.1:%s";\ncount = %s;\n' "$nport" "$(nproc)" >"$d/rspamd/override.d/worker-normal.inc"
	printf 'bind_socket = "127.0.0.1:%s";\ncount = 1;\n' "$(free_port)" >"$d/rspamd/override.d/worker-controller.inc"
	printf 'bind_socket = "127.0.0.1:%s";\ncount = 1;\n' "$(free_port)" >"$d/rspamd/override.d/worker-proxy.inc"
	printf 'type = "file";\nfilename = "%s";\nlevel = "warning";\n' "$d/rspamd/log/rspamd.log" >"$d/rspamd/override.d/logging.inc"
	printf 'enabled = false;\n' >"$d/rspamd/override.d/fuzzy_check.conf"
	printf 'dns {\n  nameserver = ["127.0.0.1:%s"];\n  timeout = 1s;\n  retransmits = 1;\n}\nhs_cache_dir = "%s/";\n' "$DNSPORT" "$hs" >"$d/rspamd/local.d/options.inc"
	local rspamd_args=(-f -c /etc/rspamd/rspamd.conf --var "LOCAL_CONFDIR=$d/rspamd" --var "DBDIR=$d/rspamd/db"
		--var "RUNDIR=$d/rspamd/run" --var "LOGDIR=$d/rspamd/log")
	if [ "$root" = 1 ]; then
		chown -R _rspamd:_rspamd "$d/rspamd" "$hs"
		rspamd_args+=(-u _rspamd -g _rspamd)
	fi
	rspamd "${rspamd_args[@]}" >"$d/rspamd/stdout.log" 2>&1 &
	SCAN_PIDS+=("rspamd=$!")
	PIDS+=($!)
	# clamd on one signature (EICAR's, in ClamAV's .ndb body format); the
	# benchmark's messages are clean, so every one is scanned in full.
	local eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD''-ANTIVIRUS-TEST-FILE!$H+H*'
	printf 'Moat-Test-EICAR:0:*:%s\n' "$(printf '%s' "$eicar" | od -An -tx1 | tr -d ' \n')" >"$d/clamd/db/moat-test.ndb"
	printf '%s\n' "DatabaseDirectory $d/clamd/db" "TCPAddr 127.0.0.1" "TCPSocket $cport" "Foreground yes" \
		"LogFile $d/clamd/clamd.log" "MaxConnectionQueueLength 200" >"$d/clamd/clamd.conf"
	printf '%s\n' "MilterSocket inet:$mport@127.0.0.1" "ClamdSocket tcp:127.0.0.1:$cport" "Foreground yes" \
		"OnClean Accept" "OnInfected Reject" "OnFail Defer" "AddHeader No" "LogFile $d/milter/milter.log" >"$d/milter/clamav-milter.conf"
	if [ "$root" = 1 ]; then
		echo "User clamav" >>"$d/clamd/clamd.conf"
		echo "User clamav" >>"$d/milter/clamav-milter.conf"
		chown clamav "$d/clamd" "$d/milter"
	fi
	clamd --config-file="$d/clamd/clamd.conf" >"$d/clamd/stdout.log" 2>&1 &
	SCAN_PIDS+=("clamd=$!")
	PIDS+=($!)
	wait_scanner clamd "127.0.0.1:$cport" 60
	clamav-milter --config-file="$d/milter/clamav-milter.conf" >"$d/milter/stdout.log" 2>&1 &
	SCAN_PIDS+=("clamav-milter=$!")
	PIDS+=($!)
	wait_port 127.0.0.1 "$mport" 30
	wait_scanner spamd "127.0.0.1:$sport" 120
	wait_scanner rspamd "127.0.0.1:$nport" 120 || {
		tail -20 "$d/rspamd/stdout.log" "$d/rspamd/log/rspamd.log" >&2
		return 1
	}
	echo "   scanners ready in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s: clamd :$cport, clamav-milter :$mport, spamd :$sport, rspamd :$nport" >&2
	# rspamd compiles its hyperscan databases in the background on a cold
	# cache: wait (at most 3 min) until its CPU use settles, so that the
	# compile is not counted as scanning.
	local i a b
	for ((i = 0; i < 90; i++)); do
		a=$(ticks $(tree "$(scan_pid rspamd)"))
		sleep 2
		b=$(ticks $(tree "$(scan_pid rspamd)"))
		[ $((b - a)) -lt $((CLK_TCK / 5)) ] && break
	done
	# BENCH_SCANNERS picks the types moat calls (all four by default; all
	# four run either way), e.g. "clamd milter rspamd" for the cost of the
	# others without spamd.
	local to=${BENCH_SCAN_TIMEOUT:-60s} e want=" ${BENCH_SCANNERS:-clamd milter spamd rspamd} "
	MOAT_SCANNERS="scanners:"
	for e in "clamav clamd 127.0.0.1:$cport" "clamav-milter milter 127.0.0.1:$mport" \
		"spamassassin spamd 127.0.0.1:$sport" "rspamd rspamd http://127.0.0.1:$nport"; do
		set -- $e
		[[ $want == *" $2 "* ]] || continue
		MOAT_SCANNERS+=$'\n'"  - {name: $1, type: $2, address: \"$3\", timeout: $to, on_error: tempfail, required: true}"
	done
	echo "   moat calls:$(grep -o 'type: [a-z]*' <<<"$MOAT_SCANNERS" | cut -d' ' -f2 | tr '\n' ' ' | sed 's/^/ /')" >&2
}
SCSV=$RESULTS/bench-scanners.csv

CSV=$RESULTS/bench.csv
rm -f "$SCSV"
echo "case,messages,sessions,size,rate,accept_rate,p50_ms,p99_ms,cpu_per_1000,peak_mb,smtp_source_rate,smtp_source_cpu_per_1000,round" >"$CSV"
jnum() { grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2; }

run_case() { # run_case LABEL
	local label=$1 target t0 t1 c0 c1 out rate cpu peak srate peakf
	start_sink "$label"
	case $label in
	moat) MOAT_SCANNERS="" start_moat; target=$SERVER_ADDR ;;
	moat-base) MOAT_SCANNERS="" start_moat "$(bench_rules | tr ',' '\n' | grep -E '/[123]0-' | paste -sd, -)"; target=$SERVER_ADDR ;;
	moat-scan) start_scanners; start_moat; target=$SERVER_ADDR ;;
	postfix) start_postfix; target=$SERVER_ADDR ;;
	smtp-sink) SERVER_PID=$SINK_PID; target=$SINK_ADDR ;;
	esac
	echo "== $label: loadgen $N messages, $C sessions, $SIZE bytes, $PER_CONN per connection -> $target" >&2
	peakf=$W/$label.peak
	echo 0 >"$peakf"
	sampler "$SERVER_PID" "$peakf" &
	local sp=$!
	PIDS+=("$sp")
	local perfpid=""
	if [ -n "${BENCH_PERF:-}" ] && [ "$label" = moat ]; then
		# BENCH_PERF=FILE: perf record of moat during the loadgen phase
		# (use an unstripped BENCH_MOAT_BIN for symbols).
		perf record -F 499 -g -o "$BENCH_PERF" -p "$SERVER_PID" >/dev/null 2>&1 &
		perfpid=$!
	fi
	local k0="" k1=""
	[ "$label" = moat-scan ] && k0=$(scan_ticks)
	c0=$(ticks $(tree "$SERVER_PID"))
	t0=$(now)
	out=$("$W/loadgen" -addr "$target" -n "$N" -c "$C" -size "$SIZE" -per-conn "$PER_CONN" \
		-from sender@client.test -to rcpt@relay.test -dkim-key "$W/dkim.key" -label "$label") || {
		echo "bench: loadgen failed: $out" >&2
		return 1
	}
	wait_sink "$N"
	t1=$(now)
	c1=$(ticks $(tree "$SERVER_PID"))
	[ "$label" = moat-scan ] && k1=$(scan_ticks)
	kill "$sp" 2>/dev/null || true
	if [ -n "$perfpid" ]; then kill -INT "$perfpid"; wait "$perfpid" || true; fi
	rate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", n/(b-a)}')
	cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$N" 'BEGIN{printf "%.4f", d/hz/n*1000}')
	peak=$(awk -v k="$(cat "$peakf")" 'BEGIN{printf "%.1f", k/1024}')
	if [ "$label" != postfix ] && [ "$label" != smtp-sink ]; then
		echo "   moat VmHWM: $(awk '/VmHWM/{print $2, $3}' /proc/"$SERVER_PID"/status)" >&2
	fi
	echo "   loadgen: $out" >&2
	echo "   to sink: $rate msg/s; CPU $cpu s/1000; peak PSS $peak MiB" >&2
	local kcpu=""
	if [ "$label" = moat-scan ]; then
		kcpu=$(scan_cpu "$k0" "$k1" "$N")
		echo "   scanners' CPU s/1000 (apart from moat's): $kcpu" >&2
	fi

	echo "== $label: smtp-source cross-check ($N messages, $C sessions, one per connection)" >&2
	local s0 s1 scpu
	c0=$(ticks $(tree "$SERVER_PID"))
	s0=$(now)
	smtp-source -s "$C" -m "$N" -F "$W/signed.eml" -M client.test -f sender@client.test -t rcpt@relay.test "$target"
	wait_sink $((2 * N))
	s1=$(now)
	c1=$(ticks $(tree "$SERVER_PID"))
	srate=$(awk -v n="$N" -v a="$s0" -v b="$s1" 'BEGIN{printf "%.1f", n/(b-a)}')
	scpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$N" 'BEGIN{printf "%.4f", d/hz/n*1000}')
	echo "   smtp-source to sink: $srate msg/s; CPU $scpu s/1000" >&2
	if [ "$label" = moat-scan ]; then
		[ -s "$SCSV" ] || echo "round,rate,moat_cpu_per_1000,scanners_cpu_per_1000" >"$SCSV"
		echo "$ROUND,$rate,$cpu,\"$kcpu\"" >>"$SCSV"
	fi

	echo "$label,$N,$C,$SIZE,$rate,$(echo "$out" | jnum rate),$(echo "$out" | jnum p50_ms),$(echo "$out" | jnum p99_ms),$cpu,$peak,$srate,$scpu,$ROUND" >>"$CSV"

	case $label in
	moat | moat-base | moat-scan)
		kill "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null || true
		# Proof that the chain ran: the results moat logged, counted once
		# moat has stopped and flushed its log (it writes it in batches):
		# both phases, 2N messages.
		echo "   moat checks (count, spf, dkim, dmarc): $(grep -o '"spf":"[a-z]*","dkim":"[a-z]*","dmarc":"[a-z]*"' "$W/moat/moat.log" | sort | uniq -c | tr -s ' ' | tr '\n' ';')" >&2
		;;
	postfix) postfix -c "$W/postfix/etc" stop >/dev/null 2>&1 || true ;;
	esac
	kill "$SINK_PID" 2>/dev/null || true
}

echo "== machine: $(nproc) cores; $(df -h "$W" | awk 'NR==2{print $1, $2, "size,", $4, "free"}'); $(uname -r)" >&2
for ROUND in $(seq 1 "$ROUNDS"); do
	echo "== round $ROUND of $ROUNDS" >&2
	for c in $CASES; do
		case $c in
		moat) run_case moat ;;
		moat-base) run_case moat-base ;;
		moat-scan) run_case moat-scan ;;
		postfix) run_case postfix ;;
		sink) run_case smtp-sink ;;
		esac
	done
done

"$W/report" -csv "$CSV" -svg "$RESULTS/bench.svg"
echo
echo "CSV: bench/results/bench.csv, chart: bench/results/bench.svg"

if [ "${BENCH_GO:-1}" = 1 ]; then
	echo "== Go micro-benchmarks" >&2
	go test -run '^$' -bench . -benchmem -count 1 -timeout 30m ./...
fi
