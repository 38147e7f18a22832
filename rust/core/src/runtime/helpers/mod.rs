//! Kernel helpers, by kernel id, with kernel semantics, and ebpfvm's
//! builtins (`memset`, `memcpy`, ... at their own ids). Each file holds
//! one family; [`kernel_helpers`] registers them all for a program.
//!
//! Helpers never trust their arguments: pointers are read and written
//! through [`HelperMemory`] (so an unverified program cannot make a helper
//! touch memory the program could not), map arguments must be handles of
//! live maps, and per-run state (the packet, the context) comes from the
//! run's [`RunState`], never from memory the program can write.

use std::sync::Arc;

use crate::helpers::{HelperError, HelperMemory, HelperRegistry};

use super::{Environment, RunState};

mod builtins;
mod callbacks;
mod dynptr;
mod local_storage;
mod maps;
mod packet;
mod perf;
mod ringbuf;
mod strings;
mod sync;
mod tail_call;
mod task;
mod time;
mod trace;

/// A helper body: the shared environment, the program's memory, r1-r5.
pub type HelperFn = fn(&Environment, &mut HelperMemory<'_>, [u64; 5]) -> Result<u64, HelperError>;

/// Every kernel helper ebpfvm implements, and the builtins, bound to `env`.
pub fn kernel_helpers(env: &Arc<Environment>) -> HelperRegistry {
    let mut reg = HelperRegistry::new();
    for &(id, f) in maps::HELPERS
        .iter()
        .chain(tail_call::HELPERS)
        .chain(time::HELPERS)
        .chain(task::HELPERS)
        .chain(strings::HELPERS)
        .chain(trace::HELPERS)
        .chain(ringbuf::HELPERS)
        .chain(sync::HELPERS)
        .chain(packet::HELPERS)
        .chain(perf::HELPERS)
        .chain(local_storage::HELPERS)
        .chain(dynptr::HELPERS)
        .chain(callbacks::HELPERS)
        .chain(builtins::HELPERS)
    {
        add(&mut reg, env, id, f);
    }
    reg
}

fn add(reg: &mut HelperRegistry, env: &Arc<Environment>, id: u32, f: HelperFn) {
    let env = env.clone();
    reg.register(
        id,
        Arc::new(move |mem: &mut HelperMemory<'_>, args: [u64; 5]| f(&env, mem, args)),
    )
    .expect("kernel helper and builtin ids are below MAX_HELPER_ID");
}

/// What a run may leave behind if it ends without cleaning up (as an
/// unverified or faulting program may): taken where the run starts.
pub struct RunMark {
    locks: usize,
    records: usize,
}

/// The mark of a run about to start on this thread.
pub fn run_mark() -> RunMark {
    RunMark {
        locks: sync::held_count(),
        records: ringbuf::reserved_count(),
    }
}

/// Ends a run that started at `mark`: releases the spin locks it still
/// holds and discards the ring-buffer records it never committed (the
/// kernel's verifier makes programs do both; unverified ones may not).
///
/// # Safety
/// The maps the run used must still be alive.
pub unsafe fn end_run(mark: &RunMark) {
    // SAFETY: forwarded from the caller.
    unsafe { sync::release_held_since(mark.locks) };
    ringbuf::discard_reserved_since(mark.records);
}

/// The run's state, when the program runs as its type (`None` for runs
/// through the plain-memory entry points).
fn run_state<'m>(mem: &HelperMemory<'m>) -> Option<&'m mut RunState> {
    let p = mem.run_state() as *mut RunState;
    // SAFETY: a nonzero state is the RunState of the run in progress (set
    // by runtime::run), used only by this thread while the helper runs.
    unsafe { p.as_mut() }
}

/// A helper's return value for a failed operation: `-errno`.
fn errno(e: i32) -> u64 {
    (-(e as i64)) as u64
}

fn fault(msg: impl Into<String>) -> HelperError {
    HelperError::Fault(msg.into())
}
