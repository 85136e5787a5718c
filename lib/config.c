/* Configuration: schema from the core and the modules, strict parsing. */
#include "keel-internal.h"

#include <errno.h>
#include <fcntl.h>
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

static struct {
	struct errbuf *eb;
	struct config_scan scan;
	struct keel *k;
	/* Includes are parsed from memfds holding their cleaned text. */
	int inc_fd[CONFIG_MAX_INCLUDES];
	char *inc_name[CONFIG_MAX_INCLUDES]; /* "/proc/self/fd/N" */
	char *inc_path[CONFIG_MAX_INCLUDES]; /* the real file */
	int ninc;
} config_ctx;

/* The name to show for a file libconfuse parsed (maps include memfds). */
const char *
config_display_name(const char *filename)
{
	int i;

	if (filename == NULL)
		return NULL;
	for (i = 0; i < config_ctx.ninc; i++)
		if (strcmp(config_ctx.inc_name[i], filename) == 0)
			return config_ctx.inc_path[i];
	return filename;
}

/* Close the include memfds of the last parse. */
static void
config_includes_free(void)
{
	int i;

	for (i = 0; i < config_ctx.ninc; i++) {
		close(config_ctx.inc_fd[i]);
		free(config_ctx.inc_name[i]);
		free(config_ctx.inc_path[i]);
	}
	config_ctx.ninc = 0;
}

/* Report a libconfuse error as FILE:LINE: message. */
static void
config_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (config_ctx.eb == NULL)
		return;
	if (cfg != NULL && cfg->filename != NULL && cfg->line > 0)
		errbuf_add(config_ctx.eb, "%s:%d: %s",
			   config_display_name(cfg->filename), cfg->line, msg);
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
	int depth = 0, line = 1;

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
		if (c == ' ' || c == '\t' || c == '\r' || c == ',' ||
		    c == ';') {
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
				if (*p == '\\' && p + 1 < end)
					p++;
				if (*p == '\n')
					line++;
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
			int is_list =
				t[2].type == T_EQ ||
				(t[2].type == T_OTHER && *t[2].start == '+');

			if (depth == CONFIG_MAX_DEPTH) {
				errbuf_add(eb, "%s:%d: nested deeper than %d",
					   file, line, CONFIG_MAX_DEPTH);
				return -1;
			}
			open_line[depth] = line;
			snprintf(open_name[depth], sizeof(open_name[depth]),
				 "%s", is_list ? "list" : "section");
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
			p++;
			cur.type = T_OTHER;
			cur.len = 1;
		} else if (c == '=') {
			p++;
			cur.type = T_EQ;
			cur.len = 1;
		} else if (c == '(' || c == ')' || c == '+') {
			p++;
			cur.type = T_OTHER;
			cur.len = 1;
		} else {
			while (p < end && *p != ' ' && *p != '\t' &&
			       *p != '\n' && *p != '\r' && *p != '=' &&
			       *p != '{' && *p != '}' && *p != '(' &&
			       *p != ')' && *p != ',' && *p != '"' &&
			       *p != '\'' && *p != ';' && *p != '#' &&
			       *p != '\0') {
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
		if (depth == 0 && t[1].type == T_WORD && t[2].type == T_EQ &&
		    (cur.type == T_WORD || cur.type == T_STRING))
			scan_note_value(sc, &t[1], &cur);
		t[0] = t[1];
		t[1] = t[2];
		t[2] = cur;
	}
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
	size_t i;

	for (i = 0; i < sc->nsecs; i++) {
		free(sc->secs[i].file);
		free(sc->secs[i].name);
		free(sc->secs[i].title);
	}
	free(sc->secs);
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
	struct stat st;
	char *buf;
	size_t got = 0;
	ssize_t n;
	int fd;

	/* O_NONBLOCK: a FIFO given as configuration must not hang the loop. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
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
	if (st.st_size > CONFIG_MAX_SIZE) {
		errbuf_add(eb, "%s: too large (%lld bytes, at most %d)", path,
			   (long long)st.st_size, CONFIG_MAX_SIZE);
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

/* Resolve @name against the directory of the file that includes it. */
static char *
config_resolve(const char *from, const char *name)
{
	char *copy, *dir, *out = NULL;

	if (name[0] == '/' || from == NULL)
		return strdup(name);
	copy = strdup(from);
	if (copy == NULL)
		return NULL;
	dir = dirname(copy);
	if (asprintf(&out, "%s/%s", dir, name) < 0)
		out = NULL;
	free(copy);
	return out;
}

/*
 * include("file"): relative to the including file, checked and cleaned by
 * the pre-scan like the main file, handed to libconfuse through a memfd.
 */
static int
config_include(cfg_t *cfg, cfg_opt_t *opt, int argc, const char **argv)
{
	const char *args[1];
	char *path, *text = NULL, *name = NULL;
	size_t len = 0;
	struct errbuf local = { 0 };
	int fd = -1, rc;

	if (argc != 1) {
		cfg_error(cfg, "include() takes exactly one file name");
		return 1;
	}
	if (config_ctx.ninc == CONFIG_MAX_INCLUDES) {
		cfg_error(cfg, "more than %d includes", CONFIG_MAX_INCLUDES);
		return 1;
	}
	path = config_resolve(config_display_name(cfg->filename), argv[0]);
	if (path == NULL) {
		cfg_error(cfg, "out of memory");
		return 1;
	}
	if (config_read_file(path, &text, &len, &local) == -1) {
		cfg_error(cfg, "include(\"%s\"): %s", argv[0], local.first);
		goto fail;
	}
	config_ctx.scan.clean =
		text; /* cleaned in place: the scan reads ahead */
	rc = config_scan_text(path, text, len, &config_ctx.scan, config_ctx.eb);
	config_ctx.scan.clean = NULL;
	if (rc == -1)
		goto fail;
	fd = memfd_create("keel-include", MFD_CLOEXEC);
	if (fd == -1 || write(fd, text, len) != (ssize_t)len ||
	    asprintf(&name, "/proc/self/fd/%d", fd) < 0) {
		cfg_error(cfg, "include(\"%s\"): %s", argv[0], strerror(errno));
		goto fail;
	}
	config_ctx.inc_fd[config_ctx.ninc] = fd;
	config_ctx.inc_name[config_ctx.ninc] = name;
	config_ctx.inc_path[config_ctx.ninc] = path;
	config_ctx.ninc++;
	free(text);
	args[0] = name;
	return cfg_include(cfg, opt, 1, args);
fail:
	if (fd != -1)
		close(fd);
	errbuf_clear(&local);
	free(text);
	free(path);
	return 1;
}

/* ---- core options and their validators ---- */

/* The last value of a (possibly list) option. */
static const char *
config_opt_last_str(cfg_opt_t *opt)
{
	return cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);
}

