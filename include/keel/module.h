/*
 * The keel module API.
 *
 * A module is a shared object exporting one descriptor named
 * keel_module_descriptor (use KEEL_MODULE()). keeld loads every module in its
 * module path to learn the configuration section it declares, and runs those
 * listed in the `load` option. Everything a module does happens in keeld's
 * single libevent event base, obtained with keel_module_base(): timers, fd
 * events and bufferevents are created on it with the libevent 2.1 API. A
 * module never installs signal handlers; it subscribes to framework events.
 *
 * Lifecycle, all hooks called on the event loop:
 *
 *   start    the module was added to `load`: allocate its state.
 *   prepare  a configuration (the first one, or a reload) is proposed: check
 *            the module's sections in @p cfg and build, without changing what
 *            runs, everything needed to switch to it. May fail.
 *   commit   every module prepared: switch to the prepared state. Cannot fail.
 *   abort    some module failed: throw the prepared state away.
 *   stop     the module is removed or keeld stops: drain, release everything,
 *            and call keel_module_stopped() when done (now or later).
 *   status   append key/value lines to a status dump.
 *   event    a framework event the module subscribed to in `events`.
 */
#ifndef KEEL_MODULE_H
#define KEEL_MODULE_H

#include <confuse.h>
#include <keel/export.h>
#include <stdint.h>

/* Bumped on every incompatible change of this header. */
#define KEEL_MODULE_ABI 1

struct event_base;
struct keel_module;
struct keel_status;
struct keel_counter;

/* How the module's section appears in keeld.conf. */
enum keel_section_kind {
	KEEL_SECTION_NONE = 0,   /* the module has no section */
	KEEL_SECTION_SINGLE = 1, /* `name { ... }`, at most once */
	KEEL_SECTION_TITLED = 2, /* `name TITLE { ... }`, repeatable */
};

/* Framework events, as bits of keel_module_desc.events. */
enum keel_event {
	KEEL_EVENT_RELOAD = 1 << 0,   /* a reload was applied */
	KEEL_EVENT_WAKE = 1 << 1,     /* SIGALRM / keeld -s wake: retry now */
	KEEL_EVENT_STATUS = 1 << 2,   /* SIGUSR2: a status dump is written */
	KEEL_EVENT_SHUTDOWN = 1 << 3, /* keeld begins to stop */
	KEEL_EVENT_REOPEN = 1 << 4,   /* SIGUSR1/SIGHUP: reopen files */
};

/* Flags passed to prepare. */
#define KEEL_PREPARE_CHECK 0x1 /* keeld -t: validate only, acquire nothing */

/* A parse-time validator attached to one option of the module's section. */
struct keel_validator {
	const char *option;               /* option name inside the section */
	cfg_validate_callback_t validate; /* call cfg_error() and return -1 */
};

struct keel_module_desc {
	uint32_t abi;        /* KEEL_MODULE_ABI; must stay the first member */
	const char *name;    /* equals the file name without ".so" */
	const char *version; /* the module's own version string */
	enum keel_section_kind section;
	cfg_opt_t *options; /* options of one section, CFG_END() terminated */
	const struct keel_validator *validators; /* NULL-terminated, or NULL */
	unsigned int events; /* enum keel_event bits to receive */

	int (*start)(struct keel_module *m);
	int (*prepare)(struct keel_module *m, cfg_t *cfg, unsigned int flags,
		       void **txn);
	void (*commit)(struct keel_module *m, void *txn);
	void (*abort)(struct keel_module *m, void *txn);
	void (*stop)(struct keel_module *m);
	void (*status)(struct keel_module *m, struct keel_status *st);
	void (*event)(struct keel_module *m, enum keel_event ev);
};

/*
 * Define the module's descriptor under the name keeld looks for:
 *   KEEL_MODULE_DESCRIPTOR = { .abi = KEEL_MODULE_ABI, .name = "x", ... };
 */
#define KEEL_MODULE_DESCRIPTOR                           \
	KEEL_EXPORT extern const struct keel_module_desc \
		keel_module_descriptor;                  \
	const struct keel_module_desc keel_module_descriptor

struct timeval;

/** @return @p seconds (fractions allowed; negative counts as 0) as a timeval
 * for event_add(). */
KEEL_EXPORT struct timeval keel_timeval(double seconds);

/** @return the event base every event of the module must live on. */
KEEL_EXPORT struct event_base *keel_module_base(struct keel_module *m);

/** @return the module's name. */
KEEL_EXPORT const char *keel_module_name(const struct keel_module *m);

/** Attach the module's private state (owned by the module). */
KEEL_EXPORT void keel_module_set_data(struct keel_module *m, void *data);

/** @return the pointer given to keel_module_set_data(), or NULL. */
KEEL_EXPORT void *keel_module_data(const struct keel_module *m);

/**
 * Report a configuration error found in prepare. @p sec is the section the
 * error is about (its file and line are reported), or NULL.
 */
KEEL_EXPORT void keel_module_error(struct keel_module *m, cfg_t *sec,
				   const char *fmt, ...) KEEL_PRINTF(3, 4);

/** Tell keeld the module has drained after its stop hook. */
KEEL_EXPORT void keel_module_stopped(struct keel_module *m);

/** Log with the module's name as prefix. */
KEEL_EXPORT void keel_module_log(struct keel_module *m, int level,
				 const char *fmt, ...) KEEL_PRINTF(3, 4);

/**
 * @return the counter @p name of the module (created at 0 on first use, kept
 * until the module is unloaded), or NULL when out of memory. Counters are
 * shown by status dumps and keeld -s status as counter.MODULE.NAME.
 */
KEEL_EXPORT struct keel_counter *keel_counter(struct keel_module *m,
					      const char *name);

/** Add @p n to a counter; a NULL counter is ignored. */
KEEL_EXPORT void keel_counter_add(struct keel_counter *c, uint64_t n);

/** @return a counter's value. */
KEEL_EXPORT uint64_t keel_counter_value(const struct keel_counter *c);

/** Append one `key: value` line to a status dump. */
KEEL_EXPORT void keel_status_add(struct keel_status *st, const char *key,
				 const char *fmt, ...) KEEL_PRINTF(3, 4);

/** @return the section's title, or "" for an untitled section. */
KEEL_EXPORT const char *keel_section_title(cfg_t *sec);

#endif
