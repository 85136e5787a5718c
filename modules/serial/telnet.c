/* SPDX-License-Identifier: ISC */
/* Telnet and RFC 2217 (Com Port Control), server side: see telnet.h. */
#include "telnet.h"

#include <event2/buffer.h>
#include <string.h>

#define IAC  255
#define DONT 254
#define DO   253
#define WONT 252
#define WILL 251
#define SB   250
#define BRK  243
#define SE   240

#define OPT_BINARY   0
#define OPT_ECHO     1
#define OPT_SGA      3
#define OPT_COM_PORT 44

#define CR  0x0d
#define LF  0x0a
#define NUL 0x00

enum { ST_DATA, ST_IAC, ST_VERB, ST_SB, ST_SB_IAC };

static int
bit(const uint8_t *set, uint8_t opt)
{
	return (set[opt / 8] >> (opt % 8)) & 1;
}

static void
bit_set(uint8_t *set, uint8_t opt, int on)
{
	if (on)
		set[opt / 8] |= (uint8_t)(1u << (opt % 8));
	else
		set[opt / 8] &= (uint8_t) ~(1u << (opt % 8));
}

static void
send3(struct evbuffer *out, uint8_t verb, uint8_t opt)
{
	const uint8_t b[3] = { IAC, verb, opt };

	evbuffer_add(out, b, sizeof(b));
}

/* Which options we do ourselves, and which we accept from the client. */
static int
us_supported(const struct tn *t, uint8_t opt)
{
	return opt == OPT_BINARY || opt == OPT_SGA || opt == OPT_ECHO ||
	       (opt == OPT_COM_PORT && t->proto == TN_RFC2217);
}

static int
them_supported(const struct tn *t, uint8_t opt)
{
	return opt == OPT_BINARY || opt == OPT_SGA ||
	       (opt == OPT_COM_PORT && t->proto == TN_RFC2217);
}

/* Ask for an option on our side (WILL) or the client's (DO). */
static void
offer(struct tn *t, int ours, uint8_t opt, struct evbuffer *out)
{
	bit_set(ours ? t->us_asked : t->them_asked, opt, 1);
	send3(out, ours ? WILL : DO, opt);
}

/* A COM-PORT-OPTION answer: IAC SB 44 CMD+100 VALUE IAC SE, IACs doubled. */
static void
com_answer(struct evbuffer *out, int cmd, const uint8_t *v, size_t len)
{
	const uint8_t head[4] = { IAC, SB, OPT_COM_PORT, (uint8_t)(cmd + 100) };
	static const uint8_t tail[2] = { IAC, SE }, iac = IAC;
	size_t i;

	evbuffer_add(out, head, sizeof(head));
	for (i = 0; i < len; i++) {
		evbuffer_add(out, v + i, 1);
		if (v[i] == IAC)
			evbuffer_add(out, &iac, 1);
	}
	evbuffer_add(out, tail, sizeof(tail));
}

static void
com_answer1(struct evbuffer *out, int cmd, uint32_t v)
{
	uint8_t b = (uint8_t)v;

	com_answer(out, cmd, &b, 1);
}

static void
notify_modem(struct tn *t, unsigned int ms, int force, struct evbuffer *out)
{
	unsigned int last = t->last_ms == ~0u ? ms : t->last_ms;
	unsigned int ch = ms ^ last, v = ms & 0xf0;

	if (ch & CPO_MS_CTS)
		v |= CPO_MS_DELTA_CTS;
	if (ch & CPO_MS_DSR)
		v |= CPO_MS_DELTA_DSR;
	if ((ch & CPO_MS_RI) && !(ms & CPO_MS_RI))
		v |= CPO_MS_TERI;
	if (ch & CPO_MS_DCD)
		v |= CPO_MS_DELTA_DCD;
	t->last_ms = ms & 0xf0;
	if (force || (v & t->ms_mask & 0x0f))
		com_answer1(out, CPO_NOTIFY_MODEMSTATE, v & t->ms_mask);
}

void
tn_modem(struct tn *t, unsigned int ms, struct evbuffer *out)
{
	if (tn_com_port(t))
		notify_modem(t, ms, 0, out);
}

int
tn_com_port(const struct tn *t)
{
	return t->proto == TN_RFC2217 && bit(t->them, OPT_COM_PORT);
}

int
tn_binary(const struct tn *t, int to_client)
{
	return bit(to_client ? t->us : t->them, OPT_BINARY);
}

