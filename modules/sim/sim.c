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

static const char *const sim_mode_names[] = { "echo", "nmea", "pattern" };

struct sim {
	struct sim *next;
	struct keel_module *m;
	char *name;
	char *link; /* where the slave is published */
	enum sim_mode mode;
	double rate;
	double hangup_every;

	int master;    /* -1 while hung up */
	int slave;     /* our own slave fd, open as long as the master */
	char pts[64];  /* the slave's name; "" while hung up */
	int published; /* link points at pts: we put it there */

	struct event *read_ev;   /* master readable, persistent */
	struct event *write_ev;  /* master writable, one-shot */
	struct event *tick_ev;   /* nmea fixes, pattern rate */
	struct event *hangup_ev; /* hangup-every */
	struct event *reopen_ev; /* the fresh pty after a hang-up */

	unsigned char out[SIM_BUFSIZE]; /* bytes not yet taken by the pty */
	size_t out_off, out_len;
	uint64_t pattern_pos; /* pattern bytes produced for this pty */
	double credit;        /* pattern bytes allowed by the rate */
	struct timespec last_tick;
	struct timespec born; /* the nmea track starts here */

	unsigned long long bytes_out, bytes_in, hangups, dropped;

	char *tmp; /* prepare: temporary symlink that commit renames */
};

struct simmod {
	struct sim *sims;
	struct keel_counter *bytes_out, *bytes_in, *hangups, *dropped;
};

/* What prepare built for commit: the new list. */
struct sim_txn {
	struct sim *sims;
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

/* The mode called @name, or -1. */
static int
sim_mode_parse(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(sim_mode_names) / sizeof(sim_mode_names[0]); i++)
		if (strcmp(name, sim_mode_names[i]) == 0)
			return (int)i;
	return -1;
}

/* ---- publishing the slave at the link ---- */

/* The temporary name next to @link (same directory, so rename is atomic). */
static char *
sim_tmp_name(const char *link)
{
	char *tmp;

	if (asprintf(&tmp, "%s%s", link, SIM_TMP_SUFFIX) == -1)
		return NULL;
	return tmp;
}

/* Create a temporary symlink to @target next to @link; return its name. */
static char *
sim_link_prepare(const char *link, const char *target)
{
	char *tmp = sim_tmp_name(link);
	int saved;

	if (tmp == NULL)
		return NULL;
	/* A leftover of a keeld that died between prepare and commit. */
	if (unlink(tmp) == -1 && errno != ENOENT)
		goto fail;
	if (symlink(target, tmp) == -1)
		goto fail;
	return tmp;
fail:
	saved = errno;
	free(tmp);
	errno = saved;
	return NULL;
}

/* Remove a temporary symlink that will not be renamed. */
static void
sim_link_discard(struct sim *s)
{
	if (s->tmp == NULL)
		return;
	if (unlink(s->tmp) == -1 && errno != ENOENT)
		keel_module_log(s->m, KEEL_LOG_WARNING, "%s: unlink %s: %s",
				s->name, s->tmp, strerror(errno));
	free(s->tmp);
	s->tmp = NULL;
}

/* Rename the temporary symlink onto the link: readers see old or new. */
static int
sim_link_commit(struct sim *s)
{
	int rc = 0;

	if (rename(s->tmp, s->link) == -1) {
		keel_module_log(s->m, KEEL_LOG_WARNING,
				"%s: cannot publish %s at %s: %s", s->name,
				s->pts, s->link, strerror(errno));
		rc = -1;
		if (unlink(s->tmp) == -1 && errno != ENOENT)
			keel_module_log(s->m, KEEL_LOG_WARNING,
					"%s: unlink %s: %s", s->name, s->tmp,
					strerror(errno));
	}
	free(s->tmp);
	s->tmp = NULL;
	s->published = rc == 0;
	return rc;
}

