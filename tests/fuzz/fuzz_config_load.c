/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for the whole configuration load: the pre-scan,
 * libconfuse with the schema of the core and of every shipped module
 * (heartbeat, http, serial, sim, built in), include(), ${VAR}
 * expansion, the conversion and checks of every option, then the `keeld -t`
 * transaction (KEEL_PREPARE_CHECK: the modules' prepare hooks check and
 * open nothing), optionally against a previous generation of running
 * instances, so that the reconciliation (match by title, compare, in place
 * or re-create, abort) runs too.
 *
 * Input: several files in one, split on lines that are exactly "----"
 * (the next include file) or "====" (the previous generation):
 *
 *   %env NAME=VALUE NAME=VALUE      optional first line; in a VALUE,
 *                                   \s is a space, \n a newline, \\ a \
 *   text of keel.conf               the main file
 *   ----
 *   text of 1.conf                  include("1.conf") finds it, ... up
 *   ----                            to 7.conf
 *   ====
 *   text of prev.conf               loaded first; its sections become
 *                                   running instances
 *
 * The files are written to a private directory (mkdtemp, removed at exit).
 * With KEEL_FUZZ_VERBOSE set, the outcomes and messages are printed.
 *
 * Besides ASan, UBSan and LeakSanitizer, it aborts when an invariant
 * breaks:
 * - a load or a check succeeds exactly when it reports nothing;
 * - every message is one line "FILE:LINE: ..." with FILE an existing file
 *   and LINE inside it;
 * - loading the same files twice gives the same messages and the same
 *   effective configuration (nothing is left behind in libconfuse or in
 *   config.c), and so does the check;
 * - the effective configuration (-T) loads again to itself;
 * - the check leaves the previous generation as it was;
 * - no descriptor is left open.
 *
 * Not followed: the log file check of a `log` path outside the private
 * directory (opening a device such as /dev/watchdog has effects); user and
 * group are not looked up (keel_check_accounts).
 */
#include "keel-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const struct keel_module_desc keel_builtin_heartbeat;
extern const struct keel_module_desc keel_builtin_sim;
extern const struct keel_module_desc keel_builtin_serial;
extern const struct keel_module_desc keel_builtin_http;

static const struct keel_module_desc *const fuzz_modules[] = {
	&keel_builtin_heartbeat,
	&keel_builtin_sim,
	&keel_builtin_serial,
	&keel_builtin_http,
	NULL,
};

static const struct keel_app fuzz_app = {
	KEEL_APP_HEAD,           .name = "keelfuzz",
	.version = "0",          .config = "/nonexistent/keelfuzz.conf",
	.modules = fuzz_modules,
};

#define FUZZ_MAX_INC 7
#define FUZZ_MAX_ENV 8

static char fuzz_dir[64];
static int fuzz_verbose; /* KEEL_FUZZ_VERBOSE set: print the outcomes */

/* Report a broken invariant and crash, so the fuzzer keeps the input. */
static void
fuzz_check(int ok, const char *what, const char *detail)
{
	if (!ok) {
		fprintf(stderr, "invariant broken: %s\n%s%s", what,
			detail != NULL ? detail : "",
			detail != NULL && *detail != '\0' ? "\n" : "");
		abort();
	}
}

/* Remove the private directory and what is in it. */
static void
fuzz_cleanup(void)
{
	DIR *d = opendir(fuzz_dir);
	struct dirent *e;
	char path[400];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", fuzz_dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(fuzz_dir);
}

