// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* bsteer policy: list the built-in policies, show and swap the active one. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cmd.h"
#include "libbsteer.h"

static const char policy_usage[] =
"USAGE: bsteer policy list [--json]\n"
"       bsteer policy show INSTANCE [--json]\n"
"       bsteer policy swap INSTANCE NAME|FILE.bpf.o [--dry-run] [-v]\n"
"\n"
"A policy is a BPF object with a tp_btf/io_uring_complete program and its\n"
"SEC(\"syscall\") twin (see bpf/policy.bpf.h). Swapping loads it against the\n"
"instance's pinned maps and replaces entry 0 of the pinned prog arrays\n"
"'policy' and 'policy_sys'. Requests in flight continue under the new\n"
"policy from their next completion on.\n"
"\n"
"OPTIONS:\n"
"  -n, --dry-run   print the equivalent bpftool commands instead\n"
"  -j, --json      machine-readable output (list, show)\n"
"  -v, --verbose   libbpf and verifier messages\n"
"  -h, --help      this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer policy list\n"
"  bsteer policy show live\n"
"  bsteer policy swap live mirror\n"
"  bsteer policy swap live ./my_policy.bpf.o\n"
"  bsteer policy swap live mirror --dry-run | sh\n";

static int policy_list(bool json)
{
	const struct bsteer_policy_desc *d;

	if (json) {
		struct bsteer_json j;

		json_begin(&j, stdout);
		json_arr(&j, "policies");
		for (d = bsteer_policies; d->name; d++) {
			json_obj(&j, NULL);
			json_str(&j, "name", d->name);
			json_str(&j, "summary", d->summary);
			json_end_obj(&j);
		}
		json_end_arr(&j);
		json_finish(&j);
		return 0;
	}
	printf("%-12s %s\n", "NAME", "SUMMARY");
	for (d = bsteer_policies; d->name; d++)
		printf("%-12s %s\n", d->name, d->summary);
	return 0;
}

static int policy_show(const char *name, bool json)
{
	struct bsteer_pins p;
	struct bsteer_info inf;
	char tp[32], sys[32];
	__u32 zero = 0, tp_id, sys_id;
	__u64 ps[BSTEER_POLICY_IDS] = {};
	__u32 i;

	if (bsteer_pins_open(&p, name)) {
		fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
		return 1;
	}
	memset(&inf, 0, sizeof(inf));
	bpf_map_lookup_elem(p.map_fd[BSTEER_MAP_INFO], &zero, &inf);
	bsteer_prog_in_array(p.map_fd[BSTEER_MAP_POLICY], tp, sizeof(tp), &tp_id);
	bsteer_prog_in_array(p.map_fd[BSTEER_MAP_POLICY_SYS], sys, sizeof(sys), &sys_id);
	for (i = 0; i < BSTEER_POLICY_IDS; i++)
		bpf_map_lookup_elem(p.map_fd[BSTEER_MAP_POLICY_STATS], &i, &ps[i]);
	if (json) {
		struct bsteer_json j;

		json_begin(&j, stdout);
		json_str(&j, "instance", name);
		json_str(&j, "installed_by_bsteer", inf.policy);
		json_str(&j, "hook_prog", tp);
		json_u64(&j, "hook_prog_id", tp_id);
		json_str(&j, "fallback_prog", sys);
		json_u64(&j, "fallback_prog_id", sys_id);
		json_arr(&j, "decisions_by_policy_id");
		for (i = 0; i < BSTEER_POLICY_IDS; i++)
			json_u64(&j, NULL, ps[i]);
		json_end_arr(&j);
		json_finish(&j);
	} else {
		printf("instance %s: hook program %s (id %u), fallback %s (id %u)\n",
		       name, tp, tp_id, sys, sys_id);
		printf("%-10s %s\n", "POLICY_ID", "DECISIONS");
		for (i = 0; i < BSTEER_POLICY_IDS; i++)
			if (ps[i])
				printf("%-10u %llu\n", i, (unsigned long long)ps[i]);
	}
	bsteer_pins_close(&p);
	return 0;
}

