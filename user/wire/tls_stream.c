// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The TLS stream (see tls_stream.h):
 *
 *   peer --ciphertext--> cin --gnutls_record_recv--> the user's buffer
 *   peer <--ciphertext-- cout <-- cq <--gnutls_record_send-- the user's buffer
 *
 * No plaintext is staged here: GnuTLS decrypts into the destination the
 * plain socket receive would have filled, and encrypts from the memory the
 * plain send would have sent. Sends are encrypted when they are asked
 * for; each remembers where its ciphertext ends in the stream (queued),
 * and completes once that much was sent.
 *
 * stream_pump(), after every completion and request, does what can be
 * done and arms what is missing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <liburing.h>
#include "wire/tls_stream.h"

#define TLS_CIN		(64u << 10)	/* ciphertext received, not yet decrypted */
#define SMALL_PIECE	1024		/* pieces below this share records (cork) */

struct tls_send {
	__u64 end;		/* its last ciphertext byte's place in the stream, + 1 */
	__u64 ud;
	int res;
	__u32 bytes;		/* plaintext */
};

struct tls_recv {
	unsigned char *buf;
	__u32 len, got;
	int how;
	__u64 ud;
};

struct tls_stream {
	const struct tls_stream_host *host;
	__u32 id;
	int net;
	gnutls_session_t ses;
	bool handshaken;
	bool failed;
	bool net_eof;		/* the peer sent EOF or close_notify */
	bool rd_shut;		/* the user reads no more */
	bool closing;		/* the user let go */
	__u8 out;		/* ops out, a bit per TLS_STREAM_* */
	__u64 closing_ns;
	/* The receives asked for: rxq[0] is filled first, then rxq[1]. */
	struct tls_recv rxq[TLS_STREAM_RECVS];
	__u32 nrx;
	/* Sends whose ciphertext is not all out, oldest first. */
	struct tls_send sq[TLS_STREAM_SENDS];
	__u32 sq_head, sq_n;
	__u64 queued, sent;	/* ciphertext bytes: encrypted, sent, ever */
	unsigned char *cin;
	__u32 cin_len, cin_off;
	/* Ciphertext: GnuTLS appends to cq; a send takes all of it (swap). */
	unsigned char *cout, *cq;
	__u32 cout_len, cout_off, cout_cap;
	__u32 cq_len, cq_cap;
};

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- GnuTLS's transport: our buffers, never the socket ---- */

static ssize_t stream_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct tls_stream *s = p;
	__u32 have = s->cin_len - s->cin_off;

	if (!have) {
		if (s->net_eof)
			return 0;
		gnutls_transport_set_errno(s->ses, EAGAIN);
		return -1;
	}
	if (len > have)
		len = have;
	memcpy(buf, s->cin + s->cin_off, len);
	s->cin_off += len;	/* room is made in arm(), when no receive is out */
	return len;
}

static ssize_t stream_push(gnutls_transport_ptr_t p, const void *buf, size_t len)
{
	struct tls_stream *s = p;

	if (s->cq_len + len > s->cq_cap) {
		__u32 cap = s->cq_cap ? s->cq_cap : 64 << 10;
		unsigned char *c;

		while (cap < s->cq_len + len)
			cap *= 2;
		c = realloc(s->cq, cap);
		if (!c) {
			gnutls_transport_set_errno(s->ses, ENOMEM);
			return -1;
		}
		s->cq = c;
		s->cq_cap = cap;
	}
	memcpy(s->cq + s->cq_len, buf, len);
	s->cq_len += len;
	s->queued += len;
	return len;
}

static __u32 cipher_queued(const struct tls_stream *s)
{
	return s->cout_len - s->cout_off + s->cq_len;
}

static bool out(const struct tls_stream *s, int op)
{
	return s->out & (1u << op);
}

/* ---- the stream ---- */

