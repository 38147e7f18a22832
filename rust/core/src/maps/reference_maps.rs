//! Maps whose values name kernel objects: `devmap`, `devmap_hash`, `cpumap`,
//! `xskmap`, `sockmap`, `sockhash`, `cgroup_array`, `reuseport_sockarray`.
//!
//! In user space there are no net devices, CPUs queues or sockets to point
//! at, so these maps store their values (ifindexes, queue sizes, fds, ...)
//! as plain bytes with the kernel's key/value-size rules. Objects that use
//! them load, programs can look them up, and redirect helpers read them.
//!
//! This file also holds the storage pieces the other special maps share:
//! [`SlotStore`] (values at stable addresses), [`KeyedSlots`] (ordered
//! byte keys to slots) and [`LazyTable`] (arrays allocated as used).

use std::alloc::{self, Layout};
use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::ptr::NonNull;
use std::sync::{OnceLock, RwLock};

use super::BPF_ANY;
use super::{
    MapDef, MapError, MapImpl, MapType, BPF_EXIST, BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY,
    BPF_F_WRONLY_PROG, BPF_NOEXIST,
};

/// `BPF_F_NUMA_NODE`: accepted everywhere the kernel accepts it, ignored.
pub(crate) const BPF_F_NUMA_NODE: u32 = 1 << 2;
/// `BPF_F_ACCESS_MASK`: the read/write restriction flags.
pub(crate) const BPF_F_ACCESS_MASK: u32 =
    BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG;

/// An `Invalid` error naming the map, for definition checks.
pub(crate) fn def_error(def: &MapDef, msg: impl std::fmt::Display) -> MapError {
    MapError::Invalid(format!("{} map '{}': {msg}", def.map_type, def.name))
}

/// Rejects creation flags outside `allowed`, contradictory access flags and
/// a `map_extra` on types that take none, as `BPF_MAP_CREATE` does.
pub(crate) fn check_create_flags(def: &MapDef, allowed: u32) -> Result<(), MapError> {
    let unknown = def.flags & !allowed;
    if unknown != 0 {
        return Err(def_error(
            def,
            format!("map_flags {unknown:#x} are not valid for this map type"),
        ));
    }
    let both = |a: u32, b: u32| def.flags & (a | b) == (a | b);
    if both(BPF_F_RDONLY, BPF_F_WRONLY) || both(BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG) {
        return Err(def_error(def, "read-only and write-only flags together"));
    }
    if def.map_extra != 0 && def.map_type != MapType::BloomFilter {
        return Err(def_error(def, "map_extra must be 0 for this map type"));
    }
    Ok(())
}

/// Rejects update flags other than `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`.
pub(crate) fn check_update_flags(flags: u64) -> Result<(), MapError> {
    if flags > BPF_EXIST {
        return Err(MapError::invalid(format!(
            "update flags {flags:#x}: only BPF_ANY, BPF_NOEXIST or BPF_EXIST apply"
        )));
    }
    Ok(())
}

/// Arrays of kernel-object fds (maps of maps, cgroup arrays) take only
/// `BPF_ANY`, as the kernel's `bpf_fd_array_map_update_elem` does.
pub(crate) fn check_fd_array_flags(flags: u64) -> Result<(), MapError> {
    if flags != BPF_ANY {
        return Err(MapError::invalid(format!(
            "update flags {flags:#x}: arrays of object references take only BPF_ANY"
        )));
    }
    Ok(())
}

/// Applies `BPF_NOEXIST`/`BPF_EXIST` to whether the key is present.
pub(crate) fn check_exist_flags(flags: u64, present: bool) -> Result<(), MapError> {
    if present && flags == BPF_NOEXIST {
        return Err(MapError::Exists);
    }
    if !present && flags == BPF_EXIST {
        return Err(MapError::NotFound);
    }
    Ok(())
}

/// A u32 array index from a 4-byte key.
pub(crate) fn index_key(key: &[u8]) -> Result<u32, MapError> {
    let bytes: [u8; 4] = key
        .try_into()
        .map_err(|_| MapError::invalid(format!("index keys are 4 bytes, got {}", key.len())))?;
    Ok(u32::from_le_bytes(bytes))
}

/// The kernel's array `get_next_key`: every index in order, restarting at 0
/// for an index out of range.
pub(crate) fn next_index(
    key: Option<&[u8]>,
    max_entries: u32,
) -> Result<Option<Vec<u8>>, MapError> {
    let next = match key {
        None => 0,
        Some(k) => match index_key(k)? {
            i if i >= max_entries => 0,
            i => i + 1,
        },
    };
    Ok((next < max_entries).then(|| next.to_le_bytes().to_vec()))
}

const CHUNK_BYTES: usize = 64 * 1024;

