/* SPDX-License-Identifier: ISC */
/*
 * Modules, built in or loadable, through one registration and the same
 * checks; their instances; the module API.
 */
#include "keel-internal.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A valid module name: letters, digits, '-' and '_'. */
static int
module_name_ok(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) > 64)
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return 0;
	return 1;
}

/* Check one descriptor; 0 when the framework can use it. */
static int
module_check_desc(const struct keel_app *app, const struct keel_module_desc *d,
		  const char *name, int root, char *why, size_t whylen)
{
	if (d->abi != KEEL_MODULE_ABI) {
		snprintf(why, whylen,
			 "built for module ABI %u, this %s supports ABI %u",
			 (unsigned)d->abi, app->name,
			 (unsigned)KEEL_MODULE_ABI);
		return -1;
	}
	if (d->size < offsetof(struct keel_module_desc, reserved)) {
		snprintf(
			why, whylen,
			"its descriptor has %u bytes, ABI %u needs at least %zu",
			(unsigned)d->size, (unsigned)KEEL_MODULE_ABI,
			offsetof(struct keel_module_desc, reserved));
		return -1;
	}
	if (!module_name_ok(d->name) ||
	    (name != NULL && strcmp(d->name, name) != 0)) {
		snprintf(why, whylen, "its descriptor names it '%s'%s%s%s",
			 d->name != NULL ? d->name : "(null)",
			 name != NULL ? ", not '" : " (not a valid name)",
			 name != NULL ? name : "", name != NULL ? "'" : "");
		return -1;
	}
	if (d->version == NULL) {
		snprintf(why, whylen, "its descriptor has no version");
		return -1;
	}
	if ((root || d->section != KEEL_SECTION_NONE) &&
	    (d->prepare == NULL || d->commit == NULL || d->abort == NULL ||
	     d->remove == NULL)) {
		snprintf(
			why, whylen,
			"it has a section but lacks one of the hooks prepare, commit, abort, remove");
		return -1;
	}
	if (!root && d->section != KEEL_SECTION_NONE &&
	    d->section != KEEL_SECTION_SINGLE &&
	    d->section != KEEL_SECTION_TITLED &&
	    d->section != KEEL_SECTION_TITLED_DEFAULTS) {
		snprintf(why, whylen, "unknown section kind %d",
			 (int)d->section);
		return -1;
	}
	if (d->label != NULL && !isalpha((unsigned char)d->label[0])) {
		snprintf(why, whylen, "label '%s' is not a metric label",
			 d->label);
		return -1;
	}
	return option_check_table(d->options, d->conf_size, why, whylen);
}

/*
 * Register a module, built in (@path NULL) or loaded (@dl its handle): the
 * same checks for both. @return 0, or -1 with the reason (nothing kept).
 */
