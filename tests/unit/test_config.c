/* SPDX-License-Identifier: ISC */
/*
 * config: the pre-scan (braces, strings, comments, section positions),
 * reading files, peeking paths, and config_load without modules.
 */
#include "keel-internal.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define F "test.conf"

/* Scan @len bytes of @text as file F. */
static int
scan_n(const char *text, size_t len, struct config_scan *sc, struct errbuf *eb)
{
	return config_scan_text(F, text, len, sc, eb);
}

/* Scan the string @text as file F. */
static int
scan(const char *text, struct config_scan *sc, struct errbuf *eb)
{
	return scan_n(text, strlen(text), sc, eb);
}

/* @text scans cleanly. */
static void
expect_scan_ok(const char *text)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };

	if (scan(text, &sc, &eb) != 0)
		fail_msg("scan failed: %s\n--- input ---\n%s",
			 eb.first != NULL ? eb.first : "(no message)", text);
	assert_int_equal(eb.count, 0);
	config_scan_free(&sc);
}

/* @len bytes of @text fail to scan with exactly the message @expect. */
static void
expect_scan_error_n(const char *text, size_t len, const char *expect)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };

	if (scan_n(text, len, &sc, &eb) != -1)
		fail_msg("scan passed, expected: %s", expect);
	assert_int_equal(eb.count, 1);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
	config_scan_free(&sc);
}

/* The string @text fails to scan with exactly the message @expect. */
static void
expect_scan_error(const char *text, const char *expect)
{
	expect_scan_error_n(text, strlen(text), expect);
}

/* ---- config_scan_text ---- */

/*
 * ${VAR} expansions are counted before libconfuse expands them: past 4 MiB
 * in all the file is refused at the line that crossed the limit (a 100 kB
 * variable used 5,000 times took 1.3 GB), in strings and bare words, with
 * defaults counted when the variable is unset or empty.
 */
static void
test_scan_expansion_bounded(void **state)
{
	char *big = malloc(100001), *text = malloc(64 * 60 + 1), *p;
	int i;

	(void)state;
	assert_non_null(big);
	assert_non_null(text);
	memset(big, 'x', 100000);
	big[100000] = '\0';
	assert_int_equal(setenv("KEEL_TEST_BIG", big, 1), 0);
	for (i = 0, p = text; i < 41; i++)
		p += sprintf(p, "a%d = \"${KEEL_TEST_BIG}\"\n", i);
	expect_scan_ok(text); /* 41 x 100,000 bytes: under 4 MiB */
	for (; i < 60; i++)
		p += sprintf(p, "b%d = ${KEEL_TEST_BIG}\n", i);
	expect_scan_error(text, F ":42: ${KEEL_TEST_BIG} (100000 bytes) makes "
				  "the expanded configuration larger than "
				  "4194304 bytes");
	unsetenv("KEEL_TEST_BIG");
	expect_scan_ok(text); /* unset: nothing */
	/* Single quotes expand nothing; a default counts when unset. */
	expect_scan_ok("a = '${KEEL_TEST_BIG}'\nb = \"${KEEL_TEST_BIG:-x}\"\n");
	free(big);
	free(text);
}

/* A realistic configuration, with every kind of token, passes. */
static void
test_scan_balanced(void **state)
{
	(void)state;
	expect_scan_ok("");
	expect_scan_ok("\n\n");
	expect_scan_ok("# keeld.conf\n"
		       "pidfile    = \"/run/keeld.pid\"\n"
		       "log-level  = \"info\"\n"
		       "shutdown-timeout = 5\n"
		       "load = { \"heartbeat\" }\n"
		       "\n"
		       "heartbeat main {\n"
		       "  message  = \"keeld is alive\"\n"
		       "  interval = 60\n"
		       "}\n"
		       "http {\n"
		       "  inner x { y = 1 }\n"
		       "  list = { 1, 2, 3 }\n"
		       "}\n"
		       "include(\"other.conf\")\n");
	expect_scan_ok("a{b{c{}}}"); /* no spaces needed */
	expect_scan_ok("a {\r\n}\r\n");
}

/* A section missing its '}' at EOF fails with the line of its '{'. */
static void
test_scan_unclosed_section(void **state)
{
	(void)state;
	expect_scan_error(
		"heartbeat main {\n  interval = 60\n",
		F ":1: section 'heartbeat' is not closed (missing '}' before "
		  "the end of the file)");
	expect_scan_error(
		"# comment\n"
		"pidfile = \"/run/k.pid\"\n"
		"\n"
		"/* several\n lines */\n"
		"http {\n" /* line 6 */
		"  a {\n"
		"  }\n"
		"  b {\n"
		"    c = \"x\ny\"\n"
		"  }\n",
		F ":6: section 'http' is not closed (missing '}' before the "
		  "end of the file)");
	/* The innermost open brace is the one reported. */
	expect_scan_error("http {\n  inner {\n    x = 1\n",
			  F ":2: section is not closed (missing '}' before "
			    "the end of the file)");
	/* An opening brace on its own line is the line reported. */
	expect_scan_error("http\n\n{\n",
			  F ":3: section 'http' is not closed (missing '}' "
			    "before the end of the file)");
}

/* An unclosed list is named as a list. */
static void
test_scan_unclosed_list(void **state)
{
	(void)state;
	expect_scan_error("\nload = { \"a\",\n  \"b\"\n",
			  F ":2: list is not closed (missing '}' before the "
			    "end of the file)");
}

/* A '}' without its '{' fails with its own line. */
static void
test_scan_stray_close(void **state)
{
	(void)state;
	expect_scan_error("a = 1\n}\n", F ":2: '}' without a matching '{'");
	expect_scan_error("a { }\n\n}}\n", F ":3: '}' without a matching '{'");
	expect_scan_error("}", F ":1: '}' without a matching '{'");
}

/* An unterminated string fails with the line where it starts. */
static void
test_scan_unterminated_string(void **state)
{
	(void)state;
	expect_scan_error("a = 1\nb = \"abc\n\n\n",
			  F ":2: string is not closed");
	expect_scan_error("a = 1\n\nb = 'abc\n", F ":3: string is not closed");
	expect_scan_error("\"", F ":1: string is not closed");
	/* An escaped quote does not end a double-quoted string. */
	expect_scan_error("a = \"x\\\"\n", F ":1: string is not closed");
	/* A backslash as the very last byte. */
	expect_scan_error("a = \"\\", F ":1: string is not closed");
	/* A quote of the other kind does not end it. */
	expect_scan_error("a = \"x'\n", F ":1: string is not closed");
}

/* An unterminated comment fails with the line where it starts. */
static void
test_scan_unterminated_comment(void **state)
{
	(void)state;
	expect_scan_error("a = 1\n/* hello\n\n", F ":2: comment is not closed");
	expect_scan_error("/*/", F ":1: comment is not closed");
	expect_scan_error("/*", F ":1: comment is not closed");
	expect_scan_error("x\n\n/* a *\n", F ":3: comment is not closed");
	expect_scan_ok("/**/");
	expect_scan_ok("/* * / ** */");
}

