//! Program-level tests of the verifier: for each rejection class a program
//! that is rejected (asserting the instruction and the message) and its fixed
//! twin that is accepted.

use ebpfvm_core::asm::assemble;
use ebpfvm_core::maps::{MapDef, MapType, BPF_F_RDONLY_PROG};
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::verifier::{verify, PtrClass, Verified, VerifyError, VerifyOptions};

fn program(src: &str) -> Program {
    let insns = assemble(src).unwrap_or_else(|e| panic!("assembly failed: {e}\n{src}"));
    Program::from_insns(insns, 65536).unwrap_or_else(|e| panic!("bad program: {e:?}\n{src}"))
}

fn check(src: &str, t: ProgType, maps: &[MapDef]) -> Result<Verified, VerifyError> {
    let opts = VerifyOptions {
        prog_type: t,
        raw_input_size: 64,
        maps,
        log_level: 2,
        ..VerifyOptions::default()
    };
    verify(&program(src), &opts)
}

#[track_caller]
fn accept(src: &str, t: ProgType, maps: &[MapDef]) -> Verified {
    match check(src, t, maps) {
        Ok(v) => v,
        Err(e) => panic!("rejected at {:?}: {}\nlog:\n{}", e.pc, e.message, e.log),
    }
}

#[track_caller]
fn reject(src: &str, t: ProgType, maps: &[MapDef], pc: usize, msg: &str) -> VerifyError {
    match check(src, t, maps) {
        Ok(v) => panic!("accepted, expected '{msg}' at {pc}\nlog:\n{}", v.log),
        Err(e) => {
            assert!(
                e.message.contains(msg),
                "expected '{msg}' at {pc}, got '{}' at {:?}\nlog:\n{}",
                e.message,
                e.pc,
                e.log
            );
            assert_eq!(e.pc, Some(pc), "message '{}'\nlog:\n{}", e.message, e.log);
            e
        }
    }
}

fn hash_map() -> MapDef {
    MapDef::new(MapType::Hash, 4, 16, 64).named("h")
}

const XDP: ProgType = ProgType::Xdp;
const RAW: ProgType = ProgType::Raw;

#[test]
fn minimal_programs() {
    accept("mov %r0, 0\nexit", RAW, &[]);
    reject("exit", RAW, &[], 0, "R0 !read_ok");
    reject("mov %r0, %r5\nexit", RAW, &[], 0, "R5 !read_ok");
}

#[test]
fn scalar_dereference_is_rejected() {
    reject(
        "mov %r2, 5\nldxw %r0, [%r2]\nexit",
        RAW,
        &[],
        1,
        "R2 invalid mem access 'scalar'",
    );
}

#[test]
fn raw_memory_bounds() {
    accept("ldxdw %r0, [%r1+56]\nexit", RAW, &[]);
    reject(
        "ldxdw %r0, [%r1+60]\nexit",
        RAW,
        &[],
        0,
        "invalid access to the input, off=60 size=8: the input may be only 64 bytes long",
    );
}

#[test]
fn uninitialised_stack_read() {
    reject(
        "ldxdw %r0, [%r10-16]\nexit",
        RAW,
        &[],
        0,
        "invalid read from stack off -16+0 size 8",
    );
    accept("stdw [%r10-16], 7\nldxdw %r0, [%r10-16]\nexit", RAW, &[]);
    reject(
        "stw [%r10-16], 7\nldxdw %r0, [%r10-16]\nexit",
        RAW,
        &[],
        1,
        "invalid read from stack off -16+4 size 8",
    );
}

#[test]
fn stack_bounds_and_alignment() {
    reject(
        "stdw [%r10-520], 1\nmov %r0, 0\nexit",
        RAW,
        &[],
        0,
        "invalid write to stack R10 off=-520 size=8",
    );
    reject(
        "stdw [%r10+0], 1\nmov %r0, 0\nexit",
        RAW,
        &[],
        0,
        "invalid write to stack R10 off=0 size=8",
    );
    reject(
        "stdw [%r10-12], 1\nmov %r0, 0\nexit",
        RAW,
        &[],
        0,
        "misaligned stack access",
    );
}

#[test]
fn spill_and_fill_keep_pointers_and_bounds() {
    // A packet pointer survives a spill; a bounded scalar keeps its bounds.
    let v = accept(
        "ldxw %r2, [%r1+0]
         ldxw %r3, [%r1+4]
         mov %r4, %r2
         add %r4, 14
         jgt %r4, %r3, out
         stxdw [%r10-8], %r2
         ldxdw %r5, [%r10-8]
         ldxh %r0, [%r5+12]
         ldxb %r6, [%r2+0]
         and %r6, 7
         stxdw [%r10-16], %r6
         ldxdw %r7, [%r10-16]
         mov %r8, %r10
         add %r8, -8
         add %r8, %r7
         ldxb %r0, [%r8-7]
         out:
         mov %r0, 0
         exit",
        XDP,
        &[],
    );
    assert_eq!(v.mem_access[7], Some(PtrClass::Packet));
    assert_eq!(v.mem_access[15], Some(PtrClass::Stack));
    // A spilled pointer read back partially is not a pointer any more.
    reject(
        "stxdw [%r10-8], %r1
         ldxw %r2, [%r10-8]
         mov %r0, 0
         exit",
        XDP,
        &[],
        1,
        "invalid size of register fill",
    );
}

#[test]
fn packet_range_from_data_end_all_comparisons() {
    let header = "ldxw %r2, [%r1+0]\nldxw %r3, [%r1+4]\nmov %r4, %r2\nadd %r4, 14\n";
    // Each form guards a 14-byte read through r2 (2 bytes at offset 12).
    let forms = [
        "jgt %r4, %r3, out\nldxh %r0, [%r2+12]",
        "jle %r4, %r3, ok\nja out\nok: ldxh %r0, [%r2+12]",
        "jlt %r3, %r4, out\nldxh %r0, [%r2+12]",
        "jge %r3, %r4, ok\nja out\nok: ldxh %r0, [%r2+12]",
        // r4 < data_end proves 15 bytes.
        "jlt %r4, %r3, ok\nja out\nok: ldxb %r0, [%r2+14]",
        "jge %r4, %r3, out\nldxb %r0, [%r2+14]",
        "jgt %r3, %r4, ok\nja out\nok: ldxb %r0, [%r2+14]",
        "jle %r3, %r4, out\nldxb %r0, [%r2+14]",
    ];
    for f in forms {
        let src = format!("{header}{f}\nout: mov %r0, 2\nexit");
        accept(&src, XDP, &[]);
    }
    // One byte too far.
    let src = format!("{header}jgt %r4, %r3, out\nldxh %r0, [%r2+13]\nout: mov %r0, 2\nexit");
    reject(
        &src,
        XDP,
        &[],
        5,
        "invalid access to packet, off=13 size=2, R2(id=0,off=0,r=14)",
    );
    // The taken arm of `>` proves nothing.
    let src = format!("{header}jgt %r4, %r3, bad\nmov %r0, 2\nexit\nbad: ldxb %r0, [%r2+0]\nexit");
    reject(&src, XDP, &[], 7, "invalid access to packet, off=0 size=1");
}

