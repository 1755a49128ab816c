// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Loader for the buffer-lifetime tracer: open the skeleton, set the filter
 * knobs, point the cross-check maps at a bsteer instance's pins, turn off
 * what this kernel lacks, load, attach, and poll the ring buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "libbsteer.h"
#include "trace/trace.h"
#include "trace.skel.h"

struct bsteer_tracer {
	struct trace_bpf *skel;
	struct ring_buffer *rb;
	bsteer_tev_fn fn;
	void *arg;
	int cb_err;
	int ncpus;
	char instance[BSTEER_NAME_MAX + 1];
};

static int on_sample(void *ctx, void *data, size_t len)
{
	struct bsteer_tracer *t = ctx;
	int err;

	if (len < sizeof(struct bsteer_tev))
		return 0;
	err = t->fn(t->arg, data);
	if (err) {
		t->cb_err = err;
		return err;
	}
	return 0;
}

/*
 * Every program here is a tp_btf on a tracepoint; a kernel without one of
 * them loses only that program's part. Returns how many were turned off.
 */
static int disable_missing(struct trace_bpf *skel, struct btf *vmlinux)
{
	struct bpf_program *p;
	char tname[128];
	int off = 0;

	bpf_object__for_each_program(p, skel->obj) {
		const char *sec = bpf_program__section_name(p);

		if (strncmp(sec, "tp_btf/", 7))
			continue;
		snprintf(tname, sizeof(tname), "btf_trace_%s", sec + 7);
		if (btf__find_by_name_kind(vmlinux, tname, BTF_KIND_TYPEDEF) > 0)
			continue;
		fprintf(stderr, "bsteer trace: this kernel has no tracepoint %s; %s is off\n",
			sec + 7, bpf_program__name(p));
		bpf_program__set_autoload(p, false);
		off++;
	}
	return off;
}

/* Reuse the instance's ring_ctx and slot_meta pins for the cross-check. */
static int reuse_instance(struct bsteer_tracer *t, const char *name)
{
	struct bsteer_pins pins;
	int err;

	err = bsteer_pins_open(&pins, name);
	if (err)
		return err;
	err = bpf_map__reuse_fd(t->skel->maps.bs_ring_ctx,
				pins.map_fd[BSTEER_MAP_RING_CTX]);
	if (!err)
		err = bpf_map__reuse_fd(t->skel->maps.bs_slot_meta,
					pins.map_fd[BSTEER_MAP_SLOT_META]);
	if (err)
		bsteer_set_err("cannot share the maps of instance %s: %s", name,
			       strerror(-err));
	bsteer_pins_close(&pins);
	return err;
}

/* The filter knobs, the ring buffer's size, the instance's maps. */
static int configure(struct bsteer_tracer *t, const struct bsteer_tracer_opts *o)
{
	int err;

	t->skel->rodata->filter_pid = o->npids > 0;
	t->skel->rodata->follow_forks = o->follow_forks;
	if (o->comm) {
		t->skel->rodata->filter_comm = true;
		strncpy((char *)t->skel->rodata->targ_comm, o->comm,
			sizeof(t->skel->rodata->targ_comm) - 1);
	}
	if (o->ringbuf_mb) {
		bpf_map__set_max_entries(t->skel->maps.events, o->ringbuf_mb << 20);
		t->skel->rodata->wakeup_bytes = (__u64)o->ringbuf_mb << 18;
	}
	if (o->instance) {
		err = reuse_instance(t, o->instance);
		if (err)
			return err;
		t->skel->rodata->xcheck = true;
		snprintf(t->instance, sizeof(t->instance), "%s", o->instance);
	}
	return 0;
}

/* Load, fill the pid filter, attach, and open the ring buffer. */
static int load_attach(struct bsteer_tracer *t, const struct bsteer_tracer_opts *o)
{
	__u8 one = 1;
	int err, i;

	err = trace_bpf__load(t->skel);
	if (err) {
		bsteer_set_err("cannot load the tracer: %s (%s)", strerror(-err),
			       bsteer_errbuf());
		return err;
	}
	for (i = 0; i < o->npids; i++)
		bpf_map_update_elem(bpf_map__fd(t->skel->maps.tpids), &o->pids[i],
				    &one, BPF_ANY);
	err = trace_bpf__attach(t->skel);
	if (err) {
		bsteer_set_err("cannot attach the tracer: %s", strerror(-err));
		return err;
	}
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_sample, t,
				 NULL);
	if (!t->rb) {
		err = -errno;
		bsteer_set_err("cannot open the event ring buffer: %s", strerror(-err));
		return err;
	}
	return 0;
}

