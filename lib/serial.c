/* SPDX-License-Identifier: ISC */
/* Serial devices on the event loop: off-loop open, termios2, locks, reopen. */
#include "keel-internal.h"

#include <asm/termbits.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <keel/serial.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define SERIAL_LOG_WINDOW  10.0 /* seconds; device lines per port ... */
#define SERIAL_LOG_BURST   20   /* ... at most this many per window */
#define SERIAL_READ_MAX    ((size_t)64 * 1024) /* gathered per read callback */
#define SERIAL_READ_CHUNK  ((size_t)16384)     /* asked of one read() */
#define SERIAL_READ_MORE   ((size_t)2048)      /* a read this big: read again */
#define SERIAL_JITTER      0.2
#define SERIAL_OPENERS_MAX 32 /* open() threads at once, process-wide */
/* The lines a watcher is told about. */
#define SERIAL_MODEM_IN \
	(KEEL_MODEM_CTS | KEEL_MODEM_DSR | KEEL_MODEM_DCD | KEEL_MODEM_RI)
#define SERIAL_STOP_WAIT  2 /* ms a watcher gets to leave, per signal */
#define SERIAL_STOP_TRIES 50
#define SERIAL_WHY_MAX    256 /* bytes of the last failure's text */

static int serial_openers; /* attempts under way (loop side) */

/*
 * Ports waiting for an opener, in the order they asked: a slot that frees
 * goes to the first at once. Nothing is polled and nothing is locked while
 * a port waits here (the UUCP lock is taken once, when its turn comes).
 */
static struct {
	struct keel_serial *head, **tail;
} serial_queue = { NULL, &serial_queue.head };

enum serial_state { S_WAITING, S_OPENING, S_OPEN };

/* How the modem lines of an open port are watched. */
enum modem_mode {
	MW_OFF,         /* nobody asked, or not open: nothing runs */
	MW_THREAD,      /* a thread blocked in TIOCMIWAIT */
	MW_POLL,        /* a TIOCMGET timer: the driver has no TIOCMIWAIT */
	MW_UNSUPPORTED, /* TIOCMGET says ENOTTY (ptys): nothing runs */
};

/*
 * The thread blocked in TIOCMIWAIT for one port. It never touches the
 * port: it owns a dup() of the device fd and reports through an eventfd.
 * The loop and the thread each hold a reference; the last one closes both
 * descriptors and frees it (the loop normally joins the thread first).
 */
struct modem_watch {
	pthread_t tid;
	int refs; /* atomic */
	int stop; /* atomic: the loop wants it gone */
	int done; /* atomic: it left (err says why) */
	int err;
	int fd;  /* dup of the device's: never the loop's fd number */
	int efd; /* eventfd towards the loop */
};

/*
 * One open() attempt in its own thread. The loop and the thread each hold a
 * reference; whoever drops the last one frees it (and closes an fd nobody
 * took, when the loop gave up waiting).
 */
struct open_job {
	int refs; /* atomic */
	int done; /* atomic: open() returned */
	int fd;
	int err;
	int pipe_w;
	char *path;
};

struct keel_serial {
	/* A device that flaps (a loose USB cable) triggers these lines from
	 * outside: a budget per port; the counts are in the stats. */
	struct keel_ratelimit rl;
	struct event_base *base;
	struct keel_serial_params p;
	char *name, *device, *lock_dir;
	struct keel_serial_callbacks cb;
	void *arg;
	enum serial_state state;
	int fd;
	/*
	 * A thousand idle ports are most of a daemon's memory: what a port
	 * needs only in some state is made when it gets there (see
	 * serial_timer_add, serial_set_why, serial_watch_path, serial_out).
	 */
	struct event *rd, *wr;
	struct event *retry_timer, *open_timer, *idle_timer; /* or NULL */
	struct open_job *job;   /* the attempt under way */
	struct open_job *stuck; /* an abandoned attempt still inside open() */
	struct event *job_ev;
	int job_r;
	unsigned int attempt;
	struct evbuffer *out; /* from the first write on */
	int out_was_full;
	int read_paused;
	char *lockfile; /* allocated while we may hold it */
	int have_lock;
	char *why;       /* the last failure (SERIAL_WHY_MAX); NULL: none */
	time_t why_time; /* when the last failure was */
	int last_err_logged;
	struct timeval last_rx;
	int watch_wd;
	char *watch_name; /* while watching */
	struct keel_serial *watch_next;
	struct keel_serial *queue_next; /* waiting for an opener */
	int queued;
	/* Modem lines and break (issue 9). */
	unsigned int modem_mask;  /* DTR/RTS set by the caller ... */
	unsigned int modem_value; /* ... to these (KEEL_MODEM_*) */
	void (*modem_fn)(struct keel_serial *s, unsigned int lines,
			 unsigned int changed, void *arg);
	void *modem_arg;
	enum modem_mode modem_mode;
	unsigned int modem_lines; /* the last ones reported */
	int modem_initial;        /* report the current lines, changed 0 */
	int modem_logged;         /* "no modem lines" said for this open */
	struct modem_watch *mw;
	struct event *mw_ev;       /* the watcher's eventfd */
	struct event *modem_ev;    /* the first report; the poll; or NULL */
	struct event *break_timer; /* or NULL */
	int breaking;
	struct keel_serial_stats stats;
};

static void serial_attempt(struct keel_serial *s);
static void serial_schedule_retry(struct keel_serial *s, int err);

/*
 * What every port reads into: the loop is one thread and a read callback
 * drains it before it returns, so a buffer per port (1000 of them idle)
 * would hold nothing more. Made with the first port, freed with the last.
 */
static struct evbuffer *serial_rx;
static unsigned int serial_ports;

/* Make a timer of @s if it has not been. -1 (logged) without memory. */
static int
serial_timer_make(struct keel_serial *s, struct event **ev,
		  event_callback_fn cb)
{
	if (*ev == NULL && (*ev = evtimer_new(s->base, cb, s)) == NULL) {
		log_warn("serial %s: timer", s->name);
		return -1;
	}
	return 0;
}

/* Arm a timer of @s, made at its first use. -1 (logged) without memory. */
static int
serial_timer_add(struct keel_serial *s, struct event **ev, event_callback_fn cb,
		 const struct timeval *tv)
{
	if (serial_timer_make(s, ev, cb) == -1)
		return -1;
	return evtimer_add(*ev, tv);
}

/* Disarm a timer that may not have been made. */
static void
serial_timer_del(struct event *ev)
{
	if (ev != NULL)
		evtimer_del(ev);
}

/* Free a timer that may not have been made; it is made again if needed. */
static void
serial_timer_free(struct event **ev)
{
	if (*ev != NULL)
		event_free(*ev);
	*ev = NULL;
}

/* Say why the device is not open (the text is made at the first failure). */
static void KEEL_PRINTF(2, 3)
	serial_set_why(struct keel_serial *s, const char *fmt, ...)
{
	va_list ap;

	if (s->why == NULL && (s->why = malloc(SERIAL_WHY_MAX)) == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(s->why, SERIAL_WHY_MAX, fmt, ap);
	va_end(ap);
}

/* The last failure's text, "" for none. */
static const char *
serial_why(const struct keel_serial *s)
{
	return s->why != NULL ? s->why : "";
}

/* The output queue, made at the first write. NULL without memory. */
static struct evbuffer *
serial_out(struct keel_serial *s)
{
	if (s->out == NULL)
		s->out = evbuffer_new();
	return s->out;
}

/* Bytes in the output queue. */
static size_t
serial_out_length(const struct keel_serial *s)
{
	return s->out != NULL ? evbuffer_get_length(s->out) : 0;
}

/* ---- one inotify instance for every port of the process ---- */

static struct {
	int fd;
	struct event *ev;
	struct keel_serial *ports; /* ports with an active watch */
} serial_watch = { -1, NULL, NULL };

/* Remove a port's watch (the kernel's is shared: drop it when unused). */
static void
serial_unwatch(struct keel_serial *s)
{
	struct keel_serial **pp, *o;
	int shared = 0;

	free(s->watch_name);
	s->watch_name = NULL;
	if (s->watch_wd < 0)
		return;
	for (pp = &serial_watch.ports; *pp != NULL; pp = &(*pp)->watch_next)
		if (*pp == s) {
			*pp = s->watch_next;
			break;
		}
	for (o = serial_watch.ports; o != NULL; o = o->watch_next)
		if (o->watch_wd == s->watch_wd)
			shared = 1;
	if (!shared)
		inotify_rm_watch(serial_watch.fd, s->watch_wd);
	s->watch_wd = -1;
	if (serial_watch.ports == NULL && serial_watch.ev != NULL) {
		event_free(serial_watch.ev);
		close(serial_watch.fd);
		serial_watch.ev = NULL;
		serial_watch.fd = -1;
	}
}

/* Something changed in a watched directory: retry the ports it concerns. */
static void
serial_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[4096]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	struct keel_serial *s, **hit = NULL, **grown;
	size_t nhit = 0, i;
	ssize_t n;
	char *p;

	(void)what;
	(void)arg;
	/*
	 * Collect first, act after: an attempt changes the watch list (and may
	 * put the same port back on it when the device is still missing).
	 */
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (p = buf; p < buf + n; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)p;
			for (s = serial_watch.ports; s != NULL;
			     s = s->watch_next) {
				if (s->watch_wd != ev->wd ||
				    s->state != S_WAITING ||
				    (ev->len > 0 &&
				     strcmp(ev->name, s->watch_name) != 0))
					continue;
				for (i = 0; i < nhit && hit[i] != s; i++)
					;
				if (i < nhit)
					continue;
				grown = realloc(
					hit,
					(nhit + 1) *
						sizeof(struct keel_serial *));
				if (grown == NULL)
					continue;
				hit = grown;
				hit[nhit++] = s;
			}
		}
	}
	for (i = 0; i < nhit; i++) {
		s = hit[i];
		log_debug("serial %s: %s appeared", s->name, s->watch_name);
		serial_timer_del(s->retry_timer);
		serial_unwatch(s);
		serial_attempt(s);
	}
	free(hit);
}