#[test]
fn map_lookup_needs_null_check_and_propagates_to_copies() {
    let maps = [hash_map()];
    let lookup = "stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_idx 0
        call 1
        ";
    reject(
        &format!("{lookup}ldxw %r0, [%r0+0]\nexit"),
        XDP,
        &maps,
        6,
        "R0 invalid mem access 'map_value_or_null'",
    );
    // The null check on r0 makes its copy r6 safe too.
    accept(
        &format!(
            "{lookup}mov %r6, %r0\njeq %r0, 0, out\nldxw %r0, [%r6+12]\nexit\nout: mov %r0, 0\nexit"
        ),
        XDP,
        &maps,
    );
    reject(
        &format!(
            "{lookup}mov %r6, %r0\njeq %r0, 0, out\nldxw %r0, [%r6+13]\nexit\nout: mov %r0, 0\nexit"
        ),
        XDP,
        &maps,
        8,
        "invalid access to map value, value_size=16 off=13 size=4",
    );
}

#[test]
fn helper_key_must_be_initialised_and_large_enough() {
    let maps = [hash_map()];
    reject(
        "mov %r2, %r10
         add %r2, -4
         lddw %r1, map_idx 0
         call 1
         mov %r0, 0
         exit",
        XDP,
        &maps,
        4,
        "invalid indirect read from stack R2 off -4+0 size 4",
    );
    reject(
        "stw [%r10-4], 0
         mov %r2, %r10
         add %r2, -2
         lddw %r1, map_idx 0
         call 1
         mov %r0, 0
         exit",
        XDP,
        &maps,
        5,
        "invalid indirect access to stack R2 off=-2 size=4",
    );
    reject(
        "mov %r0, 0\ncall 99999\nexit",
        XDP,
        &maps,
        1,
        "invalid func unknown#99999",
    );
}

#[test]
fn counted_loop_is_accepted_and_infinite_loop_rejected() {
    let v = accept(
        "mov %r0, 0
         mov %r1, 0
         loop:
         add %r0, %r1
         add %r1, 1
         jlt %r1, 100, loop
         exit",
        RAW,
        &[],
    );
    assert!(v.stats.insns_processed > 300, "{:?}", v.stats);
    reject(
        "mov %r0, 0
         loop:
         ldxb %r2, [%r1+0]
         jeq %r2, 0, loop
         exit",
        RAW,
        &[],
        1,
        "infinite loop detected at insn 1",
    );
    // Counting forever runs into the complexity limit.
    let opts = VerifyOptions {
        max_processed_insns: 10_000,
        ..VerifyOptions::default()
    };
    let e = verify(&program("mov %r0, 0\nloop:\nadd %r0, 1\nja loop"), &opts).unwrap_err();
    assert_eq!(
        e.message,
        "BPF program is too large. Processed 10001 insn (limit 10000)"
    );
    assert_eq!(e.stats.insns_processed, 10_001);
}

#[test]
fn packet_length_bounded_loop() {
    // Sum at most 64 bytes of the packet, stopping at data_end: each
    // iteration proves one more byte.
    let v = accept(
        "ldxw %r2, [%r1+0]
         ldxw %r3, [%r1+4]
         mov %r0, 0
         mov %r6, 0
         loop:
         mov %r4, %r2
         add %r4, 1
         jgt %r4, %r3, out
         ldxb %r5, [%r2+0]
         add %r0, %r5
         mov %r2, %r4
         add %r6, 1
         jlt %r6, 64, loop
         out:
         mov %r0, 2
         exit",
        XDP,
        &[],
    );
    assert!(v.stats.insns_processed < 10_000, "{:?}", v.stats);
    // Without the data_end check the first read is out of the packet.
    reject(
        "ldxw %r2, [%r1+0]
         mov %r6, 0
         loop:
         ldxb %r5, [%r2+0]
         add %r2, 1
         add %r6, 1
         jlt %r6, 64, loop
         mov %r0, 2
         exit",
        XDP,
        &[],
        2,
        "invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)",
    );
}

#[test]
fn unreachable_and_pointer_arithmetic() {
    reject(
        "mov %r0, 0\nexit\nmov %r0, 1\nexit",
        RAW,
        &[],
        2,
        "unreachable insn 2",
    );
    reject(
        "mov %r2, %r1\nmul %r2, 2\nmov %r0, 0\nexit",
        RAW,
        &[],
        1,
        "R2 pointer arithmetic with *= operator prohibited",
    );
    reject(
        "mov %r2, %r1\nand %r2, 2\nmov %r0, 0\nexit",
        RAW,
        &[],
        1,
        "R2 bitwise operator &= on pointer prohibited",
    );
    reject(
        "mov %r2, 0\nsub %r2, %r1\nmov %r0, 0\nexit",
        RAW,
        &[],
        1,
        "R2 tried to subtract pointer from scalar",
    );
    reject(
        "ldxw %r3, [%r1+4]\nadd %r3, 1\nmov %r0, 0\nexit",
        XDP,
        &[],
        1,
        "R3 pointer arithmetic on pkt_end prohibited",
    );
    // data_end - data is a length.
    accept(
        "ldxw %r2, [%r1+0]\nldxw %r3, [%r1+4]\nsub %r3, %r2\nmov %r0, %r3\nexit",
        XDP,
        &[],
    );
    reject(
        "mov %r0, %r1\nexit",
        XDP,
        &[],
        1,
        "At program exit the register R0 is not a known value (ctx)",
    );
}

#[test]
fn ctx_access_rules() {
    reject(
        "ldxw %r0, [%r1+200]\nexit",
        XDP,
        &[],
        0,
        "invalid bpf_context access off=200 size=4",
    );
    reject(
        "stw [%r1+0], 1\nmov %r0, 0\nexit",
        XDP,
        &[],
        0,
        "invalid bpf_context access off=0 size=4",
    );
    accept("ldxw %r0, [%r1+12]\nexit", XDP, &[]);
    reject(
        "add %r1, 4\nldxw %r0, [%r1+0]\nexit",
        XDP,
        &[],
        1,
        "dereference of modified ctx ptr R1 off=4 disallowed",
    );
}

