# SPDX-License-Identifier: ISC
"""SIGHUP reload: applied when good, rejected with FILE:LINE when not, and
the old configuration keeps running unchanged."""
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import unittest

from keeltest import HEARTBEAT, KEELD, Keeld, main, wait_for


class Reload(unittest.TestCase):
    def setUp(self):
        self.k = Keeld(HEARTBEAT % ("old message", 0.2))
        self.addCleanup(self.k.close)
        self.k.start()
        self.k.wait_log("heartbeat: a: old message")

    def test_reload_with_another_file_warns_that_the_daemon_reloads_its_own(self):
        other = os.path.join(self.k.dir, "other.conf")
        shutil.copy(self.k.conf, other)
        r = subprocess.run([KEELD, "-f", other, "-M", self.k.moddir, "-s", "reload"],
                           capture_output=True, text=True, timeout=40)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warning: the running daemon loads %s, not %s: it reloads its own file"
                      % (os.path.realpath(self.k.conf), other), r.stderr)
        self.assertIn("reload applied: generation 2 (%s)" % os.path.realpath(self.k.conf), r.stdout)

    def test_reload_reports_the_reload_it_asked_for_not_the_one_in_progress(self):
        """keeld -s reload run while another reload is in its transaction
        waits for a reload that begins after its own signal. The daemon
        says a reload began in STATEFILE.reloading (the state file itself
        is rewritten only after the transaction): without it, -s reload
        reports the reload in progress, which may not have read the file
        as the user just saved it."""
        many = "".join('heartbeat h%d {\n  message = "m"\n  interval = 3600\n}\n' % i
                       for i in range(4000))
        self.k.write(HEARTBEAT % ("old message", 0.2) + many)
        marker = self.k.statefile + ".reloading"
        for attempt in range(3):
            gen = self.k.generation()
            started = int(self.k.state()["reload-started"])
            self.k.kill(signal.SIGHUP)
            wait_for(lambda: ("reload-started: %d\n" % (started + 1)) in self.k.read(marker),
                     10, 0.0005, what="the reload to begin")
            self.k.kill(signal.SIGSTOP)
            in_progress = int(self.k.state()["reload-done"]) == started
            p = subprocess.Popen(self.k.argv("-s", "reload"), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            try:
                # Its SIGHUP waits, pending, while keeld is stopped.
                def hup_pending():
                    for line in self.k.read("/proc/%d/status" % self.k.pid).splitlines():
                        if line.startswith("ShdPnd:"):
                            return int(line.split()[1], 16) & 1
                    return 0
                wait_for(hup_pending, 30, what="-s reload's SIGHUP")
            finally:
                self.k.kill(signal.SIGCONT)
            out, err = p.communicate(timeout=40)
            self.assertEqual(p.returncode, 0, err)
            self.assertIn("reload applied: generation %d " % (gen + 2), out)
            if in_progress:
                break
        self.assertTrue(in_progress, "no reload was stopped in its transaction in 3 tries")
        self.assertEqual(self.k.generation(), gen + 2)

    def test_changed_message_and_interval_are_applied(self):
        self.assertEqual(self.k.generation(), 1)
        self.k.write(HEARTBEAT % ("new message", 0.1))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.assertIn("reload applied: generation 2 (%s)" % os.path.realpath(self.k.conf), out)
        self.assertEqual(err, "")
        self.assertEqual(self.k.generation(), 2)
        mark = len(self.k.log())
        self.k.wait_log("heartbeat: a: new message", after=mark)
        rc, out, _ = self.k.ctl("status")
        self.assertIn("heartbeat.a.interval: 0.1\n", out)
        self.assertIn("last-reload: ok", out)
        # The faster interval is really in force: about 10 beats a second.
        mark = len(self.k.log())
        time.sleep(1.0)
        beats = self.k.log()[mark:].count("heartbeat: a: new message")
        self.assertGreaterEqual(beats, 6)

    def reject(self, body, expect, raw=False, line=True):
        """Write a bad file, reload, and check nothing changed but the error."""
        if raw:
            self.k.write(body, raw=True)
        else:
            self.k.write(body)
        rc, out, err = self.k.ctl("reload")
        self.assertNotEqual(rc, 0, "reload of a bad file succeeded: " + out)
        rx = re.escape(self.k.conf) + (r":\d+: " if line else r"[:\d]*: ") + ".*" + expect
        self.assertRegex(err, rx)
        self.assertEqual(self.k.generation(), 1)
        st = self.k.state()
        self.assertTrue(st["last-reload"].startswith("failed: "), st["last-reload"])
        self.assertRegex(st["last-reload"], expect)
        # The old configuration still runs: the old message keeps coming.
        mark = len(self.k.log())
        self.k.wait_log("heartbeat: a: old message", after=mark)
        self.assertTrue(self.k.alive())
        return err

    def test_syntax_error(self):
        self.reject(HEARTBEAT % ("x", 0.2) + "heartbeat b { message = }\n", "unexpected")

    def test_unknown_option(self):
        self.reject(HEARTBEAT % ("x", 0.2) + "colour = \"blue\"\n", r"no such option 'colour'")

    def test_value_out_of_range(self):
        err = self.reject(HEARTBEAT % ("x", -3), r"interval -3 is out of range")
        self.assertIn(self.k.conf + ":9:", err)

    def test_core_value_out_of_range(self):
        self.reject(HEARTBEAT % ("x", 0.2) + "shutdown-timeout = 0\n", r"shutdown-timeout 0 is out of range")

    def test_file_truncated_in_a_section(self):
        err = self.reject(HEARTBEAT % ("x", 0.2) + "heartbeat b {\n  message = \"y\"\n", r"section 'heartbeat' is not closed")
        self.assertIn(self.k.conf + ":11:", err)

    def test_missing_include(self):
        self.reject(HEARTBEAT % ("x", 0.2) + 'include("nowhere.conf")\n', r"nowhere.conf.*No such file")

    def test_duplicate_section_title(self):
        self.reject(HEARTBEAT % ("x", 0.2) + HEARTBEAT % ("y", 0.3), r"heartbeat 'a' is defined twice \(first at .*:7\)")

    def test_section_of_a_module_not_loaded(self):
        self.k.write(HEARTBEAT % ("x", 0.2), modules=())
        rc, out, err = self.k.ctl("reload")
        self.assertNotEqual(rc, 0)
        self.assertIn(self.k.conf + ":7: section 'heartbeat' belongs to module 'heartbeat', which is not in load", err)
        self.assertEqual(self.k.generation(), 1)
        mark = len(self.k.log())
        self.k.wait_log("heartbeat: a: old message", after=mark)

    def test_unknown_module_in_load(self):
        self.k.write(HEARTBEAT % ("x", 0.2), modules=("heartbeat", "nosuch"))
        rc, out, err = self.k.ctl("reload")
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, re.escape(self.k.conf) + r":6: load: no module 'nosuch'")
        self.assertEqual(self.k.generation(), 1)

    def test_directory_as_config(self):
        os.rename(self.k.conf, self.k.conf + ".saved")
        os.mkdir(self.k.conf)
        self.k.kill(signal.SIGHUP)
        wait_for(lambda: self.k.state().get("reload-done") == "1", what="reload done")
        self.assertIn(self.k.conf + ": is a directory", self.k.state()["last-reload"])
        self.k.wait_log("error: " + re.escape(self.k.conf) + ": is a directory")
        self.assertEqual(self.k.generation(), 1)
        self.assertTrue(self.k.alive())

    def test_effective_configuration_parses_to_itself(self):
        # -T prints includes expanded and defaults filled in, as a file that
        # gives the same values back.
        with open(os.path.join(self.k.dir, "more.conf"), "w") as f:
            f.write('heartbeat "b.2" {\n  interval = 500ms\n  message = "say \\"hi\\""\n}\n')
        self.k.write(HEARTBEAT % ("tab\\there", 0.2) + 'include("more.conf")\n')
        r = subprocess.run(self.k.argv("-T"), capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('heartbeat "a" {\n  message = "tab\\there"\n  interval = 0.2\n}\n', r.stdout)
        self.assertIn('heartbeat "b.2" {\n  message = "say \\"hi\\""\n  interval = 0.5\n}\n', r.stdout)
        self.assertIn('shutdown-timeout = 5\n', r.stdout)
        self.assertIn('load = { "heartbeat" }\n', r.stdout)
        again = os.path.join(self.k.dir, "effective.conf")
        with open(again, "w") as f:
            f.write(r.stdout)
        r2 = subprocess.run([a if a != self.k.conf else again for a in self.k.argv("-T")],
                            capture_output=True, text=True, timeout=20)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        strip = lambda t: [l for l in t.splitlines() if not l.startswith("#")]
        self.assertEqual(strip(r2.stdout), strip(r.stdout))

    def test_line_numbers_are_exact_after_comments(self):
        # libconfuse 3.3 alone reports line 14 here (+2 per line comment,
        # +1 per block comment); keel hands it the text without comments.
        inc = os.path.join(self.k.dir, "commented.conf")
        with open(inc, "w") as f:
            f.write("# one\n// two\n/* three\n */\nheartbeat z {\n  interval = 0 # no\n}\n")
        self.k.write(HEARTBEAT % ("x", 0.2) + "# a comment\n// another\n/* a\n block */\n"
                     'include("commented.conf")\n')
        rc, out, err = self.k.check()
        self.assertNotEqual(rc, 0)
        self.assertIn(inc + ":6: heartbeat 'z': interval 0 is out of range", err)
        with open(inc, "w") as f:
            f.write("# fine now\n")
        self.k.write(HEARTBEAT % ("x", 0.2) + "# a comment\n// another\n/* a\n block */\n"
                     'include("commented.conf")\nwrong = 1\n')
        rc, out, err = self.k.check()
        self.assertIn(self.k.conf + ":16: no such option 'wrong'", err)

    def test_good_include_relative_to_the_file(self):
        with open(os.path.join(self.k.dir, "beats.conf"), "w") as f:
            f.write(HEARTBEAT.replace("heartbeat a", "heartbeat inc") % ("included", 0.2))
        self.k.write(HEARTBEAT % ("old message", 0.2) + 'include("beats.conf")\n')
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.k.wait_log("heartbeat: inc: included")

    def test_error_in_an_include_names_the_included_file(self):
        inc = os.path.join(self.k.dir, "bad.conf")
        with open(inc, "w") as f:
            f.write("\n\nheartbeat z {\n  interval = 0\n}\n")
        self.k.write(HEARTBEAT % ("x", 0.2) + 'include("bad.conf")\n')
        rc, out, err = self.k.ctl("reload")
        self.assertNotEqual(rc, 0)
        self.assertIn(inc + ":4: heartbeat 'z': interval 0 is out of range (0.001 to 86400)", err)

    def test_rejected_includes_leave_nothing_behind(self):
        # libconfuse keeps its include stack and lexer buffers after an
        # error inside an included file: after ten such reloads every
        # include used to fail ("includes nested too deeply").
        inc = os.path.join(self.k.dir, "inc.conf")
        bad = ['heartbeat b {\n  message = "B"\n  bogus = 1\n}\n',
               'heartbeat a {\n  message = "dup"\n}\n',
               'heartbeat b {\n  = 3\n}\n',
               'include("inc.conf")\n']
        self.k.write(HEARTBEAT % ("old message", 0.2) + 'include("inc.conf")\n')
        for n in range(12):
            with open(inc, "w") as f:
                f.write(bad[n % len(bad)])
            rc, out, err = self.k.ctl("reload")
            self.assertNotEqual(rc, 0)
            self.assertNotIn("nested too deeply", err if n % 4 != 3 else "")
        with open(inc, "w") as f:
            f.write('heartbeat b {\n  message = "from the include"\n  interval = 0.1\n}\n')
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.k.wait_log("heartbeat: b: from the include")
        # -t says the same as the daemon, and the daemon still runs.
        self.assertEqual(self.k.check()[0], 0)
        self.assertTrue(self.k.alive())

    def test_conf_d_file_is_read_by_the_next_sighup(self):
        # include("conf.d/*.conf"): an empty directory is fine; a file
        # dropped there is read by the next SIGHUP (and -t, -T); one with
        # an error rejects the reload with its own FILE:LINE, and the
        # daemon keeps running what it ran.
        confd = os.path.join(self.k.dir, "conf.d")
        os.mkdir(confd)
        self.k.write(HEARTBEAT % ("old message", 0.2) + 'include("conf.d/*.conf")\n')
        self.k.kill(signal.SIGHUP)
        wait_for(lambda: self.k.generation() == 2, 10, what="reload with an empty conf.d")
        self.assertEqual(self.k.state()["last-reload"], "ok")
        with open(os.path.join(confd, "b.conf"), "w") as f:
            f.write(HEARTBEAT.replace("heartbeat a", "heartbeat b") % ("from conf.d", 0.1))
        mark = len(self.k.log())
        self.k.kill(signal.SIGHUP)
        wait_for(lambda: self.k.generation() == 3, 10, what="reload with conf.d/b.conf")
        self.k.wait_log("heartbeat: b: from conf.d", after=mark)
        r = subprocess.run(self.k.argv("-T"), capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('heartbeat "b" {\n  message = "from conf.d"\n', r.stdout)
        bad = os.path.join(confd, "x.conf")
        with open(bad, "w") as f:
            f.write("# added by hand\n\nheartbeat x {\n  interval = 0\n}\n")
        done = int(self.k.state()["reload-done"])
        self.k.kill(signal.SIGHUP)
        wait_for(lambda: int(self.k.state().get("reload-done", "0")) > done, 10,
                 what="rejected reload")
        st = self.k.state()
        self.assertEqual(st["last-reload"],
                         "failed: %s:4: heartbeat 'x': interval 0 is out of range "
                         "(0.001 to 86400)" % bad)
        self.assertEqual(self.k.generation(), 3)
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 1)
        self.assertIn("conf.d/x.conf:4: heartbeat 'x'", err)
        rc, out, err = self.k.check()
        self.assertNotEqual(rc, 0)
        self.assertIn(bad + ":4: ", err)
        mark = len(self.k.log())
        self.k.wait_log("heartbeat: b: from conf.d", after=mark)
        self.k.wait_log("heartbeat: a: old message", after=mark)
        self.assertTrue(self.k.alive())
        # Removed again: the next reload applies, without b.
        os.unlink(bad)
        os.unlink(os.path.join(confd, "b.conf"))
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("heartbeat.b.", self.k.ctl("status")[1])

    def test_empty_file_is_refused_on_reload(self):
        # A truncated write would otherwise stop every module.
        # (A file without pidfile and state-file cannot even be used by -s
        # to find the daemon: SIGHUP it is, as an editor's save would be.)
        for n, text in enumerate(("", "\n  \n", "# all commented out\n// too\n/* and */\n")):
            self.k.write(text, raw=True)
            mark = len(self.k.log())
            self.k.kill(signal.SIGHUP)
            self.k.wait_log(re.escape(self.k.conf) + ": the file is empty \\(only blanks or "
                            "comments\\): refused on reload; to stop every module, "
                            "write load = \\{\\}", after=mark)
            wait_for(lambda: self.k.state().get("reload-done") == str(n + 1), what="done")
            self.assertEqual(self.k.generation(), 1)
            self.k.wait_log("heartbeat: a: old message", after=mark)
        # Stopping everything on purpose is said so.
        self.k.write("load = {}\n")
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.assertIn("modules: \n", self.k.ctl("status")[1])

    def test_removed_and_added_sections(self):
        self.k.write(HEARTBEAT.replace("heartbeat a", "heartbeat b") % ("from b", 0.2))
        self.assertEqual(self.k.ctl("reload")[0], 0)
        mark = len(self.k.log())
        self.k.wait_log("heartbeat: b: from b", after=mark)
        time.sleep(0.5)
        self.assertNotIn("heartbeat: a:", self.k.log()[mark:])
        rc, out, _ = self.k.ctl("status")
        self.assertNotIn("heartbeat.a.", out)

    def test_module_removed_from_load_and_back(self):
        self.k.write("", modules=())
        self.assertEqual(self.k.ctl("reload")[0], 0)
        mark = len(self.k.log())
        time.sleep(0.5)
        self.assertNotIn("heartbeat: a:", self.k.log()[mark:])
        self.assertEqual(self.k.state()["modules"], "")
        self.k.write(HEARTBEAT % ("back", 0.2))
        self.assertEqual(self.k.ctl("reload")[0], 0)
        self.k.wait_log("heartbeat: a: back", after=mark)
        self.assertEqual(self.k.generation(), 3)

    def test_state_file_moves_with_the_configuration(self):
        self.assertEqual(self.k.state()["last-reload"], "ok")
        moved = os.path.join(self.k.dir, "state.moved")
        self.k.write(HEARTBEAT % ("old message", 0.2) + 'state-file = "%s"\n' % moved)
        rc, out, err = self.k.ctl("reload")
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(moved))
        self.assertFalse(os.path.exists(self.k.statefile))
        self.k.statefile = moved
        self.assertEqual(self.k.generation(), 2)
        rc, out, err = self.k.ctl("status")
        self.assertEqual(rc, 0, err)

    def test_burst_of_1000_sighups(self):
        for _ in range(999):
            os.kill(self.k.pid, signal.SIGHUP)
        self.k.write(HEARTBEAT % ("the latest", 0.2))
        os.kill(self.k.pid, signal.SIGHUP)
        mark = len(self.k.log())
        self.k.wait_log("heartbeat: a: the latest", timeout=20, after=mark)
        # Wait for the burst to settle, then count reloads.
        def settled():
            a = self.k.state().get("reload-done")
            time.sleep(0.3)
            return a == self.k.state().get("reload-done")
        wait_for(settled, 10)
        st = self.k.state()
        reloads = int(st["reload-done"])
        self.assertTrue(self.k.alive())
        self.assertGreaterEqual(reloads, 1)
        self.assertLess(reloads, 100, "a burst of 1000 SIGHUPs ran %d reloads" % reloads)
        self.assertEqual(st["reload-started"], st["reload-done"])
        self.assertEqual(self.k.ctl("status")[0], 0)
        print("1000 SIGHUPs -> %d reloads" % reloads)

    def test_check_mode_validates_without_touching_the_daemon(self):
        rc, out, err = self.k.check()
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out)
        self.k.write(HEARTBEAT % ("x", 0.2) + "bogus = 1\n")
        rc, out, err = self.k.check()
        self.assertNotEqual(rc, 0)
        self.assertIn(self.k.conf + ":11: no such option 'bogus'", err)
        self.assertEqual(self.k.generation(), 1)
        self.assertEqual(self.k.state()["reload-done"], "0")


class UnreadableConfig(unittest.TestCase):
    """As root every file is readable: drop to nobody, then make it unreadable."""

    def test_unreadable_file_is_rejected(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to drop privileges")
        nobody = pwd.getpwnam("nobody")
        k = Keeld(HEARTBEAT % ("old message", 0.2) + 'user = "nobody"\n')
        self.addCleanup(k.close)
        os.chown(k.dir, nobody.pw_uid, nobody.pw_gid)
        k.start()
        k.wait_log("heartbeat: a: old message")
        os.chmod(k.conf, 0)
        rc, out, err = k.ctl("reload")
        self.assertNotEqual(rc, 0)
        self.assertIn(k.conf + ": cannot open: Permission denied", err)
        self.assertEqual(k.generation(), 1)
        mark = len(k.log())
        k.wait_log("heartbeat: a: old message", after=mark)


if __name__ == "__main__":
    main()
