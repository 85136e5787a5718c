# SPDX-License-Identifier: ISC
"""The example daemon (examples/tickd), built out of tree against an installed
keel both with pkg-config and with CMake's find_package(keel), runs as keeld
does: -t, start, SIGHUP reload, -s status, SIGTERM, always under its own name.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from keeltest import wait_for, pid_alive

BUILD = os.environ.get("KEEL_BUILD_DIR", "build")
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(SRC, "examples", "tickd")


def run(argv, env=None, timeout=300, check=True):
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s\n%s" % (argv, r.returncode, r.stdout, r.stderr))
    return r


@unittest.skipIf(os.environ.get("KEEL_SANITIZE") == "ON",
                 "the installed SDK is tested in the plain build")
class Example(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="keelsdk.")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        run(["cmake", "--install", BUILD, "--prefix", cls.prefix])
        libdirs = [os.path.join(dp) for dp, dn, fn in os.walk(cls.prefix) if "libkeel.so.0" in fn]
        assert libdirs, "no libkeel.so.0 under the prefix"
        cls.libdir = libdirs[0]
        cls.env = dict(os.environ, LD_LIBRARY_PATH=cls.libdir)
        # With CMake's package config, found through the prefix.
        cls.cmake_bin = os.path.join(cls.tmp, "cmake-build")
        run(["cmake", "-S", EXAMPLE, "-B", cls.cmake_bin, "-DCMAKE_PREFIX_PATH=" + cls.prefix])
        run(["cmake", "--build", cls.cmake_bin])
        # With pkg-config, the prefix found from the .pc file's place.
        pcdir = os.path.join(cls.libdir, "pkgconfig")
        penv = dict(os.environ, PKG_CONFIG_PATH=pcdir)
        flags = run(["pkg-config", "--define-prefix", "--cflags", "--libs", "keel"], env=penv).stdout.split()
        cls.pc_bin = os.path.join(cls.tmp, "tickd-pc")
        run(["cc", "-o", cls.pc_bin, os.path.join(EXAMPLE, "tickd.c")] + flags)
        abi = run(["pkg-config", "--define-prefix", "--variable=moduleabi", "keel"], env=penv).stdout.strip()
        assert abi == "2", abi

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tickd.", dir=self.tmp)
        self.conf = os.path.join(self.dir, "tickd.conf")
        self.log = os.path.join(self.dir, "tickd.log")
        self.proc = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def write(self, every="100ms", greeting="tickd is up", extra=""):
        with open(self.conf, "w") as f:
            f.write('greeting = "%s"\npidfile = "%s/tickd.pid"\nstate-file = "%s/state"\n'
                    'log = "%s"\nload = { "tick" }\n\ntick fast {\n  every = %s\n  text = "fast tick"\n}\n%s'
                    % (greeting, self.dir, self.dir, self.log, every, extra))

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def drive(self, binary):
        self.write()
        r = run([binary, "-f", self.conf, "-t"], env=self.env)
        self.assertIn("configuration OK", r.stdout)
        r = run([binary, "-V"], env=self.env)
        self.assertRegex(r.stdout, r"^tickd 1\.0 \(keel [0-9.]+, module ABI 2\)")
        r = run([binary, "-h"], env=self.env)
        self.assertIn("usage: tickd", r.stdout)
        self.assertNotIn("-M", r.stdout)
        # A broken file: tickd's own name, FILE:LINE, the framework's words.
        self.write(every='"5 hours"')
        r = run([binary, "-f", self.conf, "-t"], env=self.env, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(self.conf + ":8: tick 'fast': every '5 hours' is not a duration", r.stderr)
        self.write()
        self.proc = subprocess.Popen([binary, "-n", "-f", self.conf], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: "tick: fast: fast tick" in self.read_log(), 10, what="ticks")
        self.assertIn("tickd: tickd is up", self.read_log())
        # SIGHUP: a new greeting and interval, applied; the tick keeps running.
        self.write(every="50ms", greeting="reloaded")
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload applied: generation 2" in self.read_log(), 10, what="reload")
        self.assertIn("tickd: reloaded", self.read_log())
        r = run([binary, "-f", self.conf, "-s", "status"], env=self.env)
        self.assertIn("generation: 2\n", r.stdout)
        self.assertIn("tick.fast.every: 0.05\n", r.stdout)
        self.assertRegex(r.stdout, r"tick\.fast\.ticks_total: [1-9]")
        self.assertIn("version: 1.0\n", r.stdout)
        # A rejected reload names the file and keeps generation 2.
        self.write(extra="bogus = 1\n")
        r = run([binary, "-f", self.conf, "-s", "reload"], env=self.env, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("tickd: reload failed: " + self.conf, r.stderr)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(10), 0)
        log = self.read_log()
        self.assertIn("tickd[", log)
        self.assertIn("tickd stopped", log)
        self.assertNotIn("keeld", log + self.proc.stderr.read().decode())

    def test_built_with_cmake_find_package(self):
        self.drive(os.path.join(self.cmake_bin, "tickd"))

    def test_built_with_pkg_config(self):
        self.drive(self.pc_bin)


if __name__ == "__main__":
    unittest.main(verbosity=2)
