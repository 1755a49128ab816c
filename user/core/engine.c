// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The engine: one io_uring ring driven by one thread. It leases slots,
 * starts requests, reaps completions, and carries out the decisions the
 * policy wrote, after checking each one. It makes no decision itself.
 *
 * All request, slot and decision state is BPF map memory mapped here. The
 * completion hooks for this ring run inside this thread's io_uring_enter()
 * (SINGLE_ISSUER|DEFER_TASKRUN), so nothing here races with them.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "libbsteer.h"
#include "compat.h"
#include "target/nbd_client.h"
#include "core.skel.h"

#define SQ_ENTRIES	256
#define CQ_ENTRIES	4096	/* well above what can be in flight */

void bsteer_stat_add(struct bsteer_instance *in, enum bsteer_stat s, __u64 v)
{
	__atomic_fetch_add(&in->stats[s], v, __ATOMIC_RELAXED);
}

/* ---- slots ---- */

/*
 * The free stack and slot_meta live in map memory that BPF (and so a
 * hostile policy) can write. Every index from there is checked against the
 * engine's partition, and every decision against its private lease record.
 */
static bool slot_mine(struct bsteer_engine *e, __u32 slot)
{
	return slot >= e->slot_base && slot < e->slot_base + e->slot_count;
}

static struct bsteer_slot_priv *sp(struct bsteer_engine *e, __u32 slot)
{
	return &e->slot[slot - e->slot_base];
}

static struct bsteer_op_priv *opp(struct bsteer_engine *e, __u32 r, __u32 op)
{
	return &e->op[(size_t)(r - e->req_base) * BSTEER_REQ_OPS + op];
}

static void slot_push_free(struct bsteer_engine *e, __u32 slot)
{
	struct bsteer_ring *r = &e->in->rings[e->id];
	struct bsteer_slot *m = &e->in->meta[slot];

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

/* ---- spliced reads (see splice_reads in libbsteer.h) ---- */

/* Empty a slot's pipe of data no reply took (an error, a cut stream). */
static void pipe_drain(struct bsteer_slot_priv *p)
{
	char buf[16384];

	while (read(p->pipe[0], buf, sizeof(buf)) > 0)
		;
	p->pipe_fill = 0;
}

static void pipes_close(struct bsteer_engine *e)
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

/*
 * Does policy op READ of @len at @slot_off go into the slot's pipe? Only
 * a reply's read, long enough to pay for the pipe, from a local file, and
 * only in order: the pipe is a stream, so it must start where the pipe's
 * data ends, with nothing else in flight on the slot.
 */
static bool splice_op(struct bsteer_engine *e, __u8 opcode, __u32 flags,
		      __u32 file, __u32 slot, __u32 slot_off, __u32 len)
{
	struct bsteer_slot_priv *p;

	if (!e->splice_reads || opcode != BSTEER_OP_READ ||
	    !(flags & BSTEER_OPF_REPLY) || !slot_mine(e, slot) ||
	    file >= e->ntargets || upstream_is(e, file))
		return false;
	p = sp(e, slot);
	if (p->pipe_fill)	/* the rest of a short splice, whatever its size */
		return slot_off == p->pipe_fill && !p->inflight;
	return len > BSTEER_SPLICE_ABOVE && !slot_off && !p->inflight;
}

/* A slot's data goes to its pipe, or is there: what may not touch it. */
static const char *check_piped(struct bsteer_engine *e, const struct bsteer_dop *d)
{
	struct bsteer_slot_priv *p = sp(e, d->slot);

	if (!p->pipe_fill && !p->piping)
		return NULL;
	if (d->opcode == BSTEER_OP_WRITE)
		return "write from a slot whose data is in its pipe (a reply's read)";
	if (d->opcode == BSTEER_OP_READ &&
	    !splice_op(e, d->opcode, d->flags, d->target, d->slot, d->slot_off,
		       d->len))
		return "read into a slot out of its pipe's order";
	return NULL;
}

/* A released slot's last op is done: hand a lent buffer back. */
static void slot_returned(struct bsteer_engine *e, __u32 slot)
{
	struct bsteer_slot_priv *p = sp(e, slot);
	bsteer_release_fn fn = p->release;

	if (!fn)
		return;
	p->release = NULL;
	fn(p->release_arg, slot);
}

int bsteer_slot_lend(struct bsteer_engine *e, __u32 req, bsteer_release_fn fn,
		     void *arg, __u32 *slot)
{
	struct bsteer_ring *r = &e->in->rings[e->id];
	struct bsteer_slot_priv *p;
	struct bsteer_slot *m;
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
	p->state = BSTEER_SLOT_LEASED;
	p->gen++;
	p->owner = req;
	p->dir = BSTEER_DIR_FILL;
	p->release = fn;
	p->release_arg = arg;
	m = &e->in->meta[s];
	m->state = BSTEER_SLOT_LEASED;
	m->gen = p->gen;
	m->owner = req;
	m->ring = e->id;
	m->dir = BSTEER_DIR_FILL;
	m->lease_ns = e->now_ns;
	e->in->reqs[req].slot = s;
	e->req_slot[req - e->req_base] = s;
	bsteer_stat_add(e->in, BSTEER_ST_SLOT_LEASES, 1);
	*slot = s;
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
		n += e->slot[i].state != BSTEER_SLOT_FREE;
	return n;
}

/* ---- requests ---- */

int bsteer_req_alloc(struct bsteer_engine *e, __u8 type, __u64 offset,
		     __u32 len, __u32 *out)
{
	struct bsteer_req *rq;
	__u32 r, i;

	if (!e->req_top)
		return -EBUSY;
	r = e->req_stack[--e->req_top];
	rq = &e->in->reqs[r];
	rq->gen = (rq->gen + 1) & BSTEER_GEN_MASK;
	rq->state = BSTEER_RQ_ACTIVE;
	rq->type = type;
	rq->ring = e->id;
	rq->offset = offset;
	rq->len = len;
	rq->slot = BSTEER_NO_SLOT;
	rq->inflight = 0;
	rq->issued = 0;
	rq->error = 0;
	rq->flags = 0;
	rq->tbase = 0;
	rq->tcount = e->ntargets;
	rq->start_ns = e->now_ns;
	rq->pstate[0] = rq->pstate[1] = 0;
	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		rq->ops[i].state = BSTEER_OPS_FREE;
		/* No answer from an earlier life of this index can match. */
		e->in->decs[(size_t)r * BSTEER_REQ_OPS + i].cookie = 0;
	}
	e->submitted[r - e->req_base] = 0;
	e->req_state[r - e->req_base] = BSTEER_RQ_ACTIVE;
	e->req_slot[r - e->req_base] = BSTEER_NO_SLOT;
	e->req_keep[r - e->req_base] = 0;
	e->req_issued[r - e->req_base] = 0;
	bsteer_stat_add(e->in, BSTEER_ST_REQS_STARTED, 1);
	*out = r;
	return 0;
}

