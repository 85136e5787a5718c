/*
 * Test module: takes `delay` seconds to drain when stopped, so that tests can
 * watch shutdown-timeout and a second SIGTERM.
 */
#include <event2/event.h>
#include <keel/keel.h>
#include <stdlib.h>
#include <time.h>

struct slowstop {
	double delay;
	struct event *drain;
};

/* The drain is over. */
static void
slowstop_done(evutil_socket_t fd, short what, void *arg)
{
	struct keel_module *m = arg;
	struct slowstop *s = keel_module_data(m);

	(void)fd;
	(void)what;
	event_free(s->drain);
	free(s);
	keel_module_stopped(m);
}

/*
 * Allocate. Test-only: KEEL_TEST_START_DELAY (seconds) holds up
 * start-up on purpose, so that tests can signal a keeld that is starting.
 */
static int
slowstop_start(struct keel_module *m)
{
	struct slowstop *s = calloc(1, sizeof(*s));
	const char *delay = getenv("KEEL_TEST_START_DELAY");

	if (s == NULL)
		return -1;
	keel_module_set_data(m, s);
	if (delay != NULL) {
		double d = atof(delay);
		struct timespec ts = { (time_t)d,
				       (long)((d - (double)(time_t)d) * 1e9) };

		nanosleep(&ts, NULL);
	}
	return 0;
}

/* Read delay. */
static int
slowstop_prepare(struct keel_module *m, cfg_t *cfg, unsigned int flags,
		 void **txn)
{
	cfg_t *sec =
		cfg_size(cfg, "slowstop") ? cfg_getsec(cfg, "slowstop") : NULL;
	double *d = malloc(sizeof(*d));

	(void)m;
	(void)flags;
	if (d == NULL)
		return -1;
	*d = sec != NULL ? cfg_getfloat(sec, "delay") : 3.0;
	*txn = d;
	return 0;
}

/* Apply delay. */
static void
slowstop_commit(struct keel_module *m, void *txn)
{
	struct slowstop *s = keel_module_data(m);

	s->delay = *(double *)txn;
	free(txn);
}

/* Drop delay. */
static void
slowstop_abort(struct keel_module *m, void *txn)
{
	(void)m;
	free(txn);
}

/* First call: drain for `delay` seconds. Second call: now. */
static void
slowstop_stop(struct keel_module *m)
{
	struct slowstop *s = keel_module_data(m);
	struct timeval tv;

	if (s->drain != NULL) {
		slowstop_done(-1, 0, m);
		return;
	}
	s->drain = evtimer_new(keel_module_base(m), slowstop_done, m);
	tv = keel_timeval(s->delay);
	keel_module_log(m, KEEL_LOG_INFO, "draining for %gs", s->delay);
	evtimer_add(s->drain, &tv);
}

static cfg_opt_t slowstop_opts[] = {
	CFG_FLOAT("delay", 3.0, CFGF_NONE),
	CFG_END(),
};

KEEL_MODULE_DESCRIPTOR = {
	.abi = KEEL_MODULE_ABI,
	.name = "slowstop",
	.version = "test",
	.section = KEEL_SECTION_SINGLE,
	.options = slowstop_opts,
	.start = slowstop_start,
	.prepare = slowstop_prepare,
	.commit = slowstop_commit,
	.abort = slowstop_abort,
	.stop = slowstop_stop,
};
