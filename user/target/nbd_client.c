// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The NBD target's client, driven on the worker's own ring.
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
 * An op that is not aligned to the server's minimum block size (a client
 * that never learned it may send one) goes to nbd_rmw.c instead, which
 * reads and writes whole blocks on a connection of its own.
 *
 * A connection that fails (EOF, error, a reply that matches nothing, or no
 * progress for the timeout with requests out) is shut down and every
 * request on it fails with EIO; later ops to it fail at once. A mirror
 * policy marks the leg failed and carries on with the others.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "target/nbd.h"
#include "wire/nbd_wire.h"
#include "wire/tls_tunnel.h"

#define UP_TIMEOUT_MS	30000	/* unless the engine sets one */
#define UP_CHAIN_MAX	64	/* SQEs in one send chain */
#define UP_NONE		(~0u)
#ifndef UP_ZC_MIN
#define UP_ZC_MIN	(64u << 10)	/* SEND_ZC for payloads this big, on TCP */
#endif

/*
 * Our own SQEs: bsteer_target_ud(target, kind << 40 | op index); for an
 * nbds leg's TLS tunnel, UK_TLS with its place * TLS_OPS + its op.
 */
enum { UK_TXHDR = 1, UK_TXDATA, UK_TXZC, UK_RXHDR, UK_RXDATA, UK_TLS, UK_RMW };

/* An nbds leg's tunnels: the live one, and old ones until their ops are back. */
#define UP_TUNS		4
#define UP_TLS_LINGER_S	10

static __u64 up_ud(__u32 t, __u32 kind, __u32 opi)
{
	return bsteer_target_ud(t, ((__u64)kind << 40) | opi);
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
	__u8 busy;		/* our SQEs that touch the slot */
	bool out;		/* the payload goes out (WRITE) */
	bool in;		/* a payload comes back (READ) */
	bool sent, replied;
};

/* One connection: target t of one worker's engine. */
struct up_conn {
	__u32 target;
	__u16 flags;		/* the server's transmission flags */
	__u32 timeout_ms;
	__u32 txhead, txtail;	/* requests not yet wholly sent */
	__u32 chain;		/* SQEs of the current send chain out */
	unsigned char rxhdr[NBD_REPLY_LEN];
	__u32 rxgot;
	__u32 rxop;		/* the READ whose payload is coming in */
	bool rx_armed;
	bool zc;		/* TCP: SEND_ZC for large payloads */
	bool dead;
	int fd;			/* for the goodbye and shutdown() */
	__u32 outstanding;	/* requests not yet completed */
	__u64 progress_ns;	/* the last byte moved either way */
	__u32 nops;
	struct up_op *op;	/* one per engine op index */
	struct bsteer_engine *e;
	struct tls_tunnel *tun[UP_TUNS];	/* nbds: TLS between c->fd and the server */
	struct tls_host host;
	__u32 min_block;	/* the server's, if it said (>1: ops off it go to rmw) */
	struct nbd_rmw *rmw;	/* nbd_rmw.c's thread, once min_block > 1 */
};

static struct up_conn *conn_of(struct bsteer_engine *e, __u32 t)
{
	return bsteer_target_priv(e, t);
}

/* ---- an nbds leg's TLS tunnel, on this ring ---- */

static struct io_uring_sqe *tls_sqe(void *arg)
{
	struct up_conn *c = arg;

	bsteer_engine_reserve(c->e, 1);
	return bsteer_engine_sqe(c->e);
}

static __u64 tls_ud(void *arg, __u32 id, int op)
{
	const struct up_conn *c = arg;

	return up_ud(c->target, UK_TLS, id * TLS_OPS + op);
}

static void tls_gone(void *arg, __u32 id, bool handshaken)
{
	struct up_conn *c = arg;

	(void)handshaken;
	c->tun[id] = NULL;
}

