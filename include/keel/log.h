/* SPDX-License-Identifier: ISC */
/* Logging through the daemon's log. */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <keel/export.h>
#include <stdarg.h>
#include <stdint.h>

KEEL_BEGIN_DECLS

/* Log levels, as syslog(3) priorities. */
enum keel_log_level {
	KEEL_LOG_ERR = 3,
	KEEL_LOG_WARNING = 4,
	KEEL_LOG_NOTICE = 5,
	KEEL_LOG_INFO = 6,
	KEEL_LOG_DEBUG = 7,
};

/**
 * Log a message through the daemon's log (syslog, stderr or a file).
 * The message is formatted only when @p level is enabled.
 */
KEEL_EXPORT void keel_log(int level, const char *fmt, ...) KEEL_PRINTF(2, 3);

/** As keel_log(), with a va_list. */
KEEL_EXPORT void keel_vlog(int level, const char *fmt, va_list ap)
	KEEL_PRINTF(2, 0);

/** @return non-zero when messages of @p level are written. */
KEEL_EXPORT int keel_log_enabled(int level);

/*
 * A budget for log lines that something outside the daemon can trigger (a
 * client connecting in a loop, a device flapping): at most @burst lines
 * every @interval seconds; the lines past it are counted, and the first
 * line let through afterwards is preceded by "N similar messages
 * suppressed". Keep the per-event detail in metrics. Initialise with
 * KEEL_RATELIMIT(interval, burst); one per source (a port, say), so that
 * one flood does not hide another source's lines.
 */
struct keel_ratelimit {
	double interval;
	unsigned int burst;
	/* private */
	uint64_t start_ms;
	unsigned int count;
	unsigned long suppressed;
};
#define KEEL_RATELIMIT(seconds, lines)      \
	{                                   \
		(seconds), (lines), 0, 0, 0 \
	}

/**
 * keel_log() within the budget @p rl (NULL: no limit).
 * @return 1 when the line was written, 0 when suppressed or not enabled.
 */
KEEL_EXPORT int keel_log_limit(struct keel_ratelimit *rl, int level,
			       const char *fmt, ...) KEEL_PRINTF(3, 4);

KEEL_END_DECLS

#endif
