#!/bin/sh
# SPDX-License-Identifier: ISC
# test-systemd.sh: the keeld .deb under a real systemd, in a throw-away
# container, for machines (like CI containers) where systemd is not PID 1.
#
#   packaging/test-systemd.sh [DEB_DIR]     (default build/deb, from
#                                             scripts/build-deb)
#
# Needs root and systemd-nspawn (Debian package systemd-container), and
# logrotate and python3 on the host (the container runs the host's files).
# The host's root file system is bind-mounted read-only and booted with
# --volatile=overlay and a private network (its own 127.0.0.1): the packages
# are installed inside the container, on a tmpfs overlay, and vanish with
# it. Nothing on the host changes.
#
# Checks, under the unit as packaged (sandboxing and all):
# - install starts keeld.service (Type=notify: active means READY=1); keeld
#   runs as keel:dialout, never root, with CAP_NET_BIND_SERVICE alone;
# - `systemd-analyze security keeld.service` on the loaded unit: <= 2.0;
# - /etc/default/keeld names another configuration (KEELD_CONFIG): the unit
#   runs it, with a `sim` device (a pty keeld makes, published at a link)
#   bridged by a `serial` port on 127.0.0.1:700 (below 1024), and a tty of
#   group dialout (root:dialout 0660, as /dev/ttyUSB0 is) bridged on
#   127.0.0.1:7001: TCP clients receive the devices' data;
# - `keeld -s status` (root, the service's configuration) answers;
# - `systemctl reload` applies a good configuration (generation 2) and fails
#   on a rejected one while the service stays active on the old one;
# - logrotate (its postrotate reads /etc/default/keeld) rotates the log and
#   keeld reopens it;
# - a stopped (hung) keeld is killed by the watchdog and restarted; a
#   configuration error at start fails the start without a restart loop;
#   stop is clean.
# Exit 0 pass, 1 fail, 77 cannot run here. About 1-2 minutes (the watchdog
# step waits up to 45 s).
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
debs=$(cd "${1:-$top/build/deb}" && pwd) || exit 1
ls "$debs"/keeld_*.deb "$debs"/libkeel0_*.deb >/dev/null || exit 1
[ "$(id -u)" = 0 ] || { echo "test-systemd: needs root" >&2; exit 77; }
for tool in systemd-nspawn:systemd-container logrotate:logrotate \
	python3:python3; do
	command -v "${tool%%:*}" >/dev/null || {
		echo "test-systemd: needs ${tool%%:*} (${tool#*:})" >&2
		exit 77
	}
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-nspawn.XXXXXX") || exit 1
root=$tmp/root
name=keeltest$$
nspawn_pid=
. "$top/packaging/testlib.sh"

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
	nspawn_tidy
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

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
booted=0
i=0
while [ $i -lt 60 ] && kill -0 "$nspawn_pid" 2>/dev/null; do
	init=$(pgrep -P "$nspawn_pid" | head -n1)
	if [ -n "$init" ]; then
		# "degraded" is running too.
		state=$(timeout 5 nsenter -t "$init" -a systemctl \
			is-system-running 2>/dev/null)
		case $state in
		running | degraded)
			booted=1
			break
			;;
		esac
	fi
	sleep 1
	i=$((i + 1))
done
if [ "$booted" != 1 ]; then
	echo "test-systemd: the container did not boot" >&2
	cat "$tmp/nspawn.log" >&2
	exit 1
