/* SPDX-License-Identifier: ISC */
/* The daemon: start-up, the loop, reload requests, stop, status. */
#include "keel-internal.h"

#include <errno.h>
#include <event2/event.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>

/* Microseconds of CLOCK_MONOTONIC, as systemd wants in MONOTONIC_USEC. */
static unsigned long long
keel_monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL +
	       (unsigned long long)ts.tv_nsec / 1000ULL;
}

/* /run/NAME.pid, unless the application names its pidfile. */
const char *
keel_default_pidfile(const struct keel_app *app, char *buf, size_t len)
{
	if (app->pidfile != NULL)
		return app->pidfile;
	snprintf(buf, len, "/run/%s.pid", app->name);
	return buf;
}

/* /run/NAME/state, unless the application names its state file. */
const char *
keel_default_statefile(const struct keel_app *app, char *buf, size_t len)
{
	if (app->statefile != NULL)
		return app->statefile;
	snprintf(buf, len, "/run/%s/state", app->name);
	return buf;
}

/*
 * Record a transaction's result: k->last_reload ("ok" or "failed: FILE:LINE:
 * message"), its time and the gauges scrapers read. @error is NULL for ok.
 */
static void
keel_set_last_reload(struct keel *k, const char *error)
{
	char *s = NULL;

	if (asprintf(&s, "%s%s", error != NULL ? "failed: " : "ok",
		     error != NULL ? error : "") < 0)
		return;
	free(k->last_reload);
	k->last_reload = s;
	k->last_reload_time = time(NULL);
	if (error == NULL)
		k->last_reload_ok_time = k->last_reload_time;
	keel_metric_set(k->m_generation, (int64_t)k->generation);
	keel_metric_set(k->m_reload_good, error == NULL);
	keel_metric_set(k->m_reload_good_time, (int64_t)k->last_reload_ok_time);
}

/* Build the status every consumer shares, from the one registry. */
struct keel_status *
keel_status_build(struct keel *k)
{
	struct keel_status *st = status_new();
	struct timespec now;
	struct keel_module *m;
	char mods[1024] = "";
	size_t used = 0;

	if (st == NULL)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &now);
	for (m = k->modules; m != NULL; m = m->next) {
		if (m->state == MODULE_IDLE || m->root)
			continue;
		used += (size_t)snprintf(
			mods + used, sizeof(mods) - used, "%s%s %s%s",
			used ? ", " : "", m->name, m->desc->version,
			m->state == MODULE_STOPPING ? " (stopping)" : "");
		if (used >= sizeof(mods))
			break;
	}
	keel_status_int(st, "pid", (int64_t)getpid());
	keel_status_str(st, "version", k->app->version);
	keel_status_str(st, "state",
			k->stopping != STOP_NONE ? "stopping" : "running");
	keel_status_bool(st, "ready",
			 k->stopping == STOP_NONE && k->generation > 0);
	keel_status_int(st, "uptime",
			(int64_t)(now.tv_sec - k->started_mono.tv_sec));
	keel_status_time(st, "started", k->started);
	keel_status_time(st, "now", time(NULL));
	keel_status_uint(st, "generation", k->generation);
	keel_status_str(st, "last-reload",
			k->last_reload != NULL ? k->last_reload : "none");
	keel_status_time(st, "last-reload-time", k->last_reload_time);
	keel_status_time(st, "last-reload-success", k->last_reload_ok_time);
	keel_status_uint(st, "reload-started", k->reloads_started);
	keel_status_uint(st, "reload-done", k->reloads_done);
	keel_status_uint(st, "dumps", k->dumps);
	keel_status_str(st, "config", k->config_path);
	keel_status_str(st, "modules", mods);
	metric_status(k->metrics, st);
	module_status(k, st);
	return st;
}

/*
 * Free a status and hand its pages back: a thousand ports make a status of
 * a few MB in many small pieces, and glibc keeps freed holes resident (RSS
 * grew by that much at the first reload, measured) unless trimmed.
 */
void
keel_status_free(struct keel_status *st)
{
	status_free(st);
	malloc_trim(0);
}

