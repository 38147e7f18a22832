//! What compiled code shares with Rust at run time: the per-run context it
//! reads and updates, status codes, and the out-of-line entry points it
//! calls (slow memory checks, helper dispatch, frame zeroing).

use std::panic::{catch_unwind, AssertUnwindSafe};

use ebpfvm_core::error::{ExecError, FaultKind};
use ebpfvm_core::helpers::{HelperImpl, HelperMemory};
use ebpfvm_core::interp::MemoryMap;
use ebpfvm_core::isa::STACK_FRAME_SIZE;

/// The run continues (or ended normally).
pub const STATUS_OK: u64 = 0;
/// The program stops with r0 = 0 and no error (a legacy packet load out of
/// range, or the unwind helper returning 0).
pub const STATUS_STOP: u64 = 1;
/// Out-of-bounds access: `fault_pc`, `fault_addr`, `fault_info` are set.
pub const STATUS_OOB: u64 = 2;
pub const STATUS_BUDGET: u64 = 3;
pub const STATUS_CALL_DEPTH: u64 = 4;
/// Misaligned atomic: `fault_pc`, `fault_addr`, `fault_info` are set.
pub const STATUS_MISALIGNED: u64 = 5;
/// A helper or `callx` failed: the error is in `RunCtx::error`.
pub const STATUS_ERROR: u64 = 6;

/// One run's state, passed to every compiled function as its first
/// argument. Field offsets are read by the code generator with
/// `offset_of!`, so the layout is fixed.
#[repr(C)]
pub struct RunCtx {
    pub map: MemoryMap,
    pub status: u64,
    pub fault_pc: u64,
    pub fault_addr: u64,
    /// size | store << 8 | reg << 16 | (off as u16) << 32
    pub fault_info: u64,
    /// Live BPF-to-BPF call frames below the entry function.
    pub depth: u64,
    pub budget: u64,
    /// Entry addresses of the program's functions.
    pub functions: *const u64,
    /// The helper table, indexed by id.
    pub helpers: *const Option<HelperImpl>,
    pub helpers_len: u64,
    pub unwind_helper: u64,
    /// Result of the last slow-path memory check (written by the
    /// register-preserving trampoline, which cannot return a value).
    pub slow_ok: u64,
    /// `mem_lim[k]`: an access of `1 << k` bytes at input offset `o` is in
    /// bounds iff `o < mem_lim[k]` (0 when the input is smaller).
    pub mem_lim: [u64; 4],
    pub error: Option<ExecError>,
}

/// The `mem_lim` table for an input of `len` bytes.
pub fn mem_limits(len: u64) -> [u64; 4] {
    [1u64, 2, 4, 8].map(|size| (len + 1).saturating_sub(size))
}

/// Packs what an out-of-bounds message needs about the access.
pub fn fault_info(size: u8, store: bool, reg: u8, off: i16) -> u64 {
    size as u64 | (store as u64) << 8 | (reg as u64) << 16 | (off as u16 as u64) << 32
}

/// Slow path of a checked access: regions other than the stack and input.
/// Sets `slow_ok` to 1 when the access is allowed (called through the
/// register-preserving stub, which cannot return a value).
pub extern "C" fn translate_slow(ctx: *mut RunCtx, addr: u64, size: u64, write: u64) {
    // SAFETY: compiled code passes the context of the run in progress.
    let ctx = unsafe { &mut *ctx };
    ctx.slow_ok = ctx.map.translate_extra(addr, size, write != 0).is_some() as u64;
}

/// A probe load (`aux`: size, | 0x80 to sign-extend): the value, or 0
/// where the program has no readable memory.
pub extern "C" fn probe_load(ctx: *mut RunCtx, addr: u64, aux: u64) -> u64 {
    // SAFETY: compiled code passes the context of the run in progress.
    let ctx = unsafe { &*ctx };
    ebpfvm_core::interp::probe_load(&ctx.map, addr, aux as u8)
}

/// Zeroes a new call frame (its lowest address given).
pub extern "C" fn zero_frame(lo: u64) {
    // SAFETY: compiled code passes the frame it just made live, inside the
    // run's stack buffer.
    unsafe { std::ptr::write_bytes(lo as *mut u8, 0, STACK_FRAME_SIZE) };
}

/// Calls helper `id` on behalf of compiled code: helpers implemented in
/// Rust or Python (which need the memory map), and `callx`. Failures set
/// `ctx.status`/`ctx.error`; the unwind rule sets `STATUS_STOP`.
#[allow(clippy::too_many_arguments)]
pub extern "C" fn call_helper(
    ctx: *mut RunCtx,
    pc: u64,
    id: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> u64 {
    // SAFETY: compiled code passes the context of the run in progress.
    let ctx = unsafe { &mut *ctx };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let helper = if id < ctx.helpers_len {
            // SAFETY: helpers/helpers_len describe the executable's table.
            unsafe { (*ctx.helpers.add(id as usize)).as_ref() }
        } else {
            None
        };
        let Some(helper) = helper else {
            return Err(ExecError::unknown_helper(pc as usize, id));
        };
        match helper {
            // SAFETY: registered under register_native's contract.
            HelperImpl::Native(f) => Ok(unsafe { f(a1, a2, a3, a4, a5) }),
            HelperImpl::Dyn(h) => {
                let r = h
                    .call(&mut HelperMemory::new(&mut ctx.map), [a1, a2, a3, a4, a5])
                    .map_err(|e| ExecError::from_helper(pc as usize, id, e));
                // The helper may have moved the input (a packet's head or
                // tail adjusted).
                ctx.mem_lim = mem_limits(ctx.map.mem_len);
                r
            }
        }
    }));
    let result = result.unwrap_or_else(|_| {
        Err(ExecError::new(
            pc as usize,
            FaultKind::HelperFailed,
            format!("helper {id} panicked"),
        ))
    });
    match result {
        Ok(v) => {
            if v == 0 && id == ctx.unwind_helper {
                ctx.status = STATUS_STOP;
            }
            v
        }
        Err(e) => {
            ctx.status = STATUS_ERROR;
            ctx.error = Some(e);
            0
        }
    }
}
