// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bench/floor.c: the floor for bench/nbd.sh, the least work an io_uring
 * NBD server can do for the same requests. One thread, one ring set up as
 * bsteer's is (SINGLE_ISSUER, DEFER_TASKRUN, 256 SQEs, 4096 CQEs); per
 * request: receive the 28-byte header, read or write the file, send the
 * reply. No BPF, no checks beyond what keeps the stream in step, no
 * policy, no slots: a malloc'd buffer per request. Like bsteer it serves
 * a file io_uring would hand to io-wq (tmpfs) on the ring's own thread
 * (pread/pwrite), unless --no-inline; else the ops go to io_uring, but
 * for writes of up to 64 KiB to a file whose buffered writes io_uring
 * would punt (ext4): those are pwrite()s here too, as bsteer's default
 * does them. A READ over 64 KiB is spliced, as bsteer's are: from the
 * file into a pipe (inline where io_uring would punt, else a SPLICE op),
 * the reply's header sent with MSG_MORE, then the pipe into the socket.
 *
 * The handshake is blocking and minimal (fixed newstyle, OPT_GO or
 * EXPORT_NAME, any export name); it is not what is measured.
 *
 * With --threads N, N such threads, each with its own ring, all accepting
 * on the one listening socket, as bsteer's workers do.
 *
 * Usage: floor (--listen unix:PATH | --listen tcp:HOST:PORT) --file PATH
 *              [--no-inline] [--threads N]
 * It runs until SIGINT or SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <liburing.h>
#include "wire/nbd_wire.h"

#define MAX_CONNS	64
#define MAX_IO		(32u << 20)
#define INLINE_MAX	(64u << 10)	/* bsteer's inline reads and writes, and splice */
#define PIPE_SIZE	(1u << 20)	/* a spliced read's most: bsteer's slot */

enum { K_ACCEPT = 1, K_HDR, K_PAYLOAD, K_FILE, K_SEND, K_SPLICE_IN, K_SPLICE_OUT };

struct pipe_ent {
	struct pipe_ent *next;
	int fd[2];
};

struct req {
	struct conn *c;
	struct req *next;	/* the connection's send queue */
	unsigned char hdr[NBD_REQUEST_LEN];
	unsigned char reply[NBD_REPLY_LEN];
	struct iovec iov[2];
	struct msghdr msg;
	unsigned char *buf;
	struct pipe_ent *pipe;	/* a spliced read's data */
	__u32 len, got;
	__u16 type;
	int err;
};

struct conn {
	int fd;
	bool dead;
	unsigned refs;		/* ops out */
	struct req *rx;		/* the request whose header or payload is coming */
	struct req *head, *tail;	/* replies not yet sent, in order */
	bool sending;
};

static __thread struct io_uring ring;	/* each thread its own */
static int file_fd, lfd;
static __u64 file_size;
static bool inline_io = true;	/* every op on the ring's thread (tmpfs) */
static bool inline_writes;	/* small writes on it (ext4) */
static __thread struct pipe_ent *free_pipes;

static __u64 ud(int kind, void *p)
{
	return (__u64)(unsigned long)p | kind;	/* pointers are 8-aligned */
}

static struct io_uring_sqe *sqe_get(void)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&ring);

	if (!s) {
		io_uring_submit(&ring);
		s = io_uring_get_sqe(&ring);
	}
	if (!s) {
		fprintf(stderr, "floor: no SQE\n");
		exit(1);
	}
	return s;
}

/* ---- pipes for spliced reads, kept for the next ---- */

static struct pipe_ent *pipe_get(void)
{
	struct pipe_ent *p = free_pipes;

