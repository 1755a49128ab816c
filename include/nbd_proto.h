/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * NBD protocol constants, from the NBD protocol specification, shared by the
 * BPF header parser (bpf/nbd.bpf.c), the server (user/fe_nbd.c) and the
 * client of upstream targets (user/be_nbd.c, user/upstream.c).
 */
#ifndef BSTEER_NBD_PROTO_H
#define BSTEER_NBD_PROTO_H

/* Handshake (fixed newstyle). */
#define NBDMAGIC		0x4e42444d41474943ull
#define IHAVEOPT		0x49484156454f5054ull
#define REPLY_MAGIC_OPT		0x0003e889045565a9ull
#define SIMPLE_REPLY_MAGIC	0x67446698u
#define STRUCTURED_MAGIC	0x668e33efu

#define FLAG_FIXED_NEWSTYLE	(1 << 0)
#define FLAG_NO_ZEROES		(1 << 1)

#define OPT_EXPORT_NAME		1
#define OPT_ABORT		2
#define OPT_LIST		3
#define OPT_INFO		6
#define OPT_GO			7
#define OPT_STRUCTURED_REPLY	8
#define OPT_LIST_META_CONTEXT	9
#define OPT_SET_META_CONTEXT	10

#define REP_ACK			1
#define REP_SERVER		2
#define REP_INFO		3
#define REP_META_CONTEXT	4
#define REP_ERR_UNSUP		(0x80000000u | 1)
#define REP_ERR_INVALID		(0x80000000u | 3)
#define REP_ERR_UNKNOWN		(0x80000000u | 6)
#define REP_IS_ERR(t)		((t) & 0x80000000u)

#define INFO_EXPORT		0
#define INFO_NAME		1
#define INFO_DESCRIPTION	2
#define INFO_BLOCK_SIZE		3

#define TF_HAS_FLAGS		(1 << 0)
#define TF_READ_ONLY		(1 << 1)
#define TF_SEND_FLUSH		(1 << 2)
#define TF_SEND_FUA		(1 << 3)
#define TF_SEND_TRIM		(1 << 5)
#define TF_SEND_WRITE_ZEROES	(1 << 6)
#define TF_CAN_MULTI_CONN	(1 << 8)
#define TF_SEND_CACHE		(1 << 10)
#define TF_SEND_FAST_ZERO	(1 << 11)

/* Errors on the wire: the same numbers as Linux's errno values. */
#define NBD_EPERM		1
#define NBD_EIO			5
#define NBD_ENOMEM		12
#define NBD_EINVAL		22
#define NBD_ENOSPC		28
#define NBD_EOVERFLOW		75
#define NBD_ENOTSUP		95
#define NBD_ESHUTDOWN		108

/* Transmission. */
#define NBD_REQUEST_MAGIC	0x25609513u
#define NBD_REQUEST_LEN		28
#define NBD_REPLY_LEN		16	/* simple reply: magic, error, cookie */

#define NBD_CMD_READ		0
#define NBD_CMD_WRITE		1
#define NBD_CMD_DISC		2
#define NBD_CMD_FLUSH		3
#define NBD_CMD_TRIM		4
#define NBD_CMD_CACHE		5
#define NBD_CMD_WRITE_ZEROES	6
#define NBD_CMD_BLOCK_STATUS	7

#define NBD_CMDF_FUA		(1 << 0)
#define NBD_CMDF_NO_HOLE	(1 << 1)
#define NBD_CMDF_DF		(1 << 2)
#define NBD_CMDF_REQ_ONE	(1 << 3)
#define NBD_CMDF_FAST_ZERO	(1 << 4)
#define NBD_CMDF_KNOWN		0x1f

/* Structured replies. */
#define REPLY_FLAG_DONE		(1 << 0)
#define REPLY_OFFSET_DATA	1
#define REPLY_BLOCK_STATUS	5
#define REPLY_ERROR		((1 << 15) + 1)

#define STATE_HOLE		(1 << 0)
#define STATE_ZERO		(1 << 1)

#endif /* BSTEER_NBD_PROTO_H */
