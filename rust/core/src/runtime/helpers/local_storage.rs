//! Local storage helpers: `bpf_{sk,task,inode,cgrp}_storage_get/delete`.
//!
//! The kernel hangs each value off its owner (a socket, task, inode or
//! cgroup). User space has no such objects, so the owner pointer a program
//! passes is used as the owner's id: the helpers never dereference it, and
//! the same pointer finds the same value again. A NULL owner is refused as
//! in the kernel.

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::local_storage::{LocalStorage, BPF_LOCAL_STORAGE_GET_F_CREATE};
use crate::maps::MapType;
use crate::runtime::{Environment, MapRef};

use super::{errno, fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (107, sk_storage_get),
    (108, sk_storage_delete),
    (145, inode_storage_get),
    (146, inode_storage_delete),
    (156, task_storage_get),
    (157, task_storage_delete),
    (210, cgrp_storage_get),
    (211, cgrp_storage_delete),
];

const EINVAL: i32 = 22;

/// The storage map in r1, which must be of `want` type.
fn storage<'e>(
    env: &'e Environment,
    handle: u64,
    want: MapType,
    helper: &str,
) -> Result<MapRef<'e>, HelperError> {
    let m = env
        .map(handle)
        .ok_or_else(|| fault(format!("{helper}: r1 (0x{handle:x}) is not a map")))?;
    if m.map_type() != want || m.downcast::<LocalStorage>().is_none() {
        return Err(fault(format!(
            "{helper}: map '{}' in r1 is a {}, not a {want}",
            m.name(),
            m.map_type()
        )));
    }
    Ok(m)
}

/// `bpf_*_storage_get(map, owner, value, flags)`: the owner's value
/// (granted to the program), created from `value` (or zeroed when `value`
/// is NULL) with `BPF_LOCAL_STORAGE_GET_F_CREATE`; NULL otherwise.
fn get(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
    want: MapType,
    helper: &str,
) -> Result<u64, HelperError> {
    let m = storage(env, a[0], want, helper)?;
    let (owner, init_addr, flags) = (a[1], a[2], a[3]);
    let size = m.def().value_size as u64;
    let init = match init_addr {
        0 => None,
        addr => Some(mem.slice(addr, size).map_err(|_| {
            fault(format!(
                "{helper}: the {size}-byte initial value at r3 (0x{addr:x}) is not readable memory of the program"
            ))
        })?),
    };
    if owner == 0 || flags > BPF_LOCAL_STORAGE_GET_F_CREATE {
        return Ok(0);
    }
    let Some(ls) = m.downcast::<LocalStorage>() else {
        return Ok(0);
    };
    let value = if flags == BPF_LOCAL_STORAGE_GET_F_CREATE {
        ls.get_or_create(owner, init)
    } else {
        ls.get(owner)
    };
    let Some(p) = value else {
        return Ok(0);
    };
    // SAFETY: the value stays allocated while the map lives (even if
    // deleted later), and the environment keeps the map alive for the run.
    unsafe { mem.grant(p.as_ptr(), size as usize, true) };
    Ok(p.as_ptr() as u64)
}

/// `bpf_*_storage_delete(map, owner)`: 0, `-ENOENT` if the owner has no
/// value, `-EINVAL` for a NULL owner.
fn delete(env: &Environment, a: [u64; 5], want: MapType, helper: &str) -> Result<u64, HelperError> {
    let m = storage(env, a[0], want, helper)?;
    if a[1] == 0 {
        return Ok(errno(EINVAL));
    }
    let Some(ls) = m.downcast::<LocalStorage>() else {
        return Ok(errno(EINVAL));
    };
    Ok(match ls.remove(a[1]) {
        Ok(()) => 0,
        Err(e) => errno(e.errno()),
    })
}

fn sk_storage_get(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    get(env, mem, a, MapType::SkStorage, "bpf_sk_storage_get")
}

fn sk_storage_delete(
    env: &Environment,
    _: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    delete(env, a, MapType::SkStorage, "bpf_sk_storage_delete")
}

fn inode_storage_get(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    get(env, mem, a, MapType::InodeStorage, "bpf_inode_storage_get")
}

fn inode_storage_delete(
    env: &Environment,
    _: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    delete(env, a, MapType::InodeStorage, "bpf_inode_storage_delete")
}

fn task_storage_get(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    get(env, mem, a, MapType::TaskStorage, "bpf_task_storage_get")
}

fn task_storage_delete(
    env: &Environment,
    _: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    delete(env, a, MapType::TaskStorage, "bpf_task_storage_delete")
}

fn cgrp_storage_get(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    get(env, mem, a, MapType::CgrpStorage, "bpf_cgrp_storage_get")
}

fn cgrp_storage_delete(
    env: &Environment,
    _: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    delete(env, a, MapType::CgrpStorage, "bpf_cgrp_storage_delete")
}