/* Once per process: the private directory, quiet logs. */
static void
fuzz_init(void)
{
	const char *tmp = getenv("TMPDIR");

	if (fuzz_dir[0] != '\0')
		return;
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/keel-fuzz-XXXXXX",
		 tmp != NULL && tmp[0] == '/' && strlen(tmp) < 32 ? tmp
								  : "/tmp");
	if (mkdtemp(fuzz_dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(fuzz_cleanup);
	fuzz_verbose = getenv("KEEL_FUZZ_VERBOSE") != NULL;
	log_init("keelfuzz", KEEL_LOG_ERR);
}

/* Open descriptors of the process. */
static int
fuzz_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* Write @len bytes to DIR/@name. */
static void
fuzz_write(const char *name, const char *text, size_t len)
{
	char path[128];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", fuzz_dir, name);
	fp = fopen(path, "we");
	if (fp == NULL || fwrite(text, 1, len, fp) != len || fclose(fp) != 0) {
		perror(path);
		abort();
	}
}

/* Remove every file an earlier input wrote. */
static void
fuzz_clear_files(void)
{
	char path[128];
	int i;

	for (i = 0; i <= FUZZ_MAX_INC; i++) {
		snprintf(path, sizeof(path), "%s/%d.conf", fuzz_dir, i);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/keel.conf", fuzz_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/prev.conf", fuzz_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/printed.conf", fuzz_dir);
	unlink(path);
}

/* The environment the input sets, to undo. */
struct fuzz_env {
	char *name[FUZZ_MAX_ENV];
	char *old[FUZZ_MAX_ENV];
	int n;
};

/* A name the input may set: not one the process or a runtime reads. */
static int
fuzz_env_name_ok(const char *name)
{
	static const char *const deny[] = {
		"LD_",    "ASAN",   "UBSAN", "LSAN",          "MSAN",
		"MALLOC", "GLIBC",  "TZ",    "NOTIFY_SOCKET", "WATCHDOG_",
		"EVENT_", "TMPDIR", NULL
	};
	size_t i;

	if (name[0] == '\0' || strlen(name) > 32 ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			 "0123456789_") != strlen(name))
		return 0;
	for (i = 0; deny[i] != NULL; i++)
		if (strncmp(name, deny[i], strlen(deny[i])) == 0)
			return 0;
	return 1;
}

/* Set the variables of an "%env A=x B=y" line (without "%env"). */
static void
fuzz_env_set(struct fuzz_env *env, const char *line, size_t len)
{
	const char *p = line, *end = line + len;

	while (p < end && env->n < FUZZ_MAX_ENV) {
		const char *word = p, *eq;
		char *name, *value, *v;
		const char *q;

		while (p < end && *p != ' ')
			p++;
		eq = memchr(word, '=', (size_t)(p - word));
		if (eq != NULL) {
			name = strndup(word, (size_t)(eq - word));
			value = malloc((size_t)(p - eq));
			if (name == NULL || value == NULL)
				abort();
			for (q = eq + 1, v = value; q < p; q++) {
				if (*q == '\\' && q + 1 < p) {
					q++;
					*v++ = *q == 's'   ? ' '
					       : *q == 'n' ? '\n'
							   : *q;
				} else {
					*v++ = *q;
				}
			}
			*v = '\0';
			if (fuzz_env_name_ok(name) && getenv(name) == NULL) {
				env->name[env->n++] = name;
				setenv(name, value, 1);
			} else {
				free(name);
			}
			free(value);
		}
		while (p < end && *p == ' ')
			p++;
	}
}

/* Unset what fuzz_env_set set. */
static void
fuzz_env_undo(struct fuzz_env *env)
{
	int i;

	for (i = 0; i < env->n; i++) {
		unsetenv(env->name[i]);
		free(env->name[i]);
	}
	env->n = 0;
}

/*
 * Split the input into its files and write them; set its environment.
 * Returns non-zero when there is a previous generation.
 */
static int
fuzz_split(const char *text, size_t len, struct fuzz_env *env)
{
	const char *p = text, *end = text + len, *start;
	int ninc = 0, prev = 0;
	char name[32] = "keel.conf";

	if (len >= 5 && memcmp(p, "%env ", 5) == 0) {
		const char *nl = memchr(p, '\n', len);

		if (nl == NULL)
			nl = end;
		fuzz_env_set(env, p + 5, (size_t)(nl - (p + 5)));
		p = nl < end ? nl + 1 : end;
	}
	start = p;
	while (p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl : end;
		size_t n = (size_t)(eol - p);
		int inc = n == 4 && memcmp(p, "----", 4) == 0 &&
			  ninc < FUZZ_MAX_INC;
		int pv = n == 4 && memcmp(p, "====", 4) == 0 && !prev;

		if (inc || pv) {
			fuzz_write(name, start, (size_t)(p - start));
			if (inc)
				snprintf(name, sizeof(name), "%d.conf", ++ninc);
			else
				snprintf(name, sizeof(name), "prev.conf");
			prev |= pv;
			start = nl != NULL ? nl + 1 : end;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	fuzz_write(name, start, (size_t)(end - start));
	return prev;
}

/* Number of lines of file @path, or -1 if it cannot be read. */
static int
fuzz_file_lines(const char *path)
{
	FILE *fp = fopen(path, "re");
	int c, n = 1;

	if (fp == NULL)
		return -1;
	while ((c = getc(fp)) != EOF)
		n += c == '\n';
	fclose(fp);
	return n;
}

/* Every message: one line, FILE:LINE: with LINE inside FILE. */
static void
fuzz_check_messages(const struct errbuf *eb)
{
	const char *p = eb->text;
	int lines = 0;

	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n'), *colon = strchr(p, ':');
		char file[4096], *end;
		long line;
		int n;

		fuzz_check(nl != NULL, "a message ends with a newline", p);
		fuzz_check(colon != NULL && colon < nl,
			   "a message starts with FILE:", eb->text);
		snprintf(file, sizeof(file), "%.*s", (int)(colon - p), p);
		line = strtol(colon + 1, &end, 10);
		fuzz_check(end > colon + 1 && *end == ':',
			   "a message starts with FILE:LINE:", eb->text);
		n = fuzz_file_lines(file);
		fuzz_check(n > 0, "the FILE of a message exists", eb->text);
		fuzz_check(line >= 1 && line <= n,
			   "the LINE of a message is inside its FILE",
			   eb->text);
		lines++;
		p = nl + 1;
	}
	fuzz_check(lines == eb->count, "one line per message", eb->text);
}

/* The effective configuration (-T), as text to free, in @out. */
static void
fuzz_print(const struct config *c, char **out)
{
	size_t len = 0;
	FILE *fp = open_memstream(out, &len);

	if (fp == NULL)
		abort();
	config_print(c, fp);
	fclose(fp);
}

/* Load @path; check the outcome against the messages. */
static struct config *
fuzz_load(struct keel *k, const char *path, struct errbuf *eb)
{
	struct config *c = config_load(k, path, eb);

	fuzz_check((c != NULL) == (eb->count == 0),
		   "a load succeeds exactly when it reports nothing", eb->text);
	fuzz_check_messages(eb);
	return c;
}

/* Make the running instances of a previous generation from @c. */
static void
fuzz_running(struct keel *k, struct config *c)
{
	struct keel_module *m;
	size_t i;

	for (i = 0; i < c->nsecs; i++) {
		struct keel_instance *in =
			instance_new(c->secs[i].m, c->secs[i].title);

		fuzz_check(in != NULL, "instance_new", NULL);
		in->state = INSTANCE_RUNNING;
		in->conf = c->secs[i].conf;
		c->secs[i].conf = NULL;
		in->order = i;
		c->secs[i].m->state = MODULE_RUNNING;
	}
	/* instance_new puts a new one first: the file's order back. */
	for (m = k->modules; m != NULL; m = m->next) {
		struct keel_instance *in = m->instances, *rev = NULL, *next;

		for (; in != NULL; in = next) {
			next = in->next;
			in->next = rev;
			rev = in;
		}
		m->instances = rev;
	}
}

/* The running instances, as text to free, in @out. */
static void
fuzz_running_text(const struct keel *k, char **out)
{
	const struct keel_module_desc *const *d;
	const struct keel_module *m;
	const struct keel_instance *in;
	size_t len = 0;
	FILE *fp = open_memstream(out, &len);

	if (fp == NULL)
		abort();
	/* By name: a transaction puts the modules in the order of `load`. */
	for (d = fuzz_modules; *d != NULL; d++) {
		m = module_find((struct keel *)k, (*d)->name);
		fprintf(fp, "%s %d\n", m->name, (int)m->state);
		for (in = m->instances; in != NULL; in = in->next)
			fprintf(fp, " %s %d %p %p %d %p\n", in->title,
				(int)in->state, in->conf, in->next_conf,
				in->prepared, in->data);
	}
	fclose(fp);
}

/* A `log` outside the private directory is not opened (see the top). */
static void
fuzz_sandbox_log(struct config *c)
{
	size_t n = strlen(fuzz_dir);

	if (c->core.log != NULL && c->core.log[0] == '/' &&
	    (strncmp(c->core.log, fuzz_dir, n) != 0 || c->core.log[n] != '/' ||
	     strstr(c->core.log, "/..") != NULL)) {
		free(c->core.log);
		c->core.log = NULL;
	}
}

/* The `keeld -t` transaction on @c (consumed); the outcome checked. */
static int
fuzz_transaction(struct keel *k, struct config *c, struct errbuf *eb)
{
	char *before = NULL, *after = NULL;
	int rc;

	fuzz_running_text(k, &before);
	fuzz_sandbox_log(c);
	rc = reload_transaction(k, c, KEEL_PREPARE_CHECK, eb);
	fuzz_check(rc == 0 || rc == -1, "a transaction returns 0 or -1", NULL);
	fuzz_check((rc == 0) == (eb->count == 0),
		   "a check succeeds exactly when it reports nothing",
		   eb->text);
	fuzz_check_messages(eb);
	fuzz_running_text(k, &after);
	fuzz_check(strcmp(before, after) == 0,
		   "a check leaves the running instances as they were", after);
	free(before);
	free(after);
	return rc;
}

/* Same messages, or abort. */
static void
fuzz_check_same_errors(const struct errbuf *a, const struct errbuf *b,
		       const char *what)
{
	fuzz_check(a->count == b->count &&
			   (a->text == NULL) == (b->text == NULL) &&
			   (a->text == NULL || strcmp(a->text, b->text) == 0),
		   what, b->text);
}

/* The daemon context of one input: the built-in modules registered. */
static struct keel *
fuzz_keel(const char *path)
{
	struct keel *k = calloc(1, sizeof(*k));
	struct errbuf eb = { 0 };

	if (k == NULL)
		abort();
	k->app = k->opt.app = &fuzz_app;
	k->opt.config = path;
	k->opt.foreground = 1;
	k->pidfd = -1;
	k->ready_fd = -1;
	k->config_path = strdup(path);
	fuzz_check(k->config_path != NULL && keel_modules_init(k, &eb) == 0,
		   "the built-in modules register", eb.text);
	return k;
}

/* Free the daemon context (no module runs after a check). */
static void
fuzz_keel_free(struct keel *k)
{
	struct keel_module *m;

	for (m = k->modules; m != NULL; m = m->next)
		m->state = MODULE_IDLE;
	config_core_free(&k->core);
	module_unload_all(k);
	free(k->config_path);
	free(k);
}

/* Load, load again, print and load the print, check: see the top. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errbuf e1 = { 0 }, e2 = { 0 }, e3 = { 0 };
	struct fuzz_env env = { 0 };
	struct config *c1, *c2, *cp;
	char path[128], prev[128], printed[128];
	char *t1 = NULL, *t2 = NULL;
	struct keel *k;
	int fds, has_prev, rc1, rc2;

	/* As config_read_file: larger inputs are refused before parsing. */
	if (size > CONFIG_MAX_SIZE)
		return 0;
	fuzz_init();
	fds = fuzz_fds();
	fuzz_clear_files();
	has_prev = fuzz_split((const char *)data, size, &env);
	snprintf(path, sizeof(path), "%s/keel.conf", fuzz_dir);
	snprintf(prev, sizeof(prev), "%s/prev.conf", fuzz_dir);
	snprintf(printed, sizeof(printed), "%s/printed.conf", fuzz_dir);
	k = fuzz_keel(path);

	c1 = fuzz_load(k, path, &e1);
	c2 = fuzz_load(k, path, &e2);
	fuzz_check_same_errors(&e1, &e2, "a second load reports the same");
	fuzz_check((c1 == NULL) == (c2 == NULL),
		   "a second load has the same outcome", NULL);
	if (fuzz_verbose)
		fprintf(stderr, "load: %s\n%s", c1 != NULL ? "ok" : "failed",
			e1.text != NULL ? e1.text : "");
	if (c1 != NULL) {
		fuzz_print(c1, &t1);
		fuzz_print(c2, &t2);
		fuzz_check(strcmp(t1, t2) == 0,
			   "a second load gives the same configuration", t2);
		/* -T writes a file that parses to the same values. */
		fuzz_write("printed.conf", t1, strlen(t1));
		cp = fuzz_load(k, printed, &e3);
		fuzz_check(cp != NULL,
			   "the effective configuration loads again", e3.text);
		free(t2);
		fuzz_print(cp, &t2);
		fuzz_check(strcmp(strchr(t1, '\n'), strchr(t2, '\n')) == 0,
			   "the effective configuration loads to itself", t2);
		config_free(cp);
		errbuf_clear(&e3);
	}
	errbuf_clear(&e1);
	errbuf_clear(&e2);

	/* keeld -t, twice: the same outcome. */
	if (c1 != NULL) {
		rc1 = fuzz_transaction(k, c1, &e1);
		rc2 = fuzz_transaction(k, c2, &e2);
		fuzz_check(rc1 == rc2, "a second check has the same outcome",
			   NULL);
		if (fuzz_verbose)
			fprintf(stderr, "check: %s\n%s",
				rc1 == 0 ? "ok" : "failed",
				e1.text != NULL ? e1.text : "");
		fuzz_check_same_errors(&e1, &e2,
				       "a second check reports the same");
		errbuf_clear(&e1);
		errbuf_clear(&e2);
	}

	/* A check of the main file against a previous generation. */
	if (has_prev && c1 != NULL &&
	    (cp = config_load(k, prev, &e3)) != NULL) {
		fuzz_running(k, cp);
		config_free(cp);
		c1 = fuzz_load(k, path, &e1);
		fuzz_check(c1 != NULL, "the main file loads again", e1.text);
		rc1 = fuzz_transaction(k, c1, &e1);
		if (fuzz_verbose)
			fprintf(stderr, "check against prev.conf: %s\n%s",
				rc1 == 0 ? "ok" : "failed",
				e1.text != NULL ? e1.text : "");
		errbuf_clear(&e1);
	}
	errbuf_clear(&e3);

	free(t1);
	free(t2);
	fuzz_keel_free(k);
	fuzz_env_undo(&env);
	fuzz_check(fuzz_fds() == fds, "no descriptor is left open", NULL);
	return 0;
}
