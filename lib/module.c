/* Plugin modules: discovery, checks, loading, and the module API. */
#include "keel-internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct keel_counter {
	struct keel_counter *next;
	char *name;
	uint64_t value;
};

/* Refuse a file or directory that someone else could have written. */
static int
module_check_owner(const struct stat *st, const char *what, char *why,
		   size_t whylen)
{
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		snprintf(why, whylen,
			 "%s is owned by uid %u, not by root or uid %u", what,
			 (unsigned)st->st_uid, (unsigned)geteuid());
		return -1;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, whylen, "%s is writable by %s (mode %04o)", what,
			 (st->st_mode & S_IWOTH) ? "others" : "its group",
			 (unsigned)(st->st_mode & 07777));
		return -1;
	}
	return 0;
}

/* Remember why module @name was refused. */
static void
module_refuse(struct keel *k, const char *name, const char *why)
{
	struct module_refused *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return;
	r->name = strdup(name);
	r->reason = strdup(why);
	r->next = k->refused;
	k->refused = r;
}

/* Check one descriptor; 0 when keeld can use it. */
static int
module_check_desc(const struct keel_module_desc *d, const char *name, char *why,
		  size_t whylen)
{
	const struct keel_validator *v;

	if (d->abi != KEEL_MODULE_ABI) {
		snprintf(why, whylen,
			 "built for module ABI %u, this keeld supports ABI %u",
			 (unsigned)d->abi, (unsigned)KEEL_MODULE_ABI);
		return -1;
	}
	if (d->name == NULL || strcmp(d->name, name) != 0) {
		snprintf(why, whylen, "its descriptor names it '%s', not '%s'",
			 d->name != NULL ? d->name : "(null)", name);
		return -1;
	}
	if (d->version == NULL || d->start == NULL || d->prepare == NULL ||
	    d->commit == NULL || d->abort == NULL || d->stop == NULL) {
		snprintf(
			why, whylen,
			"its descriptor lacks a version or one of the hooks start, prepare, commit, abort, stop");
		return -1;
	}
	if (d->section != KEEL_SECTION_NONE && d->options == NULL) {
		snprintf(why, whylen, "it declares a section without options");
		return -1;
	}
	for (v = d->validators; v != NULL && v->option != NULL; v++) {
		cfg_opt_t *o;

		for (o = d->options; o != NULL && o->name != NULL; o++)
			if (strcmp(o->name, v->option) == 0)
				break;
		if (o == NULL || o->name == NULL) {
			snprintf(
				why, whylen,
				"a validator names option '%s', which its section does not have",
				v->option);
			return -1;
		}
	}
	return 0;
}

/*
 * Load @dir/@file: check ownership and mode, dlopen it through the fd we
 * checked, check the descriptor. On failure undo everything and explain.
 */
