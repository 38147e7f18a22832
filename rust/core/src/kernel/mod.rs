//! What ebpfvm shares with the kernel ABI: helper ids and prototypes, program contexts.
