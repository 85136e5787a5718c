/* SPDX-License-Identifier: ISC */
/* Logging through the daemon's log. */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <keel/export.h>
#include <stdarg.h>

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

KEEL_END_DECLS

#endif
