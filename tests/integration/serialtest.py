# SPDX-License-Identifier: ISC
"""Pseudo-terminals standing in for serial ports, and TCP clients, for the
serial integration tests. Never opens the machine's own serial devices."""
import hashlib
import os
import select
import socket
import threading
import time
import tty

from keeltest import Keeld, wait_for


def free_ports(n):
    """n TCP ports on 127.0.0.1 that nobody listens on right now, below
    Linux's ephemeral range (32768-60999): free_port() hands out ports
    from that range, and so does every connect() of the other tests
    running at the same time, so a long list taken there is likely to
    have one taken again before keeld binds it (seen in CI: "Address
    already in use" at the 101st of 1,000 ports)."""
    import random
    ports = []
    start = random.randrange(10000, 32000 - 2 * n)
    port = start
    while len(ports) < n and port < 32768:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            ports.append(port)
        except OSError:
            pass
        finally:
            s.close()
        port += 1
    if len(ports) < n:
        raise AssertionError("only %d free ports from %d" % (len(ports), start))
    return ports


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Pty:
    """A pty whose slave is published at a symbolic link (the 'device')."""

    def __init__(self, link):
        self.link = link
        self.master = None
        self.plug()

    def plug(self):
        """A fresh pty, published at the link atomically."""
        m, s = os.openpty()
        tty.setraw(s)
        self.slave_path = os.ttyname(s)
        os.close(s)
        os.set_blocking(m, True)
        self.master = m
        tmp = self.link + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.slave_path, tmp)
        os.rename(tmp, self.link)

    # The names test_serial_faults uses.
    renew = plug

    @property
    def path(self):
        return self.slave_path

    def hangup(self):
        """The device goes away: its link first (as udev removes
        /dev/serial/by-id links), then the master, so the slave side gets
        EIO. No dangling link is left: another pty on the machine could get
        the same /dev/pts number and be opened through it."""
        if os.path.lexists(self.link):
            os.unlink(self.link)
        if self.master is not None:
            os.close(self.master)
        self.master = None

    unplug = hangup

    def lock_name(self):
        """The UUCP lock name keel uses for this device: LCK..pts_N."""
        return "LCK.." + self.slave_path[len("/dev/"):].replace("/", "_")

    def close(self):
        self.hangup()


def serial_keeld(test, name="ttyTEST0"):
    """A keeld (not started) with the serial module and a pty at NAME in
    its directory, both ended with the test; (keeld, link, pty)."""
    k = Keeld("", modules=("serial",))
    test.addCleanup(k.close)
    link = os.path.join(k.dir, name)
    pty = Pty(link)
    test.addCleanup(pty.close)
    return k, link, pty


def serial_section(name, link, port, lock_dir, extra=""):
    return ('serial %s {\n  device = "%s"\n  listen = "127.0.0.1:%d"\n  lock-dir = "%s"\n'
            '  retry-min = 0.05\n  retry-max = 0.5\n%s}\n' % (name, link, port, lock_dir, extra))


def connect(port, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            c.settimeout(timeout)
            return c
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def pattern(n, seed=7):
    block = bytes((i * seed + 3) % 256 for i in range(65536))
    return (block * (n // 65536 + 1))[:n]


def recv_exact(sock, n, timeout=30):
    h = hashlib.sha256()
    got = 0
    sock.settimeout(timeout)
    while got < n:
        b = sock.recv(min(1 << 20, n - got))
        if not b:
            raise AssertionError("connection closed after %d of %d bytes" % (got, n))
        h.update(b)
        got += len(b)
    return h.hexdigest()


def read_exact(fd, n, timeout=30):
    """n bytes from fd within timeout seconds in all (never a read that
    blocks past the deadline)."""
    h = hashlib.sha256()
    got = 0
    deadline = time.monotonic() + timeout
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError("device read %d of %d bytes" % (got, n))
        b = os.read(fd, min(1 << 20, n - got))
        h.update(b)
        got += len(b)
    return h.hexdigest()


def send_all(sock, data, timeout=120):
    """socket.sendall with its own deadline. sendall's budget is the
    socket's timeout when it starts, for the whole transfer (Python >= 3.5),
    and a recv_exact in another thread changes that timeout: a 16 MiB
    sendall could start with 5 s for all of it."""
    deadline = time.monotonic() + timeout
    off = 0
    while off < len(data):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([], [sock], [], left)[1]:
            raise AssertionError("sent %d of %d bytes" % (off, len(data)))
        off += sock.send(data[off:off + 65536])


def write_all_fd(fd, data):
    off = 0
    while off < len(data):
        off += os.write(fd, data[off:off + 65536])


def in_thread(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def sha(data):
    return hashlib.sha256(data).hexdigest()


def statuses(k):
    """{port: {field: value}} from the `serial.PORT.FIELD: VALUE` lines of
    keeld -s status (a client's fields as 'peers.N.peer'); numbers as ints."""
    rc, out, err = k.ctl("status")
    if rc != 0:
        raise AssertionError("keeld -s status failed (%d): %s" % (rc, err))
    ports = {}
    for line in out.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("serial."):
            name, _, field = key[len("serial."):].partition(".")
            ports.setdefault(name, {})[field] = int(value) if value.isdigit() else value
    return ports


def port_status(k, name):
    """The status fields and metrics of one port, as a dict."""
    st = statuses(k).get(name)
    if st is None:
        raise AssertionError("no status of serial.%s in:\n%s" % (name, k.ctl("status")[1]))
    return st


def wait_open(k, name, timeout=5):
    return wait_for(lambda: port_status(k, name)["state"] == "open", timeout,
                    0.05, what="serial.%s open" % name)
