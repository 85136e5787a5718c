/* SPDX-License-Identifier: ISC */
/*
 * The example of keel-serial(3), compiled so that the page stays true: one
 * untitled section, tap { device speed format }, logs every line the device
 * sends, keeps the device open across reloads that only change the line
 * settings, and retries at once on SIGALRM.
 */
#include <event2/buffer.h>
#include <keel/keel.h>
#include <keel/serial.h>
#include <stdlib.h>
#include <string.h>

struct tap_conf { /* the section, filled by the framework */
	char *device;
	long speed;
	char *format;
};

struct tap { /* the running instance */
	struct keel_instance *in;
	struct keel_serial *dev;
	struct evbuffer *partial; /* a line not yet complete */
};

/* Bytes from the device: log whole lines, keep the rest for later. */
static void
tap_data(struct keel_serial *s, struct evbuffer *in, void *arg)
{
	struct tap *t = arg;
	char *text;

	(void)s;
	evbuffer_add_buffer(t->partial, in); /* what stays in @in is lost */
	while ((text = evbuffer_readln(t->partial, NULL, EVBUFFER_EOL_CRLF)) !=
	       NULL) {
		keel_instance_log(t->in, KEEL_LOG_INFO, "%s", text);
		free(text);
	}
}

/* The device went away; libkeel logged why and will reopen it. */
static void
tap_closed(struct keel_serial *s, const char *why, void *arg)
{
	struct tap *t = arg;

	(void)s;
	(void)why;
	evbuffer_drain(t->partial, evbuffer_get_length(t->partial));
}

static const struct keel_serial_callbacks tap_cb = {
	.data = tap_data,
	.closed = tap_closed,
};

/* The device's parameters for a configuration. */
static struct keel_serial_params
tap_params(const struct tap_conf *c)
{
	struct keel_serial_params p = {
		.name = "tap",
		.device = c->device,
		.open_timeout = 2,
		.retry_min = 0.1,
		.retry_max = 30,
		.lock = 1,
		.lock_dir = "/run/lock",
	};
	char err[200];

	/* The framework checked the format (tap_check_format). */
	keel_serial_parse_format(c->format, &p.line, err, sizeof(err));
	p.line.speed = (unsigned int)c->speed;
	p.line.local = 1;
	return p;
}

/* A new tap: its buffer now (commit cannot fail); -t acquires nothing. */
static int
tap_prepare(struct keel_instance *in, const void *conf, unsigned int flags)
{
	struct tap *t;

	(void)conf;
	if (keel_instance_change(in) == KEEL_CHANGE_INPLACE ||
	    (flags & KEEL_PREPARE_CHECK))
		return 0;
	t = calloc(1, sizeof(*t));
	if (t == NULL || (t->partial = evbuffer_new()) == NULL) {
		free(t);
		return -1;
	}
	t->in = in;
	keel_instance_set_data(in, t);
	return 0;
}

/* Open the device, or change the line in place, or reopen another one. */
static void
tap_commit(struct keel_instance *in, const void *conf)
{
	struct tap *t = keel_instance_data(in);
	struct keel_serial_params p = tap_params(conf);
	struct keel_module *m = keel_instance_module(in);

	if (t->dev != NULL && !keel_instance_changed(in, "device")) {
		keel_serial_set_line(t->dev, &p.line); /* in place */
		return;
	}
	keel_serial_free(t->dev);
	t->dev = keel_serial_new(keel_module_base(m), &p, &tap_cb, t);
	if (t->dev == NULL)
		keel_instance_log(in, KEEL_LOG_ERR, "out of memory");
}

/* Free a tap. */
static void
tap_free(struct tap *t)
{
	if (t == NULL)
		return;
	keel_serial_free(t->dev); /* closes it, removes the lock */
	evbuffer_free(t->partial);
	free(t);
}

static void
tap_abort(struct keel_instance *in)
{
	if (keel_instance_change(in) != KEEL_CHANGE_INPLACE)
		tap_free(keel_instance_data(in));
}

static void
tap_remove(struct keel_instance *in, unsigned int flags)
{
	(void)flags; /* nothing to drain */
	tap_free(keel_instance_data(in));
	keel_instance_removed(in);
}

/* Status fields: rendered as tap.device, tap.state, tap.rx_bytes. */
static void
tap_status(struct keel_instance *in, struct keel_status *st)
{
	struct tap *t = keel_instance_data(in);
	const struct tap_conf *c = keel_instance_conf(in);

	keel_status_str(st, "device", c->device);
	if (t->dev != NULL) {
		keel_status_str(st, "state", keel_serial_state(t->dev));
		keel_status_uint(st, "rx_bytes",
				 keel_serial_stats(t->dev)->bytes_in);
	}
}

/* SIGALRM / -s wake: a device waiting to reopen retries now. */
static void
tap_event(struct keel_module *m, enum keel_event ev)
{
	struct keel_instance *in = keel_instance_next(m, NULL);
	struct tap *t = in != NULL ? keel_instance_data(in) : NULL;

	if (ev == KEEL_EVENT_WAKE && t != NULL && t->dev != NULL)
		keel_serial_wake(t->dev);
}

/* format = "8N1" and the like. */
static int
tap_check_format(const char *v, char *err, size_t errlen)
{
	struct keel_serial_line line;

	return keel_serial_parse_format(v, &line, err, errlen);
}

static const struct keel_option tap_options[] = {
	KEEL_OPTION("device", KEEL_OPT_STRING, struct tap_conf, device,
		    "/dev/ttyUSB0", KEEL_OPT_NONEMPTY),
	KEEL_OPTION_RANGE("speed", KEEL_OPT_INT, struct tap_conf, speed, "4800",
			  50, 4000000, 0),
	KEEL_OPTION_CHECK("format", KEEL_OPT_STRING, struct tap_conf, format,
			  "8N1", tap_check_format, 0),
	KEEL_OPTIONS_END,
};

KEEL_MODULE_DESCRIPTOR = {
	KEEL_MODULE_HEAD,          .name = "tap",
	.version = "1.0",          .section = KEEL_SECTION_SINGLE,
	.options = tap_options,    .conf_size = sizeof(struct tap_conf),
	.events = KEEL_EVENT_WAKE, .prepare = tap_prepare,
	.commit = tap_commit,      .abort = tap_abort,
	.remove = tap_remove,      .status = tap_status,
	.event = tap_event,
};
