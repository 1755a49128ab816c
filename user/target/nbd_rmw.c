// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Read-modify-write for an NBD upstream that declared a minimum block
 * size (NBD_INFO_BLOCK_SIZE) larger than 1, when an op is not aligned to
 * it: a client that never learned the block sizes may send any offset and
 * length (the spec's default minimum is 1), and the upstream may refuse
 * them. Aligned ops never come here.
 *
 * One thread per target and ring does them, one at a time, in the order
 * they came, on a blocking connection of its own (made at the first
 * unaligned op, made again after a failure):
 *   READ          the aligned range that covers it, the asked part copied
 *                 into the slot;
 *   WRITE         the partial head and tail blocks read, the slot's bytes
 *                 merged in, the covering blocks written whole;
 *   ZERO, PUNCH   the partial head and tail blocks as a WRITE of zeroes,
 *                 the whole blocks between as WRITE_ZEROES (a PUNCH must
 *                 read back as zeroes here too, see nbd_cmd()).
 * A read and the write that follows it run under a lock per upstream (by
 * its URI, across every ring and export), so two unaligned writes to
 * different bytes of one block, from any client, both survive.
 *
 * Its writes go with FUA (or a FLUSH after them) unless the upstream says
 * NBD_FLAG_CAN_MULTI_CONN: a client's FLUSH goes out on the ring's
 * connection, and without that flag it need not cover another's writes.
 *
 * Completions go back the way rbd.c hands librbd's over: a done list
 * under a mutex, one eventfd write per burst; the ring has a READ of the
 * eventfd armed, and its completion posts each op with
 * bsteer_target_complete(). An upstream error fails the op with that
 * error; a broken connection fails it with EIO.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "target/nbd.h"
#include "wire/nbd_wire.h"

#define RMW_MAX_IO	(32u << 20)	/* per request, if the upstream did not say */
#define RMW_LOCKS	64

struct rmw_job {
	__u64 ud;
	void *buf;		/* the slot's bytes (READ, WRITE) */
	__u64 off;
	__u32 len;
	__u32 block;		/* the ring's connection's minimum */
	__u8 opcode;
	int res;
};

/* One lock per upstream, for the life of the process. */
static struct { char *spec; pthread_mutex_t m; } locks[RMW_LOCKS];
static pthread_mutex_t locks_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t locks_full = PTHREAD_MUTEX_INITIALIZER;

struct nbd_rmw {
	__u32 t;
	const char *spec;
	int timeout_s;
	pthread_mutex_t *spec_lock;
	int efd;
	__u64 tick;		/* the eventfd's 8 bytes */
	bool armed;		/* ring side */
	pthread_t thread;
	pthread_mutex_t lock;	/* everything below, with the thread */
	pthread_cond_t wake;
	bool stop, drop;
	int live_fd;		/* the thread's socket, for shutdown() */
	__u32 cap;		/* every op the engine can have */
	struct rmw_job *q;	/* waiting, in order */
	__u32 qhead, qn;
	struct rmw_job *done, *spare;
	__u32 ndone;
	__u32 out;		/* queued, running or done but not posted */
	/* The thread's own. */
	struct nbd_link link;
	struct nbd_leg info;
	__u64 cookie;
	unsigned char *bounce;
	size_t bounce_len;
};

static pthread_mutex_t *spec_lock(const char *spec)
{
	pthread_mutex_t *m = &locks_full;	/* past RMW_LOCKS: all share one */
	int i;

	pthread_mutex_lock(&locks_lock);
	for (i = 0; i < RMW_LOCKS; i++) {
		if (!locks[i].spec) {
			locks[i].spec = strdup(spec);
			if (!locks[i].spec)
				break;
			pthread_mutex_init(&locks[i].m, NULL);
		}
		if (!strcmp(locks[i].spec, spec)) {
			m = &locks[i].m;
			break;
		}
	}
	pthread_mutex_unlock(&locks_lock);
	return m;
}

bool nbd_rmw_unaligned(__u32 block, const struct bsteer_target_io *io)
{
	switch (io->opcode) {
	case BSTEER_OP_READ:
	case BSTEER_OP_WRITE:
	case BSTEER_OP_ZERO:
	case BSTEER_OP_PUNCH:
		return block > 1 && (io->offset % block || io->len % block);
	default:
		return false;
	}
}

/* ---- the thread: one connection, one request at a time ---- */

static void link_drop(struct nbd_rmw *r)
{
	pthread_mutex_lock(&r->lock);
	r->live_fd = -1;
	pthread_mutex_unlock(&r->lock);
	nbd_link_close(&r->link);
}

static int link_up(struct nbd_rmw *r)
{
	int err;

	if (r->link.fd >= 0)
		return 0;
	err = nbd_dial(r->spec, true, &r->info, &r->link, r->timeout_s);
	if (err) {
		fprintf(stderr, "bsteer: upstream target %u: no read-modify-write connection: %s\n",
			r->t, bsteer_errbuf());
		return -EIO;
	}
	pthread_mutex_lock(&r->lock);
	r->live_fd = r->link.fd;
	if (r->stop || r->drop)		/* let go of while it connected */
		shutdown(r->live_fd, SHUT_RDWR);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* One request and its reply; @in goes out, @out comes back (@len bytes). */
static int link_req(struct nbd_rmw *r, __u16 cmd, __u16 flags, __u64 off, __u32 len,
		    const void *in, void *out)
{
	unsigned char h[NBD_REQUEST_LEN], rep[NBD_REPLY_LEN];
	__u64 cookie = ++r->cookie;
	__u32 err;
	int xe;

	nbd_request_header(h, flags, cmd, cookie, off, len);
	xe = nbd_link_xfer(&r->link, h, sizeof(h), true);
	if (!xe && in)
		xe = nbd_link_xfer(&r->link, (void *)in, len, true);
	if (!xe)
		xe = nbd_link_xfer(&r->link, rep, sizeof(rep), false);
	if (!xe && (nbd_get32(rep) != NBD_SIMPLE_REPLY_MAGIC || nbd_get64(rep + 8) != cookie))
		xe = -EPROTO;
	err = xe ? 0 : nbd_get32(rep + 4);
	if (!xe && !err && out)
		xe = nbd_link_xfer(&r->link, out, len, false);
	if (xe) {
		fprintf(stderr, "bsteer: upstream target %u: read-modify-write connection: %s\n",
			r->t, strerror(-xe));
		link_drop(r);
		return -EIO;
	}
	/* NBD's error numbers are Linux's; anything odd is EIO. */
	return err ? (err < 4096 ? -(int)err : -EIO) : 0;
}

/* FUA on our writes, unless a FLUSH on the ring's connection covers them. */
static __u16 fua(const struct nbd_rmw *r)
{
	__u16 f = r->info.flags;

	return !(f & NBD_FLAG_CAN_MULTI_CONN) && (f & NBD_FLAG_SEND_FUA) ?
	       NBD_CMD_FLAG_FUA : 0;
}

/* ...or a FLUSH after them, from an upstream that has no FUA. */
static int settle(struct nbd_rmw *r)
{
	__u16 f = r->info.flags;

	if ((f & (NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_FUA)) || !(f & NBD_FLAG_SEND_FLUSH))
		return 0;
	return link_req(r, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL);
}

/* READ or WRITE of [off, off + len) in requests the upstream takes. */
static int link_rw(struct nbd_rmw *r, bool write, __u64 off, __u64 len, unsigned char *p,
		   __u32 block)
{
	__u32 max = r->info.max_block ? r->info.max_block : RMW_MAX_IO;
	int err = 0;

	if (max > block)
		max -= max % block;
	while (!err && len) {
		__u32 n = len < max ? len : max;

		err = write ? link_req(r, NBD_CMD_WRITE, fua(r), off, n, p, NULL) :
			      link_req(r, NBD_CMD_READ, 0, off, n, NULL, p);
		off += n;
		p += n;
		len -= n;
	}
	return err;
}

static unsigned char *bounce(struct nbd_rmw *r, size_t len)
{
	if (len > r->bounce_len) {
		unsigned char *p = realloc(r->bounce, len);

		if (!p)
			return NULL;
		r->bounce = p;
		r->bounce_len = len;
	}
	return r->bounce;
}

/*
 * [off, off + len) of the upstream becomes @src (NULL: zeroes): the
 * blocks that cover it are read where it covers them in part, merged,
 * and written whole.
 */
static int merge_write(struct nbd_rmw *r, __u64 off, __u32 len, const void *src,
		       __u32 block)
{
	__u64 lo = off - off % block, end = off + len, hi, tail;
	unsigned char *p;
	int err = 0;

	hi = end % block ? end - end % block + block : end;
	if (hi > r->info.size)	/* a last block the export's size cuts short */
		hi = r->info.size;
	tail = (hi - 1) - (hi - 1) % block;
	p = bounce(r, hi - lo);
	if (!p)
		return -ENOMEM;
	if (off > lo)
		err = link_rw(r, false, lo, hi - lo < block ? hi - lo : block, p, block);
	/* The tail block, unless the head's read has it. */
	if (!err && end < hi && (off == lo || tail > lo))
		err = link_rw(r, false, tail, hi - tail, p + (tail - lo), block);
	if (err)
		return err;
	if (src)
		memcpy(p + (off - lo), src, len);
	else
		memset(p + (off - lo), 0, len);
	return link_rw(r, true, lo, hi - lo, p, block);
}

/* ZERO or PUNCH: the partial blocks merged, the whole ones as WRITE_ZEROES. */
static int zero_range(struct nbd_rmw *r, const struct rmw_job *j, __u32 block)
{
	__u64 end = j->off + j->len;
	__u64 a = j->off % block ? j->off - j->off % block + block : j->off;
	__u64 z = end - end % block;
	__u16 flags = fua(r) | (j->opcode == BSTEER_OP_ZERO ? NBD_CMD_FLAG_NO_HOLE : 0);
	int err = 0;

	if (a >= z)		/* no whole block inside */
		return merge_write(r, j->off, j->len, NULL, block) ?: settle(r);
	if (j->off < a)
		err = merge_write(r, j->off, a - j->off, NULL, block);
	if (!err)
		err = link_req(r, NBD_CMD_WRITE_ZEROES, flags, a, z - a, NULL, NULL);
	if (!err && end > z)
		err = merge_write(r, z, end - z, NULL, block);
	return err ?: settle(r);
}

static int job_run(struct nbd_rmw *r, const struct rmw_job *j)
{
	__u32 block;
	__u64 lo, hi;
	int err = link_up(r);

	if (err)
		return err;
	/* The larger, should this connection's server say more than the ring's. */
	block = r->info.min_block > j->block ? r->info.min_block : j->block;
	if (j->off + j->len > r->info.size)
		return -EIO;	/* a smaller export than the ring's: not ours */
	switch (j->opcode) {
	case BSTEER_OP_READ:
		lo = j->off - j->off % block;
		hi = j->off + j->len;
		hi = hi % block ? hi - hi % block + block : hi;
		if (hi > r->info.size)
			hi = r->info.size;
		if (!bounce(r, hi - lo))
			return -ENOMEM;
		err = link_rw(r, false, lo, hi - lo, r->bounce, block);
		if (!err)
			memcpy(j->buf, r->bounce + (j->off - lo), j->len);
		return err ?: (int)j->len;
	case BSTEER_OP_WRITE:
		return merge_write(r, j->off, j->len, j->buf, block) ?: settle(r) ?: (int)j->len;
	default:
		return zero_range(r, j, block);
	}
}

/* Hand a finished job to the ring: the eventfd once per burst. */
static void job_done(struct nbd_rmw *r, const struct rmw_job *j)
{
	__u64 one = 1;

	if (!r->ndone && write(r->efd, &one, sizeof(one)) < 0)
		(void)0;	/* a count already there wakes the ring as well */
	r->done[r->ndone++] = *j;
}

static void *rmw_main(void *arg)
{
	struct nbd_rmw *r = arg;
	struct rmw_job j;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->stop && !r->drop && !r->qn)
			pthread_cond_wait(&r->wake, &r->lock);
		if (r->stop)
			break;
		if (r->drop) {
			/* What waits fails, as on the ring's connection. */
			for (; r->qn; r->qn--, r->qhead = (r->qhead + 1) % r->cap) {
				r->q[r->qhead].res = -EIO;
				job_done(r, &r->q[r->qhead]);
			}
			r->drop = false;
			pthread_mutex_unlock(&r->lock);
			link_drop(r);
			pthread_mutex_lock(&r->lock);
			continue;
		}
		j = r->q[r->qhead];
		r->qhead = (r->qhead + 1) % r->cap;
		r->qn--;
		pthread_mutex_unlock(&r->lock);
		pthread_mutex_lock(r->spec_lock);
		j.res = job_run(r, &j);
		pthread_mutex_unlock(r->spec_lock);
		pthread_mutex_lock(&r->lock);
		job_done(r, &j);
	}
	pthread_mutex_unlock(&r->lock);
	link_drop(r);
	return NULL;
}

