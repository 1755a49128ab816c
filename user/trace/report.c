// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The end of a trace: the buffers still alive (from the tracer's "tnodes"
 * map, since no event will tell of them), then the leak report and the
 * summary, as text or as the last JSON lines, and the histograms.
 */
#include <stdio.h>
#include <string.h>
#include <bpf/bpf.h>
#include "trace/trace_priv.h"

static const char *const leak_names[LEAK__MAX] = {
	[LEAK_NEVER_USED]	= "never_used",
	[LEAK_OUTLIVED]		= "outlived_unregister",
	[LEAK_ALIVE]		= "alive_after_unregister",
	[LEAK_HELD]		= "held_at_exit",
};

/* A buffer alive now: never used, or unregistered and still held. */
static void alive_node(struct tstate *s, __u64 key, const struct bsteer_tnode *n,
		       __u64 now)
{
	struct bsteer_tev e;
	struct ring_rec *r;
	struct leak *l;

	memset(&e, 0, sizeof(e));
	e.pid = n->pid;
	e.index = n->index;
	e.len = n->len;
	e.addr = n->addr;
	e.node = key;
	r = hmap_get(&s->rings, n->ctx, 0);
	if (!n->uses) {
		l = trace_leak_add(s, LEAK_NEVER_USED, &e, r);
		if (l) {
			l->reg_ns = n->reg_ns;
			l->end_ns = now;
			l->still_alive = true;
			l->discovered = n->flags & BSTEER_TEVF_DISCOVERED;
		}
	}
	if (n->unreg_ns) {
		l = trace_leak_add(s, LEAK_ALIVE, &e, r);
		if (l) {
			l->reg_ns = n->reg_ns;
			l->unreg_ns = n->unreg_ns;
			l->end_ns = now;
			l->uses = n->uses;
			l->holders = n->holders;
			l->still_alive = true;
		}
	}
}

static void scan_alive(struct tstate *s, __u64 now)
{
	int fd = bsteer_tracer_map_fd(s->t, BSTEER_TMAP_NODES);
	__u64 key, next, *pk = NULL;
	struct bsteer_tnode n;

	while (!bpf_map_get_next_key(fd, pk, &next)) {
		key = next;
		pk = &key;
		if (bpf_map_lookup_elem(fd, &key, &n))
			continue;
		if (n.uses && !n.unreg_ns)
			continue;
		alive_node(s, key, &n, now);
	}
}

static size_t leaks_of(const struct tstate *s, enum leak_kind k)
{
	size_t i, n = 0;

	for (i = 0; i < s->nleaks; i++)
		n += s->leaks[i].kind == k;
	return n;
}

/* ---- text ---- */

static void text_summary(struct tstate *s, __u64 now, const __u64 *c,
			 const char *inst)
{
	double el = secs_since(s, now);
	char hb[32];

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
}

static void text_leak(const struct leak *l)
{
	char ob[16];

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
		       trace_op_name(l->opcode, ob, sizeof(ob)),
		       (unsigned long long)l->user_data,
		       l->completed ? "completed after the exit began" :
				      "never completed",
		       l->reg_ns ? "" : ", submitted before the trace");
		break;
	default:
		break;
	}
}

/* Each kind's count, and its first 20 leaks. */
static void text_leaks(const struct tstate *s)
{
	static const char *const titles[LEAK__MAX] = {
		[LEAK_NEVER_USED]	= "registered and never used",
		[LEAK_OUTLIVED]		= "freed after their unregister, when the last request let go",
		[LEAK_ALIVE]		= "unregistered and still alive now",
		[LEAK_HELD]		= "requests holding a buffer when their process exited",
	};
	int k;
	size_t i;

	printf("\nleak report:\n");
	for (k = 0; k < LEAK__MAX; k++) {
		size_t n = leaks_of(s, k), shown = 0;

		printf("  %s: %zu\n", titles[k], n);
		for (i = 0; i < s->nleaks && shown < 20; i++) {
			if (s->leaks[i].kind != (enum leak_kind)k)
				continue;
			shown++;
			text_leak(&s->leaks[i]);
		}
		if (n > shown)
			printf("    ... and %zu more\n", n - shown);
	}
}

static void report_text(struct tstate *s, __u64 now, const __u64 *c,
			const char *inst)
{
	text_summary(s, now, c, inst);
	text_leaks(s);
	if (!s->hist)
		return;
	printf("\nsubmit-to-complete latency per use:\n");
	bsteer_print_log2_hist(stdout, s->h_lat, "usecs");
	printf("\nbytes per use:\n");
	bsteer_print_log2_hist(stdout, s->h_bytes, "bytes");
	printf("\nbuffer lifetime, registration to release (hold time):\n");
	bsteer_print_log2_hist(stdout, s->h_life, "usecs");
}

/* ---- JSON ---- */

static void json_leak(struct tstate *s, const struct leak *l)
{
	struct bsteer_json j;
	char ob[16];

	json_begin(&j, s->out);
	json_str(&j, "event", "leak");
	json_str(&j, "kind", leak_names[l->kind]);
	json_u64(&j, "pid", l->pid);
	json_str(&j, "comm", l->comm);
	json_u64(&j, "ring", l->ring);
	json_u64(&j, "index", l->index);
	if (l->kind != LEAK_HELD) {
		trace_json_hex(&j, "addr", l->addr);
		json_u64(&j, "len", l->len);
	}
	trace_json_hex(&j, "node", l->node);
	json_bool(&j, "still_alive", l->still_alive);
	json_bool(&j, "before_trace", l->discovered);
	if (l->unreg_ns)
		json_dbl(&j, "after_unregister_ms",
			 (l->end_ns - l->unreg_ns) / 1e6);
	if (l->kind == LEAK_ALIVE)
		json_u64(&j, "holders", l->holders);
	if (l->kind == LEAK_HELD) {
		json_str(&j, "opcode", trace_op_name(l->opcode, ob, sizeof(ob)));
		json_bool(&j, "completed", l->completed);
		trace_json_hex(&j, "req", l->req);
		trace_json_hex(&j, "user_data", l->user_data);
	}
	json_finish(&j);
}

static void json_summary(struct tstate *s, __u64 now, const __u64 *c,
			 const char *inst)
{
	struct bsteer_json j;
	int k;

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

void trace_report(struct tstate *s, __u64 now, const char *inst,
		  __u64 c[BSTEER_TS__MAX])
{
	size_t i;

	scan_alive(s, now);
	bsteer_tracer_counters(s->t, c);
	if (!s->json) {
		report_text(s, now, c, inst);
		return;
	}
	for (i = 0; i < s->nleaks; i++)
		json_leak(s, &s->leaks[i]);
	json_summary(s, now, c, inst);
}
