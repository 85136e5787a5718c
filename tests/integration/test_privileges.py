# SPDX-License-Identifier: ISC
"""keeld started as root with `user`/`group`: what /proc shows after the
drop, and the log, state file and pidfile in a directory the service user
may write (the packaged layout: /var/log/keel, /run/keel), where that user
plants symbolic and hard links to a root-owned file before the start and
while keeld runs. The victim must never change.

Needs root (as in CI); the service user is `nobody`, the group `nogroup` or
`dialout` (both exist on Debian). Hard links to a root-owned file are made
by the test itself: fs.protected_hardlinks stops the user from making them,
the check in keeld must not depend on that sysctl.
"""
import grp
import os
import pwd
import re
import signal
import stat
import subprocess
import time
import unittest

from keeltest import HEARTBEAT, Keeld, main, wait_for

# Started with root's group and adm, sudo as supplementary groups and an
# inheritable capability: the drop must leave none of them.
SETPRIV = ["setpriv", "--groups", "0,4,27", "--inh-caps", "+net_bind_service"]


def proc_status(pid):
    """/proc/PID/status as {key: [fields]}."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, v = line.partition(":")
            out[key] = v.split()
    return out


def as_user(uid, gid, fn, *args):
    """Run fn(*args) in a child that is uid/gid only (the service user)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            fn(*args)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError("%s%r failed as uid %d" % (fn.__name__, args, uid))


