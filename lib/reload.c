/* SPDX-License-Identifier: ISC */
/*
 * The configuration transaction: parse, validate, prepare, commit or abort,
 * with the reconciliation of instances done here once for every module: the
 * running instances of a module are matched to the new sections by title,
 * and each is new, unchanged, changed in place, re-created or removed.
 */
#include "keel-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The core's own prepare: can the new log file be opened? */
static int
reload_prepare_core(struct keel *k, const struct config *c, struct errbuf *eb)
{
	const char *target = c->core.log;
	char why[256];
	int fd;

	(void)k;
	if (target == NULL || target[0] != '/' ||
	    strcmp(target, log_target()) == 0)
		return 0;
	/* Check without creating anything: -t must leave no trace. */
	fd = log_open_safe(target, 0, why, sizeof(why));
	if (fd != -1) {
		close(fd);
		return 0;
	}
	if (errno == ENOENT) {
		char *dir = strdup(target),
		     *slash = dir != NULL ? strrchr(dir, '/') : NULL;
		int ok;

		if (slash == NULL) {
			free(dir);
			return 0;
		}
		*slash = '\0';
		ok = access(slash == dir ? "/" : dir, W_OK) == 0;
		if (!ok)
			errbuf_add(eb, "%s: log: cannot create %s: %s", c->path,
				   target, strerror(errno));
		free(dir);
		return ok ? 0 : -1;
	}
	errbuf_add(eb, "%s: log: cannot open %s: %s", c->path, target, why);
	return -1;
}

/*
 * Matching sections to running instances without a search per section (a
 * reload of 16,000 sections made 128 million comparisons): instances are
 * kept in the order of the file, so the one after the last match (hint) is
 * usually it; otherwise a binary search in the running ones, sorted by
 * title once per transaction.
 */
struct reload_index {
	struct keel_instance **v;
	size_t n;
	struct keel_instance *hint;
};

/* Order instances by title. */
static int
reload_title_cmp(const void *a, const void *b)
{
	const struct keel_instance *const *x = a, *const *y = b;

	return strcmp((*x)->title, (*y)->title);
}

/* Index the running instances of @m; -1 when out of memory. */
static int
reload_index_build(struct keel_module *m, struct reload_index *ix)
{
	struct keel_instance *in;
	size_t n = 0;

	ix->hint = m->instances;
	ix->n = 0;
	for (in = m->instances; in != NULL; in = in->next)
		n += in->state == INSTANCE_RUNNING;
	ix->v = calloc(n + 1, sizeof(struct keel_instance *));
	if (ix->v == NULL)
		return -1;
	for (in = m->instances; in != NULL; in = in->next)
		if (in->state == INSTANCE_RUNNING)
			ix->v[ix->n++] = in;
	qsort(ix->v, ix->n, sizeof(struct keel_instance *), reload_title_cmp);
	return 0;
}

/* The running instance titled @title not matched yet, or NULL. */
static struct keel_instance *
reload_match(struct reload_index *ix, const char *title)
{
	struct keel_instance *in = ix->hint, key, *kp = &key, **found;

	if (in == NULL || in->state != INSTANCE_RUNNING || in->matched ||
	    strcmp(in->title, title) != 0) {
		key.title = (char *)title;
		found = bsearch(&kp, ix->v, ix->n,
				sizeof(struct keel_instance *),
				reload_title_cmp);
		in = found != NULL && !(*found)->matched ? *found : NULL;
	}
	if (in != NULL)
		ix->hint = in->next;
	return in;
}

/* Non-zero when a changed option needs the instance re-created. */
static int
reload_needs_recreate(const struct keel_option *opts, uint64_t changed)
{
	int i;

	for (i = 0; opts != NULL && opts[i].name != NULL; i++)
		if (((changed >> i) & 1) && (opts[i].flags & KEEL_OPT_RECREATE))
			return 1;
	return 0;
}

