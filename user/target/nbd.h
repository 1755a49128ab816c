/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The NBD target, shared by its two files: nbd.c connects and shakes
 * hands (blocking, at start); nbd_client.c runs the requests and replies
 * on the worker's ring.
 */
#ifndef BSTEER_TARGET_NBD_H
#define BSTEER_TARGET_NBD_H

#include "libbsteer.h"

/* What the handshake learnt: a leg's priv. */
struct nbd_leg {
	__u64 size;
	__u16 flags;		/* NBD transmission flags */
	__u32 min_block;	/* 0 if the server did not say */
	__u32 max_block;
};

extern const struct bsteer_target_ops nbd_target;

/* Connect and shake hands: a connected socket, or -errno with a reason. */
int nbd_connect(const char *spec, bool rdonly, struct nbd_leg *info);

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

#endif /* BSTEER_TARGET_NBD_H */
