/* SPDX-License-Identifier: ISC */
/*
 * serial: modem lines, break, purge and line read-back (issue 9).
 *
 * Ptys have no modem lines, so most tests put a simulated UART behind a
 * real pty: the port opens the pty (termios, reads and writes are real)
 * and its modem, break and purge ioctls go to `dev` below through
 * serial_set_ioctl(). The last tests use the pty alone, to pin down what a
 * pty really does (see docs/design-serial.md, "Pty versus hardware").
 */
#include "keel-internal.h"
#include "unit.h"

#include <asm/termbits.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <keel/serial.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* The pty functions, without <stdlib.h>'s feature macros or termios.h. */
int grantpt(int fd);
int unlockpt(int fd);
int ptsname_r(int fd, char *buf, size_t len);

/* @call returns -1 with errno @err. */
#define assert_fails(call, err)                 \
	do {                                    \
		errno = 0;                      \
		assert_int_equal((call), -1);   \
		assert_int_equal(errno, (err)); \
	} while (0)

/* ---- the simulated device ---- */

static struct {
	pthread_mutex_t mu;
	int bits;      /* TIOCM_* lines */
	int miwait;    /* TIOCMIWAIT supported */
	int notty;     /* every modem ioctl: ENOTTY */
	int mget_err;  /* TIOCMGET fails with this errno */
	int brk;       /* break on */
	int nsbrk;     /* TIOCSBRK calls */
	int ncbrk;     /* TIOCCBRK calls */
	int nmget;     /* TIOCMGET calls */
	int nmiwait;   /* TIOCMIWAIT calls */
	int inwait;    /* threads inside TIOCMIWAIT now */
	int nintr;     /* TIOCMIWAIT ended by a signal */
	long flushes;  /* TCFLSH calls */
	long flush_q;  /* the last one's queue */
	int wake[2];   /* a byte: a line changed */
	double brk_on; /* when the break went on, off */
	double brk_off;
} dev = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Monotonic seconds. */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* TIOCMIWAIT: block until a line changes, or a signal (like the kernel). */
static int
dev_miwait(void)
{
	struct pollfd p = { .fd = dev.wake[0], .events = POLLIN };
	char c;
	int n;

	dev.nmiwait++;
	if (!dev.miwait) {
		pthread_mutex_unlock(&dev.mu);
		errno = EINVAL;
		return -1;
	}
	dev.inwait++;
	pthread_mutex_unlock(&dev.mu);
	n = poll(&p, 1, -1);
	pthread_mutex_lock(&dev.mu);
	dev.inwait--;
	if (n == -1 && errno == EINTR)
		dev.nintr++;
	pthread_mutex_unlock(&dev.mu);
	if (n == -1)
		return -1;
	if (read(dev.wake[0], &c, 1) != 1) {
		errno = EINTR; /* another thread took it */
		return -1;
	}
	return 0;
}

/* The device layer: modem lines and break simulated, the rest real. */
static int
dev_ioctl(int fd, unsigned long req, void *arg)
{
	int rc = 0;

	pthread_mutex_lock(&dev.mu);
	if (dev.notty && (req == TIOCMGET || req == TIOCMBIS ||
			  req == TIOCMBIC || req == TIOCMIWAIT)) {
		pthread_mutex_unlock(&dev.mu);
		errno = ENOTTY;
		return -1;
	}
	switch (req) {
	case TIOCMIWAIT:
		return dev_miwait(); /* unlocks */
	case TIOCMGET:
		dev.nmget++;
		if (dev.mget_err != 0) {
			errno = dev.mget_err;
			rc = -1;
		} else {
			*(int *)arg = dev.bits;
		}
		break;
	case TIOCMBIS:
		dev.bits |= *(int *)arg & (TIOCM_DTR | TIOCM_RTS);
		break;
	case TIOCMBIC:
		dev.bits &= ~(*(int *)arg & (TIOCM_DTR | TIOCM_RTS));
		break;
	case TIOCSBRK:
		dev.nsbrk++;
		dev.brk = 1;
		dev.brk_on = now();
		break;
	case TIOCCBRK:
		dev.ncbrk++;
		dev.brk = 0;
		dev.brk_off = now();
		break;
	case TCFLSH:
		dev.flushes++;
		dev.flush_q = (long)arg;
		pthread_mutex_unlock(&dev.mu);
		return ioctl(fd, req, arg);
	default:
		pthread_mutex_unlock(&dev.mu);
		return ioctl(fd, req, arg);
	}
	pthread_mutex_unlock(&dev.mu);
	return rc;
}

