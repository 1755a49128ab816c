// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * redirect: a range table (like dm-linear) maps spans of the export onto
 * legs at their own offsets. The table is the pinned map "redirect_table"
 * (struct bsteer_range, see include/bsteer.h), which bpftool or
 * "bsteer policy config" may change while serving: each piece of a
 * request is looked up when it is sent, so new requests follow the new
 * table at once. Bytes no entry maps fail with EIO, reads and writes alike.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
BSTEER_LAYOUT("redirect");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, BSTEER_REDIRECT_MAX);
	__type(key, __u32);
	__type(value, struct bsteer_range);
} redirect_table SEC(".maps");

/* The scan for the entry that maps @at (bpf_loop over keys 0, 1, ...). */
struct redirect_scan {
	__u64 at;
	struct bsteer_range hit;
	int found;
};

static long redirect_scan_one(__u32 i, void *data)
{
	struct redirect_scan *sc = data;
	struct bsteer_range *e = bpf_map_lookup_elem(&redirect_table, &i);

	if (!e)
		return 1;		/* the table ends at the first hole */
	sc->hit = *e;			/* one consistent copy of the entry */
	if (sc->at < sc->hit.start || sc->at - sc->hit.start >= sc->hit.len)
		return 0;
	sc->found = 1;
	return 1;
}

static __always_inline int redirect_piece(struct bsteer_pctx *p, __u64 pos,
					  __u32 *target, __u64 *toff, __u32 *len)
{
	struct redirect_scan sc = { .at = p->req->offset + pos };
	__u64 left;

	bpf_loop(BSTEER_REDIRECT_MAX, redirect_scan_one, &sc, 0);
	if (!sc.found || sc.hit.leg >= bsteer_nlegs(p))
		return -EIO;
	left = sc.hit.len - (sc.at - sc.hit.start);
	*target = bsteer_leg(p, sc.hit.leg);
	*toff = sc.hit.toff + (sc.at - sc.hit.start);
	if (*len > left)
		*len = left;
	return 0;
}

static __always_inline void redirect_decide(struct bsteer_pctx *p)
{
	BSTEER_SPLIT_DECIDE(p, redirect);
}

BSTEER_POLICY(redirect, BSTEER_POL_REDIRECT)
