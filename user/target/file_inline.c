// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Inline I/O, the file target's other face: a file that io_uring cannot do
 * I/O on without a worker thread (no FMODE_NOWAIT: tmpfs, for one) is
 * served by the ring's own thread. A policy op on it is the plain syscall
 * (pread() into the slot, pwrite() from it, fsync, fallocate), done at
 * once; then a NOP posts the result under the op's user_data, so that the
 * hook and the policy see the op complete as ever. No io-wq, no context
 * switch, the same one copy.
 *
 * A one-leg WRITE of up to 64 KiB to a file whose buffered writes
 * io_uring would punt (ext4) is a pwrite() here too. Such a write can
 * sleep on the journal or on dirty-page throttling, and the ring's other
 * clients wait with it. So by default (--inline-io auto) each is timed,
 * and one that took the budget (--inline-budget, 1 ms) or longer sends
 * the target's writes back to io-wq for a while (budget_write()); with
 * --inline-io all they are always inline, the caller's choice.
 *
 * What it does not take goes to io_uring as ever (bsteer_uring_target).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include "target/file.h"

/*
 * A large read stays with io-wq: its copy pays for the worker's wake-up,
 * and there it overlaps with this thread's sends on another CPU. bench/ab.sh
 * on tmpfs, 256K QD8 over unix, io-wq against inline: reads 1.43x the
 * IOPS at 0.84x the CPU per IO; writes 0.95x at 1.24x, so writes of any
 * size stay inline (4K: the same either way).
 */
#define INLINE_READ_MAX		(64u << 10)

/*
 * The same goes for large writes of one decision to several legs (a
 * mirror): on io-wq they run side by side (BSTEER_TIO_FANOUT). bench/ab.sh
 * --mirror, tmpfs, 256K writes QD8 over unix: 1.27x the IOPS of inline
 * (where one leg waits for the other) at 1.13x the CPU per IO; at 4K,
 * inline is 1.18x.
 *
 * inline_writes, on ext4, 4K writes (bench/ab.sh --b-args "--inline-io
 * all" --dir /var/tmp, QD32, 4 rounds): over unix 1.27x the IOPS of
 * io-wq at 0.76x the CPU per IO, 0.001 switches per IO against 1.18;
 * over TCP 0.93x, as on loopback fio's own CPU per IO grows. With every
 * write inline, 256K writes were 0.67x (io-wq's copy overlaps this
 * thread's receives) and a 4K mirror's two legs 0.87x (they overlap on
 * io-wq), so those stay.
 */
#define INLINE_WRITE_MAX	(64u << 10)

/*
 * --inline-io auto on ext4: a write that took the budget or longer sends
 * the target's writes (this ring's) to io-wq for BACKOFF_MIN, twice that
 * if the next inline one is slow too, and so on up to BACKOFF_MAX; a fast
 * one starts the count again. A page-cache write takes a few us; 1 ms is
 * far above that and far below a journal commit or a throttle's sleep
 * (tens of ms). The time is the wall clock's, so a thread preempted in
 * the middle of a write counts it slow too: on a 2-CPU machine with a
 * load average of 3-4 from other work, 8 s of 4K randwrite QD32 (some
 * 900 K inline writes) saw none.
 *
 * bench/ab.sh build/bsteer build/bsteer --a-args "--inline-io off" --dir
 * /var/tmp --rw randwrite --rounds 3 (4K QD32, a shared 2-CPU machine, so
 * indicative): this default against io-wq, over unix 1.28x the IOPS at
 * 0.61x the CPU per IO (0.65 switches per IO against 2.4), over TCP
 * 1.37x at 0.60x. Against --inline-io all, the same behaviour when no
 * write is slow: 0.93x and 1.16x, which is this machine's noise. Against
 * nbdkit (file plugin, 16 threads) on the same job, 0.67x over unix and
 * 0.83x over TCP: still behind it (with one connection all of bsteer's
 * work is one thread's, and nbdkit's 16 threads get more of a contended
 * CPU).
 *
 * What the budget buys, bench/inline-stall.sh (4K writes QD32 to a loop
 * ext4 mounted -o sync, beside 4K reads QD1 from tmpfs on the same
 * thread): the reads' p50 1.3-2 ms with --inline-io all, 16 us with this
 * default (after 39-48 slow writes in 6 s, 15-31 K writes went to io-wq),
 * 4-144 us with off; the max, 10-14 ms, is a probe after a back-off.
 */
#define BACKOFF_MIN_NS		(100ull * 1000 * 1000)
#define BACKOFF_MAX_NS		(2000ull * 1000 * 1000)

struct inl {
	int fd;
	bool all;		/* every op it can (tmpfs); else small writes */
	bool budget;		/* ... while they are fast (not --inline-io all) */
	__u64 budget_ns;	/* a write this long or longer is slow */
	__u64 wq_until;		/* writes go to io-wq until then (CLOCK_MONOTONIC) */
	__u64 backoff_ns;	/* the last back-off, 0 after a fast write */
};

/* Would it do @io here? */
static bool takes(const struct inl *f, const struct bsteer_target_io *io)
{
	if (!f->all)
		return io->opcode == BSTEER_OP_WRITE && io->len <= INLINE_WRITE_MAX &&
		       !(io->hints & BSTEER_TIO_LEGS);
	switch (io->opcode) {
	case BSTEER_OP_READ:
		return io->len <= INLINE_READ_MAX;
	case BSTEER_OP_WRITE:
		return !(io->hints & BSTEER_TIO_FANOUT);
	default:
		return true;
	}
}

/*
 * A small write to ext4 under --inline-io auto: a pwrite() here, timed,
 * unless a back-off is on. clock_gettime() is the vDSO's, some 20 ns.
 */
