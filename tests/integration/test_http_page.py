# SPDX-License-Identifier: ISC
"""The status page at GET /: the real keeld (sim + serial + http) looked at
in headless Chromium, and fetched as plain HTML the way a browser with
JavaScript off sees it.

Chromium is driven over the DevTools pipe (headless.py): the test reads the
DOM after the data loaded, collects console errors, uncaught exceptions and
error log entries (failed loads, CSP violations), and saves screenshots
under $KEEL_BUILD_DIR/artifacts/.
"""
import html.parser
import json
import os
import re
import tempfile
import shutil
import unittest
import urllib.request

from headless import Chromium, find_chromium
from keeltest import Keeld, main, wait_for
from serialtest import connect, free_port

# The DOM as the test reads it: one entry per port card.
PORTS_JS = """JSON.stringify(Array.from(document.querySelectorAll('section.port')).map(function (s) {
  return {name: s.dataset.port,
          badge: s.querySelector('.badge').textContent,
          badgeClass: s.querySelector('.badge').className,
          error: s.querySelector('.err').hidden ? '' : s.querySelector('.err').textContent,
          rx: s.querySelector('.rx-total').textContent,
          tx: s.querySelector('.tx-total').textContent,
          rxRate: s.querySelector('.rx-rate').textContent,
          graph: s.querySelector('path.rx').getAttribute('d') || '',
          peers: Array.from(s.querySelectorAll('table.clients tbody tr td:first-child'))
                      .map(function (td) { return td.textContent; })};
}))"""


def digits(text):
    """The number in a byte count as the page shows it (grouped digits)."""
    return int(re.sub(r"\D", "", text) or "-1")


