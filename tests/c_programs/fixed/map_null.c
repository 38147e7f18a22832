// SPDX-License-Identifier: MIT
/* FIXED twin of unsafe/map_null.c: checks the lookup's result and inserts
 * the first count itself. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 64);
} per_ifindex SEC(".maps");

SEC("xdp")
int map_null(struct xdp_md *ctx)
{
	__u32 key = ctx->ingress_ifindex;
	__u64 *packets = bpf_map_lookup_elem(&per_ifindex, &key);
	__u64 first = 1;

	if (packets)
		__sync_fetch_and_add(packets, 1);
	else
		bpf_map_update_elem(&per_ifindex, &key, &first, BPF_NOEXIST);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
