/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * bsteer serve: exports, and the two kinds of pluggable parts. A frontend
 * turns a protocol into generic block requests; a backend opens a target.
 * Each is a const ops table in its own file plus one line in its registry.
 */
#ifndef BSTEER_SERVE_H
#define BSTEER_SERVE_H

#include "libbsteer.h"

#define SERVE_MAX_EXPORTS	8
#define SERVE_MAX_LISTEN	8

struct bsteer_backend_ops {
	const char *name;
	/* Does this backend take the target spec? */
	bool (*match)(const char *spec);
	/* Open it; *size is its size in bytes. Returns an fd or -errno. */
	int (*open)(const char *spec, bool rdonly, __u64 *size);
	/*
	 * Or, for a target on another server: connect and shake hands. Every
	 * worker makes its own connection. Returns an fd or -errno, with the
	 * reason in bsteer_errbuf().
	 */
	int (*connect)(const char *spec, bool rdonly, struct bsteer_nbd_info *info);
};

struct export {
	char name[64];
	char description[128];
	const char *spec[BSTEER_MAX_TARGETS];
	const struct bsteer_backend_ops *be[BSTEER_MAX_TARGETS];
	int fd[BSTEER_MAX_TARGETS];
	__u32 ntargets;
	__u32 tbase;		/* first of its targets in the instance */
	bool rdonly;
	bool no_zeroes;		/* the policy cannot do WRITE_ZEROES */
	bool no_extents;	/* leg 0 is not the export: all data */
	char policy[64];
	char *opts[16];		/* KEY=VALUE settings for the policy */
	__u32 nopts;
	__u64 size;
	__u32 part_max;		/* request bytes per slot, 0: the slot size */
};

struct bsteer_server;
struct cowmap;
struct resync_job;

struct bsteer_frontend_ops {
	const char *name;
	/* Once per server: open the listening sockets (and close them). */
	int (*listen)(struct bsteer_server *s);
	void (*unlisten)(struct bsteer_server *s);
	/* Per worker, on its own thread: start accepting. */
	int (*start)(struct bsteer_server *s);
	void (*cqe)(struct bsteer_server *s, const struct io_uring_cqe *cqe);
	void (*complete)(struct bsteer_server *s, __u32 req, int err);
	void (*op_done)(struct bsteer_server *s, __u32 req, __u32 op, int res);
	/* After every turn of the event loop. */
	void (*tick)(struct bsteer_server *s);
	/* Stop taking connections and requests; close what is idle. */
	void (*stop)(struct bsteer_server *s);
	/* Nothing left in flight: the server may exit. */
	bool (*idle)(struct bsteer_server *s);
	void (*fini)(struct bsteer_server *s);
};

/*
 * One per worker thread: the worker's engine and frontend state, with a
 * copy of the server's configuration (exports, listening sockets).
 */
struct bsteer_server {
	struct bsteer_engine e;
	__u32 ring;		/* this worker's ring */
	int status;		/* the worker's result */
	struct bsteer_instance *in;
	const struct bsteer_frontend_ops *fe;
	void *fe_priv;
	struct export exports[SERVE_MAX_EXPORTS];
	int nexports;
	const char *listen[SERVE_MAX_LISTEN];
	int nlisten;
	int lfd[SERVE_MAX_LISTEN];
	char unix_path[SERVE_MAX_LISTEN][108];
	/* The socket file we bound: removed at exit only if it is still ours. */
	__u64 unix_dev[SERVE_MAX_LISTEN], unix_ino[SERVE_MAX_LISTEN];
	int tfd[BSTEER_MAX_TARGETS];	/* every export's targets, in order */
	__u32 ntfd;
	struct bsteer_nbd_info tinfo[BSTEER_MAX_TARGETS]; /* upstream targets */
	struct cowmap *cow;	/* the cow policy's bitmap file, or NULL */
	int resync_fd;		/* the pinned "resync" map, or -1 */
	struct resync_job *rs;	/* worker 0's leg rebuild */
	__u32 up_timeout_ms;	/* upstream targets: fail after this long */
	__u32 reply_timeout_ms;	/* a client's unread reply: drop it after */
	bool allow_remote;	/* listen beyond loopback */
	bool json_log;
	bool no_inline_io;	/* --inline-io off */
	bool inline_writes;	/* --inline-io all */
	bool no_splice;		/* --splice off */
	bool verbose;
	bool quiet;		/* no log lines (the fuzzer) */
};

extern const struct bsteer_backend_ops file_backend;
extern const struct bsteer_backend_ops nbd_backend;
extern const struct bsteer_frontend_ops nbd_frontend;

const struct bsteer_backend_ops *bsteer_backend_for(const char *spec);
const struct bsteer_frontend_ops *bsteer_frontend_find(const char *name);
struct export *serve_export_find(struct bsteer_server *s, const char *name);
/* NBD frontend pieces, pure enough to fuzz (user/fe_nbd.c). */
int nbd_check_request(const struct export *ex, __u32 max, __u16 type,
		      __u64 off, __u32 len, __u32 nerr);
struct export *nbd_negotiate(struct bsteer_server *s, int fd, bool *structured);

/* Leg rebuilds (user/resync.c): worker 0 drives them from its loop. */
int resync_pin(struct bsteer_server *s);
void resync_tick(struct bsteer_server *s, bool stopping);
bool resync_owns(struct bsteer_server *s, __u32 req);
void resync_complete(struct bsteer_server *s, __u32 req, int err);
void resync_fini(struct bsteer_server *s);

/* One log line, plain or JSON. */
void serve_log(struct bsteer_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif /* BSTEER_SERVE_H */
