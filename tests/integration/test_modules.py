# SPDX-License-Identifier: ISC
"""Module loading: what keeld refuses, and with which message."""
import os
import shutil
import subprocess
import unittest

from keeltest import HEARTBEAT, Keeld, main


class Modules(unittest.TestCase):
    def start_fails(self, k, expect):
        r = subprocess.run(k.argv("-n"), capture_output=True, text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(expect, r.stderr)
        rc, out, err = k.check()
        self.assertNotEqual(rc, 0)
        self.assertIn(expect, err)
        return r.stderr

    def test_the_keel_serial_3_example_runs(self):
        # tests/modules/tap.c is the example of keel-serial(3), verbatim.
        with Keeld("", modules=("sim", "tap"), extra_modules=("tap",)) as k:
            link = os.path.join(k.dir, "gps")
            k.write('sim gps {\n  link = "%s"\n  mode = "nmea"\n  rate = 20\n}\n'
                    'tap {\n  device = "%s"\n  speed = 9600\n}\n' % (link, link))
            k.start()
            k.wait_log(r"tap: \$GPGGA,")
            rc, out, err = k.ctl("status")
            self.assertIn("tap.state: open\n", out)
            # A new speed is applied in place: no second open.
            k.write(k.read(k.conf).replace("speed = 9600", "speed = 4800"), raw=True)
            mark = len(k.log())
            rc, out, err = k.ctl("reload")
            self.assertEqual(rc, 0, err)
            k.wait_log(r"tap: \$GPGGA,", after=mark)
            self.assertNotIn("open (", k.log()[mark:])
            self.assertIn("now 4800 8N1 (applied in place)", k.log()[mark:])

    def test_wrong_abi_is_refused_naming_the_file(self):
        with Keeld("", modules=("badabi",), extra_modules=("badabi",)) as k:
            err = self.start_fails(k, "module 'badabi' cannot be used: %s/badabi.so: built for module ABI 1, this keeld supports ABI 2" % k.moddir)
            self.assertIn(k.conf + ":6: load:", err)

    def test_missing_descriptor(self):
        with Keeld("", modules=("nodesc",), extra_modules=("nodesc",)) as k:
            self.start_fails(k, "%s/nodesc.so: no symbol keel_module_descriptor" % k.moddir)

    def test_corrupt_module(self):
        with Keeld("", modules=("corrupt",)) as k:
            with open(os.path.join(k.moddir, "corrupt.so"), "wb") as f:
                f.write(b"\x7fELF this is not a shared object" * 10)
            self.start_fails(k, "%s/corrupt.so: cannot load:" % k.moddir)

    def test_group_writable_module_is_refused(self):
        with Keeld(HEARTBEAT % ("x", 1)) as k:
            os.chmod(os.path.join(k.moddir, "heartbeat.so"), 0o775)
            self.start_fails(k, "heartbeat.so is writable by its group (mode 0775)")

    def test_world_writable_module_directory_is_refused(self):
        with Keeld(HEARTBEAT % ("x", 1)) as k:
            os.chmod(k.moddir, 0o777)
            self.start_fails(k, "is writable by others (mode 0777)")

    def test_module_owned_by_someone_else_is_refused(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to chown")
        with Keeld(HEARTBEAT % ("x", 1)) as k:
            os.chown(os.path.join(k.moddir, "heartbeat.so"), 65534, 65534)
            self.start_fails(k, "is owned by uid 65534")

    def test_broken_module_not_in_load_does_not_matter(self):
        with Keeld(HEARTBEAT % ("fine", 0.2), extra_modules=("badabi", "nodesc")) as k:
            k.start()
            k.wait_log("heartbeat: a: fine")
            self.assertEqual(k.ctl("status")[0], 0)

    def test_unknown_module(self):
        with Keeld("", modules=("ghost",)) as k:
            self.start_fails(k, "load: no module 'ghost' in %s" % k.moddir)

    def test_module_path_missing(self):
        with Keeld(HEARTBEAT % ("x", 1)) as k:
            shutil.rmtree(k.moddir)
            self.start_fails(k, "no such option 'heartbeat'" if False else "load: no module 'heartbeat'")


if __name__ == "__main__":
    main()
