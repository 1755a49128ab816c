/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The NBD target, shared by its files: nbd.c connects and shakes hands
 * (blocking, at start); nbd_client.c runs the requests and replies on the
 * worker's ring; nbd_rmw.c serves the ops that are not aligned to the
 * upstream's minimum block size, on a thread; nbd_tls.c is nbds's TLS.
 */
#ifndef BSTEER_TARGET_NBD_H
#define BSTEER_TARGET_NBD_H

#include <gnutls/gnutls.h>
#include "libbsteer.h"

struct tls_tunnel;

/* An NBD URI: nbd[s]://[USER@]HOST[:PORT][/EXPORT][?TLS...] or
 * nbd[s]+unix://[USER@]/EXPORT?socket=PATH[&TLS...]. */
struct nbd_uri {
	char host[256];
	char port[16];
	char export[256];
	char socket[108];
	bool local;		/* nbd+unix */
	bool tls;		/* nbds: STARTTLS, then everything over TLS */
	char user[64];		/* the PSK identity */
	char tls_certs[256];	/* ?tls-certificates=DIR (ca-cert.pem ...) */
	char tls_psk[256];	/* ?tls-psk-file=FILE (psktool's format) */
	char tls_hostname[256];	/* ?tls-hostname= what the certificate names */
};

/* The handshake's stream: the socket, or TLS on it once STARTTLS is done. */
struct nbd_link {
	int fd;
	gnutls_session_t ses;
};

/* What the handshake learnt: a leg's priv. */
struct nbd_leg {
	__u64 size;
	__u16 flags;		/* NBD transmission flags */
	__u32 min_block;	/* 0 if the server did not say */
	__u32 max_block;
	struct tls_tunnel *tun;	/* nbds: the leg's tunnel, until a ring takes it */
};

extern const struct bsteer_target_ops nbd_target;

/* Connect and shake hands: a connected socket, or -errno with a reason. */
int nbd_connect(const char *spec, bool rdonly, struct nbd_leg *info);
/* The same, kept blocking (@timeout_s on each transfer, 0: none) in @l. */
int nbd_dial(const char *spec, bool rdonly, struct nbd_leg *info, struct nbd_link *l,
	     int timeout_s);
void nbd_link_close(struct nbd_link *l);

/* nbd_tls.c: TLS for nbds legs, the handshake's side (blocking). */
int nbd_tls_client(struct nbd_link *l, const struct nbd_uri *u, char *why, size_t wlen);
int nbd_link_xfer(const struct nbd_link *l, void *buf, size_t len, bool send);

/* nbd_client.c: the ring's half, the ops table's hooks. */
int nbd_client_attach(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg);
int nbd_client_submit(struct bsteer_engine *e, __u32 t,
		      const struct bsteer_target_io *io);
void nbd_client_cqe(struct bsteer_engine *e, __u32 t, const struct io_uring_cqe *cqe);
void nbd_client_kick(struct bsteer_engine *e, __u32 t);
__u32 nbd_client_waiting(struct bsteer_engine *e, __u32 t);
bool nbd_client_alive(struct bsteer_engine *e, __u32 t);
void nbd_client_fail(struct bsteer_engine *e, __u32 t);
void nbd_client_detach(struct bsteer_engine *e, __u32 t);
void nbd_client_cancel(struct bsteer_engine *e, __u32 t);

/* nbd_rmw.c: ops not aligned to the upstream's minimum block size. */
struct nbd_rmw;
bool nbd_rmw_unaligned(__u32 block, const struct bsteer_target_io *io);
struct nbd_rmw *nbd_rmw_new(const char *spec, __u32 t, __u32 cap, __u32 timeout_ms,
			    int *err);
int nbd_rmw_submit(struct nbd_rmw *r, const struct bsteer_target_io *io, __u32 block);
void nbd_rmw_arm(struct bsteer_engine *e, struct nbd_rmw *r, __u64 ud);
void nbd_rmw_cqe(struct bsteer_engine *e, struct nbd_rmw *r);
__u32 nbd_rmw_waiting(struct nbd_rmw *r);
void nbd_rmw_drop(struct nbd_rmw *r);
void nbd_rmw_free(struct nbd_rmw *r);

#endif /* BSTEER_TARGET_NBD_H */
