/* SPDX-License-Identifier: ISC */
/*
 * sim: simulated serial devices. Each `sim NAME { link mode rate
 * hangup-every }` section is a pseudo-terminal owned by keeld whose slave is
 * published at `link`, a symbolic link to /dev/pts/N replaced atomically.
 *
 *   echo     what the reader writes to the slave comes back unchanged;
 *   nmea     a $GPGGA and a $GPRMC sentence `rate` times a second (one fix
 *            each time), current UTC time, a position moving slowly east;
 *   pattern  byte i of the stream is i mod 251, `rate` bytes a second or as
 *            fast as the reader takes them when rate is 0. The count starts
 *            at 0 for every new pty (after each hang-up), and runs on
 *            across reloads, mode changes and partial writes.
 *
 * `hangup-every` seconds (0: never) the pty is closed, so that the reader
 * sees a hang-up, the link is removed, and about 0.2 s later a fresh pty is
 * published at the same link.
 *
 * Every option changes in place: a reload keeps the pty, so a reader
 * notices nothing; a new link publishes the same pty there. After each
 * reload a link someone removed or replaced is published again.
 *
 * The sim keeps one slave fd of its own open for the pty's whole life: with
 * no reader, a master whose slave is closed reads EIO forever and EV_READ
 * would spin (TRAPS). Writes never block and never queue more than one small
 * buffer per device: pattern produces more only when the pty is writable,
 * nmea drops (and counts) the sentences the pty has no room for, echo stops
 * reading from the reader while its echo is pending.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <keel/keel.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define SIM_BUFSIZE       8192  /* bytes queued per device at most */
#define SIM_ROUNDS        16    /* reads or fills per callback, then yield */
#define SIM_REOPEN_DELAY  0.2   /* hang-up to the fresh pty */
#define SIM_RETRY_DELAY   1.0   /* after a failure to open or publish */
#define SIM_RATE_MAX      1e9   /* bytes a second (pattern) */
#define SIM_NMEA_RATE_MIN 0.01  /* fixes a second */
#define SIM_NMEA_RATE_MAX 100.0 /* fixes a second */
#define SIM_HANGUP_MIN    0.5   /* seconds, unless 0 */
#define SIM_HANGUP_MAX    86400.0
#define SIM_TMP_SUFFIX    ".keel-tmp"

enum sim_mode {
	SIM_ECHO,
	SIM_NMEA,
	SIM_PATTERN,
};

static const char *const sim_modes[] = { "echo", "nmea", "pattern", NULL };

/* One section, filled by the framework. */
struct sim_conf {
	char *link; /* where the slave is published */
	int mode;   /* enum sim_mode */
	double rate;
	double hangup_every;
};

struct sim {
	struct keel_instance *in;
	const struct sim_conf *conf; /* the committed one; NULL before */

	int master;    /* -1 while hung up */
	int slave;     /* our own slave fd, open as long as the master */
	char pts[64];  /* the slave's name; "" while hung up */
	int published; /* link points at pts: we put it there */

	struct event *read_ev;   /* master readable, persistent */
	struct event *write_ev;  /* master writable, armed while output waits */
	struct event *tick_ev;   /* nmea fixes, pattern rate */
	struct event *hangup_ev; /* hangup-every */
	struct event *reopen_ev; /* the fresh pty after a hang-up */

	unsigned char out[SIM_BUFSIZE]; /* bytes not yet taken by the pty */
	size_t out_off, out_len;
	uint64_t pattern_pos; /* pattern bytes produced for this pty */
	double credit;        /* pattern bytes allowed by the rate */
	struct timespec last_tick;
	struct timespec born; /* the nmea track starts here */

	struct keel_metric *tx, *rx, *hangups, *drops;
};

static void sim_pump(struct sim *s);
static void sim_fail(struct sim *s, const char *what, int err);

