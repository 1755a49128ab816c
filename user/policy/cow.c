// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The cow policy's userspace half: the overlay leg made and grown to the
 * base, and the chunk bitmap (policy/cowmap.c) that says which chunks the
 * overlay holds, loaded into the pinned map "cow_bitmap" that
 * bpf/policy/cow.bpf.c reads and sets, and made stable on every FLUSH and
 * FUA write (what those promise covers the bitmap too).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "policy/policy.h"
#include "policy/cowmap.h"

struct cow {
	const char *path;	/* cowmap=PATH, or NULL: beside the overlay */
	struct cowmap map;
	bool open;
};

static struct cow *cow_of(struct bsteer_policy_run *p)
{
	struct cow *c = p->priv;

	if (!c && (c = p->priv = calloc(1, sizeof(*c))))
		c->map.fd = -1;
	return c;
}

int cow_option(struct bsteer_policy_run *p, const struct bsteer_export *ex,
	       const char *kv)
{
	struct cow *c;

	(void)ex;
	if (strncmp(kv, "cowmap=", 7))
		return -ENOENT;
	c = cow_of(p);
	if (!c)
		return -ENOMEM;
	c->path = kv + 7;
	return 0;
}

/* Before the legs open: the chunk fits the slots; a new overlay is made. */
int cow_legs_prepare(struct bsteer_policy_run *p, struct bsteer_export *ex)
{
	const char *overlay = ex->leg[1].spec;
	int fd;

	if (p->cfg.word[0] * 4 > p->slot_size) {
		bsteer_set_err("policy %s: chunk %llu is more than a quarter of the slot size %u",
			       p->name, (unsigned long long)p->cfg.word[0],
			       p->slot_size);
		return -EINVAL;
	}
	if (!strstr(overlay, "://") && access(overlay, F_OK) && errno == ENOENT) {
		/* A new overlay: an empty file, grown once the base is open. */
		fd = open(overlay, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

/* A new (or short) overlay grows to the base, sparsely. */
int cow_legs_opened(struct bsteer_policy_run *p, struct bsteer_export *ex,
		    __u64 *sizes)
{
	(void)p;
	if (sizes[1] >= sizes[0])
		return 0;
	if (ftruncate(ex->leg[1].fd, sizes[0])) {
		bsteer_set_err("export '%s': overlay %s is smaller than the base and cannot grow: %s",
			       ex->name, ex->leg[1].spec, strerror(errno));
		return -errno;
	}
	sizes[1] = sizes[0];
	return 0;
}

/* The pinned bitmap's memory, at least @words long. */
static __u64 *bitmap_map(struct bsteer_instance *in, __u64 words, size_t *len)
{
	char path[PATH_MAX + 16];
	__u64 *bits = NULL;
	int fd;

	snprintf(path, sizeof(path), "%s/cow_bitmap", in->dir);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		bits = bsteer_map_mmap(fd, len, true);
		close(fd);
	}
	if (!bits || *len < words * 8) {
		bsteer_set_err("cannot map the cow bitmap (%llu chunks; at most %zu)",
			       (unsigned long long)words * 64, bits ? *len * 8 : 0);
		return NULL;
	}
	return bits;
}

int cow_setup(struct bsteer_policy_run *p, struct bsteer_instance *in,
	      struct bsteer_export *exports, int nexports)
{
	struct bsteer_export *ex = &exports[0];
	struct cow *c = cow_of(p);
	char path[PATH_MAX];
	__u64 *bits;
	size_t len;
	int err;

	if (!c)
		return -ENOMEM;
	if (nexports != 1) {
		bsteer_set_err("policy %s serves one export per instance", p->name);
		return -EINVAL;
	}
	if (c->path)
		snprintf(path, sizeof(path), "%s", c->path);
	else if (strstr(ex->leg[1].spec, "://"))
		return bsteer_set_err("a remote overlay needs cowmap=PATH for its bitmap"),
		       -EINVAL;
	else
		cowmap_path(ex->leg[1].spec, path, sizeof(path));
	err = cowmap_open(&c->map, path, p->cfg.word[0], ex->size);
	if (err)
		return err;
	c->open = true;
	bits = bitmap_map(in, c->map.nwords, &len);
	if (!bits)
		return -EINVAL;
	cowmap_attach(&c->map, bits);
	/* The overlay's own chunk size wins over the default. */
	in->cfg->word[0] = c->map.chunk;
	in->cfg->word[1] = ex->size;
	in->cfg->word[2] = in->slot_size;
	ex->part_max = in->slot_size - 2 * c->map.chunk;
	return 0;
}

int cow_sync(struct bsteer_policy_run *p)
{
	struct cow *c = p->priv;

	if (!c || !c->open || !cowmap_sync(&c->map))
		return 0;
	bsteer_set_err("cannot save the cow bitmap %s", c->map.path);
	return -EIO;
}

void cow_close(struct bsteer_policy_run *p)
{
	struct cow *c = p->priv;

	if (!c)
		return;
	if (c->open)
		cowmap_close(&c->map);
	free(c);
	p->priv = NULL;
}
