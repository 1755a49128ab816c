// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer leg: add a leg to a mirror export of a running server, or remove
 * one, while its clients go on. The server does the work (user/core/
 * legs.c); this command asks through the instance's pinned "leg_request"
 * map, as bsteer resync does through "resync", and with --resync follows
 * the rebuild of the new leg there.
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

static const char leg_usage[] =
"USAGE: bsteer leg add INSTANCE EXPORT TARGET [--resync [--no-wait]] [--json]\n"
"       bsteer leg remove INSTANCE EXPORT LEG [--json]\n"
"\n"
"Change the legs of mirror export EXPORT of the running server INSTANCE,\n"
"while clients keep reading and writing.\n"
"\n"
"  add     open TARGET (a file, a block device, nbd[s]://..., rbd:POOL/IMAGE...,\n"
"          at least the export's size) on every worker and give it the\n"
"          first free place of the export (a mirror keeps two spare places,\n"
"          as the policy's most legs allow). With --resync it takes every\n"
"          write at once and is rebuilt from the other legs (as bsteer\n"
"          resync does; progress on stderr), then serves reads; without,\n"
"          it stays 'failed' (out of date) until a bsteer resync\n"
"  remove  take leg LEG (0, 1, ...; see bsteer stat) out: no new op goes to\n"
"          it, its ops in flight come back, then every worker closes it.\n"
"          The last leg in service, or the only up-to-date one while\n"
"          another is rebuilt, is not removed\n"
"\n"
"A layout that depends on the number of legs (a stripe; redirect, cow)\n"
"takes no leg and gives none up. Adding a leg, then removing the old one\n"
"once the new one is rebuilt, moves an export live (into Ceph, say).\n"
"\n"
"OPTIONS:\n"
"  -r, --resync    add: rebuild the new leg from the others, and follow it\n"
"  -n, --no-wait   add --resync: return once the rebuild has started\n"
"  -j, --json      one JSON object at the end\n"
"  -h, --help      this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer serve --instance m0 --export disk=/a/disk.img,policy=mirror &\n"
"  bsteer leg add m0 disk rbd:rbd/disk:conf=/etc/ceph/ceph.conf --resync\n"
"  bsteer stat m0                       # leg 1 'ok'\n"
"  bsteer leg remove m0 disk 0\n"
"  bsteer leg add m0 disk /b/disk.img --resync --json\n";

struct leg_args {
	const char *inst;
	struct bsteer_leg_request req;
	bool json, wait;
};

