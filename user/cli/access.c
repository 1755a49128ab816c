// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Admission rules of a running instance, in its access_* pins (whoever put
 * them there: serve's options, bpftool, or this): bsteer stat's section,
 * the Prometheus counters, and bsteer access add|del|list, which changes
 * the tries the way the README's bpftool lines do.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cli/cli.h"
#include "bsteer_access.h"

static const char access_usage[] =
"USAGE: bsteer access add INSTANCE allow|deny CIDR [--id N]\n"
"       bsteer access del INSTANCE allow|deny CIDR\n"
"       bsteer access list INSTANCE [--json]\n"
"\n"
"Change the admission rules of a running bsteer serve (one started with\n"
"--allow, --deny or another admission option), live: the XDP program and\n"
"the accept() check use a rule from the next packet and the next\n"
"connection on. The same as the README's bpftool map update/delete lines\n"
"on " BSTEER_PIN_ROOT "/INSTANCE/access_{allow,deny}{4,6}, with the\n"
"address parsed, the host bits cleared and a free rule id picked.\n"
"\n"
"  add    a rule: allow (admit, before any deny) or deny; CIDR is IPv4 or\n"
"         IPv6, a bare address a /32 or /128. Its id is the lowest free\n"
"         one (or --id N, 0..255) and its counters start at 0\n"
"  del    the rule with this action and prefix\n"
"  list   the rules with the packets each matched (HITS) and dropped at\n"
"         XDP (DROPS), the connections refused at accept() by why, and\n"
"         the interfaces the XDP program is on\n"
"\n"
"OPTIONS:\n"
"  -i, --id N            add: the rule's id (its counters' index)\n"
"  -j, --json            list: one JSON object\n"
"  -h, --help            this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer access add edge deny 192.0.2.7\n"
"  bsteer access add edge allow 2001:db8::/32 --id 20\n"
"  bsteer access del edge deny 192.0.2.7/32\n"
"  bsteer access list edge\n"
"  bsteer access list edge --json | jq '.access_rules[] | select(.drops > 0)'\n";

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

static const char *const refusal_names[BSTEER_ACCESS_ST__MAX] = {
	[BSTEER_ACCESS_REFUSED_RULE]	= "rule",
	[BSTEER_ACCESS_REFUSED_CRED]	= "peer_credentials",
	[BSTEER_ACCESS_REFUSED_MAX]	= "max_connections",
	[BSTEER_ACCESS_REFUSED_SOURCE]	= "max_per_source",
};

/* The server's refusals at accept(), by reason; false if it has no such map. */
static bool refusals_read(const char *dir, __u64 *v)
{
	char path[PATH_MAX + 32];
	__u32 k;
	int fd;

	snprintf(path, sizeof(path), "%s/access_stats", dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return false;
	for (k = 0; k < BSTEER_ACCESS_ST__MAX; k++)
		if (bpf_map_lookup_elem(fd, &k, &v[k]))
			v[k] = 0;
	close(fd);
	return true;
}

/* The interfaces the server's XDP program is pinned for (access_xdp_IFINDEX). */
static int xdp_devs(const char *dir, char names[][IF_NAMESIZE], int max)
{
	struct if_nameindex *ifs = if_nameindex(), *p;
	char path[PATH_MAX + 32];
	int n = 0;

	if (!ifs)
		return 0;
	for (p = ifs; p->if_index && n < max; p++) {
		snprintf(path, sizeof(path), "%s/access_xdp_%u", dir, p->if_index);
		if (!access(path, F_OK))
			snprintf(names[n++], IF_NAMESIZE, "%s", p->if_name);
	}
	if_freenameindex(ifs);
	return n;
}

void access_report(const char *dir, struct bsteer_json *j)
{
	static struct rule_row rows[4 * BSTEER_ACCESS_RULES];
	int n = rules_read(dir, rows, 4 * BSTEER_ACCESS_RULES), i, nd;
	char devs[BSTEER_ACCESS_DEVS][IF_NAMESIZE];
	__u64 ref[BSTEER_ACCESS_ST__MAX] = {};
	bool have_ref;

	if (n < 0)
		return;
	have_ref = refusals_read(dir, ref);
	nd = xdp_devs(dir, devs, BSTEER_ACCESS_DEVS);
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
		if (have_ref) {
			json_obj(j, "access_refusals");
			for (i = 0; i < BSTEER_ACCESS_ST__MAX; i++)
				json_u64(j, refusal_names[i], ref[i]);
			json_end_obj(j);
		}
		json_arr(j, "access_xdp");
		for (i = 0; i < nd; i++)
			json_str(j, NULL, devs[i]);
		json_end_arr(j);
		return;
	}
	printf("admission: %d rule(s), allow before deny; XDP ", n);
	if (!nd)
		printf("on no interface (accept() checks alone)");
	for (i = 0; i < nd; i++)
		printf("%s%s", i ? ", " : "on ", devs[i]);
	printf("\n");
	if (have_ref)
		printf("refused at accept(): %llu by rule, %llu by uid/gid, %llu over --max-connections, %llu over --max-per-source\n",
		       (unsigned long long)ref[BSTEER_ACCESS_REFUSED_RULE],
		       (unsigned long long)ref[BSTEER_ACCESS_REFUSED_CRED],
		       (unsigned long long)ref[BSTEER_ACCESS_REFUSED_MAX],
		       (unsigned long long)ref[BSTEER_ACCESS_REFUSED_SOURCE]);
	if (!n)
		return;
	printf("%-5s %-6s %-44s %-12s %s\n", "RULE", "ACTION", "CIDR", "HITS(pkts)",
	       "DROPS(pkts)");
	for (i = 0; i < n; i++)
		printf("%-5u %-6s %-44s %-12llu %llu\n", rows[i].id,
		       rows[i].deny ? "deny" : "allow", rows[i].cidr,
		       (unsigned long long)rows[i].hits, (unsigned long long)rows[i].drops);
}

