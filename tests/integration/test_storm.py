# SPDX-License-Identifier: ISC
"""Storm: 10,000 mixed HUP/USR1/USR2/ALRM while four ports stream both
ways, the file alternating between two valid versions. keeld stays alive,
every byte arrives in order, and its descriptors and RSS stay flat."""
import os
import random
import re
import signal
import sys
import time
import unittest

from keeltest import Keeld, main, wait_for
from serialtest import (Pty, connect, free_port, in_thread, pattern, read_exact, recv_exact,
                        send_all, serial_section, sha, wait_open, write_all_fd)

PORTS = 4
SIGNALS = 10000


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class Storm(unittest.TestCase):
    def test_signal_storm_during_streams(self):
        k = Keeld("", modules=("serial",))
        self.addCleanup(k.close)
        ptys, ports = [], []
        for i in range(PORTS):
            p = Pty(os.path.join(k.dir, "tty%d" % i))
            self.addCleanup(p.close)
            ptys.append(p)
            ports.append(free_port())
        bodies = ["".join(serial_section("p%d" % i, ptys[i].link, ports[i], k.dir,
                                         "  speed = %d\n" % speed)
                          for i in range(PORTS))
                  for speed in (9600, 19200)]
        k.write(bodies[0])
        k.start()
        for i in range(PORTS):
            wait_open(k, "p%d" % i)
        clients = [connect(port) for port in ports]
        for c in clients:
            self.addCleanup(c.close)
        time.sleep(0.1)
        fds0, rss0 = nfds(k.pid), rss_kb(k.pid)
        n = 16 << 20
        down = [pattern(n, seed=3 + 2 * i) for i in range(PORTS)]
        up = [pattern(n, seed=5 + 2 * i) for i in range(PORTS)]
        got = {}
        threads = []
        for i in range(PORTS):
            threads.append(in_thread(write_all_fd, ptys[i].master, down[i]))
            threads.append(in_thread(send_all, clients[i], up[i]))
            threads.append(in_thread(lambda i=i: got.__setitem__(
                ("down", i), recv_exact(clients[i], n, timeout=120))))
            threads.append(in_thread(lambda i=i: got.__setitem__(
                ("up", i), read_exact(ptys[i].master, n, timeout=120))))
        rnd = random.Random(7)
        sigs = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)
        t0 = time.monotonic()
        # Paced over about two seconds, while the streams run (the kernel
        # merges a signal into one already pending: many are coalesced).
        for j in range(SIGNALS):
            if j % 500 == 0:
                k.write(bodies[(j // 500) % 2])
            os.kill(k.pid, rnd.choice(sigs))
            if j % 10 == 0:
                time.sleep(0.002)
        sent_s = time.monotonic() - t0
        for t in threads:
            t.join(150)
        for i in range(PORTS):
            self.assertEqual(got.get(("down", i)), sha(down[i]), "port %d device->client" % i)
            self.assertEqual(got.get(("up", i)), sha(up[i]), "port %d client->device" % i)
        self.assertTrue(k.alive())
        # The last reloads settle; then descriptors and memory are as before.
        wait_for(lambda: k.state().get("reload-done") == k.state().get("reload-started"),
                 30, 0.05, what="reloads settled")
        time.sleep(0.5)
        fds1, rss1 = nfds(k.pid), rss_kb(k.pid)
        streams_s = time.monotonic() - t0
        print("  %d signals in %.1f s, streams done in %.1f s (%d ports x 2 x %d MiB): "
              "generation %s, fds %d -> %d, RSS %d -> %d kB"
              % (SIGNALS, sent_s, streams_s, PORTS, n >> 20, k.state().get("generation"),
                 fds0, fds1, rss0, rss1), file=sys.stderr)
        self.assertEqual(fds1, fds0)
        # (ASan keeps freed memory in quarantine: there LeakSanitizer is
        # the check, at exit.)
        if os.environ.get("KEEL_SANITIZE") != "ON":
            self.assertLess(rss1, rss0 + 8192)
        self.assertNotIn("error", "\n".join(l for l in k.log().splitlines()
                                          if ": error: " in l))
        rc, out, err = k.ctl("stop")
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    main()
