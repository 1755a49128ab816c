// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * --json: one JSON object per event, per line. Use events by hand into
 * one buffer (they come at IO rate), the rarer ones through libbsteer's
 * JSON writer.
 */
#include <stdio.h>
#include <string.h>
#include "trace/trace_priv.h"

static const char *src_name(__u8 s)
{
	static const char *const names[] = {
		[BSTEER_TSRC_REGISTER] = "register",
		[BSTEER_TSRC_UPDATE] = "update",
		[BSTEER_TSRC_CLONE] = "clone",
		[BSTEER_TSRC_UNREGISTER] = "unregister",
		[BSTEER_TSRC_TEARDOWN] = "teardown",
		[BSTEER_TSRC_DISCOVERED] = "discovered",
		[BSTEER_TSRC_LATE] = "seen_in_use",
	};

	return s < sizeof(names) / sizeof(names[0]) && names[s] ? names[s] : "?";
}

static const char *const kind_names[BSTEER_TEV__MAX] = {
	[BSTEER_TEV_TABLE] = "table", [BSTEER_TEV_REG] = "register",
	[BSTEER_TEV_UNREG] = "unregister", [BSTEER_TEV_FREE] = "release",
	[BSTEER_TEV_USE] = "use", [BSTEER_TEV_HELD] = "held",
	[BSTEER_TEV_EXIT] = "exit", [BSTEER_TEV_XCHECK] = "xcheck_error",
};

void trace_json_hex(struct bsteer_json *j, const char *key, __u64 v)
{
	char b[24];

	snprintf(b, sizeof(b), "0x%llx", (unsigned long long)v);
	json_str(j, key, b);
}

/*
 * Use events come at IO rate, hundreds of thousands a second: they are
 * written by hand into one buffer, with no printf, so the consumer keeps up
 * with the ring buffer. Same fields and formats as print_event's.
 */
struct lbuf {
	char b[640];
	size_t n;
};

static void lb_str(struct lbuf *l, const char *s)
{
	size_t k = strlen(s);

	if (l->n + k < sizeof(l->b)) {
		memcpy(l->b + l->n, s, k);
		l->n += k;
	}
}

/* @v in @base (10 or 16), most significant digit first. */
static void lb_digits(struct lbuf *l, unsigned long long v, unsigned int base)
{
	static const char dg[] = "0123456789abcdef";
	char t[24];
	int i = 0;

	do
		t[i++] = dg[v % base];
	while ((v /= base));
	while (i && l->n < sizeof(l->b) - 1)
		l->b[l->n++] = t[--i];
}

static void lb_u64(struct lbuf *l, unsigned long long v)
{
	lb_digits(l, v, 10);
}

static void lb_i64(struct lbuf *l, long long v)
{
	if (v < 0) {
		lb_str(l, "-");
		lb_u64(l, -(unsigned long long)v);
		return;
	}
	lb_u64(l, v);
}

/* @v / 10^@digits, with that many decimals. */
static void lb_fixed(struct lbuf *l, unsigned long long v, int digits)
{
	unsigned long long p = 1;
	char t[24];
	int i;

	for (i = 0; i < digits; i++)
		p *= 10;
	lb_u64(l, v / p);
	lb_str(l, ".");
	v %= p;
	for (i = digits - 1; i >= 0; i--, v /= 10)
		t[i] = '0' + v % 10;
	t[digits] = 0;
	lb_str(l, t);
}

static void lb_hex(struct lbuf *l, unsigned long long v)
{
	lb_str(l, "\"0x");
	lb_digits(l, v, 16);
	lb_str(l, "\"");
}

static void lb_bool(struct lbuf *l, const char *key, bool v)
{
	lb_str(l, key);
	lb_str(l, v ? "true" : "false");
}

/* The ring's fields: its process's name, its number, its address. */
static void lb_ring(struct lbuf *l, const struct bsteer_tev *e,
		    const struct ring_rec *r)
{
	/* A comm is a kernel string: any byte but NUL. */
	lb_str(l, ",\"comm\":\"");
	for (const char *c = r->comm; *c && c < r->comm + 16; c++) {
		char one[2] = { *c, 0 };

		if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
			one[0] = '?';
		lb_str(l, one);
	}
	lb_str(l, "\",\"ring\":");
	lb_u64(l, r->id);
	lb_str(l, ",\"ctx\":");
	lb_hex(l, e->ctx);
}

static void print_use(struct tstate *s, const struct bsteer_tev *e,
		      struct ring_rec *r)
{
	struct lbuf l = { .n = 0 };
	char ob[16];

