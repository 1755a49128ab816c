// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer serve: block devices for NBD clients. One thread drives one ring;
 * every request is decided by the BPF policy at the completion hook.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>
#include "cli/cli.h"
#include <bpf/bpf.h>
#include "serve.h"
#include "policy/cowmap.h"

#define DEF_LISTEN	"tcp:127.0.0.1:10809"
#define DEF_DIR		"bsteer-data"
#define DEF_IMAGE	DEF_DIR "/default.img"
#define DEF_SIZE	(1ull << 30)
#define DEF_SLOT	(1u << 20)
#define DEF_SLOTS	64
#define DRAIN_SECS	30
#define MAX_THREADS	BSTEER_MAX_RINGS

static const char serve_usage[] =
"USAGE: bsteer serve [--listen tcp:HOST:PORT|unix:PATH]...\n"
"                    [--export NAME=TARGET[,TARGET...][,ro][,policy=P][,KEY=VALUE...]]...\n"
"                    [--threads N] [--instance NAME] [--slots N] [--slot-size SIZE]\n"
"                    [--allow-remote] [--upstream-timeout SECS] [--reply-timeout SECS]\n"
"                    [--inline-io auto|all|off] [--splice auto|off] [--no-hook]\n"
"                    [--json-log] [-v]\n"
"\n"
"Serve exports to NBD clients. Each request's payload lands in a borrowed\n"
"buffer slot and the BPF policy decides, at io_uring's completion hook,\n"
"which targets it goes to: passthrough (one target), mirror (several), or\n"
"the policy=P the export names (bsteer policy list; or a .bpf.o file).\n"
"KEY=VALUE settings go to the policy: chunk=SIZE (stripe, cow),\n"
"read=MODE (mirror), map=START+LEN@LEG:OFF and size=SIZE (redirect),\n"
"cowmap=PATH (cow), word.N=V (any).\n"
"\n"
"A TARGET is a file or block device, or an export on another NBD server:\n"
"nbd://HOST[:PORT][/EXPORT] or nbd+unix:///EXPORT?socket=PATH (nbdkit,\n"
"qemu-nbd, another bsteer). Each worker thread connects on its own.\n"
"\n"
"With no --export, serves export 'default' backed by " DEF_IMAGE "\n"
"(a 1 GiB sparse file, created if missing) on " DEF_LISTEN ".\n"
"SIGINT or SIGTERM stops accepting, drains the requests in flight, flushes\n"
"every target, removes the pins and exits 0.\n"
"\n"
"OPTIONS:\n"
"  -l, --listen ADDR     tcp:HOST:PORT or unix:PATH (repeatable)\n"
"  -e, --export SPEC     NAME=TARGET[,TARGET...][,ro][,policy=P][,KEY=VALUE];\n"
"                        several targets make a mirror (repeatable)\n"
"  -t, --threads N       worker threads, one ring each (default 1)\n"
"  -i, --instance NAME   pin under /sys/fs/bpf/bsteer/NAME (default serve-PID)\n"
"  -n, --slots N         buffer slots per thread (default 64)\n"
"  -s, --slot-size SIZE  bytes per slot, the largest request (default 1M)\n"
"      --allow-remote    allow listening on a non-loopback address\n"
"      --upstream-timeout SECS\n"
"                        an NBD target that makes no progress this long with\n"
"                        requests out is failed (default 30)\n"
"      --reply-timeout SECS\n"
"                        a client that leaves a reply unread this long is\n"
"                        dropped, freeing its slots (default 30)\n"
"      --inline-io auto|all|off\n"
"                        auto (default): a target file that io_uring cannot\n"
"                        do I/O on without a worker thread (tmpfs) is served\n"
"                        by the ring's own thread: pread() for reads of up\n"
"                        to 64K, pwrite() for writes; all: also one-leg\n"
"                        writes of up to 64K to a file whose buffered writes\n"
"                        io_uring hands to a worker (ext4): no context switch,\n"
"                        but a write that waits for the journal or for dirty\n"
"                        pages to drain holds up the thread's other clients;\n"
"                        off: all via io_uring\n"
"      --splice auto|off auto (default): a read over 64K that the policy\n"
"                        marks as the reply's (passthrough, mirror) goes from\n"
"                        the page cache to the client's socket through a pipe\n"
"                        per slot (splice), with no copy in the server; off:\n"
"                        it is copied into the slot and sent from there\n"
"      --no-hook         leave the completion hook detached: every header and\n"
"                        decision goes to the syscall twins (slower; a test\n"
"                        of the fallback path)\n"
"      --json-log        log lines as JSON objects\n"
"  -c, --config FILE     read options from FILE first (see README)\n"
"  -v, --verbose         log every connection; libbpf diagnostics\n"
"  -h, --help            this text\n"
"\n"
"EXAMPLES:\n"
"  bsteer serve\n"
"  nbdinfo nbd://127.0.0.1:10809\n"
"  bsteer serve --listen unix:/tmp/nbd.sock --export disk=/var/lib/disk.img\n"
"  bsteer serve --threads 2 --export disk=/dev/vdb\n"
"  bsteer serve --config /etc/bsteer/serve.conf\n"
"  bsteer serve --export m=/mnt/a/disk.img,/mnt/b/disk.img --instance mirror0\n"
"  bsteer serve --export base=/srv/base.img,ro --export scratch=/tmp/s.img\n"
"  bsteer serve --export s=/d/a.img,/d/b.img,/d/c.img,policy=stripe,chunk=128K\n"
"  bsteer serve --export r=/d/a.img,/d/b.img,policy=redirect,map=0+1G@1:0,size=1G\n"
"  bsteer serve --export c=/srv/golden.img,/tmp/overlay.img,policy=cow\n"
"  bsteer serve --export m=/srv/disk.img,nbd://backup-host:10809/disk\n"
"  bsteer serve --export r=nbd+unix:///?socket=/run/nbdkit.sock\n";

