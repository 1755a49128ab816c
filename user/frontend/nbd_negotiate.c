// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * NBD negotiation (fixed newstyle): the greeting, then options until the
 * client picks an export (GO, EXPORT_NAME) or leaves.
 *
 * A parser with no socket of its own: nbd_hs_want() says how many bytes
 * the next message has, the caller gathers exactly that many into in[]
 * (on the ring, one receive at a time, never blocking), and
 * nbd_hs_input() acts on it, appending replies to out[] for the caller to
 * send. An option longer than MAX_OPT_LEN gets ERR_TOO_BIG and its data
 * is drained in MAX_OPT_LEN pieces; the handshake goes on.
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

/* Append to the replies waiting to go. 0 or -ENOMEM. */
static int out_put(struct hs *h, const void *d, __u32 len)
{
	if (!len)
		return 0;
	if (h->out_len + len > h->out_cap) {
		__u32 cap = h->out_cap ? h->out_cap : 256;
		unsigned char *p;

		while (cap < h->out_len + len)
			cap *= 2;
		p = realloc(h->out, cap);
		if (!p)
			return -ENOMEM;
		h->out = p;
		h->out_cap = cap;
	}
	memcpy(h->out + h->out_len, d, len);
	h->out_len += len;
	return 0;
}

static int opt_reply(struct hs *h, __u32 opt, __u32 type, const void *data, __u32 len)
{
	unsigned char hd[NBD_OPT_REPLY_HDR_LEN];

	nbd_opt_reply_header(hd, opt, type, len);
	return out_put(h, hd, sizeof(hd)) ?: out_put(h, data, len);
}

static int opt_error(struct hs *h, __u32 opt, __u32 type, const char *msg)
{
	return opt_reply(h, opt, type, msg, strlen(msg));
}

static int send_info(struct nbd *n, struct hs *h, __u32 opt, __u16 type,
		     struct bsteer_export *ex)
{
	unsigned char b[2 + 128];
	size_t len = 2;
	__u32 min, max;

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
		if (!*ex->description)	/* none given: none said */
			return 0;
		len += strlen(ex->description);
		memcpy(b + 2, ex->description, len - 2);
		break;
	case NBD_INFO_BLOCK_SIZE:
		/* The maximum a multiple of the minimum, the preferred no less. */
		min = nbd_export_min_block(ex);
		max = nbd_max_io(n, ex) / min * min ?: min;
		nbd_put32(b + 2, min);
		nbd_put32(b + 6, nbd_export_pref_block(ex, min));
		nbd_put32(b + 10, max);
		len = 14;
		break;
	default:
		return 0;
	}
	return opt_reply(h, opt, NBD_REP_INFO, b, len);
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

