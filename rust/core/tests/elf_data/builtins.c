// Fixture for the builtin tests (rust/core/tests/elf_programs.rs,
// verifier_programs.rs, runtime_helpers.rs, rust/jit/tests/builtins.rs):
// calls to memset, memcpy, memmove and memcmp, which the loader turns into
// ebpfvm builtins, and a call to an extern nothing provides. Built, like
// falco's probe, with -fno-builtin, so that clang emits the C library calls
// (without it, the BPF backend refuses calls it cannot inline).
// builtins.o was built with Debian clang 14.0.6 and libbpf-dev:
//   clang -O2 -g -target bpf -mcpu=v3 -fno-builtin \
//         -I/usr/include/$(uname -m)-linux-gnu -fdebug-prefix-map=$PWD=. \
//         -c builtins.c -o builtins.o && llvm-objcopy --strip-debug builtins.o
// (DWARF stripped; .BTF and .BTF.ext kept).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct blob {
	__u64 words[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct blob);
} blobs SEC(".maps");

void *memset(void *dst, int c, unsigned long n);
void *memcpy(void *dst, const void *src, unsigned long n);
void *memmove(void *dst, const void *src, unsigned long n);
int memcmp(const void *a, const void *b, unsigned long n);
extern int no_such_function(int);

static __always_inline struct blob *blob_at(__u32 slot)
{
	return bpf_map_lookup_elem(&blobs, &slot);
}

// blobs[1] = blobs[0]
SEC("xdp")
int copy_blob(struct xdp_md *ctx)
{
	struct blob *src = blob_at(0), *dst = blob_at(1);

	if (!src || !dst)
		return XDP_ABORTED;
	memcpy(dst, src, sizeof(*dst));
	return XDP_PASS;
}

// Every byte of blobs[0] becomes 0xa5.
SEC("xdp")
int fill_blob(struct xdp_md *ctx)
{
	struct blob *b = blob_at(0);

	if (!b)
		return XDP_ABORTED;
	memset(b, 0xa5, sizeof(*b));
	return XDP_PASS;
}

// Words 0..254 of blobs[0] move up one place.
SEC("xdp")
int shift_blob(struct xdp_md *ctx)
{
	struct blob *b = blob_at(0);

	if (!b)
		return XDP_ABORTED;
	memmove(&b->words[1], &b->words[0], sizeof(*b) - sizeof(b->words[0]));
	return XDP_PASS;
}

// 1, 2 or 3 as blobs[0] compares below, equal to or above blobs[1].
SEC("xdp")
int compare_blobs(struct xdp_md *ctx)
{
	struct blob *a = blob_at(0), *b = blob_at(1);
	int c;

	if (!a || !b)
		return XDP_ABORTED;
	c = memcmp(a, b, sizeof(*a));
	return c < 0 ? 1 : c == 0 ? 2 : 3;
}

// A stack buffer cleared for a length known only at run time (the first
// byte of blobs[0], at most 63), then summed: the verifier must count the
// cleared bytes as initialised.
SEC("xdp")
int clear_stack(struct xdp_md *ctx)
{
	struct blob *b = blob_at(0);
	unsigned char buf[64];
	__u32 n, sum = 0;

	if (!b)
		return XDP_ABORTED;
	n = b->words[0] & 63;
	memset(buf, 7, n);
	for (int i = 0; i < 63; i++)
		if (i < n)
			sum += buf[i];
	return sum;
}

SEC("xdp")
int calls_unknown(struct xdp_md *ctx)
{
	return no_such_function(ctx->ingress_ifindex);
}

char LICENSE[] SEC("license") = "GPL";
