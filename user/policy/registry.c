// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The policy registry: the policies built into the binary, their objects,
 * their configuration words, the data layout each keeps on its legs, the
 * export size that layout gives, and their userspace halves' hooks. The
 * decisions themselves are in bpf/policy/. A new policy is its BPF file,
 * its hooks if it needs any, and one entry here.
 */
#include <string.h>
#include "libbsteer.h"
#include "policy/policy.h"
#include "cow.skel.h"
#include "mirror.skel.h"
#include "mirror_lif.skel.h"
#include "mirror_rr.skel.h"
#include "passthrough.skel.h"
#include "redirect.skel.h"
#include "stripe.skel.h"

#define KIB	1024ull

static const char *const read_modes[] = {
	"default", "primary", "round-robin", "least-inflight", NULL,
};

static const struct bsteer_cfg_key mirror_keys[] = {
	{ "read", 0, BSTEER_CFG_ENUM, false, read_modes, 0,
	  "which leg serves a read (default: the object's own mode)" },
	{ NULL },
};

static const struct bsteer_cfg_key stripe_keys[] = {
	{ "chunk", 0, BSTEER_CFG_SIZE, true, NULL, 64 * KIB,
	  "bytes per chunk, a multiple of 4096 (fixed while serving)" },
	{ NULL },
};

static const struct bsteer_cfg_key cow_keys[] = {
	{ "chunk", 0, BSTEER_CFG_SIZE, true, NULL, 64 * KIB,
	  "bytes per tracked chunk, a multiple of 4096 (fixed by the overlay)" },
	{ NULL },
};

static __u64 min_size(const __u64 *sz, __u32 n)
{
	__u64 m = ~0ull;
	__u32 i;

	for (i = 0; i < n; i++)
		if (sz[i] < m)
			m = sz[i];
	return n ? m : 0;
}

/* Every leg holds the whole export: the smallest leg bounds it. */
static __u64 replica_size(const struct bsteer_cfg *c, const __u64 *sz, __u32 n)
{
	(void)c;
	return min_size(sz, n);
}

/* Whole stripes only: N legs of whole chunks. */
static __u64 stripe_size(const struct bsteer_cfg *c, const __u64 *sz, __u32 n)
{
	__u64 chunk = c->word[0];

	return chunk ? min_size(sz, n) / chunk * chunk * n : 0;
}

/* The base sets the size; the overlay is grown to it. */
static __u64 cow_size(const struct bsteer_cfg *c, const __u64 *sz, __u32 n)
{
	(void)c;
	return n ? sz[0] : 0;
}

#define MIRROR(name_, summary_, id_)				\
	{ .name = #name_, .summary = summary_, .id = id_,		\
	  .elf_bytes = name_##_bpf__elf_bytes, .keys = mirror_keys,	\
	  .min_legs = 1, .max_legs = BSTEER_DEC_OPS,			\
	  .export_size = replica_size, .flags = BSTEER_PF_REPLICAS }

const struct bsteer_policy_desc bsteer_policies[] = {
	{ .name = "passthrough", .summary = "every request to the first leg",
	  .id = BSTEER_POL_PASSTHROUGH, .elf_bytes = passthrough_bpf__elf_bytes,
	  .min_legs = 1, .max_legs = 1, .export_size = replica_size },
	MIRROR(mirror, "writes to every healthy leg; reads from the first",
	       BSTEER_POL_MIRROR),
	MIRROR(mirror_rr, "mirror; reads round-robin over the healthy legs",
	       BSTEER_POL_MIRROR_RR),
	MIRROR(mirror_lif, "mirror; reads to the leg with the fewest ops out",
	       BSTEER_POL_MIRROR_LIF),
	{ .name = "stripe", .summary = "chunks dealt round the legs (RAID 0)",
	  .id = BSTEER_POL_STRIPE, .elf_bytes = stripe_bpf__elf_bytes,
	  .keys = stripe_keys, .min_legs = 1, .max_legs = BSTEER_MAX_TARGETS,
	  .export_size = stripe_size },
	{ .name = "redirect",
	  .summary = "a range table maps the export onto legs (dm-linear)",
	  .id = BSTEER_POL_REDIRECT, .elf_bytes = redirect_bpf__elf_bytes,
	  .min_legs = 1, .max_legs = BSTEER_MAX_TARGETS,
	  .export_size = replica_size, REDIRECT_HOOKS },
	{ .name = "cow",
	  .summary = "read-only base (leg 0) under a copy-on-write overlay (leg 1)",
	  .id = BSTEER_POL_COW, .elf_bytes = cow_bpf__elf_bytes, .keys = cow_keys,
	  .min_legs = 2, .max_legs = 2, .export_size = cow_size,
	  .flags = BSTEER_PF_BASE_RDONLY | BSTEER_PF_NO_ZEROES, COW_HOOKS },
	{ NULL },
};

const struct bsteer_policy_desc *bsteer_policy_find(const char *name)
{
	const struct bsteer_policy_desc *d;

	for (d = bsteer_policies; d->name; d++)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

