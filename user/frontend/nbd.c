// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The NBD frontend: fixed newstyle negotiation, then simple-reply
 * transmission. Each request becomes a generic block request that the
 * policy steers: a WRITE's payload is received straight into a borrowed
 * slot, a READ's data is sent straight from one.
 *
 * Per connection, requests are read in stream order (the next header is
 * armed once the previous payload is in), and replies go out in order,
 * one socket op at a time, so that they never interleave. Replies that
 * queue up while one is out leave together in one vectored send.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "serve.h"
#include "nbd_proto.h"

#define META_ALLOC		"base:allocation"
#define META_ALLOC_ID		1
#define MAX_EXTENTS		64

#define MAX_OPT_LEN		4096
#define MIN_BLOCK		512
#define CONN_MAX_REQS		128	/* requests a client may have open */
#define MAX_CONNS		BSTEER_FRONTEND_FILES
#define HANDSHAKE_TIMEOUT_S	10

/* user_data of the frontend's own SQEs: magic 0xb6, kind, index. */
#define UD_MAGIC		0xb6ull
enum { UD_ACCEPT = 1, UD_SEND = 3, UD_SENDV = 4, UD_SPLICE = 5 };

static __u64 ud_make(int kind, __u32 idx)
{
	return (UD_MAGIC << 56) | ((__u64)kind << 48) | idx;
}

#define MAX_PARTS		64
#define MAX_IO			(32u << 20)

/* A vectored send: up to SEND_IOV pieces; no reply joins past SEND_MAX bytes. */
#define SEND_IOV		64
#define SEND_MAX		(1u << 20)

/*
 * One client request. READ and WRITE take one slot per part (a part is
 * one bsteer request, steered by the policy on its own); the others are
 * one part with no slot. The reply goes when every part is back.
 */
struct io {
	struct conn *c;
	__u64 cookie;
	__u64 offset;
	__u32 len;
	__u32 nparts;
	__u32 done;		/* parts the policy finished */
	__u32 recv_next;	/* next WRITE part whose payload to receive */
	__u32 nbd_error;	/* first error: the reply's */
	__u8 cmd;
	bool broken;		/* the payload stream was cut */
	bool payload_out;	/* a part's payload receive is out */
	__u32 nslots;		/* slots its parts hold */
	__u32 req[MAX_PARTS];
};

/* A reply: hdr_len bytes of header (and payload), then io's parts' data. */
struct reply {
	struct reply *next;
	struct io *io;		/* READ data, part by part, or NULL */
	__u32 part;		/* the part being sent */
	__u32 hdr_len;
	unsigned char hdr[];
};

struct conn {
	bool used;
	int fd;
	__u32 idx;		/* frontend file index, also the conn id */
	struct export *ex;
	__u32 hdr_seq;		/* stamps this connection's header receives */
	struct bsteer_blkreq pending;	/* a parsed header waiting (stalled) */
	bool hdr_armed;		/* a header receive is out */
	bool hdr_linked;	/* ... linked behind the last payload receive */
	bool hdr_waiting;	/* a header is in, its payload's end not yet seen */
	bool payload;		/* a payload receive is out */
	bool closing;		/* no new requests; close when drained */
	bool stalled;		/* pending waits for a slot or a request */
	bool capped;		/* stopped reading at CONN_MAX_REQS */
	__u32 reqs;		/* requests started, not yet replied to */
	__u32 slots;		/* slots its requests hold */
	__u64 send_ns;		/* the reply being sent last moved then */
	struct reply *head, *tail;
	struct reply *sending;	/* first of the replies being sent */
	__u32 nsending;		/* ... linked by next, this many */
	__u32 sends;		/* our SQEs out for the reply */
	__u32 sendv_len;	/* bytes the vectored send carries */
	__u32 chain;		/* ops of a spliced reply still out */
	__u64 chain_len, chain_sent;	/* its bytes: all, and sent so far */
	struct iovec *iov;	/* its pieces (SEND_IOV), from the first */
	struct msghdr msg;
	bool structured;	/* structured replies negotiated */
	bool meta_alloc;	/* base:allocation selected */
	bool tcp;		/* a TCP socket (not AF_UNIX) */
};

struct req_info {
	struct io *io;		/* the client request it is a part of */
	struct io *payload_io;	/* its payload receive is out, for this io */
	struct conn *payload_c;	/* ... on this connection */
	struct conn *reply_c;	/* its reply data is being sent */
};

/* What negotiation settled, handed to the connection. */
struct nego {
	bool structured;
	bool meta_alloc;
	char meta_export[MAX_OPT_LEN + 1];
};

struct nbd {
	bool accept_armed[SERVE_MAX_LISTEN];
	struct conn conns[MAX_CONNS];
	struct req_info *ri;	/* per request of the engine */
	__u32 nstalled;
	__u64 to_send[MAX_CONNS / 64];	/* connections with replies to start */
	bool stopping;
	__u64 scanned_ns;	/* last look for replies nobody reads */
};

static struct nbd *priv(struct bsteer_server *s)
{
	return s->fe_priv;
}

static struct req_info *rinfo(struct bsteer_server *s, __u32 r)
{
	return &priv(s)->ri[r - s->e.req_base];
}

static __u32 nbd_errno(int err)
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

