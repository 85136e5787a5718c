#!/bin/sh
# SPDX-License-Identifier: ISC
# Each public header compiles on its own, in C and in C++, and the C++ build
# sees C linkage (the symbols are not mangled).
set -eu
inc=$1 cc=$2 cxx=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ev=$(pkg-config --cflags libevent_core)
n=0
for h in "$inc"/keel/*.h; do
	name=keel/$(basename "$h")
	printf '#include <%s>\n#include <%s>\nint keel_header_test;\n' "$name" "$name" >"$tmp/t.c"
	# shellcheck disable=SC2086
	"$cc" -std=c11 -Wall -Wextra -Werror -pedantic-errors -I"$inc" $ev -c "$tmp/t.c" -o "$tmp/t.o" ||
		{ echo "FAIL: $name does not compile alone as C"; exit 1; }
	if [ -n "$cxx" ]; then
		cp "$tmp/t.c" "$tmp/t.cc"
		# shellcheck disable=SC2086
		"$cxx" -std=c++11 -Wall -Wextra -Werror -I"$inc" $ev -c "$tmp/t.cc" -o "$tmp/t.o" ||
			{ echo "FAIL: $name does not compile alone as C++"; exit 1; }
	fi
	n=$((n + 1))
done
if [ -n "$cxx" ]; then
	printf '#include <keel/keel.h>\nint main(int c, char **v) { keel_log(KEEL_LOG_INFO, "%%s", "x"); return keel_main(c, v, 0); }\n' >"$tmp/m.cc"
	# shellcheck disable=SC2086
	"$cxx" -I"$inc" $ev -c "$tmp/m.cc" -o "$tmp/m.o"
	nm "$tmp/m.o" | grep -q ' U keel_main$' || { echo "FAIL: keel_main has C++ linkage"; exit 1; }
fi
echo "$n headers compile alone as C${cxx:+ and C++}"
