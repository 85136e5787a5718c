/* SPDX-License-Identifier: ISC */
/*
 * Typed options: a table checked once when its module registers, values
 * converted from their written form into the module's struct, compared
 * between two configurations, and freed. Nothing here knows libconfuse or
 * where a value was written: callers add FILE:LINE and the section.
 */
#include "keel-internal.h"

#include <keel/net.h>

#include <ctype.h>
#include <errno.h>
#include <event2/util.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The size of the member each type fills. */
static size_t
option_type_size(enum keel_opt_type t)
{
	switch (t) {
	case KEEL_OPT_INT:
		return sizeof(long);
	case KEEL_OPT_FLOAT:
	case KEEL_OPT_SECONDS:
		return sizeof(double);
	case KEEL_OPT_SIZE:
		return sizeof(size_t);
	case KEEL_OPT_BOOL:
	case KEEL_OPT_ENUM:
		return sizeof(int);
	case KEEL_OPT_STRING:
		return sizeof(char *);
	case KEEL_OPT_HOSTPORT:
		return sizeof(struct keel_hostport);
	case KEEL_OPT_LIST:
		return sizeof(struct keel_list);
	}
	return 0;
}

/* The option called @name in @opts, or -1. */
int
option_index(const struct keel_option *opts, const char *name)
{
	int i;

	for (i = 0; opts != NULL && opts[i].name != NULL; i++)
		if (strcmp(opts[i].name, name) == 0)
			return i;
	return -1;
}

/* The number of options in a table. */
int
option_count(const struct keel_option *opts)
{
	int n = 0;

	while (opts != NULL && opts[n].name != NULL)
		n++;
	return n;
}

/* Write "OPT VALUE is out of range (LO to HI)" when @v is out of bounds. */
static int
option_bounds(const struct keel_option *o, double v, const char *text,
	      char *err, size_t errlen)
{
	if (!(o->flags & KEEL_OPT_BOUNDED) || (v >= o->min && v <= o->max))
		return 0;
	snprintf(err, errlen, "%s %s is out of range (%.15g to %.15g)", o->name,
		 text, o->min, o->max);
	return -1;
}

/*
 * The length of a plain decimal number at the start of @s: an optional
 * sign, digits, an optional fraction and exponent (with @frac) — no
 * spaces, no hexadecimal, nan or inf as strtod would take.
 */
static size_t
option_decimal(const char *s, int frac)
{
	const char *p = s;

	if (*p == '-' || *p == '+')
		p++;
	if (!isdigit((unsigned char)*p))
		return 0;
	while (isdigit((unsigned char)*p))
		p++;
	if (!frac)
		return (size_t)(p - s);
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++)
			;
	if ((*p == 'e' || *p == 'E') &&
	    (isdigit((unsigned char)p[1]) ||
	     ((p[1] == '-' || p[1] == '+') && isdigit((unsigned char)p[2])))) {
		for (p += 2; isdigit((unsigned char)*p); p++)
			;
	}
	return (size_t)(p - s);
}

/* Parse a duration: a number with an optional unit. */
static int
option_seconds(const char *text, double *out)
{
	static const struct {
		const char *unit;
		double scale;
	} units[] = { { "", 1 },     { "s", 1 },    { "ms", 0.001 },
		      { "m", 60 },   { "min", 60 }, { "h", 3600 },
		      { "d", 86400 } };
	size_t n = option_decimal(text, 1), i;
	const char *end = text + n;
	double v;

	if (n == 0)
		return -1;
	errno = 0;
	v = strtod(text, NULL);
	if (errno != 0 || !isfinite(v))
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].unit) == 0) {
			*out = v * units[i].scale;
			return 0;
		}
	return -1;
}

