//! The current task: the calling OS thread stands for the kernel's
//! `current` (its process id is the tgid, its thread id the pid, its name
//! the comm).

use std::cell::Cell;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Once;

use crate::helpers::{HelperError, HelperMemory};
use crate::runtime::Environment;

use super::{errno, fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (14, get_current_pid_tgid),
    (15, get_current_uid_gid),
    (16, get_current_comm),
    (80, get_current_cgroup_id),
    (120, get_ns_current_pid_tgid),
    (123, get_current_ancestor_cgroup_id),
];

/// `TASK_COMM_LEN`.
pub const TASK_COMM_LEN: usize = 16;

thread_local! {
    /// (tgid, tid) of this thread, asked of the OS once: the helpers are
    /// called per event, and each is a system call.
    static IDS: Cell<Option<(u32, u32)>> = const { Cell::new(None) };
}

/// A forked child is a new process whose one thread inherited the
/// parent's cache.
extern "C" fn forget_ids_after_fork() {
    IDS.with(|ids| ids.set(None));
}

/// The calling thread's (process id, thread id): the kernel's tgid and pid.
pub fn current_ids() -> (u32, u32) {
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler that only clears a thread-local cell.
        unsafe { libc::pthread_atfork(None, None, Some(forget_ids_after_fork)) };
    });
    IDS.with(|ids| {
        ids.get().unwrap_or_else(|| {
            // SAFETY: getpid and gettid have no preconditions.
            let fresh = unsafe {
                (
                    libc::getpid() as u32,
                    libc::syscall(libc::SYS_gettid) as u32,
                )
            };
            ids.set(Some(fresh));
            fresh
        })
    })
}

/// The calling thread's id (the kernel's `pid`).
pub fn current_tid() -> u32 {
    current_ids().1
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
    let (tgid, tid) = current_ids();
    Ok((tgid as u64) << 32 | tid as u64)
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

/// Where the cgroup v2 hierarchy is mounted, from the mount table.
fn cgroup2_root() -> Option<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().find_map(|line| {
        // "... mount_point options - fstype source super_options"
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2")
            .then(|| before.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// The calling thread's cgroup v2 path components ("0::/a/b" -> [a, b]).
fn cgroup2_path() -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/thread-self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(
        path.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// The id of the thread's cgroup v2 ancestor at `level` (0 = the root),
/// or of its own cgroup: the kernel's cgroup id is the inode number of the
/// cgroup's directory. 0 if there is no such ancestor or no cgroup v2.
pub fn cgroup_id(level: Option<usize>) -> u64 {
    let (Some(root), Some(path)) = (cgroup2_root(), cgroup2_path()) else {
        return 0;
    };
    let depth = level.unwrap_or(path.len());
    if depth > path.len() {
        return 0;
    }
    let dir = path[..depth].iter().fold(root, |p, c| p.join(c));
    std::fs::metadata(dir).map_or(0, |m| m.ino())
}

fn get_current_cgroup_id(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    _: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(cgroup_id(None))
}

fn get_current_ancestor_cgroup_id(
    _: &Environment,
    _: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    Ok(usize::try_from(a[0] as u32).map_or(0, |level| cgroup_id(Some(level))))
}

/// `bpf_get_ns_current_pid_tgid(dev, ino, nsdata, size)`: the thread's pid
/// and tgid as seen in the pid namespace `(dev, ino)` (the `st_dev` and
/// `st_ino` of `/proc/self/ns/pid`), which must be the thread's own;
/// otherwise `nsdata` is zeroed and the result is `-EINVAL`.
fn get_ns_current_pid_tgid(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    const EINVAL: i32 = 22;
    let (dev, ino, out, size) = (a[0], a[1], a[2], a[3] as u32 as u64);
    let buf = mem.slice_mut(out, size).map_err(|_| {
        fault(format!(
            "bpf_get_ns_current_pid_tgid: r3 (0x{out:x}) is not {size} writable bytes of the program (r4 = {size})"
        ))
    })?;
    let own = std::fs::metadata("/proc/thread-self/ns/pid")
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino);
    if size != 8 || !own {
        buf.fill(0);
        return Ok(errno(EINVAL));
    }
    let (tgid, tid) = current_ids();
    buf[..4].copy_from_slice(&tid.to_ne_bytes());
    buf[4..].copy_from_slice(&tgid.to_ne_bytes());
    Ok(0)
}
