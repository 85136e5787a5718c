/* SPDX-License-Identifier: ISC */
/* A struct keel for unit tests of the module and reload machinery. */
#include "keelfix.h"
#include "unit.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

/* Set up a daemon context in a fresh temporary directory. */
char *
keelfix_init(struct keel *k, const struct keel_app *app, const char *conf)
{
	char *dir = unit_tmpdir();

	memset(k, 0, sizeof(*k));
	k->app = k->opt.app = app;
	k->opt.foreground = 1;
	k->pidfd = -1;
	k->ready_fd = -1;
	k->config_path = unit_path(dir, conf);
	k->base = event_base_new();
	assert_non_null(k->base);
	return dir;
}

/* Stop, unload and free. */
void
keelfix_free(struct keel *k, char *dir)
{
	struct keel_module *m;

	for (m = k->modules; m != NULL; m = m->next)
		module_stop(m, KEEL_REMOVE_NOW);
	module_unload_all(k);
	config_core_free(&k->core);
	event_base_free(k->base);
	unit_rmtree(dir);
	free(dir);
	free(k->config_path);
}
