// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The instance: loads the core programs, sizes and pins the maps under
 * /sys/fs/bpf/bsteer/<name>/, maps them into memory, installs the
 * frontends' parsers and the policy.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "core/engine.h"
#include "core.skel.h"

static int size_maps(struct core_bpf *skel, const struct bsteer_instance_opts *o)
{
	struct {
		struct bpf_map *map;
		__u32 entries;
	} sz[] = {
		{ skel->maps.slots, o->nslots },
		{ skel->maps.slot_meta, o->nslots },
		{ skel->maps.slot_free, o->nslots },
		{ skel->maps.reqs, o->nreqs },
		{ skel->maps.decisions, o->nreqs * BSTEER_REQ_OPS },
		{ skel->maps.fe_hdr, o->nrings * BSTEER_HDR_CONNS },
		{ skel->maps.fe_req, o->nrings * BSTEER_HDR_CONNS },
	};
	size_t i;
	int err;

	err = bpf_map__set_value_size(skel->maps.slots,
				      o->slot_size + BSTEER_SLOT_HEADROOM);
	for (i = 0; !err && i < sizeof(sz) / sizeof(sz[0]); i++)
		err = bpf_map__set_max_entries(sz[i].map, sz[i].entries);
	return err;
}

static void unpin_all(struct bsteer_instance *in)
{
	if (in->pinned)
		rm_tree(in->dir);
	in->pinned = false;
}

void bsteer_instance_close(struct bsteer_instance *in)
{
	int i;

	if (!in)
		return;
	ring_buffer__free(in->events);
	for (i = 0; i < BSTEER_FRONTEND_IDS; i++)
		if (in->parser_sys_fd[i] > 0)
			close(in->parser_sys_fd[i]);
	for (i = 0; i < BSTEER_MAP__MAX; i++)
		if (in->map_mem[i])
			munmap(in->map_mem[i], in->map_len[i]);
	unpin_all(in);
	core_bpf__destroy(in->skel);
	free(in);
}

static int attach_hooks(struct bsteer_instance *in, bool complete_hook)
{
	struct core_bpf *s = in->skel;

	s->links.bsteer_ring_create =
		bpf_program__attach(s->progs.bsteer_ring_create);
	if (!s->links.bsteer_ring_create)
		return -errno;
	s->links.bsteer_issue = bpf_program__attach(s->progs.bsteer_issue);
	if (!s->links.bsteer_issue)
		return -errno;
	if (!complete_hook)
		return 0;
	s->links.bsteer_complete = bpf_program__attach(s->progs.bsteer_complete);
	if (!s->links.bsteer_complete)
		return -errno;
	return 0;
}

static int check_opts(const struct bsteer_instance_opts *o)
{
	if (!bsteer_name_valid(o->name)) {
		bsteer_set_err("invalid instance name '%s': use 1-%d of [A-Za-z0-9._-]",
			       o->name, BSTEER_NAME_MAX);
		return -EINVAL;
	}
	if (!o->nslots || o->nslots > BSTEER_MAX_SLOTS || !o->nrings ||
	    o->nrings > BSTEER_MAX_RINGS || o->nslots < o->nrings ||
	    !o->nreqs || o->nreqs > BSTEER_MAX_REQS || o->nreqs < o->nrings ||
	    o->ntargets > BSTEER_MAX_TARGETS) {
		bsteer_set_err("bad sizes: slots %u (1..%u), rings %u, requests %u, targets %u",
			       o->nslots, BSTEER_MAX_SLOTS, o->nrings, o->nreqs,
			       o->ntargets);
		return -EINVAL;
	}
	/* The kernel lays array values out 8-byte aligned: so must slots be. */
	if (!o->slot_size || o->slot_size % 8) {
		bsteer_set_err("bad slot size %u (a positive multiple of 8)", o->slot_size);
		return -EINVAL;
	}
	return 0;
}

