/* SPDX-License-Identifier: ISC */
/* Configuration: schema from the core and the modules, strict parsing. */
#include "keel-internal.h"

#include <confuse.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the parse under way reports to and records; parsing is not reentrant. */
#define CONFIG_MAX_INCLUDES 64

/*
 * One memfd libconfuse reads in place of a file: an included file's
 * cleaned text, or the list `include("0") include("1") ...` standing for
 * the sorted matches of a pattern (docs/design-core.md).
 */
struct config_inc {
	int fd;
	char *name;     /* "/proc/self/fd/N", as libconfuse names it */
	char *path;     /* the real file; a list: the file of its include() */
	int line;       /* a list: the line of its include(); a file: 0 */
	char *pattern;  /* a list: the pattern as written */
	glob_t matches; /* a list: the files, sorted bytewise */
};

static struct {
	struct errbuf *eb;
	struct config_scan *scan; /* the configuration being parsed */
	struct keel *k;
	/* Includes and pattern lists; at most CONFIG_MAX_INCLUDES files. */
	struct config_inc inc[2 * CONFIG_MAX_INCLUDES + 1];
	int ninc;
	int nfiles;
	/* The first directory a glob could not read, and why. */
	char glob_path[PATH_MAX];
	int glob_errno;
} config_ctx;

/* The memfd libconfuse calls @filename, or NULL for a real file. */
static struct config_inc *
config_inc_find(const char *filename)
{
	int i;

	if (filename == NULL)
		return NULL;
	for (i = 0; i < config_ctx.ninc; i++)
		if (strcmp(config_ctx.inc[i].name, filename) == 0)
			return &config_ctx.inc[i];
	return NULL;
}

/* The name to show for a file libconfuse parsed (maps include memfds). */
static const char *
config_display_name(const char *filename)
{
	const struct config_inc *inc = config_inc_find(filename);

	return inc != NULL ? inc->path : filename;
}

/* The line to show: a pattern's list is shown as its include() line. */
static int
config_display_line(const char *filename, int line)
{
	const struct config_inc *inc = config_inc_find(filename);

	return inc != NULL && inc->line > 0 ? inc->line : line;
}

/* Close the include memfds of the last parse. */
static void
config_includes_free(void)
{
	struct config_inc *inc;
	int i;

	for (i = 0; i < config_ctx.ninc; i++) {
		inc = &config_ctx.inc[i];
		close(inc->fd);
		free(inc->name);
		free(inc->path);
		free(inc->pattern);
		if (inc->matches.gl_pathv != NULL)
			globfree(&inc->matches);
		memset(inc, 0, sizeof(*inc));
	}
	config_ctx.ninc = 0;
	config_ctx.nfiles = 0;
}

/* Report a libconfuse error as FILE:LINE: message. */
static void
config_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (config_ctx.eb == NULL)
		return;
	/*
	 * libconfuse 3.3 reports an undeclared name before it makes it an
	 * option of a CFGF_KEYSTRVAL section: config_fill judges names there.
	 */
	if (cfg != NULL && (cfg->flags & CFGF_KEYSTRVAL) &&
	    strncmp(msg, "no such option '", 16) == 0)
		return;
	if (cfg != NULL && cfg->filename != NULL && cfg->line > 0)
		errbuf_add(config_ctx.eb, "%s:%d: %s",
			   config_display_name(cfg->filename),
			   config_display_line(cfg->filename, cfg->line), msg);
	else if (cfg != NULL && cfg->filename != NULL)
		errbuf_add(config_ctx.eb, "%s: %s",
			   config_display_name(cfg->filename), msg);
	else
		errbuf_add(config_ctx.eb, "%s", msg);
}

/* ---- the pre-scan: braces, section positions, a few top-level values ---- */

enum tok { T_NONE, T_WORD, T_STRING, T_EQ, T_OTHER };

struct scan_tok {
	enum tok type;
	const char *start;
	size_t len;
	int line;
};

/*
 * Blank one comment byte in the clean copy. libconfuse 3.3 miscounts lines
 * after comments (+2 per `#` or `//` line, +1 per block comment, measured),
 * so it is given the text without them: its FILE:LINE is then right.
 */
static void
scan_blank(struct config_scan *sc, const char *text, const char *p)
{
	if (sc->clean != NULL && *p != '\n')
		sc->clean[p - text] = ' ';
}

/* Remember a top-level section's opening line. */
static int
scan_add_section(struct config_scan *sc, const char *file,
		 const struct scan_tok *name, const struct scan_tok *title,
		 int line)
{
	struct config_section_pos *grown, *p;

	grown = realloc(sc->secs, (sc->nsecs + 1) * sizeof(*sc->secs));
	if (grown == NULL)
		return -1;
	sc->secs = grown;
	p = &sc->secs[sc->nsecs];
	p->opts = NULL;
	p->nopts = 0;
	p->file = strdup(file);
	p->name = strndup(name->start, name->len);
	if (title != NULL && title->type == T_STRING)
		p->title = strndup(title->start + 1, title->len - 2);
	else if (title != NULL)
		p->title = strndup(title->start, title->len);
	else
		p->title = strdup("");
	p->line = line;
	if (p->file == NULL || p->name == NULL || p->title == NULL) {
		free(p->file);
		free(p->name);
		free(p->title);
		return -1;
	}
	sc->nsecs++;
	return 0;
}

/* Remember where option @key is written: top level or the open section. */
static int
scan_add_option(struct config_scan *sc, const char *file,
		const struct scan_tok *key, int section)
{
	struct config_opt_pos **arr, *grown, *p;
	size_t *n;

	if (section >= 0) {
		arr = &sc->secs[section].opts;
		n = &sc->secs[section].nopts;
	} else {
		arr = &sc->root;
		n = &sc->nroot;
	}
	grown = realloc(*arr, (*n + 1) * sizeof(**arr));
	if (grown == NULL)
		return -1;
	*arr = grown;
	p = &grown[*n];
	p->key = strndup(key->start, key->len);
	p->file = section < 0 ? strdup(file) : NULL;
	p->line = key->line;
	if (p->key == NULL || (section < 0 && p->file == NULL)) {
		free(p->key);
		free(p->file);
		return -1;
	}
	(*n)++;
	return 0;
}

/*
 * Count what `${VAR}` or `${VAR:-default}` at @p will expand to, and refuse
 * a file whose expansions pass CONFIG_MAX_EXPANSION in all (a 100 kB
 * variable used 5,000 times made libconfuse take 1.3 GB and 32 s).
 */
static int
scan_expansion(struct config_scan *sc, const char *file, int line,
	       const char *p, const char *end, struct errbuf *eb)
{
	const char *close = memchr(p, '}', (size_t)(end - p)), *dflt, *val;
	char name[256];
	size_t nlen, add;

	if (close == NULL)
		return 0; /* reported as not closed where it matters */
	dflt = memchr(p + 2, ':', (size_t)(close - (p + 2)));
	if (dflt != NULL && (dflt + 1 >= close || dflt[1] != '-'))
		dflt = NULL;
	nlen = (size_t)((dflt != NULL ? dflt : close) - (p + 2));
	if (nlen >= sizeof(name))
		nlen = sizeof(name) - 1;
	memcpy(name, p + 2, nlen);
	name[nlen] = '\0';
	val = getenv(name);
	if ((val == NULL || *val == '\0') && dflt != NULL)
		add = (size_t)(close - (dflt + 2));
	else
		add = val != NULL ? strlen(val) : 0;
	sc->expanded += add;
	if (sc->expanded > CONFIG_MAX_EXPANSION) {
		errbuf_add(eb,
			   "%s:%d: ${%s} (%zu bytes) makes the expanded "
			   "configuration larger than %d bytes",
			   file, line, name, add, CONFIG_MAX_EXPANSION);
		return -1;
	}
	return 0;
}

/*
 * ${VAR} inside a double-quoted string. libconfuse takes everything up to
 * the next '}' for the name, quotes and newlines included: a '}' past the
 * end of the string would make it read another string than the pre-scan
 * checked (`include("a${X")` ... `}` became a broken call, and libconfuse
 * leaked its arguments). Refused.
 */
static int
scan_string_expansion(struct config_scan *sc, const char *file, int line,
		      const char *p, const char *end, struct errbuf *eb)
{
	const char *close = memchr(p, '}', (size_t)(end - p));

	if (close != NULL && (memchr(p, '"', (size_t)(close - p)) != NULL ||
			      memchr(p, '\n', (size_t)(close - p)) != NULL)) {
		errbuf_add(eb,
			   "%s:%d: '${' is not closed before the end of the "
			   "string",
			   file, line);
		return -1;
	}
	return scan_expansion(sc, file, line, p, end, eb);
}

/* Forget the modules of an earlier `load` (the last one counts). */
static void
scan_clear_load(struct config_scan *sc)
{
	size_t i;

	for (i = 0; i < sc->load.n; i++)
		free(sc->load.v[i]);
	free(sc->load.v);
	sc->load.v = NULL;
	sc->load.n = 0;
}

/* One module name of `load = { ... }`. */
static int
scan_add_load(struct config_scan *sc, const struct scan_tok *t)
{
	char **grown = realloc(sc->load.v, (sc->load.n + 1) * sizeof(char *));
	const char *s = t->start;
	size_t n = t->len;

	if (grown == NULL)
		return -1;
	sc->load.v = grown;
	if (t->type == T_STRING) {
		s++;
		n -= 2;
	}
	if ((grown[sc->load.n] = strndup(s, n)) == NULL)
		return -1;
	sc->load.n++;
	return 0;
}