/* log-level = error | warning | notice | info | debug */
static int
config_check_level(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = config_opt_last_str(opt);

	if (v == NULL || log_level_parse(v) == -1) {
		cfg_error(
			cfg,
			"log-level: '%s' is not one of error, warning, notice, info, debug",
			v != NULL ? v : "");
		return -1;
	}
	return 0;
}

/* log = "syslog" | "stderr" | an absolute path */
static int
config_check_log(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = config_opt_last_str(opt);

	if (v == NULL || (strcmp(v, "syslog") != 0 &&
			  strcmp(v, "stderr") != 0 && v[0] != '/')) {
		cfg_error(
			cfg,
			"log: '%s' is not \"syslog\", \"stderr\" or an absolute file path",
			v != NULL ? v : "");
		return -1;
	}
	return 0;
}

/* pidfile and state-file: absolute paths. */
static int
config_check_path(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = config_opt_last_str(opt);

	if (v == NULL || v[0] != '/') {
		cfg_error(cfg, "%s: '%s' is not an absolute path", opt->name,
			  v != NULL ? v : "");
		return -1;
	}
	return 0;
}

/* user and group: non-empty names. */
static int
config_check_name(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *v = config_opt_last_str(opt);

	if (v == NULL || v[0] == '\0') {
		cfg_error(cfg, "%s: empty name", opt->name);
		return -1;
	}
	return 0;
}

/* shutdown-timeout: 0 < seconds <= 3600 */
static int
config_check_timeout(cfg_t *cfg, cfg_opt_t *opt)
{
	double v = cfg_opt_getnfloat(opt, cfg_opt_size(opt) - 1);

	if (!(v > 0 && v <= 3600)) {
		cfg_error(
			cfg,
			"shutdown-timeout: %g is out of range (0 < seconds <= 3600)",
			v);
		return -1;
	}
	return 0;
}

/* load = { names }: each one a module found in the module path. */
static int
config_check_load(cfg_t *cfg, cfg_opt_t *opt)
{
	unsigned int i, j;

	for (i = 0; i < cfg_opt_size(opt); i++) {
		const char *name = cfg_opt_getnstr(opt, i);
		const char *why;

		for (j = 0; j < i; j++)
			if (strcmp(cfg_opt_getnstr(opt, j), name) == 0) {
				cfg_error(cfg, "load: module '%s' listed twice",
					  name);
				return -1;
			}
		if (module_find(config_ctx.k, name) != NULL)
			continue;
		why = module_refusal(config_ctx.k, name);
		if (why != NULL)
			cfg_error(cfg, "load: module '%s' cannot be used: %s",
				  name, why);
		else
			cfg_error(cfg, "load: no module '%s' in %s", name,
				  config_ctx.k->opt.module_path);
		return -1;
	}
	return 0;
}

