/* SPDX-License-Identifier: ISC */
/*
 * http: the daemon's status as JSON, its metrics for Prometheus, health
 * checks and a status page, on libevent's evhttp. libkeel renders (JSON,
 * Prometheus text); this module serves, limits and drains.
 *
 * evhttp 2.1 knows no connection limit and no whole-request deadline (its
 * timeout restarts on every byte): each connection is adopted right after
 * evhttp accepted it (a bufferevent of ours, evhttp_set_bevcb), counted,
 * given a deadline, and untracked in its close callback. See
 * docs/design-http.md and TRAPS.md.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <jansson.h>
#include <keel/keel.h>
#include <keel/net.h>
#include <keel/render.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_LISTEN_BACKLOG 128
#define HTTP_PAUSE_USEC     200000 /* a listener out of descriptors rests */
#define HTTP_LOG_WINDOW     10.0
#define HTTP_LOG_BURST      10
/*
 * The kernel's send buffer of a connection. Linux sizes it to a megabyte
 * or more on loopback: a scraper that stops reading would pin that much
 * kernel memory per connection, and a response would count as sent (and
 * its connection as idle, closed at once by a drain) while still unread.
 * What does not fit waits in the response's evbuffer: in flight.
 */
#define HTTP_SNDBUF 65536
/*
 * Rendering /status, /metrics or the page builds and frees a tree of small
 * pieces (jansson's, the series list), and evhttp frees the request and
 * its buffers after the response is sent: glibc keeps all of it below the
 * 1 MiB trim threshold that lib/keel.c sets for streaming ports, about
 * 200 kB at 16 ports (measured; issue 8 asks under 200 KB for the whole
 * module). That is the working set of the next scrape: trimming after
 * each one cost 230 us more a scrape (+24 %, the pages faulted in again;
 * measured at 1 scrape/s). So the pages go back once rendered answers
 * (this large) stopped for HTTP_TRIM_QUIET seconds: never while scraped
 * every second, once between Prometheus' default 15 s scrapes, and for
 * good when nobody asks.
 */
#define HTTP_TRIM_SIZE  4096
#define HTTP_TRIM_QUIET 2

/* The page, from page.html by embed.cmake: its bytes, where the table goes
 * (the marker's span) and the Content-Security-Policy that fits it. */
extern const unsigned char http_page[];
extern const unsigned long http_page_len;
extern const unsigned long http_page_table_at;
extern const unsigned long http_page_table_end;
extern const char http_page_csp[];

/* The section, as the framework fills it. */
struct http_conf {
	struct keel_list listen;
	struct keel_list allow;
	struct keel_list ready_requires;
	long max_connections;
	double idle_timeout;
	double request_timeout;
	size_t max_header_size;
};

struct http;

/* One listening socket. */
struct listener {
	struct listener *next;
	struct http *h;
	char *text; /* the address as written */
	int fd;     /* ours until evhttp takes it */
	struct evhttp_bound_socket *bound;
	struct event *resume;
};

/* One connection evhttp accepted. */
struct conn {
	struct conn *next;
	struct http *h;
	struct evhttp_connection *evcon;
	struct event *deadline; /* whole-request deadline */
	int busy;               /* responses being written */
	int trim;               /* a rendered response: trim when sent */
};

struct http {
	struct keel_instance *in;
	struct keel_module *m;
	const struct http_conf *c;
	struct keel_ratelimit rl;
	struct evhttp *eh;
	struct listener *listeners;
	struct listener *staged; /* bound by prepare, taken by commit */
	struct keel_allow allow;
	struct keel_allow staged_allow; /* parsed by prepare, taken by commit */
	struct conn *conns;
	long nconns; /* adopted and waiting to be */
	struct bufferevent **pending;
	size_t npending, pending_cap;
	struct event *adopt_ev, *drain_ev, *trim_ev;
	int paused;   /* listeners disabled at max-connections */
	int draining; /* SIGTERM: /readyz 503, listeners closed */
	int removing;
	int unknown_warned; /* ready-requires named an unknown port */
	struct keel_metric *requests, *forbidden, *limited, *connections;
	struct http *next_server; /* http_servers */
};

/*
 * Every server of the process. evhttp gives its listeners' error callback
 * its own argument (the struct evhttp): the listener is found from there.
 */
static struct http *http_servers;

