// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer trace: who holds which registered io_uring buffer, for how long,
 * and what leaked, for any process. Views: a live table (default), one
 * JSON event per line (--json), log2 histograms at exit (--hist), and a
 * leak report at exit.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "cli/cli.h"
#include "libbsteer.h"
#include "trace/trace.h"

static const char trace_usage[] =
"USAGE: bsteer trace [-p PID]... [-c COMM] [OPTIONS] [-- COMMAND [ARGS...]]\n"
"\n"
"Follow io_uring's registered (fixed) buffers in any process: each table\n"
"registration, every request that uses a buffer (opcode, index, bytes,\n"
"submit-to-complete latency, io-wq or not), and the real end of each\n"
"buffer's life, which comes after unregister if a request still holds it.\n"
"With no filter, every process is traced.\n"
"\n"
"Without --json a live table refreshes every interval, one row per\n"
"(process, ring, buffer index). At exit comes a leak report: buffers\n"
"registered and never used, buffers that outlived their unregister (and\n"
"by how long), and requests still holding a buffer when their process\n"
"exited. Tracing a bsteer instance (found from -p, or named with\n"
"--instance) also checks the kernel's use of each slot against bsteer's\n"
"own slot state; a disagreement is an error (exit status 1).\n"
"\n"
"OPTIONS:\n"
"  -p, --pid PID         trace this process and the children it forks\n"
"                        (repeatable)\n"
"  -c, --comm NAME       trace processes with this command name\n"
"      --no-follow       do not add children forked after the start\n"
"  -- COMMAND [ARGS]     run COMMAND, trace it and its children, stop when\n"
"                        it has exited and its rings are gone; the exit\n"
"                        status is then COMMAND's (128+N for signal N)\n"
"  -i, --instance NAME   cross-check against this bsteer instance\n"
"      --no-xcheck       do not look for a bsteer instance\n"
"  -j, --json            one JSON object per event, per line; the leak\n"
"                        report and a summary as the last lines\n"
"  -H, --hist            log2 histograms at exit: latency, bytes per use,\n"
"                        buffer lifetime\n"
"  -I, --interval SECS   refresh the table every SECS (default 1)\n"
"  -d, --duration SECS   stop after SECS\n"
"  -r, --rows N          rows in the table (default 20)\n"
"      --ringbuf MB      event ring buffer size (default 16)\n"
"  -v, --verbose         libbpf's messages\n"
"  -h, --help            this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer trace -p $(pidof fio)              # live table of fio's buffers\n"
"  bsteer trace --json -- fio job.fio > ev.json  # every event of one run\n"
"  bsteer trace -p 1234 --hist -d 10         # histograms after 10 s\n"
"  bsteer trace -c qemu-system-x86 --json    # by name, as they start\n"
"  bsteer trace -p $(pidof bsteer) -i main   # with the slot cross-check\n";

/* ---- a small hash: (k1, k2) -> pointer ---- */

struct hent {
	__u64 k1, k2;
	void *v;
};

struct hmap {
	struct hent *e;
	size_t cap, n;
};

static size_t hslot(const struct hmap *h, __u64 k1, __u64 k2)
{
	__u64 x = k1 * 0x9e3779b97f4a7c15ull ^ (k2 + 0x632be59bd9b4e019ull);

	x ^= x >> 29;
	return x & (h->cap - 1);
}

static void *hget(const struct hmap *h, __u64 k1, __u64 k2)
{
	size_t i;

	if (!h->cap)
		return NULL;
	for (i = hslot(h, k1, k2); h->e[i].v; i = (i + 1) & (h->cap - 1))
		if (h->e[i].k1 == k1 && h->e[i].k2 == k2)
			return h->e[i].v;
	return NULL;
}

static int hput(struct hmap *h, __u64 k1, __u64 k2, void *v)
{
	size_t i;

	if ((h->n + 1) * 2 > h->cap) {
		struct hmap g = { .cap = h->cap ? h->cap * 2 : 64 };

		g.e = calloc(g.cap, sizeof(*g.e));
		if (!g.e)
			return -ENOMEM;
		for (i = 0; i < h->cap; i++)
			if (h->e[i].v)
				hput(&g, h->e[i].k1, h->e[i].k2, h->e[i].v);
		free(h->e);
		*h = g;
	}
	for (i = hslot(h, k1, k2); h->e[i].v; i = (i + 1) & (h->cap - 1))
		;
	h->e[i] = (struct hent){ k1, k2, v };
	h->n++;
	return 0;
}

/* ---- the model ---- */

struct ring_rec {
	__u64 ctx;
	__u32 id;		/* 0, 1, 2 ... in order of appearance */
	__u32 pid;
	char comm[16];
};

