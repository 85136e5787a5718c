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

struct keel_list; /* <keel/module.h> */

/** An `allow` list, parsed: n networks at net; none (n = 0): everyone. */
struct keel_allow {
	struct keel_cidr *net;
	size_t n;
};

/**
 * Parse an `allow` list (the strings of a struct keel_list) into @p a; an
 * empty list gives n = 0, everyone. Free the result with keel_allow_free().
 * @return 0, or -1 with the reason in @p err and errno set: EINVAL for a
 * bad element (worded as keel_allow_check() words it), ENOMEM. Then @p a
 * is zeroed and holds nothing to free.
 */
KEEL_EXPORT int keel_allow_parse(struct keel_allow *a,
				 const struct keel_list *list, char *err,
				 size_t errlen);

/**
 * @return non-zero when @p sa lies in a network of @p a (as
 * keel_cidr_match() sees it) or @p a is empty. A NULL @p sa (a peer whose
 * address is unknown) is allowed by an empty list only.
 */
KEEL_EXPORT int keel_allow_match(const struct keel_allow *a,
				 const struct sockaddr *sa);

/**
 * Free what keel_allow_parse() allocated and leave @p a zeroed (empty);
 * safe on a zeroed struct, and so twice.
 */
KEEL_EXPORT void keel_allow_free(struct keel_allow *a);

KEEL_END_DECLS

#endif
