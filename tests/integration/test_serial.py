# SPDX-License-Identifier: ISC
"""The serial bridge with real pseudo-terminals and real TCP on 127.0.0.1."""
import os
import signal
import socket
import subprocess
import termios
import time
import unittest

from keeltest import Keeld, main, wait_for
from serialtest import (Pty, connect, free_port, in_thread, pattern, port_status, read_exact,
                        recv_exact, send_all, serial_section, sha, wait_open, write_all_fd)


class SerialBase(unittest.TestCase):
    extra = ""

    def setUp(self):
        self.k = Keeld("", modules=("serial",))
        self.addCleanup(self.k.close)
        self.link = os.path.join(self.k.dir, "ttyTEST0")
        self.pty = Pty(self.link)
        self.addCleanup(self.pty.close)
        self.port = free_port()
        self.body = serial_section("a", self.link, self.port, self.k.dir, self.extra)
        self.k.write(self.body)

    def start(self):
        self.k.start()
        wait_open(self.k, "a")


class DataIntegrity(SerialBase):
    def test_16_mib_each_way_byte_exact(self):
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        time.sleep(0.1)
        n = 16 << 20
        data = pattern(n)
        t = in_thread(write_all_fd, self.pty.master, data)
        self.assertEqual(recv_exact(c, n), sha(data), "device -> client")
        t.join(30)
        data = pattern(n, seed=13)
        t = in_thread(send_all, c, data, 30)
        self.assertEqual(read_exact(self.pty.master, n), sha(data), "client -> device")
        t.join(30)
        st = port_status(self.k, "a")
        self.assertEqual(st["rx_bytes_total"], n)
        self.assertEqual(st["tx_bytes_total"], n)
        self.assertEqual(st["dropped_bytes_total"], 0)

    def test_a_lone_slow_client_loses_nothing(self):
        # Back-pressure, not drops: with every client full, keel stops
        # reading the device until one has room again.
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        time.sleep(0.1)
        # More than the socket buffers and client-buffer together hold.
        n = 24 << 20
        data = pattern(n, seed=5)
        t = in_thread(write_all_fd, self.pty.master, data)
        time.sleep(1.5)  # read nothing for a while
        self.assertTrue(t.is_alive(), "the writer should be held back by the full pty")
        self.assertEqual(recv_exact(c, n), sha(data))
        t.join(30)
        self.assertEqual(port_status(self.k, "a")["client_dropped_bytes_total"], 0)

    def test_a_stuck_client_holds_the_device_only_for_stall_timeout(self):
        # Alive but never reading: back-pressure waits stall-timeout, then
        # the slow-client policy (drop) lets the device be read again.
        self.k.write(self.body.replace("  lock-dir", "  stall-timeout = 1\n  lock-dir"))
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        time.sleep(0.1)
        n = 48 << 20
        t = in_thread(write_all_fd, self.pty.master, pattern(n))
        self.k.wait_log(r"serial: a: client .* stalled for 1s: dropping its data", timeout=15)
        t.join(30)
        self.assertFalse(t.is_alive(), "the device stayed held by a stuck client")
        st = port_status(self.k, "a")
        self.assertGreater(st["client_dropped_bytes_total"], 0)
        self.assertEqual(st["rx_bytes_total"], n)
        self.assertEqual(st["clients"], 1)

    def test_two_clients_get_the_same_stream(self):
        # Unthrottled, a pty outruns a reader that is descheduled for a
        # moment, and the other client having room, drop would be by
        # design: each client-buffer holds the whole stream here.
        self.k.write(self.body.replace("  lock-dir", "  client-buffer = 8M\n  lock-dir"))
        self.start()
        c1, c2 = connect(self.port), connect(self.port)
        self.addCleanup(c1.close)
        self.addCleanup(c2.close)
        wait_for(lambda: port_status(self.k, "a")["clients"] == 2)
        n = 4 << 20
        data = pattern(n)
        t = in_thread(write_all_fd, self.pty.master, data)
        r = {}
        t2 = in_thread(lambda: r.__setitem__(2, recv_exact(c2, n)))
        self.assertEqual(recv_exact(c1, n), sha(data))
        t2.join(30)
        self.assertEqual(r.get(2), sha(data))
        t.join(30)


