// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* bsteer stat: read the pinned maps of a running instance. */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "cli/cli.h"

static const char stat_usage[] =
"USAGE: bsteer stat INSTANCE [--json|--prometheus] [--interval SECS [--count N]]\n"
"\n"
"Show the counters of a running instance, read from its pinned maps under\n"
"/sys/fs/bpf/bsteer/INSTANCE/: slots free, leased and in flight, decisions\n"
"made by the completion hook and by the fallback, rejected decisions,\n"
"direction violations, and ops and bytes per target; for a server with\n"
"admission options, each rule and the packets it matched and dropped, and\n"
"the connections refused at accept() by why.\n"
"\n"
"OPTIONS:\n"
"  -j, --json            one JSON object per report\n"
"  -P, --prometheus      the Prometheus text format (bsteer serve --metrics\n"
"                        serves the same over HTTP)\n"
"  -I, --interval SECS   report every SECS seconds\n"
"  -c, --count N         stop after N reports (with --interval)\n"
"  -h, --help            this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer stat copy-1234\n"
"  bsteer stat live --json\n"
"  bsteer stat live --prometheus | promtool check metrics\n"
"  bsteer stat live --interval 1 --count 10\n";

static const char *const stat_names[BSTEER_ST__MAX] = {
	[BSTEER_ST_CQE_SEEN]		= "cqe_seen",
	[BSTEER_ST_CQE_AUX]		= "cqe_aux",
	[BSTEER_ST_DEC_HOOK]		= "decisions_hook",
	[BSTEER_ST_DEC_FALLBACK]	= "decisions_fallback",
	[BSTEER_ST_FALLBACK_RUNS]	= "fallback_runs",
	[BSTEER_ST_DEC_REJECTED]	= "decisions_rejected",
	[BSTEER_ST_DEC_STALE]		= "decisions_stale",
	[BSTEER_ST_DEC_MISSING]		= "decisions_missing",
	[BSTEER_ST_NO_POLICY]		= "no_policy",
	[BSTEER_ST_VIOLATIONS]		= "violations",
	[BSTEER_ST_FOREIGN]		= "foreign_completions",
	[BSTEER_ST_KOPS]		= "kernel_fixed_ops",
	[BSTEER_ST_KRECVS]		= "kernel_slot_recvs",
	[BSTEER_ST_OPS_SUBMITTED]	= "ops_submitted",
	[BSTEER_ST_OPS_COMPLETED]	= "ops_completed",
	[BSTEER_ST_OPS_SHORT]		= "ops_short",
	[BSTEER_ST_OPS_ERRORS]		= "ops_errors",
	[BSTEER_ST_SLOT_LEASES]		= "slot_leases",
	[BSTEER_ST_SLOT_RELEASES]	= "slot_releases",
	[BSTEER_ST_REQS_STARTED]	= "requests_started",
	[BSTEER_ST_REQS_DONE]		= "requests_done",
	[BSTEER_ST_REQS_FAILED]		= "requests_failed",
	[BSTEER_ST_BUDGET]		= "op_budget_exceeded",
	[BSTEER_ST_TARGETS_FAILED]	= "targets_failed",
	[BSTEER_ST_RINGS]		= "rings",
	[BSTEER_ST_PARSED_HOOK]		= "headers_parsed_hook",
	[BSTEER_ST_PARSED_FALLBACK]	= "headers_parsed_fallback",
	[BSTEER_ST_INLINE_OPS]		= "inline_ops",
	[BSTEER_ST_SPLICED_READS]	= "spliced_reads",
	[BSTEER_ST_POLICY_CHANGES]	= "policy_changes",
	[BSTEER_ST_INLINE_WRITES]	= "inline_writes",
	[BSTEER_ST_INLINE_SLOW]		= "inline_slow_writes",
	[BSTEER_ST_INLINE_BACKOFF]	= "inline_backoff_writes",
};

struct view {
	struct bsteer_pins pins;
	void *mem[BSTEER_MAP__MAX];
	size_t len[BSTEER_MAP__MAX];
	int exports_fd;		/* a server's "exports" pin, or -1 */
	int resync_fd;		/* a server's "resync" pin, or -1 */
	int legspec_fd;		/* a server's "leg_specs" pin, or -1 */
};

/* A target's state, as a word. */
static const char *target_state(__u32 flags)
{
	return flags & BSTEER_TGT_ABSENT ? "absent" :
	       flags & BSTEER_TGT_FAILED ? "failed" :
	       flags & BSTEER_TGT_RESYNC ? "resyncing" : "ok";
}