/* Braces and quotes inside comments and strings do not count. */
static void
test_scan_braces_in_strings_and_comments(void **state)
{
	(void)state;
	expect_scan_ok("# {\n"
		       "// {\n"
		       "/* { \" ' */\n"
		       "x = \"{\"\n"
		       "y = '}'\n"
		       "z = \"a \\\" } b\"\n"
		       "w = \"#\" // \" {\n");
}

/* Lines are counted through strings and comments. */
static void
test_scan_line_counting(void **state)
{
	(void)state;
	expect_scan_error("a = \"x\ny\"\n}\n",
			  F ":3: '}' without a matching '{'");
	expect_scan_error("/*\n\n*/\n}", F ":4: '}' without a matching '{'");
	expect_scan_error("a = \"x\\\ny\"\n}\n",
			  F ":3: '}' without a matching '{'");
	expect_scan_error("# }\n// }\n}\n", F ":3: '}' without a matching '{'");
	expect_scan_error("a = 'x\n\ny'\n}",
			  F ":4: '}' without a matching '{'");
}

/* Build @n nested sections, one per line, closed when @close. */
static char *
nested(int n, int close)
{
	char *s = malloc((size_t)n * 6 + 1), *p;
	int i;

	assert_non_null(s);
	p = s;
	for (i = 0; i < n; i++)
		p += sprintf(p, "a {\n");
	for (i = 0; close && i < n; i++)
		p += sprintf(p, "}\n");
	*p = '\0';
	return s;
}

/* CONFIG_MAX_DEPTH levels pass; one more fails at the line of that '{'. */
static void
test_scan_depth(void **state)
{
	char expect[128];
	char *s;

	(void)state;
	s = nested(CONFIG_MAX_DEPTH, 1);
	expect_scan_ok(s);
	free(s);
	s = nested(CONFIG_MAX_DEPTH + 1, 1);
	snprintf(expect, sizeof(expect), F ":%d: nested deeper than %d",
		 CONFIG_MAX_DEPTH + 1, CONFIG_MAX_DEPTH);
	expect_scan_error(s, expect);
	free(s);
	/* Far deeper (libconfuse would recurse once per level). */
	s = nested(50000, 0);
	expect_scan_error(s, expect);
	free(s);
}

/* A NUL byte is refused with its line. */
static void
test_scan_nul_byte(void **state)
{
	static const char a[] = "a = 1\n\0b = 2\n";
	static const char b[] = "abc\0";
	static const char c[] = "x {\n}\n\n\0";

	(void)state;
	expect_scan_error_n(a, sizeof(a) - 1,
			    F ":2: NUL byte in configuration");
	expect_scan_error_n(b, sizeof(b) - 1,
			    F ":1: NUL byte in configuration");
	expect_scan_error_n(c, sizeof(c) - 1,
			    F ":4: NUL byte in configuration");
}

/* Assert the recorded section @i. */
static void
expect_section(const struct config_scan *sc, size_t i, const char *file,
	       const char *name, const char *title, int line)
{
	assert_true(i < sc->nsecs);
	assert_string_equal(sc->secs[i].file, file);
	assert_string_equal(sc->secs[i].name, name);
	assert_string_equal(sc->secs[i].title, title);
	assert_int_equal(sc->secs[i].line, line);
}

/* Top-level sections are recorded with name, title and opening line. */
static void
test_scan_section_positions(void **state)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };

	(void)state;
	assert_int_equal(scan("# positions\n"
			      "heartbeat a {\n" /* 2 */
			      "  nested x {\n"
			      "  }\n"
			      "}\n"
			      "heartbeat \"b c\" {\n" /* 6 */
			      "  interval = 1\n"
			      "}\n"
			      "load = { \"a\", \"b\" }\n"
			      "http {\n" /* 10 */
			      "}\n"
			      "serial 'tty S0'\n"
			      "{\n" /* 13 */
			      "}\n",
			      &sc, &eb),
			 0);
	assert_int_equal(sc.nsecs, 4);
	expect_section(&sc, 0, F, "heartbeat", "a", 2);
	expect_section(&sc, 1, F, "heartbeat", "b c", 6);
	expect_section(&sc, 2, F, "http", "", 10);
	expect_section(&sc, 3, F, "serial", "tty S0", 13);
	config_scan_free(&sc);
	assert_int_equal(sc.nsecs, 0);
	assert_null(sc.secs);
}

/* List values in braces are not sections. */
static void
test_scan_lists_are_not_sections(void **state)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };

	(void)state;
	assert_int_equal(scan("load = { \"a\", \"b\" }\n"
			      "load += { \"c\" }\n"
			      "ports={1,2}\n",
			      &sc, &eb),
			 0);
	assert_int_equal(sc.nsecs, 0);
	config_scan_free(&sc);
}

/* Scans accumulate (main file, then includes), each with its file. */
static void
test_scan_accumulates_files(void **state)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };
	const char *inc = "\n\nhttp {\n}\n";

	(void)state;
	assert_int_equal(scan("heartbeat a {\n}\n", &sc, &eb), 0);
	assert_int_equal(
		config_scan_text("inc.conf", inc, strlen(inc), &sc, &eb), 0);
	assert_int_equal(sc.nsecs, 2);
	expect_section(&sc, 0, F, "heartbeat", "a", 1);
	expect_section(&sc, 1, "inc.conf", "http", "", 3);
	config_scan_free(&sc);
}

/* Top-level pidfile and state-file values are recorded, quotes removed. */
static void
test_scan_paths_recorded(void **state)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };

	(void)state;
	assert_int_equal(scan("pidfile = \"/run/a.pid\"\n"
			      "state-file = '/run/keel/st'\n",
			      &sc, &eb),
			 0);
	assert_string_equal(sc.pidfile, "/run/a.pid");
	assert_string_equal(sc.statefile, "/run/keel/st");
	config_scan_free(&sc);
	assert_null(sc.pidfile);
	assert_null(sc.statefile);

	/* Unquoted, repeated (the last one wins, as in libconfuse). */
	assert_int_equal(scan("pidfile = /run/one.pid\n"
			      "pidfile=/run/two.pid\n",
			      &sc, &eb),
			 0);
	assert_string_equal(sc.pidfile, "/run/two.pid");
	assert_null(sc.statefile);
	config_scan_free(&sc);

	/* Inside a section, or a longer key: not the daemon's paths. */
	assert_int_equal(scan("http {\n  pidfile = \"/x\"\n}\n"
			      "pidfiles = \"/y\"\n"
			      "my-state-file = \"/z\"\n",
			      &sc, &eb),
			 0);
	assert_null(sc.pidfile);
	assert_null(sc.statefile);
	config_scan_free(&sc);
}