int bsteer_req_set_legs(struct bsteer_engine *e, __u32 r, __u32 base,
			__u32 count)
{
	if (!count || base >= e->ntargets || count > e->ntargets - base)
		return -EINVAL;
	e->in->reqs[r].tbase = base;
	e->in->reqs[r].tcount = count;
	return 0;
}

void bsteer_req_abandon(struct bsteer_engine *e, __u32 r)
{
	__u32 i = r - e->req_base;

	if (r < e->req_base || i >= e->req_count ||
	    e->req_state[i] != BSTEER_RQ_ACTIVE || e->submitted[i])
		return;
	if (slot_mine(e, e->req_slot[i]) && sp(e, e->req_slot[i])->owner == r)
		bsteer_slot_release(e, e->req_slot[i]);
	e->req_state[i] = BSTEER_RQ_FREE;
	e->in->reqs[r].state = BSTEER_RQ_FREE;
	e->req_stack[e->req_top++] = r;
}

__u32 bsteer_reqs_free(struct bsteer_engine *e)
{
	return e->req_top;
}

/* A finished request's record returns once none of its ops is out. */
static void req_maybe_free(struct bsteer_engine *e, __u32 r)
{
	__u32 i = r - e->req_base;

	if (e->req_state[i] != BSTEER_RQ_DONE || e->submitted[i] ||
	    e->req_keep[i])
		return;
	e->req_state[i] = BSTEER_RQ_FREE;
	e->in->reqs[r].state = BSTEER_RQ_FREE;
	e->req_stack[e->req_top++] = r;
}

static void req_finish(struct bsteer_engine *e, __u32 r, int err)
{
	__u32 i = r - e->req_base, s = e->req_slot[i];

	if (e->req_state[i] != BSTEER_RQ_ACTIVE)
		return;
	e->req_state[i] = BSTEER_RQ_DONE;
	e->in->reqs[r].state = BSTEER_RQ_DONE;
	bsteer_stat_add(e->in, err ? BSTEER_ST_REQS_FAILED : BSTEER_ST_REQS_DONE, 1);
	if (e->cb.complete)
		e->cb.complete(e->cb.arg, e, r, err);
	/*
	 * The lease dies with the request, whatever the policy said, unless
	 * the frontend kept it to send from (bsteer_req_keep).
	 */
	if (!e->req_keep[i] && slot_mine(e, s) && sp(e, s)->owner == r)
		bsteer_slot_release(e, s);
}

void bsteer_req_keep(struct bsteer_engine *e, __u32 r)
{
	e->req_keep[r - e->req_base] = 1;
}

void bsteer_req_put(struct bsteer_engine *e, __u32 r)
{
	__u32 i = r - e->req_base, s = e->req_slot[i];

	if (!e->req_keep[i])
		return;
	e->req_keep[i] = 0;
	if (slot_mine(e, s) && sp(e, s)->owner == r)
		bsteer_slot_release(e, s);
	req_maybe_free(e, r);
}

/* ---- SQEs ---- */

/*
 * Room for a whole decision before it is read: submitting mid-decision
 * would run completion hooks that rewrite the maps under the executor.
 */
void bsteer_engine_reserve(struct bsteer_engine *e, unsigned n)
{
	if (io_uring_sq_space_left(&e->ring) < n)
		io_uring_submit(&e->ring);
}

struct io_uring_sqe *bsteer_engine_sqe(struct bsteer_engine *e)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

	if (!sqe) {
		io_uring_submit(&e->ring);
		sqe = io_uring_get_sqe(&e->ring);
	}
	return sqe;
}

/* Does the op count against its target's in-flight figure? */
static bool target_op(const struct bsteer_engine *e,
		      const struct bsteer_op_priv *o)
{
	return !o->frontend && o->opcode != BSTEER_OP_WAIT &&
	       o->target < e->ntargets;
}