/*
 * Watch the deepest existing ancestor of the device path for the next
 * component, so the device is opened as soon as it (or a directory on its
 * way, such as /dev/serial/by-id) appears. 0 when watching, -1 when not
 * (the back-off timer then does the waiting).
 */
static int
serial_watch_path(struct keel_serial *s)
{
	char dir[PATH_MAX], *slash;
	struct stat st;

	serial_unwatch(s);
	if (snprintf(dir, sizeof(dir), "%s", s->device) >= (int)sizeof(dir))
		return -1;
	for (;;) {
		slash = strrchr(dir, '/');
		if (slash == NULL)
			return -1;
		free(s->watch_name);
		if ((s->watch_name = strdup(slash + 1)) == NULL)
			return -1;
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
			break;
		if (slash == dir)
			return -1;
	}
	if (serial_watch.fd == -1) {
		serial_watch.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (serial_watch.fd == -1) {
			log_warn("serial %s: inotify", s->name);
			return -1;
		}
		serial_watch.ev =
			event_new(s->base, serial_watch.fd,
				  EV_READ | EV_PERSIST, serial_watch_cb, NULL);
		if (serial_watch.ev == NULL ||
		    event_add(serial_watch.ev, NULL) == -1) {
			if (serial_watch.ev != NULL)
				event_free(serial_watch.ev);
			close(serial_watch.fd);
			serial_watch.fd = -1;
			serial_watch.ev = NULL;
			return -1;
		}
	}
	s->watch_wd = inotify_add_watch(serial_watch.fd, dir,
					IN_CREATE | IN_MOVED_TO | IN_ATTRIB);
	if (s->watch_wd < 0) {
		log_debug("serial %s: cannot watch %s: %s", s->name, dir,
			  strerror(errno));
		if (serial_watch.ports == NULL) {
			event_free(serial_watch.ev);
			close(serial_watch.fd);
			serial_watch.fd = -1;
			serial_watch.ev = NULL;
		}
		return -1;
	}
	s->watch_next = serial_watch.ports;
	serial_watch.ports = s;
	log_debug("serial %s: watching %s for %s", s->name, dir, s->watch_name);
	return 0;
}

/* ---- line settings ---- */

/* Parse "8N1". */
int
keel_serial_parse_format(const char *fmt, struct keel_serial_line *line,
			 char *err, size_t errlen)
{
	char parity = fmt != NULL && fmt[0] != '\0'
			      ? (char)toupper((unsigned char)fmt[1])
			      : '\0';

	if (fmt == NULL || strlen(fmt) != 3 || fmt[0] < '5' || fmt[0] > '8' ||
	    parity == '\0' || strchr("NEOMS", parity) == NULL ||
	    (fmt[2] != '1' && fmt[2] != '2')) {
		snprintf(
			err, errlen,
			"format '%s' is not DATA PARITY STOP, such as 8N1 (data 5-8, parity N E O M S, stop 1 or 2)",
			fmt != NULL ? fmt : "");
		return -1;
	}
	line->data_bits = fmt[0] - '0';
	line->parity = parity;
	line->stop_bits = fmt[2] - '0';
	return 0;
}

/* Parse a flow control name. */
int
keel_serial_parse_flow(const char *s, enum keel_serial_flow *flow)
{
	if (strcmp(s, "none") == 0)
		*flow = KEEL_FLOW_NONE;
	else if (strcmp(s, "rtscts") == 0)
		*flow = KEEL_FLOW_RTSCTS;
	else if (strcmp(s, "xonxoff") == 0)
		*flow = KEEL_FLOW_XONXOFF;
	else
		return -1;
	return 0;
}

/* "8N1" of a line. */
const char *
keel_serial_format_name(const struct keel_serial_line *line, char *buf,
			size_t len)
{
	snprintf(buf, len, "%d%c%d", line->data_bits, line->parity,
		 line->stop_bits);
	return buf;
}

/* The standard speeds and their Bnnn codes. */
static const struct {
	unsigned int speed;
	tcflag_t code;
} serial_speeds[] = {
	{ 50, B50 },           { 75, B75 },           { 110, B110 },
	{ 134, B134 },         { 150, B150 },         { 200, B200 },
	{ 300, B300 },         { 600, B600 },         { 1200, B1200 },
	{ 1800, B1800 },       { 2400, B2400 },       { 4800, B4800 },
	{ 9600, B9600 },       { 19200, B19200 },     { 38400, B38400 },
	{ 57600, B57600 },     { 115200, B115200 },   { 230400, B230400 },
	{ 460800, B460800 },   { 500000, B500000 },   { 576000, B576000 },
	{ 921600, B921600 },   { 1000000, B1000000 }, { 1152000, B1152000 },
	{ 1500000, B1500000 }, { 2000000, B2000000 }, { 2500000, B2500000 },
	{ 3000000, B3000000 }, { 3500000, B3500000 }, { 4000000, B4000000 },
};

/* The Bnnn code of a standard speed, or BOTHER. */
static tcflag_t
serial_speed_code(unsigned int speed)
{
	size_t i;

	for (i = 0; i < sizeof(serial_speeds) / sizeof(serial_speeds[0]); i++)
		if (serial_speeds[i].speed == speed)
			return serial_speeds[i].code;
	return BOTHER;
}

/* The speed of a termios2 read back: its Bnnn code's, or c_ospeed. */
static unsigned int
serial_speed_of(const struct termios2 *t)
{
	tcflag_t code = t->c_cflag & CBAUD;
	size_t i;

	for (i = 0; i < sizeof(serial_speeds) / sizeof(serial_speeds[0]); i++)
		if (code != BOTHER && serial_speeds[i].code == code)
			return serial_speeds[i].speed;
	return t->c_ospeed;
}

/*
 * Raw mode and @line on @fd, through termios2: a standard speed gets its
 * Bnnn code (so that tools reading it with termios see it), any other one
 * BOTHER with the exact rate.
 */
