// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The refresh, every interval: requests in flight per row and the
 * userspace half of the cross-check (from the tracer's "tuses" map), each
 * row's rate and latency percentiles over the interval, and the live
 * table, busiest rows first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <bpf/bpf.h>
#include "trace/trace_priv.h"

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

/*
 * A bsteer slot that a request has held for over 1 s while bsteer has it
 * free is an error the BPF side cannot see (it looks only at issue and
 * completion); each is reported once.
 */
static void xcheck_held(struct tstate *s, __u64 key, const struct bsteer_tuse *u,
			__u64 now)
{
	struct bsteer_slot m;

	if (!(u->flags & BSTEER_TEVF_BSTEER) || s->slot_meta_fd < 0 ||
	    now < u->submit_ns + 1000000000ull)
		return;
	if (bpf_map_lookup_elem(s->slot_meta_fd, &u->index, &m) ||
	    m.state != BSTEER_SLOT_FREE || hmap_get(&s->xseen, key, u->submit_ns))
		return;
	hmap_put(&s->xseen, key, u->submit_ns, (void *)1);
	s->xcheck_user++;
	fprintf(stderr, "bsteer trace: cross-check error: pid %u slot %u: %s\n",
		u->pid, u->index, trace_xcheck_why(BSTEER_XC_FREE_HELD));
}

/* Walk "tuses": requests in flight per row, and bsteer slots free too long. */
static __u64 scan_inflight(struct tstate *s, __u64 now)
{
	int fd = bsteer_tracer_map_fd(s->t, BSTEER_TMAP_USES);
	__u64 key, next, *pk = NULL, total = 0;
	struct bsteer_tuse u;
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
		r = hmap_get(&s->rings, u.ctx, 0);
		w = r ? hmap_get(&s->rowmap, u.ctx, u.index) : NULL;
		if (w)
			w->inflight++;
		xcheck_held(s, key, &u, now);
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

/* One line of the table; false for a row with nothing to show. */
static bool show_row(struct tstate *s, const struct row *w, __u64 now)
{
	char age[16];

	if (!w->live && !w->inflight && !w->rate)
		return false;
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
	return true;
}

static void show_table(struct tstate *s, __u64 now, double dt, const __u64 *c,
		       __u64 inflight, __u64 live)
{
	size_t i, n;

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
	for (i = 0, n = 0; i < s->nrows && (int)n < s->rows; i++)
		n += show_row(s, s->rowv[i], now);
	if (!n)
		fprintf(s->out, "(no registered buffers seen yet)\n");
	fflush(s->out);
}

void trace_refresh(struct tstate *s, __u64 now, bool show)
{
	double dt = secs_since(s, now) - s->last_refresh;
	__u64 c[BSTEER_TS__MAX], inflight, live = 0;
	size_t i;

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
	if (show && !s->json)
		show_table(s, now, dt, c, inflight, live);
	s->last_events = c[BSTEER_TS_EVENTS];
	s->last_refresh = secs_since(s, now);
}
