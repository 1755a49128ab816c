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

#include <bpf/bpf_core_read.h>

/*
 * How a registered buffer says it was lent by the kernel (ublk's bvec
 * buffers, 6.15): a bool "is_kbuf" in struct io_mapped_ubuf (6.18 has it);
 * later kernels replace it with a "flags" byte holding IO_REGBUF_F_KBUF (1).
 */
struct io_mapped_ubuf___flags {
	__u8 flags;
} __attribute__((preserve_access_index));

#define BSTEER_IO_REGBUF_F_KBUF	1

static __always_inline bool imu_is_kbuf(struct io_mapped_ubuf *imu)
{
	if (bpf_core_field_exists(imu->is_kbuf))
		return BPF_CORE_READ(imu, is_kbuf);
	if (bpf_core_field_exists(struct io_mapped_ubuf___flags, flags)) {
		struct io_mapped_ubuf___flags *f = (void *)imu;

		return BPF_CORE_READ(f, flags) & BSTEER_IO_REGBUF_F_KBUF;
	}
	return false;
}

/*
 * A pointer the tracepoint types as void * (io_uring_complete's request),
 * made readable by direct loads instead of a probe-read helper call per
 * field. kfunc since 6.2.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define BSTEER_CAST(type, p) \
	((type *)bpf_rdonly_cast((p), bpf_core_type_id_kernel(type)))

/* Flags that vmlinux.h cannot carry (they are #defines in the kernel). */
#define BSTEER_PF_EXITING		0x00000004	/* include/linux/sched.h */
#define BSTEER_SIGNAL_GROUP_EXIT	0x00000004	/* linux/sched/signal.h */
#ifndef IORING_URING_CMD_FIXED
#define IORING_URING_CMD_FIXED		(1U << 0)	/* uapi io_uring.h, 5.19 */
#endif
#ifndef IORING_CQE_F_MORE
#define IORING_CQE_F_MORE		(1U << 1)
#endif

/* The cap on registered buffers (io_uring/rsrc.c IORING_MAX_REG_BUFFERS). */
#define BSTEER_IO_MAX_REG_BUFFERS	(1U << 14)

#endif /* BSTEER_COMPAT_BPF_H */