static void put16(unsigned char *p, __u16 v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static void put32(unsigned char *p, __u32 v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void put64(unsigned char *p, __u64 v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

/* Bytes of a request one part (one slot) carries on this export. */
static __u32 part_size(struct bsteer_server *s, const struct export *ex)
{
	return ex->part_max ? ex->part_max : s->in->slot_size;
}

/* The largest READ or WRITE: MAX_IO, or what half the ring's slots hold. */
static __u32 max_io(struct bsteer_server *s, const struct export *ex)
{
	__u64 parts = s->e.slot_count / 2, part = part_size(s, ex);

	if (parts > MAX_PARTS)
		parts = MAX_PARTS;
	if (!parts)
		parts = 1;
	return parts * part < MAX_IO ? parts * part : MAX_IO;
}

/* ---- negotiation: blocking, with a timeout, right after accept ---- */

static int xwrite(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		p += n;
		len -= n;
	}
	return 0;
}

static int xread(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		p += n;
		len -= n;
	}
	return 0;
}

static int opt_reply(int fd, __u32 opt, __u32 type, const void *data, __u32 len)
{
	unsigned char h[20];
	__u64 m = htobe64(REPLY_MAGIC_OPT);
	__u32 v;

	memcpy(h, &m, 8);
	v = htobe32(opt);
	memcpy(h + 8, &v, 4);
	v = htobe32(type);
	memcpy(h + 12, &v, 4);
	v = htobe32(len);
	memcpy(h + 16, &v, 4);
	if (xwrite(fd, h, sizeof(h)))
		return -EIO;
	return len ? xwrite(fd, data, len) : 0;
}

static int opt_error(int fd, __u32 opt, __u32 type, const char *msg)
{
	return opt_reply(fd, opt, type, msg, strlen(msg));
}

static __u16 export_flags(struct export *ex)
{
	return TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_TRIM |
	       (ex->no_zeroes ? 0 : TF_SEND_WRITE_ZEROES | TF_SEND_FAST_ZERO) |
	       TF_SEND_CACHE | TF_CAN_MULTI_CONN |
	       (ex->rdonly ? TF_READ_ONLY : 0);
}

static int send_info(struct bsteer_server *s, int fd, __u32 opt, __u16 type,
		     struct export *ex)
{
	unsigned char b[2 + 128];
	__u16 t = htobe16(type);
	size_t n = 2;

	memcpy(b, &t, 2);
	switch (type) {
	case INFO_EXPORT: {
		__u64 size = htobe64(ex->size);
		__u16 fl = htobe16(export_flags(ex));

		memcpy(b + 2, &size, 8);
		memcpy(b + 10, &fl, 2);
		n = 12;
		break;
	}
	case INFO_NAME:
		n += strlen(ex->name);
		memcpy(b + 2, ex->name, n - 2);
		break;
	case INFO_DESCRIPTION:
		n += strlen(ex->description);
		memcpy(b + 2, ex->description, n - 2);
		break;
	case INFO_BLOCK_SIZE: {
		__u32 v[3] = { htobe32(MIN_BLOCK), htobe32(4096),
			       htobe32(max_io(s, ex)) };

		memcpy(b + 2, v, 12);
		n = 14;
		break;
	}
	default:
		return 0;
	}
	return opt_reply(fd, opt, REP_INFO, b, n);
}

/*
 * The export name that opens INFO, GO and the META_CONTEXT options: a
 * 32-bit length, then the name, with at least @tail bytes after it.
 * Returns the bytes consumed, or 0 if the lengths do not add up.
 */
static __u32 opt_export_name(const unsigned char *d, __u32 len, __u32 tail,
			     char *name)
{
	__u32 nlen;

	if (len < 4 + tail)
		return 0;
	memcpy(&nlen, d, 4);
	nlen = be32toh(nlen);
	if (nlen > len - 4 - tail)
		return 0;
	memcpy(name, d + 4, nlen);
	name[nlen] = 0;
	return 4 + nlen;
}

/* OPT_INFO / OPT_GO. Returns 1 to enter transmission (GO), 0, or -EIO. */
static int opt_info_go(struct bsteer_server *s, int fd, __u32 opt,
		       const unsigned char *d, __u32 len, struct export **out)
{
	char name[MAX_OPT_LEN + 1];
	bool want_name = false, want_desc = false;
	struct export *ex;
	__u32 nlen;
	__u16 ninfo, i;

	nlen = opt_export_name(d, len, 2, name);
	if (!nlen)
		return opt_error(fd, opt, REP_ERR_INVALID, "bad name length");
	memcpy(&ninfo, d + nlen, 2);
	ninfo = be16toh(ninfo);
	if (len != nlen + 2 + 2u * ninfo)
		return opt_error(fd, opt, REP_ERR_INVALID, "bad option length");
	for (i = 0; i < ninfo; i++) {
		__u16 t;

		memcpy(&t, d + nlen + 2 + 2 * i, 2);
		t = be16toh(t);
		want_name |= t == INFO_NAME;
		want_desc |= t == INFO_DESCRIPTION;
	}
	ex = serve_export_find(s, *name ? name : s->exports[0].name);
	if (!ex)
		return opt_error(fd, opt, REP_ERR_UNKNOWN, "no such export");
	if (send_info(s, fd, opt, INFO_EXPORT, ex) ||
	    (want_name && send_info(s, fd, opt, INFO_NAME, ex)) ||
	    (want_desc && send_info(s, fd, opt, INFO_DESCRIPTION, ex)) ||
	    send_info(s, fd, opt, INFO_BLOCK_SIZE, ex) ||
	    opt_reply(fd, opt, REP_ACK, NULL, 0))
		return -EIO;
	if (opt != OPT_GO)
		return 0;
	*out = ex;
	return 1;
}

/*
 * LIST/SET_META_CONTEXT: export name, then queries. The only context is
 * base:allocation; "base:" lists it too. Returns 0 or -EIO.
 */
static int opt_meta(struct bsteer_server *s, int fd, __u32 opt,
		    const unsigned char *d, __u32 len, struct nego *ng)
{
	static const char ctx[] = META_ALLOC;
	unsigned char rep[4 + sizeof(ctx)];
	__u32 nlen, nq, q, qlen, pos;
	bool match = false;
	char name[MAX_OPT_LEN + 1];

	if (opt == OPT_SET_META_CONTEXT)
		ng->meta_alloc = false;	/* replaced, even on failure */
	if (!ng->structured)
		return opt_error(fd, opt, REP_ERR_INVALID,
				 "negotiate structured replies first");
	nlen = opt_export_name(d, len, 4, name);
	if (!nlen)
		return opt_error(fd, opt, REP_ERR_INVALID, "bad name length");
	memcpy(&nq, d + nlen, 4);
	nq = be32toh(nq);
	pos = nlen + 4;
	for (q = 0; q < nq; q++) {
		if (len - pos < 4)
			return opt_error(fd, opt, REP_ERR_INVALID, "truncated query");
		memcpy(&qlen, d + pos, 4);
		qlen = be32toh(qlen);
		pos += 4;
		if (qlen > len - pos)
			return opt_error(fd, opt, REP_ERR_INVALID, "bad query length");
		if ((qlen == strlen(ctx) && !memcmp(d + pos, ctx, qlen)) ||
		    (opt == OPT_LIST_META_CONTEXT && qlen == 5 &&
		     !memcmp(d + pos, "base:", 5)))
			match = true;
		pos += qlen;
	}
	if (pos != len)
		return opt_error(fd, opt, REP_ERR_INVALID, "bad option length");
	if (!serve_export_find(s, *name ? name : s->exports[0].name))
		return opt_error(fd, opt, REP_ERR_UNKNOWN, "no such export");
	if (opt == OPT_LIST_META_CONTEXT && !nq)
		match = true;
	if (match) {
		put32(rep, opt == OPT_SET_META_CONTEXT ? META_ALLOC_ID : 0);
		memcpy(rep + 4, ctx, sizeof(ctx) - 1);
		if (opt_reply(fd, opt, REP_META_CONTEXT, rep, 4 + sizeof(ctx) - 1))
			return -EIO;
		if (opt == OPT_SET_META_CONTEXT) {
			ng->meta_alloc = true;
			snprintf(ng->meta_export, sizeof(ng->meta_export), "%s",
				 *name ? name : s->exports[0].name);
		}
	}
	return opt_reply(fd, opt, REP_ACK, NULL, 0);
}

static int opt_list(struct bsteer_server *s, int fd)
{
	unsigned char b[4 + 64];
	int i;

	for (i = 0; i < s->nexports; i++) {
		__u32 n = strlen(s->exports[i].name), be = htobe32(n);

		memcpy(b, &be, 4);
		memcpy(b + 4, s->exports[i].name, n);
		if (opt_reply(fd, OPT_LIST, REP_SERVER, b, 4 + n))
			return -EIO;
	}
	return opt_reply(fd, OPT_LIST, REP_ACK, NULL, 0);
}

/* The whole negotiation. Returns the export to serve, or NULL to close. */
static struct export *negotiate(struct bsteer_server *s, int fd, struct nego *ng)
{
	unsigned char hello[18], d[MAX_OPT_LEN];
	__u64 m;
	__u32 cflags, opt, len;
	__u16 f = htobe16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
	struct export *ex = NULL;
	int rc;

	m = htobe64(NBDMAGIC);
	memcpy(hello, &m, 8);
	m = htobe64(IHAVEOPT);
	memcpy(hello + 8, &m, 8);
	memcpy(hello + 16, &f, 2);
	if (xwrite(fd, hello, sizeof(hello)) || xread(fd, &cflags, 4))
		return NULL;
	cflags = be32toh(cflags);
	if (cflags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) {
		serve_log(s, "nbd: client flags 0x%x not understood, closing", cflags);
		return NULL;
	}
	for (;;) {
		unsigned char oh[16];

		if (xread(fd, oh, sizeof(oh)))
			return NULL;
		memcpy(&m, oh, 8);
		memcpy(&opt, oh + 8, 4);
		memcpy(&len, oh + 12, 4);
		opt = be32toh(opt);
		len = be32toh(len);
		if (be64toh(m) != IHAVEOPT) {
			serve_log(s, "nbd: bad option magic, closing");
			return NULL;
		}
		if (len > MAX_OPT_LEN) {
			serve_log(s, "nbd: option %u of %u bytes is too long, closing",
				  opt, len);
			return NULL;
		}
		if (xread(fd, d, len))
			return NULL;
		switch (opt) {
		case OPT_EXPORT_NAME: {
			unsigned char r[10];
			__u64 size;
			__u16 fl;
			char name[MAX_OPT_LEN + 1];

			memcpy(name, d, len);
			name[len] = 0;
			ex = serve_export_find(s, *name ? name : s->exports[0].name);
			if (!ex)	/* this option has no error reply */
				return NULL;
			size = htobe64(ex->size);
			fl = htobe16(export_flags(ex));
			memcpy(r, &size, 8);
			memcpy(r + 8, &fl, 2);
			/* NO_ZEROES is always offered and so always... */
			if (xwrite(fd, r, sizeof(r)))
				return NULL;
			if (!(cflags & FLAG_NO_ZEROES)) {
				static const unsigned char z[124];

				if (xwrite(fd, z, sizeof(z)))
					return NULL;
			}
			return ex;
		}
		case OPT_ABORT:
			opt_reply(fd, opt, REP_ACK, NULL, 0);
			return NULL;
		case OPT_LIST:
			rc = len ? opt_error(fd, opt, REP_ERR_INVALID, "no data expected") :
				   opt_list(s, fd);
			break;
		case OPT_INFO:
		case OPT_GO:
			rc = opt_info_go(s, fd, opt, d, len, &ex);
			if (rc == 1) {
				/* A context chosen for another export does not apply. */
				if (strcmp(ng->meta_export, ex->name))
					ng->meta_alloc = false;
				return ex;
			}
			break;
		case OPT_STRUCTURED_REPLY:
			if (len) {
				rc = opt_error(fd, opt, REP_ERR_INVALID, "no data expected");
			} else {
				ng->structured = true;
				rc = opt_reply(fd, opt, REP_ACK, NULL, 0);
			}
			break;
		case OPT_LIST_META_CONTEXT:
		case OPT_SET_META_CONTEXT:
			rc = opt_meta(s, fd, opt, d, len, ng);
			break;
		default:
			rc = opt_error(fd, opt, REP_ERR_UNSUP, "option not supported");
		}
		if (rc < 0)
			return NULL;
	}
}

/* The handshake alone, on a connected socket: for the fuzzer and tests. */
struct export *nbd_negotiate(struct bsteer_server *s, int fd, bool *structured)
{
	struct nego *ng = calloc(1, sizeof(*ng));
	struct export *ex;

	if (!ng)
		return NULL;
	ex = negotiate(s, fd, ng);
	*structured = ng->structured;
	free(ng);
	return ex;
}

/* ---- transmission ---- */

static void conn_maybe_close(struct bsteer_server *s, struct conn *c);
static void want_send(struct bsteer_server *s, struct conn *c);
static int recv_part(struct bsteer_server *s, struct io *io);

static void prep_header(struct bsteer_server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->e.ring);

	if (!sqe) {
		c->closing = true;	/* cannot happen after the reserve */
		return;
	}
	/* Into map memory, where the hook's parser reads it in place. */
	io_uring_prep_recv(sqe, BSTEER_FRONTEND_FILE(c->idx),
			   s->in->fe_hdr + (size_t)BSTEER_HDR_SIZE *
			   bsteer_hdr_index(s->ring, c->idx), 28, MSG_WAITALL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, bsteer_parse_ud(BSTEER_PARSER_NBD, s->ring,
						     c->idx, ++c->hdr_seq));
	c->hdr_armed = true;
}

