// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * What the FUSE frontend answers itself: the file system around the data,
 * a root directory with one regular file per export. Nothing here moves
 * an export's data; that goes to the policy.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include "frontend/fuse_priv.h"

#define ATTR_VALID	1	/* seconds the kernel may keep what we say */

static void attr_of(const struct bsteer_server *s, const struct fuse_shared *sh,
		    __u64 node, struct fuse_attr *a)
{
	const struct bsteer_export *ex = fuse_export((struct bsteer_server *)s, node);

	memset(a, 0, sizeof(*a));
	a->ino = node;
	a->atime = a->mtime = a->ctime = sh->mount_time;
	a->blksize = 4096;
	if (!ex) {
		a->mode = S_IFDIR | 0755;
		a->nlink = 2;
		return;
	}
	a->mode = S_IFREG | (ex->rdonly ? 0444 : 0644);
	a->nlink = 1;
	a->size = ex->size;
	a->blocks = (ex->size + 511) / 512;
}

static int lookup(const struct bsteer_server *s, const struct fuse_shared *sh,
		  __u64 parent, const char *name, __u32 len, void *out)
{
	struct fuse_entry_out *e = out;
	int k;

	if (parent != FUSE_ROOT)
		return -ENOENT;
	for (k = 0; k < s->nexports; k++) {
		if (strnlen(name, len) != strlen(s->exports[k].name) ||
		    strncmp(name, s->exports[k].name, len))
			continue;
		memset(e, 0, sizeof(*e));
		e->nodeid = FUSE_NODE(k);
		e->generation = 1;
		e->entry_valid = e->attr_valid = ATTR_VALID;
		attr_of(s, sh, e->nodeid, &e->attr);
		return sizeof(*e);
	}
	return -ENOENT;
}

static int getattr(const struct bsteer_server *s, const struct fuse_shared *sh,
		   __u64 node, void *out)
{
	struct fuse_attr_out *a = out;

	if (node != FUSE_ROOT && !fuse_export((struct bsteer_server *)s, node))
		return -ENOENT;
	memset(a, 0, sizeof(*a));
	a->attr_valid = ATTR_VALID;
	attr_of(s, sh, node, &a->attr);
	return sizeof(*a);
}

/* Times and modes are not ours to change; a file's size is its export's. */
static int setattr(const struct bsteer_server *s, const struct fuse_shared *sh,
		   __u64 node, const struct fuse_setattr_in *in, void *out)
{
	const struct bsteer_export *ex = fuse_export((struct bsteer_server *)s, node);

	if ((in->valid & FATTR_SIZE) && (!ex || in->size != ex->size))
		return -EPERM;
	return getattr(s, sh, node, out);
}

static int open_file(const struct bsteer_server *s, __u64 node,
		     const struct fuse_open_in *in, void *out)
{
	const struct bsteer_export *ex = fuse_export((struct bsteer_server *)s, node);
	struct fuse_open_out *o = out;

	if (node != FUSE_ROOT && !ex)
		return -ENOENT;
	if (ex && ex->rdonly && (in->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	/*
	 * No FOPEN_DIRECT_IO: a direct-I/O caller (a loop device) still gets
	 * the direct path, and the inode lock stays shared for its writes.
	 */
	memset(o, 0, sizeof(*o));
	return sizeof(*o);
}

/* One directory entry at @off of @out; 0 if it does not fit. */
static __u32 dirent(void *out, __u32 off, __u32 max, __u64 ino, __u64 next,
		    const char *name, __u32 type)
{
	struct fuse_dirent *d = (void *)((char *)out + off);
	__u32 len = strlen(name), rec = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + len);

	if (off + rec > max)
		return 0;
	memset(d, 0, rec);
	d->ino = ino;
	d->off = next;
	d->namelen = len;
	d->type = type;
	memcpy(d->name, name, len);
	return rec;
}

/* ".", "..", then the exports, from entry @in->offset on. */
static int readdir(const struct bsteer_server *s, __u64 node,
		   const struct fuse_read_in *in, void *out, __u32 outmax)
{
	__u32 max = in->size < outmax ? in->size : outmax, len = 0, n;
	__u64 i;

	if (node != FUSE_ROOT)
		return -ENOTDIR;
	for (i = in->offset; i < 2 + (__u64)s->nexports; i++) {
		const char *name = i == 0 ? "." : i == 1 ? ".." : s->exports[i - 2].name;

		n = dirent(out, len, max, i < 2 ? FUSE_ROOT : FUSE_NODE(i - 2), i + 1,
			   name, i < 2 ? S_IFDIR >> 12 : S_IFREG >> 12);
		if (!n)
			break;
		len += n;
	}
	return len;
}

static int statfs_(const struct bsteer_server *s, void *out)
{
	struct fuse_statfs_out *o = out;
	__u64 total = 0;
	int k;

	for (k = 0; k < s->nexports; k++)
		total += s->exports[k].size;
	memset(o, 0, sizeof(*o));
	/* A loop device takes its discard granularity from bsize. */
	o->st.bsize = o->st.frsize = 4096;
	o->st.blocks = total / 4096;
	o->st.files = 1 + s->nexports;
	o->st.namelen = 255;
	return sizeof(*o);
}

int fuse_answer(struct bsteer_server *s, const struct fuse_shared *sh,
		__u32 opcode, __u64 node, const void *in, const void *arg,
		__u32 arglen, void *out, __u32 outmax)
{
	switch (opcode) {
	case FUSE_LOOKUP:
		return lookup(s, sh, node, arg, arglen, out);
	case FUSE_GETATTR:
		return getattr(s, sh, node, out);
	case FUSE_SETATTR:
		return setattr(s, sh, node, in, out);
	case FUSE_OPEN:
	case FUSE_OPENDIR:
		return open_file(s, node, in, out);
	case FUSE_READDIR:
		return readdir(s, node, in, out, outmax);
	case FUSE_STATFS:
		return statfs_(s, out);
	case FUSE_RELEASE:
	case FUSE_RELEASEDIR:
	case FUSE_ACCESS:
	case FUSE_FSYNCDIR:
		return 0;
	case FUSE_FALLOCATE:
		/* Space is the legs': a preallocation (KEEP_SIZE) has nothing to do. */
		return 0;
	default:		/* STATX, xattrs, ...: the kernel stops asking */
		return -ENOSYS;
	}
}