/* Keep the value of `key = value` when key is one we track. */
static void
scan_note_value(struct config_scan *sc, const struct scan_tok *key,
		const struct scan_tok *val)
{
	char **slot = NULL;
	const char *s = val->start;
	size_t n = val->len;

	if (key->len == 7 && strncmp(key->start, "pidfile", 7) == 0)
		slot = &sc->pidfile;
	else if (key->len == 10 && strncmp(key->start, "state-file", 10) == 0)
		slot = &sc->statefile;
	if (slot == NULL)
		return;
	if (val->type == T_STRING) {
		s++;
		n -= 2;
	}
	free(*slot);
	*slot = strndup(s, n);
}

/*
 * include( "FILE" ): the state after token @t, from @inc (0: none, 1: after
 * the word include, 2: after '(', 3: after the file name); -1 when the
 * call is not one file name in parentheses. libconfuse 3.3 leaks the
 * arguments read so far when a call has a syntax error (LeakSanitizer,
 * `include("a" "b")`): such a call never reaches it.
 */
static int
scan_include_step(int inc, const struct scan_tok *t)
{
	int paren = t->type == T_OTHER && t->len == 1;

	switch (inc) {
	case 1:
		if (paren && *t->start == '(')
			return 2;
		break;
	case 2:
		return t->type == T_WORD || t->type == T_STRING ? 3 : -1;
	case 3:
		return paren && *t->start == ')' ? 0 : -1;
	default:
		break;
	}
	return t->type == T_WORD && t->len == 7 &&
	       strncmp(t->start, "include", 7) == 0;
}

/* Report a call of include() that is not include("FILE"). */
static int
scan_include_error(const char *file, int line, struct errbuf *eb)
{
	errbuf_add(eb,
		   "%s:%d: include() takes one file name: include(\"FILE\")",
		   file, line);
	return -1;
}

/*
 * Check that braces balance and strings and comments end, and record where
 * each top-level section opens. libconfuse accepts a file that ends inside
 * a section, so this is what rejects a truncated file.
 */
int
config_scan_text(const char *file, const char *text, size_t len,
		 struct config_scan *sc, struct errbuf *eb)
{
	int open_line[CONFIG_MAX_DEPTH];
	char open_name[CONFIG_MAX_DEPTH][64];
	struct scan_tok t[3] = { { T_NONE, NULL, 0, 0 } };
	const char *p = text, *end = text + len, *nul;
	int depth = 0, line = 1, section = -1, in_load = 0, inc = 0;

	nul = memchr(text, '\0', len);
	if (nul != NULL) {
		for (p = text; p < nul; p++)
			line += *p == '\n';
		errbuf_add(eb, "%s:%d: NUL byte in configuration", file, line);
		return -1;
	}
	while (p < end) {
		struct scan_tok cur = { T_NONE, p, 0, line };
		char c = *p;

		if (c == '\0') {
			errbuf_add(eb, "%s:%d: NUL byte in configuration", file,
				   line);
			return -1;
		}
		if (c == '\n') {
			line++;
			p++;
			continue;
		}
		/* Inside include(...) nothing but the one name: libconfuse
		 * leaks the arguments of a call it finds a ';', ',', '*' or
		 * '+' in (the fuzzer's inputs), where elsewhere it skips them.
		 */
		if ((c == ',' || c == ';' || c == '*' || c == '+') && inc >= 2)
			return scan_include_error(file, line, eb);
		/* libconfuse 3.3 eats a '*' that starts no comment, and a
		 * '+' that starts no `+=`. */
		if (c == ' ' || c == '\t' || c == '\r' || c == ',' ||
		    c == ';' || c == '*' ||
		    (c == '+' && !(p + 1 < end && p[1] == '='))) {
			p++;
			continue;
		}
		if (c == '#' || (c == '/' && p + 1 < end && p[1] == '/')) {
			while (p < end && *p != '\n')
				scan_blank(sc, text, p++);
			continue;
		}
		if (c == '/' && p + 1 < end && p[1] == '*') {
			int start = line;

			scan_blank(sc, text, p++);
			scan_blank(sc, text, p++);
			while (p + 1 < end && !(p[0] == '*' && p[1] == '/')) {
				if (*p == '\n')
					line++;
				scan_blank(sc, text, p++);
			}
			if (p + 1 >= end) {
				errbuf_add(eb, "%s:%d: comment is not closed",
					   file, start);
				return -1;
			}
			scan_blank(sc, text, p++);
			scan_blank(sc, text, p++);
			continue;
		}
		if (c == '"' || c == '\'') {
			int start = line;

			p++;
			while (p < end && *p != c) {
				/* libconfuse honours \ escapes in both quotes.
				 */
				int escaped = *p == '\\' && p + 1 < end;

				p += escaped;
				if (*p == '\n')
					line++;
				/* libconfuse expands ${VAR} in double quotes.
				 */
				if (c == '"' && !escaped && *p == '$' &&
				    p + 1 < end && p[1] == '{' &&
				    scan_string_expansion(sc, file, line, p,
							  end, eb) == -1)
					return -1;
				p++;
			}
			if (p >= end) {
				errbuf_add(eb, "%s:%d: string is not closed",
					   file, start);
				return -1;
			}
			p++;
			cur.type = T_STRING;
			cur.len = (size_t)(p - cur.start);
		} else if (c == '{') {
			int is_list = t[2].type == T_EQ;

			if (depth == CONFIG_MAX_DEPTH) {
				errbuf_add(eb, "%s:%d: nested deeper than %d",
					   file, line, CONFIG_MAX_DEPTH);
				return -1;
			}
			open_line[depth] = line;
			snprintf(open_name[depth], sizeof(open_name[depth]),
				 "%s", is_list ? "list" : "section");
			if (depth == 0)
				section = -1;
			/* load = { ... }: kept to check before parsing. */
			in_load = depth == 0 && is_list &&
				  t[1].type == T_WORD && t[1].len == 4 &&
				  strncmp(t[1].start, "load", 4) == 0;
			/* `load += { ... }` adds to the list. */
			if (in_load && t[2].len == 1)
				scan_clear_load(sc);
			if (!is_list && depth == 0 && t[2].type != T_NONE) {
				const struct scan_tok *name = &t[2],
						      *title = NULL;

				/* "key = value\nname {" is untitled. */
				if (t[1].type == T_WORD && t[0].type != T_EQ) {
					name = &t[1];
					title = &t[2];
				}
				if (name->type == T_WORD &&
				    scan_add_section(sc, file, name, title,
						     line) == -1) {
					errbuf_add(eb, "%s: out of memory",
						   file);
					return -1;
				}
				if (name->type == T_WORD)
					section = (int)sc->nsecs - 1;
				/*
				 * libconfuse looks for a duplicate of every
				 * title among all before it (16,000 sections:
				 * 128 million comparisons): it is given
				 * `name {` and keel takes the titles from
				 * here, in the same order.
				 */
				if (name->type == T_WORD && title != NULL) {
					const char *q;

					for (q = title->start;
					     q < title->start + title->len; q++)
						scan_blank(sc, text, q);
				}
				if (name->type == T_WORD)
					snprintf(open_name[depth],
						 sizeof(open_name[depth]),
						 "section '%.*s'",
						 (int)name->len, name->start);
			}
			depth++;
			p++;
			cur.type = T_OTHER;
			cur.len = 1;
		} else if (c == '}') {
			if (depth == 0) {
				errbuf_add(eb,
					   "%s:%d: '}' without a matching '{'",
					   file, line);
				return -1;
			}
			depth--;
			if (depth == 0)
				in_load = 0;
			p++;
			cur.type = T_OTHER;
			cur.len = 1;
		} else if (c == '=' || c == '+') {
			/* `=` or `+=`, one sign for libconfuse. */
			cur.type = T_EQ;
			cur.len = c == '+' ? 2 : 1;
			p += cur.len;
		} else if (c == '(' || c == ')') {
			p++;
			cur.type = T_OTHER;
			cur.len = 1;
		} else {
			/*
			 * A word ends where libconfuse 3.3 ends it, '*' and
			 * '+' included: after `link =*` it eats the star and
			 * takes the `//` that follows for a comment, which
			 * must be blanked here like any other.
			 */
			while (p < end && *p != ' ' && *p != '\t' &&
			       *p != '\n' && *p != '\r' && *p != '=' &&
			       *p != '{' && *p != '}' && *p != '(' &&
			       *p != ')' && *p != ',' && *p != '"' &&
			       *p != '\'' && *p != ';' && *p != '#' &&
			       *p != '*' && *p != '+' && *p != '\0') {
				/* ${VAR} is one token for libconfuse. */
				if (*p == '$' && p + 1 < end && p[1] == '{') {
					const char *close = memchr(
						p, '}', (size_t)(end - p));

					if (close == NULL ||
					    memchr(p, '\n',
						   (size_t)(close - p))) {
						errbuf_add(
							eb,
							"%s:%d: '${' is not closed",
							file, line);
						return -1;
					}
					if (scan_expansion(sc, file, line, p,
							   end, eb) == -1)
						return -1;
					p = close;
				}
				p++;
			}
			cur.type = T_WORD;
			cur.len = (size_t)(p - cur.start);
			if (cur.len == 0) {
				p++;
				continue;
			}
		}
		inc = scan_include_step(inc, &cur);
		if (inc == -1)
			return scan_include_error(file, cur.line, eb);
		sc->tokens++;
		if (in_load && depth == 1 &&
		    (cur.type == T_WORD || cur.type == T_STRING) &&
		    scan_add_load(sc, &cur) == -1) {
			errbuf_add(eb, "%s: out of memory", file);
			return -1;
		}
		if (cur.type == T_EQ && t[2].type == T_WORD &&
		    (depth == 0 || (depth == 1 && section >= 0)) &&
		    scan_add_option(sc, file, &t[2],
				    depth == 0 ? -1 : section) == -1) {
			errbuf_add(eb, "%s: out of memory", file);
			return -1;
		}
		if (depth == 0 && t[1].type == T_WORD && t[2].type == T_EQ &&
		    (cur.type == T_WORD || cur.type == T_STRING))
			scan_note_value(sc, &t[1], &cur);
		t[0] = t[1];
		t[1] = t[2];
		t[2] = cur;
	}
	if (inc >= 2)
		return scan_include_error(file, line, eb);
	if (depth > 0) {
		errbuf_add(
			eb,
			"%s:%d: %s is not closed (missing '}' before the end of the file)",
			file, open_line[depth - 1], open_name[depth - 1]);
		return -1;
	}
	return 0;
}