void tls_stream_free(struct tls_stream *s)
{
	if (!s)
		return;
	gnutls_deinit(s->ses);
	close(s->net);
	free(s->cin);
	free(s->cout);
	free(s->cq);
	free(s);
}

static void stream_end(struct tls_stream *s)
{
	const struct tls_stream_host *h = s->host;
	bool handshaken = s->handshaken;
	__u32 id = s->id;

	tls_stream_free(s);
	h->gone(h->arg, id, handshaken);
}

static void cancel_recv(struct tls_stream *s)
{
	struct io_uring_sqe *sqe;

	if (!out(s, TLS_STREAM_NET_RECV))
		return;
	/* shutdown() does not wake a receive on every socket kind. */
	sqe = s->host->sqe(s->host->arg);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, s->host->ud(s->host->arg, s->id, TLS_STREAM_NET_RECV), 0);
	io_uring_sqe_set_data64(sqe, 0);
}

/* The first receive asked for is over: its completion, with @res. */
static void rx_done(struct tls_stream *s, int res)
{
	__u64 ud = s->rxq[0].ud;

	s->rxq[0] = s->rxq[1];
	s->nrx--;
	if (res > 0 && s->host->moved)
		s->host->moved(s->host->arg, true, res);
	s->host->done(s->host->arg, ud, res);
}

/* ... at the end of the stream: what it got, or 0 if it wanted all. */
static void rx_eof(struct tls_stream *s)
{
	rx_done(s, s->rxq[0].how == TLS_RECV_EXACT ? 0 : (int)s->rxq[0].got);
}

static void stream_fail(struct tls_stream *s, const char *what, int rc)
{
	if (!s->failed && what && s->host->log)
		s->host->log(s->host->arg, what, gnutls_strerror(rc));
	s->failed = true;
	/* Every op out comes back, with an error or EOF. */
	shutdown(s->net, SHUT_RDWR);
	cancel_recv(s);
	while (s->nrx)
		rx_done(s, -ECONNRESET);
	for (; s->sq_n; s->sq_n--, s->sq_head = (s->sq_head + 1) % TLS_STREAM_SENDS)
		s->host->done(s->host->arg, s->sq[s->sq_head].ud, -EPIPE);
}

void tls_stream_abort(struct tls_stream *s)
{
	stream_fail(s, NULL, 0);
	if (s->closing && !s->out)
		stream_end(s);
}

bool tls_stream_handshaken(const struct tls_stream *s)
{
	return s->handshaken;
}

static void arm(struct tls_stream *s, int op)
{
	struct io_uring_sqe *sqe;

	if (s->failed)
		return;
	sqe = s->host->sqe(s->host->arg);
	if (!sqe) {
		stream_fail(s, NULL, 0);
		return;
	}
	if (op == TLS_STREAM_NET_RECV) {
		if (s->cin_off) {
			memmove(s->cin, s->cin + s->cin_off, s->cin_len - s->cin_off);
			s->cin_len -= s->cin_off;
			s->cin_off = 0;
		}
		io_uring_prep_recv(sqe, s->net, s->cin + s->cin_len, TLS_CIN - s->cin_len, 0);
	} else {
		if (s->cout_off == s->cout_len) {	/* take what GnuTLS queued */
			unsigned char *b = s->cout;
			__u32 cap = s->cout_cap;

			s->cout = s->cq;
			s->cout_cap = s->cq_cap;
			s->cout_len = s->cq_len;
			s->cout_off = 0;
			s->cq = b;
			s->cq_cap = cap;
			s->cq_len = 0;
		}
		io_uring_prep_send(sqe, s->net, s->cout + s->cout_off,
				   s->cout_len - s->cout_off, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, s->host->ud(s->host->arg, s->id, op));
	s->out |= 1u << op;
}

/*
 * Decrypt into the receives asked for, in order, as far as what came in
 * goes. true if they need more ciphertext.
 */
static bool rx_pump(struct tls_stream *s)
{
	int warnings = 0;
	bool eof = s->rd_shut;

	while (s->nrx && !s->failed) {
		struct tls_recv *q = &s->rxq[0];
		ssize_t r;

		if (q->got == q->len || (q->how == TLS_RECV_SOME && q->got)) {
			rx_done(s, q->got);
			continue;
		}
		if (eof) {
			rx_eof(s);
			continue;
		}
		r = gnutls_record_recv(s->ses, q->buf + q->got, q->len - q->got);
		if (r > 0) {
			q->got += r;
		} else if (r == 0 || r == GNUTLS_E_PREMATURE_TERMINATION) {
			eof = s->net_eof = true;
		} else if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			if (!s->net_eof)
				return true;
			eof = true;
		} else if (gnutls_error_is_fatal(r) || ++warnings > 16) {
			stream_fail(s, "receive", r);
		}
	}
	return false;
}

