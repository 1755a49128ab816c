// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * cow: a read-only base (leg 0) under a writable overlay (leg 1) of the
 * same size, at the same offsets, tracked per chunk of cfg word 0 bytes
 * (default 64 KiB) in the pinned bitmap "cow_bitmap": a set bit means the
 * chunk's current bytes are in the overlay. Reads are steered chunk run by
 * chunk run. A write lands in the overlay; where it covers a chunk that is
 * not there yet only in part, the rest of that chunk is first read from
 * the base into the spare end of the request's own slot and written with
 * it, so the chunk is whole in the overlay before its bit is set. No byte
 * goes through userspace.
 *
 * Chunks being filled are locked in "cow_busy"; a write that finds one of
 * its chunks locked waits (BSTEER_OP_WAIT) and tries again. TRIM is a
 * no-op (allowed by NBD); WRITE_ZEROES is not offered.
 *
 * cfg: word 0 chunk bytes, word 1 export size, word 2 slot size.
 * Request scratch: pstate[0] = phase | COW_LOCKED | waits << 16.
 */
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
BSTEER_LAYOUT("cow");

#define COW_DEF_CHUNK	(64 * 1024)
#define COW_WORDS	(1u << 18)	/* 16M chunks: 1 TiB at 64 KiB */
#define COW_MAX_RUN	64		/* chunks one read piece may span */
#define COW_LOCK_WORDS	32		/* bitmap words one write may span */

enum { COW_NEW = 0, COW_FILLING = 1, COW_WRITING = 2 };
#define COW_PHASE	0xffull
#define COW_LOCKED	0x100ull

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, COW_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} cow_bitmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COW_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} cow_busy SEC(".maps");

static __always_inline __u64 cow_chunk(struct bsteer_pctx *p)
{
	return p->cfg->word[0] ?: COW_DEF_CHUNK;
}

static __always_inline int cow_present(__u64 c)
{
	__u32 w = c / 64;
	__u64 *v = bpf_map_lookup_elem(&cow_bitmap, &w);

	return v && (*v >> (c % 64)) & 1;
}

/* The bits of chunks [c0, c1] that fall in bitmap word @w. */
static __always_inline __u64 cow_mask(__u64 c0, __u64 c1, __u32 w)
{
	__u64 lo = (__u64)w * 64, hi = lo + 63;
	__u64 a = c0 > lo ? c0 : lo, b = c1 < hi ? c1 : hi;

	if (a > b)
		return 0;
	if (b - a == 63)
		return ~0ull;
	return ((1ull << (b - a + 1)) - 1) << (a - lo);
}

static __always_inline void cow_chunks(struct bsteer_pctx *p, __u64 *c0,
				       __u64 *c1)
{
	__u64 chunk = cow_chunk(p);

	*c0 = p->req->offset / chunk;
	*c1 = (p->req->offset + p->req->len - 1) / chunk;
}

/* Set (or clear) the bits of the request's chunks in @map. */
static __always_inline void cow_bits(struct bsteer_pctx *p, void *map, bool set)
{
	__u64 c0, c1, *v;
	__u32 i, w;

	cow_chunks(p, &c0, &c1);
	for (i = 0; i < COW_LOCK_WORDS; i++) {
		w = c0 / 64 + i;
		if (w > c1 / 64)
			break;
		v = bpf_map_lookup_elem(map, &w);
		if (!v)
			continue;
		if (set)
			__sync_fetch_and_or(v, cow_mask(c0, c1, w));
		else
			__sync_fetch_and_and(v, ~cow_mask(c0, c1, w));
	}
}

/* Unlock every chunk of the request (a present chunk's bit is moot). */
static __always_inline void cow_unlock(struct bsteer_pctx *p)
{
	if (!(p->req->pstate[0] & COW_LOCKED))
		return;
	p->req->pstate[0] &= ~COW_LOCKED;
	cow_bits(p, &cow_busy, false);
}

/*
 * Lock the request's chunks that are not in the overlay, all or none.
 * Returns 0, -EAGAIN if another request holds one, -EIO out of range.
 */
