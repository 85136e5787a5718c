/* SPDX-License-Identifier: ISC */
/*
 * Signals: every one an evsignal on the one base, one dispatcher that maps
 * the signal to the application's action (keel's defaults unless the
 * application gives its own table).
 */
#include "keel-internal.h"

#include <event2/event.h>
#include <signal.h>
#include <string.h>

static const struct keel_signal_action sig_defaults[] = {
	{ SIGHUP, KEEL_ACTION_RELOAD },  { SIGINT, KEEL_ACTION_STOP },
	{ SIGTERM, KEEL_ACTION_STOP },   { SIGUSR1, KEEL_ACTION_REOPEN },
	{ SIGUSR2, KEEL_ACTION_STATUS }, { SIGALRM, KEEL_ACTION_WAKE },
	{ 0, KEEL_ACTION_NONE },
};

/* The application's table, or the defaults. */
static const struct keel_signal_action *
sig_table(const struct keel_app *app)
{
	return app->signals != NULL ? app->signals : sig_defaults;
}

/* The conventional name of a signal. */
const char *
sig_name(int signo)
{
	switch (signo) {
	case SIGHUP:
		return "SIGHUP";
	case SIGINT:
		return "SIGINT";
	case SIGTERM:
		return "SIGTERM";
	case SIGUSR1:
		return "SIGUSR1";
	case SIGUSR2:
		return "SIGUSR2";
	case SIGALRM:
		return "SIGALRM";
	case SIGQUIT:
		return "SIGQUIT";
	case SIGWINCH:
		return "SIGWINCH";
	default:
		return "signal";
	}
}

/* The set of signals the application handles. */
static void
sig_set(const struct keel_app *app, sigset_t *set)
{
	const struct keel_signal_action *a;

	sigemptyset(set);
	for (a = sig_table(app); a->signo != 0; a++)
		sigaddset(set, a->signo);
}

/*
 * First thing in main: ignore SIGPIPE and block the handled signals, so one
 * arriving before the loop runs stays pending instead of killing us.
 */
void
sig_block_early(const struct keel_app *app)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	sig_set(app, &set);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

/* The one dispatcher: the action the application gave the signal. */
static void
sig_dispatch(evutil_socket_t fd, short what, void *arg)
{
	struct keel *k = arg;
	int signo = (int)fd, i;
	enum keel_action action = KEEL_ACTION_NONE;
	const char *name = sig_name(signo);

	(void)what;
	for (i = 0; i < k->nsig; i++)
		if (k->sig_no[i] == signo) {
			action = k->sig_action[i];
			keel_metric_add(k->sig_count[i], 1);
		}
	switch (action) {
	case KEEL_ACTION_RELOAD:
		if (k->stopping != STOP_NONE) {
			log_info("received %s: stopping, not reloading", name);
			break;
		}
		log_info("received %s: reloading", name);
		log_reopen();
		module_notify(k, KEEL_EVENT_REOPEN);
		keel_reload_request(k);
		break;
	case KEEL_ACTION_STOP:
		keel_stop_request(k, signo);
		break;
	case KEEL_ACTION_REOPEN:
		log_info("received %s: reopening log files", name);
		log_reopen();
		module_notify(k, KEEL_EVENT_REOPEN);
		break;
	case KEEL_ACTION_STATUS:
		/* A poll by -s status must not fill the log. */
		if (keel_status_requested(k)) {
			keel_status_dump(k, 0);
			break;
		}
		log_info("received %s: status dump", name);
		keel_status_dump(k, 1);
		break;
	case KEEL_ACTION_WAKE:
		log_info("received %s: waking waiting devices", name);
		keel_wake(k);
		break;
	default:
		log_info("received %s: ignored", name);
		break;
	}
}

/* Hand every handled signal to libevent on the daemon's base. */
int
sig_install(struct keel *k)
{
	const struct keel_signal_action *a;

	k->nsig = 0;
	for (a = sig_table(k->app); a->signo != 0; a++) {
		if (k->nsig == KEEL_NSIG_MAX)
			return -1;
		k->sig_no[k->nsig] = a->signo;
		k->sig_action[k->nsig] = a->action;
		k->sig_ev[k->nsig] =
			evsignal_new(k->base, a->signo, sig_dispatch, k);
		if (k->sig_ev[k->nsig] == NULL ||
		    evsignal_add(k->sig_ev[k->nsig], NULL) == -1)
			return -1;
		k->nsig++;
	}
	return 0;
}

/* Let pending and future signals in: libevent handles them from now on. */
void
sig_unblock(const struct keel *k)
{
	sigset_t set;

	sig_set(k->app, &set);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* Remove the signal events. */
void
sig_free(struct keel *k)
{
	int i;

	for (i = 0; i < KEEL_NSIG_MAX; i++) {
		if (k->sig_ev[i] != NULL)
			event_free(k->sig_ev[i]);
		k->sig_ev[i] = NULL;
	}
}
