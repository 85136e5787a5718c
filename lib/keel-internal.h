/* SPDX-License-Identifier: ISC */
/* Internal interfaces of libkeel; never installed. */
#ifndef KEEL_INTERNAL_H
#define KEEL_INTERNAL_H

#include <keel/daemon.h>
#include <keel/log.h>
#include <keel/metrics.h>
#include <keel/module.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
const char *log_ident(void);
int log_open_safe(const char *path, int create, char *why, size_t whylen);
int log_limit_begin(struct keel_ratelimit *rl, int level, const char *prefix);
int log_level_parse(const char *name);
const char *log_level_name(int level);
int log_configure(const char *target, int level, struct errbuf *eb);
void log_set_level(int level);
void log_set_pid(pid_t pid);
void log_set_owner(uid_t uid, gid_t gid);
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
#define CONFIG_MAX_SIZE      (1 << 20)
#define CONFIG_MAX_DEPTH     32
#define CONFIG_MAX_EXPANSION (4 << 20)

/* Where an option of a section (or of the top level) is written. */
struct config_opt_pos {
	char *key;
	char *file; /* top-level options only (sections have theirs) */
	int line;
};
struct config_section_pos {
	char *file;
	char *name;
	char *title;
	int line;
	struct config_opt_pos *opts;
	size_t nopts;
};
struct config_scan {
	struct config_section_pos *secs;
	size_t nsecs;
	struct config_opt_pos *root; /* top-level options */
	size_t nroot;
	struct keel_list load; /* the top-level `load`, as written */
	size_t tokens;         /* words, strings and signs seen */
	size_t expanded;       /* bytes ${VAR} will expand to, in all */
	char *pidfile;         /* top-level pidfile = "..." if seen */
	char *statefile;       /* top-level state-file = "..." if seen */
	/* If set by the caller: receives the text with comments blanked
	 * (newlines kept), for libconfuse. May be the text itself. */
	char *clean;
};
int config_scan_text(const char *file, const char *text, size_t len,
		     struct config_scan *sc, struct errbuf *eb);
void config_scan_free(struct config_scan *sc);
int config_read_file_max(const char *path, size_t max, int oflags, char **text,
			 size_t *len, struct errbuf *eb);
int config_read_file(const char *path, char **text, size_t *len,
		     struct errbuf *eb);
int config_peek_paths(const char *path, char **pidfile, char **statefile);

/*
 * The core's own values of a configuration, filled from the core's option
 * table. keeld keeps these and the modules' structs, not libconfuse's tree
 * (some 6 KB per section: 6 MB for a thousand serial ports).
 */
struct keel_core {
	char *pidfile;
	char *statefile;
	char *log;   /* NULL: not set */
	char *user;  /* NULL: not set */
	char *group; /* NULL: not set */
	int level;   /* index into the log-level words */
	double shutdown_timeout;
	struct keel_list load;
};
int core_level(const struct keel_core *core);
int core_loads(const struct keel_core *core, const char *name);
void config_core_free(struct keel_core *core);

/* One section of a parsed configuration, converted. */
struct config_section {
	struct keel_module *m;
	char *title;
	const struct config_section_pos *pos; /* NULL: not written */
	/* The module's defaults section (KEEL_SECTION_TITLED_DEFAULTS), for
	 * the line of an inherited option; NULL: none. */
	const struct config_section_pos *defpos;
	void *conf; /* the module's filled struct; taken by an instance */
};

/* A parsed, converted configuration: what a transaction proposes. */
struct config {
	char *path;
	struct keel_core core;
	void *root_conf; /* the application's top-level options */
	const struct keel_option *root_opts;
	struct config_section *secs;
	size_t nsecs, capsecs;
	/* Defaults sections (`name { }` of a KEEL_SECTION_TITLED_DEFAULTS
	 * module): no instances; conf holds only the options written. */
	struct config_section *defs;
	size_t ndefs;
	struct keel_module *modules; /* the registry it was converted for */
	struct config_scan scan;     /* where everything is written */
	int empty; /* the main file holds only blanks and comments */
};
struct config *config_load(struct keel *k, const char *path, struct errbuf *eb);
void config_free(struct config *c);
void config_print(const struct config *c, FILE *fp);
void config_module_free(struct keel_module *m);
int config_loads(const struct config *c, const char *name);
int config_opt_line(const struct config *c, const struct config_section *sec,
		    const char *option, const char **file);
void config_error_at(const struct config *c, const struct config_section *sec,
		     const char *option, struct errbuf *eb, const char *msg);

/* ---- typed options (option.c) ---- */
int option_index(const struct keel_option *opts, const char *name);
int option_count(const struct keel_option *opts);
int option_parse(const struct keel_option *o, const char *text, void *conf,
		 char *err, size_t errlen);
