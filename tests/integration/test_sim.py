# SPDX-License-Identifier: ISC
"""The sim module: simulated serial devices on pseudo-terminals, read
through their published links the way a serial client would."""
import errno
import os
import re
import select
import signal
import termios
import time
import tty
import unittest

from keeltest import Keeld, main, wait_for

PATTERN = bytes(range(251))


def open_tty(path):
    """Open a published link like a serial client: no controlling tty, raw.

    TCSANOW, not tty.setraw's default TCSAFLUSH, which would throw away
    what the sim wrote before we opened it."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    tty.setraw(fd, termios.TCSANOW)
    return fd


def read_some(fd, want, timeout):
    """Read until want bytes arrived or timeout; return what came."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        try:
            d = os.read(fd, min(65536, want - len(buf)))
        except BlockingIOError:
            continue
        if not d:
            break
        buf += d
    return bytes(buf)


def echo_roundtrip(test, fd, data, timeout=20):
    """Write data and read it back, interleaved; assert it is byte-exact."""
    sent = 0
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < len(data):
        test.assertLess(time.monotonic(), deadline,
                        "echo: %d of %d bytes back" % (len(got), len(data)))
        w = [fd] if sent < len(data) else []
        r, w, _ = select.select([fd], w, [], 0.5)
        if w:
            try:
                sent += os.write(fd, data[sent:sent + 1024])
            except BlockingIOError:
                pass
        if r:
            try:
                got += os.read(fd, 65536)
            except BlockingIOError:
                pass
    test.assertEqual(bytes(got), data)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nmea_ok(sentence):
    """True when a sentence is $BODY*XX with the right XOR checksum."""
    m = re.fullmatch(r"\$([^*$]*)\*([0-9A-F]{2})", sentence)
    if not m:
        return False
    sum_ = 0
    for c in m.group(1).encode():
        sum_ ^= c
    return sum_ == int(m.group(2), 16)


