// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * NBD requests: each header is received into map memory, where the BPF
 * parser at the completion hook turns it into a generic request; here it
 * is checked again against the export and started as one bsteer request
 * per part (per slot), which the policy steers. A WRITE's payload is
 * received straight into its slots, the next header linked behind it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "frontend/nbd_priv.h"

static int recv_part(struct nbd *n, struct io *io);

/* Bytes of a request one part (one slot) carries on this export. */
static __u32 part_size(struct nbd *n, const struct bsteer_export *ex)
{
	return ex->part_max ? ex->part_max : n->in->slot_size;
}

/* One client holds at most half the ring's slots (see start_io). */
static __u32 conn_slot_quota(struct nbd *n)
{
	return n->nslots / 2 ?: 1;
}

/* The largest round of a READ or WRITE: what a client's share of the slots holds. */
__u32 nbd_round_max(struct nbd *n, const struct bsteer_export *ex)
{
	__u32 parts = conn_slot_quota(n) < MAX_PARTS ? conn_slot_quota(n) : MAX_PARTS;

	return parts * part_size(n, ex);
}

static __u32 max_request(const struct nbd *n)
{
	return n->conf && n->conf->max_request ? n->conf->max_request : NBD_DEF_MAX_REQUEST;
}

/*
 * The maximum payload we advertise: one round, the most that goes at
 * once. Larger requests, up to --max-request, are served too, in rounds.
 */
__u32 nbd_max_io(struct nbd *n, const struct bsteer_export *ex)
{
	__u32 round = nbd_round_max(n, ex);

	return round < max_request(n) ? round : max_request(n);
}

static void prep_header(struct nbd *n, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->tls) {
		/*
		 * Decrypted into the same map memory; the completion is posted
		 * with the receive's user_data and result, so the hook's parser
		 * takes it as it takes a plain receive's.
		 */
		c->hdr_armed = true;
		tls_stream_recv(c->tls, bsteer_hdr(n->in, n->ring, nbd_hconn(n, c->idx)),
				NBD_REQUEST_LEN, TLS_RECV_ALL,
				bsteer_parse_ud(n->fe->id, n->ring, nbd_hconn(n, c->idx),
						++c->hdr_seq));
		return;
	}
	sqe = bsteer_engine_sqe(n->e);
	if (!sqe) {
		c->closing = true;	/* cannot happen after the reserve */
		return;
	}
	/* Into map memory, where the hook's parser reads it in place. */
	io_uring_prep_recv(sqe, BSTEER_FRONTEND_FILE(c->idx),
			   bsteer_hdr(n->in, n->ring, nbd_hconn(n, c->idx)),
			   NBD_REQUEST_LEN,
			   MSG_WAITALL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, bsteer_parse_ud(n->fe->id, n->ring,
						     nbd_hconn(n, c->idx), ++c->hdr_seq));
	c->hdr_armed = true;
}

void nbd_arm_header(struct nbd *n, struct conn *c)
{
	if (c->closing || c->hdr_armed || c->hdr_waiting || c->payload || c->stalled ||
	    c->cont)
		return;
	if (c->reqs >= CONN_MAX_REQS) {
		c->capped = true;	/* reply_done arms it again */
		return;
	}
	bsteer_engine_reserve(n->e, 1);
	prep_header(n, c);
}

/*
 * May the next header's receive go right behind a payload receive, linked?
 * Otherwise the payload's completion arms it, or not.
 */
static bool header_may_follow(const struct conn *c)
{
	return !c->closing && !c->hdr_armed && !c->stalled && !c->cont &&
	       c->reqs < CONN_MAX_REQS;
}

static void stall(struct nbd *n, struct conn *c,
		  const struct bsteer_blkreq *p)
{
	c->pending = *p;
	if (!c->stalled) {
		c->stalled = true;
		n->nstalled++;
	}
}

/*
 * The bsteer requests of the @nparts parts of @io's round, each with a
 * slot of its own for READ and WRITE. 0, or -errno with every part given
 * back.
 */