/* Write the SQE for an op on a local file (or a frontend's socket). */
/* fallocate()'s mode for BSTEER_OP_PUNCH and BSTEER_OP_ZERO. */
static int falloc_mode(__u8 opcode)
{
	return FALLOC_FL_KEEP_SIZE | (opcode == BSTEER_OP_PUNCH ?
				      FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
}

static int prep_sqe(struct bsteer_engine *e, struct bsteer_op_priv *o,
		    __u8 opcode, __u32 file, __u32 slot, void *buf, __u32 len,
		    __u64 offset, __u64 ud, bool link)
{
	struct io_uring_sqe *sqe;

	if (opcode >= BSTEER_OP__MAX)
		return -EINVAL;
	sqe = bsteer_engine_sqe(e);
	if (!sqe)
		return -EBUSY;
	switch (opcode) {
	case BSTEER_OP_NOP:
		io_uring_prep_nop(sqe);
		break;
	case BSTEER_OP_READ:
		io_uring_prep_read_fixed(sqe, file, buf, len, offset, slot);
		sqe->flags |= IOSQE_FIXED_FILE;
		break;
	case BSTEER_OP_WRITE:
		io_uring_prep_write_fixed(sqe, file, buf, len, offset, slot);
		sqe->flags |= IOSQE_FIXED_FILE;
		break;
	case BSTEER_OP_FSYNC:
	case BSTEER_OP_FDATASYNC:
		io_uring_prep_fsync(sqe, file, opcode == BSTEER_OP_FDATASYNC ?
					  IORING_FSYNC_DATASYNC : 0);
		sqe->flags |= IOSQE_FIXED_FILE;
		break;
	case BSTEER_OP_PUNCH:
	case BSTEER_OP_ZERO:
		io_uring_prep_fallocate(sqe, file, falloc_mode(opcode), offset, len);
		sqe->flags |= IOSQE_FIXED_FILE;
		break;
	case BSTEER_OP_WAIT:
		/* A pure timeout; the core reads its -ETIME as 0. */
		o->wait.tv_sec = len / 1000000;
		o->wait.tv_nsec = (len % 1000000) * 1000ll;
		io_uring_prep_timeout(sqe, &o->wait, 0, 0);
		break;
	default:		/* every opcode below __MAX is above */
		io_uring_prep_nop(sqe);
		break;
	}
	io_uring_sqe_set_data64(sqe, ud);
	if (link)
		sqe->flags |= IOSQE_IO_LINK;
	return 0;
}

/* ---- inline targets (see inline_io in libbsteer.h) ---- */

/*
 * Serve target @t's file @fd inline if io_uring could not do its I/O
 * without a worker: preadv2(RWF_NOWAIT) fails with EOPNOTSUPP for exactly
 * the files (no FMODE_NOWAIT) whose reads and writes io_uring punts.
 */
static void inl_open(struct bsteer_engine *e, __u32 t, int fd)
{
	struct iovec v;
	struct stat st;
	char byte;

	if (t >= BSTEER_MAX_TARGETS)
		return;
	e->inl_fd[t] = e->inl_wr_fd[t] = -1;
	if (!e->inline_io || fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode))
		return;
	v.iov_base = &byte;
	v.iov_len = 1;
	if (preadv2(fd, &v, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP) {
		e->inl_fd[t] = fd;
		return;
	}
	/*
	 * A buffered write that may not block is refused (EOPNOTSUPP) before
	 * its buffer is looked at by exactly the filesystems whose writes
	 * io_uring punts; one that would try it faults on the NULL buffer
	 * (EFAULT) and writes nothing. A read-only file gives EBADF.
	 */
	v.iov_base = NULL;
	if (e->inline_writes && pwritev2(fd, &v, 1, 0, RWF_NOWAIT) < 0 &&
	    errno == EOPNOTSUPP)
		e->inl_wr_fd[t] = fd;
}

/*
 * Carry out a policy op on an inline target here and now, with the plain
 * syscall (a read of a hole copies zeroes and allocates nothing, as with
 * io_uring). A NOP then posts the result under the op's user_data, so
 * that the hook and the policy see the op complete as ever.
 */
static int inl_op(struct bsteer_engine *e, __u32 t, __u8 opcode, void *buf,
		  __u32 len, __u64 offset, __u64 ud)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(e);
	int fd = e->inl_fd[t] >= 0 ? e->inl_fd[t] : e->inl_wr_fd[t], res;

	if (!sqe)
		return -EBUSY;
	switch (opcode) {
	case BSTEER_OP_READ:
		res = pread(fd, buf, len, offset);
		break;
	case BSTEER_OP_WRITE:
		res = pwrite(fd, buf, len, offset);
		break;
	case BSTEER_OP_FSYNC:
		res = fsync(fd);
		break;
	case BSTEER_OP_FDATASYNC:
		res = fdatasync(fd);
		break;
	default:		/* PUNCH, ZERO: see inline_opcode() */
		res = fallocate(fd, falloc_mode(opcode), offset, len);
		break;
	}
	bsteer_stat_add(e->in, BSTEER_ST_INLINE_OPS, 1);
	bsteer_prep_nop_result(sqe, res < 0 ? -errno : res);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/*
 * A large read stays with io-wq: its copy pays for the worker's wake-up,
 * and there it overlaps with this thread's sends on another CPU. bench/ab.sh
 * on tmpfs, 256K QD8 over unix, io-wq against inline: reads 1.43x the
 * IOPS at 0.84x the CPU per IO; writes 0.95x at 1.24x, so writes of any
 * size stay inline (4K: the same either way).
 */
#define INLINE_READ_MAX	(64u << 10)

/*
 * The same goes for large writes of one decision to several legs (a
 * mirror): on io-wq they run side by side. bench/ab.sh --mirror, tmpfs,
 * 256K writes QD8 over unix: 1.27x the IOPS of inline (where one leg waits
 * for the other) at 1.13x the CPU per IO; at 4K, inline is 1.18x.
 */
#define OPF_FANOUT	0x80000000u	/* engine's own: one of such writes */
#define OPF_LEGS	0x40000000u	/* engine's own: one of several writes */
#define OPF_LINK	0x20000000u	/* engine's own: link the next SQE to it */

/*
 * inline_writes, on ext4, 4K writes (bench/ab.sh --b-args "--inline-io
 * all" --dir /var/tmp, QD32, 4 rounds): over unix 1.27x the IOPS of
 * io-wq at 0.76x the CPU per IO, 0.001 switches per IO against 1.18;
 * over TCP 0.93x, as on loopback fio's own CPU per IO grows. With every
 * write inline, 256K writes were 0.67x (io-wq's copy overlaps this
 * thread's receives) and a 4K mirror's two legs 0.87x (they overlap on
 * io-wq), so those stay.
 */
#define INLINE_WRITE_MAX	(64u << 10)

static bool inline_write(const struct bsteer_engine *e, __u32 t, __u8 opcode,
			 __u32 len, __u32 flags)
{
	return t < BSTEER_MAX_TARGETS && e->inl_wr_fd[t] >= 0 &&
	       opcode == BSTEER_OP_WRITE && len <= INLINE_WRITE_MAX &&
	       !(flags & OPF_LEGS);
}

static bool inline_opcode(__u8 opcode, __u32 len, __u32 flags)
{
	if (opcode == BSTEER_OP_READ)
		return len <= INLINE_READ_MAX;
	if (opcode == BSTEER_OP_WRITE)
		return !(flags & OPF_FANOUT);
	return opcode == BSTEER_OP_FSYNC || opcode == BSTEER_OP_FDATASYNC ||
	       opcode == BSTEER_OP_PUNCH || opcode == BSTEER_OP_ZERO;
}

/*
 * A reply's read into the slot's pipe: the page cache's pages are lent to
 * the pipe, not copied. On an inline target the splice is done here (the
 * pipe holds a slot's worth, so it cannot block), and a NOP posts its
 * result; otherwise io-wq does it (io_uring always punts a SPLICE).
 */
static int splice_in(struct bsteer_engine *e, struct bsteer_op_priv *o,
		     __u32 t, struct bsteer_slot_priv *p, __u32 len,
		     __u64 offset, __u64 ud)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(e);
	loff_t off = offset;
	ssize_t res;

	if (!sqe)
		return -EBUSY;
	o->piped = !bsteer_engine_inline(e, t);
	if (o->piped) {
		io_uring_prep_splice(sqe, t, offset, p->pipe[1], -1, len,
				     SPLICE_F_FD_IN_FIXED);
	} else {
		res = splice(e->inl_fd[t], &off, p->pipe[1], NULL, len,
			     SPLICE_F_NONBLOCK);
		if (res > 0)
			p->pipe_fill += res;
		else if (res < 0)
			res = -errno;
		if (res < 0)
			pipe_drain(p);
		bsteer_prep_nop_result(sqe, res);
	}
	bsteer_stat_add(e->in, BSTEER_ST_SPLICED_READS, 1);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

static int fail_fast(struct bsteer_engine *e, __u64 ud)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(e);

	if (!sqe)
		return -EBUSY;
	bsteer_prep_nop_result(sqe, -EIO);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/*
 * Turn op @op of request @r (already recorded) into an SQE, or, on an
 * upstream target, into an NBD request that completes with @ud.
 */
static int submit_op(struct bsteer_engine *e, __u32 r, __u32 op, __u8 opcode,
		     __u32 file, __u32 slot, __u32 slot_off, __u32 len,
		     __u64 offset, __u32 flags, bool frontend)
{
	struct bsteer_req *rq = &e->in->reqs[r];
	struct bsteer_op_priv *o = opp(e, r, op);
	__u64 ud = bsteer_ud(r, rq->gen, op, rq->ops[op].seq);
	bool piped = !frontend && splice_op(e, opcode, flags, file, slot,
					    slot_off, len);
	void *buf = NULL;
	int err;

	o->piped = 0;
	/* Only the frontend's own ops (and their rest) start in the headroom. */
	if (!frontend)
		o->prefix = 0;
	if (slot != BSTEER_NO_SLOT)
		buf = bsteer_slot_data(e->in, slot) + slot_off - o->prefix;
	if (!frontend && opcode != BSTEER_OP_WAIT && file < e->ntargets &&
	    (__atomic_load_n(&e->in->targets[file].flags, __ATOMIC_ACQUIRE) &
	     BSTEER_TGT_FAILED))
		/*
		 * The target failed after the policy chose it (another op's
		 * completion, decided in the same batch, took it out): nothing
		 * reaches it, and the op completes at once with EIO, which the
		 * policy sees as that leg's error.
		 */
		err = fail_fast(e, ud);
	else if (piped)
		err = splice_in(e, o, file, sp(e, slot), len, offset, ud);
	else if (!frontend && ((bsteer_engine_inline(e, file) &&
				inline_opcode(opcode, len, flags)) ||
			       inline_write(e, file, opcode, len, flags)) &&
		 (buf || (opcode != BSTEER_OP_READ && opcode != BSTEER_OP_WRITE)))
		err = inl_op(e, file, opcode, buf, len, offset, ud);
	else if (!frontend && opcode != BSTEER_OP_WAIT && upstream_is(e, file))
		err = upstream_op(e, file, o - e->op, ud, opcode, buf, slot,
				  len, offset);
	else
		err = prep_sqe(e, o, opcode, file, slot, buf, len, offset, ud,
			       frontend && (flags & OPF_LINK));
	if (err)
		return err;
	o->slot = slot;
	o->target = file;
	o->frontend = frontend;
	o->opcode = opcode;
	o->slot_off = slot_off;
	o->len = len;
	o->res = 0;
	if (o->piped)
		sp(e, slot)->piping++;
	if (slot != BSTEER_NO_SLOT) {
		sp(e, slot)->inflight++;
		__atomic_fetch_add(&e->in->meta[slot].inflight, 1, __ATOMIC_RELEASE);
	}
	if (target_op(e, o))
		__atomic_fetch_add(&e->in->targets[file].inflight, 1,
				   __ATOMIC_RELAXED);
	e->submitted[r - e->req_base] |= 1u << op;
	e->inflight_sqes++;
	bsteer_stat_add(e->in, BSTEER_ST_OPS_SUBMITTED, 1);
	return 0;
}

static int frontend_op(struct bsteer_engine *e, __u32 r, __u8 opcode,
		       __u32 file, __u32 slot, __u32 prefix, __u32 len,
		       __u64 offset, __u32 flags)
{
	struct bsteer_req *rq = &e->in->reqs[r];
	struct bsteer_req_op *o = NULL;
	__u32 i;

	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		if (rq->ops[i].state == BSTEER_OPS_FREE &&
		    !(e->submitted[r - e->req_base] & (1u << i))) {
			o = &rq->ops[i];
			break;
		}
	}
	if (!o)
		return -EBUSY;
	o->state = BSTEER_OPS_INFLIGHT;
	o->seq++;
	o->opcode = opcode;
	o->flags = BSTEER_OPF_FRONTEND;
	o->target = file;
	o->slot = slot;
	/* The hooks see prefix and data as one run from slot_off 0. */
	o->slot_off = 0;
	o->len = prefix + len;
	o->done = 0;
	o->offset = offset;
	rq->inflight++;
	rq->issued++;
	/* A frontend sends a slot only once its contents are final. */
	if (opcode == BSTEER_OP_WRITE && slot_mine(e, slot) &&
	    sp(e, slot)->owner == r) {
		sp(e, slot)->dir = BSTEER_DIR_DRAIN;
		e->in->meta[slot].dir = BSTEER_DIR_DRAIN;
	}
	opp(e, r, i)->prefix = prefix;
	return submit_op(e, r, i, opcode, file, slot, 0, prefix + len, offset,
			 flags, true);
}