static int
serial_apply_line(int fd, const struct keel_serial_line *line)
{
	static const tcflag_t sizes[] = { CS5, CS6, CS7, CS8 };
	struct termios2 t;

	if (ioctl(fd, TCGETS2, &t) == -1)
		return -1;
	t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR |
				 IGNCR | ICRNL | IXON | IXOFF | IXANY | INPCK);
	t.c_oflag &= ~(tcflag_t)OPOST;
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CMSPAR | CSTOPB |
				 CRTSCTS | CLOCAL | HUPCL | CBAUD |
				 (CBAUD << IBSHIFT));
	t.c_cflag |= CREAD | sizes[line->data_bits - 5] |
		     serial_speed_code(line->speed) |
		     (serial_speed_code(line->speed) << IBSHIFT);
	t.c_ispeed = t.c_ospeed = line->speed;
	switch (line->parity) {
	case 'E':
		t.c_cflag |= PARENB;
		break;
	case 'O':
		t.c_cflag |= PARENB | PARODD;
		break;
	case 'M':
		t.c_cflag |= PARENB | CMSPAR | PARODD;
		break;
	case 'S':
		t.c_cflag |= PARENB | CMSPAR;
		break;
	default:
		break;
	}
	if (line->parity != 'N')
		t.c_iflag |= INPCK;
	if (line->stop_bits == 2)
		t.c_cflag |= CSTOPB;
	if (line->flow == KEEL_FLOW_RTSCTS)
		t.c_cflag |= CRTSCTS;
	if (line->flow == KEEL_FLOW_XONXOFF) {
		t.c_iflag |= IXON | IXOFF;
		t.c_cc[VSTART] = 0x11;
		t.c_cc[VSTOP] = 0x13;
	}
	if (line->local)
		t.c_cflag |= CLOCAL;
	if (line->hangup_on_close)
		t.c_cflag |= HUPCL;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	return ioctl(fd, TCSETS2, &t);
}

/* ---- modem lines, break, purge: the device layer ---- */

/* ioctl(2) itself. */
static int
serial_real_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

/*
 * Every modem, break, purge and read-back ioctl goes through this, so that
 * a unit test can put a simulated UART behind a pty (ptys have no modem
 * lines). The watcher threads call it too: a replacement must be
 * thread-safe.
 */
static int (*serial_ioctl)(int fd, unsigned long req,
			   void *arg) = serial_real_ioctl;
static double serial_modem_poll = 1.0; /* seconds between TIOCMGET polls */
static int serial_modem_sig_state;     /* 1 installed, -1 taken by the app */

/* Route the device-layer ioctls through @fn (NULL: ioctl(2)). */
void
serial_set_ioctl(int (*fn)(int fd, unsigned long req, void *arg))
{
	serial_ioctl = fn != NULL ? fn : serial_real_ioctl;
}

/* Seconds between two polls of the lines where TIOCMIWAIT is missing. */
void
serial_set_modem_poll(double seconds)
{
	serial_modem_poll = seconds;
}

/* The signal that interrupts a watcher's TIOCMIWAIT. */
int
serial_modem_signal(void)
{
	return SIGRTMAX - 2;
}

static const struct {
	unsigned int keel;
	int tiocm;
} serial_modem_bits[] = {
	{ KEEL_MODEM_DTR, TIOCM_DTR }, { KEEL_MODEM_RTS, TIOCM_RTS },
	{ KEEL_MODEM_CTS, TIOCM_CTS }, { KEEL_MODEM_DSR, TIOCM_DSR },
	{ KEEL_MODEM_DCD, TIOCM_CAR }, { KEEL_MODEM_RI, TIOCM_RNG },
};

/* TIOCM_* bits of KEEL_MODEM_* ones (@to_tiocm), or the other way. */
static unsigned int
serial_modem_map(unsigned int from, int to_tiocm)
{
	unsigned int to = 0, in, out;
	size_t i;

	for (i = 0;
	     i < sizeof(serial_modem_bits) / sizeof(serial_modem_bits[0]);
	     i++) {
		in = to_tiocm ? serial_modem_bits[i].keel
			      : (unsigned int)serial_modem_bits[i].tiocm;
		out = to_tiocm ? (unsigned int)serial_modem_bits[i].tiocm
			       : serial_modem_bits[i].keel;
		if (from & in)
			to |= out;
	}
	return to;
}

/*
 * The lines of the open device, or -1. An ENOTTY here is not counted:
 * reads come from status and monitoring, and a counter that grows each
 * time someone looks would count the lookers, not the device.
 */
static int
serial_modem_read(struct keel_serial *s)
{
	int bits = 0;

	if (serial_ioctl(s->fd, TIOCMGET, &bits) == -1)
		return -1;
	return (int)serial_modem_map((unsigned int)bits, 0);
}

/* Set the remembered DTR/RTS wish of @mask on the open device. */
static int
serial_modem_apply(struct keel_serial *s, unsigned int mask)
{
	int on = (int)serial_modem_map(mask & s->modem_value, 1);
	int off = (int)serial_modem_map(mask & ~s->modem_value, 1);

	if ((on != 0 && serial_ioctl(s->fd, TIOCMBIS, &on) == -1) ||
	    (off != 0 && serial_ioctl(s->fd, TIOCMBIC, &off) == -1)) {
		if (errno == ENOTTY)
			s->stats.modem_unsupported++;
		return -1;
	}
	return 0;
}

/* The no-op handler: its only effect is the EINTR. */
static void
serial_modem_sig_noop(int signo)
{
	(void)signo;
}

/*
 * Install the watchers' signal once, without SA_RESTART: TIOCMIWAIT then
 * ends with EINTR (the serial core returns -ERESTARTSYS). -1 when the
 * application handles that signal itself (keel then polls instead).
 */
