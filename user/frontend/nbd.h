/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The NBD frontend, as the rest of the tree sees it: its options (set by
 * the command line), its ops table, and the pure pieces the fuzzer drives.
 */
#ifndef BSTEER_FRONTEND_NBD_H
#define BSTEER_FRONTEND_NBD_H

#include "libbsteer.h"

#define NBD_MAX_LISTEN		8
#define NBD_DEF_MAX_REQUEST	(64u << 20)

struct nbd_conf {
	const char *listen[NBD_MAX_LISTEN];	/* tcp:HOST:PORT or unix:PATH */
	int nlisten;
	bool allow_remote;		/* listen beyond loopback */
	__u32 reply_timeout_ms;		/* a client's unread reply: drop it after */
	__u32 handshake_timeout_ms;	/* a handshake not done: drop it after */
	__u32 max_request;		/* the largest READ or WRITE served */
	int tls;			/* NBD_TLS_*: STARTTLS offered, or required */
	const char *tls_certs;		/* a directory: server-cert.pem ... */
	const char *tls_psk;		/* ... or a psktool keys file */
	bool tls_verify_peer;		/* clients must show a certificate */
};

enum { NBD_TLS_OFF, NBD_TLS_ON, NBD_TLS_REQUIRE };

extern const struct bsteer_frontend_ops nbd_frontend;

/*
 * What the export decides about a request the parser accepted: the NBD
 * error to answer with (@nerr, the parser's, if it had one), 0 to serve
 * it. Nothing is leased before this says 0. @max: the largest READ or
 * WRITE (a larger WRITE's payload is still drained); @align: the
 * alignment the client is held to (1: none).
 */
int nbd_check_request(const struct bsteer_export *ex, __u32 max, __u32 align,
		      __u16 type, __u64 off, __u32 len, __u32 nerr);
/*
 * The handshake alone, on a connected socket, for server @s whose rings
 * have @slots slots each: the export chosen, or NULL (for the fuzzer).
 */
struct bsteer_export *nbd_negotiate(struct bsteer_server *s, __u32 slots, int fd,
				    bool *structured);

#endif /* BSTEER_FRONTEND_NBD_H */