/* NAME=TARGET[,TARGET...][,ro][,policy=P]; @spec is modified in place. */
static int parse_export(struct bsteer_server *s, char *spec)
{
	struct export *ex = &s->exports[s->nexports];
	char *eq = strchr(spec, '='), *tok, *save;

	if (s->nexports == SERVE_MAX_EXPORTS) {
		fprintf(stderr, "bsteer serve: at most %d exports\n", SERVE_MAX_EXPORTS);
		return -EINVAL;
	}
	if (!eq || eq == spec || eq - spec >= (int)sizeof(ex->name)) {
		fprintf(stderr, "bsteer serve: bad export '%s' (want NAME=TARGET[,TARGET...][,ro][,policy=P])\n",
			spec);
		return -EINVAL;
	}
	*eq = 0;
	snprintf(ex->name, sizeof(ex->name), "%s", spec);
	if (serve_export_find(s, ex->name)) {
		fprintf(stderr, "bsteer serve: export '%s' given twice\n", ex->name);
		return -EINVAL;
	}
	for (tok = strtok_r(eq + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "ro")) {
			ex->rdonly = true;
		} else if (!strncmp(tok, "policy=", 7)) {
			snprintf(ex->policy, sizeof(ex->policy), "%s", tok + 7);
		} else if (strchr(tok, '=') && !strstr(tok, "://")) {
			/* A policy setting: checked once the policy is known. */
			if (ex->nopts == sizeof(ex->opts) / sizeof(ex->opts[0])) {
				fprintf(stderr, "bsteer serve: export '%s': too many settings\n",
					ex->name);
				return -EINVAL;
			}
			ex->opts[ex->nopts++] = tok;
		} else if (ex->ntargets == BSTEER_MAX_TARGETS) {
			fprintf(stderr, "bsteer serve: export '%s': too many targets\n",
				ex->name);
			return -EINVAL;
		} else {
			ex->spec[ex->ntargets++] = tok;
		}
	}
	if (!ex->ntargets) {
		fprintf(stderr, "bsteer serve: export '%s' has no target\n", ex->name);
		return -EINVAL;
	}
	s->nexports++;
	return 0;
}

