/* keeld: the command line. */
#include "keel-internal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print the usage on @fp. */
static void
usage(FILE *fp)
{
	fprintf(fp,
		"usage: keeld [-ndtV] [-f FILE] [-p PIDFILE] [-M DIR] [-s CMD]\n"
		"  -f, --config FILE       configuration (default %s)\n"
		"  -n, --foreground        do not daemonize; log to stderr\n"
		"  -t, --test              check the configuration and exit\n"
		"  -s, --signal CMD        control the running keeld: reload, stop,\n"
		"                          reopen, wake, status\n"
		"  -p, --pidfile FILE      override the pidfile\n"
		"  -M, --module-path DIR   modules directory (default %s)\n"
		"  -d, --debug             debug log level\n"
		"  -V, --version           print the version\n"
		"  -h, --help              this help\n",
		KEEL_DEFAULT_CONFIG, KEEL_DEFAULT_MODULE_PATH);
}

int
main(int argc, char **argv)
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
	struct keel_options opt = { KEEL_DEFAULT_CONFIG,
				    KEEL_DEFAULT_MODULE_PATH, NULL, 0, 0 };
	const char *cmd = NULL;
	int test = 0, c;

	/* Before anything else: no signal may kill us during start-up. */
	keel_main_early();
	while ((c = getopt_long(argc, argv, "f:nts:p:M:dVh", longopts, NULL)) !=
	       -1) {
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
		case 's':
			cmd = optarg;
			break;
		case 'p':
			opt.pidfile = optarg;
			break;
		case 'M':
			opt.module_path = optarg;
			break;
		case 'd':
			opt.debug = 1;
			break;
		case 'V':
			printf("keeld %s (module ABI %d)\n", KEEL_VERSION,
			       KEEL_MODULE_ABI);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "keeld: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return 2;
	}
	if (test && cmd != NULL) {
		fprintf(stderr, "keeld: -t and -s cannot be combined\n");
		return 2;
	}
	if (test)
		return keel_main_check(&opt);
	if (cmd != NULL)
		return keel_main_control(&opt, cmd);
	return keel_main_run(&opt);
}
