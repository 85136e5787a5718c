/* SPDX-License-Identifier: ISC */
/*
 * faultshim: an LD_PRELOAD library that makes keeld's open, read, write and
 * accept calls fail at random, for test_faults.py.
 *
 * Why not libfiu (Debian libfiu0/fiu-utils, which TRAPS.md suggests): its
 * POSIX preload (1.1 in Debian 12) has no accept4(), the only accept that
 * libevent's listener calls, so no accept fault could reach keeld; it
 * shortens readv()/writev() by whole iovecs only, so the one-chunk writev()
 * of evbuffer_write() is never short, and partial writes are the fault that
 * matters most to a bridge; its errno is one fixed value per failure point
 * or a draw from a list holding errnos these calls cannot return on a socket
 * or a tty (EFAULT, EBADFD, EISDIR, EDQUOT), made with random() seeded from
 * the clock, so a run cannot be repeated from a printed seed. (Its remote
 * control and FIU_PRNG_SEED would have served.) What is left is small.
 *
 * Environment (read once, at load):
 *   KEEL_FAULTS       "family:probability:ERR,ERR...;..." with family one of
 *                     open (open, open64, openat, openat64), read (read,
 *                     readv), write (write, writev), accept (accept,
 *                     accept4); ERR one of the names in fault_errs[] below,
 *                     "short" being a read or write of fewer bytes.
 *   KEEL_FAULTS_SEED  seed of the per-thread PRNG (thread n gets seed + n).
 *   KEEL_FAULTS_CTL   a file of FAULT_CTL_SIZE bytes, mapped shared: faults
 *                     are injected while its first byte is '1' (the test
 *                     flips it with one pwrite, no syscall here per call);
 *                     the shim counts into it (see fault_count).
 *
 * Realism: for read and write the descriptor's kind (fstat, only when a
 * fault was drawn) limits the errnos: ECONNRESET, EPIPE, ENOBUFS, ENOMEM on
 * sockets, EIO on ttys and files, EAGAIN and EINTR on sockets and ttys,
 * ENOSPC on files. Pipes and anonymous descriptors (libevent's signal pipe,
 * whose writer in the signal handler ignores a failure) are never touched:
 * the kernel does not fail a one-byte write to an empty pipe.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* The project builds with hidden visibility: these must be seen. */
#define FAULT_EXPORT   __attribute__((visibility("default")))
#define FAULT_CTL_SIZE 4096
#define FAULT_IOV_MAX  64

enum fault_family { F_OPEN, F_READ, F_WRITE, F_ACCEPT, F_NFAMILIES };
static const char *const fault_families[F_NFAMILIES] = { "open", "read",
							 "write", "accept" };

enum fault_kind { K_SOCK = 1, K_CHR = 2, K_REG = 4, K_ANY = 7 };

/* The order is the counters' order in the control file (test_faults.py). */
static const struct fault_err {
	const char *name;
	int err; /* 0: a short read or write */
	int kinds;
} fault_errs[] = {
	{ "EINTR", EINTR, K_SOCK | K_CHR },
	{ "EAGAIN", EAGAIN, K_SOCK | K_CHR },
	{ "EIO", EIO, K_CHR | K_REG },
	{ "ENOMEM", ENOMEM, K_SOCK },
	{ "ENOBUFS", ENOBUFS, K_SOCK },
	{ "EMFILE", EMFILE, K_ANY },
	{ "ENFILE", ENFILE, K_ANY },
	{ "ECONNRESET", ECONNRESET, K_SOCK },
	{ "EPIPE", EPIPE, K_SOCK },
	{ "ECONNABORTED", ECONNABORTED, K_SOCK },
	{ "ENOSPC", ENOSPC, K_REG },
	{ "short", 0, K_SOCK | K_CHR },
};
#define FAULT_NERRS (sizeof(fault_errs) / sizeof(fault_errs[0]))

/*
 * Control file: byte 0 switches; from offset 64, per family, one counter of
 * calls seen while switched on, then one per entry of fault_errs.
 */
#define FAULT_SLOTS (1 + FAULT_NERRS)

struct fault_conf {
	double probability;
	unsigned errs; /* bit i: fault_errs[i] */
};

static struct fault_conf fault_conf[F_NFAMILIES];
static volatile unsigned char *fault_ctl; /* NULL: never inject */
static uint64_t fault_seed;
static unsigned fault_threads;
static __thread uint64_t fault_rng;
static __thread int fault_rng_set;

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);
typedef int (*accept_fn)(int, struct sockaddr *, socklen_t *);
typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);

static open_fn real_open, real_open64;
static openat_fn real_openat, real_openat64;
static read_fn real_read;
static write_fn real_write;
static readv_fn real_readv, real_writev;
static accept_fn real_accept;
static accept4_fn real_accept4;

