// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The FUSE frontend, the main thread's part: everything checked before
 * anything changes (the kernel can do it, the mount point is an empty
 * directory, or a stale mount of ours that is found and removed), then
 * /dev/fuse, the mount and INIT; once the workers serve, the loop devices;
 * at the end, the loops detached and the file system unmounted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <linux/loop.h>
#include "frontend/fuse_priv.h"

#define ENABLE_URING	"/sys/module/fuse/parameters/enable_uring"
#define FSTYPE		"fuse.bsteer"
#define INIT_WAIT_MS	5000	/* the kernel sends INIT within mount(2) */

int fuse_queues(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
	char buf[256], *p;
	int last = -1;

	if (!f)
		return -errno;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	/* "0-1", "0-3,8-11": the highest CPU bounds the queues. */
	for (p = buf; *p; p++) {
		if ((*p >= '0' && *p <= '9') && (p == buf || p[-1] == '-' || p[-1] == ','))
			last = atoi(p) > last ? atoi(p) : last;
	}
	return last < 0 ? -EINVAL : last + 1;
}

__u32 fuse_slots_per_worker(const struct fuse_conf *c, __u32 threads)
{
	int q = fuse_queues();

	if (q <= 0 || c->dev)
		return c->dev ? 1 : 0;
	return ((q + threads - 1) / threads) * c->depth;
}

/* ---- checks ---- */

/* The transport the kernel can give: its switch on, or -errno and why. */
static int uring_available(void)
{
	char c = 0;
	int fd = open(ENABLE_URING, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		bsteer_set_err("this kernel has no FUSE over io_uring (%s: %s); use --fuse-transport=dev",
			       ENABLE_URING, strerror(errno));
		return -EOPNOTSUPP;
	}
	if (read(fd, &c, 1) == 1 && c == 'Y') {
		close(fd);
		return 0;
	}
	/* It is off at boot; a server that wants it turns it on. */
	if (pwrite(fd, "1", 1, 0) != 1) {
		bsteer_set_err("cannot turn on FUSE over io_uring (%s): %s", ENABLE_URING,
			       strerror(errno));
		close(fd);
		return -EPERM;
	}
	close(fd);
	return 1;
}

/* The filesystem type and device of mount point @dir, from mountinfo. */
static bool mounted_at(const char *dir, char *fstype, size_t len, dev_t *dev)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096], mnt[PATH_MAX], type[128];
	unsigned maj, min;
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) != 3 ||
		    !sep || sscanf(sep + 3, "%127s", type) != 1 || strcmp(mnt, dir))
			continue;
		snprintf(fstype, len, "%s", type);
		*dev = makedev(maj, min);
		found = true;	/* the last one is on top */
	}
	fclose(f);
	return found;
}

/* Detach every loop device backed by a file of device @dev. */
static void loops_detach_dev(dev_t dev)
{
	struct loop_info64 li;
	char path[64];
	struct dirent *de;
	DIR *d = opendir("/sys/block");
	int fd;

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "loop", 4))
			continue;
		snprintf(path, sizeof(path), "/dev/%s", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!ioctl(fd, LOOP_GET_STATUS64, &li) && li.lo_device == dev)
			ioctl(fd, LOOP_CLR_FD, 0);
		close(fd);
	}
	closedir(d);
}

/*
 * A mount of ours at @dir whose server is gone (its files answer ENOTCONN):
 * its loop devices detached and it unmounted. A live one is refused.
 */
static int clear_stale(const char *dir, const char *type, dev_t dev)
{
	struct stat st;

	if (strcmp(type, FSTYPE)) {
		bsteer_set_err("%s is busy: a %s file system is mounted there", dir, type);
		return -EBUSY;
	}
	if (!stat(dir, &st) || errno != ENOTCONN) {
		bsteer_set_err("%s is busy: another bsteer server serves it", dir);
		return -EBUSY;
	}
	loops_detach_dev(dev);
	if (umount2(dir, MNT_DETACH)) {
		bsteer_set_err("cannot remove the stale mount at %s: %s", dir,
			       strerror(errno));
		return -errno;
	}
	return 1;
}

static int dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n ? -ENOTEMPTY : 0;
}

