// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The server: exports and their legs, the policy's userspace half, and the
 * workers. Each worker thread runs one ring over its share of the slots
 * and request records, with every frontend started on it; no request
 * crosses threads. It names no protocol and no policy: frontends, targets
 * and policies come through their ops tables.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "libbsteer.h"

#define DRAIN_SECS	30

static const char *const log_level_name[] = {
	[BSTEER_LOG_ERROR] = "error",
	[BSTEER_LOG_WARN] = "warn",
	[BSTEER_LOG_INFO] = "info",
};

/* @ts as RFC 3339 in UTC with microseconds: 2026-12-03T17:30:01.123456Z */
static void log_time(char *buf, size_t len, const struct timespec *ts)
{
	struct tm tm;
	size_t n;

	gmtime_r(&ts->tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06ldZ", ts->tv_nsec / 1000);
}

void serve_logl(struct bsteer_server *s, enum bsteer_log_level level,
		const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (s && s->quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s && s->json_log) {
		struct bsteer_json j;
		struct timespec ts;
		char when[40];

		clock_gettime(CLOCK_REALTIME, &ts);
		log_time(when, sizeof(when), &ts);
		flockfile(stderr);	/* one whole line per worker */
		json_begin(&j, stderr);
		json_str(&j, "ts", when);
		json_str(&j, "level", log_level_name[level]);
		if (s->in)
			json_str(&j, "instance", s->in->name);
		json_u64(&j, "worker", s->ring);
		json_str(&j, "msg", msg);
		json_finish(&j);
		funlockfile(stderr);
	} else {
		fprintf(stderr, "bsteer serve: %s\n", msg);
	}
}

/* ---- exports ---- */

struct bsteer_export *bsteer_export_find(struct bsteer_server *s, const char *name)
{
	int i;

	for (i = 0; i < s->nexports; i++)
		if (!strcmp(s->exports[i].name, name))
			return &s->exports[i];
	return NULL;
}

/* One ,TOKEN of an export spec: ro, policy=P, KEY=VALUE, or a target. */
static int export_token(struct bsteer_export *ex, char *tok)
{
	if (!strcmp(tok, "ro")) {
		ex->rdonly = true;
	} else if (!strncmp(tok, "policy=", 7)) {
		snprintf(ex->policy, sizeof(ex->policy), "%s", tok + 7);
	} else if (!strncmp(tok, "description=", 12)) {
		/* Said to clients that ask (a frontend's export info); none by default. */
		if (strlen(tok + 12) >= sizeof(ex->description)) {
			bsteer_set_err("export '%s': description longer than %zu bytes",
				       ex->name, sizeof(ex->description) - 1);
			return -EINVAL;
		}
		snprintf(ex->description, sizeof(ex->description), "%s", tok + 12);
	} else if (!strncmp(tok, "resync=", 7)) {
		if (strcmp(tok + 7, "auto") && strcmp(tok + 7, "manual")) {
			bsteer_set_err("export '%s': resync=%s: want auto or manual",
				       ex->name, tok + 7);
			return -EINVAL;
		}
		ex->resync_auto = !strcmp(tok + 7, "auto");
	} else if (!strncmp(tok, "cache=", 6)) {
		if (strcmp(tok + 6, "none") && strcmp(tok + 6, "writeback")) {
			bsteer_set_err("export '%s': cache=%s: want none or writeback",
				       ex->name, tok + 6);
			return -EINVAL;
		}
		ex->direct = !strcmp(tok + 6, "none");
	} else if (strchr(tok, '=') && strcspn(tok, ":/") > (size_t)(strchr(tok, '=') - tok)) {
		/*
		 * A policy setting (KEY=VALUE, no ':' or '/' in KEY; so
		 * URIs with a query, rbd:POOL/IMAGE:conf=PATH and paths
		 * with '=' in them are targets): checked once the policy is
		 * known.
		 */
		if (ex->nopts == sizeof(ex->opts) / sizeof(ex->opts[0])) {
			bsteer_set_err("export '%s': too many settings", ex->name);
			return -EINVAL;
		}
		ex->opts[ex->nopts++] = tok;
	} else if (ex->ntargets == BSTEER_MAX_TARGETS) {
		bsteer_set_err("export '%s': too many targets", ex->name);
		return -EINVAL;
	} else {
		ex->leg[ex->ntargets].fd = -1;
		ex->leg[ex->ntargets++].spec = tok;
	}
	return 0;
}

int bsteer_export_parse(struct bsteer_server *s, char *spec)
{
	struct bsteer_export *ex = &s->exports[s->nexports];
	char *eq = strchr(spec, '='), *tok, *save;
	int err;

	if (s->nexports == BSTEER_MAX_EXPORTS) {
		bsteer_set_err("at most %d exports", BSTEER_MAX_EXPORTS);
		return -EINVAL;
	}
	if (!eq || eq == spec || eq - spec >= (int)sizeof(ex->name)) {
		bsteer_set_err("bad export '%s' (want NAME=TARGET[,TARGET...][,ro][,policy=P])",
			       spec);
		return -EINVAL;
	}
	*eq = 0;
	snprintf(ex->name, sizeof(ex->name), "%s", spec);
	if (bsteer_export_find(s, ex->name)) {
		bsteer_set_err("export '%s' given twice", ex->name);
		return -EINVAL;
	}
	for (tok = strtok_r(eq + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		err = export_token(ex, tok);
		if (err)
			return err;
	}
	if (!ex->ntargets) {
		bsteer_set_err("export '%s' has no target", ex->name);
		return -EINVAL;
	}
	s->nexports++;
	return 0;
}

/* ---- the policy the exports ask for ---- */

/* One policy per instance: the one the exports name, or the default. */
static int policy_pick(struct bsteer_server *s, struct bsteer_policy_run *p)
{
	int x;

	for (x = 0; x < s->nexports; x++) {
		struct bsteer_export *ex = &s->exports[x];

		if (ex->ntargets > p->legs)
			p->legs = ex->ntargets;
		if (!ex->policy[0])
			continue;
		if (p->name && strcmp(p->name, ex->policy)) {
			bsteer_set_err("exports ask for policies %s and %s; one instance runs one policy (start another instance)",
				       p->name, ex->policy);
			return -EINVAL;
		}
		p->name = ex->policy;
	}
	if (!p->name)
		p->name = p->legs > 1 ? "mirror" : "passthrough";
	p->d = bsteer_policy_find(p->name);
	if (!p->d && !strchr(p->name, '/') && !strstr(p->name, ".o")) {
		bsteer_set_err("unknown policy '%s' (see 'bsteer policy list', or give a path to a .bpf.o)",
			       p->name);
		return -EINVAL;
	}
	return 0;
}

/* An export's KEY=VALUE: the policy's own, size=, or a cfg word. */
static int policy_option(struct bsteer_policy_run *p, struct bsteer_export *ex,
			 const char *kv)
{
	int err = -ENOENT;

	if (p->d && p->d->option)
		err = p->d->option(p, ex, kv);
	if (err != -ENOENT)
		return err;
	if (!strncmp(kv, "size=", 5)) {
		if (bsteer_parse_size(kv + 5, &p->size) || !p->size || p->size % 512) {
			bsteer_set_err("bad %s (a multiple of 512)", kv);
			return -EINVAL;
		}
		return 0;
	}
	return bsteer_policy_setting(p->d, &p->cfg, kv, false);
}

int bsteer_server_policy(struct bsteer_server *s, struct bsteer_policy_run *p,
			 __u64 slot_size)
{
	const struct bsteer_cfg_key *k;
	int x, err;
	__u32 i;

	memset(p, 0, sizeof(*p));
	p->slot_size = slot_size;
	err = policy_pick(s, p);
	if (err)
		return err;
	for (x = 0; x < s->nexports; x++) {
		struct bsteer_export *ex = &s->exports[x];

		if (p->d && (ex->ntargets < p->d->min_legs ||
			     ex->ntargets > p->d->max_legs)) {
			bsteer_set_err("export '%s': policy %s takes %u..%u targets, not %u",
				       ex->name, p->name, p->d->min_legs,
				       p->d->max_legs, ex->ntargets);
			return -EINVAL;
		}
		for (i = 0; i < ex->nopts; i++) {
			err = policy_option(p, ex, ex->opts[i]);
			if (err) {
				bsteer_set_err("export '%s': %s", ex->name,
					       bsteer_errbuf());
				return err;
			}
		}
	}
	/* Layout settings are written down, so that nothing depends on defaults. */
	for (k = p->d ? p->d->keys : NULL; k && k->name; k++)
		if (k->fixed && !p->cfg.word[k->word])
			p->cfg.word[k->word] = k->def;
	s->policy = p;
	return 0;
}

/* ---- legs ---- */

/* Open the legs of one export; *@sizes gets theirs. */
static int export_open(struct bsteer_server *s, struct bsteer_export *ex,
		       const struct bsteer_policy_run *p, __u64 *sizes)
{
	bool base_ro = p->d && (p->d->flags & BSTEER_PF_BASE_RDONLY);
	__u32 i;
	int err;

	for (i = 0; i < ex->ntargets; i++) {
		struct bsteer_leg *leg = &ex->leg[i];

		leg->rdonly = ex->rdonly || (base_ro && i == 0);
		leg->direct = ex->direct;
		leg->timeout_ms = s->eo.target_timeout_ms;
		leg->ops = bsteer_target_for(leg->spec);
		if (!leg->ops) {
			bsteer_set_err("no target module for '%s'", leg->spec);
			return -EINVAL;
		}
		bsteer_set_err("%s", "");
		err = leg->ops->open(leg);
		if (err) {
			bsteer_set_err("export '%s': cannot open %s: %s", ex->name,
				       leg->spec, *bsteer_errbuf() ? bsteer_errbuf() :
				       strerror(-err));
			return err;
		}
		sizes[i] = leg->size;
	}
	return 0;
}

/* The export's size under its policy's layout, from its legs'. */
static int export_size(struct bsteer_export *ex, const struct bsteer_policy_run *p,
		       const __u64 *sizes)
{
	__u32 i;

	ex->size = p->d ? p->d->export_size(&p->cfg, sizes, ex->ntargets) : sizes[0];
	for (i = 1; i < ex->ntargets && !p->d; i++)
		if (sizes[i] < ex->size)
			ex->size = sizes[i];
	if (p->size)
		ex->size = p->size;
	if (!p->d || (p->d->flags & BSTEER_PF_REPLICAS))
		for (i = 1; i < ex->ntargets; i++)
			if (sizes[i] != sizes[0])
				fprintf(stderr, "bsteer serve: export '%s': legs differ in size; serving the smallest\n",
					ex->name);
	if (!ex->size) {
		bsteer_set_err("export '%s': its targets give it no size under policy %s",
			       ex->name, p->name);
		return -EINVAL;
	}
	return 0;
}

/*
 * A layout that keeps the whole export on every leg can take legs while it
 * serves (bsteer leg add): places for them, absent until then, as far as
 * the policy's most legs and the target table allow. @n: the targets
 * given out so far, this export's included.
 */
static __u32 export_spares(struct bsteer_export *ex, struct bsteer_policy_run *p,
			   __u32 n)
{
	__u32 max = p->d ? p->d->max_legs : BSTEER_DEC_OPS, k;

	for (k = 0; k < BSTEER_LEG_SPARES && ex->ntargets < max &&
		    n + k < BSTEER_MAX_TARGETS; k++)
		ex->leg[ex->ntargets++] = (struct bsteer_leg){ .fd = -1 };
	if (ex->ntargets > p->legs)
		p->legs = ex->ntargets;
	return k;
}

/* Open every leg; exports take consecutive target indices. */
int bsteer_server_open_legs(struct bsteer_server *s)
{
	struct bsteer_policy_run *p = s->policy;
	__u64 sizes[BSTEER_MAX_TARGETS];
	char layout[32] = "";
	__u32 n = 0;
	int k, err;

	bsteer_policy_layout(p->name, layout, sizeof(layout));
	for (k = 0; k < s->nexports; k++) {
		struct bsteer_export *ex = &s->exports[k];

		if (n + ex->ntargets > BSTEER_MAX_TARGETS) {
			bsteer_set_err("more than %d targets in all", BSTEER_MAX_TARGETS);
			return -EINVAL;
		}
		if (ex->resync_auto && strcmp(layout, "replica")) {
			bsteer_set_err("export '%s': resync=auto needs a mirror policy, not %s",
				       ex->name, p->name);
			return -EINVAL;
		}
		ex->tbase = n;
		ex->no_extents = strcmp(layout, "replica") && strcmp(layout, "linear");
		ex->no_zeroes = p->d && (p->d->flags & BSTEER_PF_NO_ZEROES);
		err = p->d && p->d->legs_prepare ? p->d->legs_prepare(p, ex) : 0;
		if (!err)
			err = export_open(s, ex, p, sizes);
		if (!err && p->d && p->d->legs_opened)
			err = p->d->legs_opened(p, ex, sizes);
		if (!err)
			err = export_size(ex, p, sizes);
		if (err)
			return err;
		n += ex->ntargets;
		if (!strcmp(layout, "replica"))
			n += export_spares(ex, p, n);
	}
	s->ntargets = n;
	return 0;
}

void bsteer_server_close_legs(struct bsteer_server *s)
{
	__u32 i;
	int k;

	for (k = 0; k < s->nexports; k++) {
		struct bsteer_export *ex = &s->exports[k];

		for (i = 0; i < ex->ntargets; i++)
			if (ex->leg[i].ops && ex->leg[i].ops->close)
				ex->leg[i].ops->close(&ex->leg[i]);
	}
	legs_free_specs();
}

/* ---- a worker ---- */

/* A frontend's requests ended: for the policy's state first, then the frontend. */
static void fe_complete(void *arg, __u32 r, int err)
{
	struct bsteer_fe *fe = arg;
	struct bsteer_server *s = fe->s;
	const struct bsteer_req *rq = &s->in->reqs[r];
	struct bsteer_policy_run *p = s->policy;

	/* What a FLUSH or FUA promises covers the policy's own state too. */
	if (!err && p && p->d && p->d->sync &&
	    (rq->type == BSTEER_REQ_FLUSH || (rq->flags & BSTEER_REQF_FUA)) &&
	    p->d->sync(p)) {
		serve_err(s, "%s", bsteer_errbuf());
		err = -EIO;
	}
	fe->ops->complete(fe, r, err);
}

static void fe_op_done(void *arg, __u32 r, __u32 op, int res)
{
	struct bsteer_fe *fe = arg;

	fe->ops->op_done(fe, r, op, res);
}

static void fe_cqe(void *arg, const struct io_uring_cqe *cqe)
{
	struct bsteer_fe *fe = arg;

	fe->ops->cqe(fe, cqe);
}

/* A frontend whose replies leave a socket may send them from a slot's pipe. */
static const struct bsteer_owner_ops fe_owner[2] = {
	{ .complete = fe_complete, .op_done = fe_op_done, .cqe = fe_cqe },
	{ .complete = fe_complete, .op_done = fe_op_done, .cqe = fe_cqe,
	  .pipes = true },
};

static void flush_done(void *arg, __u32 r, int err)
{
	(void)r;
	*(int *)arg = err ?: 1;
}

static const struct bsteer_owner_ops flush_owner = { .complete = flush_done };

/*
 * The last act: every export's targets flushed through the policy. An
 * export whose flush fails is named; the others are still flushed.
 */
static int flush_all(struct bsteer_server *s)
{
	int k, done, err, first = 0, owner;
	__u32 r;

	owner = bsteer_engine_owner(s->e, &flush_owner, &done);
	if (owner < 0)
		return owner;
	for (k = 0; k < s->nexports; k++) {
		struct bsteer_export *ex = &s->exports[k];

		if (ex->rdonly)
			continue;
		done = 0;
		err = bsteer_req_alloc(s->e, owner, BSTEER_REQ_FLUSH, 0, 0, &r);
		if (err)
			return err;
		bsteer_req_set_legs(s->e, r, ex->tbase, ex->ntargets);
		err = bsteer_frontend_op(s->e, r, BSTEER_OP_NOP, 0, BSTEER_NO_SLOT,
					 0, 0);
		while (!err && !done)
			err = bsteer_engine_run(s->e, 1);
		if (err == -EINTR)
			err = 0;
		if (done < 0)
			err = done;
		if (err)
			serve_err(s, "export '%s': the final flush failed: %s",
				  ex->name, strerror(-err));
		first = first ?: err;
	}
	return first;
}

/* A leg the policy marked failed gets one log line, from worker 0. */
static void log_failed_legs(struct bsteer_server *s, __u32 *seen)
{
	__u32 t, i;
	int k;

	for (t = 0; t < s->ntargets; t++) {
		const struct bsteer_target *tg = &s->in->targets[t];

		if (tg->flags & BSTEER_TGT_ABSENT) {
			/* A place with no leg; one added later may fail anew. */
			*seen &= ~(1u << t);
			continue;
		}
		if (!(tg->flags & BSTEER_TGT_FAILED) || (*seen & (1u << t)))
			continue;
		*seen |= 1u << t;
		for (k = 0; k < s->nexports; k++) {
			const struct bsteer_export *ex = &s->exports[k];

			if (t < ex->tbase || t >= ex->tbase + ex->ntargets)
				continue;
			i = t - ex->tbase;
			serve_warn(s, "export '%s': leg %u (%s) marked failed after %s; the other legs carry on",
				  ex->name, i, ex->leg[i].spec, tg->last_error ?
				  strerror(-tg->last_error) : "an error");
		}
	}
}

static bool frontends_idle(struct bsteer_server *s)
{
	int k;

	for (k = 0; k < s->nfe; k++)
		if (!s->fe[k].ops->idle(&s->fe[k]))
			return false;
	return true;
}

/*
 * The active policy program, looked at every POLICY_LOOK_MS: a change
 * (bsteer policy swap, or bpftool) is counted. Two swaps between looks
 * count as one, or none if the second puts the first program back.
 */
#define POLICY_LOOK_MS	200

static void policy_look(struct bsteer_server *s, __u32 *id, __u64 *next_ns)
{
	__u64 now = bsteer_now_ns();
	__u32 cur, zero = 0;

	if (now < *next_ns)
		return;
	*next_ns = now + POLICY_LOOK_MS * 1000000ull;
	if (bpf_map_lookup_elem(s->in->map_fd[BSTEER_MAP_POLICY], &zero, &cur))
		cur = 0;
	if (*id && cur != *id)
		bsteer_stat_add(s->in, BSTEER_ST_POLICY_CHANGES, 1);
	*id = cur;
}

static int serve_loop(struct bsteer_server *s, volatile int *stop)
{
	__u64 deadline = 0, policy_next = 0;
	__u32 failed = 0, policy_id = 0;
	int err, k;

	while (1) {
		if (*stop && !deadline) {
			serve_log(s, "stopping: draining requests in flight");
			for (k = 0; k < s->nfe; k++)
				s->fe[k].ops->stop(&s->fe[k]);
			deadline = bsteer_now_ns() + DRAIN_SECS * 1000000000ull;
		}
		if (deadline && frontends_idle(s) && !bsteer_engine_busy(s->e))
			return 0;
		if (deadline && bsteer_now_ns() > deadline) {
			serve_warn(s, "drain timed out with requests in flight");
			return -ETIMEDOUT;
		}
		/* Wake up now and then: signals and the drain deadline. */
		err = bsteer_engine_run_timeout(s->e, 1, 200);
		if (err && err != -EINTR)
			return err;
		for (k = 0; k < s->nfe; k++)
			if (s->fe[k].ops->tick)
				s->fe[k].ops->tick(&s->fe[k]);
		resync_tick(s, deadline != 0);
		legs_tick(s, deadline != 0);
		if (!s->ring) {
			log_failed_legs(s, &failed);
			policy_look(s, &policy_id, &policy_next);
		}
	}
}

/*
 * A worker's legs: worker 0 takes the main thread's; a module that wants
 * a connection per ring gets its own on every other worker.
 */
static int worker_legs(struct bsteer_server *s, struct bsteer_leg *legs, int *fds)
{
	__u32 t = 0, i;
	int k, err;

	for (k = 0; k < s->nexports; k++) {
		struct bsteer_export *ex = &s->exports[k];

		for (i = 0; i < ex->ntargets; i++, t++) {
			legs[t] = ex->leg[i];
			if (!legs[t].ops) {	/* a place for a leg, absent */
				fds[t] = -1;
				continue;
			}
			if (s->ring && legs[t].ops->per_worker) {
				/* The main thread has checked that it takes writes. */
				legs[t].rdonly = true;
				legs[t].priv = NULL;
				err = legs[t].ops->open(&legs[t]);
				if (err) {
					legs[t].ops = NULL;
					return err;
				}
			}
			fds[t] = legs[t].fd;
		}
	}
	return 0;
}

static void worker_legs_close(struct bsteer_server *s, struct bsteer_leg *legs)
{
	__u32 t;

	for (t = 0; s->ring && t < s->ntargets; t++)
		if (legs[t].ops && legs[t].ops->per_worker && legs[t].ops->close)
			legs[t].ops->close(&legs[t]);
}

/* The engine and everything on it: legs, targets, frontends. */
static int worker_setup(struct bsteer_server *s, struct bsteer_leg *legs)
{
	int fds[BSTEER_MAX_TARGETS], err, k;
	__u32 t;

	err = worker_legs(s, legs, fds);
	if (err)
		return err;
	s->e = bsteer_engine_new(s->in, s->ring, &s->eo, &err);
	if (!s->e)
		return err;
	if (!s->no_splice && bsteer_engine_splice(s->e) && !s->ring)
		serve_warn(s, "spliced reads are off: %s", bsteer_errbuf());
	err = bsteer_engine_files(s->e, fds, s->ntargets, NULL, 0);
	for (t = 0; !err && t < s->ntargets; t++) {
		const struct bsteer_target_ops *ops;

		err = bsteer_engine_attach(s->e, t, legs[t].ops, &legs[t]);
		ops = bsteer_target_ops_of(s->e, t);
		if (!err && s->verbose && !s->ring && ops->about && ops->about(s->e, t))
			serve_log(s, "target %u: %s", t, ops->about(s->e, t));
	}
	for (k = 0; !err && k < s->nfe; k++) {
		struct bsteer_fe *fe = &s->fe[k];

		fe->s = s;
		fe->owner = bsteer_engine_owner(s->e, &fe_owner[fe->ops->pipes], fe);
		/* A TLS connection's replies are encrypted from the slots: no pipes. */
		fe->owner_nopipe = fe->owner < 0 || !fe->ops->pipes ? fe->owner :
				   bsteer_engine_owner(s->e, &fe_owner[0], fe);
		err = fe->owner < 0 ? fe->owner : fe->owner_nopipe < 0 ? fe->owner_nopipe :
		      bsteer_engine_owner_parser(s->e, fe->owner, fe->id);
		if (!err)
			err = fe->ops->start(fe);
	}
	return err;
}

/*
 * "listening on" (a frontend's word that the server is ready) is said
 * once every worker has its ring, buffers and files set up, or gave up.
 */
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static __u32 workers_settled;
static volatile int *stop_flag;

static void worker_settled(void)
{
	pthread_mutex_lock(&ready_lock);
	workers_settled++;
	pthread_cond_broadcast(&ready_cond);
	pthread_mutex_unlock(&ready_lock);
}

static void wait_workers(__u32 n)
{
	pthread_mutex_lock(&ready_lock);
	while (workers_settled < n)
		pthread_cond_wait(&ready_cond, &ready_lock);
	pthread_mutex_unlock(&ready_lock);
}

/* One worker: its own ring, its share of slots and requests, its clients. */
static void *worker_main(void *arg)
{
	struct bsteer_server *s = arg;
	struct bsteer_leg legs[BSTEER_MAX_TARGETS] = {};
	int err, k, started = 0;

	s->legs = legs;
	err = worker_setup(s, legs);
	started = !err;
	worker_settled();
	if (err)
		serve_err(s, "worker %u: %s", s->ring, *bsteer_errbuf() ?
			  bsteer_errbuf() : strerror(-err));
	if (!err)
		err = serve_loop(s, stop_flag);
	if (!err)
		err = flush_all(s);
	if (err)
		*stop_flag = 1;	/* one worker down takes the server down */
	for (k = 0; started && k < s->nfe; k++)
		s->fe[k].ops->fini(&s->fe[k]);
	bsteer_engine_free(s->e);
	s->e = NULL;
	resync_fini(s);
	legs_fini(s);
	worker_legs_close(s, legs);
	s->legs = NULL;
	s->status = err;
	return NULL;
}

/* ---- the whole server ---- */

/*
 * Each frontend's share of a ring's header entries, and what its ring
 * must be; then its setup (main thread).
 */
/* The exports, for bsteer stat: map "exports", pinned. */
static int exports_pin(struct bsteer_server *s)
{
	struct bsteer_export_info x;
	char path[PATH_MAX + 16];
	__u32 k;
	int fd;

	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "exports", sizeof(k), sizeof(x),
			    BSTEER_MAX_EXPORTS, NULL);
	if (fd < 0)
		return -errno;
	for (k = 0; k < (__u32)s->nexports; k++) {
		const struct bsteer_export *ex = &s->exports[k];

		memset(&x, 0, sizeof(x));
		snprintf(x.name, sizeof(x.name), "%s", ex->name);
		x.size = ex->size;
		x.tbase = ex->tbase;
		x.ntargets = ex->ntargets;
		x.flags = BSTEER_EXF_USED | (ex->rdonly ? BSTEER_EXF_RDONLY : 0) |
			  (ex->direct ? BSTEER_EXF_DIRECT : 0);
		bpf_map_update_elem(fd, &k, &x, BPF_ANY);
	}
	snprintf(path, sizeof(path), "%s/exports", s->in->dir);
	if (bpf_obj_pin(fd, path)) {
		close(fd);
		return -errno;
	}
	s->exports_fd = fd;
	return 0;
}

void bsteer_server_export_device(struct bsteer_server *s, int k, const char *path)
{
	struct bsteer_export_info x;
	__u32 key = k;

	if (s->exports_fd < 0 || bpf_map_lookup_elem(s->exports_fd, &key, &x))
		return;
	snprintf(x.device, sizeof(x.device), "%s", path);
	bpf_map_update_elem(s->exports_fd, &key, &x, BPF_ANY);
}

/* Before anything is made: what each frontend needs is there. */
static int frontends_check(struct bsteer_server *s)
{
	int k, err;

	for (k = 0; k < s->nfe; k++) {
		s->fe[k].s = s;
		err = s->fe[k].ops->check ? s->fe[k].ops->check(&s->fe[k]) : 0;
		if (err)
			return err;
	}
	return 0;
}

static int frontends_setup(struct bsteer_server *s)
{
	__u32 base = 0;
	int k, err;

	for (k = 0; k < s->nfe; k++) {
		s->fe[k].hdr_base = base;
		base += s->fe[k].ops->hdr_entries;
		if (base > BSTEER_HDR_CONNS) {
			bsteer_set_err("the frontends want %u header entries per ring, more than %u",
				       base, BSTEER_HDR_CONNS);
			return -ENOSPC;
		}
		s->eo.sqe128 |= s->fe[k].ops->sqe128;
	}
	for (k = 0; k < s->nfe; k++) {
		s->fe[k].s = s;
		err = s->fe[k].ops->setup ? s->fe[k].ops->setup(&s->fe[k]) : 0;
		if (err)
			return err;
	}
	return 0;
}

static void frontends_teardown(struct bsteer_server *s)
{
	int k;

	for (k = 0; k < s->nfe; k++)
		if (s->fe[k].ops->teardown)
			s->fe[k].ops->teardown(&s->fe[k]);
}

/* The instance, with the frontends' parsers and the policy's maps filled. */
static int server_instance(struct bsteer_server *s, struct bsteer_instance_opts *io)
{
	struct bsteer_policy_run *p = s->policy;
	int err, k;
	__u32 i;

	io->frontends = 0;
	for (k = 0; k < s->nfe; k++)
		io->frontends |= 1u << s->fe[k].id;
	io->policy = p->name;
	io->ntargets = s->ntargets;
	io->legs = p->legs;
	s->in = bsteer_instance_open(io, &err);
	if (!s->in)
		return err;
	if (s->in->note[0])
		serve_log(s, "instance %s: %s", s->in->name, s->in->note);
	for (i = 0; i < BSTEER_CFG_WORDS; i++)
		__atomic_store_n(&s->in->cfg->word[i], p->cfg.word[i],
				 __ATOMIC_RELEASE);
	if (p->d && (p->d->flags & BSTEER_PF_BASE_RDONLY))
		for (k = 0; k < s->nexports; k++)
			s->in->targets[s->exports[k].tbase].flags |= BSTEER_TGT_RDONLY;
	/*
	 * Each leg's size, for bsteer stat and for checks of live settings;
	 * a place kept for a leg added later is absent, and failed so that
	 * no policy touches it.
	 */
	for (k = 0; k < s->nexports; k++)
		for (i = 0; i < s->exports[k].ntargets; i++) {
			struct bsteer_target *tg = &s->in->targets[s->exports[k].tbase + i];

			tg->size = s->exports[k].leg[i].size;
			if (!s->exports[k].leg[i].ops)
				tg->flags |= BSTEER_TGT_FAILED | BSTEER_TGT_ABSENT;
		}
	err = p->d && p->d->setup ? p->d->setup(p, s->in, s->exports, s->nexports) : 0;
	if (err)
		return err;
	err = resync_pin(s);
	if (err)
		serve_warn(s, "cannot pin the resync map (bsteer resync will not work): %s",
			  strerror(-err));
	err = exports_pin(s);
	if (err)
		serve_warn(s, "cannot pin the exports map (bsteer stat will not list them): %s",
			  strerror(-err));
	err = legs_pin(s);
	if (err)
		serve_warn(s, "cannot pin the leg maps (bsteer leg will not work): %s",
			  strerror(-err));
	return 0;
}

/* Start the workers; 0 if every one is up, with their threads in @tid. */
static __u32 workers_start(struct bsteer_server *s, struct bsteer_server *w,
			   pthread_t *tid, __u32 threads)
{
	__u32 i, started = 0;

	for (i = 0; i < threads; i++) {
		w[i] = *s;
		w[i].ring = i;
		w[i].main = s;
		if (pthread_create(&tid[i], NULL, worker_main, &w[i])) {
			serve_err(s, "cannot start worker %u", i);
			*stop_flag = 1;
			break;
		}
		started++;
	}
	wait_workers(started);
	return started;
}

int bsteer_server_run(struct bsteer_server *s, struct bsteer_instance_opts *io,
		      __u32 threads, volatile int *stop)
{
	struct bsteer_server *w = NULL;
	pthread_t tid[BSTEER_MAX_RINGS];
	__u32 i, started = 0;
	int rc = 1, k;

	stop_flag = stop;
	s->exports_fd = -1;
	s->legreq_fd = -1;
	s->legspec_fd = -1;
	if (threads > BSTEER_MAX_RINGS || frontends_check(s) || server_instance(s, io) ||
	    frontends_setup(s)) {
		serve_err(s, "%s", bsteer_errbuf());
		goto out;
	}
	for (k = 0; k < s->nexports; k++) {
		__u32 i, n = 0;

		for (i = 0; i < s->exports[k].ntargets; i++)
			n += s->exports[k].leg[i].ops != NULL;
		serve_log(s, "export '%s': %llu bytes on %u target(s)%s, policy %s%s",
			  s->exports[k].name, (unsigned long long)s->exports[k].size,
			  n, s->exports[k].rdonly ? ", read-only" : "", s->policy->name,
			  n < s->exports[k].ntargets ? ", room for more (bsteer leg add)" : "");
	}
	w = calloc(threads, sizeof(*w));
	if (!w)
		goto out;
	started = workers_start(s, w, tid, threads);
	for (k = 0; !*stop && k < s->nfe; k++)
		if (s->fe[k].ops->ready)
			s->fe[k].ops->ready(&s->fe[k]);
	rc = started < threads;
	if (!rc && !*stop && s->notify)
		s->notify(s, BSTEER_SERVER_READY);
	/* The workers serve until told to stop (or one fails). */
	while (!*stop)
		usleep(50000);
	if (s->notify)
		s->notify(s, BSTEER_SERVER_STOPPING);
	for (k = 0; k < s->nfe; k++)
		if (s->fe[k].ops->quiesce)
			s->fe[k].ops->quiesce(&s->fe[k]);
	for (i = 0; i < started; i++) {
		pthread_join(tid[i], NULL);
		if (w[i].status)
			rc = 1;
	}
	if (s->policy->d && s->policy->d->sync && s->policy->d->sync(s->policy)) {
		serve_err(s, "%s", bsteer_errbuf());
		rc = 1;
	}
	serve_logl(s, rc ? BSTEER_LOG_ERROR : BSTEER_LOG_INFO,
		   rc ? "stopped with an error" : "stopped");
out:
	free(w);
	bsteer_access_close(s);
	frontends_teardown(s);
	if (s->policy->d && s->policy->d->close)
		s->policy->d->close(s->policy);
	if (s->resync_fd >= 0)
		close(s->resync_fd);
	if (s->exports_fd >= 0)
		close(s->exports_fd);
	if (s->legreq_fd >= 0)
		close(s->legreq_fd);
	if (s->legspec_fd >= 0)
		close(s->legspec_fd);
	bsteer_instance_close(s->in);
	s->in = NULL;
	return rc;
}