static int io_parts(struct nbd *n, struct io *io, __u32 nparts, __u32 part)
{
	const struct bsteer_export *ex = io->c->ex;
	bool data = io->cmd == NBD_CMD_READ || io->cmd == NBD_CMD_WRITE;
	__u32 i, slot, r;
	int err = 0;

	io->nparts = 0;
	for (i = 0; i < nparts; i++) {
		__u64 off = io->offset + (__u64)i * part;
		__u32 len = data ? (io->len - i * part < part ? io->len - i * part : part) :
			    io->len;

		/* A refused WRITE's payload is still received, and dropped. */
		err = bsteer_req_alloc(n->e, io->c->tls ? n->fe->owner_nopipe : n->fe->owner,
				       io->rtype, off, len, &r);
		if (err)
			break;
		io->req[i] = r;
		io->nparts = i + 1;
		bsteer_req_set_legs(n->e, r, ex->tbase, ex->ntargets);
		n->in->reqs[r].flags |= BSTEER_REQF_EXACT |
			((io->flags & NBD_CMD_FLAG_FUA) ? BSTEER_REQF_FUA : 0) |
			((io->flags & NBD_CMD_FLAG_NO_HOLE) ? BSTEER_REQF_NO_HOLE : 0);
		/* Nothing of this index's earlier life may leak into this one. */
		memset(rinfo(n, r), 0, sizeof(struct req_info));
		rinfo(n, r)->io = io;
		if (data && (err = bsteer_slot_lease(n->e, r, &slot)))
			break;
	}
	if (!err)
		return 0;
	for (i = 0; i < io->nparts; i++) {
		rinfo(n, io->req[i])->io = NULL;
		bsteer_req_abandon(n->e, io->req[i]);
	}
	io->nparts = 0;
	return err;
}

/* A round's parts are ready: receive its payload, or send them on. */
static void round_go(struct nbd *n, struct io *io)
{
	struct conn *c = io->c;
	__u32 i;
	int err = 0;

	if (io->cmd == NBD_CMD_WRITE) {
		err = recv_part(n, io);
	} else {
		/* The request is all in the header: a NOP brings it to the policy. */
		for (i = 0; !err && i < io->nparts; i++)
			err = bsteer_frontend_op(n->e, io->req[i], BSTEER_OP_NOP, 0,
						 BSTEER_NO_SLOT, 0, 0);
		nbd_arm_header(n, c);
	}
	if (err)
		nbd_conn_fail(n, c, "cannot start a request");
}

/*
 * The parts of @io's next round, right after the last: as much of the
 * rest as a round takes, or as the free slots and records hold. 0, or
 * -EAGAIN if none are free now.
 */
static int round_next(struct nbd *n, struct io *io)
{
	struct conn *c = io->c;
	__u32 part = part_size(n, c->ex), max = nbd_round_max(n, c->ex);
	__u64 off = io->offset + io->len, left = io->req_off + io->req_len - off;
	__u64 avail = bsteer_slots_free(n->e) < bsteer_reqs_free(n->e) ?
		      bsteer_slots_free(n->e) : bsteer_reqs_free(n->e);
	__u64 was_off = io->offset;
	__u32 len = left < max ? left : max, was_len = io->len;

	if (avail * part < len)
		len = avail * part;
	if (!len)
		return -EAGAIN;
	io->offset = off;
	io->len = len;
	io->done = 0;
	io->recv_next = 0;
	if (io->nbd_error)	/* the rest of a refused WRITE is only drained */
		io->rtype = BSTEER_REQ_NONE;
	if (io_parts(n, io, (len + part - 1) / part, part)) {
		io->offset = was_off;
		io->len = was_len;
		return -EAGAIN;
	}
	io->nslots = io->nparts;
	c->slots += io->nslots;
	/* The last round: the next request may follow it. */
	if (!io_more(io))
		c->cont = NULL;
	return 0;
}

/*
 * The next round of @io: now, or when slots free up (the tick calls
 * nbd_resume). Its own share was given back, so only other clients'
 * requests can hold it up. A connection that is closing drops the rest.
 */
static void round_continue(struct nbd *n, struct io *io)
{
	struct conn *c = io->c;

	if (c->closing) {
		c->reqs--;
		nbd_io_free(n, io);
		nbd_conn_maybe_close(n, c);
		return;
	}
	if (round_next(n, io)) {
		if (!c->stalled) {
			c->stalled = true;
			n->nstalled++;
		}
		return;
	}
	round_go(n, io);
}

/* A stalled connection may go on: its next round, or its waiting header. */
void nbd_resume(struct nbd *n, struct conn *c)
{
	if (c->cont) {
		round_continue(n, c->cont);
		return;
	}
	if (c->closing) {
		nbd_conn_maybe_close(n, c);
		return;
	}
	nbd_on_header(n, c, &c->pending);
	nbd_arm_header(n, c);
}

