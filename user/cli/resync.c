// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer resync: ask a running server to rebuild one leg of a mirror export
 * from the others, while its clients go on writing, and follow it to the
 * end. The server does the work (user/core/resync.c); this command only asks
 * and reports, through the instance's pinned "resync" map.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "cli/cli.h"

static const char resync_usage[] =
"USAGE: bsteer resync INSTANCE EXPORT LEG [--json] [--no-wait]\n"
"\n"
"Rebuild leg LEG (0, 1, ...) of mirror export EXPORT of the running server\n"
"INSTANCE from its healthy legs, through the engine, while clients keep\n"
"reading and writing. A leg that had failed is opened again from its path\n"
"or URI first (so a replaced file or a restarted NBD server is picked up;\n"
"a replaced file smaller than the export grows). During the rebuild the\n"
"leg takes every write but serves no read; a range that a client writes\n"
"while it is being copied is copied again. At the end the legs are\n"
"flushed and the leg serves reads again. Progress goes to stderr.\n"
"\n"
"OPTIONS:\n"
"  -j, --json      one JSON object at the end\n"
"  -n, --no-wait   ask, and return without following it\n"
"  -h, --help      this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer serve --instance m0 --export disk=/a/disk.img,/b/disk.img &\n"
"  bsteer stat m0                       # leg 1 shows 'failed'\n"
"  bsteer resync m0 disk 1\n"
"  bsteer resync m0 disk 1 --json\n";

const char *resync_state_name(__u32 s)
{
	switch (s) {
	case BSTEER_RS_IDLE: return "idle";
	case BSTEER_RS_REQUESTED: return "requested";
	case BSTEER_RS_RUNNING: return "running";
	case BSTEER_RS_DONE: return "done";
	case BSTEER_RS_FAILED: return "failed";
	default: return "?";
	}
}

static void report_json(const struct bsteer_resync *st)
{
	struct bsteer_json j;
	__u64 end = st->end_ns ?: bsteer_now_ns();

	json_begin(&j, stdout);
	json_str(&j, "export", st->export);
	json_u64(&j, "leg", st->leg);
	json_str(&j, "state", resync_state_name(st->state));
	json_u64(&j, "bytes", st->done);
	json_u64(&j, "total", st->total);
	json_u64(&j, "recopied", st->recopied);
	json_dbl(&j, "seconds", st->start_ns ? (end - st->start_ns) / 1e9 : 0);
	if (st->state == BSTEER_RS_FAILED) {
		json_str(&j, "error", strerror(-st->error));
		json_str(&j, "reason", st->message);
	}
	json_finish(&j);
}

static void progress(const struct bsteer_resync *st, bool tty)
{
	char done[32], total[32];
	double secs = (bsteer_now_ns() - st->start_ns) / 1e9;

	bsteer_human_bytes(st->done, done, sizeof(done));
	bsteer_human_bytes(st->total, total, sizeof(total));
	fprintf(stderr, "%sbsteer resync: %s leg %u: %s of %s (%.0f%%), %llu recopied, %.1f s%s",
		tty ? "\r" : "", st->export, st->leg, done, total,
		st->total ? 100.0 * st->done / st->total : 100.0,
		(unsigned long long)st->recopied, secs, tty ? "   " : "\n");
}

struct resync_args {
	const char *inst;
	struct bsteer_resync req;
	bool json, wait;
};

