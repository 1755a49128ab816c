// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * NBD negotiation (fixed newstyle), on a connected socket: the greeting,
 * then options until the client picks an export (GO, EXPORT_NAME) or
 * leaves. Blocking, with a timeout, right after accept.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "frontend/nbd_priv.h"

static __u16 export_flags(struct bsteer_export *ex)
{
	return NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
	       (ex->no_zeroes ? 0 : NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO) |
	       NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN |
	       (ex->rdonly ? NBD_FLAG_READ_ONLY : 0);
}

static int opt_reply(int fd, __u32 opt, __u32 type, const void *data, __u32 len)
{
	unsigned char h[NBD_OPT_REPLY_HDR_LEN];

	nbd_opt_reply_header(h, opt, type, len);
	if (nbd_xfer(fd, h, sizeof(h), true))
		return -EIO;
	return len && nbd_xfer(fd, (void *)data, len, true) ? -EIO : 0;
}

static int opt_error(int fd, __u32 opt, __u32 type, const char *msg)
{
	return opt_reply(fd, opt, type, msg, strlen(msg));
}

static int send_info(struct nbd *n, int fd, __u32 opt, __u16 type,
		     struct bsteer_export *ex)
{
	unsigned char b[2 + 128];
	size_t len = 2;

	nbd_put16(b, type);
	switch (type) {
	case NBD_INFO_EXPORT:
		nbd_put64(b + 2, ex->size);
		nbd_put16(b + 10, export_flags(ex));
		len = 12;
		break;
	case NBD_INFO_NAME:
		len += strlen(ex->name);
		memcpy(b + 2, ex->name, len - 2);
		break;
	case NBD_INFO_DESCRIPTION:
		len += strlen(ex->description);
		memcpy(b + 2, ex->description, len - 2);
		break;
	case NBD_INFO_BLOCK_SIZE:
		nbd_put32(b + 2, MIN_BLOCK);
		nbd_put32(b + 6, 4096);
		nbd_put32(b + 10, nbd_max_io(n, ex));
		len = 14;
		break;
	default:
		return 0;
	}
	return opt_reply(fd, opt, NBD_REP_INFO, b, len);
}

/*
 * The export name that opens INFO, GO and the META_CONTEXT options: a
 * 32-bit length, then the name, with at least @tail bytes after it.
 * Returns the bytes consumed, or 0 if the lengths do not add up.
 */
static __u32 opt_export_name(const unsigned char *d, __u32 len, __u32 tail,
			     char *name)
{
	__u32 nlen;

	if (len < 4 + tail)
		return 0;
	nlen = nbd_get32(d);
	if (nlen > len - 4 - tail)
		return 0;
	memcpy(name, d + 4, nlen);
	name[nlen] = 0;
	return 4 + nlen;
}

/* NBD_OPT_INFO / NBD_OPT_GO. Returns 1 to enter transmission (GO), 0, or -EIO. */
static int opt_info_go(struct nbd *n, int fd, __u32 opt,
		       const unsigned char *d, __u32 len, struct bsteer_export **out)
{
	char name[MAX_OPT_LEN + 1];
	bool want_name = false, want_desc = false;
	struct bsteer_export *ex;
	__u32 nlen;
	__u16 ninfo, i;

	nlen = opt_export_name(d, len, 2, name);
	if (!nlen)
		return opt_error(fd, opt, NBD_REP_ERR_INVALID, "bad name length");
	ninfo = nbd_get16(d + nlen);
	if (len != nlen + 2 + 2u * ninfo)
		return opt_error(fd, opt, NBD_REP_ERR_INVALID, "bad option length");
	for (i = 0; i < ninfo; i++) {
		__u16 t = nbd_get16(d + nlen + 2 + 2 * i);

		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}
	ex = bsteer_export_find(n->s, *name ? name : n->s->exports[0].name);
	if (!ex)
		return opt_error(fd, opt, NBD_REP_ERR_UNKNOWN, "no such export");
	if (send_info(n, fd, opt, NBD_INFO_EXPORT, ex) ||
	    (want_name && send_info(n, fd, opt, NBD_INFO_NAME, ex)) ||
	    (want_desc && send_info(n, fd, opt, NBD_INFO_DESCRIPTION, ex)) ||
	    send_info(n, fd, opt, NBD_INFO_BLOCK_SIZE, ex) ||
	    opt_reply(fd, opt, NBD_REP_ACK, NULL, 0))
		return -EIO;
	if (opt != NBD_OPT_GO)
		return 0;
	*out = ex;
	return 1;
}

