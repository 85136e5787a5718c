/* A module built for another ABI: keeld must refuse it. */
#include <keel/keel.h>

static int
bad_start(struct keel_module *m)
{
	(void)m;
	return 0;
}

KEEL_MODULE_DESCRIPTOR = {
	.abi = KEEL_MODULE_ABI + 98,
	.name = "badabi",
	.version = "0",
	.start = bad_start,
};