/* With a clean buffer, comments are blanked; newlines and strings stay. */
static void
test_scan_clean_copy(void **state)
{
	static const char text[] = "a = \"# not\" # yes\n"
				   "/* x\ny */ b = '//'\n"
				   "c = 1// d\n";
	static const char expect[] = "a = \"# not\"      \n"
				     "    \n     b = '//'\n"
				     "c = 1// d\n";
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };
	char clean[sizeof(text)];

	(void)state;
	memcpy(clean, text, sizeof(text));
	sc.clean = clean;
	assert_int_equal(scan(text, &sc, &eb), 0);
	assert_string_equal(clean, expect);
	config_scan_free(&sc);
	/* In place, as config_load does it. */
	memcpy(clean, text, sizeof(text));
	sc.clean = clean;
	assert_int_equal(scan(clean, &sc, &eb), 0);
	assert_string_equal(clean, expect);
	config_scan_free(&sc);
}

/* A failed scan still leaves a structure config_scan_free can free. */
static void
test_scan_free_after_error(void **state)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };

	(void)state;
	assert_int_equal(scan("pidfile = \"/p\"\na {\n}\nb {\n", &sc, &eb), -1);
	assert_int_equal(sc.nsecs, 2);
	config_scan_free(&sc);
	config_scan_free(&sc);
	errbuf_clear(&eb);
}

/* ---- config_read_file ---- */

static const struct keel_app app = {
	KEEL_APP_HEAD,
	.name = "keeld",
	.version = "0",
	.config = "/etc/keeld.conf",
};

struct fixture {
	char *dir;
	char *main; /* dir/keeld.conf */
	struct keel k;
};

/* A temp dir, a zeroed daemon context pointing at it. */
static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = unit_tmpdir();
	f->main = unit_path(f->dir, "keeld.conf");
	memset(&f->k, 0, sizeof(f->k));
	f->k.opt.app = &app;
	f->k.app = &app;
	f->k.opt.module_path = f->dir;
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
	free(f->main);
	free(f);
	return 0;
}

/* config_read_file on @path fails with exactly @expect. */
static void
expect_read_error(const char *path, const char *expect)
{
	struct errbuf eb = { 0 };
	char *text = (char *)1;
	size_t len = 7;

	assert_int_equal(config_read_file(path, &text, &len, &eb), -1);
	assert_int_equal(eb.count, 1);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
}

/* A regular file is read whole and NUL-terminated. */
static void
test_read_regular(void **state)
{
	struct fixture *f = *state;
	static const char data[] = "a = 1\n\0binary\xff";
	struct errbuf eb = { 0 };
	char *text = NULL;
	size_t len = 0;

	unit_write(f->main, data, sizeof(data) - 1);
	assert_int_equal(config_read_file(f->main, &text, &len, &eb), 0);
	assert_int_equal(len, sizeof(data) - 1);
	assert_memory_equal(text, data, len);
	assert_int_equal(text[len], '\0');
	assert_int_equal(eb.count, 0);
	free(text);
}

/* An empty file is an empty text, not an error. */
static void
test_read_empty(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char *text = NULL;
	size_t len = 99;

	unit_write(f->main, "", 0);
	assert_int_equal(config_read_file(f->main, &text, &len, &eb), 0);
	assert_non_null(text);
	assert_int_equal(len, 0);
	assert_string_equal(text, "");
	free(text);
}

/* A missing file names the path and the reason. */
static void
test_read_missing(void **state)
{
	struct fixture *f = *state;
	char expect[4200];

	snprintf(expect, sizeof(expect), "%s: cannot open: %s", f->main,
		 strerror(ENOENT));
	expect_read_error(f->main, expect);
}

/* A directory is refused as such. */
static void
test_read_directory(void **state)
{
	struct fixture *f = *state;
	char expect[4200];

	snprintf(expect, sizeof(expect),
		 "%s: is a directory, not a configuration file", f->dir);
	expect_read_error(f->dir, expect);
}

/* In a child: read a FIFO nobody writes to. */
static int
child_read_fifo(void *arg)
{
	struct errbuf eb = { 0 };
	char *text = NULL;
	size_t len;

	if (config_read_file(arg, &text, &len, &eb) != -1)
		return 2;
	if (eb.first == NULL || strstr(eb.first, "not a regular file") == NULL)
		return 3;
	return 0;
}

/* A FIFO is refused at once, without waiting for a writer. */
static void
test_read_fifo_does_not_block(void **state)
{
	struct fixture *f = *state;
	char *fifo = unit_path(f->dir, "fifo.conf");

	assert_int_equal(mkfifo(fifo, 0600), 0);
	/* The child is killed (and the test fails) if it blocks 5 s. */
	assert_int_equal(unit_in_child(child_read_fifo, fifo, 5000), 0);
	free(fifo);
}

/* A character device is not a configuration file either. */
static void
test_read_device(void **state)
{
	(void)state;
	expect_read_error("/dev/null", "/dev/null: not a regular file");
}

