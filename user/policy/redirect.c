// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The redirect policy's userspace half: its range table, the pinned map
 * "redirect_table" that bpf/policy/redirect.bpf.c steers by. The export's
 * map= settings fill it at start (the identity onto leg 0 without any);
 * bsteer policy config map.N=RANGE replaces one entry on a live server,
 * atomically for the policy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "policy/policy.h"

struct redirect {
	struct bsteer_range table[BSTEER_REDIRECT_MAX];
	__u32 n;
};

/* "START+LEN@LEG:TOFF", sizes with optional K/M/G. */
static int range_parse(const char *s, struct bsteer_range *r)
{
	char buf[128], *plus, *at, *colon;
	__u64 leg;

	memset(r, 0, sizeof(*r));
	if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
		goto bad;
	plus = strchr(buf, '+');
	at = strchr(buf, '@');
	colon = strchr(buf, ':');
	if (!plus || !at || !colon || !(plus < at && at < colon))
		goto bad;
	*plus++ = 0;
	*at++ = 0;
	*colon++ = 0;
	if (bsteer_parse_size(buf, &r->start) || bsteer_parse_size(plus, &r->len) ||
	    bsteer_parse_size(at, &leg) || bsteer_parse_size(colon, &r->toff) ||
	    !r->len || leg >= BSTEER_MAX_TARGETS || r->start + r->len < r->start)
		goto bad;
	r->leg = leg;
	return 0;
bad:
	bsteer_set_err("bad range '%s' (want START+LEN@LEG:OFFSET, e.g. 0+64M@1:0)", s);
	return -EINVAL;
}

static void range_format(const struct bsteer_range *r, char *out, size_t len)
{
	snprintf(out, len, "%llu+%llu@%u:%llu", (unsigned long long)r->start,
		 (unsigned long long)r->len, r->leg, (unsigned long long)r->toff);
}

/* Entries of the redirect table, which are dense from key 0. */
static __u32 table_count(int fd)
{
	struct bsteer_range r;
	__u32 n;

	for (n = 0; n < BSTEER_REDIRECT_MAX; n++)
		if (bpf_map_lookup_elem(fd, &n, &r))
			break;
	return n;
}

/*
 * A live entry must fit: its leg a leg of every export (they share the
 * table), and its range within that leg's size where the size is known.
 */
