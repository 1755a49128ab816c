// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The NBD backend: a target on another NBD server, named by a URI
 *
 *   nbd://HOST[:PORT][/EXPORT]          TCP (port 10809 by default)
 *   nbd+unix:///EXPORT?socket=PATH      a unix socket
 *
 * This file connects and runs the fixed-newstyle handshake (blocking, with
 * a timeout). What follows the handshake, the requests and replies, runs on
 * the worker's ring (user/upstream.c). Each worker connects on its own.
 */
#include <endian.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include "serve.h"
#include "nbd_proto.h"

#define NBD_PORT		"10809"
#define CONNECT_TIMEOUT_S	10
#define MAX_REPLY		4096

struct nbd_uri {
	char host[256];
	char port[16];
	char export[256];
	char socket[108];
	bool local;	/* nbd+unix */
};

static bool nbd_match(const char *spec)
{
	return !strncmp(spec, "nbd://", 6) || !strncmp(spec, "nbd+unix://", 11);
}

/* %XX escapes in an export name or socket path. */
static int unescape(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '%') {
			unsigned v;

			if (i + 2 >= n || sscanf(s + i + 1, "%2x", &v) != 1)
				return -EINVAL;
			c = (char)v;
			i += 2;
		}
		if (k + 1 >= outlen)
			return -ENAMETOOLONG;
		out[k++] = c;
	}
	out[k] = 0;
	return 0;
}

static int parse_uri(const char *spec, struct nbd_uri *u)
{
	const char *p, *slash, *q;

	memset(u, 0, sizeof(*u));
	snprintf(u->port, sizeof(u->port), "%s", NBD_PORT);
	if (!strncmp(spec, "nbd+unix://", 11)) {
		u->local = true;
		p = spec + 11;
		if (*p && *p != '/')
			return -EINVAL;		/* no host part for unix */
		q = strchr(p, '?');
		if (!q || strncmp(q, "?socket=", 8) || !q[8])
			return -EINVAL;
		if (unescape(p + (*p == '/'), q - p - (*p == '/'), u->export,
			     sizeof(u->export)) ||
		    unescape(q + 8, strlen(q + 8), u->socket, sizeof(u->socket)))
			return -EINVAL;
		return 0;
	}
	p = spec + 6;
	slash = strchr(p, '/');
	if (!slash)
		slash = p + strlen(p);
	if (*p == '[') {		/* [v6 address] */
		const char *end = memchr(p, ']', slash - p);

		if (!end || (size_t)(end - p - 1) >= sizeof(u->host))
			return -EINVAL;
		memcpy(u->host, p + 1, end - p - 1);
		p = end + 1;
		if (p < slash && *p != ':')
			return -EINVAL;
	} else {
		const char *colon = memchr(p, ':', slash - p);
		const char *hend = colon ? colon : slash;

		if ((size_t)(hend - p) >= sizeof(u->host))
			return -EINVAL;
		memcpy(u->host, p, hend - p);
		p = hend;
	}
	if (!u->host[0])
		return -EINVAL;
	if (p < slash) {		/* :PORT */
		size_t n = slash - p - 1;

		if (!n || n >= sizeof(u->port) || strspn(p + 1, "0123456789") < n)
			return -EINVAL;
		memcpy(u->port, p + 1, n);
		u->port[n] = 0;
	}
	if (*slash && strchr(slash, '?'))
		return -EINVAL;		/* no query for TCP */
	return *slash ? unescape(slash + 1, strlen(slash + 1), u->export,
				 sizeof(u->export)) : 0;
}

static int set_timeout(int fd, int secs)
{
	struct timeval tv = { .tv_sec = secs };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return -errno;
	return 0;
}

