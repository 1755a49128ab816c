// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * NBD replies: simple, or structured where negotiated. A READ's data goes
 * out straight from its slots (the header in the headroom before part 0,
 * one socket op), or spliced from the slots' pipes, and replies that
 * queue up while one is out leave together in one vectored send.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "frontend/nbd_priv.h"

static void want_send(struct nbd *n, struct conn *c);

__u32 nbd_errno(int err)
{
	switch (-err) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case EOPNOTSUPP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

static void enqueue(struct nbd *n, struct conn *c, struct reply *r)
{
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	want_send(n, c);
}

/* The rest of a reply that began goes before every other. */
static void enqueue_front(struct nbd *n, struct conn *c, struct reply *r)
{
	r->next = c->head;
	c->head = r;
	if (!c->tail)
		c->tail = r;
	want_send(n, c);
}

static struct reply *reply_alloc(struct nbd *n, struct conn *c,
				 __u32 hdr_len)
{
	struct reply *r = NULL;

	if (hdr_len <= REPLY_POOL_HDR && (r = n->reply_pool)) {
		n->reply_pool = r->next;
		n->reply_pooled--;
		memset(r, 0, sizeof(*r) + hdr_len);
	} else {
		r = calloc(1, sizeof(*r) + (hdr_len < REPLY_POOL_HDR ? REPLY_POOL_HDR : hdr_len));
	}
	if (!r) {
		nbd_conn_fail(n, c, "out of memory for a reply");
		return NULL;
	}
	r->hdr_len = hdr_len;
	return r;
}

void nbd_reply_put(struct nbd *n, struct reply *r)
{
	if (!POOLED || r->hdr_len > REPLY_POOL_HDR || n->reply_pooled >= POOL_MAX) {
		free(r);
		return;
	}
	r->next = n->reply_pool;
	n->reply_pool = r;
	n->reply_pooled++;
}

struct io *nbd_io_new(struct nbd *n)
{
	struct io *io = n->io_pool;

	if (!io)
		return calloc(1, sizeof(*io));
	n->io_pool = (struct io *)io->c;
	n->io_pooled--;
	memset(io, 0, offsetof(struct io, req));
	return io;
}

void nbd_io_put(struct nbd *n, struct io *io)
{
	if (!POOLED || n->io_pooled >= POOL_MAX) {
		free(io);
		return;
	}
	io->c = (struct conn *)n->io_pool;
	n->io_pool = io;
	n->io_pooled++;
}

void nbd_pools_free(struct nbd *n)
{
	struct reply *r;
	struct io *io;

	while ((r = n->reply_pool)) {
		n->reply_pool = r->next;
		free(r);
	}
	while ((io = n->io_pool)) {
		n->io_pool = (struct io *)io->c;
		free(io);
	}
	n->reply_pooled = n->io_pooled = 0;
}

/* A structured chunk header: the cookie goes back as the client sent it. */
static void chunk_hdr(unsigned char *h, __u16 flags, __u16 type, __u64 cookie,
		      __u32 len)
{
	nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
	nbd_put16(h + 4, flags);
	nbd_put16(h + 6, type);
	memcpy(h + 8, &cookie, 8);
	nbd_put32(h + 16, len);
}

/*
 * Reply to a request: simple, or structured where negotiated for READ
 * (data as one OFFSET_DATA chunk, errors as an ERROR chunk). A READ's
 * data (@io's round) follows from its parts' slots. A READ in rounds
 * sends one chunk per round, or (simple) the header with the first round
 * only; the rounds after the first go before any other reply.
 */
void nbd_queue_reply(struct nbd *n, struct conn *c, __u64 cookie,
			__u32 error, __u8 cmd, __u64 offset, struct io *io)
{
	bool read = io && cmd == NBD_CMD_READ, later = read && io->replied;
	__u32 len = read && !error ? io->len : 0;
	__u16 done = read && !error && io_more(io) ? 0 : NBD_REPLY_FLAG_DONE;
	struct reply *r;

	if (error)
		nbd_count(n, NBD_C_ERRORS, 1);
	nbd_count(n, NBD_C_BYTES_READ, len);
	if (c->structured && cmd == NBD_CMD_READ) {
		r = reply_alloc(n, c, error ? 26 : 28);
		if (!r)
			return;
		if (error) {
			chunk_hdr(r->hdr, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, 6);
			nbd_put32(r->hdr + 20, error);
			nbd_put16(r->hdr + 24, 0);
		} else {
			chunk_hdr(r->hdr, done, NBD_REPLY_TYPE_OFFSET_DATA, cookie, 8 + len);
			nbd_put64(r->hdr + 20, offset);
		}
	} else if (later) {
		r = reply_alloc(n, c, 0);	/* the data goes on */
		if (!r)
			return;
	} else {
		r = reply_alloc(n, c, 16);
		if (!r)
			return;
		nbd_put32(r->hdr, NBD_SIMPLE_REPLY_MAGIC);
		nbd_put32(r->hdr + 4, error);
		memcpy(r->hdr + 8, &cookie, 8);
	}
	r->io = len ? io : NULL;
	(later ? enqueue_front : enqueue)(n, c, r);
}

/*
 * base:allocation for [off, off + len) of the export's first leg in
 * service (legs come and go: bsteer leg), from SEEK_DATA/SEEK_HOLE: up to
 * MAX_EXTENTS descriptors (one with REQ_ONE), none reaching past the
 * request.
 */
void nbd_queue_block_status(struct nbd *n, struct conn *c, __u64 cookie,
			    __u64 off, __u32 len, bool one)
{
	int leg = bsteer_export_first_leg(n->in, c->ex);
	int fd = leg >= 0 ? c->ex->leg[leg].fd : -1;
	__u64 end = off + len, pos = off;
	__u32 nx = 0, max = one ? 1 : MAX_EXTENTS;
	unsigned char d[MAX_EXTENTS][8];
	struct reply *r;

	/* Only a leg that holds the export as it is can speak for it. */
	while (pos < end && nx < max && !c->ex->no_extents && fd >= 0) {
		off_t data = lseek(fd, pos, SEEK_DATA), next;
		__u32 flags;

		if (data < 0 && (errno == ESPIPE || errno == EINVAL))
			break;		/* not seekable: cannot tell */
		if (data < 0 && errno != ENXIO) {
			nbd_queue_reply(n, c, cookie, nbd_errno(-errno),
					NBD_CMD_BLOCK_STATUS, 0, NULL);
			return;
		}
		if (data < 0 || (__u64)data >= end) {	/* a hole to the end */
			next = end;
			flags = NBD_STATE_HOLE | NBD_STATE_ZERO;
		} else if ((__u64)data > pos) {
			next = data;
			flags = NBD_STATE_HOLE | NBD_STATE_ZERO;
		} else {
			next = lseek(fd, pos, SEEK_HOLE);
			if (next < 0 || (__u64)next > end)
				next = end;
			flags = 0;
		}
		if ((__u64)next <= pos)
			break;
		nbd_put32(d[nx], next - pos);
		nbd_put32(d[nx] + 4, flags);
		nx++;
		pos = next;
	}
	if (!nx) {	/* lseek could not tell: call it all data */
		nbd_put32(d[0], len);
		nbd_put32(d[0] + 4, 0);
		nx = 1;
	}
	r = reply_alloc(n, c, 20 + 4 + 8 * nx);
	if (!r)
		return;
	chunk_hdr(r->hdr, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, cookie,
		  4 + 8 * nx);
	nbd_put32(r->hdr + 20, META_ALLOC_ID);
	memcpy(r->hdr + 24, d, 8 * nx);
	enqueue(n, c, r);
}

void nbd_io_free(struct nbd *n, struct io *io)
{
	__u32 i;

	if (io->c->cont == io)
		io->c->cont = NULL;
	if (io->c->mid_reply == io)
		io->c->mid_reply = NULL;
	/* READ parts were kept for their data: let them go now. */
	for (i = 0; io->cmd == NBD_CMD_READ && i < io->nparts; i++)
		bsteer_req_put(n->e, io->req[i]);
	io->c->slots -= io->nslots;
	nbd_io_put(n, io);
}

/*
 * Send part @r->part of a READ's data from its slot, after @prefix bytes
 * of header the caller put in the slot's headroom (0: data only).
 */
int nbd_send_part(struct nbd *n, struct conn *c, struct reply *r,
		     __u32 prefix)
{
	struct io *io = r->io;
	__u32 req = io->req[r->part];
	struct bsteer_req *rq = &n->in->reqs[req];
	__u64 ud;
	int err;

	rinfo(n, req)->reply_c = c;
	c->send_ns = bsteer_engine_now(n->e);
	if (c->tls) {
		/* Encrypted straight from the slot (and the header in its headroom). */
		err = bsteer_frontend_op_own(n->e, req, BSTEER_OP_WRITE,
					     BSTEER_FRONTEND_FILE(c->idx), rq->slot,
					     prefix, rq->len, &ud);
		if (err) {
			rinfo(n, req)->reply_c = NULL;
			return err;
		}
		tls_stream_send(c->tls, &(struct iovec){
					bsteer_slot_data(n->in, rq->slot) - prefix,
					prefix + rq->len }, 1, ud, prefix + rq->len);
		return 0;
	}
	err = bsteer_frontend_send_prefixed(n->e, req, BSTEER_FRONTEND_FILE(c->idx),
					    rq->slot, prefix, rq->len);
	if (err)
		rinfo(n, req)->reply_c = NULL;
	return err;
}

/*
 * A READ reply in one socket op: the header goes into the headroom right
 * before part 0's data and both leave from the slot in one WRITE_FIXED,
 * where a header SEND and a data write would be two. 0, or -EINVAL if
 * it does not fit (then the two ops do it).
 */
static int send_with_header(struct nbd *n, struct conn *c,
			    struct reply *r)
{
	struct bsteer_req *rq = &n->in->reqs[r->io->req[0]];

	if (r->hdr_len > BSTEER_SLOT_HEADROOM || rq->len > n->in->slot_size ||
	    r->hdr_len > n->in->slot_size - rq->len)
		return -EINVAL;
	memcpy(bsteer_slot_data(n->in, rq->slot) - r->hdr_len, r->hdr, r->hdr_len);
	r->part = 0;
	return nbd_send_part(n, c, r, r->hdr_len);
}

/* The replies being sent are out (or never will be): let them go. */
void nbd_reply_done(struct nbd *n, struct conn *c, bool ok)
{
	struct reply *r = c->sending, *next;
	struct io *more = NULL;

	for (; c->nsending; c->nsending--, r = next) {
		next = r->next;
		if (r->io && ok && io_more(r->io)) {
			more = r->io;	/* a READ round: its next, below */
		} else {
			if (r->io)
				nbd_io_free(n, r->io);
			c->reqs--;
		}
		nbd_reply_put(n, r);
	}
	c->sending = NULL;
	if (more)
		nbd_round_sent(n, more);
	if (!ok)
		nbd_conn_fail(n, c, "reply could not be sent");
	want_send(n, c);
	if (c->capped) {
		c->capped = false;
		nbd_arm_header(n, c);
	}
	nbd_conn_maybe_close(n, c);
}

/* Is part @i of READ @io in its slot's pipe (spliced)? -1: partly, an error. */
static int part_piped(struct nbd *n, const struct io *io, __u32 i,
		      int *fd)
{
	const struct bsteer_req *rq = &n->in->reqs[io->req[i]];
	__u32 len;

	*fd = bsteer_slot_pipe(n->e, rq->slot, &len);
	if (*fd < 0)
		return 0;
	return len == rq->len ? 1 : -1;
}

/*
 * A READ reply with data in the slots' pipes (see splice_reads): the
 * header, then each part, spliced from its pipe (or sent from its slot),
 * linked so that they leave in order. 0, or -EAGAIN if no part is in a
 * pipe, or -EIO.
 */
static int send_spliced(struct nbd *n, struct conn *c,
			struct reply *r)
{
	struct io *io = r->io;
	struct io_uring_sqe *sqe;
	__u32 i, file = BSTEER_FRONTEND_FILE(c->idx);
	int fd, any = 0;

	if (c->tls)	/* its requests never fill a pipe (fe->owner_nopipe) */
		return -EAGAIN;
	for (i = 0; i < io->nparts; i++) {
		int k = part_piped(n, io, i, &fd);

		if (k < 0)
			return -EIO;
		any |= k;
	}
	if (!any)
		return -EAGAIN;
	bsteer_engine_reserve(n->e, 1 + io->nparts);
	sqe = bsteer_engine_sqe(n->e);
	if (!sqe)
		return -EIO;
	io_uring_prep_send(sqe, file, r->hdr, r->hdr_len,
			   MSG_WAITALL | MSG_NOSIGNAL | MSG_MORE);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, nbd_ud(n, UD_SPLICE, c->idx));
	c->chain = 1;
	c->chain_len = r->hdr_len;
	for (i = 0; i < io->nparts; i++) {
		const struct bsteer_req *rq = &n->in->reqs[io->req[i]];
		bool last = i + 1 == io->nparts;

		sqe = bsteer_engine_sqe(n->e);
		if (!sqe) {	/* reserved above: cannot happen */
			c->chain_len = ~0ull;	/* what went out fails */
			break;
		}
		if (part_piped(n, io, i, &fd) > 0)
			io_uring_prep_splice(sqe, fd, -1, file, -1, rq->len,
					     last ? 0 : SPLICE_F_MORE);
		else
			io_uring_prep_send(sqe, file,
					   bsteer_slot_data(n->in, rq->slot),
					   rq->len, MSG_WAITALL | MSG_NOSIGNAL |
					   (last ? 0 : MSG_MORE));
		sqe->flags |= IOSQE_FIXED_FILE | (last ? 0 : IOSQE_IO_LINK);
		io_uring_sqe_set_data64(sqe, nbd_ud(n, UD_SPLICE, c->idx));
		c->chain++;
		c->chain_len += rq->len;
	}
	c->sends += c->chain;
	c->chain_sent = 0;
	return 0;
}

