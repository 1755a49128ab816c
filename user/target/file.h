/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The file target, shared by its two files: file.c opens a file or a
 * block device and picks how each worker serves it; file_inline.c serves
 * the files io_uring would hand to a worker thread on the ring's own
 * thread; file_direct.c serves cache=none legs, open with O_DIRECT.
 */
#ifndef BSTEER_TARGET_FILE_H
#define BSTEER_TARGET_FILE_H

#include "libbsteer.h"

extern const struct bsteer_target_ops file_inline_target;
extern const struct bsteer_target_ops file_direct_target;

/* cache=none (file_direct.c): what of @fd's goes direct (whole pages at least), or -errno. */
int file_direct_align(int fd, __u32 *off_align, __u32 *mem_align);
/* Serve target @t, its file open with O_DIRECT, through io_uring. */
int file_direct_attach(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg);

/*
 * Should target @t's file @fd be served inline under @o? Attaches the
 * inline face to it and returns 1 if so, 0 if io_uring should, or -errno.
 */
int file_inline_attach(struct bsteer_engine *e, __u32 t, int fd,
		       const struct bsteer_engine_opts *o);

#endif /* BSTEER_TARGET_FILE_H */
