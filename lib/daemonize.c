/* SPDX-License-Identifier: ISC */
/* Detaching from the terminal, with the parent waiting for readiness. */
#include "keel-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Fork twice (setsid between) and return, in the daemon, the write end of a
 * pipe to report readiness on. The original process waits on the pipe and
 * exits 0 when told "ready", or prints the reason and exits 1.
 */
int
daemonize_begin(void)
{
	int p[2];
	pid_t pid;
	char buf[4096];
	size_t got = 0;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) == -1)
		fatal("pipe");
	pid = fork();
	if (pid == -1)
		fatal("fork");
	if (pid > 0) {
		close(p[1]);
		while (got < sizeof(buf) - 1) {
			n = read(p[0], buf + got, sizeof(buf) - 1 - got);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		buf[got] = '\0';
		/* Reap the intermediate child; the daemon is its orphan. */
		waitpid(pid, NULL, 0);
		if (got > 0 && buf[0] == '0')
			_exit(0);
		if (got > 1)
			fprintf(stderr, "%s: %s\n", log_ident(), buf + 1);
		else
			fprintf(stderr,
				"%s: the daemon exited during start-up\n",
				log_ident());
		_exit(1);
	}
	close(p[0]);
	if (setsid() == -1)
		fatal("setsid");
	pid = fork();
	if (pid == -1)
		fatal("fork");
	if (pid > 0)
		_exit(0);
	log_set_pid(getpid());
	if (chdir("/") == -1)
		fatal("chdir /");
	umask(022);
	return p[1];
}

/* Redirect the standard descriptors to /dev/null. */
static void
daemonize_detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd == -1)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* Tell the waiting parent that the daemon is ready. */
void
daemonize_ready(int fd)
{
	if (fd == -1)
		return;
	if (write(fd, "0", 1) != 1) {
		/* The parent is gone: nobody to tell. */
	}
	close(fd);
	daemonize_detach_stdio();
}

/* Tell the waiting parent why start-up failed. */
void
daemonize_failed(int fd, const char *msg)
{
	char buf[4096];
	int n;

	if (fd == -1)
		return;
	n = snprintf(buf, sizeof(buf), "1%s", msg);
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	if (write(fd, buf, (size_t)n) != n) {
		/* The parent is gone: nobody to tell. */
	}
	close(fd);
}
