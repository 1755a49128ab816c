// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The file backend: a regular file or a block device, through the page cache. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>
#include "serve.h"

static bool file_match(const char *spec)
{
	return !strstr(spec, "://");
}

static int file_open(const char *spec, bool rdonly, __u64 *size)
{
	struct stat st;
	int fd = open(spec, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st))
		goto fail;
	if (S_ISREG(st.st_mode)) {
		*size = st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size))
			goto fail;
	} else {
		close(fd);
		return -EINVAL;
	}
	return fd;
fail:
	{
		int err = -errno;

		close(fd);
		return err;
	}
}

const struct bsteer_backend_ops file_backend = {
	.name = "file",
	.match = file_match,
	.open = file_open,
};