/* The listener of ours behind @lev, or NULL. */
static struct listener *
listener_of(const struct evhttp *eh, const struct evconnlistener *lev)
{
	struct http *h;
	struct listener *l;

	for (h = http_servers; h != NULL; h = h->next_server)
		if (h->eh == eh)
			for (l = h->listeners; l != NULL; l = l->next)
				if (l->bound != NULL &&
				    evhttp_bound_socket_get_listener(
					    l->bound) == lev)
					return l;
	return NULL;
}

/* ---- listening sockets ---- */

/* A listening socket on @text; -1 with the reason in @err. */
static int
http_listen_fd(const char *text, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	if (keel_hostport_parse(text, &ss, &len) == -1) {
		snprintf(err, errlen, "'%s' is not a numeric HOST:PORT", text);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd == -1) {
		snprintf(err, errlen, "socket for %s: %s", text,
			 strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) == -1 ||
	    listen(fd, HTTP_LISTEN_BACKLOG) == -1) {
		snprintf(err, errlen, "cannot listen on %s: %s", text,
			 strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Free a list of listeners (closing what evhttp does not own). */
static void
listeners_free(struct http *h, struct listener *l)
{
	struct listener *next;

	for (; l != NULL; l = next) {
		next = l->next;
		if (l->bound != NULL && h->eh != NULL)
			evhttp_del_accept_socket(h->eh, l->bound);
		else if (l->fd != -1)
			close(l->fd);
		if (l->resume != NULL)
			event_free(l->resume);
		free(l->text);
		free(l);
	}
}

/* The listener under @text in @l, or NULL. */
static struct listener *
listener_find(struct listener *l, const char *text)
{
	for (; l != NULL; l = l->next)
		if (strcmp(l->text, text) == 0)
			return l;
	return NULL;
}

/* A paused listener (EMFILE) accepts again. */
static void
listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	if (l->bound != NULL && !l->h->paused && !l->h->draining)
		evconnlistener_enable(
			evhttp_bound_socket_get_listener(l->bound));
}

/*
 * accept() failed. Out of descriptors the socket stays readable: rest
 * instead of spinning (TRAPS.md), and say so once a while.
 */
static void
listener_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listener *l = listener_of(arg, lev);
	struct timeval tv = { 0, HTTP_PAUSE_USEC };
	int err = EVUTIL_SOCKET_ERROR();

	evconnlistener_disable(lev);
	if (l == NULL)
		return; /* not ours: cannot happen */
	keel_module_log_limit(l->h->m, &l->h->rl, KEEL_LOG_WARNING,
			      "accept on %s: %s (pausing 200 ms)", l->text,
			      evutil_socket_error_to_string(err));
	keel_metric_add(l->h->limited, 1);
	evtimer_add(l->resume, &tv);
}

/* Hand a prepared socket to evhttp. */
static void
listener_start(struct http *h, struct listener *l)
{
	struct evconnlistener *lev;

	l->h = h;
	l->bound = evhttp_accept_socket_with_handle(h->eh, l->fd);
	if (l->bound == NULL) {
		keel_instance_log(h->in, KEEL_LOG_ERR,
				  "cannot serve on %s: out of memory", l->text);
		return;
	}
	l->fd = -1; /* evhttp's now */
	lev = evhttp_bound_socket_get_listener(l->bound);
	evconnlistener_set_error_cb(lev, listener_error_cb);
	if (h->paused || h->draining)
		evconnlistener_disable(lev);
}

/* Enable or disable every listener (max-connections). */
static void
listeners_pause(struct http *h, int pause)
{
	struct listener *l;

	if (h->paused == pause)
		return;
	h->paused = pause;
	for (l = h->listeners; l != NULL; l = l->next) {
		if (l->bound == NULL)
			continue;
		if (pause || h->draining)
			evconnlistener_disable(
				evhttp_bound_socket_get_listener(l->bound));
		else
			evconnlistener_enable(
				evhttp_bound_socket_get_listener(l->bound));
	}
}

/* ---- connections ---- */

static void http_drain_step(struct http *h);
static void http_free(struct http *h);

/* evhttp freed a connection. */
static void
conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg, **pp;
	struct http *h = c->h;

	(void)evcon;
	for (pp = &h->conns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	event_free(c->deadline);
	free(c);
	h->nconns--;
	keel_metric_set(h->connections, h->nconns);
	if (h->nconns < h->c->max_connections)
		listeners_pause(h, 0);
	if (h->draining)
		event_active(h->drain_ev, EV_TIMEOUT, 1);
}

/* The whole-request deadline (or the drain) ends a connection. */
static void
conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->busy > 0)
		return; /* evhttp's own timeout guards a response */
	keel_metric_add(c->h->limited, 1);
	evhttp_connection_free(c->evcon); /* conn_closed_cb frees c */
}

