// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer serve: block devices for NBD clients. The options become a
 * server (user/core/server.c) with its frontends; the server runs until
 * SIGINT or SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <systemd/sd-daemon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "frontend/fuse.h"
#include "frontend/nbd.h"

#define DEF_LISTEN	"tcp:127.0.0.1:10809"
#define DEF_DIR		"bsteer-data"
#define DEF_IMAGE	DEF_DIR "/default.img"
#define DEF_SIZE	(1ull << 30)
#define DEF_SLOT	(1u << 20)
#define DEF_SLOTS	64
#define MAX_THREADS	BSTEER_MAX_RINGS
/*
 * Without --threads, a worker per CPU the server may run on, up to this:
 * each holds its slots (64 MiB with the defaults), and a connection
 * belongs to one worker, so more workers than clients only cost memory.
 */
#define DEF_THREADS_MAX	8

static const char serve_usage[] =
"USAGE: bsteer serve [--listen tcp:HOST:PORT|unix:PATH]...\n"
"                    [--export NAME=TARGET[,TARGET...][,ro][,policy=P][,KEY=VALUE...]]...\n"
"                    [--threads N] [--instance NAME] [--slots N] [--slot-size SIZE]\n"
"                    [--allow-remote] [--metrics tcp:HOST:PORT] [--upstream-timeout SECS] [--reply-timeout SECS]\n"
"                    [--handshake-timeout SECS]\n"
"                    [--max-request SIZE]\n"
"                    [--tls off|on|require (--tls-certificates DIR [--tls-verify-peer] | --tls-psk FILE)]\n"
"                    [--inline-io auto|all|off] [--inline-budget USECS]\n"
"                    [--splice auto|off] [--no-hook]\n"
"                    [--fuse DIR [--loop] [--fuse-transport ring|dev] [--fuse-depth N]]\n"
"                    [--allow CIDR]... [--deny CIDR]... [--xdp auto|require|off] [--xdp-dev IF]...\n"
"                    [--allow-uid UID]... [--allow-gid GID]... [--max-connections N]\n"
"                    [--max-per-source N] [--xdp-replace]\n"
"                    [--json-log] [-v]\n"
"\n"
"Serve exports to NBD clients. Each request's payload lands in a borrowed\n"
"buffer slot and the BPF policy decides, at io_uring's completion hook,\n"
"which targets it goes to: passthrough (one target), mirror (several), or\n"
"the policy=P the export names (bsteer policy list; or a .bpf.o file).\n"
"KEY=VALUE settings go to the policy: chunk=SIZE (stripe, cow),\n"
"read=MODE (mirror), map=START+LEN@LEG:OFF and size=SIZE (redirect),\n"
"cowmap=PATH (cow), word.N=V (any). resync=auto (a mirror): a failed leg\n"
"is rebuilt without a request, tried again after 1, 2, 4 ... 30 s.\n"
"description=TEXT: what clients that ask are told the export is (no\n"
"commas; none by default, and never the targets' paths).\n"
"cache=none: its file and block-device legs are opened with O_DIRECT,\n"
"past the host's page cache (as qemu-nbd --cache=none); requests not\n"
"aligned to whole pages go through the page cache. FLUSH still fsyncs.\n"
"Not on tmpfs. cache=writeback, the default: through the page cache.\n"
"\n"
"A TARGET is a file or block device, or an export on another NBD server:\n"
"nbd://HOST[:PORT][/EXPORT] or nbd+unix:///EXPORT?socket=PATH (nbdkit,\n"
"qemu-nbd, another bsteer). Each worker thread connects on its own.\n"
"nbds:// and nbds+unix:// add TLS, as libnbd's URIs do:\n"
"?tls-certificates=DIR (ca-cert.pem, and client-cert.pem with\n"
"client-key.pem if there) or nbds://USER@HOST/...?tls-psk-file=FILE.\n"
"Or an image in Ceph: rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=USER] (librbd).\n"
"\n"
"With --fuse DIR, the exports are also files in a FUSE file system mounted\n"
"at DIR (an empty directory), served over FUSE's io_uring transport: each\n"
"request reaches a worker's ring and the policy steers it like an NBD\n"
"client's; --loop makes each file a loop device (direct I/O, 4096-byte\n"
"blocks), a block device for mkfs and mount. With --fuse and no --listen,\n"
"no NBD socket is opened.\n"
"\n"
"Under systemd socket activation (LISTEN_FDS), the sockets it hands over\n"
"are listened on as well (fd:N); with NOTIFY_SOCKET set, READY=1 is sent\n"
"once every worker serves and STOPPING=1 when it begins to stop.\n"
"\n"
"With no --export, serves export 'default' backed by " DEF_IMAGE "\n"
"(a 1 GiB sparse file, created if missing) on " DEF_LISTEN ".\n"
"SIGINT or SIGTERM stops accepting, drains the requests in flight, flushes\n"
"every target, removes the pins and exits 0.\n"
"\n"
"OPTIONS:\n"
"  -l, --listen ADDR     tcp:HOST:PORT, unix:PATH or fd:N, a listening\n"
"                        socket it inherits (repeatable)\n"
"  -e, --export SPEC     NAME=TARGET[,TARGET...][,ro][,policy=P][,KEY=VALUE];\n"
"                        several targets make a mirror (repeatable)\n"
"  -t, --threads N       worker threads, one ring each (default: the CPUs\n"
"                        it may run on, at most 8)\n"
"  -i, --instance NAME   pin under /sys/fs/bpf/bsteer/NAME (default serve-PID)\n"
"  -n, --slots N         buffer slots per thread (default 64)\n"
"  -s, --slot-size SIZE  bytes per slot, the largest request (default 1M)\n"
"      --allow-remote    allow listening on a non-loopback address\n"
"      --metrics ADDR    serve GET /metrics (Prometheus text format) on\n"
"                        tcp:HOST:PORT, loopback unless --allow-remote\n"
"      --upstream-timeout SECS\n"
"                        an NBD target that makes no progress this long with\n"
"                        requests out is failed (default 30)\n"
"      --reply-timeout SECS\n"
"                        a client that leaves a reply unread this long is\n"
"                        dropped, freeing its slots (default 30)\n"
"      --handshake-timeout SECS\n"
"                        a client that has not finished its NBD handshake\n"
"                        this long after connecting is dropped (default 10)\n"
"      --max-request SIZE\n"
"                        the largest NBD READ or WRITE served, in rounds of\n"
"                        what the slots hold; past it EINVAL, a WRITE's\n"
"                        payload read and dropped (default 64M)\n"
"      --tls off|on|require\n"
"                        TLS for NBD clients (NBD_OPT_STARTTLS, GnuTLS): off\n"
"                        (default); on: offered, plain clients served too;\n"
"                        require: every option but STARTTLS and ABORT is\n"
"                        refused before TLS (ERR_TLS_REQD), and nothing\n"
"                        about the exports is said\n"
"      --tls-certificates DIR\n"
"                        X.509: DIR/server-cert.pem and DIR/server-key.pem\n"
"                        (DIR/ca-cert.pem for --tls-verify-peer), the layout\n"
"                        of nbdkit and qemu\n"
"      --tls-verify-peer clients must show a certificate signed by\n"
"                        DIR/ca-cert.pem\n"
"      --tls-psk FILE    pre-shared keys instead, one USER:HEXKEY a line (the\n"
"                        format psktool writes)\n"
"      --inline-io auto|all|off\n"
"                        auto (default): a target file that io_uring cannot\n"
"                        do I/O on without a worker thread (tmpfs) is served\n"
"                        by the ring's own thread: pread() for reads of up\n"
"                        to 64K, pwrite() for writes; and one-leg writes of\n"
"                        up to 64K to a file whose buffered writes io_uring\n"
"                        hands to a worker (ext4) are pwrite()s too, while\n"
"                        they are fast (--inline-budget); all: those always,\n"
"                        with no budget: no context switch, but a write that\n"
"                        waits for the journal or for dirty pages to drain\n"
"                        holds up the thread's other clients; off: all via\n"
"                        io_uring\n"
"      --inline-budget USECS\n"
"                        with --inline-io auto, an inline write to ext4 that\n"
"                        takes this long or longer sends that target's writes\n"
"                        to io-wq for 100 ms (doubling while the next inline\n"
"                        one is slow too, up to 2 s); 0: every write is slow\n"
"                        (default 1000, max 10000000)\n"
"      --splice auto|off auto (default): a read over 64K that the policy\n"
"                        marks as the reply's (passthrough, mirror) goes from\n"
"                        the page cache to the client's socket through a pipe\n"
"                        per slot (splice), with no copy in the server; off:\n"
"                        it is copied into the slot and sent from there\n"
"      --fuse DIR        mount a FUSE file system at DIR, one file per export\n"
"      --loop            with --fuse: a loop device per export (printed as\n"
"                        'export NAME: /dev/loopN', shown by bsteer stat)\n"
"      --fuse-transport ring|dev\n"
"                        ring (default): FUSE over io_uring (Linux 6.14+;\n"
"                        turned on if off); dev: read and write /dev/fuse,\n"
"                        for kernels without it (a WRITE's data is copied)\n"
"      --fuse-depth N    ring entries per CPU queue, each with a slot of its\n"
"                        own (default 16; they come on top of --slots)\n"
"      --no-hook         leave the completion hook detached: every header and\n"
"                        decision goes to the syscall twins (slower; a test\n"
"                        of the fallback path)\n"
"      --allow CIDR      admit TCP clients from CIDR (IPv4 or IPv6; repeatable)\n"
"      --deny CIDR       refuse TCP clients from CIDR, unless an --allow rule\n"
"                        matches them (nbdkit's order: allow, then deny, then\n"
"                        admit); 0.0.0.0/0 and ::/0 deny all the rest\n"
"      --xdp auto|require|off\n"
"                        with --allow/--deny: auto (default): an XDP program\n"
"                        on the listening addresses' interfaces drops refused\n"
"                        sources' packets to our ports, or if it cannot, the\n"
"                        log says why and accept() alone checks; require:\n"
"                        refuse to start without it; off: accept() alone.\n"
"                        accept() checks the rules in every mode\n"
"      --xdp-dev IF      attach to IF instead (repeatable; needed when\n"
"                        listening on every address)\n"
"      --xdp-replace     replace an XDP program someone else attached to the\n"
"                        interface (never done otherwise; ours, left by a\n"
"                        killed server of the same --instance, always is)\n"
"      --allow-uid UID   admit unix socket clients of this uid (SO_PEERCRED);\n"
"                        with --allow-uid or --allow-gid, other peers are\n"
"                        refused (repeatable)\n"
"      --allow-gid GID   admit unix socket clients of this primary gid\n"
"      --max-connections N\n"
"                        close a connection beyond N open ones at once\n"
"      --max-per-source N\n"
"                        close a TCP connection from an address that has N\n"
"                        open already, at once (counted: bsteer stat)\n"
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
"  bsteer serve --listen tcp:10.0.0.1:10809 --allow-remote --allow 10.0.0.0/24 --deny 0.0.0.0/0\n"
"  bsteer serve --listen tcp:10.0.0.1:10809 --allow-remote --tls require --tls-certificates /etc/bsteer/tls\n"
"  nbdinfo 'nbds://10.0.0.1?tls-certificates=/etc/bsteer/client-tls'\n"
"  bsteer serve --config /etc/bsteer/serve.conf\n"
"  bsteer serve --export m=/mnt/a/disk.img,/mnt/b/disk.img --instance mirror0\n"
"  bsteer serve --export base=/srv/base.img,ro --export scratch=/tmp/s.img\n"
"  bsteer serve --export s=/d/a.img,/d/b.img,/d/c.img,policy=stripe,chunk=128K\n"
"  bsteer serve --export r=/d/a.img,/d/b.img,policy=redirect,map=0+1G@1:0,size=1G\n"
"  bsteer serve --export c=/srv/golden.img,/tmp/overlay.img,policy=cow\n"
"  bsteer serve --export m=/srv/disk.img,nbd://backup-host:10809/disk\n"
"  bsteer serve --export r=nbd+unix:///?socket=/run/nbdkit.sock\n"
"  bsteer serve --fuse /mnt/x --loop --export d=a.img,b.img,policy=mirror\n"
"  bsteer serve --fuse /mnt/x --listen unix:/tmp/nbd.sock --export d=a.img,b.img\n";

