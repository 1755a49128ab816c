// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Upstream NBD targets, driven on the worker's own ring.
 *
 * Each op a policy sends to an upstream target is one NBD request whose
 * cookie is the op's user_data. Sending: requests queue per connection and
 * go out as one linked chain of SQEs (header SEND, then the payload as
 * WRITE_FIXED from the op's slot), so that two requests never interleave
 * on the stream; the next chain starts when the last one is done. A short
 * send breaks the chain, and the next chain resumes at the exact byte. On
 * TCP a large payload goes as SEND_ZC from the slot instead, and the slot
 * counts as busy until the kernel's notification that it let go of it.
 * If the kernel says it copied the bytes anyway (loopback does), the
 * connection goes back to plain writes, which are cheaper then.
 * Receiving: one RECV of a 16-byte reply header is always armed; a READ's
 * payload then goes straight into the op's slot with READ_FIXED.
 *
 * When both halves are done (and no SQE of ours still touches the slot), a
 * NOP with IORING_NOP_INJECT_RESULT posts the op's own completion, which
 * the completion hook decides like any other.
 *
 * A connection that fails (EOF, error, a reply that matches nothing, or no
 * progress for the timeout with requests out) is shut down and every
 * request on it fails with EIO; later ops to it fail at once. A mirror
 * policy marks the leg failed and carries on with the others.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "compat.h"
#include "target/nbd_client.h"
#include "nbd_proto.h"

#define UP_TIMEOUT_MS	30000	/* unless the caller sets one */
#define UP_CHAIN_MAX	64	/* SQEs in one send chain */
#define UP_NONE		(~0u)
#ifndef UP_ZC_MIN
#define UP_ZC_MIN	(64u << 10)	/* SEND_ZC for payloads this big, on TCP */
#endif

/* user_data of our own SQEs: magic, kind, target, op index. */
enum { UK_TXHDR = 1, UK_TXDATA, UK_TXZC, UK_RXHDR, UK_RXDATA };

static __u64 up_ud(__u32 kind, __u32 target, __u32 opi)
{
	return (BSTEER_UP_MAGIC << 56) | ((__u64)kind << 48) |
	       ((__u64)target << 40) | opi;
}

enum { UO_FREE, UO_ACTIVE };

struct up_op {
	__u64 ud;		/* the engine op's user_data; the NBD cookie */
	unsigned char hdr[NBD_REQUEST_LEN];
	void *buf;
	__u32 slot;
	__u32 len;		/* payload bytes, either way */
	__u32 hsent, dsent;	/* header and payload bytes on the wire */
	__u32 got;		/* payload bytes received */
	__u32 next;		/* send queue link */
	int res;
	__u8 state;
	__u8 target;
	__u8 busy;		/* our SQEs that touch the slot */
	bool out;		/* the payload goes out (WRITE) */
	bool in;		/* a payload comes back (READ) */
	bool sent, replied;
};

struct up_conn {
	int fd;
	__u32 target;
	struct bsteer_nbd_info info;
	__u32 txhead, txtail;	/* requests not yet wholly sent */
	__u32 chain;		/* SQEs of the current send chain out */
	unsigned char rxhdr[NBD_REPLY_LEN];
	__u32 rxgot;
	__u32 rxop;		/* the READ whose payload is coming in */
	bool rx_armed;
	bool zc;		/* TCP: SEND_ZC for large payloads */
	bool dead;
	__u32 outstanding;	/* requests not yet completed */
	__u64 progress_ns;	/* the last byte moved either way */
};

struct bsteer_upstreams {
	struct up_conn *conn[BSTEER_MAX_TARGETS];
	struct up_op *op;	/* one per engine op index */
	__u32 nops;
	__u32 waiting;
};

bool upstream_is(const struct bsteer_engine *e, __u32 target)
{
	return e->up && target < BSTEER_MAX_TARGETS && e->up->conn[target];
}

bool bsteer_engine_upstream_alive(const struct bsteer_engine *e, __u32 target)
{
	return upstream_is(e, target) && !e->up->conn[target]->dead;
}

int bsteer_engine_upstream(struct bsteer_engine *e, __u32 target, int fd,
			   const struct bsteer_nbd_info *info)
{
	struct up_conn *c;

	if (target >= e->ntargets || target >= BSTEER_MAX_TARGETS)
		return -EINVAL;
	if (!e->up) {
		e->up = calloc(1, sizeof(*e->up));
		if (!e->up)
			return -ENOMEM;
		e->up->nops = e->req_count * BSTEER_REQ_OPS;
		e->up->op = calloc(e->up->nops, sizeof(*e->up->op));
		if (!e->up->op) {
			free(e->up);
			e->up = NULL;
			return -ENOMEM;
		}
	}
	c = e->up->conn[target];
	if (c && (!c->dead || c->outstanding || c->chain || c->rx_armed))
		return -EBUSY;
	free(c);
	e->up->conn[target] = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = fd;
	c->target = target;
	c->info = *info;
	if (!c->info.timeout_ms)
		c->info.timeout_ms = UP_TIMEOUT_MS;
	c->txhead = c->txtail = c->rxop = UP_NONE;
	{
		int domain = 0;
		socklen_t len = sizeof(domain);

		if (!getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len))
			c->zc = domain == AF_INET || domain == AF_INET6;
	}
	c->progress_ns = bsteer_now_ns();
	e->up->conn[target] = c;
	return 0;
}