/* The pin directory: ours to create, or a dead owner's to replace. */
static int claim_dir(struct bsteer_instance *in)
{
	int err, pid;

	err = bsteer_ensure_bpffs();
	if (err)
		return err;
	if (mkdir(BSTEER_PIN_ROOT, 0700) && errno != EEXIST) {
		err = -errno;
		bsteer_set_err("cannot create %s: %s", BSTEER_PIN_ROOT,
			       strerror(errno));
		return err;
	}
	if (!access(in->dir, F_OK)) {
		pid = pin_owner_alive(in->dir);
		if (pid) {
			bsteer_set_err("instance '%s' is in use by pid %d (pins at %s)",
				       in->name, pid, in->dir);
			return -EBUSY;
		}
		/* Left behind by a process that died: replace it. */
		bsteer_access_detach_stale(in->dir, in->note, sizeof(in->note));
		rm_tree(in->dir);
	}
	return 0;
}

static int load_core(struct bsteer_instance *in, const struct bsteer_instance_opts *o)
{
	int err;

	in->skel = core_bpf__open();
	if (!in->skel) {
		err = -errno;
		bsteer_set_err("failed to open the core BPF object: %s",
			       strerror(-err));
		return err;
	}
	err = size_maps(in->skel, o);
	if (err) {
		bsteer_set_err("failed to size the maps: %s", strerror(-err));
		return err;
	}
	err = core_bpf__load(in->skel);
	if (err) {
		bsteer_set_err("failed to load the core BPF programs: %s (%s)",
			       strerror(-err), bsteer_errbuf());
		return err;
	}
	err = attach_hooks(in, !o->no_complete_hook);
	if (err)
		bsteer_set_err("failed to attach the io_uring hooks: %s",
			       strerror(-err));
	return err;
}

/* Pin every core map under the instance's directory, and map the mmapable. */
/*
 * The maps are pinned in a staging directory, +PID+NAME (not a valid
 * instance name, so list and clean pass over it; bpffs refuses dots), and
 * moved to NAME once "info" says whose they are:
 * a directory under NAME without an owner would look dead to a
 * `bsteer clean` run meanwhile, which would remove a starting server's
 * pins.
 */
static int pin_maps(struct bsteer_instance *in)
{
	char path[PATH_MAX];
	int err, i;

	snprintf(in->dir, sizeof(in->dir), "%s/+%d+%s", BSTEER_PIN_ROOT, getpid(), in->name);
	rm_tree(in->dir);	/* a staging directory this PID's forebear left */
	if (mkdir(in->dir, 0700)) {
		err = -errno;
		bsteer_set_err("cannot create %s: %s", in->dir, strerror(errno));
		return err;
	}
	in->pinned = true;
	snprintf(path, sizeof(path), "%s/progs", in->dir);
	mkdir(path, 0700);
	for (i = 0; i < BSTEER_MAP__MAX; i++) {
		struct bpf_map *m;

		m = bpf_object__find_map_by_name(in->skel->obj, bsteer_map_names[i]);
		if (!m) {
			bsteer_set_err("core object has no map '%s'",
				       bsteer_map_names[i]);
			return -ENOENT;
		}
		in->map_fd[i] = bpf_map__fd(m);
		snprintf(path, sizeof(path), "%s/%s", in->dir, bsteer_map_names[i]);
		err = bpf_map__pin(m, path);
		if (err) {
			bsteer_set_err("failed to pin map %s at %s: %s",
				       bsteer_map_names[i], path, strerror(-err));
			return err;
		}
		if (!(bpf_map__map_flags(m) & BPF_F_MMAPABLE))
			continue;
		in->map_mem[i] = bsteer_map_mmap(in->map_fd[i], &in->map_len[i], true);
		if (!in->map_mem[i]) {
			err = -errno ?: -EINVAL;
			bsteer_set_err("failed to map %s into memory: %s",
				       bsteer_map_names[i], strerror(-err));
			return err;
		}
	}
	in->pool = in->map_mem[BSTEER_MAP_SLOTS];
	in->meta = in->map_mem[BSTEER_MAP_SLOT_META];
	in->freelist = in->map_mem[BSTEER_MAP_SLOT_FREE];
	in->reqs = in->map_mem[BSTEER_MAP_REQS];
	in->decs = in->map_mem[BSTEER_MAP_DECISIONS];
	in->targets = in->map_mem[BSTEER_MAP_TARGETS];
	in->rings = in->map_mem[BSTEER_MAP_RINGS];
	in->stats = in->map_mem[BSTEER_MAP_STATS];
	in->policy_stats = in->map_mem[BSTEER_MAP_POLICY_STATS];
	in->batch = in->map_mem[BSTEER_MAP_BATCH];
	in->cfg = in->map_mem[BSTEER_MAP_CFG];
	in->info = in->map_mem[BSTEER_MAP_INFO];
	in->fe_hdr = in->map_mem[BSTEER_MAP_FE_HDR];
	in->fe_req = in->map_mem[BSTEER_MAP_FE_REQ];
	in->fe_stats = in->map_mem[BSTEER_MAP_FE_STATS];
	return 0;
}

