/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The NBD frontend's insides, shared by its files:
 *
 *   nbd_negotiate.c  fixed newstyle negotiation, right after accept: a
 *                    parser fed whole messages, its replies buffered
 *   nbd_request.c    headers parsed by BPF, checked, turned into requests;
 *                    WRITE payloads received into the slots
 *   nbd_reply.c      replies: simple and structured, sent from the slots,
 *                    spliced, or several in one vectored send
 *   nbd_conn.c       listening, accepting, a connection's life, the ops
 *
 * Per connection, requests are read in stream order (the next header is
 * armed once the previous payload is in), and replies go out in order,
 * one socket op at a time, so that they never interleave.
 */
#ifndef BSTEER_FRONTEND_NBD_PRIV_H
#define BSTEER_FRONTEND_NBD_PRIV_H

#include <sys/socket.h>
#include <sys/uio.h>
#include "frontend/nbd.h"
#include "wire/nbd_wire.h"
#include "wire/tls_stream.h"

#define META_ALLOC		"base:allocation"
#define META_ALLOC_ID		1
#define MAX_EXTENTS		64

#define MAX_OPT_LEN		4096
#define MIN_BLOCK		512
#define CONN_MAX_REQS		128	/* requests a client may have open */
#define MAX_CONNS		BSTEER_FRONTEND_FILES
#define MAX_HANDSHAKES		1024	/* per worker; the oldest gives way */
#define HS_TABLE		(2 * MAX_HANDSHAKES)	/* ... and room while it goes */
#define TLS_TABLE		(MAX_CONNS + HS_TABLE)	/* TLS streams (nbd_tls.c) */

#define MAX_PARTS		64	/* parts (slots) of one round */
#define POOL_MAX		256	/* records of each kind kept per worker */
/* None under ASan, which then sees every use after free. */
#ifndef __has_feature
#define __has_feature(x)	0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define POOLED			0
#else
#define POOLED			1
#endif
#define REPLY_POOL_HDR		32	/* replies with this much header or less are kept */

/* A vectored send: up to SEND_IOV pieces; no reply joins past SEND_MAX bytes. */
#define SEND_IOV		64
#define SEND_MAX		(1u << 20)

/* The frontend's own SQEs: its owner tag, then kind << 40 | index. */
enum { UD_ACCEPT = 1, UD_SEND = 3, UD_SENDV = 4, UD_SPLICE = 5,
       UD_HS_RECV = 6, UD_HS_SEND = 7, UD_ACCEPT_WAIT = 8,
       UD_TLS = 9 };	/* ... to UD_TLS + TLS_STREAM_OPS - 1: a stream's ops (nbd_tls.c) */

/* Its counters (bsteer stat shows them by these names). */
enum {
	NBD_C_CONNS_OPEN,	/* connections now open */
	NBD_C_CONNS_TOTAL,	/* connections negotiated */
	NBD_C_CONNS_CLOSED,	/* ... and closed since */
	NBD_C_READS,		/* client requests, by type */
	NBD_C_WRITES,
	NBD_C_FLUSHES,
	NBD_C_TRIMS,
	NBD_C_ZEROES,
	NBD_C_OTHER,		/* cache, block status, unknown */
	NBD_C_ERRORS,		/* replies carrying an error */
	NBD_C_BYTES_READ,	/* payload sent to clients */
	NBD_C_BYTES_WRITTEN,	/* payload received from clients */
	NBD_C_SENDV,		/* vectored sends of several replies */
	NBD_C_SEND_BATCHED,	/* ... and the replies they carried */
	NBD_C_HS_OPEN,		/* connections in their handshake now */
	NBD_C_HS_TIMEOUTS,	/* ... closed by --handshake-timeout */
	NBD_C_TLS_OPEN,		/* TLS sessions now (nbd_tls.c) */
	NBD_C_TLS_TOTAL,	/* ... STARTTLS taken, in all */
	NBD_C_TLS_FAILED,	/* ... that ended before their TLS handshake did */
	NBD_C_TLS_DECRYPTED,	/* plaintext decrypted into its place (header, slot, ...) */
	NBD_C_TLS_ENCRYPTED,	/* ... and encrypted from it */
};

/*
 * One client request. READ and WRITE take one slot per part (a part is
 * one bsteer request, steered by the policy on its own); the others are
 * one part with no slot. The reply goes when every part is back.
 *
 * A READ or WRITE larger than the slots hold at once (up to --max-request)
 * goes in rounds, one after the other, each of at most nbd_round_max()
 * bytes: offset and len are the round's. A WRITE's next round receives
 * the next piece of its payload once the last round's parts are written;
 * a READ's is read once the last round's data went out, right behind it
 * (the reply's header went with the first round). Meanwhile the
 * connection reads no new request (conn.cont).
 */