/* Publish the current pty at the link now. */
static int
sim_publish(struct sim *s)
{
	s->tmp = sim_link_prepare(s->link, s->pts);
	if (s->tmp == NULL) {
		keel_module_log(s->m, KEEL_LOG_WARNING,
				"%s: cannot create a symlink next to %s: %s",
				s->name, s->link, strerror(errno));
		return -1;
	}
	if (sim_link_commit(s) == -1)
		return -1;
	keel_module_log(s->m, KEEL_LOG_INFO, "%s: %s -> %s", s->name, s->link,
			s->pts);
	return 0;
}

/* Remove @link if it still points at @pts (someone may have replaced it). */
static void
sim_unlink_if_ours(struct sim *s, const char *link, const char *pts)
{
	char target[sizeof(s->pts)];
	ssize_t n;

	n = readlink(link, target, sizeof(target) - 1);
	if (n == -1)
		return;
	target[n] = '\0';
	if (strcmp(target, pts) != 0)
		return;
	if (unlink(link) == -1 && errno != ENOENT)
		keel_module_log(s->m, KEEL_LOG_WARNING, "%s: unlink %s: %s",
				s->name, link, strerror(errno));
}

/* Take the link away from the current pty. */
static void
sim_unpublish(struct sim *s)
{
	if (!s->published)
		return;
	sim_unlink_if_ours(s, s->link, s->pts);
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
		keel_module_log(s->m, KEEL_LOG_WARNING, "%s: close master: %s",
				s->name, strerror(errno));
	if (s->slave != -1 && close(s->slave) == -1)
		keel_module_log(s->m, KEEL_LOG_WARNING, "%s: close slave: %s",
				s->name, strerror(errno));
	s->master = s->slave = -1;
	s->pts[0] = '\0';
	s->out_off = s->out_len = 0;
}

/* ---- moving bytes ---- */

/* Count bytes written to the pty. */
static void
sim_count_out(struct sim *s, size_t n)
{
	struct simmod *sm = keel_module_data(s->m);

	s->bytes_out += n;
	keel_counter_add(sm->bytes_out, n);
}

/* Count a sentence the full pty had no room for. */
static void
sim_count_drop(struct sim *s)
{
	struct simmod *sm = keel_module_data(s->m);

	s->dropped++;
	keel_counter_add(sm->dropped, 1);
}

/*
 * Write what is queued. 0 when all is written or the pty is full (write_ev
 * armed then), -1 with errno on an error.
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
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (event_add(s->write_ev, NULL) == -1)
				return -1;
			return 0;
		}
		if (n == -1)
			return -1;
		s->out_off += (size_t)n;
		sim_count_out(s, (size_t)n);
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
 * rounds per call so that a fast reader does not starve the loop.
 */
