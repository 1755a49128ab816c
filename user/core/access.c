// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Admission: who may connect. The rules (--allow/--deny CIDR) go into the
 * LPM tries of bpf/access.bpf.c, pinned as access_* under the instance, so
 * that bpftool changes them under load; the XDP program, attached through
 * libxdp on the interfaces of the TCP listening addresses, drops a refused
 * source's packets to our ports before the TCP stack sees them. accept()
 * checks the same maps again, always: a path XDP does not see (a fragment,
 * an IPv6 extension header, --xdp off, a device it could not attach to)
 * is still refused, and a rule changed with bpftool applies there too.
 *
 * Invariants: an XDP program we did not attach is never replaced (unless
 * --xdp-replace says so); ours is detached by bsteer_access_close
 * (SIGINT/SIGTERM end the server there), and pinned as access_xdp_IFINDEX
 * so that after a SIGKILL the next claim of the instance's pins, or bsteer
 * clean, detaches it: only the program that pin holds, only if it is still
 * the one on that interface.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include "libbsteer.h"
#include "bsteer_access.h"
#include "access.skel.h"

#define SRC_BUCKETS	1024	/* --max-per-source hash table */

int bsteer_access_parse(const char *cidr, bool deny, struct bsteer_access_rule *r)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	unsigned long plen;
	char *end;
	int max;

	if (strlen(cidr) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, cidr);
	memset(r, 0, sizeof(*r));
	r->deny = deny;
	slash = strchr(buf, '/');
	if (slash)
		*slash++ = 0;
	if (inet_pton(AF_INET, buf, r->addr) == 1) {
		r->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, r->addr) == 1) {
		r->family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}
	plen = max;
	if (slash) {
		errno = 0;
		plen = strtoul(slash, &end, 10);
		if (!*slash || *end || errno || plen > (unsigned long)max)
			return -EINVAL;
	}
	r->plen = plen;
	/* Host bits off, so that a rule reads back as the prefix it matches. */
	for (int i = 0; i < max / 8; i++)
		if (i * 8 >= (int)plen)
			r->addr[i] = 0;
		else if (i * 8 + 8 > (int)plen)
			r->addr[i] &= 0xff << (8 - (plen - i * 8));
	return 0;
}

static int rule_map(const struct bsteer_access *a, int family, bool deny)
{
	if (family == AF_INET)
		return deny ? a->fd_deny4 : a->fd_allow4;
	return deny ? a->fd_deny6 : a->fd_allow6;
}

static int rule_put(const struct bsteer_access *a, const struct bsteer_access_rule *r,
		    __u32 id)
{
	struct bsteer_access_key6 k6 = { .prefixlen = r->plen };
	struct bsteer_access_key4 k4 = { .prefixlen = r->plen };
	void *key = &k6;

	if (r->family == AF_INET) {
		memcpy(k4.addr, r->addr, 4);
		key = &k4;
	} else {
		memcpy(k6.addr, r->addr, 16);
	}
	return bpf_map_update_elem(rule_map(a, r->family, r->deny), key, &id, BPF_ANY) ?
	       -errno : 0;
}

static int pin_map(struct bsteer_server *s, struct bpf_map *m, int *fd)
{
	char path[PATH_MAX];
	int err;

	snprintf(path, sizeof(path), "%s/%s", s->in->dir, bpf_map__name(m));
	err = bpf_map__pin(m, path);
	if (err) {
		bsteer_set_err("failed to pin map %s at %s: %s", bpf_map__name(m), path,
			       strerror(-err));
		return err;
	}
	if (fd)
		*fd = bpf_map__fd(m);
	return 0;
}

