//! Storage attached to an owner rather than to a key the user picks:
//! the local-storage maps (`sk_storage`, `inode_storage`, `task_storage`,
//! `cgrp_storage`) and the cgroup storage maps (`cgroup_storage`,
//! `percpu_cgroup_storage`).
//!
//! Local storage: the kernel hangs a value off a socket, inode, task or
//! cgroup; here the owner is an 8-byte id or address the runtime passes
//! (`bpf_sk_storage_get(map, sk, init, F_CREATE)` becomes
//! [`LocalStorage::get_or_create`]). User space names owners by key (the
//! kernel's 4-byte fd becomes the owner id, zero-extended; an 8-byte key
//! names any id).
//!
//! Cgroup storage: one value per (cgroup id[, attach type]) key, handed to
//! programs by `bpf_get_local_storage`; per-CPU maps keep one slot per CPU.
//! There is no cgroup attach in user space, so a user update with
//! `BPF_ANY` creates the storage that attaching would create in the kernel.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::reference_maps::{
    check_create_flags, def_error, KeyedSlots, BPF_F_ACCESS_MASK, BPF_F_NUMA_NODE,
};
use super::{cpu, MapDef, MapError, MapImpl, MapType};
use super::{BPF_EXIST, BPF_F_LOCK, BPF_F_NO_PREALLOC, BPF_NOEXIST};

/// `BPF_F_CLONE`: local storage is copied when its socket is cloned.
pub const BPF_F_CLONE: u32 = 1 << 9;
/// Flag of the `*_storage_get` helpers: create the value if missing.
pub const BPF_LOCAL_STORAGE_GET_F_CREATE: u64 = 1;

/// Largest local-storage value (the kernel's limit, about 64 KiB).
const MAX_LOCAL_VALUE_SIZE: u32 = u16::MAX as u32 - 64;
/// Largest cgroup storage value: a page, or 32 KiB per CPU.
const MAX_CGROUP_VALUE_SIZE: u32 = 4096;
const MAX_PERCPU_CGROUP_VALUE_SIZE: u32 = 32 * 1024;
/// Owners are bounded only by memory, as in the kernel.
const UNBOUNDED: usize = u32::MAX as usize;

fn lock_read(l: &RwLock<KeyedSlots>) -> RwLockReadGuard<'_, KeyedSlots> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn lock_write(l: &RwLock<KeyedSlots>) -> RwLockWriteGuard<'_, KeyedSlots> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// A local-storage map: one value per owner.
pub struct LocalStorage {
    key_size: usize,
    value_size: usize,
    /// Keyed by the owner id as 8 little-endian bytes.
    owners: RwLock<KeyedSlots>,
}

impl LocalStorage {
    pub fn new(def: &MapDef) -> Result<LocalStorage, MapError> {
        check_create_flags(def, BPF_F_NO_PREALLOC | BPF_F_CLONE)?;
        if def.flags & BPF_F_NO_PREALLOC == 0 {
            return Err(def_error(
                def,
                "local storage maps must be created with BPF_F_NO_PREALLOC",
            ));
        }
        if def.max_entries != 0 {
            return Err(def_error(
                def,
                format!(
                    "max_entries must be 0 (storage grows with its owners), got {}",
                    def.max_entries
                ),
            ));
        }
        if def.key_size != 4 && def.key_size != 8 {
            return Err(def_error(
                def,
                format!(
                    "key_size must be 4 (an fd) or 8 (an owner id), got {}",
                    def.key_size
                ),
            ));
        }
        if def.value_size == 0 || def.value_size > MAX_LOCAL_VALUE_SIZE {
            return Err(def_error(
                def,
                format!(
                    "value_size must be 1..={MAX_LOCAL_VALUE_SIZE}, got {}",
                    def.value_size
                ),
            ));
        }
        Ok(LocalStorage {
            key_size: def.key_size as usize,
            value_size: def.value_size as usize,
            owners: RwLock::new(KeyedSlots::new(def.value_size as usize, UNBOUNDED)),
        })
    }

