// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The cow policy's bitmap file: see cowmap.h for its layout. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include "policy/cowmap.h"

void cowmap_path(const char *overlay, char *out, size_t len)
{
	snprintf(out, len, "%s.cowmap", overlay);
}

static int hdr_write(struct cowmap *m)
{
	unsigned char h[COWMAP_HDR] = {};
	__u64 v;

	memcpy(h, COWMAP_MAGIC, 8);
	v = htole64(m->chunk);
	memcpy(h + 8, &v, 8);
	v = htole64(m->size);
	memcpy(h + 16, &v, 8);
	v = htole64(m->nchunks);
	memcpy(h + 24, &v, 8);
	return pwrite(m->fd, h, sizeof(h), 0) == sizeof(h) ? 0 : -EIO;
}

int cowmap_open(struct cowmap *m, const char *path, __u64 chunk, __u64 size)
{
	unsigned char h[COWMAP_HDR];
	ssize_t n;
	__u64 fchunk, fsize, i;
	int err;

	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	snprintf(m->path, sizeof(m->path), "%s", path);
	m->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (m->fd < 0) {
		err = -errno;
		bsteer_set_err("cannot open %s: %s", path, strerror(errno));
		return err;
	}
	if (flock(m->fd, LOCK_EX | LOCK_NB)) {
		bsteer_set_err("%s is in use (a bsteer serve or cow commit holds it)",
			       path);
		err = -EBUSY;
		goto fail;
	}
	n = pread(m->fd, h, sizeof(h), 0);
	if (n == 0) {
		/* A new overlay: nothing in it yet. */
		m->chunk = chunk ? chunk : 64 * 1024;
		m->size = size;
	} else if (n == sizeof(h) && !memcmp(h, COWMAP_MAGIC, 8)) {
		memcpy(&fchunk, h + 8, 8);
		memcpy(&fsize, h + 16, 8);
		fchunk = le64toh(fchunk);
		fsize = le64toh(fsize);
		if (chunk && chunk != fchunk) {
			bsteer_set_err("%s tracks %llu-byte chunks, not %llu (drop chunk= or use the overlay's)",
				       path, (unsigned long long)fchunk,
				       (unsigned long long)chunk);
			err = -EINVAL;
			goto fail;
		}
		if (size != ~0ull && fsize != size) {
			bsteer_set_err("%s was made for a %llu-byte base; this base has %llu bytes",
				       path, (unsigned long long)fsize,
				       (unsigned long long)size);
			err = -EINVAL;
			goto fail;
		}
		m->chunk = fchunk;
		m->size = fsize;
	} else {
		bsteer_set_err("%s is not a bsteer cow bitmap", path);
		err = -EINVAL;
		goto fail;
	}
	if (!m->chunk || m->chunk % 4096) {
		bsteer_set_err("%s: bad chunk size %llu", path,
			       (unsigned long long)m->chunk);
		err = -EINVAL;
		goto fail;
	}
	m->nchunks = (m->size + m->chunk - 1) / m->chunk;
	m->nwords = (m->nchunks + 63) / 64;
	m->saved = calloc(m->nwords ? m->nwords : 1, 8);
	if (!m->saved) {
		err = -ENOMEM;
		goto fail;
	}
	if (n == 0) {
		err = hdr_write(m);
		if (!err && ftruncate(m->fd, COWMAP_HDR + m->nwords * 8))
			err = -errno;
		if (!err && fsync(m->fd))
			err = -errno;
		if (err) {
			bsteer_set_err("cannot write %s: %s", path, strerror(-err));
			goto fail;
		}
	} else {
		n = pread(m->fd, m->saved, m->nwords * 8, COWMAP_HDR);
		if (n != (ssize_t)(m->nwords * 8)) {
			bsteer_set_err("%s is truncated", path);
			err = -EINVAL;
			goto fail;
		}
		for (i = 0; i < m->nwords; i++)
			m->saved[i] = le64toh(m->saved[i]);
	}
	return 0;
fail:
	cowmap_close(m);
	return err;
}

void cowmap_attach(struct cowmap *m, __u64 *live)
{
	m->bits = live;
	memcpy(live, m->saved, m->nwords * 8);
}

int cowmap_sync(struct cowmap *m)
{
	__u64 i, first = ~0ull, last = 0, v;
	int err = 0;

	if (!m->bits)
		return 0;
	pthread_mutex_lock(&m->lock);
	for (i = 0; i < m->nwords; i++) {
		v = __atomic_load_n(&m->bits[i], __ATOMIC_ACQUIRE);
		if (v == m->saved[i])
			continue;
		m->saved[i] = v;
		if (first == ~0ull)
			first = i;
		last = i;
	}
	if (first != ~0ull) {
		size_t n = last - first + 1;
		__u64 *buf = malloc(n * 8);

		if (!buf) {
			err = -ENOMEM;
		} else {
			for (i = 0; i < n; i++)
				buf[i] = htole64(m->saved[first + i]);
			if (pwrite(m->fd, buf, n * 8, COWMAP_HDR + first * 8) !=
			    (ssize_t)(n * 8))
				err = -EIO;
			free(buf);
		}
		if (!err && fdatasync(m->fd))
			err = -errno;
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

int cowmap_clear(struct cowmap *m)
{
	memset(m->saved, 0, m->nwords * 8);
	if (ftruncate(m->fd, COWMAP_HDR) ||
	    ftruncate(m->fd, COWMAP_HDR + m->nwords * 8) || fsync(m->fd))
		return -errno;
	return 0;
}

void cowmap_close(struct cowmap *m)
{
	if (m->fd > 0)
		close(m->fd);
	m->fd = -1;
	free(m->saved);
	m->saved = NULL;
	m->bits = NULL;
}
