// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The copy job (bsteer copy): each chunk of the source is read into a
 * leased slot by the job's own op, and the policy, at the completion hook,
 * fans it out to the targets from that one slot. A source with no size (a
 * pipe) is read in order until EOF, one chunk at a time.
 */
#include <errno.h>
#include <stdio.h>
#include "libbsteer.h"

static void chunk_done(void *arg, __u32 r, int err)
{
	struct bsteer_copy *c = arg;
	struct bsteer_req *rq = &c->in->reqs[r];

	if (rq->type == BSTEER_REQ_FLUSH) {
		c->flushed = true;
		if (err && !c->error)
			c->error = err;
		return;
	}
	if (err) {
		if (!c->error)
			c->error = err;
		return;
	}
	c->done_bytes += rq->len;
}

/* Is the outstanding stream read finished, and did it hit EOF? */
static void stream_check(struct bsteer_copy *c)
{
	struct bsteer_req *rq;
	struct bsteer_req_op *o;
	bool reading = false;
	int i;

	if (!c->stream_busy)
		return;
	rq = &c->in->reqs[c->stream_req];
	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		o = &rq->ops[i];
		if (rq->state == BSTEER_RQ_ACTIVE &&
		    o->state == BSTEER_OPS_INFLIGHT &&
		    (o->flags & BSTEER_OPF_FRONTEND))
			reading = true;
	}
	if (reading)
		return;
	c->stream_busy = false;
	if (rq->len < c->slot_size)
		c->eof = true;
}

static int start_chunk(struct bsteer_copy *c)
{
	__u32 r, slot, len;
	__u64 off;
	int err;

	len = c->slot_size;
	if (!c->stream && c->size - c->next_off < len)
		len = c->size - c->next_off;
	err = bsteer_req_alloc(c->e, c->owner, BSTEER_REQ_WRITE, c->next_off, len, &r);
	if (err)
		return err;
	err = bsteer_slot_lease(c->e, r, &slot);
	if (err) {
		/* Give the request back; its record was never used. */
		bsteer_req_abandon(c->e, r);
		return err;
	}
	off = c->stream ? BSTEER_OFF_STREAM : c->next_off;
	err = bsteer_frontend_op(c->e, r, BSTEER_OP_READ,
				 BSTEER_FRONTEND_FILE(0), slot, len, off);
	if (err)
		return err;
	c->next_off += len;
	if (c->stream) {
		c->stream_req = r;
		c->stream_busy = true;
	}
	return 0;
}

static bool more_to_read(struct bsteer_copy *c)
{
	if (c->error || *c->stop)
		return false;
	if (c->stream)
		return !c->eof && !c->stream_busy;
	return c->next_off < c->size;
}

static void progress(struct bsteer_copy *c, bool final)
{
	__u64 now = bsteer_now_ns();

	if (!c->progress || (!final && now - c->t_last < 250000000ull))
		return;
	c->t_last = now;
	c->progress(c, final);
}

int bsteer_copy_run(struct bsteer_copy *c, bool fsync_end)
{
	static const struct bsteer_owner_ops owner = { .complete = chunk_done };
	int err = 0;

	c->owner = bsteer_engine_owner(c->e, &owner, c);
	if (c->owner < 0)
		return c->owner;
	c->t0 = c->t_last = bsteer_now_ns();

	while (1) {
		while (more_to_read(c) && bsteer_slots_free(c->e) &&
		       bsteer_reqs_free(c->e) > 1) {
			err = start_chunk(c);
			if (err == -ENOBUFS)
				break;	/* a slot's last completion is unreaped */
			if (err)
				return err;
		}
		if (!bsteer_engine_busy(c->e)) {
			/*
			 * Nothing in flight and nothing could start: slots or
			 * requests were lost (a broken policy). Stop, loudly.
			 */
			if (more_to_read(c)) {
				bsteer_set_err("stalled: %u slots and %u requests free, nothing in flight",
					       bsteer_slots_free(c->e),
					       bsteer_reqs_free(c->e));
				c->stalled = true;
				c->error = -EIO;
			}
			break;
		}
		err = bsteer_engine_run(c->e, 1);
		if (err && err != -EINTR)
			return err;
		stream_check(c);
		progress(c, false);
	}
	if (fsync_end && !c->error && !*c->stop) {
		__u32 r;

		err = bsteer_req_alloc(c->e, c->owner, BSTEER_REQ_FLUSH, 0, 0, &r);
		if (!err)
			err = bsteer_frontend_op(c->e, r, BSTEER_OP_NOP, 0,
						 BSTEER_NO_SLOT, 0, 0);
		while (!err && bsteer_engine_busy(c->e))
			err = bsteer_engine_run(c->e, 1);
		if (err == -EINTR)
			err = 0;
	}
	progress(c, true);
	return err;
}

