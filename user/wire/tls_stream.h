/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A TLS stream on an io_uring ring, with no socketpair: GnuTLS's record
 * layer in userspace (this kernel has no kTLS) between a connected socket
 * and its user's own buffers. The NBD frontend's connections use it from
 * STARTTLS on; the NBD target's legs still use the tunnel (tls_tunnel.h).
 *
 * The user asks for plaintext into a buffer of its choice (a header entry
 * in map memory, a slot) and hands over plaintext from one (a reply's
 * header, a slot's data): the ring receives ciphertext into the stream's
 * buffer, and gnutls_record_recv() decrypts from there into the user's
 * buffer; gnutls_record_send() encrypts from the user's buffer into the
 * stream's send buffer, which the ring sends. Each request carries the
 * user_data of the op it stands for, and its completion is posted with
 * that user_data (the host's done(), a NOP with an injected result), once
 * the plaintext is in place or the ciphertext is out, with the result the
 * plain socket op would have had: the completion hook and the frontend
 * see it as they would see that op.
 *
 * Receives queue (two: a payload, and the next header behind it, as the
 * plain path links them) and so do sends (up to TLS_STREAM_SENDS); each
 * kind completes in order. The stream's own ops (ciphertext in and out) are
 * SQEs of its host, at most one of each out, handed back with
 * tls_stream_cqe().
 */
#ifndef BSTEER_WIRE_TLS_STREAM_H
#define BSTEER_WIRE_TLS_STREAM_H

#include <stdbool.h>
#include <sys/uio.h>
#include <linux/types.h>
#include <gnutls/gnutls.h>

struct io_uring_sqe;
struct tls_stream;

enum { TLS_STREAM_NET_RECV, TLS_STREAM_NET_SEND, TLS_STREAM_OPS };

#define TLS_STREAM_SENDS	16	/* sends queued, not yet out */
#define TLS_STREAM_RECVS	2	/* receives queued (a payload, the header after it) */

/* How a receive ends. */
enum {
	TLS_RECV_SOME,		/* as soon as any plaintext is in (a plain recv) */
	TLS_RECV_ALL,		/* once all of it is, or EOF: what came (MSG_WAITALL) */
	TLS_RECV_EXACT,		/* once all of it is; EOF before that: 0 */
};

struct tls_stream_host {
	void *arg;
	/* A free SQE of the host's ring, or NULL. */
	struct io_uring_sqe *(*sqe)(void *arg);
	/* The user_data that brings op @op of stream @id back to the host. */
	__u64 (*ud)(void *arg, __u32 id, int op);
	/* Post the completion of a request: user_data @ud, result @res. */
	int (*done)(void *arg, __u64 ud, int res);
	/* A line for the log (a handshake refused, ...); may be NULL. */
	void (*log)(void *arg, const char *what, const char *why);
	/* The stream @id is gone (freed); @handshaken: it got that far. */
	void (*gone)(void *arg, __u32 id, bool handshaken);
	/*
	 * A request is done: @bytes of plaintext were decrypted into its
	 * buffer (@in) or encrypted from its pieces (for the counters).
	 */
	void (*moved)(void *arg, bool in, __u32 bytes);
};

/*
 * Wrap @net and @ses (the stream owns both from here, whatever it
 * returns): NULL (and both closed) if memory ran out. Nothing runs before
 * tls_stream_run(), which starts the handshake on @host's ring as its
 * stream @id (@host must outlive it).
 */
struct tls_stream *tls_stream_new(gnutls_session_t ses, int net);
void tls_stream_run(struct tls_stream *s, const struct tls_stream_host *host, __u32 id);
/*
 * Receive @len bytes of plaintext into @buf (@how: TLS_RECV_*); its
 * completion is posted with @ud. Requests made before the handshake is
 * done wait for it (a failed one fails them). It is filled after those
 * asked for before it. One past TLS_STREAM_RECVS, or on a failed stream,
 * completes at once with -EBUSY or an error.
 */
void tls_stream_recv(struct tls_stream *s, void *buf, __u32 len, int how, __u64 ud);
/*
 * Send the @n pieces of @iov (encrypted now: the memory is free again
 * once this returns); once the last of their ciphertext is out, the
 * completion is posted with @ud and result @res (or an error, if the
 * stream fails first or TLS_STREAM_SENDS are queued already).
 */
void tls_stream_send(struct tls_stream *s, const struct iovec *iov, int n, __u64 ud, int res);
/* The completion of its op @op. The stream may be gone after this. */
void tls_stream_cqe(struct tls_stream *s, int op, int res);
/* Reading is over (a connection that fails): the receives out end as on EOF. */
void tls_stream_shut_rd(struct tls_stream *s);
/* End it now: every request out completes with an error; the socket is shut. */
void tls_stream_abort(struct tls_stream *s);
/*
 * Its user is done with it (no request out): close_notify goes after
 * what was sent, then it is freed (gone()). A peer that does not take it
 * within @linger_s (see tls_stream_tick) is cut off.
 */
void tls_stream_close(struct tls_stream *s);
void tls_stream_tick(struct tls_stream *s, __u64 now_ns, __u32 linger_s);
bool tls_stream_handshaken(const struct tls_stream *s);
/* Free it at once, ops out or not (the ring is gone or going). */
void tls_stream_free(struct tls_stream *s);

#endif /* BSTEER_WIRE_TLS_STREAM_H */