	lb_str(&l, e->kind == BSTEER_TEV_USE ? "{\"event\":\"use\",\"t\":" :
					       "{\"event\":\"held\",\"t\":");
	lb_fixed(&l, e->ts_ns > s->start_ns ? (e->ts_ns - s->start_ns) / 1000 : 0, 6);
	lb_str(&l, ",\"ts_ns\":");
	lb_u64(&l, e->ts_ns);
	lb_str(&l, ",\"pid\":");
	lb_u64(&l, e->pid);
	if (r)
		lb_ring(&l, e, r);
	lb_str(&l, ",\"tid\":");
	lb_u64(&l, e->tid);
	lb_str(&l, ",\"index\":");
	lb_u64(&l, e->index);
	lb_str(&l, ",\"opcode\":\"");
	lb_str(&l, trace_op_name(e->opcode, ob, sizeof(ob)));
	lb_str(&l, "\",\"res\":");
	lb_i64(&l, e->res);
	lb_str(&l, ",\"len\":");
	lb_u64(&l, e->len);
	lb_str(&l, ",\"lat_us\":");
	lb_fixed(&l, e->t0 && e->ts_ns > e->t0 ? e->ts_ns - e->t0 : 0, 3);
	lb_bool(&l, ",\"async\":", e->flags & BSTEER_TEVF_ASYNC);
	lb_bool(&l, ",\"no_submit\":", e->flags & BSTEER_TEVF_NOSUBMIT);
	lb_bool(&l, ",\"lost\":", e->flags & BSTEER_TEVF_LOST);
	lb_bool(&l, ",\"at_exit\":", e->kind == BSTEER_TEV_HELD ||
					 (e->flags & BSTEER_TEVF_HELD));
	lb_str(&l, ",\"user_data\":");
	lb_hex(&l, e->addr);
	lb_str(&l, ",\"req\":");
	lb_hex(&l, e->req);
	lb_str(&l, ",\"node\":");
	lb_hex(&l, e->node);
	lb_str(&l, "}\n");
	fwrite(l.b, 1, l.n, s->out);
}

/* A buffer's registration, unregister or release. */
static void buffer_fields(struct bsteer_json *j, const struct bsteer_tev *e)
{
	json_str(j, "source", src_name(e->source));
	json_u64(j, "index", e->index);
	trace_json_hex(j, "addr", e->addr);
	json_u64(j, "len", e->len);
	trace_json_hex(j, "node", e->node);
	json_bool(j, "kbuf", e->flags & BSTEER_TEVF_KBUF);
	json_bool(j, "before_trace", e->flags & BSTEER_TEVF_DISCOVERED);
	if (e->kind == BSTEER_TEV_REG)
		return;
	json_u64(j, "uses", e->uses);
	if (e->kind == BSTEER_TEV_UNREG) {
		json_u64(j, "holders", (__u32)e->res);
		return;
	}
	json_dbl(j, "life_ms", e->ts_ns > e->t0 ? (e->ts_ns - e->t0) / 1e6 : 0);
	json_dbl(j, "after_unregister_ms",
		 e->t1 && e->ts_ns > e->t1 ? (e->ts_ns - e->t1) / 1e6 : 0);
	json_bool(j, "outlived_unregister", e->flags & BSTEER_TEVF_OUTLIVED);
}

static void print_event(struct tstate *s, const struct bsteer_tev *e,
			struct ring_rec *r)
{
	struct bsteer_json j;
	char ob[16];

	json_begin(&j, s->out);
	json_str(&j, "event", e->kind < BSTEER_TEV__MAX && kind_names[e->kind] ?
			       kind_names[e->kind] : "?");
	json_dbl(&j, "t", secs_since(s, e->ts_ns));
	json_u64(&j, "ts_ns", e->ts_ns);
	json_u64(&j, "pid", e->pid);
	if (r) {
		json_str(&j, "comm", r->comm);
		json_u64(&j, "ring", r->id);
		trace_json_hex(&j, "ctx", e->ctx);
	}
	switch (e->kind) {
	case BSTEER_TEV_TABLE:
		json_str(&j, "source", src_name(e->source));
		json_u64(&j, "entries", e->index);
		json_u64(&j, "filled", e->res);
		json_bool(&j, "sparse", e->flags & BSTEER_TEVF_SPARSE);
		break;
	case BSTEER_TEV_REG:
	case BSTEER_TEV_UNREG:
	case BSTEER_TEV_FREE:
		buffer_fields(&j, e);
		break;
	case BSTEER_TEV_EXIT:
		json_str(&j, "comm", e->comm);
		break;
	case BSTEER_TEV_XCHECK:
		json_u64(&j, "index", e->index);
		json_str(&j, "opcode", trace_op_name(e->opcode, ob, sizeof(ob)));
		json_str(&j, "why", trace_xcheck_why(e->res));
		trace_json_hex(&j, "req", e->req);
		break;
	}
	json_finish(&j);
}

void trace_json_event(struct tstate *s, const struct bsteer_tev *e,
		      struct ring_rec *r)
{
	if (e->kind == BSTEER_TEV_USE || e->kind == BSTEER_TEV_HELD)
		print_use(s, e, r);
	else
		print_event(s, e, r);
}