/* Seconds from @a to @b. */
static double
sim_elapsed(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	       (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* ---- publishing the slave at the link ---- */

/* Create a temporary symlink to @target next to @link (same directory, so
 * that rename is atomic); return its name. */
static char *
sim_link_prepare(const char *link, const char *target)
{
	char *tmp;
	int saved;

	if (asprintf(&tmp, "%s%s", link, SIM_TMP_SUFFIX) == -1)
		return NULL;
	/* A leftover of a keeld that died between prepare and commit. */
	if ((unlink(tmp) == -1 && errno != ENOENT) ||
	    symlink(target, tmp) == -1) {
		saved = errno;
		free(tmp);
		errno = saved;
		return NULL;
	}
	return tmp;
}

/* Remove and free a temporary symlink that will not be renamed. */
static void
sim_link_discard(struct keel_instance *in, char *tmp)
{
	if (unlink(tmp) == -1 && errno != ENOENT)
		keel_instance_log(in, KEEL_LOG_WARNING, "unlink %s: %s", tmp,
				  strerror(errno));
	free(tmp);
}

/* Rename @tmp onto the link (readers see old or new) and free it. */
static int
sim_link_commit(struct sim *s, char *tmp)
{
	const char *link = s->conf->link;

	s->published = rename(tmp, link) == 0;
	if (!s->published) {
		keel_instance_log(s->in, KEEL_LOG_WARNING,
				  "cannot publish %s at %s: %s", s->pts, link,
				  strerror(errno));
		sim_link_discard(s->in, tmp);
		return -1;
	}
	free(tmp);
	keel_instance_log(s->in, KEEL_LOG_INFO, "%s -> %s", link, s->pts);
	return 0;
}

/* Publish the current pty at the link now. */
static int
sim_publish(struct sim *s)
{
	char *tmp = sim_link_prepare(s->conf->link, s->pts);

	if (tmp == NULL) {
		keel_instance_log(s->in, KEEL_LOG_WARNING,
				  "cannot create a symlink next to %s: %s",
				  s->conf->link, strerror(errno));
		return -1;
	}
	return sim_link_commit(s, tmp);
}

/* Non-zero when @link is a symbolic link to @pts. */
static int
sim_points_at(const char *link, const char *pts)
{
	char target[64];
	ssize_t n;

	n = readlink(link, target, sizeof(target) - 1);
	if (n == -1)
		return 0;
	target[n] = '\0';
	return strcmp(target, pts) == 0;
}

/* Remove @link if it still points at @pts (someone may have replaced it). */
static void
sim_unlink_if_ours(struct sim *s, const char *link, const char *pts)
{
	if (sim_points_at(link, pts) && unlink(link) == -1 && errno != ENOENT)
		keel_instance_log(s->in, KEEL_LOG_WARNING, "unlink %s: %s",
				  link, strerror(errno));
}

/* Take the link away from the current pty. */
static void
sim_unpublish(struct sim *s)
{
	/* Published only after a commit gave it its conf. */
	if (!s->published || s->conf == NULL)
		return;
	sim_unlink_if_ours(s, s->conf->link, s->pts);
	s->published = 0;
}

/* ---- the pty ---- */

/* Raw mode on a pty fd: bytes pass unchanged, no echo, no signals. */
static int
sim_set_raw(int fd)
{
	struct termios t;

	if (tcgetattr(fd, &t) == -1)
		return -1;
	cfmakeraw(&t);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	return tcsetattr(fd, TCSANOW, &t);
}

/* Open a fresh pty: master and our slave fd, both raw. */
static int
sim_pty_open(struct sim *s)
{
	int saved, rc;

	s->master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (s->master == -1)
		return -1;
	if (grantpt(s->master) == -1 || unlockpt(s->master) == -1)
		goto fail;
	rc = ptsname_r(s->master, s->pts, sizeof(s->pts));
	if (rc != 0) {
		errno = rc;
		goto fail;
	}
	s->slave = open(s->pts, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (s->slave == -1)
		goto fail;
	/* A fresh slave is cooked: echo, ICANON, CR/LF mapping (TRAPS). */
	if (sim_set_raw(s->master) == -1 || sim_set_raw(s->slave) == -1)
		goto fail;
	s->out_off = s->out_len = 0;
	s->pattern_pos = 0;
	s->credit = 0;
	if (clock_gettime(CLOCK_MONOTONIC, &s->last_tick) == -1 ||
	    clock_gettime(CLOCK_REALTIME, &s->born) == -1)
		goto fail;
	return 0;
fail:
	saved = errno;
	if (s->slave != -1)
		close(s->slave);
	close(s->master);
	s->master = s->slave = -1;
	s->pts[0] = '\0';
	errno = saved;
	return -1;
}

/* Close the pty: the reader sees a hang-up. */
static void
sim_pty_close(struct sim *s)
{
	if (s->read_ev != NULL)
		event_del(s->read_ev);
	if (s->write_ev != NULL)
		event_del(s->write_ev);
	if (s->tick_ev != NULL)
		event_del(s->tick_ev);
	if (s->hangup_ev != NULL)
		event_del(s->hangup_ev);
	if (s->master != -1 && close(s->master) == -1)
		keel_instance_log(s->in, KEEL_LOG_WARNING, "close master: %s",
				  strerror(errno));
	if (s->slave != -1 && close(s->slave) == -1)
		keel_instance_log(s->in, KEEL_LOG_WARNING, "close slave: %s",
				  strerror(errno));
	s->master = s->slave = -1;
	s->pts[0] = '\0';
	s->out_off = s->out_len = 0;
}

/* ---- moving bytes ---- */

/*
 * Write what is queued. 0 when all is written or the pty is full (what is
 * left stays queued), -1 with errno on an error.
 */
static int
sim_flush(struct sim *s)
{
	ssize_t n;

	while (s->out_off < s->out_len) {
		n = write(s->master, s->out + s->out_off,
			  s->out_len - s->out_off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n == -1)
			return -1;
		s->out_off += (size_t)n;
		keel_metric_add(s->tx, (uint64_t)n);
	}
	s->out_off = s->out_len = 0;
	return 0;
}

/* Queue @n pattern bytes (the queue is empty). */
static void
sim_pattern_fill(struct sim *s, size_t n)
{
	size_t i;
	unsigned int v = (unsigned int)(s->pattern_pos % 251);

	for (i = 0; i < n; i++) {
		s->out[i] = (unsigned char)v;
		if (++v == 251)
			v = 0;
	}
	s->out_off = 0;
	s->out_len = n;
	s->pattern_pos += n;
}

/*
 * Drain the queue, then produce more as the mode allows, a bounded number of
 * rounds per call so that a fast reader does not starve the loop. The write
 * event is persistent: it stays armed while there is more to write (no
 * epoll_ctl per write) and is removed when there is not.
 */
static void
sim_pump(struct sim *s)
{
	double rate = s->conf->rate;
	int round, more = 0;
	size_t n;

	if (s->master == -1)
		return;
	for (round = 0;; round++) {
		if (sim_flush(s) == -1) {
			sim_fail(s, "write", errno);
			return;
		}
		if (s->out_len > 0) {
			more = 1; /* full: write_ev brings us back */
			break;
		}
		if (s->conf->mode != SIM_PATTERN)
			break;
		if (rate > 0 && s->credit < 1)
			break; /* the next tick allows more */
		if (round == SIM_ROUNDS) {
			more = 1; /* enough for one callback */
			break;
		}
		n = SIM_BUFSIZE;
		if (rate > 0 && s->credit < SIM_BUFSIZE)
			n = (size_t)s->credit;
		if (rate > 0)
			s->credit -= (double)n;
		sim_pattern_fill(s, n);
	}
	if (!more)
		event_del(s->write_ev);
	else if (event_add(s->write_ev, NULL) == -1) {
		sim_fail(s, "event_add", errno);
		return;
	}
	/* Echo stopped listening while its queue was full. */
	if (s->out_len < SIM_BUFSIZE &&
	    !event_pending(s->read_ev, EV_READ, NULL) &&
	    event_add(s->read_ev, NULL) == -1)
		sim_fail(s, "event_add", errno);
}

/* The reader wrote: echo it, or read and discard it in the other modes. */
static void
sim_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sim *s = arg;
	unsigned char scratch[4096], *dst;
	size_t room;
	ssize_t n;
	int round;

	(void)what;
	for (round = 0; round < SIM_ROUNDS; round++) {
		if (s->conf->mode == SIM_ECHO) {
			if (s->out_off > 0) {
				memmove(s->out, s->out + s->out_off,
					s->out_len - s->out_off);
				s->out_len -= s->out_off;
				s->out_off = 0;
			}
			room = SIM_BUFSIZE - s->out_len;
			if (room == 0) {
				/* The echo is pending: stop reading. */
				event_del(s->read_ev);
				break;
			}
			dst = s->out + s->out_len;
		} else {
			room = sizeof(scratch);
			dst = scratch;
		}
		n = read(fd, dst, room);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			/* Cannot happen while our slave fd is open; never
			 * spin on it anyway (TRAPS). */
			sim_fail(s, "read", n == 0 ? EIO : errno);
			return;
		}
		keel_metric_add(s->rx, (uint64_t)n);
		if (s->conf->mode == SIM_ECHO)
			s->out_len += (size_t)n;
		if ((size_t)n < room)
			break; /* drained: no read() just to see EAGAIN */
	}
	sim_pump(s);
}

/* The pty has room again. */
static void
sim_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sim_pump(arg);
}