static __always_inline int cow_lock(struct bsteer_pctx *p)
{
	__u64 c0, c1, got[COW_LOCK_WORDS] = {}, *busy, *bits, m, old;
	__u32 i, j, w, taken = 0;
	int err = 0;

	cow_chunks(p, &c0, &c1);
	if (c1 / 64 - c0 / 64 >= COW_LOCK_WORDS)
		return -EIO;
	for (i = 0; i < COW_LOCK_WORDS; i++) {
		w = c0 / 64 + i;
		if (w > c1 / 64)
			break;
		busy = bpf_map_lookup_elem(&cow_busy, &w);
		bits = bpf_map_lookup_elem(&cow_bitmap, &w);
		if (!busy || !bits) {
			err = -EIO;
			break;
		}
		m = cow_mask(c0, c1, w) & ~*bits;
		old = __sync_fetch_and_or(busy, m);
		got[i] = m & ~old;
		taken = i + 1;
		if (old & m) {
			err = -EAGAIN;
			break;
		}
	}
	if (!err) {
		p->req->pstate[0] |= COW_LOCKED;
		return 0;
	}
	/*
	 * Someone else fills one of them: give back what we took. (Out of
	 * the loop above, so that the verifier walks the two loops one after
	 * the other, not one inside the other.)
	 */
	for (j = 0; j < COW_LOCK_WORDS && j < taken; j++) {
		w = c0 / 64 + j;
		busy = bpf_map_lookup_elem(&cow_busy, &w);
		if (busy)
			__sync_fetch_and_and(busy, ~got[j]);
	}
	return err;
}

struct cow_run {
	__u64 c, chunk, run, len;
	int in;
};

/* bpf_loop step i: chunk c + 1 + i extends the run, or ends it (1). */
static long cow_run_one(__u32 i, void *arg)
{
	struct cow_run *r = arg;

	if (r->run >= r->len || cow_present(r->c + 1 + i) != r->in)
		return 1;
	r->run += r->chunk;
	return 0;
}

/*
 * A read piece: a run of chunks that all live in the same leg. The run is
 * walked with bpf_loop, so the verifier checks one step instead of
 * COW_MAX_RUN of them for every piece of every decision.
 */
static __always_inline int cow_piece(struct bsteer_pctx *p, __u64 pos,
				     __u32 *target, __u64 *toff, __u32 *len)
{
	__u64 chunk = cow_chunk(p), at = p->req->offset + pos;
	__u64 c = at / chunk, run = (c + 1) * chunk - at;
	int in = cow_present(c);
	struct cow_run r = { .c = c, .chunk = chunk, .run = run, .len = *len,
			     .in = in };

	bpf_loop(COW_MAX_RUN - 1, cow_run_one, &r, 0);
	run = r.run;
	if (*len > run)
		*len = run;
	*target = bsteer_leg(p, in ? 1 : 0);
	*toff = at;
	return 0;
}

/*
 * Bytes of the base to copy up around the payload: before it in its first
 * chunk (@head) and after it in its last (@tail), for chunks not in the
 * overlay. Checked once the chunks are locked, so the answer holds.
 */
static __always_inline void cow_fill_span(struct bsteer_pctx *p, __u64 *head,
					  __u64 *tail)
{
	struct bsteer_req *rq = p->req;
	__u64 chunk = cow_chunk(p), size = p->cfg->word[1];
	__u64 end = rq->offset + rq->len, c0, c1, tend;

	cow_chunks(p, &c0, &c1);
	*head = *tail = 0;
	if (!cow_present(c0))
		*head = rq->offset - c0 * chunk;
	tend = (c1 + 1) * chunk;
	if (size && tend > size)
		tend = size;
	if (!cow_present(c1) && tend > end)
		*tail = tend - end;
}

