// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The RBD target: an image in a Ceph pool, through librbd, named the way
 * qemu names it: rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=USER].
 *
 * A policy op is one librbd aio call, straight from (or into) the op's
 * slot. librbd completes it on a thread of its own: the callback puts the
 * op's user_data and result on the target's done list and, if the list was
 * empty, writes the target's eventfd once; the worker's ring has a READ of
 * that eventfd armed, and its completion takes the whole list and posts
 * each op's completion with a NOP (IORING_NOP_INJECT_RESULT), which the
 * completion hook decides like any other. A burst of completions costs one
 * wakeup.
 *
 * Each worker opens the image on its own (rados connection, ioctx, image),
 * so that nothing is shared across rings. librbd's own timeout on OSD ops
 * (rados_osd_op_timeout, set to --upstream-timeout) ends an op a stopped
 * OSD would hold forever; the op then fails and a mirror fails the leg.
 * A slot is never let go while librbd may still write into it: a target
 * with ops out waits for them at detach.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include "libbsteer.h"

#define RBD_TIMEOUT_S	30	/* librbd's OSD op timeout, unless --upstream-timeout */

/* Our own SQE: the eventfd's READ. */
enum { RK_EVENT = 1 };

struct rbd_spec {
	char pool[128], image[256], snap[128], conf[256], id[64];
};

/* What open() made: one connection, one image. */
struct rbd_leg {
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t image;
	int efd;
};

struct rbd_done {
	__u64 ud;
	int res;
};

/* One worker's target. */
struct rbd_tgt {
	__u32 t;
	rbd_image_t image;
	int efd;
	__u64 tick;		/* the eventfd's 8 bytes */
	bool armed;
	__u32 outstanding;	/* ops librbd has not completed */
	__u32 cap;		/* done[]'s room: every op the engine can have */
	pthread_mutex_t lock;	/* the done list, shared with librbd's threads */
	pthread_cond_t drained;
	struct rbd_done *done, *spare;
	__u32 ndone;
};

/* One op in librbd's hands. */
struct rbd_op {
	struct rbd_tgt *r;
	__u64 ud;
	__u32 len;
	__u8 opcode;
};

static bool rbd_match(const char *spec)
{
	return !strncmp(spec, "rbd:", 4);
}

/* rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=USER] ("\\:" is a colon in a value). */
static int parse_spec(const char *spec, struct rbd_spec *s)
{
	char buf[1024], *p, *field, *end;
	size_t i, k;

	memset(s, 0, sizeof(*s));
	if (strlen(spec + 4) >= sizeof(buf) - 1)
		return -ENAMETOOLONG;
	/* Split at unescaped colons into NUL-separated fields. */
	for (i = 4, k = 0; spec[i]; i++) {
		if (spec[i] == '\\' && spec[i + 1])
			buf[k++] = spec[++i];
		else
			buf[k++] = spec[i] == ':' ? 0 : spec[i];
	}
	buf[k] = 0;
	end = buf + k;
	/* The first field: POOL/IMAGE[@SNAP]. */
	p = strchr(buf, '/');
	if (!p || p == buf || !p[1])
		return -EINVAL;
	*p++ = 0;
	snprintf(s->pool, sizeof(s->pool), "%s", buf);
	field = p + strlen(p) + 1;
	if ((p = strchr(p, '@'))) {
		*p++ = 0;
		if (!*p)
			return -EINVAL;
		snprintf(s->snap, sizeof(s->snap), "%s", p);
	}
	snprintf(s->image, sizeof(s->image), "%s", buf + strlen(buf) + 1);
	for (; field < end; field += strlen(field) + 1) {
		if (!strncmp(field, "conf=", 5) && field[5])
			snprintf(s->conf, sizeof(s->conf), "%s", field + 5);
		else if (!strncmp(field, "id=", 3) && field[3])
			snprintf(s->id, sizeof(s->id), "%s", field + 3);
		else
			return -EINVAL;
	}
	return s->image[0] ? 0 : -EINVAL;
}

static void leg_free(struct rbd_leg *l)
{
	if (!l)
		return;
	if (l->image)
		rbd_close(l->image);
	if (l->io)
		rados_ioctx_destroy(l->io);
	if (l->cluster)
		rados_shutdown(l->cluster);
	if (l->efd >= 0)
		close(l->efd);
	free(l);
}