/*
 * (Re)start a connection's deadline: request-timeout from accept; after a
 * response, idle-timeout + request-timeout, since the wait for the next
 * request on a kept-alive connection is idle time (evhttp's idle-timeout
 * closes a silent one) and only a trickling one meets this deadline.
 */
static void
conn_arm(struct conn *c, int after_response)
{
	const struct http_conf *hc = c->h->c;
	struct timeval tv = keel_timeval(
		hc->request_timeout + (after_response ? hc->idle_timeout : 0));

	evtimer_add(c->deadline, &tv);
}

/* The connection of a request, or NULL. */
static struct conn *
conn_of(struct http *h, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct conn *c;

	for (c = h->conns; c != NULL; c = c->next)
		if (c->evcon == evcon)
			return c;
	return NULL;
}

/*
 * evhttp accepted a connection and asks for its bufferevent: count it now
 * (at the cap the listeners stop: further clients wait in the backlog) and
 * adopt it once evhttp has attached its connection (adopt_ev, this turn).
 */
static struct bufferevent *
http_bevcb(struct event_base *base, void *arg)
{
	struct http *h = arg;
	struct bufferevent *bev;

	if (h->npending == h->pending_cap) {
		size_t cap = h->pending_cap != 0 ? h->pending_cap * 2 : 16;
		struct bufferevent **grown =
			realloc(h->pending, cap * sizeof(struct bufferevent *));

		if (grown == NULL)
			return NULL; /* evhttp makes its own: not counted */
		h->pending = grown;
		h->pending_cap = cap;
	}
	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	bufferevent_incref(bev); /* valid until adopted, whatever evhttp does */
	h->pending[h->npending++] = bev;
	h->nconns++;
	keel_metric_set(h->connections, h->nconns);
	if (h->nconns >= h->c->max_connections)
		listeners_pause(h, 1);
	event_active(h->adopt_ev, EV_TIMEOUT, 1);
	return bev;
}

/* Adopt the connections accepted this turn. */
static void
http_adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < h->npending; i++) {
		struct bufferevent *bev = h->pending[i];
		bufferevent_data_cb readcb = NULL;
		void *cbarg = NULL;
		struct conn *c;

		bufferevent_getcb(bev, &readcb, NULL, NULL, &cbarg);
		if (readcb != NULL &&
		    !keel_module_fd_ok(h->m, bufferevent_getfd(bev))) {
			/* The last descriptors are for control and logs. */
			keel_metric_add(h->limited, 1);
			keel_module_log_limit(
				h->m, &h->rl, KEEL_LOG_WARNING,
				"refusing a connection: out of descriptors "
				"(the last ones are kept for control and logs)");
			evhttp_connection_free(cbarg);
			readcb = NULL; /* counted down below */
		}
		c = readcb != NULL ? calloc(1, sizeof(*c)) : NULL;
		if (c != NULL)
			c->deadline = evtimer_new(keel_module_base(h->m),
						  conn_deadline_cb, c);
		if (c != NULL && c->deadline != NULL) {
			int sndbuf = HTTP_SNDBUF, one = 1;

			setsockopt(bufferevent_getfd(bev), SOL_SOCKET,
				   SO_SNDBUF, &sndbuf, sizeof(sndbuf));
			/*
			 * libevent writes 16 KiB a writev: a response a little
			 * longer ends in a small segment that Nagle holds until
			 * the client's (delayed, 40 ms) ACK of the first. A
			 * keep-alive scrape of /metrics took 43 ms, not 1.
			 */
			setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
				   TCP_NODELAY, &one, sizeof(one));
			c->h = h;
			c->evcon =
				cbarg; /* evhttp's argument: the connection */
			c->next = h->conns;
			h->conns = c;
			evhttp_connection_set_closecb(c->evcon, conn_closed_cb,
						      c);
			conn_arm(c, 0);
		} else {
			/* Gone already, refused, or no memory. */
			if (c != NULL) {
				if (c->deadline != NULL)
					event_free(c->deadline);
				free(c);
			}
			if (readcb != NULL)
				evhttp_connection_free(cbarg);
			h->nconns--;
		}
		bufferevent_decref(bev);
	}
	h->npending = 0;
	keel_metric_set(h->connections, h->nconns);
	if (h->nconns < h->c->max_connections)
		listeners_pause(h, 0);
	if (h->draining)
		http_drain_step(h);
}