int bsteer_frontend_op(struct bsteer_engine *e, __u32 r, __u8 opcode,
		       __u32 file, __u32 slot, __u32 len, __u64 offset)
{
	return frontend_op(e, r, opcode, file, slot, 0, len, offset, 0);
}

int bsteer_frontend_op_linked(struct bsteer_engine *e, __u32 r, __u8 opcode,
			      __u32 file, __u32 slot, __u32 len, __u64 offset)
{
	return frontend_op(e, r, opcode, file, slot, 0, len, offset, OPF_LINK);
}

int bsteer_frontend_send_prefixed(struct bsteer_engine *e, __u32 r,
				  __u32 file, __u32 slot, __u32 prefix,
				  __u32 len)
{
	if (slot == BSTEER_NO_SLOT || prefix > BSTEER_SLOT_HEADROOM ||
	    len > e->in->slot_size || prefix > e->in->slot_size - len)
		return -EINVAL;
	return frontend_op(e, r, BSTEER_OP_WRITE, file, slot, prefix, len,
			   BSTEER_OFF_STREAM, 0);
}

/* ---- the executor ---- */

/*
 * Check one op of a decision against the engine's own records. @cqe_op is
 * the op whose completion this decision answers: only that op may be
 * resubmitted to a frontend file (the rest of a short transfer). Returns
 * NULL if the op may run, or why not.
 */