/* ---- the ring's side ---- */

struct nbd_rmw *nbd_rmw_new(const char *spec, __u32 t, __u32 cap, __u32 timeout_ms,
			    int *err)
{
	struct nbd_rmw *r = calloc(1, sizeof(*r));

	*err = -ENOMEM;
	if (!r)
		return NULL;
	r->t = t;
	r->spec = spec;
	r->timeout_s = (timeout_ms + 999) / 1000;
	r->cap = cap;
	r->link.fd = r->live_fd = -1;
	r->q = calloc(cap, sizeof(*r->q));
	r->done = calloc(cap, sizeof(*r->done));
	r->spare = calloc(cap, sizeof(*r->spare));
	r->efd = eventfd(0, EFD_CLOEXEC);	/* blocking: io_uring polls it */
	if (!r->q || !r->done || !r->spare || r->efd < 0) {
		*err = r->efd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	r->spec_lock = spec_lock(spec);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->wake, NULL);
	*err = -pthread_create(&r->thread, NULL, rmw_main, r);
	if (!*err)
		return r;
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->wake);
fail:
	if (r->efd >= 0)
		close(r->efd);
	free(r->q);
	free(r->done);
	free(r->spare);
	free(r);
	return NULL;
}

/* Queue @io for the thread; it is posted once done (0), or -EBUSY. */
int nbd_rmw_submit(struct nbd_rmw *r, const struct bsteer_target_io *io, __u32 block)
{
	int err = 0;

	pthread_mutex_lock(&r->lock);
	if (r->out >= r->cap) {
		err = -EBUSY;	/* never, with cap = nops */
	} else {
		r->q[(r->qhead + r->qn++) % r->cap] = (struct rmw_job){
			.ud = io->ud, .buf = io->buf, .off = io->offset, .len = io->len,
			.block = block, .opcode = io->opcode,
		};
		r->out++;
		pthread_cond_signal(&r->wake);
	}
	pthread_mutex_unlock(&r->lock);
	return err;
}

