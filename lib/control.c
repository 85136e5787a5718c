/* SPDX-License-Identifier: ISC */
/* -s: control the running daemon through its pidfile and state file. */
#include "keel-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_POLL_MS 10
#define CONTROL_HEAD    16384 /* bytes: the daemon's own fields */

/* Milliseconds of the monotonic clock. */
static long long
control_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Watch the directory of @statefile: the daemon replaces the file by a
 * rename, and a command waiting for it wakes then, not at its next 10 ms
 * tick (with 1,000 ports a tick also read the whole 1 MB file). -1 without
 * inotify: the tick alone.
 */
static int
control_watch(const char *statefile)
{
	char dir[PATH_MAX], *slash;
	int fd;

	if (snprintf(dir, sizeof(dir), "%s", statefile) >= (int)sizeof(dir))
		return -1;
	slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		slash[slash == dir ? 1 : 0] = '\0';
	fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (fd == -1)
		return -1;
	if (inotify_add_watch(fd, dir, IN_MOVED_TO | IN_CLOSE_WRITE) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Wait CONTROL_POLL_MS at most (the client is not an event loop), less
 * when something changed in the directory @watch watches (-1: none).
 */
static void
control_nap(int watch)
{
	struct timespec ts = { 0, CONTROL_POLL_MS * 1000000L };
	struct pollfd p = { watch, POLLIN, 0 };
	char events[4096];

	if (watch < 0) {
		nanosleep(&ts, NULL);
		return;
	}
	if (poll(&p, 1, CONTROL_POLL_MS) > 0)
		while (read(watch, events, sizeof(events)) > 0)
			continue;
}

/*
 * The first lines of the state file, cut after the last whole line; NULL
 * if it cannot be read. @whole: set when that is the whole file. The
 * daemon's own fields come first, and a command waiting for one of them
 * reads these, not the 1 MB that 1,000 ports make.
 */
static char *
control_state_head(const char *path, int *whole)
{
	char *buf = malloc(CONTROL_HEAD + 1), *eol;
	size_t len = 0;
	ssize_t n = 1;
	int fd;

	*whole = 0;
	if (buf == NULL)
		return NULL;
	fd = open(path,
		  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		free(buf);
		return NULL;
	}
	while (len < CONTROL_HEAD &&
	       (n = read(fd, buf + len, CONTROL_HEAD - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (n == -1) {
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	*whole = len < CONTROL_HEAD;
	if (!*whole && (eol = strrchr(buf, '\n')) != NULL)
		eol[1] = '\0';
	return buf;
}

/*
 * The state file's text holding every one of @keys (NULL-terminated): its
 * first lines when they do, else all of it. NULL if it cannot be read.
 */
static char *
control_state_for(const char *statefile, const char *const *keys)
{
	int whole, i;
	char *text = control_state_head(statefile, &whole), *v;

	for (i = 0; text != NULL && !whole && keys[i] != NULL; i++) {
		if ((v = state_get(text, keys[i])) == NULL) {
			free(text);
			return state_read(statefile);
		}
		free(v);
	}
	return text;
}

/* A numeric field of the state file, 0 when absent. */
static unsigned long
control_state_num(const char *statefile, const char *key)
{
	const char *keys[] = { key, NULL };
	char *text = control_state_for(statefile, keys), *v;
	unsigned long n = 0;

	if (text == NULL)
		return 0;
	v = state_get(text, key);
	if (v != NULL)
		n = strtoul(v, NULL, 10);
	free(v);
	free(text);
	return n;
}

/* Find pidfile, state file and shutdown-timeout from the configuration. */
static void
control_paths(const struct keel_options *opt, char **pidfile, char **statefile,
	      double *timeout)
{
	struct keel k;
	struct errbuf eb = { 0 };
	struct config *cfg = NULL;
	char buf[PATH_MAX];

	memset(&k, 0, sizeof(k));
	k.opt = *opt;
	*pidfile = *statefile = NULL;
	*timeout = 5;
	log_init(opt->app->name, KEEL_LOG_ERR);
	k.config_path = realpath(opt->config, NULL);
	if (k.config_path != NULL && keel_modules_init(&k, &eb) == 0)
		cfg = config_load(&k, k.config_path, &eb);
	if (cfg != NULL) {
		*pidfile = strdup(cfg->core.pidfile);
		*statefile = strdup(cfg->core.statefile);
		*timeout = cfg->core.shutdown_timeout;
		config_free(cfg);
	} else {
		/* The file may be broken: the daemon will say how. */
		config_peek_paths(opt->config, pidfile, statefile);
	}
	errbuf_clear(&eb);
	module_unload_all(&k);
	free(k.config_path);
	if (*pidfile == NULL)
		*pidfile = strdup(
			keel_default_pidfile(opt->app, buf, sizeof(buf)));
	if (*statefile == NULL)
		*statefile = strdup(
			keel_default_statefile(opt->app, buf, sizeof(buf)));
	if (opt->pidfile != NULL) {
		free(*pidfile);
		*pidfile = strdup(opt->pidfile);
	}
}

/* Is the daemon of @pidfile still alive? */
static int
control_alive(const char *pidfile)
{
	struct errbuf eb = { 0 };
	pid_t pid = pidfile_running(pidfile, &eb);

	errbuf_clear(&eb);
	return pid > 0;
}

/* reload: signal, then wait for a reload that began after we asked. */
static int
control_reload(pid_t pid, const char *pidfile, const char *statefile,
	       const char *config)
{
	unsigned long started = control_state_num(statefile, "reload-started");
	static const char *const config_key[] = { "config", NULL };
	static const char *const outcome[] = { "reload-done", "last-reload",
					       "generation", NULL };
	char *before = control_state_for(statefile, config_key);
	char *loaded = NULL, *mine;
	char marker[PATH_MAX];
	long long until;
	int watch, rc = -1;

	/* A reload in progress has said so only in STATEFILE.reloading. */
	if (keel_reload_marker(statefile, marker, sizeof(marker)) == 0) {
		unsigned long now = control_state_num(marker, "reload-started");

		if (now > started)
			started = now;
	}

	/*
	 * The daemon reloads the file it was started with. Say so when -f
	 * names another one: its edits are not what is being applied.
	 */
	if (before != NULL)
		loaded = state_get(before, "config");
	free(before);
	mine = realpath(config, NULL);
	if (loaded != NULL && strcmp(loaded, mine != NULL ? mine : config) != 0)
		fprintf(stderr,
			"%s: warning: the running daemon loads %s, not %s: "
			"it reloads its own file\n",
			log_ident(), loaded, config);
	free(mine);

	watch = control_watch(statefile);
	if (kill(pid, SIGHUP) == -1) {
		fprintf(stderr, "%s: cannot signal pid %ld: %s\n", log_ident(),
			(long)pid, strerror(errno));
		if (watch >= 0)
			close(watch);
		free(loaded);
		return 1;
	}
	for (until = control_ms() + 30000; control_ms() < until && rc == -1;) {
		char *text = control_state_for(statefile, outcome), *done;
		char *last, *gen;

		if (text != NULL) {
			done = state_get(text, "reload-done");
			last = state_get(text, "last-reload");
			gen = state_get(text, "generation");
			if (done != NULL && strtoul(done, NULL, 10) > started &&
			    last != NULL) {
				if (strcmp(last, "ok") == 0) {
					printf("reload applied: generation %s "
					       "(%s)\n",
					       gen != NULL ? gen : "?",
					       loaded != NULL ? loaded : "?");
					rc = 0;
				} else {
					fprintf(stderr, "%s: reload %s\n",
						log_ident(), last);
					rc = 1;
				}
			}
			free(done);
			free(last);
			free(gen);
			free(text);
		}
		if (rc != -1)
			break;
		if (!control_alive(pidfile)) {
			fprintf(stderr,
				"%s: the daemon exited during the reload\n",
				log_ident());
			rc = 1;
			break;
		}
		control_nap(watch);
	}
	if (watch >= 0)
		close(watch);
	if (rc == -1) {
		fprintf(stderr,
			"%s: no reload outcome after 30 s (state file %s)\n",
			log_ident(), statefile);
		rc = 1;
	}
	free(loaded);
	return rc;
}

/*
 * Has @pid exited? A zombie has: its parent has not reaped it yet. Read
 * from /proc/PID/stat, whose state follows the last ')' of the name.
 */
static int
control_pid_gone(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	if (kill(pid, 0) == -1 && errno == ESRCH)
		return 1;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return errno == ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ')
		return 0;
	return p[2] == 'Z' || p[2] == 'X';
}

/*
 * stop: signal, then wait until the pidfile lock is released and the
 * process is gone: it releases the lock before its last steps (closing
 * the log, exit handlers; LeakSanitizer's check takes a second), and a
 * service manager or a script that starts it again wants it gone.
 */
static int
control_stop(pid_t pid, const char *pidfile, double timeout)
{
	long limit = (long)(timeout * 1000) + 5000, waited;

	if (kill(pid, SIGTERM) == -1) {
		fprintf(stderr, "%s: cannot signal pid %ld: %s\n", log_ident(),
			(long)pid, strerror(errno));
		return 1;
	}
	for (waited = 0; waited < limit; waited += CONTROL_POLL_MS) {
		if (!control_alive(pidfile) && control_pid_gone(pid)) {
			printf("%s (pid %ld) stopped\n", log_ident(),
			       (long)pid);
			return 0;
		}
		control_nap(-1);
	}
	fprintf(stderr, "%s: pid %ld still running after %ld ms\n", log_ident(),
		(long)pid, limit);
	return 1;
}

/* status: ask for a fresh dump, print the state file. */
static int
control_status(pid_t pid, const char *statefile)
{
	unsigned long dumps = control_state_num(statefile, "dumps");
	char *text, req[PATH_MAX];
	long long until;
	int fresh = 0, fd, watch = control_watch(statefile);

	/*
	 * Ask for a refresh that is not logged (see keel_status_requested).
	 * O_NONBLOCK: a FIFO planted there must not hang root's keeld -s.
	 */
	if (snprintf(req, sizeof(req), "%s.request", statefile) <
		    (int)sizeof(req) &&
	    (fd = open(req,
		       O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
			       O_NONBLOCK | O_NOCTTY,
		       0600)) != -1)
		close(fd);

	if (kill(pid, SIGUSR2) == -1) {
		struct stat st;

		if (watch >= 0)
			close(watch);
		if (errno != EPERM) {
			fprintf(stderr, "%s: cannot signal pid %ld: %s\n",
				log_ident(), (long)pid, strerror(errno));
			return 1;
		}
		/* An operator who may not signal the daemon may still read
		 * what it last wrote (0644): say how old it is. */
		text = state_read(statefile);
		if (text == NULL || stat(statefile, &st) == -1) {
			fprintf(stderr, "%s: cannot read state file %s: %s\n",
				log_ident(), statefile, strerror(errno));
			free(text);
			return 1;
		}
		fputs(text, stdout);
		free(text);
		fprintf(stderr,
			"%s: not allowed to signal pid %ld: the status as it "
			"wrote it %lld s ago\n",
			log_ident(), (long)pid,
			(long long)(time(NULL) - st.st_mtime));
		return 0;
	}
	for (until = control_ms() + 2000; control_ms() < until;) {
		if (control_state_num(statefile, "dumps") > dumps) {
			fresh = 1;
			break;
		}
		control_nap(watch);
	}
	if (watch >= 0)
		close(watch);
	text = state_read(statefile);
	if (text == NULL) {
		fprintf(stderr, "%s: cannot read state file %s: %s\n",
			log_ident(), statefile, strerror(errno));
		return 1;
	}
	fputs(text, stdout);
	free(text);
	if (!fresh) {
		fprintf(stderr,
			"%s: pid %ld did not refresh its status; shown as last written\n",
			log_ident(), (long)pid);
		return 1;
	}
	return 0;
}

/* -s CMD. Returns the exit status. */
int
keel_main_control(const struct keel_options *opt, const char *cmd)
{
	struct errbuf eb = { 0 };
	char *pidfile, *statefile;
	double timeout;
	pid_t pid;
	int rc, sig = 0;

	if (strcmp(cmd, "reload") != 0 && strcmp(cmd, "stop") != 0 &&
	    strcmp(cmd, "reopen") != 0 && strcmp(cmd, "wake") != 0 &&
	    strcmp(cmd, "status") != 0) {
		fprintf(stderr,
			"%s: unknown command '%s' (reload, stop, reopen, wake, status)\n",
			opt->app->name, cmd);
		return 2;
	}
	control_paths(opt, &pidfile, &statefile, &timeout);
	pid = pidfile_running(pidfile, &eb);
	if (pid == 0) {
		fprintf(stderr, "%s: %s", log_ident(),
			eb.text != NULL ? eb.text : "not running\n");
		rc = 1;
	} else if (strcmp(cmd, "reload") == 0) {
		rc = control_reload(pid, pidfile, statefile, opt->config);
	} else if (strcmp(cmd, "stop") == 0) {
		rc = control_stop(pid, pidfile, timeout);
	} else if (strcmp(cmd, "status") == 0) {
		rc = control_status(pid, statefile);
	} else {
		sig = strcmp(cmd, "reopen") == 0 ? SIGUSR1 : SIGALRM;
		rc = kill(pid, sig) == -1 ? 1 : 0;
		if (rc != 0)
			fprintf(stderr, "%s: cannot signal pid %ld: %s\n",
				log_ident(), (long)pid, strerror(errno));
	}
	errbuf_clear(&eb);
	free(pidfile);
	free(statefile);
	return rc;
}