/* What target @t holds (its spec), "" if not known. */
static void target_spec(const struct view *v, __u32 t, char *out, size_t len)
{
	struct bsteer_leg_spec ls;

	if (v->legspec_fd < 0 || bpf_map_lookup_elem(v->legspec_fd, &t, &ls))
		ls.spec[0] = 0;
	ls.spec[sizeof(ls.spec) - 1] = 0;
	snprintf(out, len, "%s", ls.spec);
}

/* The server's last leg rebuild, if it has done or is doing one. */
static bool resync_info(const struct view *v, struct bsteer_resync *rs)
{
	__u32 key = 0;

	return v->resync_fd >= 0 && !bpf_map_lookup_elem(v->resync_fd, &key, rs) &&
	       rs->state != BSTEER_RS_IDLE;
}

/* Seconds until resync=auto tries the leg again, 0 if it does not. */
static __u64 resync_next_s(const struct bsteer_resync *rs)
{
	__u64 now = bsteer_now_ns();

	if (rs->state != BSTEER_RS_FAILED || !rs->next_try_ns)
		return 0;
	return rs->next_try_ns > now ? (rs->next_try_ns - now + 999999999) / 1000000000 : 1;
}

static void resync_json(const struct view *v, struct bsteer_json *j)
{
	struct bsteer_resync rs;

	if (!resync_info(v, &rs))
		return;
	json_obj(j, "resync");
	json_str(j, "export", rs.export);
	json_u64(j, "leg", rs.leg);
	json_str(j, "state", resync_state_name(rs.state));
	json_u64(j, "done_bytes", rs.done);
	json_u64(j, "total_bytes", rs.total);
	json_bool(j, "automatic", rs.automatic);
	json_u64(j, "attempts", rs.attempts);
	if (rs.state == BSTEER_RS_FAILED)
		json_str(j, "message", rs.message);
	if (resync_next_s(&rs))
		json_u64(j, "next_try_in_s", resync_next_s(&rs));
	json_end_obj(j);
}

static void resync_text(const struct view *v)
{
	struct bsteer_resync rs;

	if (!resync_info(v, &rs))
		return;
	printf("resync: export %s leg %u: %s", rs.export, rs.leg,
	       resync_state_name(rs.state));
	if (rs.state == BSTEER_RS_RUNNING && rs.total)
		printf(", %.0f%% copied", 100.0 * rs.done / rs.total);
	if (rs.state == BSTEER_RS_FAILED)
		printf(": %s", rs.message);
	if (rs.automatic)
		printf(" (resync=auto, try %u", rs.attempts);
	if (resync_next_s(&rs))
		printf(", next in %llu s", (unsigned long long)resync_next_s(&rs));
	printf("%s\n", rs.automatic ? ")" : "");
}

/* Export @k of a server, if it has one there. */
static bool export_info(const struct view *v, __u32 k, struct bsteer_export_info *x)
{
	return v->exports_fd >= 0 && !bpf_map_lookup_elem(v->exports_fd, &k, x) &&
	       (x->flags & BSTEER_EXF_USED);
}

static void exports_json(const struct view *v, struct bsteer_json *j)
{
	const struct bsteer_target *tg = v->mem[BSTEER_MAP_TARGETS];
	struct bsteer_export_info x;
	char spec[BSTEER_LEG_SPEC_MAX];
	__u32 k, i;

	if (v->exports_fd < 0)
		return;
	json_arr(j, "exports");
	for (k = 0; export_info(v, k, &x); k++) {
		json_obj(j, NULL);
		json_str(j, "name", x.name);
		json_u64(j, "size", x.size);
		json_u64(j, "first_target", x.tbase);
		json_u64(j, "targets", x.ntargets);
		json_bool(j, "read_only", x.flags & BSTEER_EXF_RDONLY);
		json_str(j, "cache", x.flags & BSTEER_EXF_DIRECT ? "none" : "writeback");
		json_str(j, "device", x.device);
		/* Its legs as they are now: added, rebuilt, removed. */
		json_arr(j, "legs");
		for (i = 0; i < x.ntargets && x.tbase + i < BSTEER_MAX_TARGETS; i++) {
			json_obj(j, NULL);
			json_u64(j, "leg", i);
			json_u64(j, "target", x.tbase + i);
			target_spec(v, x.tbase + i, spec, sizeof(spec));
			json_str(j, "spec", spec);
			json_str(j, "state", target_state(tg[x.tbase + i].flags));
			json_end_obj(j);
		}
		json_end_arr(j);
		json_end_obj(j);
	}
	json_end_arr(j);
}