class TableParser(html.parser.HTMLParser):
    """The rows of <table id="keel-ports">, as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.rows = []
        self.cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and (self.depth or dict(attrs).get("id") == "keel-ports"):
            self.depth += 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if self.depth and tag == "table":
            self.depth -= 1
        elif self.depth and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def artifact(name):
    """A path under the build's artifacts directory; the backend variants
    of this test get their own names."""
    d = os.path.join(os.environ.get("KEEL_BUILD_DIR", "build"), "artifacts")
    os.makedirs(d, exist_ok=True)
    suffix = ("-select" if os.environ.get("EVENT_NOPOLL") else
              "-poll" if os.environ.get("EVENT_NOEPOLL") else "")
    return os.path.abspath(os.path.join(d, "%s%s.png" % (name, suffix)))


class Page(unittest.TestCase):
    def setUp(self):
        self.http = free_port()
        self.gps = free_port()
        self.absent = free_port()
        self.k = Keeld("", modules=("sim", "serial", "http"))
        self.addCleanup(self.k.close)
        d = self.k.dir
        self.good = (
            'sim gps {\n  link = "%s/gps"\n  mode = "nmea"\n  rate = 4\n}\n'
            'serial gps {\n  device = "%s/gps"\n  speed = 9600\n  format = "8N1"\n'
            '  listen = "127.0.0.1:%d"\n  lock-dir = "%s"\n}\n'
            # A device that is not there: the port waits, with an error.
            'serial absent {\n  device = "%s/no-such-device"\n  listen = "127.0.0.1:%d"\n'
            '  lock-dir = "%s"\n  retry-min = 0.5\n  retry-max = 1\n}\n'
            'http {\n  listen = { "127.0.0.1:%d" }\n}\n'
            % (d, d, self.gps, d, d, self.absent, d, self.http))
        self.k.write(self.good)
        self.k.start()
        self.base = "http://127.0.0.1:%d/" % self.http
        wait_for(lambda: self.port("gps").get("state") == "open"
                 and self.port("gps").get("rx_bytes_total", 0) > 0,
                 10, 0.1, what="gps open and bytes flowing")

    def get(self, path, timeout=5):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return r.status, r.headers, r.read()

    def status(self):
        try:
            return json.loads(self.get("status")[2])
        except OSError:
            return {}

    def port(self, name):
        return self.status().get("serial", {}).get(name, {})

    def clients(self, name):
        """The clients gauge (clients_connected, or clients when a number)."""
        p = self.port(name)
        n = p.get("clients_connected", p.get("clients"))
        return n if isinstance(n, int) else -1

    def browser(self):
        if find_chromium() is None:
            self.fail("chromium is not installed: run scripts/deps test (Debian package chromium)")
        tmp = tempfile.mkdtemp(prefix="keeltest-chromium.")
        self.addCleanup(shutil.rmtree, tmp, True)
        c = Chromium(tmp)
        self.addCleanup(c.close)
        return c

    def test_page_without_javascript_is_a_table(self):
        code, hdr, body = self.get("")
        self.assertEqual(code, 200)
        self.assertIn("text/html", hdr["Content-Type"])
        text = body.decode()
        self.assertNotIn("<!--KEEL-TABLE-->", text, "the module left the marker in")
        p = TableParser()
        p.feed(text)
        self.assertTrue(p.rows, "no server-rendered table id=keel-ports")
        self.assertEqual(p.rows[0], ["port", "state", "device", "clients", "rx bytes", "tx bytes"])
        rows = {r[0]: r for r in p.rows[1:]}
        self.assertEqual(set(rows), {"gps", "absent"})
        self.assertEqual(rows["gps"][1], "open")
        self.assertEqual(rows["gps"][2], os.path.join(self.k.dir, "gps"))
        self.assertGreater(int(rows["gps"][4]), 0, "rx bytes of a port that reads")
        self.assertIn(rows["absent"][1], ("waiting", "opening"))
        # The same page in Chromium with scripts off shows that table.
        c = self.browser()
        c.open(self.base, javascript=False)
        cells = c.wait("document.readyState === 'complete' && document.getElementById('keel-ports')"
                       " && document.getElementById('keel-ports').innerText", 15, "the no-JS table")
        self.assertIn("gps", cells)
        self.assertEqual(c.eval("document.body.dataset.samples"), "0", "scripts ran")
        print("screenshot (no JavaScript): %s" % c.screenshot(artifact("http-page-nojs")))
        c.pump(0.3)
        self.assertEqual(c.errors(), [])

    def test_page_in_chromium(self):
        client = connect(self.gps)
        self.addCleanup(client.close)
        peer = "127.0.0.1:%d" % client.getsockname()[1]
        client.sendall(b"$PMTK000*32\r\n")
        wait_for(lambda: self.clients("gps") == 1, 5, 0.1, what="the client in /status")

        c = self.browser()
        c.open(self.base)
        c.wait("Number(document.body.dataset.samples) >= 1", 15, "the first /status drawn")
        ports = {p["name"]: p for p in json.loads(c.eval(PORTS_JS))}
        self.assertEqual(set(ports), {"gps", "absent"})
        self.assertEqual(ports["gps"]["badge"], "open")
        self.assertIn("st-open", ports["gps"]["badgeClass"])
        self.assertIn(ports["absent"]["badge"], ("waiting", "opening"))
        self.assertEqual(ports["gps"]["peers"], [peer])
        self.assertIsNone(c.eval("document.getElementById('keel-ports')"),
                          "the server's table is left under the live view")
        err = self.port("absent").get("error")
        if err:  # the page shows the open error the status carries
            self.assertIn(err, c.wait(
                "document.querySelector('section[data-port=absent] .err').textContent", 5))
        self.assertEqual(c.eval("document.getElementById('v-pid').textContent"), str(self.k.pid))

        # The byte count moves from one refresh to the next (every 2 s).
        rx1 = digits(ports["gps"]["rx"])
        self.assertGreater(rx1, 0)
        n = int(c.eval("document.body.dataset.samples"))
        c.wait("Number(document.body.dataset.samples) >= %d" % (n + 2), 10, "two more refreshes")
        gps = {p["name"]: p for p in json.loads(c.eval(PORTS_JS))}["gps"]
        self.assertGreater(digits(gps["rx"]), rx1, "device->network bytes did not move")
        self.assertRegex(gps["rxRate"], r"^\d+(\.\d)?\s[kMG]?B/s$")
        self.assertNotEqual(digits(gps["rxRate"]), 0, "no throughput from a sim sending NMEA")
        self.assertRegex(gps["graph"], r"^M[\d.]+ [\d.]+L", "no throughput line drawn")
        self.assertGreaterEqual(digits(gps["tx"]), 13, "network->device bytes")

        # A failed reload shows, with its FILE:LINE: message.
        self.k.write(self.good + "serial gps {\n  speed = fast\n}\n")
        rc, _, _ = self.k.ctl("reload")
        self.assertNotEqual(rc, 0)
        msg = c.wait("!document.getElementById('v-reload-error').hidden"
                     " && document.getElementById('v-reload-error').textContent", 10,
                     "the failed reload on the page")
        self.assertIn(self.k.conf + ":", msg)
        self.assertEqual(c.eval("document.getElementById('v-reload').textContent"), "failed")

        path = c.screenshot(artifact("http-page"))
        print("screenshot: %s" % path)
        c.open(self.base, width=390, height=844, mobile=True)
        c.wait("Number(document.body.dataset.samples) >= 2", 15, "the phone view drawn")
        self.assertLessEqual(c.eval("document.documentElement.scrollWidth"), 390,
                             "the page scrolls sideways on a phone")
        print("screenshot (phone): %s" % c.screenshot(artifact("http-page-phone")))
        c.pump(0.3)
        self.assertEqual(c.errors(), [], "console errors on the page")


if __name__ == "__main__":
    main()