/* The device's input lines become @bits (DTR/RTS kept). */
static void
dev_lines(int bits)
{
	pthread_mutex_lock(&dev.mu);
	dev.bits = (dev.bits & (TIOCM_DTR | TIOCM_RTS)) | bits;
	pthread_mutex_unlock(&dev.mu);
	assert_int_equal(write(dev.wake[1], "x", 1), 1);
}

/* Read a counter of the device. */
static int
dev_get(const int *field)
{
	int v;

	pthread_mutex_lock(&dev.mu);
	v = *field;
	pthread_mutex_unlock(&dev.mu);
	return v;
}

/* Set a field of the device. */
static void
dev_set(int *field, int v)
{
	pthread_mutex_lock(&dev.mu);
	*field = v;
	pthread_mutex_unlock(&dev.mu);
}

/* ---- a port on a pty ---- */

static struct {
	struct event_base *base;
	char *dir, *link;
	int master;
	struct keel_serial *s;
	int opened, closed, drained;
	int reports;
	unsigned int lines, changed;
	char why[128];
} t;

/* A fresh pty, published at t.link (replacing the last one). */
static void
plug(void)
{
	char name[64], *tmp;

	t.master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(t.master >= 0);
	assert_int_equal(grantpt(t.master), 0);
	assert_int_equal(unlockpt(t.master), 0);
	assert_int_equal(ptsname_r(t.master, name, sizeof(name)), 0);
	tmp = unit_path(t.dir, "tty.tmp");
	unlink(tmp);
	assert_int_equal(symlink(name, tmp), 0);
	assert_int_equal(rename(tmp, t.link), 0);
	free(tmp);
}

/* The device goes away: the slave side reads EIO. */
static void
unplug(void)
{
	unlink(t.link);
	close(t.master);
	t.master = -1;
}

static void
on_opened(struct keel_serial *s, void *arg)
{
	(void)s;
	(void)arg;
	t.opened++;
}

static void
on_closed(struct keel_serial *s, const char *why, void *arg)
{
	(void)s;
	(void)arg;
	t.closed++;
	snprintf(t.why, sizeof(t.why), "%s", why);
}

static void
on_drained(struct keel_serial *s, void *arg)
{
	(void)s;
	(void)arg;
	t.drained++;
}

static void
on_modem(struct keel_serial *s, unsigned int lines, unsigned int changed,
	 void *arg)
{
	assert_ptr_equal(s, t.s);
	assert_ptr_equal(arg, &t);
	t.reports++;
	t.lines = lines;
	t.changed = changed;
}

static const struct keel_serial_callbacks callbacks = {
	.opened = on_opened,
	.closed = on_closed,
	.drained = on_drained,
};

/* Run the loop for @ms. */
static void
spin(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(t.base, &tv);
	event_base_dispatch(t.base);
}

/* Run the loop until *@flag reaches @want, at most @ms; 1 if it did. */
static int
wait_for(const int *flag, int want, int ms)
{
	double end = now() + ms / 1000.0;

	while (*flag < want && now() < end)
		spin(2);
	return *flag >= want;
}

/* Threads of this process. */
static int
threads(void)
{
	char *st = unit_slurp("/proc/self/status", NULL), *p;
	int n;

	assert_non_null(st);
	p = strstr(st, "Threads:");
	assert_non_null(p);
	n = atoi(p + 8);
	free(st);
	return n;
}

/* Wait until the process has @want threads (the opener is detached, and
 * on a loaded machine takes its time to go). */
static int
threads_settle(int want)
{
	double end = now() + 5.0;

	while (threads() != want && now() < end)
		spin(2);
	return threads();
}