/* Call prepare for one instance; an error reported is a failure. */
static int
reload_prepare_instance(struct keel_instance *in, struct config *c,
			const struct config_section *sec, unsigned int flags,
			struct errbuf *eb)
{
	struct keel_module *m = in->m;
	int before = eb->count, rc;

	in->cfg = c;
	in->sec = sec;
	m->eb = eb;
	rc = m->desc->prepare(in, in->next_conf, flags);
	m->eb = NULL;
	in->prepared = 1;
	if (rc == -1 || eb->count > before) {
		if (eb->count == before) {
			m->eb = eb;
			keel_instance_error(in, NULL,
					    "rejected the configuration");
			m->eb = NULL;
		}
		return -1;
	}
	return 0;
}

/*
 * Propose one section (or the application's top level) to module @m:
 * match it, compare it, prepare what changes. @conf is taken.
 */
static int
reload_propose(struct keel_module *m, struct config *c,
	       const struct config_section *sec, const char *title, void **conf,
	       struct reload_index *ix, size_t order, unsigned int flags,
	       struct errbuf *eb)
{
	struct keel_instance *old = reload_match(ix, title), *in;
	uint64_t changed = 0;

	if (old != NULL) {
		old->matched = 1;
		old->order = order;
		changed = option_diff(m->desc->options, old->conf, *conf);
		if (changed == 0) {
			old->change = KEEL_CHANGE_UNCHANGED;
			return 0;
		}
		if (!reload_needs_recreate(m->desc->options, changed)) {
			old->change = KEEL_CHANGE_INPLACE;
			old->changed = changed;
			old->next_conf = *conf;
			*conf = NULL;
			return reload_prepare_instance(old, c, sec, flags, eb);
		}
	}
	in = instance_new(m, title);
	if (in == NULL) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return -1;
	}
	in->change = old != NULL ? KEEL_CHANGE_RECREATE : KEEL_CHANGE_NEW;
	in->changed = changed;
	in->order = order;
	in->next_conf = *conf;
	*conf = NULL;
	if (old != NULL) {
		old->change = KEEL_CHANGE_RECREATE;
		old->successor = in;
	}
	return reload_prepare_instance(in, c, sec, flags, eb);
}

/* Forget a transaction's marks on every instance of @m. */
static void
reload_clear(struct keel_module *m)
{
	struct keel_instance *in;

	for (in = m->instances; in != NULL; in = in->next) {
		in->matched = 0;
		in->prepared = 0;
		in->change = 0;
		in->changed = 0;
		in->successor = NULL;
		in->cfg = NULL;
		in->sec = NULL;
		in->plan = NULL;
	}
}

/* Non-zero for an instance the transaction under way does not keep. */
static int
reload_leaving(const struct keel_instance *in)
{
	return in->state == INSTANCE_REMOVING ||
	       (in->state == INSTANCE_RUNNING &&
		(!in->matched || in->successor != NULL));
}

/* The kept instances by their place in the file, the others after. */
static int
reload_order_cmp(const void *a, const void *b)
{
	const struct keel_instance *const *x = a, *const *y = b;
	int rx = reload_leaving(*x), ry = reload_leaving(*y);

	if (rx != ry)
		return rx - ry;
	if (!rx && (*x)->order != (*y)->order)
		return (*x)->order < (*y)->order ? -1 : 1;
	return (*x)->pos < (*y)->pos ? -1 : (*x)->pos > (*y)->pos;
}

/*
 * Keep the module's list in the order of the file (new instances were
 * put first): sorted once, not searched per section.
 */
static void
reload_reorder(struct keel_module *m)
{
	struct keel_instance *in, **v;
	size_t n = 0, i;

	for (in = m->instances; in != NULL; in = in->next)
		in->pos = n++;
	if (n < 2 || (v = calloc(n, sizeof(struct keel_instance *))) == NULL)
		return; /* out of memory: an order that is only cosmetic */
	for (in = m->instances, i = 0; in != NULL; in = in->next)
		v[i++] = in;
	qsort(v, n, sizeof(struct keel_instance *), reload_order_cmp);
	for (i = 0; i + 1 < n; i++)
		v[i]->next = v[i + 1];
	v[n - 1]->next = NULL;
	m->instances = v[0];
	free(v);
}

