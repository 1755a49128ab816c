// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* bsteer policy: list the built-in policies, show and swap the active one. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cli/cli.h"

static const char policy_usage[] =
"USAGE: bsteer policy list [--json]\n"
"       bsteer policy show INSTANCE [--json]\n"
"       bsteer policy load INSTANCE NAME|FILE.bpf.o [-v]\n"
"       bsteer policy swap INSTANCE NAME|FILE.bpf.o [--dry-run] [--force] [-v]\n"
"       bsteer policy config INSTANCE [KEY=VALUE...] [--json]\n"
"\n"
"A policy is a BPF object with a tp_btf/io_uring_complete program and its\n"
"SEC(\"syscall\") twin (see docs/policies.md). 'load' loads it against the\n"
"instance's pinned maps and pins it under progs/NAME; 'swap' makes it the\n"
"active one by replacing entry 0 of the prog arrays 'policy' and\n"
"'policy_sys' (loading it first if needed). A request in flight moves to\n"
"the new policy at its next completion, so 'swap' refuses a policy whose\n"
"data layout differs from the one the targets hold (mirror and stripe,\n"
"say); --force overrides that. 'config' shows or changes the policy's\n"
"settings while it serves.\n"
"\n"
"OPTIONS:\n"
"  -n, --dry-run   print the equivalent bpftool commands instead\n"
"  -f, --force     swap even to a policy of another (or no) data layout\n"
"  -j, --json      machine-readable output (list, show, config)\n"
"  -v, --verbose   libbpf and verifier messages\n"
"  -h, --help      this text\n"
"\n"
"SETTINGS (config):\n"
"  read=primary|round-robin|least-inflight|default   mirror reads\n"
"  chunk=SIZE        stripe, cow (fixed once serving)\n"
"  map.N=START+LEN@LEG:OFFSET   redirect table entry N; map.N=- deletes it\n"
"  word.N=VALUE      raw configuration word N (your own policies)\n"
"\n"
"EXAMPLES:\n"
"  bsteer policy list\n"
"  bsteer policy show live\n"
"  bsteer policy swap live mirror_rr\n"
"  bsteer policy swap live ./my_policy.bpf.o\n"
"  bsteer policy swap live mirror_lif --dry-run | sh\n"
"  bsteer policy config live read=least-inflight\n"
"  bsteer policy config live map.1=64M+64M@1:0\n";

static int policy_list(bool json)
{
	const struct bsteer_policy_desc *d;

	if (json) {
		struct bsteer_json j;

		json_begin(&j, stdout);
		json_arr(&j, "policies");
		for (d = bsteer_policies; d->name; d++) {
			char layout[32];

			bsteer_policy_layout(d->name, layout, sizeof(layout));
			json_obj(&j, NULL);
			json_str(&j, "name", d->name);
			json_u64(&j, "id", d->id);
			json_str(&j, "layout", layout);
			json_str(&j, "summary", d->summary);
			json_end_obj(&j);
		}
		json_end_arr(&j);
		json_finish(&j);
		return 0;
	}
	printf("%-12s %-3s %-9s %s\n", "NAME", "ID", "LAYOUT", "SUMMARY");
	for (d = bsteer_policies; d->name; d++) {
		char layout[32];

		bsteer_policy_layout(d->name, layout, sizeof(layout));
		printf("%-12s %-3u %-9s %s\n", d->name, d->id, layout, d->summary);
	}
	return 0;
}

/* Built-in policies by id; ids 8 and up are other people's. */
static const char *policy_id_name(__u32 id)
{
	static char buf[16];
	const struct bsteer_policy_desc *d;

	for (d = bsteer_policies; d->name; d++)
		if (d->id == id)
			return d->name;
	snprintf(buf, sizeof(buf), "id%u", id);
	return buf;
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
		json_str(&j, "layout", inf.layout);
		json_str(&j, "hook_prog", tp);
		json_u64(&j, "hook_prog_id", tp_id);
		json_str(&j, "fallback_prog", sys);
		json_u64(&j, "fallback_prog_id", sys_id);
		json_arr(&j, "decisions_by_policy_id");
		for (i = 0; i < BSTEER_POLICY_IDS; i++)
			json_u64(&j, NULL, ps[i]);
		json_end_arr(&j);
		json_obj(&j, "decisions_by_policy");
		for (i = 0; i < BSTEER_POLICY_IDS; i++)
			if (ps[i])
				json_u64(&j, policy_id_name(i), ps[i]);
		json_end_obj(&j);
		json_finish(&j);
	} else {
		printf("instance %s: hook program %s (id %u), fallback %s (id %u)\n",
		       name, tp, tp_id, sys, sys_id);
		printf("data layout: %s\n", *inf.layout ? inf.layout : "(not recorded)");
		printf("%-10s %-12s %s\n", "POLICY_ID", "POLICY", "DECISIONS");
		for (i = 0; i < BSTEER_POLICY_IDS; i++)
			if (ps[i])
				printf("%-10u %-12s %llu\n", i, policy_id_name(i),
				       (unsigned long long)ps[i]);
	}
	bsteer_pins_close(&p);
	return 0;
}