/* The maps, pinned, with the command line's rules and the guarded ports. */
static int maps_setup(struct bsteer_server *s, const int *lfd, int n)
{
	struct bsteer_access *a = s->access;
	struct access_bpf *skel;
	__u8 one = 1;
	int err, i, sfd;

	skel = access_bpf__open_and_load();
	if (!skel) {
		err = -errno ?: -EINVAL;
		bsteer_set_err("failed to load the access BPF program: %s", strerror(-err));
		return err;
	}
	a->skel = skel;
	if ((err = pin_map(s, skel->maps.access_allow4, &a->fd_allow4)) ||
	    (err = pin_map(s, skel->maps.access_deny4, &a->fd_deny4)) ||
	    (err = pin_map(s, skel->maps.access_allow6, &a->fd_allow6)) ||
	    (err = pin_map(s, skel->maps.access_deny6, &a->fd_deny6)) ||
	    (err = pin_map(s, skel->maps.access_ports, NULL)) ||
	    (err = pin_map(s, skel->maps.access_counts, NULL)) ||
	    (err = pin_map(s, skel->maps.access_stats, &sfd)))
		return err;
	a->stats = bsteer_map_mmap(sfd, &a->stats_len, true);
	if (!a->stats) {
		err = -errno ?: -EINVAL;
		bsteer_set_err("cannot map access_stats: %s", strerror(-err));
		return err;
	}
	for (i = 0; i < a->nrules; i++) {
		err = rule_put(a, &a->rule[i], i);
		if (err) {
			bsteer_set_err("cannot add rule %d: %s", i, strerror(-err));
			return err;
		}
	}
	for (i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		__u16 port;

		if (lfd[i] < 0 || getsockname(lfd[i], (struct sockaddr *)&ss, &len))
			continue;
		if (ss.ss_family == AF_INET)
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		else
			continue;
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.access_ports), &port, &one,
					BPF_ANY))
			return -errno;
	}
	return 0;
}

static bool have_if(const struct bsteer_access *a, int ifindex)
{
	for (int i = 0; i < a->nif; i++)
		if (a->ifindex[i] == ifindex)
			return true;
	return false;
}

/* The interfaces to attach to: --xdp-dev's, or those of the listening addresses. */
static int find_ifs(struct bsteer_access *a, const int *lfd, int n, char *why, size_t wlen)
{
	struct ifaddrs *ifs, *p;
	int i;

	for (i = 0; i < a->nxdp_dev; i++) {
		int idx = if_nametoindex(a->xdp_dev[i]);

		if (!idx) {
			snprintf(why, wlen, "no interface %s", a->xdp_dev[i]);
			return -ENODEV;
		}
		if (!have_if(a, idx))
			a->ifindex[a->nif++] = idx;
	}
	if (a->nxdp_dev)
		return 0;
	if (getifaddrs(&ifs)) {
		snprintf(why, wlen, "cannot list interfaces: %s", strerror(errno));
		return -errno;
	}
	for (i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		bool any = false, found = false;

		if (lfd[i] < 0 || getsockname(lfd[i], (struct sockaddr *)&ss, &len) ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
			continue;
		if (ss.ss_family == AF_INET)
			any = ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY);
		else
			any = IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr);
		if (any) {
			snprintf(why, wlen, "a socket listens on every address; name the interfaces with --xdp-dev");
			freeifaddrs(ifs);
			return -EINVAL;
		}
		for (p = ifs; p; p = p->ifa_next) {
			const struct sockaddr *sa = p->ifa_addr;
			int idx;

			if (!sa || sa->sa_family != ss.ss_family)
				continue;
			if (sa->sa_family == AF_INET ?
			    memcmp(&((struct sockaddr_in *)sa)->sin_addr,
				   &((struct sockaddr_in *)&ss)->sin_addr, 4) :
			    memcmp(&((struct sockaddr_in6 *)sa)->sin6_addr,
				   &((struct sockaddr_in6 *)&ss)->sin6_addr, 16))
				continue;
			found = true;
			idx = if_nametoindex(p->ifa_name);
			if (idx && !have_if(a, idx) && a->nif < BSTEER_ACCESS_DEVS)
				a->ifindex[a->nif++] = idx;
		}
		if (!found) {
			snprintf(why, wlen, "no interface carries a listening address; name one with --xdp-dev");
			freeifaddrs(ifs);
			return -ENODEV;
		}
	}
	freeifaddrs(ifs);
	if (!a->nif) {
		snprintf(why, wlen, "no TCP listening socket");
		return -ENOENT;
	}
	return 0;
}

static bool xdp_verbose;

/*
 * libxdp's own lines (its dispatcher refused, its fall back to a single
 * program) are for -v: the server logs the mode it ended up in.
 */
static int xdp_print(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	return xdp_verbose ? vfprintf(stderr, fmt, ap) : 0;
}

