# SPDX-License-Identifier: ISC
"""sd_notify without systemd: a test socket receives the datagrams in order."""
import os
import signal
import socket
import time
import unittest

from keeltest import HEARTBEAT, Keeld, main, wait_for


class Notify(unittest.TestCase):
    def setUp(self):
        self.k = Keeld(HEARTBEAT % ("n", 0.5))
        self.addCleanup(self.k.close)
        self.path = os.path.join(self.k.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.sock.bind(self.path)
        self.sock.settimeout(5)

    def recv(self):
        return self.sock.recv(4096).decode()

    def test_ready_reload_stopping_in_order(self):
        # NOTIFY_SOCKET set, no -n: keeld must not fork (NotifyAccess=main).
        self.k.start(foreground=False, env={"NOTIFY_SOCKET": self.path})
        msg = self.recv()
        self.assertIn("READY=1", msg)
        self.assertIn("MAINPID=%d" % self.k.proc.pid, msg)
        self.assertEqual(self.k.pid, self.k.proc.pid, "keeld forked under NOTIFY_SOCKET")
        self.assertIsNone(self.k.proc.poll())
        # A good reload: RELOADING=1 with MONOTONIC_USEC in one datagram, then READY=1.
        self.k.write(HEARTBEAT % ("m", 0.5))
        before = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        self.k.kill(signal.SIGHUP)
        msg = self.recv()
        self.assertIn("RELOADING=1", msg)
        usec = int([l for l in msg.split("\n") if l.startswith("MONOTONIC_USEC=")][0].split("=")[1])
        self.assertGreaterEqual(usec, before)
        self.assertLess(usec - before, 5e6)
        msg = self.recv()
        self.assertIn("READY=1", msg)
        self.assertIn("STATUS=running, generation 2 (reload applied)", msg)
        # A failed reload also ends with READY=1, and says so.
        self.k.write(HEARTBEAT % ("m", 0.5) + "nonsense = 1\n")
        self.k.kill(signal.SIGHUP)
        self.assertIn("RELOADING=1", self.recv())
        msg = self.recv()
        self.assertIn("READY=1", msg)
        self.assertIn("generation 2 (reload failed: ", msg)
        self.k.kill(signal.SIGTERM)
        self.assertIn("STOPPING=1", self.recv())
        self.assertEqual(self.k.wait_exit(5), 0)

    def test_watchdog(self):
        self.k.start(foreground=False, env={"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": "200000"})
        self.assertIn("READY=1", self.recv())
        t0 = time.monotonic()
        got = [self.recv() for _ in range(3)]
        self.assertEqual(got, ["WATCHDOG=1"] * 3)
        # Every 100 ms: three take about 0.3 s.
        self.assertLess(time.monotonic() - t0, 1.5)

    def test_watchdog_for_another_pid_is_ignored(self):
        self.k.start(foreground=False, env={"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": "100000",
                                            "WATCHDOG_PID": "1"})
        self.assertIn("READY=1", self.recv())
        self.sock.settimeout(0.5)
        self.assertRaises(socket.timeout, self.recv)

    def test_abstract_socket(self):
        name = "keeltest-%d" % os.getpid()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind("\0" + name)
        s.settimeout(5)
        self.k.start(foreground=False, env={"NOTIFY_SOCKET": "@" + name})
        self.assertIn("READY=1", s.recv(4096).decode())

    def test_socket_pointing_nowhere_is_not_fatal(self):
        self.k.start(foreground=False, env={"NOTIFY_SOCKET": os.path.join(self.k.dir, "nobody-listens")})
        self.k.wait_log("heartbeat: a: n")
        self.k.write(HEARTBEAT % ("still", 0.5))
        self.assertEqual(self.k.ctl("reload")[0], 0)
        self.k.wait_log("cannot notify systemd")
        self.k.kill(signal.SIGTERM)
        self.assertEqual(self.k.wait_exit(5), 0)

    def test_garbage_notify_socket_is_not_fatal(self):
        self.k.start(foreground=False, env={"NOTIFY_SOCKET": "relative/path"})
        # Reported on stderr before daemonizing (no systemd to notify).
        self.assertIn("NOTIFY_SOCKET=relative/path is not a usable socket path",
                      self.k.read(os.path.join(self.k.dir, "stderr")))
        self.k.wait_log("heartbeat: a: n")
        self.assertTrue(self.k.alive())
        self.assertEqual(self.k.ctl("stop")[0], 0)


if __name__ == "__main__":
    main()