/* Append the NMEA checksum and CRLF to "$...": return the length. */
static size_t
sim_nmea_finish(char *buf, size_t size, size_t len)
{
	unsigned char sum = 0;
	size_t i;
	int n;

	for (i = 1; i < len; i++)
		sum ^= (unsigned char)buf[i];
	n = snprintf(buf + len, size - len, "*%02X\r\n", sum);
	if (n < 0 || (size_t)n >= size - len)
		return 0;
	return len + (size_t)n;
}

/* Write one sentence whole, or drop it when the pty has no room. */
static void
sim_nmea_emit(struct sim *s, const char *line, size_t len)
{
	ssize_t n;

	if (len == 0 || s->master == -1)
		return;
	if (s->out_len > 0) {
		keel_metric_add(s->drops, 1);
		return;
	}
	do
		n = write(s->master, line, len);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		keel_metric_add(s->drops, 1);
		return;
	}
	if (n == -1) {
		sim_fail(s, "write", errno);
		return;
	}
	keel_metric_add(s->tx, (uint64_t)n);
	if ((size_t)n < len) {
		/* The reader gets whole sentences: keep the rest. */
		memcpy(s->out, line + n, len - (size_t)n);
		s->out_off = 0;
		s->out_len = len - (size_t)n;
		if (event_add(s->write_ev, NULL) == -1)
			sim_fail(s, "event_add", errno);
	}
}

