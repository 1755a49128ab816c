// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * One "bsteer trace" session: start COMMAND (held at a gate) or find the
 * processes' bsteer instance, load and attach the tracer, then poll its
 * events into the model, refreshing the view every interval, until a
 * signal, the duration, or the end of everything traced; then the report
 * and the exit status.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "trace/trace_priv.h"

struct session {
	const struct bsteer_trace_opts *o;
	struct bsteer_tracer_opts to;
	struct tstate s;
	char inst[BSTEER_NAME_MAX + 1];
	int cmd_pid;		/* COMMAND's, as the filter */
	int child;		/* COMMAND running; -pid once reaped; 0: none */
	int gate;		/* COMMAND execs once a byte comes through */
	int status;		/* COMMAND's, from waitpid() */
};

/* Start COMMAND, held at its gate; it is then the one process traced. */
static int start_command(struct session *ss)
{
	char *const *argv = ss->o->argv;

	ss->child = trace_spawn(argv, ss->o->command_stdout, &ss->gate);
	if (ss->child < 0) {
		fprintf(stderr, "bsteer trace: cannot start %s: %s\n", argv[0],
			strerror(-ss->child));
		return -1;
	}
	ss->cmd_pid = ss->child;
	ss->to.pids = &ss->cmd_pid;
	ss->to.npids = 1;
	return 0;
}

/* The instance to cross-check: the one named, or the one a pid runs. */
static void find_instance(struct session *ss)
{
	const struct bsteer_trace_opts *o = ss->o;
	int i;

	if (o->instance)
		snprintf(ss->inst, sizeof(ss->inst), "%s", o->instance);
	if (!ss->inst[0] && !o->no_xcheck)
		for (i = 0; i < ss->to.npids && !ss->inst[0]; i++)
			bsteer_instance_of_pid(ss->to.pids[i], ss->inst,
					       sizeof(ss->inst));
	ss->to.instance = ss->inst[0] && !o->no_xcheck ? ss->inst : NULL;
}

/* Load and attach the tracer; then let COMMAND go. */
static int attach(struct session *ss)
{
	struct tstate *s = &ss->s;
	int err = 0;

	ss->to.on_event = trace_on_event;
	ss->to.arg = s;
	s->tty = isatty(STDOUT_FILENO);
	if (s->json)
		setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	s->start_ns = bsteer_now_ns();
	s->t = bsteer_tracer_open(&ss->to, &err);
	if (!s->t) {
		fprintf(stderr, "bsteer trace: %s\n", bsteer_errbuf());
		if (ss->child)
			kill(ss->child, SIGKILL), waitpid(ss->child, NULL, 0);
		return -1;
	}
	s->slot_meta_fd = bsteer_tracer_map_fd(s->t, BSTEER_TMAP_SLOT_META);
	if (ss->to.npids && ss->to.follow_forks)
		trace_add_descendants(s->t, ss->to.pids, ss->to.npids);
	if (ss->o->on_attached)
		ss->o->on_attached();
	if (ss->child) {
		if (write(ss->gate, "g", 1) != 1)
			kill(ss->child, SIGKILL);
		close(ss->gate);
	}
	return 0;
}

static void say_ready(const struct session *ss)
{
	const struct bsteer_tracer_opts *to = &ss->to;

	if (ss->s.json) {
		fprintf(stderr, "bsteer trace: ready\n");
		return;
	}
	fprintf(stderr, "bsteer trace: tracing %s%s%s; Ctrl-C to stop\n",
		ss->child ? ss->o->argv[0] : to->npids ? "the processes given" :
		to->comm ? to->comm : "every process",
		to->instance ? ", cross-checking instance " : "",
		to->instance ? to->instance : "");
}

/*
 * Everything traced has exited: give the rings' teardown (a kworker,
 * after the last request) up to 3 s to release.
 */
static bool all_gone(struct session *ss, int fdp, int fdr, __u64 now,
		     __u64 *linger_ns)
{
	if (!ss->to.npids || ss->child > 0 || !trace_map_empty(fdp))
		return false;
	if (!*linger_ns)
		*linger_ns = now + 3000000000ull;
	return trace_map_empty(fdr) || now >= *linger_ns;
}

/* Poll, refresh, and look for the end; 0, or 1 if the events failed. */
static int run_loop(struct session *ss)
{
	const struct bsteer_trace_opts *o = ss->o;
	struct tstate *s = &ss->s;
	int fdp = bsteer_tracer_map_fd(s->t, BSTEER_TMAP_PIDS);
	int fdr = bsteer_tracer_map_fd(s->t, BSTEER_TMAP_RINGS);
	__u64 now, end_ns = 0, linger_ns = 0, next_ns;
	int err;

	if (o->duration)
		end_ns = s->start_ns + (__u64)(o->duration * 1e9);
	next_ns = s->start_ns + (__u64)(o->interval * 1e9);
	while (!(o->stop && *o->stop)) {
		err = bsteer_tracer_poll(s->t, 20);
		if (err) {
			fprintf(stderr, "bsteer trace: reading events: %s\n", strerror(-err));
			return 1;
		}
		now = bsteer_now_ns();
		if (ss->child && waitpid(ss->child, &ss->status, WNOHANG) == ss->child)
			ss->child = -ss->child;
		if (now >= next_ns) {
			trace_refresh(s, now, true);
			if (ss->to.npids)
				trace_prune_pids(fdp);
			next_ns = now + (__u64)(o->interval * 1e9);
		}
		if ((end_ns && now >= end_ns) || all_gone(ss, fdp, fdr, now, &linger_ns))
			break;
	}
	return 0;
}

/* The last events, the report, and the exit status from @rc. */
static int finish(struct session *ss, int rc)
{
	struct tstate *s = &ss->s;
	__u64 c[BSTEER_TS__MAX], now;

	bsteer_tracer_poll(s->t, 0);
	now = bsteer_now_ns();
	trace_refresh(s, now, false);
	trace_report(s, now, ss->to.instance, c);
	fflush(stdout);
	if (c[BSTEER_TS_DROPS])
		fprintf(stderr, "bsteer trace: %llu events lost: the ring buffer was full\n",
			(unsigned long long)c[BSTEER_TS_DROPS]);
	if (ss->child > 0) {
		kill(ss->child, SIGTERM);
		waitpid(ss->child, &ss->status, 0);
	}
	/* Like strace: a COMMAND's own status, unless the trace failed. */
	if (ss->child && !rc)
		rc = WIFEXITED(ss->status) ? WEXITSTATUS(ss->status) :
		     WIFSIGNALED(ss->status) ? 128 + WTERMSIG(ss->status) : 1;
	if (s->xcheck_bpf + s->xcheck_user)
		rc = 1;
	bsteer_tracer_close(s->t);
	trace_state_free(s);
	return rc;
}

int bsteer_trace_run(const struct bsteer_trace_opts *o)
{
	struct session ss = {
		.o = o,
		.to = o->tracer,
		.s = {
			.json = o->json, .hist = o->hist, .rows = o->rows,
			.slot_meta_fd = -1, .out = stdout,
		},
		.gate = -1,
	};

	if (o->argv && start_command(&ss))
		return 1;
	find_instance(&ss);
	if (attach(&ss))
		return 1;
	say_ready(&ss);
	return finish(&ss, run_loop(&ss));
}
