//! The soundness oracle: a program the verifier accepts must never fault in
//! the checked interpreter. Random programs built around the idioms a
//! verifier must get exactly right (bounds checks before variable-offset
//! accesses, null checks after map lookups, spills, loops, helper buffers;
//! see `verifier_support::gen`) are verified; every accepted one runs on
//! several inputs, and any fault (out-of-bounds access, null dereference, a
//! helper refusing its arguments, an accepted loop exhausting the budget) is
//! reported with the program, the input and the verifier's log.
//!
//! The interpreter zeroes each stack frame on entry, so reads of
//! uninitialised stack cannot show up here; they are covered by the
//! verifier's own unit tests.
//!
//! CI runs a few thousand programs. Long runs:
//!     EBPFVM_SOUNDNESS_PROGRAMS=1000000 cargo test -p ebpfvm-core --release \
//!         --test verifier_soundness -- --nocapture
//! (`EBPFVM_SOUNDNESS_SEED=n` starts at another seed; a failure names its
//! seed, and `EBPFVM_SOUNDNESS_SEED=<seed> EBPFVM_SOUNDNESS_PROGRAMS=1`
//! reproduces it.) One million programs from seed 0 take about two minutes
//! in a release build.

mod verifier_support;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use ebpfvm_core::disasm::disassemble;
use ebpfvm_core::interp::{Executable, LoadOptions, Runner};
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::runtime::{self, helpers::kernel_helpers, Environment};
use ebpfvm_core::verifier::{verify, VerifyOptions};
use verifier_support::gen::{generate, input, live_maps, maps};
use verifier_support::panic_text;

const DEFAULT_PROGRAMS: u64 = 3000;
const INPUTS_PER_PROGRAM: u64 = 4;
/// Inputs may be up to this many bytes longer than the generated size.
const LONGER_INPUTS: u32 = 64;
/// Far more than any accepted program can execute: the verifier walks every
/// path at least once and stops at a million instructions.
const BUDGET: u64 = 20_000_000;
/// Generated programs are small: a program needing more than this is
/// rejected as too complex, which keeps each verification short.
const MAX_PROCESSED: u64 = 20_000;
/// Below this share of accepted programs the oracle tests too little.
const MIN_ACCEPTED_PERCENT: u64 = 10;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not `{v}`")),
        Err(_) => default,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn accepted_programs_never_fault() {
    let programs = env_u64("EBPFVM_SOUNDNESS_PROGRAMS", DEFAULT_PROGRAMS);
    let first_seed = env_u64("EBPFVM_SOUNDNESS_SEED", 0);

    let defs = maps();
    let live = live_maps();
    let env = Environment::new(live.clone());
    let helpers = kernel_helpers(&env);

    let (mut malformed, mut rejected, mut accepted, mut unrunnable, mut runs) = (0, 0, 0, 0, 0);
    let mut failures: Vec<String> = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    for seed in first_seed..first_seed + programs {
        let g = generate(seed);
        let Ok(program) = Program::from_insns(g.insns.clone(), 4096) else {
            malformed += 1;
            continue;
        };
        let opts = VerifyOptions {
            prog_type: ProgType::Raw,
            raw_input_size: g.mem_len,
            // Runs use inputs up to this much longer: what is proven must
            // hold for every length allowed, not just the shortest.
            raw_max_input_size: g.mem_len + LONGER_INPUTS,
            maps: &defs,
            max_processed_insns: MAX_PROCESSED,
            ..VerifyOptions::default()
        };
        let verified = match catch_unwind(AssertUnwindSafe(|| verify(&program, &opts))) {
            Err(p) => {
                failures.push(format!(
                    "seed {seed}: the verifier panicked: {}\n{}",
                    panic_text(&*p),
                    disassemble(program.insns())
                ));
                continue;
            }
            Ok(Err(e)) => {
                rejected += 1;
                // The message without numbers: how often each check fires.
                let kind: String = e
                    .message
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .take(60)
                    .collect();
                *reasons.entry(kind).or_default() += 1;
                continue;
            }
            Ok(Ok(v)) => {
                accepted += 1;
                v
            }
        };
        let runnable = program
            .helper_calls()
            .iter()
            .all(|&(_, id)| helpers.contains(id));
        let exe = runtime::prepare(&program, ProgType::Raw, &live)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                Executable::new(
                    Arc::new(p),
                    LoadOptions {
                        helpers: helpers.clone(),
                        max_instructions: BUDGET,
                        // As the runtime loads verified programs.
                        probe_loads: verified.probe_loads(),
                        ..LoadOptions::default()
                    },
                )
                .map_err(|e| e.to_string())
            });
        let exe = match exe {
            Ok(exe) if runnable => exe,
            _ => {
                unrunnable += 1;
                continue;
            }
        };
        for k in 0..INPUTS_PER_PROGRAM {
            let extra = (seed.wrapping_add(k) % (LONGER_INPUTS as u64 + 1)) as u32;
            let len = if k == 0 { g.mem_len } else { g.mem_len + extra };
            let before = input(seed.wrapping_mul(31).wrapping_add(k), len);
            let mut mem = before.clone();
            runs += 1;
            if let Err(e) = exe.run(&mut mem) {
                let log = match verify(
                    &program,
                    &VerifyOptions {
                        log_level: 2,
                        ..opts.clone()
                    },
                ) {
                    Ok(v) => v.log,
                    Err(e) => format!("(verified with log: now rejected: {e})\n{}", e.log),
                };
                failures.push(format!(
                    "seed {seed}: accepted program faulted at {}: {:?}: {}\n\
                     input ({} bytes): {}\nprogram:\n{}\nverifier log:\n{}",
                    e.pc,
                    e.kind,
                    e.reason,
                    before.len(),
                    hex(&before),
                    disassemble(program.insns()),
                    log
                ));
                break;
            }
        }
        if failures.len() >= 5 {
            break;
        }
    }
    let generated = programs - malformed;
    println!(
        "soundness: {programs} programs from seed {first_seed} in {:.1} s: {malformed} malformed, \
         {rejected} rejected, {accepted} accepted ({unrunnable} need helpers the runtime lacks), \
         {runs} runs, {} failures",
        start.elapsed().as_secs_f64(),
        failures.len()
    );
    let mut top: Vec<_> = reasons.into_iter().collect();
    top.sort_by_key(|r| std::cmp::Reverse(r.1));
    println!("most frequent rejections:");
    for (why, n) in top.iter().take(12) {
        println!("  {n:6}  {why}");
    }
    assert!(
        failures.is_empty(),
        "{} soundness failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(
        malformed, 0,
        "the generator made structurally invalid programs"
    );
    assert!(
        programs < 100 || accepted * 100 >= generated * MIN_ACCEPTED_PERCENT,
        "only {accepted} of {generated} programs were accepted: the oracle checks too little"
    );
}

/// Prints the program of `EBPFVM_SOUNDNESS_SEED` (a debugging aid):
///     EBPFVM_SOUNDNESS_SEED=34 cargo test -p ebpfvm-core --test verifier_soundness \
///         dump_seed -- --ignored --nocapture
#[test]
#[ignore]
fn dump_seed() {
    let seed = env_u64("EBPFVM_SOUNDNESS_SEED", 0);
    let g = generate(seed);
    println!("mem_len {}\n{}", g.mem_len, disassemble(&g.insns));
}