void option_free_one(const struct keel_option *o, void *conf);
void option_conf_free(const struct keel_option *opts, void *conf);
int option_equal(const struct keel_option *o, const void *a, const void *b);
int option_cmp(const struct keel_option *o, const void *a, const void *b);
int option_is_set(const struct keel_option *o, const void *conf);
uint64_t option_diff(const struct keel_option *opts, const void *a,
		     const void *b);
const char *option_text(const struct keel_option *o, const void *conf,
			char *buf, size_t len);
void option_print_string(FILE *fp, const char *s);
void option_print(FILE *fp, const struct keel_option *o, const void *conf,
		  int indent);
int option_check_table(const struct keel_option *opts, size_t conf_size,
		       char *why, size_t whylen);

/* ---- metrics (metrics.c) ---- */
/*
 * A thousand ports register twenty metrics each: 40 bytes (one 48-byte
 * malloc chunk) per metric. A label, rare (the core's own metrics), lives in
 * a larger allocation behind it (metric_label, metric_label_value).
 */
struct keel_metric {
	struct keel_metric *next;
	const char *name, *help; /* the caller's: static strings */
	union {
		int64_t v;
		const uint64_t *src; /* bound: read from there */
	} u;
	enum keel_metric_type type;
	unsigned char bound, labelled;
};
const char *metric_label(const struct keel_metric *mt);
const char *metric_label_value(const struct keel_metric *mt);
struct keel_metric *metric_new(struct keel_metric **list,
			       enum keel_metric_type type, const char *name,
			       const char *help, const char *label,
			       const char *value);
void metric_free_all(struct keel_metric *mt);
void metric_status(const struct keel_metric *mt, struct keel_status *st);

/* ---- modules and instances (module.c) ---- */
enum module_state { MODULE_IDLE, MODULE_RUNNING, MODULE_STOPPING };
struct keel_module {
	struct keel_module *next;
	struct keel *k;
	char *name;
	char *path; /* NULL: built in */
	void *dl;
	const struct keel_module_desc *desc;
	int root;       /* the application's top-level options */
	void *cfg_opts; /* libconfuse's schema of the section (config.c) */
	void *defaults; /* the built-in defaults of plain numbers, parsed */
	uint64_t defaults_set; /* bit i: option i's default is in .defaults */
	enum module_state state;
	int started_now; /* started by the transaction under way */
	int remove_now;  /* removed by the transaction under way */
	void *data;
	struct keel_metric *metrics;
	struct keel_instance *instances; /* in configuration order */
	struct errbuf *eb;               /* where errors go, during prepare */
};

enum instance_state { INSTANCE_PROPOSED, INSTANCE_RUNNING, INSTANCE_REMOVING };
struct keel_instance {
	struct keel_instance *next;
	struct keel_module *m;
	char *title;
	enum instance_state state;
	void *conf;      /* running; NULL while proposed */
	void *next_conf; /* proposed by the transaction under way */
	enum keel_change change;
	uint64_t changed;                /* bit i: option i differs */
	int prepared;                    /* abort is owed */
	int matched;                     /* the new configuration keeps it */
	struct keel_instance *successor; /* re-created as */
	int in_hook, gone;
	int stopping_now; /* module_stop has removed it */
	size_t order;     /* its section's place in the configuration */
	size_t pos;       /* its place in the list, while sorting */
	void *data, *plan;
	struct keel_metric *metrics;
	const struct config *cfg; /* during a transaction */
	const struct config_section *sec;
};

struct module_refused {
	struct module_refused *next;
	char *name;
	char *reason;
};
int module_scan(struct keel *k, const char *dir);
int module_register(struct keel *k, const struct keel_module_desc *d,
		    const char *path, void *dl, int root, char *why,
		    size_t whylen);
struct keel_module *module_find(struct keel *k, const char *name);
const char *module_refusal(struct keel *k, const char *name);
void module_unload_all(struct keel *k);
int module_load_file(struct keel *k, const char *dir, const char *file,
		     char *why, size_t whylen);
void module_notify(struct keel *k, enum keel_event ev);
void module_status(struct keel *k, struct keel_status *st);
void module_order(struct keel *k, const struct config *c);
void module_stop(struct keel_module *m, unsigned int flags);
struct keel_instance *instance_new(struct keel_module *m, const char *title);
void instance_remove(struct keel_instance *in, unsigned int flags);
void instance_destroy(struct keel_instance *in);

