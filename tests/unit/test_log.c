/* SPDX-License-Identifier: ISC */
/* log: levels, file target, reopen after rotation. */
#include "keel-internal.h"
#include "unit.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
	char *dir;
	char *path; /* dir/keeld.log */
};

/* A temp dir; logging back on stderr at info. */
static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = unit_tmpdir();
	f->path = unit_path(f->dir, "keeld.log");
	log_close();
	log_init("unit", KEEL_LOG_INFO);
	*state = f;
	return 0;
}

/* Close the log and remove the temp dir. */
static int
teardown(void **state)
{
	struct fixture *f = *state;

	log_close();
	unit_rmtree(f->dir);
	free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

/* Log to @path at @level, asserting success. */
static void
log_to(const char *path, int level)
{
	struct errbuf eb = { 0 };

	assert_int_equal(log_configure(path, level, &eb), 0);
	assert_int_equal(eb.count, 0);
}

/* The content of the file, "" when missing. */
static char *
content(const char *path)
{
	char *s = unit_slurp(path, NULL);

	return s != NULL ? s : strdup("");
}

/* Every level name maps to its value and back; others are refused. */
static void
test_level_names(void **state)
{
	static const struct {
		const char *name;
		int level;
	} levels[] = {
		{ "error", KEEL_LOG_ERR },     { "warning", KEEL_LOG_WARNING },
		{ "notice", KEEL_LOG_NOTICE }, { "info", KEEL_LOG_INFO },
		{ "debug", KEEL_LOG_DEBUG },
	};
	static const char *const bad[] = { "",      "ERROR", "warn", "err",
					   "infos", "Debug", " info" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		assert_int_equal(log_level_parse(levels[i].name),
				 levels[i].level);
		assert_string_equal(log_level_name(levels[i].level),
				    levels[i].name);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(log_level_parse(bad[i]), -1);
	assert_string_equal(log_level_name(0), "?");
	assert_string_equal(log_level_name(KEEL_LOG_ERR - 1), "?");
	assert_string_equal(log_level_name(KEEL_LOG_DEBUG + 1), "?");
	assert_string_equal(log_level_name(-1), "?");
}

/* A file target gets timestamped lines with ident, pid and level name. */
static void
test_file_line_format(void **state)
{
	struct fixture *f = *state;
	char pattern[256];
	regex_t re;
	char *text;

	log_to(f->path, KEEL_LOG_INFO);
	assert_string_equal(log_target(), f->path);
	log_info("hello %d", 42);
	text = content(f->path);
	snprintf(pattern, sizeof(pattern),
		 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\."
		 "[0-9]{3} unit\\[%ld\\]: info: hello 42$",
		 (long)getpid());
	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE), 0);
	if (regexec(&re, text, 0, NULL, 0) != 0)
		fail_msg("unexpected log line: '%s'", text);
	regfree(&re);
	assert_int_equal(unit_count(text, "\n"), 1);
	assert_int_equal(text[strlen(text) - 1], '\n');
	free(text);
}

/* Each function writes with its level's name. */
static void
test_level_name_in_line(void **state)
{
	struct fixture *f = *state;
	char *text;

	log_to(f->path, KEEL_LOG_DEBUG);
	log_warnx("w %s", "x");
	log_info("i");
	log_debug("d");
	keel_log(KEEL_LOG_NOTICE, "n");
	keel_log(KEEL_LOG_ERR, "e");
	text = content(f->path);
	assert_non_null(strstr(text, ": warning: w x\n"));
	assert_non_null(strstr(text, ": info: i\n"));
	assert_non_null(strstr(text, ": debug: d\n"));
	assert_non_null(strstr(text, ": notice: n\n"));
	assert_non_null(strstr(text, ": error: e\n"));
	assert_int_equal(unit_count(text, "\n"), 5);
	free(text);
}

