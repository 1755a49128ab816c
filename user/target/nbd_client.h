/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Upstream targets: legs that live on another NBD server. The engine hands
 * a policy's op on such a target to this module instead of writing an SQE.
 * It becomes an NBD request sent from (or a reply read into) the op's own
 * slot, on the worker's ring, and when the reply is in, one NOP with the
 * op's user_data and an injected result completes it, so that the
 * completion hook sees it like any other op. Engine-internal.
 */
#ifndef BSTEER_UPSTREAM_H
#define BSTEER_UPSTREAM_H

#include "libbsteer.h"

/* Is @target an upstream connection of this engine? */
bool upstream_is(const struct bsteer_engine *e, __u32 target);

/*
 * Queue op @opi (index into e->op) as an NBD request. @ud completes it.
 * Returns -EINVAL for an opcode NBD cannot carry.
 */
int upstream_op(struct bsteer_engine *e, __u32 target, __u32 opi, __u64 ud,
		__u8 opcode, void *buf, __u32 slot, __u32 len, __u64 offset);
/* A completion of one of the module's own SQEs (BSTEER_UP_MAGIC). */
void upstream_cqe(struct bsteer_engine *e, const struct io_uring_cqe *cqe);
/* Before each submit: write the queued SQEs; fail connections that hang. */
void upstream_kick(struct bsteer_engine *e);
/* NBD requests still waiting for their reply. */
__u32 upstream_waiting(const struct bsteer_engine *e);
void upstream_fini(struct bsteer_engine *e);

/* From engine.c: an SQE, submitting what is queued if the SQ is full. */
struct io_uring_sqe *bsteer_engine_sqe(struct bsteer_engine *e);

#endif /* BSTEER_UPSTREAM_H */
