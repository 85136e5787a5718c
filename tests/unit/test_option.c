/* SPDX-License-Identifier: ISC */
/*
 * option: every option type through option_parse (good values stored, bad
 * ones refused with their exact message), option_check_table, option_diff
 * and option_equal; then the same messages through a whole file, from two
 * modules, with FILE:LINE and the section in front.
 */
#include "keel-internal.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conf {
	long speed;
	double ratio;
	double timeout;
	size_t buffer;
	int flag;
	char *name;
	int parity;
	struct keel_hostport listen;
	struct keel_list tags;
	char *free_text;
	long plain;
};

static const char *const parity_words[] = { "none", "odd", "even", NULL };

/* A check of the option's own: refuses "forbidden", with a message. */
static int
check_name(const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "forbidden") == 0) {
		snprintf(err, errlen, "name '%s' is reserved", v);
		return -1;
	}
	if (strcmp(v, "silent") == 0)
		return -1; /* no message: the framework writes one */
	return 0;
}

enum {
	O_SPEED,
	O_RATIO,
	O_TIMEOUT,
	O_BUFFER,
	O_FLAG,
	O_NAME,
	O_PARITY,
	O_LISTEN,
	O_TAGS,
	O_FREE,
	O_PLAIN,
};

/* A list of at most two non-empty strings. */
#define TAGS_OPTION                                                    \
	{                                                              \
		.name = "tags", .type = KEEL_OPT_LIST,                 \
		.flags = KEEL_OPT_BOUNDED | KEEL_OPT_NONEMPTY,         \
		.offset = offsetof(struct conf, tags),                 \
		.size = KEEL_MEMBER_SIZE(struct conf, tags), .min = 0, \
		.max = 2                                               \
	}

static const struct keel_option opts[] = {
	KEEL_OPTION_RANGE("speed", KEEL_OPT_INT, struct conf, speed, "5", 1, 9,
			  KEEL_OPT_RECREATE),
	KEEL_OPTION_RANGE("ratio", KEEL_OPT_FLOAT, struct conf, ratio, "0.5", 0,
			  1, 0),
	KEEL_OPTION_RANGE("timeout", KEEL_OPT_SECONDS, struct conf, timeout,
			  "2s", 0.001, 60, 0),
	KEEL_OPTION_RANGE("buffer", KEEL_OPT_SIZE, struct conf, buffer, "4K",
			  16, 1048576, 0),
	KEEL_OPTION("flag", KEEL_OPT_BOOL, struct conf, flag, "false", 0),
	KEEL_OPTION_CHECK("name", KEEL_OPT_STRING, struct conf, name, NULL,
			  check_name, KEEL_OPT_NONEMPTY | KEEL_OPT_UNIQUE),
	KEEL_OPTION_ENUM("parity", struct conf, parity, "none", parity_words,
			 0),
	KEEL_OPTION("listen", KEEL_OPT_HOSTPORT, struct conf, listen, NULL, 0),
	TAGS_OPTION,
	KEEL_OPTION("free-text", KEEL_OPT_STRING, struct conf, free_text, NULL,
		    0),
	KEEL_OPTION("plain", KEEL_OPT_INT, struct conf, plain, NULL, 0),
	KEEL_OPTIONS_END,
};

/* ---- option_parse, good values ---- */

enum expect_kind { E_NUM, E_INT, E_STR, E_HOST };

static const struct good {
	int opt;
	const char *text;
	enum expect_kind kind;
	double num;      /* E_NUM: long, double or size_t member */
	const char *str; /* E_STR, E_HOST: the text kept */
	int port;        /* E_HOST */
	int family;      /* E_HOST */
} goods[] = {
	{ O_SPEED, "1", E_NUM, 1, NULL, 0, 0 },
	{ O_SPEED, "9", E_NUM, 9, NULL, 0, 0 },
	{ O_SPEED, "+7", E_NUM, 7, NULL, 0, 0 },
	{ O_PLAIN, "-12345678901", E_NUM, -12345678901.0, NULL, 0, 0 },
	{ O_RATIO, "0", E_NUM, 0, NULL, 0, 0 },
	{ O_RATIO, "1", E_NUM, 1, NULL, 0, 0 },
	{ O_RATIO, "0.125", E_NUM, 0.125, NULL, 0, 0 },
	{ O_RATIO, "1e-1", E_NUM, 0.1, NULL, 0, 0 },
	{ O_TIMEOUT, "1.5", E_NUM, 1.5, NULL, 0, 0 },
	{ O_TIMEOUT, "2s", E_NUM, 2, NULL, 0, 0 },
	{ O_TIMEOUT, "500ms", E_NUM, 0.5, NULL, 0, 0 },
	{ O_TIMEOUT, "1ms", E_NUM, 0.001, NULL, 0, 0 },
	{ O_TIMEOUT, "1m", E_NUM, 60, NULL, 0, 0 },
	{ O_TIMEOUT, "0.5min", E_NUM, 30, NULL, 0, 0 },
	{ O_TIMEOUT, "0.01h", E_NUM, 36, NULL, 0, 0 },
	{ O_TIMEOUT, "0.0005d", E_NUM, 43.2, NULL, 0, 0 },
	{ O_BUFFER, "16", E_NUM, 16, NULL, 0, 0 },
	{ O_BUFFER, "65536", E_NUM, 65536, NULL, 0, 0 },
	{ O_BUFFER, "64K", E_NUM, 65536, NULL, 0, 0 },
	{ O_BUFFER, "64KiB", E_NUM, 65536, NULL, 0, 0 },
	{ O_BUFFER, "64kb", E_NUM, 65536, NULL, 0, 0 },
	{ O_BUFFER, "1M", E_NUM, 1048576, NULL, 0, 0 },
	{ O_BUFFER, "1MiB", E_NUM, 1048576, NULL, 0, 0 },
	{ O_BUFFER, "100B", E_NUM, 100, NULL, 0, 0 },
	{ O_FLAG, "true", E_INT, 1, NULL, 0, 0 },
	{ O_FLAG, "yes", E_INT, 1, NULL, 0, 0 },
	{ O_FLAG, "On", E_INT, 1, NULL, 0, 0 },
	{ O_FLAG, "1", E_INT, 1, NULL, 0, 0 },
	{ O_FLAG, "false", E_INT, 0, NULL, 0, 0 },
	{ O_FLAG, "NO", E_INT, 0, NULL, 0, 0 },
	{ O_FLAG, "off", E_INT, 0, NULL, 0, 0 },
	{ O_FLAG, "0", E_INT, 0, NULL, 0, 0 },
	{ O_NAME, "gps", E_STR, 0, "gps", 0, 0 },
	{ O_NAME, "with space", E_STR, 0, "with space", 0, 0 },
	{ O_FREE, "", E_STR, 0, "", 0, 0 },
	{ O_PARITY, "none", E_INT, 0, NULL, 0, 0 },
	{ O_PARITY, "odd", E_INT, 1, NULL, 0, 0 },
	{ O_PARITY, "even", E_INT, 2, NULL, 0, 0 },
	{ O_LISTEN, "127.0.0.1:4000", E_HOST, 0, "127.0.0.1:4000", 4000,
	  AF_INET },
	{ O_LISTEN, "0.0.0.0:1", E_HOST, 0, "0.0.0.0:1", 1, AF_INET },
	{ O_LISTEN, "[::1]:65535", E_HOST, 0, "[::1]:65535", 65535, AF_INET6 },
};

