/* SPDX-License-Identifier: ISC */
/*
 * keelall: heartbeat, sim and serial linked into one program as built-in
 * modules (their sources compiled with -DKEEL_MODULE_SYMBOL=...), no module
 * directory. The same code as the .so files, through the same registration.
 */
#include <keel/daemon.h>

extern const struct keel_module_desc keel_builtin_heartbeat;
extern const struct keel_module_desc keel_builtin_sim;
extern const struct keel_module_desc keel_builtin_serial;

static const struct keel_module_desc *const allin_modules[] = {
	&keel_builtin_heartbeat,
	&keel_builtin_sim,
	&keel_builtin_serial,
	NULL,
};

static const struct keel_app allin = {
	KEEL_APP_HEAD,
	.name = "keelall",
	.version = "0.0.1",
	.config = "/nonexistent/keelall.conf",
	.modules = allin_modules,
};

int
main(int argc, char **argv)
{
	return keel_main(argc, argv, &allin);
}