/* Replace the state file with a fresh status. */
void
keel_write_state(struct keel *k)
{
	struct keel_status *st = keel_status_build(k);
	const char *text;
	size_t len;

	if (st == NULL)
		return;
	text = status_text(st, &len);
	if (k->statefile != NULL && state_write(k->statefile, text, len) == -1)
		log_warn("cannot write state file %s", k->statefile);
	keel_status_free(st);
}

/* STATEFILE.reloading: @path's buffer gets its name; -1 if too long. */
int
keel_reload_marker(const char *statefile, char *path, size_t len)
{
	return snprintf(path, len, "%s.reloading", statefile) >= (int)len ? -1
									  : 0;
}

/*
 * A reload begins: say so in STATEFILE.reloading, a line that -s reload
 * reads with the state file, so that it waits for a reload that begins
 * after its signal and not for the one in progress. The state file itself
 * is rewritten once, after the transaction: with a thousand ports a status
 * is 1 MB built from 38,000 fields, and writing it before as well cost a
 * third of the time from SIGHUP to READY=1 (measured, bench/serial-bridge).
 */
static void
keel_mark_reload(struct keel *k)
{
	char path[PATH_MAX], line[64];
	int n;

	if (k->statefile == NULL ||
	    keel_reload_marker(k->statefile, path, sizeof(path)) == -1)
		return;
	n = snprintf(line, sizeof(line), "reload-started: %lu\n",
		     k->reloads_started);
	if (state_write(path, line, (size_t)n) == -1)
		log_warn("cannot write %s", path);
}

/*
 * Did `-s status` ask for this refresh? It leaves STATEFILE.request before
 * sending SIGUSR2: a poll of the status must not fill the log.
 */
int
keel_status_requested(struct keel *k)
{
	char path[PATH_MAX];
	struct stat st;
	int fresh;

	if (k->statefile == NULL ||
	    snprintf(path, sizeof(path), "%s.request", k->statefile) >=
		    (int)sizeof(path) ||
	    lstat(path, &st) == -1)
		return 0;
	/* One left by a -s status that died long ago is not this request. */
	fresh = st.st_mtime >= time(NULL) - 5;
	unlink(path);
	return fresh;
}

/* SIGUSR2: status to the log (unless -s status asked) and the state file. */
void
keel_status_dump(struct keel *k, int to_log)
{
	struct keel_status *st;
	const char *text, *line, *eol;
	size_t len;

	k->dumps++;
	module_notify(k, KEEL_EVENT_STATUS);
	st = keel_status_build(k);
	if (st == NULL)
		return;
	text = status_text(st, &len);
	if (to_log)
		for (line = text; *line != '\0'; line = eol + 1) {
			eol = strchr(line, '\n');
			if (eol == NULL)
				break;
			log_info("status: %.*s", (int)(eol - line), line);
		}
	if (k->statefile != NULL && state_write(k->statefile, text, len) == -1)
		log_warn("cannot write state file %s", k->statefile);
	keel_status_free(st);
}

/* SIGALRM: every waiting device retries now. */
void
keel_wake(struct keel *k)
{
	module_notify(k, KEEL_EVENT_WAKE);
}

/* Log every collected error at error level. */
static void
keel_log_errors(const struct errbuf *eb)
{
	const char *line = eb->text, *eol;

	while (line != NULL && *line != '\0') {
		eol = strchr(line, '\n');
		if (eol == NULL)
			break;
		keel_log(KEEL_LOG_ERR, "%.*s", (int)(eol - line), line);
		line = eol + 1;
	}
}

/* The deferred reload: one transaction for any number of requests. */
static void
keel_reload_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keel *k = arg;
	struct errbuf eb = { 0 };

	(void)fd;
	(void)what;
	k->reload_pending = 0;
	if (k->stopping != STOP_NONE)
		return;
	k->reloads_started++;
	keel_mark_reload(k);
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
		    keel_monotonic_usec());
	if (reload_transaction(k, NULL, 0, &eb) == 0) {
		keel_metric_add(k->m_reload_ok, 1);
		k->generation++;
		keel_set_last_reload(k, NULL);
		log_info("reload applied: generation %lu", k->generation);
		module_notify(k, KEEL_EVENT_RELOAD);
		notify_send(
			"READY=1\nSTATUS=running, generation %lu (reload applied)",
			k->generation);
	} else {
		keel_metric_add(k->m_reload_failed, 1);
		keel_log_errors(&eb);
		keel_set_last_reload(k, eb.first != NULL ? eb.first
							 : "unknown error");
		log_warnx("reload rejected: still running generation %lu",
			  k->generation);
		notify_send(
			"READY=1\nSTATUS=running, generation %lu (reload failed: %s)",
			k->generation, eb.first != NULL ? eb.first : "?");
	}
	errbuf_clear(&eb);
	k->reloads_done++;
	keel_write_state(k);
}