static void exports_text(const struct view *v)
{
	const struct bsteer_target *tg = v->mem[BSTEER_MAP_TARGETS];
	struct bsteer_export_info x;
	char spec[BSTEER_LEG_SPEC_MAX];
	__u32 k, i;

	for (k = 0; export_info(v, k, &x); k++) {
		printf("export %s: %llu bytes on targets %u..%u%s%s%s%s\n", x.name,
		       (unsigned long long)x.size, x.tbase, x.tbase + x.ntargets - 1,
		       x.flags & BSTEER_EXF_RDONLY ? ", read-only" : "",
		       x.flags & BSTEER_EXF_DIRECT ? ", O_DIRECT (cache=none)" : "",
		       x.device[0] ? ", " : "", x.device);
		for (i = 0; i < x.ntargets && x.tbase + i < BSTEER_MAX_TARGETS; i++) {
			target_spec(v, x.tbase + i, spec, sizeof(spec));
			printf("  leg %u (target %u): %s%s%s\n", i, x.tbase + i,
			       target_state(tg[x.tbase + i].flags), spec[0] ? ", " : "", spec);
		}
	}
}

static int view_open(struct view *v, const char *name)
{
	static const int need[] = {
		BSTEER_MAP_SLOT_META, BSTEER_MAP_TARGETS, BSTEER_MAP_STATS,
		BSTEER_MAP_POLICY_STATS, BSTEER_MAP_CFG, BSTEER_MAP_INFO,
		BSTEER_MAP_FE_STATS,
	};
	char path[PATH_MAX + 16];
	size_t i;
	int err;

	memset(v, 0, sizeof(*v));
	v->exports_fd = -1;
	v->resync_fd = -1;
	v->legspec_fd = -1;
	err = bsteer_pins_open(&v->pins, name);
	if (err)
		return err;
	snprintf(path, sizeof(path), "%s/exports", v->pins.dir);
	v->exports_fd = bpf_obj_get(path);	/* a server's; -1 otherwise */
	snprintf(path, sizeof(path), "%s/resync", v->pins.dir);
	v->resync_fd = bpf_obj_get(path);
	snprintf(path, sizeof(path), "%s/leg_specs", v->pins.dir);
	v->legspec_fd = bpf_obj_get(path);
	for (i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		int m = need[i];

		v->mem[m] = bsteer_map_mmap(v->pins.map_fd[m], &v->len[m], false);
		if (!v->mem[m]) {
			bsteer_set_err("cannot map %s/%s: %s", v->pins.dir,
				       bsteer_map_names[m], strerror(errno));
			return -EIO;
		}
	}
	return 0;
}

static void view_close(struct view *v)
{
	int i;

	for (i = 0; i < BSTEER_MAP__MAX; i++)
		if (v->mem[i])
			munmap(v->mem[i], v->len[i]);
	if (v->exports_fd >= 0)
		close(v->exports_fd);
	if (v->resync_fd >= 0)
		close(v->resync_fd);
	if (v->legspec_fd >= 0)
		close(v->legspec_fd);
	bsteer_pins_close(&v->pins);
}

/*
 * Each frontend of the instance, with its counters: @fn(name, value) for
 * every one, in the frontend's order.
 */
static void fe_counters(struct view *v, void (*fn)(void *, const char *, __u64),
			void *arg)
{
	const struct bsteer_info *inf = v->mem[BSTEER_MAP_INFO];
	const __u64 *c = v->mem[BSTEER_MAP_FE_STATS];
	const struct bsteer_frontend_ops *fe;
	__u32 id, i;

	char name[64];

	for (id = 0; id < BSTEER_FRONTEND_IDS && bsteer_frontend_modules[id]; id++) {
		fe = bsteer_frontend_modules[id];
		if (!(inf->frontends & (1u << id)))
			continue;
		/* Its parser's own count: who parsed this frontend's headers. */
		snprintf(name, sizeof(name), "%s_headers_parsed_hook", fe->name);
		fn(arg, name, c[id * BSTEER_FE_COUNTERS + BSTEER_FE_PARSED_HOOK]);
		snprintf(name, sizeof(name), "%s_headers_parsed_twin", fe->name);
		fn(arg, name, c[id * BSTEER_FE_COUNTERS + BSTEER_FE_PARSED_TWIN]);
		for (i = 0; fe->counters && fe->counters[i] && i + 2 < BSTEER_FE_COUNTERS; i++)
			fn(arg, fe->counters[i], c[id * BSTEER_FE_COUNTERS + 2 + i]);
	}
}

static void fe_json(void *arg, const char *name, __u64 v)
{
	json_u64(arg, name, v);
}

static void fe_text(void *arg, const char *name, __u64 v)
{
	(void)arg;
	printf("  %-22s %llu\n", name, (unsigned long long)v);
}