/* Free what a scan recorded. */
void
config_scan_free(struct config_scan *sc)
{
	size_t i, j;

	for (i = 0; i < sc->nsecs; i++) {
		free(sc->secs[i].file);
		free(sc->secs[i].name);
		free(sc->secs[i].title);
		for (j = 0; j < sc->secs[i].nopts; j++)
			free(sc->secs[i].opts[j].key);
		free(sc->secs[i].opts);
	}
	free(sc->secs);
	for (j = 0; j < sc->nroot; j++) {
		free(sc->root[j].key);
		free(sc->root[j].file);
	}
	free(sc->root);
	scan_clear_load(sc);
	free(sc->pidfile);
	free(sc->statefile);
	memset(sc, 0, sizeof(*sc));
}

/*
 * Read a whole configuration file, refusing what is not a regular file or
 * too large (libconfuse recurses per nesting level).
 */
int
config_read_file(const char *path, char **text, size_t *len, struct errbuf *eb)
{
	return config_read_file_max(path, CONFIG_MAX_SIZE, 0, text, len, eb);
}

/*
 * As config_read_file, with another size limit (the state file's) and
 * @oflags added to open(2)'s flags (O_NOFOLLOW).
 */
int
config_read_file_max(const char *path, size_t max, int oflags, char **text,
		     size_t *len, struct errbuf *eb)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	ssize_t n;
	int fd;

	/* O_NONBLOCK: a FIFO given as configuration must not hang the loop. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | oflags);
	if (fd == -1) {
		errbuf_add(eb, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		errbuf_add(eb, "%s: cannot stat: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) {
		errbuf_add(eb, "%s: %s", path,
			   S_ISDIR(st.st_mode)
				   ? "is a directory, not a configuration file"
				   : "not a regular file");
		close(fd);
		return -1;
	}
	if ((unsigned long long)st.st_size > max) {
		errbuf_add(eb, "%s: too large (%lld bytes, at most %zu)", path,
			   (long long)st.st_size, max);
		close(fd);
		return -1;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		errbuf_add(eb, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			errbuf_add(eb, "%s: cannot read: %s", path,
				   strerror(errno));
			free(buf);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*text = buf;
	*len = got;
	return 0;
}

/*
 * Resolve @name against the directory of the file that includes it. For a
 * glob @pattern, that directory is taken literally: its '*', '?', '[' and
 * '\\' are escaped.
 */
static char *
config_resolve(const char *from, const char *name, int pattern)
{
	char *copy, *dir, *out, *o;
	const char *p;

	if (name[0] == '/' || from == NULL)
		return strdup(name);
	copy = strdup(from);
	if (copy == NULL)
		return NULL;
	dir = dirname(copy);
	out = malloc(2 * strlen(dir) + strlen(name) + 2);
	if (out != NULL) {
		for (o = out, p = dir; *p != '\0'; *o++ = *p++)
			if (pattern && strchr("*?[\\", *p) != NULL)
				*o++ = '\\';
		*o++ = '/';
		memcpy(o, name, strlen(name) + 1);
	}
	free(copy);
	return out;
}

/* A name holding glob(3) metacharacters is a pattern. */
static int
config_is_pattern(const char *name)
{
	return strpbrk(name, "*?[") != NULL;
}

/* Hand @len bytes of @text to a new memfd; its fd and /proc/self/fd name. */
static int
config_memfd(const char *text, size_t len, int *fd, char **name)
{
	ssize_t n;

	*fd = memfd_create("keel-include", MFD_CLOEXEC);
	if (*fd == -1)
		return -1;
	n = write(*fd, text, len);
	if (n >= 0 && n != (ssize_t)len)
		errno = ENOSPC;
	if (n != (ssize_t)len || asprintf(name, "/proc/self/fd/%d", *fd) < 0) {
		close(*fd);
		*fd = -1;
		return -1;
	}
	return 0;
}

/* A new entry for the memfd @fd named @name; NULL when they are full. */
static struct config_inc *
config_inc_add(int fd, char *name)
{
	struct config_inc *inc;

	if (config_ctx.ninc ==
	    (int)(sizeof(config_ctx.inc) / sizeof(config_ctx.inc[0])))
		return NULL;
	inc = &config_ctx.inc[config_ctx.ninc++];
	memset(inc, 0, sizeof(*inc));
	inc->fd = fd;
	inc->name = name;
	return inc;
}

/* Reverse the section positions [@a, @b) of @sc. */
static void
scan_reverse(struct config_scan *sc, size_t a, size_t b)
{
	struct config_section_pos t;

	for (; a + 1 < b; a++, b--) {
		t = sc->secs[a];
		sc->secs[a] = sc->secs[b - 1];
		sc->secs[b - 1] = t;
	}
}

/*
 * The sections of an included file were scanned into [@from, nsecs), after
 * every section of the files scanned before; libconfuse reads them where
 * the include() is, after the @at sections it has read so far. Move them
 * there, so that the Nth section of a module in the scan is the Nth one
 * libconfuse gives (its title and its positions). Without this, a section
 * of an included file took the title of a section written after the
 * include() in the including file, and that one its title.
 */
static void
scan_place(struct config_scan *sc, size_t from, size_t at)
{
	if (at >= from || from >= sc->nsecs)
		return;
	scan_reverse(sc, at, from);
	scan_reverse(sc, from, sc->nsecs);
	scan_reverse(sc, at, sc->nsecs);
}

/* How many sections of modules libconfuse has read so far into @cfg. */
static size_t
config_sections_read(cfg_t *cfg)
{
	struct keel_module *m;
	size_t n = 0;

	for (m = config_ctx.k != NULL ? config_ctx.k->modules : NULL; m != NULL;
	     m = m->next)
		if (!m->root && m->desc->section != KEEL_SECTION_NONE)
			n += cfg_size(cfg, m->name);
	return n;
}

/*
 * Include the file @path (taken), written @shown in the configuration:
 * checked and cleaned by the pre-scan like the main file, handed to
 * libconfuse through a memfd.
 */
static int
config_include_file(cfg_t *cfg, cfg_opt_t *opt, const char *shown, char *path)
{
	const char *args[1];
	char *text = NULL, *name = NULL;
	size_t len = 0;
	struct errbuf local = { 0 };
	struct config_inc *inc;
	size_t before = config_ctx.scan->nsecs;
	int fd = -1, rc;

	if (config_ctx.nfiles == CONFIG_MAX_INCLUDES) {
		cfg_error(cfg, "more than %d includes", CONFIG_MAX_INCLUDES);
		goto fail;
	}
	if (config_read_file(path, &text, &len, &local) == -1) {
		cfg_error(cfg, "include(\"%s\"): %s", shown, local.first);
		goto fail;
	}
	config_ctx.scan->clean =
		text; /* cleaned in place: the scan reads ahead */
	rc = config_scan_text(path, text, len, config_ctx.scan, config_ctx.eb);
	config_ctx.scan->clean = NULL;
	if (rc == -1)
		goto fail;
	scan_place(config_ctx.scan, before, config_sections_read(cfg));
	if (config_memfd(text, len, &fd, &name) == -1) {
		cfg_error(cfg, "include(\"%s\"): %s", shown, strerror(errno));
		goto fail;
	}
	inc = config_inc_add(fd, name);
	if (inc == NULL) {
		cfg_error(cfg, "more than %d includes", CONFIG_MAX_INCLUDES);
		free(name);
		close(fd);
		goto fail;
	}
	inc->path = path;
	config_ctx.nfiles++;
	free(text);
	args[0] = name;
	return cfg_include(cfg, opt, 1, args);
fail:
	errbuf_clear(&local);
	free(text);
	free(path);
	return 1;
}

/*
 * glob(3)'s error callback: a directory that does not exist matches
 * nothing; any other failure (EACCES...) stops the glob, remembered.
 */
static int
config_glob_error(const char *path, int err)
{
	if (err == ENOENT || err == ENOTDIR)
		return 0;
	snprintf(config_ctx.glob_path, sizeof(config_ctx.glob_path), "%s",
		 path);
	config_ctx.glob_errno = err;
	return 1;
}

/* Order of qsort(3) for glob's paths: bytewise, whatever the locale. */
static int
config_path_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * include() of a pattern: the matches of @pattern (resolved, taken), in
 * bytewise order, through one memfd listing `include("0")` ... so that
 * libconfuse reads them one after the other (its include stack is 10
 * deep: pushing every match at once would nest them). Nothing matching
 * is fine.
 */