void access_prom(const char *dir, const char *inst, FILE *f)
{
	static struct rule_row rows[4 * BSTEER_ACCESS_RULES];
	int n = rules_read(dir, rows, 4 * BSTEER_ACCESS_RULES), i;
	__u64 ref[BSTEER_ACCESS_ST__MAX] = {};

	if (n < 0)
		return;
	fprintf(f, "# HELP bsteer_access_rule_hits_total packets to a guarded port an admission rule matched at XDP\n"
		"# TYPE bsteer_access_rule_hits_total counter\n");
	for (i = 0; i < n; i++)
		fprintf(f, "bsteer_access_rule_hits_total{instance=\"%s\",rule=\"%u\",action=\"%s\",cidr=\"%s\"} %llu\n",
			inst, rows[i].id, rows[i].deny ? "deny" : "allow", rows[i].cidr,
			(unsigned long long)rows[i].hits);
	fprintf(f, "# HELP bsteer_access_rule_drops_total packets an admission rule dropped at XDP\n"
		"# TYPE bsteer_access_rule_drops_total counter\n");
	for (i = 0; i < n; i++)
		fprintf(f, "bsteer_access_rule_drops_total{instance=\"%s\",rule=\"%u\",action=\"%s\",cidr=\"%s\"} %llu\n",
			inst, rows[i].id, rows[i].deny ? "deny" : "allow", rows[i].cidr,
			(unsigned long long)rows[i].drops);
	if (!refusals_read(dir, ref))
		return;
	fprintf(f, "# HELP bsteer_access_refusals_total connections closed at accept(), by why\n"
		"# TYPE bsteer_access_refusals_total counter\n");
	for (i = 0; i < BSTEER_ACCESS_ST__MAX; i++)
		fprintf(f, "bsteer_access_refusals_total{instance=\"%s\",reason=\"%s\"} %llu\n",
			inst, refusal_names[i], (unsigned long long)ref[i]);
}

/* ---- bsteer access add|del|list ---- */

