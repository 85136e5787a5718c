# SPDX-License-Identifier: ISC
"""serial: clients that half-close (eof-linger) and who may connect (allow),
with the real keeld, ptys and TCP on loopback. Every wait is bounded; keeld
is ended by PID (keeltest)."""
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import unittest

from keeltest import Keeld, main, wait_for
from serialtest import (Pty, connect, free_port, in_thread, port_status, serial_section, statuses,
                        wait_open)


def read_device(fd, n, timeout=3.0):
    """Exactly n bytes the device got, within timeout."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError("the device got %r, wanted %d bytes" % (got, n))
        got += os.read(fd, n - len(got))
    return got


def device_silent(fd, seconds):
    """True when nothing reaches the device for that long."""
    return not select.select([fd], [], [], seconds)[0]


def recv_until_closed(sock, timeout=5.0):
    """Everything the client gets until keeld closes it, and when it ended
    (monotonic); fails after timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("still open after %.1fs (got %r)" % (timeout, data))
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            b = b""
        if not b:
            return data, time.monotonic()
        data += b


def peers(st):
    """The peers of a port status, as a list of {field: value}."""
    out = {}
    for key, value in st.items():
        if key.startswith("peers."):
            _, idx, field = key.split(".", 2)
            out.setdefault(int(idx), {})[field] = value
    return [out[i] for i in sorted(out)]


class ClientsBase(unittest.TestCase):
    extra = ""

    def setUp(self):
        self.k = Keeld("", modules=("serial",))
        self.addCleanup(self.k.close)
        self.addCleanup(self.stop_clean)
        self.link = os.path.join(self.k.dir, "ttyTEST0")
        self.pty = Pty(self.link)
        self.addCleanup(self.pty.close)
        self.port = free_port()

    def stop_clean(self):
        """A graceful stop (so that LeakSanitizer runs at exit in the ASan
        build) with no sanitizer report in keeld's stderr."""
        if self.k.alive():
            self.k.kill(signal.SIGTERM)
            self.assertEqual(self.k.wait_exit(10), 0)
        err = self.k.read(os.path.join(self.k.dir, "stderr"))
        for word in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(word, err, err[-4000:])

    def start(self, extra=None):
        self.body = serial_section("a", self.link, self.port, self.k.dir,
                                   self.extra if extra is None else extra)
        self.k.write(self.body)
        self.k.start()
        wait_open(self.k, "a")

    def client(self):
        c = connect(self.port)
        self.addCleanup(c.close)
        return c

    def assert_bridged(self, c):
        """Bytes pass both ways between client c and port a's device."""
        c.sendall(b"in\n")
        self.assertEqual(read_device(self.pty.master, 3), b"in\n")
        os.write(self.pty.master, b"out\n")
        self.assertEqual(c.recv(100), b"out\n")

    def lingering_client(self):
        """A connected client that asked something ("?" reaches the device)
        and shut down its sending side, once keeld saw its end of file."""
        st = port_status(self.k, "a")
        c = self.client()
        self.wait_clients(st["clients"] + 1)
        c.sendall(b"?")
        c.shutdown(socket.SHUT_WR)
        wait_for(lambda: port_status(self.k, "a")["half_closed_total"] == st["half_closed_total"] + 1,
                 3, 0.02, what="end of file seen")
        return c

    def wait_clients(self, n):
        return wait_for(lambda: port_status(self.k, "a")["clients"] == n, 5, 0.02,
                        what="%d clients" % n)


