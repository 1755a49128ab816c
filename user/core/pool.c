// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The slot pool of one ring: leases, the free stack, and a slot's pipe.
 *
 * The free stack and slot_meta live in map memory that BPF (and so a
 * hostile policy) can write. Every index from there is checked against the
 * engine's partition, and every decision against its private lease record
 * (struct bsteer_slot_priv).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "core/engine.h"

void slot_push_free(struct bsteer_engine *e, __u32 slot)
{
	struct bsteer_ring *r = &e->in->rings[e->id];
	struct bsteer_slot *m = &e->in->meta[slot];

	if (sp(e, slot)->owned) {	/* back to its frontend, not the stack */
		sp(e, slot)->state = BSTEER_SLOT_OWNED;
		m->state = BSTEER_SLOT_OWNED;
		m->dir = 0;
		bsteer_stat_add(e->in, BSTEER_ST_SLOT_RELEASES, 1);
		return;
	}
	if (r->free_top >= e->slot_count) {
		fprintf(stderr, "bsteer: free stack of ring %u is corrupt (top %u of %u)\n",
			e->id, r->free_top, e->slot_count);
		return;
	}
	sp(e, slot)->state = BSTEER_SLOT_FREE;
	m->state = BSTEER_SLOT_FREE;
	m->dir = 0;
	e->in->freelist[e->slot_base + r->free_top++] = slot;
	bsteer_stat_add(e->in, BSTEER_ST_SLOT_RELEASES, 1);
}

/* A released slot's last op is done: hand a lent buffer back. */
void slot_returned(struct bsteer_engine *e, __u32 slot)
{
	struct bsteer_slot_priv *p = sp(e, slot);
	bsteer_release_fn fn = p->release;

	if (!fn)
		return;
	p->release = NULL;
	fn(p->release_arg, slot);
}

/* The top of the free stack, if it can go now. */
static int slot_pop(struct bsteer_engine *e, __u32 *slot)
{
	struct bsteer_ring *r = &e->in->rings[e->id];
	struct bsteer_slot_priv *p;
	__u32 s;

	if (!r->free_top || r->free_top > e->slot_count)
		return -ENOBUFS;
	s = e->in->freelist[e->slot_base + r->free_top - 1];
	if (!slot_mine(e, s))
		return -EUCLEAN;
	p = sp(e, s);
	/* Freed by BPF before we reaped its last completion: not yet. */
	if (p->state != BSTEER_SLOT_FREE || p->inflight)
		return -ENOBUFS;
	if (p->pipe_fill)	/* a reply that never went out */
		pipe_drain(p);
	r->free_top--;
	*slot = s;
	return 0;
}

/* Lease slot @s (popped, or owned and idle) to request @req. */
static void slot_lease_to(struct bsteer_engine *e, __u32 req, __u32 s,
			  bsteer_release_fn fn, void *arg)
{
	struct bsteer_slot_priv *p = sp(e, s);
	struct bsteer_slot *m = &e->in->meta[s];

	p->state = BSTEER_SLOT_LEASED;
	p->gen++;
	p->owner = req;
	p->dir = BSTEER_DIR_FILL;
	p->release = fn;
	p->release_arg = arg;
	m->state = BSTEER_SLOT_LEASED;
	m->gen = p->gen;
	m->owner = req;
	m->ring = e->id;
	m->dir = BSTEER_DIR_FILL;
	m->lease_ns = e->now_ns;
	e->in->reqs[req].slot = s;
	e->req_slot[req - e->req_base] = s;
	bsteer_stat_add(e->in, BSTEER_ST_SLOT_LEASES, 1);
}

int bsteer_slot_lend(struct bsteer_engine *e, __u32 req, bsteer_release_fn fn,
		     void *arg, __u32 *slot)
{
	int err = slot_pop(e, slot);

	if (!err)
		slot_lease_to(e, req, *slot, fn, arg);
	return err;
}

int bsteer_slot_own(struct bsteer_engine *e, __u32 *slot)
{
	int err = slot_pop(e, slot);
	struct bsteer_slot_priv *p;

	if (err)
		return err;
	p = sp(e, *slot);
	p->owned = true;
	p->state = BSTEER_SLOT_OWNED;
	e->in->meta[*slot].flags |= BSTEER_SLOTF_OWNED;
	e->in->meta[*slot].state = BSTEER_SLOT_OWNED;
	e->in->meta[*slot].ring = e->id;
	return 0;
}