static const char *mode_name(enum xdp_attach_mode m)
{
	switch (m) {
	case XDP_MODE_NATIVE:	return "native";
	case XDP_MODE_SKB:	return "skb";
	case XDP_MODE_HW:	return "hw";
	default:		return "unknown";
	}
}

/* Is an XDP program already there? Its name and id in @why if so. */
static bool if_taken(int ifindex, const char *ifname, char *why, size_t wlen)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);
	struct xdp_program *p;
	bool taken;

	if (libxdp_get_error(mp) || !mp)
		return false;
	p = xdp_multiprog__is_legacy(mp) ? xdp_multiprog__main_prog(mp) :
	    xdp_multiprog__next_prog(NULL, mp);
	taken = p || !xdp_multiprog__is_legacy(mp);
	if (taken && p)
		snprintf(why, wlen, "%s already has an XDP program (%s, id %u); not replacing it",
			 ifname, xdp_program__name(p), xdp_program__id(p));
	else if (taken)
		snprintf(why, wlen, "%s already has an XDP dispatcher; not replacing it", ifname);
	xdp_multiprog__close(mp);
	return taken;
}

/* The pin that marks @ifindex's program as this instance's. */
static void xdp_pin_path(char *path, size_t len, const char *dir, int ifindex)
{
	snprintf(path, len, "%s/access_xdp_%d", dir, ifindex);
}

/*
 * Detach the XDP program with id @id from @ifindex, if it is there (alone,
 * or one of a libxdp dispatcher's); 1 if it was, 0 if not, -errno.
 */
static int detach_id(int ifindex, __u32 id)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);
	struct xdp_program *p;
	int err = 0;

	if (libxdp_get_error(mp) || !mp)
		return 0;
	if (xdp_multiprog__is_legacy(mp)) {
		p = xdp_multiprog__main_prog(mp);
		if (p && xdp_program__id(p) == id)
			err = xdp_program__detach(p, ifindex, xdp_multiprog__attach_mode(mp), 0) ?: 1;
	} else {
		for (p = xdp_multiprog__next_prog(NULL, mp); p; p = xdp_multiprog__next_prog(p, mp))
			if (xdp_program__id(p) == id) {
				err = xdp_program__detach(p, ifindex,
							  xdp_multiprog__attach_mode(mp), 0) ?: 1;
				break;
			}
	}
	xdp_multiprog__close(mp);
	return err;
}

/* Another's program on @ifindex, replaced as --xdp-replace asks: detached. */
static int detach_foreign(int ifindex)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);
	int err;

	if (libxdp_get_error(mp) || !mp)
		return 0;
	err = xdp_multiprog__detach(mp);
	xdp_multiprog__close(mp);
	return err;
}

static int attach_all(struct bsteer_server *s, char *why, size_t wlen)
{
	struct bsteer_access *a = s->access;
	struct access_bpf *skel = a->skel;
	int i;

	xdp_verbose = s->verbose;
	libxdp_set_print(xdp_print);
	for (i = 0; i < a->nif; i++) {
		DECLARE_LIBXDP_OPTS(xdp_program_opts, o,
				    .fd = bpf_program__fd(skel->progs.bsteer_access));
		char ifname[IF_NAMESIZE] = "?", path[PATH_MAX];
		struct xdp_multiprog *mp;
		struct xdp_program *xp;
		int err;

		if_indextoname(a->ifindex[i], ifname);
		if (if_taken(a->ifindex[i], ifname, why, wlen)) {
			if (!a->xdp_replace)
				return -EBUSY;
			err = detach_foreign(a->ifindex[i]);
			if (err) {
				snprintf(why, wlen, "cannot detach the XDP program on %s: %s",
					 ifname, strerror(-err));
				return err;
			}
			/* if_taken's words, less its "not replacing it" */
			if (strstr(why, "; not replacing it"))
				*strstr(why, "; not replacing it") = 0;
			serve_warn(s, "admission: --xdp-replace: %s; replaced", why);
			why[0] = 0;
		}
		xp = xdp_program__create(&o);
		err = libxdp_get_error(xp);
		if (err) {
			snprintf(why, wlen, "libxdp cannot take the program: %s", strerror(-err));
			return err;
		}
		err = xdp_program__attach(xp, a->ifindex[i], XDP_MODE_UNSPEC, 0);
		if (err) {
			xdp_program__close(xp);
			snprintf(why, wlen, "cannot attach to %s: %s", ifname, strerror(-err));
			return err;
		}
		a->xprog[i] = xp;
		/* Ours, for a restart after SIGKILL and for bsteer clean to know. */
		xdp_pin_path(path, sizeof(path), s->in->dir, a->ifindex[i]);
		if (bpf_obj_pin(xdp_program__fd(xp), path))
			serve_warn(s, "admission: cannot pin %s (a restart after SIGKILL will not know the program as its own): %s",
				   path, strerror(errno));
		mp = xdp_multiprog__get_from_ifindex(a->ifindex[i]);
		if (!libxdp_get_error(mp) && mp) {
			serve_log(s, "admission: XDP program on %s (%s mode, %s)", ifname,
				  mode_name(xdp_multiprog__attach_mode(mp)),
				  xdp_multiprog__is_legacy(mp) ? "libxdp legacy single-program mode"
							       : "libxdp dispatcher");
			xdp_multiprog__close(mp);
		}
	}
	return 0;
}

