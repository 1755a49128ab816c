/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Frontend parsers: a protocol header arrives in map "fe_hdr"; the parser
 * turns it into a generic request in map "fe_req", in the completion hook
 * (tail call from the core) or, when that did not run, in its syscall twin.
 *
 * A parser is one function,
 *
 *	static __always_inline void NAME_parse(const __u8 *hdr, __s32 res,
 *					       struct bsteer_blkreq *out);
 *
 * plus BSTEER_PARSER(NAME), which generates NAME_tp and NAME_sys.
 */
#ifndef BSTEER_FRONTEND_BPF_H
#define BSTEER_FRONTEND_BPF_H

#include "bsteer.bpf.h"
#include <bpf/bpf_endian.h>

struct bsteer_hdr {
	__u8 b[BSTEER_HDR_SIZE];
};

BSTEER_MMAP_ARRAY(fe_hdr, struct bsteer_hdr, 1);
BSTEER_MMAP_ARRAY(fe_req, struct bsteer_blkreq, 1);
BSTEER_MMAP_ARRAY(fe_stats, __u64, BSTEER_FRONTEND_IDS * BSTEER_FE_COUNTERS);

/* Count a header parsed, for the core and for its frontend. */
static __always_inline void parse_count(__u32 stat, __u32 parser, __u32 which)
{
	__u32 k = (parser % BSTEER_FRONTEND_IDS) * BSTEER_FE_COUNTERS + which;
	__u64 *c = bpf_map_lookup_elem(&fe_stats, &k);

	stat_inc(stat);
	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline void parse_run(__u64 ud, __s32 res, __u32 stat,
		__u32 which,
		void (*parse)(const __u8 *, __s32, struct bsteer_blkreq *))
{
	__u32 idx = bsteer_hdr_index(bsteer_parse_ud_ring(ud),
				     bsteer_parse_ud_conn(ud));
	struct bsteer_blkreq *out = bpf_map_lookup_elem(&fe_req, &idx);
	struct bsteer_hdr *h = bpf_map_lookup_elem(&fe_hdr, &idx);

	if (!out || !h)
		return;
	out->stamp = 0;
	out->cookie = 0;
	out->offset = 0;
	out->len = 0;
	out->error = 0;
	out->flags = 0;
	out->cmd = 0;
	out->type = BSTEER_REQ_NONE;
	out->payload = 0;
	out->fatal = 0;
	parse(h->b, res, out);
	out->stamp = ud;	/* last: a half-parsed entry never matches */
	parse_count(stat, bsteer_parse_ud_parser(ud), which);
}

#define BSTEER_PARSER(name)						\
SEC("tp_btf/io_uring_complete")						\
int name##_tp(__u64 *ctx)						\
{									\
	struct bsteer_scratch *s;					\
	__u32 zero = 0;							\
									\
	s = bpf_map_lookup_elem(&scratch, &zero);			\
	if (s)								\
		parse_run(s->user_data, s->res, BSTEER_ST_PARSED_HOOK,	\
			  BSTEER_FE_PARSED_HOOK, name##_parse);		\
	return 0;							\
}									\
									\
SEC("syscall")								\
int name##_sys(struct bsteer_parse_args *args)			\
{									\
	parse_run(args->user_data, args->res,				\
		  BSTEER_ST_PARSED_FALLBACK, BSTEER_FE_PARSED_TWIN,	\
		  name##_parse);					\
	return 0;							\
}

#endif /* BSTEER_FRONTEND_BPF_H */
