/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The NBD wire, shared by the NBD frontend (a server) and the NBD target
 * (a client): big-endian fields, the option and request headers, and the
 * blocking transfers the handshakes use.
 */
#ifndef BSTEER_WIRE_NBD_H
#define BSTEER_WIRE_NBD_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <linux/types.h>
#include "nbd_proto.h"

static inline void nbd_put16(unsigned char *p, __u16 v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static inline void nbd_put32(unsigned char *p, __u32 v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static inline void nbd_put64(unsigned char *p, __u64 v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static inline __u16 nbd_get16(const unsigned char *p)
{
	__u16 v;

	memcpy(&v, p, 2);
	return be16toh(v);
}

static inline __u32 nbd_get32(const unsigned char *p)
{
	__u32 v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static inline __u64 nbd_get64(const unsigned char *p)
{
	__u64 v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

#define NBD_OPT_HDR_LEN		16	/* client: magic, option, length */
#define NBD_OPT_REPLY_HDR_LEN	20	/* server: magic, option, type, length */

/* A client's option header. */
void nbd_opt_header(unsigned char h[NBD_OPT_HDR_LEN], __u32 opt, __u32 len);
/* A server's option reply header. */
void nbd_opt_reply_header(unsigned char h[NBD_OPT_REPLY_HDR_LEN], __u32 opt,
			  __u32 type, __u32 len);
/* A request header (NBD_REQUEST_LEN bytes); nbd_get64() reads the cookie back. */
void nbd_request_header(unsigned char *h, __u16 flags, __u16 cmd, __u64 cookie,
			__u64 offset, __u32 len);

/*
 * All of @len bytes to or from a blocking socket (restarting on EINTR).
 * 0, -ECONNRESET at end of stream, -ETIMEDOUT when the socket's timeout
 * ran out, or -errno.
 */
int nbd_xfer(int fd, void *buf, size_t len, bool out);

#endif /* BSTEER_WIRE_NBD_H */
