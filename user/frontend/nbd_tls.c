// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TLS for NBD clients (NBD_OPT_STARTTLS), with GnuTLS's record layer in
 * userspace: this kernel has no kTLS.
 *
 * After STARTTLS a connection's socket is handed to a TLS stream on the
 * worker's ring (user/wire/tls_stream.c), and every byte of the NBD
 * handshake and then of the connection goes through it, with no
 * socketpair and no plaintext staged: the ring receives ciphertext and
 * GnuTLS decrypts it straight where the plain receive would have put it
 * (a header into its entry in map memory, a WRITE payload into its
 * slot); a reply is encrypted straight from the slot (its header in the
 * headroom) and the ring sends the ciphertext. Each such transfer then
 * completes as the plain socket op would have, a NOP with an injected
 * result and that op's user_data: the parser and the policy at the
 * completion hook see no difference (they key on the user_data and the
 * result, not the opcode), nor does the rest of the frontend. A TLS
 * connection's replies are never spliced (its requests belong to the
 * frontend's no-pipe owner): the cipher needs the bytes in memory. The
 * issue hook's slot audit sees no fixed-buffer op for these transfers
 * (there is none: the slot is read and written by GnuTLS, in userspace).
 *
 * Here: the server's credentials, and the worker's table of streams,
 * whose SQEs are the frontend's.
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
#include "wire/tls_stream.h"
#include "wire/tls_tunnel.h"	/* tls_cred_file() */

#define TLS_LINGER_S	10		/* a closing connection's last replies and close_notify, at most */

struct tls_cred {
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk;
	gnutls_priority_t prio;
	bool verify_peer;
};

/* ---- credentials: once, on the main thread ---- */

static int x509_load(struct tls_cred *cr, const char *dir)
{
	char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
	int rc;

	if (tls_cred_file(cert, sizeof(cert), dir, "server-cert.pem") ||
	    tls_cred_file(key, sizeof(key), dir, "server-key.pem")) {
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
	if (!tls_cred_file(ca, sizeof(ca), dir, "ca-cert.pem")) {
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

/* ---- the TLS streams of one worker (user/wire/tls_stream.c) ---- */

static struct io_uring_sqe *host_sqe(void *arg)
{
	struct nbd *n = arg;

	bsteer_engine_reserve(n->e, 1);
	return bsteer_engine_sqe(n->e);
}

static __u64 host_ud(void *arg, __u32 id, int op)
{
	return nbd_ud(arg, UD_TLS + op, id);
}

/* A request's completion, as the socket op it stands for would have posted it. */
static int host_done(void *arg, __u64 ud, int res)
{
	struct nbd *n = arg;

	bsteer_engine_reserve(n->e, 1);
	return bsteer_target_complete(n->e, ud, res);
}

static void host_log(void *arg, const char *what, const char *why)
{
	struct nbd *n = arg;

	serve_log(n->s, "nbd: TLS %s: %s", what, why);
}

static void host_gone(void *arg, __u32 id, bool handshaken)
{
	struct nbd *n = arg;

	n->tls[id] = NULL;
	n->ntls--;
	nbd_count(n, NBD_C_TLS_OPEN, -1ull);
	/* Refused, cut short, or timed out: the client never got through. */
	if (!handshaken)
		nbd_count(n, NBD_C_TLS_FAILED, 1);
}

static void host_moved(void *arg, bool in, __u32 bytes)
{
	nbd_count(arg, in ? NBD_C_TLS_DECRYPTED : NBD_C_TLS_ENCRYPTED, bytes);
}

void nbd_tls_cqe(struct nbd *n, int kind, __u32 id, int res)
{
	if (id < TLS_TABLE && n->tls[id])
		tls_stream_cqe(n->tls[id], kind - UD_TLS, res);
}

/*
 * Take over *@net, the client's socket, right after the STARTTLS reply
 * went out: 0 and in *@s the stream that every byte of the connection
 * goes through from here (the TLS handshake first), or -errno. Once the
 * stream has the socket, *@net is -1, even if the stream could not be
 * made (it closed it).
 */
int nbd_tls_start(struct nbd *n, int *net, struct tls_stream **s)
{
	const struct tls_cred *cr = n->sh->tls;
	gnutls_session_t ses;
	struct tls_stream *t;
	int rc;
	__u32 i;

	for (i = 0; i < TLS_TABLE && n->tls[i]; i++)
		;
	if (i == TLS_TABLE || !cr)
		return -ENOSPC;
	rc = gnutls_init(&ses, GNUTLS_SERVER | GNUTLS_NONBLOCK);
	if (rc)
		return -ENOMEM;
	rc = gnutls_priority_set(ses, cr->prio);
	if (!rc && cr->x509)
		rc = gnutls_credentials_set(ses, GNUTLS_CRD_CERTIFICATE, cr->x509);
	if (!rc && cr->psk)
		rc = gnutls_credentials_set(ses, GNUTLS_CRD_PSK, cr->psk);
	if (rc) {
		serve_log(n->s, "nbd: TLS session: %s", gnutls_strerror(rc));
		gnutls_deinit(ses);
		return -ENOMEM;
	}
	if (cr->x509 && cr->verify_peer) {
		gnutls_certificate_server_set_request(ses, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(ses, NULL, 0);
	}
	/* From here the socket is the stream's, whatever happens. */
	t = tls_stream_new(ses, *net);
	*net = -1;
	if (!t)
		return -ENOMEM;
	if (!n->tls_host.sqe)
		n->tls_host = (struct tls_stream_host){
			.arg = n, .sqe = host_sqe, .ud = host_ud, .done = host_done,
			.log = host_log, .gone = host_gone, .moved = host_moved };
	n->tls[i] = t;
	n->ntls++;
	nbd_count(n, NBD_C_TLS_OPEN, 1);
	nbd_count(n, NBD_C_TLS_TOTAL, 1);
	tls_stream_run(t, &n->tls_host, i);
	*s = t;
	return 0;
}

/*
 * Twice a second: a closing connection's client that does not take its
 * last replies (or close_notify) within TLS_LINGER_S goes.
 */
void nbd_tls_tick(struct nbd *n, __u64 now)
{
	__u32 i;

	for (i = 0; n->ntls && i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		if (c->used && c->tls && c->closing && c->sending &&
		    now - c->send_ns > TLS_LINGER_S * 1000000000ull)
			tls_stream_abort(c->tls);
	}
	for (i = 0; n->ntls && i < TLS_TABLE; i++)
		if (n->tls[i])
			tls_stream_tick(n->tls[i], now, TLS_LINGER_S);
}

/* Stopping: the connections' closes end their streams; those still in a handshake go now. */
void nbd_tls_stop(struct nbd *n)
{
	__u32 i;

	for (i = 0; i < TLS_TABLE; i++)
		if (n->tls[i] && !tls_stream_handshaken(n->tls[i]))
			tls_stream_abort(n->tls[i]);
}

void nbd_tls_fini(struct nbd *n)
{
	__u32 i;

	for (i = 0; i < TLS_TABLE; i++) {
		tls_stream_free(n->tls[i]);
		n->tls[i] = NULL;
	}
}