/* A READ round's data went out and rounds remain: read the next. */
void nbd_round_sent(struct nbd *n, struct io *io)
{
	__u32 i;

	for (i = 0; i < io->nparts; i++)
		bsteer_req_put(n->e, io->req[i]);
	io->nparts = 0;
	io->c->slots -= io->nslots;
	io->nslots = 0;
	io->replied = true;
	/* Nothing else may go out until the rest of this reply has. */
	io->c->mid_reply = io;
	round_continue(n, io);
}

/*
 * Start a client request: one bsteer request per part, each with its own
 * slot for READ and WRITE. With too few slots or request records free,
 * keep the header and read nothing more from this client until there are.
 */
static void start_io(struct nbd *n, struct conn *c,
		     const struct bsteer_blkreq *p, __u32 nerr, __u8 rtype)
{
	bool data = p->cmd == NBD_CMD_READ || p->cmd == NBD_CMD_WRITE;
	__u32 part = part_size(n, c->ex), len = p->len, nparts;
	struct io *io;

	if (data && len > nbd_round_max(n, c->ex))
		len = nbd_round_max(n, c->ex);	/* the first round */
	nparts = data ? (len + part - 1) / part : 1;
	if (!nparts || nparts > MAX_PARTS) {
		nbd_conn_fail(n, c, "request size out of bounds");
		return;
	}
	if (bsteer_reqs_free(n->e) < nparts ||
	    (data && bsteer_slots_free(n->e) < nparts)) {
		stall(n, c, p);
		return;
	}
	/*
	 * One client holds at most half the ring's slots (one request of the
	 * largest size always fits), so that a client that does not read its
	 * replies cannot starve the others: it waits for its own slots.
	 */
	if (data && c->slots && c->slots + nparts > conn_slot_quota(n)) {
		stall(n, c, p);
		return;
	}
	io = nbd_io_new(n);
	if (!io) {
		nbd_conn_fail(n, c, "out of memory for a request");
		return;
	}
	io->c = c;
	io->cookie = p->cookie;
	io->offset = io->req_off = p->offset;
	io->len = len;
	io->req_len = p->len;
	io->flags = p->flags;
	io->cmd = p->cmd;
	io->rtype = nerr ? BSTEER_REQ_NONE : rtype;
	io->nbd_error = nerr;
	if (io_parts(n, io, nparts, part)) {
		/* Free by count, a last completion not yet reaped: wait. */
		nbd_io_put(n, io);
		stall(n, c, p);
		return;
	}
	c->reqs++;
	io->nslots = data ? nparts : 0;
	c->slots += io->nslots;
	if (io_more(io))
		c->cont = io;
	round_go(n, io);
}

/*
 * The minimum block size advertised (NBD_INFO_BLOCK_SIZE): ours, raised
 * to any leg's own (an NBD upstream that said so).
 */
__u32 nbd_export_min_block(const struct bsteer_export *ex)
{
	__u32 need = MIN_BLOCK, i;

	for (i = 0; i < ex->ntargets; i++)
		if (ex->leg[i].min_block > need)
			need = ex->leg[i].min_block;
	return need;
}

/*
 * The preferred block size advertised: 4096, or more if the minimum or a
 * leg's own best alignment (cache=none: its O_DIRECT alignment) is more.
 * Only a hint: a client off it is still served (by the leg's slow path).
 */
__u32 nbd_export_pref_block(const struct bsteer_export *ex, __u32 min)
{
	__u32 pref = min > 4096 ? min : 4096, i;

	for (i = 0; i < ex->ntargets; i++)
		if (ex->leg[i].pref_block > pref)
			pref = ex->leg[i].pref_block;
	return pref;
}

/*
 * The alignment a client is held to. One that asked for the block sizes
 * (GO with NBD_INFO_BLOCK_SIZE) was told nbd_export_min_block() and must
 * keep to it; one that did not (EXPORT_NAME, or GO without asking) gets
 * the spec's default of 1, whatever the legs need: a target that cannot
 * take less than its own minimum serves the rest itself (the NBD target
 * by read-modify-write, target/nbd_rmw.c).
 */
__u32 nbd_min_block(const struct conn *c)
{
	return c->block_sizes ? nbd_export_min_block(c->ex) : 1;
}

