// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A plain liburing program for the tracer's tests to watch; it knows
 * nothing of bsteer. Each mode does one buffer-lifetime story and prints
 * what it did, with CLOCK_MONOTONIC times, as "key=value" lines:
 *
 *   inflight  register buffers 0 and 1; READ_FIXED into 0 from an empty
 *             pipe; unregister both while the read waits; 200 ms later feed
 *             the pipe; the read completes. Buffer 1 is never used.
 *   table     a sparse table of 8; an update installs buffer 3, a second
 *             update replaces it; a WRITE_FIXED from it; a second ring
 *             clones the table.
 *   kill      a READ_FIXED waits on a pipe; the process is killed (SIGKILL
 *             from itself) with the read in flight.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include "compat.h"

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void *page(void)
{
	void *p;

	if (posix_memalign(&p, 4096, 4096))
		return NULL;
	memset(p, 0, 4096);
	return p;
}

static int die(const char *what, int err)
{
	fprintf(stderr, "trace_prog: %s: %s\n", what, strerror(err < 0 ? -err : err));
	return 1;
}

static int mode_inflight(void)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	struct iovec iov[2];
	int p[2], err;

	iov[0].iov_base = page();
	iov[1].iov_base = page();
	iov[0].iov_len = iov[1].iov_len = 4096;
	if (!iov[0].iov_base || !iov[1].iov_base || pipe(p))
		return die("setup", errno);
	err = io_uring_queue_init(8, &ring, 0);
	if (err)
		return die("io_uring_queue_init", err);
	err = io_uring_register_buffers(&ring, iov, 2);
	if (err)
		return die("register buffers", err);
	printf("registered=%llu\n", now_ns());
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read_fixed(sqe, p[0], iov[0].iov_base, 4096, 0, 0);
	sqe->user_data = 42;
	io_uring_submit(&ring);
	usleep(50 * 1000);
	/* The read waits on the pipe and holds buffer 0 all along. */
	err = io_uring_unregister_buffers(&ring);
	if (err)
		return die("unregister buffers", err);
	printf("unregistered=%llu\n", now_ns());
	usleep(200 * 1000);
	if (write(p[1], "lifetime", 8) != 8)
		return die("write", errno);
	printf("fed=%llu\n", now_ns());
	err = io_uring_wait_cqe(&ring, &cqe);
	if (err)
		return die("wait", err);
	printf("completed=%llu res=%d data=%.8s\n", now_ns(), cqe->res,
	       (char *)iov[0].iov_base);
	io_uring_cqe_seen(&ring, cqe);
	usleep(50 * 1000);
	io_uring_queue_exit(&ring);
	free(iov[0].iov_base);
	free(iov[1].iov_base);
	fflush(stdout);
	return 0;
}

static int clone_buffers(struct io_uring *dst, struct io_uring *src)
{
	struct {
		__u32 src_fd, flags, src_off, dst_off, nr, pad[3];
	} arg = { .src_fd = (__u32)src->ring_fd };

	/* IORING_REGISTER_CLONE_BUFFERS (6.12); liburing 2.3 has no wrapper. */
	if (syscall(__NR_io_uring_register, dst->ring_fd, 30, &arg, 1) < 0)
		return -errno;
	return 0;
}

static int mode_table(void)
{
	struct io_uring ring, ring2;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	struct iovec a = { page(), 4096 }, b = { page(), 4096 };
	__u64 tag = 0;
	int fd, err;

	fd = open("/dev/null", 1);
	if (!a.iov_base || !b.iov_base || fd < 0)
		return die("setup", errno);
	if ((err = io_uring_queue_init(8, &ring, 0)) ||
	    (err = io_uring_queue_init(8, &ring2, 0)))
		return die("io_uring_queue_init", err);
	err = io_uring_register_buffers_sparse(&ring, 8);
	if (err)
		return die("register sparse", err);
	printf("sparse=%llu\n", now_ns());
	err = io_uring_register_buffers_update_tag(&ring, 3, &a, &tag, 1);
	if (err != 1)
		return die("update 1", err);
	printf("update1=%llu addr=%p\n", now_ns(), a.iov_base);
	usleep(20 * 1000);
	err = io_uring_register_buffers_update_tag(&ring, 3, &b, &tag, 1);
	if (err != 1)
		return die("update 2", err);
	printf("update2=%llu addr=%p\n", now_ns(), b.iov_base);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_write_fixed(sqe, fd, b.iov_base, 4096, 0, 3);
	io_uring_submit(&ring);
	err = io_uring_wait_cqe(&ring, &cqe);
	if (err || cqe->res != 4096)
		return die("write_fixed", err ? err : -EIO);
	io_uring_cqe_seen(&ring, cqe);
	err = clone_buffers(&ring2, &ring);
	if (err)
		return die("clone buffers", err);
	printf("cloned=%llu\n", now_ns());
	io_uring_queue_exit(&ring2);
	io_uring_queue_exit(&ring);
	free(a.iov_base);
	free(b.iov_base);
	fflush(stdout);
	return 0;
}

static int mode_kill(void)
{
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	struct iovec iov = { page(), 4096 };
	int p[2], err;

	if (!iov.iov_base || pipe(p))
		return die("setup", errno);
	err = io_uring_queue_init(8, &ring, 0);
	if (err)
		return die("io_uring_queue_init", err);
	err = io_uring_register_buffers(&ring, &iov, 1);
	if (err)
		return die("register buffers", err);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read_fixed(sqe, p[0], iov.iov_base, 4096, 0, 0);
	io_uring_submit(&ring);
	usleep(50 * 1000);
	printf("killed=%llu\n", now_ns());
	fflush(stdout);
	kill(getpid(), SIGKILL);
	return 1;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "inflight";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "inflight"))
		return mode_inflight();
	if (!strcmp(mode, "table"))
		return mode_table();
	if (!strcmp(mode, "kill"))
		return mode_kill();
	fprintf(stderr, "usage: trace_prog inflight|table|kill\n");
	return 2;
}
