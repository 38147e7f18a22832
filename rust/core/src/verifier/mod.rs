//! The verifier: proves programs safe by abstract interpretation, modelled on
//! the Linux kernel's (`kernel/bpf/verifier.c`).
//!
//! Every path through the program is explored with typed registers (scalars
//! with known bits and bounds, pointers of each kind with fixed and variable
//! offsets), a per-byte stack and call frames. States at prune points are
//! kept, and a path whose state is subsumed by an explored one stops there.
//! An accepted program cannot fault in the checked interpreter: no
//! out-of-bounds access, no uninitialised read, no null dereference, no
//! unbounded loop.
//!
//! Files: `tnum`/`scalar` (known bits and bounds), `state` (registers,
//! stack, frames, subsumption), `alu`, `jump` (branch refinement, packet
//! ranges, null checks), `memory` (loads, stores, atomics per pointer
//! type), `calls` (helpers, BPF-to-BPF calls, callbacks, exit), `explore`
//! (depth-first walk, pruning, loop detection, limits), `precision` and
//! `liveness` (what pruning may ignore), `log` (kernel-format log).
//!
//! Pruning is as the kernel's: a state is only compared with states whose
//! exploration has finished; scalars are compared only where some later
//! check depended on them (precision marks found by walking the path back),
//! stack slots only where they are read again, registers only where live.
//! Differences from the kernel, on purpose: pointers may not be stored
//! outside the stack (into maps, packets, helper inputs), which the kernel
//! allows privileged programs; helpers without a return value leave a
//! scalar in r0; callbacks re-entered by their helper are widened so the
//! iteration converges; without kernel BTF the traced function's
//! prototype is unknown, so every 8-byte argument of a BTF tracing program
//! is a number that may also be read through as a kernel pointer (probe
//! loads, see [`PtrClass::Probe`]), and the size of the object behind a
//! kernel pointer is not checked.

mod alu;
mod calls;
mod explore;
mod jump;
mod liveness;
mod log;
mod memory;
mod precision;
pub mod scalar;
pub mod state;
pub mod tnum;

use std::time::Duration;

use crate::maps::MapDef;
use crate::program::Program;
use crate::progtype::ProgType;

/// The kernel's BPF_COMPLEXITY_LIMIT_INSNS.
pub const DEFAULT_MAX_PROCESSED_INSNS: u64 = 1_000_000;

/// What the verifier needs to know besides the code.
#[derive(Clone, Debug)]
pub struct VerifyOptions<'a> {
    /// `ProgType::Raw`: r1 points to the input, readable and writable, and
    /// r2 holds its length, between `raw_input_size` and
    /// `raw_max_input_size` bytes. The program must check the length before
    /// reading past `raw_input_size` bytes, as a packet program checks
    /// `data_end`; loops over the input are bounded by the largest size.
    pub prog_type: ProgType,
    pub raw_input_size: u32,
    pub raw_max_input_size: u32,
    /// `lddw` map pseudo loads with imm `i` refer to `maps[i]`.
    pub maps: &'a [MapDef],
    /// 0: no log; 1: the failing path; 2: every instruction with its state.
    pub log_level: u32,
    /// (instruction index, "file:line: source text") from BTF line info.
    pub line_info: &'a [(usize, String)],
    pub max_processed_insns: u64,
    /// Per map index, the value of a frozen map: a one-element array the
    /// program may only read (`BPF_F_RDONLY_PROG`) and nobody may write
    /// any more, as libbpf freezes `.rodata`. Loads from it at a known
    /// offset yield constants (the kernel's `bpf_map_direct_read`), so
    /// configuration in `.rodata` prunes dead code. Only give contents that
    /// cannot change after verification.
    pub frozen_values: &'a [Option<&'a [u8]>],
}

impl Default for VerifyOptions<'_> {
    fn default() -> Self {
        VerifyOptions {
            prog_type: ProgType::Raw,
            raw_input_size: 0,
            raw_max_input_size: u32::MAX,
            maps: &[],
            log_level: 0,
            line_info: &[],
            max_processed_insns: DEFAULT_MAX_PROCESSED_INSNS,
            frozen_values: &[],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyStats {
    pub insns_processed: u64,
    pub states_total: u64,
    pub peak_states: u64,
    pub max_states_per_insn: u64,
    pub duration: Duration,
}

/// A proof that the program is safe, and what it found out.
#[derive(Clone, Debug)]
pub struct Verified {
    pub stats: VerifyStats,
    pub log: String,
    /// Per instruction: the kind of pointer every path uses at that load or
    /// store (`Other` when paths disagree), `None` for other instructions.
    pub mem_access: Vec<Option<PtrClass>>,
    /// Some stack write had a variable offset or a variable size (a helper
    /// filling a buffer up to a bound): like the kernel, the verifier then
    /// counts the whole range it may cover as written, so later reads of
    /// it are allowed though the run may not have written every byte.
    /// Engines must then start frames zeroed, as the interpreter does, for
    /// such reads to see zeros rather than an earlier run's data.
    pub imprecise_stack_writes: bool,
}

impl Verified {
    /// The loads engines must run as probe reads
    /// ([`crate::interp::LoadOptions::probe_loads`]).
    pub fn probe_loads(&self) -> Vec<usize> {
        self.mem_access
            .iter()
            .enumerate()
            .filter(|(_, class)| **class == Some(PtrClass::Probe))
            .map(|(pc, _)| pc)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtrClass {
    Ctx,
    Stack,
    Packet,
    MapValue,
    Mem,
    /// Kernel memory through a BTF pointer: engines must read it without
    /// faulting, yielding 0 outside the program's memory (the kernel's
    /// `BPF_PROBE_MEM`).
    Probe,
    Other,
}

/// Why a program was rejected.
#[derive(Clone, Debug)]
pub struct VerifyError {
    /// The failing instruction, when there is one.
    pub pc: Option<usize>,
    pub message: String,
    pub log: String,
    pub stats: VerifyStats,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pc {
            Some(pc) => write!(f, "{pc}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Proves `program` safe or says where and why it may not be.
pub fn verify(program: &Program, opts: &VerifyOptions) -> Result<Verified, VerifyError> {
    explore::run(program, opts)
}
