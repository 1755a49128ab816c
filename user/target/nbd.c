// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The NBD target: an export on another NBD server, named by a URI
 *
 *   nbd://HOST[:PORT][/EXPORT]          TCP (port 10809 by default)
 *   nbd+unix:///EXPORT?socket=PATH      a unix socket
 *
 * This file connects and runs the fixed-newstyle handshake (blocking, with
 * a timeout). What follows the handshake, the requests and replies, runs on
 * the worker's ring (nbd_client.c). Each worker connects on its own.
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
#include "target/nbd.h"
#include "wire/nbd_wire.h"
#include "wire/tls_tunnel.h"

#define NBD_PORT		"10809"
#define CONNECT_TIMEOUT_S	10
#define MAX_REPLY		4096

static bool nbd_match(const char *spec)
{
	return !strncmp(spec, "nbd://", 6) || !strncmp(spec, "nbd+unix://", 11) ||
	       !strncmp(spec, "nbds://", 7) || !strncmp(spec, "nbds+unix://", 12);
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

/* The query: socket=PATH (unix), and for nbds the TLS settings. */
static int parse_query(const char *q, struct nbd_uri *u)
{
	static const struct { const char *key; size_t off, len; bool tls; } keys[] = {
		{ "socket", offsetof(struct nbd_uri, socket), sizeof(u->socket), false },
		{ "tls-certificates", offsetof(struct nbd_uri, tls_certs), sizeof(u->tls_certs), true },
		{ "tls-psk-file", offsetof(struct nbd_uri, tls_psk), sizeof(u->tls_psk), true },
		{ "tls-hostname", offsetof(struct nbd_uri, tls_hostname), sizeof(u->tls_hostname), true },
	};

	while (*q) {
		const char *amp = strchr(q, '&'), *eq = strchr(q, '=');
		size_t n = amp ? (size_t)(amp - q) : strlen(q), k;

		if (!eq || eq > q + n)
			return -EINVAL;
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (strlen(keys[k].key) == (size_t)(eq - q) &&
			    !strncmp(q, keys[k].key, eq - q))
				break;
		if (k == sizeof(keys) / sizeof(keys[0]) || (keys[k].tls && !u->tls) ||
		    unescape(eq + 1, q + n - eq - 1, (char *)u + keys[k].off, keys[k].len))
			return -EINVAL;
		q += n + !!amp;
	}
	return 0;
}

/* [USER@] before the host (or before the path, for unix). */
static const char *parse_user(const char *p, struct nbd_uri *u)
{
	const char *at = strchr(p, '@'), *end = p + strcspn(p, "/?");

	if (!at || at > end)
		return p;
	if (unescape(p, at - p, u->user, sizeof(u->user)))
		return NULL;
	return at + 1;
}

static int parse_uri(const char *spec, struct nbd_uri *u)
{
	const char *p, *slash, *q;

	memset(u, 0, sizeof(*u));
	snprintf(u->port, sizeof(u->port), "%s", NBD_PORT);
	u->tls = !strncmp(spec, "nbds", 4);
	p = spec + (u->tls ? 4 : 3);
	if (!strncmp(p, "+unix://", 8)) {
		u->local = true;
		p = parse_user(p + 8, u);
		if (!p || (*p && *p != '/'))
			return -EINVAL;		/* no host part for unix */
		q = strchr(p, '?');
		if (!q || unescape(p + (*p == '/'), q - p - (*p == '/'), u->export,
				   sizeof(u->export)) || parse_query(q + 1, u) || !u->socket[0])
			return -EINVAL;
		return 0;
	}
	if (strncmp(p, "://", 3))
		return -EINVAL;
	p = parse_user(p + 3, u);
	if (!p)
		return -EINVAL;
	slash = p + strcspn(p, "/?");
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
	q = strchr(slash, '?');
	if (q && (parse_query(q + 1, u) || u->socket[0]))
		return -EINVAL;		/* socket= is for unix */
	if (*slash == '/' && unescape(slash + 1, (q ? q : slash + strlen(slash)) - slash - 1,
				      u->export, sizeof(u->export)))
		return -EINVAL;
	return 0;
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

static int send_opt(const struct nbd_link *l, __u32 opt, const void *data, __u32 len)
{
	unsigned char h[NBD_OPT_HDR_LEN];
	int err;

	nbd_opt_header(h, opt, len);
	err = nbd_link_xfer(l, h, sizeof(h), true);
	return err ?: (len ? nbd_link_xfer(l, (void *)data, len, true) : 0);
}

/* One option reply: its type and up to MAX_REPLY bytes of data. */
static int recv_rep(const struct nbd_link *l, __u32 opt, __u32 *type, unsigned char *data,
		    __u32 *len)
{
	unsigned char h[NBD_OPT_REPLY_HDR_LEN];
	int err = nbd_link_xfer(l, h, sizeof(h), false);

	if (err)
		return err;
	if (nbd_get64(h) != NBD_OPT_REPLY_MAGIC || nbd_get32(h + 8) != opt)
		return -EPROTO;
	*type = nbd_get32(h + 12);
	*len = nbd_get32(h + 16);
	if (*len > MAX_REPLY)
		return -EPROTO;
	return nbd_link_xfer(l, data, *len, false);
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

/* One NBD_REP_INFO of NBD_OPT_GO: the export's size and flags, block sizes. */
static bool rep_info(const unsigned char *rep, __u32 len, struct nbd_leg *info)
{
	if (len >= 12 && nbd_get16(rep) == NBD_INFO_EXPORT) {
		info->size = nbd_get64(rep + 2);
		info->flags = nbd_get16(rep + 10);
		return true;
	}
	if (len >= 14 && nbd_get16(rep) == NBD_INFO_BLOCK_SIZE) {
		info->min_block = nbd_get32(rep + 2);
		info->max_block = nbd_get32(rep + 10);
	}
	return false;
}

/* NBD_OPT_GO; returns -EOPNOTSUPP if the server predates it. */
static int opt_go(const struct nbd_link *l, const char *export, struct nbd_leg *info,
		  char *why, size_t wlen)
{
	unsigned char buf[4 + 256 + 2 + 2], rep[MAX_REPLY];
	__u32 n = strlen(export), type, len;
	bool have_export = false;
	int err;

	nbd_put32(buf, n);
	memcpy(buf + 4, export, n);
	nbd_put16(buf + 4 + n, 1);	/* one info request: block sizes */
	nbd_put16(buf + 6 + n, NBD_INFO_BLOCK_SIZE);
	err = send_opt(l, NBD_OPT_GO, buf, n + 8);
	while (!err) {
		err = recv_rep(l, NBD_OPT_GO, &type, rep, &len);
		if (err)
			break;
		if (type == NBD_REP_ACK)
			return have_export ? 0 : -EPROTO;
		if (type == NBD_REP_ERR_UNSUP)
			return -EOPNOTSUPP;
		if (NBD_REP_IS_ERR(type)) {
			snprintf(why, wlen, "export '%s': %s", export, rep_err(type));
			return (type & 0x7fffffff) == 6 ? -ENOENT : -EACCES;
		}
		if (type == NBD_REP_INFO)
			have_export |= rep_info(rep, len, info);
	}
	return err;
}

/* The old way: NBD_OPT_EXPORT_NAME, which has no error reply. */
static int opt_export_name(const struct nbd_link *l, const char *export, bool zeroes,
			   struct nbd_leg *info)
{
	unsigned char rep[10 + 124];
	int err = send_opt(l, NBD_OPT_EXPORT_NAME, export, strlen(export));

	err = err ?: nbd_link_xfer(l, rep, 10 + (zeroes ? 124 : 0), false);
	if (err)
		return err == -ECONNRESET ? -ENOENT : err;
	info->size = nbd_get64(rep);
	info->flags = nbd_get16(rep + 8);
	return 0;
}

/* STARTTLS, then TLS on the socket: the options that follow go over it. */
static int starttls(struct nbd_link *l, const struct nbd_uri *u, char *why, size_t wlen)
{
	unsigned char rep[MAX_REPLY];
	__u32 type, len;
	int err = send_opt(l, NBD_OPT_STARTTLS, NULL, 0) ?:
		  recv_rep(l, NBD_OPT_STARTTLS, &type, rep, &len);

	if (err)
		return err;
	if (type != NBD_REP_ACK) {
		snprintf(why, wlen, "STARTTLS: %s", NBD_REP_IS_ERR(type) ? rep_err(type) :
			 "an unexpected reply");
		return -EPROTO;
	}
	return nbd_tls_client(l, u, why, wlen);
}

static int handshake(struct nbd_link *l, const struct nbd_uri *u, struct nbd_leg *info,
		     char *why, size_t wlen)
{
	unsigned char h[18], c[4];
	__u16 sflags;
	int err = nbd_link_xfer(l, h, sizeof(h), false);

	if (err) {
		/* qemu-nbd, unless --shared=N, greets one client at a time. */
		snprintf(why, wlen, "no NBD greeting: %s%s", strerror(-err),
			 err == -ETIMEDOUT ? " (a server that takes one client at a time, "
			 "such as qemu-nbd without --shared=N, answers only the first "
			 "of bsteer's connections: one per worker thread)" : "");
		return err;
	}
	if (nbd_get64(h) != NBD_MAGIC) {
		snprintf(why, wlen, "not an NBD server");
		return -EPROTO;
	}
	sflags = nbd_get16(h + 16);
	if (nbd_get64(h + 8) != NBD_IHAVEOPT || !(sflags & NBD_FLAG_FIXED_NEWSTYLE)) {
		snprintf(why, wlen, "the server does not speak fixed newstyle NBD");
		return -EPROTO;
	}
	nbd_put32(c, NBD_FLAG_FIXED_NEWSTYLE | (sflags & NBD_FLAG_NO_ZEROES));
	err = nbd_link_xfer(l, c, 4, true);
	if (!err && u->tls)
		err = starttls(l, u, why, wlen);
	if (err) {
		if (!*why)
			snprintf(why, wlen, "handshake failed: %s", strerror(-err));
		return err;
	}
	err = opt_go(l, u->export, info, why, wlen);
	if (err == -EOPNOTSUPP)
		err = opt_export_name(l, u->export, !(sflags & NBD_FLAG_NO_ZEROES), info);
	if (err == -EACCES && !u->tls && strstr(why, "TLS required"))
		snprintf(why, wlen, "the server requires TLS: use nbds:// with ?tls-certificates=DIR or ?tls-psk-file=FILE");
	if (err && !*why)
		snprintf(why, wlen, "handshake failed: %s", strerror(-err));
	return err;
}

/*
 * Connect and shake hands, blocking: @l gets the socket (and the TLS
 * session, for nbds), its sends and receives bounded by @timeout_s (0:
 * none). 0, or -errno with the reason in bsteer_errbuf().
 */
int nbd_dial(const char *spec, bool rdonly, struct nbd_leg *info, struct nbd_link *l,
	     int timeout_s)
{
	struct nbd_uri u;
	char why[512] = "";
	int err;

	memset(info, 0, sizeof(*info));
	*l = (struct nbd_link){ .fd = -1 };
	if (parse_uri(spec, &u)) {
		bsteer_set_err("bad NBD URI '%s' (nbd[s]://HOST[:PORT][/EXPORT][?tls-certificates=DIR|tls-psk-file=FILE] or nbd[s]+unix:///EXPORT?socket=PATH[&...])",
			       spec);
		return -EINVAL;
	}
	if (u.tls && !u.tls_certs[0] && !u.tls_psk[0]) {
		bsteer_set_err("%s: nbds:// needs ?tls-certificates=DIR or ?tls-psk-file=FILE", spec);
		return -EINVAL;
	}
	l->fd = dial(&u, why, sizeof(why));
	if (l->fd < 0) {
		bsteer_set_err("%s: %s", spec, why);
		return l->fd;
	}
	err = handshake(l, &u, info, why, sizeof(why));
	if (!err && !rdonly && (info->flags & NBD_FLAG_READ_ONLY)) {
		snprintf(why, sizeof(why), "the upstream export is read-only (add ,ro to the export)");
		err = -EROFS;
	}
	if (!err && !info->size) {
		snprintf(why, sizeof(why), "the upstream export is empty");
		err = -EINVAL;
	}
	if (!err)
		err = set_timeout(l->fd, timeout_s);
	if (err) {
		bsteer_set_err("%s: %s", spec, *why ? why : strerror(-err));
		nbd_link_close(l);
		return err;
	}
	return 0;
}

void nbd_link_close(struct nbd_link *l)
{
	if (l->ses)
		gnutls_deinit(l->ses);
	if (l->fd >= 0)
		close(l->fd);
	*l = (struct nbd_link){ .fd = -1 };
}

int nbd_connect(const char *spec, bool rdonly, struct nbd_leg *info)
{
	struct nbd_link l;
	int err, app;

	/* From here on the ring drives it, and waits as long as it likes. */
	err = nbd_dial(spec, rdonly, info, &l, 0);
	if (err)
		return err;
	if (!l.ses)
		return l.fd;
	/* nbds: the ring gets the plain end of a tunnel that owns the socket. */
	info->tun = tls_tunnel_new(l.ses, l.fd, true, &app);
	if (!info->tun) {
		bsteer_set_err("%s: no memory or file for the TLS tunnel", spec);
		return -ENOMEM;
	}
	return app;
}

/* ---- the ops table ---- */

static int nbd_open(struct bsteer_leg *leg)
{
	struct nbd_leg *info = calloc(1, sizeof(*info));
	int fd;

	if (!info)
		return -ENOMEM;
	bsteer_set_err("%s", "");
	fd = nbd_connect(leg->spec, leg->rdonly, info);
	if (fd < 0) {
		free(info);
		return fd;
	}
	leg->fd = fd;
	leg->size = info->size;
	leg->min_block = info->min_block;
	leg->priv = info;
	return 0;
}

static void nbd_close(struct bsteer_leg *leg)
{
	struct nbd_leg *info = leg->priv;

	if (leg->fd >= 0)
		close(leg->fd);
	leg->fd = -1;
	if (info)
		tls_tunnel_free(info->tun);	/* never taken by a ring */
	free(leg->priv);
	leg->priv = NULL;
}

/*
 * A leg whose connection died: connect again, and put the new connection
 * in the old one's place. A connection that still works is kept (the
 * server's errors passed).
 */
static int nbd_reopen(struct bsteer_engine *e, __u32 t, const struct bsteer_leg *leg,
		      __u64 want, int *own_fd)
{
	struct bsteer_leg fresh = { .spec = leg->spec, .ops = leg->ops, .fd = -1 };
	int err;

	if (nbd_client_alive(e, t))
		return 0;
	err = nbd_open(&fresh);
	if (err) {
		bsteer_set_err("cannot open the leg again");
		return err;
	}
	if (fresh.size < want) {
		nbd_close(&fresh);
		bsteer_set_err("the leg is smaller than the export");
		return -ENOSPC;
	}
	err = bsteer_engine_target_file(e, t, fresh.fd);
	if (!err)
		err = nbd_client_attach(e, t, &fresh);
	if (err) {
		nbd_close(&fresh);
		bsteer_set_err("cannot put the new file in the ring");
		return err;
	}
	free(fresh.priv);
	*own_fd = fresh.fd;
	return 0;
}

const struct bsteer_target_ops nbd_target = {
	.name = "nbd",
	.match = nbd_match,
	.open = nbd_open,
	.close = nbd_close,
	.attach = nbd_client_attach,
	.submit = nbd_client_submit,
	.cqe = nbd_client_cqe,
	.kick = nbd_client_kick,
	.waiting = nbd_client_waiting,
	.reopen = nbd_reopen,
	.fail = nbd_client_fail,
	.alive = nbd_client_alive,
	.detach = nbd_client_detach,
	.cancel = nbd_client_cancel,
	.per_worker = true,
};