int nbd_check_request(const struct bsteer_export *ex, __u32 max, __u32 align,
		      __u16 type, __u64 off, __u32 len, __u32 nerr)
{
	if (type == NBD_CMD_READ || type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
	    type == NBD_CMD_CACHE || type == NBD_CMD_WRITE_ZEROES ||
	    type == NBD_CMD_BLOCK_STATUS) {
		if (!nerr && !len)
			nerr = NBD_EINVAL;
		/* Past the end: ENOSPC for a write, as the spec asks. */
		else if (!nerr && (off > ex->size || len > ex->size - off))
			nerr = type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES ?
			       NBD_ENOSPC : NBD_EINVAL;
		else if (!nerr && align > 1 && (off % align || len % align))
			nerr = NBD_EINVAL;
		else if (!nerr && ex->rdonly && (type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
						 type == NBD_CMD_WRITE_ZEROES))
			nerr = NBD_EPERM;
	}
	/* Past --max-request: refused (a WRITE's payload is still drained). */
	if (!nerr && (type == NBD_CMD_READ || type == NBD_CMD_WRITE) && len > max)
		nerr = NBD_EINVAL;
	return nerr;
}

/* Client requests by type, for bsteer stat. */
static void count_request(struct nbd *n, __u16 type)
{
	static const int by_cmd[] = {
		[NBD_CMD_READ] = NBD_C_READS,
		[NBD_CMD_WRITE] = NBD_C_WRITES,
		[NBD_CMD_FLUSH] = NBD_C_FLUSHES,
		[NBD_CMD_TRIM] = NBD_C_TRIMS,
		[NBD_CMD_WRITE_ZEROES] = NBD_C_ZEROES,
	};

	if (type == NBD_CMD_DISC)
		return;
	nbd_count(n, type < sizeof(by_cmd) / sizeof(by_cmd[0]) && by_cmd[type] ?
		  by_cmd[type] : NBD_C_OTHER, 1);
}

/*
 * A request, parsed by the BPF parser: check again what needs the export
 * (range, read-only, block size), then hand it to the engine.
 */
void nbd_on_header(struct nbd *n, struct conn *c, const struct bsteer_blkreq *p)
{
	struct bsteer_export *ex = c->ex;
	__u32 len = p->len, nerr = nbd_errno(p->error);
	__u16 flags = p->flags, type = p->cmd;
	__u64 cookie = p->cookie, off = p->offset;
	__u8 rtype = p->type;

	if (p->fatal) {
		nbd_conn_fail(n, c, p->error == -EPROTO ? "bad request magic" :
			      "short or failed header receive");
		return;
	}
	count_request(n, type);
	/* The parser's view must agree with the protocol before we act on it. */
	if (p->payload != (type == NBD_CMD_WRITE) ||
	    (rtype == BSTEER_REQ_WRITE) != (type == NBD_CMD_WRITE)) {
		nbd_conn_fail(n, c, "parser and frontend disagree");
		return;
	}
	nerr = nbd_check_request(ex, max_request(n), nbd_min_block(c), type, off,
				 len, nerr);
	/* Don't fragment: one chunk cannot be sent in rounds. */
	if (!nerr && type == NBD_CMD_READ && (flags & NBD_CMD_FLAG_DF) && c->structured &&
	    len > nbd_round_max(n, ex))
		nerr = NBD_EOVERFLOW;
	switch (type) {
	case NBD_CMD_DISC:
		c->closing = true;
		nbd_conn_maybe_close(n, c);
		return;
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
		break;
	case NBD_CMD_FLUSH:
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		break;
	case NBD_CMD_CACHE:
		/* Advisory: the page cache does its own read-ahead. */
		c->reqs++;
		nbd_queue_reply(n, c, cookie, nerr, type, off, NULL);
		nbd_arm_header(n, c);
		return;
	case NBD_CMD_BLOCK_STATUS:
		/* Metadata, answered here: it moves no data. */
		c->reqs++;
		if (!c->meta_alloc)
			nerr = NBD_EINVAL;
		if (nerr)
			nbd_queue_reply(n, c, cookie, nerr, type, off, NULL);
		else
			nbd_queue_block_status(n, c, cookie, off, len,
					       flags & NBD_CMD_FLAG_REQ_ONE);
		nbd_arm_header(n, c);
		return;
	default:
		nerr = NBD_EINVAL;
		rtype = BSTEER_REQ_NONE;
	}
	/* An error decided here, with no payload to drain, needs no request. */
	if (nerr && (type != NBD_CMD_WRITE || !len)) {
		c->reqs++;
		nbd_queue_reply(n, c, cookie, nerr, type, off, NULL);
		nbd_arm_header(n, c);
		return;
	}
	start_io(n, c, p, nerr, rtype);
}