/* Where the built-in policy objects sit: next to the binary, in bpf/. */
static int builtin_object(const char *name, char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -errno;
	exe[n] = 0;
	snprintf(out, len, "%s/bpf/%s.bpf.o", dirname(exe), name);
	return access(out, R_OK) ? -errno : 0;
}

static int policy_dry_run(const char *inst, const char *spec)
{
	char obj_path[PATH_MAX], name[64], dir[PATH_MAX];
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *m;
	const char *tp = NULL, *sys = NULL;

	if (bsteer_policy_find(spec)) {
		if (builtin_object(spec, obj_path, sizeof(obj_path))) {
			fprintf(stderr, "bsteer policy: cannot find %s (built-in objects live next to the binary)\n",
				obj_path);
			return 1;
		}
	} else {
		snprintf(obj_path, sizeof(obj_path), "%s", spec);
	}
	obj = bpf_object__open_file(obj_path, NULL);
	if (!obj) {
		fprintf(stderr, "bsteer policy: cannot open %s: %s\n", obj_path,
			strerror(errno));
		return 1;
	}
	bsteer_policy_name(spec, name, sizeof(name));
	snprintf(dir, sizeof(dir), "%s/%s", BSTEER_PIN_ROOT, inst);
	bpf_object__for_each_program(prog, obj) {
		if (bpf_program__type(prog) == BPF_PROG_TYPE_TRACING && !tp)
			tp = bpf_program__name(prog);
		if (bpf_program__type(prog) == BPF_PROG_TYPE_SYSCALL && !sys)
			sys = bpf_program__name(prog);
	}
	if (!tp || !sys) {
		fprintf(stderr, "bsteer policy: %s lacks the hook program or its syscall twin\n",
			obj_path);
		bpf_object__close(obj);
		return 1;
	}
	printf("D=%s\n", dir);
	printf("rm -rf $D/progs/%s\n", name);
	printf("bpftool prog loadall %s $D/progs/%s", obj_path, name);
	bpf_object__for_each_map(m, obj)
		printf(" \\\n\tmap name %s pinned $D/%s", bpf_map__name(m),
		       bpf_map__name(m));
	printf("\n");
	printf("bpftool map update pinned $D/policy_sys key 0 0 0 0 value pinned $D/progs/%s/%s\n",
	       name, sys);
	printf("bpftool map update pinned $D/policy key 0 0 0 0 value pinned $D/progs/%s/%s\n",
	       name, tp);
	bpf_object__close(obj);
	return 0;
}

static int policy_swap(const char *inst, const char *spec, bool verbose)
{
	struct bsteer_pins p;
	int err;

	if (bsteer_pins_open(&p, inst)) {
		fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
		return 1;
	}
	err = bsteer_policy_install(p.dir, p.map_fd, spec, verbose);
	bsteer_pins_close(&p);
	if (err) {
		fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
		return 1;
	}
	printf("instance %s now runs policy %s\n", inst, spec);
	return 0;
}

int cmd_policy(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool dry = false, json = false, verbose = false;
	const char *sub;
	int opt;

	while ((opt = getopt_long(argc, argv, "njvh", opts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			dry = true;
			break;
		case 'j':
			json = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			fputs(policy_usage, stdout);
			return 0;
		default:
			fputs(policy_usage, stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		fputs(policy_usage, stderr);
		return 2;
	}
	sub = argv[optind++];
	if (!strcmp(sub, "list") && optind == argc)
		return policy_list(json);
	if (!strcmp(sub, "show") && optind == argc - 1)
		return policy_show(argv[optind], json);
	if (!strcmp(sub, "swap") && optind == argc - 2) {
		if (dry)
			return policy_dry_run(argv[optind], argv[optind + 1]);
		return policy_swap(argv[optind], argv[optind + 1], verbose);
	}
	fputs(policy_usage, stderr);
	return 2;
}
