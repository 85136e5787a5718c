/* SPDX-License-Identifier: ISC */
/*
 * The keel module API (module ABI 2).
 *
 * A module is one descriptor, struct keel_module_desc. It is either linked
 * into the program (listed in the application's struct keel_app) or found in
 * the module directory as NAME.so exporting the descriptor under the name
 * keel_module_descriptor (KEEL_MODULE_DESCRIPTOR); both take the same path
 * and the same checks.
 *
 * The module declares its options once (struct keel_option): name, type,
 * default, bounds or words, and where the value goes in a C struct of its
 * own. The framework parses and checks them (errors read `FILE:LINE:
 * MODULE 'TITLE': ...` in every module) and hands each section of the
 * configuration to the module as one instance with a filled struct.
 *
 * On every configuration (the first one, each reload, and keeld -t) the
 * framework matches the running instances to the new sections by title and
 * tells the module, per instance, what happens to it, inside one transaction:
 *
 *   prepare  called for each instance that is new, changed or re-created,
 *            with the new struct: check it and acquire, without changing
 *            what runs, everything commit needs. May fail (keel_instance_
 *            error()); then every prepared instance is aborted and nothing
 *            changes. Unchanged instances are not called at all.
 *   commit   every instance prepared: switch to the new struct. Cannot fail.
 *   abort    the transaction failed: throw away what prepare built. Called
 *            for every instance whose prepare ran, the one that failed
 *            included (it may have built part of its state).
 *   remove   the section is gone (or the module stops, or the instance is
 *            re-created): drain, then call keel_instance_removed(). In a
 *            transaction, removals come after every commit of the module.
 *
 * Every hook runs on the one event base (keel_module_base()). A module never
 * installs signal handlers: it subscribes to framework events.
 */
#ifndef KEEL_MODULE_H
#define KEEL_MODULE_H

#include <keel/export.h>
#include <keel/log.h>
#include <keel/metrics.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

KEEL_BEGIN_DECLS

/* The module ABI. Bumped on every incompatible change of the public headers;
 * the one place the number is written (keel.pc reads it from here). */
#define KEEL_MODULE_ABI 2

struct event_base;

/* How the module's section appears in the configuration. */
enum keel_section_kind {
	KEEL_SECTION_NONE = 0,   /* the module has no section */
	KEEL_SECTION_SINGLE = 1, /* `name { ... }`, at most once */
	KEEL_SECTION_TITLED = 2, /* `name TITLE { ... }`, repeatable */
	/* As KEEL_SECTION_TITLED, plus at most one untitled `name { ... }`
	 * holding defaults for every titled section: an option a titled
	 * section does not write takes the value written there before its
	 * built-in default. Options with KEEL_OPT_REQUIRED or KEEL_OPT_UNIQUE
	 * are refused there. The untitled section is no instance. Added in
	 * ABI 2 without a change of the descriptor: a framework that
	 * predates it refuses the module ("unknown section kind 3"). */
	KEEL_SECTION_TITLED_DEFAULTS = 3,
};

/* Framework events, as bits of keel_module_desc.events. */
enum keel_event {
	KEEL_EVENT_RELOAD = 1 << 0,   /* a reload was applied */
	KEEL_EVENT_WAKE = 1 << 1,     /* SIGALRM / -s wake: retry now */
	KEEL_EVENT_STATUS = 1 << 2,   /* SIGUSR2: a status dump is written */
	KEEL_EVENT_SHUTDOWN = 1 << 3, /* the daemon begins to stop */
	KEEL_EVENT_REOPEN = 1 << 4,   /* SIGUSR1/SIGHUP: reopen files */
};

/* ---- options ---- */

/* Option types, and the C type of the struct member each one fills. */
enum keel_opt_type {
	KEEL_OPT_INT = 1,  /* long; decimal, bounds inclusive */
	KEEL_OPT_FLOAT,    /* double */
	KEEL_OPT_SECONDS,  /* double; "1.5", "500ms", "2s", "5m", "1h", "1d" */
	KEEL_OPT_SIZE,     /* size_t; "65536", "64K", "64KiB", "16M", "1G" */
	KEEL_OPT_BOOL,     /* int 0/1; true false yes no on off */
	KEEL_OPT_STRING,   /* char * (NULL when unset) */
	KEEL_OPT_ENUM,     /* int: the index of the word in .words */
	KEEL_OPT_HOSTPORT, /* struct keel_hostport: numeric HOST:PORT */
	KEEL_OPT_LIST,     /* struct keel_list: strings */
};

/* Option flags. */
#define KEEL_OPT_REQUIRED 0x01 /* the section must set it */
#define KEEL_OPT_RECREATE 0x02 /* a change re-creates the instance */
#define KEEL_OPT_UNIQUE   0x04 /* no two sections may share the value */
#define KEEL_OPT_BOUNDED                                                    \
	0x08                   /* .min and .max apply (numbers; for a list, \
				* its number of elements) */
#define KEEL_OPT_NONEMPTY 0x10 /* a string may not be "" */

