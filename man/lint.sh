#!/bin/sh
# SPDX-License-Identifier: ISC
# Lint manual pages: `mandoc -Tlint -Wwarning` must print nothing, and groff
# must format them without a warning, both directly (`groff -man -ww -z`)
# and the way man(1) does (`man --warnings -l`).
# Exit 0 when clean, 1 on any message, 77 (CTest: skipped) without mandoc.
set -u

if ! command -v mandoc >/dev/null 2>&1; then
	echo "man_lint: mandoc is not installed (apt-get install mandoc): skipped" >&2
	exit 77
fi
have_groff=0
command -v groff >/dev/null 2>&1 && have_groff=1
have_man=0
command -v man >/dev/null 2>&1 && have_man=1
[ $have_groff = 1 ] || echo "man_lint: groff is not installed: groff checks skipped" >&2
[ $have_man = 1 ] || echo "man_lint: man is not installed: man checks skipped" >&2

rc=0
# Report @2 (a tool's messages) against page @1 and remember the failure.
fail() {
	printf '%s: %s\n' "$1" "$2"
	rc=1
}
for page in "$@"; do
	if [ ! -r "$page" ]; then
		fail "$page" "cannot read"
		continue
	fi
	out=$(mandoc -Tlint -Wwarning "$page" 2>&1)
	status=$?
	[ $status = 0 ] || [ -n "$out" ] || out="mandoc exited with status $status"
	[ -z "$out" ] || fail "$page" "$out"
	if [ $have_groff = 1 ]; then
		out=$(groff -man -ww -z "$page" 2>&1)
		[ -z "$out" ] || fail "$page" "$out"
	fi
	if [ $have_man = 1 ]; then
		out=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
		[ -z "$out" ] || fail "$page" "$out"
	fi
done
[ $rc = 0 ] && echo "man_lint: $# pages clean"
exit $rc