static const char *check_op(struct bsteer_engine *e, __u32 r, __u32 cqe_op,
			    const struct bsteer_dop *d)
{
	struct bsteer_instance *in = e->in;
	struct bsteer_req *rq = &in->reqs[r];
	const struct bsteer_op_priv *prev;
	const struct bsteer_req_op *o;
	const struct bsteer_slot_priv *p;
	bool data = d->opcode == BSTEER_OP_READ || d->opcode == BSTEER_OP_WRITE;

	if (d->opcode == BSTEER_OP_NOP || d->opcode >= BSTEER_OP__MAX)
		return "unknown opcode";
	if (d->op >= BSTEER_REQ_OPS)
		return "op index out of range";
	if (e->submitted[r - e->req_base] & (1u << d->op))
		return "op already in flight";
	prev = opp(e, r, d->op);
	if (d->opcode == BSTEER_OP_WAIT) {
		if (d->len > BSTEER_WAIT_MAX_US)
			return "wait longer than BSTEER_WAIT_MAX_US";
	} else if (d->target < e->ntargets) {
		const struct bsteer_target *t = &in->targets[d->target];

		/* A failed target is not refused here: see submit_op(). */
		if ((d->opcode == BSTEER_OP_WRITE || d->opcode == BSTEER_OP_PUNCH ||
		     d->opcode == BSTEER_OP_ZERO) && (t->flags & BSTEER_TGT_RDONLY))
			return "write to a read-only target";
	} else if (!(d->op == cqe_op && prev->frontend &&
		     prev->target == d->target && prev->slot == d->slot &&
		     prev->opcode == d->opcode && prev->res > 0 &&
		     (__u32)prev->res < prev->len &&
		     d->len == prev->len - prev->res &&
		     d->slot_off == prev->slot_off + prev->res)) {
		/* Only the rest of the frontend's own short transfer. */
		return "target out of range";
	}
	o = &rq->ops[d->op];
	if (o->state != BSTEER_OPS_INFLIGHT || o->opcode != d->opcode ||
	    o->target != d->target || o->slot != d->slot ||
	    o->slot_off + o->done != d->slot_off || o->len - o->done != d->len ||
	    (o->offset != BSTEER_OFF_STREAM && o->offset + o->done != d->offset))
		return "op does not match the request's record";
	if (!data)
		return d->slot == BSTEER_NO_SLOT ? NULL : "slot on a non-data op";
	if (!slot_mine(e, d->slot))
		return "slot out of range";
	p = sp(e, d->slot);
	if (p->owner != r || !(p->state == BSTEER_SLOT_LEASED ||
			       (p->state == BSTEER_SLOT_RELEASING &&
				d->target >= e->ntargets)))
		return "slot not leased to this request";
	if (p->gen != d->slot_gen)
		return "stale slot generation";
	if (!d->len || d->slot_off >= in->slot_size ||
	    d->len > in->slot_size - d->slot_off)
		return "length outside the slot";
	if (d->opcode == BSTEER_OP_READ && !(p->dir & BSTEER_DIR_FILL))
		return "read into a slot sealed for draining";
	if (d->opcode == BSTEER_OP_WRITE && !(p->dir & BSTEER_DIR_DRAIN))
		return "write from a slot not sealed";
	return check_piped(e, d);
}

static const char *check_decision(struct bsteer_engine *e, __u32 r,
				  __u32 cqe_op, const struct bsteer_decision *d)
{
	__u32 i, seen = 0;
	const char *why;

	if (d->nops > BSTEER_DEC_OPS || d->nrelease > BSTEER_DEC_RELEASE)
		return "malformed decision";
	for (i = 0; i < d->nops; i++) {
		why = check_op(e, r, cqe_op, &d->ops[i]);
		if (why)
			return why;
		if (seen & (1u << d->ops[i].op))
			return "op index used twice";
		seen |= 1u << d->ops[i].op;
	}
	for (i = 0; i < d->nrelease; i++) {
		__u32 s = d->release[i];

		if (!slot_mine(e, s) || sp(e, s)->owner != r ||
		    sp(e, s)->state != BSTEER_SLOT_LEASED)
			return "release of a slot the request does not hold";
	}
	return NULL;
}

/* Drop from the books the ops a policy recorded that never got an SQE. */
static void reject_pending_ops(struct bsteer_engine *e, __u32 r)
{
	struct bsteer_req *rq = &e->in->reqs[r];
	__u32 i;

	for (i = 0; i < BSTEER_REQ_OPS; i++) {
		struct bsteer_req_op *o = &rq->ops[i];

		if (o->state == BSTEER_OPS_INFLIGHT &&
		    !(e->submitted[r - e->req_base] & (1u << i))) {
			o->state = BSTEER_OPS_FREE;
			if (rq->inflight)
				rq->inflight--;
		}
	}
}

static void reject(struct bsteer_engine *e, __u32 r, const char *why)
{
	bsteer_stat_add(e->in, BSTEER_ST_DEC_REJECTED, 1);
	e->st.rejected++;
	if (e->verbose || e->st.rejected <= 5)
		fprintf(stderr, "bsteer: rejected policy decision for request %u: %s\n",
			r, why);
	reject_pending_ops(e, r);
	req_finish(e, r, -EIO);
}

/* Seal the slot as the decision asks, if the request holds it. */
static const char *apply_seal(struct bsteer_engine *e, __u32 r, __u32 slot)
{
	struct bsteer_slot_priv *p;

	if (slot == BSTEER_NO_SLOT)
		return NULL;
	if (!slot_mine(e, slot))
		return "seal of a slot out of range";
	p = sp(e, slot);
	if (p->state != BSTEER_SLOT_LEASED || p->owner != r)
		return "seal of a slot the request does not hold";
	p->dir = BSTEER_DIR_DRAIN;
	e->in->meta[slot].dir = BSTEER_DIR_DRAIN;
	return NULL;
}

/*
 * Carry out the decision that answers completion @ud. It is copied out of
 * the shared map first and only the copy is checked and used.
 */
