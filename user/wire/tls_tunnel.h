/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A TLS tunnel on an io_uring ring: GnuTLS's record layer in userspace,
 * for kernels without kTLS, used by the NBD target (the client's end of
 * an upstream leg), whose ring client then works on a plain socket. It
 * costs a copy each way through the socketpair; the NBD frontend's
 * connections go without it, through a TLS stream that decrypts into and
 * encrypts from the slots (tls_stream.h).
 *
 * The tunnel takes a connected socket (@net) and a GnuTLS session on it
 * (its handshake done or still to do), and gives back one end of a
 * socketpair: whoever used the socket goes on with that end in plaintext,
 * unchanged, as if the kernel did the record layer (kTLS). The tunnel's
 * four socket ops (net receive and send, app receive and send) are SQEs of
 * its host, at most one of each out at a time; the host hands their
 * completions back with tls_tunnel_cqe(). Backpressure both ways: the
 * network is not read while plaintext waits for the app, and the app is
 * not read while ciphertext waits for the network.
 *
 * It ends when either side does: the peer's EOF or close_notify reaches
 * the app as a half-close after what was decrypted; the app's close sends
 * close_notify after what was encrypted; an error closes both. Then the
 * host's gone() is called and the tunnel is freed.
 */
#ifndef BSTEER_WIRE_TLS_TUNNEL_H
#define BSTEER_WIRE_TLS_TUNNEL_H

#include <stdbool.h>
#include <linux/types.h>
#include <gnutls/gnutls.h>

struct io_uring_sqe;
struct tls_tunnel;

enum { TLS_OP_NET_RECV, TLS_OP_NET_SEND, TLS_OP_APP_RECV, TLS_OP_APP_SEND, TLS_OPS };

/* Who runs the tunnel's ops, and hears of it. */
struct tls_host {
	void *arg;
	/* A free SQE of the host's ring, or NULL. */
	struct io_uring_sqe *(*sqe)(void *arg);
	/* The user_data that brings op @op of tunnel @id back to the host. */
	__u64 (*ud)(void *arg, __u32 id, int op);
	/* A line for the log (a handshake refused, ...); may be NULL. */
	void (*log)(void *arg, const char *what, const char *why);
	/* The tunnel @id is gone (freed); @handshaken: it got that far. */
	void (*gone)(void *arg, __u32 id, bool handshaken);
};

/*
 * Wrap @net and @ses (the tunnel owns both from here, whatever it
 * returns; @handshaken: the session's handshake is done already): the
 * tunnel, and in *@app the socketpair end to use instead of @net; NULL
 * (and both closed) if memory or fds ran out. Nothing runs before
 * tls_tunnel_run().
 */
struct tls_tunnel *tls_tunnel_new(gnutls_session_t ses, int net, bool handshaken, int *app);
/* Start it on @host's ring as its tunnel @id (@host must outlive it). */
void tls_tunnel_run(struct tls_tunnel *t, const struct tls_host *host, __u32 id);
/* The completion of its op @op. The tunnel may be gone after this. */
void tls_tunnel_cqe(struct tls_tunnel *t, int op, int res);
/* Now and then: the app closed over @linger_s ago and the peer still does not read. */
void tls_tunnel_tick(struct tls_tunnel *t, __u64 now_ns, __u32 linger_s);
/* End it now (both sockets shut): gone once its ops are back. */
void tls_tunnel_abort(struct tls_tunnel *t);
bool tls_tunnel_handshaken(const struct tls_tunnel *t);
/*
 * Last words before tls_tunnel_free(): @len bytes of plaintext and
 * close_notify, encrypted and sent on the socket at once, without
 * blocking and behind what was queued (an NBD target's NBD_CMD_DISC).
 * Best effort: nothing while a send of the tunnel's is out (ours would
 * overtake it), nor if it failed or its app had closed.
 */
void tls_tunnel_goodbye(struct tls_tunnel *t, const void *buf, size_t len);
/* Its two sockets (the network's, its end of the app's pair), for cancels. */
void tls_tunnel_fds(const struct tls_tunnel *t, int *net, int *app);
/* Free it at once, ops out or not (the ring is gone or going). */
void tls_tunnel_free(struct tls_tunnel *t);

/* DIR/NAME into @out (of @len): 0 if that file is there, else -errno. */
int tls_cred_file(char *out, size_t len, const char *dir, const char *name);

#endif /* BSTEER_WIRE_TLS_TUNNEL_H */
