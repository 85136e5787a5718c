/* SPDX-License-Identifier: ISC */
/* Numeric addresses and client networks, the same rules in every module. */
#include "keel-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/util.h>
#include <keel/module.h>
#include <keel/net.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Is there a port after the address? evutil_parse_sockaddr_port takes
 * "[::1]" and "127.0.0.1" without one (port 0: a random port when bound).
 */
static int
net_has_port(const char *text)
{
	const char *colon = text[0] == '[' ? strstr(text, "]:") : NULL;

	if (text[0] == '[')
		colon = colon != NULL ? colon + 1 : NULL;
	else if ((colon = strchr(text, ':')) != NULL &&
		 strchr(colon + 1, ':') != NULL)
		colon = NULL;
	if (colon == NULL || colon[1] == '\0')
		return 0;
	return strspn(colon + 1, "0123456789") == strlen(colon + 1);
}

int
keel_hostport_parse(const char *text, struct sockaddr_storage *ss,
		    socklen_t *len)
{
	int n = (int)sizeof(*ss);

	memset(ss, 0, sizeof(*ss));
	if (text == NULL || !net_has_port(text) ||
	    evutil_parse_sockaddr_port(text, (struct sockaddr *)ss, &n) == -1)
		return -1;
	if ((ss->ss_family == AF_INET &&
	     ((struct sockaddr_in *)ss)->sin_port == 0) ||
	    (ss->ss_family == AF_INET6 &&
	     ((struct sockaddr_in6 *)ss)->sin6_port == 0))
		return -1;
	*len = (socklen_t)n;
	return 0;
}

int
keel_cidr_parse(const char *text, struct keel_cidr *c, char *err, size_t errlen)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned int max, i;

	memset(c, 0, sizeof(*c));
	if (alen == 0 || alen >= sizeof(addr))
		goto bad;
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		goto bad;
	}
	c->prefix = max;
	if (slash != NULL) {
		char *end;
		unsigned long bits;

		if (slash[1] < '0' || slash[1] > '9')
			goto bad;
		bits = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || bits > max)
			goto bad;
		c->prefix = (unsigned int)bits;
	}
	/* Bits beyond the prefix must be zero: 10.1.2.3/8 is a typo. */
	for (i = c->prefix; i < max; i++)
		if (c->addr[i / 8] & (0x80 >> (i % 8))) {
			snprintf(err, errlen,
				 "'%s' has bits set beyond /%u (the network is "
				 "written with zeros there)",
				 text, c->prefix);
			return -1;
		}
	return 0;
bad:
	snprintf(err, errlen,
		 "'%s' is not a numeric network (ADDR or ADDR/BITS, IPv4 or "
		 "IPv6)",
		 text);
	return -1;
}

int
keel_cidr_match(const struct keel_cidr *c, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0,    0,
						  0, 0, 0, 0, 0xff, 0xff };
	const unsigned char *a;
	unsigned int i, whole, rest;

	if (sa->sa_family == AF_INET && c->family == AF_INET) {
		a = (const unsigned char *)&(
			    (const struct sockaddr_in *)(const void *)sa)
			    ->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)(const void *)sa)
			    ->sin6_addr.s6_addr;
		if (c->family == AF_INET) {
			if (memcmp(a, mapped, sizeof(mapped)) != 0)
				return 0;
			a += 12;
		}
	} else {
		return 0;
	}
	whole = c->prefix / 8;
	rest = c->prefix % 8;
	for (i = 0; i < whole; i++)
		if (a[i] != c->addr[i])
			return 0;
	if (rest != 0) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));

		if ((a[whole] & mask) != (c->addr[whole] & mask))
			return 0;
	}
	return 1;
}

/* `allow`: each element a network; the message names the option. */
int
keel_allow_check(const char *value, char *err, size_t errlen)
{
	struct keel_cidr c;
	char why[200];

	if (keel_cidr_parse(value, &c, why, sizeof(why)) == 0)
		return 0;
	snprintf(err, errlen, "allow %s", why);
	return -1;
}

/* An `allow` list, each element a network; empty: everyone. */
int
keel_allow_parse(struct keel_allow *a, const struct keel_list *list, char *err,
		 size_t errlen)
{
	char why[200];
	size_t i;

	memset(a, 0, sizeof(*a));
	if (list->n == 0)
		return 0;
	if ((a->net = calloc(list->n, sizeof(*a->net))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < list->n; i++)
		if (keel_cidr_parse(list->v[i], &a->net[i], why, sizeof(why)) ==
		    -1) {
			snprintf(err, errlen, "allow %s", why);
			keel_allow_free(a);
			errno = EINVAL;
			return -1;
		}
	a->n = list->n;
	return 0;
}

/* Is @sa in one of the networks (or are there none)? */
int
keel_allow_match(const struct keel_allow *a, const struct sockaddr *sa)
{
	size_t i;

	if (a->n == 0)
		return 1;
	if (sa == NULL)
		return 0;
	for (i = 0; i < a->n; i++)
		if (keel_cidr_match(&a->net[i], sa))
			return 1;
	return 0;
}

/* Free the networks; the list is empty (everyone) again. */
void
keel_allow_free(struct keel_allow *a)
{
	free(a->net);
	memset(a, 0, sizeof(*a));
}
