/* SPDX-License-Identifier: ISC */
/*
 * reload: the reconciliation of instances, seen from a fake module that
 * writes down every hook the framework calls: new, unchanged, changed in
 * place, re-created, removed, renamed, and a prepare that fails.
 */
#include "keel-internal.h"
#include "keelfix.h"
#include "unit.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct fake_conf {
	long rate;    /* in place */
	char *device; /* re-creates */
};

static const struct keel_option fake_opts[] = {
	KEEL_OPTION_RANGE("rate", KEEL_OPT_INT, struct fake_conf, rate, "1", 0,
			  1000, 0),
	KEEL_OPTION("device", KEEL_OPT_STRING, struct fake_conf, device, NULL,
		    KEEL_OPT_RECREATE | KEEL_OPT_REQUIRED),
	KEEL_OPTIONS_END,
};

/* What the hooks saw, as "P(a,new,rate,device)C(a)..." */
static char hooks[4096];
static int objects; /* live per-instance objects */

/* Append to hooks. */
static void
note(const char *fmt, const char *title, const char *extra)
{
	size_t n = strlen(hooks);

	snprintf(hooks + n, sizeof(hooks) - n, fmt, title, extra);
}

static const char *const change_words[] = { "?",       "new",      "unchanged",
					    "inplace", "recreate", "removed" };

/* The module's object for an instance. */
struct fake_obj {
	long rate;
	char device[64];
};

static int
fake_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	const struct fake_conf *c = conf;
	const struct fake_conf *running = keel_instance_conf(in);
	char extra[128];

	snprintf(extra, sizeof(extra), "%s%s%s%s%s",
		 change_words[keel_instance_change(in)],
		 keel_instance_changed(in, "rate") ? ",rate" : "",
		 keel_instance_changed(in, "device") ? ",device" : "",
		 running != NULL ? ",running" : "",
		 (flags & KEEL_PREPARE_CHECK) ? ",check" : "");
	note("P(%s,%s)", keel_instance_name(in), extra);
	if (strcmp(c->device, "bad") == 0) {
		keel_instance_error(in, "device", "cannot open %s", c->device);
		return -1;
	}
	if (strcmp(c->device, "quiet") == 0)
		return -1; /* no message: the framework writes one */
	keel_instance_set_plan(in, (void *)c);
	return 0;
}

static void
fake_commit(struct keel_instance *in, const void *conf)
{
	const struct fake_conf *c = conf;
	struct fake_obj *o = keel_instance_data(in);

	assert_ptr_equal(keel_instance_plan(in), conf);
	if (o == NULL) {
		o = calloc(1, sizeof(*o));
		assert_non_null(o);
		objects++;
		keel_instance_set_data(in, o);
	}
	o->rate = c->rate;
	snprintf(o->device, sizeof(o->device), "%s", c->device);
	note("C(%s%s)", keel_instance_name(in), "");
}

static void
fake_abort(struct keel_instance *in)
{
	note("A(%s%s)", keel_instance_name(in), "");
}

/* Set: remove drains (keel_instance_removed later, from the test). */
static int slow_remove;

static void
fake_remove(struct keel_instance *in, unsigned int flags)
{
	struct fake_obj *o = keel_instance_data(in);

	note("R(%s%s)", keel_instance_name(in),
	     (flags & KEEL_REMOVE_NOW) ? ",now" : "");
	if (o != NULL) {
		free(o);
		objects--;
	}
	keel_instance_set_data(in, NULL);
	if (!slow_remove || (flags & KEEL_REMOVE_NOW))
		keel_instance_removed(in);
}

static const struct keel_module_desc fake = {
	KEEL_MODULE_HEAD,        .name = "fake",
	.version = "1",          .section = KEEL_SECTION_TITLED_DEFAULTS,
	.options = fake_opts,    .conf_size = sizeof(struct fake_conf),
	.prepare = fake_prepare, .commit = fake_commit,
	.abort = fake_abort,     .remove = fake_remove,
};

static const struct keel_module_desc *const builtins[] = { &fake, NULL };

static const struct keel_app app = {
	KEEL_APP_HEAD,       .name = "reloadtest",
	.version = "0",      .config = "/nonexistent",
	.modules = builtins,
};

struct fixture {
	char *dir;
	struct keel k;
	struct keel_module *m;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct errbuf eb = { 0 };