class Sim(unittest.TestCase):
    def keeld(self, sections, start=True):
        """A keeld running `sim` sections given as (name, {option: value})."""
        k = Keeld("", modules=("sim",))
        self.addCleanup(k.close)
        k.write(self.body(k, sections))
        if start:
            k.start()
        return k

    @staticmethod
    def link(k, name):
        return os.path.join(k.dir, name)

    def body(self, k, sections):
        out = ""
        for name, opts in sections:
            opts = dict(opts)
            opts.setdefault("link", self.link(k, name))
            out += "sim %s {\n" % name
            for key, v in opts.items():
                if v is None:
                    continue
                out += "  %s = %s\n" % (key, '"%s"' % v if isinstance(v, str) else v)
            out += "}\n"
        return out

    def pts(self, path):
        target = os.readlink(path)
        self.assertRegex(target, r"^/dev/pts/\d+$")
        return target

    def reload_ok(self, k):
        rc, out, err = k.ctl("reload")
        self.assertEqual(rc, 0, out + err)

    def status(self, k):
        rc, out, err = k.ctl("status")
        self.assertEqual(rc, 0, err)
        return out

    # -- publishing ----------------------------------------------------------
    def test_link_points_to_a_pts_and_status_names_it(self):
        k = self.keeld([("a", {"mode": "echo"})])
        target = self.pts(self.link(k, "a"))
        self.assertTrue(os.path.exists(target))
        self.assertEqual([n for n in os.listdir(k.dir) if "keel-tmp" in n], [])
        out = self.status(k)
        self.assertIn("sim.a.mode: echo\n", out)
        self.assertIn("sim.a.link: %s\n" % self.link(k, "a"), out)
        self.assertIn("sim.a.state: open\n", out)
        self.assertIn("sim.a.pts: %s\n" % target, out)
        self.assertIn("sim.a.tx_bytes_total: 0\n", out)

    def test_stop_closes_and_removes_links(self):
        k = self.keeld([("a", {"mode": "echo"}), ("b", {"mode": "pattern", "rate": 0})])
        fd = open_tty(self.link(k, "a"))
        self.addCleanup(os.close, fd)
        k.kill(signal.SIGTERM)
        self.assertEqual(k.wait_exit(), 0)
        self.assertFalse(os.path.lexists(self.link(k, "a")))
        self.assertFalse(os.path.lexists(self.link(k, "b")))
        # The reader sees the hang-up.
        r, _, _ = select.select([fd], [], [], 5)
        self.assertTrue(r)
        try:
            self.assertEqual(os.read(fd, 100), b"")
        except OSError as e:
            self.assertEqual(e.errno, errno.EIO)

    # -- modes ---------------------------------------------------------------
    def test_echo_is_byte_exact(self):
        k = self.keeld([("a", {"mode": "echo"})])
        fd = open_tty(self.link(k, "a"))
        self.addCleanup(os.close, fd)
        # Every byte value, the tty-special ones included (CR, LF, ^C, ^D,
        # ^S, ^Q, DEL), more than the pty and the sim's queue can hold.
        data = bytes(range(256)) * 256 + os.urandom(65536)
        echo_roundtrip(self, fd, data)
        out = self.status(k)
        self.assertIn("sim.a.tx_bytes_total: %d\n" % len(data), out)
        self.assertIn("sim.a.rx_bytes_total: %d\n" % len(data), out)

    def test_nmea_sentences_parse_and_checksums_verify(self):
        k = self.keeld([("g", {"mode": "nmea", "rate": 5})])
        fd = open_tty(self.link(k, "g"))
        self.addCleanup(os.close, fd)
        data = read_some(fd, 1 << 20, 2.0)
        text = data.decode("ascii")
        self.assertTrue(text.endswith("\r\n") or "\r\n" in text, repr(text[:200]))
        lines = text.split("\r\n")
        # The first and last may be cut by our window; all others whole.
        whole = [l for l in lines[1:-1]] + ([lines[0]] if lines[0].startswith("$") else [])
        self.assertGreaterEqual(len(whole), 10, text)
        kinds = set()
        now = time.gmtime()
        for s in whole:
            self.assertTrue(nmea_ok(s), "bad sentence %r" % s)
            f = s.split("*")[0].split(",")
            kinds.add(f[0])
            self.assertIn(f[0], ("$GPGGA", "$GPRMC"))
            hh, mm, ss = int(f[1][0:2]), int(f[1][2:4]), float(f[1][4:])
            diff = abs((hh * 3600 + mm * 60 + ss) - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec))
            self.assertLess(min(diff, 86400 - diff), 10, s)
            if f[0] == "$GPGGA":
                self.assertRegex(s, r"^\$GPGGA,\d{6}\.\d{2},\d{4}\.\d{4},[NS],\d{5}\.\d{4},[EW],1,")
            else:
                self.assertRegex(s, r"^\$GPRMC,\d{6}\.\d{2},A,\d{4}\.\d{4},[NS],\d{5}\.\d{4},[EW],")
                self.assertEqual(f[9], time.strftime("%d%m%y", now))
        self.assertEqual(kinds, {"$GPGGA", "$GPRMC"})
        self.assertNotIn("\n", "".join(whole))

    def test_pattern_is_i_mod_251_over_one_mib(self):
        k = self.keeld([("p", {"mode": "pattern", "rate": 0})])
        fd = open_tty(self.link(k, "p"))
        self.addCleanup(os.close, fd)
        n = 1 << 20
        data = read_some(fd, n, 30)
        self.assertEqual(len(data), n)
        expect = (PATTERN * (n // 251 + 1))[:n]
        self.assertEqual(data[:251], PATTERN)  # a fresh pty starts at 0
        if data != expect:
            self.fail("pattern broken at byte %d" %
                      next(i for i in range(n) if data[i] != expect[i]))

    def test_pattern_rate_limits(self):
        t0 = time.monotonic()
        k = self.keeld([("p", {"mode": "pattern", "rate": 2000})])
        fd = open_tty(self.link(k, "p"))
        self.addCleanup(os.close, fd)
        data = read_some(fd, 1 << 20, 2.0)
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(len(data), 2000, len(data))
        self.assertLessEqual(len(data), 2000 * elapsed + 200, (len(data), elapsed))
        self.assertEqual(data, (PATTERN * (len(data) // 251 + 1))[:len(data)])

    # -- hang-ups ------------------------------------------------------------
    def hung_up(self, fd, timeout):
        """Read until the hang-up (EOF or EIO); True when it came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if not r:
                continue
            try:
                if os.read(fd, 65536) == b"":
                    return True
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno == errno.EIO:
                    return True
                raise
        return False

    def test_hangup_every_then_a_fresh_pty_works(self):
        k = self.keeld([("h", {"mode": "echo", "hangup-every": 1})])
        link = self.link(k, "h")
        old = self.pts(link)
        fd = open_tty(link)
        echo_roundtrip(self, fd, b"before\r\n")
        self.assertTrue(self.hung_up(fd, 4), "no hang-up seen")
        # The old pty is held open by us, so the new one has another number.
        new = wait_for(lambda: os.path.lexists(link) and os.readlink(link) != old
                       and os.readlink(link), 3, what="a fresh pty at the link")
        self.assertRegex(new, r"^/dev/pts/\d+$")
        os.close(fd)
        fd = open_tty(link)
        self.addCleanup(os.close, fd)
        echo_roundtrip(self, fd, b"after\x00\xff\r\n")
        self.assertRegex(self.status(k), r"sim\.h\.hangups_total: [1-9]")

    def test_pattern_restarts_at_zero_on_each_new_pty(self):
        k = self.keeld([("p", {"mode": "pattern", "rate": 0, "hangup-every": 1})])
        link = self.link(k, "p")
        old = self.pts(link)
        fd = open_tty(link)
        self.assertEqual(read_some(fd, 100000, 5)[:1000], (PATTERN * 4)[:1000])
        self.assertTrue(self.hung_up(fd, 4))
        wait_for(lambda: os.path.lexists(link) and os.readlink(link) != old, 3,
                 what="a fresh pty")
        os.close(fd)
        fd = open_tty(link)
        self.addCleanup(os.close, fd)
        self.assertEqual(read_some(fd, 1000, 5), (PATTERN * 4)[:1000])

    # -- reload --------------------------------------------------------------
    def test_reload_unchanged_keeps_the_pty_and_changes_apply_in_place(self):
        secs = [("a", {"mode": "echo"}), ("b", {"mode": "pattern", "rate": 100})]
        k = self.keeld(secs)
        a, b = self.pts(self.link(k, "a")), self.pts(self.link(k, "b"))
        fd = open_tty(self.link(k, "a"))
        self.addCleanup(os.close, fd)
        echo_roundtrip(self, fd, b"one")
        secs[1] = ("b", {"mode": "nmea", "rate": 10})
        k.write(self.body(k, secs))
        self.reload_ok(k)
        self.assertEqual(self.pts(self.link(k, "a")), a)
        self.assertEqual(self.pts(self.link(k, "b")), b)
        # The reader of a noticed nothing: same fd, still echoing.
        echo_roundtrip(self, fd, b"two")
        out = self.status(k)
        self.assertIn("sim.b.mode: nmea\n", out)
        self.assertIn("sim.b.rate: 10\n", out)
        fb = open_tty(self.link(k, "b"))
        self.addCleanup(os.close, fb)
        # Pattern bytes from before the change, then sentences.
        text = read_some(fb, 1 << 20, 1.0)
        self.assertIn(b"\r\n$GPGGA,", text)

    def test_reload_moves_the_link_keeping_the_pty(self):
        k = self.keeld([("a", {"mode": "echo"})])
        a = self.pts(self.link(k, "a"))
        fd = open_tty(self.link(k, "a"))
        self.addCleanup(os.close, fd)
        k.write(self.body(k, [("a", {"mode": "echo", "link": self.link(k, "moved")})]))
        self.reload_ok(k)
        self.assertEqual(self.pts(self.link(k, "moved")), a)
        self.assertFalse(os.path.lexists(self.link(k, "a")))
        echo_roundtrip(self, fd, b"still here")

    def test_reload_publishes_again_a_removed_link(self):
        k = self.keeld([("a", {"mode": "echo"})])
        link = self.link(k, "a")
        a = self.pts(link)
        os.unlink(link)
        self.reload_ok(k)  # the same configuration
        wait_for(lambda: os.path.lexists(link), 3, what="the link again")
        self.assertEqual(self.pts(link), a)

    def test_reload_removes_and_adds_sections(self):
        k = self.keeld([("a", {"mode": "echo"}), ("b", {"mode": "echo"})])
        a = self.pts(self.link(k, "a"))
        self.pts(self.link(k, "b"))
        k.write(self.body(k, [("a", {"mode": "echo"}), ("c", {"mode": "pattern", "rate": 0})]))
        self.reload_ok(k)
        self.assertFalse(os.path.lexists(self.link(k, "b")))
        self.assertEqual(self.pts(self.link(k, "a")), a)
        fd = open_tty(self.link(k, "c"))
        self.addCleanup(os.close, fd)
        self.assertEqual(read_some(fd, 502, 5), PATTERN * 2)
        out = self.status(k)
        self.assertNotIn("sim.b.", out)
        self.assertIn("sim.c.mode: pattern\n", out)

    def reject(self, k, body, expect, line_of):
        """A bad reload: FILE:LINE error (line_of: its last line of that
        text), nothing running changes."""
        a = self.pts(self.link(k, "a"))
        k.write(body)
        lines = Keeld.read(k.conf).splitlines()
        line = len(lines) - lines[::-1].index(line_of)
        rc, out, err = k.ctl("reload")
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(err, re.escape("%s:%d: " % (k.conf, line)) + ".*" + expect)
        self.assertTrue(k.alive())
        self.assertEqual(self.pts(self.link(k, "a")), a)
        fd = open_tty(self.link(k, "a"))
        self.addCleanup(os.close, fd)
        echo_roundtrip(self, fd, b"unchanged")
        self.assertEqual([n for n in os.listdir(k.dir) if "keel-tmp" in n], [])

    def test_bad_mode_is_a_file_line_error_and_keeld_keeps_running(self):
        k = self.keeld([("a", {"mode": "echo"})])
        body = self.body(k, [("a", {"mode": "echo"}), ("z", {"mode": "banana"})])
        self.reject(k, body, r"mode 'banana' is not one of echo, nmea, pattern",
                    '  mode = "banana"')
        self.assertFalse(os.path.lexists(self.link(k, "z")))

    def test_missing_link_and_bad_values_are_rejected(self):
        k = self.keeld([("a", {"mode": "echo"})])
        good = self.body(k, [("a", {"mode": "echo"})])
        self.reject(k, good + 'sim z {\n  mode = "echo"\n}\n',
                    r"sim 'z': link is required", "sim z {")
        self.reject(k, good + 'sim z {\n  link = "relative"\n}\n',
                    r"link 'relative' is not an absolute", '  link = "relative"')
        self.reject(k, good + 'sim z {\n  link = "%s"\n  mode = "nmea"\n  rate = 0\n}\n'
                    % self.link(k, "z"), r"nmea rate 0 is out of range", "  rate = 0")
        self.reject(k, good + 'sim z {\n  link = "%s"\n  hangup-every = 0.1\n}\n'
                    % self.link(k, "z"), r"hangup-every 0.1 is out of range", "  hangup-every = 0.1")
        self.reject(k, good + 'sim z {\n  link = "%s"\n}\n' % self.link(k, "a"),
                    r"link .* is already used by sim 'a'", '  link = "%s"' % self.link(k, "a"))
        self.reject(k, good + 'sim z {\n  link = "%s/nowhere/z"\n}\n' % k.dir,
                    r"directory .*nowhere: No such file", '  link = "%s/nowhere/z"' % k.dir)

    def test_a_file_at_the_link_is_not_replaced(self):
        k = self.keeld([("a", {"mode": "echo"})])
        path = self.link(k, "precious")
        with open(path, "w") as f:
            f.write("keep me")
        good = self.body(k, [("a", {"mode": "echo"})])
        self.reject(k, good + 'sim z {\n  link = "%s"\n}\n' % path,
                    r"exists and is not a symbolic link", '  link = "%s"' % path)
        self.assertEqual(Keeld.read(path), "keep me")

    def test_check_acquires_nothing(self):
        k = self.keeld([("a", {"mode": "echo"}), ("b", {"mode": "nmea"})], start=False)
        rc, out, err = k.check()
        self.assertEqual(rc, 0, err)
        # No pty, no link, no temporary link: only keeld's own files.
        self.assertEqual(sorted(set(os.listdir(k.dir)) - {"keeld.log"}),
                         ["keeld.conf", "modules"])

    # -- no reader -------------------------------------------------------------
    def test_no_reader_does_not_spin(self):
        k = self.keeld([("e", {"mode": "echo"}),
                        ("n", {"mode": "nmea", "rate": 20}),
                        ("p", {"mode": "pattern", "rate": 0}),
                        ("q", {"mode": "pattern", "rate": 5000})])
        # A reader that came and went: its slave closed (TRAPS: EIO storm).
        for name in "enpq":
            fd = open_tty(self.link(k, name))
            os.write(fd, b"x")
            os.close(fd)
        time.sleep(0.5)
        c0 = cpu_seconds(k.pid)
        time.sleep(2.0)
        used = cpu_seconds(k.pid) - c0
        self.assertLess(used, 0.1, "keeld used %.2fs of CPU in 2s with no reader" % used)
        self.assertTrue(k.alive())

    def test_nmea_drops_and_counts_when_nobody_reads(self):
        k = self.keeld([("n", {"mode": "nmea", "rate": 100})])

        def dropped():
            m = re.search(r"sim\.n\.drops_total: (\d+)", self.status(k))
            return m and int(m.group(1)) > 0
        wait_for(dropped, 15, step=0.5, what="dropped sentences")
        # What is still queued is whole sentences.
        fd = open_tty(self.link(k, "n"))
        self.addCleanup(os.close, fd)
        text = read_some(fd, 1 << 20, 0.5).decode("ascii")
        for s in text.split("\r\n")[:-1]:
            self.assertTrue(nmea_ok(s), repr(s))


if __name__ == "__main__":
    main()