static int budget_write(struct bsteer_engine *e, __u32 t, struct inl *f,
			const struct bsteer_target_io *io)
{
	struct bsteer_instance *in = bsteer_engine_instance(e);
	__u64 t0 = bsteer_now_ns(), took;
	int res;

	if (f->wq_until) {
		if (t0 < f->wq_until) {
			bsteer_stat_add(in, BSTEER_ST_INLINE_BACKOFF, 1);
			return bsteer_uring_target.submit(e, t, io);
		}
		f->wq_until = 0;
	}
	res = pwrite(f->fd, io->buf, io->len, io->offset);
	if (res < 0)
		res = -errno;
	took = bsteer_now_ns() - t0;
	if (took >= f->budget_ns) {
		f->backoff_ns = f->backoff_ns ? f->backoff_ns * 2 : BACKOFF_MIN_NS;
		if (f->backoff_ns > BACKOFF_MAX_NS)
			f->backoff_ns = BACKOFF_MAX_NS;
		f->wq_until = t0 + took + f->backoff_ns;
		bsteer_stat_add(in, BSTEER_ST_INLINE_SLOW, 1);
	} else {
		f->backoff_ns = 0;
	}
	bsteer_stat_add(in, BSTEER_ST_INLINE_OPS, 1);
	bsteer_stat_add(in, BSTEER_ST_INLINE_WRITES, 1);
	return bsteer_target_complete(e, io->ud, res);
}

/* A read of a hole copies zeroes and allocates nothing, as with io_uring. */
static int inl_submit(struct bsteer_engine *e, __u32 t,
		      const struct bsteer_target_io *io)
{
	struct inl *f = bsteer_target_priv(e, t);
	int res;

	if (!takes(f, io))
		return bsteer_uring_target.submit(e, t, io);
	switch (io->opcode) {
	case BSTEER_OP_READ:
		res = pread(f->fd, io->buf, io->len, io->offset);
		break;
	case BSTEER_OP_WRITE:
		if (f->all)
			res = pwrite(f->fd, io->buf, io->len, io->offset);
		else if (f->budget)
			return budget_write(e, t, f, io);
		else {
			res = pwrite(f->fd, io->buf, io->len, io->offset);
			bsteer_stat_add(bsteer_engine_instance(e), BSTEER_ST_INLINE_WRITES, 1);
		}
		break;
	case BSTEER_OP_FSYNC:
		res = fsync(f->fd);
		break;
	case BSTEER_OP_FDATASYNC:
		res = fdatasync(f->fd);
		break;
	default:		/* PUNCH, ZERO */
		res = fallocate(f->fd, bsteer_falloc_mode(io->opcode), io->offset,
				io->len);
		break;
	}
	bsteer_stat_add(bsteer_engine_instance(e), BSTEER_ST_INLINE_OPS, 1);
	return bsteer_target_complete(e, io->ud, res < 0 ? -errno : res);
}

/*
 * A reply's read into the slot's pipe: the page cache's pages are lent to
 * the pipe, not copied. Here the splice is done at once (the pipe holds a
 * slot's worth, so it cannot block), and a NOP posts its result.
 */
static int inl_splice(struct bsteer_engine *e, __u32 t,
		      const struct bsteer_target_io *io, int pipe)
{
	struct inl *f = bsteer_target_priv(e, t);
	loff_t off = io->offset;
	ssize_t res;

	if (!f->all)
		return bsteer_uring_target.splice(e, t, io, pipe);
	res = splice(f->fd, &off, pipe, NULL, io->len, SPLICE_F_NONBLOCK);
	return bsteer_target_complete(e, io->ud, res < 0 ? -errno : res);
}

static void inl_detach(struct bsteer_engine *e, __u32 t)
{
	free(bsteer_target_priv(e, t));
	bsteer_target_set_priv(e, t, NULL);
}

static const char *inl_about(struct bsteer_engine *e, __u32 t)
{
	const struct inl *f = bsteer_target_priv(e, t);

	return f->all ? "served inline by the ring's thread (io_uring would need a worker)" :
	       f->budget ? "its small one-leg writes are done by the ring's thread while they are fast (io_uring would need a worker)" :
			   "its small one-leg writes are done by the ring's thread (io_uring would need a worker)";
}

const struct bsteer_target_ops file_inline_target = {
	.name = "file-inline",
	.submit = inl_submit,
	.splice = inl_splice,
	.about = inl_about,
	.detach = inl_detach,
};

/*
 * preadv2(RWF_NOWAIT) fails with EOPNOTSUPP for exactly the files (no
 * FMODE_NOWAIT) whose reads and writes io_uring punts. A buffered write
 * that may not block is refused (EOPNOTSUPP) before its buffer is looked
 * at by exactly the filesystems whose writes io_uring punts; one that
 * would try it faults on the NULL buffer (EFAULT) and writes nothing. A
 * read-only file gives EBADF.
 */
int file_inline_attach(struct bsteer_engine *e, __u32 t, int fd,
		       const struct bsteer_engine_opts *o)
{
	struct iovec v;
	struct stat st;
	struct inl *f;
	bool all;
	char byte;

	if (!o->inline_io || fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode))
		return 0;
	v.iov_base = &byte;
	v.iov_len = 1;
	all = preadv2(fd, &v, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP;
	v.iov_base = NULL;
	if (!all && !((o->inline_writes || o->inline_budget) &&
		      pwritev2(fd, &v, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP))
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = fd;
	f->all = all;
	f->budget = !all && !o->inline_writes;
	f->budget_ns = (__u64)o->inline_budget_us * 1000;
	bsteer_target_use(e, t, &file_inline_target);
	bsteer_target_set_priv(e, t, f);
	return 1;
}
