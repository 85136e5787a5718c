/* SPDX-License-Identifier: ISC */
/*
 * The keel serial device API: open, configure and watch a serial device on
 * the daemon's event base without ever blocking it.
 *
 * A struct keel_serial opens its device as soon as it is created, and keeps
 * it open: a failed open, a hang-up or a removal schedules a reopen with
 * exponential back-off (and watches the path with inotify, so a device that
 * appears is opened at once). Everything is reported through callbacks.
 */
#ifndef KEEL_SERIAL_H
#define KEEL_SERIAL_H

#include <keel/export.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

KEEL_BEGIN_DECLS

struct event_base;
struct evbuffer;
struct keel_serial;

enum keel_serial_flow {
	KEEL_FLOW_NONE = 0,
	KEEL_FLOW_RTSCTS = 1,
	KEEL_FLOW_XONXOFF = 2,
};

/* Line settings; they can change on an open device. */
struct keel_serial_line {
	unsigned int speed; /* bits per second, standard or not */
	int data_bits;      /* 5 to 8 */
	char parity;        /* 'N', 'E', 'O', 'M' (mark), 'S' (space) */
	int stop_bits;      /* 1 or 2 */
	enum keel_serial_flow flow;
	int local;           /* CLOCAL: ignore modem control lines */
	int hangup_on_close; /* HUPCL: drop DTR on close */
};

struct keel_serial_params {
	const char *name;   /* for log messages */
	const char *device; /* path; symbolic links are followed */
	struct keel_serial_line line;
	double open_timeout; /* seconds an open() may take */
	double idle_timeout; /* seconds of silence before a reopen; 0: never */
	double retry_min;    /* first reopen delay, seconds */
	double retry_max;    /* longest reopen delay, seconds */
	int lock;            /* UUCP lock file in lock_dir */
	const char *lock_dir;
	size_t out_max; /* bytes queued towards the device, at most */
};

struct keel_serial_callbacks {
	/* The device is open and configured. */
	void (*opened)(struct keel_serial *s, void *arg);
	/* Bytes from the device; take what you want from @in (the rest is
	 * discarded after the call). */
	void (*data)(struct keel_serial *s, struct evbuffer *in, void *arg);
	/* The device closed (hang-up, removal, error, idle); a reopen is
	 * scheduled. */
	void (*closed)(struct keel_serial *s, const char *why, void *arg);
	/* The queue towards the device was full and has room again. */
	void (*drained)(struct keel_serial *s, void *arg);
};

struct keel_serial_stats {
	uint64_t bytes_in;          /* from the device */
	uint64_t bytes_out;         /* to the device */
	uint64_t opens;             /* successful opens */
	uint64_t open_failures;     /* failed or timed out opens */
	uint64_t hangups;           /* hang-ups, removals, idle timeouts */
	uint64_t drops;             /* bytes for the device that were dropped */
	uint64_t breaks;            /* breaks sent (timed or switched on) */
	uint64_t modem_unsupported; /* DTR/RTS requests answered ENOTTY */
};

/* Modem lines: DTR and RTS are ours to set, the others the device's. */
#define KEEL_MODEM_DTR 0x01
#define KEEL_MODEM_RTS 0x02
#define KEEL_MODEM_CTS 0x04
#define KEEL_MODEM_DSR 0x08
#define KEEL_MODEM_DCD 0x10
#define KEEL_MODEM_RI  0x20

/* Data received from the device, not yet read: the kernel's (TCIFLUSH) and
 * keel's unread input. */
#define KEEL_PURGE_RX 1
/* Data queued towards the device: keel's output queue and the kernel's
 * (TCOFLUSH). */
#define KEEL_PURGE_TX 2

/**
 * Parse a format such as "8N1" or "7E2".
 * @return 0, or -1 with a message in @err.
 */
KEEL_EXPORT int keel_serial_parse_format(const char *fmt,
					 struct keel_serial_line *line,
					 char *err, size_t errlen);

/** Parse "none", "rtscts" or "xonxoff". @return 0 or -1. */
KEEL_EXPORT int keel_serial_parse_flow(const char *s,
				       enum keel_serial_flow *flow);

/** @return the "8N1" form of @line's framing, in @buf. */
KEEL_EXPORT const char *keel_serial_format_name(
	const struct keel_serial_line *line, char *buf, size_t len);

/**
 * Create a port and start opening its device. Parameters are copied.
 * @return the port, or NULL (errno set).
 */
KEEL_EXPORT struct keel_serial *keel_serial_new(
	struct event_base *base, const struct keel_serial_params *p,
	const struct keel_serial_callbacks *cb, void *arg);

/** Close the device (releasing its locks) and free the port. */
KEEL_EXPORT void keel_serial_free(struct keel_serial *s);

/**
 * Change the line settings; applied at once to an open device, without
 * closing it. @return 0, or -1 when the device refused them (errno set):
 * then the port keeps, and goes on reopening with, the previous ones.
 */
KEEL_EXPORT int keel_serial_set_line(struct keel_serial *s,
				     const struct keel_serial_line *line);

/** Change timeouts, back-off and the output limit; applied at once. */
KEEL_EXPORT void keel_serial_set_timing(struct keel_serial *s,
					const struct keel_serial_params *p);