int bsteer_slot_lease_owned(struct bsteer_engine *e, __u32 req, __u32 slot,
			    bsteer_release_fn fn, void *arg)
{
	if (!slot_mine(e, slot) || !sp(e, slot)->owned)
		return -EINVAL;
	if (sp(e, slot)->state != BSTEER_SLOT_OWNED || sp(e, slot)->inflight)
		return -EBUSY;
	slot_lease_to(e, req, slot, fn, arg);
	return 0;
}

int bsteer_slot_lease(struct bsteer_engine *e, __u32 req, __u32 *slot)
{
	return bsteer_slot_lend(e, req, NULL, NULL, slot);
}

/* The owner lets go. The slot returns now, or when its last op completes. */
void bsteer_slot_release(struct bsteer_engine *e, __u32 slot)
{
	struct bsteer_slot_priv *p;

	if (!slot_mine(e, slot))
		return;
	p = sp(e, slot);
	if (p->state != BSTEER_SLOT_LEASED)
		return;
	if (p->inflight) {
		p->state = BSTEER_SLOT_RELEASING;
		e->in->meta[slot].state = BSTEER_SLOT_RELEASING;
		return;
	}
	slot_push_free(e, slot);
	slot_returned(e, slot);
}

__u32 bsteer_slots_free(struct bsteer_engine *e)
{
	__u32 top = e->in->rings[e->id].free_top;

	return top > e->slot_count ? 0 : top;
}

/* Slots not free by the engine's own record (not the shared map's). */
__u32 bsteer_slots_leaked(struct bsteer_engine *e)
{
	__u32 i, n = 0;

	for (i = 0; i < e->slot_count; i++)
		n += e->slot[i].state != BSTEER_SLOT_FREE &&
		     e->slot[i].state != BSTEER_SLOT_OWNED;
	return n;
}

/* ---- spliced reads (see bsteer_engine_splice) ---- */

/* Empty a slot's pipe of data no reply took (an error, a cut stream). */
void pipe_drain(struct bsteer_slot_priv *p)
{
	char buf[16384];

	while (read(p->pipe[0], buf, sizeof(buf)) > 0)
		;
	p->pipe_fill = 0;
}

void pipes_close(struct bsteer_engine *e)
{
	__u32 i;

	e->splice_reads = false;
	for (i = 0; e->slot && i < e->slot_count; i++) {
		struct bsteer_slot_priv *p = &e->slot[i];

		if (p->pipe[0] >= 0)
			close(p->pipe[0]);
		if (p->pipe[1] >= 0)
			close(p->pipe[1]);
		p->pipe[0] = p->pipe[1] = -1;
		p->pipe_fill = 0;
	}
}

int bsteer_engine_splice(struct bsteer_engine *e)
{
	__u32 i, want = e->in->slot_size;
	int err;

	for (i = 0; i < e->slot_count; i++) {
		struct bsteer_slot_priv *p = &e->slot[i];

		/* Non-blocking: a drain, or a miscount, never waits here. */
		if (pipe2(p->pipe, O_NONBLOCK | O_CLOEXEC)) {
			err = -errno;
			p->pipe[0] = p->pipe[1] = -1;
			goto fail;
		}
		err = fcntl(p->pipe[1], F_SETPIPE_SZ, want);
		if (err < 0 || (__u32)err < want) {
			err = err < 0 ? -errno : -ENOSPC;
			goto fail;
		}
	}
	e->splice_reads = true;
	return 0;
fail:
	bsteer_set_err("cannot give slot %u a pipe of %u bytes: %s",
		       e->slot_base + i, want, strerror(-err));
	pipes_close(e);
	return err;
}

int bsteer_slot_pipe(struct bsteer_engine *e, __u32 slot, __u32 *len)
{
	struct bsteer_slot_priv *p;

	if (!slot_mine(e, slot))
		return -1;
	p = sp(e, slot);
	if (p->pipe[0] < 0 || !p->pipe_fill)
		return -1;
	*len = p->pipe_fill;
	return p->pipe[0];
}

void bsteer_slot_pipe_sent(struct bsteer_engine *e, __u32 slot, __u32 len)
{
	struct bsteer_slot_priv *p;

	if (!slot_mine(e, slot))
		return;
	p = sp(e, slot);
	p->pipe_fill -= len < p->pipe_fill ? len : p->pipe_fill;
}
