// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer stat's admission section: the rules in an instance's access_*
 * tries (whoever put them there: serve's options or bpftool) with each
 * rule's packet counts, summed over CPUs. Read-only.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cli/cli.h"
#include "bsteer_access.h"

struct rule_row {
	__u32 id;
	bool deny;
	char cidr[INET6_ADDRSTRLEN + 4];
	__u64 hits, drops;
};

static const struct {
	const char *map;
	int family;
	bool deny;
} tries[] = {
	{ "access_allow4", AF_INET, false },
	{ "access_deny4", AF_INET, true },
	{ "access_allow6", AF_INET6, false },
	{ "access_deny6", AF_INET6, true },
};

static int by_id(const void *a, const void *b)
{
	const struct rule_row *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static void counts(int fd, struct rule_row *r)
{
	int ncpu = libbpf_num_possible_cpus();
	struct bsteer_access_count *c;

	if (fd < 0 || ncpu <= 0 || !(c = calloc(ncpu, sizeof(*c))))
		return;
	if (!bpf_map_lookup_elem(fd, &r->id, c))
		for (int i = 0; i < ncpu; i++) {
			r->hits += c[i].hits;
			r->drops += c[i].drops;
		}
	free(c);
}

/* The rules of the instance pinned at @dir, sorted by id; -1 if it has none. */
static int rules_read(const char *dir, struct rule_row *rows, int max)
{
	char path[PATH_MAX + 32];
	int n = 0, cfd, t;

	snprintf(path, sizeof(path), "%s/access_counts", dir);
	cfd = bpf_obj_get(path);
	if (cfd < 0)
		return -1;
	for (t = 0; t < (int)(sizeof(tries) / sizeof(tries[0])); t++) {
		struct bsteer_access_key6 key, next;
		bool first = true;
		int fd;

		snprintf(path, sizeof(path), "%s/%s", dir, tries[t].map);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		while (n < max && !bpf_map_get_next_key(fd, first ? NULL : &key, &next)) {
			struct rule_row *r = &rows[n];
			char addr[INET6_ADDRSTRLEN] = "?";

			first = false;
			key = next;
			if (bpf_map_lookup_elem(fd, &key, &r->id))
				continue;
			inet_ntop(tries[t].family, key.addr, addr, sizeof(addr));
			snprintf(r->cidr, sizeof(r->cidr), "%s/%u", addr, key.prefixlen);
			r->deny = tries[t].deny;
			r->hits = r->drops = 0;
			counts(cfd, r);
			n++;
		}
		close(fd);
	}
	close(cfd);
	qsort(rows, n, sizeof(*rows), by_id);
	return n;
}

void access_report(const char *dir, struct bsteer_json *j)
{
	struct rule_row rows[4 * BSTEER_ACCESS_RULES];
	int n = rules_read(dir, rows, 4 * BSTEER_ACCESS_RULES), i;

	if (n < 0)
		return;
	if (j) {
		json_arr(j, "access_rules");
		for (i = 0; i < n; i++) {
			json_obj(j, NULL);
			json_u64(j, "id", rows[i].id);
			json_str(j, "action", rows[i].deny ? "deny" : "allow");
			json_str(j, "cidr", rows[i].cidr);
			json_u64(j, "hits", rows[i].hits);
			json_u64(j, "drops", rows[i].drops);
			json_end_obj(j);
		}
		json_end_arr(j);
		return;
	}
	printf("admission: %d rule(s), allow before deny\n", n);
	if (!n)
		return;
	printf("%-5s %-6s %-44s %-12s %s\n", "RULE", "ACTION", "CIDR", "HITS(pkts)",
	       "DROPS(pkts)");
	for (i = 0; i < n; i++)
		printf("%-5u %-6s %-44s %-12llu %llu\n", rows[i].id,
		       rows[i].deny ? "deny" : "allow", rows[i].cidr,
		       (unsigned long long)rows[i].hits, (unsigned long long)rows[i].drops);
}
