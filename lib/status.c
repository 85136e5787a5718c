/* Status dumps: `key: value` lines. */
#include "keel-internal.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdlib.h>

/* A new, empty dump. */
struct keel_status *
status_new(void)
{
	struct keel_status *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	st->buf = evbuffer_new();
	if (st->buf == NULL) {
		free(st);
		return NULL;
	}
	return st;
}

/* Free a dump. */
void
status_free(struct keel_status *st)
{
	if (st == NULL)
		return;
	evbuffer_free(st->buf);
	free(st);
}

/* The dump as one NUL-terminated string. */
const char *
status_text(struct keel_status *st, size_t *len)
{
	*len = evbuffer_get_length(st->buf);
	evbuffer_add(st->buf, "", 1);
	return (const char *)evbuffer_pullup(st->buf, -1);
}

/* Append `key: value`. */
void
keel_status_add(struct keel_status *st, const char *key, const char *fmt, ...)
{
	va_list ap;

	evbuffer_add_printf(st->buf, "%s: ", key);
	va_start(ap, fmt);
	evbuffer_add_vprintf(st->buf, fmt, ap);
	va_end(ap);
	evbuffer_add(st->buf, "\n", 1);
}
