// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The instance: loads the core programs, sizes and pins the maps under
 * /sys/fs/bpf/bsteer/<name>/, maps them into memory, and installs policies.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "libbsteer.h"
#include "core.skel.h"
#include "nbd.skel.h"

const char *const bsteer_map_names[BSTEER_MAP__MAX] = {
	[BSTEER_MAP_SLOTS]		= "slots",
	[BSTEER_MAP_SLOT_META]		= "slot_meta",
	[BSTEER_MAP_SLOT_FREE]		= "slot_free",
	[BSTEER_MAP_REQS]		= "reqs",
	[BSTEER_MAP_DECISIONS]		= "decisions",
	[BSTEER_MAP_TARGETS]		= "targets",
	[BSTEER_MAP_RINGS]		= "rings",
	[BSTEER_MAP_STATS]		= "stats",
	[BSTEER_MAP_POLICY_STATS]	= "policy_stats",
	[BSTEER_MAP_BATCH]		= "batch",
	[BSTEER_MAP_CFG]		= "cfg",
	[BSTEER_MAP_INFO]		= "info",
	[BSTEER_MAP_EVENTS]		= "events",
	[BSTEER_MAP_SCRATCH]		= "scratch",
	[BSTEER_MAP_POLICY]		= "policy",
	[BSTEER_MAP_POLICY_SYS]		= "policy_sys",
	[BSTEER_MAP_RING_CTX]		= "ring_ctx",
	[BSTEER_MAP_RING_CLAIM]		= "ring_claim",
	[BSTEER_MAP_FE_HDR]		= "fe_hdr",
	[BSTEER_MAP_FE_REQ]		= "fe_req",
	[BSTEER_MAP_PARSERS]		= "parsers",
};

/* libbpf's messages: shown with -v, otherwise the last warning is kept. */
static bool lib_verbose;
/* The verifier's reason for the last program it refused, and whose. */
static char verifier_why[256];

/*
 * A refused program's log ends with the verifier's reason, then its
 * statistics ("processed N insns ..."): keep the reason and the program.
 */
static void keep_verifier_reason(const char *msg)
{
	const char *begin = strstr(msg, "-- BEGIN PROG LOAD LOG --");
	const char *end = strstr(msg, "-- END PROG LOAD LOG --");
	const char *prog = strstr(msg, "prog '"), *p, *line = NULL;
	size_t n = 0;
	int plen = 0;

	if (!begin || !end || end < begin)
		return;
	if (prog) {
		prog += 6;
		plen = strcspn(prog, "'");
	}
	for (p = begin + 25; p < end; ) {
		const char *nl = memchr(p, '\n', end - p);
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (len && strncmp(p, "processed ", 10) &&
		    strncmp(p, "verification time", 17) &&
		    strncmp(p, "stack depth", 11)) {
			line = p;
			n = len;
		}
		p += len + 1;
	}
	if (line)
		snprintf(verifier_why, sizeof(verifier_why), "the verifier refused %.*s: %.*s",
			 plen, prog ? prog : "a program", (int)(n > 180 ? 180 : n), line);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	char *msg = NULL;
	size_t n;

	if (lib_verbose)
		return vfprintf(stderr, fmt, ap);
	if (level != LIBBPF_WARN)
		return 0;
	if (vasprintf(&msg, fmt, ap) < 0)
		return 0;
	keep_verifier_reason(msg);
	n = strlen(msg);
	if (n && msg[n - 1] == '\n')
		msg[n - 1] = 0;
	bsteer_set_err("%s", msg);
	free(msg);
	return 0;
}

void bsteer_libbpf_setup(bool verbose)
{
	lib_verbose = verbose;
	verifier_why[0] = 0;
	libbpf_set_print(libbpf_print);
}

int bsteer_ensure_bpffs(void)
{
	struct statfs st;

	if (!statfs("/sys/fs/bpf", &st) && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir("/sys/fs/bpf", 0700) && errno != EEXIST) {
		bsteer_set_err("cannot create /sys/fs/bpf: %s", strerror(errno));
		return -errno;
	}
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700")) {
		bsteer_set_err("cannot mount bpffs at /sys/fs/bpf: %s",
			       strerror(errno));
		return -errno;
	}
	return 0;
}