static int default_export(struct bsteer_server *s)
{
	struct export *ex = &s->exports[0];
	int fd;

	if (mkdir(DEF_DIR, 0755) && errno != EEXIST) {
		fprintf(stderr, "bsteer serve: cannot create %s: %s\n", DEF_DIR,
			strerror(errno));
		return -errno;
	}
	fd = open(DEF_IMAGE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || (lseek(fd, 0, SEEK_END) == 0 && ftruncate(fd, DEF_SIZE))) {
		fprintf(stderr, "bsteer serve: cannot create %s: %s\n", DEF_IMAGE,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	close(fd);
	snprintf(ex->name, sizeof(ex->name), "default");
	ex->spec[0] = DEF_IMAGE;
	ex->ntargets = 1;
	s->nexports = 1;
	return 0;
}

/* What the exports ask of their policy, before the instance exists. */
struct serve_policy {
	const char *name;
	const struct bsteer_policy_desc *d;	/* NULL: a .bpf.o file */
	struct bsteer_cfg cfg;
	struct bsteer_range table[BSTEER_REDIRECT_MAX];
	__u32 ntable;
	__u64 size;				/* size=, 0: from the legs */
	const char *cowmap;			/* cowmap=PATH */
	__u32 legs;				/* most legs of one export */
};

/* One policy per instance; its settings come from the exports' KEY=VALUEs. */
static int resolve_policy(struct bsteer_server *s, struct serve_policy *sp,
			  __u64 slot_size)
{
	const struct bsteer_cfg_key *k;
	__u32 i;
	int x;

	memset(sp, 0, sizeof(*sp));
	for (x = 0; x < s->nexports; x++) {
		struct export *ex = &s->exports[x];

		if (ex->ntargets > sp->legs)
			sp->legs = ex->ntargets;
		if (!ex->policy[0])
			continue;
		if (sp->name && strcmp(sp->name, ex->policy)) {
			fprintf(stderr, "bsteer serve: exports ask for policies %s and %s; one instance runs one policy (start another instance)\n",
				sp->name, ex->policy);
			return -EINVAL;
		}
		sp->name = ex->policy;
	}
	if (!sp->name)
		sp->name = sp->legs > 1 ? "mirror" : "passthrough";
	sp->d = bsteer_policy_find(sp->name);
	if (!sp->d && !strchr(sp->name, '/') && !strstr(sp->name, ".o")) {
		fprintf(stderr, "bsteer serve: unknown policy '%s' (see 'bsteer policy list', or give a path to a .bpf.o)\n",
			sp->name);
		return -EINVAL;
	}
	for (x = 0; x < s->nexports; x++) {
		struct export *ex = &s->exports[x];

		if (sp->d && (ex->ntargets < sp->d->min_legs ||
			      ex->ntargets > sp->d->max_legs)) {
			fprintf(stderr, "bsteer serve: export '%s': policy %s takes %u..%u targets, not %u\n",
				ex->name, sp->name, sp->d->min_legs,
				sp->d->max_legs, ex->ntargets);
			return -EINVAL;
		}
		for (i = 0; i < ex->nopts; i++) {
			const char *kv = ex->opts[i];

			if (!strncmp(kv, "map=", 4)) {
				if (!sp->d || !(sp->d->flags & BSTEER_PF_TABLE)) {
					fprintf(stderr, "bsteer serve: export '%s': map= is for the redirect policy\n",
						ex->name);
					return -EINVAL;
				}
				if (sp->ntable == BSTEER_REDIRECT_MAX ||
				    bsteer_range_parse(kv + 4, &sp->table[sp->ntable])) {
					fprintf(stderr, "bsteer serve: export '%s': %s\n",
						ex->name, sp->ntable == BSTEER_REDIRECT_MAX ?
						"too many map= ranges" : bsteer_errbuf());
					return -EINVAL;
				}
				if (sp->table[sp->ntable].leg >= ex->ntargets) {
					fprintf(stderr, "bsteer serve: export '%s': map=%s names leg %u of %u\n",
						ex->name, kv + 4,
						sp->table[sp->ntable].leg, ex->ntargets);
					return -EINVAL;
				}
				sp->ntable++;
			} else if (!strncmp(kv, "size=", 5)) {
				if (bsteer_parse_size(kv + 5, &sp->size) ||
				    !sp->size || sp->size % 512) {
					fprintf(stderr, "bsteer serve: export '%s': bad %s (a multiple of 512)\n",
						ex->name, kv);
					return -EINVAL;
				}
			} else if (!strncmp(kv, "cowmap=", 7)) {
				sp->cowmap = kv + 7;
			} else if (bsteer_policy_setting(sp->d, &sp->cfg, -1, kv,
							 false)) {
				fprintf(stderr, "bsteer serve: export '%s': %s\n",
					ex->name, bsteer_errbuf());
				return -EINVAL;
			}
		}
	}
	/* Layout settings are written down, so that nothing depends on defaults. */
	for (k = sp->d ? sp->d->keys : NULL; k && k->name; k++)
		if (k->fixed && !sp->cfg.word[k->word])
			sp->cfg.word[k->word] = k->def;
	if (sp->d && (sp->d->flags & BSTEER_PF_BASE_RDONLY) &&
	    sp->cfg.word[0] * 4 > slot_size) {
		fprintf(stderr, "bsteer serve: policy %s: chunk %llu is more than a quarter of the slot size %llu\n",
			sp->name, (unsigned long long)sp->cfg.word[0],
			(unsigned long long)slot_size);
		return -EINVAL;
	}
	return 0;
}

/* Open every target; exports take consecutive target indices. */
static int open_exports(struct bsteer_server *s, struct serve_policy *sp,
			int *fds, __u32 *nfds)
{
	__u64 sizes[BSTEER_MAX_TARGETS];
	char layout[32] = "";
	__u32 n = 0, i;
	int k, fd;

	bsteer_policy_layout(sp->name, layout, sizeof(layout));
	for (k = 0; k < s->nexports; k++) {
		struct export *ex = &s->exports[k];
		bool base_ro = sp->d && (sp->d->flags & BSTEER_PF_BASE_RDONLY);

		if (n + ex->ntargets > BSTEER_MAX_TARGETS) {
			fprintf(stderr, "bsteer serve: more than %d targets in all\n",
				BSTEER_MAX_TARGETS);
			return -EINVAL;
		}
		ex->tbase = n;
		ex->no_extents = strcmp(layout, "replica") && strcmp(layout, "linear");
		if (ex->ntargets > 1)
			snprintf(ex->description, sizeof(ex->description),
				 "%s over %s and %u more", sp->d ? sp->d->name : sp->name,
				 ex->spec[0], ex->ntargets - 1);
		else
			snprintf(ex->description, sizeof(ex->description), "%s",
				 ex->spec[0]);
		for (i = 0; i < ex->ntargets; i++) {
			bool ro = ex->rdonly || (base_ro && i == 0);

			if (base_ro && i == 1 && !strstr(ex->spec[i], "://") &&
			    access(ex->spec[i], F_OK) && errno == ENOENT) {
				/* A new overlay: an empty file, grown below. */
				fd = open(ex->spec[i], O_RDWR | O_CREAT | O_EXCL |
					  O_CLOEXEC, 0644);
				if (fd >= 0)
					close(fd);
			}
			ex->be[i] = bsteer_backend_for(ex->spec[i]);
			if (!ex->be[i]) {
				fprintf(stderr, "bsteer serve: no backend for target '%s'\n",
					ex->spec[i]);
				return -EINVAL;
			}
			if (ex->be[i]->connect) {
				bsteer_set_err("%s", "");
				fd = ex->be[i]->connect(ex->spec[i], ro, &s->tinfo[n]);
				sizes[i] = s->tinfo[n].size;
			} else {
				fd = ex->be[i]->open(ex->spec[i], ro, &sizes[i]);
			}
			if (fd < 0) {
				fprintf(stderr, "bsteer serve: export '%s': cannot open %s: %s\n",
					ex->name, ex->spec[i], *bsteer_errbuf() ?
					bsteer_errbuf() : strerror(-fd));
				return fd;
			}
			ex->fd[i] = fd;
			fds[n++] = fd;
		}
		if (sp->d && (sp->d->flags & BSTEER_PF_BASE_RDONLY) &&
		    sizes[1] < sizes[0]) {
			/* A new (or short) overlay grows to the base, sparsely. */
			if (ftruncate(ex->fd[1], sizes[0])) {
				fprintf(stderr, "bsteer serve: export '%s': overlay %s is smaller than the base and cannot grow: %s\n",
					ex->name, ex->spec[1], strerror(errno));
				return -errno;
			}
			sizes[1] = sizes[0];
		}
		ex->size = sp->d ? sp->d->export_size(&sp->cfg, sizes, ex->ntargets) :
			   sizes[0];
		for (i = 1; i < ex->ntargets && !sp->d; i++)
			if (sizes[i] < ex->size)
				ex->size = sizes[i];
		if (sp->size)
			ex->size = sp->size;
		if (!sp->d || !strncmp(sp->d->name, "mirror", 6))
			for (i = 1; i < ex->ntargets; i++)
				if (sizes[i] != sizes[0])
					fprintf(stderr, "bsteer serve: export '%s': legs differ in size; serving the smallest\n",
						ex->name);
		if (!ex->size) {
			fprintf(stderr, "bsteer serve: export '%s': its targets give it no size under policy %s\n",
				ex->name, sp->name);
			return -EINVAL;
		}
	}
	*nfds = n;
	return 0;
}

/*
 * Hand the policy its settings, now that its maps exist: cfg words, the
 * redirect table, the cow bitmap loaded from beside the overlay.
 */
static int policy_state(struct bsteer_server *s, struct serve_policy *sp,
			struct cowmap *cow, bool *cow_open)
{
	struct export *ex = &s->exports[0];
	char path[PATH_MAX + 64];
	__u32 i;
	int fd, err;

	for (i = 0; i < BSTEER_CFG_WORDS; i++)
		__atomic_store_n(&s->in->cfg->word[i], sp->cfg.word[i],
				 __ATOMIC_RELEASE);
	if (sp->d && (sp->d->flags & BSTEER_PF_TABLE)) {
		snprintf(path, sizeof(path), "%s/redirect_table", s->in->dir);
		fd = bpf_obj_get(path);
		if (fd < 0) {
			fprintf(stderr, "bsteer serve: no redirect table at %s\n", path);
			return -ENOENT;
		}
		if (!sp->ntable) {
			/* No map= given: start as the identity onto leg 0. */
			sp->table[0].len = ex->size;
			sp->ntable = 1;
		}
		for (i = 0; i < sp->ntable; i++)
			if (bpf_map_update_elem(fd, &i, &sp->table[i], BPF_ANY))
				break;
		close(fd);
		if (i < sp->ntable) {
			fprintf(stderr, "bsteer serve: cannot fill the redirect table: %s\n",
				strerror(errno));
			return -errno;
		}
	}
	if (sp->d && (sp->d->flags & BSTEER_PF_BASE_RDONLY)) {
		char cpath[PATH_MAX];
		size_t len;
		__u64 *bits;

		if (s->nexports != 1) {
			fprintf(stderr, "bsteer serve: policy %s serves one export per instance\n",
				sp->name);
			return -EINVAL;
		}
		s->in->targets[ex->tbase].flags |= BSTEER_TGT_RDONLY;
		if (sp->cowmap)
			snprintf(cpath, sizeof(cpath), "%s", sp->cowmap);
		else if (strstr(ex->spec[1], "://"))
			return fprintf(stderr, "bsteer serve: a remote overlay needs cowmap=PATH for its bitmap\n"),
			       -EINVAL;
		else
			cowmap_path(ex->spec[1], cpath, sizeof(cpath));
		err = cowmap_open(cow, cpath, sp->cfg.word[0], ex->size);
		if (err) {
			fprintf(stderr, "bsteer serve: %s\n", bsteer_errbuf());
			return err;
		}
		*cow_open = true;
		snprintf(path, sizeof(path), "%s/cow_bitmap", s->in->dir);
		fd = bpf_obj_get(path);
		bits = fd >= 0 ? bsteer_map_mmap(fd, &len, true) : NULL;
		if (fd >= 0)
			close(fd);
		if (!bits || len < cow->nwords * 8) {
			fprintf(stderr, "bsteer serve: cannot map the cow bitmap (%llu chunks; at most %zu)\n",
				(unsigned long long)cow->nchunks, bits ? len * 8 : 0);
			return -EINVAL;
		}
		cowmap_attach(cow, bits);
		/* The overlay's own chunk size wins over the default. */
		s->in->cfg->word[0] = cow->chunk;
		s->in->cfg->word[1] = ex->size;
		s->in->cfg->word[2] = s->in->slot_size;
		ex->part_max = s->in->slot_size - 2 * cow->chunk;
		ex->no_zeroes = true;
		s->cow = cow;
	}
	return 0;
}

static void cb_complete(void *arg, struct bsteer_engine *e, __u32 r, int err)
{
	struct bsteer_server *s = arg;
	const struct bsteer_req *rq = &s->in->reqs[r];

	(void)e;
	if (resync_owns(s, r)) {
		resync_complete(s, r, err);
		return;
	}
	/* What a FLUSH or FUA promises covers the cow bitmap too. */
	if (s->cow && !err && (rq->type == BSTEER_REQ_FLUSH ||
			       (rq->flags & BSTEER_REQF_FUA)) &&
	    cowmap_sync(s->cow)) {
		serve_log(s, "cannot save the cow bitmap %s", s->cow->path);
		err = -EIO;
	}
	s->fe->complete(s, r, err);
}

static void cb_op_done(void *arg, struct bsteer_engine *e, __u32 r, __u32 op,
		       int res)
{
	struct bsteer_server *s = arg;

	(void)e;
	if (!resync_owns(s, r))
		s->fe->op_done(s, r, op, res);
}

static void cb_cqe(void *arg, struct bsteer_engine *e,
		   const struct io_uring_cqe *cqe)
{
	struct bsteer_server *s = arg;

	(void)e;
	s->fe->cqe(s, cqe);
}

static void flush_done(void *arg, struct bsteer_engine *e, __u32 r, int err)
{
	(void)e;
	(void)r;
	*(int *)arg = err ?: 1;
}

/*
 * The last act: every export's targets flushed through the policy. An
 * export whose flush fails is named; the others are still flushed.
 */
static int flush_all(struct bsteer_server *s)
{
	struct bsteer_frontend_cb cb = { .complete = flush_done };
	int k, done, err, first = 0;
	__u32 r;

	cb.arg = &done;
	s->e.cb = cb;
	for (k = 0; k < s->nexports; k++) {
		struct export *ex = &s->exports[k];

		if (ex->rdonly)
			continue;
		done = 0;
		err = bsteer_req_alloc(&s->e, BSTEER_REQ_FLUSH, 0, 0, &r);
		if (err)
			return err;
		bsteer_req_set_legs(&s->e, r, ex->tbase, ex->ntargets);
		err = bsteer_frontend_op(&s->e, r, BSTEER_OP_NOP, 0, BSTEER_NO_SLOT,
					 0, 0);
		while (!err && !done)
			err = bsteer_engine_run(&s->e, 1);
		if (err == -EINTR)
			err = 0;
		if (done < 0)
			err = done;
		if (err)
			serve_log(s, "export '%s': the final flush failed: %s",
				  ex->name, strerror(-err));
		first = first ?: err;
	}
	return first;
}

/* A leg the policy marked failed gets one log line, from worker 0. */
static void log_failed_legs(struct bsteer_server *s, __u32 *seen)
{
	__u32 t, i;
	int k;

	for (t = 0; t < s->ntfd; t++) {
		const struct bsteer_target *tg = &s->in->targets[t];

		if (!(tg->flags & BSTEER_TGT_FAILED) || (*seen & (1u << t)))
			continue;
		*seen |= 1u << t;
		for (k = 0; k < s->nexports; k++) {
			const struct export *ex = &s->exports[k];

			if (t < ex->tbase || t >= ex->tbase + ex->ntargets)
				continue;
			i = t - ex->tbase;
			serve_log(s, "export '%s': leg %u (%s) marked failed after %s; the other legs carry on",
				  ex->name, i, ex->spec[i], tg->last_error ?
				  strerror(-tg->last_error) : "an error");
		}
	}
}

/*
 * A server's descriptors: the clients' sockets, and two per slot for the
 * spliced reads' pipes (256 with the defaults and --threads 2, more than
 * a 1024 soft limit leaves room for at --slots 512). The soft limit goes
 * up to the hard one, as servers do.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int serve_loop(struct bsteer_server *s)
{
	__u64 deadline = 0;
	__u32 failed = 0;
	int err;

	while (1) {
		if (exiting && !deadline) {
			serve_log(s, "stopping: draining requests in flight");
			s->fe->stop(s);
			deadline = bsteer_now_ns() + DRAIN_SECS * 1000000000ull;
		}
		if (deadline && s->fe->idle(s) && !bsteer_engine_busy(&s->e))
			return 0;
		if (deadline && bsteer_now_ns() > deadline) {
			serve_log(s, "drain timed out with requests in flight");
			return -ETIMEDOUT;
		}
		/* Wake up now and then: signals and the drain deadline. */
		err = bsteer_engine_run_timeout(&s->e, 1, 200);
		if (err && err != -EINTR)
			return err;
		s->fe->tick(s);
		resync_tick(s, deadline != 0);
		if (!s->ring)
			log_failed_legs(s, &failed);
	}
}