int bsteer_access_detach_stale(const char *dir, char *msg, size_t len)
{
	struct if_nameindex *ifs = if_nameindex(), *p;
	size_t used = 0;
	int n = 0;

	if (msg && len)
		msg[0] = 0;
	if (!ifs)
		return 0;
	for (p = ifs; p->if_index; p++) {
		struct bpf_prog_info info = {};
		__u32 ilen = sizeof(info);
		char path[PATH_MAX];
		int fd, err;

		xdp_pin_path(path, sizeof(path), dir, p->if_index);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		/* Ours by its pin (and its name): the id on the device must match. */
		if (!bpf_obj_get_info_by_fd(fd, &info, &ilen) &&
		    !strcmp(info.name, "bsteer_access")) {
			err = detach_id(p->if_index, info.id);
			if (err > 0) {
				n++;
				if (msg && used < len)
					used += snprintf(msg + used, len - used,
							 "%sdetached the XDP program (bsteer_access, id %u) a dead instance left on %s",
							 used ? "; " : "", info.id, p->if_name);
			}
		}
		close(fd);
	}
	if_freenameindex(ifs);
	return n;
}

static void detach_all(struct bsteer_access *a, const char *dir)
{
	char path[PATH_MAX];

	for (int i = 0; i < a->nif; i++) {
		if (!a->xprog[i])
			continue;
		xdp_program__detach(a->xprog[i], a->ifindex[i], XDP_MODE_UNSPEC, 0);
		/* Its pin says "ours, attached": not so any more. */
		xdp_pin_path(path, sizeof(path), dir, a->ifindex[i]);
		unlink(path);
		xdp_program__close(a->xprog[i]);
		a->xprog[i] = NULL;
	}
	a->nif = 0;
}

int bsteer_access_listen(struct bsteer_server *s, const int *lfd, int n)
{
	struct bsteer_access *a = s->access;
	char why[256] = "";
	int err;

	if (!a)
		return 0;
	a->fd_allow4 = a->fd_deny4 = a->fd_allow6 = a->fd_deny6 = -1;
	/* The maps for any admission option: refusals are counted there. */
	err = maps_setup(s, lfd, n);
	if (err)
		return err;
	if (a->max_per_source) {
		a->src = calloc(SRC_BUCKETS, sizeof(*a->src));
		if (!a->src)
			return -ENOMEM;
	}
	if (!a->nrules)
		return 0;
	if (a->xdp == BSTEER_XDP_OFF) {
		serve_log(s, "admission: %d rule(s) checked at accept() (--xdp off)", a->nrules);
		return 0;
	}
	err = find_ifs(a, lfd, n, why, sizeof(why));
	if (!err)
		err = attach_all(s, why, sizeof(why));
	if (!err)
		return 0;
	detach_all(a, s->in->dir);
	if (a->xdp == BSTEER_XDP_REQUIRE) {
		bsteer_set_err("--xdp require: %s", why);
		return err;
	}
	serve_warn(s, "admission: no XDP program (%s); %d rule(s) checked at accept() only",
		   why, a->nrules);
	return 0;
}

