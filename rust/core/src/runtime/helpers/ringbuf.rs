//! Ring buffer helpers: output, reserve/submit/discard, query.
//!
//! A reserved record is granted to the program (it writes the record in
//! place); submit and discard accept only pointers the ring itself reports
//! as reserved and not yet committed, so a forged or repeated pointer is a
//! fault, never a corrupted ring.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::ringbuf::{
    RingBuf, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
};
use crate::maps::{Map, MapError};
use crate::runtime::{Environment, MapRef};

use super::{errno, fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (130, ringbuf_output),
    (131, ringbuf_reserve),
    (132, ringbuf_submit),
    (133, ringbuf_discard),
    (134, ringbuf_query),
];

thread_local! {
    /// Records reserved by programs on this thread and not yet committed:
    /// discarded when their run ends (a faulting run must not leave a
    /// busy record that blocks the ring's consumer for good).
    static RESERVED: RefCell<Vec<(Arc<Map>, usize)>> = const { RefCell::new(Vec::new()) };
}

/// How many records are outstanding (a run's starting mark).
pub(super) fn reserved_count() -> usize {
    RESERVED.with(|r| r.borrow().len())
}

/// Discards the records reserved since `mark` and still outstanding;
/// returns how many.
pub(super) fn discard_reserved_since(mark: usize) -> usize {
    let left: Vec<(Arc<Map>, usize)> = RESERVED.with(|r| {
        let mut r = r.borrow_mut();
        let from = mark.min(r.len());
        r.drain(from..).collect()
    });
    for (m, ptr) in &left {
        if let (Some(rb), Some(p)) = (m.downcast::<RingBuf>(), NonNull::new(*ptr as *mut u8)) {
            // Already committed through another path: the ring refuses it.
            let _ = rb.discard(p, 0);
        }
    }
    left.len()
}

const EINVAL: i32 = 22;
const EAGAIN: i32 = 11;

/// The map in r1; [`as_ring`] checks that it is a ring buffer.
pub(super) fn ring<'e>(
    env: &'e Environment,
    handle: u64,
    helper: &str,
) -> Result<MapRef<'e>, HelperError> {
    env.map(handle)
        .ok_or_else(|| fault(format!("{helper}: r1 (0x{handle:x}) is not a map")))
}

/// `m` as a ring buffer, or a fault naming the helper.
pub(super) fn as_ring<'m>(m: &'m MapRef<'_>, helper: &str) -> Result<&'m RingBuf, HelperError> {
    m.downcast::<RingBuf>().ok_or_else(|| {
        fault(format!(
            "{helper}: map '{}' in r1 is a {}, not a ringbuf",
            m.name(),
            m.map_type()
        ))
    })
}

/// `bpf_ringbuf_output(ringbuf, data, size, flags)`: 0, `-EAGAIN` when the
/// ring is full, `-EINVAL` for unknown flags.
fn ringbuf_output(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_ringbuf_output";
    let m = ring(env, a[0], helper)?;
    let rb = as_ring(&m, helper)?;
    let size = a[2];
    let data = mem.slice(a[1], size).map_err(|_| {
        fault(format!(
            "{helper}: r2 (0x{:x}) is not {size} readable bytes of the program (r3 = {size})",
            a[1]
        ))
    })?;
    if a[3] & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
        return Ok(errno(EINVAL));
    }
    Ok(match rb.output(data, a[3]) {
        Ok(()) => 0,
        Err(MapError::NoSpace) => errno(EAGAIN),
        Err(e) => errno(e.errno()),
    })
}

/// `bpf_ringbuf_reserve(ringbuf, size, flags)`: the record's data, granted
/// writable to the program, or NULL (no room, or nonzero flags).
fn ringbuf_reserve(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let m = ring(env, a[0], "bpf_ringbuf_reserve")?;
    let rb = as_ring(&m, "bpf_ringbuf_reserve")?;
    if a[2] != 0 {
        return Ok(0);
    }
    let Some(record) = rb.reserve(a[1]) else {
        return Ok(0);
    };
    // SAFETY: the record stays mapped while the ring lives (the program's
    // environment keeps it alive for the run) and is the program's alone
    // until it is submitted or discarded.
    unsafe { mem.grant(record.as_ptr(), a[1] as usize, true) };
    let owner: Arc<Map> = match &m {
        MapRef::Own(a) => Arc::clone(a),
        MapRef::Other(a) => Arc::clone(a),
    };
    RESERVED.with(|r| r.borrow_mut().push((owner, record.as_ptr() as usize)));
    Ok(record.as_ptr() as u64)
}

/// Submits or discards the record at `ptr`: finds the ring among the
/// program's ring buffers that holds it as a reserved record.
pub(super) fn commit_record(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    ptr: u64,
    flags: u64,
    discard: bool,
    helper: &str,
    reg: &str,
) -> Result<(), HelperError> {
    let record = NonNull::new(ptr as *mut u8)
        .ok_or_else(|| fault(format!("{helper}: {reg} is NULL, not a reserved record")))?;
    // The kernel ignores flag bits it does not know here.
    let flags = flags & (BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP);
    for m in env.maps() {
        let Some(rb) = m.downcast::<RingBuf>() else {
            continue;
        };
        let done = if discard {
            rb.discard(record, flags)
        } else {
            rb.submit(record, flags)
        };
        if done.is_ok() {
            revoke_record(mem, record);
            RESERVED.with(|r| r.borrow_mut().retain(|&(_, p)| p != ptr as usize));
            return Ok(());
        }
    }
    Err(fault(format!(
        "{helper}: {reg} (0x{ptr:x}) is not a record reserved from one of the program's ring buffers (or it was already submitted or discarded)"
    )))
}

/// Ends the program's access to a record it committed (the kernel's
/// verifier forbids touching it afterwards): the grant made at reserve
/// time, found by the length in the record's header.
fn revoke_record(mem: &mut HelperMemory<'_>, record: NonNull<u8>) {
    // SAFETY: the ring accepted `record`, so its 8-byte aligned header lies
    // just before it inside the ring's mapping; producers update it
    // atomically.
    let header =
        unsafe { AtomicU32::from_ptr(record.as_ptr().sub(BPF_RINGBUF_HDR_SZ as usize).cast()) };
    // Consumed and reused already, the header names another length and
    // nothing is revoked: the record then stays accessible, as before.
    let len = header.load(Ordering::Acquire) & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
    mem.revoke(record.as_ptr(), len as usize);
}

fn commit(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
    discard: bool,
) -> Result<u64, HelperError> {
    let helper = if discard {
        "bpf_ringbuf_discard"
    } else {
        "bpf_ringbuf_submit"
    };
    commit_record(env, mem, a[0], a[1], discard, helper, "r1").map(|()| 0)
}

fn ringbuf_submit(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    commit(env, mem, a, false)
}

fn ringbuf_discard(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    commit(env, mem, a, true)
}

/// `bpf_ringbuf_query(ringbuf, flags)`: available data, ring size,
/// consumer or producer position; 0 for other selectors.
fn ringbuf_query(
    env: &Environment,
    _: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let m = ring(env, a[0], "bpf_ringbuf_query")?;
    Ok(as_ring(&m, "bpf_ringbuf_query")?.query(a[1]))
}
