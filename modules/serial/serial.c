/*
 * serial: each `serial NAME { }` section bridges one serial device to a TCP
 * listener. Device data fans out to every client; client data goes to the
 * device. A reload keeps what did not change: same device and settings keep
 * their fd and clients, line settings change in place, a new listen address
 * rebinds without touching the device.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <keel/keel.h>
#include <keel/serial.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SERIAL_DRAIN_MAX  5.0    /* seconds a removed port may take to drain */
#define LISTEN_PAUSE_USEC 200000 /* listener pause when out of fds */

enum when_full { FULL_REFUSE, FULL_KICK_OLDEST };
enum slow_client { SLOW_DROP, SLOW_DISCONNECT };

/* One section, as read from the configuration (owned strings). */
struct port_conf {
	char *name;
	char *device;
	char *listen;
	char *lock_dir;
	struct keel_serial_line line;
	double open_timeout, idle_timeout, retry_min, retry_max;
	double client_timeout;
	double stall_timeout;
	int lock;
	int max_clients;
	enum when_full when_full;
	enum slow_client slow;
	size_t client_buffer;
	size_t device_buffer;
	int trace;
	struct sockaddr_storage addr;
	int addrlen;
};

struct port;

struct client {
	struct client *next;
	struct port *p;
	int fd;
	struct event *rd, *wr;
	struct evbuffer *in, *out;
	struct event *idle;
	struct timeval last;
	int lagging; /* gave up waiting for it: its data is dropped */
	char peer[80];
	uint64_t dropped;
};

struct port {
	struct port *next;
	struct keel_module *m;
	struct port_conf c;
	struct keel_serial *dev;
	struct evconnlistener *lev;
	struct event *lev_pause;
	struct client *clients; /* oldest first */
	int nclients;
	int paused;     /* clients' reads paused: the device queue is full */
	int dev_paused; /* device not read: every client is full */
	struct event *stall_timer; /* how long back-pressure may last */
	int removing;              /* draining after removal or stop */
	struct event *drain_timer;
	uint64_t accepted, refused, kicked, client_drops, slow_disconnects;
};

struct bridge {
	struct port *ports;
	int stopping;
};

/* What prepare built: one entry per section, in order. */
struct plan {
	struct port_conf c;
	struct port *old; /* the running port of that name, or NULL */
	int listen_fd;    /* a new bound socket, or -1 to keep the old one */
};
struct txn {
	struct plan *plans;
	int n;
};

static void port_free(struct port *p);
static void port_maybe_done(struct port *p);
static void port_resume_device(struct port *p);

/* ---- configuration ---- */

static void
conf_free(struct port_conf *c)
{
	free(c->name);
	free(c->device);
	free(c->listen);
	free(c->lock_dir);
	memset(c, 0, sizeof(*c));
}

/* Same line settings? */
static int
line_equal(const struct keel_serial_line *a, const struct keel_serial_line *b)
{
	return a->speed == b->speed && a->data_bits == b->data_bits &&
	       a->parity == b->parity && a->stop_bits == b->stop_bits &&
	       a->flow == b->flow && a->local == b->local &&
	       a->hangup_on_close == b->hangup_on_close;
}

/* Does a change need the device reopened? */
static int
conf_device_changed(const struct port_conf *a, const struct port_conf *b)
{
	return strcmp(a->device, b->device) != 0 || a->lock != b->lock ||
	       strcmp(a->lock_dir, b->lock_dir) != 0;
}

/* Read one section into @c; errors through keel_module_error. */
static int
conf_read(struct keel_module *m, cfg_t *sec, struct port_conf *c)
{
	char err[256];
	const char *s;

	/*
	 * Values were range-checked by the parse-time validators (with the
	 * option's own line) and defaults are valid: what is left here is what
	 * needs the whole section.
	 */
	memset(c, 0, sizeof(*c));
	c->name = strdup(keel_section_title(sec));
	s = cfg_getstr(sec, "device");
	if (s == NULL || s[0] == '\0') {
		keel_module_error(m, sec, "serial '%s': device is required",
				  c->name);
		return -1;
	}
	c->device = strdup(s);
	s = cfg_getstr(sec, "listen");
	if (s == NULL || s[0] == '\0') {
		keel_module_error(
			m, sec,
			"serial '%s': listen is required (\"HOST:PORT\")",
			c->name);
		return -1;
	}
	c->listen = strdup(s);
	c->addrlen = (int)sizeof(c->addr);
	c->lock_dir = strdup(cfg_getstr(sec, "lock-dir"));
	if (c->name == NULL || c->device == NULL || c->listen == NULL ||
	    c->lock_dir == NULL ||
	    evutil_parse_sockaddr_port(s, (struct sockaddr *)&c->addr,
				       &c->addrlen) == -1 ||
	    keel_serial_parse_format(cfg_getstr(sec, "format"), &c->line, err,
				     sizeof(err)) == -1 ||
	    keel_serial_parse_flow(cfg_getstr(sec, "flow"), &c->line.flow) ==
		    -1)
		return -1;
	c->line.speed = (unsigned int)cfg_getint(sec, "speed");
	c->line.local = cfg_getbool(sec, "local");
	c->line.hangup_on_close = cfg_getbool(sec, "hangup-on-close");
	c->open_timeout = cfg_getfloat(sec, "open-timeout");
	c->idle_timeout = cfg_getfloat(sec, "idle-timeout");
	c->retry_min = cfg_getfloat(sec, "retry-min");
	c->retry_max = cfg_getfloat(sec, "retry-max");
	c->client_timeout = cfg_getfloat(sec, "client-timeout");
	c->stall_timeout = cfg_getfloat(sec, "stall-timeout");
	if (c->retry_max < c->retry_min) {
		keel_module_error(
			m, sec,
			"serial '%s': retry-max %g is less than retry-min %g",
			c->name, c->retry_max, c->retry_min);
		return -1;
	}
	c->lock = cfg_getbool(sec, "lock");
	c->max_clients = (int)cfg_getint(sec, "max-clients");
	c->when_full = strcmp(cfg_getstr(sec, "when-full"), "kick-oldest") == 0
			       ? FULL_KICK_OLDEST
			       : FULL_REFUSE;
	c->slow = strcmp(cfg_getstr(sec, "slow-client"), "disconnect") == 0
			  ? SLOW_DISCONNECT
			  : SLOW_DROP;
	c->client_buffer = (size_t)cfg_getint(sec, "client-buffer");
	c->device_buffer = (size_t)cfg_getint(sec, "device-buffer");
	c->trace = cfg_getbool(sec, "trace");
	return 0;
}