/* Schedule a reload; requests before it runs are the same reload. */
void
keel_reload_request(struct keel *k)
{
	if (k->reload_pending)
		return;
	k->reload_pending = 1;
	event_active(k->reload_ev, EV_TIMEOUT, 0);
}

/* Non-zero when two optional strings differ. */
static int
keel_differ(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/*
 * After a transaction (k->core is new, @old the previous values or NULL at
 * start-up): apply the core options that may change at run time.
 */
void
keel_apply_core(struct keel *k, const struct keel_core *old)
{
	const struct keel_core *c = &k->core;
	struct errbuf eb = { 0 };
	const char *target;
	int level = k->opt.debug ? KEEL_LOG_DEBUG : core_level(c);

	if (c->log != NULL)
		target = c->log;
	else
		target = k->opt.foreground ? "stderr" : "syslog";
	if (log_configure(target, level, &eb) == -1) {
		log_warnx("%s", eb.first);
		log_set_level(level);
	}
	errbuf_clear(&eb);
	if (old == NULL)
		return;
	/* The state file moves with the configuration: -s reads it there. */
	if (k->statefile != NULL && strcmp(k->statefile, c->statefile) != 0) {
		char *moved = strdup(c->statefile);

		if (moved != NULL) {
			char path[PATH_MAX];

			unlink(k->statefile);
			if (keel_reload_marker(k->statefile, path,
					       sizeof(path)) == 0)
				unlink(path);
			free(k->statefile);
			k->statefile = moved;
			log_info("state file now %s", moved);
		}
	}
	if (keel_differ(old->pidfile, c->pidfile))
		log_warnx(
			"pidfile changed: it takes effect only when %s restarts",
			log_ident());
	if (keel_differ(old->user, c->user))
		log_warnx("user changed: it takes effect only when %s restarts",
			  log_ident());
	if (keel_differ(old->group, c->group))
		log_warnx(
			"group changed: it takes effect only when %s restarts",
			log_ident());
}

/* Every module has drained (or the second signal came): leave the loop. */
static void
keel_stop_now(struct keel *k)
{
	event_base_loopbreak(k->base);
}

/*
 * Stop the modules one at a time, the last loaded first, each after the
 * one after it has drained: serial must finish writing to sim's device
 * before sim closes it. Leave the loop when none is left.
 */
static void
keel_stop_next(struct keel *k)
{
	struct keel_module *m, *last;

	if (k->stop_walking)
		return; /* a synchronous stop re-entered: the loop below goes on
			 */
	k->stop_walking = 1;
	for (;;) {
		last = NULL;
		for (m = k->modules; m != NULL; m = m->next) {
			if (m->state == MODULE_STOPPING) {
				k->stop_walking = 0;
				return; /* wait for its instances to drain */
			}
			if (m->state == MODULE_RUNNING)
				last = m;
		}
		if (last == NULL)
			break;
		module_stop(last, 0);
	}
	k->stop_walking = 0;
	log_info("every module has drained");
	keel_stop_now(k);
}

/* A module has drained: stop the next one, or leave. */
void
keel_module_drained(struct keel *k)
{

	if (k->stopping == STOP_DRAINING)
		keel_stop_next(k);
}

/* shutdown-timeout expired. */
static void
keel_stop_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keel *k = arg;

	(void)fd;
	(void)what;
	log_warnx(
		"shutdown-timeout (%gs) expired: stopping without waiting for the rest",
		k->core.shutdown_timeout);
	keel_stop_now(k);
}

