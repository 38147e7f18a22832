//! The interpreter against bpf_conformance, from the upstream assembler's
//! bytecode (`bpf_conformance.assembled.json`), with the uBPF test helpers
//! registered natively. The shared data must be present.

mod support;

use std::sync::Arc;

use ebpfvm_core::interp::{Executable, Runner};
use ebpfvm_core::program::Program;

#[test]
fn all_bpf_conformance_programs_give_their_result() {
    support::check_all(|case, mem| {
        let prog = Program::from_bytes(&case.code).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let exe = Executable::new(Arc::new(prog), support::ubpf_options())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        exe.run(mem)
    });
}
