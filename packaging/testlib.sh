# SPDX-License-Identifier: ISC
# testlib.sh: sourced by the packaging tests (test-install.sh, test-deb.sh,
# test-systemd.sh): the ok/FAIL/skip lines and their counts, which end in
# "N passed, N failed", and the tidying after systemd-nspawn.
fails=0
passes=0
skips=0

ok() {
	passes=$((passes + 1))
	echo "ok: $*"
}
fail() {
	fails=$((fails + 1))
	echo "FAIL: $*"
}
skip() {
	skips=$((skips + 1))
	echo "skip: $*"
}

# systemd-nspawn's own run-time directories, when it left them empty.
nspawn_tidy() {
	rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks \
		/run/systemd/nspawn 2>/dev/null
	return 0
}
