//! `BPF_MAP_TYPE_PERCPU_HASH`: a hash map whose elements hold one value slot
//! per virtual CPU (`round_up(value_size, 8)` bytes each, CPU 0 first, in
//! the element's slot of the table in [`super::hash`]).
//!
//! The user view of a value is every CPU's slot; a program's update writes
//! only its CPU's slot, and an element it creates starts with the other
//! CPUs' slots zeroed. The CPU count is fixed when the map is created (and
//! recorded in a pinned map's file).

use std::path::Path;

use super::hash::{hash_core_map_impl, HashCore, Kind};
use super::{MapDef, MapError};

/// `BPF_MAP_TYPE_PERCPU_HASH`.
pub struct PercpuHash {
    core: HashCore,
}

impl PercpuHash {
    /// A per-CPU hash map for `def` with [`super::cpu::num_cpus`] slots per
    /// element (or, for an existing pin, the count recorded in its file).
    pub fn open(def: &MapDef, pin: Option<&Path>) -> Result<PercpuHash, MapError> {
        let kind = Kind {
            percpu: true,
            lru: false,
        };
        Ok(PercpuHash {
            core: HashCore::open(def, pin, kind)?,
        })
    }
}

hash_core_map_impl!(PercpuHash);
