// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The frontend registry. A frontend's place here is its id: its parser's
 * entry in the pinned prog array "parsers" and its block of counters in
 * "fe_stats" (at most BSTEER_FRONTEND_IDS). A new frontend is a new file
 * and one line here, at the end (ids are part of what an instance pins).
 */
#include "libbsteer.h"

extern const struct bsteer_frontend_ops fuse_frontend;
extern const struct bsteer_frontend_ops nbd_frontend;

const struct bsteer_frontend_ops *const bsteer_frontend_modules[] = {
	&nbd_frontend,
	&fuse_frontend,
	NULL,
};
