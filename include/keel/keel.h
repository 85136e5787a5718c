/*
 * keel: a framework for Linux system daemons built on libevent.
 * Umbrella header for module authors.
 */
#ifndef KEEL_KEEL_H
#define KEEL_KEEL_H

#include <keel/log.h>
#include <keel/module.h>

#endif