/* Open descriptors of this process. */
static int
fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* Events added to the base (timers included). */
static int
added(void)
{
	return event_base_get_num_events(t.base, EVENT_BASE_COUNT_ADDED);
}

/* A port on a fresh pty, open; the simulated device reset. */
static int
setup(void **state)
{
	struct keel_serial_params p = {
		.name = "t",
		.line = { .speed = 9600,
			  .data_bits = 8,
			  .parity = 'N',
			  .stop_bits = 1,
			  .local = 1 },
		.open_timeout = 2,
		.retry_min = 0.02,
		.retry_max = 0.05,
		.out_max = 4096,
	};

	(void)state;
	memset(&t, 0, sizeof(t));
	pthread_mutex_lock(&dev.mu);
	dev.bits = TIOCM_DTR | TIOCM_RTS; /* raised at open */
	dev.miwait = 1;
	dev.notty = dev.mget_err = 0;
	dev.brk = dev.nsbrk = dev.ncbrk = dev.nmget = dev.nmiwait = 0;
	dev.inwait = dev.nintr = 0;
	dev.flushes = dev.flush_q = 0;
	pthread_mutex_unlock(&dev.mu);
	assert_int_equal(pipe2(dev.wake, O_CLOEXEC | O_NONBLOCK), 0);
	serial_set_ioctl(dev_ioctl);
	serial_set_modem_poll(0.05);
	t.base = event_base_new();
	assert_non_null(t.base);
	t.dir = unit_tmpdir();
	t.link = unit_path(t.dir, "ttyTEST");
	plug();
	p.device = t.link;
	t.s = keel_serial_new(t.base, &p, &callbacks, &t);
	assert_non_null(t.s);
	assert_true(wait_for(&t.opened, 1, 2000));
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	keel_serial_free(t.s);
	if (t.master >= 0)
		close(t.master);
	event_base_free(t.base);
	unit_rmtree(t.dir);
	free(t.dir);
	free(t.link);
	close(dev.wake[0]);
	close(dev.wake[1]);
	serial_set_ioctl(NULL);
	return 0;
}

/* ---- DTR/RTS ---- */

/*
 * The device has no modem lines: set, get and watch answer ENOTTY at once
 * (the loop never waits); the DTR/RTS request is counted, the reads are
 * not (status would make the counter grow).
 */
static void
assert_no_modem_lines(void)
{
	double t0 = now();

	assert_fails(keel_serial_set_modem(t.s, KEEL_MODEM_DTR, 0), ENOTTY);
	assert_fails(keel_serial_get_modem(t.s), ENOTTY);
	assert_fails(keel_serial_watch_modem(t.s, on_modem, &t), ENOTTY);
	assert_true(now() - t0 < 0.05);
	assert_int_equal(keel_serial_stats(t.s)->modem_unsupported, 1);
}

static void
test_set_get_modem(void **state)
{
	(void)state;
	dev_lines(TIOCM_CTS | TIOCM_CAR);
	assert_int_equal(keel_serial_set_modem(t.s,
					       KEEL_MODEM_DTR | KEEL_MODEM_RTS,
					       KEEL_MODEM_RTS),
			 0);
	assert_int_equal(dev_get(&dev.bits) & (TIOCM_DTR | TIOCM_RTS),
			 TIOCM_RTS);
	assert_int_equal(keel_serial_get_modem(t.s),
			 KEEL_MODEM_RTS | KEEL_MODEM_CTS | KEEL_MODEM_DCD);
	/* Only the lines named in the mask are touched. */
	assert_int_equal(
		keel_serial_set_modem(t.s, KEEL_MODEM_DTR, KEEL_MODEM_DTR), 0);
	assert_int_equal(dev_get(&dev.bits) & (TIOCM_DTR | TIOCM_RTS),
			 TIOCM_DTR | TIOCM_RTS);
	/* The device's lines are not ours to set. */
	assert_fails(keel_serial_set_modem(t.s, KEEL_MODEM_CTS, 0), EINVAL);
	assert_int_equal(keel_serial_stats(t.s)->modem_unsupported, 0);
}