/* Make @path a file of @size zero bytes. */
static void
make_sized(const char *path, off_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_int_not_equal(fd, -1);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

/* CONFIG_MAX_SIZE bytes are read; one more byte is refused. */
static void
test_read_size_limit(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char expect[4200];
	char *text = NULL;
	size_t len = 0;

	make_sized(f->main, CONFIG_MAX_SIZE);
	assert_int_equal(config_read_file(f->main, &text, &len, &eb), 0);
	assert_int_equal(len, CONFIG_MAX_SIZE);
	free(text);

	make_sized(f->main, CONFIG_MAX_SIZE + 1);
	snprintf(expect, sizeof(expect), "%s: too large (%d bytes, at most %d)",
		 f->main, CONFIG_MAX_SIZE + 1, CONFIG_MAX_SIZE);
	expect_read_error(f->main, expect);
}

/* ---- config_peek_paths ---- */

/* Paths are found even in a file that no longer parses. */
static void
test_peek_broken_file(void **state)
{
	struct fixture *f = *state;
	char *pid = NULL, *st = NULL;

	unit_write_str(f->main, "pidfile = \"/run/x/keeld.pid\"\n"
				"state-file = \"/run/x/state\"\n"
				"no-such-option = 3\n"
				"http {\n");
	assert_int_equal(config_peek_paths(f->main, &pid, &st), 0);
	assert_string_equal(pid, "/run/x/keeld.pid");
	assert_string_equal(st, "/run/x/state");
	free(pid);
	free(st);
}

/* Paths the file does not set are NULL. */
static void
test_peek_unset(void **state)
{
	struct fixture *f = *state;
	char *pid = (char *)1, *st = (char *)1;

	unit_write_str(f->main, "log-level = \"debug\"\n");
	assert_int_equal(config_peek_paths(f->main, &pid, &st), 0);
	assert_null(pid);
	assert_null(st);
}

/* A missing file is an error, and both paths are NULL. */
static void
test_peek_missing(void **state)
{
	struct fixture *f = *state;
	char *pid = (char *)1, *st = (char *)1;

	assert_int_equal(config_peek_paths(f->main, &pid, &st), -1);
	assert_null(pid);
	assert_null(st);
}

/* ---- config_load without modules ---- */

/* Load @text as the main file; the configuration or NULL. */
static struct config *
load(struct fixture *f, const char *text, struct errbuf *eb)
{
	unit_write_str(f->main, text);
	return config_load(&f->k, f->main, eb);
}

/* Loading @text fails and the first error is "MAIN:@line: @msg". */
static void
expect_load_error(struct fixture *f, const char *text, int line,
		  const char *msg)
{
	struct errbuf eb = { 0 };
	char expect[4200];
	struct config *c = load(f, text, &eb);

	if (c != NULL) {
		config_free(c);
		fail_msg("loaded, expected %s:%d: %s", f->main, line, msg);
	}
	snprintf(expect, sizeof(expect), "%s:%d: %s", f->main, line, msg);
	assert_non_null(eb.first);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
}

/* The index of @name in the core's log-level words. */
enum { LVL_ERROR, LVL_WARNING, LVL_NOTICE, LVL_INFO, LVL_DEBUG };

/* A valid file loads, with its values and the defaults. */
static void
test_load_valid(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct config *c;

	c = load(f,
		 "pidfile = \"/run/x.pid\"\n"
		 "log = \"stderr\"\n"
		 "log-level = debug\n"
		 "shutdown-timeout = 2.5\n"
		 "load = {}\n",
		 &eb);
	assert_non_null(c);
	assert_int_equal(eb.count, 0);
	assert_string_equal(c->path, f->main);
	assert_string_equal(c->core.pidfile, "/run/x.pid");
	assert_string_equal(c->core.log, "stderr");
	assert_int_equal(c->core.level, LVL_DEBUG);
	assert_int_equal(core_level(&c->core), KEEL_LOG_DEBUG);
	assert_string_equal(c->core.statefile, "/run/keeld/state");
	assert_true(c->core.shutdown_timeout == 2.5);
	assert_int_equal(c->core.load.n, 0);
	assert_null(c->core.user);
	assert_null(c->core.group);
	assert_int_equal(c->nsecs, 0);
	config_free(c);
}

/* An empty file loads with every default. */
static void
test_load_empty(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct config *c = load(f, "", &eb);

	assert_non_null(c);
	assert_string_equal(c->core.pidfile, "/run/keeld.pid");
	assert_string_equal(c->core.statefile, "/run/keeld/state");
	assert_null(c->core.log);
	assert_int_equal(c->core.level, LVL_INFO);
	assert_true(c->core.shutdown_timeout == 5.0);
	assert_int_equal(c->core.load.n, 0);
	config_free(c);
}

/* The application's pidfile and state file replace /run/NAME.*. */
static void
test_load_app_paths(void **state)
{
	static const struct keel_app own = {
		KEEL_APP_HEAD,
		.name = "mydaemon",
		.version = "1",
		.config = "/etc/mydaemon.conf",
		.pidfile = "/var/run/my.pid",
		.statefile = "/var/lib/my/state",
	};
	static const struct keel_app named = {
		KEEL_APP_HEAD,
		.name = "mydaemon",
		.version = "1",
		.config = "/etc/mydaemon.conf",
	};
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct config *c;

	f->k.app = f->k.opt.app = &own;
	c = load(f, "", &eb);
	assert_non_null(c);
	assert_string_equal(c->core.pidfile, "/var/run/my.pid");
	assert_string_equal(c->core.statefile, "/var/lib/my/state");
	config_free(c);
	f->k.app = f->k.opt.app = &named;
	c = load(f, "", &eb);
	assert_non_null(c);
	assert_string_equal(c->core.pidfile, "/run/mydaemon.pid");
	assert_string_equal(c->core.statefile, "/run/mydaemon/state");
	config_free(c);
	/* The file wins over the application. */
	f->k.app = f->k.opt.app = &own;
	c = load(f, "pidfile = \"/run/file.pid\"\n", &eb);
	assert_non_null(c);
	assert_string_equal(c->core.pidfile, "/run/file.pid");
	assert_string_equal(c->core.statefile, "/var/lib/my/state");
	config_free(c);
	assert_int_equal(eb.count, 0);
}

/* An unknown option is reported with file and line. */
static void
test_load_unknown_option(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f, "log-level = \"info\"\n\nfrobnicate = 1\n", 3,
			  "no such option 'frobnicate'");
}

/* The pre-scan runs first: a truncated file names the open '{'. */
static void
test_load_truncated_section(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f, "pidfile = \"/run/k.pid\"\nhttp {\n  a = 1\n", 2,
			  "section 'http' is not closed (missing '}' before "
			  "the end of the file)");
}

/* Core validators report file, line and the reason, in option.c's words. */
static void
test_load_validators(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f, "\nlog-level = \"loud\"\n", 2,
			  "log-level 'loud' is not one of error, warning, "
			  "notice, info, debug");
	expect_load_error(f, "log = \"var/log/k\"\n", 1,
			  "log 'var/log/k' is not \"syslog\", \"stderr\" or "
			  "an absolute file path");
	expect_load_error(f, "user = \"\"\n", 1, "user is empty");
	expect_load_error(f, "\n\ngroup = \"\"\n", 3, "group is empty");
	expect_load_error(f, "shutdown-timeout = 0\n", 1,
			  "shutdown-timeout 0 is out of range (0.001 to 3600)");
	expect_load_error(f, "shutdown-timeout = 3600.5\n", 1,
			  "shutdown-timeout 3600.5 is out of range (0.001 to "
			  "3600)");
	expect_load_error(f, "shutdown-timeout = 2h\n", 1,
			  "shutdown-timeout 2h is out of range (0.001 to "
			  "3600)");
	expect_load_error(f, "\nshutdown-timeout = soon\n", 2,
			  "shutdown-timeout 'soon' is not a duration (seconds, "
			  "or with a unit: 500ms, 2s, 5m, 1h, 1d)");
	f->k.opt.module_path = NULL;
	expect_load_error(f, "load = { \"\" }\n", 1, "load: no module ''");
}

/* A duration with a unit is converted. */
static void
test_load_units(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct config *c;

	c = load(f, "shutdown-timeout = 500ms\n", &eb);
	assert_non_null(c);
	assert_true(c->core.shutdown_timeout == 0.5);
	config_free(c);
	c = load(f, "shutdown-timeout = \"1h\"\n", &eb);
	assert_non_null(c);
	assert_true(c->core.shutdown_timeout == 3600);
	config_free(c);
}

/*
 * pidfile and state-file must be absolute; the message names the option
 * like every other one ("OPT 'VALUE' is ..."). Known bug: config.c's
 * config_check_path writes "'run/k.pid' is not an absolute path".
 */
static void
test_load_path_validators(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f, "pidfile = \"run/k.pid\"\n", 1,
			  "pidfile 'run/k.pid' is not an absolute path");
	expect_load_error(f, "\n\nstate-file = \"\"\n", 3,
			  "state-file '' is not an absolute path");
}

/*
 * Lines stay exact after comments of every kind (libconfuse 3.3 alone
 * counts them wrong), in the main file and in an included one, which is
 * named by its path.
 */