FAULT_EXPORT int open(const char *path, int flags, ...);
FAULT_EXPORT int open64(const char *path, int flags, ...);
FAULT_EXPORT int openat(int dirfd, const char *path, int flags, ...);
FAULT_EXPORT int openat64(int dirfd, const char *path, int flags, ...);
FAULT_EXPORT ssize_t read(int fd, void *buf, size_t count);
FAULT_EXPORT ssize_t write(int fd, const void *buf, size_t count);
FAULT_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt);
FAULT_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt);
FAULT_EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len);
FAULT_EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len,
			 int flags);

static void fault_syms(void);

/* splitmix64: small, good enough, seeded per thread. */
static uint64_t
fault_next(void)
{
	uint64_t z;

	if (!fault_rng_set) {
		fault_rng = fault_seed + __atomic_fetch_add(&fault_threads, 1,
							    __ATOMIC_RELAXED);
		fault_rng_set = 1;
	}
	z = (fault_rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Add one to a counter of the control file. */
static void
fault_count(enum fault_family f, size_t slot)
{
	uint64_t *c = (uint64_t *)(uintptr_t)(fault_ctl + 64) +
		      (size_t)f * FAULT_SLOTS + slot;

	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

/* The kind of a descriptor, 0 when it must not be touched. */
static int
fault_kind(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return 0;
	if (S_ISSOCK(st.st_mode))
		return K_SOCK;
	if (S_ISCHR(st.st_mode))
		return K_CHR;
	if (S_ISREG(st.st_mode))
		return K_REG;
	return 0;
}

/*
 * Whether this call fails, and how: -1 not at all, else an index into
 * fault_errs. fd is -1 for open and accept (no kind to check).
 */
static int
fault_draw(enum fault_family f, int fd, int short_ok)
{
	const struct fault_conf *c = &fault_conf[f];
	int pick[FAULT_NERRS], n = 0, kinds = K_ANY, saved = errno;
	size_t i;

	if (real_accept4 == NULL)
		fault_syms();
	if (fault_ctl == NULL || fault_ctl[0] != '1' || c->errs == 0)
		return -1;
	fault_count(f, 0);
	if ((double)(fault_next() >> 11) * 0x1.0p-53 >= c->probability)
		return -1;
	if (fd != -1 && (kinds = fault_kind(fd)) == 0) {
		errno = saved;
		return -1;
	}
	for (i = 0; i < FAULT_NERRS; i++)
		if ((c->errs & (1U << i)) && (fault_errs[i].kinds & kinds) &&
		    (fault_errs[i].err != 0 || short_ok))
			pick[n++] = (int)i;
	errno = saved;
	if (n == 0)
		return -1;
	i = (size_t)pick[fault_next() % (uint64_t)n];
	fault_count(f, 1 + i);
	return (int)i;
}

/* Fail with the drawn errno. */
static int
fault_fail(int i)
{
	errno = fault_errs[i].err;
	return -1;
}

/* A length from 1 to n - 1 (n > 1). */
static size_t
fault_shorten(size_t n)
{
	return 1 + (size_t)(fault_next() % (uint64_t)(n - 1));
}

/* Parse one "family:probability:ERR,ERR" item. */
static void
fault_parse_item(char *item)
{
	char *prob, *errs, *name, *save = NULL;
	int f;
	size_t i;

	prob = strchr(item, ':');
	if (prob == NULL)
		return;
	*prob++ = '\0';
	errs = strchr(prob, ':');
	if (errs == NULL)
		return;
	*errs++ = '\0';
	for (f = 0; f < F_NFAMILIES; f++)
		if (strcmp(item, fault_families[f]) == 0)
			break;
	if (f == F_NFAMILIES)
		return;
	fault_conf[f].probability = strtod(prob, NULL);
	for (name = strtok_r(errs, ",", &save); name != NULL;
	     name = strtok_r(NULL, ",", &save))
		for (i = 0; i < FAULT_NERRS; i++)
			if (strcmp(name, fault_errs[i].name) == 0)
				fault_conf[f].errs |= 1U << i;
}

/* Find the real functions (a library's constructor may call one first). */
static void
fault_syms(void)
{
	real_open = (open_fn)dlsym(RTLD_NEXT, "open");
	real_open64 = (open_fn)dlsym(RTLD_NEXT, "open64");
	real_openat = (openat_fn)dlsym(RTLD_NEXT, "openat");
	real_openat64 = (openat_fn)dlsym(RTLD_NEXT, "openat64");
	real_read = (read_fn)dlsym(RTLD_NEXT, "read");
	real_write = (write_fn)dlsym(RTLD_NEXT, "write");
	real_readv = (readv_fn)dlsym(RTLD_NEXT, "readv");
	real_writev = (readv_fn)dlsym(RTLD_NEXT, "writev");
	real_accept = (accept_fn)dlsym(RTLD_NEXT, "accept");
	real_accept4 = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
}

/* Read the environment, map the control file. */
static void __attribute__((constructor)) fault_init(void)
{
	const char *spec = getenv("KEEL_FAULTS");
	const char *seed = getenv("KEEL_FAULTS_SEED");
	const char *ctl = getenv("KEEL_FAULTS_CTL");
	char *copy, *item, *save = NULL;
	void *map;
	int fd;

	if (real_accept4 == NULL)
		fault_syms();
	if (seed != NULL)
		fault_seed = strtoull(seed, NULL, 10);
	if (spec != NULL && (copy = strdup(spec)) != NULL) {
		for (item = strtok_r(copy, ";", &save); item != NULL;
		     item = strtok_r(NULL, ";", &save))
			fault_parse_item(item);
		free(copy);
	}
	if (ctl == NULL || real_open == NULL)
		return;
	fd = real_open(ctl, O_RDWR | O_CLOEXEC);
	if (fd == -1)
		return;
	map = mmap(NULL, FAULT_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		   0);
	close(fd);
	if (map != MAP_FAILED)
		fault_ctl = map;
}

/* The mode argument exists only with O_CREAT or O_TMPFILE. */
static mode_t
fault_mode(int flags, va_list ap)
{
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		return (mode_t)va_arg(ap, int);
	return 0;
}

int
open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int i = fault_draw(F_OPEN, -1, 0);

	va_start(ap, flags);
	mode = fault_mode(flags, ap);
	va_end(ap);
	if (i != -1)
		return fault_fail(i);
	return real_open(path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int i = fault_draw(F_OPEN, -1, 0);

	va_start(ap, flags);
	mode = fault_mode(flags, ap);
	va_end(ap);
	if (i != -1)
		return fault_fail(i);
	return real_open64(path, flags, mode);
}

int
openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int i = fault_draw(F_OPEN, -1, 0);

	va_start(ap, flags);
	mode = fault_mode(flags, ap);
	va_end(ap);
	if (i != -1)
		return fault_fail(i);
	return real_openat(dirfd, path, flags, mode);
}

int
openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int i = fault_draw(F_OPEN, -1, 0);

	va_start(ap, flags);
	mode = fault_mode(flags, ap);
	va_end(ap);
	if (i != -1)
		return fault_fail(i);
	return real_openat64(dirfd, path, flags, mode);
}

ssize_t
read(int fd, void *buf, size_t count)
{
	int i = fault_draw(F_READ, fd, count > 1);

	if (i == -1)
		return real_read(fd, buf, count);
	if (fault_errs[i].err != 0)
		return fault_fail(i);
	return real_read(fd, buf, fault_shorten(count));
}

ssize_t
write(int fd, const void *buf, size_t count)
{
	int i = fault_draw(F_WRITE, fd, count > 1);

	if (i == -1)
		return real_write(fd, buf, count);
	if (fault_errs[i].err != 0)
		return fault_fail(i);
	return real_write(fd, buf, fault_shorten(count));
}

/* Total bytes of an iovec array. */
static size_t
fault_iov_len(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;
	int j;

	for (j = 0; j < iovcnt; j++)
		n += iov[j].iov_len;
	return n;
}

/* readv or writev of the first len bytes only (a short transfer). */
static ssize_t
fault_iov_short(readv_fn fn, int fd, const struct iovec *iov, int iovcnt,
		size_t len)
{
	struct iovec v[FAULT_IOV_MAX];
	int j;

	for (j = 0; j < iovcnt && j < FAULT_IOV_MAX && len > 0; j++) {
		v[j] = iov[j];
		if (v[j].iov_len > len)
			v[j].iov_len = len;
		len -= v[j].iov_len;
	}
	return fn(fd, v, j);
}

ssize_t
readv(int fd, const struct iovec *iov, int iovcnt)
{
	size_t total = iovcnt > 0 ? fault_iov_len(iov, iovcnt) : 0;
	int i = fault_draw(F_READ, fd, total > 1);

	if (i == -1)
		return real_readv(fd, iov, iovcnt);
	if (fault_errs[i].err != 0)
		return fault_fail(i);
	return fault_iov_short(real_readv, fd, iov, iovcnt,
			       fault_shorten(total));
}

ssize_t
writev(int fd, const struct iovec *iov, int iovcnt)
{
	size_t total = iovcnt > 0 ? fault_iov_len(iov, iovcnt) : 0;
	int i = fault_draw(F_WRITE, fd, total > 1);

	if (i == -1)
		return real_writev(fd, iov, iovcnt);
	if (fault_errs[i].err != 0)
		return fault_fail(i);
	return fault_iov_short(real_writev, fd, iov, iovcnt,
			       fault_shorten(total));
}

int
accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	int i = fault_draw(F_ACCEPT, -1, 0);

	if (i != -1)
		return fault_fail(i);
	return real_accept(fd, sa, len);
}

int
accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	int i = fault_draw(F_ACCEPT, -1, 0);

	if (i != -1)
		return fault_fail(i);
	return real_accept4(fd, sa, len, flags);
}
