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
fn all_bpf_conformance_programs_give_their_result_in_the_baseline_tier() {
    let compiled = std::cell::Cell::new(0usize);
    let several_functions = std::cell::Cell::new(0usize);
    support::check_all(|case, mem| {
        let prog = Arc::new(
            Program::from_bytes(&case.code).unwrap_or_else(|e| panic!("{}: {e}", case.name)),
        );
        let many = prog.functions().len() > 1;
        match JitExecutable::compile_baseline(prog.clone(), support::ubpf_options())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name))
        {
            Some(exe) => {
                assert_eq!(exe.tier(), Tier::Baseline);
                compiled.set(compiled.get() + 1);
                exe.run(mem)
            }
            None => {
                // Only programs with BPF-to-BPF calls are left to Cranelift.
                assert!(
                    many,
                    "{}: the baseline refused a single function",
                    case.name
                );
                several_functions.set(several_functions.get() + 1);
                JitExecutable::compile(prog, support::ubpf_options())
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name))
                    .run(mem)
            }
        }
    });
    let (compiled, several_functions) = (compiled.get(), several_functions.get());
    eprintln!("baseline tier: {compiled} compiled, {several_functions} left to Cranelift");
    assert!(
        compiled > 250,
        "only {compiled} programs took the baseline tier"
    );
}