static void put16(unsigned char *p, __u16 v) { v = htobe16(v); memcpy(p, &v, 2); }
static void put32(unsigned char *p, __u32 v) { v = htobe32(v); memcpy(p, &v, 4); }
static void put64(unsigned char *p, __u64 v) { v = htobe64(v); memcpy(p, &v, 8); }

static __u32 get32(const unsigned char *p)
{
	__u32 v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static __u64 get64(const unsigned char *p)
{
	__u64 v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static void inject(struct bsteer_engine *e, __u64 ud, int res)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(e);

	if (!sqe) {		/* cannot happen after a submit; be loud */
		fprintf(stderr, "bsteer: no SQE to complete an upstream op\n");
		return;
	}
	bsteer_prep_nop_result(sqe, res);
	io_uring_sqe_set_data64(sqe, ud);
}

/* Both halves done and the slot is ours again: complete the op. */
static void maybe_complete(struct bsteer_engine *e, struct up_conn *c,
			   __u32 i)
{
	struct up_op *o = &e->up->op[i];

	if (o->state != UO_ACTIVE || !o->sent || !o->replied || o->busy)
		return;
	o->state = UO_FREE;
	c->outstanding--;
	e->up->waiting--;
	inject(e, o->ud, o->res);
}

static void conn_fail(struct bsteer_engine *e, struct up_conn *c, int err,
		      const char *what)
{
	__u32 i;

	if (c->dead)
		return;
	c->dead = true;
	fprintf(stderr, "bsteer: upstream target %u: %s (%s); failing its requests\n",
		c->target, what, strerror(err < 0 ? -err : err));
	/* Whatever of ours is still out comes back at once. */
	shutdown(c->fd, SHUT_RDWR);
	c->txhead = c->txtail = UP_NONE;
	for (i = 0; i < e->up->nops; i++) {
		struct up_op *o = &e->up->op[i];

		if (o->state != UO_ACTIVE || o->target != c->target)
			continue;
		if (!o->replied || o->res >= 0)
			o->res = -EIO;
		o->sent = o->replied = true;
		maybe_complete(e, c, i);
	}
}

static int nbd_cmd(const struct up_conn *c, __u8 opcode, __u16 *flags)
{
	*flags = 0;
	switch (opcode) {
	case BSTEER_OP_READ:
		return NBD_CMD_READ;
	case BSTEER_OP_WRITE:
		return NBD_CMD_WRITE;
	case BSTEER_OP_FSYNC:
	case BSTEER_OP_FDATASYNC:
		/* Without SEND_FLUSH the server says its writes are stable. */
		return c->info.flags & TF_SEND_FLUSH ? NBD_CMD_FLUSH : -ENOENT;
	case BSTEER_OP_PUNCH:
	case BSTEER_OP_ZERO:
		/* Both must read back as zeros: WRITE_ZEROES, not TRIM. */
		if (!(c->info.flags & TF_SEND_WRITE_ZEROES))
			return -EOPNOTSUPP;
		if (opcode == BSTEER_OP_ZERO)
			*flags = NBD_CMDF_NO_HOLE;
		return NBD_CMD_WRITE_ZEROES;
	default:
		return -EINVAL;
	}
}

int upstream_op(struct bsteer_engine *e, __u32 target, __u32 opi, __u64 ud,
		__u8 opcode, void *buf, __u32 slot, __u32 len, __u64 offset)
{
	struct up_conn *c = e->up->conn[target];
	struct up_op *o = &e->up->op[opi];
	__u16 flags;
	int cmd = nbd_cmd(c, opcode, &flags);

	if (cmd == -EINVAL)
		return -EINVAL;
	if (o->state != UO_FREE)
		return -EBUSY;
	memset(o, 0, sizeof(*o));
	o->ud = ud;
	o->buf = buf;
	o->slot = slot;
	o->target = target;
	o->next = UP_NONE;
	o->state = UO_ACTIVE;
	if (!c->outstanding)
		c->progress_ns = bsteer_now_ns();
	c->outstanding++;
	e->up->waiting++;
	if (c->dead || cmd < 0) {
		/* Nothing to send: a flush the server needs not, or a failure. */
		o->res = c->dead ? -EIO : cmd == -ENOENT ? 0 : cmd;
		o->sent = o->replied = true;
		maybe_complete(e, c, opi);
		return 0;
	}
	o->out = cmd == NBD_CMD_WRITE;
	o->in = cmd == NBD_CMD_READ;
	o->len = o->out || o->in ? len : 0;
	o->res = o->len;
	put32(o->hdr, NBD_REQUEST_MAGIC);
	put16(o->hdr + 4, flags);
	put16(o->hdr + 6, cmd);
	put64(o->hdr + 8, ud);
	put64(o->hdr + 16, offset);
	put32(o->hdr + 24, len);
	if (c->txtail == UP_NONE)
		c->txhead = opi;
	else
		e->up->op[c->txtail].next = opi;
	c->txtail = opi;
	return 0;
}

/* Requests at the head of the send queue that are wholly out leave it. */
static void tx_pop(struct bsteer_engine *e, struct up_conn *c)
{
	while (c->txhead != UP_NONE) {
		__u32 i = c->txhead;
		struct up_op *o = &e->up->op[i];

		if (o->hsent < NBD_REQUEST_LEN || o->dsent < (o->out ? o->len : 0))
			break;
		c->txhead = o->next;
		if (c->txhead == UP_NONE)
			c->txtail = UP_NONE;
		o->sent = true;
		maybe_complete(e, c, i);
	}
}

/* One chain of SQEs for everything queued, resuming where the last ended. */
static void tx_start(struct bsteer_engine *e, struct up_conn *c)
{
	struct io_uring_sqe *sqe = NULL;
	__u32 i, n = 0;

	tx_pop(e, c);
	if (c->dead || c->chain || c->txhead == UP_NONE)
		return;
	bsteer_engine_reserve(e, UP_CHAIN_MAX);
	for (i = c->txhead; i != UP_NONE && n + 2 <= UP_CHAIN_MAX;
	     i = e->up->op[i].next) {
		struct up_op *o = &e->up->op[i];

		if (o->hsent < NBD_REQUEST_LEN) {
			sqe = io_uring_get_sqe(&e->ring);
			io_uring_prep_send(sqe, c->target, o->hdr + o->hsent,
					   NBD_REQUEST_LEN - o->hsent,
					   MSG_WAITALL | MSG_NOSIGNAL | MSG_MORE);
			sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
			io_uring_sqe_set_data64(sqe, up_ud(UK_TXHDR, c->target, i));
			n++;
		}
		if (o->out && o->dsent < o->len) {
			char *p = (char *)o->buf + o->dsent;
			__u32 left = o->len - o->dsent;

			sqe = io_uring_get_sqe(&e->ring);
			if (c->zc && left >= UP_ZC_MIN) {
				io_uring_prep_send_zc_fixed(sqe, c->target, p, left,
							    MSG_WAITALL | MSG_NOSIGNAL,
							    IORING_SEND_ZC_REPORT_USAGE,
							    o->slot);
				io_uring_sqe_set_data64(sqe, up_ud(UK_TXZC, c->target, i));
			} else {
				io_uring_prep_write_fixed(sqe, c->target, p, left,
							  BSTEER_OFF_STREAM, o->slot);
				io_uring_sqe_set_data64(sqe, up_ud(UK_TXDATA, c->target, i));
			}
			sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
			o->busy++;
			n++;
		}
	}
	if (!n)
		return;
	/* The last one ends the chain, and pushes the bytes out. */
	sqe->flags &= ~IOSQE_IO_LINK;
	if (sqe->opcode == IORING_OP_SEND)
		sqe->msg_flags &= ~MSG_MORE;
	c->chain = n;
}

static void rx_arm(struct bsteer_engine *e, struct up_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->dead || c->rx_armed)
		return;
	sqe = bsteer_engine_sqe(e);
	if (!sqe)
		return;
	if (c->rxop == UP_NONE) {
		io_uring_prep_recv(sqe, c->target, c->rxhdr + c->rxgot,
				   NBD_REPLY_LEN - c->rxgot, MSG_WAITALL);
		io_uring_sqe_set_data64(sqe, up_ud(UK_RXHDR, c->target, 0));
	} else {
		struct up_op *o = &e->up->op[c->rxop];

		io_uring_prep_read_fixed(sqe, c->target, (char *)o->buf + o->got,
					 o->len - o->got, BSTEER_OFF_STREAM, o->slot);
		io_uring_sqe_set_data64(sqe, up_ud(UK_RXDATA, c->target, c->rxop));
		o->busy++;
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	c->rx_armed = true;
}

/* A whole reply header is in: which request, and how did it go? */
static void rx_header(struct bsteer_engine *e, struct up_conn *c)
{
	__u64 cookie = get64(c->rxhdr + 8);
	__u32 err = get32(c->rxhdr + 4), r = bsteer_ud_req(cookie), i;
	struct up_op *o;

	c->rxgot = 0;
	if (get32(c->rxhdr) != SIMPLE_REPLY_MAGIC) {
		conn_fail(e, c, -EPROTO, "a reply with a bad magic");
		return;
	}
	i = (r - e->req_base) * BSTEER_REQ_OPS + bsteer_ud_op(cookie);
	if (!bsteer_ud_ours(cookie) || r < e->req_base ||
	    r - e->req_base >= e->req_count || e->up->op[i].ud != cookie ||
	    e->up->op[i].state != UO_ACTIVE || e->up->op[i].replied ||
	    e->up->op[i].target != c->target) {
		conn_fail(e, c, -EPROTO, "a reply to no request of ours");
		return;
	}
	o = &e->up->op[i];
	if (err) {
		/* NBD's error numbers are Linux's; anything odd is EIO. */
		o->res = err < 4096 ? -(int)err : -EIO;
	} else if (o->in) {
		c->rxop = i;		/* the payload follows */
		return;
	}
	o->replied = true;
	maybe_complete(e, c, i);
}

void upstream_cqe(struct bsteer_engine *e, const struct io_uring_cqe *cqe)
{
	__u64 ud = cqe->user_data;
	__u32 kind = (ud >> 48) & 0xff, target = (ud >> 40) & 0xff;
	__u32 i = ud & 0xffffffff;
	struct up_conn *c;
	struct up_op *o;
	int res = cqe->res;

	if (!e->up || target >= BSTEER_MAX_TARGETS || !e->up->conn[target])
		return;
	c = e->up->conn[target];
	if (res > 0)
		c->progress_ns = bsteer_now_ns();
	switch (kind) {
	case UK_TXZC:
		o = &e->up->op[i];
		if (cqe->flags & IORING_CQE_F_NOTIF) {
			/* The kernel let go of the slot's pages. */
			if ((__u32)res & IORING_NOTIF_USAGE_ZC_COPIED)
				c->zc = false;
			o->busy--;
			maybe_complete(e, c, i);
			break;
		}
		/* With a notification to follow, the slot stays busy till then. */
		if (cqe->flags & IORING_CQE_F_MORE)
			o->busy++;
		if (res == -EOPNOTSUPP) {
			c->zc = false;	/* resend it the plain way */
			res = -ECANCELED;
		}
		/* fall through */
	case UK_TXHDR:
	case UK_TXDATA:
		o = &e->up->op[i];
		c->chain--;
		if (kind != UK_TXHDR)
			o->busy--;
		if (res > 0 && kind == UK_TXHDR)
			o->hsent += res;
		else if (res > 0)
			o->dsent += res;
		else if (res < 0 && res != -ECANCELED)
			conn_fail(e, c, res, "sending failed");
		else if (!res)
			conn_fail(e, c, -EPIPE, "the connection closed while sending");
		if (c->dead)
			maybe_complete(e, c, i);
		else
			tx_pop(e, c);
		break;
	case UK_RXHDR:
		c->rx_armed = false;
		if (res <= 0) {
			conn_fail(e, c, res ?: -ECONNRESET,
				  res ? "receiving failed" : "the server closed the connection");
			break;
		}
		c->rxgot += res;
		if (c->rxgot == NBD_REPLY_LEN)
			rx_header(e, c);
		rx_arm(e, c);
		break;
	case UK_RXDATA:
		o = &e->up->op[i];
		c->rx_armed = false;
		o->busy--;
		if (res <= 0) {
			conn_fail(e, c, res ?: -ECONNRESET,
				  res ? "receiving failed" : "the server closed the connection");
			maybe_complete(e, c, i);
			break;
		}
		o->got += res;
		if (o->got == o->len) {
			c->rxop = UP_NONE;
			o->replied = true;
			maybe_complete(e, c, i);
		}
		rx_arm(e, c);
		break;
	}
}

void upstream_kick(struct bsteer_engine *e)
{
	__u64 now = 0;
	__u32 t;

	if (!e->up)
		return;
	for (t = 0; t < BSTEER_MAX_TARGETS; t++) {
		struct up_conn *c = e->up->conn[t];

		if (!c || c->dead)
			continue;
		if (c->outstanding) {
			if (!now)
				now = bsteer_now_ns();
			if (now - c->progress_ns > c->info.timeout_ms * 1000000ull) {
				conn_fail(e, c, -ETIMEDOUT, "no progress with requests out");
				continue;
			}
		}
		tx_start(e, c);
		rx_arm(e, c);
	}
}

__u32 upstream_waiting(const struct bsteer_engine *e)
{
	return e->up ? e->up->waiting : 0;
}

void upstream_fini(struct bsteer_engine *e)
{
	__u32 t;

	if (!e->up)
		return;
	for (t = 0; t < BSTEER_MAX_TARGETS; t++) {
		struct up_conn *c = e->up->conn[t];

		if (!c)
			continue;
		/* A polite goodbye, if the connection is idle and alive. */
		if (!c->dead && !c->outstanding) {
			unsigned char disc[NBD_REQUEST_LEN] = {};

			put32(disc, NBD_REQUEST_MAGIC);
			put16(disc + 6, NBD_CMD_DISC);
			if (send(c->fd, disc, sizeof(disc), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				(void)0;	/* it is going anyway */
		}
		free(c);
	}
	free(e->up->op);
	free(e->up);
	e->up = NULL;
}
