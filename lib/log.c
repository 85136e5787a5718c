/* SPDX-License-Identifier: ISC */
/* Logging to syslog, stderr or a file, reopened on request. */
#include "keel-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum log_kind { LOG_TO_STDERR, LOG_TO_SYSLOG, LOG_TO_FILE };

/* Never through a link; O_NONBLOCK: a FIFO planted there cannot hang us. */
#define LOG_OPEN_FLAGS \
	(O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK)

static struct {
	enum log_kind kind;
	int level;
	int fd;     /* LOG_TO_FILE */
	char *path; /* LOG_TO_FILE */
	char *target;
	const char *ident;
	pid_t pid;   /* glibc does not cache getpid(): one syscall per line */
	uid_t owner; /* of a file root creates for a daemon about to drop */
	gid_t group;
} log_state = { LOG_TO_STDERR, KEEL_LOG_INFO, -1, NULL, NULL, "keel", 0,
		(uid_t)-1,     (gid_t)-1 };

static const char *const log_names[] = {
	[KEEL_LOG_ERR] = "error",     [KEEL_LOG_WARNING] = "warning",
	[KEEL_LOG_NOTICE] = "notice", [KEEL_LOG_INFO] = "info",
	[KEEL_LOG_DEBUG] = "debug",
};

/* Start logging to stderr at @level, before any configuration is read. */
void
log_init(const char *ident, int level)
{
	log_state.ident = ident;
	log_state.level = level;
	log_state.pid = getpid();
}

/* The program's name, for messages (the application's name). */
const char *
log_ident(void)
{
	return log_state.ident;
}

/* After fork: the pid in log lines changes. */
void
log_set_pid(pid_t pid)
{
	log_state.pid = pid;
}

/*
 * The user (and group) a log file that root creates from now on must belong
 * to: the daemon drops to them and reopens the file as them. (uid_t)-1: none.
 */
void
log_set_owner(uid_t uid, gid_t gid)
{
	log_state.owner = uid;
	log_state.group = gid;
}

/*
 * Open @path for appending, creating it with @flags only when it is missing.
 * *@created tells which: O_EXCL never follows a link, and an existing name
 * is opened without O_CREAT (its own flags refuse a link).
 */
static int
log_open_or_create(const char *path, int flags, int *created)
{
	int fd, tries;

	*created = 0;
	for (tries = 0; tries < 10; tries++) {
		fd = open(path, flags);
		if (fd != -1 || errno != ENOENT)
			return fd;
		fd = open(path, flags | O_CREAT | O_EXCL, 0640);
		if (fd != -1 || errno != EEXIST) {
			*created = fd != -1;
			return fd;
		}
	}
	return -1;
}

/* Map a level name to its value, or -1. */
int
log_level_parse(const char *name)
{
	int i;

	for (i = KEEL_LOG_ERR; i <= KEEL_LOG_DEBUG; i++)
		if (strcmp(name, log_names[i]) == 0)
			return i;
	return -1;
}

/* Name a level. */
const char *
log_level_name(int level)
{
	if (level < KEEL_LOG_ERR || level > KEEL_LOG_DEBUG)
		return "?";
	return log_names[level];
}

/*
 * Open a log file safely for a daemon that starts as root: never through a
 * symbolic link (whoever can write the directory could point it at any
 * file), only a regular file with one name, and never in a directory that
 * others may write without the sticky bit. @create: O_CREAT. @return the
 * fd, or -1 with errno and the reason in @why.
 */