/* A spliced reply's op is back; the reply is over with its last. */
static void spliced_cqe(struct nbd *n, struct conn *c, int res)
{
	struct io *io;
	__u32 i;
	int fd;

	c->sends--;
	if (res > 0)
		c->chain_sent += res;
	if (--c->chain || !c->sending)
		return;
	io = c->sending->io;
	if (c->chain_sent != c->chain_len) {
		nbd_reply_done(n, c, false);
		return;
	}
	/* Out: the pipes are empty, and the slots can go. */
	for (i = 0; io && i < io->nparts; i++) {
		if (part_piped(n, io, i, &fd) > 0)
			bsteer_slot_pipe_sent(n->e, n->in->reqs[io->req[i]].slot,
					      n->in->reqs[io->req[i]].len);
	}
	nbd_reply_done(n, c, true);
}

/* Pieces and bytes of reply @r in a vectored send; false if it has none. */
static bool reply_iov(struct nbd *n, const struct reply *r,
		      struct iovec *iov, __u32 *niov, __u32 *bytes)
{
	__u32 i, parts = r->io ? r->io->nparts : 0;
	int fd;

	if (*niov + 1 + parts > SEND_IOV)
		return false;
	/* Spliced data cannot share a send with memory. */
	for (i = 0; i < parts; i++)
		if (part_piped(n, r->io, i, &fd))
			return false;
	iov[(*niov)++] = (struct iovec){ (void *)r->hdr, r->hdr_len };
	*bytes += r->hdr_len;
	for (i = 0; i < parts; i++) {
		const struct bsteer_req *rq = &n->in->reqs[r->io->req[i]];

		iov[(*niov)++] = (struct iovec){ bsteer_slot_data(n->in, rq->slot),
						 rq->len };
		*bytes += rq->len;
	}
	return true;
}