#[test]
fn readonly_map_rejects_writes() {
    let ro = MapDef {
        flags: BPF_F_RDONLY_PROG,
        ..MapDef::new(MapType::Array, 4, 8, 1).named(".rodata")
    };
    let maps = [ro];
    accept(
        "lddw %r1, map_idx_value 0, 0\nldxdw %r0, [%r1+0]\nexit",
        XDP,
        &maps,
    );
    reject(
        "lddw %r1, map_idx_value 0, 0\nstdw [%r1+0], 1\nmov %r0, 0\nexit",
        XDP,
        &maps,
        2,
        "write into map forbidden, value_size=8 off=0 size=8",
    );
}

#[test]
fn bpf_to_bpf_calls() {
    // The callee reads the caller's stack through r1, r6 survives the call.
    accept(
        "stdw [%r10-8], 3
         mov %r6, 7
         mov %r1, %r10
         add %r1, -8
         call local f
         add %r0, %r6
         exit
         f:
         ldxdw %r0, [%r1+0]
         exit",
        RAW,
        &[],
    );
    // r1-r5 are clobbered by the call.
    reject(
        "mov %r1, 1
         call local f
         mov %r0, %r1
         exit
         f:
         mov %r0, 0
         exit",
        RAW,
        &[],
        2,
        "R1 !read_ok",
    );
    // Too deep: each function calls the next, nine frames in all.
    let mut src = String::from("call local f1\nexit\n");
    for k in 1..=8 {
        src += &format!("f{k}:\ncall local f{}\nexit\n", k + 1);
    }
    src += "f9:\nmov %r0, 0\nexit\n";
    reject(&src, RAW, &[], 14, "the call stack of 9 frames is too deep");
}

#[test]
fn ringbuf_records_must_be_released() {
    let rb = MapDef::new(MapType::Ringbuf, 0, 0, 4096).named("rb");
    let maps = [rb];
    let reserve = "lddw %r1, map_idx 0
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, out
        stdw [%r0+8], 1
        ";
    reject(
        &format!("{reserve}out: mov %r0, 0\nexit"),
        XDP,
        &maps,
        8,
        "Unreleased reference id=",
    );
    accept(
        &format!("{reserve}mov %r1, %r0\nmov %r2, 0\ncall 132\nout: mov %r0, 0\nexit"),
        XDP,
        &maps,
    );
    reject(
        &format!(
            "{reserve}stdw [%r0+16], 1\nmov %r1, %r0\nmov %r2, 0\ncall 132\nout: mov %r0, 0\nexit"
        ),
        XDP,
        &maps,
        7,
        "invalid access to memory, mem_size=16 off=16 size=8",
    );
}

#[test]
fn bpf_loop_callback() {
    accept(
        "stdw [%r10-8], 0
         mov %r1, 10
         lddw %r2, func cb
         mov %r3, %r10
         add %r3, -8
         mov %r4, 0
         call 181
         ldxdw %r0, [%r10-8]
         exit
         cb:
         ldxdw %r3, [%r2+0]
         add %r3, 1
         stxdw [%r2+0], %r3
         mov %r0, 0
         exit",
        XDP,
        &[],
    );
    reject(
        "mov %r1, 10
         lddw %r2, func cb
         mov %r3, 0
         mov %r4, 0
         call 181
         mov %r0, 0
         exit
         cb:
         mov %r0, 5
         exit",
        XDP,
        &[],
        9,
        "At callback return the register R0 has smin=5 smax=5 should have been in [0, 1]",
    );
}

#[test]
fn log_level_two_shows_kernel_syntax() {
    let v = accept("ldxw %r2, [%r1+0]\nmov %r0, 0\nexit", XDP, &[]);
    assert!(v.log.contains("0: (61) r2 = *(u32 *)(r1 +0)"), "{}", v.log);
    assert!(v.log.contains("R2=pkt(off=0,r=0)"), "{}", v.log);
    assert!(
        v.log.contains("processed 3 insns (limit 1000000)"),
        "{}",
        v.log
    );
}

#[test]
fn pruning_makes_independent_branches_linear() {
    // Twenty branches on unknown packet-independent values that no check
    // depends on: 2^20 paths without pruning.
    let mut src = String::from("mov %r6, 0\n");
    for k in 0..20 {
        src += &format!("ldxb %r2, [%r1+{k}]\njeq %r2, 7, l{k}\nadd %r6, 1\nl{k}:\n");
    }
    src += "mov %r0, 0\nexit\n";
    let v = accept(&src, RAW, &[]);
    assert!(v.stats.insns_processed < 1000, "{:?}", v.stats);
    // The same, but the counter becomes a memory offset at the end: every
    // value still has to be covered, and it is in bounds (r6 <= 20 < 64).
    let mut src = String::from("mov %r6, 0\n");
    for k in 0..20 {
        src += &format!("ldxb %r2, [%r1+{k}]\njeq %r2, 7, l{k}\nadd %r6, 1\nl{k}:\n");
    }
    src += "mov %r3, %r1\nadd %r3, %r6\nldxb %r0, [%r3+0]\nexit\n";
    accept(&src, RAW, &[]);
    // One more increment than the buffer allows is caught on the longest path.
    let mut src = String::from("mov %r6, 44\n");
    for k in 0..20 {
        src += &format!("ldxb %r2, [%r1+{k}]\njeq %r2, 7, l{k}\nadd %r6, 1\nl{k}:\n");
    }
    src += "mov %r3, %r1\nadd %r3, %r6\nldxb %r0, [%r3+0]\nexit\n";
    let e = check(&src, RAW, &[]).unwrap_err();
    assert!(
        e.message
            .contains("invalid access to the input, off=64 size=1: the input may be only 64 bytes"),
        "{}",
        e.message
    );
}

#[test]
fn variable_index_into_map_value_needs_bounds() {
    let maps = [MapDef::new(MapType::Array, 4, 64, 1).named("arr")];
    let lookup = "stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_idx 0
        call 1
        jeq %r0, 0, out
        ldxb %r3, [%r0+0]
        ";
    // Index checked against the value size.
    accept(
        &format!("{lookup}jgt %r3, 63, out\nadd %r0, %r3\nldxb %r0, [%r0+0]\nexit\nout: mov %r0, 0\nexit"),
        XDP,
        &maps,
    );
    // Off by one.
    reject(
        &format!("{lookup}jgt %r3, 64, out\nadd %r0, %r3\nldxb %r0, [%r0+0]\nexit\nout: mov %r0, 0\nexit"),
        XDP,
        &maps,
        10,
        "invalid access to map value, value_size=64 off=64 size=1",
    );
    // Masking works as well as comparing.
    accept(
        &format!(
            "{lookup}and %r3, 24\nadd %r0, %r3\nldxdw %r0, [%r0+32]\nexit\nout: mov %r0, 0\nexit"
        ),
        XDP,
        &maps,
    );
}