/* NBD_OPT_INFO / NBD_OPT_GO. Returns 1 to enter transmission (GO), 0, or -ENOMEM. */
static int opt_info_go(struct nbd *n, struct hs *h, __u32 opt,
		       const unsigned char *d, __u32 len, struct bsteer_export **out)
{
	char name[MAX_OPT_LEN + 1];
	bool want_name = false, want_desc = false;
	struct bsteer_export *ex;
	__u32 nlen;
	__u16 ninfo, i;

	nlen = opt_export_name(d, len, 2, name);
	if (!nlen)
		return opt_error(h, opt, NBD_REP_ERR_INVALID, "bad name length");
	ninfo = nbd_get16(d + nlen);
	if (len != nlen + 2 + 2u * ninfo)
		return opt_error(h, opt, NBD_REP_ERR_INVALID, "bad option length");
	for (i = 0; i < ninfo; i++) {
		__u16 t = nbd_get16(d + nlen + 2 + 2 * i);

		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}
	ex = bsteer_export_find(n->s, *name ? name : n->s->exports[0].name);
	if (!ex)
		return opt_error(h, opt, NBD_REP_ERR_UNKNOWN, "no such export");
	if (send_info(n, h, opt, NBD_INFO_EXPORT, ex) ||
	    (want_name && send_info(n, h, opt, NBD_INFO_NAME, ex)) ||
	    (want_desc && send_info(n, h, opt, NBD_INFO_DESCRIPTION, ex)) ||
	    send_info(n, h, opt, NBD_INFO_BLOCK_SIZE, ex) ||
	    opt_reply(h, opt, NBD_REP_ACK, NULL, 0))
		return -ENOMEM;
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
 * base:allocation; "base:" lists it too. Returns 0 or -ENOMEM.
 */
static int opt_meta(struct nbd *n, struct hs *h, __u32 opt,
		    const unsigned char *d, __u32 len, struct nego *ng)
{
	static const char ctx[] = META_ALLOC;
	const struct bsteer_export *ex;
	unsigned char rep[4 + sizeof(ctx)];
	__u32 nlen, nq, q, qlen, pos;
	bool match = false;
	char name[MAX_OPT_LEN + 1];

	if (opt == NBD_OPT_SET_META_CONTEXT)
		ng->meta_alloc = false;	/* replaced, even on failure */
	if (!ng->structured)
		return opt_error(h, opt, NBD_REP_ERR_INVALID,
				 "negotiate structured replies first");
	nlen = opt_export_name(d, len, 4, name);
	if (!nlen)
		return opt_error(h, opt, NBD_REP_ERR_INVALID, "bad name length");
	nq = nbd_get32(d + nlen);
	pos = nlen + 4;
	for (q = 0; q < nq; q++) {
		if (len - pos < 4)
			return opt_error(h, opt, NBD_REP_ERR_INVALID, "truncated query");
		qlen = nbd_get32(d + pos);
		pos += 4;
		if (qlen > len - pos)
			return opt_error(h, opt, NBD_REP_ERR_INVALID, "bad query length");
		if ((qlen == strlen(ctx) && !memcmp(d + pos, ctx, qlen)) ||
		    (opt == NBD_OPT_LIST_META_CONTEXT && qlen == 5 &&
		     !memcmp(d + pos, "base:", 5)))
			match = true;
		pos += qlen;
	}
	if (pos != len)
		return opt_error(h, opt, NBD_REP_ERR_INVALID, "bad option length");
	ex = bsteer_export_find(n->s, *name ? name : n->s->exports[0].name);
	if (!ex)
		return opt_error(h, opt, NBD_REP_ERR_UNKNOWN, "no such export");
	if (opt == NBD_OPT_LIST_META_CONTEXT && !nq)
		match = true;
	if (match) {
		nbd_put32(rep, opt == NBD_OPT_SET_META_CONTEXT ? META_ALLOC_ID : 0);
		memcpy(rep + 4, ctx, sizeof(ctx) - 1);
		if (opt_reply(h, opt, NBD_REP_META_CONTEXT, rep, 4 + sizeof(ctx) - 1))
			return -ENOMEM;
		if (opt == NBD_OPT_SET_META_CONTEXT) {
			ng->meta_alloc = true;
			ng->meta_ex = ex;
		}
	}
	return opt_reply(h, opt, NBD_REP_ACK, NULL, 0);
}

static int opt_list(struct nbd *n, struct hs *h)
{
	unsigned char b[4 + 64];
	int i;

	for (i = 0; i < n->s->nexports; i++) {
		__u32 len = strlen(n->s->exports[i].name);

		nbd_put32(b, len);
		memcpy(b + 4, n->s->exports[i].name, len);
		if (opt_reply(h, NBD_OPT_LIST, NBD_REP_SERVER, b, 4 + len))
			return -ENOMEM;
	}
	return opt_reply(h, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_EXPORT_NAME, the old way in: no error reply, no going back. */
static void opt_export_name_go(struct nbd *n, struct hs *h,
			       const unsigned char *d, __u32 len)
{
	static const unsigned char zeroes[124];
	char name[MAX_OPT_LEN + 1];
	struct bsteer_export *ex;
	unsigned char r[10];

	memcpy(name, d, len);
	name[len] = 0;
	ex = bsteer_export_find(n->s, *name ? name : n->s->exports[0].name);
	h->state = HS_CLOSE;
	if (!ex)	/* this option has no error reply */
		return;
	nbd_put64(r, ex->size);
	nbd_put16(r + 8, export_flags(ex));
	if (out_put(h, r, sizeof(r)))
		return;
	/* NO_ZEROES is always offered, but a client may not take it. */
	if (!(h->cflags & NBD_FLAG_NO_ZEROES) && out_put(h, zeroes, sizeof(zeroes)))
		return;
	h->ex = ex;
	h->state = HS_GO;
}

/*
 * STARTTLS: acknowledged, and once the reply is out the socket goes to a
 * TLS stream (nbd_tls.c); options start again over TLS. Anything learnt
 * before it (structured replies, a meta context) is forgotten, as the
 * spec asks.
 */
static int opt_starttls(struct nbd *n, struct hs *h, __u32 len)
{
	int tls = n->conf ? n->conf->tls : NBD_TLS_OFF;

	if (tls == NBD_TLS_OFF)
		return opt_error(h, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY,
				 "TLS is not enabled on this server");
	if (h->tls)
		return opt_error(h, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
				 "TLS is already on");
	if (len)
		return opt_error(h, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
				 "no data expected");
	memset(&h->ng, 0, sizeof(h->ng));
	h->state = HS_STARTTLS;
	return opt_reply(h, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0);
}

/* Under --tls require, before STARTTLS: what may be asked. */
static bool tls_refuses(const struct nbd *n, const struct hs *h, __u32 opt)
{
	return n->conf && n->conf->tls == NBD_TLS_REQUIRE && !h->tls &&
	       opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT;
}

/* One whole option, its data in @d. Sets the state that follows. */
static void option(struct nbd *n, struct hs *h, const unsigned char *d)
{
	struct nego *ng = &h->ng;
	__u32 opt = h->opt, len = h->opt_len;
	int rc;

	h->state = HS_OPT_HDR;
	if (tls_refuses(n, h, opt)) {
		/* Nothing about the exports before TLS; EXPORT_NAME has no error reply. */
		if (opt == NBD_OPT_EXPORT_NAME)
			h->state = HS_CLOSE;
		else if (opt_error(h, opt, NBD_REP_ERR_TLS_REQD, "TLS is required: STARTTLS first"))
			h->state = HS_CLOSE;
		return;
	}
	switch (opt) {
	case NBD_OPT_STARTTLS:
		rc = opt_starttls(n, h, len);
		break;
	case NBD_OPT_EXPORT_NAME:
		opt_export_name_go(n, h, d, len);
		return;
	case NBD_OPT_ABORT:
		rc = opt_reply(h, opt, NBD_REP_ACK, NULL, 0);
		h->state = HS_QUIT;
		break;
	case NBD_OPT_LIST:
		rc = len ? opt_error(h, opt, NBD_REP_ERR_INVALID, "no data expected") :
			   opt_list(n, h);
		break;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		rc = opt_info_go(n, h, opt, d, len, &h->ex);
		if (rc == 1) {
			/* A context chosen for another export does not apply. */
			if (ng->meta_ex != h->ex)
				ng->meta_alloc = false;
			ng->block_sizes = asks_block_sizes(d);
			h->state = HS_GO;
			return;
		}
		break;
	case NBD_OPT_STRUCTURED_REPLY:
		if (len) {
			rc = opt_error(h, opt, NBD_REP_ERR_INVALID, "no data expected");
		} else {
			ng->structured = true;
			rc = opt_reply(h, opt, NBD_REP_ACK, NULL, 0);
		}
		break;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		rc = opt_meta(n, h, opt, d, len, ng);
		break;
	default:
		rc = opt_error(h, opt, NBD_REP_ERR_UNSUP, "option not supported");
	}
	if (rc < 0)
		h->state = HS_CLOSE;
}

/* An option's header: act at once if it has no data. */
static void option_header(struct nbd *n, struct hs *h)
{
	if (nbd_get64(h->in) != NBD_IHAVEOPT) {
		serve_log(n->s, "nbd: bad option magic, closing");
		h->state = HS_CLOSE;
		return;
	}
	h->opt = nbd_get32(h->in + 8);
	h->opt_len = nbd_get32(h->in + 12);
	if (h->opt_len > MAX_OPT_LEN) {
		/* EXPORT_NAME has no error reply; no name is that long anyway. */
		if (h->opt == NBD_OPT_EXPORT_NAME) {
			h->state = HS_CLOSE;
			return;
		}
		h->skip = h->opt_len;
		h->state = opt_error(h, h->opt, NBD_REP_ERR_TOO_BIG,
				     "option too long") ? HS_CLOSE : HS_SKIP;
		return;
	}
	if (h->opt_len)
		h->state = HS_OPT_DATA;
	else
		option(n, h, h->in);
}

/* The greeting goes out first; the client's flags are wanted next. */
int nbd_hs_init(struct hs *h)
{
	unsigned char hello[18];

	nbd_put64(hello, NBD_MAGIC);
	nbd_put64(hello + 8, NBD_IHAVEOPT);
	nbd_put16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	h->state = HS_FLAGS;
	return out_put(h, hello, sizeof(hello));
}

/* The bytes the next message has (0: the handshake is over). */
__u32 nbd_hs_want(const struct hs *h)
{
	switch (h->state) {
	case HS_FLAGS:
		return 4;
	case HS_OPT_HDR:
		return NBD_OPT_HDR_LEN;
	case HS_OPT_DATA:
		return h->opt_len;
	case HS_SKIP:
		return h->skip < MAX_OPT_LEN ? h->skip : MAX_OPT_LEN;
	default:
		return 0;
	}
}

/* in[] holds nbd_hs_want() bytes: act on them, and empty it. */
void nbd_hs_input(struct nbd *n, struct hs *h)
{
	__u32 len = h->in_len;

	h->in_len = 0;
	switch (h->state) {
	case HS_FLAGS:
		h->cflags = nbd_get32(h->in);
		if (h->cflags & ~(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)) {
			serve_log(n->s, "nbd: client flags 0x%x not understood, closing",
				  h->cflags);
			h->state = HS_CLOSE;
		} else {
			h->state = HS_OPT_HDR;
		}
		break;
	case HS_OPT_HDR:
		option_header(n, h);
		break;
	case HS_OPT_DATA:
		option(n, h, h->in);
		break;
	case HS_SKIP:
		h->skip -= len;
		if (!h->skip)
			h->state = HS_OPT_HDR;
		break;
	}
}

/* The handshake alone, blocking, for the fuzzer: the same parser on @fd. */
struct bsteer_export *nbd_negotiate(struct bsteer_server *s, __u32 slots, int fd,
				    bool *structured)
{
	struct hs *h = calloc(1, sizeof(*h));
	struct nbd *n = calloc(1, sizeof(*n));
	struct bsteer_export *ex = NULL;
	__u32 want;

	if (!h || !n || nbd_hs_init(h))
		goto out;
	n->s = s;
	n->in = s->in;
	n->nslots = slots;
	for (;;) {
		if (h->out_len && (h->state == HS_CLOSE ||
				   nbd_xfer(fd, h->out, h->out_len, true)))
			break;
		h->out_len = 0;
		if (h->state == HS_GO)
			ex = h->ex;
		want = nbd_hs_want(h);
		if (!want || nbd_xfer(fd, h->in, want, false))
			break;
		h->in_len = want;
		nbd_hs_input(n, h);
	}
	*structured = h->ng.structured;
out:
	if (h)
		free(h->out);
	free(h);
	free(n);
	return ex;
}
