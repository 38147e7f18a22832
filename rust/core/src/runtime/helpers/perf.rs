//! `bpf_perf_event_output(ctx, map, flags, data, size)`: a sample into the
//! perf event array slot of the running (virtual) CPU.
//!
//! The slot is the low 32 bits of `flags`: `BPF_F_CURRENT_CPU`, or an
//! index that must be the running CPU (the kernel's perf events are bound
//! to their CPU: another CPU's slot is `-EOPNOTSUPP`). Packet programs may
//! append the first `(flags & BPF_F_CTXLEN_MASK) >> 32` packet bytes to the
//! sample, as the kernel's skb/xdp variants do.

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::cpu;
use crate::maps::perf_event_array::{
    PerfEventArray, BPF_F_CTXLEN_MASK, BPF_F_CURRENT_CPU, BPF_F_INDEX_MASK,
};
use crate::runtime::Environment;

use super::{errno, fault, run_state, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[(25, perf_event_output)];

const EFAULT: i32 = 14;
const EINVAL: i32 = 22;
const EOPNOTSUPP: i32 = 95;

fn perf_event_output(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_perf_event_output";
    let (handle, flags, data_addr, size) = (a[1], a[2], a[3], a[4]);
    let m = env
        .map(handle)
        .ok_or_else(|| fault(format!("{helper}: r2 (0x{handle:x}) is not a map")))?;
    let Some(array) = m.downcast::<PerfEventArray>() else {
        return Err(fault(format!(
            "{helper}: map '{}' in r2 is a {}, not a perf_event_array",
            m.name(),
            m.map_type()
        )));
    };
    let mut sample = mem
        .slice(data_addr, size)
        .map_err(|_| {
            fault(format!(
                "{helper}: r4 (0x{data_addr:x}) is not {size} readable bytes of the program (r5 = {size})"
            ))
        })?
        .to_vec();
    let packet = run_state(mem).and_then(|s| s.packet.filter(|_| a[0] == s.ctx));
    let ctx_len = (flags & BPF_F_CTXLEN_MASK) >> 32;
    if flags & !(BPF_F_INDEX_MASK | BPF_F_CTXLEN_MASK) != 0 || (ctx_len > 0 && packet.is_none()) {
        return Ok(errno(EINVAL));
    }
    if let Some(p) = packet.filter(|_| ctx_len > 0) {
        if ctx_len > p.len() {
            return Ok(errno(EFAULT));
        }
        // SAFETY: [data, data + ctx_len) is inside the run's packet.
        let bytes = unsafe { std::slice::from_raw_parts(p.data as *const u8, ctx_len as usize) };
        sample.extend_from_slice(bytes);
    }
    let this_cpu = cpu::current_cpu();
    let index = flags & BPF_F_INDEX_MASK;
    if index != BPF_F_CURRENT_CPU && index < array.slots() as u64 && index != this_cpu as u64 {
        return Ok(errno(EOPNOTSUPP));
    }
    // A slot past the array is -E2BIG, a full buffer -ENOSPC (a lost
    // sample), as in the kernel.
    Ok(match array.output(index, this_cpu, &sample) {
        Ok(()) => 0,
        Err(e) => errno(e.errno()),
    })
}