void
tn_init(struct tn *t, enum tn_proto proto, const struct tn_ops *ops, void *arg,
	const char *signature, struct evbuffer *out)
{
	memset(t, 0, sizeof(*t));
	t->proto = proto;
	t->ops = ops;
	t->arg = arg;
	t->signature = signature;
	t->ms_mask = 0xff; /* RFC 2217's defaults */
	t->ls_mask = 0;
	t->last_ms = ~0u;
	if (proto == TN_RAW)
		return;
	/* Binary both ways; no go-aheads; WILL ECHO so that the client does
	 * not echo locally (keel never echoes: the device does, if anything);
	 * and, for RFC 2217, the com port option. */
	offer(t, 1, OPT_BINARY, out);
	offer(t, 0, OPT_BINARY, out);
	offer(t, 1, OPT_SGA, out);
	offer(t, 0, OPT_SGA, out);
	offer(t, 1, OPT_ECHO, out);
	if (proto == TN_RFC2217)
		offer(t, 0, OPT_COM_PORT, out);
}

/* DO / DONT / WILL / WONT @opt from the client. */
static void
negotiate(struct tn *t, uint8_t verb, uint8_t opt, struct evbuffer *out)
{
	int ours = verb == DO || verb == DONT;
	int yes = verb == DO || verb == WILL;
	uint8_t *on = ours ? t->us : t->them;
	uint8_t *asked = ours ? t->us_asked : t->them_asked;
	int was_asked = bit(asked, opt);

	bit_set(asked, opt, 0);
	if (yes) {
		if (bit(on, opt))
			return; /* already so: not answered (no loops) */
		if (!(ours ? us_supported(t, opt) : them_supported(t, opt))) {
			send3(out, ours ? WONT : DONT, opt);
			return;
		}
		bit_set(on, opt, 1);
		if (!was_asked)
			send3(out, ours ? WILL : DO, opt);
		if (!ours && opt == OPT_COM_PORT)
			notify_modem(t, t->ops->modem(t->arg), 1, out);
		return;
	}
	if (bit(on, opt)) {
		bit_set(on, opt, 0);
		send3(out, ours ? WONT : DONT, opt);
	}
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* IAC SB 44 CMD VALUE IAC SE from the client. */
static void
com_port(struct tn *t, int cmd, const uint8_t *v, size_t len,
	 struct evbuffer *out)
{
	uint32_t val = len > 0 ? v[0] : 0;
	uint8_t b[4];

	t->commands++;
	switch (cmd) {
	case CPO_SIGNATURE:
		/* Empty: the client asks for ours; else it tells its own. */
		if (len == 0) {
			com_answer(out, cmd, (const uint8_t *)t->signature,
				   strlen(t->signature));
		} else {
			memcpy(t->client_sig, v, len);
			t->client_sig[len] = '\0';
		}
		return;
	case CPO_SET_BAUDRATE:
		val = len >= 4 ? be32(v) : 0;
		if (t->ops->com(t->arg, cmd, &val) == -1)
			return;
		b[0] = (uint8_t)(val >> 24);
		b[1] = (uint8_t)(val >> 16);
		b[2] = (uint8_t)(val >> 8);
		b[3] = (uint8_t)val;
		com_answer(out, cmd, b, 4);
		return;
	case CPO_SET_DATASIZE:
	case CPO_SET_PARITY:
	case CPO_SET_STOPSIZE:
	case CPO_SET_CONTROL:
	case CPO_PURGE_DATA:
		if (t->ops->com(t->arg, cmd, &val) == -1)
			return;
		com_answer1(out, cmd, val);
		return;
	case CPO_NOTIFY_LINESTATE:
		/* Line errors are not known: nothing to report. */
		com_answer1(out, cmd, 0);
		return;
	case CPO_NOTIFY_MODEMSTATE:
		notify_modem(t, t->ops->modem(t->arg), 1, out);
		return;
	case CPO_FLOWCONTROL_SUSPEND:
	case CPO_FLOWCONTROL_RESUME:
		t->ops->suspend(t->arg, cmd == CPO_FLOWCONTROL_SUSPEND);
		return;
	case CPO_SET_LINESTATE_MASK:
		t->ls_mask = (uint8_t)val;
		com_answer1(out, cmd, val);
		return;
	case CPO_SET_MODEMSTATE_MASK:
		t->ms_mask = (uint8_t)val;
		com_answer1(out, cmd, val);
		return;
	default:
		return; /* unknown: ignored, as the RFC asks */
	}
}

/* A complete subnegotiation. */
static void
subnegotiation(struct tn *t, struct evbuffer *out)
{
	if (t->sb_cut || t->sb_len < 2 || t->sb[0] != OPT_COM_PORT ||
	    t->proto != TN_RFC2217)
		return;
	/*
	 * A com port command is agreement enough. pyserial sends its WILL
	 * COM-PORT-OPTION only while it still wants it: when our DO arrives
	 * first (a loaded machine), it takes our DO for the answer and never
	 * says WILL (measured: 19 opens in 40). Without this it would get no
	 * modem state, and `cts` raises "remote sends no NOTIFY_MODEMSTATE".
	 */
	if (!bit(t->them, OPT_COM_PORT)) {
		bit_set(t->them, OPT_COM_PORT, 1);
		bit_set(t->them_asked, OPT_COM_PORT, 0);
		notify_modem(t, t->ops->modem(t->arg), 1, out);
	}
	com_port(t, t->sb[1], t->sb + 2, t->sb_len - 2, out);
}

/* Data bytes from the client: CR NUL is CR unless in binary mode. */
static void
data(struct tn *t, const uint8_t *p, size_t n, struct evbuffer *dev)
{
	size_t i, start = 0;

	if (bit(t->them, OPT_BINARY)) {
		evbuffer_add(dev, p, n);
		return;
	}
	for (i = 0; i < n; i++) {
		if (t->cr && p[i] == NUL) {
			evbuffer_add(dev, p + start, i - start);
			start = i + 1;
		}
		t->cr = p[i] == CR;
	}
	evbuffer_add(dev, p + start, n - start);
}

/* One chunk of the client's bytes. */
static void
input(struct tn *t, const uint8_t *p, size_t n, struct evbuffer *dev,
      struct evbuffer *out)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = p[i];

		switch (t->st) {
		case ST_DATA: {
			const uint8_t *iac = memchr(p + i, IAC, n - i);
			size_t run =
				iac != NULL ? (size_t)(iac - (p + i)) : n - i;

			data(t, p + i, run, dev);
			i += run;
			if (iac != NULL) {
				t->st = ST_IAC;
				i++;
			}
			continue;
		}
		case ST_IAC:
			t->st = ST_DATA;
			if (c == IAC) {
				data(t, &c, 1, dev);
			} else if (c >= WILL) {
				t->verb = c;
				t->st = ST_VERB;
			} else if (c == SB) {
				t->sb_len = 0;
				t->sb_cut = 0;
				t->st = ST_SB;
			} else if (c == BRK && t->ops->brk != NULL) {
				t->ops->brk(t->arg);
			}
			/* NOP, DM, AYT, GA...: nothing to do. */
			break;
		case ST_VERB:
			negotiate(t, t->verb, c, out);
			t->st = ST_DATA;
			break;
		case ST_SB:
			if (c == IAC) {
				t->st = ST_SB_IAC;
			} else if (t->sb_len < sizeof(t->sb)) {
				t->sb[t->sb_len++] = c;
			} else {
				t->sb_cut = 1;
			}
			break;
		case ST_SB_IAC:
			if (c == IAC) {
				if (t->sb_len < sizeof(t->sb))
					t->sb[t->sb_len++] = c;
				else
					t->sb_cut = 1;
				t->st = ST_SB;
			} else {
				/* SE, or a broken one: it ends here. */
				subnegotiation(t, out);
				t->st = ST_DATA;
			}
			break;
		default:
			t->st = ST_DATA;
			break;
		}
		i++;
	}
}