static void
test_modem_wish_applied_at_reopen(void **state)
{
	(void)state;
	assert_int_equal(keel_serial_set_modem(t.s, KEEL_MODEM_DTR, 0), 0);
	unplug();
	assert_true(wait_for(&t.closed, 1, 2000));
	/* Not open: remembered, EAGAIN. */
	assert_fails(keel_serial_set_modem(t.s, KEEL_MODEM_RTS, 0), EAGAIN);
	assert_fails(keel_serial_get_modem(t.s), EAGAIN);
	pthread_mutex_lock(&dev.mu);
	dev.bits = TIOCM_DTR | TIOCM_RTS; /* a fresh open raises both */
	pthread_mutex_unlock(&dev.mu);
	plug();
	assert_true(wait_for(&t.opened, 2, 3000));
	assert_int_equal(dev_get(&dev.bits) & (TIOCM_DTR | TIOCM_RTS), 0);
}

static void
test_enotty_counted_and_at_once(void **state)
{
	int before_threads = threads_settle(1), before_added = added();

	(void)state;
	dev_set(&dev.notty, 1);
	assert_no_modem_lines();
	/* Unsupported: nothing runs, nothing is reported. */
	spin(100);
	assert_int_equal(t.reports, 0);
	assert_int_equal(threads(), before_threads);
	assert_int_equal(added(), before_added);
	assert_int_equal(dev_get(&dev.nmiwait), 0);
	assert_int_equal(keel_serial_watch_modem(t.s, NULL, NULL), 0);
}

/* ---- break ---- */

static void
test_break_timed(void **state)
{
	double t0 = now();

	(void)state;
	assert_int_equal(keel_serial_send_break(t.s, 100), 0);
	assert_int_equal(dev_get(&dev.brk), 1);
	assert_true(now() - t0 < 0.02); /* the loop never waited */
	spin(50);
	assert_int_equal(dev_get(&dev.brk), 1);
	assert_true(wait_for(&dev.ncbrk, 1, 1000));
	assert_int_equal(dev_get(&dev.brk), 0);
	assert_true(dev.brk_off - dev.brk_on >= 0.095);
	assert_true(dev.brk_off - dev.brk_on < 0.3);
	assert_int_equal(keel_serial_stats(t.s)->breaks, 1);
}

static void
test_break_extended(void **state)
{
	(void)state;
	assert_int_equal(keel_serial_send_break(t.s, 100), 0);
	spin(60);
	assert_int_equal(keel_serial_send_break(t.s, 100), 0);
	assert_true(wait_for(&dev.ncbrk, 1, 1000));
	/* One break, ending 100 ms after the second request. */
	assert_int_equal(dev_get(&dev.nsbrk), 1);
	assert_true(dev.brk_off - dev.brk_on >= 0.155);
	assert_int_equal(keel_serial_stats(t.s)->breaks, 1);
}

static void
test_break_on_off(void **state)
{
	int before = added();

	(void)state;
	assert_int_equal(keel_serial_set_break(t.s, 1), 0);
	spin(150);
	assert_int_equal(dev_get(&dev.brk), 1);
	assert_int_equal(keel_serial_set_break(t.s, 0), 0);
	assert_int_equal(dev_get(&dev.brk), 0);
	/* Off ends a timed break at once, and its timer. */
	assert_int_equal(keel_serial_send_break(t.s, 5000), 0);
	assert_int_equal(added(), before + 1);
	assert_int_equal(keel_serial_set_break(t.s, 0), 0);
	assert_int_equal(dev_get(&dev.brk), 0);
	assert_int_equal(added(), before);
	assert_int_equal(dev_get(&dev.nsbrk), 2);
	assert_int_equal(keel_serial_stats(t.s)->breaks, 2);
	/* Off again is nothing. */
	assert_int_equal(keel_serial_set_break(t.s, 0), 0);
	assert_int_equal(dev_get(&dev.ncbrk), 2);
}

static void
test_break_ended_by_hangup(void **state)
{
	(void)state;
	assert_int_equal(keel_serial_send_break(t.s, 5000), 0);
	unplug();
	assert_true(wait_for(&t.closed, 1, 2000));
	assert_int_equal(dev_get(&dev.brk), 0);
	assert_fails(keel_serial_send_break(t.s, 10), EAGAIN);
	assert_fails(keel_serial_set_break(t.s, 1), EAGAIN);
	assert_int_equal(keel_serial_set_break(t.s, 0), 0);
}

