/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * io_uring definitions newer than Debian 12's liburing 2.3, all in one
 * place. Values are the kernel's UAPI (include/uapi/linux/io_uring.h).
 */
#ifndef BSTEER_COMPAT_H
#define BSTEER_COMPAT_H

#include <liburing.h>

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER	(1U << 12)	/* 6.0 */
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN	(1U << 13)	/* 6.1 */
#endif
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY		(1U << 16)	/* 6.6 */
#endif

/* IORING_OP_NOP flags (6.10): post the result given in sqe->len. */
#ifndef IORING_NOP_INJECT_RESULT
#define IORING_NOP_INJECT_RESULT	(1U << 0)
#endif

static inline void bsteer_prep_nop_result(struct io_uring_sqe *sqe, int res)
{
	io_uring_prep_nop(sqe);
	sqe->rw_flags = IORING_NOP_INJECT_RESULT;	/* sqe->nop_flags */
	sqe->len = (__u32)res;
}

/* SEND_ZC (6.2): ask whether the kernel had to copy after all. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE	(1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED	(1U << 31)
#endif

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC			0xcafe4a11
#endif

#endif /* BSTEER_COMPAT_H */
