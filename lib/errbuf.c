/* SPDX-License-Identifier: ISC */
/* Error messages collected while parsing or preparing a configuration. */
#include "keel-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Non-zero for a byte that would break a message's line. */
static int
errbuf_is_control(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/*
 * Escape the control characters of @msg (of length *@n): \n, \r, \xHH.
 * A value quoted in a message may hold newlines (a `load` string spanning
 * lines made `keeld -t` print a second line of its choosing, such as a
 * forged FILE:LINE). Returns @msg or a new string (@msg freed); NULL
 * when out of memory.
 */
static char *
errbuf_escape(char *msg, size_t *n)
{
	size_t i, extra = 0, o = 0;
	char *out;

	for (i = 0; i < *n; i++)
		extra += errbuf_is_control((unsigned char)msg[i]) ? 3 : 0;
	if (extra == 0)
		return msg;
	out = malloc(*n + extra + 1);
	if (out == NULL) {
		free(msg);
		return NULL;
	}
	for (i = 0; i < *n; i++) {
		unsigned char c = (unsigned char)msg[i];

		if (!errbuf_is_control(c))
			out[o++] = (char)c;
		else if (c == '\n' || c == '\r')
			o += (size_t)sprintf(out + o, "\\%c",
					     c == '\n' ? 'n' : 'r');
		else
			o += (size_t)sprintf(out + o, "\\x%02x", c);
	}
	out[o] = '\0';
	free(msg);
	*n = o;
	return out;
}

/* Append one formatted message as a line (trailing newlines dropped). */
void
errbuf_vadd(struct errbuf *eb, const char *fmt, va_list ap)
{
	char *msg = NULL;
	char *grown;
	size_t n;

	if (vasprintf(&msg, fmt, ap) < 0)
		return;
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	msg = errbuf_escape(msg, &n);
	if (msg == NULL)
		return;
	grown = realloc(eb->text, eb->len + n + 2);
	if (grown == NULL) {
		free(msg);
		return;
	}
	eb->text = grown;
	memcpy(eb->text + eb->len, msg, n);
	eb->len += n;
	eb->text[eb->len++] = '\n';
	eb->text[eb->len] = '\0';
	if (eb->first == NULL)
		eb->first = msg;
	else
		free(msg);
	eb->count++;
}

/* Append one formatted message as a line. */
void
errbuf_add(struct errbuf *eb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errbuf_vadd(eb, fmt, ap);
	va_end(ap);
}

/* Forget every message. */
void
errbuf_clear(struct errbuf *eb)
{
	free(eb->text);
	free(eb->first);
	memset(eb, 0, sizeof(*eb));
}
