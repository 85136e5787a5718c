/* SPDX-License-Identifier: ISC */
/*
 * serial: each `serial NAME { }` section is one instance bridging a serial
 * device to a TCP listener, to a server it connects out to, or both. Device
 * data fans out to every client; client data goes to the device. Every
 * change applies in place: a new device path reopens the device keeping the
 * clients, a new listen address rebinds keeping them, line settings change
 * on the open device, a new connect target replaces the outbound connection.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <keel/keel.h>
#include <keel/net.h>
#include <keel/serial.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "telnet.h"

#define SERIAL_DRAIN_MAX   5.0    /* seconds a removed port may take to drain */
#define LISTEN_PAUSE_USEC  200000 /* listener pause when out of fds */
#define CLIENT_LOG_WINDOW  10.0   /* seconds; client lines per port ... */
#define CLIENT_LOG_BURST   20     /* ... at most this many per window */
#define CONNECT_LOG_WINDOW 60.0   /* seconds; failed connects logged ... */
#define CONNECT_LOG_BURST  3      /* ... at most this many per window */
#define CONNECT_STABLE     5.0    /* seconds up that reset the back-off */
#define CONNECT_JITTER     0.2    /* the back-off varies by +- 20 % */
#define MIB                (1024.0 * 1024)
/* Asked of one read() of a client, and gathered per read callback. A
 * chunk is rounded up with libevent's header to 64 KiB: below glibc's mmap
 * threshold (128 KiB), so a read costs no mmap/munmap pair. */
#define CLIENT_READ_CHUNK ((size_t)32 * 1024)
#define CLIENT_READ_MAX   ((size_t)64 * 1024)
#define CLIENT_SNDBUF     65536 /* see client_sockopts */

enum when_full { FULL_REFUSE, FULL_KICK_OLDEST };
enum slow_client { SLOW_DROP, SLOW_DISCONNECT };

/* One section, filled and owned by the framework (see serial_options). */
struct port_conf {
	char *device;
	long speed;
	char *format;
	int flow; /* enum keel_serial_flow: flow_words is in its order */
	int local, hangup_on_close;
	double open_timeout, idle_timeout, retry_min, retry_max;
	int lock;
	char *lock_dir;
	struct keel_hostport listen; /* text NULL: not written */
	struct keel_list allow;
	char *connect; /* HOST:PORT, a name or numeric; NULL */
	double connect_timeout;
	long max_clients;
	int when_full; /* enum when_full */
	double client_timeout, stall_timeout, eof_linger;
	size_t client_buffer;
	int slow; /* enum slow_client */
	size_t device_buffer;
	int trace;
	int protocol; /* enum tn_proto: protocol_words is in its order */
};

/* The port's metrics; the first ones read the device's own counters. */
enum {
	M_RX,
	M_TX,
	M_OPENS,
	M_OPEN_FAILURES,
	M_HANGUPS,
	M_DROPS,
	M_BREAKS,
	M_MODEM_UNSUPPORTED, /* the last one bound to keel_serial_stats() */
	M_CLIENT_DROPS,
	M_ACCEPTED,
	M_REFUSED,
	M_KICKED,
	M_SLOW_DISCONNECTS,
	M_CLIENTS,
	M_UP,
	M_NET_RX,
	M_NET_TX,
	M_HALF_CLOSED,
	M_DENIED,
	M_CONNECTS,
	M_CONNECT_FAILURES,
	M_COUNT
};

#define STAT(f) ((long)offsetof(struct keel_serial_stats, f))

static const struct {
	const char *name, *help;
	enum keel_metric_type type;
	long stat; /* offset in struct keel_serial_stats, or -1 */
} port_metrics[M_COUNT] = {
	[M_RX] = { "rx_bytes_total", "Bytes read from the device",
		   KEEL_METRIC_COUNTER, STAT(bytes_in) },
	[M_TX] = { "tx_bytes_total", "Bytes written to the device",
		   KEEL_METRIC_COUNTER, STAT(bytes_out) },
	[M_OPENS] = { "opens_total", "Successful opens of the device",
		      KEEL_METRIC_COUNTER, STAT(opens) },
	[M_OPEN_FAILURES] = { "open_failures_total",
			      "Failed or timed out opens of the device",
			      KEEL_METRIC_COUNTER, STAT(open_failures) },
	[M_HANGUPS] = { "hangups_total",
			"Hang-ups, removals and idle timeouts of the device",
			KEEL_METRIC_COUNTER, STAT(hangups) },
	[M_DROPS] = { "dropped_bytes_total",
		      "Bytes for the device that were dropped",
		      KEEL_METRIC_COUNTER, STAT(drops) },
	[M_BREAKS] = { "breaks_total", "Breaks sent to the device",
		       KEEL_METRIC_COUNTER, STAT(breaks) },
	[M_MODEM_UNSUPPORTED] = { "modem_unsupported_total",
				  "Modem-line requests for a device without modem lines (acknowledged as asked)",
				  KEEL_METRIC_COUNTER,
				  STAT(modem_unsupported) },
	[M_CLIENT_DROPS] = { "client_dropped_bytes_total",
			     "Bytes for slow clients that were dropped",
			     KEEL_METRIC_COUNTER, -1 },
	[M_ACCEPTED] = { "accepted_total", "Clients accepted",
			 KEEL_METRIC_COUNTER, -1 },
	[M_REFUSED] = { "refused_total", "Clients refused at max-clients",
			KEEL_METRIC_COUNTER, -1 },
	[M_KICKED] = { "kicked_total", "Clients kicked out by newer ones",
		       KEEL_METRIC_COUNTER, -1 },
	[M_SLOW_DISCONNECTS] = { "slow_disconnects_total",
				 "Clients disconnected for being too slow",
				 KEEL_METRIC_COUNTER, -1 },
	[M_CLIENTS] = { "clients", "Clients connected", KEEL_METRIC_GAUGE, -1 },
	[M_UP] = { "up", "Whether the device is open", KEEL_METRIC_GAUGE, -1 },
	[M_NET_RX] = { "net_rx_bytes_total", "Bytes received from clients",
		       KEEL_METRIC_COUNTER, -1 },
	[M_NET_TX] = { "net_tx_bytes_total", "Bytes sent to clients",
		       KEEL_METRIC_COUNTER, -1 },
	[M_HALF_CLOSED] = { "half_closed_total",
			    "Clients that shut down their sending side and "
			    "lingered (eof-linger)",
			    KEEL_METRIC_COUNTER, -1 },
	[M_DENIED] = { "denied_total",
		       "Clients refused at accept, or closed by a reload, "
		       "because allow does not list them",
		       KEEL_METRIC_COUNTER, -1 },
	[M_CONNECTS] = { "connects_total",
			 "Outbound connections established (connect)",
			 KEEL_METRIC_COUNTER, -1 },
	[M_CONNECT_FAILURES] = { "connect_failures_total",
				 "Outbound connection rounds that failed "
				 "(every address tried), and names that did "
				 "not resolve",
				 KEEL_METRIC_COUNTER, -1 },
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
	int eof;     /* it shut down its sending side: not read, lingers */
	char peer[80];
	struct sockaddr_storage addr;
	time_t since;             /* wall clock */
	uint64_t rx, tx, dropped; /* bytes from it, to it, dropped for it */
	/* telnet and rfc2217: the protocol, and what it decoded for the
	 * device (NULL for raw clients: their bytes go as they came). */
	struct tn *tn;
	struct evbuffer *dec;
	int suspended; /* FLOWCONTROL-SUSPEND: nothing sent to it */
};

/* The outbound connection's life: connect_state in status. */
enum out_state {
	OUT_OFF, /* no connect */
	OUT_RESOLVING,
	OUT_CONNECTING,
	OUT_CONNECTED,
	OUT_WAITING, /* the back-off */
};

static const char *const out_state_words[] = { "off", "resolving", "connecting",
					       "connected", "waiting" };

/* connect: the port's own connection out (see out_start). */
struct outbound {
	enum out_state state;
	struct evdns_getaddrinfo_request *req; /* resolving */
	struct evutil_addrinfo *ai, *next;     /* resolved; next to try */
	int fd;                                /* connecting, else -1 */
	struct event *ev;                      /* connecting: writable */
	struct event *timer;  /* connect-timeout, or the back-off */
	struct client *cl;    /* connected: an ordinary client */
	unsigned int attempt; /* failed rounds: the back-off */
	struct timeval since; /* when connected */
	char peer[80];        /* the address tried or connected */
	char error[160];      /* the last failure */
	time_t error_time;    /* wall clock */
	struct keel_ratelimit rl;
};

struct port {
	struct keel_instance *in;
	struct keel_module *m;
	const char *name;
	const struct port_conf *c;    /* the conf of the last commit */
	struct keel_serial_line line; /* applied (the device may refuse one) */
	struct keel_serial *dev;
	struct keel_allow allow; /* parsed `allow` */
	struct evconnlistener *lev;
	/* Timers are made at their first use (port_timer_add): a thousand
	 * idle ports need none of them. */
	struct event *lev_pause;
	struct client *clients; /* oldest first */
	long nclients;
	int paused;     /* clients' reads paused: the device queue is full */
	int dev_paused; /* device not read: every client is full */
	struct event *stall_timer; /* how long back-pressure may last */
	int removing;              /* draining after removal */
	struct event *drain_timer;
	struct keel_metric *mt[M_COUNT];
	/* Client events are triggered from outside: a budget of log lines
	 * per port (the counts are in the metrics). */
	struct keel_ratelimit rl;
	int out_of_fds; /* accept fails for lack of descriptors: said once */
	/* RFC 2217: the client whose settings the port has (the first one to
	 * set something, until it leaves), and what it changed, to put back. */
	struct client *controller;
	int ctl_line, ctl_dtr, ctl_rts, ctl_break;
	long com_clients;  /* rfc2217 clients: modem lines watched while > 0 */
	unsigned int wish; /* DTR and RTS as last asked (KEEL_MODEM_*) */
	/* The line settings are the controller's while ctl_line (status:
	 * line_set_by). */
	char *signature; /* telnet SIGNATURE, made for a first telnet client */
	struct outbound *out; /* made for the first connect, then kept */
};