/* Keep a READ of the eventfd armed, as @ud. */
void nbd_rmw_arm(struct bsteer_engine *e, struct nbd_rmw *r, __u64 ud)
{
	struct io_uring_sqe *sqe;

	if (r->armed)
		return;
	bsteer_engine_reserve(e, 1);
	sqe = bsteer_engine_sqe(e);
	if (!sqe)
		return;		/* the next kick tries again */
	io_uring_prep_read(sqe, r->efd, &r->tick, sizeof(r->tick), 0);
	io_uring_sqe_set_data64(sqe, ud);
	r->armed = true;
}

/* The eventfd's READ is back: post every op the thread has finished. */
void nbd_rmw_cqe(struct bsteer_engine *e, struct nbd_rmw *r)
{
	struct rmw_job *list;
	__u32 n, i;

	r->armed = false;
	pthread_mutex_lock(&r->lock);
	list = r->done;
	n = r->ndone;
	r->done = r->spare;
	r->spare = list;
	r->ndone = 0;
	r->out -= n;
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < n; i++)
		if (bsteer_target_complete(e, list[i].ud, list[i].res))
			fprintf(stderr, "bsteer: no SQE to complete a read-modify-write\n");
}

/* Ops handed to the thread and not yet posted. */
__u32 nbd_rmw_waiting(struct nbd_rmw *r)
{
	__u32 n;

	pthread_mutex_lock(&r->lock);
	n = r->out;
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* The leg failed or connects again: the thread's connection goes too. */
void nbd_rmw_drop(struct nbd_rmw *r)
{
	pthread_mutex_lock(&r->lock);
	r->drop = true;
	if (r->live_fd >= 0)
		shutdown(r->live_fd, SHUT_RDWR);
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
}

/* The ring is gone: stop the thread (what it holds fails at once). */
void nbd_rmw_free(struct nbd_rmw *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	if (r->live_fd >= 0)
		shutdown(r->live_fd, SHUT_RDWR);
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->wake);
	close(r->efd);
	free(r->bounce);
	free(r->q);
	free(r->done);
	free(r->spare);
	free(r);
}