static int rbd_open_leg(struct bsteer_leg *leg)
{
	struct rbd_leg *l = calloc(1, sizeof(*l));
	char timeout[16];
	struct rbd_spec s;
	__u64 size;
	int err;

	if (!l)
		return -ENOMEM;
	l->efd = -1;
	if (parse_spec(leg->spec, &s)) {
		bsteer_set_err("bad RBD target '%s' (rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=USER])",
			       leg->spec);
		free(l);
		return -EINVAL;
	}
	err = rados_create(&l->cluster, s.id[0] ? s.id : NULL);
	if (err) {
		bsteer_set_err("rados_create: %s", strerror(-err));
		l->cluster = NULL;
		goto fail;
	}
	err = rados_conf_read_file(l->cluster, s.conf[0] ? s.conf : NULL);
	if (err) {
		bsteer_set_err("cannot read the Ceph configuration %s: %s",
			       s.conf[0] ? s.conf : "(the default places)", strerror(-err));
		goto fail;
	}
	/* librbd's ops end on their own if an OSD stops answering. */
	snprintf(timeout, sizeof(timeout), "%u",
		 leg->timeout_ms ? (leg->timeout_ms + 999) / 1000 : RBD_TIMEOUT_S);
	rados_conf_set(l->cluster, "rados_osd_op_timeout", timeout);
	rados_conf_set(l->cluster, "rados_mon_op_timeout", timeout);
	rados_conf_set(l->cluster, "client_mount_timeout", timeout);
	err = rados_connect(l->cluster);
	if (err) {
		bsteer_set_err("cannot connect to the Ceph cluster: %s", strerror(-err));
		goto fail;
	}
	err = rados_ioctx_create(l->cluster, s.pool, &l->io);
	if (err) {
		bsteer_set_err("pool '%s': %s", s.pool, strerror(-err));
		l->io = NULL;
		goto fail;
	}
	/* (Workers past the first open with rdonly set: only the main thread's says.) */
	err = s.snap[0] ? rbd_open_read_only(l->io, s.image, &l->image, s.snap) :
			  rbd_open(l->io, s.image, &l->image, NULL);
	if (err) {
		bsteer_set_err("image '%s%s%s' in pool '%s': %s", s.image,
			       s.snap[0] ? "@" : "", s.snap, s.pool, strerror(-err));
		l->image = NULL;
		goto fail;
	}
	if (s.snap[0] && !leg->rdonly) {
		bsteer_set_err("a snapshot is read-only (add ,ro to the export)");
		err = -EROFS;
		goto fail;
	}
	err = rbd_get_size(l->image, (uint64_t *)&size);
	if (!err && !size)
		err = -EINVAL;
	if (err) {
		bsteer_set_err("%s", err == -EINVAL ? "the image is empty" : strerror(-err));
		goto fail;
	}
	l->efd = eventfd(0, EFD_CLOEXEC);	/* blocking: io_uring polls it */
	if (l->efd < 0) {
		err = -errno;
		bsteer_set_err("eventfd: %s", strerror(-err));
		goto fail;
	}
	leg->fd = l->efd;	/* the file the engine registers: our wakeups */
	leg->size = size;
	leg->min_block = 0;	/* librbd takes any offset and length */
	leg->priv = l;
	return 0;
fail:
	leg_free(l);
	return err;
}

static void rbd_close_leg(struct bsteer_leg *leg)
{
	struct rbd_leg *l = leg->priv;

	if (l) {
		l->efd = -1;	/* leg->fd, closed below */
		leg_free(l);
	}
	if (leg->fd >= 0)
		close(leg->fd);
	leg->fd = -1;
	leg->priv = NULL;
}

static void arm_event(struct bsteer_engine *e, struct rbd_tgt *r)
{
	struct io_uring_sqe *sqe;

	if (r->armed)
		return;
	bsteer_engine_reserve(e, 1);
	sqe = bsteer_engine_sqe(e);
	if (!sqe)
		return;		/* kick() tries again */
	io_uring_prep_read(sqe, r->efd, &r->tick, sizeof(r->tick), 0);
	io_uring_sqe_set_data64(sqe, bsteer_target_ud(r->t, (__u64)RK_EVENT << 40));
	r->armed = true;
}

static int rbd_attach(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg)
{
	const struct rbd_leg *l = leg->priv;
	struct rbd_tgt *r;

	if (!l)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (r) {
		r->cap = bsteer_engine_nops(e);
		r->done = calloc(r->cap, sizeof(*r->done));
		r->spare = calloc(r->cap, sizeof(*r->spare));
	}
	if (!r || !r->done || !r->spare) {
		if (r) {
			free(r->done);
			free(r->spare);
		}
		free(r);
		return -ENOMEM;
	}
	r->t = t;
	r->image = l->image;
	r->efd = l->efd;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->drained, NULL);
	bsteer_target_set_priv(e, t, r);
	arm_event(e, r);
	return 0;
}

