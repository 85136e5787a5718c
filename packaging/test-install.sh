#!/bin/sh
# SPDX-License-Identifier: ISC
# packaging_install: install the build tree into a temporary DESTDIR and check
# what an operator and a module developer get.
#
#   test-install.sh BUILD_DIR SOURCE_DIR
#
# Environment (set by packaging/CMakeLists.txt): KEEL_PREFIX, KEEL_SBINDIR,
# KEEL_LIBDIR, KEEL_INCLUDEDIR, KEEL_SYSCONFDIR, KEEL_DOCDIR (absolute install
# paths) and KEEL_UNITDIR (absolute, or relative to the prefix).
#
# Checks: the layout; the installed keeld.conf passes `keeld -t` with an
# empty conf.d and with each example in it; no @VAR@ left in the configured files; the unit passes
# `systemd-analyze verify` (skipped when it cannot run here); the init script
# passes `sh -n` and answers LSB codes; an out-of-tree copy of
# modules/heartbeat builds with `pkg-config --cflags --libs keel` against the
# installed tree, and the installed keeld accepts it (`keeld -t`).
# Exit 0 pass, 1 fail. Bounded: every external command runs under timeout.
set -u

build=${1:?usage: test-install.sh BUILD_DIR SOURCE_DIR}
src=${2:?usage: test-install.sh BUILD_DIR SOURCE_DIR}
: "${KEEL_PREFIX:?}" "${KEEL_SBINDIR:?}" "${KEEL_LIBDIR:?}"
: "${KEEL_INCLUDEDIR:?}" "${KEEL_SYSCONFDIR:?}" "${KEEL_UNITDIR:?}"
: "${KEEL_DOCDIR:?}"
case $KEEL_UNITDIR in
/*) unitdir=$KEEL_UNITDIR ;;
*) unitdir=$KEEL_PREFIX/$KEEL_UNITDIR ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-install.XXXXXX") || exit 1
dest=$tmp/dest
cleanup() {
	# A keeld left running by a failed step: stop it through its pidfile.
	if [ -s "$tmp/keeld.pid" ]; then
		LD_LIBRARY_PATH=$dest$KEEL_LIBDIR timeout 20 \
			"$dest$KEEL_SBINDIR/keeld" -f "$tmp/keeld.conf" \
			-M "$dest$KEEL_LIBDIR/keel/modules" -s stop >/dev/null 2>&1
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
. "$src/packaging/testlib.sh"
# Run a command with a time limit, its output in $tmp/out.
run() {
	timeout 60 "$@" >"$tmp/out" 2>&1
}

# 1. Install.
if DESTDIR=$dest timeout 60 cmake --install "$build" >"$tmp/out" 2>&1; then
	ok "cmake --install into DESTDIR"
else
	fail "cmake --install into DESTDIR"
	cat "$tmp/out"
	echo "$passes passed, $fails failed"
	exit 1
fi

# 2. Layout.
check_file() { # TEST-OP PATH WHAT
	if test "$1" "$dest$2"; then ok "$3: $2"; else fail "$3: $2 missing"; fi
}
check_file -x "$KEEL_SBINDIR/keeld" "daemon"
check_file -f "$KEEL_LIBDIR/keel/modules/heartbeat.so" "module"
check_file -f "$KEEL_LIBDIR/libkeel.so.0" "library (soname)"
check_file -e "$KEEL_LIBDIR/libkeel.so" "library (link-time name)"
check_file -f "$KEEL_LIBDIR/pkgconfig/keel.pc" "pkg-config file"
check_file -f "$KEEL_SYSCONFDIR/keel/keeld.conf" "configuration"
check_file -f "$unitdir/keeld.service" "systemd unit"
check_file -x "$KEEL_SYSCONFDIR/init.d/keeld" "init script"
check_file -f "$KEEL_SYSCONFDIR/logrotate.d/keeld" "logrotate"
check_file -d "$KEEL_SYSCONFDIR/keel/conf.d" "conf.d directory"
for f in README examples/gps.conf examples/plc-rs485.conf examples/modem.conf; do
	check_file -f "$KEEL_DOCDIR/$f" "operator documentation"
done
check_file -f "$KEEL_SYSCONFDIR/default/keeld" "service defaults"
for h in "$src"/include/keel/*.h; do
	check_file -f "$KEEL_INCLUDEDIR/keel/$(basename "$h")" "header"
done

# 2b. What an operator starts from: the installed keeld.conf passes
# `keeld -t` as installed (conf.d empty), then with every example copied
# into conf.d; the README and keeld.conf name this build's paths.
conf=$dest$KEEL_SYSCONFDIR/keel/keeld.conf
keeld_t() { # CONF
	LD_LIBRARY_PATH=$dest$KEEL_LIBDIR run "$dest$KEEL_SBINDIR/keeld" -t \
		-f "$1" -M "$dest$KEEL_LIBDIR/keel/modules"
}
if [ -d "$dest$KEEL_SYSCONFDIR/keel/conf.d" ] &&
	[ -z "$(ls -A "$dest$KEEL_SYSCONFDIR/keel/conf.d")" ]; then
	ok "conf.d is installed empty"
else
	fail "conf.d is missing or not empty"
fi
if keeld_t "$conf"; then
	ok "installed keeld.conf passes keeld -t"
else
	fail "installed keeld.conf: keeld -t"
	cat "$tmp/out"
fi
if grep -q '^include("conf.d/\*.conf")$' "$conf"; then
	ok "keeld.conf includes conf.d/*.conf"
else
	fail "keeld.conf does not include conf.d/*.conf"
fi
mkdir -p "$tmp/etc/conf.d"
cp "$conf" "$tmp/etc/keeld.conf"
for ex in "$dest$KEEL_DOCDIR"/examples/*.conf; do
	cp "$ex" "$tmp/etc/conf.d/"
	if keeld_t "$tmp/etc/keeld.conf"; then
		ok "keeld -t with $(basename "$ex") in conf.d"
	else
		fail "keeld -t with $(basename "$ex") in conf.d"
		cat "$tmp/out"
	fi
done
if grep -q "$KEEL_SYSCONFDIR/keel/conf.d" "$dest$KEEL_DOCDIR/README" &&
	grep -q "$KEEL_DOCDIR/examples" "$dest$KEEL_DOCDIR/README" &&
	grep -q "$KEEL_SYSCONFDIR/keel/conf.d" "$conf" &&
	! grep -q 'scripts/' "$dest$KEEL_DOCDIR/README"; then
	ok "README and keeld.conf name the installed paths"
else
	fail "README or keeld.conf name other paths"
fi

# 3. Every placeholder resolved, and the paths are the install paths.
for f in "$unitdir/keeld.service" "$KEEL_SYSCONFDIR/init.d/keeld" \
	"$KEEL_SYSCONFDIR/logrotate.d/keeld" "$KEEL_LIBDIR/pkgconfig/keel.pc" \
	"$KEEL_SYSCONFDIR/default/keeld"; do
	[ -f "$dest$f" ] || continue
	if grep -n '@[A-Za-z_][A-Za-z0-9_]*@' "$dest$f"; then
		fail "unresolved @VAR@ in $f"
	else
		ok "no unresolved @VAR@ in $f"
	fi
done
unit=$dest$unitdir/keeld.service
if grep -q "^ExecStart=$KEEL_SBINDIR/keeld " "$unit" &&
	grep -q "^ExecReload=$KEEL_SBINDIR/keeld .*-s reload" "$unit" &&
	grep -q '^Type=notify$' "$unit"; then
	ok "unit runs $KEEL_SBINDIR/keeld, Type=notify, reload through keeld -s"
else
	fail "unit ExecStart/ExecReload/Type"
fi

# One source for the configuration path: the unit, the init script and
# logrotate's postrotate all read KEELD_CONFIG from the same defaults file.
defaults=$KEEL_SYSCONFDIR/default/keeld
if grep -q "^EnvironmentFile=-$defaults\$" "$unit" &&
	grep -q "^ExecStart=.* -f \${KEELD_CONFIG} " "$unit" &&
	grep -q "^ExecReload=.* -f \${KEELD_CONFIG} " "$unit" &&
	grep -q "\. $defaults\$" "$dest$KEEL_SYSCONFDIR/init.d/keeld" &&
	grep -q "\. $defaults\$" "$dest$KEEL_SYSCONFDIR/logrotate.d/keeld" &&
	grep -q -- '-f "$KEELD_CONFIG" .*-s reopen' \
		"$dest$KEEL_SYSCONFDIR/logrotate.d/keeld"; then
	ok "unit, init script and logrotate read KEELD_CONFIG from $defaults"
else
	fail "unit, init script and logrotate do not share $defaults"
fi

# 4. systemd-analyze verify, on a copy whose paths point into DESTDIR (verify
# checks that the executables exist). A container without a usable systemd
# may refuse to run it at all: then skip, but a diagnosis about keeld.service
# itself is a failure.
if command -v systemd-analyze >/dev/null 2>&1; then
	mkdir -p "$tmp/unit"
	sed "s|$KEEL_SBINDIR/keeld|$dest$KEEL_SBINDIR/keeld|g" "$unit" \
		>"$tmp/unit/keeld.service"
	# verify exits 0 after "Unknown key ..., ignoring": any line about the
	# unit file is a failure too.
	run systemd-analyze verify --man=no "$tmp/unit/keeld.service"
	rc=$?
	if grep -q 'keeld\.service' "$tmp/out"; then
		fail "systemd-analyze verify keeld.service"
		sed 's/^/    /' "$tmp/out"
	elif [ "$rc" -eq 0 ]; then
		ok "systemd-analyze verify keeld.service"
	else
		skip "systemd-analyze verify cannot run here:"
		sed 's/^/    /' "$tmp/out"
	fi
	# The exposure score of the unit file as installed (systemd 252 reads
	# a unit file with --offline=yes); test-systemd.sh measures it again
	# on the loaded unit under a running systemd.
	run systemd-analyze security --offline=yes "$tmp/unit/keeld.service"
	score=$(sed -n 's/.*Overall exposure level for keeld\.service: \([0-9.]*\).*/\1/p' "$tmp/out")
	if [ -z "$score" ]; then
		skip "systemd-analyze security --offline cannot run here:"
		sed 's/^/    /' "$tmp/out" | tail -5
	elif awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
		ok "systemd-analyze security: exposure $score <= 2.0"
	else
		fail "systemd-analyze security: exposure $score > 2.0"
		grep '✗' "$tmp/out" | sed 's/^/    /'
	fi