static int
serial_modem_sig_install(void)
{
	struct sigaction sa, old;

	if (serial_modem_sig_state != 0)
		return serial_modem_sig_state > 0 ? 0 : -1;
	if (sigaction(serial_modem_signal(), NULL, &old) == -1)
		return -1;
	if ((old.sa_flags & SA_SIGINFO) ||
	    (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
		log_info("serial: signal %d is the application's: modem lines "
			 "are polled instead of waited for",
			 serial_modem_signal());
		serial_modem_sig_state = -1;
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = serial_modem_sig_noop;
	sigemptyset(&sa.sa_mask);
	if (sigaction(serial_modem_signal(), &sa, NULL) == -1)
		return -1;
	serial_modem_sig_state = 1;
	return 0;
}

/* Drop one reference to a watcher. */
static void
modem_watch_release(struct modem_watch *mw)
{
	if (__atomic_sub_fetch(&mw->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (mw->fd >= 0)
		close(mw->fd);
	if (mw->efd >= 0)
		close(mw->efd);
	free(mw);
}

/* The watcher thread: TIOCMIWAIT, tell the loop, again, until stopped. */
static void *
modem_watch_run(void *arg)
{
	struct modem_watch *mw = arg;
	unsigned long mask = TIOCM_CTS | TIOCM_DSR | TIOCM_CAR | TIOCM_RNG;
	uint64_t one = 1;
	sigset_t set;
	int err = 0;

	/* Created with every signal blocked: let the stop signal in. */
	sigemptyset(&set);
	sigaddset(&set, serial_modem_signal());
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	while (!__atomic_load_n(&mw->stop, __ATOMIC_ACQUIRE)) {
		if (serial_ioctl(mw->fd, TIOCMIWAIT, (void *)mask) == 0) {
			if (write(mw->efd, &one, sizeof(one)) != sizeof(one)) {
				/* Saturated: the loop reads it anyway. */
			}
			continue;
		}
		if (errno != EINTR) {
			err = errno;
			break;
		}
	}
	mw->err = err;
	__atomic_store_n(&mw->done, 1, __ATOMIC_RELEASE);
	if (write(mw->efd, &one, sizeof(one)) != sizeof(one)) {
		/* As above. */
	}
	modem_watch_release(mw);
	return NULL;
}

static void serial_modem_wake(evutil_socket_t fd, short what, void *arg);

/* Start a watcher thread on the open device; -1 when it cannot be. */
static int
serial_modem_thread_start(struct keel_serial *s)
{
	struct modem_watch *mw;
	pthread_attr_t attr;
	sigset_t all, old;
	int rc;

	if (serial_modem_sig_install() == -1) {
		errno = EBUSY;
		return -1;
	}
	mw = calloc(1, sizeof(*mw));
	if (mw == NULL)
		return -1;
	mw->refs = 2;
	mw->efd = -1;
	mw->fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 3);
	if (mw->fd >= 0)
		mw->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (mw->efd >= 0)
		s->mw_ev = event_new(s->base, mw->efd, EV_READ | EV_PERSIST,
				     serial_modem_wake, s);
	if (s->mw_ev == NULL || event_add(s->mw_ev, NULL) == -1) {
		rc = errno;
		goto fail;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, (size_t)256 * 1024);
	/* The thread must run no handler but the stop signal's. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&mw->tid, &attr, modem_watch_run, mw);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		goto fail;
	s->mw = mw;
	s->modem_mode = MW_THREAD;
	return 0;
fail:
	if (s->mw_ev != NULL)
		event_free(s->mw_ev);
	s->mw_ev = NULL;
	mw->refs = 1;
	modem_watch_release(mw);
	errno = rc != 0 ? rc : ENOMEM;
	return -1;
}

/*
 * Stop the watcher thread and wait for it: before the device fd is closed,
 * so that its dup never keeps the device (flock, HUPCL) open. A signal
 * that lands just before the thread enters TIOCMIWAIT is lost: send it
 * again every SERIAL_STOP_WAIT ms. The join normally takes microseconds.
 */
static void
serial_modem_thread_stop(struct keel_serial *s)
{
	struct modem_watch *mw = s->mw;
	struct timespec ts;
	int i, rc = -1;

	if (mw == NULL)
		return;
	s->mw = NULL;
	event_free(s->mw_ev);
	s->mw_ev = NULL;
	__atomic_store_n(&mw->stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < SERIAL_STOP_TRIES && rc != 0; i++) {
		pthread_kill(mw->tid, serial_modem_signal());
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += SERIAL_STOP_WAIT * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		rc = pthread_timedjoin_np(mw->tid, NULL, &ts);
	}
	if (rc != 0) {
		/* A driver that ignores signals: leave it the last reference.
		 */
		log_warnx("serial %s: the modem watcher does not leave "
			  "TIOCMIWAIT; left behind",
			  s->name);
		pthread_detach(mw->tid);
	}
	modem_watch_release(mw);
}

/* Stop watching the lines of this open (thread, poll, first report). */
static void
serial_modem_stop(struct keel_serial *s)
{
	serial_modem_thread_stop(s);
	serial_timer_del(s->modem_ev);
	s->modem_mode = MW_OFF;
	s->modem_initial = 0;
}

static void serial_modem_tick(evutil_socket_t fd, short what, void *arg);

/* Poll the lines on a timer (while watched only). */
static void
serial_modem_poll_start(struct keel_serial *s)
{
	struct timeval tv = keel_timeval(serial_modem_poll);

	s->modem_mode = MW_POLL;
	serial_timer_add(s, &s->modem_ev, serial_modem_tick, &tv);
}

static void serial_hangup(struct keel_serial *s, const char *why);

/*
 * Read the lines and report a change (or the first report). The callback
 * is the last thing done: it may stop watching or close the port.
 */
static void
serial_modem_check(struct keel_serial *s)
{
	unsigned int changed;
	int lines, initial;
	char why[96];

	if (s->state != S_OPEN || s->modem_fn == NULL)
		return;
	lines = serial_modem_read(s);
	if (lines == -1 && errno == ENOTTY) {
		serial_modem_stop(s);
		s->modem_mode = MW_UNSUPPORTED;
		return;
	}
	if (lines == -1) {
		snprintf(why, sizeof(why), "modem lines: %s", strerror(errno));
		serial_hangup(s, why);
		return;
	}
	changed = ((unsigned int)lines ^ s->modem_lines) & SERIAL_MODEM_IN;
	initial = s->modem_initial;
	s->modem_initial = 0;
	s->modem_lines = (unsigned int)lines;
	if (changed != 0 || initial)
		s->modem_fn(s, (unsigned int)lines, initial ? 0 : changed,
			    s->modem_arg);
}

/* The first report, or a poll. */
static void
serial_modem_tick(evutil_socket_t fd, short what, void *arg)
{
	struct keel_serial *s = arg;
	struct timeval tv;

	(void)fd;
	(void)what;
	if (s->modem_mode == MW_POLL) {
		tv = keel_timeval(serial_modem_poll);
		serial_timer_add(s, &s->modem_ev, serial_modem_tick, &tv);
	}
	serial_modem_check(s);
}

/* The watcher thread says: a line changed, or it left. */
static void
serial_modem_wake(evutil_socket_t fd, short what, void *arg)
{
	struct keel_serial *s = arg;
	uint64_t n;
	int err;

	(void)what;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return;
	if (__atomic_load_n(&s->mw->done, __ATOMIC_ACQUIRE)) {
		err = s->mw->err;
		serial_modem_thread_stop(s);
		log_debug("serial %s: TIOCMIWAIT: %s: polling the modem lines "
			  "every %gs",
			  s->name, strerror(err), serial_modem_poll);
		serial_modem_poll_start(s);
	}
	serial_modem_check(s);
}

/*
 * Start watching the lines of the open device: a thread in TIOCMIWAIT, or
 * the poll when that cannot be. The current lines are reported once, on
 * the next loop turn. -1 with ENOTTY when the device has no modem lines.
 */
static int
serial_modem_start(struct keel_serial *s)
{
	int lines;

	if (s->modem_fn == NULL || s->state != S_OPEN ||
	    s->modem_mode == MW_THREAD || s->modem_mode == MW_POLL)
		return 0;
	lines = serial_modem_read(s);
	if (lines == -1) {
		int err = errno;

		s->modem_mode = MW_UNSUPPORTED;
		if (!s->modem_logged)
			keel_log_limit(&s->rl, KEEL_LOG_INFO,
				       "serial %s: %s: modem lines cannot be "
				       "watched: %s",
				       s->name, s->device, strerror(err));
		s->modem_logged = 1;
		errno = err;
		return -1;
	}
	if (serial_timer_make(s, &s->modem_ev, serial_modem_tick) == -1) {
		errno = ENOMEM;
		return -1;
	}
	s->modem_lines = (unsigned int)lines;
	s->modem_initial = 1;
	if (serial_modem_thread_start(s) == -1) {
		log_debug("serial %s: no modem watcher thread (%s): polling "
			  "every %gs",
			  s->name, strerror(errno), serial_modem_poll);
		serial_modem_poll_start(s);
	}
	event_active(s->modem_ev, EV_TIMEOUT, 1);
	return 0;
}

/* End a break (timer, close). */
static void
serial_break_end(struct keel_serial *s)
{
	serial_timer_del(s->break_timer);
	if (s->breaking && s->fd >= 0 &&
	    serial_ioctl(s->fd, TIOCCBRK, NULL) == -1)
		log_debug("serial %s: TIOCCBRK: %s", s->name, strerror(errno));
	s->breaking = 0;
}

/* A timed break is over. */
static void
serial_break_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	serial_break_end(arg);
}

/* Start a break now, if none is under way. */
static int
serial_break_begin(struct keel_serial *s)
{
	if (s->state != S_OPEN) {
		errno = EAGAIN;
		return -1;
	}
	if (s->breaking)
		return 0;
	if (serial_ioctl(s->fd, TIOCSBRK, NULL) == -1)
		return -1;
	s->breaking = 1;
	s->stats.breaks++;
	return 0;
}

/* The device is open: DTR/RTS as wished, the lines watched if asked. */
static void
serial_modem_opened(struct keel_serial *s)
{
	s->modem_logged = 0;
	s->modem_mode = MW_OFF;
	if (s->modem_mask != 0 && serial_modem_apply(s, s->modem_mask) == -1)
		log_debug("serial %s: cannot set DTR/RTS: %s", s->name,
			  strerror(errno));
	if (s->modem_fn != NULL)
		serial_modem_start(s);
}

/* The device closes: stop watching, end a break. */
static void
serial_modem_closing(struct keel_serial *s)
{
	serial_modem_stop(s);
	if (s->breaking)
		serial_break_end(s);
}

/* ---- UUCP lock files ---- */

/* LCK..ttyS0 for /dev/ttyS0, LCK..pts_3 for /dev/pts/3 (links resolved). */
static int
serial_lock_name(struct keel_serial *s)
{
	char *real = realpath(s->device, NULL), *p;
	const char *name;

	if (real == NULL)
		return -1;
	name = strncmp(real, "/dev/", 5) == 0 ? real + 5
					      : strrchr(real, '/') + 1;
	for (p = (char *)name; *p != '\0'; p++)
		if (*p == '/')
			*p = '_';
	free(s->lockfile);
	if (asprintf(&s->lockfile, "%s/LCK..%s", s->lock_dir, name) < 0)
		s->lockfile = NULL;
	free(real);
	return s->lockfile != NULL ? 0 : -1;
}

/*
 * The pid in a lock file (ASCII, as minicom and friends write it): 0 when it
 * holds none, -1 when it cannot be read (errno set). A read that failed is
 * not an empty lock: taking it for one would remove someone's lock, or
 * leave our own behind and lock us out of the device.
 */
static pid_t
serial_lock_owner(const char *path)
{
	char buf[32];
	size_t got = 0;
	ssize_t n;
	int fd, err;

	do
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	while (fd == -1 && errno == EINTR);
	if (fd == -1)
		return -1;
	while (got < sizeof(buf) - 1) {
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			err = errno;
			close(fd);
			errno = err;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return (pid_t)strtol(buf, NULL, 10);
}

/*
 * Take the UUCP lock; a stale one (dead pid) is removed. 0 when taken (or
 * locking is off), 1 when the device does not exist (open() will say so),
 * -1 when someone holds it or it cannot be created (why set).
 */
static int
serial_lock(struct keel_serial *s)
{
	char tmp[PATH_MAX], text[16];
	int fd, n, tries;
	pid_t owner;

	if (!s->p.lock)
		return 0;
	if (serial_lock_name(s) == -1)
		return 1;
	snprintf(tmp, sizeof(tmp), "%s/LTMP.%ld.%p", s->lock_dir,
		 (long)getpid(), (void *)s);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		  0644);
	if (fd == -1) {
		serial_set_why(s, "cannot create a lock file in %.150s: %s",
			       s->lock_dir, strerror(errno));
		return -1;
	}
	n = snprintf(text, sizeof(text), "%10ld\n", (long)getpid());
	if (write(fd, text, (size_t)n) != n) {
		serial_set_why(s, "cannot write %.150s: %s", tmp,
			       strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	for (tries = 0; tries < 2; tries++) {
		if (link(tmp, s->lockfile) == 0) {
			unlink(tmp);
			s->have_lock = 1;
			return 0;
		}
		if (errno != EEXIST)
			break;
		owner = serial_lock_owner(s->lockfile);
		if (owner == -1 && errno == ENOENT)
			continue; /* gone meanwhile: try again */
		if (owner == -1) {
			serial_set_why(s, "cannot read lock %.150s: %s",
				       s->lockfile, strerror(errno));
			unlink(tmp);
			return -1;
		}
		if (owner > 0 && (kill(owner, 0) == 0 || errno == EPERM)) {
			unlink(tmp);
			errno = EBUSY;
			serial_set_why(s, "locked by pid %ld (%.150s)",
				       (long)owner, s->lockfile);
			return -1;
		}
		if (owner > 0)
			log_info(
				"serial %s: removing stale lock %s (pid %ld is gone)",
				s->name, s->lockfile, (long)owner);
		else
			log_info("serial %s: removing lock %s: it holds no pid",
				 s->name, s->lockfile);
		unlink(s->lockfile);
	}
	serial_set_why(s, "cannot create %.150s: %s", s->lockfile,
		       strerror(errno));
	unlink(tmp);
	return -1;
}

/*
 * Remove our UUCP lock: unless it now names someone else (unreadable, it is
 * still the one we linked; left behind, it would name us, alive, forever).
 */
static void
serial_unlock(struct keel_serial *s)
{
	pid_t owner;

	if (s->have_lock && s->lockfile != NULL) {
		owner = serial_lock_owner(s->lockfile);
		if (owner == getpid() || owner == -1)
			unlink(s->lockfile);
	}
	s->have_lock = 0;
	free(s->lockfile);
	s->lockfile = NULL;
}

/* ---- open, off the loop ---- */

/* Drop one reference to a job. */
static void
job_release(struct open_job *job)
{
	if (__atomic_sub_fetch(&job->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (job->fd >= 0)
		close(job->fd);
	free(job->path);
	free(job);
}

/* The thread: open(), report, let go. */
static void *
job_run(void *arg)
{
	struct open_job *job = arg;
	int fd = open(job->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	job->err = fd == -1 ? errno : 0;
	job->fd = fd;
	__atomic_store_n(&job->done, 1, __ATOMIC_RELEASE);
	if (write(job->pipe_w, "x", 1) != 1) {
		/* The loop gave up: job_release closes the fd. */
	}
	close(job->pipe_w);
	job_release(job);
	return NULL;
}

/* Start a thread for one open(); -1 if it cannot be started. */
static struct open_job *
job_start(struct keel_serial *s)
{
	struct open_job *job = calloc(1, sizeof(*job));
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t tid;
	int p[2], rc;

	if (job == NULL)
		return NULL;
	job->path = strdup(s->device);
	if (job->path == NULL || pipe2(p, O_CLOEXEC | O_NONBLOCK) == -1) {
		free(job->path);
		free(job);
		return NULL;
	}
	job->refs = 2;
	job->fd = -1;
	job->pipe_w = p[1];
	s->job_r = p[0];
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, (size_t)256 * 1024);
	/* The thread must never run a signal handler. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&tid, &attr, job_run, job);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		close(p[0]);
		close(p[1]);
		free(job->path);
		free(job);
		errno = rc;
		return NULL;
	}
	return job;
}

/* Wait for an opener slot. */
static void
serial_enqueue(struct keel_serial *s)
{
	if (s->queued)
		return;
	s->queued = 1;
	s->queue_next = NULL;
	*serial_queue.tail = s;
	serial_queue.tail = &s->queue_next;
}

/* Leave the queue (freed, or its turn came). */
static void
serial_dequeue(struct keel_serial *s)
{
	struct keel_serial **pp;

	if (!s->queued)
		return;
	for (pp = &serial_queue.head; *pp != NULL; pp = &(*pp)->queue_next)
		if (*pp == s) {
			*pp = s->queue_next;
			if (serial_queue.tail == &s->queue_next)
				serial_queue.tail = pp;
			break;
		}
	s->queued = 0;
	s->queue_next = NULL;
}

/* An opener finished: hand free slots to the ports waiting, in order. */
static void
serial_opener_done(void)
{
	struct keel_serial *s;

	serial_openers--;
	while (serial_openers < SERIAL_OPENERS_MAX &&
	       (s = serial_queue.head) != NULL) {
		serial_dequeue(s);
		serial_attempt(s);
	}
}

/* Stop waiting for the job under way. */
static void
serial_abandon_job(struct keel_serial *s)
{
	if (s->job == NULL)
		return;
	event_free(s->job_ev);
	s->job_ev = NULL;
	close(s->job_r);
	s->job_r = -1;
	serial_timer_del(s->open_timer);
	if (!__atomic_load_n(&s->job->done, __ATOMIC_ACQUIRE)) {
		/* Still inside open(): remember it, never start a second. */
		if (s->stuck != NULL)
			job_release(s->stuck);
		s->stuck = s->job;
	} else {
		job_release(s->job);
	}
	s->job = NULL;
	serial_opener_done();
}

/* Log a failure once per distinct cause, then at debug level. */
static void
serial_log_failure(struct keel_serial *s, int err)
{
	s->why_time = time(NULL);
	if (s->last_err_logged != err) {
		keel_log_limit(&s->rl, KEEL_LOG_WARNING,
			       "serial %s: %s: %s (retrying)", s->name,
			       s->device, serial_why(s));
		s->last_err_logged = err;
	} else {
		log_debug("serial %s: %s: %s (retrying)", s->name, s->device,
			  serial_why(s));
	}
}

/* Close the device now; the reason goes to the closed callback. */
static void
serial_close_fd(struct keel_serial *s)
{
	if (s->rd != NULL)
		event_free(s->rd);
	if (s->wr != NULL)
		event_free(s->wr);
	s->rd = s->wr = NULL;
	serial_timer_del(s->idle_timer); /* kept: this may be its callback */
	serial_modem_closing(s); /* before close: the watcher has a dup */
	if (s->fd >= 0) {
		ioctl(s->fd, TIOCNXCL);
		close(s->fd);
	}
	s->fd = -1;
	serial_unlock(s);
	s->stats.drops += serial_out_length(s);
	if (s->out != NULL)
		evbuffer_drain(s->out, evbuffer_get_length(s->out));
	s->state = S_WAITING;
}

/* Hang-up, removal, I/O error or idle: close and reopen later. */
static void
serial_hangup(struct keel_serial *s, const char *why)
{
	serial_set_why(s, "%s", why);
	s->why_time = time(NULL);
	keel_log_limit(&s->rl, KEEL_LOG_WARNING, "serial %s: %s: %s; reopening",
		       s->name, s->device, why);
	s->stats.hangups++;
	serial_close_fd(s);
	s->attempt = 0;
	s->last_err_logged = 0;
	serial_schedule_retry(s, 0);
	if (s->cb.closed != NULL)
		s->cb.closed(s, serial_why(s), s->arg);
}

/*
 * Write what is queued, as much as the device takes. The (persistent)
 * write event is armed while output waits, and not deleted when a write
 * empties the queue: in bulk towards a device slower than its clients the
 * queue empties and is refilled at once (the drained callback resumes the
 * clients, whose bytes come on the same loop turn), and deleting the event
 * only to add it again was two epoll_ctl per refill. It goes when it
 * fires and finds nothing to write: one wake-up at the end of a burst.
 * Paced traffic is written at once and never arms it.
 */
static void
serial_flush(struct keel_serial *s)
{
	size_t before = serial_out_length(s);
	int n;

	if (s->state != S_OPEN)
		return;
	if (before == 0) {
		event_del(s->wr);
		return;
	}
	n = evbuffer_write(s->out, s->fd);
	if (n == -1 && errno != EAGAIN && errno != EINTR) {
		char why[128];

		snprintf(why, sizeof(why), "write: %s", strerror(errno));
		serial_hangup(s, why);
		return;
	}
	if (n > 0)
		s->stats.bytes_out += (uint64_t)n;
	if (evbuffer_get_length(s->out) > 0)
		event_add(s->wr, NULL);
	if (s->out_was_full &&
	    evbuffer_get_length(s->out) <= s->p.out_max / 2) {
		s->out_was_full = 0;
		if (s->cb.drained != NULL)
			s->cb.drained(s, s->arg);
	}
}

/* The device is writable. */
static void
serial_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	serial_flush(arg);
}

/*
 * The device is readable. A tty hands out at most what its line
 * discipline holds (about 4 KiB) a read. A read that small means drained:
 * no read() just to see EAGAIN (the poll is level-triggered and wakes the
 * loop again), so a paced packet costs one read. A read of at least
 * SERIAL_READ_MORE means the device is streaming and more is likely
 * queued behind it: read on, up to SERIAL_READ_MAX, and hand it over in
 * one piece (one write to a client per 64 KiB in bulk, not per 4 KiB).
 * libevent makes the 16 KiB asked a 32 KiB chunk (a power of two with its
 * header), below glibc's mmap threshold (128 KiB): no mmap/munmap per
 * read. 0 or EIO is a hang-up: close at once, or EV_READ fires forever.
 */
static void
serial_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keel_serial *s = arg;
	struct evbuffer_iovec v;
	size_t total = 0;
	ssize_t n;

	(void)what;
	while (total < SERIAL_READ_MAX) {
		if (evbuffer_reserve_space(serial_rx, SERIAL_READ_CHUNK, &v,
					   1) < 1)
			break;
		n = read(fd, v.iov_base, v.iov_len);
		if (n > 0) {
			size_t asked = v.iov_len;

			v.iov_len = (size_t)n;
			evbuffer_commit_space(serial_rx, &v, 1);
			total += (size_t)n;
			if ((size_t)n < asked && (size_t)n < SERIAL_READ_MORE)
				break; /* drained */
			continue;
		}
		evbuffer_commit_space(serial_rx, &v, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (total > 0)
			break; /* deliver first; the hang-up shows again */
		serial_hangup(s, n == 0         ? "hung up (end of file)"
				 : errno == EIO ? "hung up (I/O error)"
						: strerror(errno));
		return;
	}
	if (total == 0)
		return;
	s->stats.bytes_in += total;
	event_base_gettimeofday_cached(s->base, &s->last_rx);
	if (s->cb.data != NULL)
		s->cb.data(s, serial_rx, s->arg);
	evbuffer_drain(serial_rx, evbuffer_get_length(serial_rx));
}

/* idle-timeout: a device silent that long is reopened. */
static void
serial_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keel_serial *s = arg;
	struct timeval now, tv;
	double idle;
	char why[96];

	(void)fd;
	(void)what;
	if (s->state != S_OPEN || s->p.idle_timeout <= 0)
		return;
	event_base_gettimeofday_cached(s->base, &now);
	if (s->read_paused) {
		/* Not read on purpose (back-pressure): that is not silence. */
		s->last_rx = now;
	}
	idle = (double)(now.tv_sec - s->last_rx.tv_sec) +
	       (double)(now.tv_usec - s->last_rx.tv_usec) / 1e6;
	if (idle + 0.001 < s->p.idle_timeout) {
		tv = keel_timeval(s->p.idle_timeout - idle);
		evtimer_add(s->idle_timer, &tv); /* ours: it fired */
		return;
	}
	snprintf(why, sizeof(why), "silent for %gs (idle-timeout)",
		 s->p.idle_timeout);
	serial_hangup(s, why);
}

/* open() returned in the thread: finish on the loop. */
static void
serial_opened(struct keel_serial *s, int fd)
{
	struct stat st;
	struct timeval tv;
	int excl = 0; /* TIOCEXCL is the tty's, not the fd's: ours to clear? */

	if (fstat(fd, &st) == -1 || !S_ISCHR(st.st_mode) || !isatty(fd)) {
		serial_set_why(s, "not a terminal device");
		goto fail;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		serial_set_why(s, "in use by another process (flock: %s)",
			       strerror(errno));
		errno = EBUSY;
		goto fail;
	}
	if (ioctl(fd, TIOCEXCL) == 0)
		excl = 1;
	else if (errno != ENOTTY)
		log_debug("serial %s: TIOCEXCL: %s", s->name, strerror(errno));
	if (serial_apply_line(fd, &s->p.line) == -1) {
		serial_set_why(s, "cannot set %u %s: %s", s->p.line.speed,
			       "line settings", strerror(errno));
		goto fail;
	}
	s->rd = event_new(s->base, fd, EV_READ | EV_PERSIST, serial_read_cb, s);
	/* Persistent: a write event that stays armed while output waits
	 * costs no epoll_ctl per write (a one-shot is removed and re-added
	 * around every one). serial_flush deletes it once the queue is empty.
	 */
	s->wr = event_new(s->base, fd, EV_WRITE | EV_PERSIST, serial_write_cb,
			  s);
	if (s->rd == NULL || s->wr == NULL ||
	    (!s->read_paused && event_add(s->rd, NULL) == -1)) {
		serial_set_why(s, "cannot watch the device");
		if (s->rd != NULL)
			event_free(s->rd);
		if (s->wr != NULL)
			event_free(s->wr);
		s->rd = s->wr = NULL;
		goto fail;
	}
	s->fd = fd;
	s->state = S_OPEN;
	/* Open now: the watch for a replaced node has served (else it and
	 * the process's inotify descriptor stay for as long as it is open). */
	serial_unwatch(s);
	s->attempt = 0;
	s->stats.opens++; /* s->why stays: the last failure, for status */
	s->last_err_logged = 0;
	event_base_gettimeofday_cached(s->base, &s->last_rx);
	/* Open: the timers of a closed device wait for its next close. */
	serial_timer_free(&s->retry_timer);
	serial_timer_free(&s->open_timer);
	if (s->p.idle_timeout > 0) {
		tv = keel_timeval(s->p.idle_timeout);
		serial_timer_add(s, &s->idle_timer, serial_idle_cb, &tv);
	}
	keel_log_limit(&s->rl, KEEL_LOG_INFO, "serial %s: %s open (%u %s)",
		       s->name, s->device, s->p.line.speed,
		       keel_serial_format_name(&s->p.line, (char[8]){ 0 }, 8));
	serial_modem_opened(s);
	if (s->cb.opened != NULL)
		s->cb.opened(s, s->arg);
	serial_flush(s);
	return;
fail:
	if (excl) {
		int err = errno;

		ioctl(fd, TIOCNXCL);
		errno = err;
	}
	close(fd);
	serial_unlock(s);
	s->stats.open_failures++;
	s->state = S_WAITING;
	serial_log_failure(s, errno ? errno : -1);
	serial_schedule_retry(s, errno);
}

/* The thread reported. */
static void
serial_job_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keel_serial *s = arg;
	struct open_job *job = s->job;
	char c;
	int got;

	(void)what;
	if (read(fd, &c, 1) != 1)
		return;
	got = job->fd;
	job->fd = -1; /* ours now */
	errno = job->err;
	event_free(s->job_ev);
	s->job_ev = NULL;
	close(s->job_r);
	s->job_r = -1;
	serial_timer_del(s->open_timer);
	s->job = NULL;
	serial_opener_done();
	if (got == -1) {
		int err = errno;

		job_release(job);
		serial_unlock(s);
		s->stats.open_failures++;
		s->state = S_WAITING;
		serial_set_why(s, "%s", strerror(err));
		serial_log_failure(s, err);
		serial_schedule_retry(s, err);
		return;
	}
	job_release(job);
	serial_opened(s, got);
}

/* open-timeout expired: abandon the attempt, the loop never waited. */
static void
serial_open_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keel_serial *s = arg;

	(void)fd;
	(void)what;
	serial_abandon_job(s);
	serial_unlock(s);
	s->stats.open_failures++;
	s->state = S_WAITING;
	serial_set_why(s, "open timed out after %gs", s->p.open_timeout);
	serial_log_failure(s, ETIMEDOUT);
	serial_schedule_retry(s, ETIMEDOUT);
}

/* Try to open the device now. */
static void
serial_attempt(struct keel_serial *s)
{
	struct timeval tv;

	if (s->state != S_WAITING || s->queued)
		return;
	if (serial_openers >= SERIAL_OPENERS_MAX) {
		/* Many ports starting at once: the first slot free is ours. */
		serial_enqueue(s);
		return;
	}
	if (s->stuck != NULL) {
		if (!__atomic_load_n(&s->stuck->done, __ATOMIC_ACQUIRE)) {
			/* The timed-out open still fails this attempt. */
			serial_set_why(
				s,
				"open timed out after %gs (an earlier open() is still blocked in the driver)",
				s->p.open_timeout);
			s->stats.open_failures++;
			serial_log_failure(s, EINPROGRESS);
			serial_schedule_retry(s, EINPROGRESS);
			return;
		}
		job_release(s->stuck);
		s->stuck = NULL;
	}
	if (serial_lock(s) == -1) {
		s->stats.open_failures++;
		serial_log_failure(s, errno);
		serial_schedule_retry(s, errno);
		return;
	}
	s->job = job_start(s);
	if (s->job == NULL) {
		serial_set_why(s, "cannot start the opener: %s",
			       strerror(errno));
		serial_unlock(s);
		serial_log_failure(s, errno);
		serial_schedule_retry(s, errno);
		return;
	}
	s->job_ev = event_new(s->base, s->job_r, EV_READ, serial_job_cb, s);
	if (s->job_ev == NULL || event_add(s->job_ev, NULL) == -1) {
		if (s->job_ev != NULL)
			event_free(s->job_ev);
		s->job_ev = NULL;
		close(s->job_r);
		s->job_r = -1;
		job_release(s->job); /* the thread drops the other reference */
		s->job = NULL;
		serial_unlock(s);
		serial_schedule_retry(s, ENOMEM);
		return;
	}
	s->state = S_OPENING;
	serial_openers++;
	tv = keel_timeval(s->p.open_timeout);
	serial_timer_add(s, &s->open_timer, serial_open_timeout_cb, &tv);
}

/* The back-off expired. */
static void
serial_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct keel_serial *s = arg;

	(void)fd;
	(void)what;
	serial_attempt(s);
}

/* Reopen after min(retry-max, retry-min * 2^attempt) +- 20 %. */
static void
serial_schedule_retry(struct keel_serial *s, int err)
{
	double delay = s->p.retry_min;
	unsigned int i;
	struct timeval tv;

	for (i = 0; i < s->attempt && delay < s->p.retry_max; i++)
		delay *= 2;
	if (delay > s->p.retry_max)
		delay = s->p.retry_max;
	delay *= 1.0 +
		 SERIAL_JITTER *
			 (2.0 * ((double)random() / (double)RAND_MAX) - 1.0);
	if (s->attempt < 64)
		s->attempt++;
	/*
	 * A path that does not exist is waited for by inotify alone: no
	 * periodic wake-up while a USB adapter is unplugged. A node that
	 * exists but failed (hang-up, no device behind it) is watched too, in
	 * case it is replaced, and retried with the back-off.
	 */
	if (err == ENOENT && serial_watch_path(s) == 0) {
		/* It may have appeared between open() and the watch. */
		if (access(s->device, F_OK) == 0) {
			tv = keel_timeval(0);
			serial_timer_add(s, &s->retry_timer, serial_retry_cb,
					 &tv);
			return;
		}
		log_debug("serial %s: waiting for %s to appear", s->name,
			  s->device);
		return;
	}
	if (err == ENODEV || err == ENXIO || err == 0)
		serial_watch_path(s);
	tv = keel_timeval(delay);
	serial_timer_add(s, &s->retry_timer, serial_retry_cb, &tv);
}

/* ---- the public API ---- */

/* Create a port and start opening. */
struct keel_serial *
keel_serial_new(struct event_base *base, const struct keel_serial_params *p,
		const struct keel_serial_callbacks *cb, void *arg)
{
	struct keel_serial *s;

	if (p->device == NULL || p->line.data_bits < 5 ||
	    p->line.data_bits > 8 || strchr("NEOMS", p->line.parity) == NULL ||
	    p->line.parity == '\0' ||
	    (p->line.stop_bits != 1 && p->line.stop_bits != 2) ||
	    p->line.speed == 0 || !(p->retry_min > 0) ||
	    !(p->retry_max >= p->retry_min) || !(p->open_timeout > 0) ||
	    !(p->idle_timeout >= 0)) {
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->rl = (struct keel_ratelimit)KEEL_RATELIMIT(SERIAL_LOG_WINDOW,
						      SERIAL_LOG_BURST);
	s->base = base;
	s->p = *p;
	s->name = strdup(p->name != NULL ? p->name : p->device);
	s->device = strdup(p->device);
	s->lock_dir = strdup(p->lock_dir != NULL ? p->lock_dir : "/run/lock");
	s->cb = *cb;
	s->arg = arg;
	s->fd = -1;
	s->job_r = -1;
	s->watch_wd = -1;
	s->state = S_WAITING;
	if (serial_rx == NULL)
		serial_rx = evbuffer_new();
	if (s->name == NULL || s->device == NULL || s->lock_dir == NULL ||
	    serial_rx == NULL) {
		free(s->name);
		free(s->device);
		free(s->lock_dir);
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	serial_ports++;
	s->p.name = s->name;
	s->p.device = s->device;
	s->p.lock_dir = s->lock_dir;
	if (s->p.out_max == 0)
		s->p.out_max = 65536;
	serial_attempt(s);
	return s;
}

/* Close and free. */
void
keel_serial_free(struct keel_serial *s)
{
	if (s == NULL)
		return;
	serial_dequeue(s);
	serial_abandon_job(s);
	if (s->stuck != NULL)
		job_release(s->stuck);
	serial_unwatch(s);
	if (s->state == S_OPEN)
		log_info("serial %s: %s closed", s->name, s->device);
	serial_close_fd(s);
	serial_unlock(s);
	serial_timer_free(&s->retry_timer);
	serial_timer_free(&s->open_timer);
	serial_timer_free(&s->idle_timer);
	serial_modem_stop(s);
	serial_timer_free(&s->modem_ev);
	serial_timer_free(&s->break_timer);
	if (s->out != NULL)
		evbuffer_free(s->out);
	free(s->why);
	if (--serial_ports == 0) {
		evbuffer_free(serial_rx);
		serial_rx = NULL;
	}
	free(s->name);
	free(s->device);
	free(s->lock_dir);
	free(s);
}

/* New line settings, in place. */
int
keel_serial_set_line(struct keel_serial *s, const struct keel_serial_line *line)
{
	char fmt[8];

	if (s->state != S_OPEN) {
		s->p.line = *line;
		return 0;
	}
	if (serial_apply_line(s->fd, line) == -1) {
		int e = errno;

		/* Keep what the device accepted; reopens would fail too. */
		serial_apply_line(s->fd, &s->p.line);
		log_warnx(
			"serial %s: %s refused %u %s (%s): keeping %u %s",
			s->name, s->device, line->speed,
			keel_serial_format_name(line, fmt, sizeof(fmt)),
			strerror(e), s->p.line.speed,
			keel_serial_format_name(&s->p.line, (char[8]){ 0 }, 8));
		errno = e;
		return -1;
	}
	s->p.line = *line;
	log_info("serial %s: %s now %u %s (applied in place)", s->name,
		 s->device, line->speed,
		 keel_serial_format_name(line, (char[8]){ 0 }, 8));
	return 0;
}

/* New timing and limits. */
void
keel_serial_set_timing(struct keel_serial *s,
		       const struct keel_serial_params *p)
{
	struct timeval tv;

	s->p.open_timeout = p->open_timeout;
	s->p.idle_timeout = p->idle_timeout;
	s->p.retry_min = p->retry_min;
	s->p.retry_max = p->retry_max;
	s->p.out_max = p->out_max != 0 ? p->out_max : 65536;
	if (s->state == S_OPEN && s->p.idle_timeout > 0) {
		tv = keel_timeval(s->p.idle_timeout);
		serial_timer_add(s, &s->idle_timer, serial_idle_cb, &tv);
	} else {
		serial_timer_del(s->idle_timer);
	}
}

/* Queue bytes for the device. */
size_t
keel_serial_write(struct keel_serial *s, struct evbuffer *src)
{
	size_t len = evbuffer_get_length(src), room, n;

	/* No queue and no memory for one: dropped and counted, as for a
	 * closed device (a refusal would pause the clients with nothing to
	 * drain that resumes them). */
	if (s->state != S_OPEN || (len > 0 && serial_out(s) == NULL)) {
		s->stats.drops += len;
		evbuffer_drain(src, len);
		return len;
	}
	room = serial_out_length(s) >= s->p.out_max
		       ? 0
		       : s->p.out_max - serial_out_length(s);
	n = len < room ? len : room;
	if (n > 0)
		evbuffer_remove_buffer(src, s->out, n);
	if (n < len || serial_out_length(s) >= s->p.out_max)
		s->out_was_full = 1;
	serial_flush(s);
	return n;
}

/* Is the queue full? */
int
keel_serial_output_full(const struct keel_serial *s)
{
	return serial_out_length(s) >= s->p.out_max;
}

/* Bytes queued. */
size_t
keel_serial_output_length(const struct keel_serial *s)
{
	return serial_out_length(s);
}

/* Pause or resume reading. */
void
keel_serial_set_reading(struct keel_serial *s, int on)
{
	s->read_paused = !on;
	if (s->rd == NULL)
		return;
	if (on)
		event_add(s->rd, NULL);
	else
		event_del(s->rd);
}

/* Retry now. */
void
keel_serial_wake(struct keel_serial *s)
{
	if (s->state != S_WAITING)
		return;
	log_info("serial %s: woken: retrying %s now", s->name, s->device);
	serial_timer_del(s->retry_timer);
	s->attempt = 0;
	serial_attempt(s);
}

/* Open? */
int
keel_serial_is_open(const struct keel_serial *s)
{
	return s->state == S_OPEN;
}

/* A word for status lines: open, opening or waiting. */
const char *
keel_serial_state(const struct keel_serial *s)
{
	switch (s->state) {
	case S_OPEN:
		return "open";
	case S_OPENING:
		return "opening";
	default:
		return "waiting";
	}
}

/* Why the device is not open (or last failed), and when. */
const char *
keel_serial_error(const struct keel_serial *s, time_t *when)
{
	if (when != NULL)
		*when = *serial_why(s) != '\0' ? s->why_time : 0;
	if (s->state == S_WAITING && *serial_why(s) == '\0')
		return "not opened yet";
	return serial_why(s);
}

/* When bytes last came from the device (seconds since the epoch). */
time_t
keel_serial_last_rx(const struct keel_serial *s)
{
	return s->stats.bytes_in > 0 ? s->last_rx.tv_sec : 0;
}

/* Counters. */
const struct keel_serial_stats *
keel_serial_stats(const struct keel_serial *s)
{
	return &s->stats;
}

/* ---- modem lines, break, purge: the public API ---- */

/* Set DTR/RTS, now if open, and at every open. */
int
keel_serial_set_modem(struct keel_serial *s, unsigned int mask,
		      unsigned int value)
{
	if ((mask & ~(unsigned int)(KEEL_MODEM_DTR | KEEL_MODEM_RTS)) != 0) {
		errno = EINVAL;
		return -1;
	}
	s->modem_mask |= mask;
	s->modem_value = (s->modem_value & ~mask) | (value & mask);
	if (s->state != S_OPEN) {
		errno = EAGAIN;
		return -1;
	}
	return serial_modem_apply(s, mask);
}

/* The lines now. */
int
keel_serial_get_modem(struct keel_serial *s)
{
	if (s->state != S_OPEN) {
		errno = EAGAIN;
		return -1;
	}
	return serial_modem_read(s);
}

/* Be told about changes of CTS, DSR, DCD, RI (NULL: no more). */
int
keel_serial_watch_modem(struct keel_serial *s,
			void (*fn)(struct keel_serial *s, unsigned int lines,
				   unsigned int changed, void *arg),
			void *arg)
{
	if (fn == NULL) {
		serial_modem_stop(s);
		s->modem_fn = NULL;
		s->modem_arg = NULL;
		return 0;
	}
	s->modem_fn = fn;
	s->modem_arg = arg;
	if (s->state != S_OPEN)
		return 0; /* from the next open */
	if (s->modem_mode == MW_UNSUPPORTED)
		s->modem_mode = MW_OFF; /* asked again: ask the device again */
	return serial_modem_start(s);
}

/* A break of @ms milliseconds, or one under way extended. */
int
keel_serial_send_break(struct keel_serial *s, unsigned int ms)
{
	struct timeval tv;

	if (serial_break_begin(s) == -1)
		return -1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	if (serial_timer_add(s, &s->break_timer, serial_break_cb, &tv) == -1) {
		serial_break_end(s);
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* Break on or off, untimed. */
int
keel_serial_set_break(struct keel_serial *s, int on)
{
	if (on) {
		if (serial_break_begin(s) == -1)
			return -1;
		serial_timer_del(s->break_timer);
		return 0;
	}
	serial_timer_del(s->break_timer);
	if (!s->breaking || s->state != S_OPEN) {
		s->breaking = 0;
		return 0;
	}
	if (serial_ioctl(s->fd, TIOCCBRK, NULL) == -1)
		return -1;
	s->breaking = 0;
	return 0;
}

/* Throw queued data away. */
int
keel_serial_purge(struct keel_serial *s, int which)
{
	unsigned long queue;
	int rc, err, was_full;

	if (which == 0 || (which & ~(KEEL_PURGE_RX | KEEL_PURGE_TX)) != 0) {
		errno = EINVAL;
		return -1;
	}
	if (s->state != S_OPEN)
		return 0; /* nothing is queued */
	queue = which == (KEEL_PURGE_RX | KEEL_PURGE_TX) ? TCIOFLUSH
		: which == KEEL_PURGE_RX                 ? TCIFLUSH
							 : TCOFLUSH;
	rc = serial_ioctl(s->fd, TCFLSH, (void *)queue);
	err = errno;
	/* KEEL_PURGE_RX: nothing read is kept (serial_rx is drained). */
	if (!(which & KEEL_PURGE_TX)) {
		errno = err;
		return rc == -1 ? -1 : 0;
	}
	if (s->out != NULL)
		evbuffer_drain(s->out, evbuffer_get_length(s->out));
	event_del(s->wr);
	was_full = s->out_was_full;
	s->out_was_full = 0;
	if (was_full && s->cb.drained != NULL)
		s->cb.drained(s, s->arg);
	errno = err;
	return rc == -1 ? -1 : 0;
}

/* The line settings the device has (or will get). */
int
keel_serial_get_line(const struct keel_serial *s, struct keel_serial_line *line)
{
	struct termios2 t;

	*line = s->p.line;
	if (s->state != S_OPEN)
		return 0;
	if (serial_ioctl(s->fd, TCGETS2, &t) == -1)
		return -1;
	line->speed = serial_speed_of(&t);
	switch (t.c_cflag & CSIZE) {
	case CS5:
		line->data_bits = 5;
		break;
	case CS6:
		line->data_bits = 6;
		break;
	case CS7:
		line->data_bits = 7;
		break;
	default:
		line->data_bits = 8;
		break;
	}
	if (!(t.c_cflag & PARENB))
		line->parity = 'N';
	else if (t.c_cflag & CMSPAR)
		line->parity = (t.c_cflag & PARODD) ? 'M' : 'S';
	else
		line->parity = (t.c_cflag & PARODD) ? 'O' : 'E';
	line->stop_bits = (t.c_cflag & CSTOPB) ? 2 : 1;
	line->flow = (t.c_cflag & CRTSCTS)          ? KEEL_FLOW_RTSCTS
		     : (t.c_iflag & (IXON | IXOFF)) ? KEEL_FLOW_XONXOFF
						    : KEEL_FLOW_NONE;
	line->local = (t.c_cflag & CLOCAL) != 0;
	line->hangup_on_close = (t.c_cflag & HUPCL) != 0;
	return 0;
}