/* Device parameters of a configuration. */
static struct keel_serial_params
conf_params(const struct port_conf *c)
{
	struct keel_serial_params p;

	memset(&p, 0, sizeof(p));
	p.name = c->name;
	p.device = c->device;
	p.line = c->line;
	p.open_timeout = c->open_timeout;
	p.idle_timeout = c->idle_timeout;
	p.retry_min = c->retry_min;
	p.retry_max = c->retry_max;
	p.lock = c->lock;
	p.lock_dir = c->lock_dir;
	p.out_max = c->device_buffer;
	return p;
}

/* A bound, listening, non-blocking socket for @c; -1 with errno. */
static int
listen_socket(const struct port_conf *c)
{
	int fd, one = 1;

	fd = socket(c->addr.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (c->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&c->addr,
		 (socklen_t)c->addrlen) == -1 ||
	    listen(fd, 64) == -1) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* ---- clients ---- */

/* Hex dump for `trace`. */
static void
trace_dump(struct port *p, const char *dir, struct evbuffer *buf)
{
	unsigned char chunk[32];
	char line[3 * 32 + 1];
	size_t len = evbuffer_get_length(buf), off = 0, n, i;
	struct evbuffer_ptr ptr;

	if (!p->c.trace || !keel_log_enabled(KEEL_LOG_DEBUG))
		return;
	while (off < len && off < 4096) {
		n = len - off < sizeof(chunk) ? len - off : sizeof(chunk);
		evbuffer_ptr_set(buf, &ptr, off, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(buf, &ptr, chunk, n);
		for (i = 0; i < n; i++)
			snprintf(line + 3 * i, 4, "%02x ", chunk[i]);
		keel_module_log(p->m, KEEL_LOG_DEBUG, "%s %s %6zu: %s",
				p->c.name, dir, off, line);
		off += n;
	}
}

/* Free a client's resources (it is unlinked already). */
static void
client_release(struct client *cl)
{
	if (cl->idle != NULL)
		event_free(cl->idle);
	if (cl->rd != NULL)
		event_free(cl->rd);
	if (cl->wr != NULL)
		event_free(cl->wr);
	if (cl->in != NULL)
		evbuffer_free(cl->in);
	if (cl->out != NULL)
		evbuffer_free(cl->out);
	if (cl->fd != -1)
		close(cl->fd);
	free(cl);
}

/* Close one client. */
static void
client_free(struct client *cl, const char *why)
{
	struct port *p = cl->p;
	struct client **pp;

	for (pp = &p->clients; *pp != NULL; pp = &(*pp)->next)
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	p->nclients--;
	keel_module_log(p->m, KEEL_LOG_INFO, "%s: client %s %s", p->c.name,
			cl->peer, why);
	client_release(cl);
	/* It may have been the full one holding the device back. */
	port_resume_device(p);
	port_maybe_done(p);
}

/* Pause or resume every client's reading (device back-pressure). */
static void
port_pause_clients(struct port *p, int pause)
{
	struct client *cl;

	if (p->paused == pause)
		return;
	p->paused = pause;
	for (cl = p->clients; cl != NULL; cl = cl->next) {
		if (pause)
			event_del(cl->rd);
		else if (!p->removing)
			event_add(cl->rd, NULL);
	}
}

/* Move what a client sent towards the device, as much as fits. */
static void
client_deliver(struct client *cl)
{
	struct port *p = cl->p;

	if (evbuffer_get_length(cl->in) == 0)
		return;
	trace_dump(p, "net->dev", cl->in);
	keel_serial_write(p->dev, cl->in);
	if (evbuffer_get_length(cl->in) > 0)
		port_pause_clients(p, 1);
}

/*
 * The client sent something: read up to 64 KiB (libevent's bufferevents
 * read 4 KiB a call plus an ioctl: four times the syscalls), then deliver.
 */
static void
client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	struct evbuffer_iovec v;
	size_t total = 0;
	ssize_t n = 1;
	char why[128];

	(void)what;
	while (total < 65536 && evbuffer_get_length(cl->in) < 65536) {
		if (evbuffer_reserve_space(cl->in, 65536 - total, &v, 1) < 1)
			break;
		n = read(fd, v.iov_base, v.iov_len);
		if (n <= 0) {
			evbuffer_commit_space(cl->in, &v, 0);
			break;
		}
		v.iov_len = (size_t)n;
		evbuffer_commit_space(cl->in, &v, 1);
		total += (size_t)n;
	}
	if (total > 0)
		event_base_gettimeofday_cached(keel_module_base(cl->p->m),
					       &cl->last);
	client_deliver(cl);
	if (n == 0) {
		client_free(cl, "disconnected");
	} else if (n == -1 && errno != EAGAIN && errno != EINTR) {
		snprintf(why, sizeof(why), "lost (%s)", strerror(errno));
		client_free(cl, why);
	}
}

/* The client can take more: write what is queued. */
static void
client_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	struct port *p = cl->p;
	char why[128];
	int n;

	(void)what;
	n = evbuffer_write(cl->out, fd);
	if (n == -1 && errno != EAGAIN && errno != EINTR) {
		snprintf(why, sizeof(why), "lost (%s)", strerror(errno));
		client_free(cl, why);
		return;
	}
	if (n > 0)
		event_base_gettimeofday_cached(keel_module_base(p->m),
					       &cl->last);
	if (evbuffer_get_length(cl->out) > 0) {
		event_add(cl->wr, NULL);
	} else {
		event_del(cl->wr);
		if (p->removing) {
			client_free(cl, "closed (port removed)");
			return;
		}
	}
	if (evbuffer_get_length(cl->out) <= p->c.client_buffer / 2) {
		if (cl->lagging)
			keel_module_log(p->m, KEEL_LOG_INFO,
					"%s: client %s caught up", p->c.name,
					cl->peer);
		cl->lagging = 0;
		port_resume_device(p);
	}
}