static void arm_header(struct bsteer_server *s, struct conn *c)
{
	if (c->closing || c->hdr_armed || c->hdr_waiting || c->payload || c->stalled)
		return;
	if (c->reqs >= CONN_MAX_REQS) {
		c->capped = true;	/* reply_done arms it again */
		return;
	}
	bsteer_engine_reserve(&s->e, 1);
	prep_header(s, c);
}

/*
 * May the next header's receive go right behind a payload receive, linked?
 * Otherwise the payload's completion arms it, or not.
 */
static bool header_may_follow(const struct conn *c)
{
	return !c->closing && !c->hdr_armed && !c->stalled && c->reqs < CONN_MAX_REQS;
}

/* Stop taking requests from this connection; it closes once drained. */
static void conn_fail(struct bsteer_server *s, struct conn *c, const char *why)
{
	if (!c->closing && why)
		serve_log(s, "nbd: connection %u: %s; closing it", c->idx, why);
	c->closing = true;
	/* An error breaks the stream both ways; a hang-up only stops reading. */
	shutdown(c->fd, SHUT_RD);
	if (c->hdr_armed) {
		/* shutdown() does not wake a receive on every socket kind. */
		struct io_uring_sqe *sqe;

		bsteer_engine_reserve(&s->e, 1);
		sqe = io_uring_get_sqe(&s->e.ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, bsteer_parse_ud(BSTEER_PARSER_NBD,
							s->ring, c->idx, c->hdr_seq), 0);
			io_uring_sqe_set_data64(sqe, 0);
		}
	}
	conn_maybe_close(s, c);
}

static void enqueue(struct bsteer_server *s, struct conn *c, struct reply *r)
{
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	want_send(s, c);
}

static struct reply *reply_alloc(struct bsteer_server *s, struct conn *c,
				 __u32 hdr_len)
{
	struct reply *r = calloc(1, sizeof(*r) + hdr_len);

	if (!r) {
		conn_fail(s, c, "out of memory for a reply");
		return NULL;
	}
	r->hdr_len = hdr_len;
	return r;
}

/* A structured chunk header: the cookie goes back as the client sent it. */
static void chunk_hdr(unsigned char *h, __u16 flags, __u16 type, __u64 cookie,
		      __u32 len)
{
	put32(h, STRUCTURED_MAGIC);
	put16(h + 4, flags);
	put16(h + 6, type);
	memcpy(h + 8, &cookie, 8);
	put32(h + 16, len);
}

/*
 * Reply to a request: simple, or structured where negotiated for READ
 * (data as one OFFSET_DATA chunk, errors as an ERROR chunk). With @len,
 * the data follows from @slot of request @req.
 */
static void queue_reply(struct bsteer_server *s, struct conn *c, __u64 cookie,
			__u32 error, __u8 cmd, __u64 offset, struct io *io)
{
	__u32 len = io && !error ? io->len : 0;
	struct reply *r;

	if (error)
		bsteer_stat_add(s->in, BSTEER_ST_FE_ERRORS, 1);
	bsteer_stat_add(s->in, BSTEER_ST_FE_BYTES_READ, len);
	if (c->structured && cmd == NBD_CMD_READ) {
		r = reply_alloc(s, c, error ? 26 : 28);
		if (!r)
			return;
		if (error) {
			chunk_hdr(r->hdr, REPLY_FLAG_DONE, REPLY_ERROR, cookie, 6);
			put32(r->hdr + 20, error);
			put16(r->hdr + 24, 0);
		} else {
			chunk_hdr(r->hdr, REPLY_FLAG_DONE, REPLY_OFFSET_DATA,
				  cookie, 8 + len);
			put64(r->hdr + 20, offset);
		}
	} else {
		r = reply_alloc(s, c, 16);
		if (!r)
			return;
		put32(r->hdr, SIMPLE_REPLY_MAGIC);
		put32(r->hdr + 4, error);
		memcpy(r->hdr + 8, &cookie, 8);
	}
	r->io = len ? io : NULL;
	enqueue(s, c, r);
}

/*
 * base:allocation for [off, off + len) of the export's first leg, from
 * SEEK_DATA/SEEK_HOLE: up to MAX_EXTENTS descriptors (one with REQ_ONE),
 * none reaching past the request.
 */
