/* SPDX-License-Identifier: ISC */
/* The systemd notification protocol, without libsystemd. */
#include "keel-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct {
	int fd;
	struct sockaddr_un addr;
	socklen_t addrlen;
	int warned;
} notify_state = { -1, { 0 }, 0, 0 };

/*
 * Read NOTIFY_SOCKET. Returns 1 when notifications go somewhere, 0 when not
 * under systemd. A bad value is reported once and ignored.
 */
int
notify_init(void)
{
	const char *e = getenv("NOTIFY_SOCKET");
	size_t n;

	if (e == NULL || *e == '\0')
		return 0;
	n = strlen(e);
	if ((e[0] != '/' && e[0] != '@') ||
	    n >= sizeof(notify_state.addr.sun_path)) {
		log_warnx(
			"NOTIFY_SOCKET=%s is not a usable socket path; not notifying",
			e);
		return 0;
	}
	notify_state.addr.sun_family = AF_UNIX;
	memcpy(notify_state.addr.sun_path, e, n);
	/* '@' is the abstract namespace: a leading NUL, no trailing one. */
	if (e[0] == '@')
		notify_state.addr.sun_path[0] = '\0';
	notify_state.addrlen =
		(socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	notify_state.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (notify_state.fd == -1) {
		log_warn("cannot create the notification socket");
		return 0;
	}
	return 1;
}

/* Return non-zero under systemd's notify protocol. */
int
notify_enabled(void)
{
	return notify_state.fd != -1;
}

/* Send one datagram; never blocks, never fatal. */
void
notify_send(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	if (notify_state.fd == -1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	if (sendto(notify_state.fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL,
		   (struct sockaddr *)&notify_state.addr,
		   notify_state.addrlen) == -1) {
		if (!notify_state.warned)
			log_warn("cannot notify systemd through %s",
				 getenv("NOTIFY_SOCKET"));
		notify_state.warned = 1;
		return;
	}
	log_debug("notified: %s", msg);
}

/* The watchdog interval systemd asks for, in microseconds, or 0. */
uint64_t
notify_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");

	if (usec == NULL || notify_state.fd == -1)
		return 0;
	if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	return strtoull(usec, NULL, 10);
}

/* Close the socket. */
void
notify_close(void)
{
	if (notify_state.fd != -1)
		close(notify_state.fd);
	notify_state.fd = -1;
}
