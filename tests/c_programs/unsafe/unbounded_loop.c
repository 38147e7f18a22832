// SPDX-License-Identifier: MIT
/* UNSAFE: loops as many times as a 32-bit count read from the packet says:
 * up to four billion iterations, which no verifier can bound. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} work SEC(".maps");

SEC("xdp")
int unbounded_loop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 *count = data + sizeof(struct ethhdr);
	__u32 key = 0;
	__u64 *done;
	__u32 n;

	if ((void *)(count + 1) > data_end)
		return XDP_PASS;
	done = bpf_map_lookup_elem(&work, &key);
	if (!done)
		return XDP_PASS;
	n = *count;
	for (__u32 i = 0; i < n; i++) /* BUG: n comes from the packet */
		__sync_fetch_and_add(done, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
