// SPDX-License-Identifier: MIT
/* Events into a BPF ring buffer, consumed from Python.
 *
 * Two producers share one ring buffer "events", each record starting with a
 * kind field so the consumer can tell them apart:
 *  - trace_openat, a tracepoint program on sys_enter_openat: builds an
 *    open_event on the stack (thread and process ids, a bpf_ktime_get_ns
 *    timestamp, the task's comm, the syscall's arguments) and copies it into
 *    the ring with bpf_ringbuf_output;
 *  - xdp_sampler, an XDP program: reserves a packet_event in the ring,
 *    fills it in place and submits it, or discards it when the packet is too
 *    short to hold an Ethernet header.
 * When the ring is full, the programs count the lost event instead.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#define TASK_COMM_LEN 16

enum event_kind {
	EVENT_OPEN = 1,
	EVENT_PACKET = 2,
};

/* Slots of the stats array. */
enum stat_slot {
	STAT_LOST = 0,	    /* the ring buffer was full */
	STAT_DISCARDED = 1, /* reserved, then discarded (runt packets) */
	STAT_COUNT = 2,
};

/* The record a sys_enter tracepoint hands its program (the kernel's
 * trace_event_raw_sys_enter). */
struct sys_enter_ctx {
	__u64 common;
	__s64 id;
	__u64 args[6];
};

struct open_event {
	__u32 kind;
	__u32 pid;  /* thread id */
	__u32 tgid; /* process id */
	__u32 cpu;
	__u64 timestamp_ns;
	__s64 syscall_nr;
	__s64 dirfd;
	__u64 flags;
	char comm[TASK_COMM_LEN];
};

struct packet_event {
	__u32 kind;
	__u32 len;
	__u32 ifindex;
	__u32 rx_queue;
	__u64 timestamp_ns;
	struct ethhdr eth;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STAT_COUNT);
} stats SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &slot);

	if (value)
		__sync_fetch_and_add(value, 1);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int trace_openat(struct sys_enter_ctx *ctx)
{
	struct open_event ev = {};
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	ev.kind = EVENT_OPEN;
	ev.pid = (__u32)pid_tgid;
	ev.tgid = pid_tgid >> 32;
	ev.cpu = bpf_get_smp_processor_id();
	ev.timestamp_ns = bpf_ktime_get_ns();
	ev.syscall_nr = ctx->id;
	ev.dirfd = (__s64)ctx->args[0];
	ev.flags = ctx->args[2];
	bpf_get_current_comm(ev.comm, sizeof(ev.comm));
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0))
		bump(STAT_LOST);
	return 0;
}

SEC("xdp")
int xdp_sampler(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet_event *ev;

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		bump(STAT_LOST);
		return XDP_PASS;
	}
	if (data + sizeof(struct ethhdr) > data_end) {
		bpf_ringbuf_discard(ev, 0);
		bump(STAT_DISCARDED);
		return XDP_DROP;
	}
	ev->kind = EVENT_PACKET;
	ev->len = data_end - data;
	ev->ifindex = ctx->ingress_ifindex;
	ev->rx_queue = ctx->rx_queue_index;
	ev->timestamp_ns = bpf_ktime_get_ns();
	__builtin_memcpy(&ev->eth, data, sizeof(struct ethhdr));
	ev->pad = 0;
	bpf_ringbuf_submit(ev, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