/* Does the trie at @fd hold a prefix of @addr? */
static bool trie_has(int fd, const __u8 *addr, int family)
{
	struct bsteer_access_key6 k6 = { .prefixlen = 128 };
	struct bsteer_access_key4 k4 = { .prefixlen = 32 };
	__u32 id;

	if (fd < 0)
		return false;
	if (family == AF_INET) {
		memcpy(k4.addr, addr, 4);
		return !bpf_map_lookup_elem(fd, &k4, &id);
	}
	memcpy(k6.addr, addr, 16);
	return !bpf_map_lookup_elem(fd, &k6, &id);
}

/* The client's address into @p (a v4 client of a dual-stack socket as v4). */
static void peer_of(const struct sockaddr_storage *ss, struct bsteer_access_peer *p)
{
	memset(p, 0, sizeof(*p));
	if (ss->ss_family == AF_INET) {
		p->family = AF_INET;
		memcpy(p->addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return;
	}
	memcpy(p->addr, ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr, 16);
	p->family = AF_INET6;
	/* A v4 client of a dual-stack socket: the v4 rules judge it. */
	if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)p->addr)) {
		memmove(p->addr, p->addr + 12, 4);
		memset(p->addr + 4, 0, 12);
		p->family = AF_INET;
	}
}

static bool admit_ip(const struct bsteer_access *a, const struct bsteer_access_peer *p,
		     char *who, size_t wlen)
{
	inet_ntop(p->family, p->addr, who, wlen);
	if (trie_has(rule_map(a, p->family, false), p->addr, p->family))
		return true;
	return !trie_has(rule_map(a, p->family, true), p->addr, p->family);
}

/* ---- --max-per-source: open connections by source address ---- */

struct bsteer_access_src {
	struct bsteer_access_src *next;
	struct bsteer_access_peer p;
	__u32 n;
};

static pthread_mutex_t src_lock = PTHREAD_MUTEX_INITIALIZER;

static struct bsteer_access_src **src_bucket(struct bsteer_access *a,
					     const struct bsteer_access_peer *p)
{
	__u32 h = 2166136261u;

	h = (h ^ p->family) * 16777619u;
	for (int i = 0; i < 16; i++)
		h = (h ^ p->addr[i]) * 16777619u;
	return &a->src[h % SRC_BUCKETS];
}

/* One more from @p, unless it has --max-per-source open: its count before. */
static __u32 src_take(struct bsteer_access *a, const struct bsteer_access_peer *p)
{
	struct bsteer_access_src **b, *e;
	__u32 n = 0;

	pthread_mutex_lock(&src_lock);
	b = src_bucket(a, p);
	for (e = *b; e && memcmp(&e->p, p, sizeof(*p)); e = e->next)
		;
	if (!e && (e = calloc(1, sizeof(*e)))) {
		e->p = *p;
		e->next = *b;
		*b = e;
	}
	if (e) {
		n = e->n;
		if (n < a->max_per_source)
			e->n++;
	}
	pthread_mutex_unlock(&src_lock);
	return n;
}

static void src_put(struct bsteer_access *a, const struct bsteer_access_peer *p)
{
	struct bsteer_access_src **b, *e;

	pthread_mutex_lock(&src_lock);
	for (b = src_bucket(a, p); (e = *b); b = &e->next) {
		if (memcmp(&e->p, p, sizeof(*p)))
			continue;
		if (e->n && !--e->n) {
			*b = e->next;
			free(e);
		}
		break;
	}
	pthread_mutex_unlock(&src_lock);
}

static void count_refusal(struct bsteer_access *a, enum bsteer_access_stat why)
{
	if (a->stats)
		__atomic_add_fetch(&a->stats[why], 1, __ATOMIC_RELAXED);
}

static bool admit_unix(const struct bsteer_access *a, int fd, char *who, size_t wlen)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int i;

	if (!a->nuid && !a->ngid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len)) {
		snprintf(who, wlen, "a unix peer without credentials");
		return false;
	}
	snprintf(who, wlen, "uid %u gid %u (pid %d)", cr.uid, cr.gid, cr.pid);
	for (i = 0; i < a->nuid; i++)
		if (a->uid[i] == cr.uid)
			return true;
	for (i = 0; i < a->ngid; i++)
		if (a->gid[i] == cr.gid)
			return true;
	return false;
}