/* ---- answers ---- */

/* Rendered responses were sent and freed: see HTTP_TRIM_SIZE. */
static void
http_trim_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	malloc_trim(0);
}

/* A response was written. */
static void
http_done_cb(struct evhttp_request *req, void *arg)
{
	struct conn *c = arg;

	(void)req;
	if (c->busy > 0)
		c->busy--;
	if (c->trim) {
		struct timeval tv = { HTTP_TRIM_QUIET, 0 };

		c->trim = 0;
		evtimer_add(c->h->trim_ev, &tv); /* restarts it */
	}
	if (c->h->draining)
		event_active(c->h->drain_ev, EV_TIMEOUT, 1);
	else if (c->busy == 0)
		conn_arm(c, 1);
}

/*
 * Send @body (taken) with @code. HEAD gets the headers GET would get and no
 * body (evhttp 2.1 would send one).
 */
static void
http_reply(struct http *h, struct evhttp_request *req, int code,
	   const char *reason, const char *type, struct evbuffer *body)
{
	struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
	struct conn *c = conn_of(h, req);
	char len[32];

	keel_metric_add(h->requests, 1);
	evhttp_add_header(hdr, "Content-Type", type);
	evhttp_add_header(hdr, "Cache-Control", "no-store");
	evhttp_add_header(hdr, "X-Content-Type-Options", "nosniff");
	if (h->draining)
		evhttp_add_header(hdr, "Connection", "close");
	if (c != NULL) {
		c->busy++;
		c->trim = evbuffer_get_length(body) >= HTTP_TRIM_SIZE;
		evtimer_del(c->deadline);
		evhttp_request_set_on_complete_cb(req, http_done_cb, c);
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
		evhttp_add_header(hdr, "Content-Length", len);
		evhttp_send_reply(req, code, reason, NULL);
	} else {
		evhttp_send_reply(req, code, reason, body);
	}
	evbuffer_free(body);
}

/* A short text answer. */
static void
http_text(struct http *h, struct evhttp_request *req, int code,
	  const char *reason, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add(b, text, strlen(text));
	http_reply(h, req, code, reason, "text/plain; charset=utf-8", b);
}

/* Is the peer in `allow` (or is there no `allow`)? */
static int
http_allowed(struct http *h, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	/* A peer without an address passes an empty list only. */
	return keel_allow_match(
		&h->allow,
		evcon != NULL ? evhttp_connection_get_addr(evcon) : NULL);
}

/*
 * Why not ready, or NULL when ready. `ready-requires` names serial ports
 * that must be open; they are looked up in the status text (one line each,
 * `serial.NAME.state: open`).
 */
static const char *
http_not_ready(struct http *h, char *buf, size_t len)
{
	struct evbuffer *st;
	const char *text;
	size_t i, n;

	if (h->draining)
		return "draining";
	if (!keel_ready(h->m))
		return "starting";
	if (h->c->ready_requires.n == 0)
		return NULL;
	if ((st = evbuffer_new()) == NULL || evbuffer_add(st, "\n", 1) == -1 ||
	    keel_render_text(h->m, st) == -1 ||
	    (text = (const char *)evbuffer_pullup(st, -1)) == NULL) {
		if (st != NULL)
			evbuffer_free(st);
		return "cannot read the status";
	}
	n = evbuffer_get_length(st);
	for (i = 0; i < h->c->ready_requires.n; i++) {
		const char *name = h->c->ready_requires.v[i];
		char key[300];

		snprintf(key, sizeof(key), "\nserial.%s.state: open\n", name);
		if (memmem(text, n, key, strlen(key)) != NULL)
			continue;
		/* Not even configured: a typo, or a port since removed.
		 * Said in the answer, and once in the log. */
		snprintf(key, sizeof(key), "\nserial.%s.state: ", name);
		if (memmem(text, n, key, strlen(key)) == NULL) {
			snprintf(buf, len, "serial port %s is not configured",
				 name);
			if (!h->unknown_warned) {
				h->unknown_warned = 1;
				keel_instance_log(
					h->in, KEEL_LOG_WARNING,
					"ready-requires names '%s', which is "
					"not a configured serial port: "
					"/readyz answers 503",
					name);
			}
		} else {
			snprintf(buf, len, "serial port %s is not open", name);
		}
		evbuffer_free(st);
		return buf;
	}
	evbuffer_free(st);
	return NULL;
}