static void port_maybe_done(struct port *p);

/* The port's outbound connection, when up. */
static struct client *
port_out_cl(const struct port *p)
{
	return p->out != NULL ? p->out->cl : NULL;
}
static void port_resume_device(struct port *p);
static void client_arm_idle(struct client *cl);
static void port_com_client(struct port *p, int delta);
static void port_release(struct port *p, struct client *cl);
static void out_lost(struct port *p);
static void out_writable_cb(evutil_socket_t fd, short what, void *arg);
static void out_timer_cb(evutil_socket_t fd, short what, void *arg);
static void port_stall_cb(evutil_socket_t fd, short what, void *arg);

/* Make a timer of @p if it has not been. -1 (logged) without memory. */
static int
port_timer_make(struct port *p, struct event **ev, event_callback_fn cb)
{
	if (*ev == NULL &&
	    (*ev = evtimer_new(keel_module_base(p->m), cb, p)) == NULL) {
		keel_module_log(p->m, KEEL_LOG_WARNING, "%s: timer: %s",
				p->name, strerror(errno));
		return -1;
	}
	return 0;
}

/* Arm a timer of @p, made at its first use. -1 (logged) without memory. */
static int
port_timer_add(struct port *p, struct event **ev, event_callback_fn cb,
	       const struct timeval *tv)
{
	if (port_timer_make(p, ev, cb) == -1)
		return -1;
	return evtimer_add(*ev, tv);
}

/* Disarm a timer that may not have been made. */
static void
port_timer_del(struct event *ev)
{
	if (ev != NULL)
		evtimer_del(ev);
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

	if (!p->c->trace || !keel_log_enabled(KEEL_LOG_DEBUG))
		return;
	while (off < len && off < 4096) {
		n = len - off < sizeof(chunk) ? len - off : sizeof(chunk);
		evbuffer_ptr_set(buf, &ptr, off, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(buf, &ptr, chunk, n);
		for (i = 0; i < n; i++)
			snprintf(line + 3 * i, 4, "%02x ", chunk[i]);
		keel_module_log(p->m, KEEL_LOG_DEBUG, "%s %s %6zu: %s", p->name,
				dir, off, line);
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
	if (cl->dec != NULL)
		evbuffer_free(cl->dec);
	free(cl->tn);
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
	int outbound = cl == port_out_cl(p);

	for (pp = &p->clients; *pp != NULL; pp = &(*pp)->next)
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	if (cl->tn != NULL && cl->tn->proto == TN_RFC2217)
		port_com_client(p, -1);
	if (p->controller == cl)
		port_release(p, cl);
	if (outbound) {
		p->out->cl = NULL;
		keel_module_log(p->m, KEEL_LOG_INFO, "%s: connection to %s %s",
				p->name, cl->peer, why);
	} else {
		p->nclients--;
		keel_metric_set(p->mt[M_CLIENTS], p->nclients);
		keel_module_log_limit(p->m, &p->rl, KEEL_LOG_INFO,
				      "%s: client %s %s", p->name, cl->peer,
				      why);
	}
	client_release(cl);
	if (outbound)
		out_lost(p);
	/* It may have been the full one holding the device back. */
	port_resume_device(p);
	port_maybe_done(p);
}

/*
 * Pause or resume every client's reading (device back-pressure). Resuming
 * does not add the read events back: each is made active, so the client
 * is read on the next loop turn, and client_read_cb adds the event only
 * if the port is still not paused after that read. A client sending in
 * bulk to a slower device fills the queue again with that read and stays
 * out of epoll: pausing and resuming cost two epoll_ctl every 32 KiB
 * (25-54 a MB, measured) and now cost none.
 */
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
		else if (!p->removing && !cl->eof)
			event_active(cl->rd, EV_READ, 1);
	}
}

/* Move what a client sent towards the device, as much as fits. */
static void
client_deliver(struct client *cl)
{
	struct port *p = cl->p;
	struct evbuffer *src = cl->in;

	if (cl->tn != NULL) {
		/* Commands are answered on the next loop turn (the write
		 * event), never by freeing the client under our caller. */
		size_t before = evbuffer_get_length(cl->out);

		tn_input(cl->tn, cl->in, cl->dec, cl->out);
		if (evbuffer_get_length(cl->out) > before && !cl->suspended)
			event_add(cl->wr, NULL);
		src = cl->dec;
	}
	if (evbuffer_get_length(src) == 0)
		return;
	trace_dump(p, "net->dev", src);
	keel_serial_write(p->dev, src);
	if (evbuffer_get_length(src) > 0)
		port_pause_clients(p, 1);
}

/*
 * The client shut down its sending side (or closed: TCP cannot tell the
 * two apart). It is no longer read (at end of file a socket is readable
 * for ever), but device data still goes to it, so that the answer to its
 * last request reaches it, until nothing was written to it for eof-linger
 * seconds. A peer that closed altogether answers the next write with a
 * reset: it is freed then, as any lost client.
 */
static void
client_eof(struct client *cl)
{
	struct port *p = cl->p;

	/* A client that sent nothing has no answer to wait for: lingering
	 * would only let connect-and-close peers hold descriptors. The
	 * server we connected to closed: connect again. Telnet and RFC 2217
	 * clients (telnet, pyserial) close for good, never half: a lingering
	 * one would hold the port's settings for eof-linger after it left. */
	if (p->c->eof_linger <= 0 || p->removing || cl->rx == 0 ||
	    cl == port_out_cl(p) || cl->tn != NULL) {
		client_free(cl, "disconnected");
		return;
	}
	cl->eof = 1;
	event_del(cl->rd);
	event_base_gettimeofday_cached(keel_module_base(p->m), &cl->last);
	client_arm_idle(cl);
	keel_metric_add(p->mt[M_HALF_CLOSED], 1);
	keel_module_log_limit(p->m, &p->rl, KEEL_LOG_INFO,
			      "%s: client %s sent end of file: lingering %gs",
			      p->name, cl->peer, p->c->eof_linger);
}

/*
 * The client sent something: read up to CLIENT_READ_MAX (libevent's
 * bufferevents read 4 KiB a call plus an ioctl: four times the syscalls),
 * then deliver. A short read means the socket is drained: no read() to
 * see EAGAIN; the poll is level-triggered and calls again when more comes.
 */
static void
client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	struct evbuffer_iovec v;
	size_t total = 0;
	ssize_t n = 1;
	int err = 0;
	char why[128];

	(void)what;
	while (total < CLIENT_READ_MAX &&
	       evbuffer_get_length(cl->in) < CLIENT_READ_MAX) {
		if (evbuffer_reserve_space(cl->in, CLIENT_READ_CHUNK, &v, 1) <
		    1)
			break;
		n = read(fd, v.iov_base, v.iov_len);
		if (n <= 0) {
			err = errno;
			evbuffer_commit_space(cl->in, &v, 0);
			break;
		}
		total += (size_t)n;
		if ((size_t)n < v.iov_len) {
			v.iov_len = (size_t)n;
			evbuffer_commit_space(cl->in, &v, 1);
			break; /* drained */
		}
		evbuffer_commit_space(cl->in, &v, 1);
	}
	if (total > 0) {
		cl->rx += total;
		keel_metric_add(cl->p->mt[M_NET_RX], total);
		event_base_gettimeofday_cached(keel_module_base(cl->p->m),
					       &cl->last);
	}
	/* The device's write errors must not be taken for this read's. */
	client_deliver(cl);
	if (n == 0) {
		client_eof(cl);
	} else if (n == -1 && err != EAGAIN && err != EINTR) {
		snprintf(why, sizeof(why), "lost (%s)", strerror(err));
		client_free(cl, why);
	} else if (!cl->p->paused && !cl->p->removing && !cl->eof &&
		   !event_pending(cl->rd, EV_READ, NULL)) {
		/* Read because the device had room again (see
		 * port_pause_clients): wait in the poll from now on. */
		event_add(cl->rd, NULL);
	}
}

/*
 * Write what is queued for a client, as much as the socket takes; keep the
 * (persistent) write event armed only while something is left. Returns -1
 * when the client was freed.
 */
static int
client_flush(struct client *cl)
{
	struct port *p = cl->p;
	char why[128];
	int n;

	if (cl->suspended) {
		/* FLOWCONTROL-SUSPEND: its buffer fills, and the usual
		 * slow-client rules apply. */
		event_del(cl->wr);
		return 0;
	}
	n = evbuffer_write(cl->out, cl->fd);
	if (n == -1 && errno != EAGAIN && errno != EINTR) {
		snprintf(why, sizeof(why), "lost (%s)", strerror(errno));
		client_free(cl, why);
		return -1;
	}
	if (n > 0) {
		cl->tx += (uint64_t)n;
		keel_metric_add(p->mt[M_NET_TX], (uint64_t)n);
		event_base_gettimeofday_cached(keel_module_base(p->m),
					       &cl->last);
	}
	if (evbuffer_get_length(cl->out) > 0) {
		event_add(cl->wr, NULL);
	} else {
		event_del(cl->wr);
		if (p->removing) {
			client_free(cl, "closed (port removed)");
			return -1;
		}
	}
	if (evbuffer_get_length(cl->out) <= p->c->client_buffer / 2) {
		if (cl->lagging)
			keel_module_log_limit(p->m, &p->rl, KEEL_LOG_INFO,
					      "%s: client %s caught up",
					      p->name, cl->peer);
		cl->lagging = 0;
		port_resume_device(p);
	}
	return 0;
}