#define CORE_OPTS                                                         \
	CFG_STR("pidfile", KEEL_DEFAULT_PIDFILE, CFGF_NONE),              \
		CFG_STR("state-file", KEEL_DEFAULT_STATEFILE, CFGF_NONE), \
		CFG_STR("log", NULL, CFGF_NODEFAULT),                     \
		CFG_STR("log-level", "info", CFGF_NONE),                  \
		CFG_STR("user", NULL, CFGF_NODEFAULT),                    \
		CFG_STR("group", NULL, CFGF_NODEFAULT),                   \
		CFG_FLOAT("shutdown-timeout", 5.0, CFGF_NONE),            \
		CFG_STR_LIST("load", "{}", CFGF_NONE),                    \
		CFG_FUNC("include", config_include)

static const struct {
	const char *name;
	cfg_validate_callback_t fn;
} core_validators[] = {
	{ "pidfile", config_check_path },
	{ "state-file", config_check_path },
	{ "log", config_check_log },
	{ "log-level", config_check_level },
	{ "user", config_check_name },
	{ "group", config_check_name },
	{ "shutdown-timeout", config_check_timeout },
	{ "load", config_check_load },
};

/* Build the root schema: core options plus one section per module. */
static cfg_t *
config_new(struct keel *k)
{
	cfg_opt_t core[] = { CORE_OPTS };
	size_t ncore = sizeof(core) / sizeof(core[0]), n = ncore, i;
	struct keel_module *m;
	cfg_opt_t *opts;
	cfg_t *cfg;

	for (m = k->modules; m != NULL; m = m->next)
		n++;
	opts = calloc(n + 1, sizeof(*opts));
	if (opts == NULL)
		return NULL;
	memcpy(opts, core, sizeof(core));
	i = ncore;
	for (m = k->modules; m != NULL; m = m->next) {
		cfg_opt_t sec[] = { CFG_SEC(
			m->desc->name, m->desc->options,
			CFGF_MULTI | CFGF_NO_TITLE_DUPES |
				(m->desc->section == KEEL_SECTION_TITLED
					 ? CFGF_TITLE
					 : 0)) };

		if (m->desc->section == KEEL_SECTION_NONE)
			continue;
		opts[i++] = sec[0];
	}
	/* calloc left the terminating CFG_END() in place. */
	cfg = cfg_init(opts, CFGF_NONE);
	free(opts);
	if (cfg == NULL)
		return NULL;
	cfg_set_error_function(cfg, config_errfunc);
	for (i = 0; i < sizeof(core_validators) / sizeof(core_validators[0]);
	     i++)
		cfg_set_validate_func(cfg, core_validators[i].name,
				      core_validators[i].fn);
	for (m = k->modules; m != NULL; m = m->next) {
		const struct keel_validator *v = m->desc->validators;
		char path[256];

		for (; v != NULL && v->option != NULL; v++) {
			snprintf(path, sizeof(path), "%s|%s", m->desc->name,
				 v->option);
			cfg_set_validate_func(cfg, path, v->validate);
		}
	}
	return cfg;
}

/* The parse itself, for config_load. */
static cfg_t *
config_load_file(struct keel *k, const char *path, struct errbuf *eb)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp;
	cfg_t *cfg;
	int rc;

	config_scan_free(&config_ctx.scan);
	config_includes_free();
	config_ctx.eb = eb;
	config_ctx.k = k;
	if (config_read_file(path, &text, &len, eb) == -1)
		return NULL;
	config_ctx.scan.clean =
		text; /* cleaned in place: the scan reads ahead */
	rc = config_scan_text(path, text, len, &config_ctx.scan, eb);
	config_ctx.scan.clean = NULL;
	if (rc == -1) {
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
	rc = cfg_parse_fp(cfg, fp);
	fclose(fp);
	free(text);
	if (rc != CFG_SUCCESS) {
		if (eb->count == 0)
			errbuf_add(eb, "%s: parse error", path);
		cfg_free(cfg);
		return NULL;
	}
	if (config_validate(k, cfg, eb) == -1) {
		cfg_free(cfg);
		return NULL;
	}
	return cfg;
}

/*
 * Parse @path into a new configuration: pre-scan, libconfuse, then the
 * checks that need the whole file. NULL, with every error in @eb, on failure.
 */