#[test]
fn null_check_in_every_form() {
    let maps = [hash_map()];
    let lookup = "stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_idx 0
        call 1
        ";
    for check in [
        "jne %r0, 0, ok\nja out",
        "mov %r1, 0\njne %r0, %r1, ok\nja out",
        "mov %r1, 0\njeq %r1, %r0, out\nja ok",
    ] {
        accept(
            &format!("{lookup}{check}\nok: ldxw %r0, [%r0+0]\nexit\nout: mov %r0, 0\nexit"),
            XDP,
            &maps,
        );
    }
    // Pointer arithmetic before the null check is refused.
    reject(
        &format!("{lookup}add %r0, 4\nmov %r0, 0\nexit"),
        XDP,
        &maps,
        6,
        "R0 pointer arithmetic on map_value_or_null prohibited, null-check it first",
    );
}

#[test]
fn variable_offset_stack_access() {
    // Writes at a variable offset initialise a whole range; reads need it all.
    accept(
        "stdw [%r10-16], 0
         stdw [%r10-8], 0
         ldxb %r2, [%r1+0]
         and %r2, 8
         mov %r3, %r10
         add %r3, -16
         add %r3, %r2
         ldxdw %r0, [%r3+0]
         exit",
        RAW,
        &[],
    );
    reject(
        "stdw [%r10-8], 0
         ldxb %r2, [%r1+0]
         and %r2, 8
         mov %r3, %r10
         add %r3, -16
         add %r3, %r2
         ldxdw %r0, [%r3+0]
         exit",
        RAW,
        &[],
        6,
        "invalid variable-offset read from stack R3 off -16 size 8",
    );
}

#[test]
fn atomics_only_on_stack_and_map_values() {
    accept(
        "stdw [%r10-8], 1
         mov %r2, 5
         lock add [%r10-8], %r2
         mov %r0, 1
         lock cmpxchg [%r10-8], %r2
         exit",
        RAW,
        &[],
    );
    reject(
        "mov %r2, 1\nlock add [%r1+8], %r2\nmov %r0, 0\nexit",
        XDP,
        &[],
        1,
        "BPF_ATOMIC stores into R1 ctx is not allowed",
    );
    // The old value comes back in the source register as a scalar.
    reject(
        "stdw [%r10-8], 1
         mov %r2, 5
         lock fetch add [%r10-8], %r2
         ldxdw %r0, [%r2+0]
         exit",
        RAW,
        &[],
        3,
        "R2 invalid mem access 'scalar'",
    );
}

#[test]
fn log_level_one_shows_only_the_failing_path() {
    let src = "ldxb %r2, [%r1+0]
        jeq %r2, 1, bad
        mov %r0, 0
        exit
        bad:
        ldxdw %r0, [%r10-8]
        exit";
    let opts = VerifyOptions {
        raw_input_size: 64,
        log_level: 1,
        line_info: &[(4, "prog.c:12: return *uninit;".to_string())],
        ..VerifyOptions::default()
    };
    let e = verify(&program(src), &opts).unwrap_err();
    assert_eq!(e.pc, Some(4));
    assert!(e.log.contains("from 1 to 4: "), "{}", e.log);
    assert!(
        e.log
            .contains("; prog.c:12: return *uninit;\n4: (79) r0 = *(u64 *)(r10 -8)"),
        "{}",
        e.log
    );
    assert!(
        e.log.contains("invalid read from stack off -8+0 size 8"),
        "{}",
        e.log
    );
    // The path that exited fine is not in the log.
    assert!(!e.log.contains("3: (95) exit"), "{}", e.log);
    assert!(e.log.contains("processed "), "{}", e.log);
    // Level 0: no log at all.
    let quiet = VerifyOptions {
        raw_input_size: 64,
        ..VerifyOptions::default()
    };
    assert_eq!(verify(&program(src), &quiet).unwrap_err().log, "");
}

#[test]
fn spin_locks_must_pair() {
    let maps = [MapDef::new(MapType::Array, 4, 16, 1).named("locked")];
    let lookup = "stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_idx 0
        call 1
        jeq %r0, 0, out
        mov %r6, %r0
        mov %r1, %r6
        call 93
        ";
    accept(
        &format!("{lookup}stdw [%r6+8], 1\nmov %r1, %r6\ncall 94\nout: mov %r0, 0\nexit"),
        XDP,
        &maps,
    );
    reject(
        &format!("{lookup}out: mov %r0, 0\nexit"),
        XDP,
        &maps,
        11,
        "bpf_spin_unlock is missing",
    );
    reject(
        &format!("{lookup}call 5\nmov %r1, %r6\ncall 94\nout: mov %r0, 0\nexit"),
        XDP,
        &maps,
        10,
        "function calls are not allowed while holding a lock",
    );
}

#[test]
fn tail_call_continues_on_failure_and_checks_the_map() {
    let maps = [
        MapDef::new(MapType::ProgArray, 4, 4, 4).named("jmp"),
        hash_map(),
    ];
    accept(
        "lddw %r2, map_idx 0\nmov %r3, 1\ncall 12\nmov %r0, 2\nexit",
        XDP,
        &maps,
    );
    reject(
        "lddw %r2, map_idx 1\nmov %r3, 1\ncall 12\nmov %r0, 2\nexit",
        XDP,
        &maps,
        3,
        "cannot pass map_type 1 into func bpf_tail_call#12",
    );
}

#[test]
fn for_each_map_elem_callback_gets_typed_arguments() {
    let maps = [hash_map()];
    // The callback reads the 16-byte value it is given and returns 0.
    accept(
        "lddw %r1, map_idx 0
         lddw %r2, func cb
         mov %r3, 0
         mov %r4, 0
         call 164
         mov %r0, 0
         exit
         cb:
         ldxdw %r0, [%r3+8]
         mov %r0, 0
         exit",
        XDP,
        &maps,
    );
    reject(
        "lddw %r1, map_idx 0
         lddw %r2, func cb
         mov %r3, 0
         mov %r4, 0
         call 164
         mov %r0, 0
         exit
         cb:
         ldxdw %r0, [%r3+12]
         mov %r0, 0
         exit",
        XDP,
        &maps,
        9,
        "invalid access to map value, value_size=16 off=12 size=8",
    );
}

