#!/usr/bin/env bash
# Peers for moat's interop tests, benchmark and chaos test: Postfix (for
# smtp-sink, smtp-source, a private relay instance and a private backend
# with virtual mailboxes), swaks, Dovecot LMTP, Redis (server and
# redis-cli), headless Chromium (the admin status page test) and
# SpamAssassin (scripts/sa-compare.sh), and the content scanners of the
# scanner interop tests and the moat-scan benchmark case (rspamd, spamd,
# clamd, clamav-milter), installed from Debian's packages when missing.
#
# Source it for the helpers, or run it to install:
#   bash scripts/peers.sh            # install what is missing (quiet, idempotent)
#   source scripts/peers.sh; free_port; wait_port 127.0.0.1 2525 10
#
# Postfix is preseeded to "No configuration" so that installing it neither
# starts a daemon nor takes port 25. Nothing here touches a non-loopback
# address.

# peers_missing prints the Debian packages whose binaries are not installed.
peers_missing() {
	local want=()
	[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/postfix ] || want+=(postfix)
	command -v swaks >/dev/null 2>&1 || want+=(swaks)
	# swaks needs Net::SSLeay for STARTTLS (the submission test).
	perl -MNet::SSLeay -e1 >/dev/null 2>&1 || want+=(libnet-ssleay-perl)
	command -v dovecot >/dev/null 2>&1 || want+=(dovecot-core)
	[ -x /usr/lib/dovecot/lmtp ] || want+=(dovecot-lmtpd)
	[ -x /usr/lib/dovecot/imap ] || want+=(dovecot-imapd) # IMAP over moat's Maildirs (deploy/dovecot)
	[ -x /usr/bin/redis-server ] && [ -x /usr/bin/redis-cli ] || want+=(redis-server redis-tools)
	[ -x /usr/bin/chromium ] || want+=(chromium)
	# SpamAssassin for the side-by-side report (scripts/sa-compare.sh).
	command -v spamassassin >/dev/null 2>&1 || want+=(spamassassin)
	/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || want+=(python3-aiosmtpd) # the strict next hop (test/interop/strict_test.go)
	# The scanners moat calls at DATA (issue 22). Debian 12 ships the
	# spamd daemon in its own package "spamd". They run offline in the
	# tests: clamd on a signature file the test writes (freshclam, pulled
	# in by clamav-daemon, is never run), rspamd without remote maps.
	[ -x /usr/bin/rspamd ] || want+=(rspamd)
	[ -x /usr/sbin/spamd ] || want+=(spamd)
	[ -x /usr/sbin/clamd ] || want+=(clamav-daemon)
	[ -x /usr/sbin/clamav-milter ] || want+=(clamav-milter)
	# DANE (issue 26): a validating unbound in front of a zone signed in the test.
	[ -x /usr/sbin/unbound ] || want+=(unbound)
	[ -x /usr/bin/ldns-keygen ] && [ -x /usr/bin/ldns-signzone ] || want+=(ldnsutils)
	echo "${want[@]}"
}

# peers_install installs the missing peers with apt-get, non-interactively.
peers_install() {
	local missing
	missing=$(peers_missing)
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "peers.sh: need root to install: $missing" >&2
		return 1
	fi
	echo "peers.sh: installing $missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	echo "postfix postfix/mailname string localhost" | debconf-set-selections
	# Packages must not start services during install (no init here, and
	# nothing may bind a port we did not choose).
	local policy=/usr/sbin/policy-rc.d created=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		created=1
	fi
	local rc=0
	if ! apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $missing >/tmp/peers-apt.log 2>&1; then
		apt-get update -q -o DPkg::Lock::Timeout=600 >/tmp/peers-apt-update.log 2>&1 || true
		apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $missing >/tmp/peers-apt.log 2>&1 || rc=$?
	fi
	[ "$created" = 1 ] && rm -f "$policy"
	if [ "$rc" != 0 ]; then
		echo "peers.sh: apt-get failed (see /tmp/peers-apt.log)" >&2
		tail -20 /tmp/peers-apt.log >&2
		return "$rc"
	fi
	# Stop anything a postinst may still have started despite policy-rc.d.
	# The scanners' units are disabled too: the tests start their own
	# instances with their own configs; freshclam must never reach out.
	local svc
	for svc in postfix dovecot redis-server rspamd spamd clamav-daemon clamav-milter clamav-freshclam; do
		if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
		if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
	done
	return 0
}

# free_port prints a TCP port on 127.0.0.1 that is free right now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port HOST PORT SECONDS waits until something accepts on HOST:PORT.
wait_port() {
	local host=$1 port=$2 secs=${3:-10} i
	for ((i = 0; i < secs * 10; i++)); do
		if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "wait_port: nothing listens on $host:$port after ${secs}s" >&2
	return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	peers_install
fi