/* One row of the table: a (ring, buffer index). */
struct row {
	struct ring_rec *ring;
	__u32 index;
	bool live;		/* a buffer is installed there now */
	bool discovered;	/* ... since before the trace began */
	__u64 reg_ns;
	__u64 uses, bytes;	/* all the trace long */
	__u64 win_uses, win_bytes;	/* this interval */
	__u32 inflight;		/* requests in flight, at the last refresh */
	__u32 *lat;		/* this interval's latencies, ns (capped) */
	size_t nlat, caplat;
	double rate, mibs;	/* as last shown */
	__u32 p50, p99;
};

enum leak_kind {
	LEAK_NEVER_USED,	/* registered, never used */
	LEAK_OUTLIVED,		/* freed some time after its unregister */
	LEAK_ALIVE,		/* unregistered, still alive at the end */
	LEAK_HELD,		/* a request held it when its process exited */
	LEAK__MAX,
};

static const char *const leak_names[LEAK__MAX] = {
	[LEAK_NEVER_USED]	= "never_used",
	[LEAK_OUTLIVED]		= "outlived_unregister",
	[LEAK_ALIVE]		= "alive_after_unregister",
	[LEAK_HELD]		= "held_at_exit",
};

struct leak {
	enum leak_kind kind;
	__u32 pid, ring, index, len, uses, holders;
	__u64 addr, node, req, user_data;
	__u64 reg_ns, unreg_ns, end_ns;	/* end: freed, completed, or now */
	__u8 opcode;
	bool discovered, completed, still_alive;
	char comm[16];
};

struct tstate {
	struct bsteer_tracer *t;
	bool json, hist, tty;
	int rows;
	__u64 start_ns;
	struct hmap rings, rowmap, xseen;
	struct ring_rec **ringv;
	size_t nrings;
	struct row **rowv;
	size_t nrows;
	struct leak *leaks;
	size_t nleaks, capleaks;
	__u64 kinds[BSTEER_TEV__MAX];
	__u64 tables, registered, discovered, freed, uses, use_bytes, lost;
	__u64 xcheck_bpf, xcheck_user, exits;
	__u64 h_lat[BSTEER_HIST_SLOTS], h_bytes[BSTEER_HIST_SLOTS];
	__u64 h_life[BSTEER_HIST_SLOTS];
	__u64 last_events;
	double last_refresh;
	int slot_meta_fd;
	FILE *out;
};

static double secs_since(const struct tstate *s, __u64 ns)
{
	return ns > s->start_ns ? (ns - s->start_ns) / 1e9 : 0;
}

static const char *op_name(__u8 op, char *buf, size_t len)
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

static const char *xcheck_why(__s32 why)
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