/* Run the leg's tunnel here, if it has one: -EBUSY while old ones linger. */
static int tls_take(struct bsteer_engine *e, struct up_conn *c, struct nbd_leg *info)
{
	__u32 i;

	if (!info || !info->tun)
		return 0;
	for (i = 0; i < UP_TUNS && c->tun[i]; i++)
		;
	if (i == UP_TUNS)
		return -EBUSY;
	c->e = e;
	c->host = (struct tls_host){ c, tls_sqe, tls_ud, NULL, tls_gone };
	c->tun[i] = info->tun;
	info->tun = NULL;
	tls_tunnel_run(c->tun[i], &c->host, i);
	return 0;
}

bool nbd_client_alive(struct bsteer_engine *e, __u32 t)
{
	struct up_conn *c = conn_of(e, t);

	return c && !c->dead;
}

/*
 * Take target @t's connection, past its handshake. Again, with a new
 * connection, once the old one has failed and has nothing in flight.
 */
int nbd_client_attach(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg)
{
	struct nbd_leg *info = leg->priv;
	struct up_conn *c = conn_of(e, t);
	int domain = 0;
	socklen_t len = sizeof(domain);

	if (c && (!c->dead || c->outstanding || c->chain || c->rx_armed))
		return -EBUSY;
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		c->nops = bsteer_engine_nops(e);
		c->op = calloc(c->nops, sizeof(*c->op));
		if (!c->op) {
			free(c);
			return -ENOMEM;
		}
		bsteer_target_set_priv(e, t, c);
	}
	c->target = t;
	if (tls_take(e, c, info))
		return -EBUSY;
	memset(c->op, 0, c->nops * sizeof(*c->op));
	c->target = t;
	c->fd = leg->fd;
	c->flags = info ? info->flags : 0;
	c->timeout_ms = bsteer_engine_opts(e)->target_timeout_ms ?: UP_TIMEOUT_MS;
	c->txhead = c->txtail = c->rxop = UP_NONE;
	c->chain = c->rxgot = c->outstanding = 0;
	c->rx_armed = c->dead = false;
	c->zc = !getsockopt(leg->fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) &&
		(domain == AF_INET || domain == AF_INET6);
	c->progress_ns = bsteer_now_ns();
	c->min_block = info ? info->min_block : 0;
	if (c->rmw) {
		nbd_rmw_drop(c->rmw);	/* a new connection: the thread's goes too */
	} else if (c->min_block > 1) {
		int err;

		c->rmw = nbd_rmw_new(leg->spec, t, c->nops, c->timeout_ms, &err);
		if (!c->rmw)
			return err;
	}
	return 0;
}

/* Both halves done and the slot is ours again: complete the op. */
static void maybe_complete(struct bsteer_engine *e, struct up_conn *c, __u32 i)
{
	struct up_op *o = &c->op[i];

	if (o->state != UO_ACTIVE || !o->sent || !o->replied || o->busy)
		return;
	o->state = UO_FREE;
	c->outstanding--;
	if (bsteer_target_complete(e, o->ud, o->res))
		/* cannot happen after a submit; be loud */
		fprintf(stderr, "bsteer: no SQE to complete an upstream op\n");
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
	for (i = 0; i < c->nops; i++) {
		struct up_op *o = &c->op[i];

		if (o->state != UO_ACTIVE)
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
		return c->flags & NBD_FLAG_SEND_FLUSH ? NBD_CMD_FLUSH : -ENOENT;
	case BSTEER_OP_PUNCH:
	case BSTEER_OP_ZERO:
		/* Both must read back as zeros: WRITE_ZEROES, not TRIM. */
		if (!(c->flags & NBD_FLAG_SEND_WRITE_ZEROES))
			return -EOPNOTSUPP;
		if (opcode == BSTEER_OP_ZERO)
			*flags = NBD_CMD_FLAG_NO_HOLE;
		return NBD_CMD_WRITE_ZEROES;
	default:
		return -EINVAL;
	}
}

