// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The loader: BPF objects loaded against an instance's maps (policies and
 * frontend parsers), their programs pinned, and made active; libbpf's
 * messages routed to -v or to the error buffer.
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
#include "core/engine.h"

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
 * Every map @obj declares by the name of one the instance has (the core's,
 * or one a policy pinned before) is that map. The rest are created at load.
 */
static int reuse_maps(struct bpf_object *obj, const char *name, const char *dir,
		      const int *map_fd)
{
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
				continue;	/* created, and pinned after the load */
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
	return 0;
}

static int load_object(struct bpf_object *obj, const char *name)
{
	char why[512];
	int err = bpf_object__load(obj);

	if (!err)
		return 0;
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

/* The object's own maps, new ones pinned as @dir/NAME; its programs in @pdir. */
static int pin_object(struct bpf_object *obj, const char *dir, const char *pdir)
{
	char path[PATH_MAX + 80];
	struct bpf_program *prog;
	struct bpf_map *m;
	int err;

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
	return 0;
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
	int err = reuse_maps(obj, name, dir, map_fd);

	if (err)
		return err;
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
	err = load_object(obj, name);
	if (!err)
		err = pin_object(obj, dir, pdir);
	if (err)
		return err;
	*tp_fd = dup(bpf_program__fd(tp));
	*sys_fd = dup(bpf_program__fd(sys));
	if (*tp_fd < 0 || *sys_fd < 0)
		return -errno;
	return 0;
}

/* Frontend @id's header parser, into entry @id of "parsers". */
static int parser_install(struct bsteer_instance *in, __u32 id,
			  const struct bsteer_frontend_ops *fe)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = fe->name);
	char pdir[PATH_MAX], what[64];
	struct bpf_object *obj;
	const void *bytes;
	size_t sz;
	int err, tp = -1;

	bytes = fe->parser(&sz);
	obj = bpf_object__open_mem(bytes, sz, &oo);
	if (!obj)
		return -errno;
	snprintf(pdir, sizeof(pdir), "%s/progs/parser-%s", in->dir, fe->name);
	snprintf(what, sizeof(what), "parser %s", fe->name);
	err = load_shared(obj, what, in->dir, in->map_fd, pdir, &tp,
			  &in->parser_sys_fd[id]);
	if (!err && bpf_map_update_elem(in->map_fd[BSTEER_MAP_PARSERS], &id,
					&tp, BPF_ANY)) {
		err = -errno;
		bsteer_set_err("cannot activate the %s parser: %s", fe->name,
			       strerror(-err));
	}
	if (tp >= 0)
		close(tp);
	bpf_object__close(obj);
	return err;
}

/* The parsers of the frontends in @frontends (bit i: id i), from the registry. */
int parsers_install(struct bsteer_instance *in, __u32 frontends)
{
	const struct bsteer_frontend_ops *fe;
	__u32 id;
	int err;

	for (id = 0; id < BSTEER_FRONTEND_IDS && bsteer_frontend_modules[id]; id++) {
		fe = bsteer_frontend_modules[id];
		if (!(frontends & (1u << id)) || !fe->parser)
			continue;
		err = parser_install(in, id, fe);
		if (err)
			return err;
	}
	return 0;
}

int bsteer_parse_fallback(struct bsteer_instance *in, __u64 ud, __s32 res)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	struct bsteer_parse_args args = { .user_data = ud, .res = res };
	__u32 p = bsteer_parse_ud_parser(ud);

	if (p >= BSTEER_FRONTEND_IDS || in->parser_sys_fd[p] <= 0)
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
