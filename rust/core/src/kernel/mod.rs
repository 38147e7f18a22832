//! What ebpfvm shares with the kernel ABI: helper ids and prototypes, program contexts.

pub mod contexts;
pub mod helper_protos;
