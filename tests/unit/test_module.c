/* SPDX-License-Identifier: ISC */
/*
 * module: two built-in modules side by side in one daemon context, both
 * given instances from one configuration (checked with -t, then for
 * real); descriptors refused with their reason.
 */
#include "keel-internal.h"
#include "keelfix.h"
#include "unit.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct two_conf {
	long n;
	char *s;
};

static const struct keel_option two_opts[] = {
	KEEL_OPTION("n", KEEL_OPT_INT, struct two_conf, n, "0", 0),
	KEEL_OPTION("s", KEEL_OPT_STRING, struct two_conf, s, "x", 0),
	KEEL_OPTIONS_END,
};

static char hooks[2048];

/* Append "WHAT(module:title)" to hooks. */
static void
note(const char *what, struct keel_instance *in)
{
	size_t n = strlen(hooks);

	snprintf(hooks + n, sizeof(hooks) - n, "%s(%s:%s)", what,
		 keel_module_name(keel_instance_module(in)),
		 keel_instance_name(in));
}

static int
two_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	(void)conf;
	note((flags & KEEL_PREPARE_CHECK) ? "T" : "P", in);
	return 0;
}

static void
two_commit(struct keel_instance *in, const void *conf)
{
	(void)conf;
	note("C", in);
}

static void
two_abort(struct keel_instance *in)
{
	note("A", in);
}

static void
two_remove(struct keel_instance *in, unsigned int flags)
{
	(void)flags;
	note("R", in);
	keel_instance_removed(in);
}

static int starts;

static int
two_start(struct keel_module *m)
{
	starts++;
	keel_module_set_data(m, &starts);
	return 0;
}

static void
two_stop(struct keel_module *m)
{
	assert_ptr_equal(keel_module_data(m), &starts);
	starts--;
}

#define DESC(n, kind)                                                       \
	{                                                                   \
		KEEL_MODULE_HEAD, .name = (n), .version = "1.0",            \
				  .section = (kind), .options = two_opts,   \
				  .conf_size = sizeof(struct two_conf),     \
				  .start = two_start, .stop = two_stop,     \
				  .prepare = two_prepare,                   \
				  .commit = two_commit, .abort = two_abort, \
				  .remove = two_remove                      \
	}

static const struct keel_module_desc alpha = DESC("alpha", KEEL_SECTION_TITLED);
static const struct keel_module_desc beta = DESC("beta", KEEL_SECTION_SINGLE);

static const struct keel_module_desc *const builtins[] = { &alpha, &beta,
							   NULL };

static const struct keel_app app = {
	KEEL_APP_HEAD,       .name = "moduletest",
	.version = "0",      .config = "/nonexistent",
	.modules = builtins,
};

struct fixture {
	char *dir;
	struct keel k;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = keelfix_init(&f->k, &app, "moduletest.conf");
	hooks[0] = '\0';
	starts = 0;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	keelfix_free(&f->k, f->dir);
	assert_int_equal(starts, 0);
	free(f);
	return 0;
}

/* The titles of module @name's instances, "a,b". */
static const char *
titles(struct fixture *f, const char *name)
{
	static char buf[256];
	struct keel_module *m = module_find(&f->k, name);
	struct keel_instance *in;

	assert_non_null(m);
	buf[0] = '\0';
	for (in = keel_instance_next(m, NULL); in != NULL;
	     in = keel_instance_next(m, in))
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
			 buf[0] != '\0' ? "," : "", keel_instance_name(in));
	return buf;
}

/* Both built-ins get their instances from one file. */
static void
test_two_modules(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct keel_module *a, *b;

	assert_int_equal(keel_modules_init(&f->k, &eb), 0);
	a = module_find(&f->k, "alpha");
	b = module_find(&f->k, "beta");
	assert_non_null(a);
	assert_non_null(b);
	assert_null(a->path);
	assert_null(b->path);
	assert_string_equal(keel_module_name(a), "alpha");
	assert_ptr_equal(keel_module_base(a), f->k.base);
	unit_write_str(f->k.config_path, "load = { beta, alpha }\n"
					 "alpha one { n = 1 }\n"
					 "beta { s = b }\n"
					 "alpha two { n = 2 }\n");
	/* -t: prepared with KEEL_PREPARE_CHECK, then aborted. */
	assert_int_equal(
		reload_transaction(&f->k, NULL, KEEL_PREPARE_CHECK, &eb), 0);
	assert_string_equal(hooks, "T(beta:)T(alpha:one)T(alpha:two)"
				   "A(beta:)A(alpha:one)A(alpha:two)");
	assert_string_equal(titles(f, "alpha"), "");
	assert_int_equal(starts, 0);
	/* For real: `load` order; both modules run their instances. */
	hooks[0] = '\0';
	if (reload_transaction(&f->k, NULL, 0, &eb) != 0)
		fail_msg("%s", eb.text);
	f->k.generation++;
	assert_string_equal(hooks, "P(beta:)P(alpha:one)P(alpha:two)"
				   "C(beta:)C(alpha:one)C(alpha:two)");
	assert_string_equal(titles(f, "alpha"), "one,two");
	assert_string_equal(titles(f, "beta"), "");
	assert_non_null(keel_instance_next(b, NULL));
	assert_int_equal(a->state, MODULE_RUNNING);
	assert_int_equal(b->state, MODULE_RUNNING);
	assert_int_equal(starts, 2);
	assert_ptr_equal(f->k.modules, b); /* ordered as `load` */
	assert_ptr_equal(b->next, a);
	/* Dropping one module from load stops it; the other runs on. */
	unit_write_str(f->k.config_path, "load = { alpha }\n"
					 "alpha one { n = 1 }\n"
					 "alpha two { n = 2 }\n");
	hooks[0] = '\0';
	if (reload_transaction(&f->k, NULL, 0, &eb) != 0)
		fail_msg("%s", eb.text);
	assert_string_equal(hooks, "R(beta:)");
	assert_int_equal(b->state, MODULE_IDLE);
	assert_int_equal(a->state, MODULE_RUNNING);
	assert_int_equal(starts, 1);
	errbuf_clear(&eb);
}

