/* SPDX-License-Identifier: ISC */
/* notify: sd_notify datagrams to $NOTIFY_SOCKET, without systemd. */
#include "keel-internal.h"
#include "unit.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct fixture {
	char *dir;
	char *log; /* dir/log: where keel's warnings go */
	int sock;  /* the "systemd" end, or -1 */
	char name[108];
};

/* A temp dir, logging into it, and a clean environment. */
static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct errbuf eb = { 0 };

	assert_non_null(f);
	f->dir = unit_tmpdir();
	f->log = unit_path(f->dir, "log");
	f->sock = -1;
	assert_int_equal(log_configure(f->log, KEEL_LOG_DEBUG, &eb), 0);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	*state = f;
	return 0;
}

/* Undo setup and whatever the test enabled. */
static int
teardown(void **state)
{
	struct fixture *f = *state;

	notify_close();
	log_close();
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	if (f->sock != -1)
		close(f->sock);
	unit_rmtree(f->dir);
	free(f->dir);
	free(f->log);
	free(f);
	return 0;
}

/* Bind a datagram socket at @path ("@x" = abstract) and export it. */
static void
listen_at(struct fixture *f, const char *path)
{
	struct sockaddr_un sa;
	size_t n = strlen(path);

	assert_true(n < sizeof(sa.sun_path));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	f->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_not_equal(f->sock, -1);
	/* Abstract names have no trailing NUL: the length is exact. */
	assert_int_equal(
		bind(f->sock, (struct sockaddr *)&sa,
		     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
				 (path[0] == '@' ? 0 : 1))),
		0);
	snprintf(f->name, sizeof(f->name), "%s", path);
	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
}

/* Receive one datagram within @timeout_ms; its length, or -1 if none. */
static ssize_t
receive(int sock, char *buf, size_t size, int timeout_ms)
{
	struct pollfd pfd = { sock, POLLIN, 0 };

	if (poll(&pfd, 1, timeout_ms) != 1)
		return -1;
	return recv(sock, buf, size, MSG_DONTWAIT);
}

/* Assert that the next datagram is exactly @expect. */
static void
expect_datagram(int sock, const char *expect)
{
	char buf[4096];
	ssize_t n = receive(sock, buf, sizeof(buf), 2000);

	assert_int_equal(n, (ssize_t)strlen(expect));
	assert_memory_equal(buf, expect, (size_t)n);
}

/* A filesystem socket receives exactly the formatted bytes. */
static void
test_send_path(void **state)
{
	struct fixture *f = *state;
	char *path = unit_path(f->dir, "notify.sock");

	listen_at(f, path);
	assert_int_equal(notify_init(), 1);
	assert_true(notify_enabled());
	notify_send("READY=1\nMAINPID=%ld\nSTATUS=%s", 1234L, "running");
	expect_datagram(f->sock, "READY=1\nMAINPID=1234\nSTATUS=running");
	notify_send("WATCHDOG=1");
	expect_datagram(f->sock, "WATCHDOG=1");
	free(path);
}

/* "@name" is the abstract namespace: a leading NUL, no trailing one. */
static void
test_send_abstract(void **state)
{
	struct fixture *f = *state;
	char name[64];
	char *log;

	snprintf(name, sizeof(name), "@keel-unit-%ld-%ld", (long)getpid(),
		 (long)time(NULL));
	listen_at(f, name);
	assert_int_equal(notify_init(), 1);
	notify_send("STOPPING=1");
	expect_datagram(f->sock, "STOPPING=1");
	notify_send("READY=1");
	expect_datagram(f->sock, "READY=1");
	/* Delivered to our name: nothing was reported as failing. */
	log = unit_slurp(f->log, NULL);
	assert_int_equal(unit_count(log, "cannot notify"), 0);
	free(log);
}

/* A socket path nobody listens on is not fatal, and is reported once. */
static void
test_nowhere_not_fatal(void **state)
{
	struct fixture *f = *state;
	char *path = unit_path(f->dir, "nobody.sock");
	char *log;

	assert_int_equal(setenv("NOTIFY_SOCKET", path, 1), 0);
	assert_int_equal(notify_init(), 1);
	notify_send("READY=1");
	notify_send("STATUS=still here");
	notify_send("WATCHDOG=1");
	log = unit_slurp(f->log, NULL);
	assert_non_null(log);
	assert_int_equal(unit_count(log, "cannot notify systemd through"), 1);
	assert_non_null(strstr(log, path));
	free(log);
	free(path);
}

