//! Helpers that call back into the program: `bpf_loop` and
//! `bpf_for_each_map_elem`. The callback is a function of the program
//! (`lddw rX, func`), run by the engine in a new frame below the caller's,
//! so it may use memory the caller passes it (its stack included).

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::{cpu, BPF_F_RDONLY_PROG};
use crate::runtime::Environment;

use super::{errno, fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[(164, for_each_map_elem), (181, bpf_loop)];

/// Most iterations `bpf_loop` runs (the kernel's `BPF_MAX_LOOPS`).
pub const BPF_MAX_LOOPS: u64 = 1 << 23;

fn bpf_loop(
    _env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let [nr_loops, callback, callback_ctx, flags, _] = a;
    if flags != 0 {
        return Ok(errno(22));
    }
    if nr_loops > BPF_MAX_LOOPS {
        return Ok(errno(7));
    }
    for i in 0..nr_loops {
        // A callback returns 0 to go on and 1 to stop.
        if mem.call_function(callback, [i, callback_ctx, 0, 0, 0])? != 0 {
            return Ok(i + 1);
        }
    }
    Ok(nr_loops)
}

fn for_each_map_elem(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let [handle, callback, callback_ctx, flags, _] = a;
    let m = env.map(handle).ok_or_else(|| {
        fault(format!(
            "bpf_for_each_map_elem: r1 (0x{handle:x}) is not a map"
        ))
    })?;
    if flags != 0 {
        return Ok(errno(22));
    }
    let value_size = m.def().value_size as usize;
    let writable = m.def().flags & BPF_F_RDONLY_PROG == 0;
    let cpu = cpu::current_cpu();
    // The callback sees a read-only copy of each key (kernel keys are
    // read-only too); values are the map's own, as with lookups.
    let mut key_buf = vec![0u8; (m.def().key_size as usize).max(1)];
    let key_ptr = key_buf.as_mut_ptr();
    let key_len = m.def().key_size as usize;
    // A callback that deletes entries makes hash iteration restart: bound
    // the walk so it always ends.
    let limit = m.def().max_entries as u64;
    let mut visited = 0u64;
    let mut key = m
        .next_key(None)
        .map_err(|e| fault(format!("bpf_for_each_map_elem: {e}")))?;
    let result = (|| {
        while let Some(k) = key.take() {
            if visited >= limit {
                break;
            }
            let Some(value) = m.imp().lookup_ptr(&k, cpu) else {
                key = m.next_key(Some(&k)).ok().flatten();
                continue;
            };
            key_buf[..key_len].copy_from_slice(&k);
            visited += 1;
            // SAFETY: key_buf lives until after the loop (revoked below);
            // map values live as long as the map.
            unsafe {
                mem.grant(key_ptr, key_len, false);
                mem.grant(value.as_ptr(), value_size, writable);
            }
            let args = [
                handle,
                key_ptr as u64,
                value.as_ptr() as u64,
                callback_ctx,
                0,
            ];
            if mem.call_function(callback, args)? != 0 {
                break;
            }
            key = m.next_key(Some(&k)).ok().flatten();
        }
        Ok(visited)
    })();
    mem.revoke(key_ptr, key_len);
    drop(key_buf);
    result
}
