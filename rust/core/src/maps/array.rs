//! `BPF_MAP_TYPE_ARRAY`: `max_entries` zero-initialised values indexed by a
//! `u32` key (native byte order, as the kernel reads it).
//!
//! Layout of the region: the header, then (from offset [`VALUES_OFFSET`], a
//! page boundary) the values back to back at a stride of
//! `round_up(value_size, 8)`, exactly like the kernel's array map, so
//! [`MapImpl::value_region`] is the whole value storage (global data,
//! NumPy views, `mmap` of `BPF_F_MMAPABLE` arrays). Values are updated in
//! place without a lock, as in the kernel.

use std::any::Any;
use std::path::Path;
use std::ptr::NonNull;

use super::region::{check_flags, check_len, checked_size, round8, Region, HEADER_SIZE};
use super::{
    MapDef, MapError, MapImpl, BPF_EXIST, BPF_F_INNER_MAP, BPF_F_LOCK, BPF_F_MMAPABLE,
    BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_F_WRONLY_PROG, BPF_NOEXIST,
};

/// Where the values start in an array map's region (one page in, so the
/// values of a pinned array are page aligned in its file).
pub const VALUES_OFFSET: usize = 4096;

const _: () = assert!(HEADER_SIZE <= VALUES_OFFSET);

/// `BPF_F_NUMA_NODE`, accepted and ignored.
const BPF_F_NUMA_NODE: u32 = 1 << 2;
/// `BPF_F_PRESERVE_ELEMS`, accepted (only meaningful for perf arrays).
const BPF_F_PRESERVE_ELEMS: u32 = 1 << 11;
/// Largest value the kernel accepts for an array (`KMALLOC_MAX_SIZE`).
const MAX_ARRAY_VALUE: u32 = 4 << 20;

/// Flags an array map may be created with.
pub(crate) const ARRAY_FLAGS: u32 = BPF_F_NUMA_NODE
    | BPF_F_RDONLY
    | BPF_F_WRONLY
    | BPF_F_RDONLY_PROG
    | BPF_F_WRONLY_PROG
    | BPF_F_MMAPABLE
    | BPF_F_INNER_MAP
    | BPF_F_PRESERVE_ELEMS;

/// Storage shared by the array and the per-CPU array: element `i` holds
/// `ncpus` slots of `round_up(value_size, 8)` bytes (`ncpus` is 1 for a
/// plain array).
pub(crate) struct ArrayCore {
    pub(crate) region: Region,
    pub(crate) value_size: usize,
    /// Bytes of one CPU's slot.
    pub(crate) slot: usize,
    /// Bytes of one element (all its slots).
    pub(crate) elem: usize,
    pub(crate) ncpus: usize,
    pub(crate) max_entries: u32,
}

impl ArrayCore {
    pub(crate) fn open(
        def: &MapDef,
        pin: Option<&Path>,
        ncpus: u32,
        max_value: u32,
    ) -> Result<ArrayCore, MapError> {
        let name = &def.name;
        if def.key_size != 4 {
            return Err(MapError::Invalid(format!(
                "map '{name}': a {} map needs 4-byte keys, not {}",
                def.map_type, def.key_size
            )));
        }
        if def.value_size == 0 {
            return Err(MapError::Invalid(format!(
                "map '{name}': value_size must be positive"
            )));
        }
        if def.value_size > max_value {
            return Err(MapError::TooBig);
        }
        let layout = |ncpus: u32| {
            let elem = round8(def.value_size) * ncpus as u64;
            checked_size(&[(1, VALUES_OFFSET as u64), (def.max_entries as u64, elem)])
        };
        let region = Region::open(def, pin, ncpus, &layout)?;
        let ncpus = region.num_cpus() as usize;
        let slot = round8(def.value_size) as usize;
        Ok(ArrayCore {
            region,
            value_size: def.value_size as usize,
            slot,
            elem: slot * ncpus,
            ncpus,
            max_entries: def.max_entries,
        })
    }

    /// The element index a key names, if it is in range.
    #[inline]
    pub(crate) fn index(&self, key: &[u8]) -> Option<u32> {
        let key: [u8; 4] = key.try_into().ok()?;
        let index = u32::from_ne_bytes(key);
        (index < self.max_entries).then_some(index)
    }

    #[inline]
    pub(crate) fn offset(&self, index: u32) -> usize {
        VALUES_OFFSET + index as usize * self.elem
    }

    /// Program view: `cpu`'s slot of the element `key` names.
    #[inline]
    pub(crate) fn slot_ptr(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        let index = self.index(key)?;
        if cpu as usize >= self.ncpus {
            return None;
        }
        Some(
            self.region
                .nonnull(self.offset(index) + cpu as usize * self.slot),
        )
    }

    /// User view: the element's bytes (all slots for per-CPU arrays).
    pub(crate) fn copy_out(&self, key: &[u8], len: usize) -> Result<Vec<u8>, MapError> {
        check_len("key", key.len(), 4)?;
        let index = self.index(key).ok_or(MapError::NotFound)?;
        let mut out = vec![0; len];
        self.region.read(self.offset(index), &mut out);
        Ok(out)
    }

    /// Checks an update as the kernel does (in its order) and returns the
    /// element's offset.
    pub(crate) fn update_target(&self, key: &[u8], flags: u64) -> Result<usize, MapError> {
        check_len("key", key.len(), 4)?;
        if flags & !BPF_F_LOCK > BPF_EXIST {
            return Err(MapError::Invalid(format!("bad update flags {flags:#x}")));
        }
        let index = self.index(key).ok_or(MapError::TooBig)?;
        if flags & BPF_NOEXIST != 0 {
            return Err(MapError::Exists);
        }
        if flags & BPF_F_LOCK != 0 {
            return Err(MapError::invalid(
                "BPF_F_LOCK needs a value with a bpf_spin_lock, which this map does not have",
            ));
        }
        Ok(self.offset(index))
    }

    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let next = match key {
            None => 0,
            Some(key) => {
                check_len("key", key.len(), 4)?;
                match self.index(key) {
                    None => 0,
                    Some(i) if i + 1 == self.max_entries => return Ok(None),
                    Some(i) => i + 1,
                }
            }
        };
        Ok(Some(next.to_ne_bytes().to_vec()))
    }

    pub(crate) fn value_region(&self) -> (NonNull<u8>, usize) {
        (
            self.region.nonnull(VALUES_OFFSET),
            self.max_entries as usize * self.elem,
        )
    }
}

/// `BPF_MAP_TYPE_ARRAY`.
pub struct Array {
    core: ArrayCore,
}

impl Array {
    /// An array for `def`, in fresh memory or in the pinned file at `pin`.
    pub fn open(def: &MapDef, pin: Option<&Path>) -> Result<Array, MapError> {
        check_flags(def, ARRAY_FLAGS)?;
        Ok(Array {
            core: ArrayCore::open(def, pin, 1, MAX_ARRAY_VALUE)?,
        })
    }
}

impl MapImpl for Array {
    #[inline]
    fn lookup_ptr(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        self.core.slot_ptr(key, 0)
    }

    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.core.copy_out(key, self.core.value_size)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        check_len("value", value.len(), self.core.value_size)?;
        let off = self.core.update_target(key, flags)?;
        self.core.region.write(off, value);
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

    fn as_any(&self) -> &dyn Any {
        self
    }
}
