/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * bsteer access ABI: the admission rules bpf/access.bpf.c enforces at XDP
 * and user/core/access.c checks again at accept().
 *
 * Maps, pinned as access_NAME under the instance's pin directory:
 *   access_allow4, access_deny4   LPM tries, key bsteer_access_key4
 *   access_allow6, access_deny6   LPM tries, key bsteer_access_key6
 *                                 (value: a rule id, < BSTEER_ACCESS_RULES)
 *   access_ports                  hash, key: a TCP port in host order
 *                                 (__u16), value __u8 1: the ports guarded
 *   access_counts                 per-CPU array of bsteer_access_count,
 *                                 indexed by rule id
 *   access_stats                  array (mmapable) of __u64, indexed by
 *                                 enum bsteer_access_stat: connections
 *                                 refused at accept(), by reason; written
 *                                 by the server only
 *   access_xdp_IFINDEX            the XDP program the server attached to
 *                                 interface IFINDEX (a prog pin): how a
 *                                 restart or bsteer clean knows its own
 *
 * Precedence (nbdkit's ip filter's): a source that an allow rule matches is
 * admitted; else one that a deny rule matches is refused; else admitted.
 * Within a list the longest prefix decides which rule is counted.
 */
#ifndef BSTEER_ACCESS_H
#define BSTEER_ACCESS_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#define BSTEER_ACCESS_RULES	256	/* rule ids 0..255 */
#define BSTEER_ACCESS_PORTS	16

struct bsteer_access_key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct bsteer_access_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* access_stats: connections closed at accept(), by why. */
enum bsteer_access_stat {
	BSTEER_ACCESS_REFUSED_RULE,	/* an --allow/--deny rule (TCP) */
	BSTEER_ACCESS_REFUSED_CRED,	/* --allow-uid/--allow-gid (unix) */
	BSTEER_ACCESS_REFUSED_MAX,	/* over --max-connections */
	BSTEER_ACCESS_REFUSED_SOURCE,	/* over --max-per-source */
	BSTEER_ACCESS_ST__MAX,
};
#define BSTEER_ACCESS_STATS	8	/* entries of access_stats */

struct bsteer_access_count {
	__u64 hits;		/* packets to a guarded port the rule matched */
	__u64 drops;		/* of those, dropped */
};

#ifndef __bpf__
_Static_assert(sizeof(struct bsteer_access_key4) == 8, "bsteer_access_key4 ABI");
_Static_assert(sizeof(struct bsteer_access_key6) == 20, "bsteer_access_key6 ABI");
_Static_assert(sizeof(struct bsteer_access_count) == 16, "bsteer_access_count ABI");
_Static_assert(BSTEER_ACCESS_ST__MAX <= BSTEER_ACCESS_STATS, "access_stats entries");
#endif

#endif /* BSTEER_ACCESS_H */
