/* SPDX-License-Identifier: ISC */
/*
 * heartbeat: the template module. Each `heartbeat NAME { message interval }`
 * section is a timer that logs its message every interval seconds. The
 * framework parses and checks the options, matches sections to running
 * beats on reload and renders status and metrics: what is left is the
 * module's own work.
 */
#include <event2/event.h>
#include <keel/keel.h>
#include <stdlib.h>

/* One section, as the framework fills it. */
struct beat_conf {
	char *message;
	double interval;
};

/* One running beat. */
struct beat {
	struct keel_instance *in;
	const struct beat_conf *c;
	struct event *ev;
	struct keel_metric *beats;
};

/* Log the message once. */
static void
beat_fire(struct beat *b)
{
	keel_metric_add(b->beats, 1);
	keel_instance_log(b->in, KEEL_LOG_INFO, "%s", b->c->message);
}

/* The timer. */
static void
beat_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	beat_fire(arg);
}

/* A new beat allocates its timer now, so that commit cannot fail. */
static int
heartbeat_prepare(struct keel_instance *in, const void *conf,
		  unsigned int flags)
{
	struct keel_module *m = keel_instance_module(in);
	struct beat *b;

	(void)conf;
	if (keel_instance_change(in) == KEEL_CHANGE_INPLACE ||
	    (flags & KEEL_PREPARE_CHECK))
		return 0;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return -1;
	b->in = in;
	b->ev = event_new(keel_module_base(m), -1, EV_PERSIST, beat_cb, b);
	keel_instance_set_data(in, b);
	return b->ev != NULL ? 0 : -1;
}

/* Start a new beat, or apply a new message or interval in place. */
static void
heartbeat_commit(struct keel_instance *in, const void *conf)
{
	struct beat *b = keel_instance_data(in);
	struct timeval tv;

	b->c = conf;
	if (keel_instance_change(in) != KEEL_CHANGE_INPLACE)
		b->beats = keel_metric_new(keel_instance_module(in), in,
					   KEEL_METRIC_COUNTER, "beats_total",
					   "Messages logged.", NULL, NULL);
	if (keel_instance_changed(in, "interval")) {
		tv = keel_timeval(b->c->interval);
		event_add(b->ev, &tv);
	}
}

/* Free a beat. */
static void
beat_free(struct beat *b)
{
	if (b == NULL)
		return;
	if (b->ev != NULL)
		event_free(b->ev);
	free(b);
}

/* Throw away a beat prepared for nothing. */
static void
heartbeat_abort(struct keel_instance *in)
{
	if (keel_instance_change(in) != KEEL_CHANGE_INPLACE)
		beat_free(keel_instance_data(in));
}

/* Stop a beat; nothing to drain. */
static void
heartbeat_remove(struct keel_instance *in, unsigned int flags)
{
	(void)flags;
	beat_free(keel_instance_data(in));
	keel_instance_removed(in);
}

/* Status: what the beat does. */
static void
heartbeat_status(struct keel_instance *in, struct keel_status *st)
{
	struct beat *b = keel_instance_data(in);

	keel_status_double(st, "interval", b->c->interval);
	keel_status_str(st, "message", b->c->message);
}

/* SIGALRM (wake): every beat fires now. */
static void
heartbeat_event(struct keel_module *m, enum keel_event ev)
{
	struct keel_instance *in = NULL;

	while ((in = keel_instance_next(m, in)) != NULL)
		beat_fire(keel_instance_data(in));
	(void)ev;
}

static const struct keel_option heartbeat_options[] = {
	KEEL_OPTION("message", KEEL_OPT_STRING, struct beat_conf, message,
		    "alive", KEEL_OPT_NONEMPTY),
	KEEL_OPTION_RANGE("interval", KEEL_OPT_SECONDS, struct beat_conf,
			  interval, "1", 0.001, 86400, 0),
	KEEL_OPTIONS_END,
};

KEEL_MODULE_DESCRIPTOR = {
	KEEL_MODULE_HEAD,
	.name = "heartbeat",
	.version = "2.0.0",
	.section = KEEL_SECTION_TITLED,
	.options = heartbeat_options,
	.conf_size = sizeof(struct beat_conf),
	.label = "beat",
	.events = KEEL_EVENT_WAKE,
	.prepare = heartbeat_prepare,
	.commit = heartbeat_commit,
	.abort = heartbeat_abort,
	.remove = heartbeat_remove,
	.status = heartbeat_status,
	.event = heartbeat_event,
};