static void queue_block_status(struct bsteer_server *s, struct conn *c,
			       __u64 cookie, __u64 off, __u32 len, bool one)
{
	int fd = c->ex->fd[0];
	__u64 end = off + len, pos = off;
	__u32 n = 0, max = one ? 1 : MAX_EXTENTS;
	unsigned char d[MAX_EXTENTS][8];
	struct reply *r;

	/* Only a leg that holds the export as it is can speak for it. */
	while (pos < end && n < max && !c->ex->no_extents) {
		off_t data = lseek(fd, pos, SEEK_DATA), next;
		__u32 flags;

		if (data < 0 && (errno == ESPIPE || errno == EINVAL))
			break;		/* not seekable: cannot tell */
		if (data < 0 && errno != ENXIO) {
			queue_reply(s, c, cookie, nbd_errno(-errno), NBD_CMD_BLOCK_STATUS,
				    0, NULL);
			return;
		}
		if (data < 0 || (__u64)data >= end) {	/* a hole to the end */
			next = end;
			flags = STATE_HOLE | STATE_ZERO;
		} else if ((__u64)data > pos) {
			next = data;
			flags = STATE_HOLE | STATE_ZERO;
		} else {
			next = lseek(fd, pos, SEEK_HOLE);
			if (next < 0 || (__u64)next > end)
				next = end;
			flags = 0;
		}
		if ((__u64)next <= pos)
			break;
		put32(d[n], next - pos);
		put32(d[n] + 4, flags);
		n++;
		pos = next;
	}
	if (!n) {	/* lseek could not tell: call it all data */
		put32(d[0], len);
		put32(d[0] + 4, 0);
		n = 1;
	}
	r = reply_alloc(s, c, 20 + 4 + 8 * n);
	if (!r)
		return;
	chunk_hdr(r->hdr, REPLY_FLAG_DONE, REPLY_BLOCK_STATUS, cookie, 4 + 8 * n);
	put32(r->hdr + 20, META_ALLOC_ID);
	memcpy(r->hdr + 24, d, 8 * n);
	enqueue(s, c, r);
}

static void io_free(struct bsteer_server *s, struct io *io)
{
	__u32 i;

	/* READ parts were kept for their data: let them go now. */
	for (i = 0; io->cmd == NBD_CMD_READ && i < io->nparts; i++)
		bsteer_req_put(&s->e, io->req[i]);
	io->c->slots -= io->nslots;
	free(io);
}

/*
 * Send part @r->part of a READ's data from its slot, after @prefix bytes
 * of header the caller put in the slot's headroom (0: data only).
 */
static int send_part(struct bsteer_server *s, struct conn *c, struct reply *r,
		     __u32 prefix)
{
	struct io *io = r->io;
	__u32 req = io->req[r->part];
	struct bsteer_req *rq = &s->in->reqs[req];
	int err;

	rinfo(s, req)->reply_c = c;
	c->send_ns = s->e.now_ns;
	err = bsteer_frontend_send_prefixed(&s->e, req, BSTEER_FRONTEND_FILE(c->idx),
					    rq->slot, prefix, rq->len);
	if (err)
		rinfo(s, req)->reply_c = NULL;
	return err;
}

/*
 * A READ reply in one socket op: the header goes into the headroom right
 * before part 0's data and both leave from the slot in one WRITE_FIXED,
 * where a header SEND and a data write would be two. 0, or -EINVAL if
 * it does not fit (then the two ops do it).
 */
static int send_with_header(struct bsteer_server *s, struct conn *c,
			    struct reply *r)
{
	struct bsteer_req *rq = &s->in->reqs[r->io->req[0]];

	if (r->hdr_len > BSTEER_SLOT_HEADROOM || rq->len > s->in->slot_size ||
	    r->hdr_len > s->in->slot_size - rq->len)
		return -EINVAL;
	memcpy(bsteer_slot_data(s->in, rq->slot) - r->hdr_len, r->hdr, r->hdr_len);
	r->part = 0;
	return send_part(s, c, r, r->hdr_len);
}

/* The replies being sent are out (or never will be): let them go. */
static void reply_done(struct bsteer_server *s, struct conn *c, bool ok)
{
	struct reply *r = c->sending, *next;

	for (; c->nsending; c->nsending--, r = next) {
		next = r->next;
		if (r->io)
			io_free(s, r->io);
		c->reqs--;
		free(r);
	}
	c->sending = NULL;
	if (!ok)
		conn_fail(s, c, "reply could not be sent");
	want_send(s, c);
	if (c->capped) {
		c->capped = false;
		arm_header(s, c);
	}
	conn_maybe_close(s, c);
}

/* Is part @i of READ @io in its slot's pipe (spliced)? -1: partly, an error. */
static int part_piped(struct bsteer_server *s, const struct io *io, __u32 i,
		      int *fd)
{
	const struct bsteer_req *rq = &s->in->reqs[io->req[i]];
	__u32 len;

	*fd = bsteer_slot_pipe(&s->e, rq->slot, &len);
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
static int send_spliced(struct bsteer_server *s, struct conn *c,
			struct reply *r)
{
	struct io *io = r->io;
	struct io_uring_sqe *sqe;
	__u32 i, file = BSTEER_FRONTEND_FILE(c->idx);
	int fd, any = 0;

	for (i = 0; i < io->nparts; i++) {
		int k = part_piped(s, io, i, &fd);

		if (k < 0)
			return -EIO;
		any |= k;
	}
	if (!any)
		return -EAGAIN;
	bsteer_engine_reserve(&s->e, 1 + io->nparts);
	sqe = io_uring_get_sqe(&s->e.ring);
	if (!sqe)
		return -EIO;
	io_uring_prep_send(sqe, file, r->hdr, r->hdr_len,
			   MSG_WAITALL | MSG_NOSIGNAL | MSG_MORE);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, ud_make(UD_SPLICE, c->idx));
	c->chain = 1;
	c->chain_len = r->hdr_len;
	for (i = 0; i < io->nparts; i++) {
		const struct bsteer_req *rq = &s->in->reqs[io->req[i]];
		bool last = i + 1 == io->nparts;

		sqe = io_uring_get_sqe(&s->e.ring);
		if (!sqe) {	/* reserved above: cannot happen */
			c->chain_len = ~0ull;	/* what went out fails */
			break;
		}
		if (part_piped(s, io, i, &fd) > 0)
			io_uring_prep_splice(sqe, fd, -1, file, -1, rq->len,
					     last ? 0 : SPLICE_F_MORE);
		else
			io_uring_prep_send(sqe, file,
					   bsteer_slot_data(s->in, rq->slot),
					   rq->len, MSG_WAITALL | MSG_NOSIGNAL |
					   (last ? 0 : MSG_MORE));
		sqe->flags |= IOSQE_FIXED_FILE | (last ? 0 : IOSQE_IO_LINK);
		io_uring_sqe_set_data64(sqe, ud_make(UD_SPLICE, c->idx));
		c->chain++;
		c->chain_len += rq->len;
	}
	c->sends += c->chain;
	c->chain_sent = 0;
	return 0;
}

/* A spliced reply's op is back; the reply is over with its last. */
static void spliced_cqe(struct bsteer_server *s, struct conn *c, int res)
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
		reply_done(s, c, false);
		return;
	}
	/* Out: the pipes are empty, and the slots can go. */
	for (i = 0; io && i < io->nparts; i++) {
		if (part_piped(s, io, i, &fd) > 0)
			bsteer_slot_pipe_sent(&s->e, s->in->reqs[io->req[i]].slot,
					      s->in->reqs[io->req[i]].len);
	}
	reply_done(s, c, true);
}

/* Pieces and bytes of reply @r in a vectored send; false if it has none. */
static bool reply_iov(struct bsteer_server *s, const struct reply *r,
		      struct iovec *iov, __u32 *niov, __u32 *bytes)
{
	__u32 i, n = r->io ? r->io->nparts : 0;
	int fd;