#define CONF_MAX_ARGS	256

/*
 * The config file: one option per line, its long name without the dashes,
 * then its value if it takes one ("export disk=/var/lib/disk.img"). Blank
 * lines and lines starting with '#' are skipped. Returns an argv of the
 * file's options followed by the command line's, or NULL.
 */
/* The strings conf_argv() allocated (getopt reorders the argv it returns). */
static char *conf_strings[CONF_MAX_ARGS];
static int conf_nstrings;

static void conf_free(char **nv)
{
	while (conf_nstrings)
		free(conf_strings[--conf_nstrings]);
	free(nv);
}

static char **conf_argv(const char *path, const struct option *opts,
			int argc, char **argv, int *out_argc)
{
	char **nv = calloc(CONF_MAX_ARGS + argc + 1, sizeof(*nv));
	char line[4096];
	int n = 0, lineno = 0, i;
	FILE *f;

	if (!nv)
		return NULL;
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "bsteer serve: cannot read %s: %s\n", path,
			strerror(errno));
		free(nv);
		return NULL;
	}
	nv[n++] = argv[0];
	while (fgets(line, sizeof(line), f)) {
		char *key = line, *val, *end;
		const struct option *o;

		lineno++;
		key += strspn(key, " \t");
		end = key + strcspn(key, "\r\n");
		*end = 0;
		if (!*key || *key == '#')
			continue;
		val = key + strcspn(key, " \t=");
		if (*val) {
			*val++ = 0;
			val += strspn(val, " \t=");
		}
		while (end > val && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = 0;
		for (o = opts; o->name && strcmp(o->name, key); o++)
			;
		if (!o->name || !strcmp(key, "config") || !strcmp(key, "help")) {
			fprintf(stderr, "bsteer serve: %s:%d: unknown setting '%s'\n",
				path, lineno, key);
			goto fail;
		}
		if ((o->has_arg == required_argument) != !!*val) {
			fprintf(stderr, "bsteer serve: %s:%d: '%s' %s a value\n",
				path, lineno, key,
				o->has_arg == required_argument ? "needs" : "takes no");
			goto fail;
		}
		if (n + 2 >= CONF_MAX_ARGS) {
			fprintf(stderr, "bsteer serve: %s: too many settings\n", path);
			goto fail;
		}
		if (asprintf(&nv[n], "--%s", key) < 0)
			goto fail;
		conf_strings[conf_nstrings++] = nv[n++];
		if (*val) {
			if (!(nv[n] = strdup(val)))
				goto fail;
			conf_strings[conf_nstrings++] = nv[n++];
		}
	}
	fclose(f);
	for (i = 1; i < argc; i++)
		nv[n++] = argv[i];
	*out_argc = n;
	return nv;
fail:
	fclose(f);
	conf_free(nv);
	return NULL;
}

