#!/bin/sh
# SPDX-License-Identifier: ISC
# test-systemd.sh: the keeld .deb under a real systemd, in a throw-away
# container, for machines (like CI containers) where systemd is not PID 1.
#
#   packaging/test-systemd.sh [DEB_DIR]     (default build/deb, from
#                                             scripts/build-deb)
#
# Needs root and systemd-nspawn (Debian package systemd-container). The
# host's root file system is bind-mounted read-only and booted with
# --volatile=overlay and a private network: the packages are installed inside
# the container, on a tmpfs overlay, and vanish with it. Nothing on the host
# changes.
#
# Checks: install starts keeld.service (Type=notify, READY=1 seen as active);
# it runs as keel:dialout with no capabilities and writes its state file;
# `systemctl reload` applies a good configuration and fails on a rejected one
# while the service stays active on the old one; a stopped (hung) keeld is
# killed by the watchdog and restarted; a configuration error at start fails
# the start without a restart loop; stop is clean.
# About 1-2 minutes (the watchdog step waits up to 45 s).
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
debs=$(cd "${1:-$top/build/deb}" && pwd) || exit 1
ls "$debs"/keeld_*.deb "$debs"/libkeel0_*.deb >/dev/null || exit 1
[ "$(id -u)" = 0 ] || { echo "test-systemd: needs root" >&2; exit 77; }
command -v systemd-nspawn >/dev/null ||
	{ echo "test-systemd: needs systemd-nspawn (systemd-container)" >&2; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-nspawn.XXXXXX") || exit 1
root=$tmp/root
name=keeltest$$
nspawn_pid=
fails=0
passes=0

cleanup() {
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		# One SIGTERM asks the container to power off, a second one
		# ends it at once.
		kill -TERM "$nspawn_pid" 2>/dev/null
		sleep 1
		kill -TERM "$nspawn_pid" 2>/dev/null
		i=0
		while kill -0 "$nspawn_pid" 2>/dev/null && [ $i -lt 20 ]; do
			sleep 1
			i=$((i + 1))
		done
		kill -KILL "$nspawn_pid" 2>/dev/null
	fi
	mountpoint -q "$root" && umount "$root"
	rm -rf "$tmp"
	# systemd-nspawn's own run-time directories, when left empty.
	rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks \
		/run/systemd/nspawn 2>/dev/null
	return 0
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

ok() {
	passes=$((passes + 1))
	echo "ok: $*"
}
fail() {
	fails=$((fails + 1))
	echo "FAIL: $*"
}

mkdir -p "$root"
mount --bind / "$root" && mount -o remount,bind,ro "$root" || exit 1
# basic.target: the services of the host's multi-user.target (which may
# take long to stop) are not started; keeld.service is started by hand.
systemd-nspawn -D "$root" --volatile=overlay --private-network \
	--register=no --keep-unit --link-journal=no -M "$name" \
	--bind-ro="$debs:/debs" --console=pipe -b -- --unit=basic.target \
	>"$tmp/nspawn.log" 2>&1 &
nspawn_pid=$!

# The container's init is the child of systemd-nspawn.
init=
i=0
while [ $i -lt 60 ]; do
	init=$(pgrep -P "$nspawn_pid" | head -n1)
	if [ -n "$init" ] &&
		timeout 5 nsenter -t "$init" -a systemctl is-system-running --wait \
			>/dev/null 2>&1; then
		break
	fi
	# "degraded" is running too.
	if [ -n "$init" ] && nsenter -t "$init" -a systemctl \
		is-system-running 2>/dev/null | grep -q degraded; then
		break
	fi
	sleep 1
	i=$((i + 1))
done
if [ -z "$init" ]; then
	echo "test-systemd: the container did not boot" >&2
	cat "$tmp/nspawn.log" >&2
	exit 1
fi
ct() { timeout 60 nsenter -t "$init" -a "$@"; }
prop() { ct systemctl show -P "$1" keeld; }

# Install: postinst creates keel, enables and starts the unit (the host may
# have a policy-rc.d that denies starts: remove it inside the container).
ct rm -f /usr/sbin/policy-rc.d
ct sh -c 'dpkg -i /debs/libkeel0_*.deb /debs/keeld_*.deb' >"$tmp/out" 2>&1 ||
	{ fail "dpkg -i in the container"; cat "$tmp/out"; }
ct systemctl start keeld
if [ "$(prop ActiveState)" = active ]; then
	ok "keeld.service active (READY=1 received)"
else
	fail "keeld.service not active"
	ct journalctl -u keeld --no-pager | tail -20
fi
pid=$(prop MainPID)
status=$(ct cat "/proc/$pid/status")
if echo "$status" | grep -q "^Uid:[[:space:]]*$(ct id -u keel)[[:space:]]" &&
	echo "$status" | grep -q '^CapEff:[[:space:]]*0000000000000000$'; then
	ok "keeld runs as keel without capabilities"
else
	fail "keeld's credentials"
	echo "$status" | grep -E '^(Uid|Gid|Groups|Cap)'
fi
if ct test -s /run/keel/state; then
	ok "state file written by keel in /run/keel"
else
	fail "no state file"
fi

if ct systemctl reload keeld && [ "$(prop ActiveState)" = active ] &&
	prop StatusText | grep -q 'generation 2'; then
	ok "systemctl reload: applied, generation 2"
else
	fail "systemctl reload"
fi
ct sh -c 'cp /etc/keel/keeld.conf /etc/keel/keeld.conf.good &&
	echo "bogus = 1" >>/etc/keel/keeld.conf'
if ct systemctl reload keeld 2>/dev/null; then
	fail "systemctl reload succeeded with a rejected configuration"
elif [ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" = "$pid" ]; then
	ok "systemctl reload fails on a rejected configuration; keeld keeps running"
else
	fail "rejected reload: service state $(prop ActiveState)"
fi
if ct systemctl restart keeld 2>/dev/null; then
	fail "restart succeeded with a rejected configuration"
else
	sleep 3
	if [ "$(prop ActiveState)" = failed ] && [ "$(prop NRestarts)" = 0 ]; then
		ok "configuration error at start: failed, not restarted in a loop"
	else
		fail "bad start: $(prop ActiveState), restarts $(prop NRestarts)"
	fi
fi
ct mv /etc/keel/keeld.conf.good /etc/keel/keeld.conf
ct systemctl reset-failed keeld
ct systemctl start keeld

# Watchdog: a keeld that stops answering is killed and restarted.
pid=$(prop MainPID)
ct kill -STOP "$pid"
i=0
while [ $i -lt 45 ] && [ "$(prop NRestarts)" = 0 ]; do
	sleep 1
	i=$((i + 1))
done
sleep 3
if [ "$(prop NRestarts)" = 1 ] && [ "$(prop ActiveState)" = active ] &&
	[ "$(prop MainPID)" != "$pid" ]; then
	ok "watchdog: hung keeld killed after ${i}s and restarted"
else
	fail "watchdog: restarts $(prop NRestarts), state $(prop ActiveState)"
fi

if ct systemctl stop keeld && [ "$(prop Result)" = success ]; then
	ok "systemctl stop: clean exit"
else
	fail "systemctl stop: $(prop Result)"
fi
if [ "$fails" -ne 0 ]; then
	ct journalctl -u keeld --no-pager | tail -40
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
