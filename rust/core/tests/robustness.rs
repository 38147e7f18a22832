//! Property tests: whatever bytes and memory come in, decoding, checking and
//! running end in a value or an error, never a panic, a hang or a stray
//! memory access. `PROPTEST_CASES` scales the run (e.g. 1000000 for a long
//! one).

use std::sync::Arc;

use ebpfvm_core::disasm::disassemble;
use ebpfvm_core::interp::{Executable, LoadOptions};
use ebpfvm_core::isa::{decode_all, encode_all, Insn};
use ebpfvm_core::program::Program;
use proptest::prelude::*;

/// Instructions with valid-looking opcodes, so that many programs pass the
/// load-time checks and actually run.
fn insn() -> impl Strategy<Value = Insn> {
    let opcodes: Vec<u8> = vec![
        0x07, 0x0f, 0x17, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x47, 0x4f, 0x57, 0x5f, 0x67, 0x6f, 0x77,
        0x7f, 0x87, 0x97, 0x9f, 0xa7, 0xaf, 0xb7, 0xbf, 0xc7, 0xcf, 0x04, 0x0c, 0x14, 0x1c, 0x24,
        0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c, 0x64, 0x6c, 0x74, 0x7c, 0x84, 0x94, 0x9c, 0xa4,
        0xac, 0xb4, 0xbc, 0xc4, 0xcc, 0xd4, 0xdc, 0xd7, 0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91,
        0x62, 0x6a, 0x72, 0x7a, 0x63, 0x6b, 0x73, 0x7b, 0xc3, 0xdb, 0x05, 0x06, 0x15, 0x1d, 0x25,
        0x2d, 0x35, 0x3d, 0x45, 0x4d, 0x55, 0x5d, 0x65, 0x6d, 0x75, 0x7d, 0xa5, 0xad, 0xb5, 0xbd,
        0xc5, 0xcd, 0xd5, 0xdd, 0x16, 0x1e, 0x26, 0x56, 0xa6, 0xde, 0x85, 0x8d, 0x95, 0x18, 0x20,
        0x28, 0x30, 0x40, 0x48, 0x50, 0x00,
    ];
    (
        proptest::sample::select(opcodes),
        0u8..11,
        0u8..11,
        prop_oneof![-8i16..8, any::<i16>(), -520i16..0],
        prop_oneof![
            Just(0i32),
            -8i32..64,
            any::<i32>(),
            prop_oneof![Just(1), Just(0x41), Just(0x51), Just(0xa1), Just(0xe1), Just(0xf1)]
        ],
    )
        .prop_map(|(opc, dst, src, off, imm)| Insn::new(opc, dst, src, off, imm))
}

fn run_any(code: &[u8], mem: &mut [u8]) {
    let Ok(prog) = Program::from_bytes(code) else {
        return;
    };
    let opts = LoadOptions {
        max_instructions: 10_000,
        ..LoadOptions::default()
    };
    if let Ok(exe) = Executable::new(Arc::new(prog), opts) {
        match exe.run(mem) {
            Ok(o) => assert!(o.instructions <= 10_000 + 1),
            Err(e) => assert!(!e.reason.is_empty()),
        }
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
    fn structured_programs_never_crash(mut insns in proptest::collection::vec(insn(), 1..40),
                                       mut mem in proptest::collection::vec(any::<u8>(), 0..64)) {
        insns.push(Insn::new(0x95, 0, 0, 0, 0));
        run_any(&encode_all(&insns), &mut mem);
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