/* A frontend's counter by name (0 if no frontend of the instance has it). */
struct fe_find {
	const char *name;
	__u64 v;
};

static void fe_match(void *arg, const char *name, __u64 v)
{
	struct fe_find *f = arg;

	if (!strcmp(f->name, name))
		f->v = v;
}

static __u64 fe_counter(struct view *v, const char *name)
{
	struct fe_find f = { .name = name };

	fe_counters(v, fe_match, &f);
	return f.v;
}

struct slot_count {
	__u32 free, leased, releasing, busy;
};

static void count_slots(struct view *v, __u32 nslots, struct slot_count *sc)
{
	const struct bsteer_slot *m = v->mem[BSTEER_MAP_SLOT_META];
	__u32 i;

	memset(sc, 0, sizeof(*sc));
	for (i = 0; i < nslots; i++) {
		switch (m[i].state) {
		case BSTEER_SLOT_FREE:
			sc->free++;
			break;
		case BSTEER_SLOT_LEASED:
			sc->leased++;
			break;
		default:
			sc->releasing++;
		}
		sc->busy += m[i].inflight != 0;
	}
}

/* The ops in a target's latency buckets. */
static __u64 lat_count(const struct bsteer_target *t)
{
	__u64 n = 0;
	__u32 b;

	for (b = 0; b < BSTEER_LAT_BUCKETS; b++)
		n += t->lat[b];
	return n;
}

/* The bucket bound (us) that a share @q of the ops are under; 0 for none. */
static __u64 lat_quantile_us(const struct bsteer_target *t, double q)
{
	__u64 n = lat_count(t), seen = 0;
	__u32 b;

	if (!n)
		return 0;
	for (b = 0; b < BSTEER_LAT_BUCKETS - 1; b++) {
		seen += t->lat[b];
		if (seen >= q * n)
			return 1ull << b;
	}
	return UINT64_MAX;	/* past the last bound */
}

static void lat_text(char *out, size_t len, const struct bsteer_target *t, double q)
{
	__u64 us = lat_quantile_us(t, q);

	if (!us)
		snprintf(out, len, "-");
	else if (us == UINT64_MAX)
		snprintf(out, len, ">%llums", (1ull << (BSTEER_LAT_BUCKETS - 2)) / 1000);
	else if (us >= 1000)
		snprintf(out, len, "<=%llums", us / 1000);
	else
		snprintf(out, len, "<=%lluus", us);
}