/* Prepared instances in the order their prepares ran (the file's). */
static int
reload_prepared_cmp(const void *a, const void *b)
{
	const struct keel_instance *const *x = a, *const *y = b;

	return (*x)->order < (*y)->order ? -1 : (*x)->order > (*y)->order;
}

/* Abort every prepared instance of @m, in the order of the prepares. */
static void
reload_abort_module(struct keel_module *m)
{
	struct keel_instance *in, **v;
	size_t n = 0, i;

	for (in = m->instances; in != NULL; in = in->next)
		n += in->prepared != 0;
	if (n == 0)
		return;
	v = calloc(n, sizeof(struct keel_instance *));
	if (v == NULL) {
		/* Out of memory: abort all the same, in list order. */
		for (in = m->instances; in != NULL; in = in->next)
			if (in->prepared)
				m->desc->abort(in);
		return;
	}
	for (in = m->instances, i = 0; in != NULL; in = in->next)
		if (in->prepared)
			v[i++] = in;
	qsort(v, n, sizeof(struct keel_instance *), reload_prepared_cmp);
	for (i = 0; i < n; i++)
		m->desc->abort(v[i]);
	free(v);
}

/* Throw away what the transaction prepared, proposed and started. */
static void
reload_abort(struct keel *k)
{
	struct keel_module *m;
	struct keel_instance *in, *next;

	for (m = k->modules; m != NULL; m = m->next) {
		reload_abort_module(m);
		for (in = m->instances; in != NULL; in = next) {
			next = in->next;
			if (in->state == INSTANCE_PROPOSED) {
				instance_destroy(in);
				continue;
			}
			option_conf_free(m->desc->options, in->next_conf);
			in->next_conf = NULL;
		}
		reload_clear(m);
		m->remove_now = 0;
	}
	for (m = k->modules; m != NULL; m = m->next) {
		if (m->started_now) {
			m->started_now = 0;
			/* A module started for nothing has nothing to drain. */
			module_stop(m, KEEL_REMOVE_NOW);
		}
	}
}

/* Start a module that is not running yet. */
static int
reload_start(struct keel_module *m, const struct config *c, struct errbuf *eb)
{
	if (m->state == MODULE_STOPPING) {
		errbuf_add(
			eb,
			"%s: module '%s' is still stopping; try again when it has drained",
			c->path, m->name);
		return -1;
	}
	if (m->state == MODULE_RUNNING)
		return 0;
	if (m->desc->start != NULL && m->desc->start(m) == -1) {
		errbuf_add(eb, "%s: module '%s' failed to start", c->path,
			   m->name);
		return -1;
	}
	m->state = MODULE_RUNNING;
	m->started_now = 1;
	return 0;
}

/* Prepare every section of one module. */
static int
reload_prepare_module(struct keel_module *m, struct config *c,
		      unsigned int flags, struct errbuf *eb)
{
	struct reload_index ix;
	size_t i;
	int rc = 0;

	if (reload_start(m, c, eb) == -1)
		return -1;
	if (reload_index_build(m, &ix) == -1) {
		errbuf_add(eb, "%s: out of memory", c->path);
		return -1;
	}
	if (m->root)
		rc = reload_propose(m, c, NULL, "", &c->root_conf, &ix, 0,
				    flags, eb);
	for (i = 0; !m->root && i < c->nsecs && rc == 0; i++) {
		struct config_section *sec = &c->secs[i];

		if (sec->m == m)
			rc = reload_propose(m, c, sec, sec->title, &sec->conf,
					    &ix, i, flags, eb);
	}
	free(ix.v);
	return rc;
}