/* "DDMM.MMMM" (or DDDMM.MMMM) from minutes of arc, rounded first. */
static void
sim_nmea_coord(char *buf, size_t size, double minutes, int degwidth)
{
	unsigned long u = (unsigned long)(minutes * 10000 + 0.5);

	snprintf(buf, size, "%0*lu%02lu.%04lu", degwidth, u / 600000 % 1000,
		 u % 600000 / 10000, u % 10000);
}

/* One fix: $GPGGA and $GPRMC, now, on a track eastwards at 10 knots. */
static void
sim_nmea_fix(struct sim *s)
{
	struct timespec now;
	struct tm tm;
	char line[160], lat[32], lon[32];
	double east, t;
	int n;

	if (clock_gettime(CLOCK_REALTIME, &now) == -1 ||
	    gmtime_r(&now.tv_sec, &tm) == NULL) {
		keel_instance_log(s->in, KEEL_LOG_WARNING, "clock: %s",
				  strerror(errno));
		return;
	}
	/* 10 knots due east at 48 degrees north: 0.004 minutes of longitude
	 * a second, from 48 07.038 N 11 31.000 E; wrap before the date
	 * line. */
	t = sim_elapsed(&s->born, &now);
	if (t < 0)
		t = 0;
	east = 11 * 60 + 31.0 + t * 0.004;
	while (east >= 179 * 60)
		east -= 178 * 60;
	sim_nmea_coord(lat, sizeof(lat), 48 * 60 + 7.038, 2);
	sim_nmea_coord(lon, sizeof(lon), east, 3);
	n = snprintf(
		line, sizeof(line),
		"$GPGGA,%02d%02d%02d.%02ld,%s,N,%s,E,1,08,0.9,545.4,M,46.9,M,,",
		tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 10000000, lat,
		lon);
	if (n > 0 && (size_t)n < sizeof(line))
		sim_nmea_emit(s, line,
			      sim_nmea_finish(line, sizeof(line), (size_t)n));
	n = snprintf(
		line, sizeof(line),
		"$GPRMC,%02d%02d%02d.%02ld,A,%s,N,%s,E,10.0,90.0,%02d%02d%02d,,,A",
		tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 10000000, lat,
		lon, tm.tm_mday, tm.tm_mon + 1, tm.tm_year % 100);
	if (n > 0 && (size_t)n < sizeof(line))
		sim_nmea_emit(s, line,
			      sim_nmea_finish(line, sizeof(line), (size_t)n));
}