	assert_non_null(f);
	f->dir = keelfix_init(&f->k, &app, "reloadtest.conf");
	assert_int_equal(keel_modules_init(&f->k, &eb), 0);
	f->m = module_find(&f->k, "fake");
	assert_non_null(f->m);
	hooks[0] = '\0';
	objects = 0;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	keelfix_free(&f->k, f->dir);
	assert_int_equal(objects, 0);
	free(f);
	return 0;
}

/* Write the file, run a transaction; its result. hooks is reset first. */
static int
run(struct fixture *f, const char *text, unsigned int flags, struct errbuf *eb)
{
	unit_write_str(f->k.config_path, text);
	hooks[0] = '\0';
	return reload_transaction(&f->k, NULL, flags, eb);
}

/* Run and expect success with exactly the hooks @expect. */
static void
expect_ok(struct fixture *f, const char *text, unsigned int flags,
	  const char *expect)
{
	struct errbuf eb = { 0 };

	if (run(f, text, flags, &eb) != 0)
		fail_msg("transaction failed: %s", eb.text);
	if (strcmp(hooks, expect) != 0)
		fail_msg("hooks:\n  got      %s\n  expected %s", hooks, expect);
	f->k.generation++;
}

/* The running instance titled @title, or NULL. */
static struct keel_instance *
instance(struct fixture *f, const char *title)
{
	struct keel_instance *in;

	for (in = keel_instance_next(f->m, NULL); in != NULL;
	     in = keel_instance_next(f->m, in))
		if (strcmp(keel_instance_name(in), title) == 0)
			return in;
	return NULL;
}

/* The titles of the instances, in order: "a,b". */
static const char *
titles(struct fixture *f)
{
	static char buf[256];
	struct keel_instance *in;

	buf[0] = '\0';
	for (in = f->m->instances; in != NULL; in = in->next)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
			 buf[0] != '\0' ? "," : "", in->title);
	return buf;
}

#define CONF_AB                   \
	"load = { fake }\n"       \
	"fake a {\n"              \
	"  rate = 1\n"            \
	"  device = \"/dev/a\"\n" \
	"}\n"                     \
	"fake b {\n"              \
	"  rate = 2\n"            \
	"  device = \"/dev/b\"\n" \
	"}\n"

/* -t: every section is prepared with KEEL_PREPARE_CHECK, then aborted. */
static void
test_check_only(void **state)
{
	struct fixture *f = *state;

	expect_ok(f, CONF_AB, KEEL_PREPARE_CHECK,
		  "P(a,new,rate,device,check)P(b,new,rate,device,check)"
		  "A(a)A(b)");
	assert_null(f->m->instances);
	assert_int_equal(f->m->state, MODULE_IDLE);
	assert_int_equal(objects, 0);
	assert_null(f->k.core.pidfile);
}

/* The first configuration: NEW, prepare then commit per section. */
static void
test_new_and_unchanged(void **state)
{
	struct fixture *f = *state;
	struct keel_instance *a, *b;
	void *da, *db;

	expect_ok(f, CONF_AB, 0,
		  "P(a,new,rate,device)P(b,new,rate,device)C(a)C(b)");
	assert_int_equal(f->m->state, MODULE_RUNNING);
	assert_string_equal(titles(f), "a,b");
	a = instance(f, "a");
	b = instance(f, "b");
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(
		((const struct fake_conf *)keel_instance_conf(a))->rate, 1);
	assert_null(keel_instance_plan(a));
	assert_int_equal(objects, 2);
	assert_string_equal(f->k.core.pidfile, "/run/reloadtest.pid");
	da = keel_instance_data(a);
	db = keel_instance_data(b);
	/* The same file again: no hook at all, the same objects. */
	expect_ok(f, CONF_AB, 0, "");
	assert_ptr_equal(instance(f, "a"), a);
	assert_ptr_equal(instance(f, "b"), b);
	assert_ptr_equal(keel_instance_data(a), da);
	assert_ptr_equal(keel_instance_data(b), db);
	/* Written differently, the same values: still unchanged. */
	expect_ok(f,
		  "load = { fake }\n"
		  "# reordered, a comment, quotes\n"
		  "fake a { device = '/dev/a'\n rate = \"1\" }\n"
		  "fake b {\n device = /dev/b\n rate = +2\n}\n",
		  0, "");
	assert_ptr_equal(instance(f, "a"), a);
	assert_int_equal(objects, 2);
}

