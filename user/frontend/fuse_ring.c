// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The FUSE frontend, a worker's part. Each of its ring entries owns a slot
 * (bsteer_slot_own) as its payload and a header entry in "fe_hdr"; the
 * worker registers them on the queues of its CPUs (queue q % workers).
 *
 * A request arrives as the completion of the entry's uring_cmd; by then
 * the BPF parser has turned its header into a block request (fe_req). A
 * READ, WRITE, FSYNC, FLUSH or FALLOCATE becomes a bsteer request that the
 * policy steers, on the entry's own slot: a WRITE's data is already there
 * (the arrival says how much), a READ's is read there by the targets. The
 * reply is committed (COMMIT_AND_FETCH, which also fetches the next
 * request) once the request is done and the slot's last op is back, so
 * the kernel never writes a payload an op still reads. The rest (LOOKUP,
 * GETATTR, ...) is answered here at once (fuse_answer.c).
 *
 * With --fuse-transport=dev, worker 0 reads requests from /dev/fuse
 * instead, into the same header layout, runs the parser's twin on them,
 * copies a WRITE's data into a leased slot and writes the reply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "frontend/fuse_priv.h"
#include "fuse.skel.h"

static struct fuse_uring_req_header *ent_hdr(struct fusew *w, const struct fent *en)
{
	return (void *)bsteer_hdr(w->in, w->ring, w->fe->hdr_base + en->idx);
}

/* Where a request's payload and its reply's arguments are. */
static unsigned char *ent_payload(struct fusew *w, const struct fent *en)
{
	return en->slot == BSTEER_NO_SLOT ? w->devout : bsteer_slot_data(w->in, en->slot);
}

static const struct bsteer_blkreq *ent_parsed(struct fusew *w, const struct fent *en)
{
	return &w->in->fe_req[bsteer_hdr_index(w->ring, w->fe->hdr_base + en->idx)];
}

static __u64 ent_ud(struct fusew *w, struct fent *en)
{
	return bsteer_parse_ud(w->fe->id, w->ring, w->fe->hdr_base + en->idx, ++en->seq);
}

/* REGISTER or COMMIT_AND_FETCH: the entry waits in the kernel again. */
static int ent_cmd(struct fusew *w, struct fent *en, __u32 cmd_op)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(w->e);
	struct fuse_uring_cmd_req *cr;

	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, 128);		/* a 128-byte SQE, the command area too */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = w->sh->fd;
	sqe->cmd_op = cmd_op;
	if (cmd_op == FUSE_IO_URING_CMD_REGISTER) {
		sqe->addr = (unsigned long)en->iov;
		sqe->len = 2;
	}
	cr = (struct fuse_uring_cmd_req *)sqe->cmd;
	cr->qid = en->qid;
	cr->commit_id = cmd_op == FUSE_IO_URING_CMD_COMMIT_AND_FETCH ? en->commit_id : 0;
	io_uring_sqe_set_data64(sqe, ent_ud(w, en));
	en->state = FENT_KERNEL;
	return 0;
}

/* ---- replies ---- */

static void dev_reply(struct fusew *w, struct fent *en, int err, __u32 n);
static void dev_request(struct fusew *w, __u32 n);

/* The reply: @n bytes of arguments at the payload's start, or @err. */
static void reply(struct fusew *w, struct fent *en, int err, __u32 n)
{
	struct fuse_uring_req_header *h = ent_hdr(w, en);
	struct fuse_out_header *oh = (void *)h->in_out;

	if (err) {
		n = 0;
		fuse_count(w, FUSE_C_ERRORS, 1);
	}
	w->busy--;
	en->req = BSTEER_NO_SLOT;
	if (!w->sh->ring) {
		dev_reply(w, en, err, n);
		return;
	}
	oh->len = sizeof(*oh) + n;
	oh->error = err < 0 && err > -4096 ? err : err ? -EIO : 0;
	oh->unique = en->unique;
	h->ring_ent_in_out.payload_sz = n;
	if (ent_cmd(w, en, FUSE_IO_URING_CMD_COMMIT_AND_FETCH)) {
		en->state = FENT_DEAD;	/* cannot happen after a submit */
		serve_err(w->s, "fuse: no SQE to commit a reply; an entry is lost");
	}
}

