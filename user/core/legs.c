// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Legs added to and removed from a running server (bsteer leg), the
 * server's side. The BPF side sees a fixed table of targets, so an export
 * whose layout keeps every leg whole (a mirror) is given spare places at
 * start, BSTEER_TGT_FAILED|BSTEER_TGT_ABSENT: no policy reads or writes a
 * failed target, and the executor refuses ops to one. Worker 0 polls the
 * pinned "leg_request" map, as it does "resync", and runs one change at a
 * time:
 *
 *  add: the target is opened on worker 0 (the "main" leg, which the main
 *  thread closes at exit), then on every other worker's ring in a round
 *  (a connection of its own for a module that wants one per ring). The
 *  place stays FAILED until then. With --resync it is rebuilt from the
 *  other legs: flagged RESYNC as it leaves FAILED, so it takes every write
 *  from then on, and the rebuild copies the rest (resync.c); nothing
 *  acknowledged is missed. Without, it stays FAILED (out of date) until a
 *  `bsteer resync`.
 *
 *  remove: the leg is flagged FAILED|ABSENT, so no new op goes to it (an
 *  op decided a moment before comes back EIO and the policy goes on with
 *  the other legs); once its ops in flight are back, every worker cancels
 *  what the leg's module left on its ring, detaches it and closes its own
 *  copy; worker 0 then closes the main one. The last leg in service, or
 *  the only up-to-date one while another is rebuilt, is not removed.
 *
 * Only a layout that keeps the whole export on each leg takes a new leg;
 * one that deals the export among its legs (a stripe) would need the data
 * moved, and is refused.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "libbsteer.h"

#define LJ_POLL_NS	200000000ull	/* look for a request this often */
#define LJ_DRAIN_NS	30000000000ull	/* for a removed leg's ops to come back */

enum lj_phase {
	LJ_IDLE,
	LJ_ADDING,	/* the round attaching it */
	LJ_STARTING,	/* in: its rebuild waits for the last one's copies */
	LJ_UNDOING,	/* a worker could not: the round letting it go */
	LJ_DRAINING,	/* removed: its ops in flight coming back */
	LJ_REMOVING,	/* the round letting it go */
};

struct bsteer_leg_job {
	struct bsteer_leg_request st;
	enum lj_phase phase;
	struct bsteer_export *ex;
	__u32 i, t;			/* leg, target */
	__u64 polled_ns, deadline;
	char why[BSTEER_LEG_SPEC_MAX + 256];
};

/*
 * The legs added while serving: their specs (the export's own point into
 * the command line), and the main leg each worker copies in a round.
 * Worker 0 writes an entry before it begins the round; the round's lock
 * orders that before the other workers read it.
 */
static char *added_spec[BSTEER_MAX_TARGETS];
static struct bsteer_leg added[BSTEER_MAX_TARGETS];

static int map_pin(struct bsteer_server *s, const char *name, __u32 vsize,
		   __u32 n, int *out)
{
	char path[PATH_MAX + 16];
	int fd;

	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, name, sizeof(__u32), vsize, n, NULL);
	if (fd < 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/%s", s->in->dir, name);
	if (bpf_obj_pin(fd, path)) {
		int err = -errno;

		close(fd);
		return err;
	}
	chmod(path, 0600);
	*out = fd;
	return 0;
}

static void spec_publish(struct bsteer_server *s, __u32 t, const char *spec)
{
	struct bsteer_leg_spec v = {};

	if (s->legspec_fd < 0)
		return;
	snprintf(v.spec, sizeof(v.spec), "%s", spec ? spec : "");
	bpf_map_update_elem(s->legspec_fd, &t, &v, BPF_ANY);
}

int legs_pin(struct bsteer_server *s)
{
	__u32 i;
	int k, err;

	err = map_pin(s, "leg_request", sizeof(struct bsteer_leg_request), 1,
		      &s->legreq_fd);
	if (!err)
		err = map_pin(s, "leg_specs", sizeof(struct bsteer_leg_spec),
			      BSTEER_MAX_TARGETS, &s->legspec_fd);
	if (err)
		return err;
	for (k = 0; k < s->nexports; k++)
		for (i = 0; i < s->exports[k].ntargets; i++)
			spec_publish(s, s->exports[k].tbase + i, s->exports[k].leg[i].spec);
	return 0;
}