struct io {
	struct conn *c;
	__u64 cookie;
	__u64 offset;		/* this round's range */
	__u32 len;
	__u64 req_off;		/* the client's request's */
	__u32 req_len;
	__u16 flags;		/* its command flags */
	__u8 rtype;		/* the generic type of its parts */
	bool replied;		/* a READ's reply began: its first round is out */
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
	struct bsteer_export *ex;
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
	bool block_sizes;	/* GO asked for them: bound to nbd_export_min_block */
	bool tcp;		/* a TCP socket (not AF_UNIX) */
	struct tls_stream *tls;	/* after STARTTLS: every byte goes through it (it owns fd) */
	struct bsteer_access_peer peer;	/* counted toward --max-per-source */
	struct io *cont;	/* a request with rounds to go: no new ones */
	struct io *mid_reply;	/* a READ whose reply is part sent: only its */
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
	bool block_sizes;	/* GO asked for NBD_INFO_BLOCK_SIZE */
	const struct bsteer_export *meta_ex;	/* the export it was set for */
};

/* Where a handshake is: what it waits for next, or how it ends. */
enum {
	HS_FLAGS,	/* the client's 4 bytes of flags */
	HS_OPT_HDR,	/* an option's 16-byte header */
	HS_OPT_DATA,	/* ... its data */
	HS_SKIP,	/* ... the data of one too big to take, drained */
	HS_STARTTLS,	/* the STARTTLS reply out, then TLS from here on */
	HS_GO,		/* an export chosen: replies out, then transmission */
	HS_QUIT,	/* replies out, then close */
	HS_CLOSE,	/* close now */
};

/*
 * A connection in its handshake. It holds no connection slot and no file
 * index: only its socket, this, and one receive or send on the ring. The
 * parser takes exactly one message at a time, so that nothing a client
 * sends after its GO is read here.
 */
struct hs {
	int fd;
	__u32 id;		/* its place in nbd->hs */
	__u8 state;
	bool op_out;		/* a receive or send is out ... */
	int op_kind;		/* ... this one (UD_HS_*) */
	bool dead;		/* timed out: freed when its op is back */
	bool tcp;
	struct tls_stream *tls;	/* after STARTTLS: every byte goes through it (it owns fd) */
	struct bsteer_access_peer peer;	/* counted toward --max-per-source */
	__u32 cflags;
	__u32 opt, opt_len;	/* the option being read */
	__u32 skip;		/* bytes of a too-big option left to drain */
	__u32 in_len;		/* bytes of the message in in[] */
	__u64 deadline_ns;
	unsigned char *out;	/* replies not yet sent */
	__u32 out_len, out_sent, out_cap;
	struct bsteer_export *ex;	/* chosen (HS_GO) */
	struct nego ng;
	unsigned char in[MAX_OPT_LEN];
};

/* The listening sockets, made once by the main thread; every worker accepts. */
struct nbd_shared {
	int lfd[NBD_MAX_LISTEN];
	/* The socket file we bound: removed at exit only if it is still ours. */
	char unix_path[NBD_MAX_LISTEN][108];
	__u64 unix_dev[NBD_MAX_LISTEN], unix_ino[NBD_MAX_LISTEN];
	struct tls_cred *tls;	/* --tls: the credentials every worker uses */
};

/* One worker's NBD frontend. */
struct nbd {
	struct bsteer_fe *fe;
	struct bsteer_server *s;
	struct bsteer_engine *e;
	struct bsteer_instance *in;
	const struct nbd_conf *conf;
	struct nbd_shared *sh;
	__u32 ring;
	__u32 nslots;		/* the ring's slots */
	bool accept_armed[NBD_MAX_LISTEN];
	bool accept_wait[NBD_MAX_LISTEN];	/* backing off after an error */
	__u32 accept_delay_ms[NBD_MAX_LISTEN];
	struct __kernel_timespec accept_ts[NBD_MAX_LISTEN];
	struct hs *hs[HS_TABLE];	/* connections in their handshake */
	__u32 nhs;		/* ... in the table */
	__u32 nhs_dead;		/* ... of them given up, their op not back */
	__u32 hs_evicted;	/* oldest given up for room, not yet logged */
	struct tls_stream *tls[TLS_TABLE];	/* TLS streams (nbd_tls.c) */
	__u32 ntls;
	struct tls_stream_host tls_host;	/* ... run on this worker's ring */
	struct conn conns[MAX_CONNS];
	struct req_info *ri;	/* per request of the engine */
	__u32 nstalled;
	__u64 to_send[MAX_CONNS / 64];	/* connections with replies to start */
	bool stopping;
	__u64 scanned_ns;	/* last look for replies nobody reads */
	/*
	 * Request and reply records given back, kept for the next ones (at
	 * most POOL_MAX each): calloc() and free() per IO were 11% of the
	 * server's instructions (callgrind, 4K randread QD32 over unix: 5602
	 * per IO, 4961 with the pools).
	 */
	struct io *io_pool;	/* linked through ->c */
	struct reply *reply_pool;	/* through ->next; REPLY_POOL_HDR bytes of header */
	__u32 io_pooled, reply_pooled;
};

