// SPDX-License-Identifier: MIT
/* UNSAFE: uses the value bpf_map_lookup_elem returns without checking it
 * for NULL; the lookup fails for every key not yet in the map. */
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

	*packets += 1; /* BUG: packets may be NULL */
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