static __always_inline void cow_write_start(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	__u64 head, tail, waits;
	__u32 base = bsteer_leg(p, 0), slot_size = p->cfg->word[2];
	int err;

	err = cow_lock(p);
	if (err == -EAGAIN) {
		waits = rq->pstate[0] >> 16;
		rq->pstate[0] += 1ull << 16;
		if (bsteer_wait(p, 20u << (waits < 10 ? waits : 10)))
			bsteer_note_error(p, -EIO);
		return;
	}
	if (err) {
		bsteer_note_error(p, err);
		return;
	}
	cow_fill_span(p, &head, &tail);
	if (slot_size && rq->len + head + tail > slot_size) {
		bsteer_note_error(p, -EIO);
		return;
	}
	rq->pstate[0] = (rq->pstate[0] & ~COW_PHASE) | COW_FILLING;
	if (head && bsteer_emit(p, BSTEER_OP_READ, base, rq->slot, rq->len,
				head, rq->offset - head))
		bsteer_note_error(p, -EIO);
	if (tail && bsteer_emit(p, BSTEER_OP_READ, base, rq->slot,
				rq->len + head, tail, rq->offset + rq->len))
		bsteer_note_error(p, -EIO);
}

/* The fill is in the slot (or none was needed): write it all out. */
static __always_inline void cow_write_out(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;
	__u32 ov = bsteer_leg(p, 1);
	__u64 head, tail;

	cow_fill_span(p, &head, &tail);
	rq->pstate[0] = (rq->pstate[0] & ~COW_PHASE) | COW_WRITING;
	bsteer_seal(p, rq->slot);
	if (head && bsteer_emit(p, BSTEER_OP_WRITE, ov, rq->slot, rq->len, head,
				rq->offset - head))
		bsteer_note_error(p, -EIO);
	if (bsteer_emit(p, BSTEER_OP_WRITE, ov, rq->slot, 0, rq->len, rq->offset))
		bsteer_note_error(p, -EIO);
	if (tail && bsteer_emit(p, BSTEER_OP_WRITE, ov, rq->slot, rq->len + head,
				tail, rq->offset + rq->len))
		bsteer_note_error(p, -EIO);
}

/* Every chunk the write touched is whole in the overlay now. */
static __always_inline void cow_mark(struct bsteer_pctx *p)
{
	cow_bits(p, &cow_bitmap, true);
}

static __always_inline void cow_write(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (p->res < 0) {
		if (bsteer_err_transient(p->res) && !bsteer_retry(p))
			return;
		bsteer_note_error(p, p->res);
	}
	if (rq->inflight || p->dec->nops)
		return;
	switch (rq->pstate[0] & COW_PHASE) {
	case COW_NEW:
		if (!rq->error && rq->len)
			cow_write_start(p);
		if (p->dec->nops || rq->error)
			return;
		/* fall through: nothing to fill */
	case COW_FILLING:
		if (!rq->error) {
			cow_write_out(p);
			return;
		}
		break;
	case COW_WRITING:
		if (!rq->error)
			cow_mark(p);
		break;
	}
}

static __always_inline void cow_decide(struct bsteer_pctx *p)
{
	struct bsteer_req *rq = p->req;

	if (bsteer_is_arrival(p) && p->res < 0) {
		bsteer_note_error(p, p->res);
	} else if (rq->type == BSTEER_REQ_WRITE) {
		cow_write(p);
	} else if (rq->type == BSTEER_REQ_READ) {
		if (p->res < 0) {
			if (bsteer_err_transient(p->res) && !bsteer_retry(p))
				return;
			bsteer_note_error(p, p->res);
			rq->pstate[0] = rq->len;
		} else if (!BSTEER_SPLIT_DONE(p)) {
			BSTEER_SPLIT(p, cow);
		}
	} else if (rq->type == BSTEER_REQ_FLUSH) {
		if (p->res < 0)
			bsteer_note_error(p, p->res);
		else if (bsteer_is_arrival(p) &&
			 bsteer_emit(p, BSTEER_OP_FSYNC, bsteer_leg(p, 1),
				     BSTEER_NO_SLOT, 0, 0, 0))
			bsteer_note_error(p, -EIO);
	} else if (rq->type != BSTEER_REQ_TRIM) {
		bsteer_note_error(p, -EOPNOTSUPP);
	}
	if (rq->inflight || p->dec->nops)
		return;
	if (rq->type == BSTEER_REQ_WRITE)
		cow_unlock(p);
	if (bsteer_fua_due(p) &&
	    !bsteer_emit(p, BSTEER_OP_FDATASYNC, bsteer_leg(p, 1),
			 BSTEER_NO_SLOT, 0, 0, 0))
		return;
	bsteer_join(p);
}

BSTEER_POLICY(cow, BSTEER_POL_COW)
