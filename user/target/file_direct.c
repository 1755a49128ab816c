// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * cache=none, the file target's third face: the leg's file is open with
 * O_DIRECT, so reads and writes go between the slots and the device and
 * leave the host's page cache alone (as qemu-nbd --cache=none). io_uring
 * does O_DIRECT on ext4, XFS and block devices without a worker thread,
 * so every op goes through its real async path (bsteer_uring_target);
 * none is done inline and none is spliced (a splice reads the page
 * cache, which is what the export was asked to stay out of).
 *
 * O_DIRECT takes only offsets, lengths and buffers aligned to what the
 * file system says (statx STATX_DIOALIGN; else the device's logical
 * block size, else 512). A client that never asked for block sizes may
 * send a 1-byte-aligned request, and a policy may read into the middle
 * of a slot. Such an op goes to a second fd of the same file, opened
 * without O_DIRECT: the kernel keeps the two coherent (a direct read
 * writes the dirty cached pages of its range back first, a direct write
 * drops them), and fsync on either fd flushes the inode, so FLUSH still
 * covers both. The other choice, read-modify-write through a bounce
 * buffer, needs a lock per block against concurrent writes to the same
 * block, which the page cache's own locking gives for free here.
 * Requests in flight together on the same bytes have no order in NBD, so
 * mixing the two paths changes nothing a client may rely on.
 *
 * But the kernel keeps them coherent by the page, not by the byte: a
 * buffered write that dirties a page while a direct write covering part
 * of it is in flight (two parts of one request, 512-aligned neighbours)
 * makes the direct write's last invalidation fail ("Page cache
 * invalidation failure on direct I/O" in dmesg), and the file's next
 * fsync then fails with EIO, which fails the leg. So an op goes direct
 * only if it is aligned to whole pages as well (file_direct_align() says
 * the larger of the two), and never shares a page with a buffered one.
 * What is left: a client's own writes to the same page, in flight
 * together through both paths, can still trip it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include "target/file.h"

struct dio {
	int fd;			/* the same file, buffered: what O_DIRECT cannot take */
	__u32 off_align;	/* offset and length */
	__u32 mem_align;	/* buffer address */
	char about[128];
};

int file_direct_align(int fd, __u32 *off_align, __u32 *mem_align)
{
	struct statfs sf;
	struct statx sx;
	__u32 page = sysconf(_SC_PAGESIZE);
	struct stat st;
	int bs;

	if (!fstatfs(fd, &sf) && sf.f_type == TMPFS_MAGIC) {
		/* Its files live in the page cache: nothing to bypass. */
		bsteer_set_err("cache=none: tmpfs keeps its files in the page cache, which O_DIRECT cannot bypass");
		return -EINVAL;
	}
	if (!statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) &&
	    (sx.stx_mask & STATX_DIOALIGN)) {
		if (!sx.stx_dio_offset_align) {
			bsteer_set_err("cache=none: the file system does no direct I/O on it");
			return -EINVAL;
		}
		*off_align = sx.stx_dio_offset_align;
		*mem_align = sx.stx_dio_mem_align ?: 1;
	} else {
		/* Older kernels (before 6.1) or file systems that do not say. */
		*off_align = 512;
		if (!fstat(fd, &st) && S_ISBLK(st.st_mode) && !ioctl(fd, BLKSSZGET, &bs) &&
		    bs > 0)
			*off_align = bs;
		*mem_align = *off_align;
	}
	/* Whole pages, so that no page is both direct and buffered (above). */
	if (*off_align < page)
		*off_align = page;
	return 0;
}

static bool aligned(const struct dio *f, const struct bsteer_target_io *io)
{
	return !(io->offset % f->off_align) && !(io->len % f->off_align) &&
	       !((uintptr_t)io->buf % f->mem_align);
}

static int dio_submit(struct bsteer_engine *e, __u32 t,
		      const struct bsteer_target_io *io)
{
	struct dio *f = bsteer_target_priv(e, t);
	struct io_uring_sqe *sqe;

	if ((io->opcode != BSTEER_OP_READ && io->opcode != BSTEER_OP_WRITE) ||
	    aligned(f, io))
		return bsteer_uring_target.submit(e, t, io);
	sqe = bsteer_engine_sqe(e);
	if (!sqe)
		return -EBUSY;
	/* The slot is still a registered buffer; only the file differs. */
	if (io->opcode == BSTEER_OP_READ)
		io_uring_prep_read_fixed(sqe, f->fd, io->buf, io->len, io->offset,
					 io->slot);
	else
		io_uring_prep_write_fixed(sqe, f->fd, io->buf, io->len, io->offset,
					  io->slot);
	io_uring_sqe_set_data64(sqe, io->ud);
	return 0;
}

static const char *dio_about(struct bsteer_engine *e, __u32 t)
{
	return ((struct dio *)bsteer_target_priv(e, t))->about;
}

/* The leg goes: what is in flight on the buffered fd goes with it. */
static void dio_cancel(struct bsteer_engine *e, __u32 t)
{
	bsteer_engine_cancel_fd(e, ((struct dio *)bsteer_target_priv(e, t))->fd, false);
}

static void dio_detach(struct bsteer_engine *e, __u32 t)
{
	struct dio *f = bsteer_target_priv(e, t);

	if (f && f->fd >= 0)
		close(f->fd);
	free(f);
	bsteer_target_set_priv(e, t, NULL);
}

const struct bsteer_target_ops file_direct_target = {
	.name = "file-direct",
	.submit = dio_submit,
	.about = dio_about,
	.cancel = dio_cancel,
	.detach = dio_detach,
};

/*
 * Serve target @t, whose file @leg->fd is open with O_DIRECT, so. The
 * buffered fd is this worker's own, opened through /proc (the same
 * file, whatever its path has become since), else by the path.
 */
int file_direct_attach(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg)
{
	int flags = (leg->rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	char path[64];
	struct dio *f;
	int err;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	err = file_direct_align(leg->fd, &f->off_align, &f->mem_align);
	if (err) {
		free(f);
		return err;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", leg->fd);
	f->fd = open(path, flags);
	if (f->fd < 0)
		f->fd = open(leg->spec, flags);
	if (f->fd < 0) {
		err = -errno;
		free(f);
		bsteer_set_err("cache=none: cannot open the file again without O_DIRECT");
		return err;
	}
	/*
	 * No readahead on it: pages read ahead land in the page cache
	 * after a direct write's first invalidation, and the kernel fails
	 * the second ("Page cache invalidation failure on direct I/O") and
	 * records EIO for the file's next fsync.
	 */
	posix_fadvise(f->fd, 0, 0, POSIX_FADV_RANDOM);
	snprintf(f->about, sizeof(f->about),
		 "O_DIRECT (cache=none), aligned to %u bytes (buffers to %u); ops off it go through the page cache",
		 f->off_align, f->mem_align);
	bsteer_target_use(e, t, &file_direct_target);
	bsteer_target_set_priv(e, t, f);
	return 0;
}
