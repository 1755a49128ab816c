// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Rebuilding a mirror leg while clients write (bsteer resync), the server's
 * side. Worker 0 polls the pinned "resync" map; on a request it reopens the
 * leg if it had failed (a replaced file, a restarted server), flags it
 * BSTEER_TGT_RESYNC, and walks the export with BSTEER_REQ_RESYNC requests,
 * a few in flight. The policy does the copying and tells a stale copy from
 * a good one (-EAGAIN: a client write overlapped; that chunk goes again).
 * When every chunk is in, a FLUSH makes it stable and the leg serves reads.
 *
 * With several workers each ring has its own file or connection for the
 * leg, and only that ring's thread may put a new one in its place: worker
 * 0 opens its own, then asks the others (a "round", below) and starts the
 * copy once every one has answered.
 *
 * An export with resync=auto needs no request: worker 0 tries a failed leg
 * again by itself, at once and then after 1, 2, 4 ... 30 s, until a rebuild
 * succeeds. Each try is a job like one `bsteer resync` asks for, so `bsteer
 * stat` and `bsteer resync --status` show it.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "libbsteer.h"

#define RS_DEPTH	4		/* copies in flight */
#define RS_CHUNK	(1u << 20)	/* bytes per copy, at most a slot */
#define RS_POLL_NS	200000000ull	/* look for a request this often */
#define RS_PUBLISH_NS	100000000ull	/* and report progress */
#define RS_MAX_REDO	100000		/* copies of one range before giving up */
#define RS_ROUND_NS	30000000000ull	/* for every worker to reopen a leg */
#define RS_RETRY_MAX	30		/* seconds between automatic tries, at most */

struct bsteer_resync_job {
	struct bsteer_resync st;
	struct bsteer_export *ex;
	__u32 t;			/* the leg's target index */
	int owner;			/* its requests' owner in the engine */
	__u32 chunk;
	__u64 next;			/* next offset to copy */
	__u64 redo[RS_DEPTH];		/* offsets to copy again */
	__u32 nredo;
	__u32 inflight;
	__u32 flush_req;		/* the final FLUSH, or BSTEER_NO_SLOT */
	__u64 redo_streak;
	__u64 polled_ns, published_ns;
	int own_fd[BSTEER_MAX_TARGETS];	/* legs opened again, closed at exit */
	bool active;
	bool reopening;			/* waiting for the other workers */
	bool automatic;			/* resync=auto started it */
	__u32 round_seen;		/* workers 1..n: the last round done */
	/* resync=auto, per target: when to try again, and how long after. */
	__u64 retry_at[BSTEER_MAX_TARGETS];
	__u32 retry_secs[BSTEER_MAX_TARGETS];
	__u32 attempts[BSTEER_MAX_TARGETS];
};

/*
 * A round: worker 0 asks every other worker to do @kind to target @t on its
 * own ring (open it again, attach a new leg, let a removed one go); each
 * answers once per @gen. Only the lock orders them; @busy (worker 0's
 * alone) keeps a second round from starting over the first.
 */
static struct {
	pthread_mutex_t lock;
	__u32 gen;
	enum bsteer_round_kind kind;
	__u32 t;
	__u64 want;
	__u32 answered;
	int err;
	char why[96];
	bool busy;
	__u64 deadline;
} round = { .lock = PTHREAD_MUTEX_INITIALIZER };

int round_begin(struct bsteer_server *s, enum bsteer_round_kind kind, __u32 t,
		__u64 want)
{
	if (round.busy)
		return -EBUSY;
	pthread_mutex_lock(&round.lock);
	round.kind = kind;
	round.t = t;
	round.want = want;
	round.answered = 0;
	round.err = 0;
	round.why[0] = 0;
	round.gen++;
	pthread_mutex_unlock(&round.lock);
	round.busy = true;
	round.deadline = bsteer_now_ns() + RS_ROUND_NS;
	(void)s;
	return 0;
}

