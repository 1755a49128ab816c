// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Admission at the NIC: TCP packets to a guarded port from a source the
 * rules refuse are dropped before the TCP stack sees them (no SYN-ACK, no
 * accept, no close). Everything else passes untouched: other ports, other
 * protocols, fragments and IPv6 packets with extension headers before TCP
 * (accept() checks those). The rules and their precedence are described
 * in include/bsteer_access.h; userspace and bpftool change them live.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "bsteer_access.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP	0x0800
#define ETH_P_IPV6	0x86DD
#define IP_MF		0x2000
#define IP_OFFMASK	0x1fff

#define LPM_MAP(NAME, KEY)					\
struct {							\
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);			\
	__uint(max_entries, BSTEER_ACCESS_RULES);		\
	__uint(map_flags, BPF_F_NO_PREALLOC);			\
	__type(key, struct KEY);				\
	__type(value, __u32);					\
} NAME SEC(".maps")

LPM_MAP(access_allow4, bsteer_access_key4);
LPM_MAP(access_deny4, bsteer_access_key4);
LPM_MAP(access_allow6, bsteer_access_key6);
LPM_MAP(access_deny6, bsteer_access_key6);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BSTEER_ACCESS_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} access_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BSTEER_ACCESS_RULES);
	__type(key, __u32);
	__type(value, struct bsteer_access_count);
} access_counts SEC(".maps");

/* Not the program's: the server counts its refusals at accept() here. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BSTEER_ACCESS_STATS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} access_stats SEC(".maps");

static __always_inline void count(const __u32 *id, bool drop)
{
	struct bsteer_access_count *c;
	__u32 k;

	if (!id)
		return;
	k = *id;
	c = bpf_map_lookup_elem(&access_counts, &k);
	if (!c)
		return;
	c->hits++;
	if (drop)
		c->drops++;
}

/* The verdict for a source, its lookups given: allow first, then deny. */
static __always_inline int verdict(const __u32 *allow, const __u32 *deny)
{
	if (allow) {
		count(allow, false);
		return XDP_PASS;
	}
	if (deny) {
		count(deny, true);
		return XDP_DROP;
	}
	return XDP_PASS;
}

static __always_inline bool guarded(const struct tcphdr *th, void *end)
{
	__u16 port;

	if ((void *)(th + 1) > end)
		return false;
	port = bpf_ntohs(th->dest);
	return bpf_map_lookup_elem(&access_ports, &port);
}

static __always_inline int check4(struct iphdr *ip, void *end)
{
	struct bsteer_access_key4 k = { .prefixlen = 32 };

	if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP ||
	    ip->ihl < 5 || (bpf_ntohs(ip->frag_off) & IP_OFFMASK))
		return XDP_PASS;
	if (!guarded((void *)ip + ip->ihl * 4, end))
		return XDP_PASS;
	__builtin_memcpy(k.addr, &ip->saddr, 4);
	return verdict(bpf_map_lookup_elem(&access_allow4, &k),
		       bpf_map_lookup_elem(&access_deny4, &k));
}

static __always_inline int check6(struct ipv6hdr *ip6, void *end)
{
	struct bsteer_access_key6 k = { .prefixlen = 128 };

	if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
		return XDP_PASS;
	if (!guarded((void *)(ip6 + 1), end))
		return XDP_PASS;
	__builtin_memcpy(k.addr, &ip6->saddr, 16);
	return verdict(bpf_map_lookup_elem(&access_allow6, &k),
		       bpf_map_lookup_elem(&access_deny6, &k));
}

SEC("xdp")
int bsteer_access(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return check4((void *)(eth + 1), end);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return check6((void *)(eth + 1), end);
	return XDP_PASS;
}