/* SIGTERM / SIGINT: drain within shutdown-timeout; a second one: now. */
void
keel_stop_request(struct keel *k, int signo)
{
	struct timeval tv;

	if (k->stopping != STOP_NONE) {
		log_info("received %s again: stopping now", sig_name(signo));
		keel_stop_now(k);
		return;
	}
	log_info("received %s: stopping", sig_name(signo));
	k->stopping = STOP_BEGUN;
	notify_send("STOPPING=1\nSTATUS=stopping");
	module_notify(k, KEEL_EVENT_SHUTDOWN);
	keel_write_state(k);
	tv = keel_timeval(k->core.shutdown_timeout);
	evtimer_add(k->stop_timer, &tv);
	k->stopping = STOP_DRAINING;
	keel_stop_next(k);
}

/* systemd's watchdog. */
static void
keel_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_send("WATCHDOG=1");
}

/* Free everything; modules still draining are told to stop now. */
static void
keel_free(struct keel *k)
{
	struct keel_module *m;

	/* Past the loop: a module stopping now is not a drain to report. */
	k->stopping = STOP_FREEING;
	/* The last loaded first, as in a graceful stop. */
	for (;;) {
		struct keel_module *last = NULL;

		for (m = k->modules; m != NULL; m = m->next)
			if (m->state != MODULE_IDLE)
				last = m;
		if (last == NULL)
			break;
		module_stop(last, KEEL_REMOVE_NOW);
		last->state = MODULE_IDLE; /* whatever its hooks did */
	}
	sig_free(k);
	if (k->reload_ev != NULL)
		event_free(k->reload_ev);
	if (k->stop_timer != NULL)
		event_free(k->stop_timer);
	if (k->watchdog_ev != NULL)
		event_free(k->watchdog_ev);
	config_core_free(&k->core);
	module_unload_all(k);
	metric_free_all(k->metrics);
	if (k->base != NULL)
		event_base_free(k->base);
	if (k->statefile != NULL && k->generation > 0) {
		char path[PATH_MAX];

		unlink(k->statefile);
		if (keel_reload_marker(k->statefile, path, sizeof(path)) == 0)
			unlink(path);
	}
	pidfile_release(k->pidfd, k->pidfile);
	notify_close();
	free(k->pidfile);
	free(k->statefile);
	free(k->config_path);
	free(k->last_reload);
	free(k);
}

/* Print collected errors on stderr, one per line. */
static void
keel_print_errors(const struct errbuf *eb)
{
	if (eb->text != NULL)
		fputs(eb->text, stderr);
}

/*
 * Register the application's options and built-in modules, then the
 * loadable ones. A built-in module that fails the checks is the program's
 * own bug: start-up fails with the reason.
 */
int
keel_modules_init(struct keel *k, struct errbuf *eb)
{
	const struct keel_module_desc *const *d;
	char why[1024];

	k->app = k->opt.app;
	if (k->app->root != NULL &&
	    module_register(k, k->app->root, NULL, NULL, 1, why, sizeof(why)) ==
		    -1) {
		errbuf_add(eb, "%s: top-level options: %s", k->app->name, why);
		return -1;
	}
	for (d = k->app->modules; d != NULL && *d != NULL; d++)
		if (module_register(k, *d, NULL, NULL, 0, why, sizeof(why)) ==
		    -1) {
			errbuf_add(eb, "built-in module '%s': %s",
				   (*d)->name != NULL ? (*d)->name : "?", why);
			return -1;
		}
	if (k->opt.module_path != NULL)
		module_scan(k, k->opt.module_path);
	return 0;
}