static void execute(struct bsteer_engine *e, __u32 r, __u64 ud,
		    const struct bsteer_decision *shared)
{
	struct bsteer_decision d;
	const char *why;
	__u32 i, fanout, writes;

	e->st.executed++;
	bsteer_engine_reserve(e, BSTEER_DEC_OPS);
	memcpy(&d, shared, sizeof(d));
	if (e->req_state[r - e->req_base] != BSTEER_RQ_ACTIVE) {
		/* Finished: only the rest of a frontend's short send goes on. */
		if (d.cookie == ud && d.nops == 1 && !d.nrelease &&
		    d.ops[0].target >= e->ntargets &&
		    !check_decision(e, r, bsteer_ud_op(ud), &d))
			submit_op(e, r, d.ops[0].op, d.ops[0].opcode,
				  d.ops[0].target, d.ops[0].slot,
				  d.ops[0].slot_off, d.ops[0].len,
				  d.ops[0].offset, d.ops[0].flags & ~OPF_LINK, true);
		else
			reject_pending_ops(e, r);
		req_maybe_free(e, r);
		return;
	}
	if (d.cookie != ud) {
		why = "decision changed while read";
		goto bad;
	}
	why = apply_seal(e, r, d.seal);
	if (!why)
		why = check_decision(e, r, bsteer_ud_op(ud), &d);
	/* The policy's own count lives in map memory it may write: ours. */
	if (!why && e->req_issued[r - e->req_base] + d.nops > BSTEER_OP_BUDGET) {
		bsteer_stat_add(e->in, BSTEER_ST_BUDGET, 1);
		why = "op budget of the request exceeded (an endless policy?)";
	}
	if (why)
		goto bad;
	for (i = 0, fanout = 0, writes = 0; i < d.nops; i++) {
		writes += d.ops[i].opcode == BSTEER_OP_WRITE;
		fanout += d.ops[i].opcode == BSTEER_OP_WRITE &&
			  d.ops[i].len > INLINE_READ_MAX;
	}
	for (i = 0; i < d.nops; i++) {
		const struct bsteer_dop *o = &d.ops[i];
		bool fe = o->target >= e->ntargets;
		__u32 flags = o->flags & ~(OPF_FANOUT | OPF_LEGS | OPF_LINK);

		if (fanout > 1 && o->opcode == BSTEER_OP_WRITE &&
		    o->len > INLINE_READ_MAX)
			flags |= OPF_FANOUT;
		if (writes > 1 && o->opcode == BSTEER_OP_WRITE)
			flags |= OPF_LEGS;
		if (submit_op(e, r, o->op, o->opcode, o->target, o->slot,
			      o->slot_off, o->len, o->offset, flags, fe)) {
			why = "submission queue unavailable";
			goto bad;
		}
		e->req_issued[r - e->req_base]++;
	}
	/*
	 * Completion first: the frontend may keep the data slot to send a
	 * reply from it, and then it, not the policy, lets it go.
	 */
	if (d.flags & BSTEER_DEC_DONE)
		req_finish(e, r, d.error);
	for (i = 0; i < d.nrelease; i++) {
		if (e->req_keep[r - e->req_base] &&
		    d.release[i] == e->req_slot[r - e->req_base])
			continue;
		bsteer_slot_release(e, d.release[i]);
	}
	/* Nothing out and not done: no completion will ever come back to it. */
	if (e->req_state[r - e->req_base] == BSTEER_RQ_ACTIVE &&
	    !e->submitted[r - e->req_base]) {
		why = "the decision leaves the request waiting for nothing";
		goto bad;
	}
	req_maybe_free(e, r);
	return;
bad:
	reject(e, r, why);
	req_maybe_free(e, r);
}

static bool own_req(struct bsteer_engine *e, __u64 ud, __u32 *r)
{
	*r = bsteer_ud_req(ud);
	return bsteer_ud_ours(ud) && *r >= e->req_base &&
	       *r < e->req_base + e->req_count;
}

static const struct bsteer_decision *decision_for(struct bsteer_engine *e,
						  __u64 ud, __u32 r)
{
	const struct bsteer_decision *d;

	d = &e->in->decs[(size_t)r * BSTEER_REQ_OPS + bsteer_ud_op(ud)];
	return __atomic_load_n(&d->cookie, __ATOMIC_ACQUIRE) == ud ? d : NULL;
}

/* Completion @ud is answered (or given up on): its op is no longer out. */
static void answered(struct bsteer_engine *e, __u32 r, __u64 ud)
{
	e->submitted[r - e->req_base] &= ~(1u << bsteer_ud_op(ud));
}

/*
 * After a completion was dealt with: if it was a frontend op's and the op
 * did not go out again as the frontend's (the rest of a short transfer),
 * tell the frontend it is over. A policy may reuse the op index at once.
 */
static void frontend_check(struct bsteer_engine *e, __u32 r, __u64 ud,
			   bool was_frontend, int res)
{
	__u32 op = bsteer_ud_op(ud);
	struct bsteer_op_priv *o = opp(e, r, op);

	if (!was_frontend)
		return;
	if ((e->submitted[r - e->req_base] & (1u << op)) && o->frontend)
		return;
	if (e->cb.frontend_done)
		e->cb.frontend_done(e->cb.arg, e, r, op, res);
}

/*
 * Neither the hook nor the twin answered a current completion (a broken or
 * hostile policy). The request cannot go on: fail it, and if the core never
 * booked the op's completion, book it here so the slot and the request
 * record still come back.
 */
static void settle_missing(struct bsteer_engine *e, __u32 r, __u64 ud)
{
	struct bsteer_req *rq = &e->in->reqs[r];
	struct bsteer_req_op *o = &rq->ops[bsteer_ud_op(ud)];
	__u32 slot = opp(e, r, bsteer_ud_op(ud))->slot;
	const struct bsteer_decision *d;

	d = &e->in->decs[(size_t)r * BSTEER_REQ_OPS + bsteer_ud_op(ud)];
	if (bsteer_ud_req(d->cookie) == r &&
	    bsteer_ud_op(d->cookie) == bsteer_ud_op(ud))
		bsteer_stat_add(e->in, BSTEER_ST_DEC_STALE, 1);
	else
		bsteer_stat_add(e->in, BSTEER_ST_DEC_MISSING, 1);
	e->st.missing++;
	if (e->verbose || e->st.missing <= 5)
		fprintf(stderr, "bsteer: no valid decision for request %u op %u; failing it\n",
			r, bsteer_ud_op(ud));
	if (o->state == BSTEER_OPS_INFLIGHT && o->seq == bsteer_ud_seq(ud)) {
		o->state = BSTEER_OPS_FREE;
		if (rq->inflight)
			rq->inflight--;
		if (slot_mine(e, slot)) {
			struct bsteer_slot *m = &e->in->meta[slot];

			if (m->inflight &&
			    !__atomic_sub_fetch(&m->inflight, 1, __ATOMIC_ACQ_REL) &&
			    m->state == BSTEER_SLOT_RELEASING)
				slot_push_free(e, slot);
		}
	}
	reject_pending_ops(e, r);
	req_finish(e, r, -EIO);
	req_maybe_free(e, r);
}

/*
 * The active policy's syscall twin: its id sits in the pinned "policy_sys"
 * array, which a swap (ours or bpftool's) replaces. The fd is cached per id.
 * Without a twin, the core's own fallback keeps the books.
 */
static int fallback_fd(struct bsteer_engine *e)
{
	__u32 zero = 0, id = 0;

	if (bpf_map_lookup_elem(e->in->map_fd[BSTEER_MAP_POLICY_SYS], &zero, &id))
		id = 0;
	if (id && id == e->twin_id)
		return e->twin_fd;
	if (e->twin_fd >= 0)
		close(e->twin_fd);
	e->twin_fd = id ? bpf_prog_get_fd_by_id(id) : -1;
	e->twin_id = e->twin_fd >= 0 ? id : 0;
	if (e->twin_fd >= 0)
		return e->twin_fd;
	return bpf_program__fd(e->in->skel->progs.bsteer_fallback);
}

