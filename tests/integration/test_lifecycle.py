# SPDX-License-Identifier: ISC
"""Start-up, instances, pidfile, daemon mode, stop and drain, privileges."""
import os
import pwd
import signal
import subprocess
import time
import unittest

from keeltest import HEARTBEAT, KEELD, Keeld, main, pid_alive, wait_for

SLOWOPEN = os.environ.get("KEEL_SLOWOPEN", "build/tests/slowopen.so")


class Instances(unittest.TestCase):
    def test_second_instance_is_refused_and_the_first_untouched(self):
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            k.start()
            before = k.read(k.pidfile)
            r = subprocess.run(k.argv("-n"), capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("another keeld is running (pid %d" % k.pid, r.stderr)
            self.assertEqual(k.read(k.pidfile), before)
            self.assertTrue(k.alive())
            rc, out, _ = k.ctl("status")
            self.assertEqual(rc, 0)
            self.assertIn("pid: %d" % k.pid, out)
            # Daemon mode is refused the same way, before forking.
            r = subprocess.run(k.argv(), capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("another keeld is running", r.stderr)
            self.assertEqual(k.read(k.pidfile), before)

    def test_stale_pidfile_is_taken_over(self):
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            dead = subprocess.Popen(["true"])
            dead.wait()
            with open(k.pidfile, "w") as f:
                f.write("%d\n" % dead.pid)
            k.start()
            self.assertEqual(int(k.read(k.pidfile)), k.pid)

    def test_pidfile_symlink_is_refused(self):
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            target = os.path.join(k.dir, "victim")
            with open(target, "w") as f:
                f.write("precious\n")
            os.symlink(target, k.pidfile)
            r = subprocess.run(k.argv("-n"), capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("is a symbolic link", r.stderr)
            self.assertEqual(k.read(target), "precious\n")

    def test_log_file_symlink_is_refused(self):
        # The packaged log directory is writable by the service user, who
        # could plant keeld.log -> /any/file for root keeld to append to.
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            target = os.path.join(k.dir, "victim")
            with open(target, "w") as f:
                f.write("precious\n")
            os.symlink(target, k.logfile)
            r = subprocess.run(k.argv("-n"), capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("log: cannot open %s: it is a symbolic link: refused"
                          % k.logfile, r.stderr)
            self.assertEqual(k.read(target), "precious\n")
            # -t says the same, without touching anything.
            rc, out, err = k.check()
            self.assertNotEqual(rc, 0)
            self.assertIn("log: cannot open %s: it is a symbolic link: refused" % k.logfile, err)
            # A hard link to another file is refused too.
            os.unlink(k.logfile)
            os.link(target, k.logfile)
            r = subprocess.run(k.argv("-n"), capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("it has other names (hard links): refused", r.stderr)
            self.assertEqual(k.read(target), "precious\n")

    def test_log_directory_writable_by_anyone_is_refused(self):
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            d = os.path.join(k.dir, "open")
            os.mkdir(d)
            os.chmod(d, 0o777)
            k.logfile = os.path.join(d, "keeld.log")
            k.write(HEARTBEAT % ("one", 0.2))
            r = subprocess.run(k.argv("-n"), capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("its directory %s is writable by anyone (mode 0777, no sticky bit)" % d,
                          r.stderr)
            self.assertFalse(os.path.exists(k.logfile))
            # With the sticky bit (as /tmp) others cannot replace the file.
            os.chmod(d, 0o1777)
            k.start()
            k.wait_log("heartbeat: a: one")

    def test_configuration_writable_by_others_is_warned_about(self):
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            os.chmod(k.conf, 0o666)
            rc, out, err = k.check()
            self.assertEqual(rc, 0, err)
            self.assertIn("configuration %s is writable by anyone (mode 0666)" % k.conf, err)
            os.chmod(k.conf, 0o644)
            os.chmod(k.dir, 0o775)
            rc, out, err = k.check()
            self.assertIn("the directory of the configuration, %s, is writable by its group"
                          % k.dir, err)
            os.chmod(k.dir, 0o755)
            rc, out, err = k.check()
            self.assertNotIn("writable", err)

    def test_full_disk_for_the_log_keeps_serving(self):
        # The log on a 64 KiB tmpfs that fills up: keeld goes on serving
        # and answering control; lines that do not fit are dropped.
        with Keeld(HEARTBEAT % ("x" * 200, 0.005)) as k:
            d = os.path.join(k.dir, "small")
            os.mkdir(d)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
                               capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                self.skipTest("cannot mount a tmpfs here: " + r.stderr.strip())
            self.addCleanup(subprocess.run, ["umount", "-l", d], timeout=10)
            k.logfile = os.path.join(d, "keeld.log")
            k.write(HEARTBEAT % ("x" * 200, 0.005))
            k.start()
            wait_for(lambda: os.statvfs(d).f_bavail == 0, 20, 0.05, what="the log's disk full")
            time.sleep(0.5)
            self.assertTrue(k.alive())
            rc, out, err = k.ctl("status")
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"heartbeat\.a\.beats_total: [1-9]")
            k.write(HEARTBEAT % ("y", 0.005))
            rc, out, err = k.ctl("reload")
            self.assertEqual(rc, 0, err)
            k.kill(signal.SIGUSR1)
            rc, out, err = k.ctl("stop")
            self.assertEqual(rc, 0, err)

    def test_relative_pidfile_is_made_absolute(self):
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            r = subprocess.run(k.argv("-p", "rel.pid"), capture_output=True, text=True,
                               timeout=10, cwd=k.dir)
            self.assertEqual(r.returncode, 0, r.stderr)
            pid = int(k.read(os.path.join(k.dir, "rel.pid")))
            k.pid = pid
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not os.path.exists(os.path.join(k.dir, "rel.pid")), 5)

    def test_pidfile_directory_missing(self):
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            r = subprocess.run(k.argv("-n", "-p", "/nonexistent-dir/keeld.pid"),
                               capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("cannot open pidfile /nonexistent-dir/keeld.pid: No such file or directory", r.stderr)


class Stop(unittest.TestCase):
    def test_sigterm_exits_0_within_shutdown_timeout(self):
        with Keeld(HEARTBEAT % ("one", 0.2)) as k:
            k.start()
            t0 = time.monotonic()
            k.kill(signal.SIGTERM)
            self.assertEqual(k.wait_exit(5), 0)
            self.assertLess(time.monotonic() - t0, 5)
            self.assertFalse(os.path.exists(k.pidfile))
            self.assertFalse(os.path.exists(k.statefile))
            self.assertIn("keeld stopped", k.log())

    def test_slow_drain_is_cut_at_shutdown_timeout(self):
        with Keeld("slowstop {\n  delay = 30\n}\n", modules=("slowstop",), extra_modules=("slowstop",)) as k:
            k.write(k.text("slowstop {\n  delay = 30\n}\n").replace("shutdown-timeout = 5", "shutdown-timeout = 1"))
            k.start()
            t0 = time.monotonic()
            k.kill(signal.SIGTERM)
            k.wait_log("slowstop: draining for 30s")
            self.assertEqual(k.wait_exit(10), 0)
            took = time.monotonic() - t0
            self.assertGreater(took, 0.8)
            self.assertLess(took, 5)
            self.assertIn("shutdown-timeout (1s) expired", k.log())
            self.assertFalse(os.path.exists(k.pidfile))

    def test_drain_that_finishes_in_time(self):
        with Keeld("slowstop {\n  delay = 0.5\n}\n", modules=("slowstop",), extra_modules=("slowstop",)) as k:
            k.start()
            k.kill(signal.SIGTERM)
            self.assertEqual(k.wait_exit(10), 0)
            self.assertIn("every module has drained", k.log())

    def test_second_sigterm_during_a_slow_drain_stops_at_once(self):
        with Keeld("slowstop {\n  delay = 30\n}\n", modules=("slowstop",), extra_modules=("slowstop",)) as k:
            k.start()
            k.kill(signal.SIGTERM)
            k.wait_log("slowstop: draining for 30s")
            time.sleep(0.3)
            self.assertTrue(k.alive(), "keeld should still be draining")
            t0 = time.monotonic()
            k.kill(signal.SIGTERM)
            self.assertEqual(k.wait_exit(3), 0)
            self.assertLess(time.monotonic() - t0, 2)
            self.assertIn("received SIGTERM again: stopping now", k.log())

    def test_sighup_while_stopping_does_not_reload(self):
        with Keeld("slowstop {\n  delay = 1\n}\n", modules=("slowstop",), extra_modules=("slowstop",)) as k:
            k.start()
            k.kill(signal.SIGTERM)
            k.wait_log("draining")
            k.kill(signal.SIGHUP)
            self.assertEqual(k.wait_exit(10), 0)
            self.assertIn("received SIGHUP: stopping, not reloading", k.log())

    def test_keeld_s_stop_waits_for_the_exit(self):
        with Keeld("slowstop {\n  delay = 0.7\n}\n", modules=("slowstop",), extra_modules=("slowstop",)) as k:
            k.start()
            t0 = time.monotonic()
            rc, out, err = k.ctl("stop")
            self.assertEqual(rc, 0, err)
            self.assertGreater(time.monotonic() - t0, 0.6)
            self.assertFalse(k.alive())
            self.assertEqual(k.wait_exit(), 0)
            rc, out, err = k.ctl("status")
            self.assertNotEqual(rc, 0)
            self.assertIn("keeld is not running", err)


    @unittest.skipUnless(os.path.exists(SLOWOPEN), "slowopen shim not built")
    def test_keeld_s_stop_waits_until_the_process_is_gone(self):
        # keeld releases its pidfile lock before its last steps (exit
        # handlers; LeakSanitizer's check takes up to a second): -s stop
        # returned then, with the process still there, and a restart by a
        # script or a service manager could race it.
        env = {"LD_PRELOAD": os.path.abspath(SLOWOPEN), "KEEL_SLOWEXIT_MS": "700"}
        if os.environ.get("KEEL_SANITIZE") == "ON":
            env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "")
                                   + ":verify_asan_link_order=0").lstrip(":")
        with Keeld(HEARTBEAT % ("a", 1)) as k:
            k.start(env=env)
            t0 = time.monotonic()
            rc, out, err = k.ctl("stop")
            self.assertEqual(rc, 0, err)
            self.assertGreater(time.monotonic() - t0, 0.6)
            self.assertFalse(k.alive(), "keeld -s stop returned with the process still there")
            self.assertEqual(k.wait_exit(), 0)


class DaemonMode(unittest.TestCase):
    def test_good_configuration_parent_exits_0_when_ready(self):
        with Keeld(HEARTBEAT % ("daemon", 0.2)) as k:
            r = subprocess.run(k.argv(), capture_output=True, text=True, timeout=20)
            self.assertEqual(r.returncode, 0, r.stderr)
            # Ready means: pidfile written, state file written, before exit.
            pid = int(k.read(k.pidfile))
            self.assertNotEqual(pid, os.getpid())
            k.pid = pid
            self.assertTrue(pid_alive(pid))
            self.assertEqual(k.state().get("pid"), str(pid))
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().split(")")[-1].split()
            self.assertEqual(fields[1], "1", "the daemon is reparented to init")
            k.wait_log("heartbeat: a: daemon")
            rc, out, err = k.ctl("stop")
            self.assertEqual(rc, 0, err)
            self.assertFalse(pid_alive(pid))

    def test_bad_configuration_parent_exits_non_zero_with_the_reason(self):
        with Keeld(HEARTBEAT % ("daemon", 0.2) + "oops = 1\n") as k:
            r = subprocess.run(k.argv(), capture_output=True, text=True, timeout=20)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(k.conf + ":11: no such option 'oops'", r.stderr)
            self.assertFalse(os.path.exists(k.pidfile) and k.read(k.pidfile).strip())

    def test_failure_after_the_fork_is_reported_by_the_parent(self):
        # The user is looked up after forking, when dropping privileges.
        with Keeld(HEARTBEAT % ("daemon", 0.2) + 'user = "no-such-user-keel"\n') as k:
            r = subprocess.run(k.argv(), capture_output=True, text=True, timeout=20)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("user 'no-such-user-keel' does not exist", r.stderr)
            time.sleep(0.2)
            self.assertEqual(k.ctl("status")[0], 1)


class Privileges(unittest.TestCase):
    def test_drop_to_user_and_group_with_supplementary_groups(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        nobody = pwd.getpwnam("nobody")
        with Keeld(HEARTBEAT % ("dropped", 0.2) + 'user = "nobody"\ngroup = "nogroup"\n') as k:
            os.chown(k.dir, nobody.pw_uid, nobody.pw_gid)
            # Start with supplementary groups root, adm, sudo: all must go.
            k.proc = subprocess.Popen(["setpriv", "--groups", "0,4,27"] + k.argv("-n"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            k.pid = k.proc.pid
            k.wait_ready()
            status = {}
            with open("/proc/%d/status" % k.pid) as f:
                for line in f:
                    key, _, v = line.partition(":")
                    status[key] = v.split()
            self.assertEqual(status["Uid"], [str(nobody.pw_uid)] * 4)
            self.assertEqual(status["Gid"][0], status["Gid"][1])
            self.assertNotIn("0", status["Groups"])
            self.assertNotIn("27", status["Groups"])
            self.assertEqual(int(status["CapEff"][0], 16), 0)
            self.assertEqual(status["NoNewPrivs"], ["1"])
            k.wait_log("heartbeat: a: dropped")
            # A reload works as the unprivileged user, and the stop is clean.
            k.write(HEARTBEAT % ("dropped again", 0.2) + 'user = "nobody"\ngroup = "nogroup"\n')
            self.assertEqual(k.ctl("reload")[0], 0)
            k.kill(signal.SIGTERM)
            self.assertEqual(k.wait_exit(5), 0)


class CommandLine(unittest.TestCase):
    def run_keeld(self, *args):
        return subprocess.run([KEELD] + list(args), capture_output=True, text=True, timeout=10)

    def test_unknown_option(self):
        r = self.run_keeld("--bogus")
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: keeld", r.stderr)

    def test_missing_config(self):
        r = self.run_keeld("-n", "-f", "/nonexistent/keeld.conf")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/keeld.conf: cannot open: No such file or directory", r.stderr)

    def test_directory_as_config(self):
        r = self.run_keeld("-t", "-f", "/tmp")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/tmp: is a directory", r.stderr)

    def test_unknown_control_command(self):
        r = self.run_keeld("-s", "explode", "-f", "/dev/null")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'explode'", r.stderr)

    def test_version_and_help(self):
        r = self.run_keeld("-V")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"keeld \d+\.\d+\.\d+ \(keel \d+\.\d+\.\d+, module ABI 2\)")
        r = self.run_keeld("--help")
        self.assertEqual(r.returncode, 0)
        for opt in ("--config", "--foreground", "--test", "--signal", "--pidfile", "--module-path", "--debug"):
            self.assertIn(opt, r.stdout)

    def test_control_without_a_daemon(self):
        with Keeld(HEARTBEAT % ("x", 1)) as k:
            rc, out, err = k.ctl("reload")
            self.assertEqual(rc, 1)
            self.assertIn("keeld is not running", err)


if __name__ == "__main__":
    main()