/* The policy is done and the slot's last op is back: reply. */
static void finish(struct fusew *w, struct fent *en)
{
	struct fuse_write_out *wo = (void *)ent_payload(w, en);

	if (en->err) {
		reply(w, en, en->err, 0);
	} else if (en->opcode == FUSE_READ) {
		fuse_count(w, FUSE_C_BYTES_READ, en->len);
		reply(w, en, 0, en->len);
	} else if (en->opcode == FUSE_WRITE) {
		/* Over the data, which every leg has by now. */
		fuse_count(w, FUSE_C_BYTES_WRITTEN, en->len);
		memset(wo, 0, sizeof(*wo));
		wo->size = en->len;
		reply(w, en, 0, sizeof(*wo));
	} else {
		reply(w, en, 0, 0);
	}
}

static void ent_released(void *arg, __u32 slot)
{
	struct fent *en = arg;

	(void)slot;
	en->released = true;
	if (en->done)
		finish(en->w, en);
}

/* ---- requests ---- */

static int dev_lease(struct fusew *w, struct fent *en, __u32 r, __u8 type);

static void wait_push(struct fusew *w, struct fent *en)
{
	en->state = FENT_WAITING;
	en->next_wait = NULL;
	if (w->wait_tail)
		w->wait_tail->next_wait = en;
	else
		w->wait_head = en;
	w->wait_tail = en;
}

/* A block request on export @ex: the engine's, on the entry's slot. */
static void start_request(struct fusew *w, struct fent *en,
			  const struct bsteer_export *ex, __u8 type, __u64 off,
			  __u32 len)
{
	bool data = type == BSTEER_REQ_READ || type == BSTEER_REQ_WRITE;
	__u32 r;
	int err;

	err = bsteer_req_alloc(w->e, w->fe->owner, type, off, len, &r);
	if (err == -EBUSY && !w->sh->ring) {	/* devbuf holds it: read no more */
		w->busy--;
		en->state = FENT_KERNEL;
		w->dev_held = true;
		return;
	}
	if (err == -EBUSY) {	/* no record free: tick() tries again */
		wait_push(w, en);
		return;
	}
	if (err)
		goto fail;
	bsteer_req_set_legs(w->e, r, ex->tbase, ex->ntargets);
	if (type == BSTEER_REQ_WRITE_ZEROES)
		w->in->reqs[r].flags |= BSTEER_REQF_NO_HOLE;
	en->req = r;
	en->len = len;
	en->done = false;
	en->released = !data;
	if (data && w->sh->ring)
		err = bsteer_slot_lease_owned(w->e, r, en->slot, ent_released, en);
	else if (data)
		err = dev_lease(w, en, r, type);
	if (err)
		goto abandon;
	w->by_req[bsteer_engine_req_index(w->e, r)] = en;
	err = bsteer_frontend_op(w->e, r, BSTEER_OP_NOP, 0, BSTEER_NO_SLOT,
				 type == BSTEER_REQ_WRITE ? len : 0, 0);
	if (!err)
		return;
	w->by_req[bsteer_engine_req_index(w->e, r)] = NULL;
abandon:
	bsteer_req_abandon(w->e, r);
fail:
	serve_err(w->s, "fuse: cannot start a request: %s", strerror(-err));
	reply(w, en, -EIO, 0);
}

static const int by_type[] = {
	[BSTEER_REQ_READ] = FUSE_C_READS,
	[BSTEER_REQ_WRITE] = FUSE_C_WRITES,
	[BSTEER_REQ_FLUSH] = FUSE_C_FLUSHES,
	[BSTEER_REQ_TRIM] = FUSE_C_DISCARDS,
	[BSTEER_REQ_WRITE_ZEROES] = FUSE_C_ZEROES,
};

