// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The target registry: every target module, asked in order whether it
 * takes a target spec. A new target is a new file and one line here.
 */
#include <string.h>
#include "libbsteer.h"

extern const struct bsteer_target_ops file_target;
extern const struct bsteer_target_ops nbd_target;
extern const struct bsteer_target_ops rbd_target;

const struct bsteer_target_ops *const bsteer_target_modules[] = {
	&nbd_target,
	&rbd_target,
	&file_target,	/* last: whatever is not a URI */
	NULL,
};