/*
 * Send the replies queued on @c, as many as fit, in one SENDMSG (the data
 * straight from the slots). 0, or -EAGAIN if fewer than two fit (the
 * single-reply path sends the head then).
 */
static int send_vectored(struct nbd *n, struct conn *c)
{
	struct reply *r = c->head, *last = NULL;
	struct io_uring_sqe *sqe;
	__u32 nr = 0, niov = 0, bytes = 0;

	if (!r->next)
		return -EAGAIN;
	if (!c->iov && !(c->iov = calloc(SEND_IOV, sizeof(*c->iov))))
		return -EAGAIN;
	for (; r && (!nr || bytes < SEND_MAX); r = r->next, nr++) {
		if (!reply_iov(n, r, c->iov, &niov, &bytes))
			break;
		last = r;
		/* Nothing may follow a READ round with more to come. */
		if (r->io && io_more(r->io)) {
			nr++;
			break;
		}
	}
	if (nr < 2)
		return -EAGAIN;
	if (c->tls) {
		sqe = NULL;
	} else {
		bsteer_engine_reserve(n->e, 1);
		sqe = bsteer_engine_sqe(n->e);
		if (!sqe)
			return -EAGAIN;
	}
	c->msg = (struct msghdr){ .msg_iov = c->iov, .msg_iovlen = niov };
	if (sqe) {
		io_uring_prep_sendmsg(sqe, BSTEER_FRONTEND_FILE(c->idx), &c->msg,
				      MSG_WAITALL | MSG_NOSIGNAL |
				      (c->tcp && last->next ? MSG_MORE : 0));
		sqe->flags |= IOSQE_FIXED_FILE;
		io_uring_sqe_set_data64(sqe, nbd_ud(n, UD_SENDV, c->idx));
	}
	c->sends++;
	c->sending = c->head;
	c->nsending = nr;
	c->sendv_len = bytes;
	c->head = last->next;
	if (!c->head)
		c->tail = NULL;
	last->next = NULL;
	c->send_ns = bsteer_engine_now(n->e);
	nbd_count(n, NBD_C_SENDV, 1);
	nbd_count(n, NBD_C_SEND_BATCHED, nr);
	if (c->tls)	/* encrypted from the slots; done once all is out */
		tls_stream_send(c->tls, c->iov, niov, nbd_ud(n, UD_SENDV, c->idx), bytes);
	return 0;
}

