//! `bpf_tail_call`: continue in another program of the same type, never
//! returning; on failure (empty slot, bad index, too many tail calls) the
//! caller goes on with the next instruction, as in the kernel.

use std::sync::Arc;

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::prog_array::ProgArray;
use crate::runtime::run::TailCallTaken;
use crate::runtime::{Environment, LoadedProgram, MAX_TAIL_CALLS};

use super::{errno, fault, run_state, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[(12, tail_call)];

fn tail_call(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let m = env
        .map(a[1])
        .ok_or_else(|| fault(format!("bpf_tail_call: r2 (0x{:x}) is not a map", a[1])))?;
    let array = m.downcast::<ProgArray>().ok_or_else(|| {
        fault(format!(
            "bpf_tail_call: map '{}' is a {}, not a prog_array",
            m.name(),
            m.map_type()
        ))
    })?;
    let Some(state) = run_state(mem) else {
        return Err(fault(
            "bpf_tail_call needs a program run as its type (with a context)",
        ));
    };
    if state.tail_calls >= MAX_TAIL_CALLS || a[2] > u32::MAX as u64 {
        return Ok(errno(2));
    }
    let Some(target) = array.get(a[2] as u32) else {
        return Ok(errno(2));
    };
    let Ok(target) = target.downcast::<LoadedProgram>() else {
        return Ok(errno(22));
    };
    if target.prog_type != state.prog_type {
        return Ok(errno(22));
    }
    state.tail_calls += 1;
    state.tail_call = Some(Arc::clone(&target));
    Err(HelperError::Abort(Box::new(TailCallTaken)))
}
