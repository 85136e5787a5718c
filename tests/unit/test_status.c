/* status: `key: value` dumps. */
#include "keel-internal.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines come out as "key: value\n", in order, with the exact length. */
static void
test_format(void **state)
{
	struct keel_status *st = status_new();
	const char *text;
	size_t len;

	(void)state;
	assert_non_null(st);
	keel_status_add(st, "pid", "%d", 42);
	keel_status_add(st, "last-reload", "%s", "failed: a.conf:3: bad");
	keel_status_add(st, "counter.hb.beats", "%llu",
			18446744073709551615ULL);
	text = status_text(st, &len);
	assert_string_equal(text, "pid: 42\n"
				  "last-reload: failed: a.conf:3: bad\n"
				  "counter.hb.beats: 18446744073709551615\n");
	assert_int_equal(len, strlen(text));
	status_free(st);
}

/* An empty dump is the empty string. */
static void
test_empty(void **state)
{
	struct keel_status *st = status_new();
	const char *text;
	size_t len = 99;

	(void)state;
	assert_non_null(st);
	text = status_text(st, &len);
	assert_non_null(text);
	assert_string_equal(text, "");
	assert_int_equal(len, 0);
	status_free(st);
}

/* An empty value still has its separator. */
static void
test_empty_value(void **state)
{
	struct keel_status *st = status_new();
	size_t len;

	(void)state;
	keel_status_add(st, "modules", "%s", "");
	assert_string_equal(status_text(st, &len), "modules: \n");
	assert_int_equal(len, 10);
	status_free(st);
}

/* Many lines: nothing is lost, the length matches. */
static void
test_many_lines(void **state)
{
	struct keel_status *st = status_new();
	const char *text;
	char expect[64];
	size_t len, total = 0;
	int i;

	(void)state;
	for (i = 0; i < 2000; i++) {
		keel_status_add(st, "line", "%d", i);
		total += (size_t)snprintf(expect, sizeof(expect), "line: %d\n",
					  i);
	}
	text = status_text(st, &len);
	assert_int_equal(len, total);
	assert_int_equal(strlen(text), total);
	assert_int_equal(unit_count(text, "line: "), 2000);
	assert_non_null(strstr(text, "line: 0\nline: 1\n"));
	assert_non_null(strstr(text, "line: 1999\n"));
	status_free(st);
}

/* The dump parses back with state_get, as keeld -s reads it. */
static void
test_round_trip_state_get(void **state)
{
	struct keel_status *st = status_new();
	char *v;
	size_t len;

	(void)state;
	keel_status_add(st, "reload-done", "%lu", 7UL);
	keel_status_add(st, "reload", "%s", "x");
	v = state_get(status_text(st, &len), "reload-done");
	assert_non_null(v);
	assert_string_equal(v, "7");
	free(v);
	status_free(st);
}

/* status_free(NULL) is a no-op. */
static void
test_free_null(void **state)
{
	(void)state;
	status_free(NULL);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_format),
	cmocka_unit_test(test_empty),
	cmocka_unit_test(test_empty_value),
	cmocka_unit_test(test_many_lines),
	cmocka_unit_test(test_round_trip_state_get),
	cmocka_unit_test(test_free_null),
};

static const struct CMUnitTest known_bugs[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};

UNIT_MAIN("status", tests, known_bugs)
