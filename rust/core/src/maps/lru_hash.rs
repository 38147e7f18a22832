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

use std::path::Path;

use super::hash::{hash_core_map_impl, HashCore, Kind};
use super::{MapDef, MapError};

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

hash_core_map_impl!(LruHash);

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

hash_core_map_impl!(LruPercpuHash);
