/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The tracer's views, shared by their files:
 *
 *   model.c    a small hash map, and the model the events build: rings,
 *              rows (a ring's buffer index), leak records, counters
 *   json.c     one JSON object per event (--json)
 *   live.c     the refresh: requests in flight, the userspace
 *              cross-check, the live table
 *   report.c   the end: buffers still alive, the leak report, text or
 *              JSON, and the histograms
 *   procs.c    the processes: COMMAND started, children followed,
 *              the exited ones dropped from the filter
 *   session.c  one "bsteer trace" run, from start to exit status
 *
 * The tracer's loader (tracer.c) knows nothing of these; they see it
 * through trace.h, like any caller.
 */
#ifndef BSTEER_TRACE_PRIV_H
#define BSTEER_TRACE_PRIV_H

#include <stdbool.h>
#include <stdio.h>
#include "libbsteer.h"
#include "trace/trace.h"

/* ---- model.c: a small hash, (k1, k2) -> pointer ---- */

struct hent {
	__u64 k1, k2;
	void *v;
};

struct hmap {
	struct hent *e;
	size_t cap, n;
};

void *hmap_get(const struct hmap *h, __u64 k1, __u64 k2);
int hmap_put(struct hmap *h, __u64 k1, __u64 k2, void *v);

/* ---- model.c: the model ---- */

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

static inline double secs_since(const struct tstate *s, __u64 ns)
{
	return ns > s->start_ns ? (ns - s->start_ns) / 1e9 : 0;
}

const char *trace_op_name(__u8 op, char *buf, size_t len);
const char *trace_xcheck_why(__s32 why);
struct leak *trace_leak_add(struct tstate *s, enum leak_kind kind,
			    const struct bsteer_tev *e, struct ring_rec *r);
/* The tracer's callback: count @e into the model, print it under --json. */
int trace_on_event(void *arg, const struct bsteer_tev *e);
void trace_state_free(struct tstate *s);

/* ---- json.c ---- */

void trace_json_hex(struct bsteer_json *j, const char *key, __u64 v);
void trace_json_event(struct tstate *s, const struct bsteer_tev *e,
		      struct ring_rec *r);

/* ---- live.c ---- */

/* Rates and percentiles of the interval that ends @now; the table if @show. */
void trace_refresh(struct tstate *s, __u64 now, bool show);

/* ---- report.c ---- */

/* The leak report and the summary, with the counters it read into @c. */
void trace_report(struct tstate *s, __u64 now, const char *inst,
		  __u64 c[BSTEER_TS__MAX]);

/* ---- procs.c ---- */

int trace_spawn(char *const *argv, int out_fd, int *gate);
void trace_add_descendants(struct bsteer_tracer *t, const int *pids, int npids);
void trace_prune_pids(int fd);
bool trace_map_empty(int fd);

#endif /* BSTEER_TRACE_PRIV_H */