static struct ring_rec *ring_get(struct tstate *s, __u64 ctx, __u32 pid,
				 const char *comm)
{
	struct ring_rec *r = hget(&s->rings, ctx, 0), **v;

	if (r) {
		if (comm && comm[0] && !r->comm[0])
			memcpy(r->comm, comm, sizeof(r->comm));
		return r;
	}
	r = calloc(1, sizeof(*r));
	v = realloc(s->ringv, (s->nrings + 1) * sizeof(*v));
	if (!r || !v || hput(&s->rings, ctx, 0, r)) {
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
	struct row *w = hget(&s->rowmap, ring->ctx, index), **v;

	if (w)
		return w;
	w = calloc(1, sizeof(*w));
	v = realloc(s->rowv, (s->nrows + 1) * sizeof(*v));
	if (!w || !v || hput(&s->rowmap, ring->ctx, index, w)) {
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

static struct leak *leak_add(struct tstate *s, enum leak_kind kind,
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

static void json_hex(struct bsteer_json *j, const char *key, __u64 v)
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
	if (r) {
		/* A comm is a kernel string: any byte but NUL. */
		lb_str(&l, ",\"comm\":\"");
		for (const char *c = r->comm; *c && c < r->comm + 16; c++) {
			char one[2] = { *c, 0 };

			if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
				one[0] = '?';
			lb_str(&l, one);
		}
		lb_str(&l, "\",\"ring\":");
		lb_u64(&l, r->id);
		lb_str(&l, ",\"ctx\":");
		lb_hex(&l, e->ctx);
	}
	lb_str(&l, ",\"tid\":");
	lb_u64(&l, e->tid);
	lb_str(&l, ",\"index\":");
	lb_u64(&l, e->index);
	lb_str(&l, ",\"opcode\":\"");
	lb_str(&l, op_name(e->opcode, ob, sizeof(ob)));
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
		json_hex(&j, "ctx", e->ctx);
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
		json_str(&j, "source", src_name(e->source));
		json_u64(&j, "index", e->index);
		json_hex(&j, "addr", e->addr);
		json_u64(&j, "len", e->len);
		json_hex(&j, "node", e->node);
		json_bool(&j, "kbuf", e->flags & BSTEER_TEVF_KBUF);
		json_bool(&j, "before_trace", e->flags & BSTEER_TEVF_DISCOVERED);
		if (e->kind == BSTEER_TEV_REG)
			break;
		json_u64(&j, "uses", e->uses);
		if (e->kind == BSTEER_TEV_UNREG) {
			json_u64(&j, "holders", (__u32)e->res);
			break;
		}
		json_dbl(&j, "life_ms", e->ts_ns > e->t0 ? (e->ts_ns - e->t0) / 1e6 : 0);
		json_dbl(&j, "after_unregister_ms",
			 e->t1 && e->ts_ns > e->t1 ? (e->ts_ns - e->t1) / 1e6 : 0);
		json_bool(&j, "outlived_unregister", e->flags & BSTEER_TEVF_OUTLIVED);
		break;
case BSTEER_TEV_EXIT:
		json_str(&j, "comm", e->comm);
		break;
	case BSTEER_TEV_XCHECK:
		json_u64(&j, "index", e->index);
		json_str(&j, "opcode", op_name(e->opcode, ob, sizeof(ob)));
		json_str(&j, "why", xcheck_why(e->res));
		json_hex(&j, "req", e->req);
		break;
	}
	json_finish(&j);
}

static int on_event(void *arg, const struct bsteer_tev *e)
{
	struct tstate *s = arg;
	struct ring_rec *r = NULL;
	struct row *w = NULL;
	struct leak *l;

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
		s->freed++;
		if (w && w->reg_ns == e->t0)
			w->live = false;
		if (!(e->flags & BSTEER_TEVF_DISCOVERED) && e->ts_ns > e->t0)
			s->h_life[bsteer_log2_slot((e->ts_ns - e->t0) / 1000)]++;
		if (!e->uses) {
			l = leak_add(s, LEAK_NEVER_USED, e, r);
			if (l) {
				l->reg_ns = e->t0;
				l->end_ns = e->ts_ns;
				l->discovered = e->flags & BSTEER_TEVF_DISCOVERED;
			}
		}
		/*
		 * Freed at the last holder's completion, not by the table's
		 * own letting go: the tracer saw it held at unregister. How
		 * long that took is reported, never used to decide.
		 */
		if (e->flags & BSTEER_TEVF_OUTLIVED) {
			l = leak_add(s, LEAK_OUTLIVED, e, r);
			if (l) {
				l->reg_ns = e->t0;
				l->unreg_ns = e->t1;
				l->end_ns = e->ts_ns;
				l->uses = e->uses;
			}
		}
		break;
	case BSTEER_TEV_USE:
		s->uses++;
		if (e->flags & BSTEER_TEVF_LOST)
			s->lost++;
		if (e->res > 0) {
			s->use_bytes += e->res;
			s->h_bytes[bsteer_log2_slot(e->res)]++;
		}
		if (e->t0 && e->ts_ns > e->t0)
			s->h_lat[bsteer_log2_slot((e->ts_ns - e->t0) / 1000)]++;
		if (w) {
			w->uses++;
			w->win_uses++;
			if (e->res > 0) {
				w->bytes += e->res;
				w->win_bytes += e->res;
			}
			if (e->t0 && e->ts_ns > e->t0)
				lat_push(w, e->ts_ns - e->t0);
		}
		if (!(e->flags & BSTEER_TEVF_HELD))
			break;
		/* It completed only after its process began to exit. */
		__attribute__((fallthrough));
	case BSTEER_TEV_HELD:
		l = leak_add(s, LEAK_HELD, e, r);
		if (l) {
			/* A request knows its buffer by index, not address. */
			l->addr = 0;
			l->user_data = e->addr;
			l->opcode = e->opcode;
			l->reg_ns = e->t0;
			l->end_ns = e->ts_ns;
			l->completed = e->kind == BSTEER_TEV_USE;
		}
		break;
	case BSTEER_TEV_EXIT:
		s->exits++;
		break;
	case BSTEER_TEV_XCHECK:
		s->xcheck_bpf++;
		fprintf(stderr, "bsteer trace: cross-check error: pid %u ring %u slot %u: %s\n",
			e->pid, r ? r->id : 0, e->index, xcheck_why(e->res));
		break;
	}
	if (s->json && (e->kind == BSTEER_TEV_USE || e->kind == BSTEER_TEV_HELD))
		print_use(s, e, r);
	else if (s->json)
		print_event(s, e, r);
	return 0;
}

/* ---- refresh: in-flight counts, the userspace cross-check, the table ---- */

static int cmp_u32(const void *a, const void *b)
{
	__u32 x = *(const __u32 *)a, y = *(const __u32 *)b;

	return x < y ? -1 : x > y;
}

static int cmp_rows(const void *a, const void *b)
{
	const struct row *x = *(struct row *const *)a, *y = *(struct row *const *)b;

	if (x->rate != y->rate)
		return x->rate < y->rate ? 1 : -1;
	if (x->inflight != y->inflight)
		return x->inflight < y->inflight ? 1 : -1;
	if (x->ring->id != y->ring->id)
		return x->ring->id < y->ring->id ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Walk "tuses": requests in flight per row, and bsteer slots free too long. */
static __u64 scan_inflight(struct tstate *s, __u64 now)
{
	int fd = bsteer_tracer_map_fd(s->t, BSTEER_TMAP_USES);
	__u64 key, next, *pk = NULL, total = 0;
	struct bsteer_tuse u;
	struct bsteer_slot m;
	struct ring_rec *r;
	struct row *w;
	size_t i;

	for (i = 0; i < s->nrows; i++)
		s->rowv[i]->inflight = 0;
	while (!bpf_map_get_next_key(fd, pk, &next)) {
		key = next;
		pk = &key;
		if (bpf_map_lookup_elem(fd, &key, &u) || !u.node)
			continue;
		total++;
		r = hget(&s->rings, u.ctx, 0);
		w = r ? hget(&s->rowmap, u.ctx, u.index) : NULL;
		if (w)
			w->inflight++;
		if (!(u.flags & BSTEER_TEVF_BSTEER) || s->slot_meta_fd < 0 ||
		    now < u.submit_ns + 1000000000ull)
			continue;
		if (bpf_map_lookup_elem(s->slot_meta_fd, &u.index, &m) ||
		    m.state != BSTEER_SLOT_FREE || hget(&s->xseen, key, u.submit_ns))
			continue;
		hput(&s->xseen, key, u.submit_ns, (void *)1);
		s->xcheck_user++;
		fprintf(stderr, "bsteer trace: cross-check error: pid %u slot %u: %s\n",
			u.pid, u.index, xcheck_why(BSTEER_XC_FREE_HELD));
	}
	return total;
}

static void percentiles(struct row *w)
{
	if (!w->nlat) {
		w->p50 = w->p99 = 0;
		return;
	}
	qsort(w->lat, w->nlat, sizeof(*w->lat), cmp_u32);
	w->p50 = w->lat[(w->nlat - 1) / 2];
	w->p99 = w->lat[(w->nlat - 1) * 99 / 100];
}

static void refresh(struct tstate *s, __u64 now, bool show)
{
	double dt = secs_since(s, now) - s->last_refresh;
	__u64 c[BSTEER_TS__MAX], inflight, live = 0;
	size_t i, n;

	if (dt <= 0)
		dt = 1e-9;
	inflight = scan_inflight(s, now);
	for (i = 0; i < s->nrows; i++) {
		struct row *w = s->rowv[i];

		w->rate = w->win_uses / dt;
		w->mibs = w->win_bytes / dt / (1 << 20);
		percentiles(w);
		w->win_uses = w->win_bytes = 0;
		w->nlat = 0;
		live += w->live;
	}
	bsteer_tracer_counters(s->t, c);
	if (show && !s->json) {
		if (s->nrows)
			qsort(s->rowv, s->nrows, sizeof(*s->rowv), cmp_rows);
		if (s->tty)
			fputs("\033[H\033[2J", s->out);
		fprintf(s->out, "bsteer trace  %.0fs  events %.0f/s  dropped %llu  rings %zu  buffers %llu  in flight %llu  xcheck errors %llu\n",
			secs_since(s, now), (c[BSTEER_TS_EVENTS] - s->last_events) / dt,
			(unsigned long long)c[BSTEER_TS_DROPS], s->nrings,
			(unsigned long long)live, (unsigned long long)inflight,
			(unsigned long long)(s->xcheck_bpf + s->xcheck_user));
		fprintf(s->out, "%-8s %-16s %4s %5s %9s %8s %6s %8s %8s %8s\n", "PID",
			"COMM", "RING", "IDX", "USES/s", "MiB/s", "INFLT", "P50(us)",
			"P99(us)", "AGE(s)");
		for (i = 0, n = 0; i < s->nrows && (int)n < s->rows; i++) {
			struct row *w = s->rowv[i];
			char age[16];

			if (!w->live && !w->inflight && !w->rate)
				continue;
			if (w->live)
				snprintf(age, sizeof(age), "%.1f%s",
					 secs_since(s, now) - secs_since(s, w->reg_ns),
					 w->discovered ? "+" : "");
			else
				snprintf(age, sizeof(age), "gone");
			fprintf(s->out, "%-8u %-16.16s %4u %5u %9.1f %8.2f %6u %8.1f %8.1f %8s\n",
				w->ring->pid, w->ring->comm, w->ring->id, w->index,
				w->rate, w->mibs, w->inflight, w->p50 / 1e3,
				w->p99 / 1e3, age);
			n++;
		}
		if (!n)
			fprintf(s->out, "(no registered buffers seen yet)\n");
		fflush(s->out);
	}
	s->last_events = c[BSTEER_TS_EVENTS];
	s->last_refresh = secs_since(s, now);
}

/* ---- the end: buffers still alive, and the report ---- */

static void scan_alive(struct tstate *s, __u64 now)
{
	int fd = bsteer_tracer_map_fd(s->t, BSTEER_TMAP_NODES);
	__u64 key, next, *pk = NULL;
	struct bsteer_tnode n;
	struct bsteer_tev e;
	struct ring_rec *r;
	struct leak *l;

	while (!bpf_map_get_next_key(fd, pk, &next)) {
		key = next;
		pk = &key;
		if (bpf_map_lookup_elem(fd, &key, &n))
			continue;
		if (n.uses && !n.unreg_ns)
			continue;
		memset(&e, 0, sizeof(e));
		e.pid = n.pid;
		e.index = n.index;
		e.len = n.len;
		e.addr = n.addr;
		e.node = key;
		r = hget(&s->rings, n.ctx, 0);
		if (!n.uses) {
			l = leak_add(s, LEAK_NEVER_USED, &e, r);
			if (l) {
				l->reg_ns = n.reg_ns;
				l->end_ns = now;
				l->still_alive = true;
				l->discovered = n.flags & BSTEER_TEVF_DISCOVERED;
			}
		}
		if (n.unreg_ns) {
			l = leak_add(s, LEAK_ALIVE, &e, r);
			if (l) {
				l->reg_ns = n.reg_ns;
				l->unreg_ns = n.unreg_ns;
				l->end_ns = now;
				l->uses = n.uses;
				l->holders = n.holders;
				l->still_alive = true;
			}
		}
	}
}

static size_t leaks_of(const struct tstate *s, enum leak_kind k)
{
	size_t i, n = 0;

	for (i = 0; i < s->nleaks; i++)
		n += s->leaks[i].kind == k;
	return n;
}

static void report_text(struct tstate *s, __u64 now, const __u64 *c,
			const char *inst)
{
	static const char *const titles[LEAK__MAX] = {
		[LEAK_NEVER_USED]	= "registered and never used",
		[LEAK_OUTLIVED]		= "freed after their unregister, when the last request let go",
		[LEAK_ALIVE]		= "unregistered and still alive now",
		[LEAK_HELD]		= "requests holding a buffer when their process exited",
	};
	double el = secs_since(s, now);
	char ob[16], hb[32];
	int k;
	size_t i;

	printf("\nbsteer trace: %.1f s, %llu events, %llu dropped\n", el,
	       (unsigned long long)c[BSTEER_TS_EVENTS],
	       (unsigned long long)c[BSTEER_TS_DROPS]);
	bsteer_human_bytes(s->use_bytes, hb, sizeof(hb));
	printf("rings %zu, tables %llu, buffers registered %llu (%llu before the trace), released %llu\n",
	       s->nrings, (unsigned long long)s->tables,
	       (unsigned long long)s->registered, (unsigned long long)s->discovered,
	       (unsigned long long)s->freed);
	printf("uses %llu (%.0f/s, %s), lost completions %llu\n",
	       (unsigned long long)s->uses, el > 0 ? s->uses / el : 0, hb,
	       (unsigned long long)s->lost);
	if (inst)
		printf("cross-check against bsteer instance %s: %llu errors\n", inst,
		       (unsigned long long)(s->xcheck_bpf + s->xcheck_user));
	if (c[BSTEER_TS_DROPS])
		printf("warning: %llu events were lost (ring buffer full); the report undercounts; try --ringbuf\n",
		       (unsigned long long)c[BSTEER_TS_DROPS]);
	if (c[BSTEER_TS_NODES_FULL] || c[BSTEER_TS_USES_FULL])
		printf("warning: tracking maps full: %llu buffers and %llu requests not followed\n",
		       (unsigned long long)c[BSTEER_TS_NODES_FULL],
		       (unsigned long long)c[BSTEER_TS_USES_FULL]);
	printf("\nleak report:\n");
	for (k = 0; k < LEAK__MAX; k++) {
		size_t n = leaks_of(s, k), shown = 0;

		printf("  %s: %zu\n", titles[k], n);
		for (i = 0; i < s->nleaks && shown < 20; i++) {
			const struct leak *l = &s->leaks[i];

			if (l->kind != (enum leak_kind)k)
				continue;
			shown++;
			printf("    pid %u (%s) ring %u index %u", l->pid, l->comm,
			       l->ring, l->index);
			if (l->addr)
				printf(", %u bytes at 0x%llx", l->len,
				       (unsigned long long)l->addr);
			switch (l->kind) {
			case LEAK_NEVER_USED:
				printf(", %s %.3f s after %s\n",
				       l->still_alive ? "still registered" : "released",
				       (l->end_ns - l->reg_ns) / 1e9,
				       l->discovered ? "the trace began (registered before)" :
						       "registration");
				break;
			case LEAK_OUTLIVED:
				printf(", released %.1f ms after its unregister (%u uses)\n",
				       (l->end_ns - l->unreg_ns) / 1e6, l->uses);
				break;
			case LEAK_ALIVE:
				printf(", alive %.3f s after its unregister, %u requests hold it\n",
				       (l->end_ns - l->unreg_ns) / 1e9, l->holders);
				break;
			case LEAK_HELD:
				printf(": %s (user_data 0x%llx) %s%s\n",
				       op_name(l->opcode, ob, sizeof(ob)),
				       (unsigned long long)l->user_data,
				       l->completed ? "completed after the exit began" :
						      "never completed",
				       l->reg_ns ? "" : ", submitted before the trace");
				break;
			default:
				break;
			}
		}
		if (n > shown)
			printf("    ... and %zu more\n", n - shown);
	}
	if (!s->hist)
		return;
	printf("\nsubmit-to-complete latency per use:\n");
	bsteer_print_log2_hist(stdout, s->h_lat, "usecs");
	printf("\nbytes per use:\n");
	bsteer_print_log2_hist(stdout, s->h_bytes, "bytes");
	printf("\nbuffer lifetime, registration to release (hold time):\n");
	bsteer_print_log2_hist(stdout, s->h_life, "usecs");
}

static void report_json(struct tstate *s, __u64 now, const __u64 *c,
			const char *inst)
{
	struct bsteer_json j;
	char ob[16];
	size_t i;
	int k;

	for (i = 0; i < s->nleaks; i++) {
		const struct leak *l = &s->leaks[i];

		json_begin(&j, s->out);
		json_str(&j, "event", "leak");
		json_str(&j, "kind", leak_names[l->kind]);
		json_u64(&j, "pid", l->pid);
		json_str(&j, "comm", l->comm);
		json_u64(&j, "ring", l->ring);
		json_u64(&j, "index", l->index);
		if (l->kind != LEAK_HELD) {
			json_hex(&j, "addr", l->addr);
			json_u64(&j, "len", l->len);
		}
		json_hex(&j, "node", l->node);
		json_bool(&j, "still_alive", l->still_alive);
		json_bool(&j, "before_trace", l->discovered);
		if (l->unreg_ns)
			json_dbl(&j, "after_unregister_ms",
				 (l->end_ns - l->unreg_ns) / 1e6);
		if (l->kind == LEAK_ALIVE)
			json_u64(&j, "holders", l->holders);
		if (l->kind == LEAK_HELD) {
			json_str(&j, "opcode", op_name(l->opcode, ob, sizeof(ob)));
			json_bool(&j, "completed", l->completed);
			json_hex(&j, "req", l->req);
			json_hex(&j, "user_data", l->user_data);
		}
		json_finish(&j);
	}
	json_begin(&j, s->out);
	json_str(&j, "event", "summary");
	json_dbl(&j, "seconds", secs_since(s, now));
	json_u64(&j, "events", c[BSTEER_TS_EVENTS]);
	json_u64(&j, "dropped", c[BSTEER_TS_DROPS]);
	json_u64(&j, "untracked_buffers", c[BSTEER_TS_NODES_FULL]);
	json_u64(&j, "untracked_requests", c[BSTEER_TS_USES_FULL]);
	json_u64(&j, "late_holders", c[BSTEER_TS_LATE_HOLDER]);
	json_u64(&j, "rings", s->nrings);
	json_u64(&j, "tables", s->tables);
	json_u64(&j, "registered", s->registered);
	json_u64(&j, "registered_before_trace", s->discovered);
	json_u64(&j, "released", s->freed);
	json_u64(&j, "uses", s->uses);
	json_u64(&j, "bytes", s->use_bytes);
	json_u64(&j, "lost_completions", s->lost);
	json_u64(&j, "exits", s->exits);
	if (inst)
		json_str(&j, "instance", inst);
	json_u64(&j, "xcheck_errors", s->xcheck_bpf + s->xcheck_user);
	json_obj(&j, "leaks");
	for (k = 0; k < LEAK__MAX; k++)
		json_u64(&j, leak_names[k], leaks_of(s, k));
	json_end_obj(&j);
	if (s->hist) {
		json_obj(&j, "hist");
		json_hist(&j, "latency_us", s->h_lat);
		json_hist(&j, "bytes", s->h_bytes);
		json_hist(&j, "lifetime_us", s->h_life);
		json_end_obj(&j);
	}
	json_finish(&j);
}

static void tstate_free(struct tstate *s)
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

/* ---- processes ---- */

static int proc_ppid(int pid)
{
	char path[64], buf[512], *p;
	int ppid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		if (p && sscanf(p + 1, " %*c %d", &ppid) != 1)
			ppid = -1;
	}
	fclose(f);
	return ppid;
}

/* Children that @pids forked before the trace attached join the filter. */
static void add_descendants(struct bsteer_tracer *t, const int *pids, int npids)
{
	int *set = NULL, n = 0, i, grew = 1;
	struct dirent *de;
	DIR *d;

	set = malloc(sizeof(int) * npids);
	if (!set)
		return;
	memcpy(set, pids, sizeof(int) * npids);
	n = npids;
	while (grew) {
		grew = 0;
		d = opendir("/proc");
		if (!d)
			break;
		while ((de = readdir(d))) {
			int pid = atoi(de->d_name), ppid, *v;
			bool have = false;

			if (pid <= 0)
				continue;
			for (i = 0; i < n; i++)
				have |= set[i] == pid;
			if (have)
				continue;
			ppid = proc_ppid(pid);
			for (i = 0; i < n; i++) {
				if (set[i] != ppid)
					continue;
				v = realloc(set, sizeof(int) * (n + 1));
				if (!v)
					break;
				set = v;
				set[n++] = pid;
				bsteer_tracer_add_pid(t, pid);
				grew = 1;
				break;
			}
		}
		closedir(d);
	}
	free(set);
}

static bool map_empty(int fd)
{
	__u64 k;

	return bpf_map_get_next_key(fd, NULL, &k) != 0;
}

/*
 * Processes that exited before the exit hook could see them (between the
 * start and the attach, or a child added from /proc as it died) would keep
 * the trace waiting for ever: drop the ones that are gone.
 */
static void prune_pids(int fd)
{
	__u32 key, next, *pk = NULL, gone[64];
	int n = 0, i;

	while (!bpf_map_get_next_key(fd, pk, &next) && n < 64) {
		key = next;
		pk = &key;
		if (kill((pid_t)key, 0) && errno == ESRCH)
			gone[n++] = key;
	}
	for (i = 0; i < n; i++)
		bpf_map_delete_elem(fd, &gone[i]);
}

/* Start @argv stopped at a pipe; it execs when the tracer is ready. */
static int spawn(char **argv, int *gate)
{
	int p[2], pid;
	char c;

	if (pipe(p))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(127);
		close(p[0]);
		execvp(argv[0], argv);
		fprintf(stderr, "bsteer trace: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	close(p[0]);
	*gate = p[1];
	return pid;
}

static int parse_secs(const char *s, double *out)
{
	char *end;

	*out = strtod(s, &end);
	return *end || *out <= 0 ? -EINVAL : 0;
}

int cmd_trace(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "comm", required_argument, NULL, 'c' },
		{ "no-follow", no_argument, NULL, 'F' },
		{ "instance", required_argument, NULL, 'i' },
		{ "no-xcheck", no_argument, NULL, 'X' },
		{ "json", no_argument, NULL, 'j' },
		{ "hist", no_argument, NULL, 'H' },
		{ "interval", required_argument, NULL, 'I' },
		{ "duration", required_argument, NULL, 'd' },
		{ "rows", required_argument, NULL, 'r' },
		{ "ringbuf", required_argument, NULL, 'R' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bsteer_tracer_opts to = { .follow_forks = true };
	struct tstate s = { .rows = 20, .slot_meta_fd = -1, .out = stdout };
	char inst[BSTEER_NAME_MAX + 1] = "";
	double interval = 1, duration = 0;
	bool no_xcheck = false;
	int *pids = NULL, npids = 0, opt, err = 0, rc = 0, gate = -1, child = 0;
	int status = 0, fdp, fdr;
	__u64 c[BSTEER_TS__MAX], now, end_ns = 0, linger_ns = 0, next_ns;
	char *endp;
	long v;

	while ((opt = getopt_long(argc, argv, "+p:c:i:jHI:d:r:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'p': {
			int *nv;

			v = strtol(optarg, &endp, 10);
			if (*endp || v <= 0 || v > 0x7fffffff) {
				fprintf(stderr, "bsteer trace: bad pid '%s'\n", optarg);
				free(pids);
				return 2;
			}
			if (kill((int)v, 0) && errno == ESRCH) {
				fprintf(stderr, "bsteer trace: no process %ld\n", v);
				free(pids);
				return 1;
			}
			nv = realloc(pids, sizeof(int) * (npids + 1));
			if (!nv) {
				free(pids);
				return 1;
			}
			pids = nv;
			pids[npids++] = (int)v;
			break;
		}
		case 'c':
			if (!*optarg || strlen(optarg) > 15) {
				fprintf(stderr, "bsteer trace: a command name has 1 to 15 characters, not '%s'\n",
					optarg);
				free(pids);
				return 2;
			}
			to.comm = optarg;
			break;
		case 'F':
			to.follow_forks = false;
			break;
		case 'i':
			if (!bsteer_name_valid(optarg)) {
				fprintf(stderr, "bsteer trace: invalid instance name '%s'\n", optarg);
				free(pids);
				return 2;
			}
			snprintf(inst, sizeof(inst), "%s", optarg);
			break;
		case 'X':
			no_xcheck = true;
			break;
		case 'j':
			s.json = true;
			break;
		case 'H':
			s.hist = true;
			break;
		case 'I':
		case 'd':
			if (parse_secs(optarg, opt == 'I' ? &interval : &duration)) {
				fprintf(stderr, "bsteer trace: bad %s '%s' (seconds > 0)\n",
					opt == 'I' ? "interval" : "duration", optarg);
				free(pids);
				return 2;
			}
			break;
		case 'r':
			v = strtol(optarg, &endp, 10);
			if (*endp || v <= 0 || v > 100000) {
				fprintf(stderr, "bsteer trace: bad row count '%s'\n", optarg);
				free(pids);
				return 2;
			}
			s.rows = (int)v;
			break;
		case 'R':
			v = strtol(optarg, &endp, 10);
			if (*endp || v <= 0 || v > 1024 || (v & (v - 1))) {
				fprintf(stderr, "bsteer trace: --ringbuf takes a power of two MiB up to 1024, not '%s'\n",
					optarg);
				free(pids);
				return 2;
			}
			to.ringbuf_mb = (unsigned int)v;
			break;
		case 'v':
			to.verbose = true;
			break;
		case 'h':
			fputs(trace_usage, stdout);
			free(pids);
			return 0;
		default:
			fputs(trace_usage, stderr);
			free(pids);
			return 2;
		}
	}
	if (optind < argc && (npids || to.comm)) {
		fprintf(stderr, "bsteer trace: a COMMAND cannot be combined with -p or -c\n");
		free(pids);
		return 2;
	}
	if (bsteer_check_privileges("bsteer trace")) {
		free(pids);
		return 1;
	}
	if (optind < argc) {
		child = spawn(argv + optind, &gate);
		if (child < 0) {
			fprintf(stderr, "bsteer trace: cannot start %s: %s\n", argv[optind],
				strerror(-child));
			free(pids);
			return 1;
		}
		pids = malloc(sizeof(int));
		if (!pids) {
			kill(child, SIGKILL);
			return 1;
		}
		pids[0] = child;
		npids = 1;
	}
	if (!inst[0] && !no_xcheck) {
		int i;

		for (i = 0; i < npids && !inst[0]; i++)
			bsteer_instance_of_pid(pids[i], inst, sizeof(inst));
	}
	to.pids = pids;
	to.npids = npids;
	to.instance = inst[0] && !no_xcheck ? inst : NULL;
	to.on_event = on_event;
	to.arg = &s;
	s.tty = isatty(STDOUT_FILENO);
	if (s.json)
		setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	s.start_ns = bsteer_now_ns();
	s.t = bsteer_tracer_open(&to, &err);
	if (!s.t) {
		fprintf(stderr, "bsteer trace: %s\n", bsteer_errbuf());
		if (child)
			kill(child, SIGKILL), waitpid(child, NULL, 0);
		free(pids);
		return 1;
	}
	s.slot_meta_fd = bsteer_tracer_map_fd(s.t, BSTEER_TMAP_SLOT_META);
	if (npids && to.follow_forks)
		add_descendants(s.t, pids, npids);
	install_signals();
	if (child) {
		if (write(gate, "g", 1) != 1)
			kill(child, SIGKILL);
		close(gate);
	}
	if (!s.json)
		fprintf(stderr, "bsteer trace: tracing %s%s%s; Ctrl-C to stop\n",
			child ? argv[optind] : npids ? "the processes given" :
			to.comm ? to.comm : "every process",
			to.instance ? ", cross-checking instance " : "",
			to.instance ? to.instance : "");
	else
		fprintf(stderr, "bsteer trace: ready\n");
	fdp = bsteer_tracer_map_fd(s.t, BSTEER_TMAP_PIDS);
	fdr = bsteer_tracer_map_fd(s.t, BSTEER_TMAP_RINGS);
	if (duration)
		end_ns = s.start_ns + (__u64)(duration * 1e9);
	next_ns = s.start_ns + (__u64)(interval * 1e9);
	while (!exiting) {
		err = bsteer_tracer_poll(s.t, 20);
		if (err) {
			fprintf(stderr, "bsteer trace: reading events: %s\n", strerror(-err));
			rc = 1;
			break;
		}
		now = bsteer_now_ns();
		if (child && waitpid(child, &status, WNOHANG) == child)
			child = -child;
		if (now >= next_ns) {
			refresh(&s, now, true);
			if (npids)
				prune_pids(fdp);
			next_ns = now + (__u64)(interval * 1e9);
		}
		if (end_ns && now >= end_ns)
			break;
		/*
		 * Everything traced has exited: give the rings' teardown (a
		 * kworker, after the last request) up to 3 s to release.
		 */
		if (npids && child <= 0 && map_empty(fdp)) {
			if (!linger_ns)
				linger_ns = now + 3000000000ull;
			if (map_empty(fdr) || now >= linger_ns)
				break;
		}
	}
	bsteer_tracer_poll(s.t, 0);
	now = bsteer_now_ns();
	refresh(&s, now, false);
	scan_alive(&s, now);
	bsteer_tracer_counters(s.t, c);
	if (s.json)
		report_json(&s, now, c, to.instance);
	else
		report_text(&s, now, c, to.instance);
	fflush(stdout);
	if (c[BSTEER_TS_DROPS])
		fprintf(stderr, "bsteer trace: %llu events lost: the ring buffer was full\n",
			(unsigned long long)c[BSTEER_TS_DROPS]);
	if (child > 0) {
		kill(child, SIGTERM);
		waitpid(child, &status, 0);
	}
	/* Like strace: a COMMAND's own status, unless the trace failed. */
	if (child && !rc)
		rc = WIFEXITED(status) ? WEXITSTATUS(status) :
		     WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
	if (s.xcheck_bpf + s.xcheck_user)
		rc = 1;
	bsteer_tracer_close(s.t);
	tstate_free(&s);
	free(pids);
	return rc;
}