int
log_open_safe(const char *path, int create, char *why, size_t whylen)
{
	char *dir = strdup(path), *slash;
	struct stat st;
	gid_t group = log_state.group;
	int fd, created;

	slash = dir != NULL ? strrchr(dir, '/') : NULL;
	if (slash != NULL) {
		*slash = '\0';
		if (stat(slash == dir ? "/" : dir, &st) == -1)
			st.st_mode = 0;
		/* A set-group-ID directory gives its group to its files. */
		if (st.st_mode & S_ISGID)
			group = (gid_t)-1;
		if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
			snprintf(why, whylen,
				 "its directory %s is writable by anyone (mode "
				 "%04o, no sticky bit): refused",
				 slash == dir ? "/" : dir,
				 (unsigned)(st.st_mode & 07777));
			free(dir);
			errno = EPERM;
			return -1;
		}
	}
	free(dir);
	created = 0;
	if (create)
		fd = log_open_or_create(path, LOG_OPEN_FLAGS, &created);
	else
		fd = open(path, LOG_OPEN_FLAGS);
	if (fd == -1) {
		int e = errno;

		snprintf(why, whylen, "%s",
			 e == ELOOP ? "it is a symbolic link: refused"
				    : strerror(e));
		errno = e;
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_nlink > 1) {
		snprintf(why, whylen, "%s",
			 st.st_nlink > 1 && S_ISREG(st.st_mode)
				 ? "it has other names (hard links): refused"
				 : "not a regular file: refused");
		close(fd);
		errno = EPERM;
		return -1;
	}
	/*
	 * Created by root for a daemon that drops to `user`: hand it over, or
	 * the reopen on SIGUSR1 or SIGHUP after the drop would be refused.
	 */
	if (created && log_state.owner != (uid_t)-1 && geteuid() == 0 &&
	    fchown(fd, log_state.owner, group) == -1) {
		int e = errno;

		snprintf(why, whylen, "cannot give it to uid %u: %s",
			 (unsigned)log_state.owner, strerror(e));
		close(fd);
		errno = e;
		return -1;
	}
	/* Blocking writes, as before: a regular file does not block. */
	fcntl(fd, F_SETFL, O_WRONLY | O_APPEND);
	return fd;
}

/* Open the log file of the current target. */
static int
log_open_file(const char *path, char *why, size_t whylen)
{
	return log_open_safe(path, 1, why, whylen);
}

/*
 * Switch to @target ("syslog", "stderr" or an absolute file path) at @level.
 * On failure the current target stays and the reason goes to @eb.
 */