static int
config_include_glob(cfg_t *cfg, cfg_opt_t *opt, const char *shown,
		    char *pattern)
{
	const char *args[1];
	struct config_inc *inc;
	char *text = NULL, *name = NULL;
	size_t i, len = 0;
	glob_t g;
	FILE *fp;
	int fd, rc;

	memset(&g, 0, sizeof(g));
	config_ctx.glob_errno = 0;
	rc = glob(pattern, GLOB_NOSORT, config_glob_error, &g);
	free(pattern);
	if (rc == GLOB_NOMATCH) {
		globfree(&g);
		return 0;
	}
	if (rc != 0) {
		if (config_ctx.glob_errno != 0)
			cfg_error(cfg, "include(\"%s\"): %s: %s", shown,
				  config_ctx.glob_path,
				  strerror(config_ctx.glob_errno));
		else
			cfg_error(cfg, "include(\"%s\"): out of memory", shown);
		globfree(&g);
		return 1;
	}
	if (g.gl_pathc > (size_t)(CONFIG_MAX_INCLUDES - config_ctx.nfiles)) {
		cfg_error(cfg,
			  "include(\"%s\"): %zu files: more than %d includes",
			  shown, g.gl_pathc, CONFIG_MAX_INCLUDES);
		globfree(&g);
		return 1;
	}
	qsort(g.gl_pathv, g.gl_pathc, sizeof(g.gl_pathv[0]), config_path_cmp);
	fp = open_memstream(&text, &len);
	for (i = 0; fp != NULL && i < g.gl_pathc; i++)
		fprintf(fp, "include(\"%zu\")\n", i);
	if (fp == NULL || fclose(fp) != 0 ||
	    config_memfd(text, len, &fd, &name) == -1) {
		cfg_error(cfg, "include(\"%s\"): %s", shown, strerror(errno));
		free(text);
		globfree(&g);
		return 1;
	}
	free(text);
	inc = config_inc_add(fd, name);
	if (inc == NULL) {
		cfg_error(cfg, "more than %d includes", CONFIG_MAX_INCLUDES);
		free(name);
		close(fd);
		globfree(&g);
		return 1;
	}
	inc->matches = g;
	inc->line = cfg->line;
	inc->path = strdup(config_display_name(cfg->filename));
	inc->pattern = strdup(shown);
	if (inc->path == NULL || inc->pattern == NULL) {
		cfg_error(cfg, "out of memory");
		return 1;
	}
	args[0] = name;
	return cfg_include(cfg, opt, 1, args);
}

/*
 * include("file") or include("pattern"), relative to the including file.
 * Inside a pattern's list, include("N") is its Nth match.
 */
static int
config_include(cfg_t *cfg, cfg_opt_t *opt, int argc, const char **argv)
{
	const struct config_inc *from;
	char *path, *end;
	unsigned long n;

	if (argc != 1) {
		cfg_error(cfg, "include() takes exactly one file name");
		return 1;
	}
	from = config_inc_find(cfg->filename);
	if (from != NULL && from->pattern != NULL) {
		n = strtoul(argv[0], &end, 10);
		if (*end != '\0' || n >= from->matches.gl_pathc) {
			cfg_error(cfg, "include(\"%s\"): no match %s",
				  from->pattern, argv[0]);
			return 1;
		}
		path = strdup(from->matches.gl_pathv[n]);
		if (path == NULL) {
			cfg_error(cfg, "out of memory");
			return 1;
		}
		return config_include_file(cfg, opt, from->pattern, path);
	}
	path = config_resolve(config_display_name(cfg->filename), argv[0],
			      config_is_pattern(argv[0]));
	if (path == NULL) {
		cfg_error(cfg, "out of memory");
		return 1;
	}
	if (config_is_pattern(argv[0]))
		return config_include_glob(cfg, opt, argv[0], path);
	return config_include_file(cfg, opt, argv[0], path);
}

/* ---- the core's options ---- */

static const char *const core_level_words[] = { "error", "warning", "notice",
						"info",  "debug",   NULL };

/* The syslog level of the configured log-level. */
int
core_level(const struct keel_core *core)
{
	return KEEL_LOG_ERR + core->level;
}

/* An absolute path, for option @name. */
static int
config_check_path(const char *name, const char *v, char *err, size_t errlen)
{
	if (v[0] == '/')
		return 0;
	snprintf(err, errlen, "%s '%s' is not an absolute path", name, v);
	return -1;
}

/* pidfile: an absolute path. */
static int
config_check_pidfile(const char *v, char *err, size_t errlen)
{
	return config_check_path("pidfile", v, err, errlen);
}

/* state-file: an absolute path. */
static int
config_check_statefile(const char *v, char *err, size_t errlen)
{
	return config_check_path("state-file", v, err, errlen);
}

/* log = "syslog" | "stderr" | an absolute path */
static int
config_check_log(const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "syslog") == 0 || strcmp(v, "stderr") == 0 || v[0] == '/')
		return 0;
	snprintf(
		err, errlen,
		"log '%s' is not \"syslog\", \"stderr\" or an absolute file path",
		v);
	return -1;
}

static const struct keel_option core_options[] = {
	KEEL_OPTION_CHECK("pidfile", KEEL_OPT_STRING, struct keel_core, pidfile,
			  NULL, config_check_pidfile, 0),
	KEEL_OPTION_CHECK("state-file", KEEL_OPT_STRING, struct keel_core,
			  statefile, NULL, config_check_statefile, 0),
	KEEL_OPTION_CHECK("log", KEEL_OPT_STRING, struct keel_core, log, NULL,
			  config_check_log, 0),
	KEEL_OPTION_ENUM("log-level", struct keel_core, level, "info",
			 core_level_words, 0),
	KEEL_OPTION("user", KEEL_OPT_STRING, struct keel_core, user, NULL,
		    KEEL_OPT_NONEMPTY),
	KEEL_OPTION("group", KEEL_OPT_STRING, struct keel_core, group, NULL,
		    KEEL_OPT_NONEMPTY),
	KEEL_OPTION_RANGE("shutdown-timeout", KEEL_OPT_SECONDS,
			  struct keel_core, shutdown_timeout, "5", 0.001, 3600,
			  0),
	KEEL_OPTION("load", KEEL_OPT_LIST, struct keel_core, load, NULL,
		    KEEL_OPT_NONEMPTY),
	KEEL_OPTIONS_END,
};

/* Free core values. */
void
config_core_free(struct keel_core *core)
{
	size_t i;

	free(core->pidfile);
	free(core->statefile);
	free(core->log);
	free(core->user);
	free(core->group);
	for (i = 0; i < core->load.n; i++)
		free(core->load.v[i]);
	free(core->load.v);
	memset(core, 0, sizeof(*core));
}

/* ---- the schema libconfuse parses: every value a string ---- */

/*
 * libconfuse's options for a keel option table (@lists: its lists only);
 * NULL if out of memory.
 */
static cfg_opt_t *
config_schema(const struct keel_option *opts, size_t extra, int lists)
{
	int n = option_count(opts), i, j = 0;
	cfg_opt_t *out = calloc((size_t)n + extra + 1, sizeof(*out));

	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		cfg_opt_t one[] = {
			CFG_STR((char *)opts[i].name, NULL, CFGF_NODEFAULT),
			CFG_STR_LIST((char *)opts[i].name, NULL,
				     CFGF_NODEFAULT),
		};

		if (!lists || opts[i].type == KEEL_OPT_LIST)
			out[j++] = one[opts[i].type == KEEL_OPT_LIST ? 1 : 0];
	}
	/* calloc left the terminating CFG_END() in place. */
	return out;
}

/* Non-zero when module @m's sections have titles. */
static int
config_titled(const struct keel_module *m)
{
	return m->desc->section == KEEL_SECTION_TITLED ||
	       m->desc->section == KEEL_SECTION_TITLED_DEFAULTS;
}

/* Non-zero when @title names the defaults section of module @m. */
static int
config_is_defaults(const struct keel_module *m, const char *title)
{
	return m->desc->section == KEEL_SECTION_TITLED_DEFAULTS &&
	       title[0] == '\0';
}

/* The option table of top-level option @name: the core's, else the
 * application's. */
static const struct keel_option *
config_root_table(const char *name)
{
	struct keel_module *m;

	if (option_index(core_options, name) >= 0)
		return core_options;
	for (m = config_ctx.k != NULL ? config_ctx.k->modules : NULL; m != NULL;
	     m = m->next)
		if (m->root)
			return m->desc->options;
	return NULL;
}

/*
 * Has this message been reported at this line already? libconfuse calls
 * the validator of a list once per element and again at its end, each time
 * with the whole list so far: each wrong element is reported once.
 */
static struct {
	char text[900]; /* FILE\nMESSAGE */
	int line;
} config_seen[8];
static unsigned int config_seen_next;

/* A new parse: nothing reported yet. */
static void
config_reported_reset(void)
{
	memset(config_seen, 0, sizeof(config_seen));
	config_seen_next = 0;
}

static int
config_reported(const cfg_t *cs, const char *msg)
{
	char key[900];
	unsigned int i;

	snprintf(key, sizeof(key), "%s\n%s",
		 cs->filename != NULL ? cs->filename : "", msg);
	for (i = 0; i < 8; i++)
		if (config_seen[i].line == cs->line &&
		    strcmp(config_seen[i].text, key) == 0)
			return 1;
	i = config_seen_next++ % 8;
	snprintf(config_seen[i].text, sizeof(config_seen[i].text), "%s", key);
	config_seen[i].line = cs->line;
	return 0;
}

/*
 * libconfuse calls this for every value of the top level as it is set, at
 * its own line: an option written twice is checked twice (only the last
 * one is kept). A wrong value is reported with `FILE:LINE:` and the parse
 * goes on; config_parse fails the load after the sections are checked too.
 */
static int
config_validate_value(cfg_t *cs, cfg_opt_t *opt)
{
	const struct keel_option *opts = config_root_table(opt->name), *o;
	unsigned int n = cfg_opt_size(opt);
	char err[512];
	void *scratch;
	int i;

	if (opts == NULL || (i = option_index(opts, opt->name)) < 0 || n == 0)
		return 0;
	o = &opts[i];
	scratch = calloc(1, o->offset + o->size);
	if (scratch == NULL)
		return 0; /* converted again after the parse */
	/* A list is checked whole, a scalar as it is set. */
	for (i = o->type == KEEL_OPT_LIST ? 0 : (int)n - 1; i < (int)n; i++) {
		const char *v = cfg_opt_getnstr(opt, (unsigned int)i);

		if (option_parse(o, v != NULL ? v : "", scratch, err,
				 sizeof(err)) == -1) {
			if (!config_reported(cs, err))
				cfg_error(cs, "%s", err);
			if (o->type != KEEL_OPT_LIST)
				break;
		}
	}
	option_free_one(o, scratch);
	free(scratch);
	return 0;
}

