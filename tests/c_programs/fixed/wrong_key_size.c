// SPDX-License-Identifier: MIT
/* FIXED twin of unsafe/wrong_key_size.c: the key variable has the map's
 * key type. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 64);
} by_queue SEC(".maps");

SEC("xdp")
int wrong_key_size(struct xdp_md *ctx)
{
	__u64 queue = ctx->rx_queue_index;
	__u64 *packets = bpf_map_lookup_elem(&by_queue, &queue);

	if (packets)
		__sync_fetch_and_add(packets, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
