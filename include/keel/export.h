/* SPDX-License-Identifier: ISC */
/* Visibility, attributes and C++ linkage of libkeel's public headers. */
#ifndef KEEL_EXPORT_H
#define KEEL_EXPORT_H

/* Symbols of libkeel that programs and modules may use; the rest is hidden. */
#define KEEL_EXPORT __attribute__((visibility("default")))

#define KEEL_PRINTF(f, a) __attribute__((format(printf, f, a)))

#ifdef __cplusplus
#define KEEL_BEGIN_DECLS extern "C" {
#define KEEL_END_DECLS   }
#else
#define KEEL_BEGIN_DECLS
#define KEEL_END_DECLS
#endif

#endif
