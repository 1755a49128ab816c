/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The buffer-lifetime tracer (bpf/trace/trace.bpf.c): load, filter,
 * attach, and hand each event to a callback (tracer.c). On top of it, one
 * "bsteer trace" session: the model, the live table, the JSON events and
 * the leak report (session.c and the files trace_priv.h lists).
 */
#ifndef BSTEER_TRACE_USER_H
#define BSTEER_TRACE_USER_H

#include <signal.h>
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

/* One session: what "bsteer trace" asks for. */
struct bsteer_trace_opts {
	/* Whom to trace; its instance, on_event and arg are the session's. */
	struct bsteer_tracer_opts tracer;
	char *const *argv;		/* COMMAND to start and trace, or NULL */
	int command_stdout;		/* COMMAND's stdout: an fd, or -1 for ours */
	const char *instance;		/* NULL: the one @tracer.pids run, if any */
	bool no_xcheck;			/* no cross-check, even with @instance */
	bool json;			/* JSON lines, not the table and text */
	bool hist;			/* histograms at the end */
	int rows;			/* of the table */
	double interval;		/* seconds between refreshes */
	double duration;		/* seconds; 0: until stopped */
	volatile sig_atomic_t *stop;	/* set (by a signal): report and end */
	/*
	 * Called once the tracer is attached, before COMMAND runs: where
	 * the caller installs its signal handlers, which neither the load
	 * nor COMMAND (it would inherit a SIG_IGN) should get.
	 */
	void (*on_attached)(void);
};

/*
 * Trace until *@stop, the duration, or the end of all that is traced, then
 * report. Returns the exit status: COMMAND's (128+N for signal N), or 1 on
 * an error or a cross-check error, else 0.
 */
int bsteer_trace_run(const struct bsteer_trace_opts *o);

#endif /* BSTEER_TRACE_USER_H */