static void
test_break_ended_by_free(void **state)
{
	(void)state;
	assert_int_equal(keel_serial_send_break(t.s, 5000), 0);
	keel_serial_free(t.s); /* the timer goes too: ASan would see it */
	t.s = NULL;
	assert_int_equal(dev_get(&dev.brk), 0);
	assert_int_equal(dev_get(&dev.ncbrk), 1);
}

/* ---- purge ---- */

static void
test_purge(void **state)
{
	struct evbuffer *b = evbuffer_new();
	char chunk[1024];
	int i;

	(void)state;
	assert_int_equal(keel_serial_purge(t.s, KEEL_PURGE_RX), 0);
	assert_int_equal(dev.flush_q, TCIFLUSH);
	assert_int_equal(keel_serial_purge(t.s, KEEL_PURGE_RX | KEEL_PURGE_TX),
			 0);
	assert_int_equal(dev.flush_q, TCIOFLUSH);
	assert_fails(keel_serial_purge(t.s, 4), EINVAL);
	/* Fill the pty and then keel's queue (the master reads nothing). */
	memset(chunk, 'a', sizeof(chunk));
	for (i = 0; i < 1000 && !keel_serial_output_full(t.s); i++) {
		evbuffer_add(b, chunk, sizeof(chunk));
		keel_serial_write(t.s, b);
		evbuffer_drain(b, evbuffer_get_length(b));
	}
	assert_true(keel_serial_output_full(t.s));
	assert_int_equal(keel_serial_purge(t.s, KEEL_PURGE_TX), 0);
	assert_int_equal(dev.flush_q, TCOFLUSH);
	assert_int_equal(keel_serial_output_length(t.s), 0);
	assert_false(keel_serial_output_full(t.s));
	assert_int_equal(t.drained, 1);
	assert_int_equal(keel_serial_stats(t.s)->drops, 0);
	evbuffer_free(b);
	/* Closed: nothing queued, nothing to do. */
	unplug();
	assert_true(wait_for(&t.closed, 1, 2000));
	assert_int_equal(keel_serial_purge(t.s, KEEL_PURGE_TX), 0);
}

/* ---- watching ---- */

static void
test_watch_thread(void **state)
{
	int base_threads = threads_settle(1), base_fds = fds();
	int base_added = added(), reports;

	(void)state;
	dev_lines(TIOCM_CTS);
	/* Nobody watches: no thread, no timer, not one ioctl. */
	spin(100);
	assert_int_equal(dev_get(&dev.nmget), 0);
	assert_int_equal(dev_get(&dev.nmiwait), 0);
	assert_int_equal(threads(), base_threads);
	assert_int_equal(added(), base_added);

	assert_int_equal(keel_serial_watch_modem(t.s, on_modem, &t), 0);
	assert_int_equal(t.reports, 0); /* never from inside the call */
	assert_true(wait_for(&t.reports, 1, 1000));
	assert_int_equal(t.lines,
			 KEEL_MODEM_DTR | KEEL_MODEM_RTS | KEEL_MODEM_CTS);
	assert_int_equal(t.changed, 0);
	assert_int_equal(threads(), base_threads + 1);

	/* A change wakes the callback with what changed, for one TIOCMGET
	 * on the loop. */
	spin(20);
	reports = dev_get(&dev.nmget);
	dev_lines(TIOCM_CTS | TIOCM_CAR);
	assert_true(wait_for(&t.reports, 2, 1000));
	assert_int_equal(t.changed, KEEL_MODEM_DCD);
	assert_true(t.lines & KEEL_MODEM_DCD);
	assert_int_equal(dev_get(&dev.nmget), reports + 1);
	dev_lines(TIOCM_RNG);
	assert_true(wait_for(&t.reports, 3, 1000));
	assert_int_equal(t.changed,
			 KEEL_MODEM_CTS | KEEL_MODEM_DCD | KEEL_MODEM_RI);
	/* A wake-up without a change (RI's trailing edge counted, DTR
	 * moved by us) is not reported. */
	reports = t.reports;
	dev_lines(TIOCM_RNG);
	keel_serial_set_modem(t.s, KEEL_MODEM_DTR, 0);
	spin(100);
	assert_int_equal(t.reports, reports);
	/* Idle: the thread sits in TIOCMIWAIT, nothing polls. */
	pthread_mutex_lock(&dev.mu);
	reports = dev.nmget;
	pthread_mutex_unlock(&dev.mu);
	spin(200);
	assert_int_equal(dev_get(&dev.nmget), reports);
	assert_int_equal(dev_get(&dev.inwait), 1);

	/* Stopped: the thread is joined, its descriptors closed. */
	assert_int_equal(keel_serial_watch_modem(t.s, NULL, NULL), 0);
	assert_int_equal(dev_get(&dev.inwait), 0);
	assert_true(dev_get(&dev.nintr) >= 1); /* the signal ended it */
	assert_int_equal(threads(), base_threads);
	assert_int_equal(fds(), base_fds);
	assert_int_equal(added(), base_added);
	dev_lines(0);
	spin(100);
	assert_int_equal(t.reports, 3);
}

