// SPDX-License-Identifier: MIT
/* Per-CPU packet and byte counters for a tc (sched_cls) classifier.
 *
 * counters is a per-CPU array: each CPU increments its own copy without
 * atomics, and user space reads one value per CPU and sums them. The
 * program also records which CPU it ran on (bpf_get_smp_processor_id) in a
 * shared array, and marks the packet with that CPU number plus one, so the
 * per-CPU slots can be checked against the CPU each run reported.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define MAX_CPUS 256

enum counter_slot {
	COUNT_PACKETS = 0,
	COUNT_BYTES = 1,
	COUNT_SLOTS = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, COUNT_SLOTS);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, MAX_CPUS);
} runs_on_cpu SEC(".maps");

SEC("tc")
int percpu_counter(struct __sk_buff *skb)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 slot = COUNT_PACKETS;
	__u64 *value;

	value = bpf_map_lookup_elem(&counters, &slot);
	if (value)
		*value += 1; /* this CPU's own copy: no atomic needed */
	slot = COUNT_BYTES;
	value = bpf_map_lookup_elem(&counters, &slot);
	if (value)
		*value += skb->len;

	value = bpf_map_lookup_elem(&runs_on_cpu, &cpu);
	if (value)
		__sync_fetch_and_add(value, 1);
	skb->mark = cpu + 1;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