/* The client can take more. */
static void
client_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	client_flush(arg);
}

/*
 * Seconds without traffic after which a client is closed, and why; -1:
 * never. client-timeout, or after its end of file eof-linger when shorter.
 */
static double
client_limit(const struct client *cl, const char **why)
{
	const struct port_conf *c = cl->p->c;
	double limit = c->client_timeout > 0 ? c->client_timeout : -1;

	*why = "closed (client-timeout)";
	if (cl->eof && (limit < 0 || c->eof_linger < limit)) {
		*why = "closed (eof-linger)";
		limit = c->eof_linger;
	}
	return limit;
}

/* client-timeout or eof-linger: no traffic for that long. */
static void
client_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	struct timeval now, tv;
	const char *why;
	double idle, limit = client_limit(cl, &why);

	(void)fd;
	(void)what;
	if (limit < 0)
		return;
	event_base_gettimeofday_cached(keel_module_base(cl->p->m), &now);
	idle = (double)(now.tv_sec - cl->last.tv_sec) +
	       (double)(now.tv_usec - cl->last.tv_usec) / 1e6;
	if (idle + 0.001 >= limit) {
		client_free(cl, why);
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
	const char *why;
	double limit = client_limit(cl, &why);
	struct timeval tv;

	if (limit < 0) {
		evtimer_del(cl->idle);
		return;
	}
	tv = keel_timeval(limit);
	evtimer_add(cl->idle, &tv);
}

/* The client that ended its sending side first, or NULL. */
static struct client *
port_lingering(const struct port *p)
{
	struct client *cl;

	for (cl = p->clients; cl != NULL; cl = cl->next)
		if (cl->eof)
			return cl;
	return NULL;
}

/*
 * Out of descriptors: the lingering clients of every port go first. A peer
 * that closed altogether looks like one that half-closed until something
 * is written to it, so lingerers may be dead; they must not hold the
 * descriptors that new clients, control and the state file need.
 * @return how many were closed.
 */
static int
shed_lingering(struct keel_module *m)
{
	struct keel_instance *in = NULL;
	struct port *p;
	struct client *cl;
	int n = 0;

	while ((in = keel_instance_next(m, in)) != NULL) {
		p = keel_instance_data(in);
		while (p != NULL && (cl = port_lingering(p)) != NULL) {
			client_free(cl,
				    "closed (eof-linger: out of descriptors)");
			n++;
		}
	}
	return n;
}

/*
 * Dead peers: keepalive probes after 30 s idle, every 10 s, 3 of them.
 * The kernel's send buffer is fixed: left to autotuning, Linux grew it to
 * 2.7 MB towards a client that never read (3 MB sent at 1 MB/s, measured):
 * kernel memory any peer could pin, and such a client looked as if it had
 * room, so slow-client caught the others first. CLIENT_SNDBUF (doubled by
 * the kernel) keeps 1.3 MB/s in flight at 100 ms, more than 4 Mbaud.
 */
static void
client_sockopts(evutil_socket_t fd)
{
	int one = 1, idle = 30, intvl = 10, cnt = 3, sndbuf = CLIENT_SNDBUF;
	unsigned int user_timeout = 60000;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	/* Unacknowledged data for a minute: the peer is gone. */
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
		   sizeof(user_timeout));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- telnet and RFC 2217 ---- */

static const char parity_codes[] = "?NOEMS"; /* RFC 2217's 1 to 5 */
/* RFC 2217 flow control codes (outbound; inbound is 13 more) of enum
 * keel_serial_flow, and back. */
static const uint32_t flow_code[] = { 1, 3, 2 };
static const enum keel_serial_flow code_flow[] = {
	KEEL_FLOW_NONE, KEEL_FLOW_NONE, KEEL_FLOW_XONXOFF, KEEL_FLOW_RTSCTS
};

static struct keel_serial_line conf_line(const struct port_conf *c);

/* The line settings the device has now (the configured ones if closed). */
static struct keel_serial_line
port_line_now(const struct port *p)
{
	struct keel_serial_line line;

	if (keel_serial_get_line(p->dev, &line) == -1)
		line = p->line;
	return line;
}

/* New line settings from the controller; @p->line shows what the device
 * took. */
static void
port_client_line(struct port *p, const struct keel_serial_line *line)
{
	if (keel_serial_set_line(p->dev, line) == 0) {
		p->line = port_line_now(p);
		p->ctl_line = 1;
	}
}

/* RFC 2217 SET-CONTROL: apply @v, return the state it asks about. */
static uint32_t
port_control(struct port *p, uint32_t v, int may)
{
	struct keel_serial_line line = port_line_now(p);
	int lines = keel_serial_get_modem(p->dev);
	unsigned int want;

	if (lines == -1)
		lines = (int)p->wish;
	switch (v) {
	case 1: /* outbound flow: none, XON/XOFF, hardware */
	case 2:
	case 3:
	case 14: /* inbound: Linux has one setting for both ways */
	case 15:
	case 16:
		if (may) {
			line.flow = code_flow[(v > 13 ? v - 13 : v) & 3];
			port_client_line(p, &line);
			line = port_line_now(p);
		}
		/* fall through */
	case 0:
	case 13:
	case 17: /* DCD, DTR and DSR flow control: not on Linux */
	case 18:
	case 19:
		return flow_code[line.flow] + (v >= 13 ? 13 : 0);
	case 5:
	case 6:
		if (may && keel_serial_set_break(p->dev, v == 5) == 0)
			p->ctl_break = v == 5;
		/* fall through */
	case 4:
		return p->ctl_break ? 5 : 6;
	case 8:
	case 9:
	case 11:
	case 12:
		want = v <= 9 ? KEEL_MODEM_DTR : KEEL_MODEM_RTS;
		if (may) {
			/* ENOTTY (no modem lines): acknowledged as asked and
			 * counted by libkeel, so that clients waiting for the
			 * answer (pyserial) work with such ports. */
			p->wish = (p->wish & ~want) |
				  (v == 8 || v == 11 ? want : 0);
			keel_serial_set_modem(p->dev, want, p->wish);
			if (want == KEEL_MODEM_DTR)
				p->ctl_dtr = 1;
			else
				p->ctl_rts = 1;
			lines = keel_serial_get_modem(p->dev);
			if (lines == -1)
				lines = (int)p->wish;
		}
		return (lines & (int)want) ? (v <= 9 ? 8 : 11)
					   : (v <= 9 ? 9 : 12);
	case 7:
		return (lines & KEEL_MODEM_DTR) ? 8 : 9;
	case 10:
		return (lines & KEEL_MODEM_RTS) ? 11 : 12;
	default:
		return v;
	}
}

/*
 * A COM-PORT command from @arg (a client). The first client to set
 * something controls the port until it leaves; then the port goes back to
 * its configuration. The others' settings are answered with the port's
 * current values (RFC 2217: the value in effect), not applied.
 */
static int
tn_com_cb(void *arg, int cmd, uint32_t *value)
{
	struct client *cl = arg;
	struct port *p = cl->p;
	struct keel_serial_line line = port_line_now(p);
	uint32_t v = *value;
	/* Queries (0; SET-CONTROL's 0, 4, 7, 10, 13, 17-19) change nothing. */
	int set = cmd == CPO_PURGE_DATA ||
		  (v != 0 &&
		   (cmd != CPO_SET_CONTROL ||
		    (v != 4 && v != 7 && v != 10 && v != 13 && v < 17)));
	int may = set && (p->controller == NULL || p->controller == cl);

	if (may && p->controller == NULL && cmd != CPO_PURGE_DATA) {
		p->controller = cl;
		keel_module_log_limit(
			p->m, &p->rl, KEEL_LOG_INFO,
			"%s: client %s controls the port settings", p->name,
			cl->peer);
	}
	switch (cmd) {
	case CPO_SET_BAUDRATE:
		if (may && v >= 50 && v <= 4000000) {
			line.speed = v;
			port_client_line(p, &line);
		}
		*value = port_line_now(p).speed;
		return 0;
	case CPO_SET_DATASIZE:
		if (may && v >= 5 && v <= 8) {
			line.data_bits = (int)v;
			port_client_line(p, &line);
		}
		*value = (uint32_t)port_line_now(p).data_bits;
		return 0;
	case CPO_SET_PARITY:
		if (may && v >= 1 && v <= 5) {
			line.parity = parity_codes[v];
			port_client_line(p, &line);
		}
		line = port_line_now(p);
		*value = (uint32_t)(strchr(parity_codes, line.parity) -
				    parity_codes);
		return 0;
	case CPO_SET_STOPSIZE:
		/* 3 (1.5 stop bits) does not exist on Linux. */
		if (may && (v == 1 || v == 2)) {
			line.stop_bits = (int)v;
			port_client_line(p, &line);
		}
		*value = (uint32_t)port_line_now(p).stop_bits;
		return 0;
	case CPO_SET_CONTROL:
		*value = port_control(p, v, may);
		return 0;
	case CPO_PURGE_DATA:
		if (may && v >= 1 && v <= 3)
			keel_serial_purge(p->dev, (int)v); /* 1 rx, 2 tx */
		return 0;
	default:
		return -1;
	}
}

/* KEEL_MODEM_* to RFC 2217's modem state bits. */
static unsigned int
modem_bits(int lines)
{
	return ((lines & KEEL_MODEM_CTS) ? CPO_MS_CTS : 0) |
	       ((lines & KEEL_MODEM_DSR) ? CPO_MS_DSR : 0) |
	       ((lines & KEEL_MODEM_DCD) ? CPO_MS_DCD : 0) |
	       ((lines & KEEL_MODEM_RI) ? CPO_MS_RI : 0);
}