/* The core's own metrics. */
static int
keel_metrics_init(struct keel *k)
{
	int i;

	k->m_reload_ok = metric_new(
		&k->metrics, KEEL_METRIC_COUNTER, "config_reloads_total",
		"Configuration reloads by result.", "result", "ok");
	k->m_reload_failed = metric_new(
		&k->metrics, KEEL_METRIC_COUNTER, "config_reloads_total",
		"Configuration reloads by result.", "result", "failed");
	k->m_generation =
		metric_new(&k->metrics, KEEL_METRIC_GAUGE, "config_generation",
			   "Configuration generation running (1 at "
			   "start, +1 per applied reload).",
			   NULL, NULL);
	k->m_reload_good = metric_new(
		&k->metrics, KEEL_METRIC_GAUGE, "config_last_reload_successful",
		"Whether the last configuration reload succeeded.", NULL, NULL);
	k->m_reload_good_time = metric_new(
		&k->metrics, KEEL_METRIC_GAUGE,
		"config_last_reload_success_timestamp_seconds",
		"Time of the last successful configuration load, in seconds "
		"since the epoch.",
		NULL, NULL);
	k->m_start_time =
		metric_new(&k->metrics, KEEL_METRIC_GAUGE, "start_time_seconds",
			   "Start time of the process, in seconds "
			   "since the epoch.",
			   NULL, NULL);
	k->m_build_info =
		metric_new(&k->metrics, KEEL_METRIC_GAUGE, "build_info",
			   "Always 1; the version in its label.", "version",
			   k->app->version);
	if (k->m_reload_ok == NULL || k->m_reload_failed == NULL ||
	    k->m_generation == NULL || k->m_reload_good == NULL ||
	    k->m_reload_good_time == NULL || k->m_start_time == NULL ||
	    k->m_build_info == NULL)
		return -1;
	keel_metric_set(k->m_build_info, 1);
	keel_metric_set(k->m_start_time, (int64_t)k->started);
	for (i = 0; i < k->nsig; i++) {
		k->sig_count[i] = metric_new(&k->metrics, KEEL_METRIC_COUNTER,
					     "signals_total",
					     "Signals received, by name.",
					     "signal", sig_name(k->sig_no[i]));
		if (k->sig_count[i] == NULL)
			return -1;
	}
	return 0;
}

/* Allocate the context, find the configuration and load the modules. */
static struct keel *
keel_new(const struct keel_options *opt, struct errbuf *eb)
{
	struct keel *k = calloc(1, sizeof(*k));
	char *real;

	if (k == NULL) {
		errbuf_add(eb, "out of memory");
		return NULL;
	}
	k->opt = *opt;
	k->pidfd = -1;
	k->ready_fd = -1;
	real = realpath(opt->config, NULL);
	if (real == NULL) {
		errbuf_add(eb, "%s: cannot open: %s", opt->config,
			   strerror(errno));
		free(k);
		return NULL;
	}
	k->config_path = real;
	if (keel_modules_init(k, eb) == -1) {
		module_unload_all(k);
		free(k->config_path);
		free(k);
		return NULL;
	}
	return k;
}

/* Fail start-up: tell the waiting parent (or stderr) and clean up. */
static int
keel_start_failed(struct keel *k, struct errbuf *eb)
{
	if (k->ready_fd != -1) {
		keel_log_errors(eb);
		daemonize_failed(k->ready_fd, eb->text != NULL
						      ? eb->text
						      : "start-up failed");
	} else {
		keel_print_errors(eb);
	}
	errbuf_clear(eb);
	k->generation = 0;
	keel_free(k);
	return 1;
}

/*
 * The highest descriptor a peer may make us use. Above it, descriptors are
 * kept for control, reloads, the state file and logs (when clients took
 * every fd, -s status, -s reload and log reopening all failed), and under
 * libevent's select backend nothing may reach FD_SETSIZE (it aborts).
 */
static void
keel_fd_ceiling(struct keel *k)
{
	struct rlimit rl;
	long limit = -1;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		limit = (long)rl.rlim_cur;
	/*
	 * libevent's select backend aborts the process on a descriptor of
	 * FD_SETSIZE or more: lower the limit itself, so that such an open
	 * fails with EMFILE (a device waits and retries) instead.
	 */
	if (strcmp(event_base_get_method(k->base), "select") == 0 &&
	    (limit == -1 || limit > FD_SETSIZE)) {
		limit = FD_SETSIZE;
		rl.rlim_cur = FD_SETSIZE;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			log_info("select backend: at most %d descriptors",
				 FD_SETSIZE);
	}
	k->fd_ceiling = limit == -1 ? -1 : limit - KEEL_FD_RESERVE;
	if (limit != -1 && k->fd_ceiling < limit / 2)
		k->fd_ceiling = limit / 2;
	log_debug("descriptors: peers may use up to %ld, %ld kept back",
		  k->fd_ceiling, limit - k->fd_ceiling);
}

