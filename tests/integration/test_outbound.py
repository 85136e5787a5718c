# SPDX-License-Identifier: ISC
"""serial's outbound mode (connect = "HOST:PORT"): the real keeld, real
pseudo-terminals and a real TCP server on 127.0.0.1 that the tests start,
stop and restart."""
import os
import signal
import socket
import subprocess
import time
import unittest

from keeltest import main, wait_for
from serialtest import (Pty, connect, free_port, in_thread, pattern, port_status, read_exact,
                        recv_exact, send_all, serial_keeld, sha, wait_open, write_all_fd)

SANITIZE = os.environ.get("KEEL_SANITIZE", "").upper() in ("1", "ON", "TRUE", "YES")
# How long a signal or a status request may take while a name fails.
PROMPT = 1.0 if SANITIZE else 0.5


class Server:
    """A TCP server on 127.0.0.1 that keeld connects to."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.lsock = None
        self.conns = []
        self.up()

    def up(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(8)
        self.lsock = s

    def accept(self, timeout=5):
        self.lsock.settimeout(timeout)
        c, _ = self.lsock.accept()
        c.settimeout(timeout)
        self.conns.append(c)
        return c

    def down(self):
        """Stop listening and close every connection."""
        for c in self.conns:
            c.close()
        self.conns = []
        if self.lsock is not None:
            self.lsock.close()
        self.lsock = None


class FakeDNS:
    """A name server on 127.0.0.1 (UDP) that answers every query with
    NXDOMAIN, or (silent) never answers; it counts the queries."""

    def __init__(self, silent=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.silent = silent
        self.queries = 0
        self.stop = False
        self.thread = in_thread(self.serve)

    def serve(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                q, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            self.queries += 1
            if self.silent or len(q) < 12:
                continue
            # Same id and question; QR, RD, RA, RCODE 3; no answers.
            self.sock.sendto(q[:2] + b"\x81\x83" + q[4:6] + b"\0\0\0\0\0\0" + q[12:], peer)

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def resolv_prefix(path, dns):
    """A command prefix that runs keeld with @dns as its only name server:
    /etc/resolv.conf replaced in a private mount namespace (evdns takes
    ADDR:PORT there). None when user namespaces are not available."""
    with open(path, "w") as f:
        f.write("nameserver 127.0.0.1:%d\n" % dns.port)
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c",
                            'mount --bind "$0" /etc/resolv.conf && grep -q ":%d" /etc/resolv.conf'
                            % dns.port, path], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return ["unshare", "-rm", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', path]


def section(name, link, lock_dir, connect=None, listen=None, extra=""):
    return ('serial %s {\n  device = "%s"\n%s%s  lock-dir = "%s"\n'
            '  retry-min = 0.05\n  retry-max = 0.5\n%s}\n'
            % (name, link,
               '  connect = "%s"\n' % connect if connect else "",
               '  listen = "127.0.0.1:%d"\n' % listen if listen else "",
               lock_dir, extra))


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exchange(test, k, pty, conn, n=1 << 20, seed=3):
    """n bytes each way between the device and a connection, byte-exact."""
    data = pattern(n, seed)
    t = in_thread(write_all_fd, pty.master, data)
    test.assertEqual(recv_exact(conn, n), sha(data), "device -> server")
    t.join(30)
    data = pattern(n, seed + 4)
    t = in_thread(send_all, conn, data, 30)
    test.assertEqual(read_exact(pty.master, n), sha(data), "server -> device")
    t.join(30)


class OutboundBase(unittest.TestCase):
    def setUp(self):
        self.k, self.link, self.pty = serial_keeld(self)

    def server(self, port=None):
        s = Server(port)
        self.addCleanup(s.down)
        return s

    def state(self, name="a"):
        return port_status(self.k, name)

    def wait_state(self, want, name="a", timeout=5):
        return wait_for(lambda: self.state(name)["connect_state"] == want, timeout, 0.02,
                        what="connect_state %s" % want)

    def other_port(self):
        """Port b: a pty and a listener on a free port; (pty, port)."""
        pty = Pty(os.path.join(self.k.dir, "ttyTEST1"))
        self.addCleanup(pty.close)
        return pty, free_port()

    def assert_prompt(self, pty_b, cl, msg):
        """Port b's bytes flow both ways, keeld -s status answers and a
        SIGHUP is applied, each within PROMPT seconds."""
        t0 = time.monotonic()
        os.write(pty_b.master, msg)
        self.assertEqual(cl.recv(100), msg)
        cl.sendall(msg)
        self.assertEqual(read_exact(pty_b.master, len(msg), PROMPT), sha(msg))
        self.assertLess(time.monotonic() - t0, PROMPT, "port b's data was late")
        t0 = time.monotonic()
        rc, out, err = self.k.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertLess(time.monotonic() - t0, PROMPT, "keeld -s status was late")
        gen = self.k.generation()
        self.k.kill(signal.SIGHUP)
        wait_for(lambda: self.k.generation() == gen + 1, PROMPT, 0.005,
                 what="the reload after SIGHUP")


class Bridge(OutboundBase):
    def test_connects_and_bridges_both_ways_byte_exact(self):
        srv = self.server()
        self.k.write(section("a", self.link, self.k.dir, connect="127.0.0.1:%d" % srv.port))
        self.k.start()
        conn = srv.accept()
        wait_open(self.k, "a")
        self.wait_state("connected")
        exchange(self, self.k, self.pty, conn)
        st = self.state()
        self.assertEqual(st["connect"], "127.0.0.1:%d" % srv.port)
        self.assertEqual(st["connect_peer"], "127.0.0.1:%d" % srv.port)
        self.assertEqual(st["connects_total"], 1)
        self.assertEqual(st["connect_failures_total"], 0)
        self.assertEqual(st["peers.1.outbound"], "yes")
        self.assertEqual(st["clients"], 0, "the outbound connection is not a client")
        self.assertEqual(st["rx_bytes_total"], 1 << 20)
        self.assertEqual(st["tx_bytes_total"], 1 << 20)

    def test_listen_and_connect_share_the_stream_outside_max_clients(self):
        # max-clients = 1: the outbound connection is the port's own, so
        # one listening client still gets in, and both get device data.
        srv = self.server()
        lport = free_port()
        self.k.write(section("a", self.link, self.k.dir, connect="127.0.0.1:%d" % srv.port,
                             listen=lport, extra="  max-clients = 1\n"))
        self.k.start()
        out = srv.accept()
        wait_open(self.k, "a")
        cl = connect(lport)
        self.addCleanup(cl.close)
        wait_for(lambda: self.state()["clients"] == 1, what="one client")
        n = 1 << 20
        data = pattern(n, 11)
        t = in_thread(write_all_fd, self.pty.master, data)
        r = {}
        t2 = in_thread(lambda: r.__setitem__("cl", recv_exact(cl, n)))
        self.assertEqual(recv_exact(out, n), sha(data))
        t2.join(30)
        self.assertEqual(r.get("cl"), sha(data))
        t.join(30)
        self.assertEqual(self.state()["refused_total"], 0)

    def test_a_name_from_etc_hosts_resolves(self):
        # evdns reads /etc/hosts: "localhost" resolves without a name
        # server, to the address the server listens on.
        with open("/etc/hosts") as f:
            if not any(l.split()[:1] == ["127.0.0.1"] and "localhost" in l.split()[1:]
                       for l in f):
                self.skipTest("no 127.0.0.1 localhost in /etc/hosts")
        srv = self.server()
        self.k.write(section("a", self.link, self.k.dir, connect="localhost:%d" % srv.port))
        self.k.start()
        conn = srv.accept()
        self.wait_state("connected")
        self.assertEqual(self.state()["connect_peer"], "127.0.0.1:%d" % srv.port)
        wait_open(self.k, "a")
        os.write(self.pty.master, b"via hosts\n")
        self.assertEqual(conn.recv(100), b"via hosts\n")


class Reconnect(OutboundBase):
    def test_server_restart_reconnects_and_data_flows_again(self):
        srv = self.server()
        self.k.write(section("a", self.link, self.k.dir, connect="127.0.0.1:%d" % srv.port))
        self.k.start()
        conn = srv.accept()
        wait_open(self.k, "a")
        exchange(self, self.k, self.pty, conn, 64 << 10)
        srv.down()
        self.k.wait_log(r"serial: a: connection to 127\.0\.0\.1:%d disconnected" % srv.port)
        # Down for a while: it keeps trying (refused), never connected.
        wait_for(lambda: self.state()["connect_failures_total"] >= 2, 5,
                 what="failed attempts while the server is down")
        self.assertIn("Connection refused", self.state()["connect_error"])
        srv.up()
        conn = srv.accept(timeout=5)  # retry-max 0.5 s
        self.wait_state("connected")
        exchange(self, self.k, self.pty, conn, 64 << 10, seed=9)
        self.assertEqual(self.state()["connects_total"], 2)

    def test_server_down_at_start_backs_off_then_connects(self):
        port = free_port()
        self.k.write(section("a", self.link, self.k.dir, connect="127.0.0.1:%d" % port)
                     .replace("retry-max = 0.5", "retry-max = 0.8")
                     .replace("retry-min = 0.05", "retry-min = 0.1"))
        self.k.start()
        wait_open(self.k, "a")
        t0, cpu0 = time.monotonic(), cpu_seconds(self.k.pid)
        time.sleep(3)
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(self.k.pid) - cpu0
        n = self.state()["connect_failures_total"]
        # 0.1, 0.2, 0.4, 0.8, 0.8 ... (+-20 %): about 6 rounds in 3 s.
        self.assertGreaterEqual(n, 3, "it stopped trying")
        self.assertLessEqual(n, 14, "no back-off")
        self.assertLess(cpu, 0.1 * elapsed, "busy while waiting: %.2fs CPU" % cpu)
        # The failures are logged rate-limited, not once per attempt.
        warnings = self.k.log().count("serial: a: connect 127.0.0.1:%d:" % port)
        self.assertGreaterEqual(warnings, 1)
        self.assertLessEqual(warnings, 3)
        self.assertEqual(self.state()["connect_state"], "waiting")
        srv = self.server(port)
        conn = srv.accept(timeout=3)
        self.wait_state("connected")
        os.write(self.pty.master, b"finally\n")
        self.assertEqual(conn.recv(100), b"finally\n")

    def test_sigalrm_connects_a_waiting_port_at_once(self):
        port = free_port()
        self.k.write(section("a", self.link, self.k.dir, connect="127.0.0.1:%d" % port)
                     .replace("retry-max = 0.5", "retry-max = 60")
                     .replace("retry-min = 0.05", "retry-min = 60"))
        self.k.start()
        wait_for(lambda: self.state()["connect_failures_total"] == 1, what="first failure")
        srv = self.server(port)
        time.sleep(0.3)
        self.assertEqual(self.state()["connect_state"], "waiting")
        self.k.kill(signal.SIGALRM)
        srv.accept(timeout=2)
        self.wait_state("connected", timeout=2)


class Names(OutboundBase):
    def test_an_unresolvable_name_blocks_neither_signals_nor_other_ports(self):
        pty_b, lport = self.other_port()
        body = (section("a", self.link, self.k.dir, connect="nonexistent.invalid:7000")
                + section("b", pty_b.link, self.k.dir, listen=lport))
        self.k.write(body)
        # Our own name server when we can (hermetic), else the machine's.
        dns = FakeDNS()
        self.addCleanup(dns.close)
        prefix = resolv_prefix(os.path.join(self.k.dir, "resolv.conf"), dns)
        self.k.start(prefix=prefix or ())
        wait_for(lambda: self.state()["connect_failures_total"] >= 1, 30,
                 what="the name fails")
        st = self.state()
        self.assertIn(st["connect_state"], ("resolving", "waiting"))
        self.assertIn("resolving", st["connect_error"])
        self.assertGreater(st["connect_error_time"], 0)
        cl = connect(lport)
        self.addCleanup(cl.close)
        wait_open(self.k, "b")
        wait_for(lambda: self.state("b")["clients"] == 1)
        # Port b streams while port a keeps failing: its bytes flow both
        # ways, and signals and status are answered at once.
        for i in range(5):
            self.assert_prompt(pty_b, cl, b"round %d\n" % i)
            time.sleep(0.2)
        wait_for(lambda: self.state()["connect_failures_total"] >= 2, 30,
                 what="it retries the name")
        if prefix:
            self.assertGreaterEqual(dns.queries, 2)
        self.assertEqual(self.state()["connects_total"], 0)
        self.assertEqual(self.state("b")["clients"], 1)

    def test_sighup_reads_resolv_conf_again(self):
        # Name servers change (DHCP, an admin): the next reload uses the
        # new ones, as a restart would; before, only a restart did.
        old, new = FakeDNS(), FakeDNS()
        self.addCleanup(old.close)
        self.addCleanup(new.close)
        path = os.path.join(self.k.dir, "resolv.conf")
        prefix = resolv_prefix(path, old)
        if prefix is None:
            self.skipTest("no user namespaces (unshare -rm) to point keeld at a test name server")
        self.k.write(section("a", self.link, self.k.dir, connect="collector.test:7000"))
        self.k.start(prefix=prefix)
        wait_for(lambda: old.queries >= 1, 10, what="keeld asks the first name server")
        # Rewritten in place: the bind mount shows the same inode.
        with open(path, "r+") as f:
            f.truncate(0)
            f.write("nameserver 127.0.0.1:%d\n" % new.port)
        self.assertEqual(new.queries, 0)
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err + out)
        wait_for(lambda: new.queries >= 1, 10, what="keeld asks the new name server")
        n = old.queries
        wait_for(lambda: new.queries >= 3, 10, what="retries go to the new name server")
        self.assertEqual(old.queries, n)

    def test_a_name_server_that_never_answers_blocks_nothing(self):
        # The name stays pending (evdns waits for its own timeout): the
        # loop goes on, and removal and shutdown cancel the request.
        dns = FakeDNS(silent=True)
        self.addCleanup(dns.close)
        prefix = resolv_prefix(os.path.join(self.k.dir, "resolv.conf"), dns)
        if prefix is None:
            self.skipTest("no user namespaces (unshare -rm) to point keeld at a test name server")
        pty_b, lport = self.other_port()
        keep = (section("b", pty_b.link, self.k.dir, listen=lport)
                + section("c", self.link + "c", self.k.dir, connect="collector.test:7001"))
        self.k.write(section("a", self.link, self.k.dir, connect="collector.test:7000") + keep)
        self.k.start(prefix=prefix)
        wait_for(lambda: dns.queries >= 2, 5, what="keeld asks the name server")
        self.assertEqual(self.state()["connect_state"], "resolving")
        cl = connect(lport)
        self.addCleanup(cl.close)
        wait_open(self.k, "b")
        wait_for(lambda: self.state("b")["clients"] == 1)
        for i in range(3):
            self.assert_prompt(pty_b, cl, b"pending %d\n" % i)
        self.assertEqual(self.state()["connect_state"], "resolving")
        self.k.write(keep)
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err + out)
        self.k.wait_log(r"serial: a: resolving collector\.test:7000 cancelled")
        self.k.wait_log(r"serial: a: closed")
        self.assertEqual(self.state("c")["connect_state"], "resolving")
        self.k.kill(signal.SIGTERM)
        self.assertEqual(self.k.wait_exit(10), 0)
        self.assertIn("serial: c: resolving collector.test:7001 cancelled", self.k.log())
        self.assertNotIn("Sanitizer", self.k.read(os.path.join(self.k.dir, "stderr")))


class Reload(OutboundBase):
    def test_reload_keeps_an_unchanged_connection_and_moves_a_changed_one(self):
        s1, s2 = self.server(), self.server()
        body = section("a", self.link, self.k.dir, connect="127.0.0.1:%d" % s1.port)
        self.k.write(body)
        self.k.start()
        c1 = s1.accept()
        wait_open(self.k, "a")
        self.wait_state("connected")
        # Another option changes: the connection stays.
        self.k.write(body.replace("retry-max = 0.5", "retry-max = 0.6"))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err + out)
        os.write(self.pty.master, b"still here\n")
        self.assertEqual(c1.recv(100), b"still here\n")
        self.assertEqual(self.state()["connects_total"], 1)
        # A new target: the old connection closes, the new one carries data.
        self.k.write(body.replace(str(s1.port), str(s2.port)))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err + out)
        c2 = s2.accept()
        self.assertEqual(c1.recv(100), b"", "the old connection stays open")
        self.wait_state("connected")
        st = self.state()
        self.assertEqual(st["connect"], "127.0.0.1:%d" % s2.port)
        self.assertEqual(st["connects_total"], 2)
        exchange(self, self.k, self.pty, c2, 64 << 10)
        # connect removed, listen added: no connection, a listener.
        lport = free_port()
        self.k.write(section("a", self.link, self.k.dir, listen=lport))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err + out)
        self.assertEqual(c2.recv(100), b"")
        cl = connect(lport)
        self.addCleanup(cl.close)
        wait_for(lambda: self.state()["clients"] == 1)
        self.assertNotIn("connect_state", self.state())


class Config(OutboundBase):
    def test_neither_listen_nor_connect_is_rejected_with_file_line(self):
        self.k.write(section("a", self.link, self.k.dir))
        line = self.k.text(section("a", self.link, self.k.dir)).splitlines().index("serial a {") + 1
        rc, out, err = self.k.check()
        self.assertNotEqual(rc, 0)
        self.assertIn("%s:%d: serial 'a': listen or connect is required" % (self.k.conf, line),
                      out + err)

    def test_a_malformed_connect_is_rejected_at_its_line(self):
        for bad in ("collector", "collector:", "collector:0", "collector:70000",
                    "::1:7000", "[nothex]:7000", "a b:7000"):
            text = section("a", self.link, self.k.dir, connect=bad)
            self.k.write(text)
            line = self.k.text(text).splitlines().index('  connect = "%s"' % bad) + 1
            rc, out, err = self.k.check()
            self.assertNotEqual(rc, 0, bad)
            self.assertIn("%s:%d: serial 'a': connect '%s' is not HOST:PORT" % (self.k.conf, line, bad),
                          out + err)
        for good in ("collector:7000", "192.0.2.1:7000", "[2001:db8::1]:7000"):
            self.k.write(section("a", self.link, self.k.dir, connect=good))
            rc, out, err = self.k.check()
            self.assertEqual(rc, 0, good + ": " + out + err)

    def test_effective_configuration_of_a_connect_only_port_parses(self):
        # keeld -T leaves the unset listen out (listen = "" would not parse).
        self.k.write(section("a", self.link, self.k.dir, connect="collector:7000"))
        r = subprocess.run(self.k.argv("-T"), capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('  connect = "collector:7000"\n', r.stdout)
        self.assertNotIn("listen", r.stdout)
        self.k.write(r.stdout, raw=True)
        rc, out, err = self.k.check()
        self.assertEqual(rc, 0, out + err)

    def test_a_bad_reload_keeps_the_connection(self):
        srv = self.server()
        body = section("a", self.link, self.k.dir, connect="127.0.0.1:%d" % srv.port)
        self.k.write(body)
        self.k.start()
        conn = srv.accept()
        wait_open(self.k, "a")
        self.k.write(section("a", self.link, self.k.dir))
        rc, out, err = self.k.ctl("reload")
        self.assertNotEqual(rc, 0)
        self.assertIn("listen or connect is required", out + err)
        os.write(self.pty.master, b"kept\n")
        self.assertEqual(conn.recv(100), b"kept\n")
        self.assertEqual(self.state()["connects_total"], 1)


if __name__ == "__main__":
    main()
