// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer cow: look at and merge the overlay of a cow export. Offline: the
 * bitmap file's lock keeps a running bsteer serve and a commit apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>
#include "cli/cli.h"
#include "policy/cowmap.h"

static const char cow_usage[] =
"USAGE: bsteer cow status BASE OVERLAY [--map PATH] [--json]\n"
"       bsteer cow commit BASE OVERLAY [--map PATH] [--json]\n"
"\n"
"A cow export (bsteer serve --export NAME=BASE,OVERLAY,policy=cow) keeps\n"
"every write in OVERLAY and a bitmap of the chunks there in\n"
"OVERLAY.cowmap. 'status' counts those chunks. 'commit' copies them into\n"
"BASE, makes BASE durable, then empties the bitmap and punches the\n"
"overlay's copies out: BASE then holds what clients saw. An interrupted\n"
"commit is safe to run again. Both refuse while a server uses the overlay.\n"
"\n"
"OPTIONS:\n"
"  -m, --map PATH   the bitmap file (default OVERLAY.cowmap)\n"
"  -j, --json       machine-readable output\n"
"  -h, --help       this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer cow status base.img overlay.img\n"
"  bsteer cow commit base.img overlay.img --json\n";

static __u64 count_bits(const struct cowmap *m)
{
	__u64 i, n = 0;

	for (i = 0; i < m->nwords; i++)
		n += __builtin_popcountll(m->saved[i]);
	return n;
}

static int copy_chunk(int from, int to, __u64 off, __u64 len, char *buf)
{
	ssize_t n;

	n = pread(from, buf, len, off);
	if (n != (ssize_t)len)
		return n < 0 ? -errno : -EIO;
	n = pwrite(to, buf, len, off);
	if (n != (ssize_t)len)
		return n < 0 ? -errno : -ENOSPC;
	return 0;
}

static int cow_commit(struct cowmap *m, int base, int ov, bool json,
		      const char *bpath)
{
	__u64 c, done = 0, total = count_bits(m), t0 = bsteer_now_ns();
	bool tty = !json && isatty(STDERR_FILENO);
	char *buf = malloc(m->chunk);
	int err = 0;

	if (!buf)
		return -ENOMEM;
	install_signals();
	for (c = 0; c < m->nchunks && !err; c++) {
		__u64 off = c * m->chunk, len = m->chunk;

		if (!((m->saved[c / 64] >> (c % 64)) & 1))
			continue;
		if (off + len > m->size)
			len = m->size - off;
		err = copy_chunk(ov, base, off, len, buf);
		done++;
		if (tty && (done % 256 == 0 || done == total))
			fprintf(stderr, "\rbsteer cow: %llu/%llu chunks", (unsigned long long)done,
				(unsigned long long)total);
		if (exiting)
			err = -EINTR;
	}
	if (tty && total)
		fputc('\n', stderr);
	free(buf);
	if (err) {
		fprintf(stderr, "bsteer cow: commit stopped at chunk %llu: %s (run it again)\n",
			(unsigned long long)c, strerror(-err));
		return err;
	}
	/* Only once the base holds it all may the overlay forget it. */
	if (fsync(base)) {
		err = -errno;
		fprintf(stderr, "bsteer cow: fsync %s: %s\n", bpath, strerror(errno));
		return err;
	}
	err = cowmap_clear(m);
	if (err) {
		fprintf(stderr, "bsteer cow: cannot clear %s: %s\n", m->path,
			strerror(-err));
		return err;
	}
	fallocate(ov, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, m->size);
	if (json) {
		struct bsteer_json j;

		json_begin(&j, stdout);
		json_str(&j, "base", bpath);
		json_u64(&j, "chunk", m->chunk);
		json_u64(&j, "chunks_committed", done);
		json_u64(&j, "bytes_committed", done * m->chunk);
		json_dbl(&j, "seconds", (bsteer_now_ns() - t0) / 1e9);
		json_finish(&j);
	} else {
		printf("committed %llu chunks of %llu bytes into %s\n",
		       (unsigned long long)done, (unsigned long long)m->chunk, bpath);
	}
	return 0;
}

struct cow_args {
	const char *map, *bpath, *opath;
	char mpath[PATH_MAX];
	bool json, commit;
};

/* 0 to go on, 1 to stop with status 0, 2 (a usage error) with 2. */
static int cow_parse(struct cow_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "map", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "m:jh", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (!*optarg)
				return cli_usage("cow", "--map: an empty file name");
			a->map = optarg;
			break;
		case 'j':
			a->json = true;
			break;
		case 'h':
			fputs(cow_usage, stdout);
			return 1;
		default:
			return cli_bad_option("cow", argv);
		}
	}
	if (argc - optind != 3 || (strcmp(argv[optind], "status") &&
				   strcmp(argv[optind], "commit")))
		return cli_usage("cow", "want status|commit BASE OVERLAY");
	a->commit = !strcmp(argv[optind], "commit");
	a->bpath = argv[optind + 1];
	a->opath = argv[optind + 2];
	if (a->map)
		snprintf(a->mpath, sizeof(a->mpath), "%s", a->map);
	else
		cowmap_path(a->opath, a->mpath, sizeof(a->mpath));
	return 0;
}

static void cow_status(const struct cow_args *a, struct cowmap *m)
{
	struct bsteer_json j;

	if (!a->json) {
		printf("%s: %llu of %llu chunks (%llu bytes each) are in the overlay\n",
		       a->opath, (unsigned long long)count_bits(m),
		       (unsigned long long)m->nchunks, (unsigned long long)m->chunk);
		return;
	}
	json_begin(&j, stdout);
	json_str(&j, "bitmap", a->mpath);
	json_u64(&j, "chunk", m->chunk);
	json_u64(&j, "size", m->size);
	json_u64(&j, "chunks", m->nchunks);
	json_u64(&j, "chunks_in_overlay", count_bits(m));
	json_finish(&j);
}

int cmd_cow(int argc, char **argv)
{
	struct cow_args a = {};
	struct cowmap m = { .fd = -1 };
	int base = -1, ov = -1, rc;
	struct stat st;

	rc = cow_parse(&a, argc, argv);
	if (rc)
		return rc == 1 ? 0 : 2;
	if (access(a.mpath, F_OK)) {
		fprintf(stderr, "bsteer cow: no bitmap %s: %s is not a cow overlay (or pass --map)\n",
			a.mpath, a.opath);
		return 1;
	}
	rc = 1;
	base = open(a.bpath, (a.commit ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	ov = open(a.opath, O_RDONLY | O_CLOEXEC);
	if (base < 0 || ov < 0 || fstat(base, &st)) {
		fprintf(stderr, "bsteer cow: cannot open %s: %s\n",
			base < 0 ? a.bpath : a.opath, strerror(errno));
		goto out;
	}
	if (cowmap_open(&m, a.mpath, 0, S_ISREG(st.st_mode) ? (__u64)st.st_size : ~0ull)) {
		fprintf(stderr, "bsteer cow: %s\n", bsteer_errbuf());
		goto out;
	}
	if (a.commit) {
		rc = cow_commit(&m, base, ov, a.json, a.bpath) ? 1 : 0;
	} else {
		cow_status(&a, &m);
		rc = 0;
	}
out:
	cowmap_close(&m);
	if (base >= 0)
		close(base);
	if (ov >= 0)
		close(ov);
	return rc;
}