/* Target @t's export and leg on this worker. */
static struct bsteer_export *export_of(struct bsteer_server *s, __u32 t, __u32 *i)
{
	int k;

	for (k = 0; k < s->nexports; k++) {
		struct bsteer_export *ex = &s->exports[k];

		if (t >= ex->tbase && t < ex->tbase + ex->ntargets) {
			*i = t - ex->tbase;
			return ex;
		}
	}
	return NULL;
}

int bsteer_export_first_leg(const struct bsteer_instance *in,
			    const struct bsteer_export *ex)
{
	__u32 i, f;

	for (i = 0; i < ex->ntargets; i++) {
		f = __atomic_load_n(&in->targets[ex->tbase + i].flags, __ATOMIC_ACQUIRE);
		if (!(f & (BSTEER_TGT_FAILED | BSTEER_TGT_RESYNC | BSTEER_TGT_ABSENT)))
			return i;
	}
	return -1;
}

int legs_attach_mine(struct bsteer_server *s, __u32 t, const char **why)
{
	struct bsteer_leg mine = added[t];
	struct bsteer_export *ex;
	__u32 i;
	int err;

	ex = export_of(s, t, &i);
	if (!ex || !mine.ops) {
		*why = "no such leg";
		return -EINVAL;
	}
	if (s->ring && mine.ops->per_worker) {
		/* Worker 0 has checked that it takes writes. */
		mine.rdonly = true;
		mine.priv = NULL;
		mine.fd = -1;
		bsteer_set_err("%s", "");
		err = mine.ops->open(&mine);
		if (err) {
			*why = *bsteer_errbuf() ? bsteer_errbuf() : "cannot open the leg";
			return err;
		}
	}
	err = bsteer_engine_target_file(s->e, t, mine.fd);
	if (!err)
		err = bsteer_engine_attach(s->e, t, mine.ops, &mine);
	if (err) {
		*why = "cannot put the leg in the ring";
		bsteer_engine_attach(s->e, t, NULL, NULL);
		bsteer_engine_target_file(s->e, t, -1);
		if (s->ring && mine.ops->per_worker && mine.ops->close)
			mine.ops->close(&mine);
		return err;
	}
	s->legs[t] = mine;
	ex->leg[i] = added[t];
	return 0;
}

void legs_detach_mine(struct bsteer_server *s, __u32 t)
{
	struct bsteer_leg *mine = &s->legs[t];
	const struct bsteer_target_ops *ops = bsteer_target_ops_of(s->e, t);
	struct bsteer_export *ex;
	__u32 i;

	/* Nothing of the module's may land in its buffers once they are freed. */
	bsteer_engine_target_cancel(s->e, t, mine->ops ? mine->fd : -1);
	if (ops && ops->detach)
		ops->detach(s->e, t);
	bsteer_engine_attach(s->e, t, NULL, NULL);
	bsteer_engine_target_file(s->e, t, -1);
	resync_forget(s, t);
	if (s->ring && mine->ops && mine->ops->per_worker && mine->ops->close)
		mine->ops->close(mine);
	*mine = (struct bsteer_leg){ .fd = -1 };
	ex = export_of(s, t, &i);
	if (ex)
		ex->leg[i] = (struct bsteer_leg){ .fd = -1 };
}

/* ---- worker 0: the job ---- */

static void publish(struct bsteer_server *s, struct bsteer_leg_job *j)
{
	__u32 key = 0;

	bpf_map_update_elem(s->legreq_fd, &key, &j->st, BPF_ANY);
}

static void job_done(struct bsteer_server *s, struct bsteer_leg_job *j, int err,
		     const char *why)
{
	j->phase = LJ_IDLE;
	j->st.error = err;
	j->st.state = err ? BSTEER_RS_FAILED : BSTEER_RS_DONE;
	if (err) {
		snprintf(j->st.message, sizeof(j->st.message), "%s", why);
		serve_err(s, "export '%s': %s leg: %s", j->st.export,
			  j->st.op == BSTEER_LEG_ADD ? "cannot add the" : "cannot remove the",
			  why);
	}
	publish(s, j);
}