struct bsteer_tracer *bsteer_tracer_open(const struct bsteer_tracer_opts *o,
					 int *errp)
{
	struct bsteer_tracer *t;
	struct btf *vmlinux = NULL;
	int err;

	t = calloc(1, sizeof(*t));
	if (!t) {
		*errp = -ENOMEM;
		return NULL;
	}
	t->fn = o->on_event;
	t->arg = o->arg;
	t->ncpus = libbpf_num_possible_cpus();
	bsteer_libbpf_setup(o->verbose);

	vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux) {
		err = -errno;
		bsteer_set_err("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): %s",
			       strerror(-err));
		goto fail;
	}
	t->skel = trace_bpf__open();
	if (!t->skel) {
		err = -errno;
		bsteer_set_err("cannot open the tracer's BPF object: %s", strerror(-err));
		goto fail;
	}
	err = configure(t, o);
	if (err)
		goto fail;
	disable_missing(t->skel, vmlinux);
	err = load_attach(t, o);
	if (err)
		goto fail;
	btf__free(vmlinux);
	return t;
fail:
	btf__free(vmlinux);
	bsteer_tracer_close(t);
	*errp = err;
	return NULL;
}

int bsteer_tracer_poll(struct bsteer_tracer *t, int timeout_ms)
{
	int n;

	/* Events come without wakeups (see ev_send): wait, then drain. */
	n = ring_buffer__poll(t->rb, timeout_ms);
	if (n >= 0 && !t->cb_err)
		n = ring_buffer__consume(t->rb);
	if (t->cb_err)
		return t->cb_err;
	if (n < 0 && n != -EINTR)
		return n;
	return 0;
}

void bsteer_tracer_counters(struct bsteer_tracer *t, __u64 out[BSTEER_TS__MAX])
{
	int fd = bpf_map__fd(t->skel->maps.tstats);
	__u64 *v = calloc(t->ncpus, sizeof(*v));
	__u32 k;
	int c;

	memset(out, 0, sizeof(__u64) * BSTEER_TS__MAX);
	if (!v)
		return;
	for (k = 0; k < BSTEER_TS__MAX; k++) {
		if (bpf_map_lookup_elem(fd, &k, v))
			continue;
		for (c = 0; c < t->ncpus; c++)
			out[k] += v[c];
	}
	free(v);
}

int bsteer_tracer_map_fd(struct bsteer_tracer *t, enum bsteer_tracer_map m)
{
	switch (m) {
	case BSTEER_TMAP_NODES:
		return bpf_map__fd(t->skel->maps.tnodes);
	case BSTEER_TMAP_USES:
		return bpf_map__fd(t->skel->maps.tuses);
	case BSTEER_TMAP_RINGS:
		return bpf_map__fd(t->skel->maps.trings);
	case BSTEER_TMAP_PIDS:
		return bpf_map__fd(t->skel->maps.tpids);
	case BSTEER_TMAP_SLOT_META:
		return t->instance[0] ? bpf_map__fd(t->skel->maps.bs_slot_meta) : -1;
	}
	return -1;
}

int bsteer_tracer_add_pid(struct bsteer_tracer *t, int pid)
{
	__u8 one = 1;

	if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.tpids), &pid, &one,
				BPF_NOEXIST) && errno != EEXIST)
		return -errno;
	return 0;
}

const char *bsteer_tracer_instance(struct bsteer_tracer *t)
{
	return t->instance[0] ? t->instance : NULL;
}

void bsteer_tracer_close(struct bsteer_tracer *t)
{
	if (!t)
		return;
	ring_buffer__free(t->rb);
	trace_bpf__destroy(t->skel);
	free(t);
}
