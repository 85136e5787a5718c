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

/* A timeval from seconds. */
struct timeval
keel_timeval(double seconds)
{
	struct timeval tv;

	if (seconds < 0)
		seconds = 0;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	return tv;
}

/* Replace k->last_reload. */
static void
keel_set_last_reload(struct keel *k, const char *fmt, const char *detail)
{
	char *s = NULL;

	if (asprintf(&s, fmt, detail) < 0)
		return;
	free(k->last_reload);
	k->last_reload = s;
}

/* Build the status dump every consumer shares. */
static struct keel_status *
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
		if (m->state == MODULE_IDLE)
			continue;
		used += (size_t)snprintf(
			mods + used, sizeof(mods) - used, "%s%s %s%s",
			used ? ", " : "", m->name, m->desc->version,
			m->state == MODULE_STOPPING ? " (stopping)" : "");
		if (used >= sizeof(mods))
			break;
	}
	keel_status_add(st, "pid", "%ld", (long)getpid());
	keel_status_add(st, "version", "%s", KEEL_VERSION);
	keel_status_add(st, "state", "%s",
			k->stopping ? "stopping" : "running");
	keel_status_add(st, "uptime", "%lld",
			(long long)(now.tv_sec - k->started_mono.tv_sec));
	keel_status_add(st, "started", "%lld", (long long)k->started);
	keel_status_add(st, "generation", "%lu", k->generation);
	keel_status_add(st, "last-reload", "%s",
			k->last_reload != NULL ? k->last_reload : "none");
	keel_status_add(st, "reload-started", "%lu", k->reloads_started);
	keel_status_add(st, "reload-done", "%lu", k->reloads_done);
	keel_status_add(st, "dumps", "%lu", k->dumps);
	keel_status_add(st, "config", "%s", k->config_path);
	keel_status_add(st, "modules", "%s", mods);
	module_status(k, st);
	return st;
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
	status_free(st);
}

/* SIGUSR2: status to the log (when asked) and to the state file. */
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
	status_free(st);
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
	if (k->stopping)
		return;
	k->reloads_started++;
	keel_write_state(k);
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
		    keel_monotonic_usec());
	if (reload_transaction(k, NULL, 0, &eb) == 0) {
		k->generation++;
		keel_set_last_reload(k, "ok%s", "");
		log_info("reload applied: generation %lu", k->generation);
		module_notify(k, KEEL_EVENT_RELOAD);
		notify_send(
			"READY=1\nSTATUS=running, generation %lu (reload applied)",
			k->generation);
	} else {
		keel_log_errors(&eb);
		keel_set_last_reload(k, "failed: %s",
				     eb.first != NULL ? eb.first
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
	int level = k->opt.debug ? KEEL_LOG_DEBUG : c->level;

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
	/* The state file moves with the configuration: keeld -s reads it there.
	 */
	if (k->statefile != NULL && strcmp(k->statefile, c->statefile) != 0) {
		char *moved = strdup(c->statefile);

		if (moved != NULL) {
			unlink(k->statefile);
			free(k->statefile);
			k->statefile = moved;
			log_info("state file now %s", moved);
		}
	}
	if (keel_differ(old->pidfile, c->pidfile))
		log_warnx(
			"pidfile changed: it takes effect only when keeld restarts");
	if (keel_differ(old->user, c->user))
		log_warnx(
			"user changed: it takes effect only when keeld restarts");
	if (keel_differ(old->group, c->group))
		log_warnx(
			"group changed: it takes effect only when keeld restarts");
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
				return; /* wait for its keel_module_stopped() */
			}
			if (m->state == MODULE_RUNNING)
				last = m;
		}
		if (last == NULL)
			break;
		module_stop(last);
	}
	k->stop_walking = 0;
	log_info("every module has drained");
	keel_stop_now(k);
}