int bsteer_name_valid(const char *name)
{
	size_t n = strlen(name), i;

	if (!n || n > BSTEER_NAME_MAX || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return 0;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

/* Remove a pin directory tree (bpffs holds only pins and directories). */
static int rm_tree(const char *path)
{
	struct dirent *de;
	char sub[PATH_MAX];
	DIR *d = opendir(path);
	int err = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (lstat(sub, &st))
			continue;
		if (S_ISDIR(st.st_mode))
			err = rm_tree(sub) ?: err;
		else if (unlink(sub))
			err = -errno;
	}
	closedir(d);
	if (rmdir(path) && errno != ENOENT)
		err = -errno;
	return err;
}

/* Is the instance pinned at @dir owned by a live process? Returns its pid. */
static int pin_owner_alive(const char *dir)
{
	struct bsteer_info inf;
	char path[PATH_MAX];
	__u32 zero = 0;
	__u64 st;
	int fd;

	snprintf(path, sizeof(path), "%s/info", dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (bpf_map_lookup_elem(fd, &zero, &inf)) {
		close(fd);
		return 0;
	}
	close(fd);
	if (!inf.pid || bsteer_proc_start_time(inf.pid, &st) ||
	    st != inf.start_time)
		return 0;
	return inf.pid;
}

int bsteer_instance_of_pid(int pid, char *name, size_t len)
{
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(BSTEER_PIN_ROOT);
	int err = -ENOENT;

	if (!d)
		return -ENOENT;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !bsteer_name_valid(de->d_name))
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", BSTEER_PIN_ROOT, de->d_name);
		if (pin_owner_alive(dir) == pid) {
			snprintf(name, len, "%s", de->d_name);
			err = 0;
			break;
		}
	}
	closedir(d);
	return err;
}