/*
 * Completions the hook did not answer go to the policy's syscall twin in
 * one BPF_PROG_RUN. Whatever is still unanswered after that is stale.
 */
static int run_fallback(struct bsteer_engine *e)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	struct bsteer_fallback_args args = { .ring = e->id };
	struct bsteer_cqe *b = &e->in->batch[e->id * BSTEER_BATCH];
	struct bsteer_cqe pending[BSTEER_BATCH];
	__u32 i, n = e->npending, r;
	int err;

	if (!n)
		return 0;
	memcpy(pending, e->pending, n * sizeof(*b));
	memcpy(b, pending, n * sizeof(*b));
	e->npending = 0;
	args.count = n;
	opts.ctx_in = &args;
	opts.ctx_size_in = sizeof(args);
	err = bpf_prog_test_run_opts(fallback_fd(e), &opts);
	bsteer_stat_add(e->in, BSTEER_ST_FALLBACK_RUNS, 1);
	if (err)
		fprintf(stderr, "bsteer: fallback run failed: %s\n", strerror(errno));
	for (i = 0; i < n; i++) {
		__u64 ud = pending[i].user_data;
		const struct bsteer_decision *d;
		bool fe;

		own_req(e, ud, &r);
		fe = opp(e, r, bsteer_ud_op(ud))->frontend;
		answered(e, r, ud);
		d = decision_for(e, ud, r);
		if (d) {
			e->st.fallback++;
			execute(e, r, ud, d);
		} else if ((e->in->reqs[r].gen & BSTEER_GEN_MASK) !=
			   bsteer_ud_gen(ud)) {
			/* A completion of a request long gone. */
			bsteer_stat_add(e->in, BSTEER_ST_DEC_STALE, 1);
			req_maybe_free(e, r);
			continue;
		} else {
			settle_missing(e, r, ud);
		}
		frontend_check(e, r, ud, fe, pending[i].res);
	}
	return 0;
}

static void reap_one(struct bsteer_engine *e, const struct io_uring_cqe *cqe)
{
	const struct bsteer_decision *d;
	__u64 ud = cqe->user_data;
	__u32 r, slot;

	if ((ud >> 56) == BSTEER_UP_MAGIC) {
		upstream_cqe(e, cqe);
		return;
	}
	if (!own_req(e, ud, &r)) {
		if (!bsteer_ud_ours(ud) && e->cb.cqe)
			e->cb.cqe(e->cb.arg, e, cqe);
		return;
	}
	e->inflight_sqes--;
	if (target_op(e, opp(e, r, bsteer_ud_op(ud))))
		__atomic_fetch_sub(&e->in->targets[opp(e, r, bsteer_ud_op(ud))->target].inflight,
				   1, __ATOMIC_RELAXED);
	/* The kernel is done with the op's buffer, whatever the policy says. */
	opp(e, r, bsteer_ud_op(ud))->res = cqe->res;
	slot = opp(e, r, bsteer_ud_op(ud))->slot;
	if (opp(e, r, bsteer_ud_op(ud))->piped && slot_mine(e, slot)) {
		struct bsteer_slot_priv *p = sp(e, slot);

		opp(e, r, bsteer_ud_op(ud))->piped = 0;
		if (p->piping)
			p->piping--;
		if (cqe->res > 0)
			p->pipe_fill += cqe->res;
		else if (cqe->res < 0)
			pipe_drain(p);
	}
	if (slot_mine(e, slot) && sp(e, slot)->inflight &&
	    !--sp(e, slot)->inflight && sp(e, slot)->state == BSTEER_SLOT_RELEASING) {
		/* The core puts it back on the free stack for the same op. */
		sp(e, slot)->state = BSTEER_SLOT_FREE;
		slot_returned(e, slot);
	}
	d = decision_for(e, ud, r);
	if (d) {
		bool fe = opp(e, r, bsteer_ud_op(ud))->frontend;

		answered(e, r, ud);
		execute(e, r, ud, d);
		frontend_check(e, r, ud, fe, cqe->res);
		return;
	}
	if (e->npending == BSTEER_BATCH)
		run_fallback(e);
	e->pending[e->npending].user_data = ud;
	e->pending[e->npending].res = cqe->res;
	e->pending[e->npending].flags = cqe->flags;
	e->npending++;
}

int bsteer_engine_run(struct bsteer_engine *e, unsigned wait_nr)
{
	return bsteer_engine_run_timeout(e, wait_nr, -1);
}

int bsteer_engine_run_timeout(struct bsteer_engine *e, unsigned wait_nr,
			      int timeout_ms)
{
	struct io_uring_cqe *cqes[BSTEER_BATCH], *cqe;
	unsigned n, i;
	int ret;

	if (e->up) {
		upstream_kick(e);
		/* A hung server is noticed only if we wake up now and then. */
		if (timeout_ms < 0 && upstream_waiting(e))
			timeout_ms = 1000;
	}
	if (timeout_ms >= 0 && wait_nr) {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (timeout_ms % 1000) * 1000000ll,
		};

		/* The CQE it may hand back stays in the ring for the peek. */
		ret = io_uring_submit_and_wait_timeout(&e->ring, &cqe, wait_nr,
						       &ts, NULL);
	} else {
		ret = io_uring_submit_and_wait(&e->ring, wait_nr);
	}
	e->now_ns = bsteer_now_ns();
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY &&
	    ret != -ETIME)
		return ret;
	do {
		n = io_uring_peek_batch_cqe(&e->ring, cqes, BSTEER_BATCH);
		for (i = 0; i < n; i++)
			reap_one(e, cqes[i]);
		io_uring_cq_advance(&e->ring, n);
	} while (n);
	run_fallback(e);
	return ret == -EINTR ? -EINTR : 0;
}

/* ---- setup ---- */