else
	skip "systemd-analyze not installed"
fi

# 5. Init script: syntax, then the LSB exit codes of every action, stopped and
# running, with a good and a rejected configuration.
init=$dest$KEEL_SYSCONFDIR/init.d/keeld
if sh -n "$init"; then ok "sh -n init script"; else fail "sh -n init script"; fi
if command -v dash >/dev/null 2>&1; then
	if dash -n "$init"; then ok "dash -n init script"; else fail "dash -n init script"; fi
fi
# A copy that runs the DESTDIR keeld on a private configuration and pidfile.
cat >"$tmp/keeld.conf" <<EOF
pidfile    = "$tmp/keeld.pid"
state-file = "$tmp/run/state"
log        = "$tmp/keeld.log"
shutdown-timeout = 2
load = { "heartbeat" }
heartbeat main {
  message  = "packaging test"
  interval = 60
}
EOF
sed -e "s|^DAEMON=.*|DAEMON=$dest$KEEL_SBINDIR/keeld|" \
	-e "s|^KEELD_CONFIG=.*|KEELD_CONFIG=$tmp/keeld.conf|" \
	-e "s|^KEELD_OPTS=.*|KEELD_OPTS=\"-M $dest$KEEL_LIBDIR/keel/modules\"|" \
	-e "s|^RUNTIME_DIR=.*|RUNTIME_DIR=$tmp/run|" \
	-e "s|^RUNTIME_OWNER=.*|RUNTIME_OWNER=nonexistent-user:nonexistent-group|" \
	-e 's|^\[ -r [^ ]*/default/keeld \] &&|false \&\&|' \
	-e 's|^if \[ -r /lib/lsb/init-functions \]; then|if false; then|' \
	"$init" >"$tmp/init"