/* module_register @d: refused with exactly @why, nothing kept. */
static void
expect_refused(struct fixture *f, const struct keel_module_desc *d,
	       const char *why)
{
	struct keel_module *before = f->k.modules;
	char got[1024];
	size_t n = 0;
	struct keel_module *m;

	for (m = before; m != NULL; m = m->next)
		n++;
	strcpy(got, "(untouched)");
	if (module_register(&f->k, d, NULL, NULL, 0, got, sizeof(got)) != -1)
		fail_msg("'%s' registered, expected: %s", d->name, why);
	assert_string_equal(got, why);
	for (m = f->k.modules; m != NULL; m = m->next)
		n--;
	assert_int_equal(n, 0);
}

/* Descriptors the framework cannot use are refused with the reason. */
static void
test_refusals(void **state)
{
	struct fixture *f = *state;
	struct keel_module_desc d;
	char why[1024], expect[256];

	assert_int_equal(
		module_register(&f->k, &alpha, NULL, NULL, 0, why, sizeof(why)),
		0);
	/* ABI 1: both numbers named. */
	d = beta;
	d.abi = 1;
	expect_refused(
		f, &d,
		"built for module ABI 1, this moduletest supports ABI 2");
	d.abi = 3;
	expect_refused(
		f, &d,
		"built for module ABI 3, this moduletest supports ABI 2");
	/* A descriptor shorter than the hooks of ABI 2. */
	d = beta;
	d.size = 16;
	snprintf(expect, sizeof(expect),
		 "its descriptor has 16 bytes, ABI 2 needs at least %zu",
		 offsetof(struct keel_module_desc, reserved));
	expect_refused(f, &d, expect);
	d.size = (uint32_t)offsetof(struct keel_module_desc, reserved);
	d.name = "beta2";
	assert_int_equal(
		module_register(&f->k, &d, NULL, NULL, 0, why, sizeof(why)), 0);
	/* A name clash. */
	d = beta;
	d.name = "alpha";
	expect_refused(f, &d, "a module called 'alpha' is already there");
	/* A hook missing, each one. */
	d = beta;
	d.prepare = NULL;
	expect_refused(f, &d,
		       "it has a section but lacks one of the hooks prepare, "
		       "commit, abort, remove");
	d = beta;
	d.remove = NULL;
	expect_refused(f, &d,
		       "it has a section but lacks one of the hooks prepare, "
		       "commit, abort, remove");
	/* Without a section, no instance hook is needed. */
	d = beta;
	d.name = "nosection";
	d.section = KEEL_SECTION_NONE;
	d.prepare = NULL;
	d.commit = NULL;
	d.abort = NULL;
	d.remove = NULL;
	assert_int_equal(
		module_register(&f->k, &d, NULL, NULL, 0, why, sizeof(why)), 0);
	/* Other reasons. */
	d = beta;
	d.name = "bad name";
	expect_refused(f, &d,
		       "its descriptor names it 'bad name' (not a valid name)");
	d = beta;
	d.version = NULL;
	expect_refused(f, &d, "its descriptor has no version");
	d = beta;
	d.section = (enum keel_section_kind)7;
	expect_refused(f, &d, "unknown section kind 7");
	d = beta;
	d.label = "1port";
	expect_refused(f, &d, "label '1port' is not a metric label");
	d = beta;
	d.conf_size = 4;
	expect_refused(f, &d, "option 'n' lies outside conf_size");
	/* A loaded file is named by its path, and must match it. */
	d = beta;
	strcpy(why, "(untouched)");
	assert_int_equal(module_register(&f->k, &d, "/x/gamma.so", NULL, 0, why,
					 sizeof(why)),
			 -1);
	assert_string_equal(why, "its descriptor names it 'beta', not 'gamma'");
}

/* keel_modules_init: a broken built-in fails start-up with the reason. */
static void
test_builtin_refused(void **state)
{
	static const struct keel_module_desc old = {
		.abi = 1,
		.size = sizeof(struct keel_module_desc),
		.name = "old",
		.version = "1",
	};
	static const struct keel_module_desc *const list[] = { &alpha, &old,
							       NULL };
	static const struct keel_app bad = {
		KEEL_APP_HEAD,   .name = "moduletest",
		.version = "0",  .config = "/nonexistent",
		.modules = list,
	};
	struct fixture *f = *state;
	struct errbuf eb = { 0 };

	f->k.opt.app = &bad;
	assert_int_equal(keel_modules_init(&f->k, &eb), -1);
	assert_string_equal(eb.first,
			    "built-in module 'old': built for module ABI 1, "
			    "this moduletest supports ABI 2");
	errbuf_clear(&eb);
}

#define FT(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

static const struct CMUnitTest tests[] = {
	FT(test_two_modules),
	FT(test_refusals),
	FT(test_builtin_refused),
};

UNIT_MAIN_ALL("module", tests)