/* Append @s to @b with HTML's five characters escaped. */
static void
html_escaped(struct evbuffer *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			evbuffer_add(b, "&amp;", 5);
			break;
		case '<':
			evbuffer_add(b, "&lt;", 4);
			break;
		case '>':
			evbuffer_add(b, "&gt;", 4);
			break;
		case '"':
			evbuffer_add(b, "&quot;", 6);
			break;
		case '\'':
			evbuffer_add(b, "&#39;", 5);
			break;
		default:
			evbuffer_add(b, s, 1);
		}
	}
}

/* One table cell from a JSON value. */
static void
html_cell(struct evbuffer *b, const json_t *v)
{
	char num[32];

	evbuffer_add(b, "<td>", 4);
	if (json_is_string(v))
		html_escaped(b, json_string_value(v));
	else if (json_is_integer(v)) {
		snprintf(num, sizeof(num), "%lld",
			 (long long)json_integer_value(v));
		evbuffer_add(b, num, strlen(num));
	}
	evbuffer_add(b, "</td>", 5);
}

/*
 * The page's table of ports, rendered here so that the page works with
 * JavaScript off (the script replaces it with live data).
 */
static void
http_page_table(struct http *h, struct evbuffer *b)
{
	struct evbuffer *js = evbuffer_new();
	const char *name;
	json_t *root = NULL, *ports, *p;
	size_t len;

	evbuffer_add_printf(
		b, "<table id=\"keel-ports\"><thead><tr><th>port</th>"
		   "<th>state</th><th>device</th><th>clients</th>"
		   "<th>rx bytes</th><th>tx bytes</th></tr></thead><tbody>");
	if (js != NULL && keel_render_json(h->m, js) == 0) {
		len = evbuffer_get_length(js);
		root = json_loadb((const char *)evbuffer_pullup(js, -1), len, 0,
				  NULL);
	}
	ports = root != NULL ? json_object_get(root, "serial") : NULL;
	json_object_foreach(ports, name, p)
	{
		evbuffer_add_printf(b, "<tr data-port=\"");
		html_escaped(b, name);
		evbuffer_add(b, "\"><td>", 6);
		html_escaped(b, name);
		evbuffer_add(b, "</td>", 5);
		{
			const char *word =
				json_string_value(json_object_get(p, "state"));

			evbuffer_add_printf(b, "<td class=\"st-");
			html_escaped(b, word != NULL ? word : "unknown");
			evbuffer_add(b, "\">", 2);
			html_escaped(b, word != NULL ? word : "unknown");
			evbuffer_add(b, "</td>", 5);
		}
		html_cell(b, json_object_get(p, "device"));
		html_cell(b, json_object_get(p, "clients"));
		html_cell(b, json_object_get(p, "rx_bytes_total"));
		html_cell(b, json_object_get(p, "tx_bytes_total"));
		evbuffer_add(b, "</tr>", 5);
	}
	evbuffer_add_printf(b, "</tbody></table>");
	json_decref(root);
	if (js != NULL)
		evbuffer_free(js);
}

/*
 * GET / : the page, with the table put in at its marker, under a
 * Content-Security-Policy that allows its own script and style only (their
 * hashes, computed by embed.cmake).
 */
static void
http_page_reply(struct http *h, struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add(b, http_page, http_page_table_at);
	http_page_table(h, b);
	evbuffer_add(b, http_page + http_page_table_end,
		     http_page_len - http_page_table_end);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Security-Policy", http_page_csp);
	http_reply(h, req, 200, "OK", "text/html; charset=utf-8", b);
}

