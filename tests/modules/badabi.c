/* SPDX-License-Identifier: ISC */
/*
 * A module as built for module ABI 1 (its descriptor began with abi = 1 and
 * the name): the framework must refuse it, naming both ABI numbers.
 */
#include <keel/export.h>
#include <stdint.h>

struct abi1_desc {
	uint32_t abi;
	const char *name;
	const char *version;
};

KEEL_EXPORT extern const struct abi1_desc keel_module_descriptor;
const struct abi1_desc keel_module_descriptor = { 1, "badabi", "1.0.0" };