void
tn_input(struct tn *t, struct evbuffer *src, struct evbuffer *dev,
	 struct evbuffer *out)
{
	struct evbuffer_iovec v[8];
	int n, i;

	while (evbuffer_get_length(src) > 0) {
		size_t used = 0;

		n = evbuffer_peek(src, -1, NULL, v, 8);
		if (n > 8)
			n = 8;
		for (i = 0; i < n; i++) {
			input(t, v[i].iov_base, v[i].iov_len, dev, out);
			used += v[i].iov_len;
		}
		evbuffer_drain(src, used);
	}
}

void
tn_output(const struct tn *t, const void *data_, size_t len,
	  struct evbuffer *out)
{
	static const uint8_t iac2[2] = { IAC, IAC }, crnul[2] = { CR, NUL };
	const uint8_t *p = data_, *end = p + len;
	int nvt = !bit(t->us, OPT_BINARY);

	while (p < end) {
		const uint8_t *q = p;

		while (q < end && *q != IAC && !(nvt && *q == CR))
			q++;
		evbuffer_add(out, p, (size_t)(q - p));
		if (q == end)
			break;
		if (*q == IAC) {
			evbuffer_add(out, iac2, 2);
		} else if (q + 1 < end && q[1] == LF) {
			evbuffer_add(out, q, 2); /* CR LF stays */
			q++;
		} else {
			evbuffer_add(out, crnul, 2); /* a bare CR */
		}
		p = q + 1;
	}
}