	if (p) {
		free_pipes = p->next;
		return p;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (pipe2(p->fd, O_CLOEXEC) || fcntl(p->fd[1], F_SETPIPE_SZ, PIPE_SIZE) < 0) {
		fprintf(stderr, "floor: cannot make a %u-byte pipe: %s\n", PIPE_SIZE, strerror(errno));
		exit(1);
	}
	return p;
}

static void pipe_put(struct pipe_ent *p)
{
	p->next = free_pipes;
	free_pipes = p;
}

static void pipe_close(struct pipe_ent *p)
{
	close(p->fd[0]);
	close(p->fd[1]);
	free(p);
}

static void req_free(struct req *r)
{
	if (r->pipe && (r->err || r->got < r->len))
		pipe_close(r->pipe);	/* it may hold data: not for the next */
	else if (r->pipe)
		pipe_put(r->pipe);
	free(r->buf);
	free(r);
}

/* ---- the blocking handshake ---- */

static int handshake(int fd)
{
	unsigned char h[18], c[4], oh[NBD_OPT_HDR_LEN], data[4096], r[NBD_OPT_REPLY_HDR_LEN + 12];
	__u32 opt, len;

	nbd_put64(h, NBD_MAGIC);
	nbd_put64(h + 8, NBD_IHAVEOPT);
	nbd_put16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (nbd_xfer(fd, h, sizeof(h), true) || nbd_xfer(fd, c, 4, false))
		return -1;
	for (;;) {
		if (nbd_xfer(fd, oh, sizeof(oh), false))
			return -1;
		opt = nbd_get32(oh + 8);
		len = nbd_get32(oh + 12);
		if (len > sizeof(data) || nbd_xfer(fd, data, len, false))
			return -1;
		if (opt == NBD_OPT_EXPORT_NAME) {
			unsigned char e[10];

			nbd_put64(e, file_size);
			nbd_put16(e + 8, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
			return nbd_xfer(fd, e, sizeof(e), true);
		}
		if (opt == NBD_OPT_GO) {
			nbd_opt_reply_header(r, opt, NBD_REP_INFO, 12);
			nbd_put16(r + NBD_OPT_REPLY_HDR_LEN, NBD_INFO_EXPORT);
			nbd_put64(r + NBD_OPT_REPLY_HDR_LEN + 2, file_size);
			nbd_put16(r + NBD_OPT_REPLY_HDR_LEN + 10,
				  NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
			if (nbd_xfer(fd, r, sizeof(r), true))
				return -1;
			nbd_opt_reply_header(r, opt, NBD_REP_ACK, 0);
			return nbd_xfer(fd, r, NBD_OPT_REPLY_HDR_LEN, true);
		}
		if (opt == NBD_OPT_ABORT)
			return -1;
		nbd_opt_reply_header(r, opt, NBD_REP_ERR_UNSUP, 0);
		if (nbd_xfer(fd, r, NBD_OPT_REPLY_HDR_LEN, true))
			return -1;
	}
}

/* ---- the data path ---- */

static void conn_kill(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	shutdown(c->fd, SHUT_RDWR);	/* the ops out come back */
}

/* After each of its ops: a dead connection goes with its last op. */
static void conn_put(struct conn *c)
{
	if (c->refs || !c->dead)
		return;
	while (c->head) {
		struct req *r = c->head;

		c->head = r->next;
		req_free(r);
	}
	if (c->rx)
		req_free(c->rx);
	close(c->fd);
	free(c);
}

static void arm_header(struct conn *c)
{
	struct io_uring_sqe *s;

	if (c->dead)
		return;
	if (!c->rx && !(c->rx = calloc(1, sizeof(*c->rx)))) {
		conn_kill(c);
		return;
	}
	c->rx->c = c;
	s = sqe_get();
	io_uring_prep_recv(s, c->fd, c->rx->hdr + c->rx->got, NBD_REQUEST_LEN - c->rx->got, 0);
	io_uring_sqe_set_data64(s, ud(K_HDR, c->rx));
	c->refs++;
}

static void send_next(struct conn *c)
{
	struct io_uring_sqe *s;
	struct req *r = c->head;

	if (c->sending || !r || c->dead)
		return;
	c->sending = true;
	s = sqe_get();
	io_uring_prep_sendmsg(s, c->fd, &r->msg, MSG_WAITALL | MSG_NOSIGNAL | r->msg.msg_flags);
	io_uring_sqe_set_data64(s, ud(K_SEND, r));
	c->refs++;
}

static void reply(struct req *r)
{
	struct conn *c = r->c;
	bool data = r->type == NBD_CMD_READ && !r->err && !r->pipe;

	nbd_put32(r->reply, NBD_SIMPLE_REPLY_MAGIC);
	nbd_put32(r->reply + 4, r->err);
	memcpy(r->reply + 8, r->hdr + 8, 8);	/* the cookie */
	r->iov[0] = (struct iovec){ r->reply, NBD_REPLY_LEN };
	r->iov[1] = (struct iovec){ r->buf, data ? r->len : 0 };
	r->msg = (struct msghdr){ .msg_iov = r->iov, .msg_iovlen = data ? 2 : 1,
				  .msg_flags = r->pipe && !r->err ? MSG_MORE : 0 };
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	send_next(c);
}

/* The rest of a spliced read's data, from its pipe into the socket. */
static void splice_out(struct req *r)
{
	struct io_uring_sqe *s = sqe_get();

	io_uring_prep_splice(s, r->pipe->fd[0], -1, r->c->fd, -1, r->len - r->got, 0);
	io_uring_sqe_set_data64(s, ud(K_SPLICE_OUT, r));
	r->c->refs++;
}

/* A READ over INLINE_MAX: the file's pages into a pipe, not copied. */
static void splice_in(struct req *r, __u64 off)
{
	struct io_uring_sqe *s;
	loff_t o = off;
	ssize_t n;

	r->pipe = pipe_get();
	if (!r->pipe) {
		r->err = ENOMEM;
		reply(r);
		return;
	}
	if (inline_io) {
		n = splice(file_fd, &o, r->pipe->fd[1], NULL, r->len, SPLICE_F_NONBLOCK);
		r->err = n == (ssize_t)r->len ? 0 : n < 0 ? errno : EIO;
		reply(r);
		return;
	}
	s = sqe_get();
	io_uring_prep_splice(s, file_fd, off, r->pipe->fd[1], -1, r->len, 0);
	io_uring_sqe_set_data64(s, ud(K_SPLICE_IN, r));
	r->c->refs++;
}

/* The file op, inline or on the ring. */
static void file_op(struct req *r)
{
	__u64 off = nbd_get64(r->hdr + 16);
	struct io_uring_sqe *s;
	ssize_t n;

	if (r->type == NBD_CMD_READ && r->len > INLINE_MAX && r->len <= PIPE_SIZE) {
		splice_in(r, off);
		return;
	}
	if (inline_io || (inline_writes && r->type == NBD_CMD_WRITE && r->len <= INLINE_MAX)) {
		n = r->type == NBD_CMD_READ ? pread(file_fd, r->buf, r->len, off) :
		    r->type == NBD_CMD_WRITE ? pwrite(file_fd, r->buf, r->len, off) :
		    fdatasync(file_fd);
		r->err = n < 0 ? errno : 0;
		reply(r);
		return;
	}
	s = sqe_get();
	if (r->type == NBD_CMD_READ)
		io_uring_prep_read(s, file_fd, r->buf, r->len, off);
	else if (r->type == NBD_CMD_WRITE)
		io_uring_prep_write(s, file_fd, r->buf, r->len, off);
	else
		io_uring_prep_fsync(s, file_fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(s, ud(K_FILE, r));
	r->c->refs++;
}

/* A whole header is in c->rx: start it, and take the next header. */
static void on_header(struct conn *c)
{
	struct req *r = c->rx;

	if (nbd_get32(r->hdr) != NBD_REQUEST_MAGIC) {
		conn_kill(c);
		return;
	}
	r->type = nbd_get16(r->hdr + 6);
	r->len = nbd_get32(r->hdr + 24);
	r->got = 0;
	if (r->type == NBD_CMD_DISC) {
		conn_kill(c);
		return;
	}
	if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) && r->len > MAX_IO) {
		conn_kill(c);
		return;
	}
	/* A spliced read needs no buffer. */
	if (!(r->type == NBD_CMD_READ && r->len > INLINE_MAX && r->len <= PIPE_SIZE) &&
	    (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
	    !(r->buf = malloc(r->len ? r->len : 1))) {
		conn_kill(c);
		return;
	}
	if (r->type == NBD_CMD_WRITE) {	/* the payload comes next */
		struct io_uring_sqe *s = sqe_get();

		io_uring_prep_recv(s, c->fd, r->buf, r->len, MSG_WAITALL);
		io_uring_sqe_set_data64(s, ud(K_PAYLOAD, r));
		c->refs++;
		return;
	}
	c->rx = NULL;
	arm_header(c);
	if (r->type == NBD_CMD_READ || r->type == NBD_CMD_FLUSH)
		file_op(r);
	else
		reply(r);	/* anything else: 0, not measured */
}

static void on_accept(int fd)
{
	struct conn *c;
	int one = 1;

	if (handshake(fd)) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	arm_header(c);
}

static void arm_accept(void)
{
	struct io_uring_sqe *s = sqe_get();

	io_uring_prep_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(s, K_ACCEPT);
}

static void on_cqe(const struct io_uring_cqe *cqe)
{
	__u64 d = io_uring_cqe_get_data64(cqe);
	int kind = d & 7, res = cqe->res;
	struct req *r = (struct req *)(unsigned long)(d & ~7ull);
	struct conn *c;

	if (kind == K_ACCEPT) {
		if (res >= 0)
			on_accept(res);
		arm_accept();
		return;
	}
	c = r->c;
	c->refs--;
	switch (kind) {
	case K_HDR:
		if (res <= 0 || c->dead) {
			conn_kill(c);
			break;
		}
		r->got += res;
		if (r->got == NBD_REQUEST_LEN)
			on_header(c);
		else
			arm_header(c);
		break;
	case K_PAYLOAD:
		if (res != (int)r->len || c->dead) {
			conn_kill(c);
			break;
		}
		c->rx = NULL;
		arm_header(c);
		file_op(r);
		break;
	case K_FILE:
		r->err = res < 0 ? -res : 0;
		reply(r);
		break;
	case K_SPLICE_IN:
		r->err = res == (int)r->len ? 0 : res < 0 ? -res : EIO;
		reply(r);
		break;
	case K_SEND:
	case K_SPLICE_OUT:
		if (res < 0) {
			conn_kill(c);
		} else if (r->pipe && !r->err) {	/* the header is out, or some data */
			r->got += kind == K_SPLICE_OUT ? res : 0;
			if (r->got < r->len) {
				splice_out(r);
				break;
			}
		}
		c->sending = false;
		c->head = r->next;
		if (!c->head)
			c->tail = NULL;
		req_free(r);
		send_next(c);
		break;
	}
	conn_put(c);
}

static int listen_on(const char *spec)
{
	int fd, one = 1;

	if (!strncmp(spec, "unix:", 5)) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };

		snprintf(a.sun_path, sizeof(a.sun_path), "%s", spec + 5);
		unlink(a.sun_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)))
			return -1;
	} else if (!strncmp(spec, "tcp:", 4)) {
		char host[256];
		const char *colon = strrchr(spec + 4, ':');
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;

		if (!colon || (size_t)(colon - spec - 4) >= sizeof(host))
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec - 4), spec + 4);
		if (getaddrinfo(host, colon + 1, &hints, &ai))
			return -1;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen)) {
			freeaddrinfo(ai);
			return -1;
		}
		freeaddrinfo(ai);
	} else {
		return -1;
	}
	return listen(fd, 128) ? -1 : fd;
}

