// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The core's own target: a file registered as fixed file t, read and
 * written by io_uring straight from and into the slots (READ_FIXED,
 * WRITE_FIXED), flushed (FSYNC), punched or zeroed (FALLOCATE), and
 * spliced into a slot's pipe for a reply (SPLICE). A target no module
 * took is served so; modules hand it the ops they do not do themselves.
 */
#include <errno.h>
#include <fcntl.h>
#include "core/engine.h"

static int uring_submit(struct bsteer_engine *e, __u32 t,
			const struct bsteer_target_io *io)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(e);

	if (!sqe)
		return -EBUSY;
	switch (io->opcode) {
	case BSTEER_OP_READ:
		io_uring_prep_read_fixed(sqe, t, io->buf, io->len, io->offset,
					 io->slot);
		break;
	case BSTEER_OP_WRITE:
		io_uring_prep_write_fixed(sqe, t, io->buf, io->len, io->offset,
					  io->slot);
		break;
	case BSTEER_OP_FSYNC:
	case BSTEER_OP_FDATASYNC:
		io_uring_prep_fsync(sqe, t, io->opcode == BSTEER_OP_FDATASYNC ?
					    IORING_FSYNC_DATASYNC : 0);
		break;
	case BSTEER_OP_PUNCH:
	case BSTEER_OP_ZERO:
		io_uring_prep_fallocate(sqe, t, bsteer_falloc_mode(io->opcode),
					io->offset, io->len);
		break;
	default:
		/* Nothing else reaches a target; say so if it did. */
		bsteer_prep_nop_result(sqe, -EINVAL);
		break;
	}
	if (io->opcode != BSTEER_OP_NOP && io->opcode < BSTEER_OP_WAIT)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, io->ud);
	return 0;
}

/* The page cache's pages lent to the pipe; io_uring hands it to io-wq. */
static int uring_splice(struct bsteer_engine *e, __u32 t,
			const struct bsteer_target_io *io, int pipe)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(e);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_splice(sqe, t, io->offset, pipe, -1, io->len,
			     SPLICE_F_FD_IN_FIXED);
	io_uring_sqe_set_data64(sqe, io->ud);
	return 0;
}

const struct bsteer_target_ops bsteer_uring_target = {
	.name = "uring",
	.submit = uring_submit,
	.splice = uring_splice,
};

int bsteer_target_complete(struct bsteer_engine *e, __u64 ud, int res)
{
	struct io_uring_sqe *sqe = bsteer_engine_sqe(e);

	if (!sqe)
		return -EBUSY;
	bsteer_prep_nop_result(sqe, res);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}
