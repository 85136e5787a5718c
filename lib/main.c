/* SPDX-License-Identifier: ISC */
/* keel_main(): the command line every keel daemon shares. */
#include "keel-internal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print the usage on @fp. */
static void
main_usage(const struct keel_app *app, FILE *fp)
{
	if (app->summary != NULL)
		fprintf(fp, "%s: %s\n", app->name, app->summary);
	fprintf(fp,
		"usage: %s [-ndtTV] [-f FILE] [-p PIDFILE]%s [-s CMD]\n"
		"  -f, --config FILE       configuration (default %s)\n"
		"  -n, --foreground        do not daemonize; log to stderr\n"
		"  -t, --test              check the configuration and exit\n"
		"  -T                      as -t, then print the effective configuration\n"
		"  -s, --signal CMD        control the running %s: reload, stop,\n"
		"                          reopen, wake, status\n"
		"  -p, --pidfile FILE      override the pidfile\n",
		app->name, app->module_dir != NULL ? " [-M DIR]" : "",
		app->config, app->name);
	if (app->module_dir != NULL)
		fprintf(fp,
			"  -M, --module-path DIR   modules directory (default %s)\n",
			app->module_dir);
	fprintf(fp, "  -d, --debug             debug log level\n"
		    "  -V, --version           print the version\n"
		    "  -h, --help              this help\n");
}

/* Refuse a descriptor this library cannot run. */
static int
main_check_app(const struct keel_app *app)
{
	if (app == NULL || app->abi != KEEL_MODULE_ABI ||
	    app->size < offsetof(struct keel_app, reserved) ||
	    app->name == NULL || app->name[0] == '\0' || app->version == NULL ||
	    app->config == NULL) {
		fprintf(stderr,
			"keel: the program's struct keel_app is not valid for "
			"ABI %d (abi, size, name, version and config are "
			"required)\n",
			KEEL_MODULE_ABI);
		return -1;
	}
	return 0;
}

/* Run the program @app describes. */
int
keel_main(int argc, char **argv, const struct keel_app *app)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'f' },
		{ "foreground", no_argument, NULL, 'n' },
		{ "test", no_argument, NULL, 't' },
		{ "signal", required_argument, NULL, 's' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "module-path", required_argument, NULL, 'M' },
		{ "debug", no_argument, NULL, 'd' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct keel_options opt;
	const char *cmd = NULL;
	int test = 0, c;

	if (main_check_app(app) == -1)
		return 2;
	/* Before anything else: no signal may kill us during start-up. */
	keel_main_early(app);
	memset(&opt, 0, sizeof(opt));
	opt.app = app;
	opt.config = app->config;
	opt.module_path = app->module_dir;
	while ((c = getopt_long(argc, argv, "f:ntTs:p:M:dVh", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'f':
			opt.config = optarg;
			break;
		case 'n':
			opt.foreground = 1;
			break;
		case 't':
			test = 1;
			break;
		case 'T':
			test = 1;
			opt.dump = 1;
			break;
		case 's':
			cmd = optarg;
			break;
		case 'p':
			opt.pidfile = optarg;
			break;
		case 'M':
			if (app->module_dir == NULL) {
				fprintf(stderr,
					"%s: -M: this program loads no modules\n",
					app->name);
				return 2;
			}
			opt.module_path = optarg;
			break;
		case 'd':
			opt.debug = 1;
			break;
		case 'V':
			printf("%s %s (keel %s, module ABI %d)\n", app->name,
			       app->version, KEEL_VERSION, KEEL_MODULE_ABI);
			return 0;
		case 'h':
			main_usage(app, stdout);
			return 0;
		default:
			main_usage(app, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", app->name,
			argv[optind]);
		main_usage(app, stderr);
		return 2;
	}
	if (test && cmd != NULL) {
		fprintf(stderr, "%s: -t and -s cannot be combined\n",
			app->name);
		return 2;
	}
	if (test)
		return keel_main_check(&opt);
	if (cmd != NULL)
		return keel_main_control(&opt, cmd);
	return keel_main_run(&opt);
}