/*
 * A parsed request: check what needs the export (which file, its size,
 * read-only), then to the engine; or answer it here.
 */
static void on_request(struct fusew *w, struct fent *en, const struct bsteer_blkreq *p)
{
	struct fuse_uring_req_header *h = ent_hdr(w, en);
	const struct fuse_in_header *in = (const void *)h->in_out;
	struct bsteer_export *ex = fuse_export(w->s, in->nodeid);
	__u64 off = p->offset;
	__u32 len = p->len;
	int n;

	if (p->error) {
		reply(w, en, p->error, 0);
		return;
	}
	if (p->type == BSTEER_REQ_NONE) {
		fuse_count(w, FUSE_C_OTHER, 1);
		n = fuse_answer(w->s, w->sh, in->opcode, in->nodeid, h->op_in,
				ent_payload(w, en), h->ring_ent_in_out.payload_sz,
				ent_payload(w, en), w->in->slot_size);
		reply(w, en, n < 0 ? n : 0, n < 0 ? 0 : n);
		return;
	}
	fuse_count(w, by_type[p->type], 1);
	if (!ex) {		/* a flush of the root, say: nothing of ours */
		reply(w, en, p->type == BSTEER_REQ_FLUSH ? 0 : -EBADF, 0);
		return;
	}
	if (p->type != BSTEER_REQ_FLUSH) {
		if (ex->rdonly && p->type != BSTEER_REQ_READ) {
			reply(w, en, -EROFS, 0);
			return;
		}
		if (off >= ex->size || len > ex->size - off) {
			/* A read past the end reads up to it; nothing else may. */
			if (p->type != BSTEER_REQ_READ || off >= ex->size) {
				reply(w, en, p->type == BSTEER_REQ_READ ? 0 : -ENOSPC, 0);
				return;
			}
			len = ex->size - off;
		}
	}
	start_request(w, en, ex, p->type, off, len);
}

/* Entry @en holds a request (its uring_cmd completed with @res). */
static void ent_delivered(struct fusew *w, struct fent *en, __u64 ud, int res)
{
	struct fuse_uring_req_header *h = ent_hdr(w, en);
	const struct fuse_in_header *in = (const void *)h->in_out;
	const struct bsteer_blkreq *p = ent_parsed(w, en);

	if (res < 0) {		/* unmounted, aborted, or the ring is going */
		if (res != -ENOTCONN && res != -ECANCELED && !w->stopping)
			serve_err(w->s, "fuse: queue %u entry %u: %s", en->qid, en->idx,
				  strerror(-res));
		en->state = FENT_DEAD;
		return;
	}
	if (__atomic_load_n(&p->stamp, __ATOMIC_ACQUIRE) != ud &&
	    (bsteer_parse_fallback(w->in, ud, res) ||
	     __atomic_load_n(&p->stamp, __ATOMIC_ACQUIRE) != ud)) {
		serve_err(w->s, "fuse: the request parser did not answer");
		en->state = FENT_DEAD;
		return;
	}
	en->state = FENT_BUSY;
	en->unique = in->unique;
	en->opcode = in->opcode;
	en->commit_id = h->ring_ent_in_out.commit_id;
	en->err = 0;
	w->busy++;
	fuse_count(w, FUSE_C_REQUESTS, 1);
	on_request(w, en, p);
}

static void fuse_complete(struct bsteer_fe *fe, __u32 r, int err)
{
	struct fusew *w = fe->priv;
	struct fent **slot = &w->by_req[bsteer_engine_req_index(w->e, r)];
	struct fent *en = *slot;

	if (!en)
		return;
	*slot = NULL;
	en->err = err;
	en->done = true;
	if (en->released)
		finish(w, en);
}

static void fuse_op_done(struct bsteer_fe *fe, __u32 r, __u32 op, int res)
{
	(void)fe;
	(void)r;
	(void)op;
	(void)res;	/* the arrival NOP: nothing of ours rides on it */
}