static void report(struct view *v, const char *name, bool json)
{
	const struct bsteer_info *inf = v->mem[BSTEER_MAP_INFO];
	const struct bsteer_target *t = v->mem[BSTEER_MAP_TARGETS];
	const struct bsteer_cfg *cfg = v->mem[BSTEER_MAP_CFG];
	const __u64 *st = v->mem[BSTEER_MAP_STATS];
	const __u64 *ps = v->mem[BSTEER_MAP_POLICY_STATS];
	__u64 hook = st[BSTEER_ST_DEC_HOOK], fb = st[BSTEER_ST_DEC_FALLBACK];
	double ratio = hook + fb ? (double)hook / (hook + fb) : 0;
	__u32 ntg = cfg->ntargets > BSTEER_MAX_TARGETS ? BSTEER_MAX_TARGETS :
							 cfg->ntargets;
	struct bsteer_instance_status owner;
	struct slot_count sc;
	char policy[32];
	__u32 i, b;

	bsteer_active_policy(v->pins.map_fd[BSTEER_MAP_POLICY], policy,
			     sizeof(policy));
	count_slots(v, inf->nslots, &sc);
	if (bsteer_instance_status(name, &owner))
		owner.live_pid = 0;
	if (json) {
		struct bsteer_json j;

		json_begin(&j, stdout);
		json_str(&j, "instance", name);
		json_u64(&j, "pid", inf->pid);
		json_bool(&j, "live", owner.live_pid);
		json_str(&j, "kind", inf->kind);
		json_str(&j, "policy", policy);
		json_u64(&j, "slot_size", inf->slot_size);
		json_obj(&j, "slots");
		json_u64(&j, "total", inf->nslots);
		json_u64(&j, "free", sc.free);
		json_u64(&j, "leased", sc.leased);
		json_u64(&j, "releasing", sc.releasing);
		json_u64(&j, "in_flight", sc.busy);
		json_end_obj(&j);
		json_dbl(&j, "hook_ratio", ratio);
		json_obj(&j, "counters");
		for (i = 0; i < BSTEER_ST__MAX; i++)
			json_u64(&j, stat_names[i], st[i]);
		fe_counters(v, fe_json, &j);
		json_end_obj(&j);
		json_arr(&j, "decisions_by_policy_id");
		for (i = 0; i < BSTEER_POLICY_IDS; i++)
			json_u64(&j, NULL, ps[i]);
		json_end_arr(&j);
		exports_json(v, &j);
		json_arr(&j, "targets");
		for (i = 0; i < ntg; i++) {
			json_obj(&j, NULL);
			json_u64(&j, "index", i);
			json_u64(&j, "ops", t[i].ops);
			json_u64(&j, "bytes", t[i].bytes);
			json_u64(&j, "errors", t[i].errors);
			json_bool(&j, "failed", t[i].flags & BSTEER_TGT_FAILED);
			json_bool(&j, "resyncing", t[i].flags & BSTEER_TGT_RESYNC);
			json_bool(&j, "absent", t[i].flags & BSTEER_TGT_ABSENT);
			json_str(&j, "state", target_state(t[i].flags));
			json_obj(&j, "latency");
			json_u64(&j, "count", lat_count(&t[i]));
			json_u64(&j, "sum_ns", t[i].lat_sum_ns);
			json_u64(&j, "p50_le_us", lat_quantile_us(&t[i], 0.5));
			json_u64(&j, "p99_le_us", lat_quantile_us(&t[i], 0.99));
			/* buckets[b]: ops of at most 2^b us; the last, the rest */
			json_arr(&j, "buckets");
			for (b = 0; b < BSTEER_LAT_BUCKETS; b++)
				json_u64(&j, NULL, t[i].lat[b]);
			json_end_arr(&j);
			json_end_obj(&j);
			json_end_obj(&j);
		}
		json_end_arr(&j);
		resync_json(v, &j);
		access_report(v->pins.dir, &j);
		json_finish(&j);
		return;
	}
	printf("instance %s (pid %u, %s), policy %s\n", name, inf->pid, inf->kind,
	       policy);
	if (!owner.live_pid)
		printf("its owner, pid %u, is gone: these counters are what it left behind ('bsteer clean %s' removes them)\n",
		       inf->pid, name);
	exports_text(v);
	printf("slots: %u of %u bytes: %u free, %u leased, %u releasing, %u in flight\n",
	       inf->nslots, inf->slot_size, sc.free, sc.leased, sc.releasing,
	       sc.busy);
	if (fe_counter(v, "connections_total"))
		printf("connections: %llu open, %llu in all; requests: %llu read, %llu write, %llu flush, %llu trim, %llu zero, %llu other, %llu errors\n",
		       (unsigned long long)fe_counter(v, "connections_open"),
		       (unsigned long long)fe_counter(v, "connections_total"),
		       (unsigned long long)fe_counter(v, "client_reads"),
		       (unsigned long long)fe_counter(v, "client_writes"),
		       (unsigned long long)fe_counter(v, "client_flushes"),
		       (unsigned long long)fe_counter(v, "client_trims"),
		       (unsigned long long)fe_counter(v, "client_write_zeroes"),
		       (unsigned long long)fe_counter(v, "client_other"),
		       (unsigned long long)fe_counter(v, "client_errors"));
	printf("decisions: %llu hook, %llu fallback (%.2f%% hook), %llu rejected\n",
	       (unsigned long long)hook, (unsigned long long)fb, 100 * ratio,
	       (unsigned long long)st[BSTEER_ST_DEC_REJECTED]);
	for (i = 0; i < BSTEER_ST__MAX; i++)
		printf("  %-22s %llu\n", stat_names[i], (unsigned long long)st[i]);
	fe_counters(v, fe_text, NULL);
	printf("%-4s %-10s %-14s %-8s %-9s %-9s %s\n", "TGT", "OPS", "BYTES", "ERRORS",
	       "P50", "P99", "STATE");
	for (i = 0; i < ntg; i++) {
		char p50[16], p99[16];

		lat_text(p50, sizeof(p50), &t[i], 0.5);
		lat_text(p99, sizeof(p99), &t[i], 0.99);
		printf("%-4u %-10llu %-14llu %-8llu %-9s %-9s %s\n", i,
		       (unsigned long long)t[i].ops,
		       (unsigned long long)t[i].bytes,
		       (unsigned long long)t[i].errors, p50, p99,
		       target_state(t[i].flags));
	}
	resync_text(v);
	access_report(v->pins.dir, NULL);
}

/* ---- the Prometheus text format (--prometheus, serve --metrics) ---- */

static void prom_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * A frontend counter's metric: bsteer_FE_NAME, with the unit last
 * (X_bytes_Y becomes X_Y_bytes), and _total on what only grows.
 */