void *bsteer_map_mmap(int fd, size_t *len, bool writable)
{
	struct bpf_map_info info = {};
	__u32 ilen = sizeof(info);
	size_t pg = sysconf(_SC_PAGESIZE), sz;
	void *p;

	if (bpf_obj_get_info_by_fd(fd, &info, &ilen))
		return NULL;
	if (!(info.map_flags & BPF_F_MMAPABLE))
		return NULL;
	sz = (size_t)((info.value_size + 7) & ~7u) * info.max_entries;
	sz = (sz + pg - 1) & ~(pg - 1);
	p = mmap(NULL, sz, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
		 fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	*len = sz;
	return p;
}

static int parser_install(struct bsteer_instance *in);

static int size_maps(struct core_bpf *skel, const struct bsteer_instance_opts *o)
{
	struct {
		struct bpf_map *map;
		__u32 entries;
	} sz[] = {
		{ skel->maps.slots, o->nslots },
		{ skel->maps.slot_meta, o->nslots },
		{ skel->maps.slot_free, o->nslots },
		{ skel->maps.reqs, o->nreqs },
		{ skel->maps.decisions, o->nreqs * BSTEER_REQ_OPS },
		{ skel->maps.fe_hdr, o->nrings * BSTEER_HDR_CONNS },
		{ skel->maps.fe_req, o->nrings * BSTEER_HDR_CONNS },
	};
	size_t i;
	int err;

	err = bpf_map__set_value_size(skel->maps.slots,
				      o->slot_size + BSTEER_SLOT_HEADROOM);
	for (i = 0; !err && i < sizeof(sz) / sizeof(sz[0]); i++)
		err = bpf_map__set_max_entries(sz[i].map, sz[i].entries);
	return err;
}

static void unpin_all(struct bsteer_instance *in)
{
	if (in->pinned)
		rm_tree(in->dir);
	in->pinned = false;
}

void bsteer_instance_close(struct bsteer_instance *in)
{
	int i;

	if (!in)
		return;
	ring_buffer__free(in->events);
	if (in->parser_sys_fd[0] > 0)
		close(in->parser_sys_fd[0]);
	for (i = 0; i < BSTEER_MAP__MAX; i++)
		if (in->map_mem[i])
			munmap(in->map_mem[i], in->map_len[i]);
	unpin_all(in);
	core_bpf__destroy(in->skel);
	free(in);
}

static int attach_hooks(struct bsteer_instance *in, bool complete_hook)
{
	struct core_bpf *s = in->skel;

	s->links.bsteer_ring_create =
		bpf_program__attach(s->progs.bsteer_ring_create);
	if (!s->links.bsteer_ring_create)
		return -errno;
	s->links.bsteer_issue = bpf_program__attach(s->progs.bsteer_issue);
	if (!s->links.bsteer_issue)
		return -errno;
	if (!complete_hook)
		return 0;
	s->links.bsteer_complete = bpf_program__attach(s->progs.bsteer_complete);
	if (!s->links.bsteer_complete)
		return -errno;
	return 0;
}

struct bsteer_instance *bsteer_instance_open(const struct bsteer_instance_opts *o,
					     int *errp)
{
	struct bsteer_instance *in;
	char path[PATH_MAX];
	int err, i, pid;

	bsteer_libbpf_setup(o->verbose);
	if (!bsteer_name_valid(o->name)) {
		bsteer_set_err("invalid instance name '%s': use 1-%d of [A-Za-z0-9._-]",
			       o->name, BSTEER_NAME_MAX);
		*errp = -EINVAL;
		return NULL;
	}
	if (!o->nslots || o->nslots > BSTEER_MAX_SLOTS || !o->nrings ||
	    o->nrings > BSTEER_MAX_RINGS || o->nslots < o->nrings ||
	    !o->nreqs || o->nreqs > BSTEER_MAX_REQS || o->nreqs < o->nrings ||
	    o->ntargets > BSTEER_MAX_TARGETS) {
		bsteer_set_err("bad sizes: slots %u (1..%u), rings %u, requests %u, targets %u",
			       o->nslots, BSTEER_MAX_SLOTS, o->nrings, o->nreqs,
			       o->ntargets);
		*errp = -EINVAL;
		return NULL;
	}
	/* The kernel lays array values out 8-byte aligned: so must slots be. */
	if (!o->slot_size || o->slot_size % 8) {
		bsteer_set_err("bad slot size %u (a positive multiple of 8)", o->slot_size);
		*errp = -EINVAL;
		return NULL;
	}
	in = calloc(1, sizeof(*in));
	if (!in) {
		*errp = -ENOMEM;
		return NULL;
	}
	for (i = 0; i < BSTEER_MAP__MAX; i++)
		in->map_fd[i] = -1;
	snprintf(in->name, sizeof(in->name), "%s", o->name);
	snprintf(in->dir, sizeof(in->dir), "%s/%s", BSTEER_PIN_ROOT, o->name);
	in->nslots = o->nslots;
	in->slot_size = o->slot_size;
	in->nrings = o->nrings;
	in->nreqs = o->nreqs;

	err = bsteer_ensure_bpffs();
	if (err)
		goto fail;
	if (mkdir(BSTEER_PIN_ROOT, 0700) && errno != EEXIST) {
		err = -errno;
		bsteer_set_err("cannot create %s: %s", BSTEER_PIN_ROOT,
			       strerror(errno));
		goto fail;
	}
	if (!access(in->dir, F_OK)) {
		pid = pin_owner_alive(in->dir);
		if (pid) {
			err = -EBUSY;
			bsteer_set_err("instance '%s' is in use by pid %d (pins at %s)",
				       o->name, pid, in->dir);
			goto fail;
		}
		/* Left behind by a process that died: replace it. */
		rm_tree(in->dir);
	}

	in->skel = core_bpf__open();
	if (!in->skel) {
		err = -errno;
		bsteer_set_err("failed to open the core BPF object: %s",
			       strerror(-err));
		goto fail;
	}
	err = size_maps(in->skel, o);
	if (err) {
		bsteer_set_err("failed to size the maps: %s", strerror(-err));
		goto fail;
	}
	err = core_bpf__load(in->skel);
	if (err) {
		bsteer_set_err("failed to load the core BPF programs: %s (%s)",
			       strerror(-err), bsteer_errbuf());
		goto fail;
	}
	err = attach_hooks(in, !o->no_complete_hook);
	if (err) {
		bsteer_set_err("failed to attach the io_uring hooks: %s",
			       strerror(-err));
		goto fail;
	}

	if (mkdir(in->dir, 0700)) {
		err = -errno;
		bsteer_set_err("cannot create %s: %s", in->dir, strerror(errno));
		goto fail;
	}
	in->pinned = true;
	snprintf(path, sizeof(path), "%s/progs", in->dir);
	mkdir(path, 0700);
	for (i = 0; i < BSTEER_MAP__MAX; i++) {
		struct bpf_map *m;

		m = bpf_object__find_map_by_name(in->skel->obj, bsteer_map_names[i]);
		if (!m) {
			err = -ENOENT;
			bsteer_set_err("core object has no map '%s'",
				       bsteer_map_names[i]);
			goto fail;
		}
		in->map_fd[i] = bpf_map__fd(m);
		snprintf(path, sizeof(path), "%s/%s", in->dir, bsteer_map_names[i]);
		err = bpf_map__pin(m, path);
		if (err) {
			bsteer_set_err("failed to pin map %s at %s: %s",
				       bsteer_map_names[i], path, strerror(-err));
			goto fail;
		}
		if (!(bpf_map__map_flags(m) & BPF_F_MMAPABLE))
			continue;
		in->map_mem[i] = bsteer_map_mmap(in->map_fd[i], &in->map_len[i], true);
		if (!in->map_mem[i]) {
			err = -errno ?: -EINVAL;
			bsteer_set_err("failed to map %s into memory: %s",
				       bsteer_map_names[i], strerror(-err));
			goto fail;
		}
	}
	in->pool = in->map_mem[BSTEER_MAP_SLOTS];
	in->meta = in->map_mem[BSTEER_MAP_SLOT_META];
	in->freelist = in->map_mem[BSTEER_MAP_SLOT_FREE];
	in->reqs = in->map_mem[BSTEER_MAP_REQS];
	in->decs = in->map_mem[BSTEER_MAP_DECISIONS];
	in->targets = in->map_mem[BSTEER_MAP_TARGETS];
	in->rings = in->map_mem[BSTEER_MAP_RINGS];
	in->stats = in->map_mem[BSTEER_MAP_STATS];
	in->policy_stats = in->map_mem[BSTEER_MAP_POLICY_STATS];
	in->batch = in->map_mem[BSTEER_MAP_BATCH];
	in->cfg = in->map_mem[BSTEER_MAP_CFG];
	in->info = in->map_mem[BSTEER_MAP_INFO];
	in->fe_hdr = in->map_mem[BSTEER_MAP_FE_HDR];
	in->fe_req = in->map_mem[BSTEER_MAP_FE_REQ];

	in->cfg->ntargets = o->ntargets;
	in->info->abi = BSTEER_ABI_VERSION;
	in->info->pid = getpid();
	bsteer_proc_start_time(getpid(), &in->info->start_time);
	in->info->nslots = o->nslots;
	in->info->slot_size = o->slot_size;
	in->info->nrings = o->nrings;
	snprintf(in->info->kind, sizeof(in->info->kind), "%s",
		 o->kind ? o->kind : "");
	in->info->legs = o->legs ? o->legs : o->ntargets;
	if (o->policy) {
		bsteer_policy_layout(o->policy, in->info->layout,
				     sizeof(in->info->layout));
		bsteer_layout_norm(in->info->layout, sizeof(in->info->layout),
				   in->info->legs);
	}

	err = parser_install(in);
	if (err)
		goto fail;
	if (o->policy) {
		err = bsteer_policy_install(in->dir, in->map_fd, o->policy,
					    o->verbose);
		if (err)
			goto fail;
	}
	*errp = 0;
	return in;
fail:
	bsteer_instance_close(in);
	*errp = err ?: -EINVAL;
	return NULL;
}

int bsteer_pins_open(struct bsteer_pins *p, const char *name)
{
	char path[PATH_MAX];
	int i;

	for (i = 0; i < BSTEER_MAP__MAX; i++)
		p->map_fd[i] = -1;
	if (!bsteer_name_valid(name)) {
		bsteer_set_err("invalid instance name '%s'", name);
		return -EINVAL;
	}
	snprintf(p->dir, sizeof(p->dir), "%s/%s", BSTEER_PIN_ROOT, name);
	if (access(p->dir, F_OK)) {
		bsteer_set_err("no instance '%s' (nothing pinned at %s)", name,
			       p->dir);
		return -ENOENT;
	}
	for (i = 0; i < BSTEER_MAP__MAX; i++) {
		snprintf(path, sizeof(path), "%s/%s", p->dir, bsteer_map_names[i]);
		p->map_fd[i] = bpf_obj_get(path);
		if (p->map_fd[i] < 0) {
			int err = -errno;

			bsteer_set_err("cannot open %s: %s", path, strerror(-err));
			bsteer_pins_close(p);
			return err;
		}
	}
	return 0;
}

void bsteer_pins_close(struct bsteer_pins *p)
{
	int i;

	for (i = 0; i < BSTEER_MAP__MAX; i++) {
		if (p->map_fd[i] >= 0)
			close(p->map_fd[i]);
		p->map_fd[i] = -1;
	}
}

void bsteer_policy_name(const char *spec, char *out, size_t len)
{
	const char *base = strrchr(spec, '/');
	size_t n;

	base = base ? base + 1 : spec;
	n = strlen(base);
	if (n > 6 && !strcmp(base + n - 6, ".bpf.o"))
		n -= 6;
	else if (n > 2 && !strcmp(base + n - 2, ".o"))
		n -= 2;
	if (n >= len)
		n = len - 1;
	memcpy(out, base, n);
	out[n] = 0;
}

static int core_map_id(const char *name)
{
	int i;

	for (i = 0; i < BSTEER_MAP__MAX; i++)
		if (!strcmp(name, bsteer_map_names[i]))
			return i;
	return -1;
}

/*
 * Load a BPF object against an instance's maps (every map it declares by a
 * pinned name is reused), pin its programs under @pdir, and return the fds
 * of its tp_btf program and its syscall twin (owned by the caller).
 *
 * A map of the policy's own (the redirect table, the cow bitmap) is pinned
 * as @dir/NAME the first time and reused by name afterwards, so it outlives
 * swaps and is shared by every policy that declares it.
 */
static int load_shared(struct bpf_object *obj, const char *name,
		       const char *dir, const int *map_fd, const char *pdir,
		       int *tp_fd, int *sys_fd)
{
	struct bpf_program *prog, *tp = NULL, *sys = NULL;
	char path[PATH_MAX + 80];
	struct bpf_map *m;
	int err, i, fd;

	bpf_object__for_each_map(m, obj) {
		i = core_map_id(bpf_map__name(m));
		if (i < 0) {
			if (bpf_map__is_internal(m))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir,
				 bpf_map__name(m));
			fd = bpf_obj_get(path);
			if (fd < 0)
				continue;	/* created and pinned below */
			err = bpf_map__reuse_fd(m, fd);
			close(fd);
		} else {
			err = bpf_map__reuse_fd(m, map_fd[i]);
		}
		if (err) {
			bsteer_set_err("%s: cannot share map %s (a map of that name with another shape is pinned?): %s",
				       name, bpf_map__name(m), strerror(-err));
			return err;
		}
	}
	bpf_object__for_each_program(prog, obj) {
		enum bpf_prog_type t = bpf_program__type(prog);

		if (t == BPF_PROG_TYPE_TRACING && !tp)
			tp = prog;
		else if (t == BPF_PROG_TYPE_SYSCALL && !sys)
			sys = prog;
	}
	if (!tp || !sys) {
		bsteer_set_err("%s needs a tp_btf/io_uring_complete program and its syscall twin",
			       name);
		return -EINVAL;
	}
	err = bpf_object__load(obj);
	if (err) {
		char why[512];

		if (verifier_why[0]) {
			bsteer_set_err("%s failed to load: %s (-v shows the verifier's whole log)",
				       name, verifier_why);
			return err;
		}
		snprintf(why, sizeof(why), "%s", bsteer_errbuf());
		bsteer_set_err("%s failed to load: %s%s%s", name, strerror(-err),
			       *why ? ": " : "", why);
		return err;
	}
	bpf_object__for_each_map(m, obj) {
		if (core_map_id(bpf_map__name(m)) >= 0 || bpf_map__is_internal(m))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, bpf_map__name(m));
		if (!access(path, F_OK))
			continue;
		err = bpf_map__pin(m, path);
		if (err) {
			bsteer_set_err("cannot pin %s: %s", path, strerror(-err));
			return err;
		}
	}
	rm_tree(pdir);
	if (mkdir(pdir, 0700)) {
		err = -errno;
		bsteer_set_err("cannot create %s: %s", pdir, strerror(errno));
		return err;
	}
	bpf_object__for_each_program(prog, obj) {
		snprintf(path, sizeof(path), "%s/%s", pdir, bpf_program__name(prog));
		err = bpf_program__pin(prog, path);
		if (err) {
			bsteer_set_err("cannot pin %s: %s", path, strerror(-err));
			return err;
		}
	}
	*tp_fd = dup(bpf_program__fd(tp));
	*sys_fd = dup(bpf_program__fd(sys));
	if (*tp_fd < 0 || *sys_fd < 0)
		return -errno;
	return 0;
}

