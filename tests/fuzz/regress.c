/* SPDX-License-Identifier: ISC */
/*
 * Run every file of the given corpus directories (or files) through the
 * fuzz harness linked with it (LLVMFuzzerTestOneInput): the inputs the
 * fuzzer kept, crashes included, stay regression tests in builds without
 * libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feed one file to the harness; -1 if it cannot be read. */
static int
regress_file(const char *path)
{
	FILE *fp = fopen(path, "rbe");
	uint8_t *buf = NULL;
	long size;
	int rc = -1;

	if (fp == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) >= 0 &&
	    fseek(fp, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)size + 1)) != NULL &&
	    fread(buf, 1, (size_t)size, fp) == (size_t)size) {
		LLVMFuzzerTestOneInput(buf, (size_t)size);
		rc = 0;
	} else {
		fprintf(stderr, "%s: cannot read\n", path);
	}
	free(buf);
	fclose(fp);
	return rc;
}

/* Feed every regular file of @dir, in name order; the number fed or -1. */
static int
regress_dir(const char *dir)
{
	struct dirent **list;
	char path[4096];
	int n, i, fed = 0, bad = 0;

	n = scandir(dir, &list, NULL, alphasort);
	if (n == -1) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (regress_file(path) == 0)
				fed++;
			else
				bad = 1;
		}
		free(list[i]);
	}
	free(list);
	return bad ? -1 : fed;
}

int
main(int argc, char **argv)
{
	int i, total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		struct stat st;
		int n;

		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
			n = regress_dir(argv[i]);
		else
			n = regress_file(argv[i]) == 0 ? 1 : -1;
		if (n < 0)
			return 1;
		total += n;
	}
	printf("%d input(s) ran without a crash\n", total);
	/* An empty corpus proves nothing. */
	return total > 0 ? 0 : 1;
}