static inline __u64 nbd_ud(const struct nbd *n, int kind, __u32 idx)
{
	return bsteer_owner_ud(n->fe->owner, ((__u64)kind << 40) | idx);
}

/* Connection @idx's header entry: its place in the frontend's share. */
static inline __u32 nbd_hconn(const struct nbd *n, __u32 idx)
{
	return n->fe->hdr_base + idx;
}

static inline struct req_info *rinfo(struct nbd *n, __u32 r)
{
	return &n->ri[bsteer_engine_req_index(n->e, r)];
}

/* Has this READ or WRITE rounds after the one at hand? */
static inline bool io_more(const struct io *io)
{
	return io->offset + io->len < io->req_off + io->req_len;
}

static inline void nbd_count(struct nbd *n, int which, __u64 v)
{
	bsteer_fe_count(n->fe, which, v);
}

/* nbd_negotiate.c */
int nbd_hs_init(struct hs *h);
__u32 nbd_hs_want(const struct hs *h);
void nbd_hs_input(struct nbd *n, struct hs *h);

/* nbd_tls.c */
int nbd_tls_setup(struct nbd_shared *sh, const struct nbd_conf *conf);
void nbd_tls_teardown(struct nbd_shared *sh);
int nbd_tls_start(struct nbd *n, int *net, struct tls_stream **s);
void nbd_tls_cqe(struct nbd *n, int kind, __u32 id, int res);
void nbd_tls_tick(struct nbd *n, __u64 now);
void nbd_tls_stop(struct nbd *n);
void nbd_tls_fini(struct nbd *n);

/* nbd_request.c */
__u32 nbd_round_max(struct nbd *n, const struct bsteer_export *ex);
__u32 nbd_max_io(struct nbd *n, const struct bsteer_export *ex);
__u32 nbd_export_min_block(const struct bsteer_export *ex);
__u32 nbd_export_pref_block(const struct bsteer_export *ex, __u32 min);
__u32 nbd_min_block(const struct conn *c);
void nbd_resume(struct nbd *n, struct conn *c);
void nbd_round_sent(struct nbd *n, struct io *io);
void nbd_arm_header(struct nbd *n, struct conn *c);
void nbd_on_header(struct nbd *n, struct conn *c, const struct bsteer_blkreq *p);
void nbd_header_cqe(struct nbd *n, const struct io_uring_cqe *cqe);
void nbd_complete(struct bsteer_fe *fe, __u32 r, int err);
void nbd_op_done(struct bsteer_fe *fe, __u32 r, __u32 op, int res);

/* nbd_reply.c */
__u32 nbd_errno(int err);
void nbd_queue_reply(struct nbd *n, struct conn *c, __u64 cookie, __u32 error,
		     __u8 cmd, __u64 offset, struct io *io);
void nbd_queue_block_status(struct nbd *n, struct conn *c, __u64 cookie,
			    __u64 off, __u32 len, bool one);
void nbd_io_free(struct nbd *n, struct io *io);
/* A zeroed request record (its req[] is not: parts set what they use), or NULL. */
struct io *nbd_io_new(struct nbd *n);
/* Back to the pool (or free()), with none of nbd_io_free()'s bookkeeping. */
void nbd_io_put(struct nbd *n, struct io *io);
void nbd_reply_put(struct nbd *n, struct reply *r);
/* The pools' records, at the end. */
void nbd_pools_free(struct nbd *n);
int nbd_send_part(struct nbd *n, struct conn *c, struct reply *r, __u32 prefix);
void nbd_reply_done(struct nbd *n, struct conn *c, bool ok);
void nbd_reply_cqe(struct nbd *n, struct conn *c, int kind, int res);
void nbd_start_sends(struct nbd *n);

/* nbd_conn.c */
void nbd_conn_fail(struct nbd *n, struct conn *c, const char *why);
void nbd_conn_maybe_close(struct nbd *n, struct conn *c);

#endif /* BSTEER_FRONTEND_NBD_PRIV_H */