bool round_busy(void)
{
	return round.busy;
}

int round_poll(struct bsteer_server *s, int *err, char *why, size_t len)
{
	__u32 answered;

	pthread_mutex_lock(&round.lock);
	answered = round.answered;
	*err = round.err;
	snprintf(why, len, "%s", round.why);
	pthread_mutex_unlock(&round.lock);
	if (answered < s->in->nrings - 1) {
		if (bsteer_now_ns() <= round.deadline)
			return 0;
		*err = -ETIMEDOUT;
		snprintf(why, len, "a worker did not answer");
	}
	round.busy = false;
	return 1;
}

int resync_pin(struct bsteer_server *s)
{
	char path[PATH_MAX];
	struct bsteer_resync zero = {};
	__u32 key = 0;
	int fd;

	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "resync", sizeof(key),
			    sizeof(struct bsteer_resync), 1, NULL);
	if (fd < 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/resync", s->in->dir);
	if (bpf_map_update_elem(fd, &key, &zero, BPF_ANY) ||
	    bpf_obj_pin(fd, path)) {
		int err = -errno;

		close(fd);
		return err;
	}
	chmod(path, 0600);
	s->resync_fd = fd;
	return 0;
}

static void publish(struct bsteer_server *s, struct bsteer_resync_job *j)
{
	__u32 key = 0;

	j->published_ns = bsteer_now_ns();
	bpf_map_update_elem(s->resync_fd, &key, &j->st, BPF_ANY);
}

/* resync=auto: when to try target @t again, after a try that failed. */
static void retry_later(struct bsteer_server *s, struct bsteer_resync_job *j, __u32 t)
{
	__u32 secs = j->retry_secs[t] ? j->retry_secs[t] * 2 : 1;

	if (t >= BSTEER_MAX_TARGETS)
		return;
	if (secs > RS_RETRY_MAX)
		secs = RS_RETRY_MAX;
	j->retry_secs[t] = secs;
	j->retry_at[t] = bsteer_now_ns() + secs * 1000000000ull;
	j->st.next_try_ns = j->retry_at[t];
	serve_log(s, "export '%s': leg %u: trying again in %u s (resync=auto)",
		  j->ex->name, j->st.leg, secs);
}

static void job_end(struct bsteer_server *s, struct bsteer_resync_job *j, int err,
		    const char *why)
{
	struct bsteer_target *tg = &s->in->targets[j->t];

	j->active = false;
	j->reopening = false;
	j->st.end_ns = bsteer_now_ns();
	j->st.error = err;
	j->st.state = err ? BSTEER_RS_FAILED : BSTEER_RS_DONE;
	if (err) {
		/* Half rebuilt is not in sync: keep it out of service. */
		snprintf(j->st.message, sizeof(j->st.message), "%s", why);
		tg->last_error = err;
		__atomic_fetch_or(&tg->flags, BSTEER_TGT_FAILED, __ATOMIC_RELEASE);
		serve_err(s, "export '%s': rebuilding leg %u failed: %s (%s)",
			  j->ex->name, j->st.leg, why, strerror(-err));
	} else {
		serve_log(s, "export '%s': leg %u rebuilt, %llu bytes, %llu ranges copied again",
			  j->ex->name, j->st.leg, (unsigned long long)j->st.done,
			  (unsigned long long)j->st.recopied);
		j->retry_secs[j->t] = 0;
		j->attempts[j->t] = 0;
	}
	__atomic_fetch_and(&tg->flags, ~BSTEER_TGT_RESYNC, __ATOMIC_RELEASE);
	if (err && j->automatic && err != -ESHUTDOWN)
		retry_later(s, j, j->t);
	publish(s, j);
}