static void
test_load_line_after_comments(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char *inc = unit_path(f->dir, "inc.conf");
	char expect[4200];

	expect_load_error(f,
			  "# one\n"
			  "// two\n"
			  "/* three\n"
			  "   four */\n"
			  "log-level = \"info\" # five\n"
			  "bogus = 1\n",
			  6, "no such option 'bogus'");
	/* A converted value's error too (the pre-scan's positions). */
	expect_load_error(f,
			  "# one\n"
			  "/* two\n"
			  "   three */ // x\n"
			  "log-level = \"loud\"\n",
			  4,
			  "log-level 'loud' is not one of error, warning, "
			  "notice, info, debug");
	unit_write_str(inc, "# c\n# c\n/* c */\n\nbogus = 1\n");
	assert_null(load(f, "# main\n\ninclude(\"inc.conf\")\n", &eb));
	snprintf(expect, sizeof(expect), "%s:5: no such option 'bogus'", inc);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
	/* A converted value set in an included file is reported there. */
	unit_write_str(inc, "# c\n\nlog-level = \"loud\"\n");
	assert_null(load(f, "# main\n\ninclude(\"inc.conf\")\n", &eb));
	snprintf(expect, sizeof(expect),
		 "%s:3: log-level 'loud' is not one of error, warning, "
		 "notice, info, debug",
		 inc);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
	free(inc);
}

/* A repeated option: the last value wins, and is the one reported. */
static void
test_load_duplicate_option(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct config *c;

	c = load(f, "log-level = \"debug\"\nlog-level = \"error\"\n", &eb);
	assert_non_null(c);
	assert_int_equal(c->core.level, LVL_ERROR);
	config_free(c);
	expect_load_error(f, "log-level = \"info\"\nlog-level = \"bogus\"\n", 2,
			  "log-level 'bogus' is not one of error, warning, "
			  "notice, info, debug");
}

/*
 * Each value of a repeated option is validated (as before module ABI 2),
 * at its own line. Known bug: config_fill (config.c:883) parses only the
 * last value of a scalar, so the bogus first one is accepted silently.
 */
static void
test_load_duplicate_option_each_validated(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f, "log-level = \"bogus\"\nlog-level = \"info\"\n", 1,
			  "log-level 'bogus' is not one of error, warning, "
			  "notice, info, debug");
}

/* `load` of a module not in the module path names it and the path. */
static void
test_load_unknown_module(void **state)
{
	struct fixture *f = *state;
	char msg[4200];

	snprintf(msg, sizeof(msg), "load: no module 'nosuch' in %s", f->dir);
	expect_load_error(f, "\nload = { \"nosuch\" }\n", 2, msg);
	/* Without a module path. */
	f->k.opt.module_path = NULL;
	expect_load_error(f, "\n\nload = { \"nosuch\" }\n", 3,
			  "load: no module 'nosuch'");
}

/* `load` of a refused module gives the reason it was refused. */
static void
test_load_refused_module(void **state)
{
	struct fixture *f = *state;
	char name[] = "broken", reason[] = "group-writable";
	struct module_refused r = { NULL, name, reason };

	f->k.refused = &r;
	expect_load_error(f, "load = { \"broken\" }\n", 1,
			  "load: module 'broken' cannot be used: "
			  "group-writable");
	f->k.refused = NULL;
}

/* include() of a missing file reports the including file and line. */
static void
test_load_include_missing(void **state)
{
	struct fixture *f = *state;
	char msg[4200];

	snprintf(msg, sizeof(msg),
		 "include(\"nosuch.conf\"): %s/nosuch.conf: cannot open: %s",
		 f->dir, strerror(ENOENT));
	expect_load_error(f, "log-level = \"info\"\ninclude(\"nosuch.conf\")\n",
			  2, msg);
}

/* include() resolves against the including file's directory, not cwd. */
static void
test_load_include_relative(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char *sub = unit_path(f->dir, "conf.d");
	char *inc = unit_path(sub, "a.conf");
	char *inc2 = unit_path(sub, "b.conf");
	char *cwd = getcwd(NULL, 0);
	struct config *c;

	assert_int_equal(mkdir(sub, 0700), 0);
	unit_write_str(inc, "log-level = \"debug\"\ninclude(\"b.conf\")\n");
	unit_write_str(inc2, "pidfile = \"/run/from-b.pid\"\n");
	assert_int_equal(chdir("/"), 0);
	c = load(f, "include(\"conf.d/a.conf\")\n", &eb);
	assert_int_equal(chdir(cwd), 0);
	if (c == NULL)
		fail_msg("include failed: %s", eb.first);
	assert_int_equal(c->core.level, LVL_DEBUG);
	assert_string_equal(c->core.pidfile, "/run/from-b.pid");
	/* Top-level positions name the file each option is written in. */
	assert_int_equal(c->scan.nroot, 2);
	assert_string_equal(c->scan.root[0].key, "log-level");
	assert_string_equal(c->scan.root[0].file, inc);
	assert_int_equal(c->scan.root[0].line, 1);
	assert_string_equal(c->scan.root[1].key, "pidfile");
	assert_string_equal(c->scan.root[1].file, inc2);
	assert_int_equal(c->scan.root[1].line, 1);
	config_free(c);
	free(sub);
	free(inc);
	free(inc2);
	free(cwd);
}

/* An included file is pre-scanned too: its truncation is reported there. */
static void
test_load_include_truncated(void **state)
{
	struct fixture *f = *state;
	char *inc = unit_path(f->dir, "inc.conf");
	struct errbuf eb = { 0 };
	char expect[4200];

	unit_write_str(inc, "# included\nhttp {\n");
	assert_null(load(f, "\ninclude(\"inc.conf\")\n", &eb));
	snprintf(expect, sizeof(expect),
		 "%s:2: section 'http' is not closed (missing '}' before the "
		 "end of the file)",
		 inc);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
	free(inc);
}

/* An error inside an included file is reported with that file's name. */
static void
test_load_include_error_location(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char *inc = unit_path(f->dir, "inc.conf");
	char expect[4200];
	struct config *c;

	unit_write_str(inc, "log-level = \"info\"\n\nbogus = 1\n");
	c = load(f, "include(\"inc.conf\")\n", &eb);
	assert_null(c);
	snprintf(expect, sizeof(expect), "%s:3: no such option 'bogus'", inc);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
	free(inc);
}

/* ---- include() of a pattern ---- */

/* Write @text to DIR/@name (DIR/@name's directory must exist). */
static void
write_in(const char *dir, const char *name, const char *text)
{
	char *path = unit_path(dir, name);

	unit_write_str(path, text);
	free(path);
}

/* A new directory @name under @dir; its path, to free. */
static char *
make_dir(const char *dir, const char *name)
{
	char *path = unit_path(dir, name);

	assert_int_equal(mkdir(path, 0700), 0);
	return path;
}

/* Load @text, which must succeed; the configuration. */
static struct config *
load_ok(struct fixture *f, const char *text)
{
	struct errbuf eb = { 0 };
	struct config *c = load(f, text, &eb);

	if (c == NULL)
		fail_msg("load failed: %s", eb.first);
	assert_int_equal(eb.count, 0);
	return c;
}

