/* SPDX-License-Identifier: ISC */
/*
 * sig: an application's own signal table on a base; a raised signal runs
 * its action through the one dispatcher and is counted.
 */
#include "keel-internal.h"
#include "unit.h"

#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static int wakes, reopens;

static void
sub_event(struct keel_module *m, enum keel_event ev)
{
	(void)m;
	if (ev == KEEL_EVENT_WAKE)
		wakes++;
	if (ev == KEEL_EVENT_REOPEN)
		reopens++;
}

static const struct keel_module_desc sub = {
	KEEL_MODULE_HEAD,
	.name = "sub",
	.version = "1",
	.section = KEEL_SECTION_NONE,
	.events = KEEL_EVENT_WAKE | KEEL_EVENT_REOPEN,
	.event = sub_event,
};

static const struct keel_signal_action table[] = {
	{ SIGUSR1, KEEL_ACTION_WAKE },
	{ SIGWINCH, KEEL_ACTION_NONE },
	{ SIGUSR2, KEEL_ACTION_REOPEN },
	{ 0, KEEL_ACTION_NONE },
};

static const struct keel_app app = {
	KEEL_APP_HEAD,    .name = "sigtest",
	.version = "0",   .config = "/nonexistent",
	.signals = table,
};

/* Stop a loop that waits too long. */
static void
late_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* Raise @signo and run the loop once, at most 2 s. */
static void
deliver(struct keel *k, int signo)
{
	struct timeval tv = { 2, 0 };
	struct event *late = evtimer_new(k->base, late_cb, k->base);

	assert_non_null(late);
	evtimer_add(late, &tv);
	assert_int_equal(raise(signo), 0);
	assert_int_equal(event_base_loop(k->base, EVLOOP_ONCE), 0);
	event_free(late);
}

/* The application's table: each signal its action, each counted. */
static void
test_custom_table(void **state)
{
	struct keel k;
	struct keel_module *m;
	char why[256];
	int i;

	(void)state;
	memset(&k, 0, sizeof(k));
	k.app = k.opt.app = &app;
	k.base = event_base_new();
	assert_non_null(k.base);
	assert_int_equal(
		module_register(&k, &sub, NULL, NULL, 0, why, sizeof(why)), 0);
	m = module_find(&k, "sub");
	m->state = MODULE_RUNNING;
	assert_int_equal(sig_install(&k), 0);
	assert_int_equal(k.nsig, 3);
	assert_int_equal(k.sig_no[0], SIGUSR1);
	assert_int_equal(k.sig_action[2], KEEL_ACTION_REOPEN);
	for (i = 0; i < k.nsig; i++) {
		k.sig_count[i] = metric_new(&k.metrics, KEEL_METRIC_COUNTER,
					    "signals_total", "Signals.",
					    "signal", sig_name(k.sig_no[i]));
		assert_non_null(k.sig_count[i]);
	}
	deliver(&k, SIGUSR1);
	assert_int_equal(wakes, 1);
	assert_int_equal(reopens, 0);
	assert_int_equal(keel_metric_value(k.sig_count[0]), 1);
	deliver(&k, SIGUSR1);
	assert_int_equal(wakes, 2);
	assert_int_equal(keel_metric_value(k.sig_count[0]), 2);
	deliver(&k, SIGWINCH); /* NONE: logged, counted, nothing else */
	assert_int_equal(wakes, 2);
	assert_int_equal(keel_metric_value(k.sig_count[1]), 1);
	deliver(&k, SIGUSR2);
	assert_int_equal(reopens, 1);
	assert_int_equal(keel_metric_value(k.sig_count[2]), 1);
	/* A module that is not running is not told. */
	m->state = MODULE_IDLE;
	deliver(&k, SIGUSR1);
	assert_int_equal(wakes, 2);
	assert_int_equal(keel_metric_value(k.sig_count[0]), 3);
	assert_string_equal(sig_name(SIGWINCH), "SIGWINCH");
	assert_string_equal(sig_name(SIGUSR1), "SIGUSR1");
	sig_free(&k);
	module_unload_all(&k);
	metric_free_all(k.metrics);
	event_base_free(k.base);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_custom_table),
};

UNIT_MAIN_ALL("sig", tests)