/* A numeric HOST:PORT (IPv6 as [ADDR]:PORT); never a name to resolve. */
struct keel_hostport {
	char *text; /* as written */
	struct sockaddr_storage addr;
	socklen_t len;
};

/* A list of strings. */
struct keel_list {
	size_t n;
	char **v;
};

/*
 * One option. @check, when set, is called with the value as written (each
 * element of a list) after the type's own checks; it returns 0, or -1 with
 * a message in @err (the framework adds FILE:LINE and the section).
 */
struct keel_option {
	const char *name;
	enum keel_opt_type type;
	unsigned int flags;
	size_t offset;   /* of the member in the module's struct */
	size_t size;     /* sizeof the member: checked against the type */
	const char *def; /* default, written as in the file; NULL: none */
	double min, max; /* with KEEL_OPT_BOUNDED */
	const char *const *words; /* KEEL_OPT_ENUM: NULL-terminated */
	int (*check)(const char *value, char *err, size_t errlen);
	const char *help; /* one line, for documentation */
	void *reserved[2];
};

#define KEEL_MEMBER_SIZE(T, f) sizeof(((T *)0)->f)

/* Declare options: KEEL_OPTION(...) entries, KEEL_OPTIONS_END last. At most
 * 64 options a table; .help, if wanted, is set with a designated
 * initializer. */
#define KEEL_OPTION(n, t, T, f, d, fl)                                    \
	{                                                                 \
		.name = (n), .type = (t), .flags = (fl),                  \
		.offset = offsetof(T, f), .size = KEEL_MEMBER_SIZE(T, f), \
		.def = (d)                                                \
	}
#define KEEL_OPTION_RANGE(n, t, T, f, d, lo, hi, fl)                        \
	{                                                                   \
		.name = (n), .type = (t), .flags = (fl) | KEEL_OPT_BOUNDED, \
		.offset = offsetof(T, f), .size = KEEL_MEMBER_SIZE(T, f),   \
		.def = (d), .min = (lo), .max = (hi)                        \
	}
#define KEEL_OPTION_ENUM(n, T, f, d, w, fl)                               \
	{                                                                 \
		.name = (n), .type = KEEL_OPT_ENUM, .flags = (fl),        \
		.offset = offsetof(T, f), .size = KEEL_MEMBER_SIZE(T, f), \
		.def = (d), .words = (w)                                  \
	}
#define KEEL_OPTION_CHECK(n, t, T, f, d, c, fl)                           \
	{                                                                 \
		.name = (n), .type = (t), .flags = (fl),                  \
		.offset = offsetof(T, f), .size = KEEL_MEMBER_SIZE(T, f), \
		.def = (d), .check = (c)                                  \
	}
#define KEEL_OPTIONS_END     \
	{                    \
		.name = NULL \
	}

/* ---- the descriptor ---- */

/* What a transaction does to one instance. */
enum keel_change {
	KEEL_CHANGE_NEW = 1,   /* a section that was not running */
	KEEL_CHANGE_UNCHANGED, /* no option differs (no hook is called) */
	KEEL_CHANGE_INPLACE,   /* options without KEEL_OPT_RECREATE changed */
	KEEL_CHANGE_RECREATE,  /* a KEEL_OPT_RECREATE option changed: a new
				* instance is prepared while the old one
				* runs; at commit the new one commits, then
				* the old one is removed */
	KEEL_CHANGE_REMOVED,   /* the section is gone */
};

/* Flags passed to prepare. */
#define KEEL_PREPARE_CHECK 0x1 /* -t: validate only, acquire nothing */

/* Flags passed to remove. With KEEL_REMOVE_NOW (a forced stop: the second
 * SIGTERM, shutdown-timeout, exit) remove may be called again for an
 * instance that is already draining; the instance is gone when it returns,
 * whether or not keel_instance_removed() was called. */
#define KEEL_REMOVE_NOW 0x1 /* release everything now: no drain */

struct keel_module_desc {
	uint32_t abi;  /* KEEL_MODULE_ABI; must stay the first member */
	uint32_t size; /* sizeof(struct keel_module_desc) */
	const char *name;
	const char *version;
	enum keel_section_kind section;
	const struct keel_option *options; /* KEEL_OPTIONS_END-terminated */
	size_t conf_size;                  /* size of the struct they fill */
	const char *label;   /* metric label naming an instance ("port") */
	unsigned int events; /* enum keel_event bits to receive */

	/* Module: allocate shared state when added to `load` / free it
	 * when removed, after every instance is gone. Both optional. */
	int (*start)(struct keel_module *m);
	void (*stop)(struct keel_module *m);

	/* Instances (see the top of this file). */
	int (*prepare)(struct keel_instance *in, const void *conf,
		       unsigned int flags);
	void (*commit)(struct keel_instance *in, const void *conf);
	void (*abort)(struct keel_instance *in);
	void (*remove)(struct keel_instance *in, unsigned int flags);

	/* Typed status fields of one instance (keel_status_*()); optional. */
	void (*status)(struct keel_instance *in, struct keel_status *st);

	/* A subscribed framework event. */
	void (*event)(struct keel_module *m, enum keel_event ev);

	void *reserved[8]; /* zero; room for hooks of later minor versions */
};

