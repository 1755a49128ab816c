// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The NBD frontend's connections: listening (once, for every worker),
 * accepting and negotiating, a connection's life and its end, and the
 * frontend's ops table.
 *
 * Nothing here blocks the ring's thread. A handshake is a struct hs fed
 * by receives on the ring, with a deadline (--handshake-timeout) checked
 * in the tick; only a finished one takes a connection slot. An accept
 * that fails backs off before the next.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "frontend/nbd_priv.h"
#include "nbd.skel.h"

/* Stop taking requests from this connection; it closes once drained. */
void nbd_conn_fail(struct nbd *n, struct conn *c, const char *why)
{
	struct io_uring_sqe *sqe;

	if (!c->closing && why)
		serve_log(n->s, "nbd: connection %u: %s; closing it", c->idx, why);
	c->closing = true;
	/* An error breaks the stream both ways; a hang-up only stops reading. */
	shutdown(c->fd, SHUT_RD);
	if (c->tls) {
		tls_stream_shut_rd(c->tls);	/* ends a receive out, as EOF would */
	} else if (c->hdr_armed) {
		/* shutdown() does not wake a receive on every socket kind. */
		bsteer_engine_reserve(n->e, 1);
		sqe = bsteer_engine_sqe(n->e);
		if (sqe) {
			io_uring_prep_cancel64(sqe, bsteer_parse_ud(n->fe->id, n->ring,
								    nbd_hconn(n, c->idx),
								    c->hdr_seq), 0);
			io_uring_sqe_set_data64(sqe, 0);
		}
	}
	nbd_conn_maybe_close(n, c);
}

static void conn_free(struct nbd *n, struct conn *c)
{
	struct reply *r, *next;

	for (r = c->head; r; r = next) {
		next = r->next;
		if (r->io)
			nbd_io_free(n, r->io);
		nbd_reply_put(n, r);
	}
	if (c->stalled)
		n->nstalled--;
	nbd_count(n, NBD_C_CONNS_OPEN, -1ull);
	nbd_count(n, NBD_C_CONNS_CLOSED, 1);
	bsteer_engine_frontend_file(n->e, c->idx, -1);
	bsteer_access_release(n->s, &c->peer);
	if (c->tls)
		tls_stream_close(c->tls);	/* close_notify, then it closes fd */
	else
		close(c->fd);
	free(c->iov);
	memset(c, 0, sizeof(*c));
}

/* Close once nothing of the connection is in flight or owed. */
void nbd_conn_maybe_close(struct nbd *n, struct conn *c)
{
	if (!c->used || !c->closing)
		return;
	if (c->hdr_armed || c->payload || c->sends || c->sending || c->head ||
	    c->reqs)
		return;
	conn_free(n, c);
}