/* An in-place change: the same instance, only that option changed. */
static void
test_inplace(void **state)
{
	struct fixture *f = *state;
	struct keel_instance *a, *b;
	struct fake_obj *o;

	expect_ok(f, CONF_AB, 0,
		  "P(a,new,rate,device)P(b,new,rate,device)C(a)C(b)");
	a = instance(f, "a");
	b = instance(f, "b");
	o = keel_instance_data(a);
	expect_ok(f,
		  "load = { fake }\n"
		  "fake a {\n  rate = 5\n  device = \"/dev/a\"\n}\n"
		  "fake b {\n  rate = 2\n  device = \"/dev/b\"\n}\n",
		  0, "P(a,inplace,rate,running)C(a)");
	assert_ptr_equal(instance(f, "a"), a);
	assert_ptr_equal(instance(f, "b"), b);
	assert_ptr_equal(keel_instance_data(a), o);
	assert_int_equal(o->rate, 5);
	assert_int_equal(
		((const struct fake_conf *)keel_instance_conf(a))->rate, 5);
	assert_int_equal(keel_instance_change(a), 0);
	assert_int_equal(objects, 2);
}

/* Three sections; b writes its own rate; @d: a defaults section or "". */
#define CONF_DEFAULTS(d, c_rate)                                 \
	"load = { fake }\n" d "fake a { device = \"/dev/a\" }\n" \
	"fake b { device = \"/dev/b\"  rate = 7 }\n"             \
	"fake c { device = \"/dev/c\"" c_rate " }\n"

/* The running rate of instance @in. */
static long
rate_of(const struct keel_instance *in)
{
	return ((const struct fake_conf *)keel_instance_conf(in))->rate;
}

/*
 * A defaults section (`fake { }`) is no instance. A changed default is an
 * in-place change of that option in every section that inherits it, and
 * only there; a section that writes its own value is not called.
 */
static void
test_defaults_inherited(void **state)
{
	struct fixture *f = *state;
	struct keel_instance *a, *b, *c;

	expect_ok(f, CONF_DEFAULTS("fake { rate = 3 }\n", ""), 0,
		  "P(a,new,rate,device)P(b,new,rate,device)"
		  "P(c,new,rate,device)C(a)C(b)C(c)");
	assert_string_equal(titles(f), "a,b,c");
	a = instance(f, "a");
	b = instance(f, "b");
	c = instance(f, "c");
	assert_int_equal(rate_of(a), 3);
	assert_int_equal(rate_of(b), 7);
	assert_int_equal(rate_of(c), 3);
	/* The default changes: a and c change in place, b is not called. */
	expect_ok(f, CONF_DEFAULTS("fake { rate = 4 }\n", ""), 0,
		  "P(a,inplace,rate,running)P(c,inplace,rate,running)C(a)C(c)");
	assert_ptr_equal(instance(f, "a"), a);
	assert_ptr_equal(instance(f, "b"), b);
	assert_ptr_equal(instance(f, "c"), c);
	assert_int_equal(rate_of(a), 4);
	assert_int_equal(rate_of(b), 7);
	/* The same value written in c instead of inherited: unchanged. */
	expect_ok(f, CONF_DEFAULTS("fake { rate = 4 }\n", "  rate = 4"), 0, "");
	/* The defaults section gone: a falls back to the built-in 1. */
	expect_ok(f, CONF_DEFAULTS("", "  rate = 4"), 0,
		  "P(a,inplace,rate,running)C(a)");
	assert_int_equal(rate_of(a), 1);
	assert_int_equal(objects, 3);
}

/*
 * A re-create: a new instance prepared, then (module.h: "removals come
 * after every commit of the module") the new one committed and the old
 * one removed.
 */
static void
test_recreate(void **state)
{
	struct fixture *f = *state;
	struct keel_instance *a, *b, *b2;

	expect_ok(f, CONF_AB, 0,
		  "P(a,new,rate,device)P(b,new,rate,device)C(a)C(b)");
	a = instance(f, "a");
	b = instance(f, "b");
	expect_ok(f,
		  "load = { fake }\n"
		  "fake a {\n  rate = 1\n  device = \"/dev/a\"\n}\n"
		  "fake b {\n  rate = 3\n  device = \"/dev/b2\"\n}\n",
		  0, "P(b,recreate,rate,device)C(b)R(b)");
	assert_ptr_equal(instance(f, "a"), a);
	b2 = instance(f, "b");
	assert_non_null(b2);
	assert_ptr_not_equal(b2, b);
	assert_string_equal(((struct fake_obj *)keel_instance_data(b2))->device,
			    "/dev/b2");
	assert_string_equal(titles(f), "a,b");
	assert_int_equal(objects, 2);
}