/* Close worker 0's (the main thread's) copy of the leg at @t, and forget it. */
static void main_close(struct bsteer_server *s, struct bsteer_leg_job *j)
{
	struct bsteer_leg *m = &s->main->exports[j->ex - s->exports].leg[j->i];

	if (m->ops && m->ops->close)
		m->ops->close(m);
	*m = (struct bsteer_leg){ .fd = -1 };
	added[j->t] = (struct bsteer_leg){ .fd = -1 };
	spec_publish(s, j->t, NULL);
}

/* Every leg of @ex but @skip: how many serve reads, how many are rebuilt. */
static void count_legs(struct bsteer_server *s, const struct bsteer_export *ex,
		       __u32 skip, __u32 *good, __u32 *rebuilt)
{
	__u32 i, f;

	*good = *rebuilt = 0;
	for (i = 0; i < ex->ntargets; i++) {
		f = s->in->targets[ex->tbase + i].flags;
		if (i == skip || (f & BSTEER_TGT_ABSENT))
			continue;
		if (f & BSTEER_TGT_RESYNC)
			(*rebuilt)++;
		else if (!(f & BSTEER_TGT_FAILED))
			(*good)++;
	}
}

/* What refuses any change to @ex's legs; NULL if none. */
static const char *refusal(struct bsteer_server *s, struct bsteer_leg_job *j, int *err)
{
	char layout[32];

	if (!j->ex) {
		*err = -ENOENT;
		return "no such export";
	}
	snprintf(layout, sizeof(layout), "%s", s->in->info->layout);
	if (strcmp(layout, "replica")) {
		*err = -EOPNOTSUPP;
		snprintf(j->why, sizeof(j->why),
			 "policy %s keeps a %s layout, which a change in the number of legs would break: only a mirror takes one",
			 s->policy ? s->policy->name : "?", layout);
		return j->why;
	}
	if (j->ex->rdonly) {
		*err = -EROFS;
		return "the export is read-only";
	}
	if (round_busy()) {
		*err = -EBUSY;
		return "another leg change or a reopening is under way";
	}
	return NULL;
}

static void add_start(struct bsteer_server *s, struct bsteer_leg_job *j)
{
	struct bsteer_leg leg = { .fd = -1 };
	const char *why;
	__u32 i, n;
	char *spec;
	int err = 0;

	why = refusal(s, j, &err);
	if (!why && j->st.resync && resync_running(s, BSTEER_NO_SLOT)) {
		err = -EBUSY;
		why = "a rebuild is running (one at a time)";
	}
	for (i = 0; !why && i < j->ex->ntargets; i++)
		if (j->ex->leg[i].spec && !strcmp(j->ex->leg[i].spec, j->st.spec)) {
			err = -EEXIST;
			why = "the export has this leg already";
		}
	if (why) {
		job_done(s, j, err, why);
		return;
	}
	/* A free place: absent, and nothing left in it (a remove that timed out). */
	for (n = 0; n < j->ex->ntargets; n++)
		if ((s->in->targets[j->ex->tbase + n].flags & BSTEER_TGT_ABSENT) &&
		    !j->ex->leg[n].ops)
			break;
	if (n == j->ex->ntargets) {
		err = -ENOSPC;
		snprintf(j->why, sizeof(j->why),
			 "no free place: the export has room for %u legs (remove one first)",
			 j->ex->ntargets);
		why = j->why;
	}
	if (why) {
		job_done(s, j, err, why);
		return;
	}
	j->i = n;
	j->t = j->ex->tbase + n;
	j->st.leg = n;
	j->st.target = j->t;
	spec = strdup(j->st.spec);
	if (!spec) {
		job_done(s, j, -ENOMEM, "out of memory");
		return;
	}
	leg.spec = spec;
	leg.timeout_ms = s->eo.target_timeout_ms;
	leg.direct = j->ex->direct;
	leg.ops = bsteer_target_for(spec);
	bsteer_set_err("%s", "");
	err = leg.ops ? leg.ops->open(&leg) : -EINVAL;
	if (!err && leg.size < j->ex->size) {
		snprintf(j->why, sizeof(j->why), "the target has %llu bytes, the export %llu",
			 (unsigned long long)leg.size, (unsigned long long)j->ex->size);
		leg.ops->close(&leg);
		err = -ENOSPC;
	} else if (err) {
		snprintf(j->why, sizeof(j->why), "cannot open the target: %s",
			 !leg.ops ? "no target module takes it" :
			 *bsteer_errbuf() ? bsteer_errbuf() : strerror(-err));
	}
	if (err) {
		free(spec);
		job_done(s, j, err, j->why);
		return;
	}
	free(added_spec[j->t]);
	added_spec[j->t] = spec;
	added[j->t] = leg;
	s->main->exports[j->ex - s->exports].leg[n] = leg;
	/* A fresh leg: counters from zero, its size for bsteer stat. */
	memset(&s->in->targets[j->t].ops, 0,
	       sizeof(struct bsteer_target) - offsetof(struct bsteer_target, ops));
	s->in->targets[j->t].last_error = 0;
	s->in->targets[j->t].size = leg.size;
	spec_publish(s, j->t, spec);
	err = legs_attach_mine(s, j->t, &why);
	if (!err)
		err = round_begin(s, BSTEER_ROUND_ADD, j->t, j->ex->size);
	if (err) {
		legs_detach_mine(s, j->t);
		main_close(s, j);
		job_done(s, j, err, why ? why : "cannot start a round");
		return;
	}
	j->phase = LJ_ADDING;
	serve_log(s, "export '%s': adding leg %u (%s)", j->ex->name, n, spec);
}