/* The NBD header parser, into entry BSTEER_PARSER_NBD of "parsers". */
static int parser_install(struct bsteer_instance *in)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = "nbd");
	char pdir[PATH_MAX];
	struct bpf_object *obj;
	const void *bytes;
	__u32 key = BSTEER_PARSER_NBD;
	size_t sz;
	int err, tp = -1;

	bytes = nbd_bpf__elf_bytes(&sz);
	obj = bpf_object__open_mem(bytes, sz, &oo);
	if (!obj)
		return -errno;
	snprintf(pdir, sizeof(pdir), "%s/progs/parser-nbd", in->dir);
	err = load_shared(obj, "parser nbd", in->dir, in->map_fd, pdir, &tp,
			  &in->parser_sys_fd[0]);
	if (!err && bpf_map_update_elem(in->map_fd[BSTEER_MAP_PARSERS], &key,
					&tp, BPF_ANY)) {
		err = -errno;
		bsteer_set_err("cannot activate the nbd parser: %s", strerror(-err));
	}
	if (tp >= 0)
		close(tp);
	bpf_object__close(obj);
	return err;
}

int bsteer_parse_fallback(struct bsteer_instance *in, __u64 ud, __s32 res)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	struct bsteer_parse_args args = { .user_data = ud, .res = res };
	__u32 p = bsteer_parse_ud_parser(ud);

	if (p != BSTEER_PARSER_NBD || in->parser_sys_fd[p] <= 0)
		return -ENOENT;
	opts.ctx_in = &args;
	opts.ctx_size_in = sizeof(args);
	return bpf_prog_test_run_opts(in->parser_sys_fd[p], &opts) ? -errno : 0;
}

