// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The model the tracer's events build: one record per ring, one row per
 * (ring, buffer index), the leak records, and the counters and histograms
 * the report ends with. Events come at IO rate, so a lookup is one probe
 * of a small open-addressing hash.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trace/trace_priv.h"

/* ---- a small hash: (k1, k2) -> pointer ---- */

static size_t hslot(const struct hmap *h, __u64 k1, __u64 k2)
{
	__u64 x = k1 * 0x9e3779b97f4a7c15ull ^ (k2 + 0x632be59bd9b4e019ull);

	x ^= x >> 29;
	return x & (h->cap - 1);
}

void *hmap_get(const struct hmap *h, __u64 k1, __u64 k2)
{
	size_t i;

	if (!h->cap)
		return NULL;
	for (i = hslot(h, k1, k2); h->e[i].v; i = (i + 1) & (h->cap - 1))
		if (h->e[i].k1 == k1 && h->e[i].k2 == k2)
			return h->e[i].v;
	return NULL;
}

int hmap_put(struct hmap *h, __u64 k1, __u64 k2, void *v)
{
	size_t i;

	if ((h->n + 1) * 2 > h->cap) {
		struct hmap g = { .cap = h->cap ? h->cap * 2 : 64 };

		g.e = calloc(g.cap, sizeof(*g.e));
		if (!g.e)
			return -ENOMEM;
		for (i = 0; i < h->cap; i++)
			if (h->e[i].v)
				hmap_put(&g, h->e[i].k1, h->e[i].k2, h->e[i].v);
		free(h->e);
		*h = g;
	}
	for (i = hslot(h, k1, k2); h->e[i].v; i = (i + 1) & (h->cap - 1))
		;
	h->e[i] = (struct hent){ k1, k2, v };
	h->n++;
	return 0;
}

/* ---- names ---- */

const char *trace_op_name(__u8 op, char *buf, size_t len)
{
	static const char *const names[] = {
		[0] = "NOP", [1] = "READV", [2] = "WRITEV", [4] = "READ_FIXED",
		[5] = "WRITE_FIXED", [22] = "READ", [23] = "WRITE", [26] = "SEND",
		[27] = "RECV", [46] = "URING_CMD", [47] = "SEND_ZC",
		[48] = "SENDMSG_ZC", [60] = "READV_FIXED", [61] = "WRITEV_FIXED",
	};

	if (op < sizeof(names) / sizeof(names[0]) && names[op])
		return names[op];
	snprintf(buf, len, "OP_%u", op);
	return buf;
}

const char *trace_xcheck_why(__s32 why)
{
	switch (why) {
	case BSTEER_XC_FREE_AT_ISSUE:
		return "an op was submitted on a slot that bsteer had free";
	case BSTEER_XC_RELEASED:
		return "the slot was leased again while a request still held it";
	case BSTEER_XC_FREE_HELD:
		return "the slot was free for over 1 s while a request held it";
	}
	return "?";
}

/* ---- records ---- */

static struct ring_rec *ring_get(struct tstate *s, __u64 ctx, __u32 pid,
				 const char *comm)
{
	struct ring_rec *r = hmap_get(&s->rings, ctx, 0), **v;

	if (r) {
		if (comm && comm[0] && !r->comm[0])
			memcpy(r->comm, comm, sizeof(r->comm));
		return r;
	}
	r = calloc(1, sizeof(*r));
	v = realloc(s->ringv, (s->nrings + 1) * sizeof(*v));
	if (!r || !v || hmap_put(&s->rings, ctx, 0, r)) {
		free(r);
		if (v)
			s->ringv = v;
		return NULL;
	}
	s->ringv = v;
	r->ctx = ctx;
	r->id = s->nrings;
	r->pid = pid;
	if (comm)
		memcpy(r->comm, comm, sizeof(r->comm));
	s->ringv[s->nrings++] = r;
	return r;
}

static struct row *row_get(struct tstate *s, struct ring_rec *ring, __u32 index)
{
	struct row *w = hmap_get(&s->rowmap, ring->ctx, index), **v;

	if (w)
		return w;
	w = calloc(1, sizeof(*w));
	v = realloc(s->rowv, (s->nrows + 1) * sizeof(*v));
	if (!w || !v || hmap_put(&s->rowmap, ring->ctx, index, w)) {
		free(w);
		if (v)
			s->rowv = v;
		return NULL;
	}
	s->rowv = v;
	w->ring = ring;
	w->index = index;
	s->rowv[s->nrows++] = w;
	return w;
}

struct leak *trace_leak_add(struct tstate *s, enum leak_kind kind,
			    const struct bsteer_tev *e, struct ring_rec *r)
{
	struct leak *l;

	if (s->nleaks == s->capleaks) {
		size_t cap = s->capleaks ? s->capleaks * 2 : 16;
		struct leak *v = realloc(s->leaks, cap * sizeof(*v));

		if (!v)
			return NULL;
		s->leaks = v;
		s->capleaks = cap;
	}
	l = &s->leaks[s->nleaks++];
	memset(l, 0, sizeof(*l));
	l->kind = kind;
	l->pid = e->pid;
	l->ring = r ? r->id : 0;
	l->index = e->index;
	l->len = e->len;
	l->addr = e->addr;
	l->node = e->node;
	l->req = e->req;
	if (r)
		memcpy(l->comm, r->comm, sizeof(l->comm));
	return l;
}

