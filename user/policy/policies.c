// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The built-in policies: their objects, their configuration words, the
 * data layout each keeps on its legs, and the export size that layout
 * gives. The decisions themselves are in bpf/; this file only describes
 * the policies to the loader, the CLI and bsteer serve.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "libbsteer.h"
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

const struct bsteer_policy_desc bsteer_policies[] = {
	{ "passthrough", "every request to the first leg", BSTEER_POL_PASSTHROUGH,
	  passthrough_bpf__elf_bytes, NULL, 1, 1, replica_size, 0 },
	{ "mirror", "writes to every healthy leg; reads from the first",
	  BSTEER_POL_MIRROR, mirror_bpf__elf_bytes, mirror_keys, 1,
	  BSTEER_DEC_OPS, replica_size, 0 },
	{ "mirror_rr", "mirror; reads round-robin over the healthy legs",
	  BSTEER_POL_MIRROR_RR, mirror_rr_bpf__elf_bytes, mirror_keys, 1,
	  BSTEER_DEC_OPS, replica_size, 0 },
	{ "mirror_lif", "mirror; reads to the leg with the fewest ops out",
	  BSTEER_POL_MIRROR_LIF, mirror_lif_bpf__elf_bytes, mirror_keys, 1,
	  BSTEER_DEC_OPS, replica_size, 0 },
	{ "stripe", "chunks dealt round the legs (RAID 0)", BSTEER_POL_STRIPE,
	  stripe_bpf__elf_bytes, stripe_keys, 1, BSTEER_MAX_TARGETS,
	  stripe_size, 0 },
	{ "redirect", "a range table maps the export onto legs (dm-linear)",
	  BSTEER_POL_REDIRECT, redirect_bpf__elf_bytes, NULL, 1,
	  BSTEER_MAX_TARGETS, replica_size, BSTEER_PF_TABLE },
	{ "cow", "read-only base (leg 0) under a copy-on-write overlay (leg 1)",
	  BSTEER_POL_COW, cow_bpf__elf_bytes, cow_keys, 2, 2, cow_size,
	  BSTEER_PF_BASE_RDONLY | BSTEER_PF_NO_ZEROES },
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

const struct bsteer_cfg_key *bsteer_cfg_key_find(const struct bsteer_policy_desc *d,
						 const char *key)
{
	const struct bsteer_cfg_key *k;

	for (k = d ? d->keys : NULL; k && k->name; k++)
		if (!strcmp(k->name, key))
			return k;
	return NULL;
}

int bsteer_cfg_parse(const struct bsteer_cfg_key *k, const char *val, __u64 *out)
{
	char list[128] = "";
	__u32 i;

	switch (k->kind) {
	case BSTEER_CFG_ENUM:
		for (i = 0; k->names[i]; i++) {
			if (!strcmp(k->names[i], val)) {
				*out = i;
				return 0;
			}
			snprintf(list + strlen(list), sizeof(list) - strlen(list),
				 "%s%s", i ? ", " : "", k->names[i]);
		}
		bsteer_set_err("%s: '%s' is not one of %s", k->name, val, list);
		return -EINVAL;
	case BSTEER_CFG_SIZE:
		if (bsteer_parse_size(val, out) || !*out || *out % 4096 ||
		    *out > (1ull << 30)) {
			bsteer_set_err("%s: '%s' is not a multiple of 4096 up to 1G",
				       k->name, val);
			return -EINVAL;
		}
		return 0;
	default:
		if (bsteer_parse_size(val, out)) {
			bsteer_set_err("%s: '%s' is not a number", k->name, val);
			return -EINVAL;
		}
		return 0;
	}
}

void bsteer_cfg_format(const struct bsteer_cfg_key *k, __u64 v, char *out,
		       size_t len)
{
	__u32 n = 0;

	if (k->kind == BSTEER_CFG_ENUM) {
		while (k->names[n])
			n++;
		snprintf(out, len, "%s", v < n ? k->names[v] : "?");
	} else {
		snprintf(out, len, "%llu", (unsigned long long)v);
	}
}

/* The layout an object declares with BSTEER_LAYOUT(), from its ELF. */
static int elf_layout(Elf *elf, char *out, size_t len)
{
	size_t shstrndx;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;

	*out = 0;
	if (elf_getshdrstrndx(elf, &shstrndx))
		return -EINVAL;
	while ((scn = elf_nextscn(elf, scn))) {
		const char *name;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh))
			continue;
		name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name || strcmp(name, ".rodata.bsteer_layout"))
			continue;
		data = elf_getdata(scn, NULL);
		if (!data || !data->d_size)
			return -EINVAL;
		snprintf(out, len, "%.*s", (int)data->d_size,
			 (const char *)data->d_buf);
		return 0;
	}
	return 0;
}