class HalfClose(ClientsBase):
    extra = "  eof-linger = 0.6\n"

    def test_the_reply_to_the_last_request_arrives_then_the_linger_ends(self):
        self.start(extra="  eof-linger = 1.5\n")
        c = self.client()
        self.wait_clients(1)
        c.sendall(b"cmd\n")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(read_device(self.pty.master, 4), b"cmd\n")
        st = wait_for(lambda: (lambda s: s if peers(s) and peers(s)[0].get("eof") == "yes"
                               else None)(port_status(self.k, "a")), 3, 0.02, what="peer eof")
        self.assertEqual(st["half_closed_total"], 1)
        self.assertEqual(st["clients"], 1)
        t0 = time.monotonic()
        os.write(self.pty.master, b"reply\n")
        data, ended = recv_until_closed(c, 5)
        self.assertEqual(data, b"reply\n")
        # Closed eof-linger (1.5 s) after the last byte written to it.
        self.assertGreater(ended - t0, 1.3)
        self.assertLess(ended - t0, 4.0)
        self.k.wait_log(r"serial: a: client 127\.0\.0\.1:\d+ closed \(eof-linger\)")
        self.wait_clients(0)

    def test_a_streaming_reply_keeps_the_client(self):
        # Device data every 0.2 s for 2 s, eof-linger 0.6 s: the client
        # stays for all of it because every write restarts the linger.
        self.start()
        c = self.lingering_client()
        got = {}
        r = in_thread(lambda: got.update(zip(("data", "end"), recv_until_closed(c, 10))))
        sent = b""
        for i in range(10):
            line = b"line %d\n" % i
            os.write(self.pty.master, line)
            sent += line
            time.sleep(0.2)
        r.join(10)
        self.assertEqual(got.get("data"), sent)

    def test_nc_q1_gets_the_reply(self):
        # The reported case: printf 'cmd\n' | nc -q1 HOST PORT, with the
        # default eof-linger.
        nc = shutil.which("nc")
        if nc is None:
            self.skipTest("nc (netcat-openbsd, scripts/deps test) is not installed")
        self.start(extra="")

        def device():
            if read_device(self.pty.master, 4, 5) == b"cmd\n":
                time.sleep(0.2)  # after nc's end of file
                os.write(self.pty.master, b"reply\n")
        t = in_thread(device)
        r = subprocess.run([nc, "-q1", "127.0.0.1", str(self.port)], input=b"cmd\n",
                           capture_output=True, timeout=10)
        t.join(5)
        self.assertEqual(r.stdout, b"reply\n", r.stderr)

    def test_a_client_that_closes_altogether_is_freed_at_the_next_write(self):
        self.start(extra="  eof-linger = 60\n")
        c = connect(self.port)
        self.wait_clients(1)
        c.sendall(b"cmd\n")
        c.close()
        self.assertEqual(read_device(self.pty.master, 4), b"cmd\n")
        wait_for(lambda: port_status(self.k, "a")["half_closed_total"] == 1, 3, 0.02)
        t0 = time.monotonic()

        def gone():
            os.write(self.pty.master, b"x")
            return port_status(self.k, "a")["clients"] == 0
        wait_for(gone, 3, 0.05, what="the closed client freed")
        self.assertLess(time.monotonic() - t0, 3)
        self.k.wait_log(r"serial: a: client 127\.0\.0\.1:\d+ lost \(")

    def test_a_client_that_sent_nothing_does_not_linger(self):
        # Nothing asked, nothing to wait for: connect-and-close peers
        # (port scanners, health checks) must not hold descriptors.
        self.start(extra="  eof-linger = 60\n")
        c = self.client()
        self.wait_clients(1)
        c.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        data, ended = recv_until_closed(c, 3)
        self.assertEqual(data, b"")
        self.assertLess(ended - t0, 1.0)
        st = port_status(self.k, "a")
        self.assertEqual((st["clients"], st["half_closed_total"]), (0, 0))

    def test_eof_linger_0_closes_at_once(self):
        self.start(extra="  eof-linger = 0\n")
        c = self.client()
        self.wait_clients(1)
        c.sendall(b"cmd\n")
        c.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        data, ended = recv_until_closed(c, 3)
        self.assertEqual(data, b"")
        self.assertLess(ended - t0, 1.0)
        # What it sent before its end of file still reaches the device.
        self.assertEqual(read_device(self.pty.master, 4), b"cmd\n")
        st = port_status(self.k, "a")
        self.assertEqual((st["clients"], st["half_closed_total"]), (0, 0))
        self.k.wait_log(r"serial: a: client 127\.0\.0\.1:\d+ disconnected")

    def test_a_lingering_client_makes_room_at_max_clients(self):
        self.start(extra="  eof-linger = 60\n  max-clients = 1\n")
        c1 = self.lingering_client()
        c2 = self.client()
        data, _ = recv_until_closed(c1, 3)
        self.assertEqual(data, b"")
        self.k.wait_log(r"client 127\.0\.0\.1:\d+ closed \(eof-linger: its place is taken\)")
        self.wait_clients(1)
        os.write(self.pty.master, b"for c2\n")
        self.assertEqual(c2.recv(100), b"for c2\n")
        c2.sendall(b"from c2\n")
        self.assertEqual(read_device(self.pty.master, 9), b"?from c2\n")
        st = port_status(self.k, "a")
        self.assertEqual((st["refused_total"], st["accepted_total"]), (0, 2))

    def test_out_of_descriptors_the_lingering_clients_are_closed(self):
        # TCP cannot tell a half-closed peer from a gone one: when accept(2)
        # runs out of descriptors, the lingering clients give theirs back.
        self.start(extra="  eof-linger = 60\n  max-clients = 1000\n")
        lingering = [self.lingering_client() for _ in range(3)]
        subprocess.run(["prlimit", "--pid", str(self.k.pid), "--nofile=40:40"],
                       check=True, timeout=10)
        for _ in range(50):
            self.client()
        # Closed well before eof-linger (the log lines about clients are
        # over their budget by now: the 50 connections took it).
        for c in lingering:
            data, _ = recv_until_closed(c, 3)
            self.assertEqual(data, b"")

    def test_client_timeout_shorter_than_the_linger_wins(self):
        self.start(extra="  eof-linger = 60\n  client-timeout = 0.5\n")
        c = self.client()
        self.wait_clients(1)
        c.sendall(b"?")  # a request: something to wait for
        c.shutdown(socket.SHUT_WR)
        data, _ = recv_until_closed(c, 4)
        self.assertEqual(data, b"")
        self.k.wait_log(r"client 127\.0\.0\.1:\d+ closed \(client-timeout\)")

    def test_a_removed_port_closes_its_lingering_client(self):
        self.start(extra="  eof-linger = 60\n")
        c = self.lingering_client()
        self.k.write("")
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        data, _ = recv_until_closed(c, 3)
        self.assertEqual(data, b"")
        self.k.wait_log(r"serial: a: closed")

    def test_sigterm_does_not_wait_for_a_lingering_client(self):
        # eof-linger 60 s, shutdown-timeout 5 s: the drain closes it at once.
        self.start(extra="  eof-linger = 60\n")
        c = self.lingering_client()
        t0 = time.monotonic()
        self.k.kill(signal.SIGTERM)
        self.assertEqual(self.k.wait_exit(5), 0)
        self.assertLess(time.monotonic() - t0, 2.0)
        data, _ = recv_until_closed(c, 3)
        self.assertEqual(data, b"")

    def test_a_reload_to_eof_linger_0_ends_the_lingering_ones(self):
        self.start(extra="  eof-linger = 60\n")
        c = self.lingering_client()
        self.k.write(self.body.replace("eof-linger = 60", "eof-linger = 0"))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        data, _ = recv_until_closed(c, 3)
        self.assertEqual(data, b"")
        self.wait_clients(0)


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class Allow(ClientsBase):
    def assert_refused(self, c):
        """keeld closes c at once; nothing it sent reaches the device."""
        try:
            c.sendall(b"must not reach the device\n")
        except OSError:
            pass  # already reset
        try:
            data, _ = recv_until_closed(c, 3)
        finally:
            c.close()
        self.assertEqual(data, b"")
        self.assertTrue(device_silent(self.pty.master, 0.3), "a refused peer wrote to the device")

    def test_a_peer_inside_works(self):
        self.start(extra='  allow = { "10.0.0.0/8", "127.0.0.0/8" }\n')
        c = self.client()
        self.wait_clients(1)
        self.assert_bridged(c)
        self.assertEqual(port_status(self.k, "a")["denied_total"], 0)

    def test_a_peer_outside_is_closed_at_accept_counted_and_logged_rate_limited(self):
        self.start(extra='  allow = { "10.0.0.0/8" }\n')
        self.assert_refused(connect(self.port))
        st = port_status(self.k, "a")
        self.assertEqual((st["denied_total"], st["accepted_total"], st["clients"]), (1, 0, 0))
        self.k.wait_log(r"serial: a: refusing 127\.0\.0\.1: not in allow")
        # 30 more within the port's log budget window (20 lines / 10 s).
        for _ in range(30):
            c = connect(self.port)
            recv_until_closed(c, 3)
            c.close()
        wait_for(lambda: port_status(self.k, "a")["denied_total"] == 31, 3, 0.05,
                 what="31 denied")
        self.assertLessEqual(self.k.log().count("not in allow"), 20)
        self.assertTrue(device_silent(self.pty.master, 0.1))

    def test_ipv6(self):
        if not have_ipv6_loopback():
            self.skipTest("no ::1 here")
        body = serial_section("a", self.link, self.port, self.k.dir, '  allow = { "::1" }\n')
        self.body = body.replace("127.0.0.1:%d" % self.port, "[::1]:%d" % self.port)
        self.k.write(self.body)
        self.k.start()
        wait_open(self.k, "a")
        c = socket.create_connection(("::1", self.port), timeout=5)
        self.addCleanup(c.close)
        self.wait_clients(1)
        os.write(self.pty.master, b"v6\n")
        self.assertEqual(c.recv(10), b"v6\n")
        # ::2 and an IPv4 network do not cover ::1.
        self.k.write(self.body.replace('"::1"', '"::2", "127.0.0.0/8"'))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        data, _ = recv_until_closed(c, 3)
        self.assertEqual(data, b"")
        c2 = socket.create_connection(("::1", self.port), timeout=5)
        self.addCleanup(c2.close)
        self.assert_refused(c2)
        self.assertEqual(port_status(self.k, "a")["denied_total"], 2)

    def test_a_reload_changing_allow_applies_at_once(self):
        self.start(extra="")
        c = self.client()
        self.wait_clients(1)
        self.k.write(self.body.replace("  lock-dir", '  allow = { "10.0.0.0/8" }\n  lock-dir'))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        # The connected peer is no longer allowed: closed, logged, counted.
        data, _ = recv_until_closed(c, 3)
        self.assertEqual(data, b"")
        self.k.wait_log(r"serial: a: client 127\.0\.0\.1:\d+ closed \(no longer in allow\)")
        self.assert_refused(connect(self.port))
        st = port_status(self.k, "a")
        self.assertEqual((st["denied_total"], st["clients"], st["opens_total"]), (2, 0, 1))
        # And back: allowed again, the device never reopened.
        self.k.write(self.body.replace("  lock-dir", '  allow = { "127.0.0.1" }\n  lock-dir'))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        c2 = self.client()
        self.wait_clients(1)
        c2.sendall(b"ok\n")
        self.assertEqual(read_device(self.pty.master, 3), b"ok\n")
        self.assertEqual(port_status(self.k, "a")["opens_total"], 1)

    def test_a_bad_network_is_rejected_with_file_line(self):
        self.start(extra="")
        c = self.client()
        self.wait_clients(1)
        cases = [('"10.1.2.3/8"', "allow '10.1.2.3/8' has bits set beyond /8"),
                 ('"127.0.0.0/8", "nonsense"', "allow 'nonsense' is not a numeric network"),
                 ('"::1/129"', "allow '::1/129' is not a numeric network")]
        for value, msg in cases:
            self.k.write(self.body.replace("  lock-dir", "  allow = { %s }\n  lock-dir" % value))
            rc, out, err = self.k.check()
            self.assertNotEqual(rc, 0)
            self.assertIn("%s:10: serial 'a': %s" % (self.k.conf, msg), out + err)
            rc, out, err = self.k.ctl("reload")
            self.assertNotEqual(rc, 0)
            self.assertIn("%s:10: serial 'a': %s" % (self.k.conf, msg), err)
        self.assertTrue(self.k.alive())
        self.assertEqual(self.k.generation(), 1)
        # The old configuration runs on: the client is still bridged.
        os.write(self.pty.master, b"still\n")
        self.assertEqual(c.recv(100), b"still\n")