/*
 * The modem state for a client. A device without modem lines (a pty, some
 * USB CDC adapters) reports CTS, DSR and DCD on, as a three-wire cable
 * with the usual loop-backs would: nothing holds the data back.
 */
static unsigned int
tn_modem_cb(void *arg)
{
	struct client *cl = arg;
	int lines = keel_serial_get_modem(cl->p->dev);

	if (lines == -1)
		return errno == ENOTTY ? CPO_MS_CTS | CPO_MS_DSR | CPO_MS_DCD
				       : 0;
	return modem_bits(lines);
}

/* IAC BRK: a break of 250 ms, as from a telnet client's "send brk". */
static void
tn_brk_cb(void *arg)
{
	struct client *cl = arg;
	struct port *p = cl->p;

	if (p->controller == NULL || p->controller == cl)
		keel_serial_send_break(p->dev, 250);
}

static void
tn_suspend_cb(void *arg, int on)
{
	struct client *cl = arg;

	cl->suspended = on;
	if (!on && evbuffer_get_length(cl->out) > 0)
		event_add(cl->wr, NULL);
}

static const struct tn_ops tn_callbacks = {
	.com = tn_com_cb,
	.modem = tn_modem_cb,
	.brk = tn_brk_cb,
	.suspend = tn_suspend_cb,
};

/* The device's modem lines changed: tell the RFC 2217 clients. */
static void
port_modem_cb(struct keel_serial *s, unsigned int lines, unsigned int changed,
	      void *arg)
{
	struct port *p = arg;
	struct client *cl;

	(void)s;
	(void)changed;
	for (cl = p->clients; cl != NULL; cl = cl->next) {
		size_t before;

		if (cl->tn == NULL || !tn_com_port(cl->tn))
			continue;
		before = evbuffer_get_length(cl->out);
		tn_modem(cl->tn, modem_bits((int)lines), cl->out);
		if (evbuffer_get_length(cl->out) > before && !cl->suspended)
			event_add(cl->wr, NULL);
	}
}

/* One RFC 2217 client more or less: the modem lines are watched (a cost
 * on real UARTs only) while there is one. */
static void
port_com_client(struct port *p, int delta)
{
	p->com_clients += delta;
	if (p->com_clients == 1 && delta > 0)
		keel_serial_watch_modem(p->dev, port_modem_cb, p);
	else if (p->com_clients == 0)
		keel_serial_watch_modem(p->dev, NULL, NULL);
}

/* The controlling client left: back to the configured settings. */
static void
port_release(struct port *p, struct client *cl)
{
	p->controller = NULL;
	if (!p->ctl_line && !p->ctl_dtr && !p->ctl_rts && !p->ctl_break)
		return;
	if (p->ctl_line) {
		struct keel_serial_line line = conf_line(p->c);

		if (keel_serial_set_line(p->dev, &line) == 0)
			p->line = line;
	}
	if (p->ctl_dtr || p->ctl_rts) {
		p->wish = KEEL_MODEM_DTR | KEEL_MODEM_RTS;
		keel_serial_set_modem(p->dev, p->wish, p->wish);
	}
	if (p->ctl_break)
		keel_serial_set_break(p->dev, 0);
	p->ctl_line = p->ctl_dtr = p->ctl_rts = p->ctl_break = 0;
	keel_module_log_limit(
		p->m, &p->rl, KEEL_LOG_INFO,
		"%s: client %s left: settings back to the configuration",
		p->name, cl->peer);
}

/* Start the protocol of a new client; -1 when out of memory. */
static int
client_protocol(struct client *cl)
{
	struct port *p = cl->p;

	if (p->c->protocol == TN_RAW)
		return 0;
	if (p->signature == NULL &&
	    asprintf(&p->signature, "keeld serial %s", p->name) == -1) {
		p->signature = NULL;
		return -1;
	}
	cl->tn = malloc(sizeof(*cl->tn));
	cl->dec = evbuffer_new();
	if (cl->tn == NULL || cl->dec == NULL)
		return -1;
	tn_init(cl->tn, (enum tn_proto)p->c->protocol, &tn_callbacks, cl,
		p->signature, cl->out);
	event_add(cl->wr, NULL);
	if (cl->tn->proto == TN_RFC2217)
		port_com_client(p, 1);
	return 0;
}

/*
 * A client on @fd (taken in every case) whose address reads @peer, fed and
 * read like every other one; NULL when out of memory.
 */
static struct client *
client_new(struct port *p, evutil_socket_t fd, const char *peer)
{
	struct event_base *base = keel_module_base(p->m);
	struct client *cl, **tail;

	cl = calloc(1, sizeof(*cl));
	if (cl == NULL) {
		close(fd);
		return NULL;
	}
	snprintf(cl->peer, sizeof(cl->peer), "%s", peer);
	cl->p = p;
	client_sockopts(fd);
	cl->fd = fd;
	cl->rd = event_new(base, fd, EV_READ | EV_PERSIST, client_read_cb, cl);
	cl->wr =
		event_new(base, fd, EV_WRITE | EV_PERSIST, client_write_cb, cl);
	cl->in = evbuffer_new();
	cl->out = evbuffer_new();
	cl->idle = evtimer_new(base, client_idle_cb, cl);
	if (cl->rd == NULL || cl->wr == NULL || cl->in == NULL ||
	    cl->out == NULL || cl->idle == NULL || client_protocol(cl) == -1) {
		client_release(cl);
		return NULL;
	}
	if (!p->paused)
		event_add(cl->rd, NULL);
	event_base_gettimeofday_cached(base, &cl->last);
	cl->since = cl->last.tv_sec;
	client_arm_idle(cl);
	for (tail = &p->clients; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = cl;
	return cl;
}

/* The oldest accepted client (never the outbound connection), or NULL. */
static struct client *
port_oldest(const struct port *p)
{
	struct client *cl;

	for (cl = p->clients; cl != NULL && cl == port_out_cl(p); cl = cl->next)
		;
	return cl;
}

/* A new connection. */
static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
	  int salen, void *arg)
{
	struct port *p = arg;
	struct client *cl;
	char host[64], peer[80];

	(void)lev;
	if (p->out_of_fds) {
		p->out_of_fds = 0;
		keel_module_log(p->m, KEEL_LOG_INFO,
				"%s: accepting again (descriptors free)",
				p->name);
	}
	if (evutil_inet_ntop(
		    sa->sa_family,
		    sa->sa_family == AF_INET6
			    ? (void *)&((struct sockaddr_in6 *)sa)->sin6_addr
			    : (void *)&((struct sockaddr_in *)sa)->sin_addr,
		    host, sizeof(host)) == NULL)
		snprintf(host, sizeof(host), "?");
	/* Before anything is read, and before it can take a place. */
	if (!keel_allow_match(&p->allow, sa)) {
		keel_metric_add(p->mt[M_DENIED], 1);
		keel_module_log_limit(p->m, &p->rl, KEEL_LOG_NOTICE,
				      "%s: refusing %s: not in allow", p->name,
				      host);
		close(fd);
		return;
	}
	if (!keel_module_fd_ok(p->m, fd)) {
		/* This descriptor stays too high; the next one will not. */
		shed_lingering(p->m);
		keel_metric_add(p->mt[M_REFUSED], 1);
		keel_module_log_limit(
			p->m, &p->rl, KEEL_LOG_WARNING,
			"%s: refusing %s: out of descriptors (the last ones are kept for control and logs)",
			p->name, host);
		close(fd);
		return;
	}
	/* A client that only waits for the rest of an answer gives way. */
	if (p->nclients >= p->c->max_clients &&
	    (cl = port_lingering(p)) != NULL)
		client_free(cl, "closed (eof-linger: its place is taken)");
	if (p->nclients >= p->c->max_clients) {
		if (p->c->when_full == FULL_REFUSE || port_oldest(p) == NULL) {
			keel_metric_add(p->mt[M_REFUSED], 1);
			keel_module_log_limit(
				p->m, &p->rl, KEEL_LOG_INFO,
				"%s: refusing %s: max-clients (%ld) reached",
				p->name, host, p->c->max_clients);
			close(fd);
			return;
		}
		keel_metric_add(p->mt[M_KICKED], 1);
		client_free(port_oldest(p),
			    "kicked (max-clients reached, kick-oldest)");
	}
	snprintf(peer, sizeof(peer), "%.64s:%u", host,
		 ntohs(sa->sa_family == AF_INET6
			       ? ((struct sockaddr_in6 *)sa)->sin6_port
			       : ((struct sockaddr_in *)sa)->sin_port));
	cl = client_new(p, fd, peer);
	if (cl == NULL)
		return;
	memcpy(&cl->addr, sa,
	       (size_t)salen < sizeof(cl->addr) ? (size_t)salen
						: sizeof(cl->addr));
	p->nclients++;
	keel_metric_set(p->mt[M_CLIENTS], p->nclients);
	keel_metric_add(p->mt[M_ACCEPTED], 1);
	keel_module_log_limit(p->m, &p->rl, KEEL_LOG_INFO,
			      "%s: client %s connected (%ld of %ld)", p->name,
			      cl->peer, p->nclients, p->c->max_clients);
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

	if ((err == EMFILE || err == ENFILE) && shed_lingering(p->m) > 0)
		return; /* descriptors free again: accept on */
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		/* Once per episode: it ends when a client is accepted. */
		if (!p->out_of_fds)
			keel_module_log(
				p->m, KEEL_LOG_WARNING,
				"%s: accept: %s; pausing the listener (retried every %d ms, said once)",
				p->name, strerror(err),
				LISTEN_PAUSE_USEC / 1000);
		p->out_of_fds = 1;
		/* No timer to resume it: accept on rather than stop for good.
		 */
		if (port_timer_add(p, &p->lev_pause, listen_resume_cb, &tv) ==
		    0)
			evconnlistener_disable(lev);
		return;
	}
	keel_module_log_limit(p->m, &p->rl, KEEL_LOG_DEBUG, "%s: accept: %s",
			      p->name, strerror(err));
}