/* The sends whose ciphertext is all out are done. */
static void sends_done(struct tls_stream *s)
{
	while (s->sq_n && s->sq[s->sq_head].end <= s->sent) {
		struct tls_send *q = &s->sq[s->sq_head];

		s->sq_head = (s->sq_head + 1) % TLS_STREAM_SENDS;
		s->sq_n--;
		if (s->host->moved)
			s->host->moved(s->host->arg, false, q->bytes);
		s->host->done(s->host->arg, q->ud, q->res);
	}
}

/* Do what can be done, and arm what is missing. */
static void stream_pump(struct tls_stream *s)
{
	bool need_in = false;

	if (!s->failed && !s->handshaken) {
		int rc = gnutls_handshake(s->ses);

		if (rc == GNUTLS_E_SUCCESS)
			s->handshaken = true;
		else if (gnutls_error_is_fatal(rc))
			stream_fail(s, "handshake", rc);
		else
			need_in = true;
	}
	if (s->handshaken && !s->failed)
		need_in = rx_pump(s);
	if (s->failed) {
		if (s->closing && !s->out)
			stream_end(s);
		return;
	}
	if (cipher_queued(s) && !out(s, TLS_STREAM_NET_SEND))
		arm(s, TLS_STREAM_NET_SEND);
	if (s->closing && !cipher_queued(s)) {
		/* close_notify is out: what the peer still sends is not read. */
		if (!s->out)
			stream_end(s);
		else if (out(s, TLS_STREAM_NET_RECV))
			stream_fail(s, NULL, 0);
		return;
	}
	if (need_in && !s->net_eof && !s->rd_shut && !out(s, TLS_STREAM_NET_RECV) &&
	    s->cin_len - s->cin_off < TLS_CIN)
		arm(s, TLS_STREAM_NET_RECV);
	/* An arm() that found no SQE failed it: with nothing out, nothing will call again. */
	if (s->failed && s->closing && !s->out)
		stream_end(s);
}

void tls_stream_recv(struct tls_stream *s, void *buf, __u32 len, int how, __u64 ud)
{
	if (s->nrx == TLS_STREAM_RECVS || s->failed || s->closing) {
		s->host->done(s->host->arg, ud, s->failed || s->closing ? -ECONNRESET : -EBUSY);
		return;
	}
	s->rxq[s->nrx++] = (struct tls_recv){ .buf = buf, .len = len, .how = how, .ud = ud };
	stream_pump(s);
}

/* Encrypt @len bytes at @buf: records of at most 16 KiB each. */
static int encrypt(struct tls_stream *s, const unsigned char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = gnutls_record_send(s->ses, buf + done, len - done);

		if (r <= 0)
			return r < 0 ? (int)r : GNUTLS_E_INTERNAL_ERROR;
		done += r;
	}
	return 0;
}

