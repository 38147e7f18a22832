// SPDX-License-Identifier: MIT
/* Global variables in every section libbpf maps, updated through a real
 * BPF-to-BPF call.
 *
 *  .rodata      const volatile knobs a loader sets before load (scale, verbose)
 *  .data        initialised globals (last_len, tag)
 *  .bss         zero-initialised globals (packets, weighted_bytes)
 *  .data.stats  a custom data section holding a struct
 *
 * account() is static and __noinline, so clang emits it in .text and calls
 * it with a BPF-to-BPF call instead of inlining it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct len_stats {
	__u64 calls;
	__u32 min_len;
	__u32 max_len;
};

const volatile __u32 scale = 1;
const volatile __u8 verbose = 0;

__s32 last_len = -1;
char tag[8] = "ebpfvm";

__u64 packets;
__u64 weighted_bytes;

struct len_stats stats SEC(".data.stats") = { .min_len = 0xffffffff };

static __noinline __u64 account(__u32 len)
{
	stats.calls++;
	if (len < stats.min_len)
		stats.min_len = len;
	if (len > stats.max_len)
		stats.max_len = len;
	last_len = len;
	return (__u64)len * scale;
}

SEC("xdp")
int count_globals(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	__u64 weighted = account(len);

	__sync_fetch_and_add(&packets, 1);
	__sync_fetch_and_add(&weighted_bytes, weighted);
	if (verbose)
		bpf_printk("%s: len=%u weighted=%llu", tag, len, weighted);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
