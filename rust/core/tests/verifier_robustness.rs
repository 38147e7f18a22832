//! The verifier on arbitrary input: it never panics or hangs, and a
//! program it accepts never faults in the checked interpreter.
//! (A smoke test; the long soundness fuzzer lives beside the corpus harness.)

use std::sync::Arc;

use ebpfvm_core::gen::{random_memory, random_program, GenOptions, Rng};
use ebpfvm_core::interp::{Executable, LoadOptions, Runner};
use ebpfvm_core::isa::{decode_all, encode_all, Insn};
use ebpfvm_core::program::Program;
use ebpfvm_core::verifier::{verify, VerifyOptions};

const MEM: usize = 64;

fn opts() -> VerifyOptions<'static> {
    VerifyOptions {
        raw_input_size: MEM as u32,
        max_processed_insns: 20_000,
        ..VerifyOptions::default()
    }
}

#[test]
fn accepted_random_programs_never_fault() {
    let gen = GenOptions {
        mem_len: MEM,
        wild_access_percent: 10,
        ..GenOptions::default()
    };
    let mut accepted = 0;
    for seed in 0..12000u64 {
        // Registers start initialised, so that more programs get past the
        // first read and exercise the interesting checks.
        let mut rng = Rng::new(seed ^ 0x5eed);
        let mut insns: Vec<Insn> = [0u8, 3, 4, 5, 6, 7, 8, 9]
            .iter()
            .map(|&r| Insn::new(0xb7, r, 0, 0, rng.below(80) as i32 - 8))
            .collect();
        insns.extend(random_program(seed, &gen));
        let Ok(program) = Program::from_insns(insns, 65536) else {
            continue;
        };
        if let Err(e) = verify(&program, &opts()) {
            if std::env::var("SHOW_REJECTS").is_ok() {
                let m: String = e.message.chars().filter(|c| !c.is_ascii_digit()).collect();
                println!("REJECT {m}");
            }
            continue;
        }
        accepted += 1;
        let exe = Executable::new(
            Arc::new(program.clone()),
            LoadOptions {
                max_instructions: 10_000_000,
                ..LoadOptions::default()
            },
        )
        .expect("loads");
        for run in 0..4u64 {
            let mut mem = random_memory(seed * 31 + run, MEM);
            if let Err(e) = exe.run(&mut mem) {
                panic!(
                    "seed {seed}: accepted program faulted: {e:?}\n{}",
                    ebpfvm_core::disasm::disassemble(program.insns())
                );
            }
        }
    }
    assert!(accepted > 100, "only {accepted} programs accepted");
}

#[test]
fn random_bytes_never_panic_or_hang() {
    let mut rng = Rng::new(7);
    for _ in 0..3000 {
        let n = 1 + rng.below(40) as usize;
        let mut words: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
        // Bias towards valid opcodes: keep the opcode byte from a small set
        // of common ones half of the time.
        for w in words.iter_mut() {
            if rng.chance(50) {
                let ops = [
                    0x07u64, 0xb7, 0xbf, 0x61, 0x63, 0x7b, 0x79, 0x15, 0x2d, 0x85, 0x95, 0x05,
                ];
                *w = (*w & !0xff) | ops[rng.below(ops.len() as u64) as usize];
            }
        }
        let last = words.len() - 1;
        words[last] = 0x95;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let Ok(insns) = decode_all(&bytes) else {
            continue;
        };
        let Ok(program) = Program::from_bytes(&encode_all(&insns)) else {
            continue;
        };
        let _ = verify(&program, &opts());
    }
}