int bsteer_policy_layout(const char *spec, char *out, size_t len)
{
	const struct bsteer_policy_desc *d = bsteer_policy_find(spec);
	Elf *elf;
	int fd = -1, err;

	elf_version(EV_CURRENT);
	if (d) {
		size_t sz;
		const void *bytes = d->elf_bytes(&sz);

		elf = elf_memory((char *)bytes, sz);
	} else {
		fd = open(spec, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		elf = elf_begin(fd, ELF_C_READ, NULL);
	}
	if (!elf) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	err = elf_layout(elf, out, len);
	elf_end(elf);
	if (fd >= 0)
		close(fd);
	return err;
}

void bsteer_layout_norm(char *layout, size_t len, __u32 legs)
{
	/* With one leg, keeping every leg equal is keeping the one leg. */
	if (legs <= 1 && !strcmp(layout, "replica"))
		snprintf(layout, len, "linear");
}

/* "START+LEN@LEG:TOFF", sizes with optional K/M/G. */
int bsteer_range_parse(const char *s, struct bsteer_range *r)
{
	char buf[128], *plus, *at, *colon;
	__u64 leg;

	memset(r, 0, sizeof(*r));
	if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
		goto bad;
	plus = strchr(buf, '+');
	at = strchr(buf, '@');
	colon = strchr(buf, ':');
	if (!plus || !at || !colon || !(plus < at && at < colon))
		goto bad;
	*plus++ = 0;
	*at++ = 0;
	*colon++ = 0;
	if (bsteer_parse_size(buf, &r->start) || bsteer_parse_size(plus, &r->len) ||
	    bsteer_parse_size(at, &leg) || bsteer_parse_size(colon, &r->toff) ||
	    !r->len || leg >= BSTEER_MAX_TARGETS || r->start + r->len < r->start)
		goto bad;
	r->leg = leg;
	return 0;
bad:
	bsteer_set_err("bad range '%s' (want START+LEN@LEG:OFFSET, e.g. 0+64M@1:0)", s);
	return -EINVAL;
}

void bsteer_range_format(const struct bsteer_range *r, char *out, size_t len)
{
	snprintf(out, len, "%llu+%llu@%u:%llu", (unsigned long long)r->start,
		 (unsigned long long)r->len, r->leg, (unsigned long long)r->toff);
}

/* Entries of the redirect table, which are dense from key 0. */
__u32 bsteer_table_count(int fd)
{
	struct bsteer_range r;
	__u32 n;

	for (n = 0; n < BSTEER_REDIRECT_MAX; n++)
		if (bpf_map_lookup_elem(fd, &n, &r))
			break;
	return n;
}

static int table_set(int fd, const char *idx, const char *val)
{
	struct bsteer_range r;
	__u32 n = bsteer_table_count(fd), last;
	__u64 k;
	int err;

	if (bsteer_parse_size(idx, &k) || k > n || k >= BSTEER_REDIRECT_MAX) {
		bsteer_set_err("map.%s: entries are numbered 0..%u (dense; %u is next)",
			       idx, n ? n - 1 : 0, n);
		return -EINVAL;
	}
	if (strcmp(val, "-")) {
		err = bsteer_range_parse(val, &r);
		if (err)
			return err;
		return bpf_map_update_elem(fd, &(__u32){ k }, &r, BPF_ANY) ? -errno : 0;
	}
	if (k == n) {
		bsteer_set_err("map.%s: no such entry", idx);
		return -ENOENT;
	}
	/* Keep the table dense: the last entry moves into the hole first. */
	last = n - 1;
	if (k != last) {
		if (bpf_map_lookup_elem(fd, &last, &r) ||
		    bpf_map_update_elem(fd, &(__u32){ k }, &r, BPF_ANY))
			return -errno;
	}
	return bpf_map_delete_elem(fd, &last) ? -errno : 0;
}

int bsteer_policy_setting(const struct bsteer_policy_desc *d,
			  struct bsteer_cfg *cfg, int table_fd, const char *kv,
			  bool live)
{
	char key[64];
	const char *eq = strchr(kv, '=');
	const struct bsteer_cfg_key *k;
	__u64 v;
	int err;

	if (!eq || eq == kv || eq - kv >= (int)sizeof(key)) {
		bsteer_set_err("bad setting '%s' (want KEY=VALUE)", kv);
		return -EINVAL;
	}
	snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
	eq++;
	if (!strncmp(key, "map.", 4)) {
		if (table_fd < 0) {
			bsteer_set_err("%s: this policy has no range table", key);
			return -EINVAL;
		}
		return table_set(table_fd, key + 4, eq);
	}
	if (!strncmp(key, "word.", 5)) {
		if (bsteer_parse_size(key + 5, &v) || v >= BSTEER_CFG_WORDS) {
			bsteer_set_err("%s: words are 0..%d", key, BSTEER_CFG_WORDS - 1);
			return -EINVAL;
		}
		{
			__u64 val;

			if (bsteer_parse_size(eq, &val)) {
				bsteer_set_err("%s: '%s' is not a number", key, eq);
				return -EINVAL;
			}
			__atomic_store_n(&cfg->word[v], val, __ATOMIC_RELEASE);
		}
		return 0;
	}
	k = bsteer_cfg_key_find(d, key);
	if (!k) {
		bsteer_set_err("policy %s has no setting '%s'%s", d ? d->name : "(unknown)",
			       key, d && d->keys ? "" : " (it has none; word.N=V sets raw words)");
		return -EINVAL;
	}
	err = bsteer_cfg_parse(k, eq, &v);
	if (err)
		return err;
	if (live && k->fixed && cfg->word[k->word] != v) {
		bsteer_set_err("%s is part of the data layout (now %llu); it is set when the export starts",
			       key, (unsigned long long)cfg->word[k->word]);
		return -EPERM;
	}
	__atomic_store_n(&cfg->word[k->word], v, __ATOMIC_RELEASE);
	return 0;
}