class Reappear(SerialBase):
    extra = "  retry-min = 30\n  retry-max = 30\n"

    def test_hangup_then_same_path_again_reconnects_without_a_signal(self):
        # retry-min 30 s: only the inotify watch can reopen it this fast.
        self.body = serial_section("a", self.link, self.port, self.k.dir,
                                   "  retry-min = 30\n  retry-max = 30\n")
        self.k.write(self.body.replace("  retry-min = 0.05\n  retry-max = 0.5\n", ""))
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        self.pty.hangup()
        self.k.wait_log(r"serial a: .*hung up")
        time.sleep(0.2)
        t0 = time.monotonic()
        self.pty.plug()
        wait_open(self.k, "a", timeout=3)
        self.assertLess(time.monotonic() - t0, 1.5)
        st = port_status(self.k, "a")
        self.assertEqual(st["opens_total"], 2)
        self.assertEqual(st["hangups_total"], 1)
        # The client stayed connected; data flows again both ways.
        os.write(self.pty.master, b"after replug\n")
        self.assertEqual(c.recv(100), b"after replug\n")
        c.sendall(b"back\n")
        self.assertEqual(os.read(self.pty.master, 100), b"back\n")

    def test_sigalrm_retries_a_waiting_port_at_once(self):
        self.k.write(self.body.replace("  retry-min = 0.05\n  retry-max = 0.5\n", ""))
        # Someone else holds the device (flock): keeld backs off 30 s.
        import fcntl
        holder = os.open(self.pty.slave_path, os.O_RDWR | os.O_NOCTTY)
        fcntl.flock(holder, fcntl.LOCK_EX)
        self.k.start()
        wait_for(lambda: "in use by another process" in port_status(self.k, "a")["error"], 5)
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
        time.sleep(1.0)
        self.assertNotEqual(port_status(self.k, "a")["state"], "open", "reopened without being woken")
        self.k.kill(signal.SIGALRM)
        wait_open(self.k, "a", timeout=1)
        self.k.wait_log(r"serial a: woken: retrying")

    def test_keeld_s_wake_does_the_same(self):
        self.k.write(self.body.replace("  retry-min = 0.05\n  retry-max = 0.5\n", ""))
        lock = os.path.join(self.k.dir, self.pty.lock_name())
        with open(lock, "w") as f:
            f.write("%10d\n" % os.getpid())
        self.k.start()
        wait_for(lambda: "locked by pid %d" % os.getpid() in port_status(self.k, "a")["error"], 5)
        os.unlink(lock)
        self.assertEqual(self.k.ctl("wake")[0], 0)
        wait_open(self.k, "a", timeout=1)


class MissingAtStart(unittest.TestCase):
    def test_device_missing_at_start_is_opened_when_it_appears(self):
        with Keeld("", modules=("serial",)) as k:
            # A by-id style path whose directories do not exist yet either.
            link = os.path.join(k.dir, "serial", "by-id", "usb-keel-test")
            port = free_port()
            k.write(serial_section("a", link, port, k.dir, "  retry-min = 30\n  retry-max = 30\n")
                    .replace("  retry-min = 0.05\n  retry-max = 0.5\n", ""))
            k.start()
            self.assertIn("No such file or directory", port_status(k, "a")["error"])
            # keeld serves meanwhile.
            self.assertEqual(k.ctl("status")[0], 0)
            time.sleep(0.3)
            os.makedirs(os.path.dirname(link))
            time.sleep(0.2)
            t0 = time.monotonic()
            pty = Pty(link)
            self.addCleanup(pty.close)
            wait_open(k, "a", timeout=3)
            self.assertLess(time.monotonic() - t0, 1.0)
            c = connect(port)
            self.addCleanup(c.close)
            time.sleep(0.1)
            os.write(pty.master, b"$GPGGA,hello\r\n")
            self.assertEqual(c.recv(100), b"$GPGGA,hello\r\n")


    def test_a_missing_device_costs_no_periodic_wake_up(self):
        # Back-off 0.05-0.5 s: a timer would wake keeld several times in 2 s.
        with Keeld("", modules=("serial",)) as k:
            link = os.path.join(k.dir, "ttyUSB-unplugged")
            port = free_port()
            k.write(serial_section("a", link, port, k.dir))
            k.start()
            k.wait_log("serial a: .*No such file or directory")
            time.sleep(0.5)

            def switches():
                with open("/proc/%d/status" % k.pid) as f:
                    return sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
            before = switches()
            time.sleep(2.0)
            self.assertLessEqual(switches() - before, 1, "keeld woke up while waiting for the device")
            pty = Pty(link)
            self.addCleanup(pty.close)
            wait_open(k, "a", timeout=2)


