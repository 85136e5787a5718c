/*
 * heartbeat: the template module. Each `heartbeat NAME { message interval }`
 * section is a timer that logs its message every interval seconds. A reload
 * that changes them takes effect without restarting anything else.
 */
#include <event2/event.h>
#include <keel/keel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct beat {
	struct beat *next;
	struct keel_module *m;
	char *name;
	char *message;
	double interval;
	struct event *ev;
	unsigned long long count;
};

struct heartbeat {
	struct beat *beats;
	struct keel_counter *total;
};

/* What prepare built for commit: the new list, events allocated. */
struct heartbeat_txn {
	struct beat *beats;
};

/* Free one beat and its timer. */
static void
beat_free(struct beat *b)
{
	if (b->ev != NULL)
		event_free(b->ev);
	free(b->name);
	free(b->message);
	free(b);
}

/* Free a list of beats. */
static void
beat_free_all(struct beat *b)
{
	struct beat *next;

	for (; b != NULL; b = next) {
		next = b->next;
		beat_free(b);
	}
}

/* Log the message once. */
static void
beat_fire(struct beat *b)
{
	struct heartbeat *hb = keel_module_data(b->m);

	b->count++;
	keel_counter_add(hb->total, 1);
	keel_module_log(b->m, KEEL_LOG_INFO, "%s: %s", b->name, b->message);
}

/* The timer. */
static void
beat_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	beat_fire(arg);
}

/* interval: more than 0, at most a day. */
static int
heartbeat_check_interval(cfg_t *cfg, cfg_opt_t *opt)
{
	double v = cfg_opt_getnfloat(opt, 0);

	if (!(v >= 0.001 && v <= 86400)) {
		cfg_error(
			cfg,
			"heartbeat: interval %g is out of range (0.001 to 86400 seconds)",
			v);
		return -1;
	}
	return 0;
}

/* Allocate the module's state. */
static int
heartbeat_start(struct keel_module *m)
{
	struct heartbeat *hb = calloc(1, sizeof(*hb));

	if (hb == NULL)
		return -1;
	hb->total = keel_counter(m, "beats");
	keel_module_set_data(m, hb);
	return 0;
}

/* Build the new list of beats; nothing running changes. */
static int
heartbeat_prepare(struct keel_module *m, cfg_t *cfg, unsigned int flags,
		  void **txnp)
{
	struct heartbeat_txn *txn;
	struct beat **tail;
	unsigned int i, n = cfg_size(cfg, "heartbeat");

	txn = calloc(1, sizeof(*txn));
	if (txn == NULL)
		return -1;
	*txnp = txn;
	tail = &txn->beats;
	for (i = 0; i < n; i++) {
		cfg_t *sec = cfg_getnsec(cfg, "heartbeat", i);
		struct beat *b = calloc(1, sizeof(*b));

		if (b == NULL)
			return -1;
		*tail = b;
		tail = &b->next;
		b->m = m;
		b->name = strdup(keel_section_title(sec));
		b->message = strdup(cfg_getstr(sec, "message"));
		b->interval = cfg_getfloat(sec, "interval");
		if (b->name == NULL || b->message == NULL)
			return -1;
		if (b->message[0] == '\0') {
			keel_module_error(m, sec,
					  "heartbeat '%s': message is empty",
					  b->name);
			return -1;
		}
		/* Allocate now so that commit cannot fail; a check acquires
		 * nothing. */
		if (!(flags & KEEL_PREPARE_CHECK)) {
			b->ev = event_new(keel_module_base(m), -1, EV_PERSIST,
					  beat_cb, NULL);
			if (b->ev == NULL)
				return -1;
		}
	}
	return 0;
}

/* Take the beat called @name out of @list; NULL if absent. */
static struct beat *
heartbeat_take(struct beat **list, const char *name)
{
	struct beat **p, *b;

	for (p = list; *p != NULL; p = &(*p)->next) {
		if (strcmp((*p)->name, name) == 0) {
			b = *p;
			*p = b->next;
			b->next = NULL;
			return b;
		}
	}
	return NULL;
}

/* Switch to the prepared beats: keep, change in place, add, remove. */
static void
heartbeat_commit(struct keel_module *m, void *arg)
{
	struct heartbeat *hb = keel_module_data(m);
	struct heartbeat_txn *txn = arg;
	struct beat *nb, *old, *result = NULL, **tail = &result, *next;
	struct timeval tv;

	for (nb = txn->beats; nb != NULL; nb = next) {
		next = nb->next;
		nb->next = NULL;
		tv = keel_timeval(nb->interval);
		old = heartbeat_take(&hb->beats, nb->name);
		if (old == NULL) {
			event_assign(nb->ev, keel_module_base(m), -1,
				     EV_PERSIST, beat_cb, nb);
			event_add(nb->ev, &tv);
			*tail = nb;
			tail = &nb->next;
			continue;
		}
		/* An existing beat keeps its timer and its count. */
		free(old->message);
		old->message = nb->message;
		nb->message = NULL;
		if (old->interval != nb->interval) {
			old->interval = nb->interval;
			event_del(old->ev);
			event_add(old->ev, &tv);
		}
		beat_free(nb);
		*tail = old;
		tail = &old->next;
	}
	/* What is left was removed from the configuration. */
	beat_free_all(hb->beats);
	hb->beats = result;
	free(txn);
}

/* Throw the prepared beats away. */
static void
heartbeat_abort(struct keel_module *m, void *arg)
{
	struct heartbeat_txn *txn = arg;

	(void)m;
	beat_free_all(txn->beats);
	free(txn);
}

/* Stop every timer; nothing to drain. */
static void
heartbeat_stop(struct keel_module *m)
{
	struct heartbeat *hb = keel_module_data(m);

	if (hb != NULL) {
		beat_free_all(hb->beats);
		free(hb);
	}
	keel_module_stopped(m);
}

/* One line per beat. */
static void
heartbeat_status(struct keel_module *m, struct keel_status *st)
{
	struct heartbeat *hb = keel_module_data(m);
	struct beat *b;
	char key[300];

	for (b = hb->beats; b != NULL; b = b->next) {
		snprintf(key, sizeof(key), "heartbeat.%s", b->name);
		keel_status_add(st, key, "every %gs, %llu beats, \"%s\"",
				b->interval, b->count, b->message);
	}
}

/* SIGALRM (wake): every beat fires now. */
static void
heartbeat_event(struct keel_module *m, enum keel_event ev)
{
	struct heartbeat *hb = keel_module_data(m);
	struct beat *b;

	if (ev != KEEL_EVENT_WAKE)
		return;
	for (b = hb->beats; b != NULL; b = b->next)
		beat_fire(b);
}

static cfg_opt_t heartbeat_opts[] = {
	CFG_STR("message", "alive", CFGF_NONE),
	CFG_FLOAT("interval", 1.0, CFGF_NONE),
	CFG_END(),
};

static const struct keel_validator heartbeat_validators[] = {
	{ "interval", heartbeat_check_interval },
	{ NULL, NULL },
};

KEEL_MODULE_DESCRIPTOR = {
	.abi = KEEL_MODULE_ABI,
	.name = "heartbeat",
	.version = "1.0.0",
	.section = KEEL_SECTION_TITLED,
	.options = heartbeat_opts,
	.validators = heartbeat_validators,
	.events = KEEL_EVENT_WAKE,
	.start = heartbeat_start,
	.prepare = heartbeat_prepare,
	.commit = heartbeat_commit,
	.abort = heartbeat_abort,
	.stop = heartbeat_stop,
	.status = heartbeat_status,
	.event = heartbeat_event,
};