/* Load @text, which must fail; the first message is exactly @expect. */
static void
load_fails_with(struct fixture *f, const char *text, const char *expect)
{
	struct errbuf eb = { 0 };
	struct config *c = load(f, text, &eb);

	if (c != NULL) {
		config_free(c);
		fail_msg("loaded, expected %s", expect);
	}
	assert_non_null(eb.first);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
}

/*
 * The matches are read in bytewise order whatever the locale ("10" before
 * "2", upper case before lower case), each option at its own file, and a
 * later file's value wins, as a later line's does.
 */
static void
test_load_include_glob_sorted(void **state)
{
	struct fixture *f = *state;
	char *d = make_dir(f->dir, "conf.d");
	const char *order[] = { "10.conf", "2.conf", "B.conf", "a.conf",
				"b.conf" };
	char text[64];
	struct config *c;
	size_t i;

	for (i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "pidfile = \"/run/%zu.pid\"\n", i);
		write_in(d, order[4 - i], text);
	}
	c = load_ok(f, "log-level = debug\ninclude(\"conf.d/*.conf\")\n");
	assert_int_equal(c->scan.nroot, 6);
	for (i = 0; i < 5; i++) {
		char *want = unit_path(d, order[i]);

		assert_string_equal(c->scan.root[i + 1].key, "pidfile");
		assert_string_equal(c->scan.root[i + 1].file, want);
		free(want);
	}
	/* b.conf, read last, was written first (i = 0). */
	assert_string_equal(c->core.pidfile, "/run/0.pid");
	assert_int_equal(c->core.level, LVL_DEBUG);
	config_free(c);
	free(d);
}

/*
 * An empty directory, a missing one and a pattern matching nothing are
 * fine; hidden files and editor leftovers do not match `*.conf`; a plain
 * name that does not exist is still an error.
 */
static void
test_load_include_glob_empty(void **state)
{
	struct fixture *f = *state;
	char *d = make_dir(f->dir, "conf.d");
	char expect[4200];
	struct config *c;

	c = load_ok(f, "include(\"conf.d/*.conf\")\nlog-level = debug\n");
	assert_int_equal(c->core.level, LVL_DEBUG);
	config_free(c);
	config_free(load_ok(f, "include(\"nosuch.d/*.conf\")\n"));
	config_free(load_ok(f, "include(\"/nonexistent/dir/*.conf\")\n"));
	write_in(d, ".hidden.conf", "bogus = 1\n");
	write_in(d, "x.conf~", "bogus = 1\n");
	write_in(d, "x.conf.dpkg-old", "bogus = 1\n");
	config_free(load_ok(f, "include(\"conf.d/*.conf\")\n"));
	snprintf(expect, sizeof(expect),
		 "%s:2: include(\"conf.d/x.conf\"): %s/x.conf: cannot open: "
		 "%s",
		 f->main, d, strerror(ENOENT));
	load_fails_with(f, "\ninclude(\"conf.d/x.conf\")\n", expect);
	free(d);
}

/*
 * An error in a matched file names that file and its line, a scan error
 * too; a match that cannot be read names the pattern's include() line.
 */
static void
test_load_include_glob_errors(void **state)
{
	struct fixture *f = *state;
	char *d = make_dir(f->dir, "conf.d");
	char *sub, expect[4200];

	write_in(d, "a.conf", "log-level = info\n");
	write_in(d, "b.conf", "# b\n\nbogus = 1\n");
	snprintf(expect, sizeof(expect), "%s/b.conf:3: no such option 'bogus'",
		 d);
	load_fails_with(f, "include(\"conf.d/*.conf\")\n", expect);
	write_in(d, "b.conf", "\nlog-level = \"loud\"\n");
	snprintf(expect, sizeof(expect),
		 "%s/b.conf:2: log-level 'loud' is not one of error, "
		 "warning, notice, info, debug",
		 d);
	load_fails_with(f, "include(\"conf.d/*.conf\")\n", expect);
	write_in(d, "b.conf", "log-level = info\nhttp {\n");
	snprintf(expect, sizeof(expect),
		 "%s/b.conf:2: section 'http' is not closed (missing '}' "
		 "before the end of the file)",
		 d);
	load_fails_with(f, "include(\"conf.d/*.conf\")\n", expect);
	write_in(d, "b.conf", "\n");
	sub = make_dir(d, "c.conf");
	snprintf(expect, sizeof(expect),
		 "%s:3: include(\"conf.d/*.conf\"): %s: is a directory, not a "
		 "configuration file",
		 f->main, sub);
	load_fails_with(f, "\n\ninclude(\"conf.d/*.conf\")\n", expect);
	free(sub);
	free(d);
}

/*
 * A directory the glob cannot read is an error, not "no match": files
 * would be left out without a word (ELOOP, which root gets too).
 */
static void
test_load_include_glob_unreadable(void **state)
{
	struct fixture *f = *state;
	char *loop = unit_path(f->dir, "loop");
	char expect[4200];

	assert_int_equal(symlink("loop", loop), 0);
	snprintf(expect, sizeof(expect),
		 "%s:1: include(\"loop/*.conf\"): %s: %s", f->main, loop,
		 strerror(ELOOP));
	load_fails_with(f, "include(\"loop/*.conf\")\n", expect);
	free(loop);
}

/*
 * Matches are read one after the other, not nested: far more than
 * libconfuse's 10 levels load, up to the 64 includes; the 65th is an
 * error at the pattern's line.
 */
static void
test_load_include_glob_many(void **state)
{
	struct fixture *f = *state;
	char *d = make_dir(f->dir, "conf.d");
	char name[32], text[64], expect[4200];
	struct config *c;
	int i;

	for (i = 1; i <= 64; i++) {
		snprintf(name, sizeof(name), "%02d.conf", i);
		snprintf(text, sizeof(text), "pidfile = \"/run/%d.pid\"\n", i);
		write_in(d, name, text);
	}
	c = load_ok(f, "include(\"conf.d/*.conf\")\n");
	assert_int_equal(c->scan.nroot, 64);
	assert_string_equal(c->core.pidfile, "/run/64.pid");
	config_free(c);
	write_in(d, "65.conf", "\n");
	snprintf(expect, sizeof(expect),
		 "%s:2: include(\"conf.d/*.conf\"): 65 files: more than 64 "
		 "includes",
		 f->main);
	load_fails_with(f, "\ninclude(\"conf.d/*.conf\")\n", expect);
	free(d);
}

/*
 * A matched file may include a pattern of its own, relative to its own
 * directory; a pattern matching its own file is an include loop, which
 * leaves nothing behind in libconfuse (ten in a row, then a good load).
 */
