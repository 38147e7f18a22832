//! Runs of code that needs no run context (the verified shape of loops
//! with two induction registers and stack spills, native helper calls)
//! give the interpreter's results, counts and memory; which code needs one.

use std::sync::Arc;

use ebpfvm_core::asm::assemble;
use ebpfvm_core::helpers::{HelperError, HelperMemory, HelperRegistry};
use ebpfvm_core::interp::{Executable, LoadOptions, Runner, STACK_BYTES};
use ebpfvm_core::program::Program;
use ebpfvm_jit::JitExecutable;

unsafe extern "C" fn mix(a: u64, b: u64, _: u64, _: u64, _: u64) -> u64 {
    (a ^ b).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn bump(m: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let s = m.slice_mut(a[0], 1)?;
    s[0] = s[0].wrapping_add(1);
    Ok(a[1] + 1)
}

fn options(verified: bool) -> LoadOptions {
    let mut helpers = HelperRegistry::new();
    // SAFETY: `mix` takes and returns plain integers.
    unsafe { helpers.register_native(1, mix).unwrap() };
    helpers.register(2, Arc::new(bump)).unwrap();
    LoadOptions {
        helpers,
        verified,
        ..LoadOptions::default()
    }
}

/// Sums the input's 16-bit words with two registers stepping through it
/// (`r3 = r4` each iteration, as clang emits for the checksum loop), with
/// the total spilled to the stack and reloaded every iteration.
const WORD_SUM: &str = "
    mov %r0, 0
    stxdw [%r10-8], %r0
    mov %r3, 0
    mov %r4, 0
loop:
    mov %r5, %r1
    add %r5, %r3
    ldxh %r5, [%r5]
    ldxdw %r0, [%r10-8]
    add %r0, %r5
    stxdw [%r10-8], %r0
    add %r4, 2
    mov %r5, %r3
    add %r5, 3
    mov %r3, %r4
    jlt %r5, %r2, loop
    exit
";

/// Calls the native helper in a loop and writes to the input.
const NATIVE_CALLS: &str = "
    mov %r6, %r1
    mov %r7, 0
    mov %r8, 5
loop:
    mov %r1, %r7
    mov %r2, %r8
    call 1
    mov %r7, %r0
    sub %r8, 1
    jne %r8, 0, loop
    stxdw [%r6], %r7
    mov %r0, %r7
    exit
";

/// Calls a helper that needs the memory map.
const MAP_CALL: &str = "
    mov %r2, 41
    call 2
    exit
";

fn input() -> Vec<u8> {
    (0..64u32).map(|i| (i * 37 + 5) as u8).collect()
}

/// Runs `src` in both engines and checks they agree; returns the JIT.
fn same_as_interpreter(src: &str, verified: bool) -> JitExecutable {
    let prog = Arc::new(Program::from_insns(assemble(src).unwrap(), 4096).unwrap());
    let interp = Executable::new(prog.clone(), options(verified)).unwrap();
    let jit = JitExecutable::compile(prog, options(verified)).unwrap();
    let mut stack = vec![0u64; STACK_BYTES / 8];
    let sp = stack.as_mut_ptr() as *mut u8;
    let mut a = input();
    let mut b = input();
    // SAFETY: the buffers and the stack outlive the runs.
    let (ra, rb) = unsafe {
        (
            interp.run_raw_with_stack(a.as_mut_ptr(), a.len(), true, sp),
            jit.run_raw_with_stack(b.as_mut_ptr(), b.len(), true, sp),
        )
    };
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!((ra.r0, ra.instructions), (rb.r0, rb.instructions), "{src}");
    assert_eq!(a, b, "memory after the run differs:\n{src}");
    jit
}

#[test]
fn code_that_touches_only_stack_and_input_runs_without_a_context() {
    let jit = same_as_interpreter(WORD_SUM, true);
    assert!(!jit.needs_run_ctx());
    let expected: u64 = input()
        .chunks(2)
        .take(32)
        .map(|w| u16::from_le_bytes([w[0], w[1]]) as u64)
        .sum();
    let mut mem = input();
    let mut stack = vec![0u64; STACK_BYTES / 8];
    // SAFETY: as above.
    let r = unsafe {
        jit.run_raw_with_stack(
            mem.as_mut_ptr(),
            mem.len(),
            true,
            stack.as_mut_ptr() as *mut u8,
        )
    };
    assert_eq!(r.unwrap().r0, expected);
}

#[test]
fn native_helpers_need_no_context_but_map_helpers_do() {
    assert!(!same_as_interpreter(NATIVE_CALLS, true).needs_run_ctx());
    assert!(same_as_interpreter(MAP_CALL, true).needs_run_ctx());
}

#[test]
fn checked_code_with_input_accesses_needs_the_context() {
    // Bounds checks read the input's limits from the context.
    assert!(same_as_interpreter(WORD_SUM, false).needs_run_ctx());
    assert!(!same_as_interpreter("mov %r0, 7\nexit\n", false).needs_run_ctx());
}