chmod 0755 "$tmp/init"
lsb() { # EXPECTED ACTION
	LD_LIBRARY_PATH=$dest$KEEL_LIBDIR timeout 60 sh "$tmp/init" "$2" \
		>"$tmp/out" 2>&1
	rc=$?
	if [ "$rc" = "$1" ]; then
		ok "init script $2 -> $rc"
	else
		fail "init script $2 -> $rc, expected $1"
		sed 's/^/    /' "$tmp/out"
	fi
}
lsb 3 status
lsb 0 stop
lsb 7 reload
lsb 2 bogus
lsb 0 start
lsb 0 start
lsb 0 status
lsb 0 reload
lsb 0 restart
lsb 0 status
# A rejected reload fails and keeps the daemon running.
cp "$tmp/keeld.conf" "$tmp/keeld.conf.good"
printf 'heartbeat main {\n  interval = -1\n' >>"$tmp/keeld.conf"
lsb 1 reload
lsb 6 restart
lsb 0 status
cp "$tmp/keeld.conf.good" "$tmp/keeld.conf"
lsb 0 stop
lsb 3 status
lsb 0 stop
# Unlocked pidfile: with a pid, keeld died (1); empty, as keeld leaves it
# when it could not remove it after dropping root, a clean stop (3).
echo 999999 >"$tmp/keeld.pid"
lsb 1 status
lsb 0 stop
: >"$tmp/keeld.pid"
lsb 3 status
rm -f "$tmp/keeld.pid"

