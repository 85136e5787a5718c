# SPDX-License-Identifier: ISC
"""Every signal of the control plane does its documented thing."""
import os
import signal
import time
import unittest

from keeltest import HEARTBEAT, Keeld, main, wait_for


class Signals(unittest.TestCase):
    def setUp(self):
        self.k = Keeld(HEARTBEAT % ("tick", 0.2))
        self.addCleanup(self.k.close)
        self.k.start()

    def test_sighup_reloads_and_is_logged(self):
        self.k.write(HEARTBEAT % ("tock", 0.2))
        self.k.kill(signal.SIGHUP)
        wait_for(lambda: self.k.generation() == 2, what="generation 2")
        self.k.wait_log(r"received SIGHUP: reloading")
        self.k.wait_log(r"heartbeat: a: tock")

    def test_sigterm_stops_cleanly(self):
        self.k.kill(signal.SIGTERM)
        self.assertEqual(self.k.wait_exit(10), 0)
        self.assertFalse(os.path.exists(self.k.pidfile))
        self.assertIn("received SIGTERM: stopping", self.k.log())

    def test_sigint_stops_cleanly(self):
        self.k.kill(signal.SIGINT)
        self.assertEqual(self.k.wait_exit(10), 0)
        self.assertFalse(os.path.exists(self.k.pidfile))
        self.assertIn("received SIGINT: stopping", self.k.log())

    def test_sigusr1_reopens_the_log(self):
        os.rename(self.k.logfile, self.k.logfile + ".1")
        self.k.kill(signal.SIGUSR1)
        # The new file is created by the reopen, and receives new lines.
        wait_for(lambda: os.path.exists(self.k.logfile), what="new log file")
        self.k.wait_log(r"heartbeat: a: tick")
        self.assertIn("received SIGUSR1: reopening log files", self.k.read(self.k.logfile + ".1"))
        self.assertTrue(self.k.alive())

    def test_sigusr2_dumps_status(self):
        self.k.kill(signal.SIGUSR2)
        self.k.wait_log(r"status: generation: 1")
        self.k.wait_log(r"status: heartbeat\.a\.interval: 0\.2")
        wait_for(lambda: self.k.state().get("dumps") == "1", what="dumps 1")
        self.assertTrue(self.k.alive())

    def test_stale_status_request_does_not_silence_sigusr2(self):
        # A -s status that died long ago left its request behind: an
        # operator's SIGUSR2 still writes the dump into the log.
        req = self.k.statefile + ".request"
        open(req, "w").close()
        old = time.time() - 60
        os.utime(req, (old, old))
        mark = len(self.k.log())
        self.k.kill(signal.SIGUSR2)
        self.k.wait_log(r"received SIGUSR2: status dump", after=mark)
        self.k.wait_log(r"status: generation: 1", after=mark)
        self.assertFalse(os.path.exists(req))

    def test_status_command_logs_nothing(self):
        # A monitoring script polling -s status must not fill the log.
        mark = len(self.k.log())
        for n in range(3):
            rc, out, err = self.k.ctl("status")
            self.assertEqual(rc, 0, err)
            self.assertIn("dumps: %d\n" % (n + 1), out)
            self.assertIn("signals_total.SIGUSR2: %d\n" % (n + 1), out)
        self.assertNotIn("status", self.k.log()[mark:])
        self.assertNotIn("SIGUSR2", self.k.log()[mark:])

    def test_sigalrm_wakes_modules_and_never_kills(self):
        start = len(self.k.log())
        for _ in range(5):
            self.k.kill(signal.SIGALRM)
        self.k.wait_log(r"received SIGALRM: waking", after=start)
        time.sleep(0.3)
        self.assertTrue(self.k.alive())
        # heartbeat answers "wake" by beating at once.
        self.assertIn("heartbeat: a: tick", self.k.log()[start:])

    def test_sigpipe_is_ignored(self):
        for _ in range(3):
            self.k.kill(signal.SIGPIPE)
        time.sleep(0.3)
        self.assertTrue(self.k.alive())
        self.assertEqual(self.k.ctl("status")[0], 0)

    def test_survives_every_non_stop_signal_together(self):
        for sig in (signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE) * 20:
            self.k.kill(sig)
        time.sleep(0.5)
        self.assertTrue(self.k.alive())
        rc, out, _ = self.k.ctl("status")
        self.assertEqual(rc, 0)
        self.assertIn("generation: 1", out)


class StartupSignals(unittest.TestCase):
    def test_signals_during_startup_are_not_fatal_nor_lost(self):
        # slowstop's KEEL_TEST_START_DELAY keeps start-up busy for a second after main()
        # has blocked the signals: they must wait, then be handled.
        k = Keeld(HEARTBEAT % ("early", 0.5) + "slowstop {\n  delay = 0\n}\n",
                  modules=("heartbeat", "slowstop"), extra_modules=("slowstop",))
        self.addCleanup(k.close)
        k.start(wait=False, env={"KEEL_TEST_START_DELAY": "1"})
        blocked = 1 << (signal.SIGHUP - 1)

        def in_main():
            try:
                with open("/proc/%d/status" % k.proc.pid) as f:
                    for line in f:
                        if line.startswith("SigBlk:"):
                            return int(line.split()[1], 16) & blocked
            except OSError:
                return False
        wait_for(in_main, 5, 0.001, what="signals blocked in main")
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE):
            os.kill(k.proc.pid, sig)
        k.wait_ready()
        self.assertTrue(k.alive())
        # The SIGHUP was kept: a reload happened once the loop ran.
        wait_for(lambda: k.generation() == 2, what="the early SIGHUP's reload")
        k.wait_log("received SIGUSR2: status dump")
        self.assertEqual(k.ctl("stop")[0], 0)
        self.assertEqual(k.wait_exit(), 0)


if __name__ == "__main__":
    main()