/* Attach a bound socket as the port's listener. */
static int
port_listen(struct port *p, int fd)
{
	if (fd == -1)
		return -1;
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

/* ---- connect: the outbound connection ---- */

/*
 * Split connect's HOST:PORT into @host and @port: HOST a name, an IPv4
 * address or [IPv6]; PORT 1 to 65535. -1 when it is not one.
 */
static int
connect_split(const char *text, char *host, size_t hostlen, char *port,
	      size_t portlen)
{
	const char *colon = strrchr(text, ':'), *h = text;
	size_t n, i;
	unsigned char v6[16];
	long num;

	if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) > 5 ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return -1;
	num = strtol(colon + 1, NULL, 10);
	if (num < 1 || num > 65535)
		return -1;
	n = (size_t)(colon - text);
	if (n > 0 && text[0] == '[') {
		if (n < 3 || text[n - 1] != ']')
			return -1;
		h = text + 1;
		n -= 2;
	}
	if (n == 0 || n >= hostlen || n > 253)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	if (h != text) {
		if (evutil_inet_pton(AF_INET6, host, v6) != 1)
			return -1;
	} else {
		for (i = 0; i < n; i++)
			if (strchr("abcdefghijklmnopqrstuvwxyz"
				   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_",
				   host[i]) == NULL)
				return -1;
	}
	snprintf(port, portlen, "%ld", num);
	return 0;
}

/* connect: HOST:PORT; the message names the option. */
static int
connect_check(const char *value, char *err, size_t errlen)
{
	char host[256], port[8];

	if (connect_split(value, host, sizeof(host), port, sizeof(port)) == 0)
		return 0;
	snprintf(err, errlen,
		 "connect '%s' is not HOST:PORT (a name, an IPv4 address or "
		 "[IPv6]; port 1 to 65535)",
		 value);
	return -1;
}

/*
 * The module's resolver, made at the first name to resolve: libevent's
 * evdns reads /etc/resolv.conf and /etc/hosts once and never blocks the
 * loop (getaddrinfo() would, for as long as a name server takes).
 */
static struct evdns_base *
serial_dns(struct keel_module *m)
{
	struct evdns_base *dns = keel_module_data(m);

	if (dns != NULL)
		return dns;
	dns = evdns_base_new(keel_module_base(m),
			     EVDNS_BASE_INITIALIZE_NAMESERVERS |
				     EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns == NULL)
		return NULL;
	/* 0x20 case randomisation: answers from resolvers that do not keep
	 * the case would be dropped. */
	evdns_base_set_option(dns, "randomize-case:", "0");
	keel_module_set_data(m, dns);
	return dns;
}

/*
 * A reload reads /etc/resolv.conf and /etc/hosts again, as a restart
 * would: name servers changed by DHCP or an admin are used from the next
 * SIGHUP on. Names being resolved are asked again, of the new servers.
 */
static void
serial_dns_reread(struct keel_module *m)
{
	struct evdns_base *dns = keel_module_data(m);

	if (dns == NULL)
		return;
	evdns_base_clear_nameservers_and_suspend(dns);
	evdns_base_search_clear(dns);
	evdns_base_clear_host_addresses(dns);
	evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
	evdns_base_set_option(dns, "randomize-case:", "0");
	evdns_base_resume(dns);
}

/* Free the resolver once every port is gone. */
static void
serial_stop(struct keel_module *m)
{
	struct evdns_base *dns = keel_module_data(m);

	if (dns != NULL)
		evdns_base_free(dns, 0);
	keel_module_set_data(m, NULL);
}

/* "ADDR:PORT", "[ADDR6]:PORT". */
static void
out_addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[64];
	const void *a;
	unsigned int port;

	if (sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)(const void *)sa)
				     ->sin6_port);
	} else {
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)(const void *)sa)
				     ->sin_port);
	}
	if (evutil_inet_ntop(sa->sa_family, a, host, sizeof(host)) == NULL)
		snprintf(host, sizeof(host), "?");
	snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
		 host, port);
}

/* The state of a port's connect (a port without one has none). */
static struct outbound *
out_new(void)
{
	struct outbound *o = calloc(1, sizeof(*o));

	if (o == NULL)
		return NULL;
	o->fd = -1;
	o->rl = (struct keel_ratelimit)KEEL_RATELIMIT(CONNECT_LOG_WINDOW,
						      CONNECT_LOG_BURST);
	return o;
}

/* Remember why the last attempt failed (status: connect_error). */
static void
out_note(struct port *p, const char *what, const char *why)
{
	snprintf(p->out->error, sizeof(p->out->error), "%s: %s", what, why);
	p->out->error_time = time(NULL);
}

/* Stop resolving or connecting (a connected client stays). */
static void
out_stop(struct port *p)
{
	struct outbound *o = p->out;

	if (o == NULL)
		return;
	if (o->req != NULL) {
		/* Its callback comes later with EVUTIL_EAI_CANCEL and must
		 * not touch the port, which may be freed by then. */
		evdns_getaddrinfo_cancel(o->req);
		keel_module_log(p->m, KEEL_LOG_DEBUG,
				"%s: resolving %s cancelled", p->name,
				p->c->connect);
	}
	o->req = NULL;
	if (o->ev != NULL)
		event_free(o->ev);
	o->ev = NULL;
	if (o->fd != -1)
		close(o->fd);
	o->fd = -1;
	if (o->ai != NULL)
		evutil_freeaddrinfo(o->ai);
	o->ai = o->next = NULL;
	port_timer_del(o->timer);
	if (o->cl == NULL)
		o->state = OUT_OFF;
}

/*
 * Wait before connecting again: min(retry-max, retry-min * 2^attempt)
 * +- 20 %, the device's back-off (one policy per port).
 */
static void
out_backoff(struct port *p)
{
	struct outbound *o = p->out;
	double delay = p->c->retry_min;
	unsigned int i;
	struct timeval tv;

	for (i = 0; i < o->attempt && delay < p->c->retry_max; i++)
		delay *= 2;
	if (delay > p->c->retry_max)
		delay = p->c->retry_max;
	delay *= 1.0 +
		 CONNECT_JITTER *
			 (2.0 * ((double)random() / (double)RAND_MAX) - 1.0);
	if (o->attempt < 64)
		o->attempt++;
	o->state = OUT_WAITING;
	tv = keel_timeval(delay);
	port_timer_add(p, &o->timer, out_timer_cb, &tv);
}

/* A round failed (the name, or every address): count, say, back off. */
static void
out_fail(struct port *p)
{
	keel_metric_add(p->mt[M_CONNECT_FAILURES], 1);
	keel_module_log_limit(p->m, &p->out->rl, KEEL_LOG_WARNING,
			      "%s: connect %s: %s (retrying with back-off)",
			      p->name, p->c->connect, p->out->error);
	out_stop(p);
	out_backoff(p);
}

/* The outbound connection is up: from now on it is a client. */
static void
out_connected(struct port *p, int fd)
{
	struct outbound *o = p->out;

	if (o->ai != NULL)
		evutil_freeaddrinfo(o->ai);
	o->ai = o->next = NULL;
	o->cl = client_new(p, fd, o->peer);
	if (o->cl == NULL) {
		out_note(p, o->peer, strerror(ENOMEM));
		out_fail(p);
		return;
	}
	o->state = OUT_CONNECTED;
	event_base_gettimeofday_cached(keel_module_base(p->m), &o->since);
	keel_metric_add(p->mt[M_CONNECTS], 1);
	keel_module_log(p->m, KEEL_LOG_INFO, "%s: connected to %s (%s)",
			p->name, p->c->connect, o->peer);
}

/*
 * Connect to the next address the name gave, without waiting: connect()
 * on a non-blocking socket, then writable or connect-timeout. Every
 * address is tried before the back-off.
 */
static void
out_try_next(struct port *p)
{
	struct outbound *o = p->out;
	struct evutil_addrinfo *a;
	struct timeval tv;
	int fd;

	while ((a = o->next) != NULL) {
		o->next = a->ai_next;
		out_addr_text(a->ai_addr, o->peer, sizeof(o->peer));
		fd = socket(a->ai_family,
			    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd != -1 && !keel_module_fd_ok(p->m, fd)) {
			close(fd);
			fd = -1;
			errno = EMFILE;
		}
		if (fd == -1) {
			out_note(p, o->peer, strerror(errno));
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
			out_connected(p, fd);
			return;
		}
		if (errno != EINPROGRESS) {
			out_note(p, o->peer, strerror(errno));
			close(fd);
			continue;
		}
		o->ev = event_new(keel_module_base(p->m), fd, EV_WRITE,
				  out_writable_cb, p);
		if (o->ev == NULL) {
			out_note(p, o->peer, strerror(ENOMEM));
			close(fd);
			continue;
		}
		o->fd = fd;
		o->state = OUT_CONNECTING;
		event_add(o->ev, NULL);
		tv = keel_timeval(p->c->connect_timeout);
		port_timer_add(p, &o->timer, out_timer_cb, &tv);
		return;
	}
	out_fail(p);
}

/* The connect() under way ended. */
static void
out_writable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct port *p = arg;
	struct outbound *o = p->out;
	int err = 0;
	socklen_t len = sizeof(err);

	(void)what;
	port_timer_del(o->timer);
	event_free(o->ev);
	o->ev = NULL;
	o->fd = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		out_note(p, o->peer, strerror(err));
		close(fd);
		out_try_next(p);
		return;
	}
	out_connected(p, fd);
}