/*
 * Targets on other servers: worker 0 drives the connections the main thread
 * made; every other worker makes its own (@own: which to close at the end).
 */
static int connect_upstreams(struct bsteer_server *s, bool *own)
{
	int k, fd;
	__u32 i;

	for (k = 0; k < s->nexports; k++) {
		struct export *ex = &s->exports[k];

		for (i = 0; i < ex->ntargets; i++) {
			__u32 t = ex->tbase + i;

			if (!ex->be[i]->connect || !s->ring)
				continue;
			/* The main thread has checked that it takes writes. */
			fd = ex->be[i]->connect(ex->spec[i], true, &s->tinfo[t]);
			if (fd < 0)
				return fd;
			s->tfd[t] = fd;
			own[t] = true;
		}
	}
	return 0;
}

static int attach_upstreams(struct bsteer_server *s)
{
	int k, err;
	__u32 i;

	for (k = 0; k < s->nexports; k++) {
		struct export *ex = &s->exports[k];

		for (i = 0; i < ex->ntargets; i++) {
			__u32 t = ex->tbase + i;

			if (!ex->be[i]->connect)
				continue;
			s->tinfo[t].timeout_ms = s->up_timeout_ms;
			err = bsteer_engine_upstream(&s->e, t, s->tfd[t], &s->tinfo[t]);
			if (err)
				return err;
		}
	}
	return 0;
}

