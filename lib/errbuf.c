/* Error messages collected while parsing or preparing a configuration. */
#include "keel-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Append one formatted message as a line. */
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