static int range_fits(struct bsteer_pins *pins, const char *key, const struct bsteer_range *r)
{
	struct bsteer_export_info x;
	struct bsteer_target tg;
	char path[PATH_MAX + 16];
	__u32 k, t;
	int fd;

	snprintf(path, sizeof(path), "%s/exports", pins->dir);
	fd = bpf_obj_get(path);
	for (k = 0; fd >= 0 && k < BSTEER_MAX_EXPORTS; k++) {
		if (bpf_map_lookup_elem(fd, &k, &x) || !(x.flags & BSTEER_EXF_USED))
			break;
		if (r->leg >= x.ntargets) {
			bsteer_set_err("%s: export '%s' has legs 0..%u, not %u", key, x.name,
				       x.ntargets - 1, r->leg);
			close(fd);
			return -EINVAL;
		}
		t = x.tbase + r->leg;
		if (!bpf_map_lookup_elem(pins->map_fd[BSTEER_MAP_TARGETS], &t, &tg) && tg.size &&
		    (r->toff > tg.size || r->len > tg.size - r->toff)) {
			bsteer_set_err("%s: %llu bytes at %llu do not fit in leg %u of '%s' (%llu bytes)",
				       key, (unsigned long long)r->len, (unsigned long long)r->toff,
				       r->leg, x.name, (unsigned long long)tg.size);
			close(fd);
			return -ERANGE;
		}
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

static int table_set(struct bsteer_pins *pins, int fd, const char *key, const char *val)
{
	const char *idx = key + 4;
	struct bsteer_range r;
	__u32 n = table_count(fd), last;
	__u64 k;
	int err;

	if (bsteer_parse_size(idx, &k) || k > n || k >= BSTEER_REDIRECT_MAX) {
		bsteer_set_err("map.%s: entries are numbered 0..%u (dense; %u is next)",
			       idx, n ? n - 1 : 0, n);
		return -EINVAL;
	}
	if (strcmp(val, "-")) {
		err = range_parse(val, &r);
		if (!err)
			err = range_fits(pins, key, &r);
		if (err)
			return err;
		return bpf_map_update_elem(fd, &(__u32){ k }, &r, BPF_ANY) ? -errno : 0;
	}
	if (k == n) {
		bsteer_set_err("map.%s: no such entry", idx);
		return -ENOENT;
	}
	/* Keep the table dense: the last entry moves into the hole first. */
	last = n - 1;
	if (k != last) {
		if (bpf_map_lookup_elem(fd, &last, &r) ||
		    bpf_map_update_elem(fd, &(__u32){ k }, &r, BPF_ANY))
			return -errno;
	}
	return bpf_map_delete_elem(fd, &last) ? -errno : 0;
}


/* map=START+LEN@LEG:OFFSET, one table entry per setting, in order. */
int redirect_option(struct bsteer_policy_run *p, const struct bsteer_export *ex,
		    const char *kv)
{
	struct redirect *t = p->priv;
	struct bsteer_range *r;

	if (strncmp(kv, "map=", 4))
		return -ENOENT;
	if (!t && !(t = p->priv = calloc(1, sizeof(*t))))
		return -ENOMEM;
	if (t->n == BSTEER_REDIRECT_MAX) {
		bsteer_set_err("too many map= ranges");
		return -EINVAL;
	}
	r = &t->table[t->n];
	if (range_parse(kv + 4, r))
		return -EINVAL;
	if (r->leg >= ex->ntargets) {
		bsteer_set_err("map=%s names leg %u of %u", kv + 4, r->leg,
			       ex->ntargets);
		return -EINVAL;
	}
	t->n++;
	return 0;
}

static int table_open(const char *dir)
{
	char path[PATH_MAX + 32];
	int fd;

	snprintf(path, sizeof(path), "%s/redirect_table", dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		bsteer_set_err("no redirect table at %s", path);
	return fd;
}

int redirect_setup(struct bsteer_policy_run *p, struct bsteer_instance *in,
		   struct bsteer_export *exports, int nexports)
{
	struct bsteer_range ident = { .len = exports[0].size };
	struct redirect *t = p->priv;
	__u32 i, n = t ? t->n : 0;
	int fd = table_open(in->dir), err = 0;

	(void)nexports;
	if (fd < 0)
		return -ENOENT;
	/* No map= given: start as the identity onto leg 0. */
	for (i = 0; !err && i < (n ?: 1); i++)
		if (bpf_map_update_elem(fd, &i, n ? &t->table[i] : &ident, BPF_ANY)) {
			err = -errno;
			bsteer_set_err("cannot fill the redirect table: %s",
				       strerror(-err));
		}
	close(fd);
	return err;
}

int redirect_config(struct bsteer_pins *pins, const char *key, const char *val)
{
	int fd, err;

	if (strncmp(key, "map.", 4))
		return -ENOENT;
	fd = table_open(pins->dir);
	if (fd < 0) {
		bsteer_set_err("%s: this policy has no range table", key);
		return -EINVAL;
	}
	err = table_set(pins, fd, key, val);
	close(fd);
	return err;
}

void redirect_config_show(struct bsteer_pins *pins, struct bsteer_json *j)
{
	int fd = table_open(pins->dir);
	struct bsteer_range r;
	char v[64];
	__u32 i, n;

	if (fd < 0)
		return;
	n = table_count(fd);
	if (j)
		json_arr(j, "map");
	for (i = 0; i < n && !bpf_map_lookup_elem(fd, &i, &r); i++) {
		if (!j) {
			range_format(&r, v, sizeof(v));
			printf("  map.%-4u %s\n", i, v);
			continue;
		}
		json_obj(j, NULL);
		json_u64(j, "start", r.start);
		json_u64(j, "len", r.len);
		json_u64(j, "leg", r.leg);
		json_u64(j, "offset", r.toff);
		json_end_obj(j);
	}
	if (j)
		json_end_arr(j);
	else if (!n)
		printf("  (redirect table empty: every request fails with EIO)\n");
	close(fd);
}

void redirect_close(struct bsteer_policy_run *p)
{
	free(p->priv);
	p->priv = NULL;
}
