/* SPDX-License-Identifier: ISC */
/* The telnet / RFC 2217 engine of modules/serial, alone: bytes in, bytes
 * out, and what it asks of the port. */
#include "telnet.h"
#include "unit.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#define IAC  "\xff"
#define WILL "\xfb"
#define WONT "\xfc"
#define DO   "\xfd"
#define DONT "\xfe"
#define SB   "\xfa"
#define SE   "\xf0"

/* What the port was asked; what it answers. */
struct fake {
	int cmd[16];
	uint32_t val[16];
	int n;
	uint32_t answer; /* 0: answer what was asked */
	unsigned int modem;
	int brk, suspend;
};

static int
fake_com(void *arg, int cmd, uint32_t *value)
{
	struct fake *f = arg;

	if (f->n < 16) {
		f->cmd[f->n] = cmd;
		f->val[f->n] = *value;
	}
	f->n++;
	if (f->answer != 0)
		*value = f->answer;
	return 0;
}

static unsigned int
fake_modem(void *arg)
{
	return ((struct fake *)arg)->modem;
}

static void
fake_brk(void *arg)
{
	((struct fake *)arg)->brk++;
}

static void
fake_suspend(void *arg, int on)
{
	((struct fake *)arg)->suspend = on ? 1 : -1;
}

static const struct tn_ops ops = { fake_com, fake_modem, fake_brk,
				   fake_suspend };

struct fix {
	struct tn t;
	struct fake f;
	struct evbuffer *dev, *out, *src;
};

static int
setup(void **state)
{
	struct fix *x = calloc(1, sizeof(*x));

	x->dev = evbuffer_new();
	x->out = evbuffer_new();
	x->src = evbuffer_new();
	*state = x;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *x = *state;

	evbuffer_free(x->dev);
	evbuffer_free(x->out);
	evbuffer_free(x->src);
	free(x);
	return 0;
}

/* Take (and compare) what is in @b. */
static void
expect_buf(struct evbuffer *b, const char *want, size_t len)
{
	size_t got = evbuffer_get_length(b);
	unsigned char *p = evbuffer_pullup(b, -1);

	assert_int_equal(got, len);
	if (len > 0)
		assert_memory_equal(p, want, len);
	evbuffer_drain(b, got);
}

#define EXPECT(b, s) expect_buf((b), (s), sizeof(s) - 1)

/* Feed @s to the engine, @split bytes at a time (0: at once). */
static void
feed(struct fix *x, const char *s, size_t len, size_t split)
{
	size_t off = 0;

	if (split == 0)
		split = len;
	while (off < len) {
		size_t n = len - off < split ? len - off : split;

		evbuffer_add(x->src, s + off, n);
		tn_input(&x->t, x->src, x->dev, x->out);
		assert_int_equal(evbuffer_get_length(x->src), 0);
		off += n;
	}
}

#define FEED(x, s) feed((x), (s), sizeof(s) - 1, 0)

static void
start(struct fix *x, enum tn_proto proto)
{
	tn_init(&x->t, proto, &ops, &x->f, "keeld test", x->out);
}

/* What the server offers first. */
static void
test_offers(void **state)
{
	struct fix *x = *state;

	start(x, TN_TELNET);
	EXPECT(x->out, IAC WILL "\x00" IAC DO "\x00" IAC WILL "\x03" IAC DO
				"\x03" IAC WILL "\x01");
	start(x, TN_RFC2217);
	EXPECT(x->out, IAC WILL "\x00" IAC DO "\x00" IAC WILL "\x03" IAC DO
				"\x03" IAC WILL "\x01" IAC DO "\x2c");
}

/*
 * pyserial's opening (rfc2217.py): DO ECHO, WILL SGA, DO SGA, WILL
 * COM-PORT, DO COM-PORT. Acknowledgements of our own offers are not
 * answered; DO COM-PORT (never offered) is; the client's WILL COM-PORT
 * brings the first NOTIFY-MODEMSTATE.
 */
static void
test_pyserial_opening(void **state)
{
	struct fix *x = *state;

	start(x, TN_RFC2217);
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	x->f.modem = CPO_MS_CTS | CPO_MS_DSR;
	FEED(x, IAC DO "\x01" IAC WILL "\x03" IAC DO "\x03" IAC WILL
		       "\x2c" IAC DO "\x2c");
	EXPECT(x->out, IAC SB "\x2c\x6b\x30" IAC SE IAC WILL "\x2c");
	assert_true(tn_com_port(&x->t));
	/* Their acknowledgements of BINARY make both directions binary. */
	assert_false(tn_binary(&x->t, 0));
	FEED(x, IAC WILL "\x00" IAC DO "\x00");
	EXPECT(x->out, "");
	assert_true(tn_binary(&x->t, 0));
	assert_true(tn_binary(&x->t, 1));
	EXPECT(x->dev, "");
}

