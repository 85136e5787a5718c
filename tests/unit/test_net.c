/* SPDX-License-Identifier: ISC */
/* net: client networks (`allow` of the http and serial modules). */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <keel/module.h>
#include <keel/net.h>
#include <netinet/in.h>
#include <string.h>

/* A peer address as accept() gives it. */
static struct sockaddr_storage
peer(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) ==
	    1) {
		ss.ss_family = AF_INET;
		return ss;
	}
	assert_int_equal(inet_pton(AF_INET6, text,
				   &((struct sockaddr_in6 *)&ss)->sin6_addr),
			 1);
	ss.ss_family = AF_INET6;
	return ss;
}

/* Does the peer @addr lie in the network @net? */
static int
in_net(const char *net, const char *addr)
{
	struct keel_cidr c;
	struct sockaddr_storage ss = peer(addr);
	char err[200];

	assert_int_equal(keel_cidr_parse(net, &c, err, sizeof(err)), 0);
	return keel_cidr_match(&c, (const struct sockaddr *)&ss);
}

/* IPv4 networks: whole octets, a prefix inside an octet, /0 and /32. */
static void
test_ipv4(void **state)
{
	(void)state;
	assert_true(in_net("192.0.2.0/24", "192.0.2.77"));
	assert_false(in_net("192.0.2.0/24", "192.0.3.1"));
	assert_true(in_net("10.16.0.0/12", "10.31.255.255"));
	assert_false(in_net("10.16.0.0/12", "10.32.0.0"));
	assert_true(in_net("0.0.0.0/0", "203.0.113.9"));
	assert_true(in_net("127.0.0.1", "127.0.0.1"));
	assert_false(in_net("127.0.0.1", "127.0.0.2"));
}