/// Fixed-size value slots whose addresses never change while the store
/// lives: programs keep pointers from `lookup_ptr` across updates and
/// deletes. Slots are allocated in zeroed chunks as needed, freed slots are
/// reused, and memory goes back only when the store is dropped.
///
/// Not synchronised: the owning map holds it under its lock. Slot bytes are
/// reached through raw pointers because programs write them concurrently,
/// as they do kernel map values.
pub(crate) struct SlotStore {
    slot_size: usize,
    slots_per_chunk: usize,
    capacity: usize,
    chunks: Vec<NonNull<u8>>,
    allocated: usize,
    free: Vec<u32>,
}

// SAFETY: the chunks are plain heap memory owned by the store; concurrent
// access to slot bytes is the map semantics programs expect.
unsafe impl Send for SlotStore {}
unsafe impl Sync for SlotStore {}

impl SlotStore {
    /// A store of up to `capacity` slots of `value_size` bytes, each padded
    /// to 8 bytes so programs may access values as u64.
    pub(crate) fn new(value_size: usize, capacity: usize) -> SlotStore {
        let slot_size = value_size.max(1).next_multiple_of(8);
        let slots_per_chunk = (CHUNK_BYTES / slot_size).clamp(1, capacity.max(1));
        SlotStore {
            slot_size,
            slots_per_chunk,
            capacity,
            chunks: Vec::new(),
            allocated: 0,
            free: Vec::new(),
        }
    }

    fn chunk_layout(&self) -> Layout {
        // Sizes were bounded when the map was defined; 8 is a valid alignment.
        Layout::from_size_align(self.slot_size * self.slots_per_chunk, 8)
            .unwrap_or(Layout::new::<u64>())
    }

    /// A zeroed slot, or `None` when all `capacity` slots are in use or
    /// memory is exhausted.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            let p = self.ptr(slot);
            // SAFETY: the slot lies inside a live chunk.
            unsafe { std::ptr::write_bytes(p.as_ptr(), 0, self.slot_size) };
            return Some(slot);
        }
        if self.allocated >= self.capacity || self.allocated >= u32::MAX as usize {
            return None;
        }
        if self.allocated == self.chunks.len() * self.slots_per_chunk {
            // SAFETY: the layout has a non-zero size.
            let chunk = unsafe { alloc::alloc_zeroed(self.chunk_layout()) };
            self.chunks.push(NonNull::new(chunk)?);
        }
        self.allocated += 1;
        Some(self.allocated as u32 - 1)
    }

    pub(crate) fn release(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// The address of `slot` (which `alloc` returned).
    pub(crate) fn ptr(&self, slot: u32) -> NonNull<u8> {
        let slot = slot as usize;
        let chunk = self.chunks[slot / self.slots_per_chunk];
        // SAFETY: the offset stays inside the chunk.
        unsafe { chunk.add((slot % self.slots_per_chunk) * self.slot_size) }
    }

    pub(crate) fn read(&self, slot: u32, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len.min(self.slot_size)];
        // SAFETY: `out` is at most one slot long.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr(slot).as_ptr(), out.as_mut_ptr(), out.len())
        };
        out
    }

    pub(crate) fn write(&self, slot: u32, value: &[u8]) {
        let len = value.len().min(self.slot_size);
        // SAFETY: at most one slot is written.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), self.ptr(slot).as_ptr(), len) };
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.chunks.len() * self.slot_size * self.slots_per_chunk
    }
}

impl Drop for SlotStore {
    fn drop(&mut self) {
        let layout = self.chunk_layout();
        for chunk in &self.chunks {
            // SAFETY: allocated in `alloc` with this layout.
            unsafe { alloc::dealloc(chunk.as_ptr(), layout) };
        }
    }
}

/// Byte keys in order, each naming a slot of a [`SlotStore`]: hash-style
/// storage whose `next_key` is stable under inserts and deletes.
pub(crate) struct KeyedSlots {
    pub(crate) keys: BTreeMap<Box<[u8]>, u32>,
    pub(crate) slots: SlotStore,
}