/* Does INFO/GO data @d ask for NBD_INFO_BLOCK_SIZE? (It is well formed.) */
static bool asks_block_sizes(const unsigned char *d)
{
	__u32 pos = 4 + nbd_get32(d), i;

	for (i = 0; i < nbd_get16(d + pos); i++)
		if (nbd_get16(d + pos + 2 + 2 * i) == NBD_INFO_BLOCK_SIZE)
			return true;
	return false;
}

/*
 * LIST/SET_META_CONTEXT: export name, then queries. The only context is
 * base:allocation; "base:" lists it too. Returns 0 or -EIO.
 */
static int opt_meta(struct nbd *n, int fd, __u32 opt,
		    const unsigned char *d, __u32 len, struct nego *ng)
{
	static const char ctx[] = META_ALLOC;
	unsigned char rep[4 + sizeof(ctx)];
	__u32 nlen, nq, q, qlen, pos;
	bool match = false;
	char name[MAX_OPT_LEN + 1];

	if (opt == NBD_OPT_SET_META_CONTEXT)
		ng->meta_alloc = false;	/* replaced, even on failure */
	if (!ng->structured)
		return opt_error(fd, opt, NBD_REP_ERR_INVALID,
				 "negotiate structured replies first");
	nlen = opt_export_name(d, len, 4, name);
	if (!nlen)
		return opt_error(fd, opt, NBD_REP_ERR_INVALID, "bad name length");
	nq = nbd_get32(d + nlen);
	pos = nlen + 4;
	for (q = 0; q < nq; q++) {
		if (len - pos < 4)
			return opt_error(fd, opt, NBD_REP_ERR_INVALID, "truncated query");
		qlen = nbd_get32(d + pos);
		pos += 4;
		if (qlen > len - pos)
			return opt_error(fd, opt, NBD_REP_ERR_INVALID, "bad query length");
		if ((qlen == strlen(ctx) && !memcmp(d + pos, ctx, qlen)) ||
		    (opt == NBD_OPT_LIST_META_CONTEXT && qlen == 5 &&
		     !memcmp(d + pos, "base:", 5)))
			match = true;
		pos += qlen;
	}
	if (pos != len)
		return opt_error(fd, opt, NBD_REP_ERR_INVALID, "bad option length");
	if (!bsteer_export_find(n->s, *name ? name : n->s->exports[0].name))
		return opt_error(fd, opt, NBD_REP_ERR_UNKNOWN, "no such export");
	if (opt == NBD_OPT_LIST_META_CONTEXT && !nq)
		match = true;
	if (match) {
		nbd_put32(rep, opt == NBD_OPT_SET_META_CONTEXT ? META_ALLOC_ID : 0);
		memcpy(rep + 4, ctx, sizeof(ctx) - 1);
		if (opt_reply(fd, opt, NBD_REP_META_CONTEXT, rep, 4 + sizeof(ctx) - 1))
			return -EIO;
		if (opt == NBD_OPT_SET_META_CONTEXT) {
			ng->meta_alloc = true;
			snprintf(ng->meta_export, sizeof(ng->meta_export), "%s",
				 *name ? name : n->s->exports[0].name);
		}
	}
	return opt_reply(fd, opt, NBD_REP_ACK, NULL, 0);
}

