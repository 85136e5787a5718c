# SPDX-License-Identifier: ISC
"""The bridge's protocols: telnet (negotiation, IAC, NVT CR NUL) with a
plain socket, and RFC 2217 with pyserial's own rfc2217:// client (Debian
python3-serial), against a port bridged to a real pty. A pty has no modem
lines and forces CS8 without parity (TRAPS.md): what is checked on the pty
is the speed and the stop bits, and every answer on the wire."""
import os
import socket
import sys
import termios
import time
import unittest

from keeltest import Keeld, main, wait_for
from serialtest import (Pty, free_port, in_thread, pattern, port_status, read_exact, serial_section,
                        sha, wait_open, write_all_fd)

try:
    import serial  # pyserial
except ImportError:  # the test Python may not be Debian's: use its package
    sys.path.append("/usr/lib/python3/dist-packages")
    import serial

IAC, WILL, WONT, DO, DONT, SB, SE = 255, 251, 252, 253, 254, 250, 240


def tn(*b):
    return bytes(b)


def recv_until(sock, want, timeout=5):
    """Bytes from @sock until @want was seen; all of them."""
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            b = sock.recv(65536)
        except socket.timeout:
            b = None
        if not b or time.monotonic() > deadline:
            raise AssertionError("wanted %r, got %r" % (want, got))
        got += b
    return got


def line_of(master):
    """(ospeed, CSTOPB set, CSIZE) of the pty as keel configured it."""
    attrs = termios.tcgetattr(master)
    return attrs[5], bool(attrs[2] & termios.CSTOPB), attrs[2] & termios.CSIZE


class Bridge(unittest.TestCase):
    protocol = "raw"

    def setUp(self):
        self.k = Keeld("", modules=("serial",))
        self.addCleanup(self.k.close)
        self.pty = Pty(os.path.join(self.k.dir, "ttyP0"))
        self.addCleanup(self.pty.close)
        self.port = free_port()
        self.k.write(serial_section("a", self.pty.link, self.port, self.k.dir,
                                    '  protocol = "%s"\n' % self.protocol))
        self.k.start()
        wait_open(self.k, "a")

    def client(self):
        c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.addCleanup(c.close)
        return c


class Telnet(Bridge):
    protocol = "telnet"

    def test_negotiation_never_reaches_the_device(self):
        c = self.client()
        offers = recv_until(c, tn(IAC, WILL, 1))
        self.assertEqual(offers, tn(IAC, WILL, 0, IAC, DO, 0, IAC, WILL, 3, IAC, DO, 3,
                                    IAC, WILL, 1))
        # NVT (the client did not agree to binary): CR NUL is CR; IAC IAC
        # is one 0xff; an option keel does not do is refused.
        c.sendall(b"ab\r\0cd\r\n" + tn(IAC, IAC, IAC, DO, 24) + b"z")
        self.assertEqual(read_exact(self.pty.master, 9, timeout=5),
                         sha(b"ab\rcd\r\n\xffz"))
        self.assertEqual(recv_until(c, tn(IAC, WONT, 24)), tn(IAC, WONT, 24))
        # Device to client: 0xff doubled, a bare CR sent as CR NUL.
        os.write(self.pty.master, b"x\ry\xff\r\n")
        self.assertEqual(recv_until(c, b"\r\n"), b"x\r\0y\xff\xff\r\n")
        # Binary both ways: bytes as they are, 0xff still doubled.
        c.sendall(tn(IAC, WILL, 0, IAC, DO, 0) + b"\r\0" + tn(IAC, IAC))
        self.assertEqual(read_exact(self.pty.master, 3, timeout=5), sha(b"\r\0\xff"))
        os.write(self.pty.master, b"\r!")
        self.assertEqual(recv_until(c, b"!"), b"\r!")
        st = port_status(self.k, "a")
        self.assertEqual(st["protocol"], "telnet")
        self.assertEqual(st["peers.1.binary_in"], "yes")
        self.assertEqual(st["tx_bytes_total"], 12)


