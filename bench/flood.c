// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bench/flood: new TCP connections from one source address to HOST:PORT,
 * RATE a second, for SECS seconds, the way a denied client that keeps
 * trying looks to a server. Each is a non-blocking connect (one SYN);
 * each socket is closed 200 ms later (before the kernel's first SYN
 * retransmit), whatever became of it, and at most INFLIGHT are open at
 * once. Ends with one line: attempts, handshakes completed (the socket
 * had a peer when closed), failed (socket, bind or connect refused).
 *
 * Usage: flood SRC HOST PORT SECS [RATE [INFLIGHT]]   (defaults 5000, 2048)
 * (RATE is reached only if INFLIGHT >= RATE / 5: a dropped SYN's socket
 * lives 200 ms)
 * Build: cc -O2 -o flood bench/flood.c (bench/access.sh does)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define AGE_NS	200000000ull

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int addr(const char *s, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return 0;
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage src, dst, peer;
	socklen_t slen, dlen, plen;
	unsigned long long t0, end, sent = 0, done = 0, failed = 0;
	unsigned long long *born;
	int *fds, rate, max, head = 0, n = 0;
	double secs;

	if (argc < 5) {
		fprintf(stderr, "usage: flood SRC HOST PORT SECS [RATE [INFLIGHT]]\n");
		return 2;
	}
	secs = atof(argv[4]);
	rate = argc > 5 ? atoi(argv[5]) : 5000;
	max = argc > 6 ? atoi(argv[6]) : 2048;
	if (addr(argv[1], 0, &src, &slen) || addr(argv[2], atoi(argv[3]), &dst, &dlen) ||
	    src.ss_family != dst.ss_family || secs <= 0 || rate <= 0 || max <= 0) {
		fprintf(stderr, "flood: bad arguments (SRC and HOST of one family)\n");
		return 2;
	}
	/* INFLIGHT sockets at once: as many files as the hard limit allows */
	{
		struct rlimit rl;

		if (!getrlimit(RLIMIT_NOFILE, &rl)) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	fds = calloc(max, sizeof(*fds));
	born = calloc(max, sizeof(*born));
	if (!fds || !born)
		return 1;
	t0 = now_ns();
	end = t0 + secs * 1e9;
	/*
	 * The same work per connection whatever the server does with it: no
	 * polling (its cost would grow with the sockets a dropped SYN leaves
	 * waiting); each socket is closed at 200 ms, oldest first, and counted
	 * as a handshake if it has a peer by then.
	 */
	for (;;) {
		unsigned long long now = now_ns(), due;

		while (n && (now - born[head] >= AGE_NS || now >= end)) {
			plen = sizeof(peer);
			if (!getpeername(fds[head], (struct sockaddr *)&peer, &plen))
				done++;
			close(fds[head]);
			head = (head + 1) % max;
			n--;
		}
		if (now >= end)
			break;
		due = (now - t0) * rate / 1000000000ull;
		while (sent < due && n < max) {
			int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
			/* close() resets: no TIME_WAIT to run the ports out */
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			int k = (head + n) % max;

			sent++;
			if (fd < 0) {
				failed++;
				break;
			}
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			if (bind(fd, (struct sockaddr *)&src, slen) ||
			    (connect(fd, (struct sockaddr *)&dst, dlen) && errno != EINPROGRESS)) {
				close(fd);
				failed++;
				continue;
			}
			fds[k] = fd;
			born[k] = now;
			n++;
		}
		usleep(500);
	}
	printf("attempts %llu handshakes %llu failed %llu rate %.0f/s\n",
	       sent, done, failed, sent / ((now_ns() - t0) / 1e9));
	return 0;
}