static int policy_dry_run(const char *inst, const char *spec)
{
	char obj_path[PATH_MAX], name[64], dir[PATH_MAX], cwd[PATH_MAX];
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *m;
	const char *tp = NULL, *sys = NULL;

	if (bsteer_policy_find(spec)) {
		if (bsteer_bpf_object_path(spec, obj_path, sizeof(obj_path))) {
			fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
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
	/* Under the current directory, say it from there (build/bpf/...). */
	if (getcwd(cwd, sizeof(cwd)) && strcmp(cwd, "/") &&
	    !strncmp(obj_path, cwd, strlen(cwd)) && obj_path[strlen(cwd)] == '/')
		memmove(obj_path, obj_path + strlen(cwd) + 1, strlen(obj_path + strlen(cwd) + 1) + 1);
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
	printf("# bpftool does not check the data layout; 'bsteer policy swap' does\n");
	/* A map of the policy's own that is not pinned yet: create it first. */
	bpf_object__for_each_map(m, obj) {
		const char *mn = bpf_map__name(m);
		__u32 i, core = 0;

		for (i = 0; i < BSTEER_MAP__MAX; i++)
			core |= !strcmp(mn, bsteer_map_names[i]);
		if (core || bpf_map__is_internal(m))
			continue;
		printf("[ -e $D/%s ] || bpftool map create $D/%s type %s key %u value %u entries %u name %s",
		       mn, mn, libbpf_bpf_map_type_str(bpf_map__type(m)),
		       bpf_map__key_size(m), bpf_map__value_size(m),
		       bpf_map__max_entries(m), mn);
		if (bpf_map__map_flags(m))
			printf(" flags 0x%x", bpf_map__map_flags(m));
		printf("\n");
	}
	printf("rm -rf $D/progs/%s\n", name);
	printf("bpftool prog loadall %s $D/progs/%s", obj_path, name);
	bpf_object__for_each_map(m, obj) {
		if (bpf_map__is_internal(m))
			continue;
		printf(" \\\n\tmap name %s pinned $D/%s", bpf_map__name(m),
		       bpf_map__name(m));
	}
	printf("\n");
	printf("bpftool map update pinned $D/policy_sys key 0 0 0 0 value pinned $D/progs/%s/%s\n",
	       name, sys);
	printf("bpftool map update pinned $D/policy key 0 0 0 0 value pinned $D/progs/%s/%s\n",
	       name, tp);
	bpf_object__close(obj);
	return 0;
}

/*
 * May the instance's targets be steered by @spec? Only if the policy keeps
 * the layout they hold: requests in flight move to it mid-way, and every
 * byte already written must be found where the new policy looks for it.
 */
static int swap_allowed(struct bsteer_pins *p, const char *spec, bool force)
{
	struct bsteer_info inf = {};
	char layout[32];
	__u32 zero = 0;
	int err;

	bpf_map_lookup_elem(p->map_fd[BSTEER_MAP_INFO], &zero, &inf);
	err = bsteer_policy_layout(spec, layout, sizeof(layout));
	if (err) {
		fprintf(stderr, "bsteer policy: cannot read %s: %s\n", spec,
			strerror(-err));
		return err;
	}
	bsteer_layout_norm(layout, sizeof(layout), inf.legs);
	if (force || !*inf.layout || !strcmp(layout, inf.layout))
		return 0;
	if (!*layout)
		fprintf(stderr, "bsteer policy: refusing to swap: %s declares no data layout (BSTEER_LAYOUT) and the targets hold '%s'; --force if you know it matches\n",
			spec, inf.layout);
	else
		fprintf(stderr, "bsteer policy: refusing to swap: the targets hold data in the '%s' layout (policy %s) and %s keeps '%s'; it would misplace or misread data (--force overrides)\n",
			inf.layout, inf.policy, spec, layout);
	return -EPERM;
}

static int policy_load(const char *inst, const char *spec, bool verbose)
{
	struct bsteer_pins p;
	char name[64];
	int err;

	if (bsteer_pins_open(&p, inst)) {
		fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
		return 1;
	}
	err = bsteer_policy_load(p.dir, p.map_fd, spec, verbose);
	bsteer_pins_close(&p);
	if (err) {
		fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
		return 1;
	}
	bsteer_policy_name(spec, name, sizeof(name));
	printf("instance %s: policy %s loaded (not active; 'bsteer policy swap %s %s')\n",
	       inst, name, inst, name);
	return 0;
}

static int policy_swap(const char *inst, const char *spec, bool force,
		       bool verbose)
{
	struct bsteer_pins p;
	char name[64], pdir[PATH_MAX + 80];
	int err;

	if (bsteer_pins_open(&p, inst)) {
		fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
		return 1;
	}
	err = swap_allowed(&p, spec, force);
	if (err) {
		bsteer_pins_close(&p);
		return 1;
	}
	bsteer_policy_name(spec, name, sizeof(name));
	snprintf(pdir, sizeof(pdir), "%s/progs/%s", p.dir, name);
	/* A built-in already loaded is only switched to; a file is reloaded. */
	if (!bsteer_policy_find(spec) || access(pdir, F_OK))
		err = bsteer_policy_load(p.dir, p.map_fd, spec, verbose);
	if (!err)
		err = bsteer_policy_activate(p.dir, p.map_fd, name);
	bsteer_pins_close(&p);
	if (err) {
		fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
		return 1;
	}
	printf("instance %s now runs policy %s\n", inst, name);
	return 0;
}

static void config_print(const struct bsteer_policy_desc *d,
			 const struct bsteer_cfg *cfg, struct bsteer_pins *pins,
			 const char *inst, const char *policy, bool json)
{
	const struct bsteer_cfg_key *k;
	struct bsteer_json j;
	char v[64];
	__u32 i;

	if (json) {
		json_begin(&j, stdout);
		json_str(&j, "instance", inst);
		json_str(&j, "policy", policy);
		json_obj(&j, "settings");
		for (k = d ? d->keys : NULL; k && k->name; k++) {
			bsteer_cfg_format(k, cfg->word[k->word] ?: k->def, v, sizeof(v));
			json_str(&j, k->name, v);
		}
		json_end_obj(&j);
		json_arr(&j, "words");
		for (i = 0; i < BSTEER_CFG_WORDS; i++)
			json_u64(&j, NULL, cfg->word[i]);
		json_end_arr(&j);
		if (d && d->config_show)
			d->config_show(pins, &j);
		json_finish(&j);
		return;
	}
	printf("instance %s, policy %s\n", inst, policy);
	for (k = d ? d->keys : NULL; k && k->name; k++) {
		bsteer_cfg_format(k, cfg->word[k->word] ?: k->def, v, sizeof(v));
		printf("  %-8s %-16s %s\n", k->name, v, k->help);
	}
	if (d && d->config_show)
		d->config_show(pins, NULL);
}

/* One KEY=VALUE: the policy's own key (its hook), or a cfg word. */
static int config_set(const struct bsteer_policy_desc *d, struct bsteer_pins *p,
		      struct bsteer_cfg *cfg, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char key[64];
	int err;

	if (d && d->config && eq && eq - kv < (int)sizeof(key)) {
		snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
		err = d->config(p, key, eq + 1);
		if (err != -ENOENT)
			return err;
	}
	return bsteer_policy_setting(d, cfg, kv, true);
}

static int policy_config(const char *inst, char **kv, int nkv, bool json)
{
	const struct bsteer_policy_desc *d;
	struct bsteer_info inf = {};
	struct bsteer_pins p;
	struct bsteer_cfg *cfg;
	size_t len = 0;
	__u32 zero = 0;
	int i, rc = 0;

	if (bsteer_pins_open(&p, inst)) {
		fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
		return 1;
	}
	bpf_map_lookup_elem(p.map_fd[BSTEER_MAP_INFO], &zero, &inf);
	d = bsteer_policy_find(inf.policy);
	cfg = bsteer_map_mmap(p.map_fd[BSTEER_MAP_CFG], &len, true);
	if (!cfg) {
		fprintf(stderr, "bsteer policy: cannot map cfg: %s\n", strerror(errno));
		rc = 1;
		goto out;
	}
	for (i = 0; i < nkv; i++) {
		if (config_set(d, &p, cfg, kv[i])) {
			fprintf(stderr, "bsteer policy: %s\n", bsteer_errbuf());
			rc = 1;
			goto out;
		}
	}
	if (!nkv || json)
		config_print(d, cfg, &p, inst, inf.policy, json);
out:
	if (cfg)
		munmap(cfg, len);
	bsteer_pins_close(&p);
	return rc;
}

int cmd_policy(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool dry = false, json = false, verbose = false, force = false;
	const char *sub;
	int opt;

	while ((opt = getopt_long(argc, argv, "nfjvh", opts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			dry = true;
			break;
		case 'f':
			force = true;
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
			return cli_bad_option("policy", argv);
		}
	}
	if (optind >= argc)
		return cli_usage("policy", "want list, show, load, swap or config");
	sub = argv[optind++];
	if (!strcmp(sub, "list") && optind == argc)
		return policy_list(json);
	if (bsteer_check_privileges("bsteer policy"))
		return 1;
	if (!strcmp(sub, "show") && optind == argc - 1)
		return policy_show(argv[optind], json);
	if (!strcmp(sub, "load") && optind == argc - 2)
		return policy_load(argv[optind], argv[optind + 1], verbose);
	if (!strcmp(sub, "swap") && optind == argc - 2) {
		if (dry)
			return policy_dry_run(argv[optind], argv[optind + 1]);
		return policy_swap(argv[optind], argv[optind + 1], force, verbose);
	}
	if (!strcmp(sub, "config") && optind < argc)
		return policy_config(argv[optind], argv + optind + 1,
				     argc - optind - 1, json);
	return cli_usage("policy", "unknown or incomplete command '%s'", sub);
}