static void lat_push(struct row *w, __u64 ns)
{
	if (w->nlat == w->caplat) {
		size_t cap = w->caplat ? w->caplat * 2 : 64;
		__u32 *v = realloc(w->lat, cap * sizeof(*v));

		if (!v)
			return;
		w->lat = v;
		w->caplat = cap;
	}
	w->lat[w->nlat++] = ns > 0xffffffffull ? 0xffffffffu : (__u32)ns;
}

/* ---- the events ---- */

/* A buffer's release: its lifetime, and a leak record if it was one. */
static void on_free(struct tstate *s, const struct bsteer_tev *e,
		    struct ring_rec *r, struct row *w)
{
	struct leak *l;

	s->freed++;
	if (w && w->reg_ns == e->t0)
		w->live = false;
	if (!(e->flags & BSTEER_TEVF_DISCOVERED) && e->ts_ns > e->t0)
		s->h_life[bsteer_log2_slot((e->ts_ns - e->t0) / 1000)]++;
	if (!e->uses) {
		l = trace_leak_add(s, LEAK_NEVER_USED, e, r);
		if (l) {
			l->reg_ns = e->t0;
			l->end_ns = e->ts_ns;
			l->discovered = e->flags & BSTEER_TEVF_DISCOVERED;
		}
	}
	/*
	 * Freed at the last holder's completion, not by the table's own
	 * letting go: the tracer saw it held at unregister. How long that
	 * took is reported, never used to decide.
	 */
	if (e->flags & BSTEER_TEVF_OUTLIVED) {
		l = trace_leak_add(s, LEAK_OUTLIVED, e, r);
		if (l) {
			l->reg_ns = e->t0;
			l->unreg_ns = e->t1;
			l->end_ns = e->ts_ns;
			l->uses = e->uses;
		}
	}
}

/* A completed request on a buffer: the totals, and its row's interval. */
static void on_use(struct tstate *s, const struct bsteer_tev *e, struct row *w)
{
	s->uses++;
	if (e->flags & BSTEER_TEVF_LOST)
		s->lost++;
	if (e->res > 0) {
		s->use_bytes += e->res;
		s->h_bytes[bsteer_log2_slot(e->res)]++;
	}
	if (e->t0 && e->ts_ns > e->t0)
		s->h_lat[bsteer_log2_slot((e->ts_ns - e->t0) / 1000)]++;
	if (!w)
		return;
	w->uses++;
	w->win_uses++;
	if (e->res > 0) {
		w->bytes += e->res;
		w->win_bytes += e->res;
	}
	if (e->t0 && e->ts_ns > e->t0)
		lat_push(w, e->ts_ns - e->t0);
}

/* A request that held a buffer when its process exited. */
static void on_held(struct tstate *s, const struct bsteer_tev *e,
		    struct ring_rec *r)
{
	struct leak *l = trace_leak_add(s, LEAK_HELD, e, r);

	if (!l)
		return;
	/* A request knows its buffer by index, not address. */
	l->addr = 0;
	l->user_data = e->addr;
	l->opcode = e->opcode;
	l->reg_ns = e->t0;
	l->end_ns = e->ts_ns;
	l->completed = e->kind == BSTEER_TEV_USE;
}

int trace_on_event(void *arg, const struct bsteer_tev *e)
{
	struct tstate *s = arg;
	struct ring_rec *r = NULL;
	struct row *w = NULL;

	if (e->kind >= BSTEER_TEV__MAX)
		return 0;
	s->kinds[e->kind]++;
	if (e->ctx)
		r = ring_get(s, e->ctx, e->pid, e->comm);
	if (r && e->kind != BSTEER_TEV_TABLE)
		w = row_get(s, r, e->index);
	switch (e->kind) {
	case BSTEER_TEV_TABLE:
		s->tables++;
		break;
	case BSTEER_TEV_REG:
		s->registered++;
		if (e->flags & BSTEER_TEVF_DISCOVERED)
			s->discovered++;
		if (w) {
			w->live = true;
			w->discovered = e->flags & BSTEER_TEVF_DISCOVERED;
			w->reg_ns = e->ts_ns;
		}
		break;
	case BSTEER_TEV_UNREG:
		if (w)
			w->live = false;
		break;
	case BSTEER_TEV_FREE:
		on_free(s, e, r, w);
		break;
	case BSTEER_TEV_USE:
		on_use(s, e, w);
		/* It completed only after its process began to exit. */
		if (e->flags & BSTEER_TEVF_HELD)
			on_held(s, e, r);
		break;
	case BSTEER_TEV_HELD:
		on_held(s, e, r);
		break;
	case BSTEER_TEV_EXIT:
		s->exits++;
		break;
	case BSTEER_TEV_XCHECK:
		s->xcheck_bpf++;
		fprintf(stderr, "bsteer trace: cross-check error: pid %u ring %u slot %u: %s\n",
			e->pid, r ? r->id : 0, e->index, trace_xcheck_why(e->res));
		break;
	}
	if (s->json)
		trace_json_event(s, e, r);
	return 0;
}

void trace_state_free(struct tstate *s)
{
	size_t i;

	for (i = 0; i < s->nrows; i++) {
		free(s->rowv[i]->lat);
		free(s->rowv[i]);
	}
	for (i = 0; i < s->nrings; i++)
		free(s->ringv[i]);
	free(s->rowv);
	free(s->ringv);
	free(s->leaks);
	free(s->rings.e);
	free(s->rowmap.e);
	free(s->xseen.e);
}