static int default_export(struct bsteer_server *s)
{
	struct bsteer_export *ex = &s->exports[0];
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
	ex->leg[0].spec = DEF_IMAGE;
	ex->leg[0].fd = -1;
	ex->ntargets = 1;
	s->nexports = 1;
	return 0;
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
 * An "auto|off" switch, or "auto|all|off" if @all is given: *@off is set
 * for "off", *@all for "all"; anything else is refused.
 */
static int parse_auto_off(const char *name, const char *arg, bool *off, bool *all)
{
	if (strcmp(arg, "auto") && strcmp(arg, "off") && (!all || strcmp(arg, "all")))
		return -cli_usage("serve", "%s: '%s' is not auto%s or off", name, arg,
				  all ? ", all" : "");
	*off = !strcmp(arg, "off");
	if (all)
		*all = !strcmp(arg, "all");
	return 0;
}

enum {
	OPT_ALLOW = 256,
	OPT_DENY,
	OPT_XDP,
	OPT_XDP_DEV,
	OPT_ALLOW_UID,
	OPT_ALLOW_GID,
	OPT_MAX_PER_SOURCE,
	OPT_XDP_REPLACE,
	OPT_MAX_CONNS,
	OPT_HS_TIMEOUT,
	OPT_MAX_REQUEST,
	OPT_TLS,
	OPT_TLS_CERTS,
	OPT_TLS_PSK,
	OPT_TLS_VERIFY,
	OPT_INLINE_BUDGET,
};

static const struct option serve_opts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "export", required_argument, NULL, 'e' },
	{ "threads", required_argument, NULL, 't' },
	{ "instance", required_argument, NULL, 'i' },
	{ "slots", required_argument, NULL, 'n' },
	{ "slot-size", required_argument, NULL, 's' },
	{ "allow-remote", no_argument, NULL, 'R' },
	{ "metrics", required_argument, NULL, 'P' },
	{ "upstream-timeout", required_argument, NULL, 'U' },
	{ "reply-timeout", required_argument, NULL, 'T' },
	{ "handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT },
	{ "json-log", no_argument, NULL, 'J' },
	{ "inline-io", required_argument, NULL, 'M' },
	{ "inline-budget", required_argument, NULL, OPT_INLINE_BUDGET },
	{ "splice", required_argument, NULL, 'Z' },
	{ "no-hook", no_argument, NULL, 'N' },
	{ "fuse", required_argument, NULL, 'F' },
	{ "loop", no_argument, NULL, 'L' },
	{ "fuse-transport", required_argument, NULL, 'X' },
	{ "fuse-depth", required_argument, NULL, 'D' },
	{ "allow", required_argument, NULL, OPT_ALLOW },
	{ "deny", required_argument, NULL, OPT_DENY },
	{ "xdp", required_argument, NULL, OPT_XDP },
	{ "xdp-dev", required_argument, NULL, OPT_XDP_DEV },
	{ "allow-uid", required_argument, NULL, OPT_ALLOW_UID },
	{ "allow-gid", required_argument, NULL, OPT_ALLOW_GID },
	{ "max-connections", required_argument, NULL, OPT_MAX_CONNS },
	{ "max-per-source", required_argument, NULL, OPT_MAX_PER_SOURCE },
	{ "xdp-replace", no_argument, NULL, OPT_XDP_REPLACE },
	{ "max-request", required_argument, NULL, OPT_MAX_REQUEST },
	{ "tls", required_argument, NULL, OPT_TLS },
	{ "tls-certificates", required_argument, NULL, OPT_TLS_CERTS },
	{ "tls-psk", required_argument, NULL, OPT_TLS_PSK },
	{ "tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY },
	{ "config", required_argument, NULL, 'c' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* What the command line asks for: the server, and its NBD frontend's options. */
struct serve_args {
	struct bsteer_server *s;
	struct nbd_conf nbd;
	struct fuse_conf fuse;
	struct bsteer_instance_opts io;
	struct bsteer_access access;
	bool access_used;
	char name[BSTEER_NAME_MAX + 1];
	__u64 slot_size, nslots, threads, fuse_depth;
	const char *metrics;	/* --metrics tcp:HOST:PORT */
	char activated[NBD_MAX_LISTEN][16];	/* fd:N from systemd */
};

/*
 * Socket activation: listening sockets systemd (or systemd-socket-activate)
 * passed in LISTEN_FDS become fd:N listen addresses, before any --listen.
 */
static int serve_activated(struct serve_args *a)
{
	int n = sd_listen_fds(1), i;

	if (n < 0) {
		fprintf(stderr, "bsteer serve: LISTEN_FDS: %s\n", strerror(-n));
		return -1;
	}
	if (n > NBD_MAX_LISTEN - a->nbd.nlisten) {
		fprintf(stderr, "bsteer serve: %d sockets from systemd; at most %d listen addresses\n",
			n, NBD_MAX_LISTEN);
		return -1;
	}
	for (i = 0; i < n; i++) {
		snprintf(a->activated[i], sizeof(a->activated[i]), "fd:%d",
			 SD_LISTEN_FDS_START + i);
		a->nbd.listen[a->nbd.nlisten++] = a->activated[i];
	}
	return 0;
}

/* systemd's Type=notify: READY=1 once every worker serves, then STOPPING=1. */
static void serve_notify(struct bsteer_server *s, enum bsteer_server_state state)
{
	if (state == BSTEER_SERVER_READY)
		sd_notifyf(0, "READY=1\nSTATUS=serving %d export(s), instance %s",
			   s->nexports, s->in ? s->in->name : "?");
	else
		sd_notify(0, "STOPPING=1\nSTATUS=draining and flushing");
}

/* A number of seconds, 0.1 to 3600, in milliseconds. */
static int parse_secs(const char *opt, const char *arg, __u32 *ms)
{
	double secs;

	if (cli_secs("serve", opt, arg, 0.1, 3600, &secs))
		return -2;
	*ms = secs * 1000;
	return 0;
}

/*
 * A listen address, checked before anything starts: unix:PATH,
 * tcp:HOST:PORT (port 1..65535; [v6] hosts) or fd:N.
 */
static int check_listen(const char *arg)
{
	const char *port;
	__u64 v;

	if (!strncmp(arg, "unix:", 5)) {
		if (!arg[5] || strlen(arg + 5) >= 108)
			return -cli_usage("serve", "--listen: '%s' wants a path of 1..107 bytes", arg);
		return 0;
	}
	if (!strncmp(arg, "fd:", 3))
		return cli_u64("serve", "--listen fd:N", arg + 3, 3, 65535, 0, &v) ? -2 : 0;
	if (strncmp(arg, "tcp:", 4) || !(port = strrchr(arg + 4, ':')))
		return -cli_usage("serve", "--listen: '%s' is not tcp:HOST:PORT, unix:PATH or fd:N",
				  arg);
	return cli_u64("serve", "--listen port", port + 1, 1, 65535, 0, &v) ? -2 : 0;
}

/* A decimal number of 0..@max, checked; the shared parser will take over. */
static int parse_u32(const char *opt, const char *arg, __u32 max, __u32 *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (!*arg || *arg == '-' || *end || errno || v > max)
		return -cli_usage("serve", "%s: '%s' is not a number of 0..%u", opt, arg, max);
	*out = v;
	return 0;
}

/* The admission options: --allow ... --max-connections. */
static int access_option(struct serve_args *a, int opt, char *arg)
{
	struct bsteer_access *ac = &a->access;

	a->access_used = true;
	switch (opt) {
	case OPT_ALLOW:
	case OPT_DENY:
		if (ac->nrules == BSTEER_ACCESS_CLI_RULES)
			return -cli_usage("serve", "at most %d --allow/--deny rules",
					  BSTEER_ACCESS_CLI_RULES);
		if (bsteer_access_parse(arg, opt == OPT_DENY, &ac->rule[ac->nrules]))
			return -cli_usage("serve", "%s: '%s' is not an IPv4 or IPv6 address or CIDR",
					  opt == OPT_DENY ? "--deny" : "--allow", arg);
		/* One rule per prefix and list: a second would take the first's id. */
		for (int i = 0; i < ac->nrules; i++) {
			const struct bsteer_access_rule *r = &ac->rule[i], *x = &ac->rule[ac->nrules];

			if (r->deny == x->deny && r->family == x->family && r->plen == x->plen &&
			    !memcmp(r->addr, x->addr, sizeof(r->addr)))
				return -cli_usage("serve", "%s %s: the same prefix as rule %d",
						  opt == OPT_DENY ? "--deny" : "--allow", arg, i);
		}
		ac->nrules++;
		return 0;
	case OPT_MAX_PER_SOURCE:
		if (parse_u32("--max-per-source", arg, 1u << 20, &ac->max_per_source))
			return -2;
		if (!ac->max_per_source)
			return -cli_usage("serve", "--max-per-source: '%s' is not 1 or more", arg);
		return 0;
	case OPT_XDP_REPLACE:
		ac->xdp_replace = true;
		return 0;
	case OPT_XDP:
		if (!strcmp(arg, "auto"))
			ac->xdp = BSTEER_XDP_AUTO;
		else if (!strcmp(arg, "require"))
			ac->xdp = BSTEER_XDP_REQUIRE;
		else if (!strcmp(arg, "off"))
			ac->xdp = BSTEER_XDP_OFF;
		else
			return -cli_usage("serve", "--xdp: '%s' is not auto, require or off", arg);
		return 0;
	case OPT_XDP_DEV:
		if (ac->nxdp_dev == BSTEER_ACCESS_DEVS)
			return -cli_usage("serve", "at most %d --xdp-dev", BSTEER_ACCESS_DEVS);
		if (!*arg || strlen(arg) >= 16)
			return -cli_usage("serve", "--xdp-dev: '%s' is not an interface name", arg);
		ac->xdp_dev[ac->nxdp_dev++] = arg;
		return 0;
	case OPT_ALLOW_UID:
		if (ac->nuid == BSTEER_ACCESS_IDS)
			return -cli_usage("serve", "at most %d --allow-uid", BSTEER_ACCESS_IDS);
		return parse_u32("--allow-uid", arg, 0xfffffffe, &ac->uid[ac->nuid++]);
	case OPT_ALLOW_GID:
		if (ac->ngid == BSTEER_ACCESS_IDS)
			return -cli_usage("serve", "at most %d --allow-gid", BSTEER_ACCESS_IDS);
		return parse_u32("--allow-gid", arg, 0xfffffffe, &ac->gid[ac->ngid++]);
	default:
		if (parse_u32("--max-connections", arg, 1u << 20, &ac->max_conns))
			return -2;
		if (!ac->max_conns)
			return -cli_usage("serve", "--max-connections: '%s' is not 1 or more", arg);
		return 0;
	}
}

/* One option: 0 to go on, 1 to stop with status 0, -1 with 1, -2 with 2. */
static int serve_option(struct serve_args *a, int opt, char *arg)
{
	struct bsteer_server *s = a->s;
	bool off, all;

	switch (opt) {
	case 'c':
		return 0;	/* read before the rest */
	case 'l':
		if (a->nbd.nlisten == NBD_MAX_LISTEN) {
			fprintf(stderr, "bsteer serve: at most %d listen addresses\n",
				NBD_MAX_LISTEN);
			return -1;
		}
		if (check_listen(arg))
			return -2;
		a->nbd.listen[a->nbd.nlisten++] = arg;
		return 0;
	case 'e':
		if (!bsteer_export_parse(s, arg))
			return 0;
		return -cli_usage("serve", "--export: %s", bsteer_errbuf());
	case 't':
		return cli_u64("serve", "--threads", arg, 1, MAX_THREADS, 0, &a->threads) ? -2 : 0;
	case 'i':
		if (!bsteer_name_valid(arg))
			return -cli_usage("serve", "--instance: '%s' is not a valid name (1..%d of A-Z a-z 0-9 . _ -)",
					  arg, BSTEER_NAME_MAX);
		snprintf(a->name, sizeof(a->name), "%s", arg);
		return 0;
	case 'n':
		return cli_u64("serve", "--slots", arg, 2, BSTEER_MAX_SLOTS, 0, &a->nslots) ? -2 : 0;
	case 's':
		if (cli_u64("serve", "--slot-size", arg, 4096, 4u << 20, CLI_SIZE, &a->slot_size))
			return -2;
		if (a->slot_size % 4096)
			return -cli_usage("serve", "--slot-size: '%s' is not a multiple of 4096", arg);
		return 0;
	case 'R':
		a->nbd.allow_remote = true;
		return 0;
	case 'P':
		a->metrics = arg;
		return 0;
	case 'U':
		return parse_secs("--upstream-timeout", arg, &s->eo.target_timeout_ms);
	case 'T':
		return parse_secs("--reply-timeout", arg, &a->nbd.reply_timeout_ms);
	case OPT_HS_TIMEOUT:
		return parse_secs("--handshake-timeout", arg, &a->nbd.handshake_timeout_ms);
	case OPT_TLS:
		if (!strcmp(arg, "off"))
			a->nbd.tls = NBD_TLS_OFF;
		else if (!strcmp(arg, "on"))
			a->nbd.tls = NBD_TLS_ON;
		else if (!strcmp(arg, "require"))
			a->nbd.tls = NBD_TLS_REQUIRE;
		else
			return -cli_usage("serve", "--tls: '%s' is not off, on or require", arg);
		return 0;
	case OPT_TLS_CERTS:
		a->nbd.tls_certs = arg;
		return 0;
	case OPT_TLS_PSK:
		a->nbd.tls_psk = arg;
		return 0;
	case OPT_TLS_VERIFY:
		a->nbd.tls_verify_peer = true;
		return 0;
	case OPT_MAX_REQUEST: {
		__u64 v;

		if (cli_u64("serve", "--max-request", arg, 4096, 0xffffffffu, CLI_SIZE, &v))
			return -2;
		a->nbd.max_request = v;
		return 0;
	}
	case 'J':
		s->json_log = true;
		return 0;
	case 'N':
		a->io.no_complete_hook = true;
		return 0;
	case 'Z':
		return parse_auto_off("--splice", arg, &s->no_splice, NULL);
	case 'M':
		if (parse_auto_off("--inline-io", arg, &off, &all))
			return -2;
		s->eo.inline_io = !off;
		s->eo.inline_writes = all;
		s->eo.inline_budget = !off && !all;
		return 0;
	case OPT_INLINE_BUDGET:
		return parse_u32("--inline-budget", arg, 10000000, &s->eo.inline_budget_us);
	case 'F':
		if (!*arg)
			return -cli_usage("serve", "--fuse: an empty directory name");
		a->fuse.dir = arg;
		return 0;
	case 'L':
		a->fuse.loop = true;
		return 0;
	case 'X':
		if (strcmp(arg, "ring") && strcmp(arg, "dev"))
			return -cli_usage("serve", "--fuse-transport: '%s' is not ring or dev", arg);
		a->fuse.dev = !strcmp(arg, "dev");
		return 0;
	case 'D':
		return cli_u64("serve", "--fuse-depth", arg, 1, 256, 0, &a->fuse_depth) ? -2 : 0;
	case 'v':
		s->verbose = s->eo.verbose = a->io.verbose = true;
		return 0;
	case 'h':
		fputs(serve_usage, stdout);
		return 1;
	case OPT_ALLOW ... OPT_MAX_CONNS:
		return access_option(a, opt, arg);
	default:
		fputs(serve_usage, stderr);
		return -2;
	}
}

/* The options (the config file's, then the command line's) into @a. */
static int serve_parse(struct serve_args *a, int argc, char **argv, char ***conf)
{
	int k, opt, rc;

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
		if (!*cf)
			return -cli_usage("serve", "--config: an empty file name");
		*conf = conf_argv(cf, serve_opts, argc, argv, &argc);
		if (!*conf)
			return -1;
		argv = *conf;
		break;
	}
	while ((opt = getopt_long(argc, argv, "l:e:t:i:n:s:c:vh", serve_opts, NULL)) != -1) {
		if (opt == '?')
			return -cli_bad_option("serve", argv);
		rc = serve_option(a, opt, optarg);
		if (rc)
			return rc;
	}
	if (optind < argc) {
		fprintf(stderr, "bsteer serve: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* The TLS options: credentials exactly when TLS is on, of one kind. */
static int serve_tls_check(const struct nbd_conf *c)
{
	const char *why = NULL;

	if (c->tls == NBD_TLS_OFF && (c->tls_certs || c->tls_psk || c->tls_verify_peer))
		why = "--tls-certificates, --tls-psk and --tls-verify-peer go with --tls on or --tls require";
	else if (c->tls != NBD_TLS_OFF && !c->tls_certs && !c->tls_psk)
		why = "--tls on|require needs --tls-certificates DIR or --tls-psk FILE";
	else if (c->tls_certs && c->tls_psk)
		why = "--tls-certificates and --tls-psk: give one";
	else if (c->tls_verify_peer && !c->tls_certs)
		why = "--tls-verify-peer goes with --tls-certificates";
	return why ? -cli_usage("serve", "%s", why) : 0;
}

/* The frontends the options ask for: NBD unless only --fuse was given. */
static int serve_frontends(struct serve_args *a)
{
	struct bsteer_server *s = a->s;

	if ((a->fuse.loop || a->fuse.dev || a->fuse_depth) && !a->fuse.dir) {
		fprintf(stderr, "bsteer serve: --loop, --fuse-transport and --fuse-depth go with --fuse DIR\n");
		return -1;
	}
	if (a->nbd.nlisten || !a->fuse.dir) {
		if (!a->nbd.nlisten)
			a->nbd.listen[a->nbd.nlisten++] = DEF_LISTEN;
		s->fe[s->nfe].ops = &nbd_frontend;
		s->fe[s->nfe].conf = &a->nbd;
		s->nfe++;
	}
	if (a->fuse.dir) {
		a->fuse.depth = a->fuse_depth ?: FUSE_DEF_DEPTH;
		s->fe[s->nfe].ops = &fuse_frontend;
		s->fe[s->nfe].conf = &a->fuse;
		s->nfe++;
	}
	for (int k = 0; k < s->nfe; k++)
		s->fe[k].id = bsteer_frontend_id(s->fe[k].ops);
	return 0;
}

/* The instance's sizes and the server's defaults, once the options are in. */
static int serve_settle(struct serve_args *a)
{
	struct bsteer_server *s = a->s;
	struct bsteer_instance_opts *io = &a->io;
	__u64 nslots;

	if (serve_frontends(a))
		return -1;
	/* A FUSE ring entry owns its slot: those come on top. */
	nslots = a->nslots + (a->fuse.dir ? fuse_slots_per_worker(&a->fuse, a->threads) : 0);
	if (nslots * a->threads > BSTEER_MAX_SLOTS ||
	    nslots * a->threads * 2 > BSTEER_MAX_REQS) {
		fprintf(stderr, "bsteer serve: %llu slots per thread for %llu threads is more than %u\n",
			(unsigned long long)nslots, (unsigned long long)a->threads,
			BSTEER_MAX_SLOTS / 2);
		return -1;
	}
	if (!s->nexports && default_export(s))
		return -1;
	io->name = a->name;
	io->kind = "serve";
	io->nrings = a->threads;
	io->nslots = nslots * a->threads;
	io->slot_size = a->slot_size;
	io->nreqs = nslots * a->threads * 2;
	return 0;
}

/* The CPUs this process may run on (its affinity mask), 1 to DEF_THREADS_MAX. */
static __u64 default_threads(void)
{
	cpu_set_t set;
	int n;

	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	n = CPU_COUNT(&set);
	return n < 1 ? 1 : n > DEF_THREADS_MAX ? DEF_THREADS_MAX : n;
}

int cmd_serve(int argc, char **argv)
{
	struct bsteer_policy_run policy;
	struct serve_args a = {
		.slot_size = DEF_SLOT, .nslots = DEF_SLOTS, .threads = default_threads(),
		.nbd.reply_timeout_ms = 30000,
		.nbd.handshake_timeout_ms = 10000,
		.nbd.max_request = NBD_DEF_MAX_REQUEST,
	};
	char **conf = NULL;
	int rc;

	a.s = calloc(1, sizeof(*a.s));
	if (!a.s)
		return 1;
	a.s->resync_fd = -1;
	a.s->eo.inline_io = true;
	a.s->eo.inline_budget = true;
	a.s->eo.inline_budget_us = 1000;
	snprintf(a.name, sizeof(a.name), "serve-%d", getpid());
	rc = serve_activated(&a) ? -1 : 0;
	if (!rc)
		rc = serve_parse(&a, argc, argv, &conf);
	if (!rc)
		rc = serve_tls_check(&a.nbd);
	if (rc)
		goto out;
	a.s->notify = serve_notify;
	if (a.access_used)
		a.s->access = &a.access;
	/* The admission options guard NBD listeners; FUSE has no clients to judge. */
	if (a.access_used && !a.nbd.nlisten && a.fuse.dir)
		fprintf(stderr, "bsteer serve: warning: --allow, --deny, --allow-uid, --allow-gid, --max-connections and --max-per-source guard NBD listeners only; with --fuse and no --listen they have no effect\n");
	/* Before anything is created: a bad address is a usage error. */
	if (a.metrics && (rc = metrics_start(a.metrics, a.name, a.nbd.allow_remote))) {
		rc = rc == -EADDRINUSE ? -1 : -2;
		goto out;
	}
	rc = -1;
	if (bsteer_check_privileges("bsteer serve") || serve_settle(&a))
		goto out;
	if (bsteer_server_policy(a.s, &policy, a.slot_size) ||
	    bsteer_server_open_legs(a.s)) {
		serve_err(a.s, "%s", bsteer_errbuf());
		goto out;
	}
	install_signals();
	raise_fd_limit();
	rc = bsteer_server_run(a.s, &a.io, a.threads, (volatile int *)&exiting) ? -1 : 0;
out:
	metrics_stop();
	bsteer_server_close_legs(a.s);
	conf_free(conf);
	free(a.s);
	return rc == 1 ? 0 : rc == -2 ? 2 : rc ? 1 : 0;
}