/*
 * One line per second at most: a flood of refused connections (--xdp off,
 * or a source XDP does not see) must not become a flood of log lines.
 */
static void refused(struct bsteer_server *s, const char *who)
{
	static __u64 last_ns, quiet;
	__u64 now = bsteer_now_ns(), then = __atomic_load_n(&last_ns, __ATOMIC_RELAXED);
	__u64 n;

	if (then && now - then < 1000000000ull) {
		__atomic_add_fetch(&quiet, 1, __ATOMIC_RELAXED);
		return;
	}
	if (!__atomic_compare_exchange_n(&last_ns, &then, now, false, __ATOMIC_RELAXED,
					 __ATOMIC_RELAXED)) {
		__atomic_add_fetch(&quiet, 1, __ATOMIC_RELAXED);
		return;
	}
	n = __atomic_exchange_n(&quiet, 0, __ATOMIC_RELAXED);
	if (n)
		serve_log(s, "admission: refused %s (and %llu more since the last such line)",
			  who, (unsigned long long)n);
	else
		serve_log(s, "admission: refused %s", who);
}

int bsteer_access_admit(struct bsteer_server *s, int fd, struct bsteer_access_peer *peer)
{
	struct bsteer_access *a = s->access;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char who[INET6_ADDRSTRLEN + 64] = "?";
	__u32 n;

	memset(peer, 0, sizeof(*peer));
	if (!a)
		return 0;
	n = __atomic_add_fetch(&a->conns, 1, __ATOMIC_RELAXED);
	if (a->max_conns && n > a->max_conns) {
		bsteer_access_release(s, peer);
		snprintf(who, sizeof(who), "a connection: %u open, --max-connections %u",
			 n - 1, a->max_conns);
		count_refusal(a, BSTEER_ACCESS_REFUSED_MAX);
		refused(s, who);
		return -EUSERS;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return 0;
	if (ss.ss_family == AF_UNIX) {
		if (admit_unix(a, fd, who, sizeof(who)))
			return 0;
		count_refusal(a, BSTEER_ACCESS_REFUSED_CRED);
		bsteer_access_release(s, peer);
		refused(s, who);
		return -EACCES;
	}
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return 0;
	len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len))
		return 0;
	peer_of(&ss, peer);
	if (!admit_ip(a, peer, who, sizeof(who))) {
		memset(peer, 0, sizeof(*peer));
		count_refusal(a, BSTEER_ACCESS_REFUSED_RULE);
		bsteer_access_release(s, peer);
		refused(s, who);
		return -EACCES;
	}
	if (!a->src || (n = src_take(a, peer)) < a->max_per_source) {
		if (!a->src)
			memset(peer, 0, sizeof(*peer));	/* nothing to give back */
		return 0;
	}
	memset(peer, 0, sizeof(*peer));
	count_refusal(a, BSTEER_ACCESS_REFUSED_SOURCE);
	bsteer_access_release(s, peer);
	snprintf(who + strlen(who), sizeof(who) - strlen(who),
		 ": %u open from it, --max-per-source %u", n, a->max_per_source);
	refused(s, who);
	return -EUSERS;
}

void bsteer_access_release(struct bsteer_server *s, struct bsteer_access_peer *peer)
{
	struct bsteer_access *a = s->access;

	if (!a)
		return;
	__atomic_sub_fetch(&a->conns, 1, __ATOMIC_RELAXED);
	if (peer && peer->family && a->src)
		src_put(a, peer);
	if (peer)
		peer->family = 0;
}

void bsteer_access_close(struct bsteer_server *s)
{
	struct bsteer_access *a = s->access;

	if (!a)
		return;
	detach_all(a, s->in->dir);
	if (a->stats)
		munmap(a->stats, a->stats_len);
	a->stats = NULL;
	access_bpf__destroy(a->skel);
	a->skel = NULL;
	if (a->src)
		for (int i = 0; i < SRC_BUCKETS; i++)
			while (a->src[i]) {
				struct bsteer_access_src *e = a->src[i];

				a->src[i] = e->next;
				free(e);
			}
	free(a->src);
	a->src = NULL;
}