/* Each good value is stored in its member. */
static void
test_parse_good(void **state)
{
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		const struct keel_option *o = &opts[g->opt];
		struct conf c;
		double got = 0;

		memset(&c, 0, sizeof(c));
		err[0] = '\0';
		if (option_parse(o, g->text, &c, err, sizeof(err)) != 0)
			fail_msg("%s = '%s' refused: %s", o->name, g->text,
				 err);
		switch (o->type) {
		case KEEL_OPT_INT:
			got = (double)(g->opt == O_PLAIN ? c.plain : c.speed);
			break;
		case KEEL_OPT_FLOAT:
			got = c.ratio;
			break;
		case KEEL_OPT_SECONDS:
			got = c.timeout;
			break;
		case KEEL_OPT_SIZE:
			got = (double)c.buffer;
			break;
		case KEEL_OPT_BOOL:
			got = c.flag;
			break;
		case KEEL_OPT_ENUM:
			got = c.parity;
			break;
		default:
			break;
		}
		if (g->kind == E_NUM || g->kind == E_INT) {
			if (got != g->num && !(got > g->num * 0.999999999 &&
					       got < g->num * 1.000000001))
				fail_msg(
					"%s = '%s' stored %.17g, expected %.17g",
					o->name, g->text, got, g->num);
		} else if (g->kind == E_STR) {
			const char *s = g->opt == O_FREE ? c.free_text : c.name;

			assert_non_null(s);
			assert_string_equal(s, g->str);
		} else {
			assert_string_equal(c.listen.text, g->str);
			assert_int_equal(c.listen.addr.ss_family, g->family);
			if (g->family == AF_INET) {
				const struct sockaddr_in *sin =
					(const void *)&c.listen.addr;

				assert_int_equal(c.listen.len, sizeof(*sin));
				assert_int_equal(ntohs(sin->sin_port), g->port);
			} else {
				const struct sockaddr_in6 *sin6 =
					(const void *)&c.listen.addr;

				assert_int_equal(c.listen.len, sizeof(*sin6));
				assert_int_equal(ntohs(sin6->sin6_port),
						 g->port);
			}
		}
		/* Nothing else was touched. */
		if (o->type != KEEL_OPT_INT)
			assert_int_equal(c.speed, 0);
		free(c.name);
		free(c.free_text);
		free(c.listen.text);
	}
}