/* The rate timer: an nmea fix, or pattern credit. */
static void
sim_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sim *s = arg;
	double rate = s->conf->rate, cap;
	struct timespec now;

	(void)fd;
	(void)what;
	if (s->master == -1)
		return;
	if (s->conf->mode == SIM_NMEA) {
		sim_nmea_fix(s);
		return;
	}
	if (s->conf->mode != SIM_PATTERN || rate <= 0)
		return;
	if (clock_gettime(CLOCK_MONOTONIC, &now) == -1)
		return;
	s->credit += rate * sim_elapsed(&s->last_tick, &now);
	s->last_tick = now;
	/* A slow reader sets the pace: no burst beyond about two ticks. */
	cap = rate * 0.02 + 1;
	if (cap < 2)
		cap = 2;
	if (s->credit > cap)
		s->credit = cap;
	sim_pump(s);
}

/* Arm the events for the mode and options in force (pty open). */
static void
sim_arm(struct sim *s)
{
	int mode = s->conf->mode;
	struct timeval tv;
	double period;

	if (s->master == -1)
		return;
	event_del(s->tick_ev);
	if (mode == SIM_NMEA || (mode == SIM_PATTERN && s->conf->rate > 0)) {
		period = 1 / s->conf->rate;
		if (mode == SIM_PATTERN) {
			if (period < 0.01)
				period = 0.01;
			if (period > 0.25)
				period = 0.25;
			if (clock_gettime(CLOCK_MONOTONIC, &s->last_tick) ==
			    -1) {
				sim_fail(s, "clock_gettime", errno);
				return;
			}
		}
		tv = keel_timeval(period);
		if (event_add(s->tick_ev, &tv) == -1) {
			sim_fail(s, "event_add", errno);
			return;
		}
	}
	s->credit = 0;
	sim_pump(s);
}

/* Arm the hangup-every timer from now (pty open). */
static void
sim_arm_hangup(struct sim *s)
{
	struct timeval tv;

	event_del(s->hangup_ev);
	if (s->master == -1 || s->conf->hangup_every <= 0)
		return;
	tv = keel_timeval(s->conf->hangup_every);
	if (event_add(s->hangup_ev, &tv) == -1)
		keel_instance_log(s->in, KEEL_LOG_WARNING,
				  "cannot arm hangup-every: %s",
				  strerror(errno));
}

/* Point the pty's events at its fd; the pty is open. */
static int
sim_assign(struct sim *s)
{
	struct event_base *base = keel_module_base(keel_instance_module(s->in));

	if (event_assign(s->read_ev, base, s->master, EV_READ | EV_PERSIST,
			 sim_read_cb, s) == -1 ||
	    event_assign(s->write_ev, base, s->master, EV_WRITE | EV_PERSIST,
			 sim_write_cb, s) == -1)
		return -1;
	return event_add(s->read_ev, NULL);
}

/* Start a pty that is open and published: its events and timers. */
static void
sim_start(struct sim *s)
{
	if (sim_assign(s) == -1) {
		sim_fail(s, "event_add", errno);
		return;
	}
	sim_arm(s);
	sim_arm_hangup(s);
}

/* Schedule the fresh pty in @delay seconds. */
static void
sim_schedule_reopen(struct sim *s, double delay)
{
	struct timeval tv = keel_timeval(delay);

	if (event_add(s->reopen_ev, &tv) == -1)
		keel_instance_log(s->in, KEEL_LOG_ERR,
				  "cannot schedule the reopen: %s",
				  strerror(errno));
}

