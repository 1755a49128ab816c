/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel-compatibility definitions for the BPF side, all in one place.
 *
 * Prototypes as found in the BTF of the 6.18 kernel this was built on
 * (btf_trace_io_uring_* typedefs in vmlinux.h):
 *   io_uring_create(fd, ctx, sq_entries, cq_entries, flags)
 *   io_uring_submit_req(req)
 *   io_uring_complete(ctx, req, cqe)
 * Older kernels passed user_data/res/cflags to io_uring_complete as scalars;
 * those fail to attach and the loader reports it.
 * vmlinux.h marks every struct preserve_access_index, so the io_kiocb
 * fields read here (opcode, buf_index, ctx, cqe.user_data) are CO-RE
 * relocated and survive layout changes.
 */
#ifndef BSTEER_COMPAT_BPF_H
#define BSTEER_COMPAT_BPF_H

#endif /* BSTEER_COMPAT_BPF_H */