/* Create the base and everything on it. */
static int
keel_setup_loop(struct keel *k, struct errbuf *eb)
{
	uint64_t wd;

	k->base = event_base_new();
	if (k->base == NULL) {
		errbuf_add(eb, "cannot create the event base");
		return -1;
	}
	keel_fd_ceiling(k);
	k->reload_ev = event_new(k->base, -1, 0, keel_reload_cb, k);
	k->stop_timer = evtimer_new(k->base, keel_stop_timeout_cb, k);
	if (k->reload_ev == NULL || k->stop_timer == NULL ||
	    sig_install(k) == -1 || keel_metrics_init(k) == -1) {
		errbuf_add(eb, "cannot set up signal and timer events");
		return -1;
	}
	wd = notify_watchdog_usec();
	if (wd > 0) {
		struct timeval tv = keel_timeval((double)wd / 2e6);

		k->watchdog_ev =
			event_new(k->base, -1, EV_PERSIST, keel_watchdog_cb, k);
		if (k->watchdog_ev == NULL ||
		    event_add(k->watchdog_ev, &tv) == -1) {
			errbuf_add(eb, "cannot set up the watchdog timer");
			return -1;
		}
	}
	return 0;
}

/* @path made absolute against the current directory (before chdir "/"). */
static char *
keel_absolute(const char *path)
{
	char cwd[4096], *out = NULL;

	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return strdup(path);
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

/*
 * Create the state file's directory when missing (as /run/keel is on a
 * fresh boot without systemd's RuntimeDirectory), owned by `user`.
 */
static void
keel_make_state_dir(struct keel *k)
{
	char *dir = strdup(k->statefile), *slash;
	struct passwd *pw;

	if (dir == NULL)
		return;
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == 0) {
			log_info("created %s", dir);
			if (geteuid() == 0 && k->core.user != NULL &&
			    (pw = getpwnam(k->core.user)) != NULL &&
			    chown(dir, pw->pw_uid, pw->pw_gid) == -1)
				log_warn("chown %s", dir);
		}
	}
	free(dir);
}

/*
 * A log file root creates before dropping privileges belongs to `user` and
 * `group` (as privs_drop resolves them), who must reopen it afterwards.
 */
static void
keel_log_owner(const struct config *cfg)
{
	struct passwd *pw;
	struct group *gr;
	gid_t gid;

	if (geteuid() != 0 || cfg->core.user == NULL ||
	    (pw = getpwnam(cfg->core.user)) == NULL)
		return;
	gid = pw->pw_gid;
	if (cfg->core.group != NULL && (gr = getgrnam(cfg->core.group)) != NULL)
		gid = gr->gr_gid;
	log_set_owner(pw->pw_uid, gid);
}

