// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Policy settings: configuration words by name (map "cfg"), and the data
 * layout a policy object declares (BSTEER_LAYOUT()).
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "libbsteer.h"

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

int bsteer_policy_setting(const struct bsteer_policy_desc *d,
			  struct bsteer_cfg *cfg, const char *kv, bool live)
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
