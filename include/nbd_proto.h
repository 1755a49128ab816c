/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * NBD transmission constants, from the NBD protocol specification, shared by
 * the BPF header parser (bpf/nbd.bpf.c) and the frontend (user/fe_nbd.c).
 */
#ifndef BSTEER_NBD_PROTO_H
#define BSTEER_NBD_PROTO_H

#define NBD_REQUEST_MAGIC	0x25609513u
#define NBD_REQUEST_LEN		28

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

#endif /* BSTEER_NBD_PROTO_H */