/* pyserial on a loaded machine takes our DO COM-PORT-OPTION for the
 * answer to its WILL, which it then never sends: its first command is
 * agreement enough, and brings the modem state first. */
static void
test_com_port_without_will(void **state)
{
	struct fix *x = *state;

	start(x, TN_RFC2217);
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	x->f.modem = CPO_MS_CTS;
	FEED(x, IAC DO "\x2c" IAC SB "\x2c\x02\x08" IAC SE);
	EXPECT(x->out, IAC WILL "\x2c" IAC SB "\x2c\x6b\x10" IAC SE IAC SB
				"\x2c\x66\x08" IAC SE);
	assert_true(tn_com_port(&x->t));
	/* Plain telnet ports ignore it. */
	start(x, TN_TELNET);
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	FEED(x, IAC SB "\x2c\x02\x08" IAC SE);
	EXPECT(x->out, "");
	assert_false(tn_com_port(&x->t));
}

/* Options keel does not do are refused, once; a refusal of a refused one
 * is not answered (no negotiation loops). */
static void
test_refusals(void **state)
{
	struct fix *x = *state;

	start(x, TN_TELNET);
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	FEED(x, IAC DO "\x18" IAC WILL "\x1f" IAC WILL "\x01" IAC DONT
		       "\x18" IAC WONT "\x1f");
	EXPECT(x->out, IAC WONT "\x18" IAC DONT "\x1f" IAC DONT "\x01");
	/* Plain telnet has no com port. */
	FEED(x, IAC WILL "\x2c");
	EXPECT(x->out, IAC DONT "\x2c");
	/* Our SGA, then switched off by the client: said once. */
	FEED(x, IAC DO "\x03" IAC DONT "\x03" IAC DONT "\x03");
	EXPECT(x->out, IAC WONT "\x03");
	EXPECT(x->dev, "");
}

/* Settings: the port's answer is what goes back, IAC doubled. */
static void
test_com_port_settings(void **state)
{
	struct fix *x = *state;

	start(x, TN_RFC2217);
	FEED(x, IAC WILL "\x2c");
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	FEED(x, IAC SB "\x2c\x01\x00\x01\xc2\x00" IAC SE);
	assert_int_equal(x->f.n, 1);
	assert_int_equal(x->f.cmd[0], CPO_SET_BAUDRATE);
	assert_int_equal(x->f.val[0], 115200);
	EXPECT(x->out, IAC SB "\x2c\x65\x00\x01\xc2\x00" IAC SE);
	/* Refused: the device's value is the answer. */
	x->f.answer = 8;
	FEED(x, IAC SB "\x2c\x02\x07" IAC SE);
	assert_int_equal(x->f.val[1], 7);
	EXPECT(x->out, IAC SB "\x2c\x66\x08" IAC SE);
	/* A value holding 0xff is doubled both ways. */
	x->f.answer = 0x0000ffff;
	FEED(x, IAC SB "\x2c\x01\x00\x00" IAC IAC IAC IAC IAC SE);
	assert_int_equal(x->f.val[2], 0xffff);
	EXPECT(x->out, IAC SB "\x2c\x65\x00\x00" IAC IAC IAC IAC IAC SE);
	x->f.answer = 0;
	FEED(x, IAC SB "\x2c\x03\x03" IAC SE IAC SB "\x2c\x04\x02" IAC SE IAC SB
		       "\x2c\x05\x08" IAC SE IAC SB "\x2c\x0c\x03" IAC SE);
	EXPECT(x->out,
	       IAC SB "\x2c\x67\x03" IAC SE IAC SB "\x2c\x68\x02" IAC SE IAC SB
		      "\x2c\x69\x08" IAC SE IAC SB "\x2c\x70\x03" IAC SE);
	assert_int_equal(x->f.n, 7);
	assert_int_equal(x->f.cmd[5], CPO_SET_CONTROL);
	assert_int_equal(x->f.cmd[6], CPO_PURGE_DATA);
	EXPECT(x->dev, "");
}

