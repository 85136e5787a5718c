# SPDX-License-Identifier: ISC
"""Scale: 1,000 serial ports, each on a simulated device (a pty of the sim
module), in one daemon: start, every port open, a byte round trip, a
reload with 10 % of the ports changed, status, stop — with times and RSS
printed. The bounds asserted are loose (the machine is shared and the
sanitizer build is slow); the figures are the point."""
import os
import re
import sys
import time
import unittest

from keeltest import Keeld, main, wait_for
from serialtest import connect, free_ports

N = 1000


def rss_kb(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(field + r":\s+(\d+)", f.read()).group(1))


class Scale(unittest.TestCase):
    def body(self, k, ports, changed=()):
        out = []
        for i in range(N):
            out.append('sim s%d {\n  link = "%s/s%d"\n  mode = "echo"\n}\n' % (i, k.dir, i))
        for i in range(N):
            speed = 19200 if i in changed else 9600
            out.append('serial s%d {\n  device = "%s/s%d"\n  listen = "127.0.0.1:%d"\n'
                       '  lock = false\n  speed = %d\n}\n' % (i, k.dir, i, ports[i], speed))
        return "".join(out)

    def open_ports(self, k):
        rc, out, err = k.ctl("status")
        self.assertEqual(rc, 0, err)
        return len(re.findall(r"^serial\.s\d+\.state: open$", out, re.M))

    def test_thousand_ports(self):
        ports = free_ports(N)
        k = Keeld("", modules=("sim", "serial"))
        self.addCleanup(k.close)
        k.write(self.body(k, ports))
        t0 = time.monotonic()
        k.start(prefix=["prlimit", "--nofile=8192:8192"], wait=False)
        k.wait_ready(timeout=60)
        ready = time.monotonic() - t0
        wait_for(lambda: self.open_ports(k) == N, 60, 0.2, what="every port open")
        all_open = time.monotonic() - t0
        rss_start = rss_kb(k.pid)
        anon_start = rss_kb(k.pid, "RssAnon")
        c = connect(ports[N - 1])
        self.addCleanup(c.close)
        c.sendall(b"ping")
        got = b""
        while len(got) < 4:
            got += c.recv(16)
        self.assertEqual(got, b"ping")
        # 10 % of the ports change speed (applied in place).
        k.write(self.body(k, ports, changed=set(range(0, N, 10))))
        t1 = time.monotonic()
        rc, out, err = k.ctl("reload", timeout=120)
        reload_s = time.monotonic() - t1
        self.assertEqual(rc, 0, err)
        t2 = time.monotonic()
        rc, out, err = k.ctl("status")
        status_s = time.monotonic() - t2
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(re.findall(r"^serial\.s\d+\.speed: 19200$", out, re.M)), N // 10)
        self.assertEqual(len(re.findall(r"^serial\.s\d+\.opens_total: 1$", out, re.M)), N)
        # The client kept its connection through the reload.
        c.sendall(b"pong")
        got = b""
        while len(got) < 4:
            got += c.recv(16)
        self.assertEqual(got, b"pong")
        rss_after = rss_kb(k.pid)
        anon_after = rss_kb(k.pid, "RssAnon")
        t3 = time.monotonic()
        rc, out, err = k.ctl("stop", timeout=120)
        stop_s = time.monotonic() - t3
        self.assertEqual(rc, 0, err)
        print("  %d ports: ready %.2f s, all open %.2f s, reload (10 %% changed) %.3f s, "
              "-s status %.3f s, stop %.2f s, RSS %d kB at start, %d kB after the reload "
              "(anonymous %d kB, %d kB)"
              % (N, ready, all_open, reload_s, status_s, stop_s, rss_start, rss_after,
                 anon_start, anon_after),
              file=sys.stderr)
        slow = 10 if os.environ.get("KEEL_SANITIZE") == "ON" else 1
        self.assertLess(reload_s, 5 * slow)
        self.assertLess(all_open, 20 * slow)
        if slow == 1:
            # The sim instances are about 9 MB of it; the serial ports were
            # 7.2 MB before their timers, buffers and strings became lazy
            # (16.8 MB in all then, 13.4 MB after).
            self.assertLess(anon_start, 15000)


if __name__ == "__main__":
    main()
