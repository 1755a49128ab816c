// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libFuzzer target over the NBD server's userspace parsing (make fuzz).
 *
 * The first input byte picks what the rest is:
 *   even: the byte stream a client sends during the handshake; the real
 *         negotiation reads it from a socketpair and answers into it;
 *   odd:  a request header that the BPF parser accepted (type, offset,
 *         length, its error) plus an export (size, read-only) and the
 *         largest I/O, checked by nbd_check_request(). Whatever the input,
 *         an accepted request must lie inside the export, be aligned to the
 *         client's minimum block size (a power of two up to 64 KiB), not
 *         write to a read-only export and not exceed the largest I/O.
 * Sanitizers (ASan, UBSan) and these checks are what can fail.
 */
#include <assert.h>
#include <endian.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "frontend/nbd.h"
#include "nbd_proto.h"

#define FUZZ_MAX_INPUT	(64 << 10)

static struct bsteer_server *server(void)
{
	static struct bsteer_server *s;

	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	/* What the handshake reads of the instance: the slot size (64 per ring). */
	s->in = calloc(1, sizeof(*s->in));
	s->in->slot_size = 1 << 20;
	s->quiet = true;
	s->nexports = 2;
	snprintf(s->exports[0].name, sizeof(s->exports[0].name), "disk");
	s->exports[0].size = 1 << 30;
	snprintf(s->exports[1].name, sizeof(s->exports[1].name), "ro");
	s->exports[1].size = 12345 * 512;
	s->exports[1].rdonly = true;
	return s;
}

static void handshake(const uint8_t *d, size_t n)
{
	int sv[2], big = 4 << 20;
	bool structured;

	if (n > FUZZ_MAX_INPUT)
		return;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	/* Our replies must never block: the fuzzer reads none of them. */
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (n && write(sv[0], d, n) != (ssize_t)n)
		abort();
	shutdown(sv[0], SHUT_WR);
	/* Reply bytes pile up in sv[0]; drain them between inputs. */
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	nbd_negotiate(server(), 64, sv[1], &structured);
	close(sv[1]);
	close(sv[0]);
}

static uint64_t get(const uint8_t **d, size_t *n, size_t bytes)
{
	uint64_t v = 0;

	while (bytes-- && *n) {
		v = v << 8 | **d;
		(*d)++;
		(*n)--;
	}
	return v;
}

static void request(const uint8_t *d, size_t n)
{
	struct bsteer_export ex = {};
	uint16_t type = get(&d, &n, 2);
	uint64_t off = get(&d, &n, 8);
	uint32_t len = get(&d, &n, 4), nerr = get(&d, &n, 1) & 1 ? NBD_EINVAL : 0;
	uint32_t max = get(&d, &n, 4), align = 1u << (get(&d, &n, 1) % 17);
	int rc;

	ex.size = get(&d, &n, 8);
	ex.rdonly = get(&d, &n, 1) & 1;
	rc = nbd_check_request(&ex, max, align, type, off, len, nerr);
	if (nerr)	/* the parser's error stands */
		assert(rc == (int)nerr);
	assert(rc >= 0);
	if (rc || !(type == NBD_CMD_READ || type == NBD_CMD_WRITE ||
		    type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES))
		return;
	/* Accepted: the engine may now lease and submit on these numbers. */
	assert(len && off <= ex.size && len <= ex.size - off);
	assert(!(off % align) && !(len % align));
	assert(!(ex.rdonly && type != NBD_CMD_READ));
	assert(!((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && len > max));
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	if (!n)
		return 0;
	if (d[0] & 1)
		request(d + 1, n - 1);
	else
		handshake(d + 1, n - 1);
	return 0;
}