int bsteer_policy_load(const char *dir, const int *map_fd, const char *spec,
		       bool verbose)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	const struct bsteer_policy_desc *d = bsteer_policy_find(spec);
	char name[64], pdir[PATH_MAX], what[80];
	struct bpf_object *obj;
	int err, tp = -1, sys = -1;

	bsteer_libbpf_setup(verbose);
	bsteer_policy_name(spec, name, sizeof(name));
	bsteer_set_err("%s", "");
	if (d) {
		size_t sz;
		const void *bytes = d->elf_bytes(&sz);

		oo.object_name = d->name;
		obj = bpf_object__open_mem(bytes, sz, &oo);
	} else if (strchr(spec, '/') || strstr(spec, ".o")) {
		obj = bpf_object__open_file(spec, &oo);
	} else {
		bsteer_set_err("unknown policy '%s' (see 'bsteer policy list', or give a path to a .bpf.o)",
			       spec);
		return -ENOENT;
	}
	if (!obj) {
		err = -errno;
		bsteer_set_err("cannot open policy %s: %s", spec, strerror(-err));
		return err;
	}
	snprintf(pdir, sizeof(pdir), "%s/progs/%s", dir, name);
	snprintf(what, sizeof(what), "policy %s", name);
	err = load_shared(obj, what, dir, map_fd, pdir, &tp, &sys);
	if (tp >= 0)
		close(tp);
	if (sys >= 0)
		close(sys);
	bpf_object__close(obj);
	return err;
}