/* 0 to go on, 1 to stop with status 0, 2 (a usage error) with 2. */
static int resync_parse(struct resync_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	__u64 leg;
	int opt;

	while ((opt = getopt_long(argc, argv, "jnh", opts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			a->json = true;
			break;
		case 'n':
			a->wait = false;
			break;
		case 'h':
			fputs(resync_usage, stdout);
			return 1;
		default:
			return cli_bad_option("resync", argv);
		}
	}
	if (argc - optind != 3)
		return cli_usage("resync", "want INSTANCE EXPORT LEG");
	a->inst = argv[optind];
	if (cli_u64("resync", "LEG", argv[optind + 2], 0, BSTEER_MAX_TARGETS - 1, 0, &leg))
		return 2;
	if (strlen(argv[optind + 1]) >= sizeof(a->req.export)) {
		fprintf(stderr, "bsteer resync: export name too long\n");
		return 2;
	}
	a->req.leg = leg;
	snprintf(a->req.export, sizeof(a->req.export), "%s", argv[optind + 1]);
	return 0;
}

/* Write the request into the server's "resync" map, unless one is running. */
static int resync_ask(struct resync_args *a, int fd)
{
	struct bsteer_resync st;
	__u32 key = 0;

	if (!bpf_map_lookup_elem(fd, &key, &st) &&
	    (st.state == BSTEER_RS_REQUESTED || st.state == BSTEER_RS_RUNNING)) {
		fprintf(stderr, "bsteer resync: a rebuild of '%s' leg %u is already %s\n",
			st.export, st.leg, resync_state_name(st.state));
		return -1;
	}
	a->req.state = BSTEER_RS_REQUESTED;
	a->req.seq = (st.seq + 1) ?: 1;
	if (bpf_map_update_elem(fd, &key, &a->req, BPF_ANY)) {
		fprintf(stderr, "bsteer resync: cannot ask: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Follow the rebuild to its end, with progress on stderr. 0 with its last
 * state in *@st, 1 when a signal stopped us following, or -1.
 */
/* A progress line is on the terminal now (erased if it fails). */
static bool progress_shown;

static int resync_follow(const struct resync_args *a, int fd, bool tty,
			 struct bsteer_resync *st)
{
	/* The first line after 1 s: a rebuild refused at once says only why. */
	__u64 t0 = bsteer_now_ns(), last = t0;
	__u32 key = 0;

	for (;;) {
		usleep(100000);
		if (bpf_map_lookup_elem(fd, &key, st)) {
			fprintf(stderr, "bsteer resync: the server went away\n");
			return -1;
		}
		if (st->seq != a->req.seq || st->state == BSTEER_RS_REQUESTED) {
			/* It looks every 200 ms; 5 s means it is not looking. */
			if (bsteer_now_ns() - t0 > 5000000000ull) {
				fprintf(stderr, "bsteer resync: the server did not take the request\n");
				return -1;
			}
			continue;
		}
		if (st->state == BSTEER_RS_DONE || st->state == BSTEER_RS_FAILED)
			return 0;
		if (!a->json && (tty || bsteer_now_ns() - last > 1000000000ull)) {
			progress(st, tty);
			progress_shown = tty;
			last = bsteer_now_ns();
		}
		if (exiting) {
			fprintf(stderr, "\nbsteer resync: stopped following; the server goes on with it\n");
			return 1;
		}
	}
}

/* How it ended: a failure says why and nothing else (no progress line). */
static int resync_report(const struct resync_args *a, const struct bsteer_resync *st,
			 bool tty)
{
	if (a->json) {
		report_json(st);
	} else if (st->state == BSTEER_RS_DONE) {
		progress(st, tty);
		if (tty)
			fputc('\n', stderr);
		printf("rebuilt leg %u of '%s': %llu bytes in %.2f s, %llu ranges copied again after client writes\n",
		       st->leg, st->export, (unsigned long long)st->done,
		       (st->end_ns - st->start_ns) / 1e9,
		       (unsigned long long)st->recopied);
	} else {
		if (progress_shown)	/* the error stands alone */
			fputs("\r\033[K", stderr);
		fprintf(stderr, "bsteer resync: failed: %s (%s)\n", st->message,
			strerror(-st->error));
	}
	return st->state == BSTEER_RS_DONE ? 0 : 1;
}

int cmd_resync(int argc, char **argv)
{
	struct resync_args a = { .wait = true };
	struct bsteer_resync st;
	struct bsteer_pins pins;
	char path[PATH_MAX];
	int fd, rc;
	bool tty;

	rc = resync_parse(&a, argc, argv);
	if (rc)
		return rc == 1 ? 0 : 2;
	if (bsteer_check_privileges("bsteer resync"))
		return 1;
	if (bsteer_pins_open(&pins, a.inst)) {
		fprintf(stderr, "bsteer resync: %s\n", bsteer_errbuf());
		return 1;
	}
	rc = 1;
	snprintf(path, sizeof(path), "%s/resync", pins.dir);
	fd = bpf_obj_get(path);
	if (fd < 0) {
		fprintf(stderr, "bsteer resync: instance '%s' takes no resync requests (%s: %s); is it a bsteer serve?\n",
			a.inst, path, strerror(errno));
		goto out;
	}
	if (resync_ask(&a, fd))
		goto out;
	rc = 0;
	if (!a.wait)
		goto out;
	install_signals();
	tty = !a.json && isatty(STDERR_FILENO);
	rc = resync_follow(&a, fd, tty, &st);
	if (!rc)
		rc = resync_report(&a, &st, tty);
	else
		rc = rc > 0 ? 0 : 1;
out:
	if (fd >= 0)
		close(fd);
	bsteer_pins_close(&pins);
	return rc;
}