static void
sim_pump(struct sim *s)
{
	int round;
	size_t n;

	if (s->master == -1)
		return;
	for (round = 0;; round++) {
		if (sim_flush(s) == -1) {
			sim_fail(s, "write", errno);
			return;
		}
		if (s->out_len > 0)
			break; /* full: write_ev brings us back */
		if (s->mode != SIM_PATTERN)
			break;
		if (s->rate > 0 && s->credit < 1)
			break; /* the next tick allows more */
		if (round == SIM_ROUNDS) {
			/* Enough for one callback: go on when writable. */
			if (event_add(s->write_ev, NULL) == -1) {
				sim_fail(s, "event_add", errno);
				return;
			}
			break;
		}
		n = SIM_BUFSIZE;
		if (s->rate > 0 && s->credit < SIM_BUFSIZE)
			n = (size_t)s->credit;
		if (s->rate > 0)
			s->credit -= (double)n;
		sim_pattern_fill(s, n);
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
	struct simmod *sm = keel_module_data(s->m);
	unsigned char scratch[4096], *dst;
	size_t room;
	ssize_t n;
	int round;

	(void)what;
	for (round = 0; round < SIM_ROUNDS; round++) {
		if (s->mode == SIM_ECHO) {
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
		s->bytes_in += (size_t)n;
		keel_counter_add(sm->bytes_in, (uint64_t)n);
		if (s->mode == SIM_ECHO)
			s->out_len += (size_t)n;
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
		sim_count_drop(s);
		return;
	}
	do
		n = write(s->master, line, len);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		sim_count_drop(s);
		return;
	}
	if (n == -1) {
		sim_fail(s, "write", errno);
		return;
	}
	sim_count_out(s, (size_t)n);
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
		keel_module_log(s->m, KEEL_LOG_WARNING, "%s: clock: %s",
				s->name, strerror(errno));
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
	struct timespec now;
	double cap;

	(void)fd;
	(void)what;
	if (s->master == -1)
		return;
	if (s->mode == SIM_NMEA) {
		sim_nmea_fix(s);
		return;
	}
	if (s->mode != SIM_PATTERN || s->rate <= 0)
		return;
	if (clock_gettime(CLOCK_MONOTONIC, &now) == -1)
		return;
	s->credit += s->rate * sim_elapsed(&s->last_tick, &now);
	s->last_tick = now;
	/* A slow reader sets the pace: no burst beyond about two ticks. */
	cap = s->rate * 0.02 + 1;
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
	struct timeval tv;
	double period;

	if (s->master == -1)
		return;
	event_del(s->tick_ev);
	if (s->mode == SIM_NMEA || (s->mode == SIM_PATTERN && s->rate > 0)) {
		if (s->mode == SIM_NMEA) {
			period = 1 / s->rate;
		} else {
			period = 1 / s->rate;
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
	if (s->master == -1 || s->hangup_every <= 0)
		return;
	tv = keel_timeval(s->hangup_every);
	if (event_add(s->hangup_ev, &tv) == -1)
		keel_module_log(s->m, KEEL_LOG_WARNING,
				"%s: cannot arm hangup-every: %s", s->name,
				strerror(errno));
}

/* Point the pty's events at its fd; the pty is open. */
static int
sim_assign(struct sim *s)
{
	struct event_base *base = keel_module_base(s->m);

	if (event_assign(s->read_ev, base, s->master, EV_READ | EV_PERSIST,
			 sim_read_cb, s) == -1 ||
	    event_assign(s->write_ev, base, s->master, EV_WRITE, sim_write_cb,
			 s) == -1)
		return -1;
	if (event_add(s->read_ev, NULL) == -1)
		return -1;
	return 0;
}

/* Close the pty and open a fresh one after @delay seconds. */
static void
sim_hangup(struct sim *s, double delay)
{
	struct simmod *sm = keel_module_data(s->m);
	struct timeval tv = keel_timeval(delay);

	sim_unpublish(s);
	sim_pty_close(s);
	s->hangups++;
	keel_counter_add(sm->hangups, 1);
	if (event_add(s->reopen_ev, &tv) == -1)
		keel_module_log(s->m, KEEL_LOG_ERR,
				"%s: cannot schedule the reopen: %s", s->name,
				strerror(errno));
}

/* An I/O error on the master: start over with a fresh pty. */
static void
sim_fail(struct sim *s, const char *what, int err)
{
	keel_module_log(s->m, KEEL_LOG_WARNING,
			"%s: %s on %s: %s; reopening in %gs", s->name, what,
			s->pts, strerror(err), SIM_RETRY_DELAY);
	sim_hangup(s, SIM_RETRY_DELAY);
}

/* hangup-every: the reader sees a hang-up, a fresh pty follows. */
static void
sim_hangup_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sim *s = arg;

	(void)fd;
	(void)what;
	keel_module_log(s->m, KEEL_LOG_INFO, "%s: hanging up %s", s->name,
			s->pts);
	sim_hangup(s, SIM_REOPEN_DELAY);
}

/* Open, publish and start a fresh pty after a hang-up. */
static void
sim_reopen_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sim *s = arg;
	struct timeval tv = keel_timeval(SIM_RETRY_DELAY);

	(void)fd;
	(void)what;
	if (sim_pty_open(s) == -1) {
		keel_module_log(s->m, KEEL_LOG_WARNING,
				"%s: cannot open a pseudo-terminal: %s",
				s->name, strerror(errno));
		goto retry;
	}
	if (sim_assign(s) == -1) {
		keel_module_log(s->m, KEEL_LOG_WARNING, "%s: events: %s",
				s->name, strerror(errno));
		sim_pty_close(s);
		goto retry;
	}
	if (sim_publish(s) == -1) {
		sim_pty_close(s);
		goto retry;
	}
	sim_arm(s);
	sim_arm_hangup(s);
	return;
retry:
	if (event_add(s->reopen_ev, &tv) == -1)
		keel_module_log(s->m, KEEL_LOG_ERR,
				"%s: cannot schedule the reopen: %s", s->name,
				strerror(errno));
}

/* ---- lifecycle of one sim ---- */

/* Close, unpublish and free one sim. */
static void
sim_free(struct sim *s)
{
	sim_link_discard(s);
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
	free(s->name);
	free(s->link);
	free(s);
}

/* Free a list of sims. */
static void
sim_free_all(struct sim *s)
{
	struct sim *next;

	for (; s != NULL; s = next) {
		next = s->next;
		sim_free(s);
	}
}

/* Find the sim called @name in @list. */
static struct sim *
sim_find(struct sim *list, const char *name)
{
	for (; list != NULL; list = list->next)
		if (strcmp(list->name, name) == 0)
			return list;
	return NULL;
}

/* Take the sim called @name out of @list; NULL if absent. */
static struct sim *
sim_take(struct sim **list, const char *name)
{
	struct sim **p, *s;

	for (p = list; *p != NULL; p = &(*p)->next) {
		if (strcmp((*p)->name, name) == 0) {
			s = *p;
			*p = s->next;
			s->next = NULL;
			return s;
		}
	}
	return NULL;
}

/* Allocate the events of a new sim (not added). */
static int
sim_events_new(struct sim *s)
{
	struct event_base *base = keel_module_base(s->m);

	s->read_ev = event_new(base, -1, EV_READ | EV_PERSIST, sim_read_cb, s);
	s->write_ev = event_new(base, -1, EV_WRITE, sim_write_cb, s);
	s->tick_ev = event_new(base, -1, EV_PERSIST, sim_tick_cb, s);
	s->hangup_ev = event_new(base, -1, 0, sim_hangup_cb, s);
	s->reopen_ev = event_new(base, -1, 0, sim_reopen_cb, s);
	if (s->read_ev == NULL || s->write_ev == NULL || s->tick_ev == NULL ||
	    s->hangup_ev == NULL || s->reopen_ev == NULL)
		return -1;
	return 0;
}

/* ---- validators ---- */

/* mode: echo, nmea or pattern. */
static int
sim_check_mode(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);

	if (v == NULL || sim_mode_parse(v) == -1) {
		cfg_error(cfg,
			  "sim: mode '%s' is not one of echo, nmea, pattern",
			  v != NULL ? v : "");
		return -1;
	}
	return 0;
}