#[test]
fn pointers_stay_out_of_maps() {
    let maps = [hash_map()];
    reject(
        "stw [%r10-4], 0
         mov %r2, %r10
         add %r2, -4
         lddw %r1, map_idx 0
         call 1
         jeq %r0, 0, out
         stxdw [%r0+0], %r10
         out: mov %r0, 0
         exit",
        XDP,
        &maps,
        7,
        "R10 leaks addr into map",
    );
}

/// Raw programs verified for inputs of `min..=max` bytes.
fn check_raw(src: &str, min: u32, max: u32) -> Result<Verified, VerifyError> {
    let opts = VerifyOptions {
        raw_input_size: min,
        raw_max_input_size: max,
        log_level: 1,
        ..VerifyOptions::default()
    };
    verify(&program(src), &opts)
}

#[track_caller]
fn raw_rejected_at(src: &str, min: u32, max: u32, pc: usize, msg: &str) {
    let e = check_raw(src, min, max).expect_err("accepted");
    assert!(
        e.message.contains(msg),
        "expected '{msg}', got '{}'",
        e.message
    );
    assert_eq!(e.pc, Some(pc), "{}\n{}", e.message, e.log);
}

#[test]
fn raw_input_length_checks_bound_the_input() {
    // The length compared with a constant, as parse.c does before reading
    // the Ethernet header: reads below the bound are proven, above are not.
    let checked = "mov %r0, 1
        jslt %r2, 14, out
        ldxh %r0, [%r1+12]
        out:
        exit";
    check_raw(checked, 0, u32::MAX).unwrap();
    let past = checked.replace("[%r1+12]", "[%r1+13]");
    raw_rejected_at(&past, 0, u32::MAX, 2, "the input may be only 14 bytes long");
    // A copy of the length bounds the input as well, also once r2 is gone.
    let copy = "mov %r3, %r2
        mov %r2, 0
        mov %r0, 0
        jlt %r3, 8, out
        ldxdw %r0, [%r1+0]
        out:
        exit";
    check_raw(copy, 0, u32::MAX).unwrap();
    // Without the check nothing past the guaranteed size may be read.
    raw_rejected_at(
        "ldxb %r0, [%r1+0]\nexit",
        0,
        u32::MAX,
        0,
        "may be only 0 bytes",
    );
    check_raw("ldxb %r0, [%r1+0]\nexit", 1, u32::MAX).unwrap();
}

#[test]
fn raw_input_end_is_start_plus_length() {
    // data + len is the end: pointer comparisons against it prove ranges,
    // as with a packet's data_end.
    let ok = "mov %r0, 0
        mov %r3, %r1
        add %r3, %r2
        mov %r4, %r1
        add %r4, 20
        jgt %r4, %r3, out
        ldxw %r0, [%r1+16]
        out:
        exit";
    check_raw(ok, 0, u32::MAX).unwrap();
    raw_rejected_at(
        &ok.replace("[%r1+16]", "[%r1+17]"),
        0,
        u32::MAX,
        6,
        "invalid access",
    );
    // Only the length itself makes an end: any other scalar is a plain
    // variable offset, which stays unproven.
    let other = ok.replace("add %r3, %r2", "add %r3, 100");
    raw_rejected_at(&other, 0, u32::MAX, 6, "invalid access");
    // The end may be stepped back from, and read behind once the length
    // is known to be large enough.
    let tail = "mov %r0, 0
        jeq %r2, 0, out
        add %r2, %r1
        ldxb %r0, [%r2-1]
        out:
        exit";
    check_raw(tail, 0, u32::MAX).unwrap();
    raw_rejected_at(
        &tail.replace("jeq %r2, 0, out", "jeq %r2, 5, out"),
        0,
        u32::MAX,
        3,
        "the input may be only 0 bytes long",
    );
    raw_rejected_at(
        &tail.replace("[%r2-1]", "[%r2+0]"),
        0,
        u32::MAX,
        3,
        "from its end",
    );
}

#[test]
fn raw_length_is_not_trusted_beyond_its_bounds() {
    // The length may be anything up to the largest size: using it as a
    // stack offset is out of bounds even if every input tried was short.
    let src = "mov %r3, %r10
        add %r3, -512
        add %r3, %r2
        stb [%r3+0], 0
        mov %r0, 0
        exit";
    assert!(check_raw(src, 64, u32::MAX).is_err());
    // Bounded above by the largest size it is fine.
    check_raw(src, 0, 511).unwrap();
}

#[test]
fn raw_loops_over_the_input_are_bounded_by_its_largest_size() {
    // csum.c's loop: i + 1 < len, reading a u16 at i, then the odd byte at
    // end - 1 (len & 1 of a length of 0 or 1 is the length itself).
    let csum = "mov %r0, 0
        jlt %r2, 2, tail
        mov %r3, 0
        mov %r4, 0
        loop:
        mov %r5, %r1
        add %r5, %r3
        ldxh %r5, [%r5+0]
        add %r0, %r5
        add %r4, 2
        mov %r5, %r3
        add %r5, 3
        mov %r3, %r4
        jlt %r5, %r2, loop
        tail:
        mov %r3, %r2
        and %r3, 1
        jeq %r3, 0, out
        add %r2, %r1
        ldxb %r1, [%r2-1]
        add %r0, %r1
        out:
        exit";
    let v = check_raw(csum, 0, 1500).unwrap();
    assert!(v.stats.insns_processed < 100_000, "{:?}", v.stats);
    // With no bound on the input the loop cannot be proven to end.
    let e = check_raw(csum, 0, u32::MAX).unwrap_err();
    assert!(e.message.contains("too large"), "{}", e.message);
    // One byte too far in the loop is caught.
    let e = check_raw(&csum.replace("add %r5, 3", "add %r5, 2"), 0, 1500).unwrap_err();
    assert!(
        e.message.contains("invalid access to the input"),
        "{}",
        e.message
    );
}

fn check_frozen(
    src: &str,
    maps: &[MapDef],
    frozen: &[Option<&[u8]>],
) -> Result<Verified, VerifyError> {
    let opts = VerifyOptions {
        prog_type: XDP,
        maps,
        log_level: 2,
        frozen_values: frozen,
        ..VerifyOptions::default()
    };
    verify(&program(src), &opts)
}

