/* SPDX-License-Identifier: ISC */
/*
 * The framework's renderings of its one registry (typed metrics and
 * structured status), for modules that serve them: an HTTP module sends
 * what these write, it never formats JSON or Prometheus text itself.
 */
#ifndef KEEL_RENDER_H
#define KEEL_RENDER_H

#include <keel/export.h>

KEEL_BEGIN_DECLS

struct evbuffer;
struct keel_module;

/**
 * Append the daemon's status as one JSON object to @p out: each status
 * group an object, each list an array, numbers, strings (UTF-8; invalid
 * bytes become U+FFFD) and booleans typed, times in seconds since the
 * epoch. Runs on the loop; a thousand ports take a few milliseconds.
 * @return 0, or -1 when out of memory (@p out may hold part of it).
 */
KEEL_EXPORT int keel_render_json(struct keel_module *m, struct evbuffer *out);

/**
 * Append every metric in the Prometheus text format 0.0.4 to @p out:
 * families `APP_[MODULE_]NAME`, one `# HELP` and `# TYPE` each, series
 * sorted, no duplicates, label values escaped; an instance's metrics carry
 * the label its module's descriptor names.
 * @return 0, or -1 when out of memory.
 */
KEEL_EXPORT int keel_render_prometheus(struct keel_module *m,
				       struct evbuffer *out);

/** Append the status as `key: value` lines (as `-s status` prints it). */
KEEL_EXPORT int keel_render_text(struct keel_module *m, struct evbuffer *out);

/**
 * @return non-zero while the daemon is ready: its first configuration is
 * applied and it is not stopping.
 */
KEEL_EXPORT int keel_ready(const struct keel_module *m);

KEEL_END_DECLS

#endif