/* Messages below the level are not written. */
static void
test_below_level_not_written(void **state)
{
	struct fixture *f = *state;
	char *text;

	log_to(f->path, KEEL_LOG_WARNING);
	assert_true(keel_log_enabled(KEEL_LOG_ERR));
	assert_true(keel_log_enabled(KEEL_LOG_WARNING));
	assert_false(keel_log_enabled(KEEL_LOG_NOTICE));
	assert_false(keel_log_enabled(KEEL_LOG_DEBUG));
	log_info("quiet info");
	log_debug("quiet debug");
	keel_log(KEEL_LOG_NOTICE, "quiet notice");
	log_warnx("loud warning");
	text = content(f->path);
	assert_null(strstr(text, "quiet"));
	assert_non_null(strstr(text, "loud warning"));
	free(text);

	log_set_level(KEEL_LOG_DEBUG);
	log_debug("now visible");
	text = content(f->path);
	assert_non_null(strstr(text, ": debug: now visible\n"));
	free(text);
}

/* The number of times @needle occurs in @hay. */
static int
count_of(const char *hay, const char *needle)
{
	int n = 0;

	for (; (hay = strstr(hay, needle)) != NULL; hay++)
		n++;
	return n;
}

/*
 * A rate limit lets @burst lines through per window, counts the rest, and
 * reports the count with the first line of a later window.
 */
static void
test_ratelimit(void **state)
{
	struct fixture *f = *state;
	struct keel_ratelimit rl = KEEL_RATELIMIT(0.3, 3);
	struct timespec nap = { 0, 350 * 1000000L };
	char *text;
	int i, written = 0;

	log_to(f->path, KEEL_LOG_INFO);
	for (i = 0; i < 100; i++)
		written += keel_log_limit(&rl, KEEL_LOG_INFO, "flood %d", i);
	assert_int_equal(written, 3);
	/* Below the level: neither written nor counted. */
	assert_int_equal(keel_log_limit(&rl, KEEL_LOG_DEBUG, "quiet"), 0);
	nanosleep(&nap, NULL);
	assert_int_equal(keel_log_limit(&rl, KEEL_LOG_INFO, "after"), 1);
	text = content(f->path);
	assert_int_equal(count_of(text, ": flood "), 3);
	assert_non_null(strstr(text, ": 97 similar messages suppressed\n"));
	assert_true(strstr(text, "97 similar") < strstr(text, ": after\n"));
	assert_null(strstr(text, "quiet"));
	free(text);
	/* No limit at all with NULL. */
	for (i = 0; i < 50; i++)
		written += keel_log_limit(NULL, KEEL_LOG_INFO, "free %d", i);
	assert_int_equal(written, 53);
}

/* log_warn appends errno's text and leaves errno as it was. */
static void
test_warn_appends_errno(void **state)
{
	struct fixture *f = *state;
	char expect[256];
	char *text;

	log_to(f->path, KEEL_LOG_INFO);
	errno = ENOENT;
	log_warn("cannot open %s", "x.conf");
	assert_int_equal(errno, ENOENT);
	text = content(f->path);
	snprintf(expect, sizeof(expect), ": warning: cannot open x.conf: %s\n",
		 strerror(ENOENT));
	assert_non_null(strstr(text, expect));
	free(text);
}

/* After logrotate renamed the file, reopen starts a new one. */
static void
test_reopen_after_rename(void **state)
{
	struct fixture *f = *state;
	char *rotated = unit_path(f->dir, "keeld.log.1");
	char *old, *cur;

	log_to(f->path, KEEL_LOG_INFO);
	log_info("first");
	assert_int_equal(rename(f->path, rotated), 0);
	log_info("second, still to the renamed file");
	assert_int_equal(access(f->path, F_OK), -1);
	log_reopen();
	assert_int_equal(access(f->path, F_OK), 0);
	log_info("third, to the new file");
	old = content(rotated);
	cur = content(f->path);
	assert_non_null(strstr(old, "first"));
	assert_non_null(strstr(old, "second"));
	assert_null(strstr(old, "third"));
	assert_non_null(strstr(cur, "third"));
	assert_null(strstr(cur, "first"));
	free(old);
	free(cur);
	free(rotated);
}