/* The instance's pin directory, if it has the admission maps; else says why. */
static int access_dir(const char *name, char *dir, size_t len)
{
	char path[PATH_MAX + 32];

	if (!bsteer_name_valid(name))
		return cli_usage("access", "'%s' is not a valid instance name", name);
	snprintf(dir, len, "%s/%s", BSTEER_PIN_ROOT, name);
	if (access(dir, F_OK)) {
		fprintf(stderr, "bsteer access: no instance '%s' (nothing pinned at %s)\n", name, dir);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/access_counts", dir);
	if (access(path, F_OK)) {
		fprintf(stderr, "bsteer access: instance '%s' has no admission rules maps (start it with --allow, --deny or another admission option)\n",
			name);
		return 1;
	}
	return 0;
}

/* The trie for @r's list and family, opened; -1 and a message if not. */
static int trie_open(const char *dir, const struct bsteer_access_rule *r)
{
	char path[PATH_MAX + 32];
	int fd;

	snprintf(path, sizeof(path), "%s/access_%s%d", dir, r->deny ? "deny" : "allow",
		 r->family == AF_INET ? 4 : 6);
	fd = bpf_obj_get(path);
	if (fd < 0)
		fprintf(stderr, "bsteer access: cannot open %s: %s\n", path, strerror(errno));
	return fd;
}

static void rule_key(const struct bsteer_access_rule *r, struct bsteer_access_key6 *k)
{
	memset(k, 0, sizeof(*k));
	k->prefixlen = r->plen;
	memcpy(k->addr, r->addr, r->family == AF_INET ? 4 : 16);
}

static void rule_text(const struct bsteer_access_rule *r, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	inet_ntop(r->family, r->addr, a, sizeof(a));
	snprintf(out, len, "%s/%u", a, r->plen);
}

/* The id of the rule with exactly @r's prefix in its trie, or -1. */
static int rule_id(int fd, const struct bsteer_access_rule *r)
{
	struct bsteer_access_key6 want, key, next;
	size_t klen = r->family == AF_INET ? sizeof(struct bsteer_access_key4) : sizeof(key);
	bool first = true;
	__u32 id;

	rule_key(r, &want);
	while (!bpf_map_get_next_key(fd, first ? NULL : &key, &next)) {
		first = false;
		key = next;
		if (!memcmp(&key, &want, klen) && !bpf_map_lookup_elem(fd, &key, &id))
			return id;
	}
	return -1;
}

static int access_add(const char *name, const char *dir, const struct bsteer_access_rule *r,
		      long want_id)
{
	static struct rule_row rows[4 * BSTEER_ACCESS_RULES];
	bool used[BSTEER_ACCESS_RULES] = {};
	int n = rules_read(dir, rows, 4 * BSTEER_ACCESS_RULES), fd, cfd, i, ncpu;
	struct bsteer_access_key6 key;
	struct bsteer_access_count *zero;
	char cidr[INET6_ADDRSTRLEN + 4], path[PATH_MAX + 32];
	__u32 id;

	rule_text(r, cidr, sizeof(cidr));
	fd = trie_open(dir, r);
	if (fd < 0)
		return 1;
	i = rule_id(fd, r);
	if (i >= 0) {
		fprintf(stderr, "bsteer access: %s: %s %s is rule %d already\n", name,
			r->deny ? "deny" : "allow", cidr, i);
		close(fd);
		return 1;
	}
	for (i = 0; i < n; i++)
		if (rows[i].id < BSTEER_ACCESS_RULES)
			used[rows[i].id] = true;
	if (want_id >= 0) {
		if (used[want_id]) {
			for (i = 0; i < n && rows[i].id != want_id; i++)
				;
			fprintf(stderr, "bsteer access: %s: id %ld is taken (%s %s)\n", name, want_id,
				rows[i].deny ? "deny" : "allow", rows[i].cidr);
			close(fd);
			return 1;
		}
		id = want_id;
	} else {
		for (id = 0; id < BSTEER_ACCESS_RULES && used[id]; id++)
			;
		if (id == BSTEER_ACCESS_RULES) {
			fprintf(stderr, "bsteer access: %s: all %d rule ids are taken\n", name,
				BSTEER_ACCESS_RULES);
			close(fd);
			return 1;
		}
	}
	/* A fresh rule counts from 0, whatever the id counted before. */
	snprintf(path, sizeof(path), "%s/access_counts", dir);
	ncpu = libbpf_num_possible_cpus();
	cfd = bpf_obj_get(path);
	zero = ncpu > 0 ? calloc(ncpu, sizeof(*zero)) : NULL;
	if (cfd < 0 || !zero || bpf_map_update_elem(cfd, &id, zero, BPF_ANY))
		fprintf(stderr, "bsteer access: warning: cannot reset the counters of id %u\n", id);
	free(zero);
	if (cfd >= 0)
		close(cfd);
	rule_key(r, &key);
	if (bpf_map_update_elem(fd, &key, &id, BPF_NOEXIST)) {
		fprintf(stderr, "bsteer access: %s: cannot add %s %s: %s\n", name,
			r->deny ? "deny" : "allow", cidr, strerror(errno));
		close(fd);
		return 1;
	}
	close(fd);
	printf("%s: rule %u: %s %s\n", name, id, r->deny ? "deny" : "allow", cidr);
	return 0;
}

static int access_del(const char *name, const char *dir, const struct bsteer_access_rule *r)
{
	struct bsteer_access_key6 key;
	char cidr[INET6_ADDRSTRLEN + 4];
	int fd, id;

	rule_text(r, cidr, sizeof(cidr));
	fd = trie_open(dir, r);
	if (fd < 0)
		return 1;
	id = rule_id(fd, r);
	rule_key(r, &key);
	if (id < 0 || bpf_map_delete_elem(fd, &key)) {
		fprintf(stderr, "bsteer access: %s: no %s rule %s%s\n", name,
			r->deny ? "deny" : "allow", cidr,
			id < 0 ? "" : " (it went meanwhile)");
		close(fd);
		return 1;
	}
	close(fd);
	printf("%s: rule %d removed: %s %s\n", name, id, r->deny ? "deny" : "allow", cidr);
	return 0;
}

/*
 * add and del read the rules, pick and write: two of them at once on one
 * instance could pick the same free id. Each holds an exclusive lock on
 * the instance's pin directory for that; the server takes none.
 */
static int access_change(const char *name, const char *dir, const char *sub,
			 const struct bsteer_access_rule *r, long want_id)
{
	int lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (lock < 0 || flock(lock, LOCK_EX)) {
		fprintf(stderr, "bsteer access: %s: cannot lock %s: %s\n", name, dir,
			strerror(errno));
		if (lock >= 0)
			close(lock);
		return 1;
	}
	rc = !strcmp(sub, "add") ? access_add(name, dir, r, want_id) : access_del(name, dir, r);
	close(lock);
	return rc;
}

int cmd_access(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bsteer_access_rule r;
	char dir[PATH_MAX];
	const char *sub;
	bool json = false;
	long id = -1;
	__u64 v;
	int opt, rc, npos;

	while ((opt = getopt_long(argc, argv, "i:jh", opts, NULL)) != -1) {
		switch (opt) {
		case 'i':
			if (cli_u64("access", "--id", optarg, 0, BSTEER_ACCESS_RULES - 1, 0, &v))
				return 2;
			id = v;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(access_usage, stdout);
			return 0;
		default:
			return cli_bad_option("access", argv);
		}
	}
	npos = argc - optind;
	if (npos < 1)
		return cli_usage("access", "add, del or list?");
	sub = argv[optind];
	if (strcmp(sub, "add") && strcmp(sub, "del") && strcmp(sub, "list"))
		return cli_usage("access", "'%s' is not add, del or list", sub);
	if (npos < 2)
		return cli_usage("access", "%s: which INSTANCE?", sub);
	if (!strcmp(sub, "list")) {
		if (npos > 2)
			return cli_usage("access", "list: unexpected argument '%s'", argv[optind + 2]);
		if (id >= 0)
			return cli_usage("access", "--id goes with add");
	} else {
		if (npos != 4)
			return cli_usage("access", "%s INSTANCE allow|deny CIDR", sub);
		if (json)
			return cli_usage("access", "--json goes with list");
		if (id >= 0 && strcmp(sub, "add"))
			return cli_usage("access", "--id goes with add");
		if (strcmp(argv[optind + 2], "allow") && strcmp(argv[optind + 2], "deny"))
			return cli_usage("access", "%s: '%s' is not allow or deny", sub,
					 argv[optind + 2]);
		if (bsteer_access_parse(argv[optind + 3], !strcmp(argv[optind + 2], "deny"), &r))
			return cli_usage("access", "%s: '%s' is not an IPv4 or IPv6 address or CIDR",
					 sub, argv[optind + 3]);
	}
	if (bsteer_check_privileges("bsteer access"))
		return 1;
	rc = access_dir(argv[optind + 1], dir, sizeof(dir));
	if (rc)
		return rc;
	if (!strcmp(sub, "add") || !strcmp(sub, "del"))
		return access_change(argv[optind + 1], dir, sub, &r, id);
	if (json) {
		struct bsteer_json j;

		json_begin(&j, stdout);
		json_str(&j, "instance", argv[optind + 1]);
		access_report(dir, &j);
		json_finish(&j);
		return 0;
	}
	access_report(dir, NULL);
	return 0;
}