/* ---- status (status.c) ---- */
enum status_type {
	STATUS_STR,
	STATUS_INT,
	STATUS_UINT,
	STATUS_DOUBLE,
	STATUS_BOOL,
	STATUS_TIME,
	STATUS_PUSH,
	STATUS_PUSH_LIST, /* a group whose groups are items, numbered from 1 */
	STATUS_POP,
};
struct status_entry {
	enum status_type type;
	char *key;
	union {
		char *s;
		int64_t i;
		uint64_t u;
		double d;
	} v;
};
struct status_chunk {
	struct status_chunk *next;
	size_t size, used;
	char data[];
};
struct keel_status {
	struct status_entry *e;
	size_t n, cap;
	struct status_chunk *chunks; /* keys and strings */
	char *text;
};
struct keel_status *status_new(void);
void status_free(struct keel_status *st);
const char *status_text(struct keel_status *st, size_t *len);
void status_int_ref(struct keel_status *st, const char *key, int64_t value);
void status_push_ref(struct keel_status *st, const char *key);
struct keel_status *keel_status_build(struct keel *k);
struct evbuffer;
int status_json(const struct keel_status *st, struct evbuffer *out);
void keel_status_free(struct keel_status *st);

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
void sig_block_early(const struct keel_app *app);
int sig_install(struct keel *k);
void sig_unblock(const struct keel *k);
void sig_free(struct keel *k);
const char *sig_name(int signo);

/* ---- serial devices (serial.c) ---- */
/* Route the modem, break, purge and read-back ioctls of every port through
 * @fn, a simulated device in tests (thread-safe: watcher threads call it);
 * NULL restores ioctl(2). */
void serial_set_ioctl(int (*fn)(int fd, unsigned long req, void *arg));
/* Seconds between two TIOCMGET polls where TIOCMIWAIT is missing (1). */
void serial_set_modem_poll(double seconds);
/* The signal (no-op handler, no SA_RESTART) that stops a watcher thread. */
int serial_modem_signal(void);

/* ---- the daemon (keel.c, reload.c, main.c) ---- */
struct keel_options {
	const struct keel_app *app;
	const char *config;      /* -f */
	const char *module_path; /* -M; NULL: none */
	const char *pidfile;     /* -p */
	int foreground;          /* -n */
	int debug;               /* -d */
	int dump;                /* -T */
};

/* How far a stop has come. */
enum keel_stopping {
	STOP_NONE,     /* running */
	STOP_BEGUN,    /* SIGTERM seen, modules told */
	STOP_DRAINING, /* modules stop one at a time */
	STOP_FREEING,  /* past the loop: stops are not drains to report */
};

#define KEEL_NSIG_MAX   16
#define KEEL_FD_RESERVE 64 /* descriptors kept from peers */
struct keel {
	struct keel_options opt;
	const struct keel_app *app;
	char *config_path; /* absolute */
	struct event_base *base;
	struct keel_core core; /* the running configuration's core values */
	struct keel_module *modules;
	struct module_refused *refused;
	struct keel_metric *metrics; /* the core's own */
	struct keel_metric *m_reload_ok, *m_reload_failed;
	struct keel_metric *m_generation, *m_reload_good, *m_reload_good_time;
	struct keel_metric *m_start_time, *m_build_info;
	unsigned long generation;
	unsigned long reloads_started;
	unsigned long reloads_done;
	char *last_reload; /* "ok" or "failed: ..." */
	time_t last_reload_time, last_reload_ok_time;
	time_t started;
	struct timespec started_mono;
	int nsig;
	int sig_no[KEEL_NSIG_MAX];
	enum keel_action sig_action[KEEL_NSIG_MAX];
	struct keel_metric *sig_count[KEEL_NSIG_MAX];
	struct event *sig_ev[KEEL_NSIG_MAX];
	struct event *reload_ev;
	struct event *stop_timer;
	struct event *watchdog_ev;
	enum keel_stopping stopping;
	int pidfd;
	char *pidfile;
	char *statefile;
	int ready_fd; /* daemonize pipe, -1 when none */
	int reload_pending;
	int stop_walking;
	long fd_ceiling; /* peers' descriptors stay below; -1: no limit */
	unsigned long dumps;
};

int keel_modules_init(struct keel *k, struct errbuf *eb);
int reload_transaction(struct keel *k, struct config *c, unsigned int flags,
		       struct errbuf *eb);
void keel_apply_core(struct keel *k, const struct keel_core *old);
void keel_reload_request(struct keel *k);
void keel_stop_request(struct keel *k, int signo);
void keel_status_dump(struct keel *k, int to_log);
int keel_status_requested(struct keel *k);
int keel_reload_marker(const char *statefile, char *path, size_t len);
void keel_wake(struct keel *k);
void keel_module_drained(struct keel *k);
void keel_write_state(struct keel *k);
const char *keel_default_pidfile(const struct keel_app *app, char *buf,
				 size_t len);
const char *keel_default_statefile(const struct keel_app *app, char *buf,
				   size_t len);

int keel_main_run(const struct keel_options *opt);
int keel_main_check(const struct keel_options *opt);
int keel_main_control(const struct keel_options *opt, const char *cmd);
void keel_main_early(const struct keel_app *app);

#endif