    fn owner_of(&self, key: &[u8]) -> Result<u64, MapError> {
        let mut bytes = [0u8; 8];
        if key.len() != self.key_size {
            return Err(MapError::invalid(format!(
                "keys are {} bytes, got {}",
                self.key_size,
                key.len()
            )));
        }
        bytes[..key.len()].copy_from_slice(key);
        Ok(u64::from_le_bytes(bytes))
    }

    /// The value `owner` holds, if any.
    pub fn get(&self, owner: u64) -> Option<NonNull<u8>> {
        let owners = lock_read(&self.owners);
        owners
            .get(&owner.to_le_bytes())
            .map(|slot| owners.slots.ptr(slot))
    }

    /// The value `owner` holds, created (from `init`, or zeroed) if it has
    /// none. `None` if `init` is not one value long or memory runs out.
    pub fn get_or_create(&self, owner: u64, init: Option<&[u8]>) -> Option<NonNull<u8>> {
        if let Some(found) = self.get(owner) {
            return Some(found);
        }
        if init.is_some_and(|v| v.len() != self.value_size) {
            return None;
        }
        let mut owners = lock_write(&self.owners);
        let key = owner.to_le_bytes();
        // Another thread may have created it between the two locks.
        if let Some(slot) = owners.get(&key) {
            return Some(owners.slots.ptr(slot));
        }
        let zeroes;
        let value = match init {
            Some(v) => v,
            None => {
                zeroes = vec![0u8; self.value_size];
                &zeroes
            }
        };
        let slot = owners.update(&key, value, BPF_NOEXIST).ok()?;
        Some(owners.slots.ptr(slot))
    }

    /// Drops `owner`'s value (`bpf_*_storage_delete`, or the owner going
    /// away); `NotFound` if it had none.
    pub fn remove(&self, owner: u64) -> Result<(), MapError> {
        lock_write(&self.owners).remove(&owner.to_le_bytes())
    }
}

