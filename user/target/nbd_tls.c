// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TLS for nbds:// and nbds+unix:// legs, the handshake's side: after
 * STARTTLS, a GnuTLS client session on the leg's socket, blocking (legs
 * are opened before the rings run, and again by a reconnect), with the
 * certificates or the pre-shared key the URI names in libnbd's terms:
 *
 *   ?tls-certificates=DIR   DIR/ca-cert.pem checks the server (its name
 *                           is the URI's host, or ?tls-hostname=);
 *                           DIR/client-cert.pem and client-key.pem, if
 *                           there, are shown to it
 *   ?tls-psk-file=FILE      USER:HEXKEY lines (psktool's format), USER
 *                           from the URI (nbds://USER@HOST/...)
 *
 * Once the options are done, nbd.c puts the socket and the session in a
 * TLS tunnel (user/wire/tls_tunnel.c) and the ring gets its plain end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/stat.h>
#include "target/nbd.h"
#include "wire/nbd_wire.h"
#include "wire/tls_tunnel.h"

/* Credentials live as long as the process: sessions of any leg use them. */
struct cred {
	char key[1024];
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk;
};
#define MAX_CREDS	16
static struct cred creds[MAX_CREDS];
static pthread_mutex_t creds_lock = PTHREAD_MUTEX_INITIALIZER;

int nbd_link_xfer(const struct nbd_link *l, void *buf, size_t len, bool send)
{
	unsigned char *p = buf;

	if (!l->ses)
		return nbd_xfer(l->fd, buf, len, send);
	while (len) {
		ssize_t r = send ? gnutls_record_send(l->ses, p, len) :
				   gnutls_record_recv(l->ses, p, len);

		if (r == GNUTLS_E_INTERRUPTED)
			continue;
		if (r == 0)
			return -ECONNRESET;
		if (r < 0)	/* GNUTLS_E_AGAIN: the socket's timeout */
			return r == GNUTLS_E_AGAIN ? -ETIMEDOUT : -EPROTO;
		p += r;
		len -= r;
	}
	return 0;
}

/* USER's key in a psktool file, as hex. */
static int psk_key(const char *file, const char *user, char *hex, size_t len)
{
	FILE *f = fopen(file, "re");
	char line[1024];
	size_t n = strlen(user);
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		if (!strncmp(line, user, n) && line[n] == ':' && strlen(line + n + 1) < len) {
			snprintf(hex, len, "%s", line + n + 1);
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

static struct cred *cred_get(const struct nbd_uri *u, char *why, size_t wlen)
{
	char key[1024], ca[PATH_MAX], cert[PATH_MAX], pkey[PATH_MAX], hex[512];
	const char *user = u->user[0] ? u->user : "bsteer";
	struct cred *c = NULL;
	int i, rc = 0;

	snprintf(key, sizeof(key), "%s|%s|%s", u->tls_certs, u->tls_psk, user);
	pthread_mutex_lock(&creds_lock);
	for (i = 0; i < MAX_CREDS && creds[i].key[0]; i++)
		if (!strcmp(creds[i].key, key)) {
			c = &creds[i];
			goto out;
		}
	if (i == MAX_CREDS) {
		snprintf(why, wlen, "TLS: more than %d sets of credentials", MAX_CREDS);
		goto out;
	}
	if (u->tls_psk[0]) {
		gnutls_datum_t d;

		rc = psk_key(u->tls_psk, user, hex, sizeof(hex));
		if (rc) {
			snprintf(why, wlen, "tls-psk-file %s: %s", u->tls_psk,
				 rc == -ENOENT ? "no key for that user" : strerror(-rc));
			goto out;
		}
		d.data = (unsigned char *)hex;
		d.size = strlen(hex);
		rc = gnutls_psk_allocate_client_credentials(&creds[i].psk) ?:
		     gnutls_psk_set_client_credentials(creds[i].psk, user, &d, GNUTLS_PSK_KEY_HEX);
	} else {
		if (tls_cred_file(ca, sizeof(ca), u->tls_certs, "ca-cert.pem")) {
			snprintf(why, wlen, "tls-certificates %s: no ca-cert.pem to check the server with",
				 u->tls_certs);
			goto out;
		}
		rc = gnutls_certificate_allocate_credentials(&creds[i].x509);
		if (!rc) {
			rc = gnutls_certificate_set_x509_trust_file(creds[i].x509, ca,
								    GNUTLS_X509_FMT_PEM);
			rc = rc < 0 ? rc : 0;
		}
		if (!rc && !tls_cred_file(cert, sizeof(cert), u->tls_certs, "client-cert.pem") &&
		    !tls_cred_file(pkey, sizeof(pkey), u->tls_certs, "client-key.pem"))
			rc = gnutls_certificate_set_x509_key_file(creds[i].x509, cert, pkey,
								  GNUTLS_X509_FMT_PEM);
	}
	if (rc < 0) {
		snprintf(why, wlen, "TLS credentials: %s", gnutls_strerror(rc));
		/* The slot stays free, and holds nothing of this attempt. */
		if (creds[i].psk)
			gnutls_psk_free_client_credentials(creds[i].psk);
		if (creds[i].x509)
			gnutls_certificate_free_credentials(creds[i].x509);
		creds[i].psk = NULL;
		creds[i].x509 = NULL;
		goto out;
	}
	snprintf(creds[i].key, sizeof(creds[i].key), "%s", key);
	c = &creds[i];
out:
	pthread_mutex_unlock(&creds_lock);
	return c;
}

int nbd_tls_client(struct nbd_link *l, const struct nbd_uri *u, char *why, size_t wlen)
{
	const char *host = u->tls_hostname[0] ? u->tls_hostname :
			   u->local ? NULL : u->host;
	struct cred *c = cred_get(u, why, wlen);
	int rc;

	if (!c)
		return -EINVAL;
	rc = gnutls_init(&l->ses, GNUTLS_CLIENT);
	if (!rc)
		rc = gnutls_priority_set_direct(l->ses, c->psk ?
						"NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK" : "NORMAL", NULL);
	if (!rc)
		rc = c->psk ? gnutls_credentials_set(l->ses, GNUTLS_CRD_PSK, c->psk) :
			      gnutls_credentials_set(l->ses, GNUTLS_CRD_CERTIFICATE, c->x509);
	if (!rc && host && !c->psk)
		rc = gnutls_server_name_set(l->ses, GNUTLS_NAME_DNS, host, strlen(host));
	if (rc) {
		snprintf(why, wlen, "TLS session: %s", gnutls_strerror(rc));
		return -EINVAL;
	}
	/* The server's certificate must chain to ca-cert.pem and name @host. */
	if (!c->psk)
		gnutls_session_set_verify_cert(l->ses, host, 0);
	gnutls_transport_set_int(l->ses, l->fd);
	do {
		rc = gnutls_handshake(l->ses);
	} while (rc < 0 && !gnutls_error_is_fatal(rc) && rc != GNUTLS_E_AGAIN);
	if (rc < 0) {
		snprintf(why, wlen, "TLS handshake: %s", rc == GNUTLS_E_AGAIN ?
			 "timed out" : gnutls_strerror(rc));
		return -EPROTO;
	}
	return 0;
}