/* Every worker has the new leg: into service (rebuilt) or out of date. */
static void add_finish(struct bsteer_server *s, struct bsteer_leg_job *j)
{
	struct bsteer_target *tg = &s->in->targets[j->t];
	int err;

	__atomic_fetch_and(&tg->flags, ~BSTEER_TGT_ABSENT, __ATOMIC_RELEASE);
	if (j->st.resync && !resync_quiet(s) && bsteer_now_ns() < j->deadline) {
		j->phase = LJ_STARTING;	/* a rebuild cancelled a moment ago */
		return;
	}
	if (j->st.resync) {
		err = resync_start_fresh(s, j->ex, j->i, &j->st.resync_seq);
		if (err) {
			job_done(s, j, err, "the leg is in, but its rebuild did not start");
			return;
		}
		serve_log(s, "export '%s': leg %u (%s) added, rebuilding", j->ex->name,
			  j->i, j->ex->leg[j->i].spec);
	} else {
		serve_log(s, "export '%s': leg %u (%s) added, out of date until 'bsteer resync'",
			  j->ex->name, j->i, j->ex->leg[j->i].spec);
	}
	job_done(s, j, 0, NULL);
}

static void remove_start(struct bsteer_server *s, struct bsteer_leg_job *j)
{
	struct bsteer_target *tg;
	__u32 good, rebuilt, f;
	const char *why;
	int err = 0;

	why = refusal(s, j, &err);
	/* (An absent place with a leg in it: a remove that timed out, again.) */
	if (!why && (j->st.leg >= j->ex->ntargets || !j->ex->leg[j->st.leg].ops)) {
		err = -ENOENT;
		why = "no such leg";
	}
	if (why) {
		job_done(s, j, err, why);
		return;
	}
	j->i = j->st.leg;
	j->t = j->ex->tbase + j->i;
	j->st.target = j->t;
	tg = &s->in->targets[j->t];
	f = tg->flags;
	count_legs(s, j->ex, j->i, &good, &rebuilt);
	if (!(f & (BSTEER_TGT_FAILED | BSTEER_TGT_RESYNC)) && !good) {
		err = -EBUSY;
		snprintf(j->why, sizeof(j->why), rebuilt ?
			 "leg %u is the only up-to-date copy while another is rebuilt" :
			 "leg %u is the last leg in service", j->i);
		job_done(s, j, err, j->why);
		return;
	}
	if (!good && !rebuilt) {
		err = -EBUSY;
		snprintf(j->why, sizeof(j->why), "leg %u is the last leg", j->i);
		job_done(s, j, err, j->why);
		return;
	}
	resync_cancel(s, j->t);
	__atomic_fetch_or(&tg->flags, BSTEER_TGT_FAILED | BSTEER_TGT_ABSENT,
			  __ATOMIC_RELEASE);
	__atomic_fetch_and(&tg->flags, ~BSTEER_TGT_RESYNC, __ATOMIC_RELEASE);
	j->phase = LJ_DRAINING;
	j->deadline = bsteer_now_ns() + LJ_DRAIN_NS;
	serve_log(s, "export '%s': removing leg %u (%s)", j->ex->name, j->i,
		  j->ex->leg[j->i].spec);
}

