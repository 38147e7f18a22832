//! `bpf_spin_lock` / `bpf_spin_unlock`: a real lock on the 4-byte
//! `struct bpf_spin_lock` inside a map value (0 = free, 1 = held), shared
//! by every thread running programs on that map.
//!
//! The kernel's verifier guarantees a program releases what it takes and
//! never takes two locks. Unverified programs get the same guarantees
//! checked at run time: taking a lock this thread already holds, or
//! releasing one it does not hold, is a fault, and a lock held elsewhere
//! for longer than [`SPIN_LOCK_TIMEOUT`] faults the waiter instead of
//! hanging the host.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{HelperError, HelperMemory};
use crate::runtime::Environment;

use super::{fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[(93, spin_lock), (94, spin_unlock)];

/// Longest a program waits for a lock before its run fails.
pub const SPIN_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// Busy-wait rounds before the waiter starts yielding its CPU.
const SPINS_BEFORE_YIELD: u32 = 1000;

thread_local! {
    /// Locks taken by programs on this thread and not yet released.
    static HELD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// How many locks this thread holds (a run's starting mark).
pub(super) fn held_count() -> usize {
    HELD.with(|h| h.borrow().len())
}

/// Releases the locks taken since `mark` and still held (a run that ended,
/// or faulted, without unlocking); returns how many.
///
/// # Safety
/// The locks' map values must still be alive (the run's maps are).
pub(super) unsafe fn release_held_since(mark: usize) -> usize {
    let left: Vec<u64> = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let from = mark.min(h.len());
        h.drain(from..).collect()
    });
    for &addr in &left {
        // SAFETY: taken by spin_lock on 4 aligned writable bytes of a map
        // value that is still alive (the caller's contract).
        unsafe { AtomicU32::from_ptr(addr as *mut u32) }.store(0, Ordering::Release);
    }
    left.len()
}

/// The lock word at `addr`: 4 writable, 4-byte aligned bytes of the
/// program's memory.
fn lock_word<'m>(
    mem: &'m mut HelperMemory<'_>,
    addr: u64,
    helper: &str,
) -> Result<&'m AtomicU32, HelperError> {
    if !addr.is_multiple_of(4) {
        return Err(fault(format!(
            "{helper}: r1 (0x{addr:x}) is not 4-byte aligned, as a struct bpf_spin_lock is"
        )));
    }
    let bytes = mem.slice_mut(addr, 4).map_err(|_| {
        fault(format!(
            "{helper}: r1 (0x{addr:x}) is not a struct bpf_spin_lock (4 writable bytes) in the program's memory"
        ))
    })?;
    // SAFETY: four writable, aligned bytes that stay valid for the call;
    // every thread touching them as a lock does so atomically.
    Ok(unsafe { AtomicU32::from_ptr(bytes.as_mut_ptr().cast()) })
}

fn spin_lock(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let helper = "bpf_spin_lock";
    let addr = a[0];
    let word = lock_word(mem, addr, helper)?;
    if HELD.with(|h| h.borrow().contains(&addr)) {
        if word.load(Ordering::Acquire) != 0 {
            return Err(fault(format!(
                "{helper}: this thread already holds the lock at 0x{addr:x} (taken twice, or left held by a run that did not call bpf_spin_unlock): waiting would deadlock"
            )));
        }
        // Released behind our back (the value was overwritten, or its
        // memory reused): the record is stale.
        HELD.with(|h| h.borrow_mut().retain(|&l| l != addr));
    }
    let mut deadline = None;
    let mut spins = 0u32;
    while word
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        if spins < SPINS_BEFORE_YIELD {
            spins += 1;
            std::hint::spin_loop();
            continue;
        }
        let now = Instant::now();
        let until = *deadline.get_or_insert(now + SPIN_LOCK_TIMEOUT);
        if now >= until {
            return Err(fault(format!(
                "{helper}: the lock at 0x{addr:x} is still held after {:?}; its holder never released it",
                SPIN_LOCK_TIMEOUT
            )));
        }
        std::thread::yield_now();
    }
    HELD.with(|h| h.borrow_mut().push(addr));
    Ok(0)
}

fn spin_unlock(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_spin_unlock";
    let addr = a[0];
    let held = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let at = h.iter().position(|&l| l == addr);
        at.map(|i| h.swap_remove(i)).is_some()
    });
    if !held {
        return Err(fault(format!(
            "{helper}: the lock at r1 (0x{addr:x}) is not held by this program"
        )));
    }
    let word = lock_word(mem, addr, helper)?;
    word.store(0, Ordering::Release);
    Ok(0)
}