/* link: an absolute path naming a file. */
static int
sim_check_link(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);
	size_t len = v != NULL ? strlen(v) : 0;

	if (len == 0 || v[0] != '/' || v[len - 1] == '/') {
		cfg_error(cfg, "sim: link '%s' is not an absolute file path",
			  v != NULL ? v : "");
		return -1;
	}
	if (len + sizeof(SIM_TMP_SUFFIX) > PATH_MAX) {
		cfg_error(cfg, "sim: link '%s' is too long", v);
		return -1;
	}
	return 0;
}

/* rate: 0 or more (its upper bound depends on the mode). */
static int
sim_check_rate(cfg_t *cfg, cfg_opt_t *opt)
{
	double v = cfg_opt_getnfloat(opt, cfg_opt_size(opt) - 1);

	if (!(v >= 0 && v <= SIM_RATE_MAX)) {
		cfg_error(cfg, "sim: rate %g is out of range (0 to %g)", v,
			  SIM_RATE_MAX);
		return -1;
	}
	return 0;
}

/* hangup-every: 0 (never) or seconds. */
static int
sim_check_hangup(cfg_t *cfg, cfg_opt_t *opt)
{
	double v = cfg_opt_getnfloat(opt, cfg_opt_size(opt) - 1);

	if (!(v == 0 || (v >= SIM_HANGUP_MIN && v <= SIM_HANGUP_MAX))) {
		cfg_error(
			cfg,
			"sim: hangup-every %g is out of range (0 for never, or %g to %g seconds)",
			v, SIM_HANGUP_MIN, SIM_HANGUP_MAX);
		return -1;
	}
	return 0;
}

