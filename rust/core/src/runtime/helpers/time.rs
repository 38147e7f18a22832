//! Time, randomness and CPU helpers: the kernel's clocks read from the
//! host's clocks of the same name, jiffies at the kernel's usual HZ, a fast
//! per-thread random generator, and the thread's virtual CPU.

use std::cell::Cell;

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::cpu;
use crate::runtime::Environment;

use super::HelperFn;

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (5, ktime_get_ns),
    (7, get_prandom_u32),
    (8, get_smp_processor_id),
    (42, get_numa_node_id),
    (118, jiffies64),
    (125, ktime_get_boot_ns),
    (160, ktime_get_coarse_ns),
    (208, ktime_get_tai_ns),
];

/// Timer ticks per second of a typical distribution kernel (`CONFIG_HZ`).
pub const HZ: u64 = 250;

/// `INITIAL_JIFFIES`: the kernel starts jiffies five minutes before the
/// 32-bit wrap so that wrap bugs show early; `jiffies_64` starts there too.
pub const INITIAL_JIFFIES: u64 = (-300i64 * HZ as i64) as u32 as u64;

/// Nanoseconds on `clock` (0 if the host lacks it, which Linux never does
/// for the clocks used here).
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

fn ktime_get_ns(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(clock_ns(libc::CLOCK_MONOTONIC))
}

fn ktime_get_boot_ns(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(clock_ns(libc::CLOCK_BOOTTIME))
}

fn ktime_get_coarse_ns(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(clock_ns(libc::CLOCK_MONOTONIC_COARSE))
}

fn ktime_get_tai_ns(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(clock_ns(libc::CLOCK_TAI))
}

/// Jiffies as the host kernel would count them at [`HZ`]: ticks since boot
/// (suspend included, as jiffies keep counting) from [`INITIAL_JIFFIES`].
pub fn jiffies() -> u64 {
    INITIAL_JIFFIES + clock_ns(libc::CLOCK_BOOTTIME) / (1_000_000_000 / HZ)
}

fn jiffies64(_: &Environment, _: &mut HelperMemory<'_>, _: [u64; 5]) -> Result<u64, HelperError> {
    Ok(jiffies())
}

thread_local! {
    /// State of this thread's generator; 0 until first seeded.
    static PRANDOM: Cell<u64> = const { Cell::new(0) };
}

/// A seed from the OS, or from the clock and the thread if the OS has no
/// entropy to give (never fatal: the kernel's prandom is not
/// cryptographic either).
fn os_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most `seed.len()` bytes into `seed`.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), libc::GRND_NONBLOCK) };
    if n == seed.len() as isize {
        return u64::from_ne_bytes(seed);
    }
    let local = 0u8;
    clock_ns(libc::CLOCK_MONOTONIC) ^ (&local as *const u8 as u64).rotate_left(32)
}

/// The next value of this thread's generator (splitmix64: one add and a
/// few multiply-xorshifts per value, full period, well mixed output).
pub fn prandom_u64() -> u64 {
    PRANDOM.with(|s| {
        let mut state = s.get();
        if state == 0 {
            state = os_seed() | 1;
        }
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn get_prandom_u32(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(prandom_u64() >> 32)
}

fn get_smp_processor_id(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(cpu::current_cpu() as u64)
}

/// One NUMA node: virtual CPUs are not spread over memory nodes.
fn get_numa_node_id(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(0)
}
