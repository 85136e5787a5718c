# SPDX-License-Identifier: ISC
"""No leak in a start -> reload -> rejected reload -> status -> stop cycle,
under valgrind (the ASan build checks the same with LeakSanitizer)."""
import os
import shutil
import signal
import subprocess
import unittest

from keeltest import HEARTBEAT, KEELD, Keeld, main, wait_for


class Leaks(unittest.TestCase):
    def test_start_reload_stop_under_valgrind(self):
        if os.environ.get("KEEL_SANITIZE") == "ON":
            self.skipTest("sanitizer build: LeakSanitizer checks leaks instead")
        if shutil.which("valgrind") is None:
            self.skipTest("valgrind not installed")
        with Keeld(HEARTBEAT % ("v", 0.1)) as k:
            vlog = os.path.join(k.dir, "valgrind.log")
            k.proc = subprocess.Popen(
                ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
                 "--errors-for-leak-kinds=definite,indirect,possible", "--error-exitcode=42",
                 "--log-file=" + vlog] + k.argv("-n"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            k.pid = k.proc.pid
            k.wait_ready(60)
            k.write(HEARTBEAT % ("w", 0.05) + HEARTBEAT.replace("heartbeat a", "heartbeat b") % ("b", 0.2))
            self.assertEqual(k.ctl("reload", timeout=60)[0], 0)
            k.write(HEARTBEAT % ("w", 0.05) + "broken = \n")
            self.assertEqual(k.ctl("reload", timeout=60)[0], 1)
            self.assertEqual(k.ctl("status", timeout=60)[0], 0)
            k.kill(signal.SIGALRM)
            k.kill(signal.SIGUSR1)
            k.kill(signal.SIGTERM)
            rc = k.wait_exit(60)
            report = k.read(vlog)
            self.assertIn("in use at exit", report)
            self.assertEqual(rc, 0, report[-3000:])
            self.assertIn("ERROR SUMMARY: 0 errors", report)


if __name__ == "__main__":
    main()
