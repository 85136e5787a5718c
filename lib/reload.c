/* The configuration transaction: parse, validate, prepare, commit or abort. */
#include "keel-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Return non-zero when @cfg lists module @name in `load`. */
static int
reload_loads(cfg_t *cfg, const char *name)
{
	unsigned int i;

	for (i = 0; i < cfg_size(cfg, "load"); i++)
		if (strcmp(cfg_getnstr(cfg, "load", i), name) == 0)
			return 1;
	return 0;
}

/* The core's own prepare: can the new log file be opened? */
static int
reload_prepare_core(struct keel *k, cfg_t *cfg, struct errbuf *eb)
{
	const char *target =
		cfg_size(cfg, "log") > 0 ? cfg_getstr(cfg, "log") : NULL;
	int fd;

	(void)k;
	if (target == NULL || target[0] != '/' ||
	    strcmp(target, log_target()) == 0)
		return 0;
	/* Check without creating anything: keeld -t must leave no trace. */
	fd = open(target, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
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
			errbuf_add(eb, "%s: log: cannot create %s: %s",
				   cfg->filename, target, strerror(errno));
		free(dir);
		return ok ? 0 : -1;
	}
	errbuf_add(eb, "%s: log: cannot open %s: %s", cfg->filename, target,
		   strerror(errno));
	return -1;
}

/* Stop the modules removed from load, last in the list first. */
static void
reload_remove(struct keel_module *m)
{
	if (m == NULL)
		return;
	reload_remove(m->next);
	if (!m->remove_now)
		return;
	m->remove_now = 0;
	keel_module_log(m, KEEL_LOG_INFO, "removed from load: stopping");
	module_stop(m);
}

/* Throw away what the transaction prepared and started. */
static void
reload_abort(struct keel *k)
{
	struct keel_module *m;

	for (m = k->modules; m != NULL; m = m->next) {
		if (m->txn != NULL) {
			m->desc->abort(m, m->txn);
			m->txn = NULL;
		}
		m->remove_now = 0;
	}
	for (m = k->modules; m != NULL; m = m->next) {
		if (m->started_now) {
			m->started_now = 0;
			module_stop(m);
			/* A module started for nothing has nothing to drain. */
			if (m->state == MODULE_STOPPING)
				m->desc->stop(m);
		}
	}
}

/* Prepare one module for @cfg, starting it first if it is new. */
static int
reload_prepare_module(struct keel_module *m, cfg_t *cfg, unsigned int flags,
		      struct errbuf *eb)
{
	int before = eb->count;
	int rc;

	if (m->state == MODULE_STOPPING) {
		errbuf_add(
			eb,
			"%s: module '%s' is still stopping; try again when it has drained",
			cfg->filename, m->name);
		return -1;
	}
	if (m->state == MODULE_IDLE) {
		m->eb = eb;
		rc = m->desc->start(m);
		m->eb = NULL;
		if (rc == -1) {
			if (eb->count == before)
				errbuf_add(eb,
					   "%s: module '%s' failed to start",
					   cfg->filename, m->name);
			return -1;
		}
		m->state = MODULE_RUNNING;
		m->started_now = 1;
	}
	m->txn = NULL;
	m->eb = eb;
	rc = m->desc->prepare(m, cfg, flags, &m->txn);
	m->eb = NULL;
	/* An error reported is a failure, whatever the hook returned. */
	if (rc == -1 || eb->count > before) {
		if (eb->count == before)
			errbuf_add(eb,
				   "%s: module '%s' rejected the configuration",
				   cfg->filename, m->name);
		if (m->txn != NULL) {
			m->desc->abort(m, m->txn);
			m->txn = NULL;
		}
		return -1;
	}
	return 0;
}

/*
 * Run one transaction for the configuration file. @parsed, when given, is a
 * configuration already parsed from it (start-up) and is consumed. With
 * KEEL_PREPARE_CHECK everything is validated and prepared, then aborted.
 * On success the new core values are in k->core; the parsed tree is freed.
 */
int
reload_transaction(struct keel *k, cfg_t *parsed, unsigned int flags,
		   struct errbuf *eb)
{
	struct keel_module *m;
	cfg_t *cfg = parsed;
	struct keel_core core, old;

	if (cfg == NULL)
		cfg = config_load(k, k->config_path, eb);
	if (cfg == NULL)
		return -1;
	if (reload_prepare_core(k, cfg, eb) == -1) {
		cfg_free(cfg);
		return -1;
	}
	if (config_core(cfg, &core) == -1) {
		errbuf_add(eb, "%s: out of memory", cfg->filename);
		cfg_free(cfg);
		return -1;
	}
	module_order(k, cfg);
	for (m = k->modules; m != NULL; m = m->next) {
		if (!reload_loads(cfg, m->name)) {
			m->remove_now = m->state == MODULE_RUNNING;
			continue;
		}
		if (reload_prepare_module(m, cfg, flags, eb) == -1) {
			reload_abort(k);
			config_core_free(&core);
			cfg_free(cfg);
			return -1;
		}
	}
	if (flags & KEEL_PREPARE_CHECK) {
		reload_abort(k);
		config_core_free(&core);
		cfg_free(cfg);
		return 0;
	}
	/* Core first: what modules log while committing goes to the new log. */
	old = k->core;
	k->core = core;
	keel_apply_core(k, k->generation > 0 ? &old : NULL);
	config_core_free(&old);
	for (m = k->modules; m != NULL; m = m->next) {
		if (reload_loads(cfg, m->name)) {
			m->desc->commit(m, m->txn);
			m->txn = NULL;
			m->started_now = 0;
		}
	}
	reload_remove(k->modules);
	/* Modules copied what they keep: the tree is not needed any more. */
	cfg_free(cfg);
	/* Hand the parse's pages back (glibc keeps freed heap otherwise). */
	malloc_trim(0);
	return 0;
}