/* IPv6 networks; the two families never match each other... */
static void
test_ipv6(void **state)
{
	(void)state;
	assert_true(in_net("::1", "::1"));
	assert_false(in_net("::1", "::2"));
	assert_true(in_net("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(in_net("2001:db8::/32", "2001:db9::1"));
	assert_false(in_net("::/0", "127.0.0.1"));
	assert_false(in_net("127.0.0.0/8", "::1"));
}

/* ... except an IPv4-mapped IPv6 peer, which matches IPv4 networks. */
static void
test_ipv4_mapped(void **state)
{
	(void)state;
	assert_true(in_net("192.0.2.0/24", "::ffff:192.0.2.5"));
	assert_false(in_net("192.0.2.0/24", "::ffff:198.51.100.5"));
	assert_false(in_net("192.0.2.0/24", "::192.0.2.5"));
}

/* Wrong networks are refused with the reason. */
static void
test_parse_errors(void **state)
{
	struct keel_cidr c;
	char err[200];

	(void)state;
	assert_int_equal(keel_cidr_parse("10.1.2.3/8", &c, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "has bits set beyond /8"));
	assert_int_equal(keel_cidr_parse("nonsense", &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is not a numeric network"));
	assert_int_equal(keel_cidr_parse("::1/129", &c, err, sizeof(err)), -1);
	assert_int_equal(keel_cidr_parse("10.0.0.0/", &c, err, sizeof(err)),
			 -1);
	assert_int_equal(keel_cidr_parse("/8", &c, err, sizeof(err)), -1);
	assert_int_equal(keel_cidr_parse("localhost", &c, err, sizeof(err)),
			 -1);
}

/* The check of an `allow` option, shared by every module: the message
 * names the option, the value is accepted as keel_cidr_parse takes it. */
static void
test_allow_check(void **state)
{
	char err[256] = "";

	(void)state;
	assert_int_equal(keel_allow_check("192.0.2.0/24", err, sizeof(err)), 0);
	assert_int_equal(keel_allow_check("::1", err, sizeof(err)), 0);
	assert_int_equal(keel_allow_check("10.1.2.3/8", err, sizeof(err)), -1);
	assert_int_equal(strncmp(err, "allow '10.1.2.3/8' has bits set", 31),
			 0);
	assert_int_equal(keel_allow_check("host", err, sizeof(err)), -1);
	assert_int_equal(strncmp(err, "allow 'host' is not", 19), 0);
}

/* Does the peer @addr pass the parsed allow list @a? */
static int
allowed(const struct keel_allow *a, const char *addr)
{
	struct sockaddr_storage ss = peer(addr);

	return keel_allow_match(a, (const struct sockaddr *)&ss);
}

/* An empty `allow` is everyone, even a peer whose address is unknown. */
static void
test_allow_empty(void **state)
{
	struct keel_list list = { 0, NULL };
	struct keel_allow a;
	char err[256] = "";

	(void)state;
	memset(&a, 0xa5, sizeof(a));
	assert_int_equal(keel_allow_parse(&a, &list, err, sizeof(err)), 0);
	assert_null(a.net);
	assert_int_equal(a.n, 0);
	assert_true(allowed(&a, "203.0.113.9"));
	assert_true(allowed(&a, "2001:db8::1"));
	assert_true(allowed(&a, "::ffff:192.0.2.5"));
	assert_true(keel_allow_match(&a, NULL));
	keel_allow_free(&a);
}

/* IPv4 and IPv6 networks in one list; a mapped peer matches IPv4 ones. */
static void
test_allow_match(void **state)
{
	char *v[] = { "192.0.2.0/24", "2001:db8::/32", "127.0.0.1" };
	struct keel_list list = { 3, v };
	struct keel_allow a;
	char err[256] = "";

	(void)state;
	assert_int_equal(keel_allow_parse(&a, &list, err, sizeof(err)), 0);
	assert_int_equal(a.n, 3);
	assert_true(allowed(&a, "192.0.2.77"));
	assert_true(allowed(&a, "127.0.0.1"));
	assert_true(allowed(&a, "2001:db8:ffff::1"));
	assert_true(allowed(&a, "::ffff:192.0.2.5"));
	assert_true(allowed(&a, "::ffff:127.0.0.1"));
	assert_false(allowed(&a, "192.0.3.1"));
	assert_false(allowed(&a, "127.0.0.2"));
	assert_false(allowed(&a, "2001:db9::1"));
	assert_false(allowed(&a, "::ffff:198.51.100.5"));
	assert_false(allowed(&a, "::1"));
	assert_false(keel_allow_match(&a, NULL));
	keel_allow_free(&a);
	assert_null(a.net);
	assert_int_equal(a.n, 0);
	assert_true(allowed(&a, "192.0.3.1"));
}

/* A bad element fails the whole list, named as keel_allow_check names it,
 * and leaves nothing to free. */
static void
test_allow_parse_error(void **state)
{
	char *v[] = { "192.0.2.0/24", "10.1.2.3/8", "::1" };
	struct keel_list list = { 3, v };
	struct keel_allow a;
	char err[256] = "";

	(void)state;
	assert_int_equal(keel_allow_parse(&a, &list, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(strncmp(err, "allow '10.1.2.3/8' has bits set", 31),
			 0);
	assert_null(a.net);
	assert_int_equal(a.n, 0);
	v[1] = "localhost";
	assert_int_equal(keel_allow_parse(&a, &list, err, sizeof(err)), -1);
	assert_int_equal(strncmp(err, "allow 'localhost' is not", 24), 0);
	assert_null(a.net);
}

/* Freeing a zeroed (never parsed) list, or one twice, does nothing. */
static void
test_allow_free_zeroed(void **state)
{
	struct keel_allow a;

	(void)state;
	memset(&a, 0, sizeof(a));
	keel_allow_free(&a);
	keel_allow_free(&a);
	assert_null(a.net);
	assert_int_equal(a.n, 0);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_ipv4),
	cmocka_unit_test(test_ipv6),
	cmocka_unit_test(test_ipv4_mapped),
	cmocka_unit_test(test_parse_errors),
	cmocka_unit_test(test_allow_check),
	cmocka_unit_test(test_allow_empty),
	cmocka_unit_test(test_allow_match),
	cmocka_unit_test(test_allow_parse_error),
	cmocka_unit_test(test_allow_free_zeroed),
};

UNIT_MAIN_ALL("net", tests)
