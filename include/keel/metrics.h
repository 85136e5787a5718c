/* SPDX-License-Identifier: ISC */
/*
 * Typed metrics and structured status: one registry that the framework
 * renders for `-s status`, the SIGUSR2 dump and the state file (and that an
 * HTTP module renders as JSON and Prometheus text). No module formats them.
 *
 * A metric belongs to a module, or to one of its instances (then it carries
 * the label the module's descriptor names, e.g. port="gps"), and is freed
 * with its owner. Updating one is an addition: no lookup, allocation or
 * formatting.
 */
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <keel/export.h>
#include <stdint.h>
#include <time.h>

KEEL_BEGIN_DECLS

struct keel_module;
struct keel_instance;
struct keel_metric;
struct keel_status;

enum keel_metric_type {
	KEEL_METRIC_COUNTER = 1, /* only goes up; its name ends in _total */
	KEEL_METRIC_GAUGE,       /* goes up and down */
};

/**
 * Register a metric of module @p m, or of instance @p in when not NULL.
 * @p name is in Prometheus style (`rx_bytes_total`, `clients`:
 * [a-zA-Z_][a-zA-Z0-9_]*, counters end in `_total`); @p label and @p value
 * add one label of its own (both NULL for none). @p name, @p help and
 * @p label are not copied: string literals (or strings that outlive the
 * metric); @p value is copied.
 * @return the metric, or NULL when out of memory or the name is invalid
 * (updating NULL does nothing).
 */
KEEL_EXPORT struct keel_metric *keel_metric_new(
	struct keel_module *m, struct keel_instance *in,
	enum keel_metric_type type, const char *name, const char *help,
	const char *label, const char *value);

/** Add @p n to a counter or a gauge (lower a gauge with keel_metric_set). */
KEEL_EXPORT void keel_metric_add(struct keel_metric *mt, uint64_t n);

/** Set a gauge. */
KEEL_EXPORT void keel_metric_set(struct keel_metric *mt, int64_t v);

/**
 * Take the value from @p src each time the metric is read: for a counter
 * that a library already keeps (keel_serial_stats()); @p src must live as
 * long as the metric's owner. Updates to a bound metric are ignored (the
 * source is its value: a metric holds one or the other, to stay small);
 * binding NULL keeps the source's last value and counts on from there.
 */
KEEL_EXPORT void keel_metric_bind(struct keel_metric *mt, const uint64_t *src);

/** @return the metric's value (0 for NULL). */
KEEL_EXPORT int64_t keel_metric_value(const struct keel_metric *mt);

/* Typed status fields, added from a module's status hook. Keys are short
 * words (`state`, `device`); the framework prefixes module and title. */
KEEL_EXPORT void keel_status_str(struct keel_status *st, const char *key,
				 const char *value);
KEEL_EXPORT void keel_status_printf(struct keel_status *st, const char *key,
				    const char *fmt, ...) KEEL_PRINTF(3, 4);
KEEL_EXPORT void keel_status_int(struct keel_status *st, const char *key,
				 int64_t value);
KEEL_EXPORT void keel_status_uint(struct keel_status *st, const char *key,
				  uint64_t value);
KEEL_EXPORT void keel_status_double(struct keel_status *st, const char *key,
				    double value);
KEEL_EXPORT void keel_status_bool(struct keel_status *st, const char *key,
				  int value);
/** A wall-clock time (rendered as seconds since the epoch; 0: never). */
KEEL_EXPORT void keel_status_time(struct keel_status *st, const char *key,
				  time_t value);
/** Open a group of fields under @p key (a client, say); close it with
 * keel_status_pop(). Inside a list, @p key is ignored (NULL will do): the
 * group is the list's next item. */
KEEL_EXPORT void keel_status_push(struct keel_status *st, const char *key);
/** Open a list under @p key: its groups are items (`peers.1.addr` in
 * text, an array in JSON); close it with keel_status_pop(). */
KEEL_EXPORT void keel_status_push_list(struct keel_status *st, const char *key);
KEEL_EXPORT void keel_status_pop(struct keel_status *st);

KEEL_END_DECLS

#endif