/* Unset, empty, relative or too long: not notifying, and not failing. */
static void
test_unusable_values(void **state)
{
	struct fixture *f = *state;
	char longpath[200];
	char *log;

	(void)f;
	assert_int_equal(notify_init(), 0);
	assert_false(notify_enabled());
	notify_send("READY=1"); /* a no-op */

	assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
	assert_int_equal(notify_init(), 0);
	assert_false(notify_enabled());

	assert_int_equal(setenv("NOTIFY_SOCKET", "relative.sock", 1), 0);
	assert_int_equal(notify_init(), 0);
	assert_false(notify_enabled());

	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(setenv("NOTIFY_SOCKET", longpath, 1), 0);
	assert_int_equal(notify_init(), 0);
	assert_false(notify_enabled());

	log = unit_slurp(f->log, NULL);
	assert_int_equal(unit_count(log, "is not a usable socket path"), 2);
	assert_non_null(strstr(log, "NOTIFY_SOCKET=relative.sock"));
	free(log);
}

/* A message too long for one datagram is dropped, not cut. */
static void
test_too_long_dropped(void **state)
{
	struct fixture *f = *state;
	char *path = unit_path(f->dir, "notify.sock");
	char big[2000], buf[4096];

	listen_at(f, path);
	assert_int_equal(notify_init(), 1);
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	notify_send("STATUS=%s", big);
	assert_int_equal(receive(f->sock, buf, sizeof(buf), 200), -1);
	notify_send("READY=1");
	expect_datagram(f->sock, "READY=1");
	free(path);
}

/* In a child: fill the receiver's queue; every send must return. */
static int
child_flood(void *arg)
{
	int i;

	(void)arg;
	if (notify_init() != 1)
		return 2;
	for (i = 0; i < 5000; i++)
		notify_send("STATUS=flood %d", i);
	return 0;
}

/* A receiver that never reads does not block the sender. */
static void
test_full_queue_does_not_block(void **state)
{
	struct fixture *f = *state;
	char *path = unit_path(f->dir, "notify.sock");

	listen_at(f, path);
	assert_int_equal(unit_in_child(child_flood, NULL, 10000), 0);
	free(path);
}

/* WATCHDOG_USEC is honoured when notifying and WATCHDOG_PID is ours. */
static void
test_watchdog_usec(void **state)
{
	struct fixture *f = *state;
	char *path = unit_path(f->dir, "notify.sock");
	char pid[32];

	/* Not under systemd: no watchdog even with the variable. */
	assert_int_equal(setenv("WATCHDOG_USEC", "500000", 1), 0);
	assert_int_equal(notify_watchdog_usec(), 0);

	listen_at(f, path);
	assert_int_equal(notify_init(), 1);
	assert_int_equal(notify_watchdog_usec(), 500000);

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
	assert_int_equal(notify_watchdog_usec(), 500000);

	/* Meant for another process (e.g. our parent): not ours. */
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
	assert_int_equal(notify_watchdog_usec(), 0);

	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	assert_int_equal(notify_watchdog_usec(), 0);

	assert_int_equal(setenv("WATCHDOG_USEC", "30000000", 1), 0);
	notify_close();
	assert_false(notify_enabled());
	assert_int_equal(notify_watchdog_usec(), 0);
	free(path);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test_setup_teardown(test_send_path, setup, teardown),
	cmocka_unit_test_setup_teardown(test_send_abstract, setup, teardown),
	cmocka_unit_test_setup_teardown(test_nowhere_not_fatal, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_unusable_values, setup, teardown),
	cmocka_unit_test_setup_teardown(test_too_long_dropped, setup, teardown),
	cmocka_unit_test_setup_teardown(test_full_queue_does_not_block, setup,
					teardown),
	cmocka_unit_test_setup_teardown(test_watchdog_usec, setup, teardown),
};

static const struct CMUnitTest known_bugs[] = {
	{ NULL, NULL, NULL, NULL, NULL },
};

UNIT_MAIN("notify", tests, known_bugs)