/*
 * Commit one module: every prepared instance commits, then the removed and
 * re-created ones are removed (as nginx opens the new cycle before closing
 * the old: a published path or a socket handed over in prepare never
 * disappears in between; a removed instance drains asynchronously anyway).
 */
static void
reload_commit_module(struct keel_module *m)
{
	struct keel_instance *in, *next;

	/* The list in the order of the file: commits run in that order. */
	reload_reorder(m);
	for (in = m->instances; in != NULL; in = in->next) {
		if (!in->prepared)
			continue;
		m->desc->commit(in, in->next_conf);
		option_conf_free(m->desc->options, in->conf);
		in->conf = in->next_conf;
		in->next_conf = NULL;
		in->state = INSTANCE_RUNNING;
		in->matched = 1;
	}
	/*
	 * A remove hook may free the instance and other draining ones, never
	 * a running one (keel_instance_removed ignores those): the next
	 * running instance is a safe place to go on from.
	 */
	for (in = m->instances; in != NULL; in = next) {
		for (next = in->next;
		     next != NULL && next->state != INSTANCE_RUNNING;
		     next = next->next)
			;
		if (in->state != INSTANCE_RUNNING ||
		    (in->matched && in->successor == NULL))
			continue;
		keel_instance_log(in, KEEL_LOG_DEBUG, "%s",
				  in->successor != NULL ? "re-created"
							: "removed");
		instance_remove(in, 0);
	}
	reload_clear(m);
}

/*
 * Run one transaction for the configuration file. @c, when given, is a
 * configuration already parsed from it (start-up) and is consumed. With
 * KEEL_PREPARE_CHECK everything is validated and prepared, then aborted.
 * On success the new core values are in k->core.
 */
int
reload_transaction(struct keel *k, struct config *c, unsigned int flags,
		   struct errbuf *eb)
{
	struct keel_module *m;
	struct keel_core old;

	if (c == NULL) {
		c = config_load(k, k->config_path, eb);
		/*
		 * A reload of a file with nothing in it would stop every
		 * module: almost always a truncated write by an editor or a
		 * tool. Stopping everything on purpose says `load = {}`.
		 */
		if (c != NULL && c->empty) {
			errbuf_add(
				eb,
				"%s: the file is empty (only blanks or comments): refused on reload; to stop every module, write load = {}",
				c->path);
			config_free(c);
			return -1;
		}
	}
	if (c == NULL)
		return -1;
	if (reload_prepare_core(k, c, eb) == -1) {
		config_free(c);
		return -1;
	}
	module_order(k, c);
	for (m = k->modules; m != NULL; m = m->next) {
		if (!m->root && !config_loads(c, m->name)) {
			m->remove_now = m->state == MODULE_RUNNING;
			continue;
		}
		if (reload_prepare_module(m, c, flags, eb) == -1) {
			reload_abort(k);
			config_free(c);
			return -1;
		}
	}
	if (flags & KEEL_PREPARE_CHECK) {
		reload_abort(k);
		config_free(c);
		return 0;
	}
	/* Core first: what modules log while committing goes to the new log. */
	old = k->core;
	k->core = c->core;
	keel_apply_core(k, k->generation > 0 ? &old : NULL);
	c->core = old; /* freed with @c */
	for (m = k->modules; m != NULL; m = m->next) {
		if (m->root || core_loads(&k->core, m->name)) {
			reload_commit_module(m);
			m->started_now = 0;
		}
	}
	/* Modules removed from load stop, the last in the list first. */
	for (;;) {
		struct keel_module *last = NULL;

		for (m = k->modules; m != NULL; m = m->next)
			if (m->remove_now)
				last = m;
		if (last == NULL)
			break;
		last->remove_now = 0;
		keel_module_log(last, KEEL_LOG_INFO,
				"removed from load: stopping");
		module_stop(last, 0);
	}
	/* Modules copied what they keep; instances took their structs. */
	config_free(c);
	/* Hand the parse's pages back (glibc keeps freed heap otherwise). */
	malloc_trim(0);
	return 0;
}
