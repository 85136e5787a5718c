/* SPDX-License-Identifier: ISC */
/*
 * keel: a framework for Linux system daemons built on libevent.
 * Umbrella header: logging, modules, metrics and status, keel_main().
 */
#ifndef KEEL_KEEL_H
#define KEEL_KEEL_H

#include <keel/daemon.h>
#include <keel/log.h>
#include <keel/metrics.h>
#include <keel/module.h>

#endif