/* When the new file cannot be opened, the old one is kept. */
static void
test_reopen_failure_keeps_old(void **state)
{
	struct fixture *f = *state;
	char *sub = unit_path(f->dir, "sub");
	char *moved = unit_path(f->dir, "moved");
	char *path = unit_path(sub, "keeld.log");
	char *moved_log = unit_path(moved, "keeld.log");
	char *text;

	assert_int_equal(mkdir(sub, 0700), 0);
	log_to(path, KEEL_LOG_INFO);
	assert_int_equal(rename(sub, moved), 0);
	log_reopen();
	log_info("still logging");
	text = content(moved_log);
	assert_non_null(strstr(text, "cannot reopen log file"));
	assert_non_null(strstr(text, "still logging"));
	assert_string_equal(log_target(), path);
	free(text);
	free(sub);
	free(moved);
	free(path);
	free(moved_log);
}

/* A target that cannot be opened is refused; the current one stays. */
static void
test_configure_failure_keeps_target(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char *bad = unit_path(f->dir, "nodir/x.log");
	char expect[4200];
	char *text;

	log_to(f->path, KEEL_LOG_INFO);
	assert_int_equal(log_configure(bad, KEEL_LOG_DEBUG, &eb), -1);
	snprintf(expect, sizeof(expect), "cannot open log file %s: %s", bad,
		 strerror(ENOENT));
	assert_string_equal(eb.first, expect);
	assert_string_equal(log_target(), f->path);
	/* The level did not change either. */
	log_debug("not at debug");
	log_info("still here");
	text = content(f->path);
	assert_non_null(strstr(text, "still here"));
	assert_null(strstr(text, "not at debug"));
	free(text);
	errbuf_clear(&eb);
	free(bad);
}

/* Switching back to stderr stops writing to the file. */
static void
test_switch_to_stderr(void **state)
{
	struct fixture *f = *state;
	char *text;

	log_to(f->path, KEEL_LOG_INFO);
	log_info("in the file");
	log_to("stderr", KEEL_LOG_ERR);
	assert_string_equal(log_target(), "stderr");
	log_warnx("not in the file");
	text = content(f->path);
	assert_non_null(strstr(text, "in the file"));
	assert_null(strstr(text, "not in the file"));
	free(text);
}

/* A message longer than a line is cut, still one line ending in '\n'. */
static void
test_long_message_one_line(void **state)
{
	struct fixture *f = *state;
	char *big = malloc(10001), *text;
	size_t len;

	assert_non_null(big);
	memset(big, 'z', 10000);
	big[10000] = '\0';
	log_to(f->path, KEEL_LOG_INFO);
	log_info("%s", big);
	text = unit_slurp(f->path, &len);
	assert_non_null(text);
	assert_true(len <= 4095);
	assert_int_equal(text[len - 1], '\n');
	assert_int_equal(unit_count(text, "\n"), 1);
	free(text);
	free(big);
}

/* In a child: log an error and exit through fatalx. */
static int
child_fatalx(void *arg)
{
	(void)arg;
	fatalx("boom %d", 7);
}

/* fatalx logs at error level and exits with status 1. */
static void
test_fatalx_exits(void **state)
{
	struct fixture *f = *state;
	char *text;

	log_to(f->path, KEEL_LOG_ERR);
	assert_int_equal(unit_in_child(child_fatalx, NULL, 10000), 1);
	text = content(f->path);
	assert_non_null(strstr(text, ": error: boom 7\n"));
	free(text);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_level_names),
	cmocka_unit_test_setup_teardown(test_file_line_format, setup, teardown),
	cmocka_unit_test_setup_teardown(test_level_name_in_line, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_below_level_not_written, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_warn_appends_errno, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_reopen_after_rename, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_reopen_failure_keeps_old, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_configure_failure_keeps_target,
					setup, teardown),
	cmocka_unit_test_setup_teardown(test_switch_to_stderr, setup, teardown),
	cmocka_unit_test_setup_teardown(test_long_message_one_line, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_fatalx_exits, setup, teardown),
	cmocka_unit_test_setup_teardown(test_ratelimit, setup, teardown),
};

static const struct CMUnitTest known_bugs[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};

UNIT_MAIN("log", tests, known_bugs)