/* Close the pty and open a fresh one after @delay seconds. */
static void
sim_hangup(struct sim *s, double delay)
{
	sim_unpublish(s);
	sim_pty_close(s);
	keel_metric_add(s->hangups, 1);
	sim_schedule_reopen(s, delay);
}

/* An I/O error on the master: start over with a fresh pty. */
static void
sim_fail(struct sim *s, const char *what, int err)
{
	keel_instance_log(s->in, KEEL_LOG_WARNING,
			  "%s on %s: %s; reopening in %gs", what, s->pts,
			  strerror(err), SIM_RETRY_DELAY);
	sim_hangup(s, SIM_RETRY_DELAY);
}

/* hangup-every: the reader sees a hang-up, a fresh pty follows. */
static void
sim_hangup_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sim *s = arg;

	(void)fd;
	(void)what;
	keel_instance_log(s->in, KEEL_LOG_INFO, "hanging up %s", s->pts);
	sim_hangup(s, SIM_REOPEN_DELAY);
}

/* Open, publish and start a fresh pty after a hang-up. */
static void
sim_reopen_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sim *s = arg;

	(void)fd;
	(void)what;
	if (sim_pty_open(s) == -1) {
		keel_instance_log(s->in, KEEL_LOG_WARNING,
				  "cannot open a pseudo-terminal: %s",
				  strerror(errno));
		sim_schedule_reopen(s, SIM_RETRY_DELAY);
		return;
	}
	if (sim_publish(s) == -1) {
		sim_pty_close(s);
		sim_schedule_reopen(s, SIM_RETRY_DELAY);
		return;
	}
	sim_start(s);
}

/* ---- lifecycle of one sim ---- */

/* Close, unpublish and free one sim. */
static void
sim_free(struct sim *s)
{
	if (s == NULL)
		return;
	sim_unpublish(s);
	sim_pty_close(s);
	if (s->read_ev != NULL)
		event_free(s->read_ev);
	if (s->write_ev != NULL)
		event_free(s->write_ev);
	if (s->tick_ev != NULL)
		event_free(s->tick_ev);
	if (s->hangup_ev != NULL)
		event_free(s->hangup_ev);
	if (s->reopen_ev != NULL)
		event_free(s->reopen_ev);
	free(s);
}

/* A new sim with its pty open (not published) and its events allocated
 * (not added); NULL after reporting. */
static struct sim *
sim_new(struct keel_instance *in)
{
	struct event_base *base = keel_module_base(keel_instance_module(in));
	struct sim *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		keel_instance_error(in, NULL, "out of memory");
		return NULL;
	}
	s->in = in;
	s->master = s->slave = -1;
	s->read_ev = event_new(base, -1, EV_READ | EV_PERSIST, sim_read_cb, s);
	s->write_ev =
		event_new(base, -1, EV_WRITE | EV_PERSIST, sim_write_cb, s);
	s->tick_ev = event_new(base, -1, EV_PERSIST, sim_tick_cb, s);
	s->hangup_ev = event_new(base, -1, 0, sim_hangup_cb, s);
	s->reopen_ev = event_new(base, -1, 0, sim_reopen_cb, s);
	if (s->read_ev == NULL || s->write_ev == NULL || s->tick_ev == NULL ||
	    s->hangup_ev == NULL || s->reopen_ev == NULL) {
		keel_instance_error(in, NULL, "out of memory");
		goto fail;
	}
	if (sim_pty_open(s) == -1) {
		keel_instance_error(in, NULL,
				    "cannot open a pseudo-terminal: %s",
				    strerror(errno));
		goto fail;
	}
	return s;
fail:
	sim_free(s);
	return NULL;
}

/* Checks that need the whole section or the filesystem; -1 after
 * reporting. */
