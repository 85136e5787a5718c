#ifndef KEEL_EXPORT_H
#define KEEL_EXPORT_H

/* Symbols of libkeel that modules may use; everything else is hidden. */
#define KEEL_EXPORT __attribute__((visibility("default")))

#define KEEL_PRINTF(f, a) __attribute__((format(printf, f, a)))

#endif