#[test]
fn frozen_rodata_loads_are_constants() {
    // As cilium does: the header length comes from `.rodata` config, and
    // only its value proves the 14-byte read.
    let src = "lddw %r5, map_idx_value 0, 0
         ldxb %r4, [%r5+1]
         ldxw %r2, [%r1+0]
         ldxw %r3, [%r1+4]
         mov %r6, %r2
         add %r6, %r4
         jgt %r6, %r3, out
         ldxh %r0, [%r2+12]
         out: mov %r0, 2
         exit";
    let rodata = MapDef {
        flags: BPF_F_RDONLY_PROG,
        ..MapDef::new(MapType::Array, 4, 8, 1).named(".rodata")
    };
    let config: &[u8] = &[0, 14, 0, 0, 0, 0, 0, 0];
    let maps = [rodata.clone()];
    if let Err(e) = check_frozen(src, &maps, &[Some(config)]) {
        panic!("rejected at {:?}: {}\nlog:\n{}", e.pc, e.message, e.log);
    }
    let rejected_at_read = |r: Result<Verified, VerifyError>, why: &str| match r {
        Ok(v) => panic!("accepted {why}\nlog:\n{}", v.log),
        Err(e) => {
            assert_eq!(e.pc, Some(8), "{why}: {}\n{}", e.message, e.log);
            assert!(e
                .message
                .contains("invalid access to packet, off=12 size=2"));
        }
    };
    // Contents nobody promised to keep: the byte may be anything.
    rejected_at_read(check_frozen(src, &maps, &[None]), "without contents");
    // A map the program may write is never constant.
    let writable = [MapDef { flags: 0, ..rodata }];
    rejected_at_read(
        check_frozen(src, &writable, &[Some(config)]),
        "a writable map",
    );
    // The value is used, not just its presence: 13 bytes do not cover 14.
    rejected_at_read(
        check_frozen(src, &maps, &[Some(&[0, 13, 0, 0, 0, 0, 0, 0])]),
        "a 13-byte header",
    );
}

#[test]
fn frozen_loads_widths_and_sign_extension() {
    let rodata = MapDef {
        flags: BPF_F_RDONLY_PROG,
        ..MapDef::new(MapType::Array, 4, 8, 1).named(".rodata")
    };
    let value: &[u8] = &[0xff, 0x80, 2, 0, 0, 0, 0, 0x80];
    // Each load compares its value with what it must be; a wrong constant
    // (or an unknown value) reaches the uninitialised r9.
    let loads = [
        ("ldxb %r3, [%r1+0]", "0xff"),
        ("ldxh %r3, [%r1+0]", "0x80ff"),
        ("ldxw %r3, [%r1+0]", "0x280ff"),
        ("ldxdw %r3, [%r1+0]", "0x80000000000280ff"),
        ("ldxsb %r3, [%r1+0]", "-1"),
        ("ldxsh %r3, [%r1+0]", "-32513"),
    ];
    for (load, expected) in loads {
        let src = format!(
            "lddw %r1, map_idx_value 0, 0
             {load}
             lddw %r4, {expected}
             jeq %r3, %r4, ok
             mov %r0, %r9
             ok: mov %r0, 0
             exit"
        );
        let maps = [rodata.clone()];
        if let Err(e) = check_frozen(&src, &maps, &[Some(value)]) {
            panic!("{load}: rejected at {:?}: {}\n{}", e.pc, e.message, e.log);
        }
        // Not frozen: the comparison may fail.
        match check_frozen(&src, &maps, &[None]) {
            Ok(v) => panic!("{load}: accepted without contents\n{}", v.log),
            Err(e) => assert!(e.message.contains("R9 !read_ok"), "{}", e.message),
        }
    }
}

const TRACING: ProgType = ProgType::Tracing;

#[test]
fn tracing_arguments_are_read_as_kernel_pointers() {
    // fentry/tcp_connect: r7 = args[0] (a `struct sock *` in the kernel).
    let v = accept(
        "ldxdw %r7, [%r1+0]
         ldxh %r1, [%r7+16]
         ldxdw %r2, [%r7+24]
         ldxw %r3, [%r2+4]
         mov %r0, 0
         exit",
        TRACING,
        &[],
    );
    // Loads through kernel memory run as probe reads, the others do not.
    assert_eq!(v.probe_loads(), vec![1, 2, 3]);
    assert_eq!(v.mem_access[0], Some(PtrClass::Ctx));
    // A 4-byte argument, or a value computed from one, is just a number.
    reject(
        "ldxw %r7, [%r1+0]\nldxh %r0, [%r7+16]\nexit",
        TRACING,
        &[],
        1,
        "R7 invalid mem access 'scalar'",
    );
    reject(
        "ldxdw %r7, [%r1+0]\nadd %r7, 16\nldxh %r0, [%r7+0]\nexit",
        TRACING,
        &[],
        2,
        "R7 invalid mem access 'scalar'",
    );
    reject(
        "ldxdw %r7, [%r1+0]\nldxh %r1, [%r7+16]\nldxh %r0, [%r1+0]\nexit",
        TRACING,
        &[],
        2,
        "R1 invalid mem access 'scalar'",
    );
    // Only reads, at non-negative offsets.
    reject(
        "ldxdw %r7, [%r1+0]\nstw [%r7+0], 1\nmov %r0, 0\nexit",
        TRACING,
        &[],
        1,
        "only read is supported",
    );
    reject(
        "ldxdw %r7, [%r1+0]\nldxw %r0, [%r7-4]\nexit",
        TRACING,
        &[],
        1,
        "invalid negative access: off=-4",
    );
    // Raw tracepoint arguments are plain numbers in the kernel too.
    reject(
        "ldxdw %r7, [%r1+0]\nldxh %r0, [%r7+16]\nexit",
        ProgType::RawTracepoint,
        &[],
        1,
        "R7 invalid mem access 'scalar'",
    );
}

#[test]
fn btf_pointers_from_socket_casts_are_readable_after_a_null_check() {
    // fentry/tcp_close: bpf_skc_to_tcp_sock(sk)->srtt_us.
    let src = |check: &str| {
        format!(
            "ldxdw %r6, [%r1+0]
             mov %r1, %r6
             call 137
             {check}
             ldxw %r0, [%r0+0]
             out: mov %r0, 0
             exit"
        )
    };
    let v = accept(&src("jeq %r0, 0, out"), TRACING, &[]);
    assert_eq!(v.probe_loads(), vec![4]);
    reject(
        &src("mov %r0, %r0"),
        TRACING,
        &[],
        4,
        "R0 invalid mem access 'ptr__or_null'",
    );
    // A socket cast takes a socket, not any number.
    reject(
        "ldxw %r1, [%r1+0]\ncall 137\nmov %r0, 0\nexit",
        TRACING,
        &[],
        1,
        "R1 type=scalar expected=sock",
    );
}

