// SPDX-License-Identifier: MIT
/* An IPv4 router's fast path in XDP, with its route table in an LPM trie.
 *
 * For each IPv4 packet, routes (filled by the control plane, here Python) is
 * looked up by destination address; the longest matching prefix wins, as in
 * the kernel's LPM trie. On a hit the packet is forwarded: the destination
 * MAC becomes the next hop's, the old destination MAC becomes the source,
 * the TTL is decremented with an incremental checksum update (as the kernel's
 * ip_decrease_ttl), the packet is counted per next hop, and XDP_TX sends it
 * back out. Packets with no route or an expiring TTL go to the stack
 * (XDP_PASS); malformed ones are dropped.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct route_key {
	__u32 prefixlen; /* in bits, 0..32 */
	__u32 addr;	 /* network byte order */
};

struct route {
	__u32 next_hop; /* IPv4 address of the gateway, network byte order */
	__u32 ifindex;
	__u8 dmac[ETH_ALEN]; /* the gateway's MAC address */
	__u16 flags;
};

/* Slots of the route_stats array. */
enum route_stat {
	ROUTE_HIT = 0,
	ROUTE_MISS = 1,
	ROUTE_TTL_EXPIRED = 2,
	ROUTE_STAT_COUNT = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct route_key);
	__type(value, struct route);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); /* next hop */
	__type(value, __u64);
	__uint(max_entries, 256);
} hop_packets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, ROUTE_STAT_COUNT);
} route_stats SEC(".maps");

static __always_inline void stat(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&route_stats, &slot);

	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline void count_hop(__u32 next_hop)
{
	__u64 *value = bpf_map_lookup_elem(&hop_packets, &next_hop);
	__u64 one = 1;

	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(&hop_packets, &next_hop, &one, BPF_NOEXIST);
}

static __always_inline void decrease_ttl(struct iphdr *ip)
{
	__u32 check = ip->check;

	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xffff));
	ip->ttl--;
}

SEC("xdp")
int lpm_router(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct route_key key;
	struct route *route;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;

	key.prefixlen = 32;
	key.addr = ip->daddr;
	route = bpf_map_lookup_elem(&routes, &key);
	if (!route) {
		stat(ROUTE_MISS);
		return XDP_PASS;
	}
	if (ip->ttl <= 1) {
		stat(ROUTE_TTL_EXPIRED);
		return XDP_PASS;
	}
	stat(ROUTE_HIT);
	count_hop(route->next_hop);
	decrease_ttl(ip);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, route->dmac, ETH_ALEN);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
