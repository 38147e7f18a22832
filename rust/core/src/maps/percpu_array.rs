//! `BPF_MAP_TYPE_PERCPU_ARRAY`: an array with one value slot per virtual CPU.
//!
//! Layout: as the array map (values from [`super::array::VALUES_OFFSET`]),
//! but element `i` is `ncpus` consecutive slots of `round_up(value_size, 8)`
//! bytes, CPU 0 first: slot `(i, cpu)` is at
//! `VALUES_OFFSET + (i * ncpus + cpu) * round_up(value_size, 8)`. An element
//! is therefore laid out exactly as its user view (what `lookup` returns),
//! and [`MapImpl::value_region`] is `max_entries` user views back to back.
//! The CPU count is fixed when the map is created (and recorded in a pinned
//! map's file).

use std::any::Any;
use std::path::Path;
use std::ptr::NonNull;

use super::array::{ArrayCore, ARRAY_FLAGS};
use super::region::{check_flags, check_len};
use super::{cpu, MapDef, MapError, MapImpl, BPF_F_MMAPABLE};

/// Largest per-CPU value the kernel accepts (`PCPU_MIN_UNIT_SIZE`).
pub(crate) const MAX_PERCPU_VALUE: u32 = 32 << 10;

/// `BPF_MAP_TYPE_PERCPU_ARRAY`.
pub struct PercpuArray {
    core: ArrayCore,
}

impl PercpuArray {
    /// A per-CPU array for `def` with [`cpu::num_cpus`] slots per element
    /// (or, for an existing pin, the count recorded in its file).
    pub fn open(def: &MapDef, pin: Option<&Path>) -> Result<PercpuArray, MapError> {
        // Per-CPU arrays cannot be mmap'ed in the kernel either.
        check_flags(def, ARRAY_FLAGS & !BPF_F_MMAPABLE)?;
        let ncpus = cpu::num_cpus() as u32;
        Ok(PercpuArray {
            core: ArrayCore::open(def, pin, ncpus, MAX_PERCPU_VALUE)?,
        })
    }
}

impl MapImpl for PercpuArray {
    #[inline]
    fn lookup_ptr(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        self.core.slot_ptr(key, cpu)
    }

    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.core.copy_out(key, self.core.elem)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        check_len(
            "per-CPU value (all CPUs' slots)",
            value.len(),
            self.core.elem,
        )?;
        let off = self.core.update_target(key, flags)?;
        self.core.region.write(off, value);
        Ok(())
    }

    fn update_from_program(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: u32,
    ) -> Result<(), MapError> {
        check_len("value", value.len(), self.core.value_size)?;
        if cpu as usize >= self.core.ncpus {
            return Err(MapError::Invalid(format!(
                "CPU {cpu} out of range: the map has {} CPUs",
                self.core.ncpus
            )));
        }
        let off = self.core.update_target(key, flags)?;
        self.core
            .region
            .write(off + cpu as usize * self.core.slot, value);
        Ok(())
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::invalid("array map elements cannot be deleted"))
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        self.core.next_key(key)
    }

    fn len(&self) -> usize {
        self.core.max_entries as usize
    }

    fn value_region(&self) -> Option<(NonNull<u8>, usize)> {
        Some(self.core.value_region())
    }

    fn memory_usage(&self) -> usize {
        self.core.region.len()
    }

    fn num_cpus(&self) -> usize {
        self.core.ncpus
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
