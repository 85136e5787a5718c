# SPDX-License-Identifier: ISC
"""heartbeat, sim and serial linked into one program (keelall) as built-in
modules: they register through the same path as the .so files, run side by
side, reload, report status and stop, under the program's own name."""
import os
import signal
import time

from keeltest import Keeld, wait_for, main
from serialtest import free_port, connect, serial_section, port_status
import unittest

KEELALL = os.path.abspath(os.environ.get("KEELALL", "build/tests/integration/keelall"))


class AllIn(Keeld):
    """A Keeld that runs keelall, which has no module directory."""

    def argv(self, *extra):
        return [KEELALL, "-f", self.conf] + list(extra)


class Builtin(unittest.TestCase):
    def body(self, k, port, message="built in"):
        link = os.path.join(k.dir, "dev")
        return ('sim dev {\n  link = "%s"\n  mode = "echo"\n}\n' % link
                + serial_section("dev", link, port, k.dir)
                + 'heartbeat a {\n  message = "%s"\n  interval = 0.1\n}\n' % message)

    def test_three_builtin_modules_side_by_side(self):
        k = AllIn("", modules=("heartbeat", "sim", "serial"))
        self.addCleanup(k.close)
        port = free_port()
        k.write(self.body(k, port))
        k.start()
        wait_for(lambda: port_status(k, "dev")["state"] == "open", 5, 0.05, what="port open")
        # Bytes go client -> serial -> sim's pty (echo) -> serial -> client.
        c = connect(port)
        self.addCleanup(c.close)
        c.sendall(b"ping through two built-in modules\n")
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < 34 and time.monotonic() < deadline:
            got += c.recv(100)
        self.assertEqual(got, b"ping through two built-in modules\n")
        k.wait_log("heartbeat: a: built in")
        rc, out, err = k.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertIn("modules: heartbeat 2.0.0, sim 2.0.0, serial 2.0.0\n", out)
        self.assertIn("sim.dev.rx_bytes_total: 34\n", out)
        self.assertIn("serial.dev.tx_bytes_total: 34\n", out)
        # A reload reaches the built-in modules; the client keeps its stream.
        k.write(self.body(k, port, message="reloaded"))
        rc, out, err = k.ctl("reload")
        self.assertEqual(rc, 0, err)
        k.wait_log("heartbeat: a: reloaded")
        c.sendall(b"again\n")
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < 6 and time.monotonic() < deadline:
            got += c.recv(100)
        self.assertEqual(got, b"again\n")
        k.kill(signal.SIGTERM)
        self.assertEqual(k.wait_exit(), 0)
        log = k.log()
        self.assertIn("keelall[", log)
        self.assertIn("keelall stopped", log)
        self.assertNotIn("keeld[", log)
        self.assertNotIn("keeld:", log)

    def test_no_module_directory(self):
        k = AllIn("", modules=("heartbeat",))
        self.addCleanup(k.close)
        k.write('heartbeat a {\n  message = "x"\n}\n')
        import subprocess
        r = subprocess.run([KEELALL, "-f", k.conf, "-M", k.moddir, "-t"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("keelall: -M: this program loads no modules", r.stderr)
        r = subprocess.run([KEELALL, "-f", k.conf, "-t"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        # An unknown module is named without a module path.
        k.write('heartbeat a {\n  message = "x"\n}\n', modules=("heartbeat", "nope"))
        r = subprocess.run([KEELALL, "-f", k.conf, "-t"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("load: no module 'nope'\n", r.stderr)


if __name__ == "__main__":
    main()