static int
sim_check(struct keel_instance *in, const struct sim_conf *c)
{
	char dir[PATH_MAX], *slash;
	struct stat st;
	int rc;

	if (c->mode == SIM_NMEA &&
	    (c->rate < SIM_NMEA_RATE_MIN || c->rate > SIM_NMEA_RATE_MAX)) {
		keel_instance_error(
			in, "rate",
			"nmea rate %g is out of range (%g to %g fixes a second)",
			c->rate, SIM_NMEA_RATE_MIN, SIM_NMEA_RATE_MAX);
		return -1;
	}
	if (c->hangup_every > 0 && c->hangup_every < SIM_HANGUP_MIN) {
		keel_instance_error(
			in, "hangup-every",
			"hangup-every %g is out of range (0 for never, or %g to %g seconds)",
			c->hangup_every, SIM_HANGUP_MIN, SIM_HANGUP_MAX);
		return -1;
	}
	if (lstat(c->link, &st) == 0 && !S_ISLNK(st.st_mode)) {
		keel_instance_error(
			in, "link",
			"link %s exists and is not a symbolic link; refusing to replace it",
			c->link);
		return -1;
	}
	/* The directory ("/" for "/x"); sim_check_link() bounds the length. */
	snprintf(dir, sizeof(dir), "%s", c->link);
	slash = strrchr(dir, '/');
	slash[slash == dir ? 1 : 0] = '\0';
	rc = stat(dir, &st);
	if (rc == 0 && !S_ISDIR(st.st_mode)) {
		rc = -1;
		errno = ENOTDIR;
	}
	if (rc == -1)
		keel_instance_error(in, "link", "link directory %s: %s", dir,
				    strerror(errno));
	return rc;
}

/* ---- the module hooks ---- */

/* link: an absolute path naming a file, with room for the suffix. */
static int
sim_check_link(const char *v, char *err, size_t errlen)
{
	size_t len = strlen(v);

	if (len == 0 || v[0] != '/' || v[len - 1] == '/')
		snprintf(err, errlen, "link '%s' is not an absolute file path",
			 v);
	else if (len + sizeof(SIM_TMP_SUFFIX) > PATH_MAX)
		snprintf(err, errlen, "link '%s' is too long", v);
	else
		return 0;
	return -1;
}

/*
 * Check a section and acquire what commit needs: a new sim gets its pty
 * and a temporary link to it; a running one whose link moves gets a
 * temporary link to its pty next to the new link (nothing while hung up).
 */
static int
sim_prepare(struct keel_instance *in, const void *arg, unsigned int flags)
{
	const struct sim_conf *c = arg;
	struct sim *s;
	char *tmp;

	if (sim_check(in, c) == -1)
		return -1;
	if (flags & KEEL_PREPARE_CHECK)
		return 0;
	if (keel_instance_change(in) == KEEL_CHANGE_INPLACE) {
		s = keel_instance_data(in);
		if (!keel_instance_changed(in, "link") || s->master == -1)
			return 0;
	} else if ((s = sim_new(in)) == NULL) {
		return -1;
	}
	tmp = sim_link_prepare(c->link, s->pts);
	if (tmp == NULL) {
		keel_instance_error(in, "link", "cannot create %s%s: %s",
				    c->link, SIM_TMP_SUFFIX, strerror(errno));
		if (s->conf == NULL)
			sim_free(s);
		return -1;
	}
	if (s->conf == NULL)
		keel_instance_set_data(in, s);
	keel_instance_set_plan(in, tmp);
	return 0;
}

/* Switch to the prepared section: publish and start a new sim, or apply
 * the changes to the running one. */
static void
sim_commit(struct keel_instance *in, const void *arg)
{
	const struct sim_conf *old = keel_instance_conf(in);
	struct sim *s = keel_instance_data(in);
	char *tmp = keel_instance_plan(in);

	s->conf = arg;
	if (keel_instance_change(in) != KEEL_CHANGE_INPLACE) {
		struct keel_module *m = keel_instance_module(in);

		s->tx = keel_metric_new(
			m, in, KEEL_METRIC_COUNTER, "tx_bytes_total",
			"Bytes written to the pseudo-terminal", NULL, NULL);
		s->rx = keel_metric_new(
			m, in, KEEL_METRIC_COUNTER, "rx_bytes_total",
			"Bytes the client wrote to the pseudo-terminal", NULL,
			NULL);
		s->hangups = keel_metric_new(
			m, in, KEEL_METRIC_COUNTER, "hangups_total",
			"Pseudo-terminals closed (hangup-every, I/O errors)",
			NULL, NULL);
		s->drops = keel_metric_new(
			m, in, KEEL_METRIC_COUNTER, "drops_total",
			"NMEA sentences dropped: the pseudo-terminal was full",
			NULL, NULL);
		sim_link_commit(s, tmp);
		sim_start(s);
		return;
	}
	if (tmp != NULL)
		sim_link_commit(s, tmp);
	/* The old link goes, unless someone else took it. */
	if (keel_instance_changed(in, "link") && s->master != -1)
		sim_unlink_if_ours(s, old->link, s->pts);
	if (keel_instance_changed(in, "mode") ||
	    keel_instance_changed(in, "rate"))
		sim_arm(s);
	if (keel_instance_changed(in, "hangup-every"))
		sim_arm_hangup(s);
}