/* Every request. */
static void
http_request_cb(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *b;
	const char *why;
	char buf[300];

	if (!http_allowed(h, req)) {
		keel_metric_add(h->forbidden, 1);
		http_text(h, req, 403, "Forbidden", "forbidden\n");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Allow", "GET, HEAD");
		http_text(h, req, 405, "Method Not Allowed",
			  "method not allowed\n");
		return;
	}
	if (path == NULL || path[0] == '\0')
		path = "/";
	if (strcmp(path, "/livez") == 0 || strcmp(path, "/healthz") == 0) {
		http_text(h, req, 200, "OK", "ok\n");
	} else if (strcmp(path, "/readyz") == 0) {
		why = http_not_ready(h, buf, sizeof(buf));
		if (why == NULL) {
			http_text(h, req, 200, "OK", "ready\n");
		} else {
			char text[340];

			snprintf(text, sizeof(text), "not ready: %s\n", why);
			http_text(h, req, 503, "Service Unavailable", text);
		}
	} else if (strcmp(path, "/status") == 0) {
		if ((b = evbuffer_new()) == NULL ||
		    keel_render_json(h->m, b) == -1) {
			if (b != NULL)
				evbuffer_free(b);
			http_text(h, req, 500, "Internal Server Error",
				  "cannot render the status\n");
			return;
		}
		http_reply(h, req, 200, "OK", "application/json", b);
	} else if (strcmp(path, "/metrics") == 0) {
		if ((b = evbuffer_new()) == NULL ||
		    keel_render_prometheus(h->m, b) == -1) {
			if (b != NULL)
				evbuffer_free(b);
			http_text(h, req, 500, "Internal Server Error",
				  "cannot render the metrics\n");
			return;
		}
		http_reply(h, req, 200, "OK",
			   "text/plain; version=0.0.4; charset=utf-8", b);
	} else if (strcmp(path, "/") == 0) {
		http_page_reply(h, req);
	} else {
		http_text(h, req, 404, "Not Found", "not found\n");
	}
}

/* ---- drain ---- */

/*
 * Draining: while responses are in flight, idle keep-alive connections
 * stay (a load balancer asking /readyz on one hears 503, with Connection:
 * close); once none is in flight they are closed and the instance is
 * drained. shutdown-timeout cuts it (remove with KEEL_REMOVE_NOW).
 */
static void
http_drain_step(struct http *h)
{
	struct keel_instance *in = h->in;
	struct conn *c, *next;

	for (c = h->conns; c != NULL; c = c->next)
		if (c->busy > 0)
			return;
	for (c = h->conns; c != NULL; c = next) {
		next = c->next;
		evhttp_connection_free(c->evcon); /* frees c */
	}
	if (h->conns != NULL || h->npending > 0 || !h->removing)
		return;
	/* Drained. (This may run in drain_ev's or adopt_ev's own callback:
	 * libevent lets a callback free its non-persistent event.) */
	http_free(h);
	keel_instance_set_data(in, NULL);
	keel_instance_removed(in);
}

static void
http_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	http_drain_step(arg);
}

/* ---- the instance ---- */

/* Free everything (evhttp frees its connections: conn_closed_cb). */
static void
http_free(struct http *h)
{
	struct http **pp;

	if (h == NULL)
		return;
	for (pp = &http_servers; *pp != NULL; pp = &(*pp)->next_server)
		if (*pp == h) {
			*pp = h->next_server;
			break;
		}
	listeners_free(h, h->staged);
	h->staged = NULL;
	if (h->eh != NULL) {
		listeners_free(h, h->listeners);
		h->listeners = NULL;
		h->draining = 1; /* no re-enabling from close callbacks */
		evhttp_free(h->eh);
		h->eh = NULL;
	}
	listeners_free(h, h->listeners);
	if (h->adopt_ev != NULL) {
		size_t i;

		for (i = 0; i < h->npending; i++)
			bufferevent_decref(h->pending[i]);
		event_free(h->adopt_ev);
	}
	if (h->drain_ev != NULL)
		event_free(h->drain_ev);
	if (h->trim_ev != NULL)
		event_free(h->trim_ev);
	free(h->pending);
	keel_allow_free(&h->allow);
	keel_allow_free(&h->staged_allow);
	free(h);
}

/* Bind what the new `listen` adds; keep what it keeps. */
static int
http_stage(struct http *h, const struct http_conf *c)
{
	char err[300];
	size_t i;

	for (i = 0; i < c->listen.n; i++) {
		const char *text = c->listen.v[i];
		struct listener *l;

		if (listener_find(h->listeners, text) != NULL ||
		    listener_find(h->staged, text) != NULL)
			continue;
		l = calloc(1, sizeof(*l));
		if (l == NULL || (l->text = strdup(text)) == NULL) {
			free(l);
			keel_instance_error(h->in, NULL, "out of memory");
			return -1;
		}
		l->fd = http_listen_fd(text, err, sizeof(err));
		l->h = h;
		l->resume = evtimer_new(keel_module_base(h->m),
					listener_resume_cb, l);
		l->next = h->staged;
		h->staged = l;
		if (l->fd == -1) {
			keel_instance_error(h->in, "listen", "%s", err);
			return -1;
		}
		if (l->resume == NULL) {
			keel_instance_error(h->in, NULL, "out of memory");
			return -1;
		}
	}
	/* Checked already by keel_allow_check: only memory can fail. */
	if (keel_allow_parse(&h->staged_allow, &c->allow, err, sizeof(err)) ==
	    -1) {
		keel_instance_error(h->in, "allow", "%s", err);
		return -1;
	}
	return 0;
}

