//! Differential testing: random structured programs run in the interpreter
//! and the JIT on the same input must agree on r0, the instruction count,
//! the memory afterwards, and on the kind and place of any fault.
//!
//! `EBPFVM_DIFF_PROGRAMS=1000000 cargo test --release -p ebpfvm-jit --test
//! differential` runs a long campaign; `EBPFVM_DIFF_SEED` picks the start
//! and `EBPFVM_DIFF_THREADS` spreads it over cores.

use std::sync::Arc;

use ebpfvm_core::disasm::disassemble;
use ebpfvm_core::gen::{random_memory, random_program, GenOptions};
use ebpfvm_core::helpers::{HelperError, HelperMemory, HelperRegistry};
use ebpfvm_core::interp::{Executable, LoadOptions, RunOutcome, Runner, STACK_BYTES};
use ebpfvm_core::program::Program;
use ebpfvm_jit::JitExecutable;

unsafe extern "C" fn mix(a: u64, b: u64, c: u64, _: u64, _: u64) -> u64 {
    (a ^ b.rotate_left(7)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ c
}

/// Reads 8 bytes at r1 (faulting if that is outside the program's memory)
/// and bumps the first byte: exercises the memory view and helper faults.
fn peek(m: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let s = m.slice_mut(a[0], 8)?;
    s[0] = s[0].wrapping_add(1);
    Ok(u64::from_le_bytes(s[..8].try_into().unwrap()) ^ a[1])
}

fn options() -> LoadOptions {
    let mut helpers = HelperRegistry::new();
    unsafe { helpers.register_native(1, mix).unwrap() };
    helpers.register(2, Arc::new(peek)).unwrap();
    LoadOptions {
        helpers,
        unwind_helper: None,
        max_instructions: 5_000,
        ..LoadOptions::default()
    }
}

fn gen_options() -> GenOptions {
    GenOptions {
        helper_ids: vec![1, 2],
        ..GenOptions::default()
    }
}

type Outcome = Result<RunOutcome, (usize, &'static str)>;

fn outcome(r: Result<RunOutcome, ebpfvm_core::error::ExecError>) -> Outcome {
    r.map_err(|e| (e.pc, e.kind.name()))
}

/// Runs one seed in both engines; returns a description of any mismatch.
fn compare(seed: u64) -> Option<String> {
    let insns = random_program(seed, &gen_options());
    let prog = Arc::new(Program::from_insns(insns, 1 << 20).expect("generator output loads"));
    let interp = Executable::new(prog.clone(), options()).expect("interpreter loads");
    let jit = match JitExecutable::compile(prog.clone(), options()) {
        Ok(j) => j,
        Err(e) => return Some(format!("seed {seed}: JIT failed to compile: {e}")),
    };
    // Same input and stack addresses for both, since programs may compute
    // with pointers.
    let mem0 = random_memory(seed, gen_options().mem_len);
    let mut buf = mem0.clone();
    let mut stack = vec![0u64; STACK_BYTES / 8];
    let sp = stack.as_mut_ptr() as *mut u8;
    // Every fourth program sees its input read-only: accesses then take
    // the slow path (regions other than the stack and writable input).
    let writable = !seed.is_multiple_of(4);
    let a =
        outcome(unsafe { interp.run_raw_with_stack(buf.as_mut_ptr(), buf.len(), writable, sp) });
    let m1 = buf.clone();
    buf.copy_from_slice(&mem0);
    let b = outcome(unsafe { jit.run_raw_with_stack(buf.as_mut_ptr(), buf.len(), writable, sp) });
    let m2 = buf.clone();
    if a != b || m1 != m2 {
        return Some(format!(
            "seed {seed}: interpreter {a:?} vs JIT {b:?}; memory {}\n{}",
            if m1 == m2 { "equal" } else { "differs" },
            disassemble(prog.insns())
        ));
    }
    // The baseline tier (x86-64 hosts).
    let baseline = match JitExecutable::compile_baseline(prog.clone(), options()) {
        Ok(b) => b,
        Err(e) => return Some(format!("seed {seed}: baseline failed to compile: {e}")),
    };
    if let Some(baseline) = baseline {
        buf.copy_from_slice(&mem0);
        let c = outcome(unsafe {
            baseline.run_raw_with_stack(buf.as_mut_ptr(), buf.len(), writable, sp)
        });
        if a != c || m1 != buf {
            return Some(format!(
                "seed {seed}: interpreter {a:?} vs baseline JIT {c:?}; memory {}\n{}",
                if m1 == buf { "equal" } else { "differs" },
                disassemble(prog.insns())
            ));
        }
        BASELINE_COMPARED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    None
}

/// Programs also compared in the baseline tier.
static BASELINE_COMPARED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[test]
fn jit_matches_interpreter_on_random_programs() {
    let n: u64 = std::env::var("EBPFVM_DIFF_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let start: u64 = std::env::var("EBPFVM_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let threads: u64 = std::env::var("EBPFVM_DIFF_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let failure = std::sync::Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for t in 0..threads {
            let failure = &failure;
            s.spawn(move || {
                let mut seed = start + t;
                while seed < start + n {
                    if failure.lock().unwrap().is_some() {
                        return;
                    }
                    if let Some(m) = compare(seed) {
                        *failure.lock().unwrap() = Some(m);
                        return;
                    }
                    seed += threads;
                }
            });
        }
    });
    if let Some(m) = failure.into_inner().unwrap() {
        panic!("mismatch:\n{m}");
    }
    let ok = n;
    let baseline = BASELINE_COMPARED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{ok} random programs agreed between the interpreter and the JIT \
         ({baseline} of them also in the baseline tier)"
    );
    assert!(baseline > 0, "no program took the baseline tier");
}
