// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Lookups in the module registries (user/frontend/registry.c,
 * user/target/registry.c): the core finds modules by name or by the
 * spec they take, and never names one.
 */
#include <string.h>
#include "libbsteer.h"

const struct bsteer_target_ops *bsteer_target_for(const char *spec)
{
	const struct bsteer_target_ops *const *t;

	for (t = bsteer_target_modules; *t; t++)
		if ((*t)->match(spec))
			return *t;
	return NULL;
}

const struct bsteer_frontend_ops *bsteer_frontend_find(const char *name)
{
	const struct bsteer_frontend_ops *const *f;

	for (f = bsteer_frontend_modules; *f; f++)
		if (!strcmp((*f)->name, name))
			return *f;
	return NULL;
}

int bsteer_frontend_id(const struct bsteer_frontend_ops *ops)
{
	int i;

	for (i = 0; i < BSTEER_FRONTEND_IDS && bsteer_frontend_modules[i]; i++)
		if (bsteer_frontend_modules[i] == ops)
			return i;
	return -1;
}

void bsteer_fe_count(struct bsteer_fe *fe, __u32 i, __u64 v)
{
	__u64 *c = fe->s->in->fe_stats;

	if (i + 2 < BSTEER_FE_COUNTERS)
		__atomic_fetch_add(&c[fe->id * BSTEER_FE_COUNTERS + 2 + i], v,
				   __ATOMIC_RELAXED);
}