static void prom_fe_name(const char *fe, const char *counter, char *out, size_t len,
			 bool *gauge)
{
	char base[96];
	const char *b = strstr(counter, "bytes_");
	size_t n;

	if (b) {
		snprintf(base, sizeof(base), "%.*s%s_bytes", (int)(b - counter), counter,
			 b + strlen("bytes_"));
	} else {
		snprintf(base, sizeof(base), "%s", counter);
	}
	n = strlen(base);
	*gauge = n > 5 && !strcmp(base + n - 5, "_open");
	if (n > 6 && !strcmp(base + n - 6, "_total"))
		base[n - 6] = 0;
	snprintf(out, len, "bsteer_%s%s%s%s", strncmp(base, fe, strlen(fe)) ? fe : "",
		 strncmp(base, fe, strlen(fe)) ? "_" : "", base, *gauge ? "" : "_total");
}

struct prom_fe {
	FILE *f;
	const char *inst;
};

static void prom_fe_one(void *arg, const char *name, __u64 v)
{
	const struct prom_fe *p = arg;
	const struct bsteer_frontend_ops *fe;
	char metric[128];
	bool gauge;
	__u32 id;

	/* The frontend whose counter it is: its name, or its prefix. */
	for (id = 0; id < BSTEER_FRONTEND_IDS && (fe = bsteer_frontend_modules[id]); id++) {
		size_t n = strlen(fe->name);
		__u32 i;

		if (!strncmp(name, fe->name, n) && name[n] == '_')
			break;
		for (i = 0; fe->counters && fe->counters[i]; i++)
			if (!strcmp(fe->counters[i], name))
				break;
		if (fe->counters && fe->counters[i])
			break;
	}
	prom_fe_name(fe ? fe->name : "frontend", name, metric, sizeof(metric), &gauge);
	prom_head(p->f, metric, gauge ? "gauge" : "counter", "a frontend's counter (bsteer stat)");
	fprintf(p->f, "%s{instance=\"%s\"} %llu\n", metric, p->inst, (unsigned long long)v);
}

/* The target's export and leg, for its labels ("" and 0 if no server). */
static void target_leg(const struct view *v, __u32 t, char *ex, size_t len, __u32 *leg)
{
	struct bsteer_export_info x;
	__u32 k;

	snprintf(ex, len, "%s", "");
	*leg = t;
	for (k = 0; export_info(v, k, &x); k++)
		if (t >= x.tbase && t < x.tbase + x.ntargets) {
			snprintf(ex, len, "%s", x.name);
			*leg = t - x.tbase;
			return;
		}
}