/* Parse a byte size: digits with an optional binary unit. */
static int
option_size(const char *text, size_t *out)
{
	static const struct {
		const char *unit;
		unsigned long long scale;
	} units[] = {
		{ "", 1 },
		{ "B", 1 },
		{ "K", 1ULL << 10 },
		{ "KB", 1ULL << 10 },
		{ "KiB", 1ULL << 10 },
		{ "M", 1ULL << 20 },
		{ "MB", 1ULL << 20 },
		{ "MiB", 1ULL << 20 },
		{ "G", 1ULL << 30 },
		{ "GB", 1ULL << 30 },
		{ "GiB", 1ULL << 30 },
	};
	unsigned long long v;
	char *end;
	size_t i;

	if (!isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(end, units[i].unit) == 0) {
			if (v > SIZE_MAX / units[i].scale)
				return -1;
			*out = (size_t)(v * units[i].scale);
			return 0;
		}
	return -1;
}

/* Parse a boolean as libconfuse did. */
static int
option_bool(const char *text, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* Write "OPT 'VALUE' is not one of A, B, C". */
static void
option_enum_error(const struct keel_option *o, const char *text, char *err,
		  size_t errlen)
{
	size_t used;
	int i;

	used = (size_t)snprintf(err, errlen, "%s '%s' is not one of", o->name,
				text);
	for (i = 0; o->words[i] != NULL && used < errlen; i++)
		used += (size_t)snprintf(err + used, errlen - used, "%s %s",
					 i > 0 ? "," : "", o->words[i]);
}

/* Convert a number of any numeric type, check its bounds, store it. */
static int
option_number(const struct keel_option *o, const char *text, char *slot,
	      char *err, size_t errlen)
{
	static const char *const what[] = {
		[KEEL_OPT_INT] = "an integer",
		[KEEL_OPT_FLOAT] = "a number",
		[KEEL_OPT_SECONDS] =
			"a duration (seconds, or with a unit: 500ms, 2s, 5m, 1h, 1d)",
		[KEEL_OPT_SIZE] =
			"a size (bytes, or with a unit: 64K, 16M, 1G)",
	};
	size_t n = strlen(text), z = 0;
	double d = 0;
	long l = 0;
	int ok;

	errno = 0;
	switch (o->type) {
	case KEEL_OPT_INT:
		l = strtol(text, NULL, 10);
		ok = n > 0 && option_decimal(text, 0) == n && errno == 0;
		d = (double)l;
		break;
	case KEEL_OPT_FLOAT:
		d = strtod(text, NULL);
		ok = n > 0 && option_decimal(text, 1) == n && errno == 0 &&
		     isfinite(d);
		break;
	case KEEL_OPT_SECONDS:
		ok = option_seconds(text, &d) == 0;
		break;
	default:
		ok = option_size(text, &z) == 0;
		d = (double)z;
		break;
	}
	if (!ok) {
		snprintf(err, errlen, "%s '%s' is not %s", o->name, text,
			 what[o->type]);
		return -1;
	}
	if (option_bounds(o, d, text, err, errlen) == -1)
		return -1;
	if (o->type == KEEL_OPT_INT)
		memcpy(slot, &l, sizeof(l));
	else if (o->type == KEEL_OPT_SIZE)
		memcpy(slot, &z, sizeof(z));
	else
		memcpy(slot, &d, sizeof(d));
	return 0;
}

/*
 * Convert @text into the member of @conf that @o fills (a list gains one
 * element). @return 0, or -1 with the reason in @err (no location).
 */
int
option_parse(const struct keel_option *o, const char *text, void *conf,
	     char *err, size_t errlen)
{
	char *slot = (char *)conf + o->offset;
	int i;

	switch (o->type) {
	case KEEL_OPT_INT:
	case KEEL_OPT_FLOAT:
	case KEEL_OPT_SECONDS:
	case KEEL_OPT_SIZE:
		if (option_number(o, text, slot, err, errlen) == -1)
			return -1;
		break;
	case KEEL_OPT_BOOL:
		if (option_bool(text, &i) == -1) {
			snprintf(err, errlen,
				 "%s '%s' is not a boolean (true or false)",
				 o->name, text);
			return -1;
		}
		memcpy(slot, &i, sizeof(i));
		break;
	case KEEL_OPT_STRING: {
		char *copy, *old;

		if ((o->flags & KEEL_OPT_NONEMPTY) && text[0] == '\0') {
			snprintf(err, errlen, "%s is empty", o->name);
			return -1;
		}
		copy = strdup(text);
		if (copy == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(&old, slot, sizeof(old));
		free(old);
		memcpy(slot, &copy, sizeof(copy));
		break;
	}
	case KEEL_OPT_ENUM:
		for (i = 0; o->words[i] != NULL; i++)
			if (strcmp(o->words[i], text) == 0)
				break;
		if (o->words[i] == NULL) {
			option_enum_error(o, text, err, errlen);
			return -1;
		}
		memcpy(slot, &i, sizeof(i));
		break;
	case KEEL_OPT_HOSTPORT: {
		struct keel_hostport *hp = (struct keel_hostport *)(void *)slot;
		struct sockaddr_storage ss;
		socklen_t len;
		char *copy;

		if (keel_hostport_parse(text, &ss, &len) == -1) {
			snprintf(
				err, errlen,
				"%s '%s' is not a numeric HOST:PORT (IPv6 as [ADDR]:PORT)",
				o->name, text);
			return -1;
		}
		copy = strdup(text);
		if (copy == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		free(hp->text);
		hp->text = copy;
		hp->addr = ss;
		hp->len = len;
		break;
	}
	case KEEL_OPT_LIST: {
		struct keel_list *l = (struct keel_list *)(void *)slot;
		char **grown, *copy;

		if ((o->flags & KEEL_OPT_NONEMPTY) && text[0] == '\0') {
			snprintf(err, errlen, "%s: an empty element", o->name);
			return -1;
		}
		if ((o->flags & KEEL_OPT_BOUNDED) &&
		    (double)(l->n + 1) > o->max) {
			snprintf(err, errlen, "%s: more than %.15g elements",
				 o->name, o->max);
			return -1;
		}
		copy = strdup(text);
		grown = copy != NULL ? realloc(l->v, (l->n + 1) * sizeof(*l->v))
				     : NULL;
		if (grown == NULL) {
			free(copy);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		l->v = grown;
		l->v[l->n++] = copy;
		break;
	}
	default:
		snprintf(err, errlen, "%s: unknown option type %d", o->name,
			 (int)o->type);
		return -1;
	}
	if (o->check != NULL) {
		err[0] = '\0';
		if (o->check(text, err, errlen) == -1) {
			if (err[0] == '\0')
				snprintf(err, errlen, "%s '%s' is not valid",
					 o->name, text);
			return -1;
		}
	}
	return 0;
}

/* Free what one option holds in @conf. */
void
option_free_one(const struct keel_option *o, void *conf)
{
	char *slot = (char *)conf + o->offset, *s;
	size_t i;

	switch (o->type) {
	case KEEL_OPT_STRING:
		memcpy(&s, slot, sizeof(s));
		free(s);
		break;
	case KEEL_OPT_HOSTPORT:
		free(((struct keel_hostport *)(void *)slot)->text);
		break;
	case KEEL_OPT_LIST: {
		struct keel_list *l = (struct keel_list *)(void *)slot;

		for (i = 0; i < l->n; i++)
			free(l->v[i]);
		free(l->v);
		break;
	}
	default:
		break;
	}
}

/* Free a filled struct and everything its options hold. */
void
option_conf_free(const struct keel_option *opts, void *conf)
{
	int i;

	if (conf == NULL)
		return;
	for (i = 0; opts != NULL && opts[i].name != NULL; i++)
		option_free_one(&opts[i], conf);
	free(conf);
}

/* Compare one option's values in @a and @b (a total order, for sorting). */
int
option_cmp(const struct keel_option *o, const void *a, const void *b)
{
	const char *sa = (const char *)a + o->offset,
		   *sb = (const char *)b + o->offset;
	char *pa, *pb;

	switch (o->type) {
	case KEEL_OPT_STRING:
		memcpy(&pa, sa, sizeof(pa));
		memcpy(&pb, sb, sizeof(pb));
		if (pa == NULL || pb == NULL)
			return (pa != NULL) - (pb != NULL);
		return strcmp(pa, pb);
	case KEEL_OPT_HOSTPORT: {
		const struct keel_hostport *ha = (const void *)sa,
					   *hb = (const void *)sb;

		if (ha->len != hb->len)
			return ha->len < hb->len ? -1 : 1;
		return memcmp(&ha->addr, &hb->addr, ha->len);
	}
	case KEEL_OPT_LIST:
		return option_equal(o, a, b) ? 0 : (a < b ? -1 : 1);
	default:
		return memcmp(sa, sb, o->size);
	}
}

/* Zero when a string or HOST:PORT option without a default is not written
 * (an optional address: nothing to compare). */
int
option_is_set(const struct keel_option *o, const void *conf)
{
	const char *slot = (const char *)conf + o->offset;
	char *s = NULL;

	if (o->type == KEEL_OPT_STRING)
		memcpy(&s, slot, sizeof(s));
	else if (o->type == KEEL_OPT_HOSTPORT)
		s = ((const struct keel_hostport *)(const void *)slot)->text;
	else
		return 1;
	return s != NULL;
}

/* Non-zero when option @o has the same value in @a and @b. */
int
option_equal(const struct keel_option *o, const void *a, const void *b)
{
	const char *sa = (const char *)a + o->offset,
		   *sb = (const char *)b + o->offset;
	char *pa, *pb;
	size_t i;

	switch (o->type) {
	case KEEL_OPT_STRING:
		memcpy(&pa, sa, sizeof(pa));
		memcpy(&pb, sb, sizeof(pb));
		if (pa == NULL || pb == NULL)
			return pa == pb;
		return strcmp(pa, pb) == 0;
	case KEEL_OPT_HOSTPORT: {
		const struct keel_hostport *ha = (const void *)sa,
					   *hb = (const void *)sb;

		return ha->len == hb->len &&
		       memcmp(&ha->addr, &hb->addr, ha->len) == 0;
	}
	case KEEL_OPT_LIST: {
		const struct keel_list *la = (const void *)sa,
				       *lb = (const void *)sb;

		if (la->n != lb->n)
			return 0;
		for (i = 0; i < la->n; i++)
			if (strcmp(la->v[i], lb->v[i]) != 0)
				return 0;
		return 1;
	}
	default:
		return memcmp(sa, sb, o->size) == 0;
	}
}

/* Bit i set when option i differs between @a and @b. */
uint64_t
option_diff(const struct keel_option *opts, const void *a, const void *b)
{
	uint64_t diff = 0;
	int i;

	for (i = 0; opts != NULL && opts[i].name != NULL; i++)
		if (!option_equal(&opts[i], a, b))
			diff |= (uint64_t)1 << i;
	return diff;
}

/* The value of option @o in @conf as text, for messages. */
const char *
option_text(const struct keel_option *o, const void *conf, char *buf,
	    size_t len)
{
	const char *slot = (const char *)conf + o->offset;
	char *s;

	switch (o->type) {
	case KEEL_OPT_STRING:
		memcpy(&s, slot, sizeof(s));
		return s != NULL ? s : "";
	case KEEL_OPT_HOSTPORT:
		s = ((const struct keel_hostport *)(const void *)slot)->text;
		return s != NULL ? s : "";
	case KEEL_OPT_INT: {
		long v;

		memcpy(&v, slot, sizeof(v));
		snprintf(buf, len, "%ld", v);
		return buf;
	}
	default:
		snprintf(buf, len, "(value)");
		return buf;
	}
}

/*
 * Check a module's option table once, when it registers: names, types,
 * member sizes, bounds and defaults. @return 0, or -1 with the reason.
 */
int
option_check_table(const struct keel_option *opts, size_t conf_size, char *why,
		   size_t whylen)
{
	char err[512];
	void *scratch;
	int i, j;

	if (opts == NULL)
		return 0;
	if (option_count(opts) > 64) {
		snprintf(why, whylen, "more than 64 options");
		return -1;
	}
	if (conf_size == 0 || conf_size > 65536) {
		snprintf(why, whylen, "conf_size %zu is not a struct's size",
			 conf_size);
		return -1;
	}
	scratch = calloc(1, conf_size);
	if (scratch == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (i = 0; opts[i].name != NULL; i++) {
		const struct keel_option *o = &opts[i];
		size_t want = option_type_size(o->type);

		for (j = 0; j < i; j++)
			if (strcmp(opts[j].name, o->name) == 0)
				break;
		if (j < i || o->name[0] == '\0' || strpbrk(o->name, " |{}=\"'"))
			snprintf(why, whylen, "option '%s' is %s", o->name,
				 j < i ? "declared twice" : "not a valid name");
		else if (want == 0)
			snprintf(why, whylen, "option '%s' has no valid type",
				 o->name);
		else if (o->size != want)
			snprintf(
				why, whylen,
				"option '%s': its member has %zu bytes, its type needs %zu",
				o->name, o->size, want);
		else if (o->offset + o->size > conf_size)
			snprintf(why, whylen,
				 "option '%s' lies outside conf_size", o->name);
		else if (o->type == KEEL_OPT_ENUM && o->words == NULL)
			snprintf(why, whylen, "option '%s' has no words",
				 o->name);
		else if ((o->flags & KEEL_OPT_BOUNDED) && !(o->min <= o->max))
			snprintf(why, whylen, "option '%s' has empty bounds",
				 o->name);
		else if (o->def != NULL && option_parse(o, o->def, scratch, err,
							sizeof(err)) == -1)
			snprintf(why, whylen, "option '%s': default: %s",
				 o->name, err);
		else
			continue;
		/* Only the options before this one are known to be sound. */
		for (j = 0; j < i; j++)
			option_free_one(&opts[j], scratch);
		free(scratch);
		return -1;
	}
	option_conf_free(opts, scratch);
	return 0;
}

/* Write @s as a double-quoted libconfuse string. */
void
option_print_string(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s != '\0'; s++) {
		/* "${" would be expanded again when the file is read. */
		if (*s == '"' || *s == '\\' || (*s == '$' && s[1] == '{'))
			fprintf(fp, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", fp);
		else if (*s == '\t')
			fputs("\\t", fp);
		else if ((unsigned char)*s < 0x20)
			fprintf(fp, "\\x%02x", (unsigned char)*s);
		else
			fputc(*s, fp);
	}
	fputc('"', fp);
}

/*
 * Write `name = value` for option @o of @conf, as it would be written in a
 * file (nothing for an unset string). @indent: leading spaces.
 */
void
option_print(FILE *fp, const struct keel_option *o, const void *conf,
	     int indent)
{
	const char *slot = (const char *)conf + o->offset;
	char *s;
	double d;
	size_t i;
	long l;
	int n;

	/* Unset (no default, not written): printing "" would not parse. */
	if (!option_is_set(o, conf))
		return;
	fprintf(fp, "%*s%s = ", indent, "", o->name);
	switch (o->type) {
	case KEEL_OPT_INT:
		memcpy(&l, slot, sizeof(l));
		fprintf(fp, "%ld", l);
		break;
	case KEEL_OPT_FLOAT:
	case KEEL_OPT_SECONDS:
		memcpy(&d, slot, sizeof(d));
		fprintf(fp, "%.15g", d);
		break;
	case KEEL_OPT_SIZE: {
		size_t z;

		memcpy(&z, slot, sizeof(z));
		fprintf(fp, "%zu", z);
		break;
	}
	case KEEL_OPT_BOOL:
		memcpy(&n, slot, sizeof(n));
		fputs(n ? "true" : "false", fp);
		break;
	case KEEL_OPT_STRING:
		memcpy(&s, slot, sizeof(s));
		option_print_string(fp, s);
		break;
	case KEEL_OPT_ENUM:
		memcpy(&n, slot, sizeof(n));
		option_print_string(fp, o->words[n]);
		break;
	case KEEL_OPT_HOSTPORT:
		s = ((const struct keel_hostport *)(const void *)slot)->text;
		option_print_string(fp, s != NULL ? s : "");
		break;
	case KEEL_OPT_LIST: {
		const struct keel_list *lst = (const void *)slot;

		fputc('{', fp);
		for (i = 0; i < lst->n; i++) {
			fputs(i > 0 ? ", " : " ", fp);
			option_print_string(fp, lst->v[i]);
		}
		fputs(lst->n > 0 ? " }" : "}", fp);
		break;
	}
	}
	fputc('\n', fp);
}