int
module_register(struct keel *k, const struct keel_module_desc *d,
		const char *path, void *dl, int root, char *why, size_t whylen)
{
	struct keel_module *m, **tail;
	char name[256];

	name[0] = '\0';
	if (path != NULL) {
		const char *base = strrchr(path, '/');
		size_t n;

		base = base != NULL ? base + 1 : path;
		n = strlen(base);
		snprintf(name, sizeof(name), "%.*s", (int)(n > 3 ? n - 3 : n),
			 base);
	}
	if (module_check_desc(k->app, d, path != NULL ? name : NULL, root, why,
			      whylen) == -1)
		return -1;
	if (module_find(k, d->name) != NULL) {
		snprintf(why, whylen, "a module called '%s' is already there",
			 d->name);
		return -1;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL || (m->name = strdup(d->name)) == NULL ||
	    (path != NULL && (m->path = strdup(path)) == NULL)) {
		if (m != NULL)
			free(m->name);
		free(m);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	m->k = k;
	m->dl = dl;
	m->desc = d;
	m->root = root;
	m->state = MODULE_IDLE;
	for (tail = &k->modules; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = m;
	return 0;
}

/*
 * Load @dir/@file: check ownership and mode, dlopen it, check the
 * descriptor. On failure undo everything and explain.
 */
int
module_load_file(struct keel *k, const char *dir, const char *file, char *why,
		 size_t whylen)
{
	const struct keel_module_desc *d;
	char path[4096];
	struct stat st;
	void *dl;
	int fd;

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
	if (module_register(k, d, path, dl, 0, why, whylen) == -1) {
		char inner[512];

		snprintf(inner, sizeof(inner), "%s", why);
		snprintf(why, whylen, "%s: %s", path, inner);
		dlclose(dl);
		return -1;
	}
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

/* The module called @name, or NULL. */
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

	for (m = k->modules; m != NULL; m = next) {
		next = m->next;
		while (m->instances != NULL)
			instance_destroy(m->instances);
		metric_free_all(m->metrics);
		config_module_free(m);
		if (m->dl != NULL)
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

/* Every running module's metrics and instances, as groups. */
void
module_status(struct keel *k, struct keel_status *st)
{
	struct keel_module *m;
	struct keel_instance *in;

	for (m = k->modules; m != NULL; m = m->next) {
		if (m->state == MODULE_IDLE)
			continue;
		keel_status_push(st, m->root ? "" : m->name);
		metric_status(m->metrics, st);
		for (in = m->instances; in != NULL; in = in->next) {
			if (in->state == INSTANCE_PROPOSED)
				continue;
			/*
			 * A draining instance may share its title with the
			 * new one of a section renamed back: keys stay unique.
			 */
			if (in->state == INSTANCE_REMOVING) {
				char key[300];

				snprintf(key, sizeof(key), "%s (removing)",
					 in->title);
				keel_status_push(st, key);
				keel_status_bool(st, "removing", 1);
			} else {
				keel_status_push(st, in->title);
			}
			if (m->desc->status != NULL)
				m->desc->status(in, st);
			metric_status(in->metrics, st);
			keel_status_pop(st);
		}
		keel_status_pop(st);
	}
}

/* The module's instances are gone: finish its stop. */
static void
module_stopped(struct keel_module *m)
{
	if (m->state != MODULE_STOPPING || m->instances != NULL)
		return;
	if (m->desc->stop != NULL)
		m->desc->stop(m);
	m->state = MODULE_IDLE;
	m->data = NULL;
	metric_free_all(m->metrics);
	m->metrics = NULL;
	log_debug("module %s: stopped", m->name);
	keel_module_drained(m->k);
}

/*
 * Ask one module to stop: every instance is removed (drains, unless
 * KEEL_REMOVE_NOW), then its stop hook runs.
 */
void
module_stop(struct keel_module *m, unsigned int flags)
{
	struct keel_instance *in, *next;

	if (m->state == MODULE_IDLE)
		return;
	if (m->state == MODULE_RUNNING)
		log_debug("module %s: stopping", m->name);
	m->state = MODULE_STOPPING;
	/*
	 * Running ones first: a remove hook may free draining instances,
	 * never a running one, so the next running one is safe to go on
	 * from. Then, for a forced stop, the draining ones, from the head
	 * again after each (there are few).
	 */
	for (in = m->instances; in != NULL; in = next) {
		for (next = in->next;
		     next != NULL && next->state != INSTANCE_RUNNING;
		     next = next->next)
			;
		if (in->state == INSTANCE_RUNNING) {
			in->stopping_now = 1;
			instance_remove(in, flags);
		}
	}
	for (;;) {
		for (in = m->instances; in != NULL; in = in->next)
			if (!in->stopping_now &&
			    (in->state == INSTANCE_RUNNING ||
			     (in->state == INSTANCE_REMOVING &&
			      (flags & KEEL_REMOVE_NOW))))
				break;
		if (in == NULL)
			break;
		in->stopping_now = 1;
		instance_remove(in, flags);
	}
	for (in = m->instances; in != NULL; in = in->next)
		in->stopping_now = 0;
	module_stopped(m);
}

/*
 * Order the modules as `load` lists them (the others after): they start in
 * that order and stop in the reverse one, so a module can rely on one
 * listed before it (serial on sim's device, say). The application's own
 * options come first.
 */
void
module_order(struct keel *k, const struct config *c)
{
	struct keel_module *sorted = NULL, **tail = &sorted, **pp, *m;
	size_t i;

	for (pp = &k->modules; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->root) {
			m = *pp;
			*pp = m->next;
			m->next = NULL;
			*tail = m;
			tail = &m->next;
			break;
		}
	for (i = 0; i < c->core.load.n; i++) {
		for (pp = &k->modules; *pp != NULL; pp = &(*pp)->next) {
			if (strcmp((*pp)->name, c->core.load.v[i]) != 0)
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

/* ---- instances ---- */

/*
 * A new, proposed instance at the head of @m's list (in O(1): the commit
 * puts the list back in the order of the file).
 */
struct keel_instance *
instance_new(struct keel_module *m, const char *title)
{
	struct keel_instance *in = calloc(1, sizeof(*in));

	if (in == NULL || (in->title = strdup(title)) == NULL) {
		free(in);
		return NULL;
	}
	in->m = m;
	in->state = INSTANCE_PROPOSED;
	in->next = m->instances;
	m->instances = in;
	return in;
}

/* Unlink and free an instance: configurations, metrics, itself. */
void
instance_destroy(struct keel_instance *in)
{
	struct keel_instance **pp;
	const struct keel_option *opts = in->m->desc->options;

	for (pp = &in->m->instances; *pp != NULL; pp = &(*pp)->next)
		if (*pp == in) {
			*pp = in->next;
			break;
		}
	option_conf_free(opts, in->conf);
	option_conf_free(opts, in->next_conf);
	metric_free_all(in->metrics);
	free(in->title);
	free(in);
}

/* Remove a running instance: the module drains it, or releases it now. */
void
instance_remove(struct keel_instance *in, unsigned int flags)
{
	struct keel_module *m = in->m;

	in->state = INSTANCE_REMOVING;
	in->change = KEEL_CHANGE_REMOVED;
	in->in_hook = 1;
	m->desc->remove(in, flags);
	in->in_hook = 0;
	if (in->gone || (flags & KEEL_REMOVE_NOW))
		instance_destroy(in);
	if (m->state == MODULE_STOPPING)
		module_stopped(m);
}

/* ---- the public module API ---- */

/* A timeval from seconds. */
struct timeval
keel_timeval(double seconds)
{
	struct timeval tv;

	if (!(seconds > 0))
		seconds = 0;
	if (seconds > 1e9)
		seconds = 1e9;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	return tv;
}

/* The event base. */
struct event_base *
keel_module_base(struct keel_module *m)
{
	return m->k->base;
}

/* May a peer's descriptor be kept? */
int
keel_module_fd_ok(struct keel_module *m, int fd)
{
	return m->k->fd_ceiling < 0 || fd < m->k->fd_ceiling;
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

/* Log as `NAME: [TITLE: ]message`; formatted only when @level is on. */
static void
module_vlog(const char *name, const char *title, int level, const char *fmt,
	    va_list ap)
{
	char msg[2048];

	if (!keel_log_enabled(level))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (title != NULL && title[0] != '\0')
		keel_log(level, "%s: %s: %s", name, title, msg);
	else
		keel_log(level, "%s: %s", name, msg);
}

/* keel_module_log within a budget. */
int
keel_module_log_limit(struct keel_module *m, struct keel_ratelimit *rl,
		      int level, const char *fmt, ...)
{
	char prefix[80];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "%s: ", m->name);
	if (!log_limit_begin(rl, level, prefix))
		return 0;
	va_start(ap, fmt);
	module_vlog(m->name, NULL, level, fmt, ap);
	va_end(ap);
	return 1;
}

/* Log with the module's name as prefix. */
void
keel_module_log(struct keel_module *m, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	module_vlog(m->name, NULL, level, fmt, ap);
	va_end(ap);
}

/* The instance's module. */
struct keel_module *
keel_instance_module(const struct keel_instance *in)
{
	return in->m;
}

/* The section's title. */
const char *
keel_instance_name(const struct keel_instance *in)
{
	return in->title;
}

/* The running configuration. */
const void *
keel_instance_conf(const struct keel_instance *in)
{
	return in->conf;
}

/* What the transaction does to the instance. */
enum keel_change
keel_instance_change(const struct keel_instance *in)
{
	return in->change;
}

/* Does the transaction change @option? */
int
keel_instance_changed(const struct keel_instance *in, const char *option)
{
	int i = option_index(in->m->desc->options, option);

	if (i < 0)
		return 0;
	if (in->change == KEEL_CHANGE_NEW || in->change == KEEL_CHANGE_RECREATE)
		return 1;
	return (in->changed >> i) & 1;
}

/* Attach the module's object. */
void
keel_instance_set_data(struct keel_instance *in, void *data)
{
	in->data = data;
}

/* The module's object. */
void *
keel_instance_data(const struct keel_instance *in)
{
	return in->data;
}

/* Attach a plan. */
void
keel_instance_set_plan(struct keel_instance *in, void *plan)
{
	in->plan = plan;
}

/* The plan. */
void *
keel_instance_plan(const struct keel_instance *in)
{
	return in->plan;
}

/* Iterate over running (and draining) instances. */
struct keel_instance *
keel_instance_next(struct keel_module *m, struct keel_instance *prev)
{
	struct keel_instance *in = prev != NULL ? prev->next : m->instances;

	while (in != NULL && in->state == INSTANCE_PROPOSED)
		in = in->next;
	return in;
}

/* A configuration error from prepare, at the option's line. */
void
keel_instance_error(struct keel_instance *in, const char *option,
		    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (in->m->eb == NULL || in->cfg == NULL) {
		keel_instance_log(in, KEEL_LOG_ERR, "%s", msg);
		return;
	}
	config_error_at(in->cfg, in->m->root ? NULL : in->sec, option,
			in->m->eb, msg);
}

/* Log with the module's name and the title as prefix. */
void
keel_instance_log(struct keel_instance *in, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	module_vlog(in->m->name, in->title, level, fmt, ap);
	va_end(ap);
}

/* A removed instance has drained. */
void
keel_instance_removed(struct keel_instance *in)
{
	struct keel_module *m = in->m;

	if (in->state != INSTANCE_REMOVING || in->gone)
		return;
	in->gone = 1;
	if (in->in_hook)
		return; /* instance_remove frees it when the hook returns */
	instance_destroy(in);
	if (m->state == MODULE_STOPPING)
		module_stopped(m);
}
