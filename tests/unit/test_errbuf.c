/* SPDX-License-Identifier: ISC */
/* errbuf: collected error messages, one per line. */
#include "keel-internal.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* One message: text, first and count agree. */
static void
test_add_one(void **state)
{
	struct errbuf eb = { 0 };

	(void)state;
	errbuf_add(&eb, "%s:%d: %s", "a.conf", 3, "bad");
	assert_int_equal(eb.count, 1);
	assert_string_equal(eb.text, "a.conf:3: bad\n");
	assert_int_equal(eb.len, strlen(eb.text));
	assert_string_equal(eb.first, "a.conf:3: bad");
	errbuf_clear(&eb);
}

/* Later messages are appended; first keeps the first one. */
static void
test_add_many_keeps_first(void **state)
{
	struct errbuf eb = { 0 };

	(void)state;
	errbuf_add(&eb, "one");
	errbuf_add(&eb, "two %d", 2);
	errbuf_add(&eb, "three");
	assert_int_equal(eb.count, 3);
	assert_string_equal(eb.text, "one\ntwo 2\nthree\n");
	assert_int_equal(eb.len, strlen("one\ntwo 2\nthree\n"));
	assert_string_equal(eb.first, "one");
	errbuf_clear(&eb);
}

/* Trailing newlines are trimmed, so each message is exactly one line. */
static void
test_trailing_newlines_trimmed(void **state)
{
	struct errbuf eb = { 0 };

	(void)state;
	errbuf_add(&eb, "message\n");
	errbuf_add(&eb, "second\n\n\n");
	assert_string_equal(eb.text, "message\nsecond\n");
	assert_string_equal(eb.first, "message");
	assert_int_equal(eb.count, 2);
	errbuf_clear(&eb);
}

/* A message made only of newlines still counts, as an empty line. */
static void
test_only_newlines(void **state)
{
	struct errbuf eb = { 0 };

	(void)state;
	errbuf_add(&eb, "\n\n");
	assert_int_equal(eb.count, 1);
	assert_string_equal(eb.text, "\n");
	assert_string_equal(eb.first, "");
	errbuf_clear(&eb);
}

/*
 * Only trailing newlines go; an inner one, like any control character, is
 * escaped: a message stays one line (a value quoted in it cannot add a
 * line of its own, such as a forged FILE:LINE). Found by fuzz_config_load.
 */
static void
test_inner_newline_escaped(void **state)
{
	struct errbuf eb = { 0 };

	(void)state;
	errbuf_add(&eb, "a\nb\n");
	assert_string_equal(eb.text, "a\\nb\n");
	assert_string_equal(eb.first, "a\\nb");
	errbuf_add(&eb, "c\r\x01\x7f\td");
	assert_string_equal(eb.text, "a\\nb\nc\\r\\x01\\x7f\td\n");
	assert_int_equal(eb.len, strlen(eb.text));
	assert_int_equal(eb.count, 2);
	errbuf_clear(&eb);
}

/* Clear forgets everything and the buffer can be used again. */
static void
test_clear_and_reuse(void **state)
{
	struct errbuf eb = { 0 };

	(void)state;
	errbuf_add(&eb, "old");
	errbuf_clear(&eb);
	assert_null(eb.text);
	assert_null(eb.first);
	assert_int_equal(eb.count, 0);
	assert_int_equal(eb.len, 0);
	errbuf_add(&eb, "new");
	assert_string_equal(eb.text, "new\n");
	assert_string_equal(eb.first, "new");
	assert_int_equal(eb.count, 1);
	errbuf_clear(&eb);
	/* Clearing an empty buffer is harmless. */
	errbuf_clear(&eb);
	assert_int_equal(eb.count, 0);
}

/* Forward a va_list, as config_errfunc does. */
static void KEEL_PRINTF(2, 3)
	vadd_helper(struct errbuf *eb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errbuf_vadd(eb, fmt, ap);
	va_end(ap);
}

/* errbuf_vadd formats like errbuf_add. */
static void
test_vadd(void **state)
{
	struct errbuf eb = { 0 };

	(void)state;
	vadd_helper(&eb, "%s=%d\n", "x", 42);
	assert_string_equal(eb.text, "x=42\n");
	assert_string_equal(eb.first, "x=42");
	errbuf_clear(&eb);
}

/* Long messages are kept whole (no fixed-size buffer). */
static void
test_long_message(void **state)
{
	struct errbuf eb = { 0 };
	char *big = malloc(20001);

	(void)state;
	assert_non_null(big);
	memset(big, 'x', 20000);
	big[20000] = '\0';
	errbuf_add(&eb, "%s", big);
	errbuf_add(&eb, "%s", big);
	assert_int_equal(eb.len, 2 * 20001);
	assert_int_equal(strlen(eb.first), 20000);
	assert_int_equal(eb.text[20000], '\n');
	assert_int_equal(eb.text[eb.len - 1], '\n');
	free(big);
	errbuf_clear(&eb);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_add_one),
	cmocka_unit_test(test_add_many_keeps_first),
	cmocka_unit_test(test_trailing_newlines_trimmed),
	cmocka_unit_test(test_only_newlines),
	cmocka_unit_test(test_inner_newline_escaped),
	cmocka_unit_test(test_clear_and_reuse),
	cmocka_unit_test(test_vadd),
	cmocka_unit_test(test_long_message),
};

static const struct CMUnitTest known_bugs[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};

UNIT_MAIN("errbuf", tests, known_bugs)