#[test]
fn kernel_pointer_loads_cannot_share_an_instruction() {
    // One load instruction reached with a stack pointer and with a kernel
    // pointer: the engines could not run it both ways.
    reject(
        "ldxdw %r7, [%r1+0]
         ldxdw %r2, [%r1+8]
         stdw [%r10-8], 0
         jne %r2, 0, kernel
         mov %r7, %r10
         add %r7, -8
         kernel: ldxdw %r0, [%r7+0]
         exit",
        TRACING,
        &[],
        6,
        "same insn cannot be used with different pointers",
    );
}

#[test]
fn pruning_keeps_kernel_pointers_apart_from_numbers() {
    // The first path reaches `join` with a kernel pointer in r7 and reads
    // through it; the second brings a plain number, which must not be
    // taken as covered by the first.
    reject(
        "ldxdw %r7, [%r1+0]
         ldxdw %r2, [%r1+8]
         jne %r2, 0, plain
         ja join
         plain: ldxw %r7, [%r1+16]
         join: ldxb %r0, [%r7+0]
         mov %r0, 0
         exit",
        TRACING,
        &[],
        5,
        "R7 invalid mem access 'scalar'",
    );
}

// --- builtins (memset 1024, memcpy 1025, memmove 1026, memcmp 1027) ---

#[test]
fn memset_initialises_the_stack_it_covers() {
    let v = accept(
        "mov %r1, %r10
         add %r1, -16
         mov %r2, 0
         mov %r3, 16
         call 1024
         ldxdw %r0, [%r10-16]
         ldxdw %r1, [%r10-8]
         add %r0, %r1
         exit",
        RAW,
        &[],
    );
    assert!(v.log.contains("call memset#1024"), "{}", v.log);
    // Only the bytes it covers.
    reject(
        "mov %r1, %r10
         add %r1, -16
         mov %r2, 0
         mov %r3, 8
         call 1024
         ldxdw %r0, [%r10-8]
         exit",
        RAW,
        &[],
        5,
        "invalid read from stack",
    );
}

#[test]
fn memset_destination_must_hold_n_bytes() {
    reject(
        "mov %r1, %r10
         add %r1, -16
         mov %r2, 0
         mov %r3, 24
         call 1024
         mov %r0, 0
         exit",
        RAW,
        &[],
        4,
        "invalid indirect access to stack R1 off=-16 size=24",
    );
    let maps = [hash_map()];
    let lookup_then = |n: i32| {
        format!(
            "stw [%r10-4], 0
             mov %r2, %r10
             add %r2, -4
             lddw %r1, map_idx 0
             call 1
             jeq %r0, 0, +4
             mov %r1, %r0
             mov %r2, 255
             mov %r3, {n}
             call 1024
             mov %r0, 0
             exit"
        )
    };
    accept(&lookup_then(16), XDP, &maps);
    reject(
        &lookup_then(17),
        XDP,
        &maps,
        10,
        "invalid access to map value, value_size=16 off=0 size=17",
    );
}

#[test]
fn memset_over_a_spilled_pointer_leaves_data() {
    reject(
        "stxdw [%r10-8], %r1
         mov %r1, %r10
         add %r1, -8
         mov %r2, 0
         mov %r3, 8
         call 1024
         ldxdw %r2, [%r10-8]
         ldxb %r0, [%r2]
         exit",
        RAW,
        &[],
        7,
        "R2 invalid mem access 'scalar'",
    );
}

#[test]
fn memset_takes_a_bounded_length_and_a_scalar_fill() {
    // n from the input, masked: up to 31 bytes.
    accept(
        "ldxb %r3, [%r1]
         and %r3, 31
         mov %r1, %r10
         add %r1, -32
         mov %r2, 0
         call 1024
         mov %r0, 0
         exit",
        RAW,
        &[],
    );
    reject(
        "ldxw %r3, [%r1]
         mov %r1, %r10
         add %r1, -32
         mov %r2, 0
         call 1024
         mov %r0, 0
         exit",
        RAW,
        &[],
        4,
        "R3 unbounded memory access",
    );
    reject(
        "mov %r1, %r10
         add %r1, -8
         mov %r2, %r10
         mov %r3, 8
         call 1024
         mov %r0, 0
         exit",
        RAW,
        &[],
        4,
        "R2 type=fp expected=scalar",
    );
    // n = 0: nothing is written, any destination will do.
    accept(
        "mov %r1, 0
         mov %r2, 0
         mov %r3, 0
         call 1024
         exit",
        RAW,
        &[],
    );
}

#[test]
fn memset_and_memcpy_return_their_destination() {
    // r0 is the stack pointer r1 was.
    accept(
        "mov %r1, %r10
         add %r1, -8
         mov %r2, 0
         mov %r3, 8
         call 1024
         ldxdw %r0, [%r0]
         exit",
        RAW,
        &[],
    );
    let v = accept(
        "stdw [%r10-16], 7
         mov %r1, %r10
         add %r1, -8
         mov %r2, %r10
         add %r2, -16
         mov %r3, 8
         call 1025
         ldxdw %r0, [%r0]
         exit",
        RAW,
        &[],
    );
    assert!(v.log.contains("call memcpy#1025"), "{}", v.log);
    // memcmp returns a number.
    reject(
        "stdw [%r10-16], 7
         stdw [%r10-8], 7
         mov %r1, %r10
         add %r1, -8
         mov %r2, %r10
         add %r2, -16
         mov %r3, 8
         call 1027
         ldxdw %r0, [%r0]
         exit",
        RAW,
        &[],
        8,
        "R0 invalid mem access 'scalar'",
    );
}

/// A builtin (`memcpy` 1025, `memmove` 1026) copying 16 bytes between two
/// stack offsets, the source written first when `init_src`; the program
/// then reads back the top stack slot (or returns 0).
fn stack_copy(builtin: u32, dst: i32, src: i32, init_src: bool, read_back: bool) -> String {
    let init = if init_src {
        format!("stdw [%r10{src}], 1\nstdw [%r10{}], 2\n", src + 8)
    } else {
        String::new()
    };
    let ret = if read_back {
        "ldxdw %r0, [%r10-8]"
    } else {
        "mov %r0, 0"
    };
    format!(
        "{init}mov %r1, %r10\nadd %r1, {dst}\nmov %r2, %r10\nadd %r2, {src}\n\
         mov %r3, 16\ncall {builtin}\n{ret}\nexit"
    )
}