cfg_t *
config_load(struct keel *k, const char *path, struct errbuf *eb)
{
	cfg_t *cfg = config_load_file(k, path, eb);

	/* Later libconfuse errors (a module's typo) must not reach @eb. */
	config_ctx.eb = NULL;
	return cfg;
}

/* Return non-zero when module @name is listed in `load`. */
static int
config_loads(cfg_t *cfg, const char *name)
{
	unsigned int i;

	for (i = 0; i < cfg_size(cfg, "load"); i++)
		if (strcmp(cfg_getnstr(cfg, "load", i), name) == 0)
			return 1;
	return 0;
}

/* The recorded file of a section, or the main file. */
static const char *
config_section_file(cfg_t *root, const char *name, const char *title)
{
	size_t i;

	for (i = 0; i < config_ctx.scan.nsecs; i++)
		if (strcmp(config_ctx.scan.secs[i].name, name) == 0 &&
		    strcmp(config_ctx.scan.secs[i].title, title) == 0)
			return config_ctx.scan.secs[i].file;
	return root->filename;
}

/* Checks that need the whole parsed file. */
int
config_validate(struct keel *k, cfg_t *cfg, struct errbuf *eb)
{
	struct keel_module *m;
	int bad = 0;

	for (m = k->modules; m != NULL; m = m->next) {
		unsigned int n;
		cfg_t *sec;
		const char *title;

		if (m->desc->section == KEEL_SECTION_NONE)
			continue;
		n = cfg_size(cfg, m->desc->name);
		if (n == 0)
			continue;
		sec = cfg_getnsec(cfg, m->desc->name, n > 1 ? 1 : 0);
		title = keel_section_title(sec);
		if (!config_loads(cfg, m->desc->name)) {
			sec = cfg_getnsec(cfg, m->desc->name, 0);
			title = keel_section_title(sec);
			errbuf_add(
				eb,
				"%s:%d: section '%s' belongs to module '%s', which is not in load",
				config_section_file(cfg, m->desc->name, title),
				config_section_line(m->desc->name, title),
				m->desc->name, m->desc->name);
			bad = 1;
		} else if (m->desc->section == KEEL_SECTION_SINGLE && n > 1) {
			errbuf_add(
				eb, "%s:%d: section '%s' may appear only once",
				config_section_file(cfg, m->desc->name, title),
				sec->line, m->desc->name);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

/* The line where section @name @title opens, from the last pre-scan. */
int
config_section_line(const char *name, const char *title)
{
	size_t i;

	for (i = 0; i < config_ctx.scan.nsecs; i++)
		if (strcmp(config_ctx.scan.secs[i].name, name) == 0 &&
		    strcmp(config_ctx.scan.secs[i].title, title) == 0)
			return config_ctx.scan.secs[i].line;
	return 0;
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

/* A string option or NULL when unset, duplicated; -1 when out of memory. */
static int
config_dup(cfg_t *cfg, const char *name, char **out)
{
	*out = NULL;
	if (cfg_size(cfg, name) == 0 || cfg_getstr(cfg, name) == NULL)
		return 0;
	*out = strdup(cfg_getstr(cfg, name));
	return *out != NULL ? 0 : -1;
}

/* Copy the core values out of a parsed configuration. */
int
config_core(cfg_t *cfg, struct keel_core *core)
{
	memset(core, 0, sizeof(*core));
	core->level = log_level_parse(cfg_getstr(cfg, "log-level"));
	core->shutdown_timeout = cfg_getfloat(cfg, "shutdown-timeout");
	if (config_dup(cfg, "pidfile", &core->pidfile) == -1 ||
	    config_dup(cfg, "state-file", &core->statefile) == -1 ||
	    config_dup(cfg, "log", &core->log) == -1 ||
	    config_dup(cfg, "user", &core->user) == -1 ||
	    config_dup(cfg, "group", &core->group) == -1) {
		config_core_free(core);
		return -1;
	}
	return 0;
}

/* Free core values. */
void
config_core_free(struct keel_core *core)
{
	free(core->pidfile);
	free(core->statefile);
	free(core->log);
	free(core->user);
	free(core->group);
	memset(core, 0, sizeof(*core));
}

/* A float option of the root section. */
double
config_float(cfg_t *cfg, const char *name)
{
	return cfg_getfloat(cfg, name);
}

/* Return the title of a section, "" for an untitled one. */
const char *
keel_section_title(cfg_t *sec)
{
	const char *t = sec != NULL ? cfg_title(sec) : NULL;

	return t != NULL ? t : "";
}
