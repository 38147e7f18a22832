//! Tiered compilation: baseline code at once, Cranelift's code swapped in
//! from the background thread, the same results from both.

use std::sync::Arc;
use std::time::Duration;

use ebpfvm_core::asm::assemble;
use ebpfvm_core::interp::{LoadOptions, Runner};
use ebpfvm_core::program::Program;
use ebpfvm_jit::tiers::background_compiles;
use ebpfvm_jit::{JitTier, Tier, TieredJit};

const SUM: &str = "
    mov %r0, 0
    mov %r3, %r2
loop:
    jeq %r3, 0, out
    sub %r3, 1
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    add %r0, %r5
    ja loop
out:
    exit
";

const WITH_CALL: &str = "
    mov %r1, 20
    call local double
    add %r0, 2
    exit
double:
    mov %r0, %r1
    add %r0, %r1
    exit
";

fn program(src: &str) -> Arc<Program> {
    Arc::new(Program::from_insns(assemble(src).expect("assembles"), 4096).expect("loads"))
}

fn sum_of(jit: &TieredJit) -> (u64, u64) {
    let mut data: Vec<u8> = (1..=100).collect();
    let o = jit.run(&mut data).expect("runs");
    (o.r0, o.instructions)
}

const EXPECTED: (u64, u64) = (5050, 2 + 100 * 7 + 1 + 1);

#[test]
fn tiered_runs_baseline_then_optimized_code_with_the_same_results() {
    let jit = TieredJit::compile(program(SUM), LoadOptions::default(), JitTier::Tiered).unwrap();
    let before = sum_of(&jit);
    assert!(jit.wait_optimized(None));
    assert_eq!(jit.current().tier(), Tier::Optimized);
    assert!(jit.optimize_error().is_none());
    assert_eq!(before, EXPECTED);
    assert_eq!(sum_of(&jit), EXPECTED);
}

#[test]
fn baseline_only_never_optimizes() {
    let jit = TieredJit::compile(program(SUM), LoadOptions::default(), JitTier::Baseline).unwrap();
    assert_eq!(jit.current().tier(), Tier::Baseline);
    assert!(!jit.wait_optimized(Some(Duration::from_millis(20))));
    assert_eq!(jit.current().tier(), Tier::Baseline);
    assert_eq!(sum_of(&jit), EXPECTED);
}

#[test]
fn optimized_is_compiled_before_the_load_returns() {
    let jit = TieredJit::compile(program(SUM), LoadOptions::default(), JitTier::Optimized).unwrap();
    assert_eq!(jit.current().tier(), Tier::Optimized);
    assert!(jit.wait_optimized(Some(Duration::ZERO)));
    assert_eq!(sum_of(&jit), EXPECTED);
}

#[test]
fn several_functions_in_both_tiers() {
    for (asked, got) in [
        (JitTier::Baseline, Tier::Baseline),
        (JitTier::Optimized, Tier::Optimized),
    ] {
        let jit = TieredJit::compile(program(WITH_CALL), LoadOptions::default(), asked).unwrap();
        assert_eq!(jit.current().tier(), got);
        let o = jit.run(&mut []).unwrap();
        assert_eq!((o.r0, o.instructions), (42, 7));
    }
}

#[test]
fn dropped_programs_leave_the_queue_and_later_ones_are_optimized() {
    let p = program(SUM);
    let before = background_compiles();
    for _ in 0..2000 {
        drop(TieredJit::compile(p.clone(), LoadOptions::default(), JitTier::Tiered).unwrap());
    }
    let jit = TieredJit::compile(p, LoadOptions::default(), JitTier::Tiered).unwrap();
    assert!(jit.wait_optimized(Some(Duration::from_secs(60))));
    assert_eq!(sum_of(&jit), EXPECTED);
    // A load takes microseconds and a compile about a millisecond: most of
    // the dropped programs were gone before their turn came. (Other tests
    // here compile a handful more at the same time.)
    let compiled = background_compiles() - before;
    assert!(
        (1..1000).contains(&compiled),
        "{compiled} background compiles for 2001 loads, 2000 of them dropped at once"
    );
}
