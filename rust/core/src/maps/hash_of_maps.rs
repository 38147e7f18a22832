//! `BPF_MAP_TYPE_HASH_OF_MAPS`: a hash map whose values are other maps.
//!
//! Same value rules as the array of maps (see `array_of_maps.rs`), with
//! hash-map keys and `BPF_NOEXIST`/`BPF_EXIST` semantics.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use super::array_of_maps::{check_outer_def, resolve_inner};
use super::reference_maps::{check_create_flags, check_exist_flags, check_update_flags, def_error};
use super::reference_maps::{BPF_F_ACCESS_MASK, BPF_F_NUMA_NODE};
use super::{Map, MapDef, MapError, MapImpl, BPF_F_NO_PREALLOC};

/// A hash of maps (ordered by key, so iteration is stable).
pub struct HashOfMaps {
    def: MapDef,
    inner: MapDef,
    entries: RwLock<BTreeMap<Box<[u8]>, Arc<Map>>>,
}

impl HashOfMaps {
    pub fn new(def: &MapDef) -> Result<HashOfMaps, MapError> {
        check_create_flags(def, BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK)?;
        let inner = check_outer_def(def)?.clone();
        if def.key_size == 0 || def.key_size > 512 {
            return Err(def_error(
                def,
                format!("key_size must be 1..=512, got {}", def.key_size),
            ));
        }
        Ok(HashOfMaps {
            def: def.clone(),
            inner,
            entries: RwLock::new(BTreeMap::new()),
        })
    }

    /// The inner map stored for `key`, for the program-side lookup.
    pub fn lookup_map(&self, key: &[u8]) -> Option<Arc<Map>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Stores `map` for `key` after checking it against the inner definition.
    pub fn set_map(&self, key: &[u8], map: &Arc<Map>, flags: u64) -> Result<(), MapError> {
        if key.len() != self.def.key_size as usize {
            return Err(MapError::invalid(format!(
                "keys are {} bytes, got {}",
                self.def.key_size,
                key.len()
            )));
        }
        self.update(key, &map.id().to_le_bytes(), flags)
    }
}

impl MapImpl for HashOfMaps {
    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.lookup_map(key)
            .map(|m| m.id().to_le_bytes().to_vec())
            .ok_or(MapError::NotFound)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        check_update_flags(flags)?;
        let map = resolve_inner(&self.def, &self.inner, value)?;
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let present = entries.contains_key(key);
        check_exist_flags(flags, present)?;
        if !present && entries.len() >= self.def.max_entries as usize {
            return Err(MapError::TooBig);
        }
        let old = entries.insert(key.into(), map);
        drop(entries);
        drop(old);
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let old = self
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        old.map(drop).ok_or(MapError::NotFound)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let next = match key.filter(|k| entries.contains_key(*k)) {
            None => entries.keys().next(),
            Some(k) => entries
                .range::<[u8], _>((Bound::Excluded(k), Bound::Unbounded))
                .next()
                .map(|(k, _)| k),
        };
        Ok(next.map(|k| k.to_vec()))
    }

    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn memory_usage(&self) -> usize {
        self.len() * (self.def.key_size as usize + 48)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