/* Masks, polls, SIGNATURE, suspend/resume, BRK. */
static void
test_com_port_misc(void **state)
{
	struct fix *x = *state;

	start(x, TN_RFC2217);
	FEED(x, IAC WILL "\x2c");
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	FEED(x, IAC SB "\x2c\x00" IAC SE);
	EXPECT(x->out, IAC SB "\x2c\x64keeld test" IAC SE);
	FEED(x, IAC SB "\x2c\x00pyserial" IAC SE);
	EXPECT(x->out, "");
	assert_string_equal(x->t.client_sig, "pyserial");
	FEED(x, IAC SB "\x2c\x0b\x11" IAC SE IAC SB "\x2c\x0a\x00" IAC SE);
	EXPECT(x->out,
	       IAC SB "\x2c\x6f\x11" IAC SE IAC SB "\x2c\x6e\x00" IAC SE);
	x->f.modem = CPO_MS_CTS | CPO_MS_DCD;
	FEED(x, IAC SB "\x2c\x07" IAC SE IAC SB "\x2c\x06" IAC SE);
	/* Masked to CTS and its delta. */
	EXPECT(x->out,
	       IAC SB "\x2c\x6b\x11" IAC SE IAC SB "\x2c\x6a\x00" IAC SE);
	FEED(x, IAC SB "\x2c\x08" IAC SE);
	assert_int_equal(x->f.suspend, 1);
	FEED(x, IAC SB "\x2c\x09" IAC SE);
	assert_int_equal(x->f.suspend, -1);
	FEED(x, IAC "\xf3" IAC "\xf1");
	assert_int_equal(x->f.brk, 1);
	/* A subnegotiation longer than the engine keeps is ignored whole. */
	{
		char big[200];

		memcpy(big, IAC SB "\x2c\x00", 4);
		memset(big + 4, 'x', 150);
		memcpy(big + 154, IAC SE, 2);
		feed(x, big, 156, 0);
	}
	EXPECT(x->out, "");
	EXPECT(x->dev, "");
}

/* Modem changes: deltas, the mask, and only when asked for. */
static void
test_modem_notify(void **state)
{
	struct fix *x = *state;

	start(x, TN_RFC2217);
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	/* Not before the client agreed to the com port option. */
	x->f.modem = 0;
	tn_modem(&x->t, CPO_MS_CTS, x->out);
	EXPECT(x->out, "");
	FEED(x, IAC WILL "\x2c");
	EXPECT(x->out, IAC SB "\x2c\x6b\x00" IAC SE);
	tn_modem(&x->t, CPO_MS_CTS, x->out);
	EXPECT(x->out, IAC SB "\x2c\x6b\x11" IAC SE);
	tn_modem(&x->t, CPO_MS_CTS, x->out);
	EXPECT(x->out, "");
	/* RI falling: trailing edge; DCD rising: delta. */
	tn_modem(&x->t, CPO_MS_CTS | CPO_MS_RI, x->out);
	EXPECT(x->out, "");
	tn_modem(&x->t, CPO_MS_CTS | CPO_MS_DCD, x->out);
	EXPECT(x->out, IAC SB "\x2c\x6b\x9c" IAC SE);
	/* Mask without DCD: a DCD change says nothing. */
	FEED(x, IAC SB "\x2c\x0b\xf7" IAC SE);
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	tn_modem(&x->t, CPO_MS_CTS, x->out);
	EXPECT(x->out, "");
}

/* Client data: IAC IAC is one 0xff, also split across reads; NVT CR NUL. */
static void
test_input_data(void **state)
{
	struct fix *x = *state;
	size_t split;

	start(x, TN_TELNET);
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	for (split = 1; split <= 4; split++) {
		feed(x, "a" IAC IAC "b\r\0c\r\nd\r", 11, split);
		feed(x, "\0e", 2, split);
		EXPECT(x->dev, "a\xff"
			       "b\rc\r\nd\re");
	}
	/* Binary from the client: CR NUL is two bytes of data. */
	FEED(x, IAC WILL "\x00");
	feed(x, "x\r\0y" IAC IAC, 6, 0);
	EXPECT(x->dev, "x\r\0y\xff");
	EXPECT(x->out, "");
}

/* Device data to the client: 0xff doubled; a bare CR is CR NUL unless the
 * client agreed to binary. */
static void
test_output(void **state)
{
	struct fix *x = *state;
	uint8_t all[256];
	size_t i;

	start(x, TN_TELNET);
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	tn_output(&x->t,
		  "a\xff"
		  "b\r\nc\rd\r",
		  9, x->out);
	EXPECT(x->out, "a\xff\xff"
		       "b\r\nc\r\0d\r\0");
	FEED(x, IAC DO "\x00");
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	for (i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	tn_output(&x->t, all, 256, x->out);
	assert_int_equal(evbuffer_get_length(x->out), 257);
	assert_memory_equal(evbuffer_pullup(x->out, -1), all, 256);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pyserial_opening, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_com_port_without_will,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_com_port_settings, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_com_port_misc, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_modem_notify, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_input_data, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_output, setup, teardown),
	};

	return cmocka_run_group_tests_name("telnet", tests, NULL, NULL);
}