/* ---- the module hooks ---- */

/* Allocate the module's state. */
static int
sim_start(struct keel_module *m)
{
	struct simmod *sm = calloc(1, sizeof(*sm));

	if (sm == NULL)
		return -1;
	sm->bytes_out = keel_counter(m, "bytes-out");
	sm->bytes_in = keel_counter(m, "bytes-in");
	sm->hangups = keel_counter(m, "hangups");
	sm->dropped = keel_counter(m, "dropped");
	keel_module_set_data(m, sm);
	return 0;
}

/* Checks of one section that need no resource; -1 after reporting. */
static int
sim_check_section(struct keel_module *m, cfg_t *sec, struct sim *s,
		  struct sim *others)
{
	struct stat st;
	char *dir, *slash;
	int rc = 0;

	if (s->mode == SIM_NMEA &&
	    (s->rate < SIM_NMEA_RATE_MIN || s->rate > SIM_NMEA_RATE_MAX)) {
		keel_module_error(
			m, sec,
			"sim '%s': nmea rate %g is out of range (%g to %g fixes a second)",
			s->name, s->rate, SIM_NMEA_RATE_MIN, SIM_NMEA_RATE_MAX);
		return -1;
	}
	for (; others != NULL; others = others->next) {
		if (strcmp(others->link, s->link) == 0) {
			keel_module_error(
				m, sec,
				"sim '%s': link %s is already sim '%s''s link",
				s->name, s->link, others->name);
			return -1;
		}
	}
	if (lstat(s->link, &st) == 0 && !S_ISLNK(st.st_mode)) {
		keel_module_error(
			m, sec,
			"sim '%s': %s exists and is not a symbolic link; refusing to replace it",
			s->name, s->link);
		return -1;
	}
	dir = strdup(s->link);
	if (dir == NULL)
		return -1;
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else
		slash[0] = '\0';
	if (stat(dir, &st) == -1) {
		keel_module_error(m, sec, "sim '%s': directory %s: %s", s->name,
				  dir, strerror(errno));
		rc = -1;
	} else if (!S_ISDIR(st.st_mode)) {
		keel_module_error(m, sec, "sim '%s': %s is not a directory",
				  s->name, dir);
		rc = -1;
	}
	free(dir);
	return rc;
}

/* Acquire what a section needs so that commit cannot fail. */
static int
sim_acquire(struct keel_module *m, cfg_t *sec, struct sim *s, struct sim *old)
{
	char target[sizeof(s->pts)];
	ssize_t n;

	if (old != NULL) {
		/* Same pty. Re-publish it when the link moved or someone
		 * removed or replaced it; nothing to do while hung up. */
		if (old->master == -1)
			return 0;
		n = readlink(s->link, target, sizeof(target) - 1);
		if (n >= 0)
			target[n] = '\0';
		if (strcmp(old->link, s->link) == 0 && n >= 0 &&
		    strcmp(target, old->pts) == 0)
			return 0;
		s->tmp = sim_link_prepare(s->link, old->pts);
		if (s->tmp == NULL) {
			keel_module_error(m, sec,
					  "sim '%s': cannot create %s%s: %s",
					  s->name, s->link, SIM_TMP_SUFFIX,
					  strerror(errno));
			return -1;
		}
		return 0;
	}
	if (sim_events_new(s) == -1)
		return -1;
	if (sim_pty_open(s) == -1) {
		keel_module_error(m, sec,
				  "sim '%s': cannot open a pseudo-terminal: %s",
				  s->name, strerror(errno));
		return -1;
	}
	s->tmp = sim_link_prepare(s->link, s->pts);
	if (s->tmp == NULL) {
		keel_module_error(m, sec, "sim '%s': cannot create %s%s: %s",
				  s->name, s->link, SIM_TMP_SUFFIX,
				  strerror(errno));
		return -1;
	}
	return 0;
}