/* Check every value of the top-level options @opts as libconfuse sets it. */
static void
config_set_validators(cfg_t *cfg, const struct keel_option *opts)
{
	int i;

	for (i = 0; opts != NULL && opts[i].name != NULL; i++)
		cfg_set_validate_func(cfg, opts[i].name, config_validate_value);
}

/*
 * Parse (once per module) the built-in defaults that are plain values
 * (numbers, booleans, enums): every section that does not write one copies
 * it, where 1,000 ports parsed 21 default strings each per reload. Strings,
 * addresses and lists own memory and are parsed per section; a default that
 * does not parse is left to config_fill, which reports it.
 */
static void
config_module_defaults(struct keel_module *m)
{
	const struct keel_option *opts = m->desc->options;
	char err[512];
	int i;

	m->defaults =
		calloc(1, m->desc->conf_size != 0 ? m->desc->conf_size : 1);
	if (m->defaults == NULL)
		return;
	for (i = 0; i < 64 && opts != NULL && opts[i].name != NULL; i++) {
		const struct keel_option *o = &opts[i];

		if (o->def == NULL || o->type == KEEL_OPT_STRING ||
		    o->type == KEEL_OPT_HOSTPORT || o->type == KEEL_OPT_LIST)
			continue;
		if (option_parse(o, o->def, m->defaults, err, sizeof(err)) == 0)
			m->defaults_set |= (uint64_t)1 << i;
	}
}

/*
 * Build (once per module) the schema of its section: its lists only. The
 * section is CFGF_KEYSTRVAL, so libconfuse makes a string option of any
 * other name as it is written, and config_fill checks the names. Declared,
 * every option cost each section a copy (libconfuse duplicates the whole
 * schema into every section: 26 names and 3.5 KB for a serial port) and a
 * search by name per value: 60 % of the parse of 1,000 ports (measured,
 * `perf stat keeld -t`).
 */
static int
config_module_schema(struct keel_module *m)
{
	if (m->cfg_opts == NULL)
		m->cfg_opts = config_schema(m->desc->options, 0, 1);
	if (m->cfg_opts != NULL && m->defaults == NULL)
		config_module_defaults(m);
	return m->cfg_opts != NULL ? 0 : -1;
}

/* Free a module's schema and parsed defaults. */
void
config_module_free(struct keel_module *m)
{
	free(m->cfg_opts);
	m->cfg_opts = NULL;
	free(m->defaults);
	m->defaults = NULL;
	m->defaults_set = 0;
}

/* The root schema: core, application, include, one section per module. */
static cfg_t *
config_new(struct keel *k)
{
	struct keel_module *m, *root = NULL;
	cfg_opt_t *opts, *app = NULL;
	size_t n = 0, i = 0, j;
	cfg_opt_t inc[] = { CFG_FUNC("include", config_include) };
	cfg_opt_t *core;
	cfg_t *cfg;

	for (m = k->modules; m != NULL; m = m->next) {
		if (m->root)
			root = m;
		n++;
	}
	core = config_schema(core_options, 0, 0);
	if (root != NULL)
		app = config_schema(root->desc->options, 0, 0);
	opts = calloc((size_t)option_count(core_options) +
			      (root != NULL ? (size_t)option_count(
						      root->desc->options)
					    : 0) +
			      n + 2,
		      sizeof(*opts));
	if (core == NULL || (root != NULL && app == NULL) || opts == NULL) {
		free(core);
		free(app);
		free(opts);
		return NULL;
	}
	for (j = 0; core[j].name != NULL; j++)
		opts[i++] = core[j];
	for (j = 0; app != NULL && app[j].name != NULL; j++)
		opts[i++] = app[j];
	opts[i++] = inc[0];
	for (m = k->modules; m != NULL; m = m->next) {
		if (m->root || m->desc->section == KEEL_SECTION_NONE)
			continue;
		if (config_module_schema(m) == -1)
			break;
		{
			/* Titles are taken out before libconfuse parses. */
			cfg_opt_t sec[] = { CFG_SEC(
				(char *)m->name, (cfg_opt_t *)m->cfg_opts,
				CFGF_MULTI | CFGF_KEYSTRVAL) };

			opts[i++] = sec[0];
		}
	}
	cfg = m == NULL ? cfg_init(opts, CFGF_NONE) : NULL;
	free(core);
	free(app);
	free(opts);
	if (cfg == NULL)
		return NULL;
	/*
	 * The top level's values are checked as they are set; the sections'
	 * once, by config_fill after the parse, at the lines the pre-scan saw.
	 */
	cfg_set_error_function(cfg, config_errfunc);
	config_set_validators(cfg, core_options);
	for (m = k->modules; m != NULL; m = m->next)
		if (m->root)
			config_set_validators(cfg, m->desc->options);
	return cfg;
}

/* ---- converting the parsed values ---- */

/* The last assignment of @option among @n, or NULL. */
static const struct config_opt_pos *
config_opt_last(const struct config_opt_pos *o, size_t n, const char *option)
{
	size_t i;

	for (i = n; option != NULL && i > 0; i--)
		if (strcmp(o[i - 1].key, option) == 0)
			return &o[i - 1];
	return NULL;
}

/*
 * The assignment of @option in force in @sec (the top level when @sec is
 * NULL): the last one written, or NULL when it is not written.
 */
static const struct config_opt_pos *
config_opt_find(const struct config *c, const struct config_section *sec,
		const char *option)
{
	if (sec == NULL)
		return config_opt_last(c->scan.root, c->scan.nroot, option);
	if (sec->pos == NULL)
		return NULL;
	return config_opt_last(sec->pos->opts, sec->pos->nopts, option);
}

/*
 * Where an option is written: its own line, else the line in the module's
 * defaults section it inherits, else the section's.
 */
int
config_opt_line(const struct config *c, const struct config_section *sec,
		const char *option, const char **file)
{
	const struct config_opt_pos *o = config_opt_find(c, sec, option);

	*file = sec != NULL && sec->pos != NULL ? sec->pos->file : c->path;
	if (o == NULL && sec != NULL && sec->defpos != NULL &&
	    (o = config_opt_last(sec->defpos->opts, sec->defpos->nopts,
				 option)) != NULL)
		*file = sec->defpos->file;
	if (o != NULL) {
		if (o->file != NULL)
			*file = o->file;
		return o->line;
	}
	return sec != NULL && sec->pos != NULL ? sec->pos->line : 0;
}

/* "serial 'gps'", "serial (defaults)", "http" or "" (the top level), for
 * messages. */
static void
config_section_where(const struct config_section *sec, char *buf, size_t len)
{
	if (sec == NULL || sec->m == NULL || sec->m->root)
		snprintf(buf, len, "%s", "");
	else if (config_is_defaults(sec->m, sec->title))
		snprintf(buf, len, "%s (defaults)", sec->m->name);
	else if (config_titled(sec->m))
		snprintf(buf, len, "%s '%s'", sec->m->name, sec->title);
	else
		snprintf(buf, len, "%s", sec->m->name);
}

/* Report an error at an option of @sec (NULL: the top level). */
void
config_error_at(const struct config *c, const struct config_section *sec,
		const char *option, struct errbuf *eb, const char *msg)
{
	char where[300];
	const char *file;
	int line = config_opt_line(c, sec, option, &file);

	config_section_where(sec, where, sizeof(where));
	if (line > 0)
		errbuf_add(eb, "%s:%d: %s%s%s", file, line, where,
			   where[0] != '\0' ? ": " : "", msg);
	else
		errbuf_add(eb, "%s: %s%s%s", file, where,
			   where[0] != '\0' ? ": " : "", msg);
}

/*
 * libconfuse's options of @cs by the index of @opts in @by (NULL: not
 * written). The top level (@sec NULL) declares every option; a module's
 * section holds its lists and what is written, and is walked once rather
 * than searched with cfg_getopt, which also reports a name it does not
 * find as an error. In a section, a name that is none of @opts is
 * reported (`FILE:LINE: no such option 'NAME'`, as libconfuse says it of
 * the top level) when @eb is given. @return 1 when there was one.
 */
static int
config_optmap(const struct config *c, const struct config_section *sec,
	      const struct keel_option *opts, cfg_t *cs, cfg_opt_t **by,
	      struct errbuf *eb)
{
	unsigned int i, n;
	int bad = 0, k;

	for (k = 0; k < 64; k++)
		by[k] = NULL;
	if (cs == NULL)
		return 0;
	if (sec == NULL) {
		for (k = 0; k < 64 && opts != NULL && opts[k].name != NULL; k++)
			by[k] = cfg_getopt(cs, opts[k].name);
		return 0;
	}
	for (i = 0, n = cfg_num(cs); i < n; i++) {
		cfg_opt_t *o = cfg_getnopt(cs, i);
		const char *file;
		int line;

		if (o == NULL || o->name == NULL)
			continue;
		k = option_index(opts, o->name);
		if (k >= 0 && k < 64) {
			by[k] = o;
			continue;
		}
		if (eb == NULL)
			continue;
		line = config_opt_line(c, sec, o->name, &file);
		errbuf_add(eb, "%s:%d: no such option '%s'", file, line,
			   o->name);
		bad = 1;
	}
	return bad;
}

/*
 * Fill a new struct from the values of @cs (a section, or the root) for the
 * options @opts. An option @sec does not write takes the value written in
 * the defaults section @dsec (values in @dcs; NULL: none), else its
 * built-in default. @dsec itself is filled with @dsec == @sec: only what it
 * writes, nothing required. NULL, with every error in @eb, when a value is
 * wrong.
 */
