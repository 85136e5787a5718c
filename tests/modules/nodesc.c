/* SPDX-License-Identifier: ISC */
/* A shared object without a keel descriptor: keeld must refuse it. */
int nodesc_answer(void);

/* Something to export. */
int
nodesc_answer(void)
{
	return 42;
}