impl MapImpl for LocalStorage {
    fn lookup_ptr(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        self.get(self.owner_of(key).ok()?)
    }

    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let owner = self.owner_of(key)?;
        let owners = lock_read(&self.owners);
        let slot = owners.get(&owner.to_le_bytes()).ok_or(MapError::NotFound)?;
        Ok(owners.slots.read(slot, self.value_size))
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let owner = self.owner_of(key)?;
        let flags = flags & !BPF_F_LOCK;
        lock_write(&self.owners)
            .update(&owner.to_le_bytes(), value, flags)
            .map(|_| ())
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.remove(self.owner_of(key)?)
    }

    /// Owners in id order; with 4-byte keys, owners whose id does not fit
    /// in 32 bits cannot be named and are skipped.
    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let owners = lock_read(&self.owners);
        let start = key.map(|k| self.owner_of(k)).transpose()?;
        let mut ids: Vec<u64> = owners
            .keys
            .keys()
            .filter_map(|k| <[u8; 8]>::try_from(&k[..]).ok().map(u64::from_le_bytes))
            .filter(|&id| self.key_size == 8 || id <= u32::MAX as u64)
            .collect();
        ids.sort_unstable();
        let next = match start.filter(|s| ids.binary_search(s).is_ok()) {
            None => ids.first(),
            Some(s) => ids.iter().find(|&&id| id > s),
        };
        Ok(next.map(|id| id.to_le_bytes()[..self.key_size].to_vec()))
    }

    fn len(&self) -> usize {
        lock_read(&self.owners).len()
    }

    fn memory_usage(&self) -> usize {
        lock_read(&self.owners).memory_usage()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `cgroup_storage` / `percpu_cgroup_storage`: one value (or one value per
/// CPU) per cgroup storage key.
pub struct CgroupStorage {
    value_size: usize,
    percpu: bool,
    ncpus: usize,
    /// Bytes of one entry: the value, or one 8-byte-aligned slot per CPU.
    entry_size: usize,
    entries: RwLock<KeyedSlots>,
}

impl CgroupStorage {
    pub fn new(def: &MapDef) -> Result<CgroupStorage, MapError> {
        check_create_flags(def, BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK)?;
        let percpu = def.map_type == MapType::PercpuCgroupStorage;
        if def.key_size != 8 && def.key_size != 16 {
            return Err(def_error(
                def,
                format!(
                    "key_size must be 8 (cgroup id) or 16 (struct bpf_cgroup_storage_key), got {}",
                    def.key_size
                ),
            ));
        }
        let max_value = if percpu {
            MAX_PERCPU_CGROUP_VALUE_SIZE
        } else {
            MAX_CGROUP_VALUE_SIZE
        };
        if def.value_size == 0 || def.value_size > max_value {
            return Err(def_error(
                def,
                format!("value_size must be 1..={max_value}, got {}", def.value_size),
            ));
        }
        if def.max_entries != 0 {
            return Err(def_error(
                def,
                format!(
                    "max_entries must be 0 (one entry per attached cgroup), got {}",
                    def.max_entries
                ),
            ));
        }
        let ncpus = if percpu { cpu::num_cpus() } else { 1 };
        let entry_size = if percpu {
            def.percpu_stride() * ncpus
        } else {
            def.value_size as usize
        };
        Ok(CgroupStorage {
            value_size: def.value_size as usize,
            percpu,
            ncpus,
            entry_size,
            entries: RwLock::new(KeyedSlots::new(entry_size, UNBOUNDED)),
        })
    }

    fn cpu_offset(&self, cpu: u32) -> usize {
        if self.percpu {
            (cpu as usize % self.ncpus) * self.value_size.next_multiple_of(8)
        } else {
            0
        }
    }

    /// `bpf_get_local_storage`: the storage for `key` (the running
    /// program's cgroup key), `cpu`'s slot for the per-CPU map, created
    /// zeroed on first use (the kernel creates it at attach time).
    pub fn get_or_create(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        if let Some(p) = self.lookup_ptr(key, cpu) {
            return Some(p);
        }
        let mut entries = lock_write(&self.entries);
        let slot = match entries.get(key) {
            Some(slot) => slot,
            None => entries
                .update(key, &vec![0u8; self.entry_size], BPF_NOEXIST)
                .ok()?,
        };
        // SAFETY: the offset is inside the entry.
        Some(unsafe { entries.slots.ptr(slot).add(self.cpu_offset(cpu)) })
    }
}

impl MapImpl for CgroupStorage {
    fn lookup_ptr(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        let entries = lock_read(&self.entries);
        let slot = entries.get(key)?;
        // SAFETY: the offset is inside the entry.
        Some(unsafe { entries.slots.ptr(slot).add(self.cpu_offset(cpu)) })
    }

    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let entries = lock_read(&self.entries);
        let slot = entries.get(key).ok_or(MapError::NotFound)?;
        Ok(entries.slots.read(slot, self.entry_size))
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let flags = flags & !BPF_F_LOCK;
        if flags & BPF_NOEXIST != 0 || flags > BPF_EXIST {
            return Err(MapError::invalid(format!(
                "cgroup storage update flags {flags:#x}: only BPF_ANY or BPF_EXIST apply"
            )));
        }
        lock_write(&self.entries)
            .update(key, value, flags)
            .map(|_| ())
    }

    fn update_from_program(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: u32,
    ) -> Result<(), MapError> {
        if !self.percpu {
            return self.update(key, value, flags);
        }
        let ptr = match flags {
            BPF_EXIST => self.lookup_ptr(key, cpu).ok_or(MapError::NotFound)?,
            _ => self.get_or_create(key, cpu).ok_or(MapError::NoSpace)?,
        };
        let len = value.len().min(self.value_size);
        // SAFETY: one CPU slot holds `value_size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), ptr.as_ptr(), len) };
        Ok(())
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::invalid(
            "cgroup storage lives as long as its cgroup attachment and cannot be deleted",
        ))
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        Ok(lock_read(&self.entries).next_key(key))
    }

    fn len(&self) -> usize {
        lock_read(&self.entries).len()
    }

    fn memory_usage(&self) -> usize {
        lock_read(&self.entries).memory_usage()
    }

    fn num_cpus(&self) -> usize {
        if self.percpu {
            self.ncpus
        } else {
            cpu::num_cpus()
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
