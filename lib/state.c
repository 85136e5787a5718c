/* SPDX-License-Identifier: ISC */
/* The state file that -s reads: replaced atomically. */
#include "keel-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_MAX_SIZE ((size_t)256 << 20)

/* Write @text to @path through a temporary file and rename(2). */
int
state_write(const char *path, const char *text, size_t len)
{
	char tmp[4096];
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		  0644);
	if (fd == -1)
		return -1;
	if (write(fd, text, len) != (ssize_t)len) {
		int e = errno;

		close(fd);
		unlink(tmp);
		errno = e ? e : ENOSPC;
		return -1;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		int e = errno;

		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

/*
 * Read a whole state file, NULL when missing. Not the configuration's 1 MiB
 * cap: a status is one field a line, some 20 lines per serial port. Never
 * through a symbolic link: root's keeld -s reads it in a directory the
 * service user may write, and would print any file it was pointed at.
 */
char *
state_read(const char *path)
{
	struct errbuf eb = { 0 };
	char *text = NULL;
	size_t len;

	if (config_read_file_max(path, STATE_MAX_SIZE, O_NOFOLLOW, &text, &len,
				 &eb) == -1) {
		errbuf_clear(&eb);
		return NULL;
	}
	return text;
}

/* The value of `key: value` in a state text, NULL if absent. */
char *
state_get(const char *text, const char *key)
{
	size_t klen = strlen(key);
	const char *p = text, *eol;

	while (p != NULL && *p != '\0') {
		eol = strchr(p, '\n');
		if (strncmp(p, key, klen) == 0 && p[klen] == ':' &&
		    p[klen + 1] == ' ')
			return strndup(p + klen + 2,
				       eol != NULL
					       ? (size_t)(eol - p) - klen - 2
					       : strlen(p + klen + 2));
		p = eol != NULL ? eol + 1 : NULL;
	}
	return NULL;
}
