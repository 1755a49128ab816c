/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The buffer-lifetime tracer (bpf/trace.bpf.c): load, filter, attach, and
 * hand each event to a callback. The views live in cmd_trace.c.
 */
#ifndef BSTEER_TRACE_USER_H
#define BSTEER_TRACE_USER_H

#include <stdbool.h>
#include "bsteer_trace.h"

struct bsteer_tracer;

typedef int (*bsteer_tev_fn)(void *arg, const struct bsteer_tev *e);

struct bsteer_tracer_opts {
	const int *pids;		/* trace only these processes ... */
	int npids;
	const char *comm;		/* ... or processes with this name */
	bool follow_forks;		/* children of @pids forked later too */
	const char *instance;		/* cross-check against its slot state */
	unsigned int ringbuf_mb;	/* 0: the default (16) */
	bool verbose;			/* libbpf's messages */
	bsteer_tev_fn on_event;
	void *arg;
};

/* Which of the tracer's maps userspace reads while tracing. */
enum bsteer_tracer_map {
	BSTEER_TMAP_NODES,		/* struct bsteer_tnode by node */
	BSTEER_TMAP_USES,		/* struct bsteer_tuse by request */
	BSTEER_TMAP_RINGS,		/* struct bsteer_tring by ctx */
	BSTEER_TMAP_PIDS,
	BSTEER_TMAP_SLOT_META,		/* the instance's, when cross-checking */
};

struct bsteer_tracer *bsteer_tracer_open(const struct bsteer_tracer_opts *o,
					 int *err);
/* Deliver pending events; 0, or -errno (the callback's, or the poll's). */
int bsteer_tracer_poll(struct bsteer_tracer *t, int timeout_ms);
void bsteer_tracer_counters(struct bsteer_tracer *t, __u64 out[BSTEER_TS__MAX]);
int bsteer_tracer_map_fd(struct bsteer_tracer *t, enum bsteer_tracer_map m);
int bsteer_tracer_add_pid(struct bsteer_tracer *t, int pid);
/* The instance cross-checked, or NULL. */
const char *bsteer_tracer_instance(struct bsteer_tracer *t);
void bsteer_tracer_close(struct bsteer_tracer *t);

#endif /* BSTEER_TRACE_USER_H */
