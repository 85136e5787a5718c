/* Internal interfaces of libkeel; never installed. */
#ifndef KEEL_INTERNAL_H
#define KEEL_INTERNAL_H

#include <confuse.h>
#include <keel/log.h>
#include <keel/module.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct event;
struct event_base;
struct evbuffer;
struct keel;

/* ---- errors collected during a parse or a transaction (errbuf.c) ---- */
struct errbuf {
	char *text; /* every message, one per line */
	size_t len;
	char *first; /* the first message, for last-reload */
	int count;
};
void errbuf_add(struct errbuf *eb, const char *fmt, ...) KEEL_PRINTF(2, 3);
void errbuf_vadd(struct errbuf *eb, const char *fmt, va_list ap)
	KEEL_PRINTF(2, 0);
void errbuf_clear(struct errbuf *eb);

/* ---- logging (log.c) ---- */
void log_init(const char *ident, int level);
int log_level_parse(const char *name);
const char *log_level_name(int level);
int log_configure(const char *target, int level, struct errbuf *eb);
void log_set_level(int level);
void log_set_pid(pid_t pid);
void log_reopen(void);
void log_close(void);
const char *log_target(void);
void log_warn(const char *fmt, ...) KEEL_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) KEEL_PRINTF(1, 2);
void log_info(const char *fmt, ...) KEEL_PRINTF(1, 2);
void log_debug(const char *fmt, ...) KEEL_PRINTF(1, 2);
__attribute__((noreturn)) void fatal(const char *fmt, ...) KEEL_PRINTF(1, 2);
__attribute__((noreturn)) void fatalx(const char *fmt, ...) KEEL_PRINTF(1, 2);

/* ---- configuration (config.c) ---- */
#define CONFIG_MAX_SIZE  (1 << 20)
#define CONFIG_MAX_DEPTH 32

struct config_section_pos {
	char *file;
	char *name;
	char *title;
	int line;
};
struct config_scan {
	struct config_section_pos *secs;
	size_t nsecs;
	char *pidfile;   /* top-level pidfile = "..." if seen */
	char *statefile; /* top-level state-file = "..." if seen */
	/* If set by the caller: receives the text with comments blanked
	 * (newlines kept), for libconfuse. May be the text itself. */
	char *clean;
};
int config_scan_text(const char *file, const char *text, size_t len,
		     struct config_scan *sc, struct errbuf *eb);
void config_scan_free(struct config_scan *sc);
int config_read_file(const char *path, char **text, size_t *len,
		     struct errbuf *eb);
cfg_t *config_load(struct keel *k, const char *path, struct errbuf *eb);
int config_validate(struct keel *k, cfg_t *cfg, struct errbuf *eb);
int config_section_line(const char *name, const char *title);
const char *config_display_name(const char *filename);
int config_peek_paths(const char *path, char **pidfile, char **statefile);
double config_float(cfg_t *cfg, const char *name);

/*
 * The core's own values of a configuration. keeld keeps these, not the
 * parsed tree (libconfuse keeps some 6 KB per section: 6 MB for a
 * thousand serial ports).
 */
struct keel_core {
	char *pidfile;
	char *statefile;
	char *log;   /* NULL: not set */
	char *user;  /* NULL: not set */
	char *group; /* NULL: not set */
	int level;
	double shutdown_timeout;
};
int config_core(cfg_t *cfg, struct keel_core *core);
void config_core_free(struct keel_core *core);

/* ---- modules (module.c) ---- */
enum module_state { MODULE_IDLE, MODULE_RUNNING, MODULE_STOPPING };
struct keel_module {
	struct keel_module *next;
	struct keel *k;
	char *name;
	char *path;
	void *dl;
	const struct keel_module_desc *desc;
	enum module_state state;
	int started_now; /* started by the transaction under way */
	int remove_now;  /* removed by the transaction under way */
	void *txn;
	void *data;
	struct keel_counter *counters;
	struct errbuf *eb; /* where keel_module_error writes, during prepare */
};
struct module_refused {
	struct module_refused *next;
	char *name;
	char *reason;
};
int module_scan(struct keel *k, const char *dir);
struct keel_module *module_find(struct keel *k, const char *name);
const char *module_refusal(struct keel *k, const char *name);
void module_unload_all(struct keel *k);
int module_load_file(struct keel *k, const char *dir, const char *file,
		     char *why, size_t whylen);