/* client-timeout: no traffic either way for that long. */
static void
client_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	struct timeval now, tv;
	double idle, limit = cl->p->c.client_timeout;

	(void)fd;
	(void)what;
	if (limit <= 0)
		return;
	event_base_gettimeofday_cached(keel_module_base(cl->p->m), &now);
	idle = (double)(now.tv_sec - cl->last.tv_sec) +
	       (double)(now.tv_usec - cl->last.tv_usec) / 1e6;
	if (idle + 0.001 >= limit) {
		client_free(cl, "closed (client-timeout)");
		return;
	}
	limit -= idle;
	tv = keel_timeval(limit);
	evtimer_add(cl->idle, &tv);
}

/* (Re)arm a client's inactivity timer. */
static void
client_arm_idle(struct client *cl)
{
	double limit = cl->p->c.client_timeout;
	struct timeval tv;

	if (limit <= 0) {
		evtimer_del(cl->idle);
		return;
	}
	tv = keel_timeval(limit);
	evtimer_add(cl->idle, &tv);
}

/* Dead peers: keepalive probes after 30 s idle, every 10 s, 3 of them. */
static void
client_sockopts(evutil_socket_t fd)
{
	int one = 1, idle = 30, intvl = 10, cnt = 3;
	unsigned int user_timeout = 60000;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	/* Unacknowledged data for a minute: the peer is gone. */
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
		   sizeof(user_timeout));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A new connection. */
static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
	  int salen, void *arg)
{
	struct port *p = arg;
	struct client *cl, **tail;
	char host[64];

	(void)lev;
	(void)salen;
	if (evutil_inet_ntop(
		    sa->sa_family,
		    sa->sa_family == AF_INET6
			    ? (void *)&((struct sockaddr_in6 *)sa)->sin6_addr
			    : (void *)&((struct sockaddr_in *)sa)->sin_addr,
		    host, sizeof(host)) == NULL)
		snprintf(host, sizeof(host), "?");
	if (p->nclients >= p->c.max_clients) {
		if (p->c.when_full == FULL_REFUSE || p->clients == NULL) {
			p->refused++;
			keel_module_log(
				p->m, KEEL_LOG_INFO,
				"%s: refusing %s: max-clients (%d) reached",
				p->c.name, host, p->c.max_clients);
			close(fd);
			return;
		}
		p->kicked++;
		client_free(p->clients,
			    "kicked (max-clients reached, kick-oldest)");
	}
	cl = calloc(1, sizeof(*cl));
	if (cl == NULL) {
		close(fd);
		return;
	}
	snprintf(cl->peer, sizeof(cl->peer), "%.64s:%u", host,
		 ntohs(sa->sa_family == AF_INET6
			       ? ((struct sockaddr_in6 *)sa)->sin6_port
			       : ((struct sockaddr_in *)sa)->sin_port));
	cl->p = p;
	client_sockopts(fd);
	cl->fd = fd;
	cl->rd = event_new(keel_module_base(p->m), fd, EV_READ | EV_PERSIST,
			   client_read_cb, cl);
	cl->wr = event_new(keel_module_base(p->m), fd, EV_WRITE,
			   client_write_cb, cl);
	cl->in = evbuffer_new();
	cl->out = evbuffer_new();
	cl->idle = evtimer_new(keel_module_base(p->m), client_idle_cb, cl);
	if (cl->rd == NULL || cl->wr == NULL || cl->in == NULL ||
	    cl->out == NULL || cl->idle == NULL) {
		client_release(cl);
		return;
	}
	if (!p->paused)
		event_add(cl->rd, NULL);
	event_base_gettimeofday_cached(keel_module_base(p->m), &cl->last);
	client_arm_idle(cl);
	for (tail = &p->clients; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = cl;
	p->nclients++;
	p->accepted++;
	keel_module_log(p->m, KEEL_LOG_INFO,
			"%s: client %s connected (%d of %d)", p->c.name,
			cl->peer, p->nclients, p->c.max_clients);
}

/* The pause after EMFILE is over: accept again. */
static void
listen_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct port *p = arg;

	(void)fd;
	(void)what;
	if (p->lev != NULL)
		evconnlistener_enable(p->lev);
}