/**
 * Move bytes from @src to the device queue, as many as fit.
 * @return how many bytes were taken (those left in @src did not fit). While
 * the device is not open, bytes are dropped and counted instead.
 */
KEEL_EXPORT size_t keel_serial_write(struct keel_serial *s,
				     struct evbuffer *src);

/** @return non-zero when the queue towards the device is full. */
KEEL_EXPORT int keel_serial_output_full(const struct keel_serial *s);

/** @return bytes queued towards the device. */
KEEL_EXPORT size_t keel_serial_output_length(const struct keel_serial *s);

/**
 * Stop (@on = 0) or resume (@on = 1) reading from the device: back-pressure
 * when nobody can take more. While paused the device's own buffer and flow
 * control hold the data; a hang-up is noticed when reading resumes.
 */
KEEL_EXPORT void keel_serial_set_reading(struct keel_serial *s, int on);

/** A port waiting to reopen retries now (SIGALRM, keeld -s wake). */
KEEL_EXPORT void keel_serial_wake(struct keel_serial *s);

/** @return non-zero when the device is open. */
KEEL_EXPORT int keel_serial_is_open(const struct keel_serial *s);

/** @return "open", "opening" or "waiting" (for the device, or to retry). */
KEEL_EXPORT const char *keel_serial_state(const struct keel_serial *s);

/**
 * @return the last failure of the port (open error, hang-up), "" when
 * none, "not opened yet" before the first attempt; @p when (if not NULL)
 * gets its time in seconds since the epoch, 0 for none.
 */
KEEL_EXPORT const char *keel_serial_error(const struct keel_serial *s,
					  time_t *when);

/** @return when bytes last came from the device (seconds since the
 * epoch), 0 when never. */
KEEL_EXPORT time_t keel_serial_last_rx(const struct keel_serial *s);

/** @return the port's counters. */
KEEL_EXPORT const struct keel_serial_stats *keel_serial_stats(
	const struct keel_serial *s);

/**
 * Set the lines in @mask (KEEL_MODEM_DTR, KEEL_MODEM_RTS) to their bits in
 * @value (TIOCMBIS/TIOCMBIC). Remembered and applied again at every
 * (re)open, right after the line settings.
 * @return 0, or -1 with errno: ENOTTY when the device has no modem lines
 * (ptys, some USB CDC adapters: the wish is still remembered), EAGAIN when
 * the device is not open (remembered, applied at open), EINVAL for other
 * bits in @mask.
 */
KEEL_EXPORT int keel_serial_set_modem(struct keel_serial *s, unsigned int mask,
				      unsigned int value);

/**
 * @return the current lines (KEEL_MODEM_* bits, TIOCMGET) of the open
 * device, or -1 with errno (ENOTTY: no modem lines; EAGAIN: not open).
 */
KEEL_EXPORT int keel_serial_get_modem(struct keel_serial *s);

/**
 * Be told when CTS/DSR/DCD/RI change: @fn(s, lines, changed, arg) on the
 * loop, @lines all KEEL_MODEM_* bits now, @changed those of CTS, DSR, DCD
 * and RI that differ from the last call. Once when watching starts (and at
 * every reopen while watched) @fn gets the current lines with @changed 0.
 * @fn NULL stops watching. Costs nothing while nobody watches; while
 * watched, a thread blocked in TIOCMIWAIT (no wake-up until a line
 * changes), or a TIOCMGET poll once a second where the driver has no
 * TIOCMIWAIT. Do not free the port from @fn.
 * @return 0, or -1 with errno: ENOTTY when the open device has no modem
 * lines (the watch stays registered for the next open), or the cause of a
 * failure to start watching (ENOMEM, EAGAIN from pthread_create...).
 */
KEEL_EXPORT int keel_serial_watch_modem(struct keel_serial *s,
					void (*fn)(struct keel_serial *s,
						   unsigned int lines,
						   unsigned int changed,
						   void *arg),
					void *arg);

/**
 * A break of @ms milliseconds (TIOCSBRK now, TIOCCBRK from a timer); a
 * break under way is extended to end @ms from now. A close or hang-up ends
 * it. @return 0 or -1 (EAGAIN not open, or the ioctl's errno).
 */
KEEL_EXPORT int keel_serial_send_break(struct keel_serial *s, unsigned int ms);

/**
 * Break on (1) or off (0) until told otherwise (RFC 2217 SET-CONTROL
 * BREAK-ON/OFF). Off also ends a timed break. @return 0 or -1 (EAGAIN when
 * on is asked of a closed device, or the ioctl's errno); off on a closed
 * device is 0.
 */
KEEL_EXPORT int keel_serial_set_break(struct keel_serial *s, int on);

/**
 * Discard queued data: KEEL_PURGE_RX and/or KEEL_PURGE_TX. Purging TX
 * ends "output full": the drained callback follows if it was.
 * @return 0 (also on a closed device, where nothing is queued) or -1
 * (EINVAL for other bits, or the ioctl's errno).
 */
KEEL_EXPORT int keel_serial_purge(struct keel_serial *s, int which);

/**
 * The line settings the open device really has (read back with TCGETS2: a
 * pty forces CS8 and no parity, a UART may round the speed), or the
 * configured ones while not open. @return 0 or -1.
 */
KEEL_EXPORT int keel_serial_get_line(const struct keel_serial *s,
				     struct keel_serial_line *line);

KEEL_END_DECLS

#endif
