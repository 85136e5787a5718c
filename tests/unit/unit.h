/* SPDX-License-Identifier: ISC */
/* Helpers shared by the cmocka unit tests: temp dirs, files, children. */
#ifndef KEEL_UNIT_H
#define KEEL_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

/*
 * A test binary's entry: with no argument it runs @tests; with
 * `known-bugs NAME` it runs the one test of @known called NAME. Known bugs
 * are tests of the correct behaviour that fail until lib/ is fixed; CTest
 * registers each with WILL_FAIL so that a fix shows up as a "failure" that
 * says: move this test into the main list.
 */
int unit_main(int argc, char **argv, const char *group,
	      const struct CMUnitTest *tests, size_t ntests,
	      const struct CMUnitTest *known, size_t nknown);

#define UNIT_MAIN(group, tests, known)                                    \
	int main(int argc, char **argv)                                   \
	{                                                                 \
		return unit_main(argc, argv, group, tests,                \
				 sizeof(tests) / sizeof(tests[0]), known, \
				 sizeof(known) / sizeof(known[0]));       \
	}

/* As UNIT_MAIN, when no known bug is left. */
#define UNIT_MAIN_ALL(group, tests)                                          \
	int main(int argc, char **argv)                                      \
	{                                                                    \
		return unit_main(argc, argv, group, tests,                   \
				 sizeof(tests) / sizeof(tests[0]), NULL, 0); \
	}

/* A fresh private directory under $TMPDIR or /tmp; fails the test if not. */
char *unit_tmpdir(void);

/* Remove @dir and everything below it, without following links. */
void unit_rmtree(const char *dir);

/* "@dir/@name", allocated. */
char *unit_path(const char *dir, const char *name);

/* Create or replace @path with @len bytes of @data. */
void unit_write(const char *path, const void *data, size_t len);

/* Create or replace @path with the string @text. */
void unit_write_str(const char *path, const char *text);

/* The whole content of @path, NUL-terminated, or NULL if it cannot be read. */
char *unit_slurp(const char *path, size_t *len);

/* Number of non-overlapping occurrences of @needle in @hay. */
int unit_count(const char *hay, const char *needle);

/*
 * Wait for child @pid at most @timeout_ms; kill it (SIGKILL) when late.
 * Returns the wait status, or -1 when the child had to be killed.
 */
int unit_wait(pid_t pid, int timeout_ms);

/* Run @fn(@arg) in a child; its return value is the exit status. */
int unit_in_child(int (*fn)(void *), void *arg, int timeout_ms);

#endif
