//! `BPF_MAP_TYPE_PROG_ARRAY`: the jump table of `bpf_tail_call`.
//!
//! Each slot holds a loaded program, kept opaque here (the core crate does
//! not know the engines' program types) as `Arc<dyn Any + Send + Sync>`,
//! with the program's id for the user view. User lookups return that id;
//! programs are placed with [`ProgArray::set`], not with raw bytes.

use std::any::Any;
use std::sync::{Arc, RwLock};

use super::reference_maps::{check_create_flags, def_error, index_key, next_index, LazyTable};
use super::reference_maps::{BPF_F_ACCESS_MASK, BPF_F_NUMA_NODE};
use super::{MapDef, MapError, MapImpl};

/// A program stored in a slot, as the engines hand it over.
pub type ProgObject = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
struct Entry {
    prog: ProgObject,
    id: u32,
}

/// A program array. Each slot has its own lock, so a tail call (a read of
/// one slot) never waits for updates of other slots or other callers.
/// Slots are allocated as they are first set.
pub struct ProgArray {
    slots: LazyTable<RwLock<Option<Entry>>>,
}

impl ProgArray {
    pub fn new(def: &MapDef) -> Result<ProgArray, MapError> {
        check_create_flags(def, BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK)?;
        if def.key_size != 4 || def.value_size != 4 {
            return Err(def_error(
                def,
                format!(
                    "keys and values must be 4 bytes, got key_size {} and value_size {}",
                    def.key_size, def.value_size
                ),
            ));
        }
        if def.max_entries == 0 {
            return Err(def_error(def, "max_entries must be positive"));
        }
        Ok(ProgArray {
            slots: LazyTable::new(def.max_entries),
        })
    }

    fn check_index(&self, index: u32) -> Result<(), MapError> {
        if index >= self.slots.len() {
            return Err(MapError::TooBig);
        }
        Ok(())
    }

    /// Places `prog` (whose id is `prog_id`) at `index`, replacing any
    /// program there; `TooBig` for an index out of range.
    pub fn set(&self, index: u32, prog: ProgObject, prog_id: u32) -> Result<(), MapError> {
        self.check_index(index)?;
        let slot = self.slots.get_or_alloc(index).ok_or(MapError::TooBig)?;
        let old = slot
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(Entry { prog, id: prog_id });
        // The old program is released outside the lock.
        drop(old);
        Ok(())
    }

    /// The program at `index`, if any (the tail-call path).
    #[inline]
    pub fn get(&self, index: u32) -> Option<ProgObject> {
        let slot = self.slots.get(index)?;
        let guard = slot.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|e| e.prog.clone())
    }

    /// The id of the program at `index`, if any.
    pub fn prog_id(&self, index: u32) -> Option<u32> {
        let slot = self.slots.get(index)?;
        let guard = slot.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|e| e.id)
    }

    /// Empties `index`; `NotFound` if it held no program.
    pub fn clear(&self, index: u32) -> Result<(), MapError> {
        self.check_index(index)?;
        let slot = self.slots.get(index).ok_or(MapError::NotFound)?;
        let old = slot.write().unwrap_or_else(|e| e.into_inner()).take();
        old.map(drop).ok_or(MapError::NotFound)
    }

    /// Empties every slot and returns how many held a program (what the
    /// kernel does when the last user reference to the array goes: it
    /// breaks the cycle of programs holding the array that holds them).
    pub fn clear_all(&self) -> usize {
        self.slots
            .allocated()
            .filter(|(_, s)| {
                s.write()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .is_some()
            })
            .count()
    }

    pub fn max_entries(&self) -> u32 {
        self.slots.len()
    }
}

impl MapImpl for ProgArray {
    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let id = self.prog_id(index_key(key)?).ok_or(MapError::NotFound)?;
        Ok(id.to_le_bytes().to_vec())
    }

    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::unsupported(
            "a program array holds programs: set a program, not bytes",
        ))
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.clear(index_key(key)?)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        next_index(key, self.max_entries())
    }

    fn len(&self) -> usize {
        self.slots
            .allocated()
            .filter(|(_, s)| s.read().unwrap_or_else(|e| e.into_inner()).is_some())
            .count()
    }

    fn memory_usage(&self) -> usize {
        self.slots.memory_usage()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
