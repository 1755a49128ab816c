/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * NBD protocol constants, from the NBD protocol specification, with the
 * spec's names: shared by the BPF header parser (bpf/frontend/nbd.bpf.c),
 * the NBD frontend (user/frontend/) and the NBD target (user/target/).
 */
#ifndef BSTEER_NBD_PROTO_H
#define BSTEER_NBD_PROTO_H

/* Handshake (fixed newstyle). */
#define NBD_MAGIC		0x4e42444d41474943ull
#define NBD_IHAVEOPT		0x49484156454f5054ull
#define NBD_OPT_REPLY_MAGIC	0x0003e889045565a9ull
#define NBD_SIMPLE_REPLY_MAGIC	0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC	0x668e33efu

#define NBD_FLAG_FIXED_NEWSTYLE	(1 << 0)
#define NBD_FLAG_NO_ZEROES	(1 << 1)

#define NBD_OPT_EXPORT_NAME	1
#define NBD_OPT_ABORT		2
#define NBD_OPT_LIST		3
#define NBD_OPT_STARTTLS	5
#define NBD_OPT_INFO		6
#define NBD_OPT_GO		7
#define NBD_OPT_STRUCTURED_REPLY	8
#define NBD_OPT_LIST_META_CONTEXT	9
#define NBD_OPT_SET_META_CONTEXT	10

#define NBD_REP_ACK		1
#define NBD_REP_SERVER		2
#define NBD_REP_INFO		3
#define NBD_REP_META_CONTEXT	4
#define NBD_REP_ERR_UNSUP	(0x80000000u | 1)
#define NBD_REP_ERR_POLICY	(0x80000000u | 2)
#define NBD_REP_ERR_INVALID	(0x80000000u | 3)
#define NBD_REP_ERR_TLS_REQD	(0x80000000u | 5)
#define NBD_REP_ERR_UNKNOWN	(0x80000000u | 6)
#define NBD_REP_ERR_TOO_BIG	(0x80000000u | 9)
#define NBD_REP_IS_ERR(t)	((t) & 0x80000000u)

#define NBD_INFO_EXPORT		0
#define NBD_INFO_NAME		1
#define NBD_INFO_DESCRIPTION	2
#define NBD_INFO_BLOCK_SIZE	3

#define NBD_FLAG_HAS_FLAGS	(1 << 0)
#define NBD_FLAG_READ_ONLY	(1 << 1)
#define NBD_FLAG_SEND_FLUSH	(1 << 2)
#define NBD_FLAG_SEND_FUA	(1 << 3)
#define NBD_FLAG_SEND_TRIM	(1 << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES	(1 << 6)
#define NBD_FLAG_CAN_MULTI_CONN	(1 << 8)
#define NBD_FLAG_SEND_CACHE	(1 << 10)
#define NBD_FLAG_SEND_FAST_ZERO	(1 << 11)

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

#define NBD_CMD_FLAG_FUA	(1 << 0)
#define NBD_CMD_FLAG_NO_HOLE	(1 << 1)
#define NBD_CMD_FLAG_DF		(1 << 2)
#define NBD_CMD_FLAG_REQ_ONE	(1 << 3)
#define NBD_CMD_FLAG_FAST_ZERO	(1 << 4)

/*
 * The command flags a command may carry, per the spec's "Command flags":
 * FUA on any command (we advertise NBD_FLAG_SEND_FUA), DF on READ (its
 * data always goes as one chunk), NO_HOLE and FAST_ZERO on WRITE_ZEROES,
 * REQ_ONE on BLOCK_STATUS. Any other bit, or one of these on another
 * command, gets EINVAL. The one table: the BPF parser and its syscall
 * twin both check it.
 */
#define NBD_CMD_FLAGS_ALLOWED(cmd)						\
	(NBD_CMD_FLAG_FUA |							\
	 ((cmd) == NBD_CMD_READ ? NBD_CMD_FLAG_DF : 0) |			\
	 ((cmd) == NBD_CMD_WRITE_ZEROES ?					\
	  NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO : 0) |			\
	 ((cmd) == NBD_CMD_BLOCK_STATUS ? NBD_CMD_FLAG_REQ_ONE : 0))

/* Structured replies. */
#define NBD_REPLY_FLAG_DONE	(1 << 0)
#define NBD_REPLY_TYPE_OFFSET_DATA	1
#define NBD_REPLY_TYPE_BLOCK_STATUS	5
#define NBD_REPLY_TYPE_ERROR	((1 << 15) + 1)

#define NBD_STATE_HOLE		(1 << 0)
#define NBD_STATE_ZERO		(1 << 1)

#endif /* BSTEER_NBD_PROTO_H */