static void
test_load_include_glob_nested(void **state)
{
	struct fixture *f = *state;
	char *d = make_dir(f->dir, "conf.d");
	char *sub = make_dir(d, "sub");
	char expect[4200];
	struct config *c;
	int i;

	write_in(d, "a.conf", "log-level = error\ninclude(\"sub/*.conf\")\n");
	write_in(d, "b.conf", "pidfile = \"/run/b.pid\"\n");
	write_in(sub, "1.conf", "log-level = debug\n");
	c = load_ok(f, "include(\"conf.d/*.conf\")\n");
	assert_int_equal(c->core.level, LVL_DEBUG);
	assert_string_equal(c->core.pidfile, "/run/b.pid");
	config_free(c);
	write_in(sub, "2.conf", "\nbad = 1\n");
	snprintf(expect, sizeof(expect), "%s/2.conf:2: no such option 'bad'",
		 sub);
	load_fails_with(f, "include(\"conf.d/*.conf\")\n", expect);
	write_in(d, "a.conf", "\n");
	write_in(d, "b.conf", "include(\"*.conf\")\n");
	snprintf(expect, sizeof(expect),
		 "%s/b.conf:1: includes nested too deeply", d);
	for (i = 0; i < 10; i++)
		load_fails_with(f, "include(\"conf.d/*.conf\")\n", expect);
	write_in(d, "b.conf", "pidfile = \"/run/b2.pid\"\n");
	c = load_ok(f, "include(\"conf.d/*.conf\")\n");
	assert_string_equal(c->core.pidfile, "/run/b2.pid");
	config_free(c);
	free(sub);
	free(d);
}

/*
 * The pattern is expanded at every load: a file added to the directory
 * is read by the next one (a reload). The including file's directory is
 * not a pattern, even when its name holds '[' or '*'.
 */
static void
test_load_include_glob_each_load(void **state)
{
	struct fixture *f = *state;
	char *odd = make_dir(f->dir, "a[1]*");
	char *d = make_dir(odd, "conf.d");
	char *conf = unit_path(odd, "keeld.conf");
	struct errbuf eb = { 0 };
	struct config *c;

	unit_write_str(conf, "include(\"conf.d/*.conf\")\n");
	c = config_load(&f->k, conf, &eb);
	assert_non_null(c);
	assert_int_equal(c->core.level, LVL_INFO);
	config_free(c);
	write_in(d, "new.conf", "log-level = debug\n");
	c = config_load(&f->k, conf, &eb);
	if (c == NULL)
		fail_msg("load failed: %s", eb.first);
	assert_int_equal(c->core.level, LVL_DEBUG);
	config_free(c);
	free(conf);
	free(d);
	free(odd);
}

/* ${VAR} and ${VAR:-default} expand inside double quotes. */
static void
test_load_env_expansion(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct config *c;

	assert_int_equal(setenv("KEEL_UNIT_RUNDIR", "/run/unit", 1), 0);
	unsetenv("KEEL_UNIT_UNSET");
	c = load(f,
		 "pidfile = \"${KEEL_UNIT_RUNDIR}/k.pid\"\n"
		 "state-file = \"${KEEL_UNIT_UNSET:-/var/lib/k}/state\"\n",
		 &eb);
	unsetenv("KEEL_UNIT_RUNDIR");
	assert_non_null(c);
	assert_string_equal(c->core.pidfile, "/run/unit/k.pid");
	assert_string_equal(c->core.statefile, "/var/lib/k/state");
	config_free(c);
}

/* Assert option position @i of @arr. */
static void
expect_opt(const struct config_opt_pos *arr, size_t n, size_t i,
	   const char *key, int line)
{
	assert_true(i < n);
	assert_string_equal(arr[i].key, key);
	assert_int_equal(arr[i].line, line);
}

/*
 * The pre-scan records where each option is written: per section (depth 1
 * only) and at the top level, with the top level's file; `load` as
 * written, the last one counting.
 */
static void
test_scan_option_positions(void **state)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };

	(void)state;
	assert_int_equal(scan("# positions\n"
			      "pidfile = \"/run/p\"\n" /* 2 */
			      "heartbeat a {\n"        /* 3 */
			      "  interval = 5\n"       /* 4 */
			      "  nested x {\n"
			      "    deep = 1\n" /* not recorded */
			      "  }\n"
			      "\n"
			      "  message=\"hi\"\n" /* 9 */
			      "}\n"
			      "load = { \"heartbeat\", 'http' }\n" /* 11 */
			      "http {\n"                           /* 12 */
			      "  list = { 1, 2 }\n"                /* 13 */
			      "}\n"
			      "log-level = debug\n", /* 15 */
			      &sc, &eb),
			 0);
	assert_int_equal(sc.nsecs, 2);
	expect_section(&sc, 0, F, "heartbeat", "a", 3);
	assert_int_equal(sc.secs[0].nopts, 2);
	expect_opt(sc.secs[0].opts, sc.secs[0].nopts, 0, "interval", 4);
	expect_opt(sc.secs[0].opts, sc.secs[0].nopts, 1, "message", 9);
	assert_null(sc.secs[0].opts[0].file);
	expect_section(&sc, 1, F, "http", "", 12);
	assert_int_equal(sc.secs[1].nopts, 1);
	expect_opt(sc.secs[1].opts, sc.secs[1].nopts, 0, "list", 13);
	assert_int_equal(sc.nroot, 3);
	expect_opt(sc.root, sc.nroot, 0, "pidfile", 2);
	expect_opt(sc.root, sc.nroot, 1, "load", 11);
	expect_opt(sc.root, sc.nroot, 2, "log-level", 15);
	assert_string_equal(sc.root[0].file, F);
	assert_int_equal(sc.load.n, 2);
	assert_string_equal(sc.load.v[0], "heartbeat");
	assert_string_equal(sc.load.v[1], "http");
	config_scan_free(&sc);
	assert_int_equal(sc.nroot, 0);
	assert_null(sc.root);
	assert_int_equal(sc.load.n, 0);
	assert_null(sc.load.v);

	/* The last `load` counts; bare words are names too. */
	assert_int_equal(scan("load = { a, b }\nload = { c }\n", &sc, &eb), 0);
	assert_int_equal(sc.load.n, 1);
	assert_string_equal(sc.load.v[0], "c");
	assert_int_equal(sc.nroot, 2);
	expect_opt(sc.root, sc.nroot, 1, "load", 2);
	config_scan_free(&sc);
	/* `load` inside a section is not the top-level one. */
	assert_int_equal(scan("x {\n load = { a }\n}\n", &sc, &eb), 0);
	assert_int_equal(sc.load.n, 0);
	config_scan_free(&sc);
	assert_int_equal(eb.count, 0);
}

/* A loaded configuration keeps the positions, and config_opt_line uses
 * the last assignment of an option. */
static void
test_load_positions(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	const char *file = NULL;
	struct config *c;

	c = load(f,
		 "\n"
		 "log-level = info\n" /* 2 */
		 "load = {}\n"        /* 3 */
		 "# x\n"
		 "log-level = debug\n", /* 5 */
		 &eb);
	assert_non_null(c);
	assert_int_equal(c->scan.nroot, 3);
	assert_int_equal(config_opt_line(c, NULL, "log-level", &file), 5);
	assert_string_equal(file, f->main);
	assert_int_equal(config_opt_line(c, NULL, "load", &file), 3);
	assert_int_equal(config_opt_line(c, NULL, "pidfile", &file), 0);
	assert_int_equal(config_opt_line(c, NULL, NULL, &file), 0);
	assert_int_equal(c->scan.load.n, 0);
	config_free(c);
}

