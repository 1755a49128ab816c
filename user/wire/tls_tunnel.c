// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The TLS tunnel (see tls_tunnel.h):
 *
 *   peer --ciphertext--> net --decrypt--> pin --send--> app ==> its user
 *   peer <--ciphertext-- cout <--encrypt-- ain <--recv-- app <== its user
 *
 * tunnel_pump(), after every completion, does what can be done and arms
 * what is missing. Plaintext passes through pin and ain, and the
 * socketpair, on its way: the copy each way that tls_stream.c does
 * without, for the frontend. The NBD target's legs keep the tunnel
 * (their client reads and writes a socket it does not know is TLS).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdio.h>
#include <liburing.h>
#include "wire/tls_tunnel.h"

#define TLS_CIN		(64u << 10)	/* ciphertext received, not yet decrypted */
#define TLS_PIN		(256u << 10)	/* plaintext for the app */
#define TLS_AIN		(128u << 10)	/* plaintext from the app */
#define TLS_COUT_HIGH	(1u << 20)	/* ciphertext queued: stop reading the app */

struct tls_tunnel {
	const struct tls_host *host;
	__u32 id;
	int net, app;
	gnutls_session_t ses;
	bool handshaken;
	bool net_eof;		/* the peer sent EOF or close_notify */
	bool app_eof;		/* the app closed its end */
	bool app_shut;		/* ... we half-closed it, after net_eof */
	bool bye;		/* close_notify queued */
	bool failed;
	__u8 out;		/* ops out, a bit per TLS_OP_* */
	__u64 closing_ns;	/* the app's close seen at */
	unsigned char *cin, *pin, *ain;
	__u32 cin_len, cin_off;
	__u32 pin_len, pin_off;
	/*
	 * Ciphertext: GnuTLS appends to cq; a send takes all of it at once
	 * (the two buffers swap), so nothing moves under a send that is out.
	 */
	unsigned char *cout, *cq;
	__u32 cout_len, cout_off, cout_cap;
	__u32 cq_len, cq_cap;
};

static bool out(const struct tls_tunnel *t, int op);

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- GnuTLS's transport: our buffers, never the socket ---- */

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct tls_tunnel *t = p;
	__u32 have = t->cin_len - t->cin_off;

	if (!have) {
		gnutls_transport_set_errno(t->ses, EAGAIN);
		return -1;
	}
	if (len > have)
		len = have;
	memcpy(buf, t->cin + t->cin_off, len);
	t->cin_off += len;	/* room is made in arm(), when no receive is out */
	return len;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
	struct tls_tunnel *t = p;

	if (t->cq_len + len > t->cq_cap) {
		__u32 cap = t->cq_cap ? t->cq_cap : 64 << 10;
		unsigned char *c;

		while (cap < t->cq_len + len)
			cap *= 2;
		c = realloc(t->cq, cap);
		if (!c) {
			gnutls_transport_set_errno(t->ses, ENOMEM);
			return -1;
		}
		t->cq = c;
		t->cq_cap = cap;
	}
	memcpy(t->cq + t->cq_len, buf, len);
	t->cq_len += len;
	return len;
}

/* Ciphertext not yet sent, in both buffers. */
static __u32 cipher_queued(const struct tls_tunnel *t)
{
	return t->cout_len - t->cout_off + t->cq_len;
}

/* ---- the tunnel ---- */

void tls_tunnel_fds(const struct tls_tunnel *t, int *net, int *app)
{
	*net = t->net;
	*app = t->app;
}

void tls_tunnel_free(struct tls_tunnel *t)
{
	if (!t)
		return;
	gnutls_deinit(t->ses);
	close(t->net);
	close(t->app);
	free(t->cin);
	free(t->pin);
	free(t->ain);
	free(t->cout);
	free(t->cq);
	free(t);
}

/* Send @len bytes of @p on @fd now, as far as the socket takes them. */
static bool send_nowait(int fd, const unsigned char *p, __u32 len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n <= 0)
			return false;
		p += n;
		len -= n;
	}
	return true;
}

void tls_tunnel_goodbye(struct tls_tunnel *t, const void *buf, size_t len)
{
	if (!t || !t->handshaken || t->failed || t->bye || t->app_eof ||
	    out(t, TLS_OP_NET_SEND))
		return;
	if (gnutls_record_send(t->ses, buf, len) != (ssize_t)len)
		return;
	if (gnutls_bye(t->ses, GNUTLS_SHUT_WR) == GNUTLS_E_SUCCESS)
		t->bye = true;
	/* What a send had not taken yet goes first, then what GnuTLS queued. */
	if (send_nowait(t->net, t->cout + t->cout_off, t->cout_len - t->cout_off)) {
		t->cout_off = t->cout_len;
		if (send_nowait(t->net, t->cq, t->cq_len))
			t->cq_len = 0;
	}
}

