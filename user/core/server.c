// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Shared pieces of bsteer serve: the backend registry, exports, logging. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "serve.h"

void serve_log(struct bsteer_server *s, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (s && s->quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s && s->json_log) {
		struct bsteer_json j;
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		json_begin(&j, stderr);
		json_dbl(&j, "ts", ts.tv_sec + ts.tv_nsec / 1e9);
		json_str(&j, "msg", msg);
		json_finish(&j);
	} else {
		fprintf(stderr, "bsteer serve: %s\n", msg);
	}
}

const struct bsteer_backend_ops *bsteer_backend_for(const char *spec)
{
	static const struct bsteer_backend_ops *const backends[] = {
		&nbd_backend,
		&file_backend,
	};
	size_t i;

	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (backends[i]->match(spec))
			return backends[i];
	return NULL;
}

struct export *serve_export_find(struct bsteer_server *s, const char *name)
{
	int i;

	for (i = 0; i < s->nexports; i++)
		if (!strcmp(s->exports[i].name, name))
			return &s->exports[i];
	return NULL;
}