#[test]
fn memcpy_source_must_be_initialised() {
    reject(
        &stack_copy(1025, -16, -32, false, false),
        RAW,
        &[],
        5,
        "invalid indirect read from stack R2 off -32+0 size 16",
    );
    // Its twin: the source written first; the destination is then data.
    accept(&stack_copy(1025, -16, -32, true, true), RAW, &[]);
    // An uninitialised source is not made initialised by writing the
    // destination it overlaps.
    reject(
        &stack_copy(1026, -16, -16, false, false),
        RAW,
        &[],
        5,
        "invalid indirect read from stack R2 off -16+0 size 16",
    );
    // The destination must be as large as the copy.
    reject(
        &stack_copy(1025, -8, -32, true, false),
        RAW,
        &[],
        7,
        "invalid indirect access to stack R1 off=-8 size=16",
    );
}

#[test]
fn memcmp_reads_both_buffers() {
    reject(
        "stdw [%r10-8], 1
         mov %r1, %r10
         add %r1, -8
         mov %r2, %r10
         add %r2, -16
         mov %r3, 8
         call 1027
         exit",
        RAW,
        &[],
        6,
        "invalid indirect read from stack R2 off -16+0 size 8",
    );
    let v = accept(
        "stdw [%r10-8], 1
         mov %r1, %r10
         add %r1, -8
         mov %r2, %r1
         mov %r3, 8
         call 1027
         exit",
        RAW,
        &[],
    );
    assert!(v.log.contains("call memcmp#1027"), "{}", v.log);
    // Into the input buffer (64 bytes): in bounds, and one byte past.
    accept(
        "mov %r2, %r1
         add %r2, 32
         mov %r3, 32
         call 1027
         exit",
        RAW,
        &[],
    );
}

#[test]
fn builtins_are_allowed_in_every_program_type() {
    for t in [
        ProgType::Xdp,
        ProgType::SocketFilter,
        ProgType::Kprobe,
        ProgType::CgroupSysctl,
        ProgType::RawTracepoint,
        RAW,
    ] {
        accept(
            "mov %r1, %r10
             add %r1, -8
             mov %r2, 0
             mov %r3, 8
             call 1024
             mov %r0, 0
             exit",
            t,
            &[],
        );
    }
    reject("call 1279\nexit", XDP, &[], 0, "invalid func unknown#1279");
}

#[test]
fn builtins_cannot_write_read_only_maps_or_the_context() {
    let ro = MapDef {
        flags: BPF_F_RDONLY_PROG,
        ..MapDef::new(MapType::Array, 4, 8, 1).named(".rodata")
    };
    let maps = [ro];
    // memcpy from .rodata to the stack: fine; into .rodata: not.
    accept(
        "mov %r1, %r10
         add %r1, -8
         lddw %r2, map_idx_value 0, 0
         mov %r3, 8
         call 1025
         ldxdw %r0, [%r10-8]
         exit",
        XDP,
        &maps,
    );
    reject(
        "lddw %r1, map_idx_value 0, 0
         mov %r2, 0
         mov %r3, 8
         call 1024
         mov %r0, 0
         exit",
        XDP,
        &maps,
        4,
        "R1 write into map forbidden",
    );
    reject(
        "mov %r2, 0
         mov %r3, 4
         call 1024
         mov %r0, 0
         exit",
        XDP,
        &[],
        2,
        "R1 type=ctx expected=fp, pkt, pkt_meta, map_value, mem",
    );
}

#[test]
fn scalars_linked_by_a_constant_share_bounds() {
    // r3 = r2 + 8: bounding r2 bounds r3 (the kernel's linked scalars).
    let src = "ldxb %r2, [%r1+0]
        mov %r3, %r2
        add %r3, 8
        jgt %r2, 32, out
        mov %r4, %r10
        add %r4, -64
        add %r4, %r3
        stb [%r4+0], 1
        out:
        mov %r0, 0
        exit";
    accept(src, RAW, &[]);
    // Linked at 60, the bound allows a store past the frame.
    reject(
        &src.replace("add %r3, 8", "add %r3, 60"),
        RAW,
        &[],
        7,
        "invalid",
    );
    // A 32-bit copy of a 32-bit value is linked too; a 32-bit add that
    // cannot wrap keeps the link.
    let w = src
        .replace("mov %r3, %r2", "mov32 %r3, %r2")
        .replace("add %r3, 8", "add32 %r3, 8");
    accept(&w, RAW, &[]);
    // Any other operation ends the link.
    reject(
        &w.replace("add32 %r3, 8", "mul %r3, 1"),
        RAW,
        &[],
        7,
        "invalid",
    );
}

#[test]
fn packet_pointers_from_one_pointer_and_value_share_their_range() {
    // p = data + n is checked for 2 bytes; data + (n + 1) is p + 1, so one
    // byte may be read there (clang computes such addresses afresh).
    let src = "ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r0, 0
        mov %r5, %r2
        add %r5, 1
        jgt %r5, %r3, out
        ldxb %r6, [%r2+0]
        and %r6, 15
        mov %r7, %r2
        add %r7, %r6
        mov %r8, %r7
        add %r8, 2
        jgt %r8, %r3, out
        mov %r9, %r6
        add %r9, 1
        mov %r0, %r2
        add %r0, %r9
        ldxb %r0, [%r0+0]
        out:
        mov %r0, 2
        exit";
    accept(src, XDP, &[]);
    reject(
        &src.replace("add %r9, 1", "add %r9, 2"),
        XDP,
        &[],
        17,
        "invalid access to packet",
    );
    // A different value of the same range is not the same pointer.
    reject(
        &src.replace("mov %r9, %r6\n", "ldxb %r9, [%r2+0]\n        and %r9, 15\n"),
        XDP,
        &[],
        18,
        "invalid access to packet",
    );
}

#[test]
fn paths_that_know_less_of_the_length_are_not_pruned() {
    // One path proves len >= 16, the other only len >= 1; after they join,
    // a read of [8, 16) needs the first path's knowledge. Pruning the
    // second path against the first would accept an out-of-bounds read.
    for (first, second) in [("jeq", "jne"), ("jne", "jeq")] {
        let src = format!(
            "mov %r0, 0
            ldxb %r3, [%r1+0]
            {first} %r3, 0, weak
            jlt %r2, 16, out
            ja join
            weak:
            {second} %r3, 7, join
            join:
            ldxdw %r0, [%r1+8]
            out:
            exit"
        );
        let e = check_raw(&src, 1, u32::MAX).unwrap_err();
        assert!(e.message.contains("the input may be only"), "{}", e.message);
        // Both paths checking the length: accepted.
        let fixed = src.replace("join:\n", "join:\n            jlt %r2, 16, out\n");
        check_raw(&fixed, 1, u32::MAX).unwrap();
    }
}
