/* SPDX-License-Identifier: ISC */
/* keeld: the daemon, as any program built on libkeel would be. */
#include <keel/daemon.h>

static const struct keel_app keeld = {
	KEEL_APP_HEAD,
	.name = "keeld",
	.version = KEELD_VERSION,
	.summary = "serial devices, modules and signals on one event loop",
	.config = KEELD_CONFIG,
	.pidfile = KEELD_PIDFILE,
	.statefile = KEELD_STATEFILE,
	.module_dir = KEELD_MODULE_DIR,
};

int
main(int argc, char **argv)
{
	return keel_main(argc, argv, &keeld);
}