static void report_prom(struct view *v, const char *name, FILE *f)
{
	static const struct { const char *metric, *help; size_t off; bool gauge; } tgt[] = {
		{ "bsteer_target_ops_total", "ops completed on the target",
		  offsetof(struct bsteer_target, ops), false },
		{ "bsteer_target_bytes_total", "bytes moved to or from the target",
		  offsetof(struct bsteer_target, bytes), false },
		{ "bsteer_target_errors_total", "ops that ended in an error",
		  offsetof(struct bsteer_target, errors), false },
		{ "bsteer_target_inflight_ops", "ops out on the target now",
		  offsetof(struct bsteer_target, inflight), true },
	};
	const struct bsteer_info *inf = v->mem[BSTEER_MAP_INFO];
	const struct bsteer_target *t = v->mem[BSTEER_MAP_TARGETS];
	const struct bsteer_cfg *cfg = v->mem[BSTEER_MAP_CFG];
	const __u64 *st = v->mem[BSTEER_MAP_STATS];
	__u32 ntg = cfg->ntargets > BSTEER_MAX_TARGETS ? BSTEER_MAX_TARGETS : cfg->ntargets;
	struct bsteer_instance_status owner;
	struct prom_fe pf = { f, name };
	struct bsteer_resync rs;
	struct slot_count sc;
	char policy[32], ex[64];
	__u32 i, k, leg;

	bsteer_active_policy(v->pins.map_fd[BSTEER_MAP_POLICY], policy, sizeof(policy));
	count_slots(v, inf->nslots, &sc);
	if (bsteer_instance_status(name, &owner))
		owner.live_pid = 0;

	prom_head(f, "bsteer_info", "gauge", "the instance: what it runs and its active policy");
	fprintf(f, "bsteer_info{instance=\"%s\",kind=\"%s\",policy=\"%s\",pid=\"%u\"} 1\n",
		name, inf->kind, policy, inf->pid);
	prom_head(f, "bsteer_owner_alive", "gauge", "1 while the process that owns the instance runs");
	fprintf(f, "bsteer_owner_alive{instance=\"%s\"} %d\n", name, owner.live_pid ? 1 : 0);
	prom_head(f, "bsteer_slot_size_bytes", "gauge", "bytes per buffer slot");
	fprintf(f, "bsteer_slot_size_bytes{instance=\"%s\"} %u\n", name, inf->slot_size);
	prom_head(f, "bsteer_slots", "gauge", "buffer slots by state");
	fprintf(f, "bsteer_slots{instance=\"%s\",state=\"free\"} %u\n", name, sc.free);
	fprintf(f, "bsteer_slots{instance=\"%s\",state=\"leased\"} %u\n", name, sc.leased);
	fprintf(f, "bsteer_slots{instance=\"%s\",state=\"releasing\"} %u\n", name, sc.releasing);
	fprintf(f, "bsteer_slots{instance=\"%s\",state=\"in_flight\"} %u\n", name, sc.busy);
	prom_head(f, "bsteer_decisions_total", "counter",
		  "policy decisions, by where they were made (the completion hook, or the fallback)");
	fprintf(f, "bsteer_decisions_total{instance=\"%s\",by=\"hook\"} %llu\n", name,
		(unsigned long long)st[BSTEER_ST_DEC_HOOK]);
	fprintf(f, "bsteer_decisions_total{instance=\"%s\",by=\"fallback\"} %llu\n", name,
		(unsigned long long)st[BSTEER_ST_DEC_FALLBACK]);
	prom_head(f, "bsteer_decisions_rejected_total", "counter",
		  "decisions the executor refused");
	fprintf(f, "bsteer_decisions_rejected_total{instance=\"%s\"} %llu\n", name,
		(unsigned long long)st[BSTEER_ST_DEC_REJECTED]);
	prom_head(f, "bsteer_violations_total", "counter", "slot direction violations seen");
	fprintf(f, "bsteer_violations_total{instance=\"%s\"} %llu\n", name,
		(unsigned long long)st[BSTEER_ST_VIOLATIONS]);
	prom_head(f, "bsteer_policy_changes_total", "counter",
		  "times the active policy program was replaced (swap, or bpftool), as the server saw it");
	fprintf(f, "bsteer_policy_changes_total{instance=\"%s\"} %llu\n", name,
		(unsigned long long)st[BSTEER_ST_POLICY_CHANGES]);
	prom_head(f, "bsteer_rings", "gauge", "io_uring rings (worker threads)");
	fprintf(f, "bsteer_rings{instance=\"%s\"} %llu\n", name,
		(unsigned long long)st[BSTEER_ST_RINGS]);
	prom_head(f, "bsteer_engine_events_total", "counter",
		  "the engine's other counters, by name (bsteer stat lists them)");
	for (i = 0; i < BSTEER_ST__MAX; i++)
		if (i != BSTEER_ST_DEC_HOOK && i != BSTEER_ST_DEC_FALLBACK &&
		    i != BSTEER_ST_DEC_REJECTED && i != BSTEER_ST_VIOLATIONS &&
		    i != BSTEER_ST_RINGS && i != BSTEER_ST_POLICY_CHANGES)
			fprintf(f, "bsteer_engine_events_total{instance=\"%s\",event=\"%s\"} %llu\n",
				name, stat_names[i], (unsigned long long)st[i]);
	for (k = 0; k < sizeof(tgt) / sizeof(tgt[0]); k++) {
		prom_head(f, tgt[k].metric, tgt[k].gauge ? "gauge" : "counter", tgt[k].help);
		for (i = 0; i < ntg; i++) {
			if (t[i].flags & BSTEER_TGT_ABSENT)
				continue;	/* a place for a leg, none there */
			target_leg(v, i, ex, sizeof(ex), &leg);
			fprintf(f, "%s{instance=\"%s\",target=\"%u\",export=\"%s\",leg=\"%u\"} %llu\n",
				tgt[k].metric, name, i, ex, leg,
				*(const unsigned long long *)((const char *)&t[i] + tgt[k].off));
		}
	}
	prom_head(f, "bsteer_target_latency_seconds", "histogram",
		  "target ops, submission to completion as the executor sees them");
	for (i = 0; i < ntg; i++) {
			if (t[i].flags & BSTEER_TGT_ABSENT)
				continue;	/* a place for a leg, none there */
		__u64 cum = 0;
		__u32 b;

		target_leg(v, i, ex, sizeof(ex), &leg);
		for (b = 0; b < BSTEER_LAT_BUCKETS - 1; b++) {
			cum += t[i].lat[b];
			fprintf(f, "bsteer_target_latency_seconds_bucket{instance=\"%s\",target=\"%u\",export=\"%s\",leg=\"%u\",le=\"%g\"} %llu\n",
				name, i, ex, leg, (double)(1ull << b) * 1e-6,
				(unsigned long long)cum);
		}
		cum += t[i].lat[b];
		fprintf(f, "bsteer_target_latency_seconds_bucket{instance=\"%s\",target=\"%u\",export=\"%s\",leg=\"%u\",le=\"+Inf\"} %llu\n",
			name, i, ex, leg, (unsigned long long)cum);
		fprintf(f, "bsteer_target_latency_seconds_sum{instance=\"%s\",target=\"%u\",export=\"%s\",leg=\"%u\"} %.9f\n",
			name, i, ex, leg, t[i].lat_sum_ns * 1e-9);
		fprintf(f, "bsteer_target_latency_seconds_count{instance=\"%s\",target=\"%u\",export=\"%s\",leg=\"%u\"} %llu\n",
			name, i, ex, leg, (unsigned long long)cum);
	}
	prom_head(f, "bsteer_target_failed", "gauge", "1 while the target is marked failed");
	for (i = 0; i < ntg; i++) {
			if (t[i].flags & BSTEER_TGT_ABSENT)
				continue;	/* a place for a leg, none there */
		target_leg(v, i, ex, sizeof(ex), &leg);
		fprintf(f, "bsteer_target_failed{instance=\"%s\",target=\"%u\",export=\"%s\",leg=\"%u\"} %d\n",
			name, i, ex, leg, !!(t[i].flags & BSTEER_TGT_FAILED));
	}
	prom_head(f, "bsteer_target_resyncing", "gauge", "1 while the target is being rebuilt");
	for (i = 0; i < ntg; i++) {
			if (t[i].flags & BSTEER_TGT_ABSENT)
				continue;	/* a place for a leg, none there */
		target_leg(v, i, ex, sizeof(ex), &leg);
		fprintf(f, "bsteer_target_resyncing{instance=\"%s\",target=\"%u\",export=\"%s\",leg=\"%u\"} %d\n",
			name, i, ex, leg, !!(t[i].flags & BSTEER_TGT_RESYNC));
	}
	fe_counters(v, prom_fe_one, &pf);
	access_prom(v->pins.dir, name, f);
	if (resync_info(v, &rs)) {
		prom_head(f, "bsteer_resync_copied_bytes", "gauge",
			  "the last leg rebuild: bytes copied so far");
		fprintf(f, "bsteer_resync_copied_bytes{instance=\"%s\",export=\"%s\",leg=\"%u\",state=\"%s\"} %llu\n",
			name, rs.export, rs.leg, resync_state_name(rs.state),
			(unsigned long long)rs.done);
		prom_head(f, "bsteer_resync_size_bytes", "gauge",
			  "the last leg rebuild: bytes to copy in all");
		fprintf(f, "bsteer_resync_size_bytes{instance=\"%s\",export=\"%s\",leg=\"%u\",state=\"%s\"} %llu\n",
			name, rs.export, rs.leg, resync_state_name(rs.state),
			(unsigned long long)rs.total);
	}
}