/* ---- /dev/fuse ---- */

/* Read the next request from /dev/fuse (worker 0). */
static void dev_arm(struct fusew *w)
{
	struct io_uring_sqe *sqe;

	if (w->dev_armed || w->dev_held || w->sh->fd < 0)
		return;
	sqe = bsteer_engine_sqe(w->e);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, w->sh->fd, w->devbuf, FUSE_DEV_BUF, 0);
	io_uring_sqe_set_data64(sqe, fuse_ud_dev(w));
	w->dev_armed = true;
}

/* A reply on /dev/fuse: the header, then @n bytes of arguments. */
static void dev_write(struct fusew *w, __u64 unique, int err, const void *args,
		      __u32 n)
{
	struct fuse_out_header oh = {
		.len = sizeof(oh) + n, .error = err, .unique = unique,
	};
	struct iovec v[2] = { { &oh, sizeof(oh) }, { (void *)args, n } };

	/* ENOENT: the request was interrupted and is gone; nothing to do. */
	if (writev(w->sh->fd, v, n ? 2 : 1) < 0 && errno != ENOENT)
		serve_log(w->s, "fuse: cannot write a reply: %s", strerror(errno));
}

/* The dev transport's reply: written, and the entry free for another. */
static void dev_reply(struct fusew *w, struct fent *en, int err, __u32 n)
{
	dev_write(w, en->unique, err < 0 && err > -4096 ? err : err ? -EIO : 0,
		  ent_payload(w, en), n);
	en->slot = BSTEER_NO_SLOT;
	en->state = FENT_KERNEL;
	if (w->dev_held) {	/* a request waited for this entry */
		w->dev_held = false;
		dev_request(w, w->dev_len);
	}
	dev_arm(w);
}

/* With the dev transport, a data request's slot comes from the pool. */
static int dev_lease(struct fusew *w, struct fent *en, __u32 r, __u8 type)
{
	const struct fuse_in_header *in = (const void *)w->devbuf;
	int err = bsteer_slot_lend(w->e, r, ent_released, en, &en->slot);

	/* WRITE's data follows its fuse_write_in: one copy, into the slot. */
	if (!err && type == BSTEER_REQ_WRITE)
		memcpy(bsteer_slot_data(w->in, en->slot),
		       (const char *)(in + 1) + sizeof(struct fuse_write_in), en->len);
	return err;
}

/* A free entry for a request read from /dev/fuse, or NULL. */
static struct fent *dev_entry(struct fusew *w)
{
	__u32 i;

	for (i = 0; i < w->nent; i++)
		if (w->ent[i].state == FENT_KERNEL)
			return &w->ent[i];
	return NULL;
}

/*
 * A request of @n bytes in devbuf, as the ring would deliver it: the
 * in-header and first argument into the entry's header area, where the
 * parser's twin reads them.
 */
static void dev_request(struct fusew *w, __u32 n)
{
	const struct fuse_in_header *in = (const void *)w->devbuf;
	struct fuse_uring_req_header *h;
	struct fent *en = dev_entry(w);
	__u32 arg = n - sizeof(*in);
	__u64 ud;

	if (!en) {
		w->dev_held = true;
		w->dev_len = n;
		return;
	}
	h = ent_hdr(w, en);
	memcpy(h->in_out, in, sizeof(*in));
	memcpy(h->op_in, in + 1, arg < sizeof(h->op_in) ? arg : sizeof(h->op_in));
	/* As the ring lays it out: a WRITE's data, a LOOKUP's name in the payload. */
	if (in->opcode == FUSE_WRITE && arg >= sizeof(struct fuse_write_in))
		h->ring_ent_in_out.payload_sz = arg - sizeof(struct fuse_write_in);
	else if (in->opcode == FUSE_LOOKUP)
		h->ring_ent_in_out.payload_sz = arg < 4096 ? arg : 4096;
	else
		h->ring_ent_in_out.payload_sz = 0;
	if (in->opcode == FUSE_LOOKUP)
		memcpy(w->devout, in + 1, h->ring_ent_in_out.payload_sz);
	ud = ent_ud(w, en);
	en->slot = BSTEER_NO_SLOT;
	ent_delivered(w, en, ud, 0);
}

