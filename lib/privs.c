/* SPDX-License-Identifier: ISC */
/* Dropping root: supplementary groups, group, user, then no way back. */
#include "keel-internal.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * Empty the capability bounding set, while CAP_SETPCAP is still ours.
 * Not fatal: a container may withhold CAP_SETPCAP, and with no permitted
 * capability and PR_SET_NO_NEW_PRIVS nothing can be gained from the set.
 */
static void
privs_drop_bounding(void)
{
	int cap;

	for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1) {
			log_warn("cannot empty the capability bounding set");
			return;
		}
}

/*
 * Clear the inheritable and ambient sets, which a uid change leaves (the
 * inheritable one) or may leave, and check that no capability is left.
 */
static int
privs_drop_caps(struct errbuf *eb)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3,
						0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	int i;

	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) == -1 ||
	    syscall(SYS_capget, &hdr, data) == -1) {
		errbuf_add(eb, "cannot clear capabilities: %s",
			   strerror(errno));
		return -1;
	}
	for (i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective != 0 || data[i].permitted != 0 ||
		    data[i].inheritable != 0) {
			errbuf_add(eb, "capabilities left after dropping "
				       "privileges");
			return -1;
		}
	return 0;
}

/*
 * Become @user (and @group, or the user's primary group), with the user's
 * supplementary groups. Order matters: setgroups, setgid, setuid; then
 * check that setuid(0) fails and that no capability is left. Either name
 * may be NULL.
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
	if (uid != 0)
		privs_drop_bounding();
	if (setresuid(uid, uid, uid) == -1) {
		errbuf_add(eb, "setresuid(%u): %s", (unsigned)uid,
			   strerror(errno));
		return -1;
	}
	if (uid != 0 && (setuid(0) != -1 || seteuid(0) != -1)) {
		errbuf_add(eb, "could regain root after dropping privileges");
		return -1;
	}
	if (uid != 0 && privs_drop_caps(eb) == -1)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		log_warn("PR_SET_NO_NEW_PRIVS");
	log_info("running as uid %u gid %u", (unsigned)uid, (unsigned)gid);
	return 0;
}