static void
test_watch_start_stop_race(void **state)
{
	int base_threads = threads_settle(1), base_fds = fds(), i;
	double t0 = now();

	(void)state;
	/* Stop right after start: the signal may land before the thread is
	 * inside TIOCMIWAIT; it must leave anyway, quickly. */
	for (i = 0; i < 200; i++) {
		assert_int_equal(keel_serial_watch_modem(t.s, on_modem, &t), 0);
		assert_int_equal(keel_serial_watch_modem(t.s, NULL, NULL), 0);
	}
	assert_true(now() - t0 < 5.0);
	/* Every watcher was joined; a detached opener of a reopen may still
	 * be on its way out (seen under load: one thread more). */
	assert_int_equal(threads_settle(base_threads), base_threads);
	assert_int_equal(fds(), base_fds);
	assert_int_equal(t.reports, 0); /* stopped before the first report */
}

static void
test_watch_follows_reopen(void **state)
{
	int base_threads = threads_settle(1);

	(void)state;
	dev_lines(TIOCM_DSR);
	assert_int_equal(keel_serial_watch_modem(t.s, on_modem, &t), 0);
	assert_true(wait_for(&t.reports, 1, 1000));
	assert_int_equal(threads(), base_threads + 1);
	unplug();
	assert_true(wait_for(&t.closed, 1, 2000));
	assert_int_equal(threads_settle(base_threads), base_threads);
	/* Registered while closed: 0, and it starts at the open. */
	assert_int_equal(keel_serial_watch_modem(t.s, on_modem, &t), 0);
	dev_lines(TIOCM_DSR | TIOCM_CTS);
	plug();
	assert_true(wait_for(&t.reports, 2, 3000));
	assert_int_equal(t.changed, 0); /* the current lines of this open */
	assert_true(t.lines & KEEL_MODEM_CTS);
	assert_int_equal(threads_settle(base_threads + 1), base_threads + 1);
	dev_lines(TIOCM_DSR);
	assert_true(wait_for(&t.reports, 3, 1000));
	assert_int_equal(t.changed, KEEL_MODEM_CTS);
}

/* Watch a device whose driver has no TIOCMIWAIT; the first report came. */
static void
watch_polled(void)
{
	dev_set(&dev.miwait, 0);
	assert_int_equal(keel_serial_watch_modem(t.s, on_modem, &t), 0);
	assert_true(wait_for(&t.reports, 1, 1000));
}

static void
test_watch_poll_without_miwait(void **state)
{
	int base_threads = threads_settle(1), base_added = added(), n;

	(void)state;
	watch_polled();
	assert_int_equal(t.changed, 0);
	/* The thread found no TIOCMIWAIT and left: a timer polls. */
	assert_int_equal(threads_settle(base_threads), base_threads);
	assert_int_equal(added(), base_added + 1);
	dev_lines(TIOCM_CTS);
	assert_true(wait_for(&t.reports, 2, 1000));
	assert_int_equal(t.changed, KEEL_MODEM_CTS);
	n = dev_get(&dev.nmget);
	spin(200); /* 0.05 s polls in this test */
	assert_true(dev_get(&dev.nmget) >= n + 2);
	/* Only while watched. */
	assert_int_equal(keel_serial_watch_modem(t.s, NULL, NULL), 0);
	assert_int_equal(added(), base_added);
	n = dev_get(&dev.nmget);
	spin(200);
	assert_int_equal(dev_get(&dev.nmget), n);
}