/* What came over /dev/fuse: the dev transport's requests, and what stays there. */
static void dev_cqe(struct fusew *w, int res)
{
	const struct fuse_in_header *in = (const void *)w->devbuf;
	int n;

	w->dev_armed = false;
	if (res < 0) {		/* ENODEV: unmounted and aborted */
		if (res != -ENODEV && res != -ECANCELED && !w->stopping)
			serve_log(w->s, "fuse: reading /dev/fuse: %s", strerror(-res));
		if (res != -EINTR && res != -EAGAIN)
			return;
	} else if (res >= (int)sizeof(*in)) {
		switch (in->opcode) {
		case FUSE_FORGET:
		case FUSE_BATCH_FORGET:
		case FUSE_INTERRUPT:	/* ours end soon anyway */
			break;
		default:
			if (!w->sh->ring) {
				dev_request(w, res);
				break;
			}
			/* The ring's queues were not ready: answer it here. */
			n = fuse_answer(w->s, w->sh, in->opcode, in->nodeid, in + 1,
					in + 1, res - sizeof(*in), w->devout, 65536);
			dev_write(w, in->unique, n < 0 ? n : 0, w->devout, n < 0 ? 0 : n);
		}
	}
	dev_arm(w);
}

/* ---- the ops ---- */

static void fuse_cqe(struct bsteer_fe *fe, const struct io_uring_cqe *cqe)
{
	struct fusew *w = fe->priv;
	__u64 ud = cqe->user_data;
	__u32 idx;

	if (!bsteer_parse_ud_is(ud)) {
		if (ud == fuse_ud_dev(w))
			dev_cqe(w, cqe->res);
		return;
	}
	idx = bsteer_parse_ud_conn(ud) - w->fe->hdr_base;
	if (bsteer_parse_ud_ring(ud) != w->ring || idx >= w->nent)
		return;
	ent_delivered(w, &w->ent[idx], ud, cqe->res);
}

/* The ring entries on this worker's queues, each with a slot of its own. */
static int entries_register(struct fusew *w)
{
	__u32 threads = w->in->nrings, q, k, i = 0;
	int err;

	for (q = w->ring; q < w->sh->nqueues; q += threads) {
		for (k = 0; k < w->conf->depth; k++, i++) {
			struct fent *en = &w->ent[i];
			struct fuse_uring_req_header *h = ent_hdr(w, en);

			en->qid = q;
			err = bsteer_slot_own(w->e, &en->slot);
			if (err) {
				bsteer_set_err("fuse: no slot for queue %u entry %u (--slots)",
					       q, k);
				return err;
			}
			en->iov[0] = (struct iovec){ h, sizeof(*h) };
			en->iov[1] = (struct iovec){ ent_payload(w, en), w->in->slot_size };
			bsteer_engine_reserve(w->e, 1);
			err = ent_cmd(w, en, FUSE_IO_URING_CMD_REGISTER);
			if (err)
				return err;
		}
	}
	return 0;
}

