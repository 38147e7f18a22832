//! Loading ELF objects compiled with `clang -target bpf`, as libbpf does.
