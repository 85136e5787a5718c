/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for the configuration pre-scan (config_scan_text).
 *
 * Besides memory errors (ASan) it aborts when an invariant breaks:
 * - a pass reports nothing, a failure exactly one "fuzz.conf:LINE: ..."
 *   message whose LINE lies inside the input;
 * - recorded sections have a name and a line inside the input;
 * - the clean copy for libconfuse (comments blanked, in place, as
 *   config_load does) keeps the length and every newline, changes bytes
 *   only to spaces, and scans to the same result, sections (without their
 *   titles, which keel takes out for libconfuse) and paths: what libconfuse
 *   parses is what the pre-scan checked.
 */
#include "keel-internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FILE "fuzz.conf"

/* Report a broken invariant and crash, so the fuzzer keeps the input. */
static void
fuzz_check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "invariant broken: %s\n", what);
		abort();
	}
}

/* Number of lines of @text (a last line without '\n' counts). */
static int
fuzz_lines(const char *text, size_t len)
{
	int n = 1;
	size_t i;

	for (i = 0; i < len; i++)
		if (text[i] == '\n')
			n++;
	return n;
}

/* Check what one scan returned and reported. */
static void
fuzz_check_result(int rc, const struct config_scan *sc, const struct errbuf *eb,
		  int nlines)
{
	size_t i;

	fuzz_check(rc == 0 || rc == -1, "return value is 0 or -1");
	if (rc == 0) {
		fuzz_check(eb->count == 0, "a pass reports nothing");
	} else {
		long line;
		char *end;

		fuzz_check(eb->count == 1, "a failure reports one message");
		fuzz_check(strncmp(eb->first, FUZZ_FILE ":",
				   strlen(FUZZ_FILE ":")) == 0,
			   "the message starts with the file name");
		line = strtol(eb->first + strlen(FUZZ_FILE ":"), &end, 10);
		fuzz_check(*end == ':' || strstr(eb->first, "out of memory"),
			   "the message has FILE:LINE:");
		fuzz_check(*end != ':' || (line >= 1 && line <= nlines),
			   "the line of the message is inside the input");
	}
	for (i = 0; i < sc->nsecs; i++) {
		fuzz_check(sc->secs[i].name[0] != '\0', "a section has a name");
		fuzz_check(sc->secs[i].line >= 1 && sc->secs[i].line <= nlines,
			   "a section's line is inside the input");
		fuzz_check(strcmp(sc->secs[i].file, FUZZ_FILE) == 0,
			   "a section records its file");
	}
}

/* Return non-zero when @a and @b hold the same optional string. */
static int
fuzz_same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/*
 * Check that two scans recorded the same sections and paths; with
 * @untitled, @b (a clean copy) has every section's title taken out.
 */
static void
fuzz_check_same(const struct config_scan *a, const struct config_scan *b,
		int untitled, const char *what)
{
	size_t i;

	fuzz_check(a->nsecs == b->nsecs, what);
	for (i = 0; i < a->nsecs; i++) {
		fuzz_check(strcmp(a->secs[i].name, b->secs[i].name) == 0, what);
		fuzz_check(strcmp(untitled ? "" : a->secs[i].title,
				  b->secs[i].title) == 0,
			   what);
		fuzz_check(a->secs[i].line == b->secs[i].line, what);
	}
	fuzz_check(fuzz_same_str(a->pidfile, b->pidfile), what);
	fuzz_check(fuzz_same_str(a->statefile, b->statefile), what);
}

/* Scan the input plainly, then cleaned in place, then the clean copy. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_scan plain = { 0 }, inplace = { 0 }, again = { 0 };
	struct errbuf eb = { 0 };
	char *text, *clean;
	int rc, rc2, nlines;
	size_t i;

	if (size > CONFIG_MAX_SIZE)
		return 0;
	/* An exact-size copy, so that ASan sees any read past the end. */
	text = malloc(size ? size : 1);
	clean = malloc(size ? size : 1);
	if (text == NULL || clean == NULL) {
		free(text);
		free(clean);
		return 0;
	}
	memcpy(text, data, size);
	memcpy(clean, data, size);
	nlines = fuzz_lines(text, size);

	rc = config_scan_text(FUZZ_FILE, text, size, &plain, &eb);
	fuzz_check_result(rc, &plain, &eb, nlines);
	fuzz_check(memcmp(text, data, size) == 0,
		   "without a clean copy the text is not changed");
	errbuf_clear(&eb);

	/* As config_load does it: clean == text, blanked during the scan. */
	inplace.clean = clean;
	rc2 = config_scan_text(FUZZ_FILE, clean, size, &inplace, &eb);
	inplace.clean = NULL;
	fuzz_check(rc2 == rc, "cleaning in place does not change the result");
	fuzz_check_result(rc2, &inplace, &eb, nlines);
	fuzz_check_same(&plain, &inplace, 0,
			"cleaning in place changes nothing");
	errbuf_clear(&eb);
	for (i = 0; i < size; i++) {
		fuzz_check(clean[i] == text[i] || clean[i] == ' ',
			   "cleaning only blanks bytes");
		fuzz_check((text[i] == '\n') == (clean[i] == '\n'),
			   "cleaning keeps every newline");
	}

	/* libconfuse parses the clean copy: it must check the same. */
	if (rc == 0) {
		rc2 = config_scan_text(FUZZ_FILE, clean, size, &again, &eb);
		fuzz_check(rc2 == 0, "the clean copy scans as the original");
		fuzz_check_same(&plain, &again, 1,
				"the clean copy has the same "
				"sections, untitled, and paths");
		errbuf_clear(&eb);
	}

	config_scan_free(&plain);
	config_scan_free(&inplace);
	config_scan_free(&again);
	free(text);
	free(clean);
	return 0;
}
