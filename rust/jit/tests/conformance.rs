//! Both JIT tiers against bpf_conformance, from the upstream assembler's bytecode,
//! with the uBPF test helpers registered natively (shared with the
//! interpreter's test). The shared data must be present.

#[path = "../../core/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use ebpfvm_core::interp::Runner;
use ebpfvm_core::program::Program;
use ebpfvm_jit::{JitExecutable, Tier};

#[test]
fn all_bpf_conformance_programs_give_their_result() {
    support::check_all(|case, mem| {
        let prog = Program::from_bytes(&case.code).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let exe = JitExecutable::compile(Arc::new(prog), support::ubpf_options())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        exe.run(mem)
    });
}

#[test]
#[cfg(target_arch = "x86_64")]
fn all_bpf_conformance_programs_give_their_result_in_the_baseline_tier() {
    support::check_all(|case, mem| {
        let prog = Program::from_bytes(&case.code).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let exe = JitExecutable::compile_baseline(Arc::new(prog), support::ubpf_options())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name))
            .expect("the baseline tier compiles on x86-64 hosts");
        assert_eq!(exe.tier(), Tier::Baseline);
        exe.run(mem)
    });
}
