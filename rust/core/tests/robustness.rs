//! Property tests: whatever bytes and memory come in, decoding, checking and
//! running end in a value or an error, never a panic, a hang or a stray
//! memory access. `PROPTEST_CASES` scales the run (e.g. 1000000 for a long
//! one).

use std::sync::Arc;

use ebpfvm_core::disasm::disassemble;
use ebpfvm_core::gen::{random_memory, random_program, GenOptions};
use ebpfvm_core::helpers::HelperRegistry;
use ebpfvm_core::interp::{Executable, LoadOptions, Runner};
use ebpfvm_core::isa::{decode_all, encode_all, MAX_CALL_FRAMES};
use ebpfvm_core::program::Program;
use proptest::prelude::*;

/// Runs whatever loads; returns whether the program got to run.
fn run_any(code: &[u8], mem: &mut [u8]) -> bool {
    let Ok(prog) = Program::from_bytes(code) else {
        return false;
    };
    let len = prog.len() as u64;
    if let Ok(exe) = Executable::new(Arc::new(prog), load_options()) {
        match exe.run(mem) {
            // The budget is checked on back edges and calls: after the last
            // check a run can still return through every live frame.
            Ok(o) => assert!(o.instructions <= 10_000 + MAX_CALL_FRAMES as u64 * len),
            Err(e) => assert!(!e.reason.is_empty()),
        }
        return true;
    }
    false
}

/// The structured generator must mostly produce programs that load and run,
/// or the property tests below would exercise little of the interpreter.
#[test]
fn structured_generator_reaches_the_interpreter() {
    let mut ran = 0;
    let mut completed = 0;
    for seed in 0..2000 {
        let insns = random_program(seed, &opts());
        let mut mem = random_memory(seed, 64);
        if run_any(&encode_all(&insns), &mut mem) {
            ran += 1;
        }
        let prog = Arc::new(Program::from_insns(insns, 1 << 20).unwrap());
        let exe = Executable::new(prog, load_options()).unwrap();
        if exe.run(&mut mem).is_ok() {
            completed += 1;
        }
    }
    assert_eq!(ran, 2000);
    assert!(
        completed > 400,
        "only {completed} of 2000 ran to completion"
    );
}

fn opts() -> GenOptions {
    GenOptions {
        helper_ids: vec![1],
        ..GenOptions::default()
    }
}

unsafe extern "C" fn mix(a: u64, b: u64, _: u64, _: u64, _: u64) -> u64 {
    (a ^ b).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn load_options() -> LoadOptions {
    let mut helpers = HelperRegistry::new();
    unsafe { helpers.register_native(1, mix).unwrap() };
    LoadOptions {
        helpers,
        max_instructions: 10_000,
        ..LoadOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn random_bytes_never_crash(code in proptest::collection::vec(any::<u8>(), 0..200),
                                mut mem in proptest::collection::vec(any::<u8>(), 0..64)) {
        run_any(&code, &mut mem);
    }

    #[test]
    fn structured_programs_never_crash(seed in any::<u64>()) {
        let insns = random_program(seed, &opts());
        let mut mem = random_memory(seed, 64);
        prop_assert!(run_any(&encode_all(&insns), &mut mem));
    }

    #[test]
    fn mutated_programs_never_crash(seed in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), 0u8..64), 1..4)) {
        let mut code = encode_all(&random_program(seed, &opts()));
        for (pos, bit) in flips {
            let i = pos % code.len();
            code[i] ^= 1 << (bit % 8);
        }
        let mut mem = random_memory(seed, 64);
        run_any(&code, &mut mem);
    }

    #[test]
    fn disassembly_round_trips(code in proptest::collection::vec(any::<u64>(), 1..50)) {
        let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        let insns = decode_all(&bytes).unwrap();
        let text = disassemble(&insns);
        let again = ebpfvm_core::asm::assemble(&text).unwrap();
        prop_assert_eq!(encode_all(&again), bytes);
    }
}