int stat_prometheus(const char *name, FILE *f)
{
	struct view v;
	int err = view_open(&v, name);

	if (!err)
		report_prom(&v, name, f);
	view_close(&v);
	return err;
}

int cmd_stat(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'P' },
		{ "interval", required_argument, NULL, 'I' },
		{ "count", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, prom = false;
	double interval = 0;
	__u64 count = 0, n;
	struct view v;
	int opt;

	while ((opt = getopt_long(argc, argv, "jPI:c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = true;
			break;
		case 'P':
			prom = true;
			break;
		case 'I':
			if (cli_secs("stat", "--interval", optarg, 0.01, 86400, &interval))
				return 2;
			break;
		case 'c':
			if (cli_u64("stat", "--count", optarg, 1, 1000000000, 0, &count))
				return 2;
			break;
		case 'h':
			fputs(stat_usage, stdout);
			return 0;
		default:
			return cli_bad_option("stat", argv);
		}
	}
	if (optind != argc - 1)
		return cli_usage("stat", optind < argc ? "one INSTANCE only" : "which INSTANCE?");
	if (bsteer_check_privileges("bsteer stat"))
		return 1;
	if (view_open(&v, argv[optind])) {
		fprintf(stderr, "bsteer stat: %s\n", bsteer_errbuf());
		view_close(&v);
		return 1;
	}
	install_signals();
	for (n = 0; !exiting; n++) {
		if (prom)
			report_prom(&v, argv[optind], stdout);
		else
			report(&v, argv[optind], json);
		fflush(stdout);
		if (!interval || (count && n + 1 >= count))
			break;
		usleep(interval * 1e6);
	}
	view_close(&v);
	return 0;
}