static void *
config_fill(struct config *c, const struct config_section *sec,
	    const struct keel_option *opts, size_t size, cfg_t *cs,
	    const struct config_section *dsec, cfg_t *dcs, struct errbuf *eb)
{
	int own = dsec != NULL && dsec == sec;
	void *conf = calloc(1, size != 0 ? size : 1);
	const struct keel_module *m = sec != NULL ? sec->m : NULL;
	cfg_opt_t *by[64], *dby[64];
	uint64_t missing; /* required options not written */
	char err[512];
	int i, bad = 0;

	if (conf == NULL) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return NULL;
	}
	bad = config_optmap(c, sec, opts, cs, by, eb);
	if (dcs != NULL && !own)
		config_optmap(c, dsec, opts, dcs, dby, NULL);
	missing = 0;
	for (i = 0; i < 64 && opts != NULL && opts[i].name != NULL; i++) {
		const struct keel_option *o = &opts[i];
		cfg_opt_t *co = by[i];
		unsigned int n = co != NULL ? cfg_opt_size(co) : 0, j;

		if (n == 0 && !own && dcs != NULL &&
		    config_opt_find(c, sec, o->name) == NULL &&
		    config_opt_find(c, dsec, o->name) != NULL) {
			/* Inherited from the defaults section (checked
			 * there, once): a list written empty stays empty. */
			co = dby[i];
			n = co != NULL ? cfg_opt_size(co) : 0;
			if (n == 0)
				continue;
		}
		if (n == 0) {
			/* A list written empty (`listen = {}`) is empty, not
			 * its default: its bounds judge it below. */
			if (o->type == KEEL_OPT_LIST &&
			    config_opt_find(c, sec, o->name) != NULL)
				continue;
			/* The defaults section holds what it writes. */
			if (own)
				continue;
			if (m != NULL && m->defaults != NULL &&
			    opts == m->desc->options &&
			    (m->defaults_set & ((uint64_t)1 << i))) {
				memcpy((char *)conf + o->offset,
				       (const char *)m->defaults + o->offset,
				       o->size);
			} else if (o->def != NULL &&
				   option_parse(o, o->def, conf, err,
						sizeof(err)) == -1) {
				config_error_at(c, sec, o->name, eb, err);
				bad = 1;
			} else if (o->def == NULL &&
				   (o->flags & KEEL_OPT_REQUIRED)) {
				missing |= (uint64_t)1 << i;
			}
			continue;
		}
		/* A scalar set twice keeps the last value, as libconfuse. */
		for (j = o->type == KEEL_OPT_LIST ? 0 : n - 1; j < n; j++) {
			const char *v = cfg_opt_getnstr(co, j);

			if (option_parse(o, v != NULL ? v : "", conf, err,
					 sizeof(err)) == -1) {
				/* Each wrong element of a list. */
				config_error_at(c, sec, o->name, eb, err);
				bad = 1;
				if (o->type != KEEL_OPT_LIST)
					break;
			}
		}
	}
	/* What needs the whole section only once every value is right. */
	for (i = 0; !bad && missing != 0 && i < 64 && opts[i].name != NULL;
	     i++) {
		if (!(missing & ((uint64_t)1 << i)))
			continue;
		snprintf(err, sizeof(err), "%s is required", opts[i].name);
		config_error_at(c, sec, NULL, eb, err);
		bad = 1;
	}
	for (i = 0; !bad && opts != NULL && opts[i].name != NULL; i++) {
		const struct keel_list *l =
			(const void *)((char *)conf + opts[i].offset);

		if (opts[i].type == KEEL_OPT_LIST &&
		    (opts[i].flags & KEEL_OPT_BOUNDED) &&
		    (double)l->n < opts[i].min &&
		    (!own || config_opt_find(c, sec, opts[i].name) != NULL)) {
			snprintf(err, sizeof(err),
				 "%s: fewer than %.15g elements", opts[i].name,
				 opts[i].min);
			config_error_at(c, sec, opts[i].name, eb, err);
			bad = 1;
		}
	}
	if (bad) {
		option_conf_free(opts, conf);
		return NULL;
	}
	return conf;
}

/* One value of a unique option, to sort. */
struct config_uniq {
	const struct keel_option *o;
	const struct config_section *sec;
	size_t idx; /* place in the file: the first one keeps the value */
};

/* Order by value, then by place in the file. */
static int
config_uniq_cmp(const void *pa, const void *pb)
{
	const struct config_uniq *a = pa, *b = pb;
	int d = option_cmp(a->o, a->sec->conf, b->sec->conf);

	if (d != 0)
		return d;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/*
 * Options with KEEL_OPT_UNIQUE: no two sections of a module share a value.
 * Sorted, so that equal values are neighbours: n log n, not n^2.
 */
static int
config_unique(struct config *c, struct errbuf *eb)
{
	struct config_uniq *u = calloc(c->nsecs + 1, sizeof(*u));
	char err[600], buf[64];
	struct keel_module *m;
	size_t i, n, first;
	int bad = 0, o;

	if (u == NULL) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return -1;
	}
	for (m = c->nsecs > 0 ? c->modules : NULL; m != NULL; m = m->next) {
		const struct keel_option *opts = m->desc->options;

		for (o = 0; opts != NULL && opts[o].name != NULL; o++) {
			if (!(opts[o].flags & KEEL_OPT_UNIQUE) ||
			    opts[o].type == KEEL_OPT_LIST)
				continue;
			for (i = 0, n = 0; i < c->nsecs; i++)
				if (c->secs[i].m == m &&
				    c->secs[i].conf != NULL &&
				    option_is_set(&opts[o], c->secs[i].conf))
					u[n++] = (struct config_uniq){
						&opts[o], &c->secs[i], i
					};
			qsort(u, n, sizeof(*u), config_uniq_cmp);
			for (i = 1, first = 0; i < n; i++) {
				if (option_cmp(&opts[o], u[first].sec->conf,
					       u[i].sec->conf) != 0) {
					first = i;
					continue;
				}
				snprintf(err, sizeof(err),
					 "%s %s is already used by %s '%s'",
					 opts[o].name,
					 option_text(&opts[o], u[i].sec->conf,
						     buf, sizeof(buf)),
					 m->name, u[first].sec->title);
				config_error_at(c, u[i].sec, opts[o].name, eb,
						err);
				bad = 1;
			}
		}
	}
	free(u);
	return bad ? -1 : 0;
}

/* Non-zero when @core lists module @name in `load`. */
int
core_loads(const struct keel_core *core, const char *name)
{
	size_t i;

	for (i = 0; i < core->load.n; i++)
		if (strcmp(core->load.v[i], name) == 0)
			return 1;
	return 0;
}

/* Non-zero when @c lists module @name in `load`. */
int
config_loads(const struct config *c, const char *name)
{
	return core_loads(&c->core, name);
}

/* load = { names }: each one a known, usable module, once. */
static int
config_check_load(struct keel *k, struct config *c, const struct keel_list *l,
		  struct errbuf *eb)
{
	char err[1200];
	size_t i, j;
	int bad = 0;

	for (i = 0; i < l->n; i++) {
		const struct keel_module *m = module_find(k, l->v[i]);
		const char *why;

		for (j = 0; j < i; j++)
			if (strcmp(l->v[j], l->v[i]) == 0)
				break;
		if (j < i)
			snprintf(err, sizeof(err),
				 "load: module '%s' listed twice", l->v[i]);
		else if (m != NULL && !m->root)
			continue;
		else if ((why = module_refusal(k, l->v[i])) != NULL)
			snprintf(err, sizeof(err),
				 "load: module '%s' cannot be used: %s",
				 l->v[i], why);
		else if (k->opt.module_path != NULL)
			snprintf(err, sizeof(err), "load: no module '%s' in %s",
				 l->v[i], k->opt.module_path);
		else
			snprintf(err, sizeof(err), "load: no module '%s'",
				 l->v[i]);
		config_error_at(c, NULL, "load", eb, err);
		bad = 1;
	}
	return bad ? -1 : 0;
}

/*
 * A title names an instance in logs, status keys, metric labels and
 * messages: 1 to 64 letters, digits and - _ . : @ + (no space, quote or
 * newline to break a `key: value` line or a label).
 */
static int
config_title_ok(const char *t)
{
	size_t n = strlen(t);

	return n > 0 && n <= 64 &&
	       strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789-_.:@+") == n;
}

/* Add one converted section to @c; @dsec, @dcs: the module's defaults
 * section, or NULL. */
static int
config_add_section(struct config *c, struct keel_module *m, const char *title,
		   cfg_t *cs, const struct config_section_pos *pos,
		   const struct config_section *dsec, cfg_t *dcs,
		   struct errbuf *eb)
{
	struct config_section *sec;

	if (c->nsecs == c->capsecs) {
		size_t cap = c->capsecs != 0 ? c->capsecs * 2 : 16;
		struct config_section *grown =
			realloc(c->secs, cap * sizeof(*grown));

		if (grown == NULL) {
			errbuf_add(eb, "%s: out of memory", c->path);
			return -1;
		}
		c->secs = grown;
		c->capsecs = cap;
	}
	sec = &c->secs[c->nsecs];
	memset(sec, 0, sizeof(*sec));
	sec->m = m;
	sec->title = strdup(title);
	sec->pos = pos;
	sec->defpos = dcs != NULL ? dsec->pos : NULL;
	if (sec->title == NULL) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return -1;
	}
	c->nsecs++;
	if (config_titled(m) && !config_title_ok(title)) {
		char shown[80];
		size_t i;

		snprintf(shown, sizeof(shown), "%s", title);
		for (i = 0; shown[i] != '\0'; i++)
			if ((unsigned char)shown[i] < 0x20)
				shown[i] = '?';
		errbuf_add(
			eb,
			"%s:%d: %s: the title '%s%s' is not 1 to 64 letters, "
			"digits and - _ . : @ +",
			pos != NULL ? pos->file : c->path,
			pos != NULL ? pos->line : 0, m->name, shown,
			strlen(title) >= sizeof(shown) ? "..." : "");
		/* Its values are checked all the same, and reported. */
		option_conf_free(m->desc->options,
				 config_fill(c, sec, m->desc->options,
					     m->desc->conf_size, cs, dsec, dcs,
					     eb));
		return -1;
	}
	sec->conf = config_fill(c, sec, m->desc->options, m->desc->conf_size,
				cs, dsec, dcs, eb);
	return sec->conf != NULL ? 0 : -1;
}

