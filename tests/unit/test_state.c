/* SPDX-License-Identifier: ISC */
/* state: the state file keeld -s reads, replaced atomically. */
#include "keel-internal.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
	char *dir;
	char *path; /* dir/state */
	char *tmp;  /* dir/state.tmp */
};

/* A temp dir with the paths every test uses. */
static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = unit_tmpdir();
	f->path = unit_path(f->dir, "state");
	f->tmp = unit_path(f->dir, "state.tmp");
	*state = f;
	return 0;
}

/* Remove the temp dir. */
static int
teardown(void **state)
{
	struct fixture *f = *state;

	unit_rmtree(f->dir);
	free(f->dir);
	free(f->path);
	free(f->tmp);
	free(f);
	return 0;
}

/* What is written is read back, and no temporary file is left behind. */
static void
test_write_read(void **state)
{
	struct fixture *f = *state;
	const char *text = "pid: 1\ngeneration: 2\n";
	char *got;

	assert_int_equal(state_write(f->path, text, strlen(text)), 0);
	got = state_read(f->path);
	assert_non_null(got);
	assert_string_equal(got, text);
	free(got);
	assert_int_equal(access(f->tmp, F_OK), -1);
	assert_int_equal(errno, ENOENT);
}

/* A status larger than a configuration may be (1 MiB) is still read. */
static void
test_read_large(void **state)
{
	struct fixture *f = *state;
	size_t n = (size_t)3 << 20, i;
	char *text = malloc(n + 1), *got;

	assert_non_null(text);
	for (i = 0; i < n; i++)
		text[i] = (i % 64 == 63) ? '\n' : 'x';
	text[n] = '\0';
	assert_int_equal(state_write(f->path, text, n), 0);
	got = state_read(f->path);
	assert_non_null(got);
	assert_int_equal(strlen(got), n);
	free(got);
	free(text);
}

/* A shorter new state replaces the old one entirely. */
static void
test_overwrite_shorter(void **state)
{
	struct fixture *f = *state;
	char *got;

	assert_int_equal(state_write(f->path, "a: 1111111111\nb: 2\n", 19), 0);
	assert_int_equal(state_write(f->path, "a: 3\n", 5), 0);
	got = state_read(f->path);
	assert_string_equal(got, "a: 3\n");
	free(got);
	assert_int_equal(access(f->tmp, F_OK), -1);
}

/*
 * Atomic replacement: a reader that opened the old file keeps reading the
 * complete old content, and the path now names a different inode. A write
 * in place (truncate + write) would fail both checks.
 */
static void
test_replaced_by_rename(void **state)
{
	struct fixture *f = *state;
	struct stat before, after;
	char buf[64];
	ssize_t n;
	int fd;

	assert_int_equal(state_write(f->path, "old: yes\n", 9), 0);
	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	assert_int_not_equal(fd, -1);
	assert_int_equal(fstat(fd, &before), 0);
	assert_int_equal(state_write(f->path, "new: yes\n", 9), 0);
	assert_int_equal(stat(f->path, &after), 0);
	assert_true(before.st_ino != after.st_ino);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	assert_int_equal(n, 9);
	buf[n] = '\0';
	assert_string_equal(buf, "old: yes\n");
	close(fd);
}

/* An empty state is an existing, empty file. */
static void
test_write_empty(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	char *got;

	assert_int_equal(state_write(f->path, "", 0), 0);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_size, 0);
	got = state_read(f->path);
	assert_non_null(got);
	assert_string_equal(got, "");
	free(got);
}

/* A missing directory fails with ENOENT and creates nothing. */
static void
test_write_missing_dir(void **state)
{
	struct fixture *f = *state;
	char *path = unit_path(f->dir, "nodir/state");

	errno = 0;
	assert_int_equal(state_write(path, "a: 1\n", 5), -1);
	assert_int_equal(errno, ENOENT);
	free(path);
}

/* A name too long for the temporary file fails with ENAMETOOLONG. */
static void
test_write_name_too_long(void **state)
{
	char path[5000];

	(void)state;
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	errno = 0;
	assert_int_equal(state_write(path, "a: 1\n", 5), -1);
	assert_int_equal(errno, ENAMETOOLONG);
}

/*
 * A symbolic link planted at the temporary name is not followed: the write
 * fails and the link's target is untouched.
 */
static void
test_tmp_symlink_not_followed(void **state)
{
	struct fixture *f = *state;
	char *victim = unit_path(f->dir, "victim");
	char *got;

	unit_write_str(victim, "precious\n");
	assert_int_equal(symlink(victim, f->tmp), 0);
	errno = 0;
	assert_int_equal(state_write(f->path, "a: 1\n", 5), -1);
	assert_int_equal(errno, ELOOP);
	got = unit_slurp(victim, NULL);
	assert_string_equal(got, "precious\n");
	free(got);
	assert_int_equal(access(f->path, F_OK), -1);
	free(victim);
}

/* Reading a missing state file gives NULL. */
static void
test_read_missing(void **state)
{
	struct fixture *f = *state;

	assert_null(state_read(f->path));
}

static const char state_text[] = "pid: 42\n"
				 "reload: not-a-number\n"
				 "reload-done: 3\n"
				 "reload-done-at: 99\n"
				 "last-reload: failed: a.conf:3: x: y\n"
				 "empty: \n"
				 "nospace:1\n"
				 "note: pid: 7\n"
				 "two words: 5\n"
				 "tail: end";

/* Exact keys are found with their values. */
static void
test_get_exact(void **state)
{
	static const char *const cases[][2] = {
		{ "pid", "42" },
		{ "reload", "not-a-number" },
		{ "reload-done", "3" },
		{ "reload-done-at", "99" },
		{ "last-reload", "failed: a.conf:3: x: y" },
		{ "empty", "" },
		{ "note", "pid: 7" },
		{ "tail", "end" }, /* last line, no newline */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *v = state_get(state_text, cases[i][0]);

		assert_non_null(v);
		assert_string_equal(v, cases[i][1]);
		free(v);
	}
}

/*
 * A key that is a prefix or a suffix of another key, or that appears only
 * inside a value, does not match; neither does `key:value` without a space.
 */
static void
test_get_no_partial_match(void **state)
{
	static const char *const keys[] = {
		"reload-d", "re",  "done", "load", "reload-done-a",
		"nospace",  "7",   "",     "p",    "missing",
		"tw",       "two",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char *v = state_get(state_text, keys[i]);

		if (v != NULL)
			fail_msg("key '%s' matched, value '%s'", keys[i], v);
	}
	assert_null(state_get("", "pid"));
}

/* The first occurrence of a key wins. */
static void
test_get_first_wins(void **state)
{
	char *v;

	(void)state;
	v = state_get("a: 1\na: 2\n", "a");
	assert_string_equal(v, "1");
	free(v);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
	cmocka_unit_test_setup_teardown(test_overwrite_shorter, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_replaced_by_rename, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_write_empty, setup, teardown),
	cmocka_unit_test_setup_teardown(test_write_missing_dir, setup,
					teardown),
	cmocka_unit_test(test_write_name_too_long),
	cmocka_unit_test_setup_teardown(test_tmp_symlink_not_followed, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_read_missing, setup, teardown),
	cmocka_unit_test(test_get_exact),
	cmocka_unit_test(test_get_no_partial_match),
	cmocka_unit_test(test_get_first_wins),
	cmocka_unit_test_setup_teardown(test_read_large, setup, teardown),
};

static const struct CMUnitTest known_bugs[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};

UNIT_MAIN("state", tests, known_bugs)