/* The hook program and its twin pinned under @pdir, by program type. */
static int pinned_pair(const char *pdir, int *tp, int *sys)
{
	char path[PATH_MAX + 256];
	struct dirent *de;
	DIR *dp = opendir(pdir);

	*tp = *sys = -1;
	if (!dp)
		return -errno;
	while ((de = readdir(dp))) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", pdir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (!bpf_obj_get_info_by_fd(fd, &info, &len)) {
			if (info.type == BPF_PROG_TYPE_TRACING && *tp < 0) {
				*tp = fd;
				continue;
			}
			if (info.type == BPF_PROG_TYPE_SYSCALL && *sys < 0) {
				*sys = fd;
				continue;
			}
		}
		close(fd);
	}
	closedir(dp);
	return *tp >= 0 && *sys >= 0 ? 0 : -ENOENT;
}

int bsteer_policy_activate(const char *dir, const int *map_fd, const char *name)
{
	char pdir[PATH_MAX];
	__u32 zero = 0;
	int err, tp, sys;

	snprintf(pdir, sizeof(pdir), "%s/progs/%s", dir, name);
	err = pinned_pair(pdir, &tp, &sys);
	if (err) {
		bsteer_set_err("policy %s is not loaded in this instance (no programs pinned at %s)",
			       name, pdir);
		goto out;
	}
	/* The twin first: a fallback never runs a policy the hook dropped. */
	err = bpf_map_update_elem(map_fd[BSTEER_MAP_POLICY_SYS], &zero, &sys, BPF_ANY);
	if (!err)
		err = bpf_map_update_elem(map_fd[BSTEER_MAP_POLICY], &zero, &tp,
					  BPF_ANY);
	if (err) {
		err = -errno;
		bsteer_set_err("cannot activate policy %s: %s", name,
			       strerror(-err));
		goto out;
	}
	{
		struct bsteer_info inf;

		if (!bpf_map_lookup_elem(map_fd[BSTEER_MAP_INFO], &zero, &inf)) {
			snprintf(inf.policy, sizeof(inf.policy), "%s", name);
			bpf_map_update_elem(map_fd[BSTEER_MAP_INFO], &zero, &inf,
					    BPF_ANY);
		}
	}
out:
	if (tp >= 0)
		close(tp);
	if (sys >= 0)
		close(sys);
	return err;
}