/* The leg could not be rebuilt: it keeps the state it had. */
static void job_refuse(struct bsteer_server *s, struct bsteer_resync_job *j, int err,
		       const char *why)
{
	j->active = false;
	j->reopening = false;
	j->st.state = BSTEER_RS_FAILED;
	j->st.error = err;
	j->st.end_ns = bsteer_now_ns();
	snprintf(j->st.message, sizeof(j->st.message), "%s", why);
	serve_err(s, "export '%s': cannot rebuild leg %u: %s", j->ex->name,
		  j->st.leg, why);
	if (j->automatic)
		retry_later(s, j, j->t);
	publish(s, j);
}

/* Every ring has the leg: writes reach it from now on, reads once it is done. */
static void job_go(struct bsteer_server *s, struct bsteer_resync_job *j)
{
	struct bsteer_target *tg = &s->in->targets[j->t];

	j->reopening = false;
	__atomic_fetch_or(&tg->flags, BSTEER_TGT_RESYNC, __ATOMIC_RELEASE);
	__atomic_fetch_and(&tg->flags, ~BSTEER_TGT_FAILED, __ATOMIC_RELEASE);
	serve_log(s, "export '%s': rebuilding leg %u (%s) from the others",
		  j->ex->name, j->st.leg, j->ex->leg[j->st.leg].spec);
	publish(s, j);
}

/* Worker 0, reopening: have the other workers answered? */
static void round_check(struct bsteer_server *s, struct bsteer_resync_job *j)
{
	char why[sizeof(round.why)];
	int err;

	if (!round_poll(s, &err, why, sizeof(why)))
		return;
	if (err)
		job_refuse(s, j, err, why);
	else
		job_go(s, j);
}

/* Worker @s's own copy of target @t's leg. */
static const struct bsteer_leg *leg_of(struct bsteer_server *s, __u32 t)
{
	int k;

	for (k = 0; k < s->nexports; k++) {
		const struct bsteer_export *ex = &s->exports[k];

		if (t >= ex->tbase && t < ex->tbase + ex->ntargets)
			return &ex->leg[t - ex->tbase];
	}
	return NULL;
}

/*
 * A leg that failed gets a fresh file or connection on this worker's ring;
 * *@why says what went wrong.
 */
static int reopen_mine(struct bsteer_server *s, struct bsteer_resync_job *j, __u32 t,
		       __u64 want, const char **why)
{
	const struct bsteer_leg *leg = leg_of(s, t);
	int fd = -1, err;

	if (!leg || !leg->ops->reopen)
		return 0;	/* rebuilt in place, on the file it has */
	err = leg->ops->reopen(s->e, t, leg, want, &fd);
	if (err) {
		*why = bsteer_errbuf();
		return err;
	}
	if (fd >= 0) {
		if (j->own_fd[t] >= 0)
			close(j->own_fd[t]);
		j->own_fd[t] = fd;
	}
	return 0;
}

/* Worker 0: reopen the leg here, and ask the other workers to. */
static int reopen_leg(struct bsteer_server *s, struct bsteer_resync_job *j,
		      const char **why)
{
	int err;

	if (s->in->nrings > 1 && round.busy) {
		*why = "a leg is being added or removed";
		return -EBUSY;
	}
	err = reopen_mine(s, j, j->t, j->ex->size, why);
	if (err || s->in->nrings < 2)
		return err;
	round_begin(s, BSTEER_ROUND_REOPEN, j->t, j->ex->size);
	j->reopening = true;
	return 0;
}

