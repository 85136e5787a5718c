/* SPDX-License-Identifier: ISC */
/*
 * Test module: its one instance takes `delay` seconds to drain when
 * removed, so that tests can watch shutdown-timeout and a second SIGTERM.
 */
#include <event2/event.h>
#include <keel/keel.h>
#include <stdlib.h>
#include <time.h>

struct slowstop_conf {
	double delay;
};

struct slowstop {
	struct keel_instance *in;
	double delay;
	struct event *drain;
};

/* The drain is over. */
static void
slowstop_done(evutil_socket_t fd, short what, void *arg)
{
	struct slowstop *s = arg;
	struct keel_instance *in = s->in;

	(void)fd;
	(void)what;
	event_free(s->drain);
	free(s);
	keel_instance_removed(in);
}

/*
 * Test-only: KEEL_TEST_START_DELAY (seconds) holds up start-up on purpose,
 * so that tests can signal a daemon that is starting.
 */
static int
slowstop_start(struct keel_module *m)
{
	const char *delay = getenv("KEEL_TEST_START_DELAY");

	(void)m;
	if (delay != NULL) {
		double d = atof(delay);
		struct timespec ts = { (time_t)d,
				       (long)((d - (double)(time_t)d) * 1e9) };

		nanosleep(&ts, NULL);
	}
	return 0;
}

/* Allocate the instance. */
static int
slowstop_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	struct slowstop *s;

	(void)conf;
	if (keel_instance_change(in) != KEEL_CHANGE_NEW ||
	    (flags & KEEL_PREPARE_CHECK))
		return 0;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -1;
	s->in = in;
	keel_instance_set_data(in, s);
	return 0;
}

/* Apply delay. */
static void
slowstop_commit(struct keel_instance *in, const void *conf)
{
	struct slowstop *s = keel_instance_data(in);

	s->delay = ((const struct slowstop_conf *)conf)->delay;
}

/* Drop what prepare allocated. */
static void
slowstop_abort(struct keel_instance *in)
{
	if (keel_instance_change(in) == KEEL_CHANGE_NEW)
		free(keel_instance_data(in));
}

/* First call: drain for `delay` seconds. With KEEL_REMOVE_NOW: now. */
static void
slowstop_remove(struct keel_instance *in, unsigned int flags)
{
	struct slowstop *s = keel_instance_data(in);
	struct timeval tv;

	if (flags & KEEL_REMOVE_NOW) {
		if (s->drain != NULL)
			event_free(s->drain);
		free(s);
		return;
	}
	s->drain = evtimer_new(keel_module_base(keel_instance_module(in)),
			       slowstop_done, s);
	tv = keel_timeval(s->delay);
	keel_module_log(keel_instance_module(in), KEEL_LOG_INFO,
			"draining for %gs", s->delay);
	evtimer_add(s->drain, &tv);
}

static const struct keel_option slowstop_options[] = {
	KEEL_OPTION_RANGE("delay", KEEL_OPT_SECONDS, struct slowstop_conf,
			  delay, "3", 0, 3600, 0),
	KEEL_OPTIONS_END,
};

KEEL_MODULE_DESCRIPTOR = {
	KEEL_MODULE_HEAD,
	.name = "slowstop",
	.version = "test",
	.section = KEEL_SECTION_SINGLE,
	.options = slowstop_options,
	.conf_size = sizeof(struct slowstop_conf),
	.start = slowstop_start,
	.prepare = slowstop_prepare,
	.commit = slowstop_commit,
	.abort = slowstop_abort,
	.remove = slowstop_remove,
};