/* A module has drained: stop the next one, or leave. */
void
keel_module_drained(struct keel *k)
{

	if (k->stopping == 2)
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

	if (k->stopping) {
		log_info("received %s again: stopping now", sig_name(signo));
		keel_stop_now(k);
		return;
	}
	log_info("received %s: stopping", sig_name(signo));
	k->stopping = 1;
	notify_send("STOPPING=1\nSTATUS=stopping");
	module_notify(k, KEEL_EVENT_SHUTDOWN);
	keel_write_state(k);
	tv = keel_timeval(k->core.shutdown_timeout);
	evtimer_add(k->stop_timer, &tv);
	k->stopping = 2;
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
	k->stopping = 3;
	for (m = k->modules; m != NULL; m = m->next) {
		if (m->state == MODULE_RUNNING)
			module_stop(m);
		/* A second stop means: release everything now. */
		if (m->state == MODULE_STOPPING)
			m->desc->stop(m);
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
	if (k->base != NULL)
		event_base_free(k->base);
	if (k->statefile != NULL && k->generation > 0)
		unlink(k->statefile);
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
	module_scan(k, opt->module_path);
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
	k->reload_ev = event_new(k->base, -1, 0, keel_reload_cb, k);
	k->stop_timer = evtimer_new(k->base, keel_stop_timeout_cb, k);
	if (k->reload_ev == NULL || k->stop_timer == NULL ||
	    sig_install(k) == -1) {
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

/* Run keeld: start, serve until stopped. Returns the exit status. */
int
keel_main_run(const struct keel_options *opt)
{
	struct errbuf eb = { 0 };
	struct keel *k;
	cfg_t *cfg;
	pid_t holder;
	const char *user, *group;

	log_init("keeld", opt->debug ? KEEL_LOG_DEBUG : KEEL_LOG_INFO);
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
	k->pidfile = keel_absolute(opt->pidfile != NULL
					   ? opt->pidfile
					   : cfg_getstr(cfg, "pidfile"));
	k->statefile = strdup(cfg_getstr(cfg, "state-file"));
	k->pidfd = pidfile_acquire(k->pidfile, &holder, &eb);
	if (k->pidfd == -1) {
		cfg_free(cfg);
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
		cfg_free(cfg);
		return keel_start_failed(k, &eb);
	}
	/* The first configuration is a transaction like any reload. */
	if (reload_transaction(k, cfg, 0, &eb) == -1)
		return keel_start_failed(k, &eb);
	k->generation = 1;
	keel_set_last_reload(k, "ok%s", "");
	user = k->core.user;
	group = k->core.group;
	keel_make_state_dir(k);
	if (privs_drop(user, group, &eb) == -1)
		return keel_start_failed(k, &eb);
	if (state_write(k->statefile, "", 0) == -1) {
		errbuf_add(&eb, "cannot write state file %s: %s", k->statefile,
			   strerror(errno));
		return keel_start_failed(k, &eb);
	}
	keel_write_state(k);
	log_info("keeld %s started (pid %ld, generation 1, configuration %s)",
		 KEEL_VERSION, (long)getpid(), k->config_path);
	notify_send("READY=1\nMAINPID=%ld\nSTATUS=running, generation 1",
		    (long)getpid());
	daemonize_ready(k->ready_fd);
	k->ready_fd = -1;
	sig_unblock();
	event_base_dispatch(k->base);
	log_info("keeld stopped");
	keel_free(k);
	log_close();
	return 0;
}

/* Check that `user` and `group` name existing accounts. */
static int
keel_check_accounts(cfg_t *cfg, struct errbuf *eb)
{
	int bad = 0;

	if (cfg_size(cfg, "user") > 0 &&
	    getpwnam(cfg_getstr(cfg, "user")) == NULL) {
		errbuf_add(eb, "%s: user '%s' does not exist", cfg->filename,
			   cfg_getstr(cfg, "user"));
		bad = 1;
	}
	if (cfg_size(cfg, "group") > 0 &&
	    getgrnam(cfg_getstr(cfg, "group")) == NULL) {
		errbuf_add(eb, "%s: group '%s' does not exist", cfg->filename,
			   cfg_getstr(cfg, "group"));
		bad = 1;
	}
	return bad ? -1 : 0;
}

/* keeld -t: everything a start or a reload would check, nothing more. */
int
keel_main_check(const struct keel_options *opt)
{
	struct errbuf eb = { 0 };
	struct keel *k;
	cfg_t *cfg;
	int rc = 1;

	log_init("keeld", opt->debug ? KEEL_LOG_DEBUG : KEEL_LOG_WARNING);
	k = keel_new(opt, &eb);
	if (k == NULL) {
		keel_print_errors(&eb);
		errbuf_clear(&eb);
		return 1;
	}
	k->base = event_base_new();
	cfg = k->base != NULL ? config_load(k, k->config_path, &eb) : NULL;
	if (cfg != NULL && keel_check_accounts(cfg, &eb) == -1)
		cfg_free(cfg);
	else if (cfg != NULL &&
		 reload_transaction(k, cfg, KEEL_PREPARE_CHECK, &eb) == 0)
		rc = 0;
	if (rc == 0)
		printf("%s: configuration OK\n", k->config_path);
	else
		keel_print_errors(&eb);
	errbuf_clear(&eb);
	keel_free(k);
	return rc;
}

/* First call in main: signal dispositions before anything can arrive. */
void
keel_main_early(void)
{
	sig_block_early();
	/*
	 * Buffers of a streaming port come and go by 64 KiB: with glibc's
	 * default trim threshold every batch grew and shrank the heap (a
	 * brk pair per 64 KiB, measured). Keep up to 1 MiB of freed top.
	 */
	mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
}
