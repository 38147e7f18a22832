//! Loads through BTF pointers (tracing arguments) are probe reads in both
//! engines and in both modes: the program's memory reads as itself,
//! anything else as 0, and nothing faults.

use std::sync::Arc;

use ebpfvm_core::asm::assemble;
use ebpfvm_core::interp::{Executable, LoadOptions, Runner};
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::verifier::{verify, VerifyOptions};
use ebpfvm_jit::JitExecutable;

/// r0 = *(u16 *)(arg0 + 16) ^ *(s8 *)(arg0 + 18).
const SRC: &str = "ldxdw %r7, [%r1+0]
    ldxh %r0, [%r7+16]
    ldxsb %r2, [%r7+18]
    xor %r0, %r2
    exit";

fn engines(probe_loads: Vec<usize>, verified: bool) -> Vec<(&'static str, Box<dyn Runner>)> {
    let program = Arc::new(Program::from_insns(assemble(SRC).unwrap(), 4096).unwrap());
    let opts = LoadOptions {
        verified,
        probe_loads,
        ..LoadOptions::default()
    };
    let mut all: Vec<(&'static str, Box<dyn Runner>)> = vec![
        (
            "interpreter",
            Box::new(Executable::new(program.clone(), opts.clone()).unwrap()),
        ),
        (
            "jit",
            Box::new(JitExecutable::compile(program.clone(), opts.clone()).unwrap()),
        ),
    ];
    // The baseline tier exists on x86-64 hosts.
    if let Some(baseline) = JitExecutable::compile_baseline(program, opts).unwrap() {
        all.push(("jit baseline", Box::new(baseline)));
    }
    all
}

/// A tracing context whose first argument is `arg0`, with bytes at 16..19.
fn context(arg0: u64) -> Vec<u8> {
    let mut ctx = vec![0u8; 24];
    ctx[..8].copy_from_slice(&arg0.to_le_bytes());
    ctx[16..19].copy_from_slice(&[0x34, 0x12, 0xfe]);
    ctx
}

#[test]
fn probe_loads_read_program_memory_and_zero_elsewhere() {
    let program = Program::from_insns(assemble(SRC).unwrap(), 4096).unwrap();
    let opts = VerifyOptions {
        prog_type: ProgType::Tracing,
        ..VerifyOptions::default()
    };
    let probes = verify(&program, &opts).unwrap().probe_loads();
    assert_eq!(probes, vec![1, 2]);
    let secret = 0x1122_3344_5566_7788u64;
    let outside = [0x10, &secret as *const u64 as u64 - 16, u64::MAX - 4];
    for verified in [true, false] {
        for (name, exe) in engines(probes.clone(), verified) {
            // The argument points at the context itself: real bytes.
            let mut ctx = context(0);
            let at = ctx.as_ptr() as u64;
            ctx[..8].copy_from_slice(&at.to_le_bytes());
            let r0 = exe.run(&mut ctx).unwrap().r0;
            assert_eq!(r0, 0x1234 ^ (-2i64 as u64), "{name} verified={verified}");
            // Anything else (a stray number, host memory that is not the
            // program's, the end of the address space) reads as 0.
            for arg in outside {
                let r0 = exe.run(&mut context(arg)).unwrap().r0;
                assert_eq!(r0, 0, "{name} verified={verified} arg={arg:#x}");
            }
        }
    }
}

#[test]
fn without_the_probe_mark_a_stray_address_faults_in_checked_mode() {
    for (name, exe) in engines(Vec::new(), false) {
        let e = exe.run(&mut context(0x10)).unwrap_err();
        assert_eq!(e.pc, 1, "{name}: {e}");
    }
}

#[test]
fn only_load_instructions_can_be_probe_loads() {
    let program = Arc::new(Program::from_insns(assemble(SRC).unwrap(), 4096).unwrap());
    for pc in [3, 99] {
        let opts = LoadOptions {
            probe_loads: vec![pc],
            ..LoadOptions::default()
        };
        assert!(Executable::new(program.clone(), opts.clone()).is_err());
        assert!(JitExecutable::compile(program.clone(), opts).is_err());
    }
}