/* Build the new list of sims; nothing running changes. */
static int
sim_prepare(struct keel_module *m, cfg_t *cfg, unsigned int flags, void **txnp)
{
	struct simmod *sm = keel_module_data(m);
	struct sim_txn *txn;
	struct sim **tail, *s;
	unsigned int i, n = cfg_size(cfg, "sim");
	const char *link, *mode;

	txn = calloc(1, sizeof(*txn));
	if (txn == NULL)
		return -1;
	*txnp = txn;
	tail = &txn->sims;
	for (i = 0; i < n; i++) {
		cfg_t *sec = cfg_getnsec(cfg, "sim", i);

		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return -1;
		s->master = s->slave = -1;
		s->m = m;
		s->name = strdup(keel_section_title(sec));
		if (s->name == NULL) {
			free(s);
			return -1;
		}
		link = cfg_getstr(sec, "link");
		if (link == NULL) {
			keel_module_error(m, sec, "sim '%s': link is required",
					  s->name);
			free(s->name);
			free(s);
			return -1;
		}
		s->link = strdup(link);
		if (s->link == NULL) {
			free(s->name);
			free(s);
			return -1;
		}
		mode = cfg_getstr(sec, "mode");
		if (mode == NULL || sim_mode_parse(mode) == -1) {
			keel_module_error(m, sec, "sim '%s': bad mode",
					  s->name);
			sim_free(s);
			return -1;
		}
		s->mode = (enum sim_mode)sim_mode_parse(mode);
		s->rate = cfg_getfloat(sec, "rate");
		s->hangup_every = cfg_getfloat(sec, "hangup-every");
		if (sim_check_section(m, sec, s, txn->sims) == -1) {
			sim_free(s);
			return -1;
		}
		*tail = s;
		tail = &s->next;
		if (flags & KEEL_PREPARE_CHECK)
			continue;
		if (sim_acquire(m, sec, s, sim_find(sm->sims, s->name)) == -1)
			return -1;
	}
	return 0;
}

/* Apply a prepared section to the running sim of the same name. */
static void
sim_update(struct sim *old, struct sim *ns)
{
	int relink = strcmp(old->link, ns->link) != 0;
	int rearm = old->mode != ns->mode || old->rate != ns->rate;
	char *prev = old->link;

	if (relink || ns->tmp != NULL) {
		old->link = ns->link;
		ns->link = prev;
		if (ns->tmp != NULL) {
			old->tmp = ns->tmp;
			ns->tmp = NULL;
			if (sim_link_commit(old) == 0)
				keel_module_log(old->m, KEEL_LOG_INFO,
						"%s: %s -> %s", old->name,
						old->link, old->pts);
		}
		/* The old link goes, unless someone else took it. */
		if (relink && old->master != -1)
			sim_unlink_if_ours(old, prev, old->pts);
	}
	if (rearm) {
		old->mode = ns->mode;
		old->rate = ns->rate;
		sim_arm(old);
	}
	if (old->hangup_every != ns->hangup_every) {
		old->hangup_every = ns->hangup_every;
		sim_arm_hangup(old);
	}
}