/*
 * Define the descriptor of a loadable module under the name the framework
 * looks for:
 *   KEEL_MODULE_DESCRIPTOR = { KEEL_MODULE_HEAD, .name = "x", ... };
 * The same source links into a program as a built-in module when compiled
 * with -DKEEL_MODULE_SYMBOL=a_unique_name, the name the program lists in its
 * struct keel_app (several modules can then share one program).
 */
#ifndef KEEL_MODULE_SYMBOL
#define KEEL_MODULE_SYMBOL keel_module_descriptor
#endif
#define KEEL_MODULE_DESCRIPTOR                                               \
	KEEL_EXPORT extern const struct keel_module_desc KEEL_MODULE_SYMBOL; \
	const struct keel_module_desc KEEL_MODULE_SYMBOL

/* The first members of every descriptor. */
#define KEEL_MODULE_HEAD \
	.abi = KEEL_MODULE_ABI, .size = sizeof(struct keel_module_desc)

/* ---- the module API ---- */

/** @return @p seconds (fractions allowed; negative counts as 0) as a
 * timeval for event_add(). */
KEEL_EXPORT struct timeval keel_timeval(double seconds);

/** @return the event base every event of the module must live on. */
KEEL_EXPORT struct event_base *keel_module_base(struct keel_module *m);

/**
 * @return non-zero when a descriptor a peer made us open (an accepted
 * connection) may be kept: the framework keeps the highest descriptors for
 * control, reloads and logs, and under libevent's select backend below
 * FD_SETSIZE. Close it (and count it) when this returns 0.
 */
KEEL_EXPORT int keel_module_fd_ok(struct keel_module *m, int fd);

/** @return the module's name. */
KEEL_EXPORT const char *keel_module_name(const struct keel_module *m);

/** Attach the module's shared state (owned by the module). */
KEEL_EXPORT void keel_module_set_data(struct keel_module *m, void *data);

/** @return the pointer given to keel_module_set_data(), or NULL. */
KEEL_EXPORT void *keel_module_data(const struct keel_module *m);

/** Log with the module's name as prefix. */
KEEL_EXPORT void keel_module_log(struct keel_module *m, int level,
				 const char *fmt, ...) KEEL_PRINTF(3, 4);

/** keel_module_log() within the budget @p rl (see keel_log_limit()).
 * @return 1 when written. */
KEEL_EXPORT int keel_module_log_limit(struct keel_module *m,
				      struct keel_ratelimit *rl, int level,
				      const char *fmt, ...) KEEL_PRINTF(4, 5);

/** @return the instance's module. */
KEEL_EXPORT struct keel_module *keel_instance_module(
	const struct keel_instance *in);

/** @return the section's title ("" for an untitled section). */
KEEL_EXPORT const char *keel_instance_name(const struct keel_instance *in);

/** @return the running configuration of the instance (NULL while a new
 * instance is prepared; the old one during commit, the new one after). */
KEEL_EXPORT const void *keel_instance_conf(const struct keel_instance *in);

/** @return what the transaction under way does to the instance;
 * KEEL_CHANGE_REMOVED from remove (also at shutdown and for the old half of
 * a re-creation). */
KEEL_EXPORT enum keel_change keel_instance_change(
	const struct keel_instance *in);

/** @return non-zero when the transaction under way changes @p option
 * (every option of a new or re-created instance counts as changed). */
KEEL_EXPORT int keel_instance_changed(const struct keel_instance *in,
				      const char *option);

/** Attach the module's object for this instance. */
KEEL_EXPORT void keel_instance_set_data(struct keel_instance *in, void *data);

/** @return the pointer given to keel_instance_set_data(), or NULL. */
KEEL_EXPORT void *keel_instance_data(const struct keel_instance *in);

/** Attach what prepare built for commit or abort (cleared after them). */
KEEL_EXPORT void keel_instance_set_plan(struct keel_instance *in, void *plan);

/** @return the pointer given to keel_instance_set_plan(), or NULL. */
KEEL_EXPORT void *keel_instance_plan(const struct keel_instance *in);

/**
 * Iterate over the module's running instances (those being removed or
 * re-created included): NULL starts, NULL ends.
 */
KEEL_EXPORT struct keel_instance *keel_instance_next(
	struct keel_module *m, struct keel_instance *prev);

/**
 * Report a configuration error about the instance from prepare, as
 * `FILE:LINE: MODULE 'TITLE': message`, at the line of @p option (NULL: of
 * the section). Makes the transaction fail.
 */
KEEL_EXPORT void keel_instance_error(struct keel_instance *in,
				     const char *option, const char *fmt, ...)
	KEEL_PRINTF(3, 4);

/** Log with `MODULE: TITLE: ` as prefix. */
KEEL_EXPORT void keel_instance_log(struct keel_instance *in, int level,
				   const char *fmt, ...) KEEL_PRINTF(3, 4);

/** Tell the framework a removed instance has drained (from remove, or
 * later). Its data is no longer used; its metrics are freed. */
KEEL_EXPORT void keel_instance_removed(struct keel_instance *in);

KEEL_END_DECLS

#endif