/*
 * "listening on" is the server's word that it is ready (tests and tools
 * wait for it), so it is said once every worker has its ring, buffers and
 * files set up, or has given up.
 */
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static __u32 workers_settled;

static void worker_settled(void)
{
	pthread_mutex_lock(&ready_lock);
	workers_settled++;
	pthread_cond_broadcast(&ready_cond);
	pthread_mutex_unlock(&ready_lock);
}

static void wait_workers(__u32 n)
{
	pthread_mutex_lock(&ready_lock);
	while (workers_settled < n)
		pthread_cond_wait(&ready_cond, &ready_lock);
	pthread_mutex_unlock(&ready_lock);
}

/* One worker: its own ring, its share of slots and requests, its clients. */
static void *worker_main(void *arg)
{
	struct bsteer_server *s = arg;
	struct bsteer_frontend_cb cb = {
		.complete = cb_complete, .frontend_done = cb_op_done,
		.cqe = cb_cqe, .arg = s,
	};
	bool engine = false, started = false, own[BSTEER_MAX_TARGETS] = {};
	__u32 t;
	int err;

	err = connect_upstreams(s, own);
	if (err)
		goto out;
	err = bsteer_engine_init(&s->e, s->in, s->ring, &cb);
	if (err)
		goto out;
	engine = true;
	s->e.verbose = s->verbose;
	s->e.inline_io = !s->no_inline_io;
	s->e.inline_writes = s->inline_writes;
	if (!s->no_splice && bsteer_engine_splice(&s->e) && !s->ring)
		serve_log(s, "spliced reads are off: %s", bsteer_errbuf());
	err = bsteer_engine_files(&s->e, s->tfd, s->ntfd, NULL, 0);
	for (t = 0; !err && s->verbose && !s->ring && t < s->ntfd; t++)
		if (bsteer_engine_inline(&s->e, t))
			serve_log(s, "target %u: served inline by the ring's thread (io_uring would need a worker)",
				  t);
		else if (s->e.inl_wr_fd[t] >= 0)
			serve_log(s, "target %u: its small one-leg writes are done by the ring's thread (io_uring would need a worker)",
				  t);
	if (!err)
		err = attach_upstreams(s);
	if (err)
		goto out;
	err = s->fe->start(s);
	if (err)
		goto out;
	started = true;
	worker_settled();
	err = serve_loop(s);
	if (!err)
		err = flush_all(s);
out:
	if (!started)
		worker_settled();
	if (err && !started)
		serve_log(s, "worker %u: %s", s->ring, *bsteer_errbuf() ?
			  bsteer_errbuf() : strerror(-err));
	if (err)
		exiting = 1;	/* one worker down takes the server down */
	if (started)
		s->fe->fini(s);
	if (engine)
		bsteer_engine_fini(&s->e);
	resync_fini(s);
	for (t = 0; t < s->ntfd; t++)
		if (own[t])
			close(s->tfd[t]);
	s->status = err;
	return NULL;
}