/*
 * accept() failed. Out of descriptors the socket stays readable: without a
 * pause the listener spins at 100 % CPU (TRAPS). Pause for 200 ms.
 */
static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct port *p = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, LISTEN_PAUSE_USEC };

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		if (!evtimer_pending(p->lev_pause, NULL))
			keel_module_log(p->m, KEEL_LOG_WARNING,
					"%s: accept: %s; pausing the listener",
					p->c.name, strerror(err));
		evconnlistener_disable(lev);
		evtimer_add(p->lev_pause, &tv);
		return;
	}
	keel_module_log(p->m, KEEL_LOG_DEBUG, "%s: accept: %s", p->c.name,
			strerror(err));
}

/* Attach a bound socket as the port's listener. */
static int
port_listen(struct port *p, int fd)
{
	p->lev = evconnlistener_new(
		keel_module_base(p->m), accept_cb, p,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (p->lev == NULL) {
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(p->lev, accept_error_cb);
	return 0;
}

/* ---- the device side ---- */

/*
 * Device data: to every client, bounded per client. When no client that
 * keeps up has room, the device is not read until one has (back-pressure:
 * nothing is lost), for at most stall-timeout. A client lagging behind the
 * others, or still full when stall-timeout expires, gets the slow-client
 * policy (its data dropped and counted, or a disconnect) so that it cannot
 * hold the device or the other clients.
 */
static void
dev_data_cb(struct keel_serial *s, struct evbuffer *in, void *arg)
{
	struct port *p = arg;
	struct client *cl, *next;
	size_t len = evbuffer_get_length(in), least = (size_t)-1;
	int left = p->nclients;

	trace_dump(p, "dev->net", in);
	for (cl = p->clients; cl != NULL; cl = cl->next) {
		size_t out = evbuffer_get_length(cl->out);

		if (!cl->lagging && out < least)
			least = out;
	}
	if (least != (size_t)-1 && least + len > p->c.client_buffer) {
		/* Nobody keeping up has room: deliver this, then wait. */
		keel_serial_set_reading(s, 0);
		p->dev_paused = 1;
		if (p->c.stall_timeout > 0 &&
		    !evtimer_pending(p->stall_timer, NULL)) {
			struct timeval tv = keel_timeval(p->c.stall_timeout);

			evtimer_add(p->stall_timer, &tv);
		}
	}
	for (cl = p->clients; cl != NULL; cl = next) {
		struct evbuffer *out = cl->out;

		next = cl->next;
		left--;
		if (cl->lagging ||
		    (!p->dev_paused &&
		     evbuffer_get_length(out) + len > p->c.client_buffer)) {
			if (p->c.slow == SLOW_DISCONNECT) {
				p->slow_disconnects++;
				client_free(
					cl,
					"disconnected (too slow: client-buffer full)");
				continue;
			}
			if (!cl->lagging)
				keel_module_log(
					p->m, KEEL_LOG_INFO,
					"%s: client %s too slow: dropping its data until it catches up",
					p->c.name, cl->peer);
			cl->lagging = 1;
			cl->dropped += len;
			p->client_drops += len;
			continue;
		}
		/* The last one takes the chain itself: no copy for one client.
		 */
		if (left == 0)
			evbuffer_add_buffer(out, in);
		else
			evbuffer_add(out, evbuffer_pullup(in, -1), len);
		/* Written when the socket is writable: device reads of this
		 * loop turn go out together. */
		event_add(cl->wr, NULL);
	}
}

/*
 * Back-pressure lasted stall-timeout: the clients still over half their
 * buffer are stuck (alive but not reading); stop waiting for them.
 */
static void
port_stall_cb(evutil_socket_t fd, short what, void *arg)
{
	struct port *p = arg;
	struct client *cl, *next;

	(void)fd;
	(void)what;
	if (!p->dev_paused)
		return;
	for (cl = p->clients; cl != NULL; cl = next) {
		next = cl->next;
		if (cl->lagging ||
		    evbuffer_get_length(cl->out) <= p->c.client_buffer / 2)
			continue;
		if (p->c.slow == SLOW_DISCONNECT) {
			p->slow_disconnects++;
			client_free(cl,
				    "disconnected (stalled for stall-timeout)");
			continue;
		}
		keel_module_log(
			p->m, KEEL_LOG_INFO,
			"%s: client %s stalled for %gs: dropping its data until it catches up",
			p->c.name, cl->peer, p->c.stall_timeout);
		cl->lagging = 1;
	}
	port_resume_device(p);
}

/* A client drained below half its buffer: the device may be read again. */
static void
port_resume_device(struct port *p)
{
	if (!p->dev_paused)
		return;
	p->dev_paused = 0;
	evtimer_del(p->stall_timer);
	keel_serial_set_reading(p->dev, 1);
}

/* The device is back: clients may send again. */
static void
dev_opened_cb(struct keel_serial *s, void *arg)
{
	(void)s;
	port_pause_clients(arg, 0);
}

/* The device went away: what clients send now is dropped and counted. */
static void
dev_closed_cb(struct keel_serial *s, const char *why, void *arg)
{
	(void)s;
	(void)why;
	port_pause_clients(arg, 0);
}

/* Room towards the device again. */
static void
dev_drained_cb(struct keel_serial *s, void *arg)
{
	struct port *p = arg;
	struct client *cl;

	(void)s;
	port_pause_clients(p, 0);
	/* Data may wait in the clients' input buffers. */
	for (cl = p->clients; cl != NULL && !p->paused; cl = cl->next)
		client_deliver(cl);
	if (p->removing)
		port_maybe_done(p);
}

static const struct keel_serial_callbacks dev_callbacks = {
	.opened = dev_opened_cb,
	.data = dev_data_cb,
	.closed = dev_closed_cb,
	.drained = dev_drained_cb,
};

/* ---- ports ---- */

/* Free a port now. */
static void
port_free(struct port *p)
{
	while (p->clients != NULL) {
		struct client *cl = p->clients;

		p->clients = cl->next;
		client_release(cl);
	}
	if (p->lev != NULL)
		evconnlistener_free(p->lev);
	if (p->lev_pause != NULL)
		event_free(p->lev_pause);
	if (p->drain_timer != NULL)
		event_free(p->drain_timer);
	if (p->stall_timer != NULL)
		event_free(p->stall_timer);
	keel_serial_free(p->dev);
	conf_free(&p->c);
	free(p);
}

/* Unlink a removed port and free it; tell keeld when the last is gone. */
static void
port_finish(struct port *p)
{
	struct keel_module *m = p->m;
	struct bridge *b = keel_module_data(m);
	struct port **pp;

	for (pp = &b->ports; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	keel_module_log(m, KEEL_LOG_INFO, "%s: closed", p->c.name);
	port_free(p);
	if (b->stopping && b->ports == NULL) {
		free(b);
		keel_module_set_data(m, NULL);
		keel_module_stopped(m);
	}
}

/* A draining port is done when the device and every client flushed. */
static void
port_maybe_done(struct port *p)
{
	struct client *cl;

	if (!p->removing)
		return;
	if (keel_serial_is_open(p->dev) &&
	    keel_serial_output_length(p->dev) > 0)
		return;
	for (cl = p->clients; cl != NULL; cl = cl->next)
		if (evbuffer_get_length(cl->out) > 0)
			return;
	/* Deferred: we may be inside one of the port's callbacks. */
	event_active(p->drain_timer, EV_TIMEOUT, 0);
}

/* Drain deadline, or drained. */
static void
port_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	port_finish(arg);
}

/* Stop accepting and reading; finish when flushed or after the deadline. */
static void
port_remove(struct port *p)
{
	struct timeval tv = { (time_t)SERIAL_DRAIN_MAX, 0 };
	struct client *cl;

	if (p->removing)
		return;
	p->removing = 1;
	if (p->lev != NULL)
		evconnlistener_free(p->lev);
	p->lev = NULL;
	evtimer_del(p->lev_pause);
	for (cl = p->clients; cl != NULL; cl = cl->next) {
		event_del(cl->rd);
	}
	evtimer_add(p->drain_timer, &tv);
	keel_module_log(p->m, KEEL_LOG_INFO, "%s: draining", p->c.name);
	port_maybe_done(p);
}

/* A new port from a plan: device opening, listener attached. */
static struct port *
port_new(struct keel_module *m, struct plan *pl)
{
	struct port *p = calloc(1, sizeof(*p));
	struct keel_serial_params sp;

	if (p == NULL)
		return NULL;
	p->m = m;
	p->c = pl->c;
	memset(&pl->c, 0, sizeof(pl->c));
	p->lev_pause = evtimer_new(keel_module_base(m), listen_resume_cb, p);
	p->drain_timer = evtimer_new(keel_module_base(m), port_drain_cb, p);
	p->stall_timer = evtimer_new(keel_module_base(m), port_stall_cb, p);
	sp = conf_params(&p->c);
	if (p->lev_pause == NULL || p->drain_timer == NULL ||
	    p->stall_timer == NULL || port_listen(p, pl->listen_fd) == -1) {
		pl->listen_fd = -1;
		port_free(p);
		return NULL;
	}
	pl->listen_fd = -1;
	p->dev = keel_serial_new(keel_module_base(m), &sp, &dev_callbacks, p);
	if (p->dev == NULL) {
		port_free(p);
		return NULL;
	}
	keel_module_log(m, KEEL_LOG_INFO, "%s: %s <-> %s", p->c.name,
			p->c.device, p->c.listen);
	return p;
}

/* Apply a changed configuration to a running port. */
static void
port_update(struct port *p, struct plan *pl)
{
	struct keel_serial_params sp;
	struct keel_serial *dev;
	struct client *cl;
	int rearm;

	if (pl->listen_fd != -1) {
		struct evconnlistener *old = p->lev;

		p->lev = NULL;
		if (port_listen(p, pl->listen_fd) == 0) {
			if (old != NULL)
				evconnlistener_free(old);
			keel_module_log(
				p->m, KEEL_LOG_INFO,
				"%s: now listening on %s (clients kept)",
				p->c.name, pl->c.listen);
		} else {
			p->lev = old;
		}
		pl->listen_fd = -1;
	}
	sp = conf_params(&pl->c);
	if (conf_device_changed(&p->c, &pl->c)) {
		dev = keel_serial_new(keel_module_base(p->m), &sp,
				      &dev_callbacks, p);
		if (dev != NULL) {
			keel_module_log(p->m, KEEL_LOG_INFO,
					"%s: device now %s", p->c.name,
					pl->c.device);
			keel_serial_free(p->dev);
			p->dev = dev;
			port_pause_clients(p, 0);
		}
	} else {
		/* Refused by the device: the port keeps (and shows) the old. */
		if (!line_equal(&p->c.line, &pl->c.line) &&
		    keel_serial_set_line(p->dev, &pl->c.line) == -1)
			pl->c.line = p->c.line;
		/* Unchanged values must not restart the countdowns. */
		if (p->c.open_timeout != pl->c.open_timeout ||
		    p->c.idle_timeout != pl->c.idle_timeout ||
		    p->c.retry_min != pl->c.retry_min ||
		    p->c.retry_max != pl->c.retry_max ||
		    p->c.device_buffer != pl->c.device_buffer)
			keel_serial_set_timing(p->dev, &sp);
	}
	rearm = p->c.client_timeout != pl->c.client_timeout;
	conf_free(&p->c);
	p->c = pl->c;
	memset(&pl->c, 0, sizeof(pl->c));
	for (cl = p->clients; rearm && cl != NULL; cl = cl->next)
		client_arm_idle(cl);
}

/* ---- module hooks ---- */

/* Allocate the bridge. */
static int
bridge_start(struct keel_module *m)
{
	struct bridge *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return -1;
	keel_module_set_data(m, b);
	return 0;
}

/* Free what a transaction holds. */
static void
txn_free(struct txn *t)
{
	int i;

	for (i = 0; i < t->n; i++) {
		conf_free(&t->plans[i].c);
		if (t->plans[i].listen_fd != -1)
			close(t->plans[i].listen_fd);
	}
	free(t->plans);
	free(t);
}

/* The running port called @name. */
static struct port *
bridge_find(struct bridge *b, const char *name)
{
	struct port *p;

	for (p = b->ports; p != NULL; p = p->next)
		if (!p->removing && strcmp(p->c.name, name) == 0)
			return p;
	return NULL;
}

/* The running port listening on @listen. */
static struct port *
bridge_find_listen(struct bridge *b, const char *listen)
{
	struct port *p;

	for (p = b->ports; p != NULL; p = p->next)
		if (!p->removing && strcmp(p->c.listen, listen) == 0)
			return p;
	return NULL;
}

/*
 * Read and check every section; bind new listen addresses now so that a
 * port in use rejects the reload. Nothing running changes.
 */
static int
bridge_prepare(struct keel_module *m, cfg_t *cfg, unsigned int flags,
	       void **txnp)
{
	struct bridge *b = keel_module_data(m);
	unsigned int i, j, n = cfg_size(cfg, "serial");
	struct txn *t = calloc(1, sizeof(*t));
	struct port *holder;

	if (t == NULL)
		return -1;
	*txnp = t;
	t->plans = calloc(n + 1, sizeof(*t->plans));
	if (t->plans == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		cfg_t *sec = cfg_getnsec(cfg, "serial", i);
		struct plan *pl = &t->plans[i];

		pl->listen_fd = -1;
		t->n = (int)i + 1;
		if (conf_read(m, sec, &pl->c) == -1)
			return -1;
		for (j = 0; j < i; j++) {
			if (strcmp(t->plans[j].c.device, pl->c.device) == 0) {
				keel_module_error(
					m, sec,
					"serial '%s': device %s is already used by serial '%s'",
					pl->c.name, pl->c.device,
					t->plans[j].c.name);
				return -1;
			}
			if (strcmp(t->plans[j].c.listen, pl->c.listen) == 0) {
				keel_module_error(
					m, sec,
					"serial '%s': listen %s is already used by serial '%s'",
					pl->c.name, pl->c.listen,
					t->plans[j].c.name);
				return -1;
			}
		}
		pl->old = bridge_find(b, pl->c.name);
		if (flags & KEEL_PREPARE_CHECK)
			continue;
		if (pl->old != NULL &&
		    strcmp(pl->old->c.listen, pl->c.listen) == 0)
			continue;
		/*
		 * The address may belong to another running port (a section
		 * renamed, an address moved): hand its socket over instead of
		 * binding a second one. The new configuration has it only once.
		 */
		holder = bridge_find_listen(b, pl->c.listen);
		if (holder != NULL && holder->lev != NULL) {
			pl->listen_fd = dup(evconnlistener_get_fd(holder->lev));
			if (pl->listen_fd != -1)
				continue;
		}
		pl->listen_fd = listen_socket(&pl->c);
		if (pl->listen_fd == -1) {
			keel_module_error(m, sec, "serial '%s': listen %s: %s",
					  pl->c.name, pl->c.listen,
					  strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Switch: keep, update, add, remove. */
static void
bridge_commit(struct keel_module *m, void *arg)
{
	struct bridge *b = keel_module_data(m);
	struct txn *t = arg;
	struct port *p, **tail;
	int i;

	/* Ports not in the new configuration drain and close. */
	for (p = b->ports; p != NULL; p = p->next) {
		int found = 0;

		for (i = 0; i < t->n; i++)
			if (t->plans[i].old == p)
				found = 1;
		if (!found)
			port_remove(p);
	}
	for (i = 0; i < t->n; i++) {
		struct plan *pl = &t->plans[i];

		if (pl->old != NULL) {
			port_update(pl->old, pl);
			continue;
		}
		p = port_new(m, pl);
		if (p == NULL) {
			keel_module_log(m, KEEL_LOG_ERR,
					"%s: cannot create the port",
					pl->c.name);
			continue;
		}
		for (tail = &b->ports; *tail != NULL; tail = &(*tail)->next)
			;
		*tail = p;
	}
	txn_free(t);
}

/* Throw the plans away (closing the sockets bound for them). */
static void
bridge_abort(struct keel_module *m, void *arg)
{
	(void)m;
	txn_free(arg);
}

/* Stop: drain every port; a second call frees everything now. */
static void
bridge_stop(struct keel_module *m)
{
	struct bridge *b = keel_module_data(m);
	struct port *p, *next;

	if (b == NULL) {
		keel_module_stopped(m);
		return;
	}
	if (b->stopping || b->ports == NULL) {
		for (p = b->ports; p != NULL; p = next) {
			next = p->next;
			port_free(p);
		}
		free(b);
		keel_module_set_data(m, NULL);
		keel_module_stopped(m);
		return;
	}
	b->stopping = 1;
	for (p = b->ports; p != NULL; p = next) {
		next = p->next;
		port_remove(p);
	}
}

/* One line per port. */
static void
bridge_status(struct keel_module *m, struct keel_status *st)
{
	struct bridge *b = keel_module_data(m);
	const struct keel_serial_stats *s;
	struct port *p;
	char key[300], fmt[8];

	if (b == NULL)
		return;
	for (p = b->ports; p != NULL; p = p->next) {
		s = keel_serial_stats(p->dev);
		snprintf(key, sizeof(key), "serial.%s", p->c.name);
		keel_status_add(
			st, key,
			"%s %u %s, %s, listen %s, clients %d/%d, in %llu, out %llu, opens %llu, failures %llu, hangups %llu, drops %llu, client-drops %llu, accepted %llu, refused %llu, kicked %llu, slow-disconnects %llu%s",
			p->c.device, p->c.line.speed,
			keel_serial_format_name(&p->c.line, fmt, sizeof(fmt)),
			keel_serial_state(p->dev), p->c.listen, p->nclients,
			p->c.max_clients, (unsigned long long)s->bytes_in,
			(unsigned long long)s->bytes_out,
			(unsigned long long)s->opens,
			(unsigned long long)s->open_failures,
			(unsigned long long)s->hangups,
			(unsigned long long)s->drops,
			(unsigned long long)p->client_drops,
			(unsigned long long)p->accepted,
			(unsigned long long)p->refused,
			(unsigned long long)p->kicked,
			(unsigned long long)p->slow_disconnects,
			p->removing ? ", draining" : "");
	}
}

/* Framework events: wake retries every waiting device now. */
static void
bridge_event(struct keel_module *m, enum keel_event ev)
{
	struct bridge *b = keel_module_data(m);
	struct port *p;

	if (ev != KEEL_EVENT_WAKE || b == NULL)
		return;
	for (p = b->ports; p != NULL; p = p->next)
		keel_serial_wake(p->dev);
}

/* ---- parse-time validators: errors carry the option's own line ---- */

/* An integer option within [lo, hi]. */
static int
check_int(cfg_t *cfg, cfg_opt_t *opt, long lo, long hi)
{
	long v = cfg_opt_getnint(opt, 0);

	if (v < lo || v > hi) {
		cfg_error(cfg,
			  "serial '%s': %s %ld is out of range (%ld to %ld)",
			  keel_section_title(cfg), opt->name, v, lo, hi);
		return -1;
	}
	return 0;
}

/* A float option within [lo, hi]. */
static int
check_float(cfg_t *cfg, cfg_opt_t *opt, double lo, double hi)
{
	double v = cfg_opt_getnfloat(opt, 0);

	if (!(v >= lo && v <= hi)) {
		cfg_error(cfg, "serial '%s': %s %g is out of range (%g to %g)",
			  keel_section_title(cfg), opt->name, v, lo, hi);
		return -1;
	}
	return 0;
}

/* A string option that must be one of @words (space separated). */
static int
check_word(cfg_t *cfg, cfg_opt_t *opt, const char *words, const char *what)
{
	const char *v = cfg_opt_getnstr(opt, 0), *w = words;
	size_t n = strlen(v);

	while (n > 0 && (w = strstr(w, v)) != NULL) {
		if ((w == words || w[-1] == ' ') &&
		    (w[n] == ' ' || w[n] == '\0'))
			return 0;
		w += n;
	}
	cfg_error(cfg, "serial '%s': %s '%s' is not %s",
		  keel_section_title(cfg), opt->name, v, what);
	return -1;
}

static int
check_speed(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_int(cfg, opt, 50, 4000000);
}

static int
check_max_clients(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_int(cfg, opt, 1, 65536);
}

static int
check_buffer(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_int(cfg, opt, 1024, 64L * 1024 * 1024);
}

static int
check_client_buffer(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_int(cfg, opt, 4096, 64L * 1024 * 1024);
}

static int
check_open_timeout(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_float(cfg, opt, 0.001, 600);
}

static int
check_seconds(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_float(cfg, opt, 0, 86400);
}

static int
check_retry(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_float(cfg, opt, 0.001, 86400);
}

static int
check_format(cfg_t *cfg, cfg_opt_t *opt)
{
	struct keel_serial_line line;
	char err[200];

	if (keel_serial_parse_format(cfg_opt_getnstr(opt, 0), &line, err,
				     sizeof(err)) == -1) {
		cfg_error(cfg, "serial '%s': %s", keel_section_title(cfg), err);
		return -1;
	}
	return 0;
}

static int
check_flow(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_word(cfg, opt, "none rtscts xonxoff",
			  "none, rtscts or xonxoff");
}

static int
check_when_full(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_word(cfg, opt, "refuse kick-oldest",
			  "refuse or kick-oldest");
}

static int
check_slow(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_word(cfg, opt, "drop disconnect", "drop or disconnect");
}

/* listen: numeric HOST:PORT, IPv6 as [ADDR]:PORT; never a DNS lookup. */
static int
check_listen(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = cfg_opt_getnstr(opt, 0);
	struct sockaddr_storage ss;
	int len = (int)sizeof(ss);

	if (v == NULL || strchr(v, ':') == NULL ||
	    evutil_parse_sockaddr_port(v, (struct sockaddr *)&ss, &len) == -1) {
		cfg_error(
			cfg,
			"serial '%s': listen '%s' is not a numeric HOST:PORT (IPv6 as [ADDR]:PORT)",
			keel_section_title(cfg), v != NULL ? v : "");
		return -1;
	}
	return 0;
}

static const struct keel_validator serial_validators[] = {
	{ "speed", check_speed },
	{ "format", check_format },
	{ "flow", check_flow },
	{ "open-timeout", check_open_timeout },
	{ "idle-timeout", check_seconds },
	{ "retry-min", check_retry },
	{ "retry-max", check_retry },
	{ "listen", check_listen },
	{ "max-clients", check_max_clients },
	{ "when-full", check_when_full },
	{ "client-timeout", check_seconds },
	{ "stall-timeout", check_seconds },
	{ "client-buffer", check_client_buffer },
	{ "slow-client", check_slow },
	{ "device-buffer", check_buffer },
	{ NULL, NULL },
};

static cfg_opt_t serial_opts[] = {
	CFG_STR("device", "", CFGF_NONE),
	CFG_INT("speed", 9600, CFGF_NONE),
	CFG_STR("format", "8N1", CFGF_NONE),
	CFG_STR("flow", "none", CFGF_NONE),
	CFG_BOOL("local", cfg_true, CFGF_NONE),
	CFG_BOOL("hangup-on-close", cfg_false, CFGF_NONE),
	CFG_FLOAT("open-timeout", 2.0, CFGF_NONE),
	CFG_FLOAT("idle-timeout", 0, CFGF_NONE),
	CFG_FLOAT("retry-min", 0.1, CFGF_NONE),
	CFG_FLOAT("retry-max", 30, CFGF_NONE),
	CFG_BOOL("lock", cfg_true, CFGF_NONE),
	CFG_STR("lock-dir", "/run/lock", CFGF_NONE),
	CFG_STR("listen", "", CFGF_NONE),
	CFG_INT("max-clients", 4, CFGF_NONE),
	CFG_STR("when-full", "refuse", CFGF_NONE),
	CFG_FLOAT("client-timeout", 0, CFGF_NONE),
	CFG_FLOAT("stall-timeout", 10, CFGF_NONE),
	CFG_INT("client-buffer", 262144, CFGF_NONE),
	CFG_STR("slow-client", "drop", CFGF_NONE),
	CFG_INT("device-buffer", 65536, CFGF_NONE),
	CFG_BOOL("trace", cfg_false, CFGF_NONE),
	CFG_END(),
};

KEEL_MODULE_DESCRIPTOR = {
	.abi = KEEL_MODULE_ABI,
	.name = "serial",
	.version = "1.0.0",
	.section = KEEL_SECTION_TITLED,
	.options = serial_opts,
	.validators = serial_validators,
	.events = KEEL_EVENT_WAKE,
	.start = bridge_start,
	.prepare = bridge_prepare,
	.commit = bridge_commit,
	.abort = bridge_abort,
	.stop = bridge_stop,
	.status = bridge_status,
	.event = bridge_event,
};