/* 0 to go on, 1 to stop with status 0, 2 (a usage error) with 2. */
static int leg_parse(struct leg_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "resync", no_argument, NULL, 'r' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool no_wait = false;
	const char *sub;
	__u64 leg;
	int opt;

	while ((opt = getopt_long(argc, argv, "rnjh", opts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			a->req.resync = 1;
			break;
		case 'n':
			no_wait = true;
			break;
		case 'j':
			a->json = true;
			break;
		case 'h':
			fputs(leg_usage, stdout);
			return 1;
		default:
			return cli_bad_option("leg", argv);
		}
	}
	if (argc - optind < 1)
		return cli_usage("leg", "want add or remove");
	sub = argv[optind];
	if (!strcmp(sub, "add"))
		a->req.op = BSTEER_LEG_ADD;
	else if (!strcmp(sub, "remove"))
		a->req.op = BSTEER_LEG_REMOVE;
	else
		return cli_usage("leg", "unknown subcommand '%s' (want add or remove)", sub);
	if (argc - optind != 4)
		return cli_usage("leg", "want %s INSTANCE EXPORT %s", sub,
				 a->req.op == BSTEER_LEG_ADD ? "TARGET" : "LEG");
	if (a->req.op == BSTEER_LEG_REMOVE && (a->req.resync || no_wait))
		return cli_usage("leg", "%s is for add", a->req.resync ? "--resync" : "--no-wait");
	if (no_wait && !a->req.resync)
		return cli_usage("leg", "--no-wait goes with --resync");
	a->wait = !no_wait;
	a->inst = argv[optind + 1];
	if (!argv[optind + 2][0] || strlen(argv[optind + 2]) >= sizeof(a->req.export))
		return cli_usage("leg", "EXPORT: '%s' is not an export name", argv[optind + 2]);
	snprintf(a->req.export, sizeof(a->req.export), "%s", argv[optind + 2]);
	if (a->req.op == BSTEER_LEG_REMOVE) {
		if (cli_u64("leg", "LEG", argv[optind + 3], 0, BSTEER_MAX_TARGETS - 1, 0, &leg))
			return 2;
		a->req.leg = leg;
		return 0;
	}
	if (!argv[optind + 3][0] || strlen(argv[optind + 3]) >= sizeof(a->req.spec))
		return cli_usage("leg", "TARGET: empty or longer than %zu bytes",
				 sizeof(a->req.spec) - 1);
	if (strchr(argv[optind + 3], ','))
		return cli_usage("leg", "TARGET: '%s' has a ',' (one target)", argv[optind + 3]);
	if (!bsteer_target_for(argv[optind + 3]))
		return cli_usage("leg", "TARGET: no target module takes '%s'", argv[optind + 3]);
	snprintf(a->req.spec, sizeof(a->req.spec), "%s", argv[optind + 3]);
	return 0;
}

/* The map @name of the instance, or -1 after saying why. */
static int pin_get(const struct leg_args *a, const struct bsteer_pins *pins,
		   const char *name)
{
	char path[PATH_MAX + 32];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pins->dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		fprintf(stderr, "bsteer leg: instance '%s' takes no leg changes (%s: %s); is it a bsteer serve?\n",
			a->inst, path, strerror(errno));
	return fd;
}

/* Ask, and wait for the answer: 0 with it in *@st, or -1. */
static int leg_ask(struct leg_args *a, int fd, struct bsteer_leg_request *st)
{
	__u64 t0 = bsteer_now_ns();
	__u32 key = 0;

	if (!bpf_map_lookup_elem(fd, &key, st) &&
	    (st->state == BSTEER_RS_REQUESTED || st->state == BSTEER_RS_RUNNING)) {
		fprintf(stderr, "bsteer leg: a change of '%s' is already %s\n",
			st->export, resync_state_name(st->state));
		return -1;
	}
	a->req.state = BSTEER_RS_REQUESTED;
	a->req.seq = (st->seq + 1) ?: 1;
	if (bpf_map_update_elem(fd, &key, &a->req, BPF_ANY)) {
		fprintf(stderr, "bsteer leg: cannot ask: %s\n", strerror(errno));
		return -1;
	}
	for (;;) {
		usleep(50000);
		if (bpf_map_lookup_elem(fd, &key, st)) {
			fprintf(stderr, "bsteer leg: the server went away\n");
			return -1;
		}
		if (st->seq == a->req.seq && (st->state == BSTEER_RS_DONE ||
					      st->state == BSTEER_RS_FAILED))
			return 0;
		/* It looks every 200 ms; 5 s untaken means it is not looking. */
		if ((st->seq != a->req.seq || st->state == BSTEER_RS_REQUESTED) &&
		    bsteer_now_ns() - t0 > 5000000000ull) {
			fprintf(stderr, "bsteer leg: the server did not take the request\n");
			return -1;
		}
		/* Signals only stop the watching: the server finishes the change. */
		if (exiting) {
			fprintf(stderr, "bsteer leg: stopped waiting; the server goes on with it\n");
			return -1;
		}
	}
}

/* Follow the rebuild @seq of the new leg: 0 with its end in *@rs, or -1. */
static int leg_follow(const struct leg_args *a, int fd, __u32 seq,
		      struct bsteer_resync *rs)
{
	bool tty = !a->json && isatty(STDERR_FILENO);
	__u64 last = bsteer_now_ns();
	char done[32], total[32];
	__u32 key = 0;

	for (;;) {
		if (bpf_map_lookup_elem(fd, &key, rs)) {
			fprintf(stderr, "bsteer leg: the server went away\n");
			return -1;
		}
		if (rs->seq != seq) {
			fprintf(stderr, "bsteer leg: another rebuild took the place of the new leg's\n");
			return -1;
		}
		if (rs->state == BSTEER_RS_DONE || rs->state == BSTEER_RS_FAILED) {
			if (tty)
				fputs("\r\033[K", stderr);
			return 0;
		}
		if (!a->json && (tty || bsteer_now_ns() - last > 1000000000ull)) {
			bsteer_human_bytes(rs->done, done, sizeof(done));
			bsteer_human_bytes(rs->total, total, sizeof(total));
			fprintf(stderr, "%sbsteer leg: %s leg %u: rebuilt %s of %s (%.0f%%)%s",
				tty ? "\r" : "", rs->export, rs->leg, done, total,
				rs->total ? 100.0 * rs->done / rs->total : 100.0,
				tty ? "   " : "\n");
			last = bsteer_now_ns();
		}
		if (exiting) {
			fprintf(stderr, "\nbsteer leg: stopped following; the server goes on with the rebuild\n");
			return -1;
		}
		usleep(100000);
	}
}

static void report_json(const struct leg_args *a, const struct bsteer_leg_request *st,
			const struct bsteer_resync *rs)
{
	struct bsteer_json j;

	json_begin(&j, stdout);
	json_str(&j, "op", a->req.op == BSTEER_LEG_ADD ? "add" : "remove");
	json_str(&j, "export", a->req.export);
	if (a->req.op == BSTEER_LEG_ADD)
		json_str(&j, "target", a->req.spec);
	json_str(&j, "state", resync_state_name(st->state));
	if (st->state == BSTEER_RS_DONE || a->req.op == BSTEER_LEG_REMOVE)
		json_u64(&j, "leg", st->leg);
	if (st->state == BSTEER_RS_FAILED) {
		json_str(&j, "error", strerror(-st->error));
		json_str(&j, "reason", st->message);
	}
	if (rs) {
		json_obj(&j, "resync");
		json_str(&j, "state", resync_state_name(rs->state));
		json_u64(&j, "bytes", rs->done);
		json_u64(&j, "total", rs->total);
		json_u64(&j, "recopied", rs->recopied);
		json_dbl(&j, "seconds", rs->end_ns && rs->start_ns ?
			 (rs->end_ns - rs->start_ns) / 1e9 : 0);
		if (rs->state == BSTEER_RS_FAILED) {
			json_str(&j, "error", strerror(-rs->error));
			json_str(&j, "reason", rs->message);
		}
		json_end_obj(&j);
	}
	json_finish(&j);
}

/* How it ended, as text or JSON; the exit status. */
static int leg_report(const struct leg_args *a, const struct bsteer_leg_request *st,
		      const struct bsteer_resync *rs)
{
	bool ok = st->state == BSTEER_RS_DONE && (!rs || rs->state == BSTEER_RS_DONE);

	if (a->json) {
		report_json(a, st, rs);
		return ok ? 0 : 1;
	}
	if (st->state != BSTEER_RS_DONE) {
		fprintf(stderr, "bsteer leg: %s failed: %s (%s)\n",
			a->req.op == BSTEER_LEG_ADD ? "add" : "remove", st->message,
			strerror(-st->error));
		return 1;
	}
	if (a->req.op == BSTEER_LEG_REMOVE) {
		printf("removed leg %u of '%s'\n", st->leg, a->req.export);
		return 0;
	}
	if (!a->req.resync) {
		printf("added %s as leg %u of '%s', out of date: 'bsteer resync %s %s %u' brings it in\n",
		       a->req.spec, st->leg, a->req.export, a->inst, a->req.export, st->leg);
		return 0;
	}
	if (!rs) {
		printf("added %s as leg %u of '%s', rebuilding\n", a->req.spec, st->leg,
		       a->req.export);
		return 0;
	}
	if (rs->state != BSTEER_RS_DONE) {
		fprintf(stderr, "bsteer leg: added leg %u, but its rebuild failed: %s (%s); it stays out of service\n",
			st->leg, rs->message, strerror(-rs->error));
		return 1;
	}
	printf("added %s as leg %u of '%s', rebuilt: %llu bytes in %.2f s, %llu ranges copied again after client writes\n",
	       a->req.spec, st->leg, a->req.export, (unsigned long long)rs->done,
	       (rs->end_ns - rs->start_ns) / 1e9, (unsigned long long)rs->recopied);
	return 0;
}

int cmd_leg(int argc, char **argv)
{
	struct leg_args a = { .wait = true };
	struct bsteer_leg_request st = {};
	struct bsteer_resync rs, *rsp = NULL;
	struct bsteer_pins pins;
	int fd = -1, rfd = -1, rc;

	rc = leg_parse(&a, argc, argv);
	if (rc)
		return rc == 1 ? 0 : 2;
	if (bsteer_check_privileges("bsteer leg"))
		return 1;
	if (bsteer_pins_open(&pins, a.inst)) {
		fprintf(stderr, "bsteer leg: %s\n", bsteer_errbuf());
		return 1;
	}
	rc = 1;
	fd = pin_get(&a, &pins, "leg_request");
	if (fd < 0)
		goto out;
	if (a.req.resync && (rfd = pin_get(&a, &pins, "resync")) < 0)
		goto out;
	install_signals();
	if (leg_ask(&a, fd, &st))
		goto out;
	if (st.state == BSTEER_RS_DONE && a.req.resync && a.wait) {
		if (leg_follow(&a, rfd, st.resync_seq, &rs))
			goto out;
		rsp = &rs;
	}
	rc = leg_report(&a, &st, rsp);
out:
	if (rfd >= 0)
		close(rfd);
	if (fd >= 0)
		close(fd);
	bsteer_pins_close(&pins);
	return rc;
}
