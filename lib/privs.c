/* Dropping root: supplementary groups, group, user, then no way back. */
#include "keel-internal.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/*
 * Become @user (and @group, or the user's primary group), with the user's
 * supplementary groups. Order matters: setgroups, setgid, setuid; then
 * check that setuid(0) fails. Either name may be NULL.
 */
int
privs_drop(const char *user, const char *group, struct errbuf *eb)
{
	struct passwd *pw = NULL;
	struct group *gr = NULL;
	uid_t uid;
	gid_t gid;

	if (user == NULL && group == NULL)
		return 0;
	if (user != NULL && (pw = getpwnam(user)) == NULL) {
		errbuf_add(eb, "user '%s' does not exist", user);
		return -1;
	}
	if (group != NULL && (gr = getgrnam(group)) == NULL) {
		errbuf_add(eb, "group '%s' does not exist", group);
		return -1;
	}
	uid = pw != NULL ? pw->pw_uid : geteuid();
	gid = gr != NULL ? gr->gr_gid : (pw != NULL ? pw->pw_gid : getegid());
	if (geteuid() != 0) {
		if (uid == geteuid() && gid == getegid())
			return 0;
		errbuf_add(
			eb,
			"cannot switch to user %s / group %s: not running as root",
			user != NULL ? user : "(same)",
			group != NULL ? group : "(same)");
		return -1;
	}
	if (pw != NULL) {
		if (initgroups(pw->pw_name, gid) == -1) {
			errbuf_add(eb, "initgroups(%s): %s", pw->pw_name,
				   strerror(errno));
			return -1;
		}
	} else if (setgroups(1, &gid) == -1) {
		errbuf_add(eb, "setgroups: %s", strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, gid) == -1) {
		errbuf_add(eb, "setresgid(%u): %s", (unsigned)gid,
			   strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) == -1) {
		errbuf_add(eb, "setresuid(%u): %s", (unsigned)uid,
			   strerror(errno));
		return -1;
	}
	if (uid != 0 && (setuid(0) != -1 || seteuid(0) != -1)) {
		errbuf_add(eb, "could regain root after dropping privileges");
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		log_warn("PR_SET_NO_NEW_PRIVS");
	log_info("running as uid %u gid %u", (unsigned)uid, (unsigned)gid);
	return 0;
}
