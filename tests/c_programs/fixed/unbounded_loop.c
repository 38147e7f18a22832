// SPDX-License-Identifier: MIT
/* FIXED twin of unsafe/unbounded_loop.c: the packet's count is capped at
 * MAX_WORK, so the loop runs at most MAX_WORK times. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#define MAX_WORK 16

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
	if (n > MAX_WORK)
		n = MAX_WORK;
	for (__u32 i = 0; i < n; i++)
		__sync_fetch_and_add(done, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
