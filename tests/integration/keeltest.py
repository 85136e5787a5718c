# SPDX-License-Identifier: ISC
"""Shared helper for keel's integration tests.

Starts the real keeld as a process in a private temporary directory, drives
it with signals, files and `keeld -s`, and always ends what it started, by
PID. Everything is bounded in time. Only loopback is ever used.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

KEELD = os.path.abspath(os.environ.get("KEELD", "build/keeld"))
MODDIR = os.path.abspath(os.environ.get("KEEL_MODDIR", "build/modules"))
TESTMODDIR = os.path.abspath(os.environ.get("KEEL_TESTMODDIR", "build/tests/modules"))


def wait_for(pred, timeout=5.0, step=0.01, what="condition"):
    """Poll pred() until it returns a true value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(step)


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Keeld:
    """One keeld instance in its own directory."""

    def __init__(self, body="", modules=("heartbeat",), extra_modules=(), header=True):
        self.dir = tempfile.mkdtemp(prefix="keeltest.")
        os.chmod(self.dir, 0o755)
        self.moddir = os.path.join(self.dir, "modules")
        os.mkdir(self.moddir, 0o755)
        for name in extra_modules:
            shutil.copy(os.path.join(TESTMODDIR, name + ".so"), self.moddir)
        for name in os.listdir(MODDIR):
            if name.endswith(".so"):
                shutil.copy(os.path.join(MODDIR, name), self.moddir)
        self.conf = os.path.join(self.dir, "keeld.conf")
        self.pidfile = os.path.join(self.dir, "keeld.pid")
        self.statefile = os.path.join(self.dir, "state")
        self.logfile = os.path.join(self.dir, "keeld.log")
        self.header = header
        self.modules = modules
        self.proc = None
        self.pid = None
        self.write(body)

    # -- configuration ---------------------------------------------------
    def text(self, body, modules=None):
        """The full configuration text for a body."""
        if not self.header:
            return body
        mods = self.modules if modules is None else modules
        head = ('pidfile = "%s"\nstate-file = "%s"\nlog = "%s"\nlog-level = "debug"\n'
                'shutdown-timeout = 5\nload = { %s }\n'
                % (self.pidfile, self.statefile, self.logfile,
                   ", ".join('"%s"' % m for m in mods)))
        return head + body

    def write(self, body, modules=None, raw=False):
        """Replace the configuration atomically."""
        tmp = self.conf + ".new"
        with open(tmp, "w") as f:
            f.write(body if raw else self.text(body, modules))
        os.rename(tmp, self.conf)

    # -- process ---------------------------------------------------------
    def argv(self, *extra):
        return [KEELD, "-f", self.conf, "-M", self.moddir] + list(extra)

    def start(self, foreground=True, env=None, wait=True, args=(), prefix=()):
        """Start keeld; with wait, until its state file exists. A prefix
        (such as a prlimit command) must exec keeld in the same process."""
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        if env:
            e.update(env)
        self.stderr = open(os.path.join(self.dir, "stderr"), "w")
        argv = list(prefix) + self.argv(*(["-n"] if foreground else [])) + list(args)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr, env=e)
        if foreground:
            self.pid = self.proc.pid
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10):
        """Wait until the daemon wrote its state file (ready)."""
        def ready():
            if self.proc is not None and self.proc.poll() is not None and self.pid == self.proc.pid:
                raise AssertionError("keeld exited %s during start-up: %s"
                                     % (self.proc.returncode, self.read(os.path.join(self.dir, "stderr"))))
            s = self.state()
            return s.get("pid") if s else None
        pid = int(wait_for(ready, timeout, what="keeld ready"))
        if self.pid is None:
            self.pid = pid
        return pid

    def kill(self, sig):
        os.kill(self.pid, sig)

    def alive(self):
        return self.pid is not None and pid_alive(self.pid)

    def wait_exit(self, timeout=10):
        """Wait for the process to end; return its exit status if it is our child."""
        if self.proc is not None and self.proc.pid == self.pid:
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError("keeld still running after %ss" % timeout)
        wait_for(lambda: not self.alive(), timeout, what="keeld exit")
        return None

    def ctl(self, cmd, timeout=40):
        """Run keeld -s CMD; return (status, stdout, stderr)."""
        r = subprocess.run(self.argv("-s", cmd), capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def check(self, timeout=20):
        r = subprocess.run(self.argv("-t"), capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    # -- observation -----------------------------------------------------
    @staticmethod
    def read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def state(self):
        """The state file as a dict, {} when absent."""
        out = {}
        for line in self.read(self.statefile).splitlines():
            k, _, v = line.partition(": ")
            out[k] = v
        return out

    def log(self):
        return self.read(self.logfile)

    def wait_log(self, pattern, timeout=5, after=0):
        """Wait for a regex in the log (from byte offset after); return the match."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log()[after:]), timeout, what="log /%s/" % pattern)

    def generation(self):
        return int(self.state().get("generation", "0"))

    # -- cleanup -----------------------------------------------------------
    def close(self):
        """Stop whatever is left, by PID, then remove the directory."""
        for pid in {p for p in (self.pid, self.proc.pid if self.proc else None) if p}:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "stderr", None):
            self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


HEARTBEAT = 'heartbeat a {\n  message = "%s"\n  interval = %s\n}\n'


def main():
    """Run the calling module's tests; print a closing 'N passed, N failed' line."""
    prog = unittest.main(exit=False, verbosity=2)
    r = prog.result
    failed = len(r.failures) + len(r.errors)
    skipped = len(r.skipped)
    print("%d passed, %d failed, %d skipped" % (r.testsRun - failed - skipped, failed, skipped))
    sys.exit(1 if failed or r.testsRun == 0 else 0)