static void arm_accept(struct nbd *n, int i)
{
	struct io_uring_sqe *sqe;

	if (n->stopping || n->accept_armed[i] || n->accept_wait[i])
		return;
	bsteer_engine_reserve(n->e, 1);
	sqe = bsteer_engine_sqe(n->e);
	if (!sqe)
		return;
	io_uring_prep_accept(sqe, n->sh->lfd[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, nbd_ud(n, UD_ACCEPT, i));
	n->accept_armed[i] = true;
}

/*
 * An accept that failed (EMFILE, ENFILE, ENOMEM, ...) would fail again at
 * once: the next waits, 10 ms after the first failure, twice as long after
 * each one more, up to 1 s.
 */
static void accept_back_off(struct nbd *n, int i, int err)
{
	struct io_uring_sqe *sqe;
	__u32 ms = n->accept_delay_ms[i];

	if (!ms)
		serve_log(n->s, "nbd: accept failed: %s; backing off", strerror(-err));
	ms = ms ? (ms * 2 < 1000 ? ms * 2 : 1000) : 10;
	n->accept_delay_ms[i] = ms;
	n->accept_ts[i].tv_sec = ms / 1000;
	n->accept_ts[i].tv_nsec = (ms % 1000) * 1000000ll;
	bsteer_engine_reserve(n->e, 1);
	sqe = bsteer_engine_sqe(n->e);
	if (!sqe)
		return;
	io_uring_prep_timeout(sqe, &n->accept_ts[i], 0, 0);
	io_uring_sqe_set_data64(sqe, nbd_ud(n, UD_ACCEPT_WAIT, i));
	n->accept_wait[i] = true;
}

/* A free connection slot whose file index takes @fd, or NULL. */
static struct conn *conn_new(struct nbd *n, int fd)
{
	__u32 i;

	for (i = 0; i < MAX_CONNS; i++)
		if (!n->conns[i].used)
			break;
	if (i == MAX_CONNS || bsteer_engine_frontend_file(n->e, i, fd))
		return NULL;
	memset(&n->conns[i], 0, sizeof(n->conns[i]));
	n->conns[i].idx = i;
	/*
	 * The last connection on this index left its last parse behind,
	 * stamped with a user_data this one's header receives start over
	 * from (hdr_seq 1, 2, ...). When the hook has parsed a header, the
	 * stamp is fresh; when it has not (the fallback), a stale one that
	 * matched would hand this connection the other's last request.
	 */
	__atomic_store_n(&n->in->fe_req[bsteer_hdr_index(n->ring, nbd_hconn(n, i))].stamp, 0,
			 __ATOMIC_RELEASE);
	return &n->conns[i];
}

/* ---- the handshake: on the ring, one receive or send out at a time ---- */

static void hs_free(struct nbd *n, struct hs *h)
{
	n->hs[h->id] = NULL;
	n->nhs--;
	n->nhs_dead -= h->dead;
	nbd_count(n, NBD_C_HS_OPEN, -1ull);
	bsteer_access_release(n->s, &h->peer);
	if (h->tls)
		tls_stream_close(h->tls);
	else if (h->fd >= 0)
		close(h->fd);
	free(h->out);
	free(h);
}

/* Give up on @h: at once, or when its receive or send is back. */
static void hs_kill(struct nbd *n, struct hs *h)
{
	struct io_uring_sqe *sqe;

	if (h->dead)
		return;
	if (!h->op_out) {
		hs_free(n, h);
		return;
	}
	h->dead = true;
	n->nhs_dead++;
	if (h->tls) {
		tls_stream_abort(h->tls);	/* the op out completes, failed */
		return;
	}
	/* Either wakes the op; its completion frees @h. */
	shutdown(h->fd, SHUT_RDWR);
	bsteer_engine_reserve(n->e, 1);
	sqe = bsteer_engine_sqe(n->e);
	if (sqe) {
		io_uring_prep_cancel64(sqe, nbd_ud(n, h->op_kind, h->id), 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
}

/* The handshake is over: the connection takes a slot and its first header receive. */
static void hs_done(struct nbd *n, struct hs *h)
{
	struct conn *c = conn_new(n, h->fd);

	if (!c) {
		serve_log(n->s, "nbd: no room for another connection");
		hs_free(n, h);
		return;
	}
	c->used = true;
	c->fd = h->fd;
	c->ex = h->ex;
	c->structured = h->ng.structured;
	c->meta_alloc = h->ng.meta_alloc;
	c->block_sizes = h->ng.block_sizes;
	c->tcp = h->tcp;
	c->tls = h->tls;
	/* The socket and the admission are the connection's now. */
	c->peer = h->peer;
	n->hs[h->id] = NULL;
	n->nhs--;
	nbd_count(n, NBD_C_HS_OPEN, -1ull);
	free(h->out);
	free(h);
	nbd_count(n, NBD_C_CONNS_OPEN, 1);
	nbd_count(n, NBD_C_CONNS_TOTAL, 1);
	if (n->s->verbose)
		serve_log(n->s, "nbd: connection %u to export '%s'", c->idx, c->ex->name);
	nbd_arm_header(n, c);
}

/* What @h does next: send its replies, take the next message, or end. */
static void hs_next(struct nbd *n, struct hs *h)
{
	struct io_uring_sqe *sqe;

	if (h->state == HS_CLOSE || (h->out_sent == h->out_len && h->state == HS_QUIT)) {
		hs_free(n, h);
		return;
	}
	if (h->out_sent == h->out_len && h->state == HS_GO) {
		hs_done(n, h);
		return;
	}
	if (h->out_sent == h->out_len && h->state == HS_STARTTLS) {
		/* The ACK is out: TLS from the next byte on, through a stream. */
		int fd = h->fd, err = nbd_tls_start(n, &h->fd, &h->tls);

		if (err) {
			hs_free(n, h);	/* h->fd is -1 if the stream took the socket */
			return;
		}
		h->fd = fd;	/* the stream's: for the connection's file table */
		h->state = HS_OPT_HDR;
	}
	if (h->tls) {
		/* Plaintext from and into the hs; its completions come as the ops' would. */
		h->op_out = true;
		if (h->out_sent < h->out_len) {
			struct iovec v = { h->out + h->out_sent, h->out_len - h->out_sent };

			h->op_kind = UD_HS_SEND;
			tls_stream_send(h->tls, &v, 1, nbd_ud(n, UD_HS_SEND, h->id), v.iov_len);
		} else {
			h->op_kind = UD_HS_RECV;
			tls_stream_recv(h->tls, h->in + h->in_len, nbd_hs_want(h) - h->in_len,
					TLS_RECV_SOME, nbd_ud(n, UD_HS_RECV, h->id));
		}
		return;
	}
	bsteer_engine_reserve(n->e, 1);
	sqe = bsteer_engine_sqe(n->e);
	if (!sqe) {
		hs_free(n, h);
		return;
	}
	if (h->out_sent < h->out_len) {
		io_uring_prep_send(sqe, h->fd, h->out + h->out_sent,
				   h->out_len - h->out_sent, MSG_NOSIGNAL);
		h->op_kind = UD_HS_SEND;
	} else {
		io_uring_prep_recv(sqe, h->fd, h->in + h->in_len,
				   nbd_hs_want(h) - h->in_len, 0);
		h->op_kind = UD_HS_RECV;
	}
	io_uring_sqe_set_data64(sqe, nbd_ud(n, h->op_kind, h->id));
	h->op_out = true;
}

static void hs_cqe(struct nbd *n, struct hs *h, int kind, int res)
{
	h->op_out = false;
	if (h->dead || res <= 0) {	/* timed out, gone, or an error */
		hs_free(n, h);
		return;
	}
	if (kind == UD_HS_SEND) {
		h->out_sent += res;
		if (h->out_sent == h->out_len)
			h->out_sent = h->out_len = 0;
	} else {
		h->in_len += res;
		if (h->in_len == nbd_hs_want(h))
			nbd_hs_input(n, h);
	}
	hs_next(n, h);
}

/*
 * Room for one more handshake. Past MAX_HANDSHAKES the oldest is given
 * up; its entry stays taken until its op is back, hence the table's slack.
 */
static struct hs *hs_new(struct nbd *n, int fd)
{
	struct hs *h, *oldest = NULL;
	__u32 i;

	if (n->nhs - n->nhs_dead >= MAX_HANDSHAKES) {
		for (i = 0; i < HS_TABLE; i++)
			if (n->hs[i] && !n->hs[i]->dead &&
			    (!oldest || n->hs[i]->deadline_ns < oldest->deadline_ns))
				oldest = n->hs[i];
		if (oldest) {
			hs_kill(n, oldest);
			n->hs_evicted++;
		}
	}
	for (i = 0; i < HS_TABLE && n->hs[i]; i++)
		;
	if (i == HS_TABLE)
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->fd = fd;
	h->id = i;
	if (nbd_hs_init(h)) {
		free(h);
		return NULL;
	}
	n->hs[i] = h;
	n->nhs++;
	nbd_count(n, NBD_C_HS_OPEN, 1);
	return h;
}

static void on_accept(struct nbd *n, int fd)
{
	struct bsteer_access_peer peer;
	struct hs *h;
	int one = 1;

	if (bsteer_access_admit(n->s, fd, &peer)) {	/* refused: closed at once */
		close(fd);
		return;
	}
	h = hs_new(n, fd);
	if (!h) {
		bsteer_access_release(n->s, &peer);
		close(fd);
		return;
	}
	h->peer = peer;
	/* Only a TCP socket takes it. */
	h->tcp = !setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	h->deadline_ns = bsteer_now_ns() + n->conf->handshake_timeout_ms * 1000000ull;
	hs_next(n, h);
}

/* A completion of one of the frontend's own SQEs (or a header receive). */
static void nbd_cqe(struct bsteer_fe *fe, const struct io_uring_cqe *cqe)
{
	struct nbd *n = fe->priv;
	__u64 low = bsteer_ud_low(cqe->user_data);
	__u32 idx = low & 0xffffffff;
	int kind = (low >> 40) & 0xff;
	struct conn *c;

	if (bsteer_parse_ud_is(cqe->user_data)) {
		nbd_header_cqe(n, cqe);
		return;
	}
	if (kind == UD_ACCEPT) {
		if (idx >= NBD_MAX_LISTEN)
			return;
		n->accept_armed[idx] = false;
		if (cqe->res >= 0) {
			n->accept_delay_ms[idx] = 0;
			on_accept(n, cqe->res);
		} else if (cqe->res != -ECANCELED && !n->stopping) {
			accept_back_off(n, idx, cqe->res);
		}
		arm_accept(n, idx);
		return;
	}
	if (kind == UD_ACCEPT_WAIT) {
		if (idx >= NBD_MAX_LISTEN)
			return;
		n->accept_wait[idx] = false;
		arm_accept(n, idx);
		return;
	}
	if (kind == UD_HS_RECV || kind == UD_HS_SEND) {
		if (idx < HS_TABLE && n->hs[idx])
			hs_cqe(n, n->hs[idx], kind, cqe->res);
		return;
	}
	if (kind >= UD_TLS && kind < UD_TLS + TLS_STREAM_OPS) {
		nbd_tls_cqe(n, kind, idx, cqe->res);
		return;
	}
	if (idx >= MAX_CONNS)
		return;
	c = &n->conns[idx];
	if (!c->used)
		return;
	nbd_reply_cqe(n, c, kind, cqe->res);
	nbd_conn_maybe_close(n, c);
}

/* ---- listening: once per server, before the workers start ---- */

/* A socket file nobody answers on is stale; a live one is not ours. */
static int unix_in_use(const struct sockaddr_un *a, const char *spec)
{
	/* Non-blocking: a live server with a full backlog must not hang us. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -errno;
	if (!connect(fd, (const struct sockaddr *)a, sizeof(*a)) || errno == EAGAIN) {
		bsteer_set_err("cannot listen on %s: another server is listening there",
			       spec);
		close(fd);
		return -EADDRINUSE;
	}
	close(fd);
	return 0;
}

static int listen_unix(struct nbd_shared *sh, int i, const char *spec)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, err;

	if (strlen(spec + 5) >= sizeof(a.sun_path)) {
		bsteer_set_err("unix socket path too long: %s", spec + 5);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, spec + 5);
	err = unix_in_use(&a, spec);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (!lstat(a.sun_path, &st) && S_ISSOCK(st.st_mode))
		unlink(a.sun_path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 128) ||
	    lstat(a.sun_path, &st)) {
		err = -errno;
		bsteer_set_err("cannot listen on %s: %s", spec, strerror(-err));
		close(fd);
		return err;
	}
	chmod(a.sun_path, 0600);
	snprintf(sh->unix_path[i], sizeof(sh->unix_path[i]), "%s", a.sun_path);
	sh->unix_dev[i] = st.st_dev;
	sh->unix_ino[i] = st.st_ino;
	sh->lfd[i] = fd;
	return 0;
}

static int listen_tcp(struct nbd_shared *sh, int i, const char *spec,
		      bool allow_remote)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	const char *port = strrchr(spec + 4, ':');
	struct addrinfo *ai;
	char host[256];
	int fd, rc, one = 1;

	if (!port || port - (spec + 4) >= (int)sizeof(host)) {
		bsteer_set_err("bad listen address '%s' (want tcp:HOST:PORT)", spec);
		return -EINVAL;
	}
	memcpy(host, spec + 4, port - (spec + 4));
	host[port - (spec + 4)] = 0;
	/* tcp:[::1]:PORT, as URIs write an IPv6 host */
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	rc = getaddrinfo(*host ? host : NULL, port + 1, &hints, &ai);
	if (rc) {
		bsteer_set_err("cannot resolve %s: %s", spec, gai_strerror(rc));
		return -EINVAL;
	}
	if (!allow_remote && !bsteer_addr_loopback(ai->ai_addr)) {
		freeaddrinfo(ai);
		bsteer_set_err("%s is not a loopback address; add --allow-remote to listen there",
			       spec);
		return -EPERM;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(ai);
		return rc;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128)) {
		rc = -errno;
		bsteer_set_err("cannot listen on %s: %s", spec, strerror(-rc));
		freeaddrinfo(ai);
		close(fd);
		return rc;
	}
	freeaddrinfo(ai);
	sh->lfd[i] = fd;
	return 0;
}

/*
 * fd:N, a listening socket handed to us (systemd socket activation,
 * LISTEN_FDS): it must be a stream socket that listens.
 */
static int listen_fd(struct nbd_shared *sh, int i, const char *spec)
{
	int fd, type = 0, acc = 0;
	socklen_t len = sizeof(int);
	char *end;
	long n = strtol(spec + 3, &end, 10);

	if (*end || end == spec + 3 || n < 3 || n > INT_MAX) {
		bsteer_set_err("bad listen address '%s' (want fd:N, N >= 3)", spec);
		return -EINVAL;
	}
	fd = n;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) ||
	    type != SOCK_STREAM || !acc) {
		bsteer_set_err("%s is not a listening stream socket", spec);
		return -ENOTSOCK;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	sh->lfd[i] = fd;
	return 0;
}

static void nbd_teardown(struct bsteer_fe *fe)
{
	struct nbd_shared *sh = fe->shared;
	struct stat st;
	int i;

	if (!sh)
		return;
	for (i = 0; i < NBD_MAX_LISTEN; i++) {
		if (sh->lfd[i] >= 0)
			close(sh->lfd[i]);
		/* A server started on the same path since then keeps its socket. */
		if (sh->unix_path[i][0] && !lstat(sh->unix_path[i], &st) &&
		    st.st_dev == sh->unix_dev[i] && st.st_ino == sh->unix_ino[i])
			unlink(sh->unix_path[i]);
	}
	nbd_tls_teardown(sh);
	free(sh);
	fe->shared = NULL;
}

/* The listening sockets every worker accepts on. */
static int nbd_setup(struct bsteer_fe *fe)
{
	const struct nbd_conf *conf = fe->conf;
	struct nbd_shared *sh = calloc(1, sizeof(*sh));
	int i, err = 0;

	if (!sh)
		return -ENOMEM;
	fe->shared = sh;
	for (i = 0; i < NBD_MAX_LISTEN; i++)
		sh->lfd[i] = -1;
	for (i = 0; !err && i < conf->nlisten; i++) {
		const char *spec = conf->listen[i];

		if (!strncmp(spec, "unix:", 5)) {
			err = listen_unix(sh, i, spec);
		} else if (!strncmp(spec, "tcp:", 4)) {
			err = listen_tcp(sh, i, spec, conf->allow_remote);
		} else if (!strncmp(spec, "fd:", 3)) {
			err = listen_fd(sh, i, spec);
		} else {
			bsteer_set_err("bad listen address '%s' (want tcp:HOST:PORT or unix:PATH)",
				       spec);
			err = -EINVAL;
		}
	}
	return err ?: nbd_tls_setup(sh, conf) ?:
		      bsteer_access_listen(fe->s, sh->lfd, conf->nlisten);
}

/*
 * "listening on" is the server's word that it is ready (tests and tools
 * wait for it): said once every worker has its ring set up.
 */
static void nbd_ready(struct bsteer_fe *fe)
{
	const struct nbd_conf *conf = fe->conf;
	__u32 threads = fe->s->in->nrings;
	int i;

	for (i = 0; i < conf->nlisten; i++)
		serve_log(fe->s, "listening on %s (instance %s, %u thread%s)",
			  conf->listen[i], fe->s->in->name, threads,
			  threads > 1 ? "s" : "");
}

/* ---- a worker's frontend ---- */

static int nbd_start(struct bsteer_fe *fe)
{
	struct nbd *n = calloc(1, sizeof(*n));
	int i;

	if (!n)
		return -ENOMEM;
	fe->priv = n;
	n->fe = fe;
	n->s = fe->s;
	n->e = fe->s->e;
	n->in = fe->s->in;
	n->conf = fe->conf;
	n->sh = fe->shared;
	n->ring = fe->s->ring;
	n->nslots = bsteer_engine_slots(n->e);
	n->ri = calloc(bsteer_engine_reqs(n->e), sizeof(*n->ri));
	if (!n->ri)
		return -ENOMEM;
	for (i = 0; i < n->conf->nlisten; i++)
		arm_accept(n, i);
	return 0;
}

/*
 * A client that stops reading its replies holds their slots: once a reply
 * has not moved for --reply-timeout, the connection goes (checked twice a
 * second).
 */
static void drop_deaf_clients(struct nbd *n, __u64 now)
{
	__u32 i;

	for (i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		if (c->used && c->sending && !c->closing &&
		    now - c->send_ns > n->conf->reply_timeout_ms * 1000000ull) {
			/* Both ways: the send it is stuck in fails now. */
			shutdown(c->fd, SHUT_RDWR);
			if (c->tls)
				tls_stream_abort(c->tls);
			nbd_conn_fail(n, c, "the client has not read a reply in time (--reply-timeout)");
		}
	}
}

/*
 * Handshakes past --handshake-timeout go, with one line for them all; and
 * one for those that made room for newer ones since the last look.
 */
static void expire_handshakes(struct nbd *n, __u64 now)
{
	__u32 i, gone = 0;

	for (i = 0; n->nhs && i < HS_TABLE; i++) {
		struct hs *h = n->hs[i];

		if (h && !h->dead && now > h->deadline_ns) {
			hs_kill(n, h);
			gone++;
		}
	}
	nbd_count(n, NBD_C_HS_TIMEOUTS, gone);
	if (gone)
		serve_log(n->s, "nbd: %u connection%s closed: handshake not done in time (--handshake-timeout)",
			  gone, gone > 1 ? "s" : "");
	if (n->hs_evicted)
		serve_log(n->s, "nbd: %u connection%s closed to make room: over %u handshakes at once",
			  n->hs_evicted, n->hs_evicted > 1 ? "s" : "", MAX_HANDSHAKES);
	n->hs_evicted = 0;
}

/* After each turn of the loop: stalled connections try again; replies go. */
static void nbd_tick(struct bsteer_fe *fe)
{
	struct nbd *n = fe->priv;
	__u64 now = bsteer_now_ns();
	__u32 i;

	/* Deadlines are looked at twice a second. */
	if (now - n->scanned_ns >= 500000000ull) {
		n->scanned_ns = now;
		drop_deaf_clients(n, now);
		expire_handshakes(n, now);
		nbd_tls_tick(n, now);
	}
	for (i = 0; n->nstalled && i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		if (!c->used || !c->stalled)
			continue;
		if (!bsteer_reqs_free(n->e) || !bsteer_slots_free(n->e))
			break;
		c->stalled = false;
		n->nstalled--;
		nbd_resume(n, c);
	}
	nbd_start_sends(n);
}

static void nbd_stop(struct bsteer_fe *fe)
{
	struct nbd *n = fe->priv;
	struct io_uring_sqe *sqe;
	int i;

	n->stopping = true;
	for (i = 0; i < NBD_MAX_LISTEN; i++) {
		if (!n->accept_armed[i])
			continue;
		bsteer_engine_reserve(n->e, 1);
		sqe = bsteer_engine_sqe(n->e);
		if (!sqe)
			continue;
		io_uring_prep_cancel64(sqe, nbd_ud(n, UD_ACCEPT, i), 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
	for (i = 0; i < NBD_MAX_LISTEN; i++) {
		if (!n->accept_wait[i])
			continue;
		bsteer_engine_reserve(n->e, 1);
		sqe = bsteer_engine_sqe(n->e);
		if (!sqe)
			continue;
		io_uring_prep_timeout_remove(sqe, nbd_ud(n, UD_ACCEPT_WAIT, i), 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
	for (i = 0; i < HS_TABLE; i++)
		if (n->hs[i])
			hs_kill(n, n->hs[i]);
	for (i = 0; i < MAX_CONNS; i++)
		if (n->conns[i].used)
			nbd_conn_fail(n, &n->conns[i], NULL);
	nbd_tls_stop(n);
}

static bool nbd_idle(struct bsteer_fe *fe)
{
	struct nbd *n = fe->priv;
	int i;

	for (i = 0; i < NBD_MAX_LISTEN; i++)
		if (n->accept_armed[i] || n->accept_wait[i])
			return false;
	if (n->nhs || n->ntls)
		return false;
	for (i = 0; i < MAX_CONNS; i++)
		if (n->conns[i].used)
			return false;
	return true;
}

static void nbd_fini(struct bsteer_fe *fe)
{
	struct nbd *n = fe->priv;
	int i;

	if (!n)
		return;
	/* The streams go last, at once: nobody closes them first. */
	for (i = 0; i < HS_TABLE; i++)
		if (n->hs[i]) {
			if (n->hs[i]->tls)
				n->hs[i]->fd = -1;
			n->hs[i]->tls = NULL;
			hs_free(n, n->hs[i]);
		}
	for (i = 0; i < MAX_CONNS; i++)
		if (n->conns[i].used) {
			if (n->conns[i].tls)
				n->conns[i].fd = -1;
			n->conns[i].tls = NULL;
			conn_free(n, &n->conns[i]);
		}
	nbd_tls_fini(n);
	nbd_pools_free(n);
	free(n->ri);
	free(n);
	fe->priv = NULL;
}

static const void *nbd_parser(size_t *sz)
{
	return nbd_bpf__elf_bytes(sz);
}

static const char *const nbd_counters[] = {
	[NBD_C_CONNS_OPEN]	= "connections_open",
	[NBD_C_CONNS_TOTAL]	= "connections_total",
	[NBD_C_CONNS_CLOSED]	= "connections_closed",
	[NBD_C_READS]		= "client_reads",
	[NBD_C_WRITES]		= "client_writes",
	[NBD_C_FLUSHES]		= "client_flushes",
	[NBD_C_TRIMS]		= "client_trims",
	[NBD_C_ZEROES]		= "client_write_zeroes",
	[NBD_C_OTHER]		= "client_other",
	[NBD_C_ERRORS]		= "client_errors",
	[NBD_C_BYTES_READ]	= "client_bytes_read",
	[NBD_C_BYTES_WRITTEN]	= "client_bytes_written",
	[NBD_C_SENDV]		= "vectored_sends",
	[NBD_C_SEND_BATCHED]	= "replies_batched",
	[NBD_C_HS_OPEN]		= "handshakes_open",
	[NBD_C_HS_TIMEOUTS]	= "handshakes_timed_out",
	[NBD_C_TLS_OPEN]	= "tls_sessions_open",
	[NBD_C_TLS_TOTAL]	= "tls_sessions_total",
	[NBD_C_TLS_FAILED]	= "tls_handshakes_unfinished",
	[NBD_C_TLS_DECRYPTED]	= "tls_bytes_decrypted_in_place",
	[NBD_C_TLS_ENCRYPTED]	= "tls_bytes_encrypted_in_place",
	NULL,
};

const struct bsteer_frontend_ops nbd_frontend = {
	.name = "nbd",
	.parser = nbd_parser,
	.counters = nbd_counters,
	.hdr_entries = MAX_CONNS,
	.pipes = true,
	.setup = nbd_setup,
	.teardown = nbd_teardown,
	.ready = nbd_ready,
	.start = nbd_start,
	.cqe = nbd_cqe,
	.complete = nbd_complete,
	.op_done = nbd_op_done,
	.tick = nbd_tick,
	.stop = nbd_stop,
	.idle = nbd_idle,
	.fini = nbd_fini,
};