static int dial(const struct nbd_uri *u, char *why, size_t wlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, err, one = 1;

	if (u->local) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", u->socket);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		set_timeout(fd, CONNECT_TIMEOUT_S);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			err = -errno;
			snprintf(why, wlen, "cannot connect to %s: %s", u->socket,
				 strerror(-err));
			close(fd);
			return err;
		}
		return fd;
	}
	err = getaddrinfo(u->host, u->port, &hints, &res);
	if (err) {
		snprintf(why, wlen, "cannot resolve %s: %s", u->host,
			 gai_strerror(err));
		return -EHOSTUNREACH;
	}
	err = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		set_timeout(fd, CONNECT_TIMEOUT_S);
		if (!connect(fd, ai->ai_addr, ai->ai_addrlen))
			break;
		err = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, wlen, "cannot connect to %s port %s: %s", u->host,
			 u->port, strerror(-err));
		return err;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int xfer(int fd, void *buf, size_t len, bool out)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = out ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL) :
				  recv(fd, (char *)buf + done, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (!n)
			return -ECONNRESET;
		done += n;
	}
	return 0;
}

static int send_opt(int fd, __u32 opt, const void *data, __u32 len)
{
	unsigned char h[16];
	__u64 magic = htobe64(IHAVEOPT);
	__u32 v;
	int err;

	memcpy(h, &magic, 8);
	v = htobe32(opt);
	memcpy(h + 8, &v, 4);
	v = htobe32(len);
	memcpy(h + 12, &v, 4);
	err = xfer(fd, h, sizeof(h), true);
	return err ?: (len ? xfer(fd, (void *)data, len, true) : 0);
}

/* One option reply: its type and up to MAX_REPLY bytes of data. */
static int recv_rep(int fd, __u32 opt, __u32 *type, unsigned char *data,
		    __u32 *len)
{
	unsigned char h[20];
	__u64 magic;
	__u32 v;
	int err = xfer(fd, h, sizeof(h), false);

	if (err)
		return err;
	memcpy(&magic, h, 8);
	memcpy(&v, h + 8, 4);
	if (be64toh(magic) != REPLY_MAGIC_OPT || be32toh(v) != opt)
		return -EPROTO;
	memcpy(&v, h + 12, 4);
	*type = be32toh(v);
	memcpy(&v, h + 16, 4);
	*len = be32toh(v);
	if (*len > MAX_REPLY)
		return -EPROTO;
	return xfer(fd, data, *len, false);
}

static const char *rep_err(__u32 type)
{
	switch (type & 0x7fffffff) {
	case 1: return "the server does not support it";
	case 2: return "refused by the server's policy";
	case 3: return "invalid";
	case 4: return "not supported on the server's platform";
	case 5: return "TLS required";
	case 6: return "no such export";
	case 7: return "the server is shutting down";
	case 8: return "block size negotiation required";
	case 9: return "request too big";
	default: return "error";
	}
}

/* NBD_OPT_GO; returns -EOPNOTSUPP if the server predates it. */
static int opt_go(int fd, const char *export, struct bsteer_nbd_info *info,
		  char *why, size_t wlen)
{
	unsigned char buf[4 + 256 + 2 + 2], rep[MAX_REPLY];
	__u32 n = strlen(export), v, type, len;
	__u16 w;
	bool have_export = false;
	int err;

	v = htobe32(n);
	memcpy(buf, &v, 4);
	memcpy(buf + 4, export, n);
	w = htobe16(1);			/* one info request: block sizes */
	memcpy(buf + 4 + n, &w, 2);
	w = htobe16(INFO_BLOCK_SIZE);
	memcpy(buf + 6 + n, &w, 2);
	err = send_opt(fd, OPT_GO, buf, n + 8);
	while (!err) {
		err = recv_rep(fd, OPT_GO, &type, rep, &len);
		if (err)
			break;
		if (type == REP_ACK)
			return have_export ? 0 : -EPROTO;
		if (type == REP_ERR_UNSUP)
			return -EOPNOTSUPP;
		if (REP_IS_ERR(type)) {
			snprintf(why, wlen, "export '%s': %s", export, rep_err(type));
			return (type & 0x7fffffff) == 6 ? -ENOENT : -EACCES;
		}
		if (type != REP_INFO || len < 2)
			continue;
		memcpy(&w, rep, 2);
		if (be16toh(w) == INFO_EXPORT && len >= 12) {
			__u64 size;

			memcpy(&size, rep + 2, 8);
			memcpy(&w, rep + 10, 2);
			info->size = be64toh(size);
			info->flags = be16toh(w);
			have_export = true;
		} else if (be16toh(w) == INFO_BLOCK_SIZE && len >= 14) {
			memcpy(&v, rep + 2, 4);
			info->min_block = be32toh(v);
			memcpy(&v, rep + 10, 4);
			info->max_block = be32toh(v);
		}
	}
	return err;
}