void module_notify(struct keel *k, enum keel_event ev);
void module_status(struct keel *k, struct keel_status *st);
void module_order(struct keel *k, cfg_t *cfg);
void module_stop(struct keel_module *m);

/* ---- status dumps (status.c) ---- */
struct keel_status {
	struct evbuffer *buf;
};
struct keel_status *status_new(void);
void status_free(struct keel_status *st);
const char *status_text(struct keel_status *st, size_t *len);

/* ---- pidfile (pidfile.c) ---- */
int pidfile_acquire(const char *path, pid_t *holder, struct errbuf *eb);
int pidfile_write(int fd, pid_t pid);
void pidfile_release(int fd, const char *path);
pid_t pidfile_running(const char *path, struct errbuf *eb);

/* ---- sd_notify (notify.c) ---- */
int notify_init(void);
int notify_enabled(void);
void notify_send(const char *fmt, ...) KEEL_PRINTF(1, 2);
uint64_t notify_watchdog_usec(void);
void notify_close(void);

/* ---- state file (state.c) ---- */
int state_write(const char *path, const char *text, size_t len);
char *state_read(const char *path);
char *state_get(const char *text, const char *key);

/* ---- privileges (privs.c) ---- */
int privs_drop(const char *user, const char *group, struct errbuf *eb);

/* ---- daemonize (daemonize.c) ---- */
int daemonize_begin(void);
void daemonize_ready(int fd);
void daemonize_failed(int fd, const char *msg);

/* ---- signals (sig.c) ---- */
void sig_block_early(void);
int sig_install(struct keel *k);
void sig_unblock(void);
void sig_free(struct keel *k);
const char *sig_name(int signo);

/* ---- the daemon (keel.c, reload.c) ---- */
struct keel_options {
	const char *config;      /* -f */
	const char *module_path; /* -M */
	const char *pidfile;     /* -p */
	int foreground;          /* -n */
	int debug;               /* -d */
};

#define KEEL_NSIG 6
struct keel {
	struct keel_options opt;
	char *config_path; /* absolute */
	struct event_base *base;
	struct keel_core core; /* the running configuration's core values */
	struct keel_module *modules;
	struct module_refused *refused;
	unsigned long generation;
	unsigned long reloads_started;
	unsigned long reloads_done;
	char *last_reload; /* "ok" or "failed: ..." */
	time_t started;
	struct timespec started_mono;
	struct event *sig_ev[KEEL_NSIG];
	struct event *reload_ev;
	struct event *stop_ev;
	struct event *stop_timer;
	struct event *watchdog_ev;
	int stopping;
	int pidfd;
	char *pidfile;
	char *statefile;
	int ready_fd; /* daemonize pipe, -1 when none */
	int reload_pending;
	int stop_walking;
	unsigned long dumps;
};

int reload_transaction(struct keel *k, cfg_t *parsed, unsigned int flags,
		       struct errbuf *eb);
void keel_apply_core(struct keel *k, const struct keel_core *old);
void keel_reload_request(struct keel *k);
void keel_stop_request(struct keel *k, int signo);
void keel_status_dump(struct keel *k, int to_log);
void keel_wake(struct keel *k);
void keel_module_drained(struct keel *k);
void keel_write_state(struct keel *k);

KEEL_EXPORT int keel_main_run(const struct keel_options *opt);
KEEL_EXPORT int keel_main_check(const struct keel_options *opt);
KEEL_EXPORT int keel_main_control(const struct keel_options *opt,
				  const char *cmd);
KEEL_EXPORT void keel_main_early(void);

#endif