/* Workers 1..n: answer a round worker 0 started. */
static void round_answer(struct bsteer_server *s, struct bsteer_resync_job *j)
{
	enum bsteer_round_kind kind;
	const char *why = "";
	__u32 gen, t;
	__u64 want;
	int err = 0;

	pthread_mutex_lock(&round.lock);
	gen = round.gen;
	kind = round.kind;
	t = round.t;
	want = round.want;
	pthread_mutex_unlock(&round.lock);
	if (gen == j->round_seen)
		return;
	switch (kind) {
	case BSTEER_ROUND_REOPEN:
		err = reopen_mine(s, j, t, want, &why);
		break;
	case BSTEER_ROUND_ADD:
		err = legs_attach_mine(s, t, &why);
		break;
	case BSTEER_ROUND_REMOVE:
		legs_detach_mine(s, t);
		break;
	}
	pthread_mutex_lock(&round.lock);
	if (gen == round.gen) {
		if (err && !round.err) {
			round.err = err;
			snprintf(round.why, sizeof(round.why), "worker %u: %s", s->ring, why);
		}
		round.answered++;
	}
	pthread_mutex_unlock(&round.lock);
	j->round_seen = gen;
}

/*
 * Start rebuilding the leg @req names; @fresh: it was just opened on every
 * worker (bsteer leg add --resync), so it needs no reopening.
 */
static void job_start(struct bsteer_server *s, struct bsteer_resync_job *j,
		      const struct bsteer_resync *req, bool fresh)
{
	struct bsteer_target *tg;
	const char *why = NULL;
	__u32 i, readable = 0;
	int err = 0;

	memset(&j->st, 0, sizeof(j->st));
	j->st.seq = req->seq;
	j->st.leg = req->leg;
	j->st.start_ns = bsteer_now_ns();
	memcpy(j->st.export, req->export, sizeof(j->st.export));
	j->st.export[sizeof(j->st.export) - 1] = 0;
	j->st.state = BSTEER_RS_RUNNING;
	j->st.automatic = j->automatic;
	j->ex = bsteer_export_find(s, j->st.export);
	j->next = 0;
	j->nredo = 0;
	/* (inflight is not reset: a job that ended may have copies out yet.) */
	j->redo_streak = 0;
	j->flush_req = BSTEER_NO_SLOT;
	j->chunk = s->in->slot_size < RS_CHUNK ? s->in->slot_size : RS_CHUNK;
	if (!j->ex) {
		snprintf(j->st.message, sizeof(j->st.message), "no such export");
		j->st.state = BSTEER_RS_FAILED;
		j->st.error = -ENOENT;
		publish(s, j);
		return;
	}
	j->t = j->ex->tbase + req->leg;
	j->st.total = j->ex->size;
	j->active = true;
	j->reopening = false;
	if (j->automatic)
		j->st.attempts = ++j->attempts[j->t];
	if (req->leg >= j->ex->ntargets ||
	    (s->in->targets[j->t].flags & BSTEER_TGT_ABSENT)) {
		err = -EINVAL;
		why = "no such leg";
	} else if (strcmp(s->in->info->layout, "replica")) {
		err = -EOPNOTSUPP;
		why = "the export is not a mirror";
	} else if (j->ex->rdonly) {
		err = -EROFS;
		why = "the export is read-only";
	} else if (j->inflight) {
		/* Their completions would count as this job's. */
		err = -EBUSY;
		why = "the last rebuild's copies are still coming back";
	}
	for (i = 0; !err && i < j->ex->ntargets; i++) {
		tg = &s->in->targets[j->ex->tbase + i];
		readable += i != req->leg &&
			    !(tg->flags & (BSTEER_TGT_FAILED | BSTEER_TGT_RESYNC));
	}
	if (!err && !readable) {
		err = -ENODEV;
		why = "no other leg is healthy";
	}
	tg = &s->in->targets[j->t];
	if (!err && !fresh && ((tg->flags & BSTEER_TGT_FAILED) ||
		     (j->ex->leg[req->leg].ops->alive &&
		      !j->ex->leg[req->leg].ops->alive(s->e, j->t))))
		err = reopen_leg(s, j, &why);
	if (err)
		job_refuse(s, j, err, why);
	else if (j->reopening)
		publish(s, j);	/* job_go once every worker has it */
	else
		job_go(s, j);
}

