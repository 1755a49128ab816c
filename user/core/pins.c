// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Pins: bpffs, instance names, the pin tree of an instance and who owns
 * it, and a running instance's maps opened from their pins.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "core/engine.h"

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
	[BSTEER_MAP_FE_STATS]		= "fe_stats",
	[BSTEER_MAP_PARSERS]		= "parsers",
};

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
int rm_tree(const char *path)
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
int pin_owner_alive(const char *dir)
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

int bsteer_instance_status(const char *name, struct bsteer_instance_status *st)
{
	char path[PATH_MAX];
	__u32 zero = 0;
	int fd;

	memset(st, 0, sizeof(*st));
	if (!bsteer_name_valid(name))
		return -EINVAL;
	snprintf(st->name, sizeof(st->name), "%s", name);
	snprintf(path, sizeof(path), "%s/%s", BSTEER_PIN_ROOT, name);
	if (access(path, F_OK))
		return -ENOENT;
	st->live_pid = pin_owner_alive(path);
	snprintf(path, sizeof(path), "%s/%s/info", BSTEER_PIN_ROOT, name);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		st->has_info = !bpf_map_lookup_elem(fd, &zero, &st->info);
		close(fd);
	}
	return 0;
}

static int status_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bsteer_instance_status *)a)->name,
		      ((const struct bsteer_instance_status *)b)->name);
}

int bsteer_instances(struct bsteer_instance_status *out, int max)
{
	struct dirent *de;
	DIR *d = opendir(BSTEER_PIN_ROOT);
	int n = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) && n < max)
		if (de->d_name[0] != '.' && !bsteer_instance_status(de->d_name, &out[n]))
			n++;
	closedir(d);
	qsort(out, n, sizeof(*out), status_cmp);
	return n;
}

int bsteer_instance_clean(const char *name)
{
	struct bsteer_instance_status st;
	char dir[PATH_MAX];
	int err = bsteer_instance_status(name, &st);

	if (err)
		return err;
	if (st.live_pid)
		return -EBUSY;
	snprintf(dir, sizeof(dir), "%s/%s", BSTEER_PIN_ROOT, name);
	/* Its XDP programs, still attached after a SIGKILL: ours to detach. */
	bsteer_access_detach_stale(dir, NULL, 0);
	return rm_tree(dir);
}

int bsteer_staging_clean(bool dry, void (*each)(const char *dir, int pid, void *arg), void *arg)
{
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(BSTEER_PIN_ROOT);
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char *end;
		long pid;

		if (de->d_name[0] != '+')
			continue;
		pid = strtol(de->d_name + 1, &end, 10);
		if (*end != '+' || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", BSTEER_PIN_ROOT, de->d_name);
		if (!dry && rm_tree(dir))
			continue;
		if (each)
			each(de->d_name, (int)pid, arg);
		n++;
	}
	closedir(d);
	return n;
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