	if (*niov + 1 + n > SEND_IOV)
		return false;
	/* Spliced data cannot share a send with memory. */
	for (i = 0; i < n; i++)
		if (part_piped(s, r->io, i, &fd))
			return false;
	iov[(*niov)++] = (struct iovec){ (void *)r->hdr, r->hdr_len };
	*bytes += r->hdr_len;
	for (i = 0; i < n; i++) {
		const struct bsteer_req *rq = &s->in->reqs[r->io->req[i]];

		iov[(*niov)++] = (struct iovec){ bsteer_slot_data(s->in, rq->slot),
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
static int send_vectored(struct bsteer_server *s, struct conn *c)
{
	struct reply *r = c->head, *last = NULL;
	struct io_uring_sqe *sqe;
	__u32 n = 0, niov = 0, bytes = 0;

	if (!r->next)
		return -EAGAIN;
	if (!c->iov && !(c->iov = calloc(SEND_IOV, sizeof(*c->iov))))
		return -EAGAIN;
	for (; r && (!n || bytes < SEND_MAX); r = r->next, n++) {
		if (!reply_iov(s, r, c->iov, &niov, &bytes))
			break;
		last = r;
	}
	if (n < 2)
		return -EAGAIN;
	bsteer_engine_reserve(&s->e, 1);
	sqe = io_uring_get_sqe(&s->e.ring);
	if (!sqe)
		return -EAGAIN;
	c->msg = (struct msghdr){ .msg_iov = c->iov, .msg_iovlen = niov };
	io_uring_prep_sendmsg(sqe, BSTEER_FRONTEND_FILE(c->idx), &c->msg,
			      MSG_WAITALL | MSG_NOSIGNAL |
			      (c->tcp && last->next ? MSG_MORE : 0));
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud_make(UD_SENDV, c->idx));
	c->sends++;
	c->sending = c->head;
	c->nsending = n;
	c->sendv_len = bytes;
	c->head = last->next;
	if (!c->head)
		c->tail = NULL;
	last->next = NULL;
	c->send_ns = s->e.now_ns;
	bsteer_stat_add(s->in, BSTEER_ST_FE_SENDV, 1);
	bsteer_stat_add(s->in, BSTEER_ST_FE_SEND_BATCHED, n);
	return 0;
}

/* Start the next reply (or replies) of @c, unless one is out already. */
static void reply_next(struct bsteer_server *s, struct conn *c)
{
	struct io_uring_sqe *sqe;
	struct reply *r = c->head;

	if (c->sending || !r)
		return;
	if (!send_vectored(s, c))
		return;
	c->head = r->next;
	if (!c->head)
		c->tail = NULL;
	r->next = NULL;
	c->sending = r;
	c->nsending = 1;
	c->send_ns = s->e.now_ns;

	if (r->io) {
		int err = send_spliced(s, c, r);

		if (!err)
			return;
		if (err != -EAGAIN) {
			reply_done(s, c, false);
			return;
		}
	}
	if (r->io && !send_with_header(s, c, r))
		return;
	bsteer_engine_reserve(&s->e, 2);
	sqe = io_uring_get_sqe(&s->e.ring);
	if (!sqe) {
		c->sending = NULL;
		c->nsending = 0;
		r->next = c->head;	/* try again when a completion frees room */
		c->head = r;
		if (!c->tail)
			c->tail = r;
		conn_fail(s, c, "submission queue full");
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
	io_uring_sqe_set_data64(sqe, ud_make(UD_SEND, c->idx));
	c->sends++;
	if (!r->io)
		return;
	/* The data goes out from the slots, part by part, after the header. */
	sqe->flags |= IOSQE_IO_LINK;
	r->part = 0;
	if (send_part(s, c, r, 0)) {
		/* The header goes alone and the stream is now broken. */
		io_free(s, r->io);
		r->io = NULL;
		conn_fail(s, c, "cannot send read data");
	}
}

/*
 * Replies are started after the completions at hand are all seen, so that
 * those that became ready together leave together (the ring submits
 * nothing before then anyway).
 */
static void want_send(struct bsteer_server *s, struct conn *c)
{
	if (c->head && !c->sending)
		priv(s)->to_send[c->idx / 64] |= 1ull << (c->idx % 64);
}

static void start_sends(struct bsteer_server *s)
{
	struct nbd *n = priv(s);
	__u32 w;

	for (w = 0; w < MAX_CONNS / 64; w++) {
		while (n->to_send[w]) {
			int b = __builtin_ctzll(n->to_send[w]);
			struct conn *c = &n->conns[w * 64 + b];

			n->to_send[w] &= n->to_send[w] - 1;
			if (c->used)
				reply_next(s, c);
		}
	}
}

static void stall(struct bsteer_server *s, struct conn *c,
		  const struct bsteer_blkreq *p)
{
	c->pending = *p;
	if (!c->stalled) {
		c->stalled = true;
		priv(s)->nstalled++;
	}
}

/*
 * Start a client request: one bsteer request per part, each with its own
 * slot for READ and WRITE. With too few slots or request records free,
 * keep the header and read nothing more from this client until there are.
 */
static __u32 conn_slot_quota(struct bsteer_server *s)
{
	return s->e.slot_count / 2 ?: 1;
}

static void start_io(struct bsteer_server *s, struct conn *c,
		     const struct bsteer_blkreq *p, __u32 nerr, __u8 rtype)
{
	struct export *ex = c->ex;
	bool data = p->cmd == NBD_CMD_READ || p->cmd == NBD_CMD_WRITE;
	__u32 slot_size = part_size(s, ex), n, i, slot;
	struct io *io;
	int err = 0;

	n = data ? (p->len + slot_size - 1) / slot_size : 1;
	if (!n || n > MAX_PARTS) {
		conn_fail(s, c, "request size out of bounds");
		return;
	}
	if (bsteer_reqs_free(&s->e) < n || (data && bsteer_slots_free(&s->e) < n)) {
		stall(s, c, p);
		return;
	}
	/*
	 * One client holds at most half the ring's slots (one request of the
	 * largest size always fits), so that a client that does not read its
	 * replies cannot starve the others: it waits for its own slots.
	 */
	if (data && c->slots && c->slots + n > conn_slot_quota(s)) {
		stall(s, c, p);
		return;
	}
	io = calloc(1, sizeof(*io));
	if (!io) {
		conn_fail(s, c, "out of memory for a request");
		return;
	}
	io->c = c;
	io->cookie = p->cookie;
	io->offset = p->offset;
	io->len = p->len;
	io->cmd = p->cmd;
	io->nbd_error = nerr;
	for (i = 0; i < n; i++) {
		__u64 off = p->offset + (__u64)i * slot_size;
		__u32 len = data ? (p->len - i * slot_size < slot_size ?
				    p->len - i * slot_size : slot_size) : p->len;
		__u32 r;

		/* A refused WRITE's payload is still received, and dropped. */
		err = bsteer_req_alloc(&s->e, nerr ? BSTEER_REQ_NONE : rtype, off,
				       len, &r);
		if (err)
			break;
		io->req[i] = r;
		io->nparts = i + 1;
		bsteer_req_set_legs(&s->e, r, ex->tbase, ex->ntargets);
		s->in->reqs[r].flags |= BSTEER_REQF_EXACT |
			((p->flags & NBD_CMDF_FUA) ? BSTEER_REQF_FUA : 0) |
			((p->flags & NBD_CMDF_NO_HOLE) ? BSTEER_REQF_NO_HOLE : 0);
		/* Nothing of this index's earlier life may leak into this one. */
		memset(rinfo(s, r), 0, sizeof(struct req_info));
		rinfo(s, r)->io = io;
		if (data && (err = bsteer_slot_lease(&s->e, r, &slot)))
			break;
	}
	if (err) {
		/* Free by count, a last completion not yet reaped: wait. */
		for (i = 0; i < io->nparts; i++) {
			rinfo(s, io->req[i])->io = NULL;
			bsteer_req_abandon(&s->e, io->req[i]);
		}
		free(io);
		stall(s, c, p);
		return;
	}
	c->reqs++;
	io->nslots = data ? n : 0;
	c->slots += io->nslots;
	if (p->cmd == NBD_CMD_WRITE) {
		err = recv_part(s, io);
	} else {
		/* The request is all in the header: a NOP brings it to the policy. */
		for (i = 0; !err && i < n; i++)
			err = bsteer_frontend_op(&s->e, io->req[i], BSTEER_OP_NOP, 0,
						 BSTEER_NO_SLOT, 0, 0);
		arm_header(s, c);
	}
	if (err)
		conn_fail(s, c, "cannot start a request");
}

/*
 * A request, parsed by the BPF parser: check again what needs the export
 * (range, read-only, block size), then hand it to the engine.
 */
/*
 * What the export decides about a request the parser accepted: the NBD
 * error to answer with (@nerr, the parser's, if it had one), or -1 if the
 * connection must go (a WRITE payload larger than we take: it cannot be
 * drained without reading it). Nothing is leased before this says 0.
 */
int nbd_check_request(const struct export *ex, __u32 max, __u16 type,
		      __u64 off, __u32 len, __u32 nerr)
{
	if (type == NBD_CMD_READ || type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
	    type == NBD_CMD_CACHE || type == NBD_CMD_WRITE_ZEROES ||
	    type == NBD_CMD_BLOCK_STATUS) {
		if (!nerr && (!len || off > ex->size || len > ex->size - off))
			nerr = NBD_EINVAL;
		/* The advertised minimum block size is 512: hold clients to it. */
		else if (!nerr && ((off | len) & (MIN_BLOCK - 1)))
			nerr = NBD_EINVAL;
		else if (!nerr && ex->rdonly && (type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
						 type == NBD_CMD_WRITE_ZEROES))
			nerr = NBD_EPERM;
	}
	/* Checked before anything is leased: a client cannot make us allocate. */
	if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && len > max) {
		if (type == NBD_CMD_WRITE)
			return -1;
		nerr = NBD_EINVAL;
	}
	return nerr;
}

static void on_header(struct bsteer_server *s, struct conn *c,
		      const struct bsteer_blkreq *p)
{
	struct export *ex = c->ex;
	__u32 len = p->len, nerr = nbd_errno(p->error);
	__u16 flags = p->flags, type = p->cmd;
	__u64 cookie = p->cookie, off = p->offset;
	__u8 rtype = p->type;
	int rc;

	if (p->fatal) {
		conn_fail(s, c, p->error == -EPROTO ? "bad request magic" :
			  "short or failed header receive");
		return;
	}
	{
		static const enum bsteer_stat by_cmd[] = {
			[NBD_CMD_READ] = BSTEER_ST_FE_READ,
			[NBD_CMD_WRITE] = BSTEER_ST_FE_WRITE,
			[NBD_CMD_FLUSH] = BSTEER_ST_FE_FLUSH,
			[NBD_CMD_TRIM] = BSTEER_ST_FE_TRIM,
			[NBD_CMD_WRITE_ZEROES] = BSTEER_ST_FE_ZERO,
		};

		if (type != NBD_CMD_DISC)
			bsteer_stat_add(s->in, type < sizeof(by_cmd) / sizeof(by_cmd[0]) &&
					by_cmd[type] ? by_cmd[type] : BSTEER_ST_FE_OTHER, 1);
	}
	/* The parser's view must agree with the protocol before we act on it. */
	if (p->payload != (type == NBD_CMD_WRITE) ||
	    (rtype == BSTEER_REQ_WRITE) != (type == NBD_CMD_WRITE)) {
		conn_fail(s, c, "parser and frontend disagree");
		return;
	}
	rc = nbd_check_request(ex, max_io(s, ex), type, off, len, nerr);
	if (rc < 0) {
		conn_fail(s, c, "write payload larger than the maximum block size");
		return;
	}
	nerr = rc;
	switch (type) {
	case NBD_CMD_DISC:
		c->closing = true;
		conn_maybe_close(s, c);
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
		queue_reply(s, c, cookie, nerr, type, off, NULL);
		arm_header(s, c);
		return;
	case NBD_CMD_BLOCK_STATUS:
		/* Metadata, answered here: it moves no data. */
		c->reqs++;
		if (!c->meta_alloc)
			nerr = NBD_EINVAL;
		if (nerr)
			queue_reply(s, c, cookie, nerr, type, off, NULL);
		else
			queue_block_status(s, c, cookie, off, len,
					   flags & NBD_CMDF_REQ_ONE);
		arm_header(s, c);
		return;
	default:
		nerr = NBD_EINVAL;
		rtype = BSTEER_REQ_NONE;
	}
	/* An error decided here, with no payload to drain, needs no request. */
	if (nerr && (type != NBD_CMD_WRITE || !len)) {
		c->reqs++;
		queue_reply(s, c, cookie, nerr, type, off, NULL);
		arm_header(s, c);
		return;
	}
	start_io(s, c, p, nerr, rtype);
}

/* All parts are back: reply, or just let go if the stream was cut. */
static void io_finish(struct bsteer_server *s, struct io *io)
{
	struct conn *c = io->c;

	if (io->broken) {
		c->reqs--;
		io_free(s, io);
		conn_maybe_close(s, c);
		return;
	}
	if (io->cmd == NBD_CMD_READ && !io->nbd_error) {
		queue_reply(s, c, io->cookie, 0, NBD_CMD_READ, io->offset, io);
		return;
	}
	queue_reply(s, c, io->cookie, io->nbd_error, io->cmd, io->offset, NULL);
	io_free(s, io);
}

/*
 * The payload stream of a WRITE was cut: the parts whose payload never
 * began never will. They are dropped, and the io ends without a reply.
 */
static void io_break(struct bsteer_server *s, struct io *io, const char *why)
{
	__u32 i;

	if (io->broken)
		return;
	io->broken = true;
	for (i = io->recv_next; i < io->nparts; i++) {
		rinfo(s, io->req[i])->io = NULL;
		bsteer_req_abandon(&s->e, io->req[i]);
		io->done++;
	}
	io->recv_next = io->nparts;
	conn_fail(s, io->c, why);
}

/* The io lives until every part is back and no payload receive is out. */
static void io_maybe_finish(struct bsteer_server *s, struct io *io)
{
	if (io->done == io->nparts && !io->payload_out)
		io_finish(s, io);
}

static void nbd_complete(struct bsteer_server *s, __u32 r, int err)
{
	struct req_info *ri = rinfo(s, r);
	struct io *io = ri->io;

	if (!io)
		return;
	ri->io = NULL;
	if (err == -EPIPE)	/* the peer left mid-payload */
		io_break(s, io, "client closed during a write payload");
	if (!io->nbd_error)
		io->nbd_error = nbd_errno(err);
	if (io->cmd == NBD_CMD_READ)
		bsteer_req_keep(&s->e, r);	/* its data goes out later */
	io->done++;
	io_maybe_finish(s, io);
}

/* Receive the payload of WRITE part io->recv_next into its slot. */
static int recv_part(struct bsteer_server *s, struct io *io)
{
	struct conn *c = io->c;
	__u32 req = io->req[io->recv_next++];
	struct bsteer_req *rq = &s->in->reqs[req];
	/*
	 * The last part's payload is followed in the stream by the next
	 * header: receive that right behind it, linked, rather than a loop
	 * turn later. A payload read that comes up short cancels it; it is
	 * armed again once the rest is in.
	 */
	bool link = io->recv_next == io->nparts && header_may_follow(c);
	int err;

	bsteer_engine_reserve(&s->e, 2);	/* the payload and the next header */
	err = (link ? bsteer_frontend_op_linked : bsteer_frontend_op)
		(&s->e, req, BSTEER_OP_READ, BSTEER_FRONTEND_FILE(c->idx),
		 rq->slot, rq->len, BSTEER_OFF_STREAM);
	if (err)
		return err;
	if (link) {
		prep_header(s, c);
		c->hdr_linked = true;
	}
	rinfo(s, req)->payload_c = c;
	rinfo(s, req)->payload_io = io;
	io->payload_out = true;
	c->payload = true;
	bsteer_stat_add(s->in, BSTEER_ST_FE_BYTES_WRITTEN, rq->len);
	return 0;
}

static void nbd_op_done(struct bsteer_server *s, __u32 r, __u32 op, int res)
{
	struct req_info *ri = rinfo(s, r);
	struct conn *c;

	(void)op;
	if (ri->payload_c) {
		struct io *io = ri->payload_io;

		c = ri->payload_c;
		ri->payload_c = NULL;
		ri->payload_io = NULL;
		c->payload = false;
		io->payload_out = false;
		if (res < 0) {
			io_break(s, io, "payload receive failed");
		} else if (!io->broken && io->recv_next < io->nparts) {
			/* The rest is received even if the request was refused. */
			if (recv_part(s, io))
				io_break(s, io, "cannot receive a payload");
		} else if (c->hdr_waiting) {
			c->hdr_waiting = false;
			if (!c->closing)
				on_header(s, c, &s->in->fe_req[bsteer_hdr_index(s->ring, c->idx)]);
		} else {
			arm_header(s, c);
		}
		io_maybe_finish(s, io);
		conn_maybe_close(s, c);
	} else if (ri->reply_c) {
		struct reply *r;

		c = ri->reply_c;
		ri->reply_c = NULL;
		r = c->sending;
		if (res >= 0 && r && r->io && ++r->part < r->io->nparts) {
			if (!send_part(s, c, r, 0))
				return;
			res = -EIO;
		}
		reply_done(s, c, res >= 0);
	}
}

static void conn_free(struct bsteer_server *s, struct conn *c)
{
	struct reply *r, *n;

	for (r = c->head; r; r = n) {
		n = r->next;
		if (r->io)
			io_free(s, r->io);
		free(r);
	}
	if (c->stalled)
		priv(s)->nstalled--;
	__atomic_fetch_sub(&s->in->stats[BSTEER_ST_CONNS_OPEN], 1, __ATOMIC_RELAXED);
	bsteer_stat_add(s->in, BSTEER_ST_CONNS_CLOSED, 1);
	bsteer_engine_frontend_file(&s->e, c->idx, -1);
	close(c->fd);
	free(c->iov);
	memset(c, 0, sizeof(*c));
}

/* Close once nothing of the connection is in flight or owed. */
static void conn_maybe_close(struct bsteer_server *s, struct conn *c)
{
	if (!c->used || !c->closing)
		return;
	if (c->hdr_armed || c->payload || c->sends || c->sending || c->head ||
	    c->reqs)
		return;
	conn_free(s, c);
}

static void arm_accept(struct bsteer_server *s, int i)
{
	struct io_uring_sqe *sqe;

	if (priv(s)->stopping || priv(s)->accept_armed[i])
		return;
	bsteer_engine_reserve(&s->e, 1);
	sqe = io_uring_get_sqe(&s->e.ring);
	if (!sqe)
		return;
	io_uring_prep_accept(sqe, s->lfd[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(UD_ACCEPT, i));
	priv(s)->accept_armed[i] = true;
}

static void on_accept(struct bsteer_server *s, int fd)
{
	struct timeval tv = { .tv_sec = HANDSHAKE_TIMEOUT_S };
	struct nbd *n = priv(s);
	struct export *ex;
	struct conn *c = NULL;
	struct nego ng = {};
	int i, one = 1;
	bool tcp;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* Only a TCP socket takes it. */
	tcp = !setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ex = negotiate(s, fd, &ng);
	if (!ex) {
		close(fd);
		return;
	}
	/*
	 * Past the handshake, a send that blocks is io-wq's splice of a
	 * reply: a client slow to read is --reply-timeout's to judge.
	 */
	tv.tv_sec = 0;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (i = 0; i < MAX_CONNS; i++) {
		if (!n->conns[i].used) {
			c = &n->conns[i];
			break;
		}
	}
	if (!c || bsteer_engine_frontend_file(&s->e, i, fd)) {
		serve_log(s, "nbd: no room for another connection");
		close(fd);
		return;
	}
	memset(c, 0, sizeof(*c));
	/*
	 * The last connection on this index left its last parse behind,
	 * stamped with a user_data this one's header receives start over
	 * from (hdr_seq 1, 2, ...). When the hook has parsed a header, the
	 * stamp is fresh; when it has not (the fallback), a stale one that
	 * matched would hand this connection the other's last request.
	 */
	__atomic_store_n(&s->in->fe_req[bsteer_hdr_index(s->ring, i)].stamp, 0,
			 __ATOMIC_RELEASE);
	c->used = true;
	c->fd = fd;
	c->idx = i;
	c->ex = ex;
	c->structured = ng.structured;
	c->meta_alloc = ng.meta_alloc;
	c->tcp = tcp;
	bsteer_stat_add(s->in, BSTEER_ST_CONNS_OPEN, 1);
	bsteer_stat_add(s->in, BSTEER_ST_CONNS_TOTAL, 1);
	if (s->verbose)
		serve_log(s, "nbd: connection %u to export '%s'", i, ex->name);
	arm_header(s, c);
}

/*
 * A header receive completed. The hook's parser has normally turned it
 * into a request already (fe_req stamped with this user_data); if not, the
 * parser's syscall twin does it now.
 */
static void on_header_cqe(struct bsteer_server *s, const struct io_uring_cqe *cqe)
{
	__u64 ud = cqe->user_data;
	__u32 conn = bsteer_parse_ud_conn(ud);
	const struct bsteer_blkreq *p;
	struct conn *c;

	if (bsteer_parse_ud_ring(ud) != s->ring || conn >= MAX_CONNS)
		return;
	c = &priv(s)->conns[conn];
	if (!c->used)
		return;
	c->hdr_armed = false;
	if (c->hdr_linked) {
		c->hdr_linked = false;
		/* The payload before it came up short: its rest goes on, alone. */
		if (cqe->res == -ECANCELED && !c->closing) {
			if (!c->payload)
				arm_header(s, c);
			goto out;
		}
	}
	if (cqe->res == 0 || c->closing) {
		conn_fail(s, c, NULL);	/* a clean hang-up */
		goto out;
	}
	p = &s->in->fe_req[bsteer_hdr_index(s->ring, conn)];
	if (__atomic_load_n(&p->stamp, __ATOMIC_ACQUIRE) != ud &&
	    (bsteer_parse_fallback(s->in, ud, cqe->res) ||
	     __atomic_load_n(&p->stamp, __ATOMIC_ACQUIRE) != ud)) {
		conn_fail(s, c, "the header parser did not answer");
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
	on_header(s, c, p);
out:
	conn_maybe_close(s, c);
}

static void nbd_cqe(struct bsteer_server *s, const struct io_uring_cqe *cqe)
{
	__u64 ud = cqe->user_data;
	__u32 idx = ud & 0xffffffff;
	int kind = (ud >> 48) & 0xff;
	struct conn *c;

	if (bsteer_parse_ud_is(ud)) {
		on_header_cqe(s, cqe);
		return;
	}
	if ((ud >> 56) != UD_MAGIC)
		return;
	if (kind == UD_ACCEPT) {
		if (idx >= SERVE_MAX_LISTEN)
			return;
		priv(s)->accept_armed[idx] = false;
		if (cqe->res >= 0)
			on_accept(s, cqe->res);
		arm_accept(s, idx);
		return;
	}
	if (idx >= MAX_CONNS)
		return;
	c = &priv(s)->conns[idx];
	if (!c->used)
		return;
	if (kind == UD_SPLICE) {
		spliced_cqe(s, c, cqe->res);
	} else if (kind == UD_SENDV) {
		c->sends--;
		if (c->sending)
			reply_done(s, c, cqe->res == (int)c->sendv_len);
	} else if (kind == UD_SEND) {
		c->sends--;
		if (c->sending && cqe->res != (int)c->sending->hdr_len) {
			/* The linked data op is cancelled; its completion ends it. */
			if (!c->sending->io)
				reply_done(s, c, false);
			else
				conn_fail(s, c, "reply header could not be sent");
		} else if (c->sending && !c->sending->io) {
			reply_done(s, c, true);
		}
	}
	conn_maybe_close(s, c);
}

static int listen_on(struct bsteer_server *s, int i, const char *spec)
{
	int fd, one = 1;

	if (!strncmp(spec, "unix:", 5)) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };

		if (strlen(spec + 5) >= sizeof(a.sun_path)) {
			bsteer_set_err("unix socket path too long: %s", spec + 5);
			return -ENAMETOOLONG;
		}
		strcpy(a.sun_path, spec + 5);
		struct stat st;

		/* Non-blocking: a live server with a full backlog must not hang us. */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -errno;
		/* A socket file nobody answers on is stale; a live one is not ours. */
		if (!connect(fd, (struct sockaddr *)&a, sizeof(a)) || errno == EAGAIN) {
			bsteer_set_err("cannot listen on %s: another server is listening there",
				       spec);
			close(fd);
			return -EADDRINUSE;
		}
		close(fd);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (!lstat(a.sun_path, &st) && S_ISSOCK(st.st_mode))
			unlink(a.sun_path);
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 128) ||
		    lstat(a.sun_path, &st)) {
			int err = -errno;

			bsteer_set_err("cannot listen on %s: %s", spec, strerror(-err));
			close(fd);
			return err;
		}
		chmod(a.sun_path, 0600);
		snprintf(s->unix_path[i], sizeof(s->unix_path[i]), "%s", a.sun_path);
		s->unix_dev[i] = st.st_dev;
		s->unix_ino[i] = st.st_ino;
	} else if (!strncmp(spec, "tcp:", 4)) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_PASSIVE }, *ai;
		char host[256];
		const char *port = strrchr(spec + 4, ':');
		int rc;

		if (!port || port - (spec + 4) >= (int)sizeof(host)) {
			bsteer_set_err("bad listen address '%s' (want tcp:HOST:PORT)", spec);
			return -EINVAL;
		}
		memcpy(host, spec + 4, port - (spec + 4));
		host[port - (spec + 4)] = 0;
		rc = getaddrinfo(*host ? host : NULL, port + 1, &hints, &ai);
		if (rc) {
			bsteer_set_err("cannot resolve %s: %s", spec, gai_strerror(rc));
			return -EINVAL;
		}
		if (!s->allow_remote) {
			bool loop = false;

			if (ai->ai_family == AF_INET)
				loop = (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
			else if (ai->ai_family == AF_INET6)
				loop = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
			if (!loop) {
				freeaddrinfo(ai);
				bsteer_set_err("%s is not a loopback address; add --allow-remote to listen there",
					       spec);
				return -EPERM;
			}
		}
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			freeaddrinfo(ai);
			return -errno;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128)) {
			int err = -errno;

			bsteer_set_err("cannot listen on %s: %s", spec, strerror(-err));
			freeaddrinfo(ai);
			close(fd);
			return err;
		}
		freeaddrinfo(ai);
	} else {
		bsteer_set_err("bad listen address '%s' (want tcp:HOST:PORT or unix:PATH)",
			       spec);
		return -EINVAL;
	}
	s->lfd[i] = fd;
	return 0;
}

