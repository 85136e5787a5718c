# SPDX-License-Identifier: ISC
"""What an operator starts from: conf/keeld.conf (installed as
/etc/keel/keeld.conf, ending with include("conf.d/*.conf")) and the conf.d
examples in conf/examples/ (installed under /usr/share/doc/keeld/examples).
Each passes keeld -t as shipped, with device paths that do not exist here;
the defaults written in comments are the real ones; the default file runs
with all three examples dropped into conf.d."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from keeltest import KEELD, MODDIR, main, wait_for
from serialtest import free_port, statuses

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT = os.path.join(SRC, "conf", "keeld.conf")
EXAMPLES = {name: os.path.join(SRC, "conf", "examples", name + ".conf")
            for name in ("gps", "plc-rs485", "modem")}
# The section each example defines.
TITLES = {"gps": "gps", "plc-rs485": "plc", "modem": "modem"}


def read(path):
    with open(path) as f:
        return f.read()


class Shipped(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keelconf.")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.conf = os.path.join(self.dir, "keeld.conf")
        shutil.copy(DEFAULT, self.conf)
        self.confd = os.path.join(self.dir, "conf.d")
        self.proc = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def keeld(self, *args, conf=None):
        r = subprocess.run([KEELD, "-f", conf or self.conf, "-M", MODDIR] + list(args),
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr

    def check_ok(self, conf=None):
        rc, out, err = self.keeld("-t", conf=conf)
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out)
        self.assertEqual(err, "")

    def add(self, *names):
        os.makedirs(self.confd, exist_ok=True)
        for name in names:
            shutil.copy(EXAMPLES[name], os.path.join(self.confd, name + ".conf"))

    def test_default_checks_in_the_source_tree_and_installed(self):
        # conf/ has no conf.d: a missing directory is fine, as is an empty one.
        self.check_ok(conf=DEFAULT)
        self.check_ok()
        os.mkdir(self.confd)
        self.check_ok()
        rc, out, err = self.keeld("-T")
        self.assertEqual(rc, 0, err)
        self.assertIn('load = { "serial" }\n', out)
        self.assertNotIn("heartbeat", out)
        text = read(DEFAULT)
        self.assertTrue(text.startswith("# SPDX-License-Identifier: ISC\n"))
        self.assertTrue(text.rstrip().endswith('include("conf.d/*.conf")'), text[-200:])

    def test_commented_defaults_are_the_defaults(self):
        # Every core option appears as "#name = value" with its default:
        # uncommented, they change nothing in the effective configuration.
        text = read(DEFAULT)
        for name in ("pidfile", "state-file", "log", "log-level", "user", "group",
                     "shutdown-timeout"):
            self.assertRegex(text, r"(?m)^#%s = \S" % re.escape(name))
        rc, before, err = self.keeld("-T")
        self.assertEqual(rc, 0, err)
        # user/group need the account "keel", and log unset means syslog
        # only when daemonized: those three are left commented.
        keep = ("#user ", "#group ", "#log ")
        lines = [l[1:] if re.match(r"#[a-z-]+ = ", l) and not l.startswith(keep) else l
                 for l in text.splitlines()]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        rc, after, err = self.keeld("-T")
        self.assertEqual(rc, 0, err)
        strip = lambda t: [l for l in t.splitlines() if not l.startswith("#")]
        self.assertEqual(strip(after), strip(before))
        self.assertIn('log-level = "info"', after)

    def test_commented_examples_in_the_default_check(self):
        # The serial and http examples of keeld.conf, uncommented, pass -t.
        out, block = [], False
        for line in read(DEFAULT).splitlines():
            if re.match(r"#(serial|http) .*\{$|#http \{$", line):
                block = True
            if block:
                line = line[1:]
                if line == "}":
                    block = False
            out.append(line)
        text = "\n".join(out) + "\n"
        self.assertIn("\nserial console {\n", text)
        self.assertIn("\nhttp {\n", text)
        text = text.replace('load = { "serial" }', 'load = { "serial", "http" }')
        with open(self.conf, "w") as f:
            f.write(text)
        self.check_ok()
        rc, out, err = self.keeld("-T")
        self.assertIn('serial "console" {\n  device = "/dev/ttyS0"\n', out)
        self.assertIn('  allow = { "127.0.0.0/8", "::1" }\n', out)
        # The defaults section, and the port that inherits its allow.
        self.assertIn('\nserial { # defaults of every titled serial section\n'
                      '  allow = { "127.0.0.0/8", "::1" }\n}\n', out)
        console = out[out.index('serial "console" {'):]
        self.assertIn('  allow = { "127.0.0.0/8", "::1" }\n', console[:console.index("\n}\n")])

    def test_each_example_checks_in_conf_d(self):
        for name, path in EXAMPLES.items():
            with self.subTest(example=name):
                shutil.rmtree(self.confd, ignore_errors=True)
                self.add(name)
                text = read(path)
                self.assertTrue(text.startswith("# SPDX-License-Identifier: ISC\n"))
                device = re.search(r'(?m)^\s*device\s*=\s*"([^"]+)"', text).group(1)
                # -t opens no device: it passes whether the device is
                # there or not (the by-id names are not, here).
                self.check_ok()
                rc, out, err = self.keeld("-T")
                self.assertEqual(rc, 0, err)
                self.assertIn('serial "%s" {\n  device = "%s"\n' % (TITLES[name], device), out)

    def test_examples_say_what_they_promise(self):
        self.add(*EXAMPLES)
        rc, out, err = self.keeld("-T")
        self.assertEqual(rc, 0, err)
        sec = {t: re.search(r'serial "%s" \{\n(.*?)\n\}' % t, out, re.S).group(1)
               for t in TITLES.values()}
        self.assertRegex(sec["gps"], r"speed = (4800|9600)\n")
        self.assertIn('format = "8N1"', sec["gps"])
        self.assertRegex(sec["gps"], r"max-clients = ([2-9]|[1-9][0-9]+)\n")
        self.assertIn("speed = 19200\n", sec["plc"])
        self.assertIn('format = "8E1"', sec["plc"])
        self.assertIn("max-clients = 1\n", sec["plc"])
        self.assertRegex(sec["plc"], r"client-timeout = [1-9]")
        self.assertIn('flow = "rtscts"', sec["modem"])
        self.assertIn("local = false", sec["modem"])
        self.assertIn("hangup-on-close = true", sec["modem"])

    def test_default_runs_with_every_example(self):
        # The shipped files, only the daemon's own paths, the ports and
        # the devices (never one of this machine's) moved into this test:
        # keeld starts with three absent devices, each port waiting for
        # its device, and stops cleanly.
        self.add(*EXAMPLES)
        for name in EXAMPLES:
            p = os.path.join(self.confd, name + ".conf")
            text = re.sub(r'listen(\s*)= "127\.0\.0\.1:\d+"',
                          r'listen\1= "127.0.0.1:%d"' % free_port(), read(p))
            text = re.sub(r'device(\s*)= "[^"]+"',
                          r'device\1= "%s/absent-%s"' % (self.dir, name), text)
            with open(p, "w") as f:
                f.write(text)
        state = os.path.join(self.dir, "state")
        log = os.path.join(self.dir, "keeld.log")
        with open(self.conf, "w") as f:
            f.write('pidfile = "%s/keeld.pid"\nstate-file = "%s"\nlog = "%s"\n'
                    % (self.dir, state, log) + read(DEFAULT))
        errf = open(os.path.join(self.dir, "stderr"), "w+")
        self.addCleanup(errf.close)
        self.proc = subprocess.Popen([KEELD, "-n", "-f", self.conf, "-M", MODDIR],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=errf)

        class K:  # what serialtest.statuses needs
            def ctl(k, cmd):
                return self.keeld("-s", cmd)
        wait_for(lambda: os.path.exists(state) or self.proc.poll() is not None, 10,
                 what="keeld ready")
        if self.proc.poll() is not None:
            self.fail("keeld exited %d: %s" % (self.proc.returncode,
                                               read(os.path.join(self.dir, "stderr"))))
        ports = statuses(K())
        self.assertEqual(sorted(ports), ["gps", "modem", "plc"])
        for name, st in ports.items():
            self.assertEqual(st["state"], "waiting", name)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(15), 0)


class Readme(unittest.TestCase):
    def test_the_tours_rejected_reload_names_the_line_keeld_names(self):
        # README's tour appends 'bogus = 1' to conf/keeld-demo.conf and
        # quotes the error; the demo file grew and the quote said :42.
        quoted = re.search(r"keeld-demo\.conf:(\d+): no\s+such option 'bogus'",
                           read(os.path.join(SRC, "README.md")))
        self.assertIsNotNone(quoted, "README no longer quotes the rejected reload")
        with tempfile.TemporaryDirectory(prefix="keeltour.") as d:
            conf = os.path.join(d, "keeld-demo.conf")
            with open(conf, "w") as f:
                f.write(read(os.path.join(SRC, "conf", "keeld-demo.conf")) + "bogus = 1\n")
            r = subprocess.run([KEELD, "-t", "-f", conf, "-M", MODDIR],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:%s: no such option 'bogus'" % (conf, quoted.group(1)), r.stderr)


if __name__ == "__main__":
    main()
