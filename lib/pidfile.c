/* SPDX-License-Identifier: ISC */
/* The pidfile: created without following links, locked for life. */
#include "keel-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read the pid written in an open pidfile, 0 if none. */
static pid_t
pidfile_read_fd(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long v;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	v = strtol(buf, NULL, 10);
	return v > 0 ? (pid_t)v : 0;
}

/*
 * Open and lock @path. Returns the fd, or -1 with the reason in @eb and, when
 * another instance holds it, its pid in @holder. Nothing is written to a
 * pidfile we did not lock.
 */
int
pidfile_acquire(const char *path, pid_t *holder, struct errbuf *eb)
{
	struct stat st, now;
	int fd, tries = 0;

	*holder = 0;
again:
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
		  0644);
	if (fd == -1) {
		if (errno == ELOOP)
			errbuf_add(eb,
				   "pidfile %s is a symbolic link: refusing it",
				   path);
		else
			errbuf_add(eb, "cannot open pidfile %s: %s", path,
				   strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		errbuf_add(eb, "pidfile %s is not a regular file", path);
		close(fd);
		return -1;
	}
	/*
	 * Root truncates and writes it: a hard link planted in a directory
	 * the service user may write would name another file.
	 */
	if (st.st_nlink > 1) {
		errbuf_add(
			eb,
			"pidfile %s has other names (hard links): refusing it",
			path);
		close(fd);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		int e = errno;

		*holder = pidfile_read_fd(fd);
		if (e == EWOULDBLOCK)
			errbuf_add(
				eb,
				"another %s is running (pid %ld, pidfile %s locked)",
				log_ident(), (long)*holder, path);
		else
			errbuf_add(eb, "cannot lock pidfile %s: %s", path,
				   strerror(e));
		close(fd);
		return -1;
	}
	/*
	 * The holder may have unlinked the file between our open and flock:
	 * we would hold the lock of a file nobody else can find. Retry.
	 */
	if (stat(path, &now) == -1 || now.st_dev != st.st_dev ||
	    now.st_ino != st.st_ino) {
		close(fd);
		if (++tries < 10)
			goto again;
		errbuf_add(eb, "pidfile %s keeps changing under us", path);
		return -1;
	}
	return fd;
}

/* Write @pid into the locked pidfile. */
int
pidfile_write(int fd, pid_t pid)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)pid);

	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -1;
	return 0;
}

/*
 * Remove the pidfile while still holding the lock. After privileges were
 * dropped the directory may not allow it: then empty it, which marks it stale.
 */
void
pidfile_release(int fd, const char *path)
{
	if (fd == -1)
		return;
	if (unlink(path) == -1 && ftruncate(fd, 0) == -1)
		log_warn("cannot remove pidfile %s", path);
	close(fd);
}

/* The real uid of process @pid, or (uid_t)-1. */
static uid_t
pidfile_proc_uid(pid_t pid)
{
	char path[64], line[256];
	unsigned long uid;
	uid_t found = (uid_t)-1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return found;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Uid: %lu", &uid) == 1) {
			found = (uid_t)uid;
			break;
		}
	fclose(f);
	return found;
}

/*
 * May we signal the pid an open pidfile names? A pidfile root created (the
 * daemon writes it before dropping privileges) or our own is trusted. Any
 * other owner could have put it there in place of the daemon's (its
 * directory is theirs) naming a process of someone else, say root's: only
 * a pid that runs as the file's owner is taken.
 */
static int
pidfile_trusted(int fd, const char *path, pid_t pid, struct errbuf *eb)
{
	struct stat st;
	uid_t runs_as;

	if (fstat(fd, &st) == -1) {
		errbuf_add(eb, "pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_uid == 0 || st.st_uid == geteuid())
		return 0;
	runs_as = pidfile_proc_uid(pid);
	if (runs_as == st.st_uid)
		return 0;
	errbuf_add(eb,
		   "pidfile %s belongs to uid %lu but names pid %ld, which "
		   "runs as uid %ld: not signalling it",
		   path, (unsigned long)st.st_uid, (long)pid,
		   runs_as == (uid_t)-1 ? -1L : (long)runs_as);
	return -1;
}

/*
 * The pid of the daemon holding @path, or 0 (reason in @eb) when no live
 * instance holds it: missing, empty or unlocked (stale).
 */
pid_t
pidfile_running(const char *path, struct errbuf *eb)
{
	pid_t pid;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);

	if (fd == -1) {
		errbuf_add(eb, "%s is not running (pidfile %s: %s)",
			   log_ident(), path, strerror(errno));
		return 0;
	}
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		flock(fd, LOCK_UN);
		close(fd);
		errbuf_add(eb, "%s is not running (pidfile %s is stale)",
			   log_ident(), path);
		return 0;
	}
	pid = pidfile_read_fd(fd);
	if (pid == 0)
		errbuf_add(eb, "pidfile %s is locked but holds no pid yet",
			   path);
	else if (pidfile_trusted(fd, path, pid, eb) == -1)
		pid = 0;
	close(fd);
	return pid;
}
