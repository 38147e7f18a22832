//! ebpfvm-core: the pure-Rust heart of ebpfvm.
//!
//! The pipeline is: bytes or assembly text → [`program::Program`] (decoded and
//! structurally checked) → [`interp::Executable`] (helpers resolved, ready to
//! run in checked mode). See `DESIGN.md` at the repository root for the whole.

pub mod asm;
pub mod btf;
pub mod disasm;
pub mod elf;
pub mod error;
pub mod gen;
pub mod helpers;
pub mod interp;
pub mod isa;
pub mod kernel;
pub mod maps;
pub mod program;
pub mod progtype;
pub mod runtime;
pub mod verifier;
