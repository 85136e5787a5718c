/* SPDX-License-Identifier: ISC */
/* Helpers shared by the cmocka unit tests. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * cmocka 1.1.5 does not overwrite an existing CMOCKA_XML_FILE, so a stale
 * report from an earlier run would be read as this run's result.
 */
static void
unit_xml_reset(const char *group)
{
	const char *pattern = getenv("CMOCKA_XML_FILE");
	const char *g;
	char path[4096];

	if (pattern == NULL || *pattern == '\0')
		return;
	g = strstr(pattern, "%g");
	if (g == NULL)
		snprintf(path, sizeof(path), "%s", pattern);
	else
		snprintf(path, sizeof(path), "%.*s%s%s", (int)(g - pattern),
			 pattern, group, g + 2);
	if (unlink(path) == -1 && errno != ENOENT)
		fprintf(stderr, "cannot remove stale %s: %s\n", path,
			strerror(errno));
}

/* Run the main list, or one known bug named on the command line. */
int
unit_main(int argc, char **argv, const char *group,
	  const struct CMUnitTest *tests, size_t ntests,
	  const struct CMUnitTest *known, size_t nknown)
{
	char name[256];
	size_t i;

	if (argc == 1) {
		unit_xml_reset(group);
		return _cmocka_run_group_tests(group, tests, ntests, NULL,
					       NULL);
	}
	if (argc == 3 && strcmp(argv[1], "known-bugs") == 0) {
		for (i = 0; i < nknown; i++) {
			if (known[i].name == NULL ||
			    strcmp(known[i].name, argv[2]) != 0)
				continue;
			snprintf(name, sizeof(name), "%s_known_%s", group,
				 argv[2]);
			unit_xml_reset(name);
			return _cmocka_run_group_tests(name, &known[i], 1, NULL,
						       NULL);
		}
	}
	fprintf(stderr, "usage: %s [known-bugs NAME]\nknown bugs:", argv[0]);
	for (i = 0; i < nknown; i++)
		if (known[i].name != NULL)
			fprintf(stderr, " %s", known[i].name);
	fprintf(stderr, "\n");
	/* Not a test result: make CTest's WILL_FAIL see a misspelled name. */
	return 0;
}

/* A fresh private directory under $TMPDIR or /tmp. */
char *
unit_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *dir = NULL;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	assert_true(asprintf(&dir, "%s/keel-unit-XXXXXX", base) > 0);
	assert_non_null(mkdtemp(dir));
	return dir;
}

/* Remove one entry found by nftw. */
static int
unit_rm_entry(const char *path, const struct stat *st, int flag,
	      struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* Remove @dir and everything below it, without following links. */
void
unit_rmtree(const char *dir)
{
	if (dir != NULL)
		nftw(dir, unit_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* "@dir/@name", allocated. */
char *
unit_path(const char *dir, const char *name)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

/* Create or replace @path with @len bytes of @data. */
void
unit_write(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_int_not_equal(fd, -1);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

/* Create or replace @path with the string @text. */
void
unit_write_str(const char *path, const char *text)
{
	unit_write(path, text, strlen(text));
}

/* The whole content of @path, NUL-terminated, or NULL. */
char *
unit_slurp(const char *path, size_t *len)
{
	char *buf = NULL, *grown;
	size_t used = 0, cap = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd == -1)
		return NULL;
	for (;;) {
		if (cap - used < 4096) {
			cap = cap * 2 + 8192;
			grown = realloc(buf, cap);
			assert_non_null(grown);
			buf = grown;
		}
		n = read(fd, buf + used, cap - used - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	if (len != NULL)
		*len = used;
	return buf;
}

/* Number of non-overlapping occurrences of @needle in @hay. */
int
unit_count(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	int count = 0;

	if (hay == NULL || n == 0)
		return 0;
	while ((hay = strstr(hay, needle)) != NULL) {
		count++;
		hay += n;
	}
	return count;
}

/* Wait for @pid at most @timeout_ms; kill it when late. */
int
unit_wait(pid_t pid, int timeout_ms)
{
	struct timespec tick = { 0, 5 * 1000 * 1000 };
	int status, waited;

	for (waited = 0; waited <= timeout_ms; waited += 5) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r == -1 && errno != EINTR)
			return -1;
		nanosleep(&tick, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* Run @fn(@arg) in a child; its return value is the exit status. */
int
unit_in_child(int (*fn)(void *), void *arg, int timeout_ms)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	assert_int_not_equal(pid, -1);
	if (pid == 0)
		_exit(fn(arg));
	status = unit_wait(pid, timeout_ms);
	assert_int_not_equal(status, -1); /* the child was late: killed */
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}
