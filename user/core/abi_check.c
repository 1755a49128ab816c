// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The ABI's sizes, pinned: a field that moves breaks the build here, not
 * the data at run time.
 */
#include <stddef.h>
#include "bsteer.h"

_Static_assert(sizeof(struct bsteer_slot) == 32, "bsteer_slot");
_Static_assert(sizeof(struct bsteer_req_op) == 32, "bsteer_req_op");
_Static_assert(sizeof(struct bsteer_req) == 64 + 32 * BSTEER_REQ_OPS, "bsteer_req");
_Static_assert(offsetof(struct bsteer_req, ops) == 64, "bsteer_req.ops");
_Static_assert(sizeof(struct bsteer_dop) == 32, "bsteer_dop");
_Static_assert(sizeof(struct bsteer_decision) == 32 + 32 * BSTEER_DEC_OPS,
	       "bsteer_decision");
_Static_assert(offsetof(struct bsteer_decision, ops) == 32, "bsteer_decision.ops");
_Static_assert(sizeof(struct bsteer_target) == 256, "bsteer_target");
_Static_assert(sizeof(struct bsteer_ring) == 40, "bsteer_ring");
_Static_assert(sizeof(struct bsteer_cqe) == 16, "bsteer_cqe");
_Static_assert(sizeof(struct bsteer_fallback_args) == 16, "bsteer_fallback_args");
_Static_assert(sizeof(struct bsteer_cfg) == 8 + 8 * BSTEER_CFG_WORDS, "bsteer_cfg");
_Static_assert(sizeof(struct bsteer_info) == 120, "bsteer_info");
_Static_assert(sizeof(struct bsteer_event) == 40, "bsteer_event");
_Static_assert(BSTEER_MAX_REQS <= (1u << BSTEER_UD_REQ_BITS), "request index bits");
_Static_assert(BSTEER_REQ_OPS == 8 && BSTEER_DEC_OPS == 8, "3-bit op index");
_Static_assert(sizeof(struct bsteer_blkreq) == 48, "bsteer_blkreq");
_Static_assert(sizeof(struct bsteer_parse_args) == 16, "bsteer_parse_args");

#include "bsteer_trace.h"

_Static_assert(sizeof(struct bsteer_tev) == 104, "bsteer_tev");
_Static_assert(offsetof(struct bsteer_tev, comm) == 88, "bsteer_tev.comm");
_Static_assert(sizeof(struct bsteer_tnode) == 56, "bsteer_tnode");
_Static_assert(sizeof(struct bsteer_tuse) == 56, "bsteer_tuse");
_Static_assert(sizeof(struct bsteer_tring) == 32, "bsteer_tring");
_Static_assert(BSTEER_TEV__MAX <= 256, "event kind is a byte");