/* The old way: NBD_OPT_EXPORT_NAME, which has no error reply. */
static int opt_export_name(int fd, const char *export, bool zeroes,
			   struct bsteer_nbd_info *info)
{
	unsigned char rep[10 + 124];
	__u64 size;
	__u16 w;
	int err = send_opt(fd, OPT_EXPORT_NAME, export, strlen(export));

	err = err ?: xfer(fd, rep, 10 + (zeroes ? 124 : 0), false);
	if (err)
		return err == -ECONNRESET ? -ENOENT : err;
	memcpy(&size, rep, 8);
	memcpy(&w, rep + 8, 2);
	info->size = be64toh(size);
	info->flags = be16toh(w);
	return 0;
}

static int handshake(int fd, const char *export, struct bsteer_nbd_info *info,
		     char *why, size_t wlen)
{
	unsigned char h[18];
	__u64 magic;
	__u16 sflags;
	__u32 cflags;
	int err = xfer(fd, h, sizeof(h), false);

	if (err) {
		snprintf(why, wlen, "no NBD greeting: %s", strerror(-err));
		return err;
	}
	memcpy(&magic, h, 8);
	if (be64toh(magic) != NBDMAGIC) {
		snprintf(why, wlen, "not an NBD server");
		return -EPROTO;
	}
	memcpy(&magic, h + 8, 8);
	memcpy(&sflags, h + 16, 2);
	sflags = be16toh(sflags);
	if (be64toh(magic) != IHAVEOPT || !(sflags & FLAG_FIXED_NEWSTYLE)) {
		snprintf(why, wlen, "the server does not speak fixed newstyle NBD");
		return -EPROTO;
	}
	cflags = htobe32(FLAG_FIXED_NEWSTYLE | (sflags & FLAG_NO_ZEROES));
	err = xfer(fd, &cflags, 4, true);
	if (err)
		return err;
	err = opt_go(fd, export, info, why, wlen);
	if (err == -EOPNOTSUPP)
		err = opt_export_name(fd, export, !(sflags & FLAG_NO_ZEROES), info);
	if (err && !*why)
		snprintf(why, wlen, "handshake failed: %s", strerror(-err));
	return err;
}

static int nbd_connect(const char *spec, bool rdonly,
		       struct bsteer_nbd_info *info)
{
	struct nbd_uri u;
	char why[256] = "";
	int fd, err;

	memset(info, 0, sizeof(*info));
	if (parse_uri(spec, &u)) {
		bsteer_set_err("bad NBD URI '%s' (nbd://HOST[:PORT][/EXPORT] or nbd+unix:///EXPORT?socket=PATH)",
			       spec);
		return -EINVAL;
	}
	fd = dial(&u, why, sizeof(why));
	if (fd < 0) {
		bsteer_set_err("%s: %s", spec, why);
		return fd;
	}
	err = handshake(fd, u.export, info, why, sizeof(why));
	if (!err && !rdonly && (info->flags & TF_READ_ONLY)) {
		snprintf(why, sizeof(why), "the upstream export is read-only (add ,ro to the export)");
		err = -EROFS;
	}
	if (!err && !info->size) {
		snprintf(why, sizeof(why), "the upstream export is empty");
		err = -EINVAL;
	}
	if (err) {
		bsteer_set_err("%s: %s", spec, why);
		close(fd);
		return err;
	}
	/* From here on the ring drives it, and waits as long as it likes. */
	set_timeout(fd, 0);
	return fd;
}

const struct bsteer_backend_ops nbd_backend = {
	.name = "nbd",
	.match = nbd_match,
	.connect = nbd_connect,
};
