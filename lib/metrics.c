/* SPDX-License-Identifier: ISC */
/*
 * Typed metrics. Each belongs to a list its owner frees (the core, a
 * module, an instance); an update is one addition on a pointer the caller
 * already holds. Names, help texts and label names are the caller's static
 * strings: a thousand ports with twenty metrics each cost one small
 * allocation per metric, not five, and that one holds no field an unlabelled
 * metric does not use.
 */
#include "keel-internal.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A labelled metric: the metric, then its label and the value's copy. */
struct metric_labelled {
	struct keel_metric mt;
	const char *label; /* the caller's: a static string */
	char value[];
};

/* The labelled metric @mt is the start of. */
static const struct metric_labelled *
metric_labelled_of(const struct keel_metric *mt)
{
	return (const struct metric_labelled *)((const char *)mt -
						offsetof(struct metric_labelled,
							 mt));
}

/* A metric's label name, or NULL. */
const char *
metric_label(const struct keel_metric *mt)
{
	return mt->labelled ? metric_labelled_of(mt)->label : NULL;
}

/* A metric's label value, or NULL. */
const char *
metric_label_value(const struct keel_metric *mt)
{
	return mt->labelled ? metric_labelled_of(mt)->value : NULL;
}

/* Prometheus metric and label names: [a-zA-Z_][a-zA-Z0-9_]*. */
static int
metric_name_ok(const char *s)
{
	if (s == NULL || !(isalpha((unsigned char)*s) || *s == '_'))
		return 0;
	for (s++; *s != '\0'; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_'))
			return 0;
	return 1;
}

/* Add a metric to @list. NULL (logged: a programming error) when invalid. */
struct keel_metric *
metric_new(struct keel_metric **list, enum keel_metric_type type,
	   const char *name, const char *help, const char *label,
	   const char *value)
{
	struct keel_metric *mt, **tail;
	size_t n = name != NULL ? strlen(name) : 0;

	if (!metric_name_ok(name) ||
	    (type != KEEL_METRIC_COUNTER && type != KEEL_METRIC_GAUGE) ||
	    (type == KEEL_METRIC_COUNTER &&
	     (n < 6 || strcmp(name + n - 6, "_total") != 0)) ||
	    (label != NULL && !metric_name_ok(label)) ||
	    ((label == NULL) != (value == NULL))) {
		log_warnx("metric '%s': invalid name, type or label "
			  "(counters end in _total)",
			  name != NULL ? name : "(null)");
		return NULL;
	}
	if (label != NULL) {
		size_t vlen = strlen(value) + 1;
		struct metric_labelled *ml = calloc(1, sizeof(*ml) + vlen);

		if (ml == NULL)
			return NULL;
		ml->label = label;
		memcpy(ml->value, value, vlen);
		mt = &ml->mt;
		mt->labelled = 1;
	} else if ((mt = calloc(1, sizeof(*mt))) == NULL) {
		return NULL;
	}
	mt->type = type;
	mt->name = name;
	mt->help = help != NULL ? help : "";
	for (tail = list; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = mt;
	return mt;
}

/* Free a list of metrics. */
void
metric_free_all(struct keel_metric *mt)
{
	struct keel_metric *next;

	for (; mt != NULL; mt = next) {
		next = mt->next;
		if (mt->labelled)
			free((void *)metric_labelled_of(mt));
		else
			free(mt);
	}
}

/* Append a list's values to a status, one field per metric. */
void
metric_status(const struct keel_metric *mt, struct keel_status *st)
{
	for (; mt != NULL; mt = mt->next) {
		/* Names (checked: no newline) live as long as the metric and
		 * are not copied; a label's value is. */
		if (mt->labelled) {
			status_push_ref(st, mt->name);
			keel_status_int(st, metric_label_value(mt),
					keel_metric_value(mt));
			keel_status_pop(st);
		} else {
			status_int_ref(st, mt->name, keel_metric_value(mt));
		}
	}
}

/* Register a module's or an instance's metric. */
struct keel_metric *
keel_metric_new(struct keel_module *m, struct keel_instance *in,
		enum keel_metric_type type, const char *name, const char *help,
		const char *label, const char *value)
{
	if (in != NULL)
		return metric_new(&in->metrics, type, name, help, label, value);
	if (m == NULL)
		return NULL;
	return metric_new(&m->metrics, type, name, help, label, value);
}

/* Add to a metric. */
void
keel_metric_add(struct keel_metric *mt, uint64_t n)
{
	if (mt != NULL && !mt->bound)
		mt->u.v += (int64_t)n;
}

/* Set a gauge. */
void
keel_metric_set(struct keel_metric *mt, int64_t v)
{
	if (mt != NULL && !mt->bound)
		mt->u.v = v;
}

/* Read the metric from @src from now on; NULL: keep its last value. */
void
keel_metric_bind(struct keel_metric *mt, const uint64_t *src)
{
	if (mt == NULL)
		return;
	if (src != NULL) {
		mt->u.src = src;
		mt->bound = 1;
	} else if (mt->bound) {
		mt->u.v = (int64_t)*mt->u.src;
		mt->bound = 0;
	}
}

/* A metric's value. */
int64_t
keel_metric_value(const struct keel_metric *mt)
{
	if (mt == NULL)
		return 0;
	return mt->bound ? (int64_t)*mt->u.src : mt->u.v;
}