# 6. The SDK: an out-of-tree module, built against the installed headers and
# library through pkg-config, loaded by the installed keeld.
if command -v pkg-config >/dev/null 2>&1; then
	mkdir -p "$tmp/mod/out"
	cp "$src/modules/heartbeat/heartbeat.c" "$tmp/mod/"
	export PKG_CONFIG_PATH="$dest$KEEL_LIBDIR/pkgconfig"
	# A relocatable keel.pc finds its prefix from where it lies (inside
	# DESTDIR); one naming /usr needs the sysroot to map -I/-L into DESTDIR.
	grep -q '^prefix=${pcfiledir}' "$dest$KEEL_LIBDIR/pkgconfig/keel.pc" ||
		export PKG_CONFIG_SYSROOT_DIR="$dest"
	if flags=$(pkg-config --cflags --libs keel 2>"$tmp/out"); then
		ok "pkg-config --cflags --libs keel: $flags"
		# shellcheck disable=SC2086 # flags are a list
		if run ${CC:-cc} -shared -fPIC -Wall -Werror -o \
			"$tmp/mod/out/heartbeat.so" "$tmp/mod/heartbeat.c" $flags; then
			ok "out-of-tree heartbeat.so builds against the installed SDK"
		else
			fail "out-of-tree heartbeat.so does not build"
			cat "$tmp/out"
		fi
	else
		fail "pkg-config keel"
		cat "$tmp/out"
	fi
	unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
	if [ -f "$tmp/mod/out/heartbeat.so" ]; then
		chmod 0755 "$tmp/mod" "$tmp/mod/out"
		if LD_LIBRARY_PATH=$dest$KEEL_LIBDIR run \
			"$dest$KEEL_SBINDIR/keeld" -t -f "$tmp/keeld.conf" \
			-M "$tmp/mod/out"; then
			ok "installed keeld -t loads the out-of-tree module"
		else
			fail "installed keeld -t with the out-of-tree module"
			cat "$tmp/out"
		fi
	fi
else
	skip "pkg-config not installed"
fi

# 7. Relocatable: outside /usr, the installed keeld finds libkeel by its
# RUNPATH ($ORIGIN), also after `cmake --install --prefix` elsewhere, and
# keel.pc there names that prefix.
if [ "$KEEL_PREFIX" != /usr ]; then
	if env -u LD_LIBRARY_PATH "$dest$KEEL_SBINDIR/keeld" -V >"$tmp/out" 2>&1; then
		ok "installed keeld starts without LD_LIBRARY_PATH"
	else
		fail "installed keeld needs LD_LIBRARY_PATH"
		cat "$tmp/out"
	fi
	reloc=$tmp/elsewhere
	if run cmake --install "$build" --prefix "$reloc"; then
		rsbin=$reloc/${KEEL_SBINDIR#"$KEEL_PREFIX"/}
		rlib=$reloc/${KEEL_LIBDIR#"$KEEL_PREFIX"/}
		if env -u LD_LIBRARY_PATH "$rsbin/keeld" -V >"$tmp/out" 2>&1; then
			ok "keeld installed with --prefix elsewhere starts"
		else
			fail "keeld installed with --prefix elsewhere"
			cat "$tmp/out"
		fi
		got=$(PKG_CONFIG_PATH=$rlib/pkgconfig pkg-config --variable=includedir keel 2>/dev/null)
		if [ -n "$got" ] && [ -f "$got/keel/keel.h" ]; then
			ok "keel.pc under --prefix elsewhere finds its headers ($got)"
		else
			fail "keel.pc under --prefix elsewhere: includedir '$got'"
		fi
	else
		fail "cmake --install --prefix $reloc"
		cat "$tmp/out"
	fi
else
	skip "relocation: a /usr build has no RUNPATH (Debian policy)"
fi

echo "$passes passed, $fails failed, $skips skipped"
[ "$fails" -eq 0 ]
