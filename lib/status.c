/* SPDX-License-Identifier: ISC */
/*
 * Structured status: typed fields in groups, kept as entries so that every
 * renderer (the `key: value` text of -s status and the state file here, JSON
 * in an HTTP module) walks the same tree. Nothing is formatted while a
 * status is collected except by keel_status_printf.
 */
#include "keel-internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_MAX_DEPTH 8
#define STATUS_CHUNK     16384

/* A new, empty status. */
struct keel_status *
status_new(void)
{
	return calloc(1, sizeof(struct keel_status));
}

/* Free a status, its entries and its strings. */
void
status_free(struct keel_status *st)
{
	struct status_chunk *c, *next;

	if (st == NULL)
		return;
	for (c = st->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(st->e);
	free(st->text);
	free(st);
}

/*
 * Copy @len bytes of @s (and a NUL) into the status's own chunks: a status
 * of a thousand ports holds tens of thousands of short strings, and one
 * malloc each would cost time and leave the heap fragmented.
 */
static char *
status_copy(struct keel_status *st, const char *s, size_t len)
{
	struct status_chunk *c = st->chunks;
	char *out;

	if (c == NULL || c->size - c->used < len + 1) {
		size_t size = len + 1 > STATUS_CHUNK ? len + 1 : STATUS_CHUNK;

		c = malloc(sizeof(*c) + size);
		if (c == NULL)
			return NULL;
		c->size = size;
		c->used = 0;
		c->next = st->chunks;
		st->chunks = c;
	}
	out = c->data + c->used;
	memcpy(out, s, len);
	out[len] = '\0';
	c->used += len + 1;
	return out;
}

/* One field a line: a newline inside a key or a value is shown as a space. */
static void
status_flatten(char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

/*
 * Append one entry; the key is copied unless @ref (then it must outlive the
 * status and hold no newline). NULL when out of memory.
 */
static struct status_entry *
status_append_key(struct keel_status *st, enum status_type type,
		  const char *key, int ref)
{
	struct status_entry *e;

	if (st == NULL)
		return NULL;
	if (st->n == st->cap) {
		size_t cap = st->cap != 0 ? st->cap * 2 : 64;
		struct status_entry *grown =
			realloc(st->e, cap * sizeof(*grown));

		if (grown == NULL)
			return NULL;
		st->e = grown;
		st->cap = cap;
	}
	e = &st->e[st->n];
	memset(e, 0, sizeof(*e));
	e->type = type;
	if (ref) {
		e->key = (char *)(uintptr_t)key;
	} else if (key != NULL) {
		if ((e->key = status_copy(st, key, strlen(key))) == NULL)
			return NULL;
		status_flatten(e->key);
	}
	st->n++;
	return e;
}

/* Append one entry; the key is copied. NULL when out of memory. */
static struct status_entry *
status_append(struct keel_status *st, enum status_type type, const char *key)
{
	return status_append_key(st, type, key, 0);
}

/*
 * A signed integer field whose key is not copied: a metric's name, which
 * lives as long as the metric. A thousand ports have 23,000 of them.
 */
void
status_int_ref(struct keel_status *st, const char *key, int64_t value)
{
	struct status_entry *e = status_append_key(st, STATUS_INT, key, 1);

	if (e != NULL)
		e->v.i = value;
}

/* Open a group whose key is not copied (as status_int_ref). */
void
status_push_ref(struct keel_status *st, const char *key)
{
	status_append_key(st, STATUS_PUSH, key, 1);
}

/* A string field. */
void
keel_status_str(struct keel_status *st, const char *key, const char *value)
{
	struct status_entry *e = status_append(st, STATUS_STR, key);

	if (value == NULL)
		value = "";
	if (e != NULL) {
		e->v.s = status_copy(st, value, strlen(value));
		status_flatten(e->v.s);
	}
}

/* A formatted string field. */
void
keel_status_printf(struct keel_status *st, const char *key, const char *fmt,
		   ...)
{
	struct status_entry *e = status_append(st, STATUS_STR, key);
	char buf[1024];
	va_list ap;
	int n;

	if (e == NULL)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	e->v.s = status_copy(
		st, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	status_flatten(e->v.s);
}

/* A signed integer field. */
void
keel_status_int(struct keel_status *st, const char *key, int64_t value)
{
	struct status_entry *e = status_append(st, STATUS_INT, key);

	if (e != NULL)
		e->v.i = value;
}

/* An unsigned integer field. */
void
keel_status_uint(struct keel_status *st, const char *key, uint64_t value)
{
	struct status_entry *e = status_append(st, STATUS_UINT, key);

	if (e != NULL)
		e->v.u = value;
}

/* A floating-point field. */
void
keel_status_double(struct keel_status *st, const char *key, double value)
{
	struct status_entry *e = status_append(st, STATUS_DOUBLE, key);

	if (e != NULL)
		e->v.d = value;
}

/* A boolean field. */
void
keel_status_bool(struct keel_status *st, const char *key, int value)
{
	struct status_entry *e = status_append(st, STATUS_BOOL, key);

	if (e != NULL)
		e->v.i = value != 0;
}

/* A wall-clock time field. */
void
keel_status_time(struct keel_status *st, const char *key, time_t value)
{
	struct status_entry *e = status_append(st, STATUS_TIME, key);

	if (e != NULL)
		e->v.i = (int64_t)value;
}

/* Open a group. */
void
keel_status_push(struct keel_status *st, const char *key)
{
	status_append(st, STATUS_PUSH, key);
}

/* Open a list. */
void
keel_status_push_list(struct keel_status *st, const char *key)
{
	status_append(st, STATUS_PUSH_LIST, key);
}

/* Close a group. */
void
keel_status_pop(struct keel_status *st)
{
	status_append(st, STATUS_POP, NULL);
}

/* The text being rendered: one buffer that doubles as it fills. */
struct status_out {
	char *buf;
	size_t len, cap;
	int failed;
};

/* Append @n bytes. */
static void
status_put(struct status_out *o, const char *s, size_t n)
{
	if (o->failed)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap != 0 ? o->cap : 4096;
		char *grown;

		while (o->len + n + 1 > cap)
			cap *= 2;
		grown = realloc(o->buf, cap);
		if (grown == NULL) {
			o->failed = 1;
			return;
		}
		o->buf = grown;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

/* Append a string. */
static void
status_puts(struct status_out *o, const char *s)
{
	status_put(o, s, strlen(s));
}

/* Append an unsigned number (no printf: a status of a thousand ports has
 * tens of thousands of them). */
static void
status_putu(struct status_out *o, uint64_t v)
{
	char digits[24];
	size_t n = sizeof(digits);

	do {
		digits[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	status_put(o, digits + n, sizeof(digits) - n);
}

/* Render one value. */
static void
status_value(struct status_out *o, const struct status_entry *e)
{
	char buf[40];

	switch (e->type) {
	case STATUS_STR:
		status_puts(o, e->v.s != NULL ? e->v.s : "");
		break;
	case STATUS_INT:
	case STATUS_TIME:
		if (e->v.i < 0) {
			status_put(o, "-", 1);
			status_putu(o, (uint64_t)0 - (uint64_t)e->v.i);
		} else {
			status_putu(o, (uint64_t)e->v.i);
		}
		break;
	case STATUS_UINT:
		status_putu(o, e->v.u);
		break;
	case STATUS_DOUBLE:
		snprintf(buf, sizeof(buf), "%.15g", e->v.d);
		status_puts(o, buf);
		break;
	case STATUS_BOOL:
		status_puts(o, e->v.i ? "yes" : "no");
		break;
	default:
		break;
	}
}

/*
 * The status as `a.b.key: value` lines, one field a line (a group's keys
 * joined by dots; an empty key adds nothing). Newlines inside values are
 * shown as spaces. The text lives until the status is freed.
 */
const char *
status_text(struct keel_status *st, size_t *len)
{
	const char *path[STATUS_MAX_DEPTH];
	char index[STATUS_MAX_DEPTH][24];
	unsigned long items[STATUS_MAX_DEPTH + 1] = { 0 };
	int list[STATUS_MAX_DEPTH + 1] = { 0 }; /* depth d is inside a list */
	struct status_out o = { NULL, 0, 0, 0 };
	size_t i;
	int depth = 0, d;

	/* About 30 bytes a line: one allocation, not twenty doublings. */
	o.cap = st->n * 32 + 4096;
	if ((o.buf = malloc(o.cap)) == NULL)
		o.cap = 0;
	*len = 0;
	for (i = 0; i < st->n; i++) {
		const struct status_entry *e = &st->e[i];

		if (e->type == STATUS_PUSH || e->type == STATUS_PUSH_LIST) {
			if (depth < STATUS_MAX_DEPTH) {
				path[depth] = e->key != NULL ? e->key : "";
				if (list[depth]) {
					/* An item: its number is its key. */
					snprintf(index[depth],
						 sizeof(index[depth]), "%lu",
						 ++items[depth]);
					path[depth] = index[depth];
				}
				list[depth + 1] = e->type == STATUS_PUSH_LIST;
				items[depth + 1] = 0;
			}
			depth++;
			continue;
		}
		if (e->type == STATUS_POP) {
			if (depth > 0)
				depth--;
			continue;
		}
		for (d = 0; d < depth && d < STATUS_MAX_DEPTH; d++)
			if (path[d][0] != '\0') {
				status_puts(&o, path[d]);
				status_put(&o, ".", 1);
			}
		status_puts(&o, e->key != NULL ? e->key : "");
		status_put(&o, ": ", 2);
		status_value(&o, e);
		status_put(&o, "\n", 1);
	}
	status_put(&o, "", 0);
	if (o.failed || o.buf == NULL) {
		free(o.buf);
		return "";
	}
	o.buf[o.len] = '\0';
	free(st->text);
	st->text = o.buf;
	*len = o.len;
	return st->text;
}