int
log_configure(const char *target, int level, struct errbuf *eb)
{
	int fd = -1;
	enum log_kind kind;

	if (strcmp(target, "syslog") == 0)
		kind = LOG_TO_SYSLOG;
	else if (strcmp(target, "stderr") == 0)
		kind = LOG_TO_STDERR;
	else {
		char why[256];

		kind = LOG_TO_FILE;
		fd = log_open_file(target, why, sizeof(why));
		if (fd == -1) {
			errbuf_add(eb, "cannot open log file %s: %s", target,
				   why);
			return -1;
		}
	}
	if (log_state.target != NULL && strcmp(log_state.target, target) == 0 &&
	    kind != LOG_TO_FILE) {
		log_state.level = level;
		return 0;
	}
	log_close();
	log_state.kind = kind;
	log_state.fd = fd;
	log_state.target = strdup(target);
	if (kind == LOG_TO_FILE)
		log_state.path = strdup(target);
	if (kind == LOG_TO_SYSLOG)
		openlog(log_state.ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_state.level = level;
	return 0;
}

/* Change only the level. */
void
log_set_level(int level)
{
	log_state.level = level;
}

/* Reopen the log file (after logrotate moved it); keep the old on failure. */
void
log_reopen(void)
{
	char why[256];
	int fd;

	if (log_state.kind != LOG_TO_FILE)
		return;
	fd = log_open_file(log_state.path, why, sizeof(why));
	if (fd == -1) {
		log_warnx("cannot reopen log file %s: %s", log_state.path, why);
		return;
	}
	close(log_state.fd);
	log_state.fd = fd;
	log_debug("log file %s reopened", log_state.path);
}

/* Close the current target and fall back to stderr. */
void
log_close(void)
{
	if (log_state.kind == LOG_TO_FILE && log_state.fd != -1)
		close(log_state.fd);
	if (log_state.kind == LOG_TO_SYSLOG)
		closelog();
	free(log_state.path);
	free(log_state.target);
	log_state.path = NULL;
	log_state.target = NULL;
	log_state.fd = -1;
	log_state.kind = LOG_TO_STDERR;
}

/* The current target, as configured. */
const char *
log_target(void)
{
	return log_state.target != NULL ? log_state.target : "stderr";
}

/* Return non-zero when @level is written. */
int
keel_log_enabled(int level)
{
	return level <= log_state.level;
}

/* Format and write one message. */
void
keel_vlog(int level, const char *fmt, va_list ap)
{
	char line[4096];
	char stamp[64];
	struct timeval tv;
	struct tm tm;
	int n, m;
	int saved = errno;

	if (!keel_log_enabled(level))
		return;
	if (log_state.kind == LOG_TO_SYSLOG) {
		vsyslog(level, fmt, ap);
		errno = saved;
		return;
	}
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ld %s[%ld]: %s: ", stamp,
		     (long)tv.tv_usec / 1000, log_state.ident,
		     (long)log_state.pid, log_level_name(level));
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write(2) per line: lines from several writers never interleave.
	 */
	if (write(log_state.kind == LOG_TO_FILE ? log_state.fd : STDERR_FILENO,
		  line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
	errno = saved;
}

/* Log a message at @level. */
void
keel_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	keel_vlog(level, fmt, ap);
	va_end(ap);
}

/* Milliseconds of a cheap monotonic clock (vDSO: no system call). */
static uint64_t
log_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Spend one line of @rl's budget. @return 1 when the line may be written;
 * then *@suppressed is the count to report first (0: none).
 */
static int
log_limit_take(struct keel_ratelimit *rl, unsigned long *suppressed)
{
	uint64_t now = log_now_ms();
	uint64_t window =
		rl->interval > 0 ? (uint64_t)(rl->interval * 1000) : 0;

	*suppressed = 0;
	if (rl->start_ms == 0 || now - rl->start_ms >= window) {
		*suppressed = rl->suppressed;
		rl->start_ms = now != 0 ? now : 1;
		rl->count = 0;
		rl->suppressed = 0;
	}
	if (rl->count >= rl->burst) {
		rl->suppressed++;
		/* Not lost: reported with the next line let through. */
		rl->suppressed += *suppressed;
		*suppressed = 0;
		return 0;
	}
	rl->count++;
	return 1;
}

/*
 * Whether a line at @level within @rl (NULL: no budget) may be written;
 * the count of lines suppressed before it is written first, after @prefix.
 */
int
log_limit_begin(struct keel_ratelimit *rl, int level, const char *prefix)
{
	unsigned long suppressed;

	if (!keel_log_enabled(level))
		return 0;
	if (rl == NULL)
		return 1;
	if (!log_limit_take(rl, &suppressed))
		return 0;
	if (suppressed > 0)
		keel_log(level, "%s%lu similar messages suppressed", prefix,
			 suppressed);
	return 1;
}

/* keel_log within a budget. */
int
keel_log_limit(struct keel_ratelimit *rl, int level, const char *fmt, ...)
{
	va_list ap;

	if (!log_limit_begin(rl, level, ""))
		return 0;
	va_start(ap, fmt);
	keel_vlog(level, fmt, ap);
	va_end(ap);
	return 1;
}

/* Log with ": strerror(errno)" appended. */
static void
log_vwarn(int level, const char *fmt, va_list ap)
{
	char msg[2048];
	int saved = errno;

	if (!keel_log_enabled(level))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	keel_log(level, "%s: %s", msg, strerror(saved));
	errno = saved;
}

/* Warn with the reason in errno. */
void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwarn(KEEL_LOG_WARNING, fmt, ap);
	va_end(ap);
}

/* Warn. */
void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	keel_vlog(KEEL_LOG_WARNING, fmt, ap);
	va_end(ap);
}

/* Inform. */
void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	keel_vlog(KEEL_LOG_INFO, fmt, ap);
	va_end(ap);
}

/* Debug. */
void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	keel_vlog(KEEL_LOG_DEBUG, fmt, ap);
	va_end(ap);
}

/* Log an error with errno's reason and exit. */
void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwarn(KEEL_LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Log an error and exit. */
void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	keel_vlog(KEEL_LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}