/* The mount point: an existing, empty directory (a stale mount of ours cleared). */
static int check_dir(struct bsteer_fe *fe, const char *dir)
{
	char type[128];
	struct stat st;
	dev_t dev = 0;
	int err;

	if (mounted_at(dir, type, sizeof(type), &dev)) {
		err = clear_stale(dir, type, dev);
		if (err < 0)
			return err;
		serve_warn(fe->s, "fuse: removed a stale mount at %s (its server was gone)",
			  dir);
	}
	if (stat(dir, &st)) {
		bsteer_set_err("cannot use %s as the mount point: %s", dir, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		bsteer_set_err("%s is not a directory", dir);
		return -ENOTDIR;
	}
	err = dir_empty(dir);
	if (err)
		bsteer_set_err("%s is not empty: mount over an empty directory", dir);
	return err;
}

int fuse_check(struct bsteer_fe *fe)
{
	const struct fuse_conf *conf = fe->conf;
	char dir[PATH_MAX];
	int err;

	if (!realpath(conf->dir, dir)) {
		bsteer_set_err("cannot use %s as the mount point: %s", conf->dir,
			       strerror(errno));
		return -errno;
	}
	if (!conf->dev) {
		err = uring_available();
		if (err < 0)
			return err;
		if (err)
			serve_log(fe->s, "fuse: turned on FUSE over io_uring (%s)",
				  ENABLE_URING);
	}
	return check_dir(fe, dir);
}

/* ---- the mount and INIT ---- */

/* INIT, which the kernel sent as it mounted: its header and its argument. */
static int init_read(struct fuse_shared *sh, struct fuse_in_header *in,
		     struct fuse_init_in *ii)
{
	/* A read of /dev/fuse takes a buffer for the largest write. */
	unsigned char *buf = malloc(FUSE_DEV_BUF);
	struct pollfd pfd = { .fd = sh->fd, .events = POLLIN };
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = poll(&pfd, 1, INIT_WAIT_MS) == 1 ? read(sh->fd, buf, FUSE_DEV_BUF) : -1;
	if (n >= (ssize_t)(sizeof(*in) + sizeof(*ii))) {
		memcpy(in, buf, sizeof(*in));
		memcpy(ii, buf + sizeof(*in), sizeof(*ii));
	}
	free(buf);
	if (n < (ssize_t)(sizeof(*in) + sizeof(*ii)) || in->opcode != FUSE_INIT) {
		bsteer_set_err("fuse: no INIT from the kernel");
		return -EPROTO;
	}
	return 0;
}

/* Answer INIT: the ring transport (unless dev), and the largest request. */
static int init_handshake(struct fuse_shared *sh, const struct fuse_conf *conf,
			  __u32 slot_size)
{
	struct fuse_in_header in;
	struct fuse_init_in ii;
	struct fuse_out_header oh;
	struct fuse_init_out io = {};
	struct iovec v[2] = { { &oh, sizeof(oh) }, { &io, sizeof(io) } };
	__u64 offered;
	int err = init_read(sh, &in, &ii);

	if (err)
		return err;
	offered = ii.flags | ((__u64)ii.flags2 << 32);
	if (!conf->dev && !(offered & FUSE_OVER_IO_URING)) {
		bsteer_set_err("fuse: the kernel did not offer FUSE over io_uring (protocol 7.%u); use --fuse-transport=dev",
			       ii.minor);
		return -EOPNOTSUPP;
	}
	sh->max_write = slot_size < FUSE_MAX_WRITE ? slot_size : FUSE_MAX_WRITE;
	io.major = FUSE_KERNEL_VERSION;
	io.minor = ii.minor < BSTEER_FUSE_MINOR ? ii.minor : BSTEER_FUSE_MINOR;
	io.max_readahead = ii.max_readahead;
	/*
	 * ASYNC_DIO: a loop device's direct I/O stays queued (measured: 4K
	 * QD32 reads 132 K IOPS with it, 40 K without); max_background high
	 * enough for that queue depth.
	 */
	io.flags = offered & (FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ASYNC_DIO |
			      FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES |
			      FUSE_NO_OPENDIR_SUPPORT | FUSE_INIT_EXT);
	io.flags2 = conf->dev ? 0 : FUSE_OVER_IO_URING >> 32;
	io.max_background = 128;
	io.congestion_threshold = 96;
	io.max_write = sh->max_write;
	io.max_pages = sh->max_write / 4096;
	io.time_gran = 1;
	oh.len = sizeof(oh) + sizeof(io);
	oh.error = 0;
	oh.unique = in.unique;
	if (writev(sh->fd, v, 2) != (ssize_t)oh.len) {
		bsteer_set_err("fuse: cannot answer INIT: %s", strerror(errno));
		return -EPROTO;
	}
	sh->ring = !conf->dev;
	return 0;
}

int fuse_setup(struct bsteer_fe *fe)
{
	const struct fuse_conf *conf = fe->conf;
	struct fuse_shared *sh = calloc(1, sizeof(*sh));
	char opts[128];
	int q, k;

	if (!sh)
		return -ENOMEM;
	fe->shared = sh;
	for (k = 0; k < BSTEER_MAX_EXPORTS; k++)
		sh->loop[k].fd = -1;
	sh->mount_time = time(NULL);
	q = fuse_queues();
	if (q <= 0 || !realpath(conf->dir, sh->dir)) {
		bsteer_set_err("fuse: cannot count the possible CPUs or find %s", conf->dir);
		return -EINVAL;
	}
	sh->nqueues = q;
	sh->fd = open("/dev/fuse", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (sh->fd < 0) {
		bsteer_set_err("cannot open /dev/fuse: %s", strerror(errno));
		return -errno;
	}
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other",
		 sh->fd);
	if (mount("bsteer", sh->dir, FSTYPE, MS_NOSUID | MS_NODEV, opts)) {
		bsteer_set_err("cannot mount FUSE at %s: %s", sh->dir, strerror(errno));
		return -errno;
	}
	sh->mounted = true;
	return init_handshake(sh, conf, fe->s->in->slot_size);
}

/* ---- loop devices ---- */

/* A loop device on export @k's file: direct I/O, 4096-byte blocks. */
static int loop_attach(struct fuse_shared *sh, const struct bsteer_export *ex,
		       struct fuse_loop *l)
{
	struct loop_config lc = { .block_size = 4096 };
	char path[PATH_MAX + 70];
	int ctl, nr = -1, file, err = 0, tries;

	snprintf(path, sizeof(path), "%s/%s", sh->dir, ex->name);
	file = open(path, (ex->rdonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (file < 0 || ctl < 0) {
		err = -errno;
		bsteer_set_err("cannot open %s: %s", file < 0 ? path : "/dev/loop-control",
			       strerror(-err));
		goto out;
	}
	lc.fd = file;
	/* Autoclear: when the last user closes it (we, or we were killed). */
	lc.info.lo_flags = LO_FLAGS_DIRECT_IO | LO_FLAGS_AUTOCLEAR |
			   (ex->rdonly ? LO_FLAGS_READ_ONLY : 0);
	snprintf((char *)lc.info.lo_file_name, sizeof(lc.info.lo_file_name), "%s", path);
	/* Another process may take the free device first: ask again. */
	for (tries = 0; tries < 8; tries++) {
		nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0)
			break;
		snprintf(l->path, sizeof(l->path), "/dev/loop%d", nr);
		l->fd = open(l->path, O_RDWR | O_CLOEXEC);
		if (l->fd >= 0 && !ioctl(l->fd, LOOP_CONFIGURE, &lc))
			break;
		if (l->fd >= 0)
			close(l->fd);
		l->fd = -1;
	}
	if (l->fd < 0) {
		err = -errno ?: -EBUSY;
		bsteer_set_err("no loop device for %s: %s", path, strerror(-err));
		goto out;
	}
	l->nr = nr;
out:
	if (file >= 0)
		close(file);
	if (ctl >= 0)
		close(ctl);
	return err;
}

/* Requests no larger than the entries take: split bios cost a request more. */
static void loop_tune(const struct fuse_loop *l, __u32 max_write)
{
	char path[96], val[16];
	int fd, n;

	snprintf(path, sizeof(path), "/sys/block/loop%d/queue/max_sectors_kb", l->nr);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = snprintf(val, sizeof(val), "%u", max_write >> 10);
	if (write(fd, val, n) != n)
		(void)0;	/* the default still works, split */
	close(fd);
}

/* The workers serve: the loop devices, and the word that it is ready. */
void fuse_ready(struct bsteer_fe *fe)
{
	const struct fuse_conf *conf = fe->conf;
	struct fuse_shared *sh = fe->shared;
	struct bsteer_server *s = fe->s;
	int k;

	for (k = 0; conf->loop && k < s->nexports; k++) {
		if (loop_attach(sh, &s->exports[k], &sh->loop[k])) {
			serve_err(s, "fuse: export '%s': %s", s->exports[k].name,
				  bsteer_errbuf());
			continue;
		}
		loop_tune(&sh->loop[k], sh->max_write);
		bsteer_server_export_device(s, k, sh->loop[k].path);
		serve_log(s, "export %s: %s", s->exports[k].name, sh->loop[k].path);
	}
	serve_log(s, "serving on %s (FUSE over %s, %u queue%s; instance %s)", sh->dir,
		  sh->ring ? "io_uring" : "/dev/fuse", sh->nqueues,
		  sh->nqueues > 1 ? "s" : "", s->in->name);
}

/*
 * Stopping (main thread, the workers still serving): the loop devices let
 * go of their files, and the mount goes (lazily, so that an open file
 * does not stop it); the kernel then ends the entries.
 */
void fuse_quiesce(struct bsteer_fe *fe)
{
	struct fuse_shared *sh = fe->shared;
	int k;

	if (!sh)
		return;
	for (k = 0; k < BSTEER_MAX_EXPORTS; k++) {
		struct fuse_loop *l = &sh->loop[k];

		if (l->fd < 0)
			continue;
		/* A device in use (a mounted file system) goes when let go. */
		if (ioctl(l->fd, LOOP_CLR_FD, 0))
			serve_warn(fe->s, "fuse: %s is in use: it detaches when its last user lets go",
				  l->path);
		close(l->fd);
		l->fd = -1;
	}
	if (sh->mounted && !umount2(sh->dir, MNT_DETACH))
		sh->mounted = false;
}

void fuse_teardown(struct bsteer_fe *fe)
{
	struct fuse_shared *sh = fe->shared;

	if (!sh)
		return;
	fuse_quiesce(fe);
	if (sh->fd >= 0)
		close(sh->fd);
	free(sh);
	fe->shared = NULL;
}