def snapshot(path):
    st = os.lstat(path)
    with open(path, "rb") as f:
        return (f.read(), st.st_size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class Base(unittest.TestCase):
    group = "nogroup"

    def setUp(self):
        self.pw = pwd.getpwnam("nobody")
        self.gid = grp.getgrnam(self.group).gr_gid
        # The configuration and modules stay root's; the runtime directory
        # (log, state file, pidfile) belongs to the service user.
        self.k = Keeld()
        self.addCleanup(self.k.close)
        self.run_dir = os.path.join(self.k.dir, "run")
        os.mkdir(self.run_dir, 0o755)
        os.chown(self.run_dir, self.pw.pw_uid, self.gid)
        self.k.pidfile = os.path.join(self.run_dir, "keeld.pid")
        self.k.statefile = os.path.join(self.run_dir, "state")
        self.k.logfile = os.path.join(self.run_dir, "keeld.log")
        self.body = (HEARTBEAT % ("tick", 0.2)
                     + 'user = "nobody"\ngroup = "%s"\n' % self.group)
        self.k.write(self.body)
        # A root-only file the user must not be able to touch through keeld.
        self.victim = os.path.join(self.k.dir, "victim")
        with open(self.victim, "w") as f:
            f.write("secret: root only\n")
        os.chmod(self.victim, 0o600)
        self.before = snapshot(self.victim)

    def tearDown(self):
        self.assertEqual(snapshot(self.victim), self.before, "the victim file changed")

    def start(self):
        self.k.start(prefix=SETPRIV)
        return self.k

    def plant_symlink(self, name):
        """The service user replaces NAME in the runtime directory by a link."""
        path = os.path.join(self.run_dir, name)

        def plant():
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(self.victim, path)
        as_user(self.pw.pw_uid, self.gid, plant)
        return path

    def plant_hardlink(self, name):
        path = os.path.join(self.run_dir, name)
        if os.path.lexists(path):
            os.unlink(path)
        os.link(self.victim, path)
        return path

    def start_refused(self, message):
        r = subprocess.run(SETPRIV + self.k.argv("-n"), capture_output=True, text=True,
                           timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(message, r.stderr)


class Dropped(Base):
    group = "dialout"

    def test_proc_shows_only_the_target_ids_and_no_capability(self):
        k = self.start()
        st = proc_status(k.pid)
        self.assertEqual(st["Uid"], [str(self.pw.pw_uid)] * 4)
        self.assertEqual(st["Gid"], [str(self.gid)] * 4)
        # initgroups(user, group): the group and the user's memberships.
        want = sorted(set(os.getgrouplist("nobody", self.gid)))
        self.assertEqual(sorted(int(g) for g in st["Groups"]), want)
        self.assertNotIn(0, want)
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
            self.assertEqual(int(st[cap][0], 16), 0, "%s %s" % (cap, st[cap][0]))
        self.assertEqual(st["NoNewPrivs"], ["1"])
        k.wait_log(r"running as uid %d gid %d" % (self.pw.pw_uid, self.gid))

        # It still works as the user: reload, status, reopen, stop.
        k.write(self.body.replace("tick", "tock"))
        rc, out, err = k.ctl("reload")
        self.assertEqual(rc, 0, err)
        k.wait_log(r"heartbeat: a: tock")
        rc, out, err = k.ctl("status")
        self.assertEqual(rc, 0, err)
        self.assertIn("pid: %d\n" % k.pid, out)
        self.assertIn("generation: 2\n", out)
        os.rename(k.logfile, k.logfile + ".1")
        self.assertEqual(k.ctl("reopen")[0], 0)
        wait_for(lambda: os.path.exists(k.logfile), what="reopened log")
        k.wait_log(r"heartbeat: a: tock")
        rc, out, err = k.ctl("stop")
        self.assertEqual(rc, 0, err)
        self.assertEqual(k.wait_exit(10), 0)
        self.assertFalse(os.path.exists(k.statefile))

    def test_files_belong_to_the_user_with_the_documented_modes(self):
        k = self.start()
        uid = self.pw.pw_uid

        def owner_mode(path):
            s = os.lstat(path)
            return s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)
        # The log, created as root before the drop, is handed to the user:
        # a SIGHUP or SIGUSR1 reopens it with the dropped privileges.
        self.assertEqual(owner_mode(k.logfile), (uid, self.gid, 0o640))
        # The state file is written after the drop.
        self.assertEqual(owner_mode(k.statefile), (uid, self.gid, 0o644))
        # The pidfile stays root's: the user must not write a pid that
        # root's keeld -s stop would signal.
        self.assertEqual(owner_mode(k.pidfile), (0, 0, 0o644))
        off = len(k.log())
        k.kill(signal.SIGHUP)
        wait_for(lambda: k.generation() == 2, what="generation 2")
        k.kill(signal.SIGUSR1)
        k.wait_log(r"received SIGUSR1", after=off)
        k.wait_log(r"heartbeat: a: tick", after=len(k.log()))
        self.assertNotIn("cannot reopen", k.log()[off:])
        self.assertNotIn("cannot open log", k.log()[off:])
        # Created after the drop: the user's, same modes.
        os.rename(k.logfile, k.logfile + ".1")
        k.kill(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(k.logfile), what="new log file")
        self.assertEqual(owner_mode(k.logfile), (uid, self.gid, 0o640))


class UserOnly(Base):
    def test_group_defaults_to_the_users_primary_group(self):
        self.body = HEARTBEAT % ("tick", 0.2) + 'user = "nobody"\n'
        self.k.write(self.body)
        k = self.start()
        st = proc_status(k.pid)
        self.assertEqual(st["Uid"], [str(self.pw.pw_uid)] * 4)
        self.assertEqual(st["Gid"], [str(self.pw.pw_gid)] * 4)
        self.assertEqual(sorted(int(g) for g in st["Groups"]),
                         sorted(set(os.getgrouplist("nobody", self.pw.pw_gid))))
        self.assertEqual(int(st["CapEff"][0], 16), 0)


class LogFile(Base):
    def test_planted_before_the_start(self):
        self.plant_symlink("keeld.log")
        self.start_refused("log: cannot open %s: it is a symbolic link: refused" % self.k.logfile)
        self.plant_hardlink("keeld.log")
        self.start_refused("it has other names (hard links): refused")

    def test_planted_while_running_then_reopen_and_reload(self):
        k = self.start()
        os.rename(k.logfile, k.logfile + ".1")
        self.plant_symlink("keeld.log")
        k.kill(signal.SIGUSR1)
        k.kill(signal.SIGHUP)
        wait_for(lambda: k.generation() == 2, what="generation 2")
        old = k.read(k.logfile + ".1")
        self.assertIn("cannot reopen log file %s: it is a symbolic link: refused" % k.logfile, old)
        self.assertIn("it is a symbolic link: refused", old.split("received SIGHUP")[-1])
        # A hard link (to a file the user cannot open: refused by the
        # kernel already, or by keeld for one it could).
        self.plant_hardlink("keeld.log")
        off = len(k.read(k.logfile + ".1"))
        k.kill(signal.SIGUSR1)
        wait_for(lambda: re.search(r"cannot reopen log file %s: (Permission denied|it has "
                                   r"other names \(hard links\): refused)" % k.logfile,
                                   k.read(k.logfile + ".1")[off:]), what="hard link refused")
        self.assertTrue(k.alive())


class StateFile(Base):
    def test_planted_before_the_start_is_replaced_not_followed(self):
        self.plant_symlink("state")
        k = self.start()
        self.assertFalse(os.path.islink(k.statefile))
        self.assertEqual(os.lstat(k.statefile).st_uid, self.pw.pw_uid)

    def test_planted_while_running(self):
        k = self.start()
        # The link is replaced (rename) by the next write, never followed.
        self.plant_symlink("state")
        k.kill(signal.SIGHUP)
        wait_for(lambda: not os.path.islink(k.statefile) and k.generation() == 2,
                 what="state file rewritten")
        # A hard link as the temporary file: opened as the user, refused.
        self.plant_hardlink("state.tmp")
        off = len(k.log())
        k.kill(signal.SIGUSR2)
        k.wait_log(r"cannot write state file %s: Permission denied" % k.statefile, after=off)
        os.unlink(os.path.join(self.run_dir, "state.tmp"))

    def test_root_keeld_s_does_not_read_through_links(self):
        k = self.start()
        # The user keeps the state file a link to a root-only file, and the
        # temporary file a link too, so keeld cannot replace it.
        self.plant_symlink("state.tmp")
        self.plant_symlink("state")
        rc, out, err = k.ctl("status", timeout=20)
        self.assertNotEqual(rc, 0)
        self.assertNotIn("secret", out + err)
        k.wait_log(r"cannot write state file %s: Too many levels of symbolic links"
                   % k.statefile)

    def test_status_request_planted_as_a_link_or_a_fifo(self):
        k = self.start()
        req = self.plant_symlink("state.request")
        rc, out, err = k.ctl("status", timeout=20)
        self.assertEqual(rc, 0, err)
        if os.path.lexists(req):  # keeld removes a request it saw
            as_user(self.pw.pw_uid, self.gid, os.unlink, req)
        as_user(self.pw.pw_uid, self.gid, os.mkfifo, req)
        # A FIFO nobody reads must not hang root's keeld -s status.
        rc, out, err = k.ctl("status", timeout=20)
        self.assertIn("pid: %d\n" % k.pid, out)


class Pidfile(Base):
    def test_planted_before_the_start(self):
        self.plant_symlink("keeld.pid")
        self.start_refused("pidfile %s is a symbolic link: refusing it" % self.k.pidfile)
        self.plant_hardlink("keeld.pid")
        self.start_refused("pidfile %s has other names (hard links): refusing it"
                           % self.k.pidfile)

    def test_planted_while_running(self):
        k = self.start()
        self.plant_symlink("keeld.pid")
        # keeld -s does not follow it: the daemon is not found through it.
        rc, out, err = k.ctl("status")
        self.assertNotEqual(rc, 0)
        k.kill(signal.SIGTERM)
        self.assertEqual(k.wait_exit(10), 0)

    def test_replaced_by_the_user_naming_a_root_process(self):
        """The user swaps in a pidfile of its own, locked, naming a process
        of root's: root's `keeld -s stop` must not signal that process."""
        k = self.start()
        victim = subprocess.Popen(["sleep", "60"])
        self.addCleanup(victim.wait)
        self.addCleanup(victim.kill)
        path = os.path.join(self.run_dir, "keeld.pid")
        code = ("import fcntl, os, sys, time\n"
                "fd = os.open(sys.argv[1] + '.new', os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                "os.write(fd, b'%d\\n' % int(sys.argv[2]))\n"
                "os.rename(sys.argv[1] + '.new', sys.argv[1])\n"
                "print('planted', flush=True)\n"
                "time.sleep(60)\n")
        uid, gid = self.pw.pw_uid, self.gid

        def drop():
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        holder = subprocess.Popen(["python3", "-c", code, path, str(victim.pid)],
                                  stdout=subprocess.PIPE, text=True, preexec_fn=drop)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline().strip(), "planted")
        rc, out, err = k.ctl("stop")
        self.assertNotEqual(rc, 0)
        self.assertIn("belongs to uid %d but names pid %d, which runs as uid 0: "
                      "not signalling it" % (uid, victim.pid), err)
        self.assertIsNone(victim.poll(), "root's process was signalled")
        self.assertTrue(k.alive())
        k.kill(signal.SIGTERM)
        self.assertEqual(k.wait_exit(10), 0)


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class Operator(unittest.TestCase):
    def test_status_without_permission_to_signal_reads_the_state_file(self):
        """keeld runs as root; `keeld -s status` by an operator who may not
        signal it prints the state file as last written, and its age."""
        k = Keeld(HEARTBEAT % ("tick", 0.2))
        self.addCleanup(k.close)
        os.chmod(k.dir, 0o755)
        k.start()
        time.sleep(1.2)
        r = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup",
                            "--clear-groups"] + k.argv("-s", "status"),
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("pid: %d\n" % k.pid, r.stdout)
        self.assertRegex(r.stderr, r"not allowed to signal pid %d: the status as it wrote it \d+ s ago"
                         % k.pid)
        self.assertTrue(k.alive())


if __name__ == "__main__":
    main()