/* All parts are back: reply, or just let go if the stream was cut. */
static void io_finish(struct nbd *n, struct io *io)
{
	struct conn *c = io->c;
	bool was_cont;

	if (io->broken) {
		c->reqs--;
		nbd_io_free(n, io);
		nbd_conn_maybe_close(n, c);
		return;
	}
	if (io->cmd == NBD_CMD_WRITE && io_more(io)) {
		/* This round is written: the next piece of the payload. */
		c->slots -= io->nslots;
		io->nslots = 0;
		round_continue(n, io);
		return;
	}
	if (io->cmd == NBD_CMD_READ && !io->nbd_error) {
		nbd_queue_reply(n, c, io->cookie, 0, NBD_CMD_READ, io->offset, io);
		return;
	}
	/* A READ that fails after its reply began: a simple reply cannot say. */
	if (io->replied && !c->structured) {
		c->reqs--;
		nbd_io_free(n, io);
		nbd_conn_fail(n, c, "a read failed after its reply began");
		return;
	}
	was_cont = c->cont == io;
	if (c->mid_reply == io)
		c->mid_reply = NULL;	/* its error chunk ends the reply */
	nbd_queue_reply(n, c, io->cookie, io->nbd_error, io->cmd, io->offset, io);
	nbd_io_free(n, io);
	if (was_cont)		/* a READ's failed round ends its rounds */
		nbd_arm_header(n, c);
}

/*
 * The payload stream of a WRITE was cut: the parts whose payload never
 * began never will. They are dropped, and the io ends without a reply.
 */
static void io_break(struct nbd *n, struct io *io, const char *why)
{
	__u32 i;

	if (io->broken)
		return;
	io->broken = true;
	for (i = io->recv_next; i < io->nparts; i++) {
		rinfo(n, io->req[i])->io = NULL;
		bsteer_req_abandon(n->e, io->req[i]);
		io->done++;
	}
	io->recv_next = io->nparts;
	nbd_conn_fail(n, io->c, why);
}

/* The io lives until every part is back and no payload receive is out. */
static void io_maybe_finish(struct nbd *n, struct io *io)
{
	if (io->done == io->nparts && !io->payload_out)
		io_finish(n, io);
}

void nbd_complete(struct bsteer_fe *fe, __u32 r, int err)
{
	struct nbd *n = fe->priv;
	struct req_info *ri = rinfo(n, r);
	struct io *io = ri->io;

	if (!io)
		return;
	ri->io = NULL;
	if (err == -EPIPE)	/* the peer left mid-payload */
		io_break(n, io, "client closed during a write payload");
	if (!io->nbd_error)
		io->nbd_error = nbd_errno(err);
	if (io->cmd == NBD_CMD_READ)
		bsteer_req_keep(n->e, r);	/* its data goes out later */
	io->done++;
	io_maybe_finish(n, io);
}

/* Receive the payload of WRITE part io->recv_next into its slot. */
static int recv_part(struct nbd *n, struct io *io)
{
	struct conn *c = io->c;
	__u32 req = io->req[io->recv_next++];
	struct bsteer_req *rq = &n->in->reqs[req];
	/*
	 * The last part's payload is followed in the stream by the next
	 * header: receive that right behind it, linked, rather than a loop
	 * turn later. The payload's receive waits for all of it, so only a
	 * client that leaves mid-payload cancels the header's.
	 */
	bool link = io->recv_next == io->nparts && header_may_follow(c);
	__u64 ud;
	int err;

	if (c->tls) {
		/*
		 * Decrypted straight into the slot, and the next header right
		 * behind it, in the stream's order (what the link does below).
		 */
		err = bsteer_frontend_op_own(n->e, req, BSTEER_OP_READ,
					     BSTEER_FRONTEND_FILE(c->idx), rq->slot, 0,
					     rq->len, &ud);
		if (err)
			return err;
		rinfo(n, req)->payload_c = c;
		rinfo(n, req)->payload_io = io;
		io->payload_out = true;
		c->payload = true;
		nbd_count(n, NBD_C_BYTES_WRITTEN, rq->len);
		tls_stream_recv(c->tls, bsteer_slot_data(n->in, rq->slot), rq->len,
				TLS_RECV_EXACT, ud);
		if (link) {
			prep_header(n, c);
			c->hdr_linked = true;
		}
		return 0;
	}
	bsteer_engine_reserve(n->e, 2);	/* the payload and the next header */
	err = bsteer_frontend_recv(n->e, req, BSTEER_FRONTEND_FILE(c->idx),
				   rq->slot, rq->len, link);
	if (err)
		return err;
	if (link) {
		prep_header(n, c);
		c->hdr_linked = true;
	}
	rinfo(n, req)->payload_c = c;
	rinfo(n, req)->payload_io = io;
	io->payload_out = true;
	c->payload = true;
	nbd_count(n, NBD_C_BYTES_WRITTEN, rq->len);
	return 0;
}

