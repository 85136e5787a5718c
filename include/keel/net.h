/* SPDX-License-Identifier: ISC */
/*
 * Addresses as every keel module takes them: numeric HOST:PORT (never a
 * name to resolve on the loop) and client networks in CIDR notation.
 */
#ifndef KEEL_NET_H
#define KEEL_NET_H

#include <keel/export.h>
#include <stddef.h>
#include <sys/socket.h>

KEEL_BEGIN_DECLS

/**
 * Parse a numeric `HOST:PORT` (IPv6 as `[ADDR]:PORT`); the port is
 * required and is 1 to 65535.
 * @return 0, or -1 when @p text is not one.
 */
KEEL_EXPORT int keel_hostport_parse(const char *text,
				    struct sockaddr_storage *ss,
				    socklen_t *len);

/** A client network: an address and the number of leading bits that count. */
struct keel_cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned int prefix;
	unsigned char addr[16];
};

/**
 * Parse `ADDR/BITS` or a single `ADDR` (IPv4 or IPv6, numeric).
 * @return 0, or -1 with the reason in @p err.
 */
KEEL_EXPORT int keel_cidr_parse(const char *text, struct keel_cidr *c,
				char *err, size_t errlen);

/**
 * @return non-zero when @p sa lies in @p c. An IPv4-mapped IPv6 peer
 * (::ffff:a.b.c.d, on a dual-stack socket) matches IPv4 networks.
 */
KEEL_EXPORT int keel_cidr_match(const struct keel_cidr *c,
				const struct sockaddr *sa);

/**
 * The check (struct keel_option .check) of an `allow` list, the option
 * every keel module names its client networks with: each element as
 * keel_cidr_parse() reads it, a refusal worded "allow 'X' ...".
 */
KEEL_EXPORT int keel_allow_check(const char *value, char *err, size_t errlen);

KEEL_END_DECLS

#endif