static void tunnel_end(struct tls_tunnel *t)
{
	const struct tls_host *h = t->host;
	bool handshaken = t->handshaken;
	__u32 id = t->id;

	tls_tunnel_free(t);
	h->gone(h->arg, id, handshaken);
}

static void tunnel_fail(struct tls_tunnel *t, const char *what, int rc)
{
	if (!t->failed && what && t->host->log)
		t->host->log(t->host->arg, what, gnutls_strerror(rc));
	t->failed = true;
	/* Every op out comes back, with an error or EOF. */
	shutdown(t->net, SHUT_RDWR);
	shutdown(t->app, SHUT_RDWR);
}

void tls_tunnel_abort(struct tls_tunnel *t)
{
	tunnel_fail(t, NULL, 0);
	if (!t->out)
		tunnel_end(t);
}

bool tls_tunnel_handshaken(const struct tls_tunnel *t)
{
	return t->handshaken;
}

static void arm(struct tls_tunnel *t, int op)
{
	struct io_uring_sqe *sqe;

	if (t->failed)
		return;
	sqe = t->host->sqe(t->host->arg);
	if (!sqe) {
		tunnel_fail(t, NULL, 0);
		return;
	}
	switch (op) {
	case TLS_OP_NET_RECV:
		if (t->cin_off) {
			memmove(t->cin, t->cin + t->cin_off, t->cin_len - t->cin_off);
			t->cin_len -= t->cin_off;
			t->cin_off = 0;
		}
		io_uring_prep_recv(sqe, t->net, t->cin + t->cin_len, TLS_CIN - t->cin_len, 0);
		break;
	case TLS_OP_NET_SEND:
		if (t->cout_off == t->cout_len) {	/* take what GnuTLS queued */
			unsigned char *b = t->cout;
			__u32 cap = t->cout_cap;

			t->cout = t->cq;
			t->cout_cap = t->cq_cap;
			t->cout_len = t->cq_len;
			t->cout_off = 0;
			t->cq = b;
			t->cq_cap = cap;
			t->cq_len = 0;
		}
		io_uring_prep_send(sqe, t->net, t->cout + t->cout_off,
				   t->cout_len - t->cout_off, MSG_NOSIGNAL);
		break;
	case TLS_OP_APP_RECV:
		io_uring_prep_recv(sqe, t->app, t->ain, TLS_AIN, 0);
		break;
	case TLS_OP_APP_SEND:
		io_uring_prep_send(sqe, t->app, t->pin + t->pin_off,
				   t->pin_len - t->pin_off, MSG_NOSIGNAL);
		break;
	}
	io_uring_sqe_set_data64(sqe, t->host->ud(t->host->arg, t->id, op));
	t->out |= 1u << op;
}

static bool out(const struct tls_tunnel *t, int op)
{
	return t->out & (1u << op);
}

/* Decrypt what has come in, as far as there is room for it. */
static void decrypt(struct tls_tunnel *t)
{
	int warnings = 0;

	while (!t->net_eof && !t->failed && t->pin_len < TLS_PIN) {
		ssize_t r = gnutls_record_recv(t->ses, t->pin + t->pin_len,
					       TLS_PIN - t->pin_len);

		if (r > 0)
			t->pin_len += r;
		else if (r == 0)
			t->net_eof = true;	/* close_notify */
		else if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			break;
		else if (gnutls_error_is_fatal(r) || ++warnings > 16)
			tunnel_fail(t, "receive", r);
	}
}

/* Encrypt @len bytes from the app: records of at most 16 KiB each. */
static void encrypt(struct tls_tunnel *t, __u32 len)
{
	__u32 done = 0;

	while (done < len) {
		ssize_t r = gnutls_record_send(t->ses, t->ain + done, len - done);

		if (r <= 0) {
			tunnel_fail(t, "send", r < 0 ? (int)r : GNUTLS_E_INTERNAL_ERROR);
			return;
		}
		done += r;
	}
}