void tls_stream_send(struct tls_stream *s, const struct iovec *iov, int n, __u64 ud, int res)
{
	struct tls_send *q;
	bool corked = false;
	__u32 bytes = 0;
	int i, rc = 0;

	if (s->failed || s->closing || !s->handshaken || s->sq_n == TLS_STREAM_SENDS) {
		s->host->done(s->host->arg, ud, s->failed ? -EPIPE : -EBUSY);
		return;
	}
	/*
	 * Small pieces (a reply's header, a batch of replies with no data)
	 * share records, through GnuTLS's cork buffer; large ones are
	 * encrypted straight from where they are.
	 */
	for (i = 0; !rc && i < n; i++) {
		if (iov[i].iov_len < SMALL_PIECE && !corked) {
			gnutls_record_cork(s->ses);
			corked = true;
		} else if (iov[i].iov_len >= SMALL_PIECE && corked) {
			rc = gnutls_record_uncork(s->ses, GNUTLS_RECORD_WAIT);
			rc = rc < 0 ? rc : 0;
			corked = false;
		}
		if (!rc)
			rc = encrypt(s, iov[i].iov_base, iov[i].iov_len);
		bytes += iov[i].iov_len;
	}
	if (corked) {
		int r = gnutls_record_uncork(s->ses, GNUTLS_RECORD_WAIT);

		if (!rc && r < 0)
			rc = r;
	}
	q = &s->sq[(s->sq_head + s->sq_n++) % TLS_STREAM_SENDS];
	*q = (struct tls_send){ .end = s->queued, .ud = ud, .res = res, .bytes = bytes };
	if (rc) {
		stream_fail(s, "send", rc);	/* completes it, with the others */
		if (s->closing && !s->out)
			stream_end(s);
		return;
	}
	sends_done(s);	/* nothing to send (an empty piece): done now */
	stream_pump(s);
}

void tls_stream_cqe(struct tls_stream *s, int op, int res)
{
	s->out &= ~(1u << op);
	if (op == TLS_STREAM_NET_RECV) {
		if (res > 0)
			s->cin_len += res;
		else if (res == 0 || (s->handshaken && res != -ECANCELED))
			/* A peer gone (reset) after the handshake: the receive sees EOF. */
			s->net_eof = true;
		else if (!(res == -ECANCELED && s->rd_shut))
			stream_fail(s, NULL, 0);
	} else if (res <= 0) {
		stream_fail(s, NULL, 0);
	} else {
		s->cout_off += res;
		s->sent += res;
		if (s->cout_off == s->cout_len)
			s->cout_off = s->cout_len = 0;
		sends_done(s);
	}
	stream_pump(s);
}

void tls_stream_shut_rd(struct tls_stream *s)
{
	if (s->rd_shut)
		return;
	s->rd_shut = true;
	cancel_recv(s);
	while (!s->failed && s->nrx)
		rx_eof(s);
}

void tls_stream_close(struct tls_stream *s)
{
	s->closing = true;
	s->closing_ns = now_ns();
	s->rd_shut = true;
	if (s->handshaken && !s->failed)
		gnutls_bye(s->ses, GNUTLS_SHUT_WR);	/* queued after the last reply */
	stream_pump(s);
}

void tls_stream_tick(struct tls_stream *s, __u64 now, __u32 linger_s)
{
	if (s->closing && now - s->closing_ns > linger_s * 1000000000ull)
		tls_stream_abort(s);
}

struct tls_stream *tls_stream_new(gnutls_session_t ses, int net)
{
	struct tls_stream *s = calloc(1, sizeof(*s));

	if (s)
		s->cin = malloc(TLS_CIN);
	if (!s || !s->cin) {
		free(s);
		gnutls_deinit(ses);
		close(net);
		return NULL;
	}
	s->ses = ses;
	s->net = net;
	gnutls_transport_set_ptr(ses, s);
	gnutls_transport_set_pull_function(ses, stream_pull);
	gnutls_transport_set_push_function(ses, stream_push);
	return s;
}

void tls_stream_run(struct tls_stream *s, const struct tls_stream_host *host, __u32 id)
{
	s->host = host;
	s->id = id;
	stream_pump(s);
}