/* Start the next reply (or replies) of @c, unless one is out already. */
static void reply_next(struct nbd *n, struct conn *c)
{
	struct io_uring_sqe *sqe;
	struct reply *r = c->head;

	if (c->sending || !r)
		return;
	/* A READ's reply is part sent: the rest of it first. */
	if (c->mid_reply && r->io != c->mid_reply)
		return;
	if (!send_vectored(n, c))
		return;
	c->head = r->next;
	if (!c->head)
		c->tail = NULL;
	r->next = NULL;
	c->sending = r;
	c->nsending = 1;
	c->send_ns = bsteer_engine_now(n->e);

	if (r->io) {
		int err = send_spliced(n, c, r);

		if (!err)
			return;
		if (err != -EAGAIN) {
			nbd_reply_done(n, c, false);
			return;
		}
	}
	if (r->io && !send_with_header(n, c, r))
		return;
	if (c->tls) {
		/* The header's record first; the data's follow from the slots. */
		c->sends++;
		tls_stream_send(c->tls, &(struct iovec){ r->hdr, r->hdr_len }, 1,
				nbd_ud(n, UD_SEND, c->idx), r->hdr_len);
		if (!r->io)
			return;
		r->part = 0;
		if (nbd_send_part(n, c, r, 0)) {
			nbd_io_free(n, r->io);
			r->io = NULL;
			nbd_conn_fail(n, c, "cannot send read data");
		}
		return;
	}
	bsteer_engine_reserve(n->e, 2);
	sqe = bsteer_engine_sqe(n->e);
	if (!sqe) {
		c->sending = NULL;
		c->nsending = 0;
		r->next = c->head;	/* try again when a completion frees room */
		c->head = r;
		if (!c->tail)
			c->tail = r;
		nbd_conn_fail(n, c, "submission queue full");
		return;
	}
	/*
	 * With more replies queued behind this one the stream stays busy:
	 * let TCP put the header in the same segment as the data linked after
	 * it (MSG_MORE). Alone, it goes at once, so QD1 waits for nothing.
	 */
	io_uring_prep_send(sqe, BSTEER_FRONTEND_FILE(c->idx), r->hdr, r->hdr_len,
			   MSG_WAITALL | MSG_NOSIGNAL |
			   (c->tcp && r->io && c->head ? MSG_MORE : 0));
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, nbd_ud(n, UD_SEND, c->idx));
	c->sends++;
	if (!r->io)
		return;
	/* The data goes out from the slots, part by part, after the header. */
	sqe->flags |= IOSQE_IO_LINK;
	r->part = 0;
	if (nbd_send_part(n, c, r, 0)) {
		/* The header goes alone and the stream is now broken. */
		nbd_io_free(n, r->io);
		r->io = NULL;
		nbd_conn_fail(n, c, "cannot send read data");
	}
}