/*
 * The defaults section of module @m (KEEL_SECTION_TITLED_DEFAULTS), at
 * @pos: what it writes, converted once, so that a wrong value is reported
 * once, at its line. An option each section must write for itself
 * (required) or may not share (unique) cannot have a default. @return
 * the section, or NULL (errors in @eb).
 */
static const struct config_section *
config_add_defaults(struct config *c, struct keel_module *m, cfg_t *cs,
		    const struct config_section_pos *pos, struct errbuf *eb)
{
	const struct keel_option *opts = m->desc->options;
	struct config_section *grown, *dsec;
	char err[300];
	int i, bad = 0;

	grown = realloc(c->defs, (c->ndefs + 1) * sizeof(*grown));
	if (grown == NULL) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return NULL;
	}
	c->defs = grown;
	dsec = &c->defs[c->ndefs];
	memset(dsec, 0, sizeof(*dsec));
	dsec->m = m;
	dsec->pos = pos;
	if ((dsec->title = strdup("")) == NULL) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return NULL;
	}
	c->ndefs++;
	for (i = 0; opts != NULL && opts[i].name != NULL; i++) {
		if (!(opts[i].flags & (KEEL_OPT_REQUIRED | KEEL_OPT_UNIQUE)) ||
		    config_opt_find(c, dsec, opts[i].name) == NULL)
			continue;
		snprintf(err, sizeof(err), "%s cannot have a default (%s)",
			 opts[i].name,
			 (opts[i].flags & KEEL_OPT_REQUIRED)
				 ? "each section must write its own"
				 : "no two sections may share it");
		config_error_at(c, dsec, opts[i].name, eb, err);
		bad = 1;
	}
	dsec->conf = config_fill(c, dsec, opts, m->desc->conf_size, cs, dsec,
				 cs, eb);
	return bad || dsec->conf == NULL ? NULL : dsec;
}

/* Order section positions by title, then by place (first one first). */
static int
config_pos_cmp(const void *a, const void *b)
{
	const struct config_section_pos *const *x = a, *const *y = b;
	int d = strcmp((*x)->title, (*y)->title);

	if (d != 0)
		return d;
	return *x < *y ? -1 : *x > *y;
}

/* Convert every section of module @m; checks of the whole file. */
static int
config_convert_module(struct config *c, struct keel_module *m, cfg_t *cfg,
		      struct errbuf *eb)
{
	unsigned int n = cfg_size(cfg, m->name), i;
	const struct config_section_pos **pos, **byname;
	const struct config_section *dsec = NULL;
	cfg_t *dcs = NULL;
	size_t s, k = 0, first = 0;
	int bad = 0;

	/* A single section that is not written runs with its defaults. */
	if (n == 0)
		return m->desc->section == KEEL_SECTION_SINGLE &&
				       config_loads(c, m->name)
			       ? config_add_section(c, m, "", NULL, NULL, NULL,
						    NULL, eb)
			       : 0;
	/*
	 * libconfuse gives a module's sections in the order of the files, as
	 * the pre-scan met them: the titles (taken out of the text libconfuse
	 * parsed) and the positions come from there.
	 */
	pos = calloc(2 * (size_t)n, sizeof(const struct config_section_pos *));
	if (pos == NULL) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return -1;
	}
	for (s = 0; s < c->scan.nsecs && k < n; s++)
		if (strcmp(c->scan.secs[s].name, m->name) == 0)
			pos[k++] = &c->scan.secs[s];
	if (k != n) {
		errbuf_add(eb, "%s: %u sections '%s' parsed, %zu seen", c->path,
			   n, m->name, k);
		free(pos);
		return -1;
	}
	if (!config_loads(c, m->name)) {
		errbuf_add(
			eb,
			"%s:%d: section '%s' belongs to module '%s', which is not in load",
			pos[0]->file, pos[0]->line, m->name, m->name);
		free(pos);
		return -1;
	}
	if (m->desc->section == KEEL_SECTION_SINGLE && n > 1) {
		errbuf_add(eb, "%s:%d: section '%s' may appear only once",
			   pos[1]->file, pos[1]->line, m->name);
		free(pos);
		return -1;
	}
	/*
	 * The defaults section first, wherever it is written: every titled
	 * section inherits from it. When it is wrong, the titled sections
	 * are still checked, against the built-in defaults only.
	 */
	for (i = 0; m->desc->section == KEEL_SECTION_TITLED_DEFAULTS && i < n;
	     i++) {
		if (pos[i]->title[0] != '\0')
			continue;
		if (dcs != NULL) {
			errbuf_add(eb,
				   "%s:%d: section '%s' without a title (the "
				   "defaults) is written twice (first at "
				   "%s:%d)",
				   pos[i]->file, pos[i]->line, m->name,
				   pos[first]->file, pos[first]->line);
			bad = 1;
			continue;
		}
		first = i;
		dcs = cfg_getnsec(cfg, m->name, i);
		dsec = config_add_defaults(c, m, dcs, pos[i], eb);
		if (dsec == NULL)
			bad = 1;
	}
	if (dsec == NULL)
		dcs = NULL;
	for (i = 0; i < n; i++) {
		const char *title = pos[i]->title;

		if (config_is_defaults(m, title))
			continue;
		if (config_titled(m) && title[0] == '\0') {
			errbuf_add(eb,
				   "%s:%d: section '%s' needs a title (%s "
				   "TITLE { ... })",
				   pos[i]->file, pos[i]->line, m->name,
				   m->name);
			bad = 1;
		} else if (m->desc->section == KEEL_SECTION_SINGLE &&
			   title[0] != '\0') {
			errbuf_add(eb, "%s:%d: section '%s' takes no title",
				   pos[i]->file, pos[i]->line, m->name);
			bad = 1;
		} else if (config_add_section(c, m, title,
					      cfg_getnsec(cfg, m->name, i),
					      pos[i], dsec, dcs, eb) == -1) {
			bad = 1;
		}
	}
	/* Each title once: sorted, a duplicate is next to its first. */
	byname = pos + n;
	memcpy(byname, pos, n * sizeof(const struct config_section_pos *));
	qsort(byname, n, sizeof(const struct config_section_pos *),
	      config_pos_cmp);
	for (i = 1; !bad && i < n; i++)
		if (strcmp(byname[i]->title, byname[i - 1]->title) == 0) {
			errbuf_add(eb,
				   "%s:%d: %s '%s' is defined twice (first at "
				   "%s:%d)",
				   byname[i]->file, byname[i]->line, m->name,
				   byname[i]->title, byname[i - 1]->file,
				   byname[i - 1]->line);
			bad = 1;
		}
	free(pos);
	return bad ? -1 : 0;
}

/*
 * -T: the effective configuration, as a file that parses to the same
 * values: includes expanded, defaults filled in, one option a line. A
 * defaults section (`serial { }`) is printed with what it writes, before
 * the titled sections, which show every value they run with.
 */
void
config_print(const struct config *c, FILE *fp)
{
	const struct keel_module *m;
	int i;
	size_t s;

	fprintf(fp, "# %s, effective configuration\n", c->path);
	for (i = 0; core_options[i].name != NULL; i++)
		option_print(fp, &core_options[i], &c->core, 0);
	for (m = c->modules; m != NULL; m = m->next)
		if (m->root)
			for (i = 0; m->desc->options[i].name != NULL; i++)
				option_print(fp, &m->desc->options[i],
					     c->root_conf, 0);
	for (s = 0; s < c->ndefs; s++) {
		const struct config_section *dsec = &c->defs[s];
		const struct keel_option *opts = dsec->m->desc->options;

		fprintf(fp, "\n%s { # defaults of every titled %s section\n",
			dsec->m->name, dsec->m->name);
		for (i = 0; opts != NULL && opts[i].name != NULL; i++)
			if (config_opt_find(c, dsec, opts[i].name) != NULL)
				option_print(fp, &opts[i], dsec->conf, 2);
		fputs("}\n", fp);
	}
	for (s = 0; s < c->nsecs; s++) {
		const struct config_section *sec = &c->secs[s];

		fprintf(fp, "\n%s ", sec->m->name);
		if (config_titled(sec->m)) {
			option_print_string(fp, sec->title);
			fputc(' ', fp);
		}
		fputs("{\n", fp);
		for (i = 0; sec->m->desc->options != NULL &&
			    sec->m->desc->options[i].name != NULL;
		     i++)
			option_print(fp, &sec->m->desc->options[i], sec->conf,
				     2);
		fputs("}\n", fp);
	}
}

/* Free a converted configuration and what no instance took. */
void
config_free(struct config *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nsecs; i++) {
		option_conf_free(c->secs[i].m->desc->options, c->secs[i].conf);
		free(c->secs[i].title);
	}
	free(c->secs);
	for (i = 0; i < c->ndefs; i++) {
		option_conf_free(c->defs[i].m->desc->options, c->defs[i].conf);
		free(c->defs[i].title);
	}
	free(c->defs);
	config_core_free(&c->core);
	option_conf_free(c->root_opts, c->root_conf);
	config_scan_free(&c->scan);
	free(c->path);
	free(c);
}

