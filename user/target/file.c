// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The file target: a regular file or a block device, through the page
 * cache (or past it: cache=none, file_direct.c). Each worker serves it with io_uring's fixed-buffer ops (the
 * core's bsteer_uring_target), or inline on the ring's own thread where
 * io_uring would need a worker thread for it (file_inline.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>
#include "target/file.h"

static bool file_match(const char *spec)
{
	return !strstr(spec, "://");
}

static int file_open(struct bsteer_leg *leg)
{
	int flags = (leg->rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	__u32 off_align, mem_align;
	struct stat st;
	int fd, err;

	fd = open(leg->spec, flags | (leg->direct ? O_DIRECT : 0));
	if (fd < 0 && leg->direct && errno == EINVAL) {
		bsteer_set_err("cache=none: the file system refuses O_DIRECT");
		return -EINVAL;
	}
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st))
		goto fail;
	if (leg->direct) {
		err = file_direct_align(fd, &off_align, &mem_align);
		if (err) {
			close(fd);
			return err;
		}
		leg->pref_block = off_align;	/* told to NBD clients as preferred */
	}
	if (S_ISREG(st.st_mode)) {
		leg->size = st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &leg->size))
			goto fail;
	} else {
		close(fd);
		return -EINVAL;
	}
	leg->fd = fd;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

static void file_close(struct bsteer_leg *leg)
{
	if (leg->fd >= 0)
		close(leg->fd);
	leg->fd = -1;
}

/*
 * Inline where io_uring would need a worker thread; else io_uring's own.
 * cache=none is never inline: io_uring does O_DIRECT without a worker.
 */
static int file_attach(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg)
{
	int err;

	if (leg->direct)
		return file_direct_attach(e, t, leg);
	err = file_inline_attach(e, t, leg->fd, bsteer_engine_opts(e));

	if (!err)
		bsteer_target_use(e, t, &bsteer_uring_target);
	return err < 0 ? err : 0;
}

/*
 * A leg that failed gets a fresh file in its place (a disk replaced); a
 * new, empty file grows to the export, sparsely. The new file's own kind
 * decides how it is served.
 */
static int file_reopen(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg,
		       __u64 want, int *own_fd)
{
	struct bsteer_leg fresh = { .spec = leg->spec, .fd = -1, .direct = leg->direct };
	struct stat st;
	int err;

	err = file_open(&fresh);
	if (err) {
		bsteer_set_err("cannot open the leg again");
		return err;
	}
	if (fresh.size < want && (fstat(fresh.fd, &st) || !S_ISREG(st.st_mode) ||
				  ftruncate(fresh.fd, want))) {
		close(fresh.fd);
		bsteer_set_err("the leg is smaller than the export");
		return -ENOSPC;
	}
	err = bsteer_engine_target_file(e, t, fresh.fd);
	if (!err) {
		if (bsteer_target_ops_of(e, t)->detach)
			bsteer_target_ops_of(e, t)->detach(e, t);
		err = bsteer_engine_attach(e, t, leg->ops, &fresh);
	}
	if (err) {
		close(fresh.fd);
		bsteer_set_err("cannot put the new file in the ring");
		return err;
	}
	*own_fd = fresh.fd;
	return 0;
}

extern const struct bsteer_target_ops file_target;

const struct bsteer_target_ops file_target = {
	.name = "file",
	.match = file_match,
	.open = file_open,
	.close = file_close,
	.attach = file_attach,
	.reopen = file_reopen,
};