static int
http_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	struct keel_module *m = keel_instance_module(in);
	struct http *h = keel_instance_data(in);

	if (flags & KEEL_PREPARE_CHECK)
		return 0;
	if (keel_instance_change(in) != KEEL_CHANGE_INPLACE) {
		h = calloc(1, sizeof(*h));
		if (h == NULL)
			return -1;
		h->in = in;
		h->m = m;
		h->next_server = http_servers;
		http_servers = h;
		h->rl = (struct keel_ratelimit)KEEL_RATELIMIT(HTTP_LOG_WINDOW,
							      HTTP_LOG_BURST);
		keel_instance_set_data(in, h);
		h->adopt_ev =
			event_new(keel_module_base(m), -1, 0, http_adopt_cb, h);
		h->drain_ev =
			event_new(keel_module_base(m), -1, 0, http_drain_cb, h);
		h->trim_ev = evtimer_new(keel_module_base(m), http_trim_cb, h);
		if (h->adopt_ev == NULL || h->drain_ev == NULL ||
		    h->trim_ev == NULL)
			return -1;
	}
	return http_stage(h, conf);
}

/* Apply the limits of @c to evhttp. */
static void
http_apply(struct http *h)
{
	struct timeval tv = keel_timeval(h->c->idle_timeout);

	evhttp_set_timeout_tv(h->eh, &tv);
	evhttp_set_max_headers_size(h->eh, (ev_ssize_t)h->c->max_header_size);
	evhttp_set_max_body_size(h->eh, 0);
	/* Every method evhttp knows reaches the handler: it answers 405
	 * with Allow, where evhttp's own refusal is a 501. */
	evhttp_set_allowed_methods(
		h->eh, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
			       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
			       EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
			       EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
}

static void
http_commit(struct keel_instance *in, const void *conf)
{
	struct http *h = keel_instance_data(in);
	struct listener *l, *next, **pp;
	const struct http_conf *c = conf;
	size_t i;

	h->c = c;
	h->unknown_warned = 0;
	if (h->eh == NULL) {
		h->eh = evhttp_new(keel_module_base(h->m));
		if (h->eh == NULL) {
			keel_instance_log(in, KEEL_LOG_ERR,
					  "cannot create the HTTP server");
			return;
		}
		evhttp_set_gencb(h->eh, http_request_cb, h);
		evhttp_set_bevcb(h->eh, http_bevcb, h);
		h->requests = keel_metric_new(
			h->m, NULL, KEEL_METRIC_COUNTER, "requests_total",
			"HTTP requests answered.", NULL, NULL);
		h->forbidden = keel_metric_new(
			h->m, NULL, KEEL_METRIC_COUNTER, "forbidden_total",
			"HTTP requests refused by allow.", NULL, NULL);
		h->limited = keel_metric_new(
			h->m, NULL, KEEL_METRIC_COUNTER, "limited_total",
			"HTTP connections ended by a deadline, or accepts "
			"paused out of descriptors.",
			NULL, NULL);
		h->connections = keel_metric_new(
			h->m, NULL, KEEL_METRIC_GAUGE, "connections",
			"HTTP connections open.", NULL, NULL);
	}
	http_apply(h);
	/* Listeners no longer listed go; new ones start. */
	for (pp = &h->listeners; (l = *pp) != NULL;) {
		for (i = 0; i < c->listen.n; i++)
			if (strcmp(c->listen.v[i], l->text) == 0)
				break;
		if (i < c->listen.n) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		l->next = NULL;
		keel_instance_log(in, KEEL_LOG_INFO,
				  "no longer listening on %s", l->text);
		listeners_free(h, l);
	}
	for (l = h->staged; l != NULL; l = next) {
		next = l->next;
		listener_start(h, l);
		l->next = h->listeners;
		h->listeners = l;
		keel_instance_log(in, KEEL_LOG_INFO, "listening on http://%s/",
				  l->text);
	}
	h->staged = NULL;
	keel_allow_free(&h->allow);
	h->allow = h->staged_allow;
	memset(&h->staged_allow, 0, sizeof(h->staged_allow));
	listeners_pause(h, h->nconns >= c->max_connections);
}

static void
http_abort(struct keel_instance *in)
{
	struct http *h = keel_instance_data(in);

	if (h == NULL)
		return;
	if (keel_instance_change(in) != KEEL_CHANGE_INPLACE) {
		http_free(h);
		keel_instance_set_data(in, NULL);
		return;
	}
	listeners_free(h, h->staged);
	h->staged = NULL;
	keel_allow_free(&h->staged_allow);
}

/* Stop: listeners close, responses in flight finish, then drained. */
static void
http_remove(struct keel_instance *in, unsigned int flags)
{
	struct http *h = keel_instance_data(in);

	if (h == NULL) {
		keel_instance_removed(in);
		return;
	}
	if (flags & KEEL_REMOVE_NOW) {
		http_free(h);
		keel_instance_set_data(in, NULL);
		keel_instance_removed(in);
		return;
	}
	h->draining = 1;
	h->removing = 1;
	listeners_free(h, h->listeners);
	h->listeners = NULL;
	keel_instance_log(in, KEEL_LOG_INFO, "draining: %ld connection(s) open",
			  h->nconns);
	http_drain_step(h);
}

/* SIGTERM: not ready from now on (the drain follows). */
static void
http_event(struct keel_module *m, enum keel_event ev)
{
	struct keel_instance *in = NULL;
	struct http *h;

	if (ev != KEEL_EVENT_SHUTDOWN)
		return;
	while ((in = keel_instance_next(m, in)) != NULL)
		if ((h = keel_instance_data(in)) != NULL)
			h->draining = 1;
}

static void
http_status(struct keel_instance *in, struct keel_status *st)
{
	struct http *h = keel_instance_data(in);
	struct listener *l;

	if (h == NULL)
		return;
	keel_status_push_list(st, "listen");
	for (l = h->listeners; l != NULL; l = l->next) {
		keel_status_push(st, NULL);
		keel_status_str(st, "address", l->text);
		keel_status_pop(st);
	}
	keel_status_pop(st);
	keel_status_int(st, "connections_open", h->nconns);
	keel_status_bool(st, "draining", h->draining);
}

/* `listen`: each element a numeric HOST:PORT. */
static int
http_check_listen(const char *value, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (keel_hostport_parse(value, &ss, &len) == 0)
		return 0;
	snprintf(err, errlen,
		 "listen '%s' is not a numeric HOST:PORT (IPv6 as "
		 "[ADDR]:PORT, port 1 to 65535)",
		 value);
	return -1;
}

#define HC struct http_conf
static const struct keel_option http_options[] = {
	{ .name = "listen",
	  .type = KEEL_OPT_LIST,
	  .flags = KEEL_OPT_NONEMPTY | KEEL_OPT_BOUNDED,
	  .offset = offsetof(HC, listen),
	  .size = KEEL_MEMBER_SIZE(HC, listen),
	  .def = "127.0.0.1:8480",
	  .min = 1,
	  .max = 16,
	  .check = http_check_listen },
	{ .name = "allow",
	  .type = KEEL_OPT_LIST,
	  .flags = KEEL_OPT_NONEMPTY | KEEL_OPT_BOUNDED,
	  .offset = offsetof(HC, allow),
	  .size = KEEL_MEMBER_SIZE(HC, allow),
	  .min = 0,
	  .max = 256,
	  .check = keel_allow_check },
	KEEL_OPTION("ready-requires", KEEL_OPT_LIST, HC, ready_requires, NULL,
		    KEEL_OPT_NONEMPTY),
	KEEL_OPTION_RANGE("max-connections", KEEL_OPT_INT, HC, max_connections,
			  "64", 1, 10000, 0),
	KEEL_OPTION_RANGE("idle-timeout", KEEL_OPT_SECONDS, HC, idle_timeout,
			  "15", 0.1, 3600, 0),
	KEEL_OPTION_RANGE("request-timeout", KEEL_OPT_SECONDS, HC,
			  request_timeout, "10", 0.1, 3600, 0),
	KEEL_OPTION_RANGE("max-header-size", KEEL_OPT_SIZE, HC, max_header_size,
			  "8K", 1024, 1048576, 0),
	KEEL_OPTIONS_END,
};

KEEL_MODULE_DESCRIPTOR = {
	KEEL_MODULE_HEAD,        .name = "http",
	.version = "2.0.0",      .section = KEEL_SECTION_SINGLE,
	.options = http_options, .conf_size = sizeof(struct http_conf),
	.label = "server",       .events = KEEL_EVENT_SHUTDOWN,
	.prepare = http_prepare, .commit = http_commit,
	.abort = http_abort,     .remove = http_remove,
	.status = http_status,   .event = http_event,
};