/* A WRITE part's payload is in (or failed): the next part, or the next header. */
static void payload_done(struct nbd *n, struct req_info *ri, int res)
{
	struct io *io = ri->payload_io;
	struct conn *c = ri->payload_c;

	ri->payload_c = NULL;
	ri->payload_io = NULL;
	c->payload = false;
	io->payload_out = false;
	if (res < 0) {
		io_break(n, io, "payload receive failed");
	} else if (!io->broken && io->recv_next < io->nparts) {
		/* The rest is received even if the request was refused. */
		if (recv_part(n, io))
			io_break(n, io, "cannot receive a payload");
	} else if (c->hdr_waiting) {
		c->hdr_waiting = false;
		if (!c->closing)
			nbd_on_header(n, c, &n->in->fe_req[bsteer_hdr_index(
					  n->ring, nbd_hconn(n, c->idx))]);
	} else {
		nbd_arm_header(n, c);
	}
	io_maybe_finish(n, io);
	nbd_conn_maybe_close(n, c);
}

/* A READ reply's part went out from its slot: the next part, or done. */
static void reply_part_done(struct nbd *n, struct req_info *ri, int res)
{
	struct conn *c = ri->reply_c;
	struct reply *r = c->sending;

	ri->reply_c = NULL;
	if (res >= 0 && r && r->io && ++r->part < r->io->nparts) {
		if (!nbd_send_part(n, c, r, 0))
			return;
		res = -EIO;
	}
	nbd_reply_done(n, c, res >= 0);
}

/* A frontend op of request @r is over: a payload receive, or a reply's send. */
void nbd_op_done(struct bsteer_fe *fe, __u32 r, __u32 op, int res)
{
	struct nbd *n = fe->priv;
	struct req_info *ri = rinfo(n, r);

	(void)op;
	if (ri->payload_c)
		payload_done(n, ri, res);
	else if (ri->reply_c)
		reply_part_done(n, ri, res);
}

/*
 * A header receive completed. The hook's parser has normally turned it
 * into a request already (fe_req stamped with this user_data); if not, the
 * parser's syscall twin does it now.
 */
void nbd_header_cqe(struct nbd *n, const struct io_uring_cqe *cqe)
{
	__u64 ud = cqe->user_data;
	__u32 conn = bsteer_parse_ud_conn(ud) - n->fe->hdr_base;
	const struct bsteer_blkreq *p;
	struct conn *c;

	if (bsteer_parse_ud_ring(ud) != n->ring || conn >= MAX_CONNS)
		return;
	c = &n->conns[conn];
	if (!c->used)
		return;
	c->hdr_armed = false;
	if (c->hdr_linked) {
		c->hdr_linked = false;
		/* The payload before it came up short: its rest goes on, alone. */
		if (cqe->res == -ECANCELED && !c->closing) {
			if (!c->payload)
				nbd_arm_header(n, c);
			goto out;
		}
	}
	if (cqe->res == 0 || c->closing) {
		nbd_conn_fail(n, c, NULL);	/* a clean hang-up */
		goto out;
	}
	p = &n->in->fe_req[bsteer_hdr_index(n->ring, nbd_hconn(n, conn))];
	if (__atomic_load_n(&p->stamp, __ATOMIC_ACQUIRE) != ud &&
	    (bsteer_parse_fallback(n->in, ud, cqe->res) ||
	     __atomic_load_n(&p->stamp, __ATOMIC_ACQUIRE) != ud)) {
		nbd_conn_fail(n, c, "the header parser did not answer");
		goto out;
	}
	/*
	 * The payload before it is in (its completion came first), but the
	 * engine has not told us yet (a decision left to the batched
	 * fallback): the request waits for that, so that one payload is out
	 * at a time.
	 */
	if (c->payload) {
		c->hdr_waiting = true;
		goto out;
	}
	nbd_on_header(n, c, p);
out:
	nbd_conn_maybe_close(n, c);
}
