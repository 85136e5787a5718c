/* SPDX-License-Identifier: ISC */
/*
 * Your own daemon on libkeel: describe it in a struct keel_app and call
 * keel_main() from main(). keel_main owns the command line (-f -n -t -s -p
 * -M -d -V -h), daemon mode, the pidfile, signals, transactional reload,
 * the state file, control (-s) and sd_notify; the program's name, paths,
 * built-in modules and top-level options are the application's.
 *
 *   static const struct keel_module_desc *const builtins[] = { &mine, NULL };
 *   static const struct keel_app app = {
 *           KEEL_APP_HEAD, .name = "mydaemon", .version = "1.0",
 *           .config = "/etc/mydaemon.conf", .modules = builtins,
 *   };
 *   int main(int argc, char **argv) { return keel_main(argc, argv, &app); }
 */
#ifndef KEEL_DAEMON_H
#define KEEL_DAEMON_H

#include <keel/export.h>
#include <keel/module.h>
#include <stdint.h>

KEEL_BEGIN_DECLS

/* What a signal does; an application may map its signals differently. */
enum keel_action {
	KEEL_ACTION_NONE = 0, /* logged and ignored */
	KEEL_ACTION_RELOAD,   /* reload the configuration, reopen logs */
	KEEL_ACTION_STOP,     /* graceful stop; a second one stops now */
	KEEL_ACTION_REOPEN,   /* reopen log files */
	KEEL_ACTION_STATUS,   /* status dump to the log and the state file */
	KEEL_ACTION_WAKE,     /* KEEL_EVENT_WAKE to every module */
};

struct keel_signal_action {
	int signo; /* 0 ends the table */
	enum keel_action action;
};

struct keel_app {
	uint32_t abi;           /* KEEL_MODULE_ABI */
	uint32_t size;          /* sizeof(struct keel_app) */
	const char *name;       /* logs, messages, usage, syslog ident */
	const char *version;    /* -V */
	const char *summary;    /* one line for -h; optional */
	const char *config;     /* default configuration file (required) */
	const char *pidfile;    /* NULL: /run/NAME.pid */
	const char *statefile;  /* NULL: /run/NAME/state */
	const char *module_dir; /* loadable modules; NULL: none, no -M */
	/* Modules linked into the program, NULL-terminated; listed in `load`
	 * like loadable ones. */
	const struct keel_module_desc *const *modules;
	/* The application's own top-level options: a descriptor whose options
	 * are written at the top level of the file, always running as one
	 * instance (title ""); NULL for none. Its section kind is ignored. */
	const struct keel_module_desc *root;
	/* Signal actions; NULL: the defaults (HUP reload, INT/TERM stop, USR1
	 * reopen, USR2 status, ALRM wake). */
	const struct keel_signal_action *signals;
	void *reserved[8];
};

#define KEEL_APP_HEAD .abi = KEEL_MODULE_ABI, .size = sizeof(struct keel_app)

/**
 * Run the program as described by @p app: parse the command line and start,
 * check (-t) or control (-s). Call it first thing in main().
 * @return the exit status for main().
 */
KEEL_EXPORT int keel_main(int argc, char **argv, const struct keel_app *app);

KEEL_END_DECLS

#endif
