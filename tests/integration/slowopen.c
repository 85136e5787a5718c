/* SPDX-License-Identifier: ISC */
/*
 * slowopen: an LD_PRELOAD shim for the serial fault tests. open(), open64()
 * and openat() of a path containing $KEEL_SLOWOPEN_MATCH sleep 30 s first,
 * like a driver wedged in its open routine. keel opens devices in a thread
 * off the loop, so only that thread sleeps.
 *
 * With $KEEL_SLOWEXIT_MS, the process also takes that long to exit after
 * main() returned (a destructor sleeps), as exit handlers and
 * LeakSanitizer's check do: for test_lifecycle's `-s stop`.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define SLOWOPEN_SECONDS 30
/* The project builds with hidden visibility: these must be seen. */
#define SLOWOPEN_EXPORT __attribute__((visibility("default")))

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

SLOWOPEN_EXPORT int open(const char *path, int flags, ...);
SLOWOPEN_EXPORT int open64(const char *path, int flags, ...);
SLOWOPEN_EXPORT int openat(int dirfd, const char *path, int flags, ...);

/* Sleep the whole time, through signal interruptions. */
static void
slowopen_maybe_sleep(const char *path)
{
	const char *match = getenv("KEEL_SLOWOPEN_MATCH");
	struct timespec ts = { SLOWOPEN_SECONDS, 0 }, rem;
	int saved = errno;

	if (match == NULL || match[0] == '\0' || path == NULL ||
	    strstr(path, match) == NULL)
		return;
	while (nanosleep(&ts, &rem) == -1 && errno == EINTR)
		ts = rem;
	errno = saved;
}

/* The mode argument exists only with O_CREAT or O_TMPFILE. */
static mode_t
slowopen_mode(int flags, va_list ap)
{
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		return (mode_t)va_arg(ap, int);
	return 0;
}

int
open(const char *path, int flags, ...)
{
	static open_fn next;
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = slowopen_mode(flags, ap);
	va_end(ap);
	if (next == NULL)
		next = (open_fn)dlsym(RTLD_NEXT, "open");
	slowopen_maybe_sleep(path);
	return next(path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
	static open_fn next;
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = slowopen_mode(flags, ap);
	va_end(ap);
	if (next == NULL)
		next = (open_fn)dlsym(RTLD_NEXT, "open64");
	slowopen_maybe_sleep(path);
	return next(path, flags, mode);
}

int
openat(int dirfd, const char *path, int flags, ...)
{
	static openat_fn next;
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = slowopen_mode(flags, ap);
	va_end(ap);
	if (next == NULL)
		next = (openat_fn)dlsym(RTLD_NEXT, "openat");
	slowopen_maybe_sleep(path);
	return next(dirfd, path, flags, mode);
}

/* $KEEL_SLOWEXIT_MS: a slow exit, after main() returned. */
__attribute__((destructor)) static void
slowopen_slow_exit(void)
{
	const char *ms = getenv("KEEL_SLOWEXIT_MS");
	struct timespec ts, rem;
	long n;

	if (ms == NULL || (n = strtol(ms, NULL, 10)) <= 0)
		return;
	ts.tv_sec = n / 1000;
	ts.tv_nsec = (n % 1000) * 1000000L;
	while (nanosleep(&ts, &rem) == -1 && errno == EINTR)
		ts = rem;
}