class ReloadSerial(SerialBase):
    def slave_speed(self):
        fd = os.open(self.pty.slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            return termios.tcgetattr(fd)
        finally:
            os.close(fd)

    def test_unchanged_port_loses_no_byte_during_reloads(self):
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        time.sleep(0.1)
        n = 24 << 20
        data = pattern(n)
        t = in_thread(write_all_fd, self.pty.master, data)
        got = {}
        r = in_thread(lambda: got.__setitem__("sha", recv_exact(c, n, timeout=60)))
        # Reload (adding a heartbeat-free unrelated change) while streaming.
        for i in range(5):
            time.sleep(0.05)
            self.k.write(self.body + "# reload %d\n" % i)
            rc, out, err = self.k.ctl("reload")
            self.assertEqual(rc, 0, err)
        r.join(60)
        t.join(60)
        self.assertEqual(got.get("sha"), sha(data))
        st = port_status(self.k, "a")
        self.assertEqual(st["opens_total"], 1)
        self.assertEqual(st["clients"], 1)
        self.assertEqual(self.k.generation(), 6)

    def test_changed_speed_is_applied_without_reopening(self):
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        self.k.write(self.body.replace("  lock-dir", "  speed = 115200\n  format = \"7E2\"\n  lock-dir"))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.k.wait_log(r"serial a: .* now 115200 7E2 \(applied in place\)")
        st = port_status(self.k, "a")
        self.assertEqual(st["opens_total"], 1)
        self.assertEqual((st["speed"], st["format"]), (115200, "7E2"))
        attrs = self.slave_speed()
        self.assertEqual(attrs[4], termios.B115200)
        # The pty driver forces CS8 and clears PARENB whatever is asked
        # (drivers/tty/pty.c); speed and stop bits show what keel set.
        self.assertTrue(attrs[2] & termios.CSTOPB)
        os.write(self.pty.master, b"still here\n")
        self.assertEqual(c.recv(100), b"still here\n")

    def test_arbitrary_speed(self):
        self.k.write(self.body.replace("  lock-dir", "  speed = 250000\n  lock-dir"))
        self.start()
        self.assertEqual(port_status(self.k, "a")["speed"], 250000)

    def test_removed_port_closes_and_new_one_opens(self):
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        link_b = os.path.join(self.k.dir, "ttyTEST1")
        pty_b = Pty(link_b)
        self.addCleanup(pty_b.close)
        port_b = free_port()
        self.k.write(serial_section("b", link_b, port_b, self.k.dir))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        # a: the client sees the end, the listener is gone.
        c.settimeout(5)
        self.assertEqual(c.recv(10), b"")
        self.assertRaises(OSError, socket.create_connection, ("127.0.0.1", self.port), 1)
        # b: open and bridging.
        wait_open(self.k, "b")
        cb = connect(port_b)
        self.addCleanup(cb.close)
        time.sleep(0.1)
        os.write(pty_b.master, b"from b\n")
        self.assertEqual(cb.recv(100), b"from b\n")
        rc, out, _ = self.k.ctl("status")
        self.assertNotIn("serial.a.", out)

    def test_changed_listen_rebinds_without_closing_the_device(self):
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        new_port = free_port()
        self.k.write(self.body.replace(":%d" % self.port, ":%d" % new_port))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        c2 = connect(new_port)
        self.addCleanup(c2.close)
        wait_for(lambda: port_status(self.k, "a")["clients"] == 2)
        os.write(self.pty.master, b"both\n")
        self.assertEqual(c.recv(100), b"both\n")
        self.assertEqual(c2.recv(100), b"both\n")
        self.assertEqual(port_status(self.k, "a")["opens_total"], 1)
        self.assertRaises(OSError, socket.create_connection, ("127.0.0.1", self.port), 1)

    def test_changed_device_reopens_and_keeps_clients(self):
        self.start()
        c = connect(self.port)
        self.addCleanup(c.close)
        link_b = os.path.join(self.k.dir, "ttyTEST1")
        pty_b = Pty(link_b)
        self.addCleanup(pty_b.close)
        self.k.write(self.body.replace(self.link, link_b))
        self.assertEqual(self.k.ctl("reload")[0], 0)
        wait_open(self.k, "a")
        time.sleep(0.1)
        os.write(pty_b.master, b"new device\n")
        self.assertEqual(c.recv(100), b"new device\n")

    def test_bad_serial_settings_are_rejected_with_file_line(self):
        self.start()
        cases = [
            ("  format = \"9X1\"\n", "format '9X1' is not DATA PARITY STOP"),
            ("  flow = \"maybe\"\n", "flow 'maybe' is not one of none, rtscts, xonxoff"),
            ("  speed = 7\n", "speed 7 is out of range"),
            ("  client-buffer = 12\n", "client-buffer 12 is out of range"),
            ("  when-full = \"panic\"\n", "when-full 'panic'"),
        ]
        for extra, msg in cases:
            self.k.write(self.body.replace("  lock-dir", extra + "  lock-dir"))
            rc, out, err = self.k.ctl("reload")
            self.assertNotEqual(rc, 0)
            self.assertRegex(err, r"%s:10: serial 'a': %s" % (self.k.conf, msg))
        self.k.write(self.body.replace("  retry-max = 0.5", "  retry-max = 0.01"))
        rc, out, err = self.k.ctl("reload")
        self.assertIn(self.k.conf + ":12: serial 'a': retry-max 0.01 is less than retry-min 0.05", err)
        self.k.write(self.body.replace("127.0.0.1:%d" % self.port, "localhost:%d" % self.port))
        rc, out, err = self.k.ctl("reload")
        self.assertIn("is not a numeric HOST:PORT", err)
        self.assertEqual(self.k.generation(), 1)
        self.assertEqual(port_status(self.k, "a")["opens_total"], 1)

    def test_listen_address_in_use_rejects_the_reload(self):
        self.start()
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        link_b = os.path.join(self.k.dir, "ttyTEST1")
        pty_b = Pty(link_b)
        self.addCleanup(pty_b.close)
        self.k.write(self.body + serial_section("b", link_b, taken, self.k.dir))
        rc, out, err = self.k.ctl("reload")
        self.assertNotEqual(rc, 0)
        self.assertIn("serial 'b': listen 127.0.0.1:%d: Address already in use" % taken, err)
        self.assertEqual(self.k.generation(), 1)
        self.assertTrue(self.k.alive())

    def test_ipv6_listener(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
        except OSError:
            self.skipTest("no ::1 here")
        self.k.write(self.body.replace("127.0.0.1:%d" % self.port, "[::1]:%d" % self.port))
        self.start()
        c = socket.create_connection(("::1", self.port), timeout=5)
        self.addCleanup(c.close)
        time.sleep(0.1)
        os.write(self.pty.master, b"v6\n")
        self.assertEqual(c.recv(10), b"v6\n")

    def test_check_mode_does_not_bind(self):
        self.start()
        rc, out, err = self.k.check()
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    main()