/* Queue op @io as an NBD request; -EINVAL for an opcode NBD cannot carry. */
int nbd_client_submit(struct bsteer_engine *e, __u32 t,
		      const struct bsteer_target_io *io)
{
	struct up_conn *c = conn_of(e, t);
	struct up_op *o = &c->op[io->op];
	__u16 flags;
	int cmd = nbd_cmd(c, io->opcode, &flags);

	if (cmd == -EINVAL || io->op >= c->nops)
		return -EINVAL;
	if (o->state != UO_FREE)
		return -EBUSY;
	/* Off the server's minimum block size: read-modify-write, on a thread. */
	if (!c->dead && cmd >= 0 && c->rmw && nbd_rmw_unaligned(c->min_block, io))
		return nbd_rmw_submit(c->rmw, io, c->min_block);
	memset(o, 0, sizeof(*o));
	o->ud = io->ud;
	o->buf = io->buf;
	o->slot = io->slot;
	o->next = UP_NONE;
	o->state = UO_ACTIVE;
	if (!c->outstanding)
		c->progress_ns = bsteer_now_ns();
	c->outstanding++;
	if (c->dead || cmd < 0) {
		/* Nothing to send: a flush the server needs not, or a failure. */
		o->res = c->dead ? -EIO : cmd == -ENOENT ? 0 : cmd;
		o->sent = o->replied = true;
		maybe_complete(e, c, io->op);
		return 0;
	}
	o->out = cmd == NBD_CMD_WRITE;
	o->in = cmd == NBD_CMD_READ;
	o->len = o->out || o->in ? io->len : 0;
	o->res = o->len;
	nbd_request_header(o->hdr, flags, cmd, io->ud, io->offset, io->len);
	if (c->txtail == UP_NONE)
		c->txhead = io->op;
	else
		c->op[c->txtail].next = io->op;
	c->txtail = io->op;
	return 0;
}

/* Requests at the head of the send queue that are wholly out leave it. */
static void tx_pop(struct bsteer_engine *e, struct up_conn *c)
{
	while (c->txhead != UP_NONE) {
		__u32 i = c->txhead;
		struct up_op *o = &c->op[i];

		if (o->hsent < NBD_REQUEST_LEN || o->dsent < (o->out ? o->len : 0))
			break;
		c->txhead = o->next;
		if (c->txhead == UP_NONE)
			c->txtail = UP_NONE;
		o->sent = true;
		maybe_complete(e, c, i);
	}
}

/* The payload of @o from where it stopped: from the slot, SEND_ZC or not. */
static void tx_data(struct bsteer_engine *e, struct up_conn *c, __u32 i,
		    struct io_uring_sqe *sqe)
{
	struct up_op *o = &c->op[i];
	char *p = (char *)o->buf + o->dsent;
	__u32 left = o->len - o->dsent;