/* Throw away what prepare built: a new sim, a temporary link. */
static void
sim_abort(struct keel_instance *in)
{
	struct sim *s = keel_instance_data(in);
	char *tmp = keel_instance_plan(in);

	if (tmp != NULL)
		sim_link_discard(in, tmp);
	if (s != NULL && s->conf == NULL) {
		sim_free(s);
		keel_instance_set_data(in, NULL);
	}
}

/* Close the pty and remove the link; nothing to drain. */
static void
sim_remove(struct keel_instance *in, unsigned int flags)
{
	(void)flags;
	sim_free(keel_instance_data(in));
	keel_instance_set_data(in, NULL);
	keel_instance_removed(in);
}

/* After a reload, publish again a link someone removed or replaced. */
static void
sim_event(struct keel_module *m, enum keel_event ev)
{
	struct keel_instance *in = NULL;
	struct stat st;
	struct sim *s;

	if (ev != KEEL_EVENT_RELOAD)
		return;
	while ((in = keel_instance_next(m, in)) != NULL) {
		s = keel_instance_data(in);
		if (s == NULL || s->conf == NULL || s->master == -1 ||
		    sim_points_at(s->conf->link, s->pts))
			continue;
		if (lstat(s->conf->link, &st) == 0 && !S_ISLNK(st.st_mode))
			keel_instance_log(
				in, KEEL_LOG_WARNING,
				"%s exists and is not a symbolic link; refusing to replace it",
				s->conf->link);
		else
			sim_publish(s);
	}
}

/* The section's mode, link and pty; the counters are its metrics. */
static void
sim_status(struct keel_instance *in, struct keel_status *st)
{
	const struct sim *s = keel_instance_data(in);

	if (s == NULL || s->conf == NULL)
		return;
	keel_status_str(st, "mode", sim_modes[s->conf->mode]);
	if (s->conf->mode != SIM_ECHO)
		keel_status_double(st, "rate", s->conf->rate);
	keel_status_str(st, "link", s->conf->link);
	keel_status_str(st, "state", s->master != -1 ? "open" : "hung up");
	if (s->master != -1)
		keel_status_str(st, "pts", s->pts);
	keel_status_bool(st, "published", s->published);
	keel_status_double(st, "hangup_every", s->conf->hangup_every);
}

static const struct keel_option sim_options[] = {
	KEEL_OPTION_CHECK("link", KEEL_OPT_STRING, struct sim_conf, link, NULL,
			  sim_check_link, KEEL_OPT_REQUIRED | KEEL_OPT_UNIQUE),
	KEEL_OPTION_ENUM("mode", struct sim_conf, mode, "echo", sim_modes, 0),
	KEEL_OPTION_RANGE("rate", KEEL_OPT_FLOAT, struct sim_conf, rate, "1", 0,
			  SIM_RATE_MAX, 0),
	KEEL_OPTION_RANGE("hangup-every", KEEL_OPT_SECONDS, struct sim_conf,
			  hangup_every, "0", 0, SIM_HANGUP_MAX, 0),
	KEEL_OPTIONS_END,
};

KEEL_MODULE_DESCRIPTOR = {
	KEEL_MODULE_HEAD, /* abi, size */
	.name = "sim",
	.version = "2.0.0",
	.section = KEEL_SECTION_TITLED,
	.options = sim_options,
	.conf_size = sizeof(struct sim_conf),
	.label = "sim",
	.events = KEEL_EVENT_RELOAD,
	.prepare = sim_prepare,
	.commit = sim_commit,
	.abort = sim_abort,
	.remove = sim_remove,
	.status = sim_status,
	.event = sim_event,
};