/*
 * An "auto|off" switch, or "auto|all|off" if @all is given: *@off is set
 * for "off", *@all for "all"; anything else is refused.
 */
static int parse_auto_off(const char *name, const char *arg, bool *off, bool *all)
{
	if (strcmp(arg, "auto") && strcmp(arg, "off") && (!all || strcmp(arg, "all"))) {
		fprintf(stderr, "bsteer serve: %s takes auto%s or off, not '%s'\n", name,
			all ? ", all" : "", arg);
		return -1;
	}
	*off = !strcmp(arg, "off");
	if (all)
		*all = !strcmp(arg, "all");
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "export", required_argument, NULL, 'e' },
		{ "threads", required_argument, NULL, 't' },
		{ "instance", required_argument, NULL, 'i' },
		{ "slots", required_argument, NULL, 'n' },
		{ "slot-size", required_argument, NULL, 's' },
		{ "allow-remote", no_argument, NULL, 'R' },
		{ "upstream-timeout", required_argument, NULL, 'U' },
		{ "reply-timeout", required_argument, NULL, 'T' },
		{ "json-log", no_argument, NULL, 'J' },
		{ "inline-io", required_argument, NULL, 'M' },
		{ "splice", required_argument, NULL, 'Z' },
		{ "no-hook", no_argument, NULL, 'N' },
		{ "config", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bsteer_instance_opts io = { .kind = "serve" };
	char **conf = NULL;
	struct bsteer_server *s, *w = NULL;
	pthread_t tid[MAX_THREADS];
	int opt, err, rc = 1, k;
	__u64 slot_size = DEF_SLOT, nslots = DEF_SLOTS, threads = 1;
	char name[BSTEER_NAME_MAX + 1];
	const char *policy;
	struct serve_policy sp;
	struct cowmap cow = { .fd = -1 };
	bool listening = false, cow_open = false;
	__u32 i, started = 0;

	s = calloc(1, sizeof(*s));
	if (!s)
		return 1;
	for (k = 0; k < SERVE_MAX_LISTEN; k++)
		s->lfd[k] = -1;
	s->resync_fd = -1;
	s->reply_timeout_ms = 30000;
	snprintf(name, sizeof(name), "serve-%d", getpid());
	/* A config file's settings come first; the command line adds to them. */
	for (k = 1; k < argc; k++) {
		const char *cf = NULL;

		if ((!strcmp(argv[k], "--config") || !strcmp(argv[k], "-c")) &&
		    k + 1 < argc)
			cf = argv[k + 1];
		else if (!strncmp(argv[k], "--config=", 9))
			cf = argv[k] + 9;
		if (!cf)
			continue;
		conf = conf_argv(cf, opts, argc, argv, &argc);
		if (!conf)
			goto out;
		argv = conf;
		break;
	}
	while ((opt = getopt_long(argc, argv, "l:e:t:i:n:s:c:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			break;	/* read above */
		case 'l':
			if (s->nlisten == SERVE_MAX_LISTEN) {
				fprintf(stderr, "bsteer serve: at most %d listen addresses\n",
					SERVE_MAX_LISTEN);
				goto out;
			}
			s->listen[s->nlisten++] = optarg;
			break;
		case 'e':
			if (parse_export(s, optarg))
				goto out;
			break;
		case 't':
			if (bsteer_parse_size(optarg, &threads) || !threads ||
			    threads > MAX_THREADS) {
				fprintf(stderr, "bsteer serve: threads must be 1..%d\n",
					MAX_THREADS);
				goto out;
			}
			break;
		case 'i':
			if (!bsteer_name_valid(optarg)) {
				fprintf(stderr, "bsteer serve: invalid instance name '%s'\n",
					optarg);
				goto out;
			}
			snprintf(name, sizeof(name), "%s", optarg);
			break;
		case 'n':
			if (bsteer_parse_size(optarg, &nslots) || nslots < 2 ||
			    nslots > BSTEER_MAX_SLOTS) {
				fprintf(stderr, "bsteer serve: slots must be 2..%u\n",
					BSTEER_MAX_SLOTS);
				goto out;
			}
			break;
		case 's':
			if (bsteer_parse_size(optarg, &slot_size) || !slot_size ||
			    slot_size % 4096 || slot_size > (4u << 20)) {
				fprintf(stderr, "bsteer serve: slot size must be a multiple of 4096, at most 4M\n");
				goto out;
			}
			break;
		case 'R':
			s->allow_remote = true;
			break;
		case 'U':
		case 'T': {
			char *end;
			double secs = strtod(optarg, &end);

			if (*end || !(secs >= 0.1 && secs <= 3600)) {
				fprintf(stderr, "bsteer serve: --%s takes 0.1..3600 seconds\n",
					opt == 'U' ? "upstream-timeout" : "reply-timeout");
				goto out;
			}
			*(opt == 'U' ? &s->up_timeout_ms : &s->reply_timeout_ms) = secs * 1000;
			break;
		}
		case 'J':
			s->json_log = true;
			break;
		case 'N':
			io.no_complete_hook = true;
			break;
		case 'Z':
			if (parse_auto_off("--splice", optarg, &s->no_splice, NULL))
				goto out;
			break;
		case 'M':
			if (parse_auto_off("--inline-io", optarg, &s->no_inline_io,
					   &s->inline_writes))
				goto out;
			break;
		case 'v':
			s->verbose = io.verbose = true;
			break;
		case 'h':
			fputs(serve_usage, stdout);
			rc = 0;
			goto out;
		default:
			fputs(serve_usage, stderr);
			rc = 2;
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "bsteer serve: unexpected argument '%s'\n", argv[optind]);
		goto out;
	}
	if (bsteer_check_privileges("bsteer serve"))
		goto out;
	if (nslots * threads > BSTEER_MAX_SLOTS || nslots * threads * 2 > BSTEER_MAX_REQS) {
		fprintf(stderr, "bsteer serve: %llu slots per thread for %llu threads is more than %u\n",
			(unsigned long long)nslots, (unsigned long long)threads,
			BSTEER_MAX_SLOTS / 2);
		goto out;
	}
	if (!s->nlisten)
		s->listen[s->nlisten++] = DEF_LISTEN;
	if (!s->nexports && default_export(s))
		goto out;
	for (k = 0; k < s->nexports; k++)
		for (i = 0; i < s->exports[k].ntargets; i++)
			s->exports[k].fd[i] = -1;
	if (resolve_policy(s, &sp, slot_size) ||
	    open_exports(s, &sp, s->tfd, &s->ntfd))
		goto out;
	policy = sp.name;

	install_signals();
	raise_fd_limit();
	io.name = name;
	io.policy = policy;
	io.nrings = threads;
	io.nslots = nslots * threads;
	io.slot_size = slot_size;
	io.nreqs = nslots * threads * 2;
	io.ntargets = s->ntfd;
	io.legs = sp.legs;
	s->in = bsteer_instance_open(&io, &err);
	if (!s->in) {
		fprintf(stderr, "bsteer serve: %s\n", bsteer_errbuf());
		goto out;
	}
	if (policy_state(s, &sp, &cow, &cow_open))
		goto out;
	err = resync_pin(s);
	if (err)
		serve_log(s, "cannot pin the resync map (bsteer resync will not work): %s",
			  strerror(-err));
	s->fe = &nbd_frontend;
	err = s->fe->listen(s);
	listening = true;
	if (err) {
		fprintf(stderr, "bsteer serve: %s\n", *bsteer_errbuf() ?
			bsteer_errbuf() : strerror(-err));
		goto out;
	}
	for (k = 0; k < s->nexports; k++)
		serve_log(s, "export '%s': %llu bytes on %u target(s)%s, policy %s",
			  s->exports[k].name,
			  (unsigned long long)s->exports[k].size,
			  s->exports[k].ntargets,
			  s->exports[k].rdonly ? ", read-only" : "", policy);

	w = calloc(threads, sizeof(*w));
	if (!w)
		goto out;
	for (i = 0; i < threads; i++) {
		w[i] = *s;
		w[i].ring = i;
		if (pthread_create(&tid[i], NULL, worker_main, &w[i])) {
			serve_log(s, "cannot start worker %u", i);
			exiting = 1;
			break;
		}
		started++;
	}
	wait_workers(started);
	for (k = 0; !exiting && k < s->nlisten; k++)
		serve_log(s, "listening on %s (instance %s, %llu thread%s)",
			  s->listen[k], name, (unsigned long long)threads,
			  threads > 1 ? "s" : "");
	rc = 0;
	for (i = 0; i < started; i++) {
		pthread_join(tid[i], NULL);
		if (w[i].status)
			rc = 1;
	}
	if (started < threads)
		rc = 1;
	if (s->cow && cowmap_sync(s->cow)) {
		serve_log(s, "cannot save the cow bitmap %s", s->cow->path);
		rc = 1;
	}
	serve_log(s, rc ? "stopped with an error" : "stopped");
out:
	if (cow_open)
		cowmap_close(&cow);
	free(w);
	conf_free(conf);
	if (listening)
		s->fe->unlisten(s);
	if (s->resync_fd >= 0)
		close(s->resync_fd);
	bsteer_instance_close(s->in);
	for (k = 0; k < s->nexports; k++)
		for (i = 0; i < s->exports[k].ntargets; i++)
			if (s->exports[k].fd[i] > 0)
				close(s->exports[k].fd[i]);
	free(s);
	return rc;
}