/* A section removed is removed; a rename is a remove and a new one. */
static void
test_remove_and_rename(void **state)
{
	struct fixture *f = *state;
	struct keel_instance *b;

	expect_ok(f, CONF_AB, 0,
		  "P(a,new,rate,device)P(b,new,rate,device)C(a)C(b)");
	b = instance(f, "b");
	expect_ok(f,
		  "load = { fake }\n"
		  "fake b {\n  rate = 2\n  device = \"/dev/b\"\n}\n",
		  0, "R(a)");
	assert_null(instance(f, "a"));
	assert_ptr_equal(instance(f, "b"), b);
	assert_int_equal(objects, 1);
	expect_ok(f,
		  "load = { fake }\n"
		  "fake c {\n  rate = 2\n  device = \"/dev/b\"\n}\n",
		  0, "P(c,new,rate,device)C(c)R(b)");
	assert_string_equal(titles(f), "c");
	assert_int_equal(objects, 1);
	/* New sections keep the file's order, whatever ran before. */
	expect_ok(f,
		  "load = { fake }\n"
		  "fake z {\n  device = z\n}\n"
		  "fake c {\n  rate = 2\n  device = \"/dev/b\"\n}\n"
		  "fake a {\n  device = a\n}\n",
		  0, "P(z,new,rate,device)P(a,new,rate,device)C(z)C(a)");
	assert_string_equal(titles(f), "z,c,a");
	/* Out of load: every instance removed, the module stopped. */
	expect_ok(f, "load = {}\n", 0, "R(z)R(c)R(a)");
	assert_null(f->m->instances);
	assert_int_equal(f->m->state, MODULE_IDLE);
	assert_int_equal(objects, 0);
}

/*
 * A section renamed back while its old instance still drains: two
 * instances share the title; the new one runs, the draining one's status
 * keys stay apart, and it goes when it has drained.
 */
static void
test_title_back_while_draining(void **state)
{
	struct fixture *f = *state;
	struct keel_instance *old, *in;
	struct keel_status *st;
	const char *text;
	size_t len;

	expect_ok(f, "load = { fake }\nfake a {\n  device = a\n}\n", 0,
		  "P(a,new,rate,device)C(a)");
	old = instance(f, "a");
	slow_remove = 1;
	expect_ok(f, "load = { fake }\nfake b {\n  device = a\n}\n", 0,
		  "P(b,new,rate,device)C(b)R(a)");
	expect_ok(f, "load = { fake }\nfake a {\n  device = a\n}\n", 0,
		  "P(a,new,rate,device)C(a)R(b)");
	in = instance(f, "a");
	assert_ptr_not_equal(in, old);
	assert_int_equal(old->state, INSTANCE_REMOVING);
	st = status_new();
	assert_non_null(st);
	module_status(&f->k, st);
	text = status_text(st, &len);
	assert_non_null(strstr(text, "fake.a (removing).removing: yes\n"));
	assert_null(strstr(text, "fake.a.removing"));
	status_free(st);
	slow_remove = 0;
	/* The drain ends: only the running one is left. */
	keel_instance_removed(old);
	keel_instance_removed(instance(f, "b"));
	assert_string_equal(titles(f), "a");
}

/*
 * A prepare that fails: every prepared instance (the failing one too) is
 * aborted, nothing running changes, the error names FILE:LINE of the
 * option.
 */
static void
test_prepare_fails(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	struct keel_instance *a, *b;
	char expect[4200];

	expect_ok(f, CONF_AB, 0,
		  "P(a,new,rate,device)P(b,new,rate,device)C(a)C(b)");
	a = instance(f, "a");
	b = instance(f, "b");
	assert_int_equal(run(f,
			     "load = { fake }\n"
			     "fake a {\n  rate = 9\n  device = \"/dev/a\"\n}\n"
			     "fake b {\n  rate = 2\n  device = \"/dev/b3\"\n}\n"
			     "fake d {\n"
			     "  rate = 2\n"
			     "  device = \"bad\"\n" /* line 12 */
			     "}\n"
			     "fake e {\n  device = e\n}\n",
			     0, &eb),
			 -1);
	assert_string_equal(hooks, "P(a,inplace,rate,running)"
				   "P(b,recreate,rate,device)"
				   "P(d,new,rate,device)"
				   "A(a)A(b)A(d)");
	snprintf(expect, sizeof(expect), "%s:12: fake 'd': cannot open bad\n",
		 f->k.config_path);
	assert_string_equal(eb.text, expect);
	errbuf_clear(&eb);
	/* Nothing changed: same instances, same values, nothing pending. */
	assert_string_equal(titles(f), "a,b");
	assert_ptr_equal(instance(f, "a"), a);
	assert_ptr_equal(instance(f, "b"), b);
	assert_int_equal(
		((const struct fake_conf *)keel_instance_conf(a))->rate, 1);
	assert_int_equal(((struct fake_obj *)keel_instance_data(a))->rate, 1);
	assert_null(a->next_conf);
	assert_null(b->successor);
	assert_int_equal(objects, 2);
	/* A refusal without a message gets one, at the section's line. */
	assert_int_equal(run(f,
			     "load = { fake }\n"
			     "fake a {\n  rate = 1\n  device = \"/dev/a\"\n}\n"
			     "\n"
			     "fake q {\n  device = quiet\n}\n",
			     0, &eb),
			 -1);
	snprintf(expect, sizeof(expect),
		 "%s:7: fake 'q': rejected the configuration\n",
		 f->k.config_path);
	assert_string_equal(eb.text, expect);
	assert_string_equal(hooks, "P(q,new,rate,device)A(q)");
	errbuf_clear(&eb);
	/* And the old configuration still applies as unchanged. */
	expect_ok(f, CONF_AB, 0, "");
}