int bsteer_engine_init(struct bsteer_engine *e, struct bsteer_instance *in,
		       __u32 id, const struct bsteer_frontend_cb *cb)
{
	struct io_uring_params p = {};
	struct bsteer_ring *r = &in->rings[id];
	struct iovec *iov;
	__u32 tid = syscall(SYS_gettid), i;
	int err;

	memset(e, 0, sizeof(*e));
	for (i = 0; i < BSTEER_MAX_TARGETS; i++)
		e->inl_fd[i] = e->inl_wr_fd[i] = -1;
	e->in = in;
	e->id = id;
	e->twin_fd = -1;
	e->now_ns = bsteer_now_ns();
	if (cb)
		e->cb = *cb;
	e->slot_count = in->nslots / in->nrings;
	e->slot_base = id * e->slot_count;
	e->req_count = in->nreqs / in->nrings;
	e->req_base = id * e->req_count;
	e->req_stack = calloc(e->req_count, sizeof(*e->req_stack));
	e->submitted = calloc(e->req_count, 1);
	e->req_state = calloc(e->req_count, 1);
	e->req_keep = calloc(e->req_count, 1);
	e->req_slot = calloc(e->req_count, sizeof(*e->req_slot));
	e->req_issued = calloc(e->req_count, sizeof(*e->req_issued));
	e->slot = calloc(e->slot_count, sizeof(*e->slot));
	for (i = 0; e->slot && i < e->slot_count; i++)
		e->slot[i].pipe[0] = e->slot[i].pipe[1] = -1;
	e->op = calloc((size_t)e->req_count * BSTEER_REQ_OPS, sizeof(*e->op));
	if (!e->req_stack || !e->submitted || !e->req_state || !e->req_keep ||
	    !e->req_slot || !e->req_issued ||
	    !e->slot || !e->op) {
		err = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < e->req_count; i++)
		e->req_stack[i] = e->req_base + e->req_count - 1 - i;
	for (i = 0; i < e->req_count * BSTEER_REQ_OPS; i++)
		e->op[i].slot = BSTEER_NO_SLOT;
	e->req_top = e->req_count;

	r->slot_base = e->slot_base;
	r->slot_count = e->slot_count;
	r->req_base = e->req_base;
	r->req_count = e->req_count;
	r->free_top = 0;
	for (i = 0; i < e->slot_count; i++) {
		__u32 s = e->slot_base + e->slot_count - 1 - i;

		in->meta[s].ring = id;
		in->meta[s].state = BSTEER_SLOT_FREE;
		in->freelist[e->slot_base + r->free_top++] = s;
	}

	/* Tell the create hook that the next ring of this thread is ours. */
	err = bpf_map_update_elem(in->map_fd[BSTEER_MAP_RING_CLAIM], &tid, &id,
				  BPF_ANY);
	if (err) {
		err = -errno;
		bsteer_set_err("cannot claim ring %u: %s", id, strerror(-err));
		goto fail;
	}
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_CQSIZE;
	p.cq_entries = CQ_ENTRIES;
	err = io_uring_queue_init_params(SQ_ENTRIES, &e->ring, &p);
	bpf_map_delete_elem(in->map_fd[BSTEER_MAP_RING_CLAIM], &tid);
	if (err) {
		bsteer_set_err("cannot create an io_uring with SINGLE_ISSUER|DEFER_TASKRUN: %s",
			       strerror(-err));
		goto fail;
	}
	e->ring_ok = true;
	if (!r->ctx) {
		err = -ENOENT;
		bsteer_set_err("the io_uring_create hook did not see ring %u", id);
		goto fail;
	}
	r->active = 1;

	/* Slot i of the pool is fixed buffer i of this ring. */
	iov = calloc(in->nslots, sizeof(*iov));
	if (!iov) {
		err = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < in->nslots; i++) {
		iov[i].iov_base = bsteer_slot_data(in, i) - BSTEER_SLOT_HEADROOM;
		iov[i].iov_len = BSTEER_SLOT_HEADROOM + in->slot_size;
	}
	err = io_uring_register_buffers(&e->ring, iov, in->nslots);
	free(iov);
	if (err) {
		bsteer_set_err("cannot register %u slots of %u bytes as fixed buffers: %s",
			       in->nslots, in->slot_size, strerror(-err));
		goto fail;
	}
	return 0;
fail:
	bsteer_engine_fini(e);
	return err;
}

int bsteer_engine_files(struct bsteer_engine *e, const int *targets,
			__u32 ntargets, const int *frontend, __u32 nfrontend)
{
	enum { NFILES = BSTEER_MAX_TARGETS + BSTEER_FRONTEND_FILES };
	int *fds;
	__u32 i;
	int err;

	if (ntargets > BSTEER_MAX_TARGETS || nfrontend > BSTEER_FRONTEND_FILES)
		return -EINVAL;
	fds = malloc(NFILES * sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	for (i = 0; i < NFILES; i++)
		fds[i] = -1;
	for (i = 0; i < ntargets; i++)
		fds[i] = targets[i];
	for (i = 0; i < nfrontend; i++)
		fds[BSTEER_FRONTEND_FILE(i)] = frontend[i];
	e->ntargets = ntargets;
	for (i = 0; i < ntargets; i++)
		inl_open(e, i, targets[i]);
	err = io_uring_register_files(&e->ring, fds, NFILES);
	free(fds);
	if (err)
		bsteer_set_err("cannot register files: %s", strerror(-err));
	return err;
}

int bsteer_engine_target_file(struct bsteer_engine *e, __u32 t, int fd)
{
	int err;

	if (t >= e->ntargets)
		return -EINVAL;
	err = io_uring_register_files_update(&e->ring, t, &fd, 1);
	if (err < 0)
		return err;
	inl_open(e, t, fd);	/* the new file's own kind decides */
	return 0;
}

int bsteer_engine_frontend_file(struct bsteer_engine *e, __u32 k, int fd)
{
	int err;

	if (k >= BSTEER_FRONTEND_FILES)
		return -EINVAL;
	err = io_uring_register_files_update(&e->ring, BSTEER_FRONTEND_FILE(k),
					     &fd, 1);
	return err < 0 ? err : 0;
}

void bsteer_engine_fini(struct bsteer_engine *e)
{
	if (!e->in)		/* never initialised */
		return;
	if (e->ring_ok) {
		struct bsteer_ring *r = &e->in->rings[e->id];

		/* The kernel may hand this ctx address to someone else's ring. */
		if (r->ctx)
			bpf_map_delete_elem(e->in->map_fd[BSTEER_MAP_RING_CTX],
					    &r->ctx);
		r->active = 0;
		r->ctx = 0;
		io_uring_queue_exit(&e->ring);
		e->ring_ok = false;
	}
	upstream_fini(e);
	pipes_close(e);
	if (e->twin_fd >= 0)
		close(e->twin_fd);
	e->twin_fd = -1;
	free(e->req_stack);
	free(e->submitted);
	free(e->req_state);
	free(e->req_keep);
	free(e->req_slot);
	free(e->req_issued);
	free(e->slot);
	free(e->op);
	e->req_stack = NULL;
	e->submitted = NULL;
	e->req_state = NULL;
	e->req_keep = NULL;
	e->req_slot = NULL;
	e->req_issued = NULL;
	e->slot = NULL;
	e->op = NULL;
}