int bsteer_policy_install(const char *dir, const int *map_fd, const char *spec,
			  bool verbose)
{
	char name[64];
	int err = bsteer_policy_load(dir, map_fd, spec, verbose);

	if (err)
		return err;
	bsteer_policy_name(spec, name, sizeof(name));
	return bsteer_policy_activate(dir, map_fd, name);
}

int bsteer_prog_in_array(int map_fd, char *out, size_t len, __u32 *id)
{
	struct bpf_prog_info info = {};
	__u32 ilen = sizeof(info), zero = 0, pid;
	int fd;

	*id = 0;
	snprintf(out, len, "(none)");
	if (bpf_map_lookup_elem(map_fd, &zero, &pid))
		return 0;
	fd = bpf_prog_get_fd_by_id(pid);
	if (fd < 0)
		return -errno;
	if (!bpf_obj_get_info_by_fd(fd, &info, &ilen)) {
		snprintf(out, len, "%s", info.name);
		*id = info.id;
	}
	close(fd);
	return 0;
}

int bsteer_active_policy(int policy_map_fd, char *out, size_t len)
{
	__u32 id;
	size_t n;
	int err = bsteer_prog_in_array(policy_map_fd, out, len, &id);

	n = strlen(out);
	if (!err && id && n > 3 && !strcmp(out + n - 3, "_tp"))
		out[n - 3] = 0;
	return err;
}