class AllowDefault(ClientsBase):
    """allow written once, in the serial section without a title: every
    port that does not write its own inherits it, and a SIGHUP that changes
    it changes it for those ports only."""
    assert_refused = Allow.assert_refused

    def test_a_default_for_all_ports_and_a_sighup_changing_it(self):
        link_b = os.path.join(self.k.dir, "ttyTEST1")
        pty_b = Pty(link_b)
        self.addCleanup(pty_b.close)
        port_b = free_port()
        body = (serial_section("a", self.link, self.port, self.k.dir)
                + 'serial {\n  allow = { "10.0.0.0/8" }\n  max-clients = 2\n}\n'
                + serial_section("b", link_b, port_b, self.k.dir, '  allow = { "127.0.0.1" }\n'))
        self.k.write(body)
        self.k.start()
        wait_open(self.k, "a")
        wait_open(self.k, "b")
        # The defaults section is no port.
        self.assertEqual(sorted(statuses(self.k)), ["a", "b"])
        # a inherits allow: 127.0.0.1 is closed at once and counted.
        self.assert_refused(connect(self.port))
        st = port_status(self.k, "a")
        self.assertEqual((st["denied_total"], st["accepted_total"], st["clients"]), (1, 0, 0))
        self.k.wait_log(r"serial: a: refusing 127\.0\.0\.1: not in allow")
        # b writes its own allow: 127.0.0.1 is in.
        cb = connect(port_b)
        self.addCleanup(cb.close)
        wait_for(lambda: port_status(self.k, "b")["clients"] == 1, 5, 0.02, what="b's client")
        # SIGHUP with another default: a lets 127.0.0.1 in, without
        # reopening its device; b and its client are untouched.
        self.k.write(body.replace('"10.0.0.0/8"', '"127.0.0.0/8"'))
        self.k.kill(signal.SIGHUP)
        wait_for(lambda: self.k.generation() == 2, 10, 0.05, what="generation 2")
        c = self.client()
        self.wait_clients(1)
        self.assert_bridged(c)
        st = port_status(self.k, "a")
        self.assertEqual((st["denied_total"], st["opens_total"]), (1, 1))
        cb.sendall(b"b\n")
        self.assertEqual(read_device(pty_b.master, 2), b"b\n")
        st = port_status(self.k, "b")
        self.assertEqual((st["clients"], st["denied_total"], st["opens_total"]), (1, 0, 1))
        # max-clients = 2 is inherited too: a third client of a is refused.
        c2 = self.client()
        self.wait_clients(2)
        c3 = connect(self.port)
        self.addCleanup(c3.close)
        data, _ = recv_until_closed(c3, 3)
        self.assertEqual(data, b"")
        self.assertEqual(port_status(self.k, "a")["clients"], 2)
        c2.close()

if __name__ == "__main__":
    main()