/* The staged pins, owned: under the instance's own name. */
static int publish(struct bsteer_instance *in)
{
	char dir[sizeof(in->dir)];
	int err;

	snprintf(dir, sizeof(dir), "%s/%s", BSTEER_PIN_ROOT, in->name);
	if (rename(in->dir, dir)) {
		err = -errno;
		if (errno == ENOTEMPTY || errno == EEXIST)
			bsteer_set_err("instance '%s' was claimed by another process meanwhile (pins at %s)",
				       in->name, dir);
		else
			bsteer_set_err("cannot move %s to %s: %s", in->dir, dir, strerror(errno));
		return err;
	}
	snprintf(in->dir, sizeof(in->dir), "%s", dir);
	return 0;
}

/* Who owns the pins, and what they hold: map "info". */
static void write_info(struct bsteer_instance *in, const struct bsteer_instance_opts *o)
{
	struct bsteer_info *inf = in->info;

	in->cfg->ntargets = o->ntargets;
	inf->abi = BSTEER_ABI_VERSION;
	inf->pid = getpid();
	bsteer_proc_start_time(getpid(), &inf->start_time);
	inf->nslots = o->nslots;
	inf->slot_size = o->slot_size;
	inf->nrings = o->nrings;
	inf->frontends = o->frontends;
	snprintf(inf->kind, sizeof(inf->kind), "%s", o->kind ? o->kind : "");
	inf->legs = o->legs ? o->legs : o->ntargets;
	if (o->policy) {
		bsteer_policy_layout(o->policy, inf->layout, sizeof(inf->layout));
		bsteer_layout_norm(inf->layout, sizeof(inf->layout), inf->legs);
	}
}

struct bsteer_instance *bsteer_instance_open(const struct bsteer_instance_opts *o,
					     int *errp)
{
	struct bsteer_instance *in;
	int err, i;

	bsteer_libbpf_setup(o->verbose);
	err = check_opts(o);
	if (err) {
		*errp = err;
		return NULL;
	}
	in = calloc(1, sizeof(*in));
	if (!in) {
		*errp = -ENOMEM;
		return NULL;
	}
	for (i = 0; i < BSTEER_MAP__MAX; i++)
		in->map_fd[i] = -1;
	snprintf(in->name, sizeof(in->name), "%s", o->name);
	snprintf(in->dir, sizeof(in->dir), "%s/%s", BSTEER_PIN_ROOT, o->name);
	in->nslots = o->nslots;
	in->slot_size = o->slot_size;
	in->nrings = o->nrings;
	in->nreqs = o->nreqs;

	err = claim_dir(in);
	if (!err)
		err = load_core(in, o);
	if (!err)
		err = pin_maps(in);
	if (err)
		goto fail;
	write_info(in, o);
	err = publish(in);
	if (!err)
		err = parsers_install(in, o->frontends);
	if (!err && o->policy)
		err = bsteer_policy_install(in->dir, in->map_fd, o->policy,
					    o->verbose);
	if (err)
		goto fail;
	*errp = 0;
	return in;
fail:
	bsteer_instance_close(in);
	*errp = err ?: -EINVAL;
	return NULL;
}
