// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer list: every instance pinned under /sys/fs/bpf/bsteer, alive or
 * left behind by a process that died; bsteer clean: remove the latter.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "cli/cli.h"

#define MAX_LISTED	256

static const char list_usage[] =
"USAGE: bsteer list [--json]\n"
"\n"
"List every instance pinned under " BSTEER_PIN_ROOT ": its name, the pid\n"
"that owns it, what it runs (serve, copy), its policy and exports, and\n"
"whether its owner is alive ('live') or gone ('stale': pins left behind by\n"
"a process that was killed; 'bsteer clean' removes them, and a new\n"
"instance of the same name replaces them).\n"
"\n"
"OPTIONS:\n"
"  -j, --json            one JSON object: {\"instances\": [...]}\n"
"  -h, --help            this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer list\n"
"  bsteer list --json | jq -r '.instances[] | select(.live | not) | .name'\n";

static const char clean_usage[] =
"USAGE: bsteer clean [INSTANCE...] [--dry-run] [--json]\n"
"\n"
"Remove the pins of instances whose owner is gone. With no INSTANCE, every\n"
"stale instance; a named instance that is alive is refused and left alone\n"
"(exit 1). The pins of a live instance are never touched. An XDP program\n"
"a killed server left attached (pinned under it as access_xdp_IFINDEX and\n"
"still the one on that interface) is detached; any other is left alone.\n"
"With no INSTANCE, also the staging pins (+PID+NAME) of a start whose\n"
"process died before it named its instance.\n"
"\n"
"OPTIONS:\n"
"  -n, --dry-run         say what would be removed, remove nothing\n"
"  -j, --json            one JSON object: {\"removed\": [...], \"refused\": [...],\n"
"                        \"unfinished\": [...]}\n"
"  -h, --help            this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer clean\n"
"  bsteer clean bars7 --dry-run\n";

/* Its active policy (the policy map's), else the one it started with. */
static void policy_of(const struct bsteer_instance_status *st, char *out, size_t len)
{
	struct bsteer_pins pins;

	snprintf(out, len, "%s", st->has_info ? st->info.policy : "?");
	if (bsteer_pins_open(&pins, st->name))
		return;
	bsteer_active_policy(pins.map_fd[BSTEER_MAP_POLICY], out, len);
	bsteer_pins_close(&pins);
}

