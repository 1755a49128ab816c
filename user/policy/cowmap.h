/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The cow policy's chunk bitmap on disk, next to the overlay, so that the
 * overlay stays meaningful across restarts and "bsteer cow commit" knows
 * which chunks to merge. File layout (little endian):
 *
 *	0   char  magic[8]	"BSTCOW1\0"
 *	8   u64   chunk		bytes per chunk
 *	16  u64   size		export (= base) size in bytes
 *	24  u64   nchunks
 *	32  u64   reserved[4]
 *	64  u64   bits[(nchunks + 63) / 64]	bit c: chunk c is in the overlay
 *
 * Bits only ever go from 0 to 1 while serving; commit clears them all.
 */
#ifndef BSTEER_COWMAP_H
#define BSTEER_COWMAP_H

#include <pthread.h>
#include "libbsteer.h"

#define COWMAP_MAGIC	"BSTCOW1"
#define COWMAP_HDR	64

struct cowmap {
	int fd;			/* locked: one user at a time */
	char path[PATH_MAX];
	__u64 chunk, size, nchunks, nwords;
	__u64 *bits;		/* the live bits (the pinned map's memory) */
	__u64 *saved;		/* what the file holds */
	pthread_mutex_t lock;
};

/* Default bitmap path for an overlay path. */
void cowmap_path(const char *overlay, char *out, size_t len);
/*
 * Open (or create) the bitmap file and lock it. @chunk 0 takes the file's;
 * a file made with another chunk or size is refused with a reason.
 */
int cowmap_open(struct cowmap *m, const char *path, __u64 chunk, __u64 size);
/* Serve from @live (nwords words): load the file's bits into it. */
void cowmap_attach(struct cowmap *m, __u64 *live);
/* Make the live bits durable (pwrite of what changed, then fdatasync). */
int cowmap_sync(struct cowmap *m);
/* Clear every bit in the file (after a commit). */
int cowmap_clear(struct cowmap *m);
void cowmap_close(struct cowmap *m);

#endif /* BSTEER_COWMAP_H */
