//! Dynamic pointers (`struct bpf_dynptr`): local memory and ring buffer
//! records behind a 16-byte handle on the program's stack.
//!
//! The handle lives in memory the program can write, so nothing in it is
//! trusted: every access through a dynptr is checked against the program's
//! memory like any other helper access, and a ring buffer record is
//! submitted only if the ring itself says it is reserved. A forged dynptr
//! can therefore reach no more than the program could reach directly.

use crate::helpers::{HelperError, HelperMemory};
use crate::runtime::Environment;

use super::ringbuf::{as_ring, commit_record, ring};
use super::{errno, fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (197, dynptr_from_mem),
    (198, ringbuf_reserve_dynptr),
    (199, ringbuf_submit_dynptr),
    (200, ringbuf_discard_dynptr),
    (201, dynptr_read),
    (202, dynptr_write),
    (203, dynptr_data),
];

const E2BIG: i32 = 7;
const EFAULT: i32 = 14;
const EINVAL: i32 = 22;

/// Bytes of a `struct bpf_dynptr`.
pub const DYNPTR_BYTES: u64 = 16;
/// Largest size a dynptr describes (`DYNPTR_MAX_SIZE`).
pub const DYNPTR_MAX_SIZE: u64 = (1 << 24) - 1;
const DYNPTR_TYPE_SHIFT: u32 = 28;
const DYNPTR_RDONLY_BIT: u32 = 1 << 31;
pub const BPF_DYNPTR_TYPE_LOCAL: u32 = 1;
pub const BPF_DYNPTR_TYPE_RINGBUF: u32 = 2;

/// The kernel's `struct bpf_dynptr_kern`: data, size with the type and
/// read-only bits on top, offset.
#[derive(Clone, Copy, Default)]
struct Dynptr {
    data: u64,
    size_bits: u32,
    offset: u32,
}

impl Dynptr {
    fn new(data: u64, kind: u32, size: u64) -> Dynptr {
        Dynptr {
            data,
            size_bits: size as u32 | kind << DYNPTR_TYPE_SHIFT,
            offset: 0,
        }
    }

    fn size(&self) -> u64 {
        (self.size_bits as u64) & DYNPTR_MAX_SIZE
    }

    fn kind(&self) -> u32 {
        (self.size_bits >> DYNPTR_TYPE_SHIFT) & 7
    }

    fn rdonly(&self) -> bool {
        self.size_bits & DYNPTR_RDONLY_BIT != 0
    }

    /// `bpf_dynptr_check_off_len`: the address of `[offset, offset+len)`
    /// inside the dynptr, or `-E2BIG`.
    fn range(&self, offset: u64, len: u64) -> Result<u64, i32> {
        let size = self.size();
        if offset > size || len > size - offset {
            return Err(E2BIG);
        }
        Ok(self
            .data
            .wrapping_add(self.offset as u64)
            .wrapping_add(offset))
    }
}

fn load(mem: &HelperMemory<'_>, addr: u64, helper: &str, reg: &str) -> Result<Dynptr, HelperError> {
    let b = mem.slice(addr, DYNPTR_BYTES).map_err(|_| {
        fault(format!(
            "{helper}: {reg} (0x{addr:x}) is not a struct bpf_dynptr (16 readable bytes) of the program"
        ))
    })?;
    let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    Ok(Dynptr {
        data: u64::from_ne_bytes(b[..8].try_into().expect("8 bytes")),
        size_bits: u32_at(8),
        offset: u32_at(12),
    })
}

fn store(
    mem: &mut HelperMemory<'_>,
    addr: u64,
    d: Dynptr,
    helper: &str,
    reg: &str,
) -> Result<(), HelperError> {
    let b = mem.slice_mut(addr, DYNPTR_BYTES).map_err(|_| {
        fault(format!(
            "{helper}: {reg} (0x{addr:x}) is not a struct bpf_dynptr (16 writable bytes) of the program"
        ))
    })?;
    b[..8].copy_from_slice(&d.data.to_ne_bytes());
    b[8..12].copy_from_slice(&d.size_bits.to_ne_bytes());
    b[12..].copy_from_slice(&d.offset.to_ne_bytes());
    Ok(())
}

/// `bpf_dynptr_from_mem(data, size, flags, ptr)`: a local dynptr over the
/// program's memory; a null dynptr and the errno on failure.
fn dynptr_from_mem(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_dynptr_from_mem";
    let (data, size, flags, out) = (a[0], a[1] as u32 as u64, a[2], a[3]);
    store(mem, out, Dynptr::default(), helper, "r4")?;
    if size > DYNPTR_MAX_SIZE {
        return Ok(errno(E2BIG));
    }
    if flags != 0 {
        return Ok(errno(EINVAL));
    }
    if size > 0 && mem.slice(data, size).is_err() {
        return Err(fault(format!(
            "{helper}: r1 (0x{data:x}) is not {size} bytes of the program's memory (r2 = {size})"
        )));
    }
    store(
        mem,
        out,
        Dynptr::new(data, BPF_DYNPTR_TYPE_LOCAL, size),
        helper,
        "r4",
    )?;
    Ok(0)
}

