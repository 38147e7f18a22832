//! Running programs the way the kernel runs them: program-type contexts
//! (`xdp_md`, `__sk_buff`, tracing contexts), kernel helpers with kernel
//! ids and semantics, maps bound into the code, and tail calls.
//!
//! The pipeline for a program from an object file:
//! [`prepare`] rewrites context accesses to the run-time context layout and
//! resolves map references to map handles and addresses; an engine loads
//! the result with [`helpers::kernel_helpers`]; a [`LoadedProgram`] pairs
//! the engine with its type and is run by [`run::run`].

use std::sync::Arc;

use crate::error::ProgramError;
use crate::interp::{Region, Runner};
use crate::isa::*;
use crate::maps::Map;
use crate::program::{Program, DEFAULT_MAX_LEN};
use crate::progtype::ProgType;

pub mod context;
pub mod helpers;
pub mod object;
pub mod run;
pub mod trace;

static NEXT_PROGRAM_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// A fresh program id (what the kernel shows in `bpftool prog`, and what
/// a program array reports for a slot).
pub fn next_program_id() -> u32 {
    NEXT_PROGRAM_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Most tail calls one run may make (the kernel's `MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALLS: u32 = 33;

/// What the helpers of one loaded program share: the maps it references.
pub struct Environment {
    maps: Vec<Arc<Map>>,
}

impl Environment {
    pub fn new(maps: Vec<Arc<Map>>) -> Arc<Environment> {
        Arc::new(Environment { maps })
    }

    pub fn maps(&self) -> &[Arc<Map>] {
        &self.maps
    }

    /// The map a program passes as `handle`: one of the program's own maps
    /// (fast path), or any live map (inner maps of maps of maps). A value
    /// that is no map's handle yields `None`, so unverified programs cannot
    /// make a helper dereference a forged pointer.
    pub fn map(&self, handle: u64) -> Option<MapRef<'_>> {
        if let Some(m) = self.maps.iter().find(|m| m.handle() == handle) {
            return Some(MapRef::Own(m));
        }
        Map::from_handle(handle).map(MapRef::Other)
    }
}

/// A map found from its handle.
pub enum MapRef<'a> {
    Own(&'a Arc<Map>),
    Other(Arc<Map>),
}

impl std::ops::Deref for MapRef<'_> {
    type Target = Map;
    fn deref(&self) -> &Map {
        match self {
            MapRef::Own(m) => m,
            MapRef::Other(m) => m,
        }
    }
}

/// A program ready to run as its type: what a program array slot holds and
/// what a tail call jumps to.
pub struct LoadedProgram {
    pub id: u32,
    pub name: String,
    pub prog_type: ProgType,
    pub runner: Arc<dyn Runner + Send + Sync>,
    /// Memory the program may touch besides its context and packet: the
    /// values of the array maps it references (global data included).
    pub regions: Vec<Region>,
    /// Keeps the maps (and so `regions`) alive.
    pub env: Arc<Environment>,
}

/// Per-run state the helpers of a program type consult, reached through
/// [`crate::helpers::HelperMemory::run_state`].
pub struct RunState {
    pub prog_type: ProgType,
    /// Address of the run-time context (0 for raw programs).
    pub ctx: u64,
    pub packet: Option<context::Packet>,
    /// Set by `bpf_tail_call`: the run continues in this program.
    pub tail_call: Option<Arc<LoadedProgram>>,
    pub tail_calls: u32,
    /// Where `bpf_redirect`/`bpf_redirect_map` sent the packet.
    pub redirect: Option<u64>,
}

impl RunState {
    pub fn new(prog_type: ProgType) -> RunState {
        RunState {
            prog_type,
            ctx: 0,
            packet: None,
            tail_call: None,
            tail_calls: 0,
            redirect: None,
        }
    }
}

/// Makes a program runnable as `prog_type` with `maps`: context accesses
/// are rewritten to the run-time layout ([`context::rewrite`]) and every
/// map reference (`lddw` with a map pseudo source: `map_fd N` and
/// `map_idx N` both mean `maps[N]`) becomes the map's handle, or the
/// address of its value for the `*_value` forms (array maps only).
pub fn prepare(
    program: &Program,
    prog_type: ProgType,
    maps: &[Arc<Map>],
) -> Result<Program, ProgramError> {
    let mut insns = context::rewrite(program, prog_type)?;
    for r in program.object_refs() {
        let map = usize::try_from(r.id)
            .ok()
            .and_then(|i| maps.get(i))
            .ok_or_else(|| {
                ProgramError::at(
                    r.pc,
                    format!(
                        "lddw refers to map {} but the program has {} map(s)",
                        r.id,
                        maps.len()
                    ),
                )
            })?;
        let value = match r.kind {
            PSEUDO_MAP_FD | PSEUDO_MAP_IDX => map.handle(),
            PSEUDO_MAP_VALUE | PSEUDO_MAP_IDX_VALUE => {
                let (base, len) = map.imp().value_region().ok_or_else(|| {
                    ProgramError::at(
                        r.pc,
                        format!(
                            "lddw takes the address of a value of map '{}', a {} map: only array maps have directly addressable values",
                            map.name(),
                            map.map_type()
                        ),
                    )
                })?;
                let off = r.offset as u32 as usize;
                if off >= len.max(1) {
                    return Err(ProgramError::at(
                        r.pc,
                        format!(
                            "lddw offset {off} is outside the {len}-byte value of map '{}'",
                            map.name()
                        ),
                    ));
                }
                base.as_ptr() as u64 + off as u64
            }
            _ => {
                return Err(ProgramError::at(
                    r.pc,
                    format!(
                        "lddw refers to kernel object {} (pseudo source {}), which does not exist in user space",
                        r.id, r.kind
                    ),
                ))
            }
        };
        let (lo, hi) = insns.split_at_mut(r.pc + 1);
        lo[r.pc].src = 0;
        lo[r.pc].imm = value as u32 as i32;
        hi[0].imm = (value >> 32) as u32 as i32;
    }
    Program::from_insns(insns, DEFAULT_MAX_LEN.max(program.len()))
}

/// The memory a program bound to `maps` may touch directly: every array
/// map's values (so global data and array lookups need no per-call grant).
pub fn map_regions(maps: &[Arc<Map>]) -> Vec<Region> {
    maps.iter()
        .filter_map(|m| {
            let (p, len) = m.imp().value_region()?;
            let writable = m.def().flags & crate::maps::BPF_F_RDONLY_PROG == 0;
            Some(Region {
                lo: p.as_ptr() as u64,
                len: len as u64,
                writable,
            })
        })
        .collect()
}