/* A second value replaces a scalar (no leak) and extends a list. */
static void
test_parse_replace_and_append(void **state)
{
	struct conf c;
	char err[256];

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(option_parse(&opts[O_NAME], "a", &c, err, sizeof(err)),
			 0);
	assert_int_equal(option_parse(&opts[O_NAME], "b", &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.name, "b");
	assert_int_equal(option_parse(&opts[O_LISTEN], "1.2.3.4:5", &c, err,
				      sizeof(err)),
			 0);
	assert_int_equal(
		option_parse(&opts[O_LISTEN], "[::]:6", &c, err, sizeof(err)),
		0);
	assert_string_equal(c.listen.text, "[::]:6");
	assert_int_equal(c.listen.addr.ss_family, AF_INET6);
	assert_int_equal(option_parse(&opts[O_TAGS], "x", &c, err, sizeof(err)),
			 0);
	assert_int_equal(option_parse(&opts[O_TAGS], "y", &c, err, sizeof(err)),
			 0);
	assert_int_equal(c.tags.n, 2);
	assert_string_equal(c.tags.v[0], "x");
	assert_string_equal(c.tags.v[1], "y");
	/* The third one is over the bound; the two stay. */
	assert_int_equal(option_parse(&opts[O_TAGS], "z", &c, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "tags: more than 2 elements");
	assert_int_equal(c.tags.n, 2);
	option_conf_free(opts, memcpy(malloc(sizeof(c)), &c, sizeof(c)));
	option_conf_free(opts, NULL);
}

/* ---- option_parse, bad values ---- */

static const struct bad {
	int opt;
	const char *text;
	const char *msg;
} bads[] = {
	/* int: not a number, out of bounds */
	{ O_SPEED, "fast", "speed 'fast' is not an integer" },
	{ O_SPEED, "1.5", "speed '1.5' is not an integer" },
	{ O_SPEED, "", "speed '' is not an integer" },
	{ O_SPEED, "5 ", "speed '5 ' is not an integer" },
	{ O_SPEED, "0x5", "speed '0x5' is not an integer" },
	{ O_SPEED, " 5", "speed ' 5' is not an integer" },
	{ O_SPEED, "--5", "speed '--5' is not an integer" },
	{ O_PLAIN, "99999999999999999999",
	  "plain '99999999999999999999' is not an integer" },
	{ O_SPEED, "10", "speed 10 is out of range (1 to 9)" },
	{ O_SPEED, "0", "speed 0 is out of range (1 to 9)" },
	{ O_SPEED, "-3", "speed -3 is out of range (1 to 9)" },
	/* float */
	{ O_RATIO, "half", "ratio 'half' is not a number" },
	{ O_RATIO, "nan", "ratio 'nan' is not a number" },
	{ O_RATIO, "inf", "ratio 'inf' is not a number" },
	{ O_RATIO, "1e999", "ratio '1e999' is not a number" },
	{ O_RATIO, "0.5x", "ratio '0.5x' is not a number" },
	/* only decimal: strtod alone would take these */
	{ O_RATIO, "0x0.8", "ratio '0x0.8' is not a number" },
	{ O_RATIO, " 0.5", "ratio ' 0.5' is not a number" },
	{ O_RATIO, ".5", "ratio '.5' is not a number" },
	{ O_RATIO, "1.01", "ratio 1.01 is out of range (0 to 1)" },
	{ O_RATIO, "-0.1", "ratio -0.1 is out of range (0 to 1)" },
	/* seconds */
	{ O_TIMEOUT, "soon",
	  "timeout 'soon' is not a duration (seconds, or with a unit: 500ms, "
	  "2s, 5m, 1h, 1d)" },
	{ O_TIMEOUT, "5x",
	  "timeout '5x' is not a duration (seconds, or with a unit: 500ms, "
	  "2s, 5m, 1h, 1d)" },
	{ O_TIMEOUT, "5 s",
	  "timeout '5 s' is not a duration (seconds, or with a unit: 500ms, "
	  "2s, 5m, 1h, 1d)" },
	{ O_TIMEOUT, "ms",
	  "timeout 'ms' is not a duration (seconds, or with a unit: 500ms, "
	  "2s, 5m, 1h, 1d)" },
	{ O_TIMEOUT, "2m", "timeout 2m is out of range (0.001 to 60)" },
	{ O_TIMEOUT, "0x10",
	  "timeout '0x10' is not a duration (seconds, or with a unit: 500ms, "
	  "2s, 5m, 1h, 1d)" },
	{ O_TIMEOUT, "0x1p3",
	  "timeout '0x1p3' is not a duration (seconds, or with a unit: 500ms, "
	  "2s, 5m, 1h, 1d)" },
	{ O_TIMEOUT, " 5",
	  "timeout ' 5' is not a duration (seconds, or with a unit: 500ms, "
	  "2s, 5m, 1h, 1d)" },
	{ O_TIMEOUT, "0", "timeout 0 is out of range (0.001 to 60)" },
	{ O_TIMEOUT, "0.5ms", "timeout 0.5ms is out of range (0.001 to 60)" },
	{ O_TIMEOUT, "-1s", "timeout -1s is out of range (0.001 to 60)" },
	/* size */
	{ O_BUFFER, "big",
	  "buffer 'big' is not a size (bytes, or with a unit: 64K, 16M, 1G)" },
	{ O_BUFFER, "12Q",
	  "buffer '12Q' is not a size (bytes, or with a unit: 64K, 16M, 1G)" },
	{ O_BUFFER, "-5",
	  "buffer '-5' is not a size (bytes, or with a unit: 64K, 16M, 1G)" },
	{ O_BUFFER, "1.5K",
	  "buffer '1.5K' is not a size (bytes, or with a unit: 64K, 16M, 1G)" },
	{ O_BUFFER, "99999999999999999999G",
	  "buffer '99999999999999999999G' is not a size (bytes, or with a "
	  "unit: 64K, 16M, 1G)" },
	{ O_BUFFER, "17179869184G",
	  "buffer '17179869184G' is not a size (bytes, or with a unit: 64K, "
	  "16M, 1G)" },
	{ O_BUFFER, "2M", "buffer 2M is out of range (16 to 1048576)" },
	{ O_BUFFER, "15", "buffer 15 is out of range (16 to 1048576)" },
	/* bool */
	{ O_FLAG, "maybe", "flag 'maybe' is not a boolean (true or false)" },
	{ O_FLAG, "", "flag '' is not a boolean (true or false)" },
	{ O_FLAG, "2", "flag '2' is not a boolean (true or false)" },
	/* string: empty, the option's own check */
	{ O_NAME, "", "name is empty" },
	{ O_NAME, "forbidden", "name 'forbidden' is reserved" },
	{ O_NAME, "silent", "name 'silent' is not valid" },
	/* enum: an unknown word (words are case-sensitive) */
	{ O_PARITY, "mark", "parity 'mark' is not one of none, odd, even" },
	{ O_PARITY, "ODD", "parity 'ODD' is not one of none, odd, even" },
	{ O_PARITY, "", "parity '' is not one of none, odd, even" },
	/* hostport: a name, no port, a bad port, unbracketed IPv6 */
	{ O_LISTEN, "localhost:80",
	  "listen 'localhost:80' is not a numeric HOST:PORT (IPv6 as "
	  "[ADDR]:PORT)" },
	{ O_LISTEN, "127.0.0.1",
	  "listen '127.0.0.1' is not a numeric HOST:PORT (IPv6 as "
	  "[ADDR]:PORT)" },
	{ O_LISTEN, "127.0.0.1:",
	  "listen '127.0.0.1:' is not a numeric HOST:PORT (IPv6 as "
	  "[ADDR]:PORT)" },
	{ O_LISTEN, "127.0.0.1:65536",
	  "listen '127.0.0.1:65536' is not a numeric HOST:PORT (IPv6 as "
	  "[ADDR]:PORT)" },
	{ O_LISTEN, "127.0.0.1:http",
	  "listen '127.0.0.1:http' is not a numeric HOST:PORT (IPv6 as "
	  "[ADDR]:PORT)" },
	{ O_LISTEN, "300.1.1.1:80",
	  "listen '300.1.1.1:80' is not a numeric HOST:PORT (IPv6 as "
	  "[ADDR]:PORT)" },
	{ O_LISTEN, "[::1:80",
	  "listen '[::1:80' is not a numeric HOST:PORT (IPv6 as "
	  "[ADDR]:PORT)" },
	/* list */
	{ O_TAGS, "", "tags: an empty element" },
};

/* Each bad value is refused with exactly its message. */
static void
test_parse_bad(void **state)
{
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		struct conf *c = calloc(1, sizeof(*c));

		assert_non_null(c);
		strcpy(err, "(untouched)");
		if (option_parse(&opts[b->opt], b->text, c, err, sizeof(err)) !=
		    -1)
			fail_msg("%s = '%s' accepted, expected: %s",
				 opts[b->opt].name, b->text, b->msg);
		if (strcmp(err, b->msg) != 0)
			fail_msg("%s = '%s':\n  got      %s\n  expected %s",
				 opts[b->opt].name, b->text, err, b->msg);
		option_conf_free(opts, c);
	}
}

/*
 * A HOST:PORT without a port is refused. Known bug: option.c:284 only
 * looks for a ':' and evutil_parse_sockaddr_port() reads the colons of a
 * bare IPv6 address (or a bracketed one without port) as the address,
 * with port 0: "::1" and "[::1]" are accepted as port 0.
 */
static void
test_parse_hostport_without_port(void **state)
{
	static const char *const texts[] = { "::1", "[::1]", "::" };
	char err[512], expect[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct conf *c = calloc(1, sizeof(*c));

		assert_non_null(c);
		snprintf(expect, sizeof(expect),
			 "listen '%s' is not a numeric HOST:PORT (IPv6 as "
			 "[ADDR]:PORT)",
			 texts[i]);
		if (option_parse(&opts[O_LISTEN], texts[i], c, err,
				 sizeof(err)) != -1) {
			option_conf_free(opts, c);
			fail_msg("listen = '%s' accepted (as port 0)",
				 texts[i]);
		}
		assert_string_equal(err, expect);
		option_conf_free(opts, c);
	}
}

/* A long enum list is cut at the buffer, still NUL-terminated. */
static void
test_parse_enum_message_truncated(void **state)
{
	char err[24];
	struct conf c;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(
		option_parse(&opts[O_PARITY], "mark", &c, err, sizeof(err)),
		-1);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_memory_equal(err, "parity 'mark' is not one", sizeof(err) - 1);
}

/* ---- option_check_table ---- */

struct small {
	int i;
	long l;
	char *s;
	int e;
};

static const char *const ab[] = { "a", "b", NULL };

static const struct table_case {
	const char *what;
	struct keel_option o[3];
	size_t conf_size;
	const char *why; /* NULL: accepted */
} tables[] = {
	{ "a good table",
	  { KEEL_OPTION_RANGE("l", KEEL_OPT_INT, struct small, l, "3", 1, 5, 0),
	    KEEL_OPTION_ENUM("e", struct small, e, "b", ab, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  NULL },
	{ "an int on an int member",
	  { KEEL_OPTION("i", KEEL_OPT_INT, struct small, i, NULL, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'i': its member has 4 bytes, its type needs 8" },
	{ "a bool on a long member",
	  { KEEL_OPTION("l", KEEL_OPT_BOOL, struct small, l, NULL, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'l': its member has 8 bytes, its type needs 4" },
	{ "a duplicate name",
	  { KEEL_OPTION("l", KEEL_OPT_INT, struct small, l, NULL, 0),
	    KEEL_OPTION("l", KEEL_OPT_STRING, struct small, s, NULL, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'l' is declared twice" },
	{ "a bad name",
	  { KEEL_OPTION("a b", KEEL_OPT_INT, struct small, l, NULL, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'a b' is not a valid name" },
	{ "an empty name",
	  { KEEL_OPTION("", KEEL_OPT_INT, struct small, l, NULL, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option '' is not a valid name" },
	{ "a default that does not parse",
	  { KEEL_OPTION("l", KEEL_OPT_INT, struct small, l, "many", 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'l': default: l 'many' is not an integer" },
	{ "a default out of bounds",
	  { KEEL_OPTION_RANGE("l", KEEL_OPT_INT, struct small, l, "9", 1, 5, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'l': default: l 9 is out of range (1 to 5)" },
	{ "a default not among the words",
	  { KEEL_OPTION_ENUM("e", struct small, e, "c", ab, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'e': default: e 'c' is not one of a, b" },
	{ "an empty default of a non-empty string",
	  { KEEL_OPTION("s", KEEL_OPT_STRING, struct small, s, "",
			KEEL_OPT_NONEMPTY),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 's': default: s is empty" },
	{ "empty bounds",
	  { KEEL_OPTION_RANGE("l", KEEL_OPT_INT, struct small, l, NULL, 5, 1,
			      0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'l' has empty bounds" },
	{ "an enum without words",
	  { KEEL_OPTION_ENUM("e", struct small, e, NULL, NULL, 0),
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'e' has no words" },
	{ "no type",
	  { { .name = "x", .type = (enum keel_opt_type)0, .size = 8 },
	    KEEL_OPTIONS_END },
	  sizeof(struct small),
	  "option 'x' has no valid type" },
	{ "a member past conf_size",
	  { KEEL_OPTION("s", KEEL_OPT_STRING, struct small, s, NULL, 0),
	    KEEL_OPTIONS_END },
	  offsetof(struct small, s) + 4,
	  "option 's' lies outside conf_size" },
	{ "conf_size 0",
	  { KEEL_OPTION("l", KEEL_OPT_INT, struct small, l, NULL, 0),
	    KEEL_OPTIONS_END },
	  0,
	  "conf_size 0 is not a struct's size" },
};

/* Each table is accepted or refused with exactly its reason. */
static void
test_check_table(void **state)
{
	char why[512];
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		const struct table_case *t = &tables[i];

		strcpy(why, "(untouched)");
		rc = option_check_table(t->o, t->conf_size, why, sizeof(why));
		if (t->why == NULL && rc != 0)
			fail_msg("%s: refused: %s", t->what, why);
		if (t->why != NULL && rc != -1)
			fail_msg("%s: accepted", t->what);
		if (t->why != NULL && strcmp(why, t->why) != 0)
			fail_msg("%s:\n  got      %s\n  expected %s", t->what,
				 why, t->why);
	}
	/* No table at all is fine; the test's own table too. */
	assert_int_equal(option_check_table(NULL, 0, why, sizeof(why)), 0);
	assert_int_equal(
		option_check_table(opts, sizeof(struct conf), why, sizeof(why)),
		0);
	assert_int_equal(option_count(opts), 11);
	assert_int_equal(option_index(opts, "tags"), O_TAGS);
	assert_int_equal(option_index(opts, "nope"), -1);
	assert_int_equal(option_index(NULL, "nope"), -1);
}

/* More than 64 options do not fit option_diff's bits. */
static void
test_check_table_too_many(void **state)
{
	struct keel_option *many = calloc(66, sizeof(*many));
	char names[65][8], why[256];
	int i;

	(void)state;
	assert_non_null(many);
	for (i = 0; i < 65; i++) {
		snprintf(names[i], sizeof(names[i]), "o%d", i);
		many[i].name = names[i];
		many[i].type = KEEL_OPT_BOOL;
		many[i].size = sizeof(int);
	}
	assert_int_equal(option_check_table(many, 64, why, sizeof(why)), -1);
	assert_string_equal(why, "more than 64 options");
	many[64].name = NULL;
	assert_int_equal(option_check_table(many, 64, why, sizeof(why)), 0);
	free(many);
}

/* ---- option_diff and option_equal ---- */

/* Fill @c from name=value pairs (NULL-terminated). */
static void
fill(struct conf *c, const char *const *kv)
{
	char err[512];
	int i;

	memset(c, 0, sizeof(*c));
	for (; *kv != NULL; kv += 2) {
		i = option_index(opts, kv[0]);
		assert_true(i >= 0);
		if (option_parse(&opts[i], kv[1], c, err, sizeof(err)) != 0)
			fail_msg("%s", err);
	}
}

/* Free what fill() put in @c. */
static void
unfill(struct conf *c)
{
	option_conf_free(opts, memcpy(malloc(sizeof(*c)), c, sizeof(*c)));
}

/* Equal values give no bit, whatever their writing; each change its bit. */
static void
test_diff(void **state)
{
	static const char *const base[] = {
		"speed",  "5",   "ratio",  "0.5",          "timeout", "1m",
		"buffer", "64K", "flag",   "yes",          "name",    "a",
		"parity", "odd", "listen", "127.0.0.1:80", "tags",    "x",
		"tags",   "y",   NULL
	};
	static const char *const same[] = {
		"speed",  "+5",    "ratio",  "0.50",         "timeout", "60s",
		"buffer", "65536", "flag",   "on",           "name",    "a",
		"parity", "odd",   "listen", "127.0.0.1:80", "tags",    "x",
		"tags",   "y",     NULL
	};
	static const struct {
		const char *name, *value;
		int bit;
	} changes[] = {
		{ "speed", "6", O_SPEED },
		{ "ratio", "0.25", O_RATIO },
		{ "timeout", "59s", O_TIMEOUT },
		{ "buffer", "64", O_BUFFER },
		{ "flag", "no", O_FLAG },
		{ "name", "b", O_NAME },
		{ "parity", "even", O_PARITY },
		{ "listen", "127.0.0.1:81", O_LISTEN },
		{ "listen", "[::1]:80", O_LISTEN },
		{ "free-text", "t", O_FREE },
	};
	struct conf a, b;
	size_t i;
	int j;

	(void)state;
	fill(&a, base);
	fill(&b, same);
	assert_int_equal(option_diff(opts, &a, &b), 0);
	for (j = 0; opts[j].name != NULL; j++)
		assert_true(option_equal(&opts[j], &a, &b));
	unfill(&b);
	for (i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		char err[512];
		int k = option_index(opts, changes[i].name);

		fill(&b, same);
		assert_int_equal(option_parse(&opts[k], changes[i].value, &b,
					      err, sizeof(err)),
				 0);
		if (option_diff(opts, &a, &b) != (uint64_t)1 << changes[i].bit)
			fail_msg("%s = %s: diff %#llx, expected bit %d",
				 changes[i].name, changes[i].value,
				 (unsigned long long)option_diff(opts, &a, &b),
				 changes[i].bit);
		assert_false(option_equal(&opts[k], &a, &b));
		assert_false(option_equal(&opts[k], &b, &a));
		unfill(&b);
	}
	/* Lists: an element more, another order, another element. */
	{
		static const char *const more[] = { "tags", "x", NULL };
		static const char *const order[] = { "tags", "y", "tags", "x",
						     NULL };
		static const char *const two[] = { "tags", "x", "tags", "y",
						   NULL };
		struct conf l1, l2;

		fill(&l1, two);
		fill(&l2, more);
		assert_false(option_equal(&opts[O_TAGS], &l1, &l2));
		unfill(&l2);
		fill(&l2, order);
		assert_int_equal(option_diff(opts, &l1, &l2),
				 (uint64_t)1 << O_TAGS);
		unfill(&l2);
		fill(&l2, two);
		assert_int_equal(option_diff(opts, &l1, &l2), 0);
		unfill(&l2);
		unfill(&l1);
	}
	/* Unset and set strings differ; two unset ones do not. */
	fill(&b, same);
	free(b.name);
	b.name = NULL;
	assert_false(option_equal(&opts[O_NAME], &a, &b));
	assert_false(option_equal(&opts[O_NAME], &b, &a));
	assert_true(option_equal(&opts[O_FREE], &a, &b));
	unfill(&b);
	unfill(&a);
}

/* option_text: strings and host:port as written, integers in decimal. */
static void
test_text(void **state)
{
	static const char *const kv[] = { "speed",  "7",        "name", "gps",
					  "listen", "[::1]:80", NULL };
	struct conf c;
	char buf[64];

	(void)state;
	fill(&c, kv);
	assert_string_equal(option_text(&opts[O_SPEED], &c, buf, sizeof(buf)),
			    "7");
	assert_string_equal(option_text(&opts[O_NAME], &c, buf, sizeof(buf)),
			    "gps");
	assert_string_equal(option_text(&opts[O_LISTEN], &c, buf, sizeof(buf)),
			    "[::1]:80");
	assert_string_equal(option_text(&opts[O_FREE], &c, buf, sizeof(buf)),
			    "");
	unfill(&c);
}

/* ---- the same words through a whole file, from two modules ---- */

static int
stub_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	(void)in;
	(void)conf;
	(void)flags;
	return 0;
}

static void
stub_commit(struct keel_instance *in, const void *conf)
{
	(void)in;
	(void)conf;
}

static void
stub_abort(struct keel_instance *in)
{
	(void)in;
}

static void
stub_remove(struct keel_instance *in, unsigned int flags)
{
	(void)flags;
	keel_instance_removed(in);
}

static const struct keel_option mod_opts[] = {
	KEEL_OPTION_RANGE("speed", KEEL_OPT_INT, struct conf, speed, "5", 1, 9,
			  0),
	KEEL_OPTION_ENUM("parity", struct conf, parity, "none", parity_words,
			 0),
	KEEL_OPTION("listen", KEEL_OPT_HOSTPORT, struct conf, listen, NULL,
		    KEEL_OPT_UNIQUE),
	KEEL_OPTION("name", KEEL_OPT_STRING, struct conf, name, NULL,
		    KEEL_OPT_REQUIRED),
	KEEL_OPTION_RANGE("timeout", KEEL_OPT_SECONDS, struct conf, timeout,
			  "2s", 0.001, 60, 0),
	TAGS_OPTION,
	KEEL_OPTION("free-text", KEEL_OPT_STRING, struct conf, free_text, NULL,
		    0),
	KEEL_OPTIONS_END,
};

#define MOD(n, kind)                                                           \
	{                                                                      \
		KEEL_MODULE_HEAD,                                              \
			.name = (n), .version = "1", .section = (kind),        \
			.options = mod_opts, .conf_size = sizeof(struct conf), \
			.prepare = stub_prepare, .commit = stub_commit,        \
			.abort = stub_abort, .remove = stub_remove             \
	}

static const struct keel_module_desc mod1 = MOD("mod1", KEEL_SECTION_TITLED);
static const struct keel_module_desc mod2 = MOD("mod2", KEEL_SECTION_TITLED);
static const struct keel_module_desc mod3 = MOD("mod3", KEEL_SECTION_SINGLE);

/* mod4 also takes a defaults section (`mod4 { }`). */
static const struct keel_module_desc mod4 =
	MOD("mod4", KEEL_SECTION_TITLED_DEFAULTS);

static const struct keel_app app = {
	KEEL_APP_HEAD,
	.name = "optiontest",
	.version = "0",
	.config = "/nonexistent",
};

struct fixture {
	char *dir, *main;
	struct keel k;
};

/* A temp dir and a context with mod1, mod2, mod3 registered. */
static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char why[512];

	assert_non_null(f);
	f->dir = unit_tmpdir();
	f->main = unit_path(f->dir, "optiontest.conf");
	f->k.app = f->k.opt.app = &app;
	f->k.pidfd = -1;
	assert_int_equal(
		module_register(&f->k, &mod1, NULL, NULL, 0, why, sizeof(why)),
		0);
	assert_int_equal(
		module_register(&f->k, &mod2, NULL, NULL, 0, why, sizeof(why)),
		0);
	assert_int_equal(
		module_register(&f->k, &mod3, NULL, NULL, 0, why, sizeof(why)),
		0);
	assert_int_equal(
		module_register(&f->k, &mod4, NULL, NULL, 0, why, sizeof(why)),
		0);
	*state = f;
	return 0;
}

/* Unregister, remove the temp dir. */
static int
teardown(void **state)
{
	struct fixture *f = *state;

	module_unload_all(&f->k);
	unit_rmtree(f->dir);
	free(f->dir);
	free(f->main);
	free(f);
	return 0;
}

/* Load @text: NULL expected, every error line equal to @expect (each
 * "%s" in it is the file's path). */
static void
expect_errors(struct fixture *f, const char *text, const char *expect)
{
	struct errbuf eb = { 0 };
	struct config *c;
	char *want = NULL, *p;
	size_t n = 0;
	const char *q;

	unit_write_str(f->main, text);
	c = config_load(&f->k, f->main, &eb);
	if (c != NULL) {
		config_free(c);
		fail_msg("loaded, expected:\n%s", expect);
	}
	/* Replace each %s by the path. */
	for (q = expect; *q != '\0'; q++)
		n += (q[0] == '%' && q[1] == 's') ? strlen(f->main) : 1;
	want = malloc(n + 1);
	assert_non_null(want);
	for (q = expect, p = want; *q != '\0'; q++) {
		if (q[0] == '%' && q[1] == 's') {
			p = stpcpy(p, f->main);
			q++;
		} else {
			*p++ = *q;
		}
	}
	*p = '\0';
	assert_non_null(eb.text);
	if (strcmp(eb.text, want) != 0)
		fail_msg("errors:\n%s\nexpected:\n%s", eb.text, want);
	free(want);
	errbuf_clear(&eb);
}

/* Errors from two modules read alike: FILE:LINE: MODULE 'TITLE': ... */
static void
test_file_two_modules(void **state)
{
	struct fixture *f = *state;

	expect_errors(f,
		      "load = { mod1, mod2 }\n"
		      "mod1 a {\n"
		      "  name = \"x\"\n"
		      "  speed = 10\n" /* 4 */
		      "}\n"
		      "\n"
		      "mod2 b {\n"
		      "  name = \"y\"\n"
		      "  # comment\n"
		      "  speed = 10\n"    /* 10 */
		      "  parity = mark\n" /* 11 */
		      "}\n",
		      "%s:4: mod1 'a': speed 10 is out of range (1 to 9)\n"
		      "%s:10: mod2 'b': speed 10 is out of range (1 to 9)\n"
		      "%s:11: mod2 'b': parity 'mark' is not one of none, odd, "
		      "even\n");
	/*
	 * A name no module option has is reported at its line, as libconfuse
	 * reports one at the top level, and the check goes on: every section
	 * of the file is judged at once (libconfuse stopped at the first).
	 */
	expect_errors(f,
		      "load = { mod1 }\n"
		      "mod1 a {\n"
		      "  name = \"x\"\n"
		      "  colour = 1\n" /* 4 */
		      "  speed = 10\n" /* 5 */
		      "}\n"
		      "mod1 b {\n"
		      "  name = \"y\"\n"
		      "  speed = 10\n" /* 9 */
		      "}\n",
		      "%s:4: no such option 'colour'\n"
		      "%s:5: mod1 'a': speed 10 is out of range (1 to 9)\n"
		      "%s:9: mod1 'b': speed 10 is out of range (1 to 9)\n");
	/* Every type's message, each at its own line, in one section; the
	 * values of a section whose title is wrong are checked as well. */
	expect_errors(f,
		      "load = { mod2 }\n"
		      "mod2 \"with space\" {\n"
		      "  name = \"n\"\n"
		      "  speed = \"fast\"\n"
		      "  listen = \"localhost:80\"\n"
		      "  timeout = 2m\n"
		      "}\n",
		      "%s:2: mod2: the title 'with space' is not 1 to 64 "
		      "letters, digits and - _ . : @ +\n"
		      "%s:4: mod2 'with space': speed 'fast' is not an "
		      "integer\n"
		      "%s:5: mod2 'with space': listen 'localhost:80' is not "
		      "a numeric HOST:PORT (IPv6 as [ADDR]:PORT)\n"
		      "%s:6: mod2 'with space': timeout 2m is out of range "
		      "(0.001 to 60)\n");
}

/* A title that would break a status line or a label is refused. */
static void
test_file_titles(void **state)
{
	struct fixture *f = *state;

	expect_errors(f,
		      "load = { mod1 }\n"
		      "\n"
		      "mod1 \"a b\" {\n"
		      "  name = \"x\"\n"
		      "}\n",
		      "%s:3: mod1: the title 'a b' is not 1 to 64 letters, "
		      "digits and - _ . : @ +\n");
	expect_errors(f,
		      "load = { mod1 }\n"
		      "mod1 \"\" {\n"
		      "  name = \"x\"\n"
		      "}\n",
		      "%s:2: section 'mod1' needs a title (mod1 TITLE { ... "
		      "})\n");
	expect_errors(
		f,
		"load = { mod1 }\n"
		"mod1 \"q:1@b.c+d_e-f\" {\n"
		"  name = \"x\"\n"
		"  speed = 0\n"
		"}\n",
		"%s:4: mod1 'q:1@b.c+d_e-f': speed 0 is out of range (1 to "
		"9)\n");
}

/* A required option is reported at the section's line. */
static void
test_file_required(void **state)
{
	struct fixture *f = *state;

	expect_errors(f,
		      "load = { mod1 }\n"
		      "\n"
		      "mod1 a {\n"
		      "  speed = 3\n"
		      "}\n",
		      "%s:3: mod1 'a': name is required\n");
	/*
	 * An untitled section is named by its module only. Wrong values are
	 * reported as they are read, all of them; what needs the whole
	 * section (required, unique) only once every value is right.
	 */
	expect_errors(f,
		      "load = { mod3 }\n"
		      "mod3 {\n"
		      "  speed = 0\n"
		      "}\n",
		      "%s:3: mod3: speed 0 is out of range (1 to 9)\n");
	expect_errors(f,
		      "load = { mod3 }\n"
		      "mod3 {\n"
		      "  speed = 2\n"
		      "}\n",
		      "%s:2: mod3: name is required\n");
}

/* KEEL_OPT_UNIQUE: the second section using a value is reported. */
static void
test_file_unique(void **state)
{
	struct fixture *f = *state;

	expect_errors(f,
		      "load = { mod1, mod2 }\n"
		      "mod1 a {\n"
		      "  name = x\n"
		      "  listen = \"127.0.0.1:80\"\n"
		      "}\n"
		      "mod2 a {\n" /* another module may share it */
		      "  name = x\n"
		      "  listen = \"127.0.0.1:80\"\n"
		      "}\n"
		      "mod1 b {\n"
		      "  name = x\n"
		      "  listen = \"127.0.0.1:80\"\n" /* 12 */
		      "}\n",
		      "%s:12: mod1 'b': listen 127.0.0.1:80 is already used "
		      "by mod1 'a'\n");
}

/* An optional unique option left unset in two sections is no duplicate
 * (serial: a port that only connects out has no listen). */
static void
test_file_unique_unset(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct config *c;

	unit_write_str(f->main, "load = { mod1 }\n"
				"mod1 a {\n"
				"  name = x\n"
				"}\n"
				"mod1 b {\n"
				"  name = y\n"
				"}\n");
	c = config_load(&f->k, f->main, &eb);
	if (c == NULL)
		fail_msg("rejected: %s", eb.text);
	config_free(c);
	errbuf_clear(&eb);
}

/* A good file converts every section, defaults filled, positions kept. */
static void
test_file_good(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct config *c;
	const struct conf *a, *b;
	const char *file;

	unit_write_str(f->main, "load = { mod2, mod1 }\n"
				"mod1 a {\n"
				"  name = x\n"
				"  speed = 9\n"
				"}\n"
				"mod2 b {\n"
				"  name = y\n"
				"  timeout = 500ms\n"
				"  parity = even\n"
				"  listen = \"[::1]:8080\"\n"
				"}\n");
	c = config_load(&f->k, f->main, &eb);
	if (c == NULL)
		fail_msg("%s", eb.text);
	assert_int_equal(c->nsecs, 2);
	assert_int_equal(c->core.load.n, 2);
	assert_string_equal(c->core.load.v[0], "mod2");
	assert_string_equal(c->core.load.v[1], "mod1");
	/* Sections are in module order (registration), then file order. */
	assert_string_equal(c->secs[0].m->name, "mod1");
	assert_string_equal(c->secs[0].title, "a");
	assert_string_equal(c->secs[1].m->name, "mod2");
	a = c->secs[0].conf;
	b = c->secs[1].conf;
	assert_int_equal(a->speed, 9);
	assert_true(a->timeout == 2.0);
	assert_int_equal(a->parity, 0);
	assert_null(a->listen.text);
	assert_int_equal(b->speed, 5);
	assert_true(b->timeout == 0.5);
	assert_int_equal(b->parity, 2);
	assert_string_equal(b->listen.text, "[::1]:8080");
	assert_int_equal(c->secs[0].pos->line, 2);
	assert_int_equal(c->secs[1].pos->line, 6);
	assert_int_equal(config_opt_line(c, &c->secs[1], "parity", &file), 9);
	assert_string_equal(file, f->main);
	assert_int_equal(config_opt_line(c, &c->secs[1], "speed", &file), 6);
	assert_int_equal(config_opt_line(c, &c->secs[0], NULL, &file), 2);
	config_free(c);
}

/* Load @text, which must pass. */
static struct config *
expect_load(struct fixture *f, const char *text)
{
	struct errbuf eb = { 0 };
	struct config *c;

	unit_write_str(f->main, text);
	c = config_load(&f->k, f->main, &eb);
	if (c == NULL)
		fail_msg("rejected: %s\n--- input ---\n%s", eb.text, text);
	errbuf_clear(&eb);
	return c;
}

/* The section of @c titled @title. */
static const struct conf *
sec_conf(const struct config *c, const char *title)
{
	size_t i;

	for (i = 0; i < c->nsecs; i++)
		if (strcmp(c->secs[i].title, title) == 0)
			return c->secs[i].conf;
	fail_msg("no section '%s'", title);
	return NULL;
}

/*
 * A defaults section: written in a titled section > written in the
 * defaults > built in; a list written empty stays empty; the same wherever
 * the defaults section is written. It is no section of its own.
 */
static void
test_file_defaults_precedence(void **state)
{
	struct fixture *f = *state;
	static const char *const texts[] = {
		"load = { mod4 }\n"
		"mod4 {\n"                    /* 2 */
		"  speed = 7\n"               /* 3 */
		"  tags = { \"x\", \"y\" }\n" /* 4 */
		"}\n"
		"mod4 a { name = a }\n"
		"mod4 b { name = b  speed = 2  tags = {} }\n"
		"mod4 c { name = c  tags = { z } }\n",
		/* The defaults after the titled sections. */
		"load = { mod4 }\n"
		"mod4 a { name = a }\n"
		"mod4 b { name = b  speed = 2  tags = {} }\n"
		"mod4 c { name = c  tags = { z } }\n"
		"mod4 {\n"                    /* 5 */
		"  speed = 7\n"               /* 6 */
		"  tags = { \"x\", \"y\" }\n" /* 7 */
		"}\n",
	};
	size_t t;

	for (t = 0; t < 2; t++) {
		struct config *c = expect_load(f, texts[t]);
		const struct conf *a, *b, *cc;
		const char *file;

		assert_int_equal(c->nsecs, 3);
		assert_int_equal(c->ndefs, 1);
		a = sec_conf(c, "a");
		b = sec_conf(c, "b");
		cc = sec_conf(c, "c");
		assert_int_equal(a->speed, 7); /* inherited */
		assert_int_equal(b->speed, 2); /* its own */
		assert_int_equal(cc->speed, 7);
		assert_int_equal(a->parity, 0); /* built in */
		assert_int_equal(a->tags.n, 2);
		assert_string_equal(a->tags.v[1], "y");
		assert_int_equal(b->tags.n, 0); /* written empty */
		assert_int_equal(cc->tags.n, 1);
		assert_string_equal(cc->tags.v[0], "z");
		/* An inherited option is found at its line in the defaults. */
		assert_int_equal(
			config_opt_line(c, &c->secs[0], "speed", &file),
			t == 0 ? 3 : 6);
		assert_string_equal(file, f->main);
		assert_int_equal(
			config_opt_line(c, &c->secs[0], "parity", &file),
			t == 0 ? 6 : 2);
		config_free(c);
	}
	/* An empty list in the defaults is inherited as empty. */
	{
		struct config *c = expect_load(f, "load = { mod4 }\n"
						  "mod4 { tags = {} }\n"
						  "mod4 a { name = a }\n");

		assert_int_equal(sec_conf(c, "a")->tags.n, 0);
		config_free(c);
	}
	/* Only a defaults section: no section at all. */
	{
		struct config *c = expect_load(f, "load = { mod4 }\n"
						  "mod4 { speed = 3 }\n");

		assert_int_equal(c->nsecs, 0);
		assert_int_equal(c->ndefs, 1);
		config_free(c);
	}
}

/*
 * What the defaults section may not hold, each at its FILE:LINE: a
 * required or unique option, a second defaults section; a wrong value is
 * reported once, not once per section that inherits it.
 */
static void
test_file_defaults_errors(void **state)
{
	struct fixture *f = *state;

	expect_errors(f,
		      "load = { mod4 }\n"
		      "mod4 a { name = a }\n"
		      "mod4 {\n"
		      "  name = x\n"                  /* 4 */
		      "  listen = \"127.0.0.1:80\"\n" /* 5; in table order */
		      "}\n"
		      "mod4 b { name = b }\n",
		      "%s:5: mod4 (defaults): listen cannot have a default (no "
		      "two sections may share it)\n"
		      "%s:4: mod4 (defaults): name cannot have a default "
		      "(each section must write its own)\n");
	expect_errors(f,
		      "load = { mod4 }\n"
		      "mod4 { speed = 3 }\n"
		      "mod4 a { name = a }\n"
		      "mod4 { parity = odd }\n", /* 4 */
		      "%s:4: section 'mod4' without a title (the defaults) is "
		      "written twice (first at %s:2)\n");
	/* One error for a bad default inherited by two sections. */
	expect_errors(f,
		      "load = { mod4 }\n"
		      "mod4 a { name = a }\n"
		      "mod4 {\n"
		      "  speed = 10\n" /* 4 */
		      "  tags = { a, b, c }\n"
		      "}\n"
		      "mod4 b { name = b }\n",
		      "%s:4: mod4 (defaults): speed 10 is out of range (1 to "
		      "9)\n"
		      "%s:5: mod4 (defaults): tags: more than 2 elements\n");
	/* The titled sections' own errors are still all reported. */
	expect_errors(f,
		      "load = { mod4 }\n"
		      "mod4 { name = x }\n"
		      "mod4 a { speed = 3 }\n",
		      "%s:2: mod4 (defaults): name cannot have a default "
		      "(each section must write its own)\n"
		      "%s:3: mod4 'a': name is required\n");
	/* A module without the opt-in still wants a title. */
	expect_errors(f,
		      "load = { mod1 }\n"
		      "mod1 { speed = 3 }\n"
		      "mod1 a { name = a }\n",
		      "%s:2: section 'mod1' needs a title (mod1 TITLE { ... "
		      "})\n");
}

/* -T output of a file with a defaults section loads back to itself. */
static void
test_file_defaults_print(void **state)
{
	struct fixture *f = *state;
	char *out1 = NULL, *out2 = NULL;
	size_t n1 = 0, n2 = 0;
	struct config *c;
	FILE *fp;

	c = expect_load(
		f, "load = { mod4 }\n"
		   "mod4 a { name = a  tags = {} }\n"
		   "mod4 { speed = 7\n tags = { x }\n free-text = \"t\" }\n"
		   "mod4 b { name = b  speed = 2 }\n");
	fp = open_memstream(&out1, &n1);
	assert_non_null(fp);
	config_print(c, fp);
	fclose(fp);
	config_free(c);
	/* The defaults hold what they write; the sections every value. */
	if (strstr(out1, "\nmod4 { # defaults of every titled mod4 section\n"
			 "  speed = 7\n"
			 "  tags = { \"x\" }\n"
			 "  free-text = \"t\"\n"
			 "}\n") == NULL ||
	    strstr(out1, "  tags = {}\n") == NULL)
		fail_msg("printed:\n%s", out1);
	c = expect_load(f, out1);
	assert_int_equal(sec_conf(c, "a")->speed, 7);
	assert_int_equal(sec_conf(c, "a")->tags.n, 0);
	assert_int_equal(sec_conf(c, "b")->tags.n, 1);
	fp = open_memstream(&out2, &n2);
	assert_non_null(fp);
	config_print(c, fp);
	fclose(fp);
	config_free(c);
	assert_string_equal(out1, out2);
	free(out1);
	free(out2);
}

/*
 * A section in an included file keeps its own title and values when
 * sections of the same module follow the include() in the including file
 * (they used to swap titles), and a defaults section may come from an
 * include (conf.d).
 */
static void
test_file_sections_in_includes(void **state)
{
	struct fixture *f = *state;
	char *inc = unit_path(f->dir, "inc.conf"),
	     *inner = unit_path(f->dir, "inner.conf");
	struct config *c;
	char want[1024];

	unit_write_str(inc, "mod1 a { name = a  speed = 3 }\n"
			    "include(\"inner.conf\")\n"
			    "mod1 c { name = c  speed = 4 }\n"
			    "mod4 { speed = 8 }\n");
	unit_write_str(inner, "mod1 i { name = i  speed = 6 }\n");
	c = expect_load(f, "load = { mod1, mod4 }\n"
			   "mod1 z { name = z  speed = 1 }\n"
			   "include(\"inc.conf\")\n"
			   "mod1 b { name = b  speed = 2 }\n"
			   "mod4 x { name = x }\n");
	assert_int_equal(c->nsecs, 6);
	assert_int_equal(sec_conf(c, "z")->speed, 1);
	assert_int_equal(sec_conf(c, "a")->speed, 3);
	assert_int_equal(sec_conf(c, "i")->speed, 6);
	assert_int_equal(sec_conf(c, "c")->speed, 4);
	assert_int_equal(sec_conf(c, "b")->speed, 2);
	assert_string_equal(sec_conf(c, "b")->name, "b");
	assert_int_equal(sec_conf(c, "x")->speed, 8);
	config_free(c);
	/* A wrong value in an included section names its own title. */
	unit_write_str(inner, "mod1 i { name = i  speed = 60 }\n");
	snprintf(want, sizeof(want),
		 "%s:1: mod1 'i': speed 60 is out of range (1 to 9)\n"
		 "%%s:3: mod1 'b': speed 20 is out of range (1 to 9)\n",
		 inner);
	expect_errors(f,
		      "load = { mod1, mod4 }\n"
		      "include(\"inc.conf\")\n"
		      "mod1 b { name = b  speed = 20 }\n",
		      want);
	free(inc);
	free(inner);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_parse_good),
	cmocka_unit_test(test_parse_replace_and_append),
	cmocka_unit_test(test_parse_bad),
	cmocka_unit_test(test_parse_enum_message_truncated),
	cmocka_unit_test(test_check_table),
	cmocka_unit_test(test_check_table_too_many),
	cmocka_unit_test(test_diff),
	cmocka_unit_test(test_text),
	cmocka_unit_test_setup_teardown(test_file_two_modules, setup, teardown),
	cmocka_unit_test_setup_teardown(test_file_required, setup, teardown),
	cmocka_unit_test_setup_teardown(test_file_unique, setup, teardown),
	cmocka_unit_test_setup_teardown(test_file_unique_unset, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_file_good, setup, teardown),
	cmocka_unit_test(test_parse_hostport_without_port),
	cmocka_unit_test_setup_teardown(test_file_titles, setup, teardown),
	cmocka_unit_test_setup_teardown(test_file_defaults_precedence, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_file_defaults_errors, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_file_defaults_print, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_file_sections_in_includes, setup,
					teardown),
};

/* Known bugs in lib/ (see tests/unit/CMakeLists.txt). */
static const struct CMUnitTest known[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};

UNIT_MAIN("option", tests, known)