static void
test_watch_eio_hangs_up(void **state)
{
	(void)state;
	watch_polled();
	dev_set(&dev.mget_err, EIO);
	assert_true(wait_for(&t.closed, 1, 1000));
	assert_string_equal(t.why, "modem lines: Input/output error");
	assert_int_equal(keel_serial_stats(t.s)->hangups, 1);
}

/* ---- a pty alone: what it really does ---- */

static void
test_pty_alone(void **state)
{
	struct keel_serial_line line;
	unsigned char buf[64];
	struct pollfd p;
	int one = 1, before = threads_settle(1);

	(void)state;
	serial_set_ioctl(NULL);
	assert_int_equal(ioctl(t.master, TIOCPKT, &one), 0);
	/* Modem lines: ENOTTY, at once, counted; watching runs nothing. */
	assert_no_modem_lines();
	spin(50);
	assert_int_equal(threads(), before);
	assert_int_equal(t.reports, 0);

	/* Break: TIOCSBRK and TIOCCBRK succeed; the master sees nothing. */
	assert_int_equal(keel_serial_send_break(t.s, 30), 0);
	spin(100);
	p = (struct pollfd){ .fd = t.master, .events = POLLIN | POLLPRI };
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(keel_serial_stats(t.s)->breaks, 1);

	/* Purges: the master sees them in packet mode. */
	assert_int_equal(keel_serial_purge(t.s, KEEL_PURGE_RX), 0);
	assert_int_equal(poll(&p, 1, 1000), 1);
	assert_int_equal(read(t.master, buf, sizeof(buf)), 1);
	assert_true(buf[0] & TIOCPKT_FLUSHREAD);
	assert_int_equal(keel_serial_purge(t.s, KEEL_PURGE_TX), 0);
	assert_int_equal(poll(&p, 1, 1000), 1);
	assert_int_equal(read(t.master, buf, sizeof(buf)), 1);
	assert_true(buf[0] & TIOCPKT_FLUSHWRITE);

	/* The pty forces CS8 and no parity; stop bits and speed stay. */
	line = (struct keel_serial_line){ .speed = 19200,
					  .data_bits = 7,
					  .parity = 'E',
					  .stop_bits = 2,
					  .local = 1 };
	assert_int_equal(keel_serial_set_line(t.s, &line), 0);
	memset(&line, 0, sizeof(line));
	assert_int_equal(keel_serial_get_line(t.s, &line), 0);
	assert_int_equal(line.data_bits, 8);
	assert_int_equal(line.parity, 'N');
	assert_int_equal(line.stop_bits, 2);
	assert_int_equal(line.speed, 19200);
	assert_int_equal(line.local, 1);
	/* Closed: the configured settings. */
	unplug();
	assert_true(wait_for(&t.closed, 1, 2000));
	assert_int_equal(keel_serial_get_line(t.s, &line), 0);
	assert_int_equal(line.data_bits, 7);
	assert_int_equal(line.parity, 'E');
}

/* Every test runs on a port freshly opened on a fresh pty. */
#define T(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

static const struct CMUnitTest tests[] = {
	T(test_set_get_modem),
	T(test_modem_wish_applied_at_reopen),
	T(test_enotty_counted_and_at_once),
	T(test_break_timed),
	T(test_break_extended),
	T(test_break_on_off),
	T(test_break_ended_by_hangup),
	T(test_break_ended_by_free),
	T(test_purge),
	T(test_watch_thread),
	T(test_watch_start_stop_race),
	T(test_watch_follows_reopen),
	T(test_watch_poll_without_miwait),
	T(test_watch_eio_hangs_up),
	T(test_pty_alone),
};

UNIT_MAIN_ALL("serial", tests)
