#!/bin/sh
# SPDX-License-Identifier: ISC
# Static checks: clang-format conformance, cppcheck and clang-tidy warnings
# (see .clang-tidy for what is disabled and why). Any finding fails.
# Usage: tests/lint.sh SOURCE_DIR BUILD_DIR (BUILD_DIR has compile_commands.json)
set -u
src=$1
build=$2
cd "$src" || exit 2
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find lib daemon modules include tests -name '*.[ch]')
status=0

if command -v clang-format >/dev/null; then
	bad=$(for f in $files; do clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || echo "$f"; done)
	if [ -n "$bad" ]; then
		echo "not formatted with .clang-format:"; echo "$bad"; status=1
	else
		echo "clang-format: clean"
	fi
fi

# Every source, script and build file says its licence (ISC, LICENSE) in
# its first lines; data (the fuzz corpus, configurations, docs) is exempt.
nolic=$(git ls-files 2>/dev/null |
	grep -vE '^tests/fuzz/(corpus|known-bugs)/|\.(md|png|dict|conf)$|^packaging/debian/|^\.|^LICENSE$' |
	while read -r f; do
		head -3 "$f" | grep -q 'SPDX-License-Identifier: ISC' || echo "$f"
	done)
if [ -n "$nolic" ]; then
	echo "no SPDX-License-Identifier: ISC in the first lines of:"; echo "$nolic"; status=1
else
	echo "SPDX headers: every source"
fi

if command -v cppcheck >/dev/null; then
	if cppcheck --quiet --enable=warning,performance,portability --inline-suppr \
		--std=c11 --error-exitcode=1 -I include -I lib -D__GNUC__ \
		lib daemon modules tests/modules; then
		echo "cppcheck: clean"
	else
		status=1
	fi
fi

if command -v clang-tidy >/dev/null && [ -f "$build/compile_commands.json" ]; then
	if clang-tidy -p "$build" --quiet lib/*.c daemon/*.c modules/*/*.c 2>&1 |
		grep -E "(warning|error):" >"$build/clang-tidy.out"; then
		cat "$build/clang-tidy.out"; status=1
	else
		echo "clang-tidy: clean"
	fi
fi
exit $status