/* Once per server, before the workers start: every worker accepts on these. */
static int nbd_listen(struct bsteer_server *s)
{
	int i, err;

	for (i = 0; i < SERVE_MAX_LISTEN; i++)
		s->lfd[i] = -1;
	for (i = 0; i < s->nlisten; i++) {
		err = listen_on(s, i, s->listen[i]);
		if (err)
			return err;
	}
	return 0;
}

static void nbd_unlisten(struct bsteer_server *s)
{
	int i;

	for (i = 0; i < SERVE_MAX_LISTEN; i++) {
		if (s->lfd[i] >= 0)
			close(s->lfd[i]);
		s->lfd[i] = -1;
		/* A server started on the same path since then keeps its socket. */
		if (s->unix_path[i][0]) {
			struct stat st;

			if (!lstat(s->unix_path[i], &st) && st.st_dev == s->unix_dev[i] &&
			    st.st_ino == s->unix_ino[i])
				unlink(s->unix_path[i]);
		}
		s->unix_path[i][0] = 0;
	}
}

static int nbd_start(struct bsteer_server *s)
{
	struct nbd *n = calloc(1, sizeof(*n));
	int i;

	if (!n)
		return -ENOMEM;
	s->fe_priv = n;
	n->ri = calloc(s->e.req_count, sizeof(*n->ri));
	if (!n->ri)
		return -ENOMEM;
	for (i = 0; i < s->nlisten; i++)
		arm_accept(s, i);
	return 0;
}