/* Convert the parsed tree into @c. */
static int
config_convert(struct keel *k, struct config *c, cfg_t *cfg, struct errbuf *eb)
{
	struct keel_module *m;
	void *core;
	int bad = 0;

	c->modules = k->modules;
	core = config_fill(c, NULL, core_options, sizeof(c->core), cfg, NULL,
			   NULL, eb);
	if (core == NULL)
		return -1;
	memcpy(&c->core, core, sizeof(c->core));
	free(core);
	if (c->core.pidfile == NULL) {
		char buf[PATH_MAX];

		c->core.pidfile =
			strdup(keel_default_pidfile(k->app, buf, sizeof(buf)));
	}
	if (c->core.statefile == NULL) {
		char buf[PATH_MAX];

		c->core.statefile = strdup(
			keel_default_statefile(k->app, buf, sizeof(buf)));
	}
	if (c->core.pidfile == NULL || c->core.statefile == NULL) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return -1;
	}
	if (config_check_load(k, c, &c->core.load, eb) == -1)
		bad = 1;
	for (m = k->modules; m != NULL; m = m->next) {
		if (m->root) {
			c->root_opts = m->desc->options;
			c->root_conf = config_fill(c, NULL, m->desc->options,
						   m->desc->conf_size, cfg,
						   NULL, NULL, eb);
			if (c->root_conf == NULL)
				bad = 1;
			continue;
		}
		if (m->desc->section != KEEL_SECTION_NONE &&
		    config_convert_module(c, m, cfg, eb) == -1)
			bad = 1;
	}
	if (!bad && config_unique(c, eb) == -1)
		bad = 1;
	return bad ? -1 : 0;
}

#ifdef KEEL_CONFUSE_INCLUDE_STACK
/*
 * libconfuse 3.2 and 3.3 keep the stack of included files in these
 * globals of their lexer (src/lexer.l), exported by the library.
 */
extern struct {
	FILE *fp;
	char *filename;
	unsigned int line;
} cfg_include_stack[];
extern int cfg_include_stack_ptr;
void cfg_scan_fp_end(void);
#endif

/*
 * After a parse: unwind what libconfuse leaves behind when an error stops
 * it inside an included file — the included file open, the includer's
 * name, one lexer buffer per level. Left there, ten rejected reloads made
 * every later include fail ("includes nested too deeply") until restart,
 * and LeakSanitizer reported the buffers (TRAPS.md).
 */
static void
config_lexer_reset(void)
{
#ifdef KEEL_CONFUSE_INCLUDE_STACK
	while (cfg_include_stack_ptr > 0) {
		cfg_include_stack_ptr--;
		fclose(cfg_include_stack[cfg_include_stack_ptr].fp);
		free(cfg_include_stack[cfg_include_stack_ptr].filename);
		cfg_include_stack[cfg_include_stack_ptr].fp = NULL;
		cfg_include_stack[cfg_include_stack_ptr].filename = NULL;
		cfg_scan_fp_end();
	}
#endif
}

/* The parse itself, for config_load. */
static cfg_t *
config_parse(struct keel *k, struct config *c, struct errbuf *eb)
{
	const char *path = c->path;
	char *text = NULL;
	size_t len = 0;
	FILE *fp;
	cfg_t *cfg;
	int rc, before;

	if (config_read_file(path, &text, &len, eb) == -1)
		return NULL;
	config_ctx.scan->clean =
		text; /* cleaned in place: the scan reads ahead */
	rc = config_scan_text(path, text, len, config_ctx.scan, eb);
	config_ctx.scan->clean = NULL;
	c->empty = rc == 0 && c->scan.tokens == 0;
	/*
	 * `load` first: a section of a module that is missing is then
	 * reported as the missing module, not as an unknown option.
	 */
	if (rc == -1 || (c->scan.load.n > 0 &&
			 config_check_load(k, c, &c->scan.load, eb) == -1)) {
		free(text);
		return NULL;
	}
	cfg = config_new(k);
	if (cfg == NULL) {
		errbuf_add(eb, "%s: cannot build the configuration schema",
			   path);
		free(text);
		return NULL;
	}
	/* Parse the bytes already read and checked, under the file's name. */
	free(cfg->filename);
	cfg->filename = strdup(path);
	fp = len > 0 ? fmemopen(text, len, "r") : fopen("/dev/null", "re");
	if (fp == NULL || cfg->filename == NULL) {
		errbuf_add(eb, "%s: %s", path, strerror(errno));
		if (fp != NULL)
			fclose(fp);
		cfg_free(cfg);
		free(text);
		return NULL;
	}
	before = eb->count;
	config_reported_reset();
	rc = cfg_parse_fp(cfg, fp);
	config_lexer_reset();
	fclose(fp);
	free(text);
	/*
	 * Wrong values were reported as they were read (all of them). Some
	 * failures libconfuse does not report at all (`"" = 1`, an empty
	 * option name): FILE:LINE as libconfuse counted it (inside a
	 * section, the line of the section).
	 */
	if (rc != CFG_SUCCESS || eb->count > before) {
		if (eb->count == before && cfg->filename != NULL &&
		    cfg->line > 0)
			errbuf_add(
				eb, "%s:%d: syntax error",
				config_display_name(cfg->filename),
				config_display_line(cfg->filename, cfg->line));
		else if (eb->count == before)
			errbuf_add(eb, "%s: syntax error", path);
		cfg_free(cfg);
		return NULL;
	}
	return cfg;
}

/*
 * Warn when someone besides root and the daemon's owner could change what
 * the daemon runs: the file or its directory writable by a group or by
 * others (a sticky directory excepted), or owned by another user.
 */
static void
config_warn_perms(const char *path)
{
	char *dir = strdup(path), *slash;
	struct stat st;

	if (stat(path, &st) == 0) {
		if (st.st_mode & (S_IWGRP | S_IWOTH))
			log_warnx("configuration %s is writable by %s (mode "
				  "%04o): whoever can write it controls %s",
				  path,
				  (st.st_mode & S_IWOTH) ? "anyone"
							 : "its group",
				  (unsigned)(st.st_mode & 07777), log_ident());
		else if (st.st_uid != 0 && st.st_uid != geteuid())
			log_warnx("configuration %s is owned by uid %u, not "
				  "by root or uid %u: whoever owns it controls "
				  "%s",
				  path, (unsigned)st.st_uid,
				  (unsigned)geteuid(), log_ident());
	}
	slash = dir != NULL ? strrchr(dir, '/') : NULL;
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (stat(dir, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) &&
		    !(st.st_mode & S_ISVTX))
			log_warnx("the directory of the configuration, %s, is "
				  "writable by %s (mode %04o): whoever can "
				  "write it can replace the file",
				  dir,
				  (st.st_mode & S_IWOTH) ? "anyone"
							 : "its group",
				  (unsigned)(st.st_mode & 07777));
	}
	free(dir);
}

/*
 * Parse @path into a new configuration: pre-scan, libconfuse, then every
 * value converted and checked. NULL, with every error in @eb, on failure.
 * libconfuse's tree is freed before this returns.
 */
struct config *
config_load(struct keel *k, const char *path, struct errbuf *eb)
{
	struct config *c = calloc(1, sizeof(*c));
	cfg_t *cfg;
	int rc = -1;

	if (c == NULL || (c->path = strdup(path)) == NULL) {
		free(c);
		errbuf_add(eb, "%s: out of memory", path);
		return NULL;
	}
	config_warn_perms(path);
	config_includes_free();
	config_ctx.scan = &c->scan;
	config_ctx.eb = eb;
	config_ctx.k = k;
	cfg = config_parse(k, c, eb);
	/* Later libconfuse errors must not reach @eb. */
	config_ctx.eb = NULL;
	config_ctx.scan = NULL;
	config_includes_free();
	if (cfg != NULL) {
		rc = config_convert(k, c, cfg, eb);
		cfg_free(cfg);
	}
	if (rc == -1) {
		config_free(c);
		return NULL;
	}
	return c;
}

/* Expand ${VAR} and ${VAR:-default} as libconfuse does; NULL if no memory. */
static char *
config_expand(const char *in)
{
	size_t cap = strlen(in) + 1, len = 0;
	char *out = malloc(cap), *grown;
	const char *p = in;

	while (out != NULL && *p != '\0') {
		const char *val = NULL, *close;
		char name[256];
		size_t n;

		if (p[0] == '$' && p[1] == '{' &&
		    (close = strchr(p, '}')) != NULL) {
			const char *dflt = strstr(p, ":-");
			size_t nlen = (size_t)((dflt != NULL && dflt < close
							? dflt
							: close) -
					       (p + 2));

			snprintf(name, sizeof(name), "%.*s", (int)nlen, p + 2);
			val = getenv(name);
			if ((val == NULL || *val == '\0') && dflt != NULL &&
			    dflt < close) {
				snprintf(name, sizeof(name), "%.*s",
					 (int)(close - dflt - 2), dflt + 2);
				val = name;
			}
			if (val == NULL)
				val = "";
			p = close + 1;
		}
		n = val != NULL ? strlen(val) : 1;
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			grown = realloc(out, cap);
			if (grown == NULL) {
				free(out);
				return NULL;
			}
			out = grown;
		}
		if (val != NULL) {
			memcpy(out + len, val, n);
		} else {
			out[len] = *p++;
		}
		len += n;
	}
	if (out != NULL)
		out[len] = '\0';
	return out;
}

/*
 * Find pidfile and state-file in a file that may no longer parse, for
 * keeld -s; NULL where the file does not set them. ${VAR} is expanded;
 * include() is not followed.
 */
int
config_peek_paths(const char *path, char **pidfile, char **statefile)
{
	struct config_scan sc = { 0 };
	struct errbuf eb = { 0 };
	char *text = NULL;
	size_t len;

	*pidfile = *statefile = NULL;
	if (config_read_file(path, &text, &len, &eb) == -1) {
		errbuf_clear(&eb);
		return -1;
	}
	config_scan_text(path, text, len, &sc, &eb);
	*pidfile = sc.pidfile != NULL ? config_expand(sc.pidfile) : NULL;
	*statefile = sc.statefile != NULL ? config_expand(sc.statefile) : NULL;
	config_scan_free(&sc);
	errbuf_clear(&eb);
	free(text);
	return 0;
}