/* On one of librbd's threads. */
static void op_done(rbd_completion_t c, void *arg)
{
	struct rbd_op *o = arg;
	struct rbd_tgt *r = o->r;
	ssize_t res = rbd_aio_get_return_value(c);
	__u64 one = 1;
	bool wake;

	rbd_aio_release(c);
	/* A READ or WRITE that succeeded moved all its bytes. */
	if (res >= 0)
		res = o->opcode == BSTEER_OP_READ || o->opcode == BSTEER_OP_WRITE ? o->len : 0;
	pthread_mutex_lock(&r->lock);
	wake = !r->ndone;
	/* room: ops alive on the target (out, or done and not yet posted) <= cap */
	r->done[r->ndone++] = (struct rbd_done){ o->ud, (int)res };
	/*
	 * The wakeup before the count drops, under the lock: once it is 0,
	 * detach may free @r and the eventfd's number may be someone else's.
	 * (An eventfd write of 1 does not block.)
	 */
	if (wake && write(r->efd, &one, sizeof(one)) < 0)
		(void)0;	/* a count already there wakes the ring as well */
	if (!--r->outstanding)
		pthread_cond_broadcast(&r->drained);
	pthread_mutex_unlock(&r->lock);
	free(o);
}

static int rbd_submit(struct bsteer_engine *e, __u32 t, const struct bsteer_target_io *io)
{
	struct rbd_tgt *r = bsteer_target_priv(e, t);
	struct rbd_op *o;
	rbd_completion_t c;
	int err;

	if (!r)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	err = r->outstanding + r->ndone >= r->cap ? -EBUSY : 0;	/* never, with cap = nops */
	if (!err)
		r->outstanding++;
	pthread_mutex_unlock(&r->lock);
	if (err)
		return bsteer_target_complete(e, io->ud, err);
	o = malloc(sizeof(*o));
	if (!o || rbd_aio_create_completion(o, op_done, &c)) {
		free(o);
		err = -ENOMEM;
		goto out;
	}
	*o = (struct rbd_op){ r, io->ud, io->len, io->opcode };
	switch (io->opcode) {
	case BSTEER_OP_READ:
		err = rbd_aio_read(r->image, io->offset, io->len, io->buf, c);
		break;
	case BSTEER_OP_WRITE:
		err = rbd_aio_write(r->image, io->offset, io->len, io->buf, c);
		break;
	case BSTEER_OP_FSYNC:
	case BSTEER_OP_FDATASYNC:
		err = rbd_aio_flush(r->image, c);
		break;
	case BSTEER_OP_PUNCH:
		err = rbd_aio_discard(r->image, io->offset, io->len, c);
		break;
	case BSTEER_OP_ZERO:
		err = rbd_aio_write_zeroes(r->image, io->offset, io->len, c, 0, 0);
		break;
	default:
		err = -EOPNOTSUPP;
	}
	if (!err)
		return 0;
	rbd_aio_release(c);
	free(o);
out:
	pthread_mutex_lock(&r->lock);
	r->outstanding--;
	pthread_mutex_unlock(&r->lock);
	return bsteer_target_complete(e, io->ud, err);
}

/* The eventfd's READ is back: post every completion librbd has handed over. */
static void rbd_cqe(struct bsteer_engine *e, __u32 t, const struct io_uring_cqe *cqe)
{
	struct rbd_tgt *r = bsteer_target_priv(e, t);
	struct rbd_done *list;
	__u32 n, i;

	if (!r)
		return;
	r->armed = false;
	pthread_mutex_lock(&r->lock);
	list = r->done;
	n = r->ndone;
	r->done = r->spare;
	r->spare = list;
	r->ndone = 0;
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < n; i++)
		bsteer_target_complete(e, list[i].ud, list[i].res);
	if (cqe->res < 0 && cqe->res != -ECANCELED)
		return;		/* the eventfd is gone: the target is going */
	arm_event(e, r);
}

static void rbd_kick(struct bsteer_engine *e, __u32 t)
{
	struct rbd_tgt *r = bsteer_target_priv(e, t);

	if (r)
		arm_event(e, r);
}

static __u32 rbd_waiting(struct bsteer_engine *e, __u32 t)
{
	struct rbd_tgt *r = bsteer_target_priv(e, t);
	__u32 n;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->lock);
	n = r->outstanding;
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* The ring is gone: wait until librbd is done with every slot it holds. */
static void rbd_detach(struct bsteer_engine *e, __u32 t)
{
	struct rbd_tgt *r = bsteer_target_priv(e, t);

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	while (r->outstanding)
		pthread_cond_wait(&r->drained, &r->lock);
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->drained);
	free(r->done);
	free(r->spare);
	free(r);
	bsteer_target_set_priv(e, t, NULL);
}

static const char *rbd_about(struct bsteer_engine *e, __u32 t)
{
	(void)e;
	(void)t;
	return "librbd aio from the slots, completions handed to the ring through an eventfd";
}

const struct bsteer_target_ops rbd_target = {
	.name = "rbd",
	.match = rbd_match,
	.open = rbd_open_leg,
	.close = rbd_close_leg,
	.attach = rbd_attach,
	.submit = rbd_submit,
	.cqe = rbd_cqe,
	.kick = rbd_kick,
	.waiting = rbd_waiting,
	.about = rbd_about,
	.detach = rbd_detach,
	.per_worker = true,
};
