// SPDX-License-Identifier: MIT
/* A chain of XDP programs linked by tail calls through a program array.
 *
 * dispatch reads the IP protocol of an IPv4 packet and tail-calls the
 * program in that protocol's slot of jump_table; handle_tcp and handle_udp
 * then tail-call the shared account stage. The table is initialised in the
 * object (libbpf's .values = { [slot] = &prog }), and a loader may fill or
 * clear slots at run time: handle_icmp is in the object but not in the
 * table. A tail call to an empty slot fails and execution continues after
 * it, as in the kernel; hops counts every stage entered and every fall
 * through. spin tail-calls itself to show the kernel's limit of 33 tail
 * calls per run.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define SLOT_ACCOUNT 0 /* not an IP protocol number in use here */
#define SLOT_SPIN 31

/* Slots of the hops array. */
enum hop {
	HOP_DISPATCH = 0,
	HOP_TCP = 1,
	HOP_UDP = 2,
	HOP_ICMP = 3,
	HOP_ACCOUNT = 4,
	HOP_FALLTHROUGH = 5, /* a tail call found its slot empty */
	HOP_SPIN = 6,
	HOP_COUNT = 7,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, HOP_COUNT);
} hops SEC(".maps");

static __always_inline void hop(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&hops, &slot);

	if (value)
		__sync_fetch_and_add(value, 1);
}

int handle_tcp(struct xdp_md *ctx);
int handle_udp(struct xdp_md *ctx);
int account(struct xdp_md *ctx);
int spin(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 32);
	__type(key, __u32);
	__array(values, int(struct xdp_md *));
} jump_table SEC(".maps") = {
	.values = {
		[SLOT_ACCOUNT] = (void *)&account,
		[IPPROTO_TCP] = (void *)&handle_tcp,
		[IPPROTO_UDP] = (void *)&handle_udp,
		[SLOT_SPIN] = (void *)&spin,
	},
};

SEC("xdp")
int dispatch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	hop(HOP_DISPATCH);
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	/* IP protocols 32 and above have no slot: treat them as empty. */
	if (ip->protocol < 32)
		bpf_tail_call(ctx, &jump_table, ip->protocol);
	hop(HOP_FALLTHROUGH);
	return XDP_PASS;
}

SEC("xdp")
int handle_tcp(struct xdp_md *ctx)
{
	hop(HOP_TCP);
	bpf_tail_call(ctx, &jump_table, SLOT_ACCOUNT);
	hop(HOP_FALLTHROUGH);
	return XDP_ABORTED;
}

SEC("xdp")
int handle_udp(struct xdp_md *ctx)
{
	hop(HOP_UDP);
	bpf_tail_call(ctx, &jump_table, SLOT_ACCOUNT);
	hop(HOP_FALLTHROUGH);
	return XDP_ABORTED;
}

/* Not in the initial table: a loader installs it in slot IPPROTO_ICMP. */
SEC("xdp")
int handle_icmp(struct xdp_md *ctx)
{
	hop(HOP_ICMP);
	return XDP_DROP;
}

SEC("xdp")
int account(struct xdp_md *ctx)
{
	hop(HOP_ACCOUNT);
	return XDP_TX;
}

SEC("xdp")
int spin(struct xdp_md *ctx)
{
	hop(HOP_SPIN);
	bpf_tail_call(ctx, &jump_table, SLOT_SPIN);
	return XDP_REDIRECT; /* only once the tail-call limit stops the chain */
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