static int fuse_start(struct bsteer_fe *fe)
{
	struct fusew *w = calloc(1, sizeof(*w));
	__u32 i, threads;

	if (!w)
		return -ENOMEM;
	fe->priv = w;
	w->fe = fe;
	w->s = fe->s;
	w->e = fe->s->e;
	w->in = fe->s->in;
	w->conf = fe->conf;
	w->sh = fe->shared;
	w->ring = fe->s->ring;
	threads = w->in->nrings;
	/* The dev transport: worker 0 alone, depth requests at a time. */
	if (!w->sh->ring)
		w->nent = w->ring ? 0 : w->conf->depth;
	else if (w->ring < w->sh->nqueues)
		w->nent = ((w->sh->nqueues - w->ring + threads - 1) / threads) *
			  w->conf->depth;
	if (w->nent > FUSE_MAX_ENTRIES)
		return bsteer_set_err("fuse: %u entries on a ring, more than %u",
				      w->nent, FUSE_MAX_ENTRIES), -E2BIG;
	w->ent = calloc(w->nent ?: 1, sizeof(*w->ent));
	w->by_req = calloc(bsteer_engine_reqs(w->e), sizeof(*w->by_req));
	w->devout = malloc(65536);
	if (!w->ent || !w->by_req || !w->devout)
		return -ENOMEM;
	for (i = 0; i < w->nent; i++) {
		w->ent[i].w = w;
		w->ent[i].idx = i;
		w->ent[i].slot = BSTEER_NO_SLOT;
		w->ent[i].req = BSTEER_NO_SLOT;
	}
	if (!w->ring) {
		w->devbuf = malloc(FUSE_DEV_BUF);
		if (!w->devbuf)
			return -ENOMEM;
		dev_arm(w);
	}
	return w->sh->ring ? entries_register(w) : 0;
}

/* Entries that found no request record free try again. */
static void fuse_tick(struct bsteer_fe *fe)
{
	struct fusew *w = fe->priv;
	struct fent *en;

	while ((en = w->wait_head) && bsteer_reqs_free(w->e)) {
		w->wait_head = en->next_wait;
		if (!w->wait_head)
			w->wait_tail = NULL;
		en->state = FENT_BUSY;
		on_request(w, en, ent_parsed(w, en));
	}
	if (w->dev_held && bsteer_reqs_free(w->e) && dev_entry(w)) {
		w->dev_held = false;
		dev_request(w, w->dev_len);
		dev_arm(w);
	}
}

/* New requests still come (the loops' last flush among them): they are served. */
static void fuse_stop(struct bsteer_fe *fe)
{
	struct fusew *w = fe->priv;

	w->stopping = true;
}

static bool fuse_idle(struct bsteer_fe *fe)
{
	struct fusew *w = fe->priv;

	return !w->busy && !w->wait_head && !w->dev_held;
}

static void fuse_fini(struct bsteer_fe *fe)
{
	struct fusew *w = fe->priv;

	if (!w)
		return;
	free(w->ent);
	free(w->by_req);
	free(w->devbuf);
	free(w->devout);
	free(w);
	fe->priv = NULL;
}

static const void *fuse_parser(size_t *sz)
{
	return fuse_bpf__elf_bytes(sz);
}

static const char *const fuse_counters[] = {
	[FUSE_C_REQUESTS]	= "fuse_requests",
	[FUSE_C_READS]		= "fuse_reads",
	[FUSE_C_WRITES]		= "fuse_writes",
	[FUSE_C_FLUSHES]	= "fuse_flushes",
	[FUSE_C_DISCARDS]	= "fuse_discards",
	[FUSE_C_ZEROES]		= "fuse_write_zeroes",
	[FUSE_C_OTHER]		= "fuse_other",
	[FUSE_C_ERRORS]		= "fuse_errors",
	[FUSE_C_BYTES_READ]	= "fuse_bytes_read",
	[FUSE_C_BYTES_WRITTEN]	= "fuse_bytes_written",
	NULL,
};

const struct bsteer_frontend_ops fuse_frontend = {
	.name = "fuse",
	.parser = fuse_parser,
	.counters = fuse_counters,
	.hdr_entries = FUSE_MAX_ENTRIES,
	.sqe128 = true,
	.check = fuse_check,
	.setup = fuse_setup,
	.teardown = fuse_teardown,
	.ready = fuse_ready,
	.quiesce = fuse_quiesce,
	.start = fuse_start,
	.cqe = fuse_cqe,
	.complete = fuse_complete,
	.op_done = fuse_op_done,
	.tick = fuse_tick,
	.stop = fuse_stop,
	.idle = fuse_idle,
	.fini = fuse_fini,
};
