//! The verified code shape of both JIT tiers against the interpreter: the
//! programs the verifier accepts from the soundness oracle's generator
//! (bounds-checked accesses, map lookups with null checks, spills, loops,
//! helper buffers) run with no bounds checks and no budget, and must give
//! the interpreter's r0, instruction count and memory on every input.
//!
//! Each engine gets its own maps, created with the same contents, and runs
//! the same inputs in the same order, so map updates cannot make them
//! diverge. Long runs: `EBPFVM_VERIFIED_PROGRAMS=100000 cargo test --release
//! -p ebpfvm-jit --test verified_shape -- --nocapture`.

#[path = "../../core/tests/verifier_support/mod.rs"]
mod verifier_support;

use std::sync::Arc;

use ebpfvm_core::disasm::disassemble;
use ebpfvm_core::interp::{Executable, LoadOptions, RunOutcome, Runner};
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::runtime::{self, helpers::kernel_helpers, Environment};
use ebpfvm_core::verifier::{verify, Verified, VerifyOptions};
use ebpfvm_jit::JitExecutable;
use verifier_support::gen::{generate, input, live_maps, maps};

const INPUTS_PER_PROGRAM: u64 = 3;
const LONGER_INPUTS: u32 = 32;

/// Fixed stand-ins for the clock and the random number helpers, so every
/// engine sees the same values.
unsafe extern "C" fn fixed_time(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    1_000_000_007
}
unsafe extern "C" fn fixed_random(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    0x1234_5678
}

type Observed = Vec<(Result<RunOutcome, String>, Vec<u8>)>;

/// Runs `program` on the engine `build` makes, over the seed's inputs.
fn observe(
    program: &Program,
    seed: u64,
    mem_len: u32,
    build: &dyn Fn(Arc<Program>, LoadOptions) -> Option<Box<dyn Runner>>,
    verified: &Verified,
) -> Option<Observed> {
    let live = live_maps();
    let env = Environment::new(live.clone());
    let prepared = runtime::prepare(program, ProgType::Raw, &live).ok()?;
    let mut helpers = kernel_helpers(&env);
    // SAFETY: both take five integers and return one, without unwinding.
    unsafe {
        helpers
            .register_native(5, fixed_time)
            .expect("ktime_get_ns id");
        helpers
            .register_native(7, fixed_random)
            .expect("get_prandom_u32 id");
    }
    let opts = LoadOptions {
        helpers,
        max_instructions: 20_000_000,
        verified: true,
        probe_loads: verified.probe_loads(),
        // As the runtime loads verified programs.
        stack_written_before_read: !verified.imprecise_stack_writes,
        ..LoadOptions::default()
    };
    let exe = build(Arc::new(prepared), opts)?;
    let mut seen = Vec::new();
    for k in 0..INPUTS_PER_PROGRAM {
        let extra = (seed.wrapping_add(k) % (LONGER_INPUTS as u64 + 1)) as u32;
        let len = if k == 0 { mem_len } else { mem_len + extra };
        let mut mem = input(seed.wrapping_mul(31).wrapping_add(k), len);
        let r = exe.run(&mut mem).map_err(|e| e.to_string());
        seen.push((r, mem));
    }
    Some(seen)
}

#[test]
fn verified_code_of_both_tiers_matches_the_interpreter() {
    let programs: u64 = std::env::var("EBPFVM_VERIFIED_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let defs = maps();
    let (mut accepted, mut baseline_runs) = (0u64, 0u64);
    for seed in 0..programs {
        let g = generate(seed);
        let Ok(program) = Program::from_insns(g.insns.clone(), 4096) else {
            continue;
        };
        let opts = VerifyOptions {
            prog_type: ProgType::Raw,
            raw_input_size: g.mem_len,
            raw_max_input_size: g.mem_len + LONGER_INPUTS,
            maps: &defs,
            max_processed_insns: 20_000,
            ..VerifyOptions::default()
        };
        let Ok(verified) = verify(&program, &opts) else {
            continue;
        };
        let interp = |p: Arc<Program>, o: LoadOptions| {
            Executable::new(p, o)
                .ok()
                .map(|e| Box::new(e) as Box<dyn Runner>)
        };
        let Some(reference) = observe(&program, seed, g.mem_len, &interp, &verified) else {
            continue; // helpers the runtime lacks
        };
        accepted += 1;
        let optimized = |p: Arc<Program>, o: LoadOptions| {
            let j = JitExecutable::compile(p, o).expect("Cranelift compiles what verifies");
            Some(Box::new(j) as Box<dyn Runner>)
        };
        let baseline = |p: Arc<Program>, o: LoadOptions| {
            JitExecutable::compile_baseline(p, o)
                .expect("the baseline compiles what verifies")
                .map(|j| Box::new(j) as Box<dyn Runner>)
        };
        for (name, build) in [
            ("optimized", &optimized as &dyn Fn(_, _) -> _),
            ("baseline", &baseline),
        ] {
            let Some(seen) = observe(&program, seed, g.mem_len, build, &verified) else {
                continue; // several functions: no baseline code
            };
            if name == "baseline" {
                baseline_runs += 1;
            }
            assert!(
                seen == reference,
                "seed {seed}: verified {name} JIT differs from the interpreter\n\
                 interpreter: {:?}\n{name}: {:?}\n{}",
                reference.iter().map(|r| &r.0).collect::<Vec<_>>(),
                seen.iter().map(|r| &r.0).collect::<Vec<_>>(),
                disassemble(program.insns())
            );
        }
    }
    eprintln!(
        "{accepted} verified programs agreed in both tiers ({baseline_runs} had baseline code)"
    );
    assert!(
        accepted > programs / 10,
        "only {accepted} accepted programs"
    );
    assert!(baseline_runs > 0);
}
