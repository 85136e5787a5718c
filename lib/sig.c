/* Signals: every one an evsignal on the one base, one dispatcher. */
#include "keel-internal.h"

#include <event2/event.h>
#include <signal.h>
#include <string.h>

static const int sig_handled[KEEL_NSIG] = { SIGHUP,  SIGINT,  SIGTERM,
					    SIGUSR1, SIGUSR2, SIGALRM };

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
	default:
		return "signal";
	}
}

/*
 * First thing in main: ignore SIGPIPE and block the handled signals, so one
 * arriving before the loop runs stays pending instead of killing us.
 */
void
sig_block_early(void)
{
	struct sigaction sa;
	sigset_t set;
	int i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&set);
	for (i = 0; i < KEEL_NSIG; i++)
		sigaddset(&set, sig_handled[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

/* The one dispatcher: what keeld does for each signal. */
static void
sig_dispatch(evutil_socket_t signo, short what, void *arg)
{
	struct keel *k = arg;

	(void)what;
	switch (signo) {
	case SIGHUP:
		if (k->stopping) {
			log_info("received SIGHUP: stopping, not reloading");
			break;
		}
		log_info("received SIGHUP: reloading");
		log_reopen();
		module_notify(k, KEEL_EVENT_REOPEN);
		keel_reload_request(k);
		break;
	case SIGINT:
	case SIGTERM:
		keel_stop_request(k, (int)signo);
		break;
	case SIGUSR1:
		log_info("received SIGUSR1: reopening log files");
		log_reopen();
		module_notify(k, KEEL_EVENT_REOPEN);
		break;
	case SIGUSR2:
		log_info("received SIGUSR2: status dump");
		keel_status_dump(k, 1);
		break;
	case SIGALRM:
		log_info("received SIGALRM: waking waiting devices");
		keel_wake(k);
		break;
	default:
		log_warnx("received unexpected %s (%d)", sig_name((int)signo),
			  (int)signo);
		break;
	}
}

/* Hand every handled signal to libevent on the daemon's base. */
int
sig_install(struct keel *k)
{
	int i;

	for (i = 0; i < KEEL_NSIG; i++) {
		k->sig_ev[i] =
			evsignal_new(k->base, sig_handled[i], sig_dispatch, k);
		if (k->sig_ev[i] == NULL ||
		    evsignal_add(k->sig_ev[i], NULL) == -1)
			return -1;
	}
	return 0;
}

/* Let pending and future signals in: libevent handles them from now on. */
void
sig_unblock(void)
{
	sigset_t set;
	int i;

	sigemptyset(&set);
	for (i = 0; i < KEEL_NSIG; i++)
		sigaddset(&set, sig_handled[i]);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* Remove the signal events. */
void
sig_free(struct keel *k)
{
	int i;

	for (i = 0; i < KEEL_NSIG; i++) {
		if (k->sig_ev[i] != NULL)
			event_free(k->sig_ev[i]);
		k->sig_ev[i] = NULL;
	}
}
