/* SPDX-License-Identifier: ISC */
/*
 * Renderings of the one registry for modules that serve it: JSON (with
 * jansson: escaping of any string done by a library that gets it right),
 * Prometheus text 0.0.4 and the `key: value` text.
 */
#include "keel-internal.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <keel/render.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON ---- */

/* A JSON string of @s; bytes that are not UTF-8 become U+FFFD. */
static json_t *
render_json_string(const char *s)
{
	json_t *j;
	char *fixed, *o;
	size_t len = strlen(s);

	if ((j = json_stringn(s, len)) != NULL)
		return j;
	/* Rare (a device path or a peer's bytes): a byte at a time. */
	if ((fixed = malloc(len * 3 + 1)) == NULL)
		return NULL;
	for (o = fixed; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x80) {
			*o++ = *s;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	*o = '\0';
	j = json_string(fixed);
	free(fixed);
	return j;
}

/* One leaf's JSON value. */
static json_t *
render_json_value(const struct status_entry *e)
{
	switch (e->type) {
	case STATUS_STR:
		return render_json_string(e->v.s != NULL ? e->v.s : "");
	case STATUS_INT:
	case STATUS_TIME:
		return json_integer((json_int_t)e->v.i);
	case STATUS_UINT:
		if (e->v.u > (uint64_t)INT64_MAX)
			return json_real((double)e->v.u);
		return json_integer((json_int_t)e->v.u);
	case STATUS_DOUBLE:
		/* NaN and infinities have no JSON form. */
		return e->v.d == e->v.d && e->v.d - e->v.d == 0
			       ? json_real(e->v.d)
			       : json_null();
	case STATUS_BOOL:
		return json_boolean(e->v.i);
	default:
		return json_null();
	}
}

/* Put @v into @parent: appended to an array, or under @key. */
static int
render_json_put(json_t *parent, const char *key, json_t *v)
{
	if (v == NULL)
		return -1;
	if (json_is_array(parent))
		return json_array_append_new(parent, v);
	return json_object_set_new(parent, key != NULL ? key : "", v);
}

/*
 * The container a group's fields go into. A group without a key (the
 * section of a single-section module) adds no level, as in the text; a
 * group whose key repeats (a labelled metric's series) adds to the first.
 */
static json_t *
render_json_group(json_t *parent, const struct status_entry *e)
{
	const char *key = e->key != NULL ? e->key : "";
	json_t *v;

	if (json_is_object(parent)) {
		if (key[0] == '\0' && e->type == STATUS_PUSH)
			return parent;
		v = json_object_get(parent, key);
		if (v != NULL && json_is_object(v) && e->type == STATUS_PUSH)
			return v;
	}
	v = e->type == STATUS_PUSH_LIST ? json_array() : json_object();
	return render_json_put(parent, key, v) == 0 ? v : NULL;
}

/* Append what jansson writes to the evbuffer. */
static int
render_json_dump(const char *buf, size_t size, void *arg)
{
	return evbuffer_add(arg, buf, size);
}

/* The status tree as one JSON object. */
int
status_json(const struct keel_status *st, struct evbuffer *out)
{
	json_t *stack[32];
	int depth = 0, rc = -1;
	size_t i;

	stack[0] = json_object();
	if (stack[0] == NULL)
		return -1;
	for (i = 0; i < st->n; i++) {
		const struct status_entry *e = &st->e[i];
		json_t *v;

		if (e->type == STATUS_POP) {
			if (depth > 0)
				depth--;
			continue;
		}
		if (e->type == STATUS_PUSH || e->type == STATUS_PUSH_LIST) {
			if (depth + 1 >=
			    (int)(sizeof(stack) / sizeof(stack[0])))
				goto done;
			v = render_json_group(stack[depth], e);
			if (v == NULL)
				goto done;
			stack[++depth] = v;
			continue;
		}
		if (render_json_put(stack[depth], e->key,
				    render_json_value(e)) == -1)
			goto done;
	}
	rc = json_dump_callback(stack[0], render_json_dump, out,
				JSON_COMPACT | JSON_ENSURE_ASCII) == 0
		     ? 0
		     : -1;
	if (rc == 0 && evbuffer_add(out, "\n", 1) == -1)
		rc = -1;
done:
	json_decref(stack[0]);
	return rc;
}

int
keel_render_json(struct keel_module *m, struct evbuffer *out)
{
	struct keel_status *st;
	int rc;

	if (m == NULL || out == NULL || (st = keel_status_build(m->k)) == NULL)
		return -1;
	rc = status_json(st, out);
	status_free(st);
	return rc;
}

/* ---- text ---- */

int
keel_render_text(struct keel_module *m, struct evbuffer *out)
{
	struct keel_status *st;
	const char *text;
	size_t len;
	int rc;

	if (m == NULL || out == NULL || (st = keel_status_build(m->k)) == NULL)
		return -1;
	text = status_text(st, &len);
	rc = evbuffer_add(out, text, len);
	status_free(st);
	return rc;
}

/* ---- Prometheus ---- */

/* One series: its family name, the metric, the instance's label. */
struct series {
	char *family;
	const struct keel_metric *mt;
	const char *ilabel, *ivalue; /* NULL: none */
	size_t order;                /* registration order, for stability */
};

struct series_list {
	struct series *s;
	size_t n, cap;
	int failed;
};

/* Copy @s to @p; return the end (no NUL written). */
static char *
render_put(char *p, const char *s)
{
	while (*s != '\0')
		*p++ = *s++;
	return p;
}

/* APP_[MODULE_]NAME, with anything outside [a-zA-Z0-9_] made '_'. */
static char *
render_family(const char *app, const char *module, const char *name)
{
	size_t len = strlen(app) + 1 +
		     (module != NULL ? strlen(module) + 1 : 0) + strlen(name) +
		     1;
	char *f = malloc(len), *p;

	if (f == NULL)
		return NULL;
	p = render_put(f, app);
	*p++ = '_';
	if (module != NULL) {
		p = render_put(p, module);
		*p++ = '_';
	}
	*render_put(p, name) = '\0';
	for (p = f; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_'))
			*p = '_';
	if (f[0] >= '0' && f[0] <= '9')
		f[0] = '_';
	return f;
}

/* Add every metric of a list. */
static void
render_collect(struct series_list *l, const char *app, const char *module,
	       const struct keel_metric *mt, const char *ilabel,
	       const char *ivalue)
{
	for (; mt != NULL && !l->failed; mt = mt->next) {
		struct series *s;

		if (l->n == l->cap) {
			size_t cap = l->cap != 0 ? l->cap * 2 : 256;
			struct series *grown =
				realloc(l->s, cap * sizeof(*grown));

			if (grown == NULL) {
				l->failed = 1;
				return;
			}
			l->s = grown;
			l->cap = cap;
		}
		s = &l->s[l->n];
		s->family = render_family(app, module, mt->name);
		if (s->family == NULL) {
			l->failed = 1;
			return;
		}
		s->mt = mt;
		s->ilabel = ilabel;
		s->ivalue = ivalue;
		s->order = l->n++;
	}
}

static int
render_strcmp0(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "");
}

/* Family, then the labels' values: equal series end up side by side. */
static int
render_series_cmp(const void *pa, const void *pb)
{
	const struct series *a = pa, *b = pb;
	int c;

	if ((c = strcmp(a->family, b->family)) != 0)
		return c;
	if ((c = render_strcmp0(a->ivalue, b->ivalue)) != 0)
		return c;
	if ((c = render_strcmp0(metric_label_value(a->mt),
				metric_label_value(b->mt))) != 0)
		return c;
	return a->order < b->order ? -1 : a->order > b->order;
}

/*
 * The text is gathered in a buffer of its own and handed to the evbuffer
 * a few KiB at a time: a scrape of 16 ports is ~500 lines, and
 * evbuffer_add_printf and evbuffer_add per piece were a third of its CPU
 * (perf: vfprintf, its string stream set-up, evbuffer call overhead).
 */
struct pbuf {
	struct evbuffer *out;
	size_t n;
	int failed;
	char b[4096];
};

static void
pbuf_flush(struct pbuf *pb)
{
	if (pb->n > 0 && evbuffer_add(pb->out, pb->b, pb->n) == -1)
		pb->failed = 1;
	pb->n = 0;
}

static void
pbuf_put(struct pbuf *pb, const char *s, size_t len)
{
	while (len > 0) {
		size_t k = sizeof(pb->b) - pb->n;

		if (k == 0) {
			pbuf_flush(pb);
			k = sizeof(pb->b);
		}
		if (k > len)
			k = len;
		memcpy(pb->b + pb->n, s, k);
		pb->n += k;
		s += k;
		len -= k;
	}
}

static void
pbuf_str(struct pbuf *pb, const char *s)
{
	pbuf_put(pb, s, strlen(s));
}

/* A decimal integer, as printf's %lld writes it. */
static void
pbuf_int(struct pbuf *pb, long long v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	unsigned long long u =
		v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	pbuf_put(pb, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Append @s with Prometheus escapes (\\ and \n; \" too in label values). */
static void
render_escaped(struct pbuf *pb, const char *s, int quote)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *esc = NULL;

		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote)
			esc = "\\\"";
		if (esc == NULL)
			continue;
		pbuf_put(pb, run, (size_t)(s - run));
		pbuf_put(pb, esc, 2);
		run = s + 1;
	}
	pbuf_put(pb, run, (size_t)(s - run));
}

/* One sample line. */
static void
render_sample(struct pbuf *pb, const struct series *s)
{
	int labels = 0;

	pbuf_str(pb, s->family);
	if (s->ilabel != NULL) {
		pbuf_put(pb, "{", 1);
		pbuf_str(pb, s->ilabel);
		pbuf_put(pb, "=\"", 2);
		render_escaped(pb, s->ivalue, 1);
		pbuf_put(pb, "\"", 1);
		labels = 1;
	}
	if (s->mt->labelled) {
		pbuf_put(pb, labels ? "," : "{", 1);
		pbuf_str(pb, metric_label(s->mt));
		pbuf_put(pb, "=\"", 2);
		render_escaped(pb, metric_label_value(s->mt), 1);
		pbuf_put(pb, "\"", 1);
		labels = 1;
	}
	pbuf_put(pb, labels ? "} " : " ", labels ? 2 : 1);
	pbuf_int(pb, (long long)keel_metric_value(s->mt));
	pbuf_put(pb, "\n", 1);
}

int
keel_render_prometheus(struct keel_module *m, struct evbuffer *out)
{
	struct series_list l = { NULL, 0, 0, 0 };
	const struct keel_module *mod;
	const struct keel_instance *in;
	struct pbuf pbuf, *pb = &pbuf;
	const char *app;
	size_t i;
	int rc;

	if (m == NULL || out == NULL)
		return -1;
	pb->out = out;
	pb->n = 0;
	pb->failed = 0;
	app = m->k->app->name;
	render_collect(&l, app, NULL, m->k->metrics, NULL, NULL);
	for (mod = m->k->modules; mod != NULL; mod = mod->next) {
		const char *prefix = mod->root ? NULL : mod->name;

		if (mod->state == MODULE_IDLE)
			continue;
		render_collect(&l, app, prefix, mod->metrics, NULL, NULL);
		for (in = mod->instances; in != NULL; in = in->next)
			/* A draining instance may share its title with its
			 * successor: only the running one is a series. */
			if (in->state == INSTANCE_RUNNING)
				render_collect(&l, app, prefix, in->metrics,
					       mod->desc->label != NULL
						       ? mod->desc->label
						       : "instance",
					       in->title);
	}
	if (!l.failed && l.n > 0)
		qsort(l.s, l.n, sizeof(*l.s), render_series_cmp);
	for (i = 0; !l.failed && i < l.n; i++) {
		const struct series *s = &l.s[i], *prev = i > 0 ? s - 1 : NULL;
		int new_family =
			prev == NULL || strcmp(prev->family, s->family) != 0;

		if (new_family) {
			pbuf_put(pb, "# HELP ", 7);
			pbuf_str(pb, s->family);
			pbuf_put(pb, " ", 1);
			render_escaped(pb, s->mt->help, 0);
			pbuf_put(pb, "\n# TYPE ", 8);
			pbuf_str(pb, s->family);
			pbuf_str(pb, s->mt->type == KEEL_METRIC_COUNTER
					     ? " counter\n"
					     : " gauge\n");
		} else if (prev->mt->type != s->mt->type ||
			   (render_strcmp0(prev->ivalue, s->ivalue) == 0 &&
			    render_strcmp0(metric_label_value(prev->mt),
					   metric_label_value(s->mt)) == 0 &&
			    prev->mt->labelled == s->mt->labelled)) {
			continue; /* a duplicate series, or a clash of types */
		}
		render_sample(pb, s);
	}
	pbuf_flush(pb);
	for (i = 0; i < l.n; i++)
		free(l.s[i].family);
	free(l.s);
	rc = l.failed || pb->failed ? -1 : 0;
	return rc;
}

int
keel_ready(const struct keel_module *m)
{
	return m != NULL && m->k->stopping == STOP_NONE && m->k->generation > 0;
}