/* Run the daemon: start, serve until stopped. Returns the exit status. */
int
keel_main_run(const struct keel_options *opt)
{
	struct errbuf eb = { 0 };
	struct keel *k;
	struct config *cfg;
	pid_t holder;
	const char *user, *group, *name;

	log_init(opt->app->name, opt->debug ? KEEL_LOG_DEBUG : KEEL_LOG_INFO);
	k = keel_new(opt, &eb);
	if (k == NULL) {
		keel_print_errors(&eb);
		errbuf_clear(&eb);
		return 1;
	}
	/* Parse before forking: a bad file is reported on the terminal. */
	cfg = config_load(k, k->config_path, &eb);
	if (cfg == NULL)
		return keel_start_failed(k, &eb);
	k->pidfile = keel_absolute(opt->pidfile != NULL ? opt->pidfile
							: cfg->core.pidfile);
	k->statefile = strdup(cfg->core.statefile);
	k->pidfd = pidfile_acquire(k->pidfile, &holder, &eb);
	if (k->pidfd == -1) {
		config_free(cfg);
		return keel_start_failed(k, &eb);
	}
	if (notify_init() == 0 && !opt->foreground)
		k->ready_fd = daemonize_begin();
	if (pidfile_write(k->pidfd, getpid()) == -1)
		errbuf_add(&eb, "cannot write pidfile %s: %s", k->pidfile,
			   strerror(errno));
	k->started = time(NULL);
	clock_gettime(CLOCK_MONOTONIC, &k->started_mono);
	if (eb.count > 0 || keel_setup_loop(k, &eb) == -1) {
		config_free(cfg);
		return keel_start_failed(k, &eb);
	}
	keel_log_owner(cfg);
	/* The first configuration is a transaction like any reload. */
	if (reload_transaction(k, cfg, 0, &eb) == -1)
		return keel_start_failed(k, &eb);
	k->generation = 1;
	keel_set_last_reload(k, NULL);
	user = k->core.user;
	group = k->core.group;
	keel_make_state_dir(k);
	if (privs_drop(user, group, &eb) == -1)
		return keel_start_failed(k, &eb);
	log_set_owner((uid_t)-1, (gid_t)-1);
	if (state_write(k->statefile, "", 0) == -1) {
		errbuf_add(&eb, "cannot write state file %s: %s", k->statefile,
			   strerror(errno));
		return keel_start_failed(k, &eb);
	}
	keel_write_state(k);
	log_info("%s %s started (pid %ld, generation 1, configuration %s)",
		 k->app->name, k->app->version, (long)getpid(), k->config_path);
	notify_send("READY=1\nMAINPID=%ld\nSTATUS=running, generation 1",
		    (long)getpid());
	daemonize_ready(k->ready_fd);
	k->ready_fd = -1;
	sig_unblock(k);
	event_base_dispatch(k->base);
	/* Modules still draining are released in keel_free: log after it. */
	name = k->app->name;
	keel_free(k);
	log_info("%s stopped", name);
	log_close();
	return 0;
}

/* Check that `user` and `group` name existing accounts. */
static int
keel_check_accounts(const struct config *c, struct errbuf *eb)
{
	const char *file;
	int bad = 0, line;

	if (c->core.user != NULL && getpwnam(c->core.user) == NULL) {
		line = config_opt_line(c, NULL, "user", &file);
		errbuf_add(eb, "%s:%d: user '%s' does not exist", file, line,
			   c->core.user);
		bad = 1;
	}
	if (c->core.group != NULL && getgrnam(c->core.group) == NULL) {
		line = config_opt_line(c, NULL, "group", &file);
		errbuf_add(eb, "%s:%d: group '%s' does not exist", file, line,
			   c->core.group);
		bad = 1;
	}
	return bad ? -1 : 0;
}

/* -t: everything a start or a reload would check, nothing more. */
int
keel_main_check(const struct keel_options *opt)
{
	struct errbuf eb = { 0 };
	struct keel *k;
	struct config *cfg;
	int rc = 1;

	log_init(opt->app->name,
		 opt->debug ? KEEL_LOG_DEBUG : KEEL_LOG_WARNING);
	k = keel_new(opt, &eb);
	if (k == NULL) {
		keel_print_errors(&eb);
		errbuf_clear(&eb);
		return 1;
	}
	k->base = event_base_new();
	cfg = k->base != NULL ? config_load(k, k->config_path, &eb) : NULL;
	if (cfg != NULL && keel_check_accounts(cfg, &eb) == -1)
		config_free(cfg);
	else if (cfg != NULL &&
		 reload_transaction(k, cfg, KEEL_PREPARE_CHECK, &eb) == 0)
		rc = 0;
	if (rc == 0 && opt->dump) {
		/* The transaction consumed its copy: convert the file again. */
		cfg = config_load(k, k->config_path, &eb);
		if (cfg != NULL)
			config_print(cfg, stdout);
		else
			rc = 1;
		config_free(cfg);
	}
	if (rc == 0)
		printf("%s%s: configuration OK\n", opt->dump ? "# " : "",
		       k->config_path);
	else
		keel_print_errors(&eb);
	errbuf_clear(&eb);
	keel_free(k);
	return rc;
}

/* First call in main: signal dispositions before anything can arrive. */
void
keel_main_early(const struct keel_app *app)
{
	sig_block_early(app);
	/*
	 * Buffers of a streaming port come and go by 64 KiB: with glibc's
	 * default trim threshold every batch grew and shrank the heap (a
	 * brk pair per 64 KiB, measured). Keep up to 1 MiB of freed top.
	 */
	mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
}
