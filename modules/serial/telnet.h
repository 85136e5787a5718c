/* SPDX-License-Identifier: ISC */
/*
 * Telnet (RFC 854/855, BINARY 856, ECHO 857, SGA 858) and the Telnet
 * Com Port Control Option (RFC 2217), server side, for one client: a
 * byte-at-a-time state machine between the client's bytes and the device's.
 * It knows nothing of sockets or devices: what a COM-PORT command does to
 * the port is the caller's `com` callback, so it is tested on its own.
 */
#ifndef KEEL_SERIAL_TELNET_H
#define KEEL_SERIAL_TELNET_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum tn_proto { TN_RAW = 0, TN_TELNET = 1, TN_RFC2217 = 2 };

/* RFC 2217 command codes, client to server (the answer is code + 100). */
enum {
	CPO_SIGNATURE = 0,
	CPO_SET_BAUDRATE = 1,
	CPO_SET_DATASIZE = 2,
	CPO_SET_PARITY = 3,
	CPO_SET_STOPSIZE = 4,
	CPO_SET_CONTROL = 5,
	CPO_NOTIFY_LINESTATE = 6,
	CPO_NOTIFY_MODEMSTATE = 7,
	CPO_FLOWCONTROL_SUSPEND = 8,
	CPO_FLOWCONTROL_RESUME = 9,
	CPO_SET_LINESTATE_MASK = 10,
	CPO_SET_MODEMSTATE_MASK = 11,
	CPO_PURGE_DATA = 12,
};

/* RFC 2217 modem state bits. */
#define CPO_MS_DCD       0x80
#define CPO_MS_RI        0x40
#define CPO_MS_DSR       0x20
#define CPO_MS_CTS       0x10
#define CPO_MS_DELTA_DCD 0x08
#define CPO_MS_TERI      0x04
#define CPO_MS_DELTA_DSR 0x02
#define CPO_MS_DELTA_CTS 0x01

/* What the caller does for the client. */
struct tn_ops {
	/*
	 * A COM-PORT command (CPO_SET_* with its value, 0 for a query of the
	 * SET ones; CPO_PURGE_DATA) to apply. Put the value now in effect in
	 * *value: it is the answer (RFC 2217: the device's actual value when it
	 * refused). Return -1 to send no answer.
	 */
	int (*com)(void *arg, int cmd, uint32_t *value);
	/* The current modem state (CPO_MS_* bits, no deltas). */
	unsigned int (*modem)(void *arg);
	/* IAC BRK from the client. */
	void (*brk)(void *arg);
	/* FLOWCONTROL-SUSPEND (1) / RESUME (0): stop / go on sending. */
	void (*suspend)(void *arg, int on);
};

#define TN_SB_MAX 64 /* a longer subnegotiation is cut (and ignored) */

struct tn {
	enum tn_proto proto;
	const struct tn_ops *ops;
	void *arg;
	const char *signature; /* our answer to SIGNATURE */
	int st;                /* parser state */
	uint8_t verb;          /* DO/DONT/WILL/WONT awaiting its option */
	uint8_t sb[TN_SB_MAX];
	size_t sb_len;
	int sb_cut;
	int cr; /* the client's last data byte was a CR */
	/* Options enabled on our side and the client's, and those we asked
	 * for without an answer yet (RFC 1143's loop avoidance, simplified:
	 * only a change of state is ever answered). */
	uint8_t us[256 / 8], them[256 / 8];
	uint8_t us_asked[256 / 8], them_asked[256 / 8];
	uint8_t ls_mask, ms_mask;
	unsigned int last_ms; /* modem state last notified, ~0u: none */
	char client_sig[TN_SB_MAX + 1];
	uint64_t commands; /* COM-PORT commands handled */
};

/* Start: the options we offer go to @out. */
void tn_init(struct tn *t, enum tn_proto proto, const struct tn_ops *ops,
	     void *arg, const char *signature, struct evbuffer *out);

/*
 * The client's bytes @src (drained): data for the device to @dev, our
 * answers to @out.
 */
void tn_input(struct tn *t, struct evbuffer *src, struct evbuffer *dev,
	      struct evbuffer *out);

/* @len device bytes at @data, escaped for the client, to @out. */
void tn_output(const struct tn *t, const void *data, size_t len,
	       struct evbuffer *out);

/* The modem lines now (CPO_MS_* bits): a NOTIFY-MODEMSTATE to @out when
 * the client negotiated RFC 2217 and a bit of its mask changed. */
void tn_modem(struct tn *t, unsigned int ms, struct evbuffer *out);

/* Has the client agreed to RFC 2217 (WILL COM-PORT-OPTION)? */
int tn_com_port(const struct tn *t);

/* Is binary transmission on, towards the client (@to_client) or from it? */
int tn_binary(const struct tn *t, int to_client);

#endif
