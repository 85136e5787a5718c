# SPDX-License-Identifier: ISC
"""Headless Chromium for integration tests, driven over the DevTools pipe.

Chromium runs with --remote-debugging-pipe: it reads DevTools protocol
commands from its descriptor 3 and writes answers and events to its
descriptor 4, each message JSON ended by a NUL. Over a pipe there is no
debugging port to pick, race for or leave open (nothing listens, not even on
loopback), no websocket client to install, and a browser that dies closes
the pipe, so a read fails at once instead of hanging. Every read is bounded
by a deadline. Chromium runs in its own session (process group) and close()
kills that group by the browser's PID.
"""
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import time

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium():
    """The Chromium binary, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser with a private profile under workdir."""

    def __init__(self, workdir, width=1100, height=900, timeout=30):
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("chromium not installed (scripts/deps test installs it)")
        self.timeout = timeout
        self.next_id = 0
        self.buf = b""
        self.events = []
        self.stderr = open(os.path.join(workdir, "chromium.stderr"), "w")
        to_r, self.to_w = os.pipe()      # our commands -> its fd 3
        self.from_r, from_w = os.pipe()  # its fd 4 -> our answers
        argv = [exe, "--headless", "--remote-debugging-pipe",
                "--user-data-dir=" + os.path.join(workdir, "chromium-profile"),
                "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                "--window-size=%d,%d" % (width, height), "about:blank"]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # the sandbox refuses to run as root

        def fds():
            # Above 4 first, so that dup2 never overwrites the other end.
            a, b = os.dup(to_r), os.dup(from_w)
            a, b = os.dup2(a, 10), os.dup2(b, 11)
            os.dup2(a, 3, inheritable=True)
            os.dup2(b, 4, inheritable=True)

        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=self.stderr, preexec_fn=fds, close_fds=False,
                                     start_new_session=True)
        os.close(to_r)
        os.close(from_w)
        self.session = None

    # -- protocol ------------------------------------------------------------
    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium: no answer in time")
            r, _, _ = select.select([self.from_r], [], [], left)
            if r:
                chunk = os.read(self.from_r, 1 << 20)
                if not chunk:
                    raise ConnectionError("chromium closed its DevTools pipe (exit %s)"
                                          % self.proc.poll())
                self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method, params=None, session=True, timeout=None):
        """Send a command (to the page's session by default); return its result."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.to_w, data):]
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def pump(self, seconds):
        """Collect events for a while."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    # -- page ----------------------------------------------------------------
    def open(self, url, javascript=True, width=None, height=None, mobile=False):
        """A new tab attached in flat mode, navigated to url."""
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(m)
        if width:
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height or 800,
                       "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile})
        if not javascript:
            self.call("Emulation.setScriptExecutionDisabled", {"value": True})
        self.call("Page.navigate", {"url": url})
        return target

    def eval(self, expression):
        """Evaluate in the page (even with the page's scripts disabled)."""
        r = self.call("Runtime.evaluate", {"expression": expression,
                                           "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError("page: %s" % r["exceptionDetails"])
        return r["result"].get("value")

    def wait(self, expression, timeout=15, what=None):
        """Poll an expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = self.eval(expression)
            except RuntimeError:
                v = None  # between documents while navigating
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %ss waiting for %s"
                                     % (timeout, what or expression))
            self.pump(0.2)

    def screenshot(self, path):
        """Save the whole page as PNG."""
        r = self.call("Page.captureScreenshot",
                      {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    def errors(self):
        """Console errors, uncaught exceptions and error log entries
        (failed loads, CSP violations) seen so far, as text."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s %s" % (d.get("text"),
                                                  d.get("exception", {}).get("description", "")))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.%s: %s" % (p["type"], " ".join(
                    str(a.get("value", a.get("description"))) for a in p.get("args", []))))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                en = p["entry"]
                out.append("log %s: %s %s" % (en.get("source"), en.get("text"), en.get("url", "")))
        return out

    # -- end -----------------------------------------------------------------
    def close(self):
        """Ask the browser to close, then kill its process group by PID."""
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", session=False, timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # helpers left behind
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self.to_w, self.from_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stderr.close()