/* Switch to the prepared sims: keep, change in place, add, remove. */
static void
sim_commit(struct keel_module *m, void *arg)
{
	struct simmod *sm = keel_module_data(m);
	struct sim_txn *txn = arg;
	struct sim *ns, *old, *result = NULL, **tail = &result, *next;

	for (ns = txn->sims; ns != NULL; ns = next) {
		next = ns->next;
		ns->next = NULL;
		old = sim_take(&sm->sims, ns->name);
		if (old != NULL) {
			sim_update(old, ns);
			sim_free(ns);
			*tail = old;
			tail = &old->next;
			continue;
		}
		if (sim_link_commit(ns) == 0)
			keel_module_log(m, KEEL_LOG_INFO, "%s: %s -> %s",
					ns->name, ns->link, ns->pts);
		if (sim_assign(ns) == -1)
			sim_fail(ns, "event_add", errno);
		else {
			sim_arm(ns);
			sim_arm_hangup(ns);
		}
		*tail = ns;
		tail = &ns->next;
	}
	/* What is left was removed from the configuration. */
	sim_free_all(sm->sims);
	sm->sims = result;
	free(txn);
}

/* Throw the prepared sims away: their ptys and temporary links. */
static void
sim_abort(struct keel_module *m, void *arg)
{
	struct sim_txn *txn = arg;

	(void)m;
	sim_free_all(txn->sims);
	free(txn);
}

/* Close every pty and remove every link; nothing to drain. */
static void
sim_stop(struct keel_module *m)
{
	struct simmod *sm = keel_module_data(m);

	if (sm != NULL) {
		sim_free_all(sm->sims);
		free(sm);
		keel_module_set_data(m, NULL);
	}
	keel_module_stopped(m);
}

/* One line per sim. */
static void
sim_status(struct keel_module *m, struct keel_status *st)
{
	struct simmod *sm = keel_module_data(m);
	struct sim *s;
	char key[300], rate[64];

	for (s = sm->sims; s != NULL; s = s->next) {
		snprintf(key, sizeof(key), "sim.%s", s->name);
		if (s->mode == SIM_ECHO)
			rate[0] = '\0';
		else if (s->mode == SIM_NMEA)
			snprintf(rate, sizeof(rate), ", rate %g/s", s->rate);
		else if (s->rate > 0)
			snprintf(rate, sizeof(rate), ", rate %g B/s", s->rate);
		else
			snprintf(rate, sizeof(rate), ", rate unlimited");
		keel_status_add(
			st, key,
			"mode %s%s, link %s -> %s, hangup-every %gs, %llu bytes out, %llu bytes in, %llu hangups, %llu dropped",
			sim_mode_names[s->mode], rate, s->link,
			s->master != -1 ? s->pts : "(hung up)", s->hangup_every,
			s->bytes_out, s->bytes_in, s->hangups, s->dropped);
	}
}

static cfg_opt_t sim_opts[] = {
	CFG_STR("link", NULL, CFGF_NODEFAULT),
	CFG_STR("mode", "echo", CFGF_NONE),
	CFG_FLOAT("rate", 1.0, CFGF_NONE),
	CFG_FLOAT("hangup-every", 0.0, CFGF_NONE),
	CFG_END(),
};

static const struct keel_validator sim_validators[] = {
	{ "link", sim_check_link },
	{ "mode", sim_check_mode },
	{ "rate", sim_check_rate },
	{ "hangup-every", sim_check_hangup },
	{ NULL, NULL },
};

KEEL_MODULE_DESCRIPTOR = {
	.abi = KEEL_MODULE_ABI,
	.name = "sim",
	.version = "1.0.0",
	.section = KEEL_SECTION_TITLED,
	.options = sim_opts,
	.validators = sim_validators,
	.events = 0,
	.start = sim_start,
	.prepare = sim_prepare,
	.commit = sim_commit,
	.abort = sim_abort,
	.stop = sim_stop,
	.status = sim_status,
	.event = NULL,
};
