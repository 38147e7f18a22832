// Fixture for rust/core/tests/elf_programs.rs: callbacks (bpf_loop,
// bpf_for_each_map_elem), a .kconfig extern, CO-RE relocations (a bitfield,
// field size/offset, an enum value, a type size) and a global function in
// .text. callbacks.o was built with Debian clang 14.0.6 and libbpf-dev:
//   clang -O2 -g -target bpf -mcpu=v3 -I/usr/include/$(uname -m)-linux-gnu \
//         -fdebug-prefix-map=$PWD=. \
//         -c callbacks.c -o callbacks.o && llvm-objcopy --strip-debug callbacks.o
// (DWARF stripped; .BTF and .BTF.ext kept).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct bpf_map;
extern int CONFIG_HZ __kconfig;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct pkt {
	__u32 a;
	__u32 flag : 3;
	__u32 rest : 29;
	__u64 b;
} __attribute__((preserve_access_index));

enum color { RED = 1, GREEN = 7 };

static int add_one(__u32 index, void *ctx)
{
	__u64 *sum = ctx;
	*sum += index;
	return 0;
}

static __u64 visit(struct bpf_map *map, __u32 *key, __u64 *val, void *ctx)
{
	*(__u64 *)ctx += *val;
	return 0;
}

__noinline int twice(int x)
{
	return x * 2;
}

SEC("xdp")
int loops(struct xdp_md *ctx)
{
	__u64 sum = 0;
	bpf_loop(10, add_one, &sum, 0);
	bpf_for_each_map_elem(&counts, visit, &sum, 0);
	return twice((int)sum + CONFIG_HZ);
}

SEC("tc")
int fields(struct __sk_buff *skb)
{
	struct pkt *pk = (void *)(long)skb->data;
	if ((void *)(pk + 1) > (void *)(long)skb->data_end)
		return 0;
	int v = BPF_CORE_READ_BITFIELD(pk, flag);
	v += bpf_core_field_size(pk->b);
	v += bpf_core_field_offset(pk->b);
	v += bpf_core_enum_value(enum color, GREEN);
	v += bpf_core_type_size(struct pkt);
	return v + pk->a;
}

char LICENSE[] SEC("license") = "GPL";