/* The name resolved (or not). */
static void
out_resolved_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct port *p = arg;

	if (result == EVUTIL_EAI_CANCEL)
		return; /* out_stop(): the port may be gone */
	p->out->req = NULL;
	if (result != 0) {
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		out_note(p, "resolving", evutil_gai_strerror(result));
		out_fail(p);
		return;
	}
	p->out->ai = p->out->next = ai;
	out_try_next(p);
}

/* Resolve connect's name (a numeric address resolves at once), then
 * connect. */
static void
out_start(struct port *p)
{
	struct outbound *o;
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	struct evdns_base *dns;
	char host[256], port[8];

	out_stop(p);
	if (p->c->connect == NULL || p->removing || port_out_cl(p) != NULL)
		return;
	if (p->out == NULL && (p->out = out_new()) == NULL) {
		keel_module_log(p->m, KEEL_LOG_WARNING, "%s: connect %s: %s",
				p->name, p->c->connect, strerror(errno));
		return;
	}
	o = p->out;
	/* The option check passed: this cannot fail. */
	connect_split(p->c->connect, host, sizeof(host), port, sizeof(port));
	dns = serial_dns(p->m);
	if (dns == NULL) {
		out_note(p, "resolving", "cannot start the resolver");
		out_fail(p);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV;
	o->state = OUT_RESOLVING;
	snprintf(o->peer, sizeof(o->peer), "%s", p->c->connect);
	/* Answered at once (numeric, /etc/hosts): the callback ran already
	 * and NULL comes back. */
	req = evdns_getaddrinfo(dns, host, port, &hints, out_resolved_cb, p);
	if (req != NULL)
		o->req = req;
}

/* The outbound connection closed: connect again after the back-off (a
 * connection that lasted starts the back-off from retry-min again). */
static void
out_lost(struct port *p)
{
	struct outbound *o = p->out;
	struct timeval now;

	if (p->removing || p->c->connect == NULL) {
		o->state = OUT_OFF;
		return;
	}
	event_base_gettimeofday_cached(keel_module_base(p->m), &now);
	if ((double)(now.tv_sec - o->since.tv_sec) >= CONNECT_STABLE)
		o->attempt = 0;
	snprintf(o->error, sizeof(o->error), "%s: connection closed", o->peer);
	o->error_time = time(NULL);
	out_backoff(p);
}

/* connect-timeout, or the back-off is over. */
static void
out_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct port *p = arg;
	struct outbound *o = p->out;

	(void)fd;
	(void)what;
	if (o->state == OUT_CONNECTING) {
		event_free(o->ev);
		o->ev = NULL;
		close(o->fd);
		o->fd = -1;
		out_note(p, o->peer, "connect timed out");
		out_try_next(p);
	} else if (o->state == OUT_WAITING) {
		out_start(p);
	}
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
	long left = p->nclients + (port_out_cl(p) != NULL);

	trace_dump(p, "dev->net", in);
	for (cl = p->clients; cl != NULL; cl = cl->next) {
		size_t out = evbuffer_get_length(cl->out);

		if (!cl->lagging && out < least)
			least = out;
	}
	if (least != (size_t)-1 && least + len > p->c->client_buffer) {
		/* Nobody keeping up has room: deliver this, then wait. */
		keel_serial_set_reading(s, 0);
		p->dev_paused = 1;
		if (p->c->stall_timeout > 0 &&
		    (p->stall_timer == NULL ||
		     !evtimer_pending(p->stall_timer, NULL))) {
			struct timeval tv = keel_timeval(p->c->stall_timeout);

			port_timer_add(p, &p->stall_timer, port_stall_cb, &tv);
		}
	}
	for (cl = p->clients; cl != NULL; cl = next) {
		struct evbuffer *out = cl->out;

		next = cl->next;
		left--;
		if (cl->lagging ||
		    (!p->dev_paused &&
		     evbuffer_get_length(out) + len > p->c->client_buffer)) {
			if (p->c->slow == SLOW_DISCONNECT) {
				keel_metric_add(p->mt[M_SLOW_DISCONNECTS], 1);
				client_free(
					cl,
					"disconnected (too slow: client-buffer full)");
				continue;
			}
			if (!cl->lagging)
				keel_module_log_limit(
					p->m, &p->rl, KEEL_LOG_INFO,
					"%s: client %s too slow: dropping its data until it catches up",
					p->name, cl->peer);
			cl->lagging = 1;
			cl->dropped += len;
			keel_metric_add(p->mt[M_CLIENT_DROPS], len);
			continue;
		}
		/* The last one takes the chain itself: no copy for one client.
		 */
		if (cl->tn != NULL)
			tn_output(cl->tn, evbuffer_pullup(in, -1), len, out);
		else if (left == 0)
			evbuffer_add_buffer(out, in);
		else
			evbuffer_add(out, evbuffer_pullup(in, -1), len);
		/* Written at once when nothing was waiting (the socket is
		 * then almost always writable: one write, no epoll_ctl);
		 * otherwise the armed write event takes it along. */
		if (!event_pending(cl->wr, EV_WRITE, NULL))
			client_flush(cl);
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
		    evbuffer_get_length(cl->out) <= p->c->client_buffer / 2)
			continue;
		if (p->c->slow == SLOW_DISCONNECT) {
			keel_metric_add(p->mt[M_SLOW_DISCONNECTS], 1);
			client_free(cl,
				    "disconnected (stalled for stall-timeout)");
			continue;
		}
		keel_module_log_limit(
			p->m, &p->rl, KEEL_LOG_INFO,
			"%s: client %s stalled for %gs: dropping its data until it catches up",
			p->name, cl->peer, p->c->stall_timeout);
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
	port_timer_del(p->stall_timer);
	keel_serial_set_reading(p->dev, 1);
}

/* The device is back: clients may send again. */
static void
dev_opened_cb(struct keel_serial *s, void *arg)
{
	struct port *p = arg;

	(void)s;
	keel_metric_set(p->mt[M_UP], 1);
	port_pause_clients(p, 0);
}

