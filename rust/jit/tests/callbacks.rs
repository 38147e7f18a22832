//! Helpers that call back into the program (`bpf_loop`,
//! `bpf_for_each_map_elem`) give the same results, instruction counts and
//! faults in every engine.

use std::sync::Arc;

use ebpfvm_core::asm::assemble;
use ebpfvm_core::error::FaultKind;
use ebpfvm_core::interp::{LoadOptions, Runner};
use ebpfvm_core::maps::{Map, MapDef, MapType, BPF_ANY};
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::runtime::{self, helpers::kernel_helpers, Environment};
use ebpfvm_jit::engine::{Engine, EngineKind};
use ebpfvm_jit::JitTier;

/// The interpreter and each JIT tier on its own.
const KINDS: [(EngineKind, JitTier); 3] = [
    (EngineKind::Interpreter, JitTier::Optimized),
    (EngineKind::Jit, JitTier::Baseline),
    (EngineKind::Jit, JitTier::Optimized),
];

fn load(src: &str, maps: Vec<Arc<Map>>, kind: (EngineKind, JitTier)) -> Engine {
    let p = Program::from_insns(assemble(src).unwrap(), 4096).unwrap();
    let prepared = runtime::prepare(&p, ProgType::Raw, &maps).unwrap();
    let env = Environment::new(maps);
    let opts = LoadOptions {
        helpers: kernel_helpers(&env),
        max_instructions: 100_000,
        ..LoadOptions::default()
    };
    // The engine holds the helpers, which hold the maps.
    Engine::load_with_tier(kind.0, kind.1, Arc::new(prepared), opts).unwrap()
}

/// Sums 0..n through bpf_loop, the running total kept on the caller's stack.
const LOOP_SUM: &str = "
    mov %r1, 0
    stxdw [%r10-8], %r1
    ldxdw %r1, [%r10-16]
    mov %r1, 10
    lddw %r2, func cb
    mov %r3, %r10
    add %r3, -8
    mov %r4, 0
    call 181
    ldxdw %r1, [%r10-8]
    lsh %r0, 32
    or %r0, %r1
    exit
cb:
    ldxdw %r3, [%r2]
    add %r3, %r1
    stxdw [%r2], %r3
    mov %r0, 0
    jne %r1, 6, +1
    mov %r0, 1
    exit
";

#[test]
fn bpf_loop_runs_the_callback_until_it_says_stop() {
    let mut counts = Vec::new();
    for kind in KINDS {
        let exe = load(LOOP_SUM, vec![], kind);
        let out = exe.run(&mut []).unwrap();
        // Iterations 0..=6 run (the callback stops at 6): 7 calls, sum 21.
        assert_eq!(out.r0, (7 << 32) | 21, "{kind:?}");
        counts.push(out.instructions);
    }
    assert_eq!(counts[0], counts[1], "instruction counts differ");
}

#[test]
fn a_fault_in_a_callback_fails_the_run_at_the_callback_instruction() {
    let src = "
        mov %r1, 3
        lddw %r2, func cb
        mov %r3, 0
        mov %r4, 0
        call 181
        exit
    cb:
        ldxdw %r0, [%r2]
        exit
    ";
    for kind in KINDS {
        let exe = load(src, vec![], kind);
        let e = exe.run(&mut []).unwrap_err();
        assert_eq!(e.kind, FaultKind::OutOfBounds, "{kind:?}: {e:?}");
        assert_eq!(e.pc, 7, "{kind:?}");
    }
}

#[test]
fn a_runaway_callback_is_stopped_by_the_budget() {
    let src = "
        mov %r1, 100
        lddw %r2, func cb
        mov %r3, 0
        mov %r4, 0
        call 181
        exit
    cb:
        mov %r0, 0
        ja -2
    ";
    for kind in KINDS {
        let e = load(src, vec![], kind).run(&mut []).unwrap_err();
        assert_eq!(e.kind, FaultKind::BudgetExhausted, "{kind:?}: {e:?}");
    }
}

#[test]
fn bpf_loop_rejects_flags_and_too_many_iterations() {
    for (n, flags, want) in [(4u64, 1u64, -22i64), (1 << 24, 0, -7)] {
        let src = format!(
            "lddw %r1, {n}\nlddw %r2, func cb\nmov %r3, 0\nmov %r4, {flags}\ncall 181\nexit\ncb:\nmov %r0, 0\nexit"
        );
        for kind in KINDS {
            let out = load(&src, vec![], kind).run(&mut []).unwrap();
            assert_eq!(out.r0 as i64, want, "{kind:?}");
        }
    }
}

#[test]
fn a_callback_that_is_not_a_function_is_refused() {
    let src = "mov %r1, 1\nmov %r2, 3\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit";
    for kind in KINDS {
        let e = load(src, vec![], kind).run(&mut []).unwrap_err();
        assert!(e.reason.contains("not a function"), "{kind:?}: {e:?}");
    }
}

#[test]
fn for_each_map_elem_visits_every_entry_with_key_and_value() {
    // Sums key * value over a hash map, and doubles every value in place.
    let src = "
        mov %r1, 0
        stxdw [%r10-8], %r1
        lddw %r1, map_idx 0
        lddw %r2, func cb
        mov %r3, %r10
        add %r3, -8
        mov %r4, 0
        call 164
        ldxdw %r1, [%r10-8]
        lsh %r0, 32
        or %r0, %r1
        exit
    cb:
        ldxw %r6, [%r2]
        ldxdw %r7, [%r3]
        mov %r8, %r7
        mul %r8, %r6
        ldxdw %r9, [%r4]
        add %r9, %r8
        stxdw [%r4], %r9
        lsh %r7, 1
        stxdw [%r3], %r7
        mov %r0, 0
        exit
    ";
    for kind in KINDS {
        let m = Map::create(MapDef::new(MapType::Hash, 4, 8, 16).named("h")).unwrap();
        for k in 1u32..=5 {
            m.update(&k.to_le_bytes(), &(10 * k as u64).to_le_bytes(), BPF_ANY)
                .unwrap();
        }
        let out = load(src, vec![m.clone()], kind).run(&mut []).unwrap();
        let want: u64 = (1..=5u64).map(|k| k * 10 * k).sum();
        assert_eq!(out.r0, (5 << 32) | want, "{kind:?}");
        for k in 1u32..=5 {
            let v = m.lookup(&k.to_le_bytes()).unwrap();
            assert_eq!(u64::from_le_bytes(v.try_into().unwrap()), 20 * k as u64);
        }
    }
}

#[test]
fn keys_handed_to_callbacks_are_read_only_and_gone_afterwards() {
    // The callback stores the key's address in the caller's stack; the
    // caller reads through it after the helper returned: that must fault.
    let src = "
        lddw %r1, map_idx 0
        lddw %r2, func cb
        mov %r3, %r10
        add %r3, -8
        mov %r4, 0
        call 164
        ldxdw %r1, [%r10-8]
        ldxw %r0, [%r1]
        exit
    cb:
        stxdw [%r4], %r2
        mov %r0, 1
        exit
    ";
    for kind in KINDS {
        let m = Map::create(MapDef::new(MapType::Array, 4, 8, 4).named("a")).unwrap();
        let e = load(src, vec![m], kind).run(&mut []).unwrap_err();
        assert_eq!(e.kind, FaultKind::OutOfBounds, "{kind:?}: {e:?}");
        assert_eq!(e.pc, 9, "{kind:?}");
    }
}