/* After each turn of the loop: stalled connections try again. */
/*
 * A client that stops reading its replies holds their slots: once a reply
 * has not moved for --reply-timeout, the connection goes (checked twice a
 * second).
 */
static void drop_deaf_clients(struct bsteer_server *s)
{
	struct nbd *n = priv(s);
	__u64 now = bsteer_now_ns();
	__u32 i;

	if (now - n->scanned_ns < 500000000ull)
		return;
	n->scanned_ns = now;
	for (i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		if (c->used && c->sending && !c->closing &&
		    now - c->send_ns > s->reply_timeout_ms * 1000000ull) {
			/* Both ways: the send it is stuck in fails now. */
			shutdown(c->fd, SHUT_RDWR);
			conn_fail(s, c, "the client has not read a reply in time (--reply-timeout)");
		}
	}
}

static void nbd_tick(struct bsteer_server *s)
{
	struct nbd *n = priv(s);
	__u32 i;

	drop_deaf_clients(s);
	for (i = 0; n->nstalled && i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		if (!c->used || !c->stalled)
			continue;
		if (!bsteer_reqs_free(&s->e) || !bsteer_slots_free(&s->e))
			break;
		c->stalled = false;
		n->nstalled--;
		if (c->closing) {
			conn_maybe_close(s, c);
			continue;
		}
		on_header(s, c, &c->pending);
		arm_header(s, c);
	}
	start_sends(s);
}