/* Do what can be done, and arm what is missing. */
static void tunnel_pump(struct tls_tunnel *t)
{
	if (!t->failed && !t->handshaken) {
		int rc = gnutls_handshake(t->ses);

		if (rc == GNUTLS_E_SUCCESS)
			t->handshaken = true;
		else if (gnutls_error_is_fatal(rc))
			tunnel_fail(t, "handshake", rc);
	}
	if (t->handshaken && !t->failed)
		decrypt(t);
	if (t->failed) {
		if (!t->out)
			tunnel_end(t);
		return;
	}
	/* The peer is done and all it sent is passed on: the app sees EOF. */
	if (t->net_eof && t->pin_off == t->pin_len && !t->app_shut) {
		shutdown(t->app, SHUT_WR);
		t->app_shut = true;
	}
	if (t->app_eof && !t->closing_ns)
		t->closing_ns = now_ns();
	if (t->app_eof && !t->bye && t->handshaken) {
		/* Queued after the last of the app's bytes (the tick bounds the wait). */
		gnutls_bye(t->ses, GNUTLS_SHUT_WR);
		t->bye = true;
	}
	/* Done once what the app sent is out (a peer that is gone fails the send). */
	if (t->app_eof && !cipher_queued(t)) {
		if (!t->out)
			tunnel_end(t);
		else if (out(t, TLS_OP_NET_RECV) || out(t, TLS_OP_APP_SEND))
			tunnel_fail(t, NULL, 0);
		return;
	}
	if (t->pin_off < t->pin_len && !out(t, TLS_OP_APP_SEND) && !t->app_eof)
		arm(t, TLS_OP_APP_SEND);
	if (cipher_queued(t) && !out(t, TLS_OP_NET_SEND))
		arm(t, TLS_OP_NET_SEND);
	if (!out(t, TLS_OP_APP_RECV) && !t->app_eof && cipher_queued(t) < TLS_COUT_HIGH)
		arm(t, TLS_OP_APP_RECV);
	/* (arm() moves what is left to the front first) */
	if (!out(t, TLS_OP_NET_RECV) && !t->net_eof && t->cin_len - t->cin_off < TLS_CIN &&
	    t->pin_len < TLS_PIN)
		arm(t, TLS_OP_NET_RECV);
	/* An arm() that found no SQE failed it: with nothing out, nothing will call again. */
	if (t->failed && !t->out)
		tunnel_end(t);
}

void tls_tunnel_cqe(struct tls_tunnel *t, int op, int res)
{
	t->out &= ~(1u << op);
	switch (op) {
	case TLS_OP_NET_RECV:
		if (res > 0)
			t->cin_len += res;
		else if (res == 0)
			t->net_eof = true;
		else
			tunnel_fail(t, NULL, 0);
		break;
	case TLS_OP_NET_SEND:
		if (res <= 0) {
			tunnel_fail(t, NULL, 0);
			break;
		}
		t->cout_off += res;
		if (t->cout_off == t->cout_len)
			t->cout_off = t->cout_len = 0;
		break;
	case TLS_OP_APP_RECV:
		if (res <= 0) {
			t->app_eof = true;
			break;
		}
		if (!t->handshaken) {	/* the app waits for the peer first */
			tunnel_fail(t, NULL, 0);
			break;
		}
		encrypt(t, res);
		break;
	case TLS_OP_APP_SEND:
		if (res <= 0) {
			t->app_eof = true;
			break;
		}
		t->pin_off += res;
		if (t->pin_off == t->pin_len)
			t->pin_off = t->pin_len = 0;
		break;
	}
	tunnel_pump(t);
}

void tls_tunnel_tick(struct tls_tunnel *t, __u64 now, __u32 linger_s)
{
	if (t->closing_ns && now - t->closing_ns > linger_s * 1000000000ull)
		tls_tunnel_abort(t);
}

struct tls_tunnel *tls_tunnel_new(gnutls_session_t ses, int net, bool handshaken, int *app)
{
	struct tls_tunnel *t = calloc(1, sizeof(*t));
	int sv[2];

	if (t) {
		t->cin = malloc(TLS_CIN);
		t->pin = malloc(TLS_PIN);
		t->ain = malloc(TLS_AIN);
	}
	if (!t || !t->cin || !t->pin || !t->ain ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		if (t) {
			free(t->cin);
			free(t->pin);
			free(t->ain);
			free(t);
		}
		gnutls_deinit(ses);
		close(net);
		return NULL;
	}
	t->ses = ses;
	t->net = net;
	t->app = sv[1];
	t->handshaken = handshaken;
	gnutls_transport_set_ptr(ses, t);
	gnutls_transport_set_pull_function(ses, tls_pull);
	gnutls_transport_set_push_function(ses, tls_push);
	*app = sv[0];
	return t;
}

void tls_tunnel_run(struct tls_tunnel *t, const struct tls_host *host, __u32 id)
{
	t->host = host;
	t->id = id;
	tunnel_pump(t);
}

int tls_cred_file(char *out, size_t len, const char *dir, const char *name)
{
	struct stat st;

	snprintf(out, len, "%s/%s", dir, name);
	return stat(out, &st) ? -errno : 0;
}
