// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TLS for NBD clients (NBD_OPT_STARTTLS), with GnuTLS's record layer in
 * userspace: this kernel has no kTLS.
 *
 * After STARTTLS a connection's socket is handed to a tunnel, and the
 * handshake and then the connection carry on over one end of a socketpair
 * as if nothing had changed: the rest of the frontend (the ring handshake,
 * header receives parsed by BPF, payloads received into slots, replies
 * sent and spliced from slots) never sees ciphertext. The tunnel is the
 * user-space stand-in for kTLS, and it lives on the worker's ring too:
 *
 *   client --ciphertext--> net --decrypt--> pin --send--> app ==> connection
 *   client <--ciphertext-- cout <--encrypt-- ain <--recv-- app <== connection
 *
 * Each of its four sockets ops (net receive and send, app receive and
 * send) is an SQE of the frontend, at most one of each kind out at a time;
 * the tunnel_pump() after every completion does what can be done and arms
 * what is missing. Backpressure both ways: the network is not read while
 * decrypted data waits for the connection, and the connection is not read
 * while ciphertext waits for the client (so --reply-timeout still sees a
 * client that does not read).
 *
 * It ends when either side does: the client's EOF (or close_notify) is
 * passed on as a half-close after what was decrypted; the connection's
 * close sends close_notify after what was encrypted; an error closes both.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gnutls/gnutls.h>
#include "frontend/nbd_priv.h"

#define TLS_CIN		(64u << 10)	/* ciphertext received, not yet decrypted */
#define TLS_PIN		(256u << 10)	/* plaintext for the connection */
#define TLS_AIN		(128u << 10)	/* plaintext from the connection */
#define TLS_COUT_HIGH	(1u << 20)	/* ciphertext queued: stop reading the app */
#define TLS_LINGER_S	10		/* a closed connection's last replies, at most */

struct tls_cred {
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk;
	gnutls_priority_t prio;
	bool verify_peer;
};

struct tunnel {
	__u32 id;
	int net, app;
	gnutls_session_t ses;
	bool handshaken;
	bool net_eof;		/* the client sent EOF or close_notify */
	bool app_eof;		/* the connection closed its end */
	bool app_shut;		/* ... we half-closed it, after net_eof */
	bool bye;		/* close_notify queued */
	bool failed;
	__u8 out;		/* ops out, a bit per kind */
	__u64 closing_ns;	/* the app's close seen at: the rest may take TLS_LINGER_S */
	unsigned char *cin, *pin, *ain;
	__u32 cin_len, cin_off;
	__u32 pin_len, pin_off;
	/*
	 * Ciphertext: GnuTLS appends to cq; the send takes all of it at once
	 * (the two buffers swap), so nothing moves under a send that is out.
	 */
	unsigned char *cout, *cq;
	__u32 cout_len, cout_off, cout_cap;
	__u32 cq_len, cq_cap;
};

enum { T_NET_RECV = 1, T_NET_SEND = 2, T_APP_RECV = 4, T_APP_SEND = 8 };

static int kind_ud(int bit)
{
	switch (bit) {
	case T_NET_RECV: return UD_TLS_NET_RECV;
	case T_NET_SEND: return UD_TLS_NET_SEND;
	case T_APP_RECV: return UD_TLS_APP_RECV;
	default: return UD_TLS_APP_SEND;
	}
}

/* ---- credentials: once, on the main thread ---- */

static int dir_file(char *out, size_t len, const char *dir, const char *name)
{
	struct stat st;

	snprintf(out, len, "%s/%s", dir, name);
	return stat(out, &st) ? -errno : 0;
}

static int x509_load(struct tls_cred *cr, const char *dir)
{
	char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
	int rc;

	if (dir_file(cert, sizeof(cert), dir, "server-cert.pem") ||
	    dir_file(key, sizeof(key), dir, "server-key.pem")) {
		bsteer_set_err("--tls-certificates %s: want server-cert.pem and server-key.pem there (ca-cert.pem too, for --tls-verify-peer)",
			       dir);
		return -ENOENT;
	}
	rc = gnutls_certificate_allocate_credentials(&cr->x509);
	if (!rc)
		rc = gnutls_certificate_set_x509_key_file(cr->x509, cert, key,
							  GNUTLS_X509_FMT_PEM);
	if (rc < 0) {
		bsteer_set_err("--tls-certificates %s: %s", dir, gnutls_strerror(rc));
		return -EINVAL;
	}
	if (!dir_file(ca, sizeof(ca), dir, "ca-cert.pem")) {
		rc = gnutls_certificate_set_x509_trust_file(cr->x509, ca,
							    GNUTLS_X509_FMT_PEM);
		if (rc < 0) {
			bsteer_set_err("%s: %s", ca, gnutls_strerror(rc));
			return -EINVAL;
		}
	} else if (cr->verify_peer) {
		bsteer_set_err("--tls-verify-peer: no %s/ca-cert.pem to check clients' certificates against",
			       dir);
		return -ENOENT;
	}
	return 0;
}

