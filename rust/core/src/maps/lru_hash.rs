//! `BPF_MAP_TYPE_LRU_HASH` and `BPF_MAP_TYPE_LRU_PERCPU_HASH`: hash maps
//! that, when full, make room for a new key by evicting the least recently
//! used element instead of failing with `E2BIG`.
//!
//! The LRU order is exact: a doubly linked list of slot indexes inside the
//! region (see [`super::hash`]). Lookups from programs (`lookup_ptr`) and
//! updates count as use; lookups from user space and iteration do not, as
//! in the kernel. `BPF_NOEXIST` is still honoured. The kernel's
//! `BPF_F_NO_COMMON_LRU` (one LRU list per CPU) is accepted, but the order
//! stays global and exact.

use std::any::Any;
use std::path::Path;
use std::ptr::NonNull;

use super::hash::{HashCore, Kind, NewValue};
use super::{MapDef, MapError, MapImpl};

/// `BPF_MAP_TYPE_LRU_HASH`.
pub struct LruHash {
    core: HashCore,
}

impl LruHash {
    /// An LRU hash map for `def`, in fresh memory or in the pinned file at
    /// `pin`.
    pub fn open(def: &MapDef, pin: Option<&Path>) -> Result<LruHash, MapError> {
        let kind = Kind {
            percpu: false,
            lru: true,
        };
        Ok(LruHash {
            core: HashCore::open(def, pin, kind)?,
        })
    }
}

impl MapImpl for LruHash {
    #[inline]
    fn lookup_ptr(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        self.core.lookup_ptr(key, 0)
    }

    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.core.lookup(key)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.core.update(key, NewValue::All(value), flags)
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

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `BPF_MAP_TYPE_LRU_PERCPU_HASH`: the LRU hash with per-CPU values (laid
/// out and updated as in [`super::percpu_hash`]).
pub struct LruPercpuHash {
    core: HashCore,
}

impl LruPercpuHash {
    /// An LRU per-CPU hash map for `def` with [`super::cpu::num_cpus`] slots
    /// per element (or, for an existing pin, the count in its file).
    pub fn open(def: &MapDef, pin: Option<&Path>) -> Result<LruPercpuHash, MapError> {
        let kind = Kind {
            percpu: true,
            lru: true,
        };
        Ok(LruPercpuHash {
            core: HashCore::open(def, pin, kind)?,
        })
    }
}

impl MapImpl for LruPercpuHash {
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
