//! The current task: the calling OS thread stands for the kernel's
//! `current` (its process id is the tgid, its thread id the pid, its name
//! the comm).

use crate::helpers::{HelperError, HelperMemory};
use crate::runtime::Environment;

use super::{fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (14, get_current_pid_tgid),
    (15, get_current_uid_gid),
    (16, get_current_comm),
];

/// `TASK_COMM_LEN`.
pub const TASK_COMM_LEN: usize = 16;

/// The calling thread's id (the kernel's `pid`).
pub fn current_tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The calling thread's name (the kernel's `comm`), without its NUL.
pub fn current_comm() -> Vec<u8> {
    let mut name = [0u8; TASK_COMM_LEN];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included.
    let rc = unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr(), 0, 0, 0) };
    if rc != 0 {
        return Vec::new();
    }
    let len = name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(TASK_COMM_LEN - 1);
    name[..len].to_vec()
}

fn get_current_pid_tgid(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    // SAFETY: getpid has no preconditions.
    let tgid = unsafe { libc::getpid() } as u32 as u64;
    Ok(tgid << 32 | current_tid() as u64)
}

fn get_current_uid_gid(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Ok((gid as u64) << 32 | uid as u64)
}

/// Copies the thread name into `buf`, truncated to `size - 1` bytes and NUL
/// padded to `size` (the kernel's `strscpy_pad`).
fn get_current_comm(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (addr, size) = (a[0], a[1] as u32 as u64);
    let buf = mem.slice_mut(addr, size).map_err(|_| {
        fault(format!(
            "bpf_get_current_comm: r1 (0x{addr:x}) is not {size} writable bytes of the program (r2 = {size})"
        ))
    })?;
    if buf.is_empty() {
        return Ok(0);
    }
    let comm = current_comm();
    let n = comm.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&comm[..n]);
    buf[n..].fill(0);
    Ok(0)
}