impl KeyedSlots {
    pub(crate) fn new(value_size: usize, capacity: usize) -> KeyedSlots {
        KeyedSlots {
            keys: BTreeMap::new(),
            slots: SlotStore::new(value_size, capacity),
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<u32> {
        self.keys.get(key).copied()
    }

    /// Stores `value` for `key` with hash-map flag semantics; `TooBig` when
    /// a new key does not fit (the kernel's errno for full hash maps).
    pub(crate) fn update(&mut self, key: &[u8], value: &[u8], flags: u64) -> Result<u32, MapError> {
        check_update_flags(flags)?;
        let existing = self.get(key);
        check_exist_flags(flags, existing.is_some())?;
        let slot = match existing {
            Some(slot) => slot,
            None => {
                let slot = self.slots.alloc().ok_or(MapError::TooBig)?;
                self.keys.insert(key.into(), slot);
                slot
            }
        };
        self.slots.write(slot, value);
        Ok(slot)
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Result<(), MapError> {
        let slot = self.keys.remove(key).ok_or(MapError::NotFound)?;
        self.slots.release(slot);
        Ok(())
    }

    /// The key after `key`; the first key when `key` is `None` or absent.
    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Option<Vec<u8>> {
        let after = key.filter(|k| self.keys.contains_key(*k));
        let next = match after {
            None => self.keys.keys().next(),
            Some(k) => self
                .keys
                .range::<[u8], _>((Bound::Excluded(k), Bound::Unbounded))
                .next()
                .map(|(k, _)| k),
        };
        next.map(|k| k.to_vec())
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.slots.memory_usage() + self.keys.keys().map(|k| k.len() + 32).sum::<usize>()
    }
}

/// One of the object-reference maps, as plain byte storage.
///
/// Array-indexed types store only the indexes that hold a value (keyed by
/// the index), so a huge `max_entries` costs nothing until used.
pub struct ReferenceMap {
    def: MapDef,
    hashed: bool,
    storage: RwLock<KeyedSlots>,
}

/// The value sizes the kernel accepts for each reference map type.
fn allowed_value_sizes(map_type: MapType) -> &'static [u32] {
    match map_type {
        // struct bpf_devmap_val: ifindex, then optionally a program fd.
        MapType::Devmap | MapType::DevmapHash => &[4, 8],
        // struct bpf_cpumap_val: qsize, then optionally a program fd.
        MapType::Cpumap => &[4, 8],
        // A socket fd, or its 8-byte cookie.
        MapType::Sockmap | MapType::Sockhash | MapType::ReuseportSockarray => &[4, 8],
        _ => &[4],
    }
}

/// cpumap queue sizes above this fail with EOVERFLOW in the kernel.
const CPUMAP_MAX_QSIZE: u32 = 16384;

impl ReferenceMap {
    pub fn new(def: &MapDef) -> Result<ReferenceMap, MapError> {
        let hashed = matches!(def.map_type, MapType::DevmapHash | MapType::Sockhash);
        if !matches!(
            def.map_type,
            MapType::Devmap
                | MapType::DevmapHash
                | MapType::Cpumap
                | MapType::Xskmap
                | MapType::Sockmap
                | MapType::Sockhash
                | MapType::CgroupArray
                | MapType::ReuseportSockarray
        ) {
            return Err(def_error(def, "not an object-reference map type"));
        }
        let allowed = match def.map_type {
            MapType::Cpumap => BPF_F_NUMA_NODE,
            MapType::Devmap | MapType::DevmapHash => {
                BPF_F_NUMA_NODE | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
            }
            MapType::CgroupArray => BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK,
            _ => BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY,
        };
        check_create_flags(def, allowed)?;
        if def.max_entries == 0 {
            return Err(def_error(def, "max_entries must be positive"));
        }
        let key_ok = if def.map_type == MapType::Sockhash {
            def.key_size > 0 && def.key_size <= 512
        } else {
            def.key_size == 4
        };
        if !key_ok {
            return Err(def_error(
                def,
                format!(
                    "key_size {} is invalid (must be {})",
                    def.key_size,
                    if def.map_type == MapType::Sockhash {
                        "1..=512"
                    } else {
                        "4"
                    }
                ),
            ));
        }
        let sizes = allowed_value_sizes(def.map_type);
        if !sizes.contains(&def.value_size) {
            return Err(def_error(
                def,
                format!(
                    "value_size {} is invalid (must be one of {sizes:?})",
                    def.value_size
                ),
            ));
        }
        Ok(ReferenceMap {
            def: def.clone(),
            hashed,
            storage: RwLock::new(KeyedSlots::new(
                def.value_size as usize,
                def.max_entries as usize,
            )),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyedSlots> {
        self.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeyedSlots> {
        self.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    /// For array types: the index of `key`, `TooBig` when out of range.
    fn checked_index(&self, key: &[u8]) -> Result<(), MapError> {
        if !self.hashed && index_key(key)? >= self.def.max_entries {
            return Err(MapError::TooBig);
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), MapError> {
        if self.def.map_type == MapType::Cpumap {
            let qsize = value
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes);
            if qsize > CPUMAP_MAX_QSIZE {
                return Err(MapError::invalid(format!(
                    "cpumap queue size {qsize} exceeds {CPUMAP_MAX_QSIZE}"
                )));
            }
        }
        Ok(())
    }
}

impl MapImpl for ReferenceMap {
    fn lookup_ptr(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        let storage = self.read();
        storage.get(key).map(|slot| storage.slots.ptr(slot))
    }

    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let storage = self.read();
        let slot = storage.get(key).ok_or(MapError::NotFound)?;
        Ok(storage.slots.read(slot, self.def.value_size as usize))
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        if self.def.map_type == MapType::CgroupArray {
            check_fd_array_flags(flags)?;
        }
        check_update_flags(flags)?;
        self.check_value(value)?;
        self.checked_index(key)?;
        // A cpumap entry with queue size 0 is no entry at all.
        if self.def.map_type == MapType::Cpumap && value.get(..4) == Some(&[0; 4]) {
            return match self.write().remove(key) {
                Err(MapError::NotFound) | Ok(()) => Ok(()),
                Err(e) => Err(e),
            };
        }
        let mut flags = flags;
        if matches!(self.def.map_type, MapType::Devmap | MapType::Cpumap) {
            // Their slots always "exist": the kernel refuses BPF_NOEXIST
            // outright and ignores BPF_EXIST.
            if flags == BPF_NOEXIST {
                return Err(MapError::Exists);
            }
            flags = BPF_ANY;
        }
        self.write().update(key, value, flags).map(|_| ())
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.checked_index(key)?;
        self.write().remove(key)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        if self.hashed {
            Ok(self.read().next_key(key))
        } else {
            next_index(key, self.def.max_entries)
        }
    }

    fn len(&self) -> usize {
        self.read().len()
    }

    fn memory_usage(&self) -> usize {
        self.read().memory_usage()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Builds a map of a type that cannot live in a pinned file.
pub(crate) fn unpinned<T: MapImpl + 'static>(
    pin: Option<&std::path::Path>,
    make: impl FnOnce() -> Result<T, MapError>,
) -> Result<Box<dyn MapImpl>, MapError> {
    if pin.is_some() {
        return Err(MapError::unsupported(
            "pinning is supported for array, hash, LRU and per-CPU maps",
        ));
    }
    Ok(Box::new(make()?))
}

/// Why a map type cannot exist in user space.
pub(crate) fn unsupported_type(map_type: MapType) -> MapError {
    let why = match map_type {
        MapType::StructOps => {
            "struct_ops maps replace kernel function tables (TCP congestion control, schedulers), which do not exist in user space"
        }
        MapType::UserRingbuf => {
            "user ring buffers are drained by kernel-side bpf_user_ringbuf_drain callbacks; use a ringbuf or queue map instead"
        }
        MapType::Arena => {
            "arena maps share pages between a program and user space through kernel page-fault handling that ebpfvm does not emulate"
        }
        _ => "this map type is not supported by ebpfvm",
    };
    MapError::unsupported(format!("map type {map_type}: {why}"))
}

const LAZY_CHUNK_BITS: u32 = 16;
const LAZY_CHUNK: usize = 1 << LAZY_CHUNK_BITS;

/// A table of `len` entries allocated a chunk at a time on first write, so
/// a huge `max_entries` costs nothing until used. Reads of an entry never
/// written see no entry.
pub(crate) struct LazyTable<T> {
    len: u32,
    chunks: Box<[OnceLock<Box<[T]>>]>,
}

impl<T: Default> LazyTable<T> {
    pub(crate) fn new(len: u32) -> LazyTable<T> {
        let chunks = (len as usize).div_ceil(LAZY_CHUNK);
        LazyTable {
            len,
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
        }
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// The entry at `index` if its chunk exists.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        let chunk = self.chunks[(index >> LAZY_CHUNK_BITS) as usize].get()?;
        chunk.get(index as usize & (LAZY_CHUNK - 1))
    }

    /// The entry at `index`, allocating its chunk; `None` out of range.
    pub(crate) fn get_or_alloc(&self, index: u32) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        let c = (index >> LAZY_CHUNK_BITS) as usize;
        let chunk = self.chunks[c].get_or_init(|| {
            let n = (self.len as usize - c * LAZY_CHUNK).min(LAZY_CHUNK);
            (0..n).map(|_| T::default()).collect()
        });
        chunk.get(index as usize & (LAZY_CHUNK - 1))
    }

    /// Allocated entries with their indexes, in order.
    pub(crate) fn allocated(&self) -> impl Iterator<Item = (u32, &T)> {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.get().into_iter().flat_map(move |entries| {
                entries
                    .iter()
                    .enumerate()
                    .map(move |(i, e)| ((c * LAZY_CHUNK + i) as u32, e))
            })
        })
    }

    pub(crate) fn memory_usage(&self) -> usize {
        let per_chunk = |chunk: &OnceLock<Box<[T]>>| {
            chunk
                .get()
                .map_or(0, |c| c.len() * std::mem::size_of::<T>())
        };
        self.chunks.iter().map(per_chunk).sum::<usize>()
            + self.chunks.len() * std::mem::size_of::<OnceLock<Box<[T]>>>()
    }
}
