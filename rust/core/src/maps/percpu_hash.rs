//! `BPF_MAP_TYPE_PERCPU_HASH`: a hash map whose elements hold one value slot
//! per virtual CPU (`round_up(value_size, 8)` bytes each, CPU 0 first, in
//! the element's slot of the table in [`super::hash`]).
//!
//! The user view of a value is every CPU's slot; a program's update writes
//! only its CPU's slot, and an element it creates starts with the other
//! CPUs' slots zeroed. The CPU count is fixed when the map is created (and
//! recorded in a pinned map's file).

use std::any::Any;
use std::path::Path;
use std::ptr::NonNull;

use super::hash::{HashCore, Kind, NewValue};
use super::{MapDef, MapError, MapImpl};

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

impl MapImpl for PercpuHash {
    #[inline]
    fn lookup_ptr(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        self.core.lookup_ptr(key, cpu)
    }

    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.core.lookup(key)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.core.update(key, NewValue::All(value), flags)
    }

    fn update_from_program(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: u32,
    ) -> Result<(), MapError> {
        self.core
            .update(key, NewValue::Cpu(cpu as usize, value), flags)
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.core.delete(key)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        self.core.next_key(key)
    }

    fn len(&self) -> usize {
        self.core.len()
    }

    fn memory_usage(&self) -> usize {
        self.core.memory_usage()
    }

    fn num_cpus(&self) -> usize {
        self.core.num_cpus()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