/* Its exports, "a,b", from a server's "exports" pin ("" for a copy). */
static void exports_of(const struct bsteer_instance_status *st, char *out, size_t len)
{
	struct bsteer_export_info x;
	char path[PATH_MAX];
	size_t n = 0;
	__u32 k;
	int fd;

	out[0] = 0;
	snprintf(path, sizeof(path), "%s/%s/exports", BSTEER_PIN_ROOT, st->name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return;
	for (k = 0; k < BSTEER_MAX_EXPORTS && n < len; k++) {
		if (bpf_map_lookup_elem(fd, &k, &x) || !(x.flags & BSTEER_EXF_USED))
			break;
		n += snprintf(out + n, len - n, "%s%s", n ? "," : "", x.name);
	}
	close(fd);
}

static int list_json(const struct bsteer_instance_status *st, int n)
{
	char policy[64], exports[512];
	struct bsteer_json j;
	int i;

	json_begin(&j, stdout);
	json_arr(&j, "instances");
	for (i = 0; i < n; i++) {
		policy_of(&st[i], policy, sizeof(policy));
		exports_of(&st[i], exports, sizeof(exports));
		json_obj(&j, NULL);
		json_str(&j, "name", st[i].name);
		json_u64(&j, "pid", st[i].has_info ? st[i].info.pid : 0);
		json_str(&j, "kind", st[i].has_info ? st[i].info.kind : "");
		json_str(&j, "policy", policy);
		json_str(&j, "exports", exports);
		json_bool(&j, "live", st[i].live_pid);
		json_end_obj(&j);
	}
	json_end_arr(&j);
	json_finish(&j);
	return 0;
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct bsteer_instance_status st[MAX_LISTED];
	char policy[64], exports[512];
	bool json = false;
	int opt, n, i;

	while ((opt = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (opt) {
		case 'j': json = true; break;
		case 'h': fputs(list_usage, stdout); return 0;
		default:
			return cli_bad_option("list", argv);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "bsteer list: unexpected argument '%s'; try 'bsteer list --help'\n",
			argv[optind]);
		return 2;
	}
	n = bsteer_instances(st, MAX_LISTED);
	if (n < 0) {
		fprintf(stderr, "bsteer list: cannot read %s: %s\n", BSTEER_PIN_ROOT,
			strerror(-n));
		return 1;
	}
	if (json)
		return list_json(st, n);
	printf("%-24s %-8s %-6s %-12s %-6s %s\n", "NAME", "PID", "KIND", "POLICY",
	       "STATE", "EXPORTS");
	for (i = 0; i < n; i++) {
		policy_of(&st[i], policy, sizeof(policy));
		exports_of(&st[i], exports, sizeof(exports));
		printf("%-24s %-8u %-6s %-12s %-6s %s\n", st[i].name,
		       st[i].has_info ? st[i].info.pid : 0,
		       st[i].has_info ? st[i].info.kind : "?", policy,
		       st[i].live_pid ? "live" : "stale", exports[0] ? exports : "-");
	}
	return 0;
}

static void staging_text(const char *dir, int pid, void *arg)
{
	printf("%s %s (a start that did not finish: pid %d is gone)\n",
	       *(bool *)arg ? "would remove" : "removed", dir, pid);
}

static void staging_json(const char *dir, int pid, void *arg)
{
	(void)pid;
	json_str(arg, NULL, dir);
}

int cmd_clean(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct bsteer_instance_status st[MAX_LISTED];
	bool json = false, dry = false, named;
	struct bsteer_json j;
	int opt, n, i, err, rc = 0;

	while ((opt = getopt_long(argc, argv, "njh", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': dry = true; break;
		case 'j': json = true; break;
		case 'h': fputs(clean_usage, stdout); return 0;
		default:
			return cli_bad_option("clean", argv);
		}
	}
	named = optind < argc;
	if (named) {
		for (n = 0; optind < argc && n < MAX_LISTED; n++, optind++) {
			err = bsteer_instance_status(argv[optind], &st[n]);
			if (err) {
				fprintf(stderr, "bsteer clean: no instance '%s'%s\n", argv[optind],
					err == -EINVAL ? " (not a valid name)" : "");
				return err == -EINVAL ? 2 : 1;
			}
		}
	} else {
		n = bsteer_instances(st, MAX_LISTED);
		if (n < 0) {
			fprintf(stderr, "bsteer clean: cannot read %s: %s\n",
				BSTEER_PIN_ROOT, strerror(-n));
			return 1;
		}
	}
	if (json) {
		json_begin(&j, stdout);
		json_arr(&j, "removed");
	}
	for (i = 0; i < n; i++) {
		if (st[i].live_pid)
			continue;
		err = dry ? 0 : bsteer_instance_clean(st[i].name);
		if (err == -EBUSY) {		/* its owner came back meanwhile */
			st[i].live_pid = -1;
			continue;
		}
		if (err) {
			fprintf(stderr, "bsteer clean: %s: %s\n", st[i].name, strerror(-err));
			rc = 1;
			continue;
		}
		if (json)
			json_str(&j, NULL, st[i].name);
		else
			printf("%s %s (its owner, pid %u, is gone)\n",
			       dry ? "would remove" : "removed", st[i].name,
			       st[i].has_info ? st[i].info.pid : 0);
	}
	if (json) {
		json_end_arr(&j);
		json_arr(&j, "refused");
	}
	/* A live instance asked for by name is refused; with no name, not news. */
	for (i = 0; named && i < n; i++) {
		if (!st[i].live_pid)
			continue;
		rc = 1;
		if (json)
			json_str(&j, NULL, st[i].name);
		else
			fprintf(stderr, "bsteer clean: %s is alive%s: left alone\n",
				st[i].name, st[i].live_pid > 0 ? "" : " again");
	}
	/* With no name: the pins of starts that died before they were owned. */
	if (json) {
		json_end_arr(&j);
		json_arr(&j, "unfinished");
	}
	if (!named)
		bsteer_staging_clean(dry, json ? staging_json : staging_text,
				     json ? (void *)&j : (void *)&dry);
	if (json) {
		json_end_arr(&j);
		json_finish(&j);
	}
	return rc;
}