static int opt_list(struct nbd *n, int fd)
{
	unsigned char b[4 + 64];
	int i;

	for (i = 0; i < n->s->nexports; i++) {
		__u32 len = strlen(n->s->exports[i].name);

		nbd_put32(b, len);
		memcpy(b + 4, n->s->exports[i].name, len);
		if (opt_reply(fd, NBD_OPT_LIST, NBD_REP_SERVER, b, 4 + len))
			return -EIO;
	}
	return opt_reply(fd, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* The greeting, and the client's flags. 0, or -EIO to close. */
static int greet(struct nbd *n, int fd, __u32 *cflags)
{
	unsigned char hello[18], c[4];

	nbd_put64(hello, NBD_MAGIC);
	nbd_put64(hello + 8, NBD_IHAVEOPT);
	nbd_put16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (nbd_xfer(fd, hello, sizeof(hello), true) || nbd_xfer(fd, c, 4, false))
		return -EIO;
	*cflags = nbd_get32(c);
	if (*cflags & ~(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)) {
		serve_log(n->s, "nbd: client flags 0x%x not understood, closing", *cflags);
		return -EIO;
	}
	return 0;
}

/* The next option's header and data. 0, or -EIO to close. */
static int next_option(struct nbd *n, int fd, __u32 *opt, unsigned char *d,
		       __u32 *len)
{
	unsigned char oh[NBD_OPT_HDR_LEN];

	if (nbd_xfer(fd, oh, sizeof(oh), false))
		return -EIO;
	*opt = nbd_get32(oh + 8);
	*len = nbd_get32(oh + 12);
	if (nbd_get64(oh) != NBD_IHAVEOPT) {
		serve_log(n->s, "nbd: bad option magic, closing");
		return -EIO;
	}
	if (*len > MAX_OPT_LEN) {
		serve_log(n->s, "nbd: option %u of %u bytes is too long, closing",
			  *opt, *len);
		return -EIO;
	}
	return nbd_xfer(fd, d, *len, false) ? -EIO : 0;
}

/* NBD_OPT_EXPORT_NAME, the old way in: no error reply, no going back. */
static struct bsteer_export *opt_export_name_go(struct nbd *n, int fd,
						const unsigned char *d, __u32 len,
						__u32 cflags)
{
	static const unsigned char zeroes[124];
	char name[MAX_OPT_LEN + 1];
	struct bsteer_export *ex;
	unsigned char r[10];

	memcpy(name, d, len);
	name[len] = 0;
	ex = bsteer_export_find(n->s, *name ? name : n->s->exports[0].name);
	if (!ex)	/* this option has no error reply */
		return NULL;
	nbd_put64(r, ex->size);
	nbd_put16(r + 8, export_flags(ex));
	if (nbd_xfer(fd, r, sizeof(r), true))
		return NULL;
	/* NO_ZEROES is always offered, but a client may not take it. */
	if (!(cflags & NBD_FLAG_NO_ZEROES) &&
	    nbd_xfer(fd, (void *)zeroes, sizeof(zeroes), true))
		return NULL;
	return ex;
}

/* The whole negotiation. Returns the export to serve, or NULL to close. */
struct bsteer_export *nbd_negotiate_fd(struct nbd *n, int fd, struct nego *ng)
{
	unsigned char d[MAX_OPT_LEN];
	struct bsteer_export *ex = NULL;
	__u32 cflags, opt, len;
	int rc;

	if (greet(n, fd, &cflags))
		return NULL;
	for (;;) {
		if (next_option(n, fd, &opt, d, &len))
			return NULL;
		switch (opt) {
		case NBD_OPT_EXPORT_NAME:
			return opt_export_name_go(n, fd, d, len, cflags);
		case NBD_OPT_ABORT:
			opt_reply(fd, opt, NBD_REP_ACK, NULL, 0);
			return NULL;
		case NBD_OPT_LIST:
			rc = len ? opt_error(fd, opt, NBD_REP_ERR_INVALID, "no data expected") :
				   opt_list(n, fd);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			rc = opt_info_go(n, fd, opt, d, len, &ex);
			if (rc == 1) {
				/* A context chosen for another export does not apply. */
				if (strcmp(ng->meta_export, ex->name))
					ng->meta_alloc = false;
				ng->block_sizes = asks_block_sizes(d);
				return ex;
			}
			break;
		case NBD_OPT_STRUCTURED_REPLY:
			if (len) {
				rc = opt_error(fd, opt, NBD_REP_ERR_INVALID, "no data expected");
			} else {
				ng->structured = true;
				rc = opt_reply(fd, opt, NBD_REP_ACK, NULL, 0);
			}
			break;
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			rc = opt_meta(n, fd, opt, d, len, ng);
			break;
		default:
			rc = opt_error(fd, opt, NBD_REP_ERR_UNSUP, "option not supported");
		}
		if (rc < 0)
			return NULL;
	}
}

struct bsteer_export *nbd_negotiate(struct bsteer_server *s, __u32 slots, int fd,
				    bool *structured)
{
	struct nego *ng = calloc(1, sizeof(*ng));
	struct nbd *n = calloc(1, sizeof(*n));
	struct bsteer_export *ex = NULL;

	if (ng && n) {
		n->s = s;
		n->in = s->in;
		n->nslots = slots;
		ex = nbd_negotiate_fd(n, fd, ng);
		*structured = ng->structured;
	}
	free(ng);
	free(n);
	return ex;
}
