/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Helpers for C selftests that drive the engine directly. */
#ifndef BSTEER_ENGINE_UTIL_H
#define BSTEER_ENGINE_UTIL_H

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <string.h>
#include "libbsteer.h"
#include "test.h"

/* The engine of the test, and the owner id its requests are started with. */
static struct bsteer_engine *test_e;
static int test_owner;

struct done_log {
	int n;
	int err[64];
	__u32 req[64];
};

static inline void done_log_cb(void *arg, __u32 r, int err)
{
	struct done_log *d = arg;

	if (d->n < 64) {
		d->err[d->n] = err;
		d->req[d->n] = r;
	}
	d->n++;
}

/*
 * A complete callback that keeps the finished request and its slot, as
 * the NBD frontend does to send a reply from it (bsteer_req_put() later).
 */
struct kept {
	int n, err;
};

static inline void keep_cb(void *arg, __u32 r, int err)
{
	struct kept *k = arg;

	k->n++;
	k->err = err;
	bsteer_req_keep(test_e, r);
}

/* Engine @e of ring 0 on @in, its requests' ends going to @cb with @arg. */
static inline struct bsteer_engine *test_engine_new(struct bsteer_instance *in,
						    const struct bsteer_owner_ops *cb,
						    void *arg)
{
	int err;

	test_e = bsteer_engine_new(in, 0, NULL, &err);
	if (!test_e)
		return NULL;
	test_owner = bsteer_engine_owner(test_e, cb, arg);
	return test_e;
}

/* Run the engine until nothing is in flight, for at most @secs seconds. */
static inline int run_idle(struct bsteer_engine *e, double secs)
{
	__u64 end = bsteer_now_ns() + (__u64)(secs * 1e9);
	int err;

	while (bsteer_engine_busy(e)) {
		if (bsteer_now_ns() > end)
			return -ETIMEDOUT;
		err = bsteer_engine_run(e, 1);
		if (err && err != -EINTR)
			return err;
	}
	return 0;
}

/* build/selftests/progs/NAME.bpf.o, next to the running test binary. */
static inline void test_prog_path(char *out, size_t len, const char *name)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	exe[n > 0 ? n : 0] = 0;
	snprintf(out, len, "%s/progs/%s.bpf.o", dirname(exe), name);
}

/*
 * Open the instance @o describes, under a name made of @tag and our pid,
 * with @policy (a built-in policy, or a test program's name: NAME.bpf.o
 * in build/selftests/progs), and start ring 0's engine @e on it. 0 once
 * both are up; otherwise the failure is asserted and -1 returned, and an
 * instance that did open is in *@in for the caller to close.
 */
static inline int test_engine_open(struct bsteer_instance_opts *o, const char *tag,
				   const char *policy, struct bsteer_instance **in,
				   struct bsteer_engine **e,
				   const struct bsteer_owner_ops *cb, void *arg)
{
	static char name[64], prog[PATH_MAX];
	int err;

	if (bsteer_policy_find(policy))
		snprintf(prog, sizeof(prog), "%s", policy);
	else
		test_prog_path(prog, sizeof(prog), policy);
	test_instance_name(name, sizeof(name), tag);
	o->name = name;
	o->policy = prog;
	*in = bsteer_instance_open(o, &err);
	if (!ASSERT_TRUE(*in != NULL, "instance open")) {
		fprintf(stderr, "%s\n", bsteer_errbuf());
		return -1;
	}
	*e = test_engine_new(*in, cb, arg);
	if (!ASSERT_TRUE(*e != NULL, "engine init"))
		return -1;
	return 0;
}

/*
 * Request *@r: a READ of @len bytes at 0 into a leased *@slot, brought to
 * the policy by an arrival NOP, then the engine run until idle.
 */
static inline void test_read_request(struct bsteer_engine *e, __u32 len,
				     __u32 *r, __u32 *slot)
{
	ASSERT_EQ(bsteer_req_alloc(e, test_owner, BSTEER_REQ_READ, 0, len, r), 0,
		  "alloc");
	ASSERT_EQ(bsteer_slot_lease(e, *r, slot), 0, "lease");
	ASSERT_EQ(bsteer_frontend_op(e, *r, BSTEER_OP_NOP, 0, BSTEER_NO_SLOT, 0, 0),
		  0, "arrival");
	ASSERT_EQ(run_idle(e, 5), 0, "run to idle");
}

/* Can this process load BPF at all? If not, the test skips. */
static inline bool bpf_usable(void)
{
	return geteuid() == 0 && !access("/sys/kernel/btf/vmlinux", R_OK);
}

#endif
