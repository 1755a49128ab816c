/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The userspace halves of the built-in policies that have one, as the
 * registry wires them in: the redirect policy's range table, the cow
 * policy's chunk bitmap.
 */
#ifndef BSTEER_POLICY_POLICY_H
#define BSTEER_POLICY_POLICY_H

#include "libbsteer.h"

/* redirect.c */
int redirect_option(struct bsteer_policy_run *p, const struct bsteer_export *ex,
		    const char *kv);
int redirect_setup(struct bsteer_policy_run *p, struct bsteer_instance *in,
		   struct bsteer_export *exports, int nexports);
int redirect_config(struct bsteer_pins *pins, const char *key, const char *val);
void redirect_config_show(struct bsteer_pins *pins, struct bsteer_json *j);
void redirect_close(struct bsteer_policy_run *p);

#define REDIRECT_HOOKS							\
	.option = redirect_option, .setup = redirect_setup,		\
	.config = redirect_config, .config_show = redirect_config_show,	\
	.close = redirect_close

/* cow.c */
int cow_option(struct bsteer_policy_run *p, const struct bsteer_export *ex,
	       const char *kv);
int cow_legs_prepare(struct bsteer_policy_run *p, struct bsteer_export *ex);
int cow_legs_opened(struct bsteer_policy_run *p, struct bsteer_export *ex,
		    __u64 *sizes);
int cow_setup(struct bsteer_policy_run *p, struct bsteer_instance *in,
	      struct bsteer_export *exports, int nexports);
int cow_sync(struct bsteer_policy_run *p);
void cow_close(struct bsteer_policy_run *p);

#define COW_HOOKS							\
	.option = cow_option, .legs_prepare = cow_legs_prepare,		\
	.legs_opened = cow_legs_opened, .setup = cow_setup,		\
	.sync = cow_sync, .close = cow_close

#endif /* BSTEER_POLICY_POLICY_H */