/* A thread's ring, set up as bsteer's worker's, serving until the end. */
static void *serve(void *arg)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER |
				      IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE,
				     .cq_entries = 4096 };
	struct io_uring_cqe *cqe;
	unsigned head, n;

	(void)arg;
	if (io_uring_queue_init_params(256, &ring, &p)) {
		fprintf(stderr, "floor: io_uring_queue_init failed\n");
		exit(1);
	}
	arm_accept();
	for (;;) {
		int rc = io_uring_submit_and_wait(&ring, 1);

		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			fprintf(stderr, "floor: io_uring_enter: %s\n", strerror(-rc));
			exit(1);
		}
		n = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			on_cqe(cqe);
			n++;
		}
		io_uring_cq_advance(&ring, n);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "file", required_argument, NULL, 'f' },
		{ "no-inline", no_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *listen_spec = NULL, *file = NULL;
	int o, threads = 1, i;
	struct statfs fs;
	sigset_t sigs;
	struct stat st;
	pthread_t tid;

	while ((o = getopt_long(argc, argv, "l:f:nt:h", opts, NULL)) != -1) {
		switch (o) {
		case 'l': listen_spec = optarg; break;
		case 'f': file = optarg; break;
		case 'n': inline_io = false; break;
		case 't': threads = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: floor --listen unix:PATH|tcp:HOST:PORT --file PATH [--no-inline] [--threads N]\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (!listen_spec || !file) {
		fprintf(stderr, "floor: --listen and --file are needed (see --help)\n");
		return 2;
	}
	if (threads < 1 || threads > 64) {
		fprintf(stderr, "floor: --threads takes 1 to 64\n");
		return 2;
	}
	file_fd = open(file, O_RDWR | O_CLOEXEC);
	if (file_fd < 0 || fstat(file_fd, &st)) {
		perror(file);
		return 1;
	}
	file_size = st.st_size;
	/* As bsteer's --inline-io auto: the ring's thread only where io_uring would punt. */
	if (inline_io && !fstatfs(file_fd, &fs) && fs.f_type != TMPFS_MAGIC) {
		struct iovec v = { NULL, 1 };

		inline_io = false;
		/* Refused before the buffer is looked at: io_uring punts its writes. */
		inline_writes = pwritev2(file_fd, &v, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP;
	}
	lfd = listen_on(listen_spec);
	if (lfd < 0) {
		fprintf(stderr, "floor: cannot listen on %s: %s\n", listen_spec, strerror(errno));
		return 1;
	}
	/* The threads serve; this one waits for the signal that ends it all. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "floor: serving %s on %s (%s), %d thread%s\n", file, listen_spec,
		inline_io ? "inline" : inline_writes ? "io_uring, small writes inline" : "io_uring",
		threads, threads > 1 ? "s" : "");
	for (i = 0; i < threads; i++) {
		if (pthread_create(&tid, NULL, serve, NULL)) {
			fprintf(stderr, "floor: cannot start a thread\n");
			return 1;
		}
	}
	sigwait(&sigs, &o);
	if (!strncmp(listen_spec, "unix:", 5))
		unlink(listen_spec + 5);
	return 0;
}