/* One request on the export's legs; @slot for a copy. */
static int issue(struct bsteer_server *s, struct bsteer_resync_job *j, __u8 type,
		 __u64 off, __u32 len, __u32 *out)
{
	__u32 r, slot;
	int err;

	err = bsteer_req_alloc(s->e, j->owner, type, off, len, &r);
	if (err)
		return err;
	bsteer_req_set_legs(s->e, r, j->ex->tbase, j->ex->ntargets);
	if (type == BSTEER_REQ_RESYNC && (err = bsteer_slot_lease(s->e, r, &slot))) {
		bsteer_req_abandon(s->e, r);
		return err;
	}
	err = bsteer_frontend_op(s->e, r, BSTEER_OP_NOP, 0, BSTEER_NO_SLOT, 0, 0);
	if (err) {
		bsteer_req_abandon(s->e, r);
		return err;
	}
	*out = r;
	return 0;
}

static void job_run(struct bsteer_server *s, struct bsteer_resync_job *j)
{
	__u32 r;

	while (j->inflight < RS_DEPTH && (j->nredo || j->next < j->ex->size)) {
		__u64 off = j->nredo ? j->redo[j->nredo - 1] : j->next;
		__u32 len = j->ex->size - off < j->chunk ? j->ex->size - off : j->chunk;

		if (issue(s, j, BSTEER_REQ_RESYNC, off, len, &r))
			return;		/* no slot or record now: later */
		if (j->nredo)
			j->nredo--;
		else
			j->next += len;
		j->inflight++;
	}
	if (!j->inflight && !j->nredo && j->next >= j->ex->size &&
	    j->flush_req == BSTEER_NO_SLOT) {
		if (!issue(s, j, BSTEER_REQ_FLUSH, 0, 0, &r)) {
			j->flush_req = r;
			j->inflight++;
		}
	}
}

/* One of the job's requests ended (the engine calls its owner). */
static void resync_complete(void *arg, __u32 r, int err)
{
	struct bsteer_server *s = arg;
	struct bsteer_resync_job *j = s->rs;
	const struct bsteer_req *rq = &s->in->reqs[r];

	j->inflight--;
	if (!j->active)
		return;
	if (r == j->flush_req && rq->type == BSTEER_REQ_FLUSH) {
		job_end(s, j, err, "the final flush failed");
		return;
	}
	if (err == -EAGAIN) {
		/* A client wrote there meanwhile (or still does): again. */
		j->st.recopied++;
		if (++j->redo_streak > RS_MAX_REDO) {
			job_end(s, j, -EBUSY, "client writes keep a range busy");
			return;
		}
		j->redo[j->nredo++] = rq->offset;
		return;
	}
	if (err) {
		job_end(s, j, err, "a copy failed");
		return;
	}
	j->redo_streak = 0;
	j->st.done += rq->len;
}

/*
 * resync=auto: the first failed leg of such an export whose time has come
 * gets a job, as if `bsteer resync` had asked for it.
 */
static void auto_tick(struct bsteer_server *s, struct bsteer_resync_job *j, __u64 now)
{
	struct bsteer_resync req = {}, cur;
	__u32 key = 0, i, t;
	int k;

	for (k = 0; k < s->nexports; k++) {
		const struct bsteer_export *ex = &s->exports[k];

		for (i = 0; ex->resync_auto && i < ex->ntargets; i++) {
			t = ex->tbase + i;
			if ((s->in->targets[t].flags & (BSTEER_TGT_FAILED | BSTEER_TGT_RESYNC |
							BSTEER_TGT_ABSENT)) !=
			    BSTEER_TGT_FAILED || now < j->retry_at[t])
				continue;
			if (bpf_map_lookup_elem(s->resync_fd, &key, &cur))
				cur.seq = 0;
			req.state = BSTEER_RS_REQUESTED;
			req.seq = (cur.seq + 1) ?: 1;
			req.leg = i;
			snprintf(req.export, sizeof(req.export), "%s", ex->name);
			j->automatic = true;
			job_start(s, j, &req, false);
			return;
		}
	}
}

