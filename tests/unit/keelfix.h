/* SPDX-License-Identifier: ISC */
/* A struct keel for unit tests of the module and reload machinery. */
#ifndef KEELFIX_H
#define KEELFIX_H

#include "keel-internal.h"

/* Set @k up for @app in a fresh temporary directory (returned, to free
 * with keelfix_free): foreground, no pidfile, an event base, the
 * configuration path DIR/@conf. Modules are not registered. */
char *keelfix_init(struct keel *k, const struct keel_app *app,
		   const char *conf);

/* Stop every module now, unload them, free what keelfix_init made. */
void keelfix_free(struct keel *k, char *dir);

#endif
