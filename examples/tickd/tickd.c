/* SPDX-License-Identifier: ISC */
/*
 * tickd: a whole daemon on libkeel. Its own name, configuration file and
 * top-level option (`greeting`), and one built-in module, `tick`: each
 * `tick NAME { every = 2s  text = "..." }` logs its text on a timer and
 * counts it. keel_main() gives it the command line, daemon mode, pidfile,
 * signals, transactional reload, -s control, status and metrics.
 */
#include <event2/event.h>
#include <keel/keel.h>
#include <stdlib.h>

/* ---- the top level: greeting = "..." ---- */

struct tickd_conf {
	char *greeting;
};

static int
tickd_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	(void)in;
	(void)conf;
	(void)flags;
	return 0;
}

static void
tickd_commit(struct keel_instance *in, const void *conf)
{
	const struct tickd_conf *c = conf;

	keel_instance_log(in, KEEL_LOG_INFO, "%s", c->greeting);
}

static void
tickd_abort(struct keel_instance *in)
{
	(void)in;
}

static void
tickd_remove(struct keel_instance *in, unsigned int flags)
{
	(void)flags;
	keel_instance_removed(in);
}

static const struct keel_option tickd_options[] = {
	KEEL_OPTION("greeting", KEEL_OPT_STRING, struct tickd_conf, greeting,
		    "hello", KEEL_OPT_NONEMPTY),
	KEEL_OPTIONS_END,
};

static const struct keel_module_desc tickd_root = {
	KEEL_MODULE_HEAD,
	.name = "tickd",
	.version = "1.0",
	.options = tickd_options,
	.conf_size = sizeof(struct tickd_conf),
	.prepare = tickd_prepare,
	.commit = tickd_commit,
	.abort = tickd_abort,
	.remove = tickd_remove,
};

/* ---- the built-in module: tick NAME { every  text } ---- */

struct tick_conf {
	double every;
	char *text;
};

struct tick {
	struct keel_instance *in;
	const struct tick_conf *c;
	struct event *ev;
	struct keel_metric *ticks;
};

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tick *t = arg;

	(void)fd;
	(void)what;
	keel_metric_add(t->ticks, 1);
	keel_instance_log(t->in, KEEL_LOG_INFO, "%s", t->c->text);
}

static int
tick_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	struct tick *t;

	(void)conf;
	/* New or re-created: a timer of its own; in place: nothing to do. */
	if (keel_instance_change(in) == KEEL_CHANGE_INPLACE ||
	    (flags & KEEL_PREPARE_CHECK))
		return 0;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return -1;
	t->in = in;
	t->ev = event_new(keel_module_base(keel_instance_module(in)), -1,
			  EV_PERSIST, tick_cb, t);
	keel_instance_set_data(in, t);
	return t->ev != NULL ? 0 : -1;
}

static void
tick_commit(struct keel_instance *in, const void *conf)
{
	struct tick *t = keel_instance_data(in);
	struct timeval tv;

	t->c = conf;
	if (keel_instance_change(in) != KEEL_CHANGE_INPLACE)
		t->ticks = keel_metric_new(keel_instance_module(in), in,
					   KEEL_METRIC_COUNTER, "ticks_total",
					   "Texts logged.", NULL, NULL);
	if (keel_instance_changed(in, "every")) {
		tv = keel_timeval(t->c->every);
		event_add(t->ev, &tv);
	}
}

static void
tick_free(struct tick *t)
{
	if (t != NULL && t->ev != NULL)
		event_free(t->ev);
	free(t);
}

static void
tick_abort(struct keel_instance *in)
{
	if (keel_instance_change(in) != KEEL_CHANGE_INPLACE)
		tick_free(keel_instance_data(in));
}

static void
tick_remove(struct keel_instance *in, unsigned int flags)
{
	(void)flags;
	tick_free(keel_instance_data(in));
	keel_instance_removed(in);
}

static void
tick_status(struct keel_instance *in, struct keel_status *st)
{
	struct tick *t = keel_instance_data(in);

	keel_status_double(st, "every", t->c->every);
}

static const struct keel_option tick_options[] = {
	KEEL_OPTION_RANGE("every", KEEL_OPT_SECONDS, struct tick_conf, every,
			  "1", 0.01, 3600, 0),
	KEEL_OPTION("text", KEEL_OPT_STRING, struct tick_conf, text, "tick", 0),
	KEEL_OPTIONS_END,
};

static const struct keel_module_desc tick_module = {
	KEEL_MODULE_HEAD,        .name = "tick",
	.version = "1.0",        .section = KEEL_SECTION_TITLED,
	.options = tick_options, .conf_size = sizeof(struct tick_conf),
	.label = "tick",         .prepare = tick_prepare,
	.commit = tick_commit,   .abort = tick_abort,
	.remove = tick_remove,   .status = tick_status,
};

/* ---- the program ---- */

static const struct keel_module_desc *const tickd_modules[] = {
	&tick_module,
	NULL,
};

static const struct keel_app tickd = {
	KEEL_APP_HEAD,
	.name = "tickd",
	.version = "1.0",
	.summary = "logs texts on timers (an example daemon on libkeel)",
	.config = "/etc/tickd.conf",
	.modules = tickd_modules,
	.root = &tickd_root,
};

int
main(int argc, char **argv)
{
	return keel_main(argc, argv, &tickd);
}