/* Worker 0's job, made on its first use. */
static struct bsteer_resync_job *job_of(struct bsteer_server *s)
{
	static const struct bsteer_owner_ops owner = {
		.complete = resync_complete,
	};
	struct bsteer_resync_job *j = s->rs;
	__u32 t;

	if (j)
		return j;
	j = s->rs = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	for (t = 0; t < BSTEER_MAX_TARGETS; t++)
		j->own_fd[t] = -1;
	if (!s->ring)
		j->owner = bsteer_engine_owner(s->e, &owner, s);
	return j;
}

bool resync_quiet(struct bsteer_server *s)
{
	return !s->rs || (!s->rs->active && !s->rs->inflight);
}

bool resync_running(struct bsteer_server *s, __u32 t)
{
	return s->rs && s->rs->active && (t == BSTEER_NO_SLOT || s->rs->t == t);
}

int resync_start_fresh(struct bsteer_server *s, struct bsteer_export *ex,
		       __u32 leg, __u32 *seq)
{
	struct bsteer_resync_job *j = job_of(s);
	struct bsteer_resync req = {}, cur;
	__u32 key = 0;

	if (!j || s->resync_fd < 0)
		return -ENOMEM;
	if (j->active)
		return -EBUSY;
	if (bpf_map_lookup_elem(s->resync_fd, &key, &cur))
		cur.seq = 0;
	req.state = BSTEER_RS_REQUESTED;
	req.seq = (cur.seq + 1) ?: 1;
	req.leg = leg;
	snprintf(req.export, sizeof(req.export), "%s", ex->name);
	j->automatic = false;
	job_start(s, j, &req, true);
	*seq = req.seq;
	return j->st.state == BSTEER_RS_FAILED ? j->st.error : 0;
}

void resync_cancel(struct bsteer_server *s, __u32 t)
{
	if (resync_running(s, t))
		job_end(s, s->rs, -ECANCELED, "the leg was removed");
}

/* The leg at @t is gone from this worker: so is the file reopened for it. */
void resync_forget(struct bsteer_server *s, __u32 t)
{
	if (s->rs && t < BSTEER_MAX_TARGETS && s->rs->own_fd[t] >= 0) {
		close(s->rs->own_fd[t]);
		s->rs->own_fd[t] = -1;
	}
}

void resync_tick(struct bsteer_server *s, bool stopping)
{
	struct bsteer_resync_job *j = s->rs;
	struct bsteer_resync req;
	__u64 now = bsteer_now_ns();
	__u32 key = 0;

	j = job_of(s);
	if (!j)
		return;
	if (s->ring) {
		if (!stopping)
			round_answer(s, j);
		return;
	}
	if (s->resync_fd < 0)
		return;
	if (j->active) {
		if (stopping) {
			job_end(s, j, -ESHUTDOWN, "the server is stopping");
			return;
		}
		if (j->reopening) {
			round_check(s, j);
			return;
		}
		job_run(s, j);
		if (j->active && now - j->published_ns > RS_PUBLISH_NS)
			publish(s, j);
		return;
	}
	if (stopping || now - j->polled_ns < RS_POLL_NS)
		return;
	j->polled_ns = now;
	if (!bpf_map_lookup_elem(s->resync_fd, &key, &req) &&
	    req.state == BSTEER_RS_REQUESTED) {
		j->automatic = false;
		job_start(s, j, &req, false);
		return;
	}
	auto_tick(s, j, now);
}

void resync_fini(struct bsteer_server *s)
{
	__u32 t;

	if (!s->rs)
		return;
	for (t = 0; t < BSTEER_MAX_TARGETS; t++)
		if (s->rs->own_fd[t] >= 0)
			close(s->rs->own_fd[t]);
	free(s->rs);
	s->rs = NULL;
}