/*
 * Replies are started after the completions at hand are all seen, so that
 * those that became ready together leave together (the ring submits
 * nothing before then anyway).
 */
static void want_send(struct nbd *n, struct conn *c)
{
	if (c->head && !c->sending)
		n->to_send[c->idx / 64] |= 1ull << (c->idx % 64);
}

void nbd_start_sends(struct nbd *n)
{
	__u32 w;

	for (w = 0; w < MAX_CONNS / 64; w++) {
		while (n->to_send[w]) {
			int b = __builtin_ctzll(n->to_send[w]);
			struct conn *c = &n->conns[w * 64 + b];

			n->to_send[w] &= n->to_send[w] - 1;
			if (c->used)
				reply_next(n, c);
		}
	}
}

/* A send of ours is back: the reply (or replies) it carried are out. */
void nbd_reply_cqe(struct nbd *n, struct conn *c, int kind, int res)
{
	if (kind == UD_SPLICE) {
		spliced_cqe(n, c, res);
	} else if (kind == UD_SENDV) {
		c->sends--;
		if (c->sending)
			nbd_reply_done(n, c, res == (int)c->sendv_len);
	} else if (kind == UD_SEND) {
		c->sends--;
		if (c->sending && res != (int)c->sending->hdr_len) {
			/* The linked data op is cancelled; its completion ends it. */
			if (!c->sending->io)
				nbd_reply_done(n, c, false);
			else
				nbd_conn_fail(n, c, "reply header could not be sent");
		} else if (c->sending && !c->sending->io) {
			nbd_reply_done(n, c, true);
		}
	}
}