/* The removed leg's ops are back (or not, in time): let it go everywhere. */
static void remove_drained(struct bsteer_server *s, struct bsteer_leg_job *j)
{
	int err;

	if (__atomic_load_n(&s->in->targets[j->t].inflight, __ATOMIC_ACQUIRE)) {
		if (bsteer_now_ns() < j->deadline)
			return;
		job_done(s, j, -ETIMEDOUT,
			 "its ops in flight did not come back; it is out of service (ask again)");
		return;
	}
	err = round_begin(s, BSTEER_ROUND_REMOVE, j->t, 0);
	if (err)
		return;		/* a reopening's round: next time */
	legs_detach_mine(s, j->t);
	j->phase = LJ_REMOVING;
}

static void round_done(struct bsteer_server *s, struct bsteer_leg_job *j)
{
	int err;

	if (!round_poll(s, &err, j->why, sizeof(j->why)))
		return;
	switch (j->phase) {
	case LJ_ADDING:
		if (!err) {
			j->deadline = bsteer_now_ns() + LJ_DRAIN_NS;
			add_finish(s, j);
			return;
		}
		/* Some worker could not: let it go on all of them. */
		j->st.error = err;
		snprintf(j->st.message, sizeof(j->st.message), "%s", j->why);
		legs_detach_mine(s, j->t);
		if (round_begin(s, BSTEER_ROUND_REMOVE, j->t, 0)) {
			main_close(s, j);
			job_done(s, j, err, j->st.message);
			return;
		}
		j->phase = LJ_UNDOING;
		return;
	case LJ_UNDOING:
		main_close(s, j);
		job_done(s, j, j->st.error, j->st.message);
		return;
	case LJ_REMOVING:
		main_close(s, j);
		serve_log(s, "export '%s': leg %u removed", j->ex->name, j->i);
		job_done(s, j, 0, NULL);
		return;
	default:
		return;
	}
}

static void job_take(struct bsteer_server *s, struct bsteer_leg_job *j,
		     const struct bsteer_leg_request *req)
{
	j->st = *req;
	j->st.export[sizeof(j->st.export) - 1] = 0;
	j->st.spec[sizeof(j->st.spec) - 1] = 0;
	j->st.message[0] = 0;
	j->st.error = 0;
	j->st.resync_seq = 0;
	j->st.state = BSTEER_RS_RUNNING;
	j->ex = bsteer_export_find(s, j->st.export);
	publish(s, j);
	if (j->st.op == BSTEER_LEG_ADD && !j->st.spec[0]) {
		job_done(s, j, -EINVAL, "no target");
		return;
	}
	if (j->st.op == BSTEER_LEG_ADD)
		add_start(s, j);
	else if (j->st.op == BSTEER_LEG_REMOVE)
		remove_start(s, j);
	else
		job_done(s, j, -EINVAL, "unknown request");
}

void legs_tick(struct bsteer_server *s, bool stopping)
{
	struct bsteer_leg_job *j = s->lj;
	struct bsteer_leg_request req;
	__u64 now = bsteer_now_ns();
	__u32 key = 0;

	if (s->ring || s->legreq_fd < 0)
		return;
	if (!j) {
		j = s->lj = calloc(1, sizeof(*j));
		if (!j)
			return;
	}
	if (j->phase != LJ_IDLE) {
		if (stopping) {
			job_done(s, j, -ESHUTDOWN, "the server is stopping");
			return;
		}
		if (j->phase == LJ_DRAINING)
			remove_drained(s, j);
		else if (j->phase == LJ_STARTING)
			add_finish(s, j);
		else
			round_done(s, j);
		return;
	}
	if (stopping || now - j->polled_ns < LJ_POLL_NS)
		return;
	j->polled_ns = now;
	if (!bpf_map_lookup_elem(s->legreq_fd, &key, &req) &&
	    req.state == BSTEER_RS_REQUESTED)
		job_take(s, j, &req);
}

void legs_fini(struct bsteer_server *s)
{
	free(s->lj);
	s->lj = NULL;
}

/* The main thread, at the very end: the specs of the legs added. */
void legs_free_specs(void)
{
	__u32 t;

	for (t = 0; t < BSTEER_MAX_TARGETS; t++) {
		free(added_spec[t]);
		added_spec[t] = NULL;
	}
}