static int psk_load(struct tls_cred *cr, const char *file)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC), rc;

	/* GnuTLS reads it at each handshake; say now if it cannot. */
	if (fd < 0) {
		bsteer_set_err("--tls-psk %s: %s", file, strerror(errno));
		return -errno;
	}
	close(fd);
	rc = gnutls_psk_allocate_server_credentials(&cr->psk);
	if (!rc)
		rc = gnutls_psk_set_server_credentials_file(cr->psk, file);
	if (rc < 0) {
		bsteer_set_err("--tls-psk %s: %s", file, gnutls_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

int nbd_tls_setup(struct nbd_shared *sh, const struct nbd_conf *conf)
{
	struct tls_cred *cr;
	const char *err_pos;
	int rc;

	if (conf->tls == NBD_TLS_OFF)
		return 0;
	cr = calloc(1, sizeof(*cr));
	if (!cr)
		return -ENOMEM;
	sh->tls = cr;
	cr->verify_peer = conf->tls_verify_peer;
	rc = conf->tls_psk ? psk_load(cr, conf->tls_psk) :
			     x509_load(cr, conf->tls_certs);
	if (rc)
		return rc;
	/* PSK key exchanges are not in NORMAL; certificates need nothing more. */
	rc = gnutls_priority_init(&cr->prio, conf->tls_psk ?
				  "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK" : "NORMAL", &err_pos);
	if (rc < 0) {
		bsteer_set_err("TLS priority: %s", gnutls_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

void nbd_tls_teardown(struct nbd_shared *sh)
{
	struct tls_cred *cr = sh->tls;

	if (!cr)
		return;
	if (cr->prio)
		gnutls_priority_deinit(cr->prio);
	if (cr->x509)
		gnutls_certificate_free_credentials(cr->x509);
	if (cr->psk)
		gnutls_psk_free_server_credentials(cr->psk);
	free(cr);
	sh->tls = NULL;
}

/* ---- GnuTLS's transport: our buffers, never the socket ---- */

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct tunnel *t = p;
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
	struct tunnel *t = p;

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
static __u32 cipher_queued(const struct tunnel *t)
{
	return t->cout_len - t->cout_off + t->cq_len;
}

/* ---- the tunnel ---- */

static void tunnel_free(struct nbd *n, struct tunnel *t)
{
	n->tun[t->id] = NULL;
	n->ntun--;
	nbd_count(n, NBD_C_TLS_OPEN, -1ull);
	/* Refused, cut short, or timed out: the client never got through. */
	if (!t->handshaken)
		nbd_count(n, NBD_C_TLS_FAILED, 1);
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

static void tunnel_fail(struct nbd *n, struct tunnel *t, const char *what, int rc)
{
	if (!t->failed && what)
		serve_log(n->s, "nbd: TLS %s: %s", what, gnutls_strerror(rc));
	t->failed = true;
	/* Every op out comes back, with an error or EOF. */
	shutdown(t->net, SHUT_RDWR);
	shutdown(t->app, SHUT_RDWR);
}

static void arm(struct nbd *n, struct tunnel *t, int bit)
{
	struct io_uring_sqe *sqe;

	if (t->failed)
		return;
	bsteer_engine_reserve(n->e, 1);
	sqe = bsteer_engine_sqe(n->e);
	if (!sqe) {
		tunnel_fail(n, t, NULL, 0);
		return;
	}
	switch (bit) {
	case T_NET_RECV:
		if (t->cin_off) {
			memmove(t->cin, t->cin + t->cin_off, t->cin_len - t->cin_off);
			t->cin_len -= t->cin_off;
			t->cin_off = 0;
		}
		io_uring_prep_recv(sqe, t->net, t->cin + t->cin_len, TLS_CIN - t->cin_len, 0);
		break;
	case T_NET_SEND:
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
	case T_APP_RECV:
		io_uring_prep_recv(sqe, t->app, t->ain, TLS_AIN, 0);
		break;
	case T_APP_SEND:
		io_uring_prep_send(sqe, t->app, t->pin + t->pin_off,
				   t->pin_len - t->pin_off, MSG_NOSIGNAL);
		break;
	}
	io_uring_sqe_set_data64(sqe, nbd_ud(n, kind_ud(bit), t->id));
	t->out |= bit;
}

/* Decrypt what has come in, as far as there is room for it. */
static void decrypt(struct nbd *n, struct tunnel *t)
{
	int warnings = 0;

	while (!t->net_eof && !t->failed && t->pin_len < TLS_PIN) {
		ssize_t r = gnutls_record_recv(t->ses, t->pin + t->pin_len,
					       TLS_PIN - t->pin_len);

		if (r > 0) {
			t->pin_len += r;
		} else if (r == 0) {
			t->net_eof = true;	/* close_notify */
		} else if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
			break;
		} else if (gnutls_error_is_fatal(r) || ++warnings > 16) {
			tunnel_fail(n, t, "receive", r);
		}
	}
}

/* Encrypt @len bytes from the connection: records of at most 16 KiB each. */
static void encrypt(struct nbd *n, struct tunnel *t, __u32 len)
{
	__u32 done = 0;

	while (done < len) {
		ssize_t r = gnutls_record_send(t->ses, t->ain + done, len - done);

		if (r <= 0) {
			tunnel_fail(n, t, "send", r < 0 ? (int)r : GNUTLS_E_INTERNAL_ERROR);
			return;
		}
		done += r;
	}
}

/* Do what can be done, and arm what is missing. */
static void tunnel_pump(struct nbd *n, struct tunnel *t)
{
	if (!t->failed && !t->handshaken) {
		int rc = gnutls_handshake(t->ses);

		if (rc == GNUTLS_E_SUCCESS)
			t->handshaken = true;
		else if (gnutls_error_is_fatal(rc))
			tunnel_fail(n, t, "handshake", rc);
	}
	if (t->handshaken && !t->failed)
		decrypt(n, t);
	if (t->failed) {
		if (!t->out)
			tunnel_free(n, t);
		return;
	}
	/* The client is done and all it sent is passed on: the app sees EOF. */
	if (t->net_eof && t->pin_off == t->pin_len && !t->app_shut) {
		shutdown(t->app, SHUT_WR);
		t->app_shut = true;
	}
	if (t->app_eof && !t->closing_ns)
		t->closing_ns = bsteer_now_ns();
	if (t->app_eof && !t->bye && t->handshaken) {
		/* Queued in cout, after the last replies (nbd_tls_tick bounds the wait). */
		gnutls_bye(t->ses, GNUTLS_SHUT_WR);
		t->bye = true;
	}
	if (t->app_eof && (t->net_eof || !cipher_queued(t))) {
		if (!t->out)
			tunnel_free(n, t);
		else if (t->out & (T_NET_RECV | T_APP_SEND))
			tunnel_fail(n, t, NULL, 0);
		return;
	}
	if (t->pin_off < t->pin_len && !(t->out & T_APP_SEND) && !t->app_eof)
		arm(n, t, T_APP_SEND);
	if (cipher_queued(t) && !(t->out & T_NET_SEND))
		arm(n, t, T_NET_SEND);
	if (!(t->out & T_APP_RECV) && !t->app_eof && cipher_queued(t) < TLS_COUT_HIGH)
		arm(n, t, T_APP_RECV);
	/* (arm() moves what is left to the front first) */
	if (!(t->out & T_NET_RECV) && !t->net_eof && t->cin_len - t->cin_off < TLS_CIN &&
	    t->pin_len < TLS_PIN)
		arm(n, t, T_NET_RECV);
}

void nbd_tls_cqe(struct nbd *n, int kind, __u32 id, int res)
{
	struct tunnel *t = id < TUN_TABLE ? n->tun[id] : NULL;

	if (!t)
		return;
	switch (kind) {
	case UD_TLS_NET_RECV:
		t->out &= ~T_NET_RECV;
		if (res > 0)
			t->cin_len += res;
		else if (res == 0)
			t->net_eof = true;
		else
			tunnel_fail(n, t, NULL, 0);
		break;
	case UD_TLS_NET_SEND:
		t->out &= ~T_NET_SEND;
		if (res <= 0) {
			tunnel_fail(n, t, NULL, 0);
			break;
		}
		t->cout_off += res;
		if (t->cout_off == t->cout_len)
			t->cout_off = t->cout_len = 0;
		break;
	case UD_TLS_APP_RECV:
		t->out &= ~T_APP_RECV;
		if (res <= 0) {
			t->app_eof = true;
			break;
		}
		if (!t->handshaken) {	/* the connection waits for the client first */
			tunnel_fail(n, t, NULL, 0);
			break;
		}
		encrypt(n, t, res);
		break;
	case UD_TLS_APP_SEND:
		t->out &= ~T_APP_SEND;
		if (res <= 0) {
			t->app_eof = true;
			break;
		}
		t->pin_off += res;
		if (t->pin_off == t->pin_len)
			t->pin_off = t->pin_len = 0;
		break;
	}
	tunnel_pump(n, t);
}

/*
 * Take over @net, the client's socket, right after the STARTTLS reply
 * went out: returns our end of the socketpair for the handshake and the
 * connection to use instead, or -errno (@net is then still the caller's).
 */
int nbd_tls_start(struct nbd *n, int net)
{
	const struct tls_cred *cr = n->sh->tls;
	struct tunnel *t;
	int sv[2], rc;
	__u32 i;

	for (i = 0; i < TUN_TABLE && n->tun[i]; i++)
		;
	if (i == TUN_TABLE || !cr)
		return -ENOSPC;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -errno;
	t = calloc(1, sizeof(*t));
	if (t) {
		t->cin = malloc(TLS_CIN);
		t->pin = malloc(TLS_PIN);
		t->ain = malloc(TLS_AIN);
	}
	rc = !t || !t->cin || !t->pin || !t->ain ? GNUTLS_E_MEMORY_ERROR :
	     gnutls_init(&t->ses, GNUTLS_SERVER | GNUTLS_NONBLOCK);
	if (!rc)
		rc = gnutls_priority_set(t->ses, cr->prio);
	if (!rc && cr->x509)
		rc = gnutls_credentials_set(t->ses, GNUTLS_CRD_CERTIFICATE, cr->x509);
	if (!rc && cr->psk)
		rc = gnutls_credentials_set(t->ses, GNUTLS_CRD_PSK, cr->psk);
	if (rc) {
		if (t) {
			if (t->ses)
				gnutls_deinit(t->ses);
			free(t->cin);
			free(t->pin);
			free(t->ain);
			free(t);
		}
		close(sv[0]);
		close(sv[1]);
		serve_log(n->s, "nbd: TLS session: %s", gnutls_strerror(rc));
		return -ENOMEM;
	}
	if (cr->x509 && cr->verify_peer) {
		gnutls_certificate_server_set_request(t->ses, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(t->ses, NULL, 0);
	}
	gnutls_transport_set_ptr(t->ses, t);
	gnutls_transport_set_pull_function(t->ses, tls_pull);
	gnutls_transport_set_push_function(t->ses, tls_push);
	t->id = i;
	t->net = net;
	t->app = sv[1];
	n->tun[i] = t;
	n->ntun++;
	nbd_count(n, NBD_C_TLS_OPEN, 1);
	nbd_count(n, NBD_C_TLS_TOTAL, 1);
	tunnel_pump(n, t);
	return sv[0];
}

/* Twice a second: a closed connection's client that does not take its last replies goes. */
void nbd_tls_tick(struct nbd *n, __u64 now)
{
	__u32 i;

	for (i = 0; n->ntun && i < TUN_TABLE; i++) {
		struct tunnel *t = n->tun[i];

		if (t && t->closing_ns && now - t->closing_ns > TLS_LINGER_S * 1000000000ull)
			tunnel_fail(n, t, NULL, 0);
	}
}

/* Stopping: the connections' closes end their tunnels; those still in a handshake go now. */
void nbd_tls_stop(struct nbd *n)
{
	__u32 i;

	for (i = 0; i < TUN_TABLE; i++)
		if (n->tun[i] && !n->tun[i]->handshaken)
			tunnel_fail(n, n->tun[i], NULL, 0);
}

void nbd_tls_fini(struct nbd *n)
{
	__u32 i;

	for (i = 0; i < TUN_TABLE; i++)
		if (n->tun[i])
			tunnel_free(n, n->tun[i]);
}