	if (c->zc && left >= UP_ZC_MIN) {
		io_uring_prep_send_zc_fixed(sqe, c->target, p, left,
					    MSG_WAITALL | MSG_NOSIGNAL,
					    IORING_SEND_ZC_REPORT_USAGE, o->slot);
		io_uring_sqe_set_data64(sqe, up_ud(c->target, UK_TXZC, i));
	} else {
		io_uring_prep_write_fixed(sqe, c->target, p, left,
					  BSTEER_OFF_STREAM, o->slot);
		io_uring_sqe_set_data64(sqe, up_ud(c->target, UK_TXDATA, i));
	}
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
	o->busy++;
	(void)e;
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
	     i = c->op[i].next) {
		struct up_op *o = &c->op[i];

		if (o->hsent < NBD_REQUEST_LEN) {
			sqe = bsteer_engine_sqe(e);
			io_uring_prep_send(sqe, c->target, o->hdr + o->hsent,
					   NBD_REQUEST_LEN - o->hsent,
					   MSG_WAITALL | MSG_NOSIGNAL | MSG_MORE);
			sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
			io_uring_sqe_set_data64(sqe, up_ud(c->target, UK_TXHDR, i));
			n++;
		}
		if (o->out && o->dsent < o->len) {
			sqe = bsteer_engine_sqe(e);
			tx_data(e, c, i, sqe);
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
		io_uring_sqe_set_data64(sqe, up_ud(c->target, UK_RXHDR, 0));
	} else {
		struct up_op *o = &c->op[c->rxop];

		io_uring_prep_read_fixed(sqe, c->target, (char *)o->buf + o->got,
					 o->len - o->got, BSTEER_OFF_STREAM, o->slot);
		io_uring_sqe_set_data64(sqe, up_ud(c->target, UK_RXDATA, c->rxop));
		o->busy++;
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	c->rx_armed = true;
}

/* A whole reply header is in: which request, and how did it go? */
static void rx_header(struct bsteer_engine *e, struct up_conn *c)
{
	__u64 cookie = nbd_get64(c->rxhdr + 8);
	__u32 err = nbd_get32(c->rxhdr + 4);
	int i = bsteer_engine_op_of(e, cookie);
	struct up_op *o;

	c->rxgot = 0;
	if (nbd_get32(c->rxhdr) != NBD_SIMPLE_REPLY_MAGIC) {
		conn_fail(e, c, -EPROTO, "a reply with a bad magic");
		return;
	}
	if (i < 0 || (__u32)i >= c->nops || c->op[i].ud != cookie ||
	    c->op[i].state != UO_ACTIVE || c->op[i].replied) {
		conn_fail(e, c, -EPROTO, "a reply to no request of ours");
		return;
	}
	o = &c->op[i];
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

/* A send of ours is back: count what went, or fail the connection. */
static void tx_cqe(struct bsteer_engine *e, struct up_conn *c, __u32 kind,
		   __u32 i, int res)
{
	struct up_op *o = &c->op[i];

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
}

static void rx_cqe(struct bsteer_engine *e, struct up_conn *c, __u32 kind,
		   __u32 i, int res)
{
	struct up_op *o = &c->op[i];

	c->rx_armed = false;
	if (kind == UK_RXDATA)
		o->busy--;
	if (res <= 0) {
		conn_fail(e, c, res ?: -ECONNRESET,
			  res ? "receiving failed" : "the server closed the connection");
		if (kind == UK_RXDATA)
			maybe_complete(e, c, i);
		return;
	}
	if (kind == UK_RXHDR) {
		c->rxgot += res;
		if (c->rxgot == NBD_REPLY_LEN)
			rx_header(e, c);
	} else {
		o->got += res;
		if (o->got == o->len) {
			c->rxop = UP_NONE;
			o->replied = true;
			maybe_complete(e, c, i);
		}
	}
	rx_arm(e, c);
}

void nbd_client_cqe(struct bsteer_engine *e, __u32 t, const struct io_uring_cqe *cqe)
{
	__u64 low = bsteer_ud_low(cqe->user_data);
	__u32 kind = low >> 40, i = low & 0xffffffff;
	struct up_conn *c = conn_of(e, t);
	int res = cqe->res;

	if (c && kind == UK_TLS) {
		if (i / TLS_OPS < UP_TUNS && c->tun[i / TLS_OPS])
			tls_tunnel_cqe(c->tun[i / TLS_OPS], i % TLS_OPS, res);
		return;
	}
	if (c && kind == UK_RMW) {
		if (c->rmw)
			nbd_rmw_cqe(e, c->rmw);
		return;
	}
	if (!c || (kind != UK_RXHDR && i >= c->nops))
		return;
	if (res > 0)
		c->progress_ns = bsteer_now_ns();
	switch (kind) {
	case UK_TXZC:
		if (cqe->flags & IORING_CQE_F_NOTIF) {
			/* The kernel let go of the slot's pages. */
			if ((__u32)res & IORING_NOTIF_USAGE_ZC_COPIED)
				c->zc = false;
			c->op[i].busy--;
			maybe_complete(e, c, i);
			break;
		}
		/* With a notification to follow, the slot stays busy till then. */
		if (cqe->flags & IORING_CQE_F_MORE)
			c->op[i].busy++;
		if (res == -EOPNOTSUPP) {
			c->zc = false;	/* resend it the plain way */
			res = -ECANCELED;
		}
		tx_cqe(e, c, kind, i, res);
		break;
	case UK_TXHDR:
	case UK_TXDATA:
		tx_cqe(e, c, kind, i, res);
		break;
	case UK_RXHDR:
	case UK_RXDATA:
		rx_cqe(e, c, kind, i, res);
		break;
	}
}

/*
 * The policy gave up on the leg (a server that answers errors, say, as
 * nbdkit does once told to stop): the connection goes at once, so that
 * the server can exit and another start on the same address.
 */
void nbd_client_fail(struct bsteer_engine *e, __u32 t)
{
	struct up_conn *c = conn_of(e, t);

	if (c && c->rmw)
		nbd_rmw_drop(c->rmw);
	if (c && !c->dead)
		conn_fail(e, c, -ESHUTDOWN, "the leg was marked failed");
}

/* Before each submit: write the queued SQEs; fail a connection that hangs. */
void nbd_client_kick(struct bsteer_engine *e, __u32 t)
{
	struct up_conn *c = conn_of(e, t);
	__u32 i;

	if (!c)
		return;
	for (i = 0; i < UP_TUNS; i++)	/* an old tunnel whose server does not read */
		if (c->tun[i])
			tls_tunnel_tick(c->tun[i], bsteer_now_ns(), UP_TLS_LINGER_S);
	if (c->rmw)
		nbd_rmw_arm(e, c->rmw, up_ud(t, UK_RMW, 0));
	if (c->dead)
		return;
	if (c->outstanding &&
	    bsteer_now_ns() - c->progress_ns > c->timeout_ms * 1000000ull) {
		conn_fail(e, c, -ETIMEDOUT, "no progress with requests out");
		return;
	}
	tx_start(e, c);
	rx_arm(e, c);
}

/* NBD requests still waiting for their reply. */
__u32 nbd_client_waiting(struct bsteer_engine *e, __u32 t)
{
	struct up_conn *c = conn_of(e, t);

	return c ? c->outstanding : 0;
}

/* Leaving a running ring: the tunnels' ops are on sockets of their own. */
void nbd_client_cancel(struct bsteer_engine *e, __u32 t)
{
	struct up_conn *c = conn_of(e, t);
	int net, app;

	for (int i = 0; c && i < UP_TUNS; i++) {
		if (!c->tun[i])
			continue;
		tls_tunnel_fds(c->tun[i], &net, &app);
		bsteer_engine_cancel_fd(e, net, false);
		bsteer_engine_cancel_fd(e, app, false);
	}
}

void nbd_client_detach(struct bsteer_engine *e, __u32 t)
{
	struct up_conn *c = conn_of(e, t);
	unsigned char disc[NBD_REQUEST_LEN];
	bool tls = false;

	if (!c)
		return;
	for (int i = 0; i < UP_TUNS; i++)
		tls = tls || c->tun[i];
	/* A polite goodbye, if the connection is idle and alive. */
	if (!c->dead && !c->outstanding) {
		nbd_request_header(disc, 0, NBD_CMD_DISC, 0, 0, 0);
		/* An nbds leg's: through its live tunnel, which goes with us. */
		for (int i = 0; i < UP_TUNS; i++)
			tls_tunnel_goodbye(c->tun[i], disc, sizeof(disc));
		if (!tls && send(c->fd, disc, sizeof(disc), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			(void)0;	/* it is going anyway */
	}
	nbd_rmw_free(c->rmw);
	for (int i = 0; i < UP_TUNS; i++)
		tls_tunnel_free(c->tun[i]);
	free(c->op);
	free(c);
	bsteer_target_set_priv(e, t, NULL);
}
