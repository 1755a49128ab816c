// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The processes a trace follows: a COMMAND started behind a gate, so that
 * none of its buffers are registered before the tracer is attached; the
 * children that the given processes forked before the start, from /proc;
 * and the ones gone, dropped from the filter.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "trace/trace_priv.h"

static int proc_ppid(int pid)
{
	char path[64], buf[512], *p;
	int ppid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		if (p && sscanf(p + 1, " %*c %d", &ppid) != 1)
			ppid = -1;
	}
	fclose(f);
	return ppid;
}

struct pidset {
	int *v;
	int n;
};

static bool pidset_has(const struct pidset *set, int pid)
{
	int i;

	for (i = 0; i < set->n; i++)
		if (set->v[i] == pid)
			return true;
	return false;
}

/*
 * One pass over /proc: a process whose parent is in @set joins it, and
 * the filter. 1 if one did, 0 if none, -1 if /proc cannot be read.
 */
static int adopt_children(struct bsteer_tracer *t, struct pidset *set)
{
	struct dirent *de;
	int grew = 0, *v;
	DIR *d;

	d = opendir("/proc");
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		int pid = atoi(de->d_name);

		if (pid <= 0 || pidset_has(set, pid) ||
		    !pidset_has(set, proc_ppid(pid)))
			continue;
		v = realloc(set->v, sizeof(int) * (set->n + 1));
		if (!v)
			continue;
		set->v = v;
		set->v[set->n++] = pid;
		bsteer_tracer_add_pid(t, pid);
		grew = 1;
	}
	closedir(d);
	return grew;
}

/* Children that @pids forked before the trace attached join the filter. */
void trace_add_descendants(struct bsteer_tracer *t, const int *pids, int npids)
{
	struct pidset set = { .v = malloc(sizeof(int) * npids), .n = npids };

	if (!set.v)
		return;
	memcpy(set.v, pids, sizeof(int) * npids);
	/*
	 * Until a pass adds none: a grandchild listed before its parent
	 * joins on the next one.
	 */
	while (adopt_children(t, &set) > 0)
		;
	free(set.v);
}

bool trace_map_empty(int fd)
{
	__u64 k;

	return bpf_map_get_next_key(fd, NULL, &k) != 0;
}

/*
 * Processes that exited before the exit hook could see them (between the
 * start and the attach, or a child added from /proc as it died) would keep
 * the trace waiting for ever: drop the ones that are gone.
 */
void trace_prune_pids(int fd)
{
	__u32 key, next, *pk = NULL, gone[64];
	int n = 0, i;

	while (!bpf_map_get_next_key(fd, pk, &next) && n < 64) {
		key = next;
		pk = &key;
		if (kill((pid_t)key, 0) && errno == ESRCH)
			gone[n++] = key;
	}
	for (i = 0; i < n; i++)
		bpf_map_delete_elem(fd, &gone[i]);
}

/*
 * Start @argv stopped at a pipe; it execs when the tracer is ready, with
 * @out_fd as its stdout (-1: ours).
 */
int trace_spawn(char *const *argv, int out_fd, int *gate)
{
	int p[2], pid;
	char c;

	if (pipe(p))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(127);
		close(p[0]);
		if (out_fd >= 0 && out_fd != STDOUT_FILENO &&
		    dup2(out_fd, STDOUT_FILENO) < 0)
			_exit(127);
		execvp(argv[0], argv);
		fprintf(stderr, "bsteer trace: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	close(p[0]);
	*gate = p[1];
	return pid;
}