/* The device went away: what clients send now is dropped and counted. */
static void
dev_closed_cb(struct keel_serial *s, const char *why, void *arg)
{
	struct port *p = arg;

	(void)s;
	(void)why;
	keel_metric_set(p->mt[M_UP], 0);
	port_pause_clients(p, 0);
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

/* The line settings a configuration asks for. */
static struct keel_serial_line
conf_line(const struct port_conf *c)
{
	struct keel_serial_line line = { 0 };
	char err[8];

	/* The format_check option check passed: this cannot fail. */
	keel_serial_parse_format(c->format, &line, err, sizeof(err));
	line.speed = (unsigned int)c->speed;
	line.flow = (enum keel_serial_flow)c->flow;
	line.local = c->local;
	line.hangup_on_close = c->hangup_on_close;
	return line;
}

/* Device parameters of a configuration. */
static struct keel_serial_params
conf_params(const struct port *p, const struct port_conf *c,
	    const struct keel_serial_line *line)
{
	struct keel_serial_params sp = {
		.name = p->name,
		.device = c->device,
		.line = *line,
		.open_timeout = c->open_timeout,
		.idle_timeout = c->idle_timeout,
		.retry_min = c->retry_min,
		.retry_max = c->retry_max,
		.lock = c->lock,
		.lock_dir = c->lock_dir,
		.out_max = c->device_buffer,
	};

	return sp;
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

/* Does the transaction under way change one of @names? */
static int
port_changed(const struct port *p, const char *const *names)
{
	for (; *names != NULL; names++)
		if (keel_instance_changed(p->in, *names))
			return 1;
	return 0;
}

/* Point the bound metrics at the counters of the current device. */
static void
port_bind(struct port *p)
{
	const char *stats = (const char *)keel_serial_stats(p->dev);
	int i;

	for (i = 0; i < M_COUNT; i++)
		if (port_metrics[i].stat >= 0)
			keel_metric_bind(
				p->mt[i],
				(const uint64_t *)(stats +
						   port_metrics[i].stat));
}

/* Free a port now. */
static void
port_free(struct port *p)
{
	out_stop(p);
	if (p->out != NULL && p->out->timer != NULL)
		event_free(p->out->timer);
	free(p->out);
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
	if (p->dev != NULL)
		keel_serial_free(p->dev);
	keel_allow_free(&p->allow);
	free(p->signature);
	free(p);
}

/* Free a removed port and tell the framework it is gone. */
static void
port_finish(struct port *p)
{
	struct keel_instance *in = p->in;

	keel_module_log(p->m, KEEL_LOG_INFO, "%s: closed", p->name);
	keel_instance_set_data(in, NULL);
	port_free(p);
	keel_instance_removed(in);
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
	/* Deferred: we may be inside one of the port's callbacks. The timer
	 * exists: port_remove made it or finished the port. */
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
	struct timeval tv = keel_timeval(SERIAL_DRAIN_MAX);
	struct client *cl;

	if (p->removing)
		return;
	if (port_timer_add(p, &p->drain_timer, port_drain_cb, &tv) == -1) {
		port_finish(p); /* as KEEL_REMOVE_NOW: logged */
		return;
	}
	p->removing = 1;
	out_stop(p); /* the connection, if up, drains as any client */
	if (p->lev != NULL)
		evconnlistener_free(p->lev);
	p->lev = NULL;
	port_timer_del(p->lev_pause);
	for (cl = p->clients; cl != NULL; cl = cl->next)
		event_del(cl->rd);
	keel_module_log(p->m, KEEL_LOG_INFO, "%s: draining", p->name);
	port_maybe_done(p);
}

/* A new port listening on @fd (taken in every case), its device opening. */
static struct port *
port_new(struct keel_instance *in, const struct port_conf *c, int fd)
{
	struct port *p = calloc(1, sizeof(*p));
	struct keel_serial_params sp;
	struct event_base *base;
	char what[300];
	int i;

	if (p == NULL) {
		if (fd != -1)
			close(fd);
		return NULL;
	}
	p->in = in;
	p->rl = (struct keel_ratelimit)KEEL_RATELIMIT(CLIENT_LOG_WINDOW,
						      CLIENT_LOG_BURST);
	p->m = keel_instance_module(in);
	p->name = keel_instance_name(in);
	p->c = c;
	p->line = conf_line(c);
	p->wish = KEEL_MODEM_DTR | KEEL_MODEM_RTS;
	base = keel_module_base(p->m);
	sp = conf_params(p, c, &p->line);
	if ((c->listen.text != NULL && port_listen(p, fd) == -1) ||
	    (p->dev = keel_serial_new(base, &sp, &dev_callbacks, p)) == NULL) {
		port_free(p);
		return NULL;
	}
	/* Last: an instance whose port failed registers them on a retry. */
	for (i = 0; i < M_COUNT; i++)
		p->mt[i] = keel_metric_new(p->m, in, port_metrics[i].type,
					   port_metrics[i].name,
					   port_metrics[i].help, NULL, NULL);
	port_bind(p);
	snprintf(what, sizeof(what), "%s%s%s%s",
		 c->listen.text != NULL ? c->listen.text : "",
		 c->listen.text != NULL && c->connect != NULL ? " and " : "",
		 c->connect != NULL ? "connect " : "",
		 c->connect != NULL ? c->connect : "");
	keel_module_log(p->m, KEEL_LOG_INFO, "%s: %s <-> %s", p->name,
			c->device, what);
	out_start(p);
	return p;
}

/* Apply a changed configuration to a running port, listening on @fd when
 * not -1. */
static void
port_update(struct port *p, const struct port_conf *c, int fd)
{
	static const char *const device_opts[] = { "device", "lock", "lock-dir",
						   NULL };
	static const char *const timing_opts[] = {
		"open-timeout", "idle-timeout",  "retry-min",
		"retry-max",    "device-buffer", NULL
	};
	struct evconnlistener *old = p->lev;
	struct keel_serial_line line = conf_line(c);
	struct keel_serial_params sp = conf_params(p, c, &line);
	struct keel_serial *dev;
	struct client *cl;

	if (fd != -1 && port_listen(p, fd) == -1) {
		p->lev = old;
	} else if (fd != -1) {
		if (old != NULL)
			evconnlistener_free(old);
		keel_module_log(p->m, KEEL_LOG_INFO,
				"%s: now listening on %s (clients kept)",
				p->name, c->listen.text);
	} else if (c->listen.text == NULL && old != NULL) {
		evconnlistener_free(old);
		p->lev = NULL;
		keel_module_log(p->m, KEEL_LOG_INFO,
				"%s: no longer listening (clients kept)",
				p->name);
	}
	/* A new target: the old connection goes, whatever its state. */
	if (keel_instance_changed(p->in, "connect") && p->out != NULL) {
		if (p->out->cl != NULL)
			client_free(p->out->cl, "closed (connect changed)");
		out_stop(p);
		p->out->attempt = 0;
		p->out->error[0] = '\0';
		p->out->error_time = 0;
	}
	if (port_changed(p, device_opts)) {
		dev = keel_serial_new(keel_module_base(p->m), &sp,
				      &dev_callbacks, p);
		if (dev != NULL) {
			keel_module_log(p->m, KEEL_LOG_INFO,
					"%s: device now %s", p->name,
					c->device);
			keel_serial_free(p->dev);
			p->dev = dev;
			p->line = line;
			/* A new device starts from the configuration; DTR and
			 * RTS as last asked. */
			p->ctl_line = p->ctl_break = 0;
			keel_serial_set_modem(
				dev, KEEL_MODEM_DTR | KEEL_MODEM_RTS, p->wish);
			if (p->com_clients > 0)
				keel_serial_watch_modem(dev, port_modem_cb, p);
			port_bind(p);
			port_pause_clients(p, 0);
		}
	} else {
		/* Refused by the device: the port keeps (and shows) the old. */
		if (!line_equal(&p->line, &line) &&
		    keel_serial_set_line(p->dev, &line) == 0)
			p->line = line;
		/* Unchanged values must not restart the countdowns. */
		if (port_changed(p, timing_opts))
			keel_serial_set_timing(p->dev, &sp);
	}
	p->c = c;
	if (keel_instance_changed(p->in, "connect"))
		out_start(p);
	if (keel_instance_changed(p->in, "client-timeout") ||
	    keel_instance_changed(p->in, "eof-linger"))
		for (cl = p->clients; cl != NULL; cl = cl->next)
			client_arm_idle(cl);
}

/* ---- instance hooks ---- */

/* A bound, listening, non-blocking socket; -1 with errno. */
static int
listen_socket(const struct keel_hostport *hp)
{
	int fd, one = 1;

	fd = socket(hp->addr.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (hp->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&hp->addr, hp->len) == -1 ||
	    listen(fd, 64) == -1) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/*
 * A listening socket for @c: a copy of another running port's when it
 * listens there (a section renamed, an address moved; binding a second one
 * would fail), else a new one. -1 with errno.
 */
static int
listen_take(struct keel_module *m, const struct port_conf *c)
{
	struct keel_instance *o = NULL;
	struct port *q;
	int fd;

	while ((o = keel_instance_next(m, o)) != NULL) {
		q = keel_instance_data(o);
		if (q != NULL && q->lev != NULL &&
		    strcmp(q->c->listen.text, c->listen.text) == 0 &&
		    (fd = dup(evconnlistener_get_fd(q->lev))) != -1)
			return fd;
	}
	return listen_socket(&c->listen);
}

/* What prepare acquired for commit (or abort). */
struct plan {
	int fd;        /* bound to a new listen address, or -1 */
	int new_allow; /* allow changed: take this */
	struct keel_allow allow;
};

/* Check what the options cannot say alone; parse a new allow list; bind a
 * new listen address now, so that one in use rejects the transaction. */
static int
serial_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	const struct port_conf *c = conf;
	struct plan *pl;

	if (c->listen.text == NULL && c->connect == NULL) {
		keel_instance_error(in, NULL,
				    "listen or connect is required (or both)");
		return -1;
	}
	if (c->retry_max < c->retry_min) {
		keel_instance_error(in, "retry-max",
				    "retry-max %g is less than retry-min %g",
				    c->retry_max, c->retry_min);
		return -1;
	}
	if (flags & KEEL_PREPARE_CHECK)
		return 0;
	if ((pl = calloc(1, sizeof(*pl))) == NULL) {
		keel_instance_error(in, NULL, "out of memory");
		return -1;
	}
	pl->fd = -1;
	keel_instance_set_plan(in, pl);
	if (keel_instance_changed(in, "allow")) {
		char err[300];

		/* Checked already by keel_allow_check: only memory can fail. */
		if (keel_allow_parse(&pl->allow, &c->allow, err, sizeof(err)) ==
		    -1) {
			keel_instance_error(in, "allow", "%s", err);
			return -1;
		}
		pl->new_allow = 1;
	}
	if (c->listen.text == NULL || (keel_instance_data(in) != NULL &&
				       !keel_instance_changed(in, "listen")))
		return 0;
	pl->fd = listen_take(keel_instance_module(in), c);
	if (pl->fd == -1) {
		keel_instance_error(in, "listen", "listen %s: %s",
				    c->listen.text, strerror(errno));
		return -1;
	}
	return 0;
}

/* Take the networks of a new allow list; clients outside it are closed. */
static void
port_allow(struct port *p, struct plan *pl)
{
	struct client *cl, *next;

	keel_allow_free(&p->allow);
	p->allow = pl->allow;
	memset(&pl->allow, 0, sizeof(pl->allow));
	for (cl = p->clients; cl != NULL; cl = next) {
		next = cl->next;
		/* allow is about who may connect in: not our own connection. */
		if (cl == port_out_cl(p) ||
		    keel_allow_match(&p->allow,
				     (const struct sockaddr *)&cl->addr))
			continue;
		keel_metric_add(p->mt[M_DENIED], 1);
		client_free(cl, "closed (no longer in allow)");
	}
}

/* Create the port, or apply the changes to it. */
static void
serial_commit(struct keel_instance *in, const void *conf)
{
	struct port *p = keel_instance_data(in);
	struct plan *pl = keel_instance_plan(in);

	if (p != NULL) {
		port_update(p, conf, pl->fd);
	} else if ((p = port_new(in, conf, pl->fd)) == NULL) {
		keel_instance_log(in, KEEL_LOG_ERR,
				  "cannot create the port: %s",
				  strerror(errno));
	}
	keel_instance_set_data(in, p);
	if (p != NULL && pl->new_allow)
		port_allow(p, pl);
	keel_allow_free(&pl->allow);
	free(pl);
}

/* Close the socket prepare bound, free what it parsed. */
static void
serial_abort(struct keel_instance *in)
{
	struct plan *pl = keel_instance_plan(in);

	if (pl == NULL)
		return;
	if (pl->fd != -1)
		close(pl->fd);
	keel_allow_free(&pl->allow);
	free(pl);
}

/* Drain, then tell the framework; or free everything now. */
static void
serial_remove(struct keel_instance *in, unsigned int flags)
{
	struct port *p = keel_instance_data(in);

	if (p == NULL) {
		keel_instance_removed(in);
	} else if (flags & KEEL_REMOVE_NOW) {
		port_finish(p);
	} else {
		port_remove(p);
	}
}

static const char *const flow_words[] = { "none", "rtscts", "xonxoff", NULL };
static const char *const when_full_words[] = { "refuse", "kick-oldest", NULL };
static const char *const slow_words[] = { "drop", "disconnect", NULL };
static const char *const protocol_words[] = { "raw", "telnet", "rfc2217",
					      NULL };

/* "DTR RTS CTS" for the KEEL_MODEM_* bits on in @lines. */
static const char *
modem_text(int lines, char *buf, size_t len)
{
	static const char *const names[] = { "DTR", "RTS", "CTS",
					     "DSR", "DCD", "RI" };
	size_t i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < 6; i++)
		if (lines & (1 << i))
			n += (size_t)snprintf(buf + n, len - n, "%s%s",
					      n > 0 ? " " : "", names[i]);
	return buf;
}

/* The port's settings, state and clients. */
static void
serial_status(struct keel_instance *in, struct keel_status *st)
{
	struct port *p = keel_instance_data(in);
	struct client *cl;
	char buf[32];
	time_t when;
	int lines;

	if (p == NULL) {
		keel_status_str(st, "state", "failed");
		return;
	}
	keel_status_str(st, "state", keel_serial_state(p->dev));
	keel_status_str(st, "error", keel_serial_error(p->dev, &when));
	keel_status_time(st, "error_time", when);
	keel_status_str(st, "device", p->c->device);
	keel_status_uint(st, "speed", p->line.speed);
	keel_status_str(st, "format",
			keel_serial_format_name(&p->line, buf, sizeof(buf)));
	keel_status_str(st, "flow", flow_words[p->line.flow]);
	/* Who set them: a controlling RFC 2217 client, or the file. */
	keel_status_str(st, "line_set_by",
			p->ctl_line && p->controller != NULL
				? p->controller->peer
				: "configuration");
	keel_status_str(st, "protocol", protocol_words[p->c->protocol]);
	lines = keel_serial_get_modem(p->dev);
	if (lines == -1 && errno == ENOTTY)
		keel_status_str(st, "modem", "none (no modem lines)");
	else if (lines == -1)
		keel_status_str(st, "modem", "unknown (not open)");
	else
		keel_status_str(st, "modem",
				modem_text(lines, buf, sizeof(buf)));
	keel_status_str(st, "dtr_rts_asked",
			modem_text((int)p->wish, buf, sizeof(buf)));
	keel_status_bool(st, "break", p->ctl_break);
	keel_status_str(st, "controller",
			p->controller != NULL ? p->controller->peer : "");
	keel_status_str(st, "listen", p->c->listen.text);
	if (p->c->connect != NULL && p->out != NULL) {
		keel_status_str(st, "connect", p->c->connect);
		keel_status_str(st, "connect_state",
				out_state_words[p->out->state]);
		keel_status_str(st, "connect_peer", p->out->peer);
		keel_status_str(st, "connect_error", p->out->error);
		keel_status_time(st, "connect_error_time", p->out->error_time);
	}
	keel_status_int(st, "max_clients", p->c->max_clients);
	keel_status_uint(st, "device_queue", keel_serial_output_length(p->dev));
	keel_status_time(st, "last_rx", keel_serial_last_rx(p->dev));
	keel_status_push_list(st, "peers");
	for (cl = p->clients; cl != NULL; cl = cl->next) {
		keel_status_push(st, NULL);
		keel_status_str(st, "peer", cl->peer);
		keel_status_time(st, "since", cl->since);
		keel_status_uint(st, "rx_bytes", cl->rx);
		keel_status_uint(st, "tx_bytes", cl->tx);
		keel_status_uint(st, "dropped_bytes", cl->dropped);
		keel_status_uint(st, "queue", evbuffer_get_length(cl->out));
		keel_status_bool(st, "lagging", cl->lagging);
		keel_status_bool(st, "eof", cl->eof);
		if (cl->tn != NULL) {
			keel_status_bool(st, "binary_in", tn_binary(cl->tn, 0));
			keel_status_bool(st, "binary_out",
					 tn_binary(cl->tn, 1));
			keel_status_bool(st, "com_port", tn_com_port(cl->tn));
			keel_status_uint(st, "com_port_commands",
					 cl->tn->commands);
			keel_status_bool(st, "suspended", cl->suspended);
		}
		keel_status_bool(st, "outbound", cl == port_out_cl(p));
		keel_status_pop(st);
	}
	keel_status_pop(st);
}

/*
 * SIGALRM, keeld -s wake: every waiting device retries now. A reload
 * applied: the resolver reads its files again.
 */
static void
serial_event(struct keel_module *m, enum keel_event ev)
{
	struct keel_instance *in = NULL;
	struct port *p;

	if (ev == KEEL_EVENT_RELOAD) {
		serial_dns_reread(m);
		return;
	}
	if (ev != KEEL_EVENT_WAKE)
		return;
	while ((in = keel_instance_next(m, in)) != NULL) {
		if ((p = keel_instance_data(in)) == NULL)
			continue;
		keel_serial_wake(p->dev);
		if (p->out != NULL && p->out->state == OUT_WAITING) {
			struct timeval now = { 0, 0 };

			port_timer_add(p, &p->out->timer, out_timer_cb, &now);
		}
	}
}

/* format: DATA PARITY STOP, such as 8N1; the message names the option. */
static int
format_check(const char *value, char *err, size_t errlen)
{
	struct keel_serial_line line;

	return keel_serial_parse_format(value, &line, err, errlen);
}

#define PC struct port_conf

static const struct keel_option serial_options[] = {
	KEEL_OPTION("device", KEEL_OPT_STRING, PC, device, NULL,
		    KEEL_OPT_REQUIRED | KEEL_OPT_NONEMPTY | KEEL_OPT_UNIQUE),
	KEEL_OPTION_RANGE("speed", KEEL_OPT_INT, PC, speed, "9600", 50, 4000000,
			  0),
	KEEL_OPTION_CHECK("format", KEEL_OPT_STRING, PC, format, "8N1",
			  format_check, 0),
	KEEL_OPTION_ENUM("flow", PC, flow, "none", flow_words, 0),
	KEEL_OPTION("local", KEEL_OPT_BOOL, PC, local, "true", 0),
	KEEL_OPTION("hangup-on-close", KEEL_OPT_BOOL, PC, hangup_on_close,
		    "false", 0),
	KEEL_OPTION_RANGE("open-timeout", KEEL_OPT_SECONDS, PC, open_timeout,
			  "2", 0.001, 600, 0),
	KEEL_OPTION_RANGE("idle-timeout", KEEL_OPT_SECONDS, PC, idle_timeout,
			  "0", 0, 86400, 0),
	KEEL_OPTION_RANGE("retry-min", KEEL_OPT_SECONDS, PC, retry_min, "0.1",
			  0.001, 86400, 0),
	KEEL_OPTION_RANGE("retry-max", KEEL_OPT_SECONDS, PC, retry_max, "30",
			  0.001, 86400, 0),
	KEEL_OPTION("lock", KEEL_OPT_BOOL, PC, lock, "true", 0),
	KEEL_OPTION("lock-dir", KEEL_OPT_STRING, PC, lock_dir, "/run/lock", 0),
	KEEL_OPTION("listen", KEEL_OPT_HOSTPORT, PC, listen, NULL,
		    KEEL_OPT_UNIQUE),
	{ .name = "allow",
	  .type = KEEL_OPT_LIST,
	  .flags = KEEL_OPT_NONEMPTY | KEEL_OPT_BOUNDED,
	  .offset = offsetof(PC, allow),
	  .size = KEEL_MEMBER_SIZE(PC, allow),
	  .min = 0,
	  .max = 256,
	  .check = keel_allow_check },
	KEEL_OPTION_CHECK("connect", KEEL_OPT_STRING, PC, connect, NULL,
			  connect_check, 0),
	KEEL_OPTION_RANGE("connect-timeout", KEEL_OPT_SECONDS, PC,
			  connect_timeout, "10", 0.001, 600, 0),
	KEEL_OPTION_RANGE("max-clients", KEEL_OPT_INT, PC, max_clients, "4", 1,
			  65536, 0),
	KEEL_OPTION_ENUM("when-full", PC, when_full, "refuse", when_full_words,
			 0),
	KEEL_OPTION_RANGE("client-timeout", KEEL_OPT_SECONDS, PC,
			  client_timeout, "0", 0, 86400, 0),
	KEEL_OPTION_RANGE("stall-timeout", KEEL_OPT_SECONDS, PC, stall_timeout,
			  "10", 0, 86400, 0),
	KEEL_OPTION_RANGE("eof-linger", KEEL_OPT_SECONDS, PC, eof_linger, "5",
			  0, 86400, 0),
	KEEL_OPTION_RANGE("client-buffer", KEEL_OPT_SIZE, PC, client_buffer,
			  "262144", 4096, 64 * MIB, 0),
	KEEL_OPTION_ENUM("slow-client", PC, slow, "drop", slow_words, 0),
	KEEL_OPTION_RANGE("device-buffer", KEEL_OPT_SIZE, PC, device_buffer,
			  "65536", 1024, 64 * MIB, 0),
	KEEL_OPTION("trace", KEEL_OPT_BOOL, PC, trace, "false", 0),
	KEEL_OPTION_ENUM("protocol", PC, protocol, "raw", protocol_words, 0),
	KEEL_OPTIONS_END,
};

#undef PC

KEEL_MODULE_DESCRIPTOR = {
	KEEL_MODULE_HEAD, /* abi and size */
	.name = "serial",
	.version = "2.0.0",
	.section = KEEL_SECTION_TITLED_DEFAULTS,
	.options = serial_options,
	.conf_size = sizeof(struct port_conf),
	.label = "port",
	.events = KEEL_EVENT_WAKE | KEEL_EVENT_RELOAD,
	.stop = serial_stop,
	.prepare = serial_prepare,
	.commit = serial_commit,
	.abort = serial_abort,
	.remove = serial_remove,
	.status = serial_status,
	.event = serial_event,
};