int
module_load_file(struct keel *k, const char *dir, const char *file, char *why,
		 size_t whylen)
{
	char path[4096], name[256];
	const struct keel_module_desc *d;
	struct keel_module *m, **tail;
	struct stat st;
	size_t n = strlen(file);
	void *dl;
	int fd;

	snprintf(name, sizeof(name), "%.*s", (int)(n - 3), file);
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd == -1) {
		snprintf(why, whylen, "cannot open %s: %s", path,
			 strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s is not a regular file", path);
		close(fd);
		return -1;
	}
	if (module_check_owner(&st, path, why, whylen) == -1) {
		close(fd);
		return -1;
	}
	/*
	 * dlopen by path, not through /proc/self/fd/N: glibc recognises loaded
	 * objects by name, and a reused fd number would return another module.
	 * The directory was checked too, so nobody else can swap the file.
	 */
	close(fd);
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		snprintf(why, whylen, "%s: cannot load: %s", path, dlerror());
		return -1;
	}
	d = dlsym(dl, "keel_module_descriptor");
	if (d == NULL) {
		snprintf(
			why, whylen,
			"%s: no symbol keel_module_descriptor (not a keel module?)",
			path);
		dlclose(dl);
		return -1;
	}
	if (module_check_desc(d, name, why, whylen) == -1) {
		char inner[512];

		snprintf(inner, sizeof(inner), "%s", why);
		snprintf(why, whylen, "%s: %s", path, inner);
		dlclose(dl);
		return -1;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL || (m->name = strdup(name)) == NULL ||
	    (m->path = strdup(path)) == NULL) {
		if (m != NULL)
			free(m->name);
		free(m);
		dlclose(dl);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	m->k = k;
	m->dl = dl;
	m->desc = d;
	m->state = MODULE_IDLE;
	for (tail = &k->modules; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = m;
	return 0;
}

/* Compare names for a stable module order. */
static int
module_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Keep only "*.so" entries. */
static int
module_is_so(const struct dirent *e)
{
	size_t n = strlen(e->d_name);

	return n > 3 && strcmp(e->d_name + n - 3, ".so") == 0 &&
	       e->d_name[0] != '.';
}

/*
 * Load every module in @dir. A module that cannot be used is remembered
 * with the reason, and is an error only if the configuration loads it.
 */
int
module_scan(struct keel *k, const char *dir)
{
	struct dirent **list = NULL;
	char why[1024];
	struct stat st;
	int n, i;

	if (stat(dir, &st) == -1) {
		log_warnx("module path %s: %s", dir, strerror(errno));
		return 0;
	}
	if (module_check_owner(&st, dir, why, sizeof(why)) == -1) {
		log_warnx("refusing every module in %s: %s", dir, why);
		n = scandir(dir, &list, module_is_so, module_cmp);
		for (i = 0; i < n; i++) {
			char name[256];

			snprintf(name, sizeof(name), "%.*s",
				 (int)strlen(list[i]->d_name) - 3,
				 list[i]->d_name);
			module_refuse(k, name, why);
			free(list[i]);
		}
		free(list);
		return 0;
	}
	n = scandir(dir, &list, module_is_so, module_cmp);
	if (n == -1) {
		log_warn("cannot read module path %s", dir);
		return 0;
	}
	for (i = 0; i < n; i++) {
		char name[256];

		snprintf(name, sizeof(name), "%.*s",
			 (int)strlen(list[i]->d_name) - 3, list[i]->d_name);
		if (module_find(k, name) == NULL &&
		    module_load_file(k, dir, list[i]->d_name, why,
				     sizeof(why)) == -1) {
			log_warnx("module %s refused: %s", name, why);
			module_refuse(k, name, why);
		}
		free(list[i]);
	}
	free(list);
	return 0;
}

/* The loaded module called @name, or NULL. */
struct keel_module *
module_find(struct keel *k, const char *name)
{
	struct keel_module *m;

	for (m = k->modules; m != NULL; m = m->next)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

/* Why module @name was refused, or NULL. */
const char *
module_refusal(struct keel *k, const char *name)
{
	struct module_refused *r;

	for (r = k->refused; r != NULL; r = r->next)
		if (strcmp(r->name, name) == 0)
			return r->reason;
	return NULL;
}

/* Unload every module (they are stopped) and forget refusals. */
void
module_unload_all(struct keel *k)
{
	struct keel_module *m, *next;
	struct module_refused *r, *rnext;
	struct keel_counter *c, *cnext;

	for (m = k->modules; m != NULL; m = next) {
		next = m->next;
		for (c = m->counters; c != NULL; c = cnext) {
			cnext = c->next;
			free(c->name);
			free(c);
		}
		dlclose(m->dl);
		free(m->name);
		free(m->path);
		free(m);
	}
	k->modules = NULL;
	for (r = k->refused; r != NULL; r = rnext) {
		rnext = r->next;
		free(r->name);
		free(r->reason);
		free(r);
	}
	k->refused = NULL;
}

/* Deliver a framework event to the running modules that subscribed. */
void
module_notify(struct keel *k, enum keel_event ev)
{
	struct keel_module *m;

	for (m = k->modules; m != NULL; m = m->next)
		if (m->state == MODULE_RUNNING && (m->desc->events & ev) &&
		    m->desc->event != NULL)
			m->desc->event(m, ev);
}

/* Append every running module's status and counters. */
void
module_status(struct keel *k, struct keel_status *st)
{
	struct keel_module *m;
	struct keel_counter *c;

	for (m = k->modules; m != NULL; m = m->next) {
		if (m->state != MODULE_RUNNING)
			continue;
		for (c = m->counters; c != NULL; c = c->next) {
			char key[256];

			snprintf(key, sizeof(key), "counter.%s.%s", m->name,
				 c->name);
			keel_status_add(st, key, "%llu",
					(unsigned long long)c->value);
		}
		if (m->desc->status != NULL)
			m->desc->status(m, st);
	}
}

/* Ask one running module to stop. */
void
module_stop(struct keel_module *m)
{
	if (m->state != MODULE_RUNNING)
		return;
	m->state = MODULE_STOPPING;
	log_debug("module %s: stopping", m->name);
	m->desc->stop(m);
}

/*
 * Order the modules as `load` lists them (the others after): they start in
 * that order and stop in the reverse one, so a module can rely on one
 * listed before it (serial on sim's device, say).
 */
void
module_order(struct keel *k, cfg_t *cfg)
{
	struct keel_module *sorted = NULL, **tail = &sorted, **pp, *m;
	unsigned int i, n = cfg_size(cfg, "load");

	for (i = 0; i < n; i++) {
		const char *name = cfg_getnstr(cfg, "load", i);

		for (pp = &k->modules; *pp != NULL; pp = &(*pp)->next) {
			if (strcmp((*pp)->name, name) != 0)
				continue;
			m = *pp;
			*pp = m->next;
			m->next = NULL;
			*tail = m;
			tail = &m->next;
			break;
		}
	}
	*tail = k->modules;
	k->modules = sorted;
}

/* ---- the public module API ---- */

/* The event base. */
struct event_base *
keel_module_base(struct keel_module *m)
{
	return m->k->base;
}

/* The module's name. */
const char *
keel_module_name(const struct keel_module *m)
{
	return m->name;
}

/* Attach private state. */
void
keel_module_set_data(struct keel_module *m, void *data)
{
	m->data = data;
}

/* Return private state. */
void *
keel_module_data(const struct keel_module *m)
{
	return m->data;
}

/* Record a configuration error, as FILE:LINE: module: message. */
void
keel_module_error(struct keel_module *m, cfg_t *sec, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int line = 0;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sec != NULL)
		line = config_section_line(sec->name, keel_section_title(sec));
	if (sec != NULL && line == 0)
		line = sec->line;
	if (m->eb == NULL) {
		keel_module_log(m, KEEL_LOG_ERR, "%s", msg);
		return;
	}
	if (sec != NULL && sec->filename != NULL)
		errbuf_add(m->eb, "%s:%d: %s: %s",
			   config_display_name(sec->filename), line, m->name,
			   msg);
	else
		errbuf_add(m->eb, "%s: %s", m->name, msg);
}

/* The module has drained. */
void
keel_module_stopped(struct keel_module *m)
{
	if (m->state != MODULE_STOPPING)
		return;
	m->state = MODULE_IDLE;
	m->data = NULL;
	log_debug("module %s: stopped", m->name);
	keel_module_drained(m->k);
}

/* Log with the module's name as prefix. */
void
keel_module_log(struct keel_module *m, int level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (!keel_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	keel_log(level, "%s: %s", m->name, msg);
}

/* Find or create a counter. */
struct keel_counter *
keel_counter(struct keel_module *m, const char *name)
{
	struct keel_counter *c, **tail;

	for (tail = &m->counters; *tail != NULL; tail = &(*tail)->next)
		if (strcmp((*tail)->name, name) == 0)
			return *tail;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->name = strdup(name)) == NULL) {
		free(c);
		return NULL;
	}
	*tail = c;
	return c;
}

/* Add to a counter. */
void
keel_counter_add(struct keel_counter *c, uint64_t n)
{
	if (c != NULL)
		c->value += n;
}

/* Read a counter. */
uint64_t
keel_counter_value(const struct keel_counter *c)
{
	return c != NULL ? c->value : 0;
}