static void nbd_stop(struct bsteer_server *s)
{
	struct nbd *n = priv(s);
	int i;

	n->stopping = true;
	for (i = 0; i < SERVE_MAX_LISTEN; i++) {
		struct io_uring_sqe *sqe;

		if (!n->accept_armed[i])
			continue;
		bsteer_engine_reserve(&s->e, 1);
		sqe = io_uring_get_sqe(&s->e.ring);
		if (!sqe)
			continue;
		io_uring_prep_cancel64(sqe, ud_make(UD_ACCEPT, i), 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
	for (i = 0; i < MAX_CONNS; i++)
		if (n->conns[i].used)
			conn_fail(s, &n->conns[i], NULL);
}

static bool nbd_idle(struct bsteer_server *s)
{
	struct nbd *n = priv(s);
	int i;

	for (i = 0; i < SERVE_MAX_LISTEN; i++)
		if (n->accept_armed[i])
			return false;
	for (i = 0; i < MAX_CONNS; i++)
		if (n->conns[i].used)
			return false;
	return true;
}

static void nbd_fini(struct bsteer_server *s)
{
	struct nbd *n = priv(s);
	int i;

	if (!n)
		return;
	for (i = 0; i < MAX_CONNS; i++)
		if (n->conns[i].used)
			conn_free(s, &n->conns[i]);
	free(n->ri);
	free(n);
	s->fe_priv = NULL;
}

const struct bsteer_frontend_ops nbd_frontend = {
	.name = "nbd",
	.listen = nbd_listen,
	.unlisten = nbd_unlisten,
	.start = nbd_start,
	.cqe = nbd_cqe,
	.complete = nbd_complete,
	.op_done = nbd_op_done,
	.tick = nbd_tick,
	.stop = nbd_stop,
	.idle = nbd_idle,
	.fini = nbd_fini,
};
