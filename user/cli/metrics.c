// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * bsteer serve --metrics tcp:HOST:PORT: GET /metrics answers with the
 * instance's counters in the Prometheus text format, the same text as
 * `bsteer stat INSTANCE --prometheus`, read from the pinned maps at each
 * scrape. libmicrohttpd runs it on a thread of its own, away from the
 * rings.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include "cli/cli.h"

struct metrics {
	struct MHD_Daemon *d;
	char instance[BSTEER_NAME_MAX + 1];
};

static struct metrics m;

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *type,
			      char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload, size_t *upload_len, void **ctx)
{
	char *body = NULL;
	size_t len = 0;
	FILE *f;
	int err;

	(void)cls; (void)version; (void)upload; (void)ctx;
	if (*upload_len)
		return MHD_NO;		/* GET has no body */
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
			      strdup("GET /metrics\n"), strlen("GET /metrics\n"));
	if (strcmp(url, "/metrics"))
		return answer(c, MHD_HTTP_NOT_FOUND, "text/plain",
			      strdup("not found: try /metrics\n"), strlen("not found: try /metrics\n"));
	f = open_memstream(&body, &len);
	if (!f)
		return MHD_NO;
	err = stat_prometheus(m.instance, f);
	fclose(f);
	if (err) {
		/* Before the instance is up, or after it is gone. */
		free(body);
		return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
			      strdup("the instance is not running\n"),
			      strlen("the instance is not running\n"));
	}
	return answer(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len);
}

int metrics_start(const char *addr, const char *instance, bool allow_remote)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	const char *port = strncmp(addr, "tcp:", 4) ? NULL : strrchr(addr + 4, ':');
	struct addrinfo *ai;
	char host[256];
	__u64 p;
	int rc;

	if (!port || port - (addr + 4) >= (int)sizeof(host) || port == addr + 4) {
		cli_usage("serve", "--metrics: '%s' is not tcp:HOST:PORT", addr);
		return -EINVAL;
	}
	if (cli_u64("serve", "--metrics port", port + 1, 1, 65535, 0, &p))
		return -EINVAL;
	memcpy(host, addr + 4, port - (addr + 4));
	host[port - (addr + 4)] = 0;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	rc = getaddrinfo(host, port + 1, &hints, &ai);
	if (rc) {
		fprintf(stderr, "bsteer serve: --metrics: cannot resolve '%s': %s\n", host,
			gai_strerror(rc));
		return -EINVAL;
	}
	if (!allow_remote && !bsteer_addr_loopback(ai->ai_addr)) {
		freeaddrinfo(ai);
		cli_usage("serve", "--metrics: %s is not a loopback address; add --allow-remote to listen there",
			  addr);
		return -EPERM;
	}
	snprintf(m.instance, sizeof(m.instance), "%s", instance);
	m.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
			       (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
			       0, NULL, NULL, on_request, NULL,
			       MHD_OPTION_SOCK_ADDR, ai->ai_addr,
			       MHD_OPTION_CONNECTION_LIMIT, 16u,
			       MHD_OPTION_CONNECTION_TIMEOUT, 10u,
			       MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!m.d) {
		fprintf(stderr, "bsteer serve: --metrics: cannot listen on %s\n", addr);
		return -EADDRINUSE;
	}
	return 0;
}

void metrics_stop(void)
{
	if (m.d)
		MHD_stop_daemon(m.d);
	m.d = NULL;
}
