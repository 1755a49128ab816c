/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The FUSE frontend, as the rest of the tree sees it: its options (set by
 * the command line) and its ops table. It mounts a file system with one
 * regular file per export, served over FUSE's io_uring transport: the
 * kernel hands each request to a worker's ring as the completion of a
 * uring_cmd, the BPF parser turns it into a block request at the
 * completion hook, and the policy steers it. With @loop, each export's
 * file is also a loop device (direct I/O, 4096-byte blocks): a real block
 * device whose every request the policy steers (the ublk model).
 */
#ifndef BSTEER_FRONTEND_FUSE_H
#define BSTEER_FRONTEND_FUSE_H

#include "libbsteer.h"

struct fuse_conf {
	const char *dir;	/* the mount point: an existing, empty directory */
	bool loop;		/* a loop device per export */
	bool dev;		/* --fuse-transport=dev: /dev/fuse, not the ring */
	__u32 depth;		/* ring entries per queue (each owns a slot) */
};

#define FUSE_DEF_DEPTH		16

extern const struct bsteer_frontend_ops fuse_frontend;

/* The queues FUSE has (one per possible CPU), or -errno. */
int fuse_queues(void);
/* Slots the entries of each of @threads workers own (the most of any). */
__u32 fuse_slots_per_worker(const struct fuse_conf *c, __u32 threads);

#endif /* BSTEER_FRONTEND_FUSE_H */
