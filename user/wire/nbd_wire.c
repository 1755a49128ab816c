// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The NBD wire: headers and blocking transfers (see nbd_wire.h). */
#include <errno.h>
#include <sys/socket.h>
#include "wire/nbd_wire.h"

void nbd_opt_header(unsigned char h[NBD_OPT_HDR_LEN], __u32 opt, __u32 len)
{
	nbd_put64(h, NBD_IHAVEOPT);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, len);
}

void nbd_opt_reply_header(unsigned char h[NBD_OPT_REPLY_HDR_LEN], __u32 opt,
			  __u32 type, __u32 len)
{
	nbd_put64(h, NBD_OPT_REPLY_MAGIC);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, type);
	nbd_put32(h + 16, len);
}

void nbd_request_header(unsigned char *h, __u16 flags, __u16 cmd, __u64 cookie,
			__u64 offset, __u32 len)
{
	nbd_put32(h, NBD_REQUEST_MAGIC);
	nbd_put16(h + 4, flags);
	nbd_put16(h + 6, cmd);
	nbd_put64(h + 8, cookie);
	nbd_put64(h + 16, offset);
	nbd_put32(h + 24, len);
}

int nbd_xfer(int fd, void *buf, size_t len, bool out)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = out ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL) :
				  recv(fd, (char *)buf + done, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (!n)
			return -ECONNRESET;
		done += n;
	}
	return 0;
}