fi
echo "container booted in ${i}s"
ct() { timeout 60 nsenter -t "$init" -a "$@"; }
prop() { ct systemctl show -P "$1" keeld; }
# The first line of /proc/PID/status in the container that starts with $2.
status_of() { ct sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"; }

# Read from a TCP port of the container's 127.0.0.1 until MARKER arrived
# (10 s at most); the tail of what was read goes to $tmp/tcp.
tcp_expect() { # PORT MARKER
	ct python3 -c '
import socket, sys, time
port, marker = int(sys.argv[1]), sys.argv[2].encode()
deadline = time.monotonic() + 10
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        break
    except OSError as e:
        if time.monotonic() > deadline:
            sys.exit("connect: %s" % e)
        time.sleep(0.2)
s.settimeout(1)
buf = b""
while marker not in buf and time.monotonic() < deadline:
    try:
        d = s.recv(4096)
    except socket.timeout:
        continue
    if not d:
        break
    buf += d
print(repr(buf[-120:]))
sys.exit(0 if marker in buf else 1)
' "$1" "$2" >"$tmp/tcp" 2>&1
}

# 1. Install: postinst creates keel, enables and starts the unit (the host
# may have a policy-rc.d that denies starts: remove it inside the container).
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
uid=$(status_of "$pid" Uid)
gid=$(status_of "$pid" Gid)
capeff=$(status_of "$pid" CapEff)
capbnd=$(status_of "$pid" CapBnd)
keel_uid=$(ct id -u keel)
dialout_gid=$(ct getent group dialout | cut -d: -f3)
# CAP_NET_BIND_SERVICE is bit 10.
if [ "${uid%%[!0-9]*}" = "$keel_uid" ] && [ "${gid%%[!0-9]*}" = "$dialout_gid" ] &&
	[ "$capeff" = 0000000000000400 ] && [ "$capbnd" = 0000000000000400 ]; then
	ok "keeld runs as keel:dialout, CAP_NET_BIND_SERVICE only"
else
	fail "keeld's credentials: Uid $uid Gid $gid CapEff $capeff CapBnd $capbnd"
fi
if ct test -s /run/keel/state; then
	ok "state file written by keel in /run/keel"
else
	fail "no state file"
fi

# 2. The exposure score of the unit as systemd loaded it.
ct systemd-analyze security keeld.service >"$tmp/out" 2>&1
score=$(sed -n 's/.*Overall exposure level for keeld\.service: \([0-9.]*\).*/\1/p' "$tmp/out")
if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
	ok "systemd-analyze security keeld.service: exposure $score <= 2.0"
else
	fail "systemd-analyze security keeld.service: exposure '$score'"
	grep -E '✗|Overall' "$tmp/out" || tail -5 "$tmp/out"
fi

# 3. Another configuration through /etc/default/keeld, with devices, a
# port below 1024 and a log file. A tty of group dialout: a pty whose
# slave a root helper gives to root:dialout 0660 (as udev does for
# /dev/ttyUSB0) and publishes at /run/keeltest/dial0; it writes a line
# every 0.2 s.
ct systemd-run -q --unit=keeltest-dial -p RuntimeMaxSec=600 python3 -c '
import fcntl, grp, os, time
m, s = os.openpty()
name = os.ttyname(s)
os.chown(name, 0, grp.getgrnam("dialout").gr_gid)
os.chmod(name, 0o660)
os.makedirs("/run/keeltest", exist_ok=True)
os.symlink(name, "/run/keeltest/dial0.tmp")
os.rename("/run/keeltest/dial0.tmp", "/run/keeltest/dial0")
fcntl.fcntl(m, fcntl.F_SETFL, os.O_NONBLOCK)
while True:
    for f in (lambda: os.write(m, b"dialout-tty\n"), lambda: os.read(m, 4096)):
        try:
            f()
        except OSError:
            pass
    time.sleep(0.2)
'
ct sh -c 'cat >/etc/keel/test.conf' <<'EOF'
pidfile    = "/run/keel/test.pid"
state-file = "/run/keel/state"
log        = "/var/log/keel/keeld.log"
log-level  = "info"
user       = "keel"
group      = "dialout"
shutdown-timeout = 5
load = { "sim", "serial" }

sim gps {
  link = "/run/keel/gps"
  mode = "nmea"
  rate = 5
}
serial gps {
  device = "/run/keel/gps"
  listen = "127.0.0.1:700"
}
serial dial {
  device = "/run/keeltest/dial0"
  listen = "127.0.0.1:7001"
}
EOF
ct sh -c 'echo KEELD_CONFIG=/etc/keel/test.conf >/etc/default/keeld'
i=0
while [ $i -lt 50 ] && ! ct test -L /run/keeltest/dial0; do
	sleep 0.1
	i=$((i + 1))
done
ct systemctl restart keeld
pid=$(prop MainPID)
if [ "$(prop ActiveState)" = active ] &&
	ct sh -c "tr '\\0' ' ' </proc/$pid/cmdline" | grep -q -- '-f /etc/keel/test.conf'; then
	ok "the unit runs KEELD_CONFIG of /etc/default/keeld"
else
	fail "keeld.service with /etc/default/keeld: $(prop ActiveState)"
	ct journalctl -u keeld --no-pager | tail -20
fi
# shellcheck disable=SC2016 # a literal $GP
if tcp_expect 700 '$GP'; then
	ok "sim pty bridged by serial: a client of 127.0.0.1:700 reads NMEA"
else
	fail "no NMEA on 127.0.0.1:700: $(cat "$tmp/tcp")"
fi
tty=$(ct readlink /run/keeltest/dial0)
owner=$(ct stat -c '%U:%G %a' "$tty")
if [ "$owner" = "root:dialout 660" ] && tcp_expect 7001 'dialout-tty'; then
	ok "a tty of group dialout ($tty, $owner) bridged to 127.0.0.1:7001"
else
	fail "dialout tty $tty ($owner): $(cat "$tmp/tcp")"
fi

# 4. keeld -s, as an operator runs it: root, the service's configuration.
status=$(ct keeld -f /etc/keel/test.conf -s status 2>&1)
if echo "$status" | grep -qx "pid: $pid" &&
	echo "$status" | grep -qx 'generation: 1'; then
	ok "keeld -s status answers (pid $pid, generation 1)"
else
	fail "keeld -s status: $status"
fi

# 5. Reload applied, then rejected.
ct sed -i 's/rate = 5/rate = 10/' /etc/keel/test.conf
if ct systemctl reload keeld && [ "$(prop ActiveState)" = active ] &&
	ct keeld -f /etc/keel/test.conf -s status | grep -qx 'generation: 2' &&
	tcp_expect 7001 'dialout-tty'; then
	ok "systemctl reload: applied, generation 2, devices still bridged"
else
	fail "systemctl reload"
	ct journalctl -u keeld --no-pager | tail -10
fi
ct sh -c 'cp /etc/keel/test.conf /etc/keel/test.conf.good &&
	echo "bogus = 1" >>/etc/keel/test.conf'
if ct systemctl reload keeld 2>/dev/null; then
	fail "systemctl reload succeeded with a rejected configuration"
elif [ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" = "$pid" ]; then
	ok "systemctl reload fails on a rejected configuration; keeld keeps running"
else
	fail "rejected reload: service state $(prop ActiveState)"
fi
ct cp /etc/keel/test.conf.good /etc/keel/test.conf

# 6. logrotate: the packaged entry rotates keeld.log, its postrotate finds
# keeld through /etc/default/keeld and sends SIGUSR1 (logged, before the
# reopen, in what is now keeld.log.1); the next line keeld logs, for
# `keeld -s wake` (SIGALRM), lands in the new keeld.log.
log=/var/log/keel/keeld.log
if ct logrotate -f /etc/logrotate.d/keeld >"$tmp/out" 2>&1 &&
	ct grep -q 'received SIGUSR1' "$log.1"; then
	ct keeld -f /etc/keel/test.conf -s wake >/dev/null 2>&1
	i=0
	while [ $i -lt 50 ] && ! ct grep -q 'received SIGALRM' "$log"; do
		sleep 0.1
		i=$((i + 1))
	done
	if ct grep -q 'received SIGALRM' "$log"; then
		ok "logrotate: keeld.log rotated, keeld reopened it ($(ct stat -c '%U:%G %a' "$log"))"
	else
		fail "logrotate: keeld did not reopen keeld.log"
		ct tail -n 3 "$log.1" "$log"
	fi
else
	fail "logrotate -f /etc/logrotate.d/keeld: keeld was not signalled"
	cat "$tmp/out"
	ct sh -c "ls -l /var/log/keel; tail -n 3 $log.1 $log"
fi

# 7. A configuration error at start: the start fails, no restart loop.
ct sh -c 'echo "bogus = 1" >>/etc/keel/test.conf'
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
ct mv /etc/keel/test.conf.good /etc/keel/test.conf
ct systemctl reset-failed keeld
ct systemctl start keeld

# 8. Watchdog: a keeld that stops answering is killed and restarted.
pid=$(prop MainPID)
# Never "kill -STOP 0" (this process group) when keeld is not running.
case $pid in
'' | 0 | *[!0-9]*) pid=none ;;
*) ct kill -STOP "$pid" ;;
esac
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
