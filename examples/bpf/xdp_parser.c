// SPDX-License-Identifier: MIT
/* An XDP packet parser and port firewall, written as for the kernel.
 *
 * Parses Ethernet -> up to two VLAN tags (802.1Q / 802.1ad) -> IPv4 or IPv6
 * -> TCP or UDP, checking every header against data_end. It counts packets
 * per protocol in an array map and packets and bytes per IPv4 source address
 * in a hash map, and drops TCP or UDP packets whose destination port is in
 * the blocked set. The blocked set lives in .rodata (const volatile): a
 * loader sets it before the program is loaded, as libbpf skeletons do.
 *
 * Build: see build.sh in this folder.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_VLAN_TAGS 2
#define MAX_BLOCKED_PORTS 4

/* Slots of the proto_count array. */
enum proto_slot {
	SLOT_OTHER = 0,	   /* an EtherType the parser does not handle */
	SLOT_VLAN = 1,	   /* packets carrying at least one VLAN tag */
	SLOT_IPV4 = 2,
	SLOT_IPV6 = 3,
	SLOT_TCP = 4,
	SLOT_UDP = 5,
	SLOT_MALFORMED = 6, /* a header cut short by the end of the packet */
	SLOT_BLOCKED = 7,  /* dropped by the port firewall */
	SLOT_COUNT = 8,
};

struct counters {
	__u64 packets;
	__u64 bytes;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, SLOT_COUNT);
} proto_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); /* IPv4 source address, network byte order */
	__type(value, struct counters);
	__uint(max_entries, 1024);
} src_bytes SEC(".maps");

/* Destination ports to drop (host byte order; 0 = unused slot). */
const volatile __u16 blocked_ports[MAX_BLOCKED_PORTS] = {};

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&proto_count, &slot);

	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline void account_source(__u32 saddr, __u64 len)
{
	struct counters *c = bpf_map_lookup_elem(&src_bytes, &saddr);

	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, len);
		return;
	}
	struct counters fresh = { .packets = 1, .bytes = len };
	/* Another CPU may have inserted it meanwhile: then add to its entry. */
	if (bpf_map_update_elem(&src_bytes, &saddr, &fresh, BPF_NOEXIST)) {
		c = bpf_map_lookup_elem(&src_bytes, &saddr);
		if (c) {
			__sync_fetch_and_add(&c->packets, 1);
			__sync_fetch_and_add(&c->bytes, len);
		}
	}
}

static __always_inline int port_blocked(__u16 port)
{
#pragma unroll
	for (int i = 0; i < MAX_BLOCKED_PORTS; i++) {
		if (blocked_ports[i] && blocked_ports[i] == port)
			return 1;
	}
	return 0;
}

/* Returns the destination port of a TCP or UDP header at l4, or -1 when the
 * header does not fit in the packet; counts the transport protocol. */
static __always_inline int transport_dport(void *l4, void *data_end, __u8 proto)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return -1;
		count(SLOT_TCP);
		return bpf_ntohs(tcp->dest);
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return -1;
		count(SLOT_UDP);
		return bpf_ntohs(udp->dest);
	}
	return 0; /* no port: nothing to filter */
}

SEC("xdp")
int xdp_parser(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct ethhdr *eth = data;
	void *cursor;
	__u16 h_proto;
	int dport;

	if ((void *)(eth + 1) > data_end)
		goto malformed;
	cursor = eth + 1;
	h_proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vlan = cursor;

		if (h_proto != bpf_htons(ETH_P_8021Q) && h_proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > data_end)
			goto malformed;
		if (i == 0)
			count(SLOT_VLAN);
		h_proto = vlan->encapsulated_proto;
		cursor = vlan + 1;
	}

	if (h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;

		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			goto malformed;
		count(SLOT_IPV4);
		account_source(ip->saddr, len);
		/* Only the first fragment carries the transport header. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return XDP_PASS;
		dport = transport_dport(cursor + ip->ihl * 4, data_end, ip->protocol);
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;

		if ((void *)(ip6 + 1) > data_end)
			goto malformed;
		count(SLOT_IPV6);
		dport = transport_dport(ip6 + 1, data_end, ip6->nexthdr);
	} else {
		count(SLOT_OTHER);
		return XDP_PASS;
	}

	if (dport < 0)
		goto malformed;
	if (dport && port_blocked(dport)) {
		count(SLOT_BLOCKED);
		bpf_printk("xdp_parser: drop port %d ifindex %u", dport, ctx->ingress_ifindex);
		return XDP_DROP;
	}
	return XDP_PASS;

malformed:
	count(SLOT_MALFORMED);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