/// `bpf_ringbuf_reserve_dynptr(ringbuf, size, flags, ptr)`: 0 with a
/// dynptr over a new record, or a null dynptr and `-EINVAL` (flags, or no
/// room) / `-E2BIG` (size).
fn ringbuf_reserve_dynptr(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_ringbuf_reserve_dynptr";
    let m = ring(env, a[0], helper)?;
    let rb = as_ring(&m, helper)?;
    let (size, flags, out) = (a[1] as u32 as u64, a[2], a[3]);
    store(mem, out, Dynptr::default(), helper, "r4")?;
    if flags != 0 {
        return Ok(errno(EINVAL));
    }
    if size > DYNPTR_MAX_SIZE {
        return Ok(errno(E2BIG));
    }
    let Some(record) = rb.reserve(size) else {
        return Ok(errno(EINVAL));
    };
    // SAFETY: as for bpf_ringbuf_reserve: the record stays mapped while the
    // ring lives and is the program's until submitted or discarded.
    unsafe { mem.grant(record.as_ptr(), size as usize, true) };
    let d = Dynptr::new(record.as_ptr() as u64, BPF_DYNPTR_TYPE_RINGBUF, size);
    store(mem, out, d, helper, "r4")?;
    Ok(0)
}

/// Submit or discard through a dynptr: a null dynptr is a no-op; the
/// dynptr is nulled afterwards.
fn commit_dynptr(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
    discard: bool,
) -> Result<u64, HelperError> {
    let helper = if discard {
        "bpf_ringbuf_discard_dynptr"
    } else {
        "bpf_ringbuf_submit_dynptr"
    };
    let d = load(mem, a[0], helper, "r1")?;
    if d.data == 0 {
        return Ok(0);
    }
    if d.kind() != BPF_DYNPTR_TYPE_RINGBUF {
        return Err(fault(format!(
            "{helper}: the dynptr at r1 (0x{:x}) is not a ring buffer dynptr",
            a[0]
        )));
    }
    commit_record(env, mem, d.data, a[1], discard, helper, "the dynptr's data")?;
    store(mem, a[0], Dynptr::default(), helper, "r1")?;
    Ok(0)
}

fn ringbuf_submit_dynptr(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    commit_dynptr(env, mem, a, false)
}

fn ringbuf_discard_dynptr(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    commit_dynptr(env, mem, a, true)
}

fn known_kind(d: &Dynptr) -> bool {
    matches!(d.kind(), BPF_DYNPTR_TYPE_LOCAL | BPF_DYNPTR_TYPE_RINGBUF)
}

/// `bpf_dynptr_read(dst, len, src, offset, flags)`.
fn dynptr_read(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_dynptr_read";
    let (dst, len, offset, flags) = (a[0], a[1] as u32 as u64, a[3] as u32 as u64, a[4]);
    if len > 0 && mem.slice_mut(dst, len).is_err() {
        return Err(fault(format!(
            "{helper}: r1 (0x{dst:x}) is not {len} writable bytes of the program (r2 = {len})"
        )));
    }
    let d = load(mem, a[2], helper, "r3")?;
    if d.data == 0 || flags != 0 {
        return Ok(errno(EINVAL));
    }
    let from = match d.range(offset, len) {
        Ok(f) => f,
        Err(e) => return Ok(errno(e)),
    };
    if !known_kind(&d) {
        return Ok(errno(EFAULT));
    }
    if len == 0 {
        return Ok(0);
    }
    let bytes = mem
        .slice(from, len)
        .map_err(|_| {
            fault(format!(
                "{helper}: the dynptr at r3 points at 0x{from:x}, not {len} readable bytes of the program"
            ))
        })?
        .to_vec();
    mem.slice_mut(dst, len)?.copy_from_slice(&bytes);
    Ok(0)
}

/// `bpf_dynptr_write(dst, offset, src, len, flags)`.
fn dynptr_write(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_dynptr_write";
    let (offset, src, len, flags) = (a[1] as u32 as u64, a[2], a[3] as u32 as u64, a[4]);
    let bytes = if len == 0 {
        Vec::new()
    } else {
        mem.slice(src, len)
            .map_err(|_| {
                fault(format!(
                    "{helper}: r3 (0x{src:x}) is not {len} readable bytes of the program (r4 = {len})"
                ))
            })?
            .to_vec()
    };
    let d = load(mem, a[0], helper, "r1")?;
    if d.data == 0 || d.rdonly() {
        return Ok(errno(EINVAL));
    }
    let to = match d.range(offset, len) {
        Ok(t) => t,
        Err(e) => return Ok(errno(e)),
    };
    if !known_kind(&d) {
        return Ok(errno(EFAULT));
    }
    if flags != 0 {
        return Ok(errno(EINVAL));
    }
    if len > 0 {
        mem.slice_mut(to, len)
            .map_err(|_| {
                fault(format!(
                    "{helper}: the dynptr at r1 points at 0x{to:x}, not {len} writable bytes of the program"
                ))
            })?
            .copy_from_slice(&bytes);
    }
    Ok(0)
}

/// `bpf_dynptr_data(ptr, offset, len)`: a direct pointer to
/// `[offset, offset+len)` of a writable dynptr, or NULL.
fn dynptr_data(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_dynptr_data";
    let d = load(mem, a[0], helper, "r1")?;
    let (offset, len) = (a[1] as u32 as u64, a[2] as u32 as u64);
    if d.data == 0 || d.rdonly() || !known_kind(&d) {
        return Ok(0);
    }
    let Ok(p) = d.range(offset, len) else {
        return Ok(0);
    };
    // Only memory the program may already write is handed out.
    Ok(if mem.map.translate(p, len.max(1), true).is_some() {
        p
    } else {
        0
    })
}