/* A file that does not convert calls no hook and changes nothing. */
static void
test_bad_file(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char expect[4200];

	expect_ok(f, CONF_AB, 0,
		  "P(a,new,rate,device)P(b,new,rate,device)C(a)C(b)");
	assert_int_equal(run(f,
			     "load = { fake }\n"
			     "fake a {\n  rate = 1001\n  device = x\n}\n",
			     0, &eb),
			 -1);
	snprintf(expect, sizeof(expect),
		 "%s:3: fake 'a': rate 1001 is out of range (0 to 1000)\n",
		 f->k.config_path);
	assert_string_equal(eb.text, expect);
	assert_string_equal(hooks, "");
	assert_string_equal(titles(f), "a,b");
	errbuf_clear(&eb);
}

/* Write @text to DIR/conf.d/@name. */
static void
write_confd(struct fixture *f, const char *name, const char *text)
{
	char *d = unit_path(f->dir, "conf.d");
	char *path = unit_path(d, name);

	unit_write_str(path, text);
	free(path);
	free(d);
}

/*
 * Sections from a conf.d pattern (every *.conf there): prepared in the files'
 * sorted order; a file added is a new instance at the next transaction; a title
 * used in two files is refused, naming both, and changes nothing.
 */
static void
test_conf_d(void **state)
{
	struct fixture *f = *state;
	struct errbuf eb = { 0 };
	char *d = unit_path(f->dir, "conf.d");
	char expect[4200];

	assert_int_equal(mkdir(d, 0700), 0);
	write_confd(f, "20-b.conf", "fake b {\n  device = \"/dev/b\"\n}\n");
	write_confd(f, "10-a.conf", "fake a {\n  device = \"/dev/a\"\n}\n");
	expect_ok(f, "load = { fake }\ninclude(\"conf.d/*.conf\")\n", 0,
		  "P(a,new,rate,device)P(b,new,rate,device)C(a)C(b)");
	assert_string_equal(titles(f), "a,b");
	write_confd(f, "15-c.conf", "fake c {\n  device = \"/dev/c\"\n}\n");
	expect_ok(f, "load = { fake }\ninclude(\"conf.d/*.conf\")\n", 0,
		  "P(c,new,rate,device)C(c)");
	assert_string_equal(titles(f), "a,c,b");
	write_confd(f, "30-dup.conf",
		    "\n\nfake a {\n  device = \"/dev/x\"\n}\n");
	assert_int_equal(
		run(f, "load = { fake }\ninclude(\"conf.d/*.conf\")\n", 0, &eb),
		-1);
	snprintf(expect, sizeof(expect),
		 "%s/30-dup.conf:3: fake 'a' is defined twice (first at "
		 "%s/10-a.conf:1)\n",
		 d, d);
	assert_string_equal(eb.text, expect);
	assert_string_equal(hooks, "");
	assert_string_equal(titles(f), "a,c,b");
	errbuf_clear(&eb);
	free(d);
}

#define FT(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

static const struct CMUnitTest tests[] = {
	FT(test_check_only),
	FT(test_new_and_unchanged),
	FT(test_defaults_inherited),
	FT(test_inplace),
	FT(test_recreate),
	FT(test_remove_and_rename),
	FT(test_prepare_fails),
	FT(test_bad_file),
	FT(test_conf_d),
	cmocka_unit_test_setup_teardown(test_title_back_while_draining, setup,
					teardown),
};

UNIT_MAIN_ALL("reload", tests)