class Rfc2217(Bridge):
    protocol = "rfc2217"

    def url(self):
        return "rfc2217://127.0.0.1:%d" % self.port

    def test_pyserial_settings_data_and_revert(self):
        self.assertEqual(line_of(self.pty.master)[:2], (termios.B9600, False))
        s = serial.serial_for_url(self.url(), baudrate=57600, stopbits=2, timeout=5)
        self.addCleanup(s.close)
        self.assertEqual(line_of(self.pty.master), (termios.B57600, True, termios.CS8))
        s.baudrate = 115200
        self.assertEqual(line_of(self.pty.master)[:2], (termios.B115200, True))
        st = port_status(self.k, "a")
        self.assertEqual(st["speed"], 115200)
        self.assertEqual(st["format"], "8N2")
        self.assertTrue(st["line_set_by"].startswith("127.0.0.1:"), st)
        self.assertEqual(st["controller"], st["line_set_by"])
        # DTR/RTS: a pty has none; acknowledged as asked, and counted.
        s.dtr = False
        s.rts = False
        s.rts = True
        st = port_status(self.k, "a")
        self.assertEqual(st["modem"], "none (no modem lines)")
        self.assertEqual(st["dtr_rts_asked"], "RTS")
        # Counted once per request (2 at open, 3 here), never per look.
        self.assertEqual(st["modem_unsupported_total"], 5)
        # The modem state: a port without lines reports CTS, DSR and DCD.
        self.assertTrue(s.cts)
        self.assertTrue(s.dsr)
        self.assertTrue(s.cd)
        self.assertFalse(s.ri)
        s.send_break(0.05)
        s.reset_input_buffer()
        s.reset_output_buffer()
        # 1 MiB each way, every byte value: 0xff doubled on the wire only.
        n = 1 << 20
        down = bytes(range(256)) * (n // 256)
        up = pattern(n, seed=11)
        t = in_thread(write_all_fd, self.pty.master, down)
        got = bytearray()
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            got += s.read(n - len(got))
        t.join(10)
        self.assertEqual(sha(bytes(got)), sha(down), "device -> client")
        t = in_thread(s.write, up)
        self.assertEqual(read_exact(self.pty.master, n, timeout=60), sha(up), "client -> device")
        t.join(10)
        st = port_status(self.k, "a")
        self.assertEqual(st["rx_bytes_total"], n)
        self.assertEqual(st["tx_bytes_total"], n)
        self.assertEqual(st["net_tx_bytes_total"] > n, True)  # 0xff doubled
        # It leaves: the configured settings come back at once (an RFC
        # 2217 client does not linger with eof-linger: it closed for good).
        s.close()
        wait_for(lambda: line_of(self.pty.master)[:2] == (termios.B9600, False), 1.5, 0.02,
                 what="settings back to 9600 8N1")
        st = port_status(self.k, "a")
        self.assertEqual(st["line_set_by"], "configuration")
        self.assertEqual(st["controller"], "")
        self.assertEqual(st["dtr_rts_asked"], "DTR RTS")

    def test_refused_setting_answered_with_the_device_value(self):
        c = self.client()
        recv_until(c, tn(IAC, DO, 44))
        c.sendall(tn(IAC, WILL, 44))
        recv_until(c, tn(IAC, SB, 44, 107))
        # 7 data bits: a pty keeps CS8, and says so.
        c.sendall(tn(IAC, SB, 44, 2, 7, IAC, SE))
        recv_until(c, tn(IAC, SB, 44, 102, 8, IAC, SE))
        # 1.5 stop bits do not exist on Linux: the current value answers.
        c.sendall(tn(IAC, SB, 44, 4, 3, IAC, SE))
        recv_until(c, tn(IAC, SB, 44, 104, 1, IAC, SE))
        # A speed with 0xff in it: doubled inside the answer.
        c.sendall(tn(IAC, SB, 44, 1, 0, 0, 0x4a, IAC, IAC, IAC, SE))
        recv_until(c, tn(IAC, SB, 44, 101, 0, 0, 0x4a, IAC, IAC, IAC, SE))
        self.assertEqual(line_of(self.pty.master)[0], termios.BOTHER
                         if hasattr(termios, "BOTHER") else 0o010000)
        self.assertEqual(port_status(self.k, "a")["speed"], 0x4aff)

    def test_second_client_cannot_change_what_the_first_set(self):
        a = serial.serial_for_url(self.url(), baudrate=57600, timeout=5)
        self.addCleanup(a.close)
        with self.assertRaises((ValueError, serial.SerialException)):
            serial.serial_for_url(self.url(), baudrate=19200, timeout=5)
        b = serial.serial_for_url(self.url(), baudrate=57600, timeout=5)
        self.addCleanup(b.close)
        self.assertEqual(line_of(self.pty.master)[0], termios.B57600)
        # Both receive the device's data.
        os.write(self.pty.master, b"hello\xff")
        self.assertEqual(a.read(6), b"hello\xff")
        self.assertEqual(b.read(6), b"hello\xff")
        b.close()
        self.assertEqual(line_of(self.pty.master)[0], termios.B57600)
        a.close()
        wait_for(lambda: line_of(self.pty.master)[0] == termios.B9600, 5, 0.05,
                 what="back to 9600")


if __name__ == "__main__":
    main()
