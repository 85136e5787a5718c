#!/bin/sh
# SPDX-License-Identifier: ISC
# test-deb.sh: the Debian packages as a user gets them.
#
#   packaging/test-deb.sh [DEB_DIR]       (default build/deb, from
#                                           scripts/build-deb)
#
# 1. lintian --pedantic on the .changes: any tag, of any severity, fails
#    (overrides, each with its reason, live in packaging/debian/*.lintian-
#    overrides; there are none today).
# 2. A clean Debian 12 chroot (mmdebstrap, minimal "apt" variant plus what
#    the packages depend on and what builds a module), booted as a
#    systemd-nspawn container without network (no daemon of the host is
#    touched, every process inside ends with it): dpkg -i the three
#    packages; keeld -t accepts the packaged configuration; an out-of-tree
#    copy of modules/heartbeat builds against the installed libkeel-dev,
#    once with `pkg-config --cflags --libs keel` and once with CMake
#    `find_package(keel)`, and the installed keeld runs each build (its
#    heartbeat line seen, then `keeld -s stop`); dpkg --purge of the three
#    leaves no file behind that was not there before the install (the
#    `keel` account stays, as Debian does: /etc/passwd and friends change).
#
# The base chroot is built once and cached as a tarball under
# $KEEL_CI_CACHE (default /var/cache/keel-ci, outside the repository); it
# is rebuilt when the package list below changes or after 7 days. The first
# run downloads from $KEEL_DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Needs root, mmdebstrap, systemd-nspawn and lintian (scripts/deps test).
# Exit 0 pass, 1 fail, 77 cannot run here. About 1 minute with the cache.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
debs=$(cd "${1:-$top/build/deb}" && pwd) || exit 1
ls "$debs"/keeld_*.deb "$debs"/libkeel0_*.deb "$debs"/libkeel-dev_*.deb \
	"$debs"/*.changes >/dev/null || exit 1
[ "$(id -u)" = 0 ] || { echo "test-deb: needs root" >&2; exit 77; }
for tool in lintian:lintian mmdebstrap:mmdebstrap \
	systemd-nspawn:systemd-container; do
	command -v "${tool%%:*}" >/dev/null || {
		echo "test-deb: needs ${tool%%:*} (${tool#*:})" >&2
		exit 77
	}
done

cache=${KEEL_CI_CACHE:-/var/cache/keel-ci}
mirror=${KEEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
arch=$(dpkg --print-architecture)
# What keeld, libkeel0 and libkeel-dev depend on (installed before the
# "before" listing, as piuparts does), and what builds an out-of-tree module.
base_pkgs="adduser init-system-helpers libevent-dev libconfuse-dev
libjansson-dev pkg-config gcc libc6-dev cmake make"
key=$(printf '%s %s %s\n' "$suite" "$arch" "$base_pkgs" | md5sum | cut -c1-12)
tarball=$cache/$suite-$arch-$key.tar

. "$top/packaging/testlib.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-deb.XXXXXX") || exit 1
root=$tmp/root
cleanup() {
	# The container's processes end with systemd-nspawn, which runs in
	# the foreground; only files are left.
	rm -rf "$tmp"
	nspawn_tidy
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# 1. lintian. --fail-on takes every severity, pedantic and info included.
if timeout 300 lintian --pedantic --display-info --display-experimental \
	--fail-on error,warning,info,pedantic,experimental \
	"$debs"/*.changes >"$tmp/lintian" 2>&1; then
	ok "lintian --pedantic: no tag"
else
	fail "lintian --pedantic"
	grep -v 'running with root privileges' "$tmp/lintian"
fi

# 2. The base chroot.
if [ -f "$tarball" ] && [ -z "$(find "$tarball" -mtime +7)" ]; then
	echo "base chroot: $tarball (cached)"
else
	mkdir -p "$cache"
	echo "base chroot: building $tarball from $mirror"
	rm -rf "$cache/$suite-$arch-"*.tar
	# mmdebstrap picks the output format by the name's ending: .tar.
	part=$cache/.partial-$key.tar
	# shellcheck disable=SC2086 # base_pkgs is a list
	if timeout 900 mmdebstrap --quiet --variant=apt \
		--include="$(echo $base_pkgs | tr ' ' ',')" \
		"$suite" "$part" "$mirror" >"$tmp/out" 2>&1; then
		mv "$part" "$tarball"
	else
		rm -rf "$part"
		fail "mmdebstrap $suite"
		tail -20 "$tmp/out"
		echo "$passes passed, $fails failed"
		exit 1
	fi
fi
mkdir "$root"
tar -C "$root" --numeric-owner -xpf "$tarball" || exit 1
# As piuparts does: maintainer scripts may not start services here.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mkdir "$root/keel-test"
cp "$top/modules/heartbeat/heartbeat.c" "$root/keel-test/"
cp "$debs"/keeld_*.deb "$debs"/libkeel0_*.deb "$debs"/libkeel-dev_*.deb \
	"$root/keel-test/"

# Every file, directory and link with its type, mode and numeric owner; what dpkg,
# apt and ldconfig keep as their own state is not the packages' leftover.
snapshot() {
	(cd "$root" && find . -xdev \( -path ./proc -o -path ./sys \
		-o -path ./dev -o -path ./run -o -path ./tmp \
		-o -path ./keel-test -o -path ./var/lib/dpkg \
		-o -path ./var/log/dpkg.log -o -path ./var/log/apt \
		-o -path ./var/cache/debconf -o -path ./var/cache/ldconfig \
		-o -path ./etc/ld.so.cache \) -prune -o \
		-printf '%y %m %U:%G %p\n' | sort)
}
snapshot >"$tmp/before"

# The steps inside the container; each prints ok:/FAIL: lines.
cat >"$root/keel-test/run.sh" <<'EOF'
set -u
cd /keel-test
# systemd-nspawn gives its payload a NOTIFY_SOCKET: keeld would take it for
# systemd's and stay in the foreground instead of daemonizing.
unset NOTIFY_SOCKET
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; }
if dpkg -i libkeel0_*.deb keeld_*.deb libkeel-dev_*.deb >out 2>&1; then
	ok "dpkg -i libkeel0 keeld libkeel-dev"
else
	fail "dpkg -i"; cat out
fi
if keeld -t >out 2>&1; then
	ok "installed keeld -t accepts /etc/keel/keeld.conf"
else
	fail "keeld -t"; cat out
fi

# The out-of-tree module, built both ways against the installed SDK.
mkdir -p pc cm
if cc -shared -fPIC -Wall -Werror -o pc/heartbeat.so heartbeat.c \
	$(pkg-config --cflags --libs keel) >out 2>&1; then
	ok "module built with pkg-config --cflags --libs keel"
else
	fail "module with pkg-config"; cat out
fi
cat >CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.18)
project(heartbeat LANGUAGES C)
find_package(keel 0.1 REQUIRED)
add_library(heartbeat MODULE heartbeat.c)
target_link_libraries(heartbeat PRIVATE keel::keel)
set_target_properties(heartbeat PROPERTIES PREFIX "")
message(STATUS "keel module directory: ${KEEL_MODULE_DIR}")
CM
if cmake -S . -B cmbuild >out 2>&1 && cmake --build cmbuild >>out 2>&1 &&
	cp cmbuild/heartbeat.so cm/; then
	ok "module built with CMake find_package(keel) ($(sed -n 's/.*keel module directory: //p' out))"
else
	fail "module with CMake find_package(keel)"; cat out
fi
chmod 0755 /keel-test pc cm

# The installed keeld runs each build: its line appears, then -s stop.
for dir in pc cm; do
	cat >$dir.conf <<CONF
pidfile    = "/keel-test/$dir.pid"
state-file = "/keel-test/$dir.state"
log        = "/keel-test/$dir.log"
load = { "heartbeat" }
heartbeat t {
  message  = "out-of-tree $dir"
  interval = 0.1
}
CONF
	if keeld -f $dir.conf -M /keel-test/$dir >out 2>&1; then
		i=0
		while [ $i -lt 50 ] && ! grep -q "out-of-tree $dir" $dir.log; do
			sleep 0.1
			i=$((i + 1))
		done
		if grep -q "out-of-tree $dir" $dir.log; then
			ok "installed keeld runs the $dir-built module"
		else
			fail "no heartbeat from the $dir-built module"; cat $dir.log
		fi
		keeld -f $dir.conf -M /keel-test/$dir -s stop >out 2>&1 ||
			{ fail "keeld -s stop"; cat out; }
	else
		fail "installed keeld with the $dir-built module"; cat out
	fi
done

if dpkg --purge keeld libkeel-dev libkeel0 >out 2>&1; then
	ok "dpkg --purge keeld libkeel-dev libkeel0"
else
	fail "dpkg --purge"; cat out
fi
EOF
# --timezone=off: nspawn would otherwise write /etc/localtime.
timeout 300 systemd-nspawn -q -D "$root" --as-pid2 --private-network \
	--register=no --keep-unit --link-journal=no --timezone=off \
	-M "keeldeb$$" --console=pipe /bin/sh /keel-test/run.sh \
	>"$tmp/run" 2>&1
cat "$tmp/run"
passes=$((passes + $(grep -c '^ok: ' "$tmp/run")))
fails=$((fails + $(grep -c '^FAIL: ' "$tmp/run")))
grep -q 'dpkg --purge keeld' "$tmp/run" || fail "the container run did not finish"

# 3. Nothing left behind. The keel account stays (Debian practice): shadow's
# backups of the files it changed are not leftovers either.
snapshot | grep -vE ' \./etc/(passwd|group|shadow|gshadow)-$' >"$tmp/after"
grep -vE ' \./etc/(passwd|group|shadow|gshadow)-$' "$tmp/before" >"$tmp/before.f"
if diff "$tmp/before.f" "$tmp/after" >"$tmp/diff"; then
	ok "purge: no file left behind, none changed type, mode or owner"
else
	fail "purge left differences (< before, > after):"
	grep '^[<>]' "$tmp/diff" | head -40
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