/* The sections of a failed load are still reported at their lines. */
static void
test_load_section_lines(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char expect[4200];

	/* No module declares these sections, so libconfuse refuses them. */
	assert_null(
		load(f, "\nheartbeat a {\n}\n\nheartbeat \"b c\" {\n}\n", &eb));
	assert_true(eb.count > 0);
	snprintf(expect, sizeof(expect), "%s:2: no such option 'heartbeat'",
		 f->main);
	assert_string_equal(eb.first, expect);
	errbuf_clear(&eb);
}

/*
 * config_load must not keep the caller's errbuf as its error sink once it
 * returns (keel.c passes a stack errbuf): the next load reports into its
 * own errbuf only, and nothing is written through the stale pointer.
 */
static void
test_load_error_sink_outlives_call(void **state)
{
	struct fixture *f = *state;
	struct errbuf *eb = calloc(1, sizeof(*eb));
	struct errbuf eb2 = { 0 };
	struct config *c;
	int before;

	assert_non_null(eb);
	c = load(f, "log-level = \"info\"\n", eb);
	assert_non_null(c);
	before = eb->count;
	config_free(c);
	assert_null(load(f, "bogus = 1\n", &eb2));
	assert_int_equal(eb->count, before);
	assert_int_equal(eb2.count, 1);
	errbuf_clear(&eb2);
	errbuf_clear(eb);
	free(eb);
}

/* ---- tests of behaviour once broken ---- */

/*
 * An untitled section after a `key = bareword` line was recorded as
 * section "bareword" titled with the section's name.
 */
static void
test_scan_untitled_after_bare_value(void **state)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };

	(void)state;
	assert_int_equal(scan("log-level = info\nhttp {\n}\n", &sc, &eb), 0);
	assert_int_equal(sc.nsecs, 1);
	expect_section(&sc, 0, F, "http", "", 2);
	config_scan_free(&sc);
}

/* libconfuse treats \' as an escape inside single quotes. */
static void
test_scan_single_quote_escape(void **state)
{
	(void)state;
	expect_scan_ok("title = 'it\\'s'\n");
}

/* The same mismatch must not hide a missing '}'. */
static void
test_scan_single_quote_hides_truncation(void **state)
{
	(void)state;
	expect_scan_error("http {\n  s = 'x\\' }'\n# '\n",
			  F ":1: section 'http' is not closed (missing '}' "
			    "before the end of the file)");
}

/* A NUL byte inside a quoted string is refused. */
static void
test_scan_nul_in_string(void **state)
{
	static const char a[] = "pidfile = \"/run/a\0/b\"\n";

	(void)state;
	expect_scan_error_n(a, sizeof(a) - 1,
			    F ":1: NUL byte in configuration");
}

/* ${...} with a quote inside must not hide a truncated section. */
static void
test_scan_env_token_hides_truncation(void **state)
{
	(void)state;
	expect_scan_error("http {\n  a = ${X\"}\n  b = \"} } '\"  # '\n",
			  F ":1: section 'http' is not closed (missing '}' "
			    "before the end of the file)");
}

/* config_peek_paths expands ${VAR} as the daemon does. */
static void
test_peek_expands_env(void **state)
{
	struct fixture *f = *state;
	char *pid = NULL, *st = NULL;

	assert_int_equal(setenv("KEEL_UNIT_RUNDIR", "/run/unit", 1), 0);
	unit_write_str(f->main, "pidfile = \"${KEEL_UNIT_RUNDIR}/k.pid\"\n"
				"broken {\n");
	assert_int_equal(config_peek_paths(f->main, &pid, &st), 0);
	unsetenv("KEEL_UNIT_RUNDIR");
	assert_non_null(pid);
	if (strcmp(pid, "/run/unit/k.pid") != 0) {
		char got[256];

		snprintf(got, sizeof(got), "%s", pid);
		free(pid);
		fail_msg("peeked pidfile '%s', the daemon uses "
			 "'/run/unit/k.pid'",
			 got);
	}
	free(pid);
	free(st);
}

#define FT(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_scan_expansion_bounded),
	cmocka_unit_test(test_scan_balanced),
	cmocka_unit_test(test_scan_unclosed_section),
	cmocka_unit_test(test_scan_unclosed_list),
	cmocka_unit_test(test_scan_stray_close),
	cmocka_unit_test(test_scan_unterminated_string),
	cmocka_unit_test(test_scan_unterminated_comment),
	cmocka_unit_test(test_scan_braces_in_strings_and_comments),
	cmocka_unit_test(test_scan_line_counting),
	cmocka_unit_test(test_scan_depth),
	cmocka_unit_test(test_scan_nul_byte),
	cmocka_unit_test(test_scan_section_positions),
	cmocka_unit_test(test_scan_lists_are_not_sections),
	cmocka_unit_test(test_scan_accumulates_files),
	cmocka_unit_test(test_scan_paths_recorded),
	cmocka_unit_test(test_scan_clean_copy),
	cmocka_unit_test(test_scan_free_after_error),
	cmocka_unit_test(test_scan_option_positions),
	FT(test_read_regular),
	FT(test_read_empty),
	FT(test_read_missing),
	FT(test_read_directory),
	FT(test_read_fifo_does_not_block),
	cmocka_unit_test(test_read_device),
	FT(test_read_size_limit),
	FT(test_peek_broken_file),
	FT(test_peek_unset),
	FT(test_peek_missing),
	FT(test_load_valid),
	FT(test_load_empty),
	FT(test_load_app_paths),
	FT(test_load_unknown_option),
	FT(test_load_truncated_section),
	FT(test_load_validators),
	FT(test_load_units),
	FT(test_load_line_after_comments),
	FT(test_load_duplicate_option),
	FT(test_load_unknown_module),
	FT(test_load_refused_module),
	FT(test_load_include_missing),
	FT(test_load_include_relative),
	FT(test_load_include_truncated),
	FT(test_load_include_error_location),
	FT(test_load_include_glob_sorted),
	FT(test_load_include_glob_empty),
	FT(test_load_include_glob_errors),
	FT(test_load_include_glob_unreadable),
	FT(test_load_include_glob_many),
	FT(test_load_include_glob_nested),
	FT(test_load_include_glob_each_load),
	FT(test_load_env_expansion),
	FT(test_load_positions),
	FT(test_load_section_lines),
	FT(test_load_error_sink_outlives_call),
	cmocka_unit_test(test_scan_untitled_after_bare_value),
	cmocka_unit_test(test_scan_single_quote_escape),
	cmocka_unit_test(test_scan_single_quote_hides_truncation),
	cmocka_unit_test(test_scan_nul_in_string),
	cmocka_unit_test(test_scan_env_token_hides_truncation),
	FT(test_peek_expands_env),
	FT(test_load_path_validators),
	FT(test_load_duplicate_option_each_validated),
};

/* Known bugs in lib/ (see tests/unit/CMakeLists.txt). */
static const struct CMUnitTest known[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};

UNIT_MAIN("config", tests, known)
