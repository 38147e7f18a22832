//! `BPF_MAP_TYPE_ARRAY_OF_MAPS`: an array whose values are other maps.
//!
//! The user view of a value is the inner map's id (u32); updates resolve the
//! id with [`Map::by_id`] and check the map against the outer map's inner
//! definition as the kernel does (`bpf_map_meta_equal`). The outer map
//! holds an `Arc` to each inner map, keeping it alive while referenced.
//! Programs get the inner map itself with [`ArrayOfMaps::lookup_map`].

use std::any::Any;
use std::sync::{Arc, RwLock};

use super::reference_maps::{check_create_flags, check_fd_array_flags, def_error, index_key};
use super::reference_maps::{next_index, LazyTable, BPF_F_ACCESS_MASK, BPF_F_NUMA_NODE};
use super::{Map, MapDef, MapError, MapImpl, MapType, BPF_F_INNER_MAP};

/// Checks the parts of an outer map's definition both kinds share and
/// returns its inner definition.
pub(crate) fn check_outer_def(def: &MapDef) -> Result<&MapDef, MapError> {
    if def.value_size != 4 {
        return Err(def_error(
            def,
            format!(
                "values are u32 map ids: value_size must be 4, got {}",
                def.value_size
            ),
        ));
    }
    if def.max_entries == 0 {
        return Err(def_error(def, "max_entries must be positive"));
    }
    let inner = def
        .inner
        .as_deref()
        .ok_or_else(|| def_error(def, "an inner map definition is required"))?;
    if inner.map_type.is_map_of_maps() {
        return Err(def_error(
            def,
            "an inner map cannot itself be a map of maps",
        ));
    }
    if matches!(
        inner.map_type,
        MapType::ProgArray
            | MapType::StructOps
            | MapType::CgroupStorage
            | MapType::PercpuCgroupStorage
    ) {
        return Err(def_error(
            def,
            format!("a {} cannot be an inner map", inner.map_type),
        ));
    }
    Ok(inner)
}

/// The map with id `value` (u32 little-endian) if it matches `inner`.
/// Type, key size, value size and flags must be equal; for array inner
/// maps, max_entries too unless the inner definition has `BPF_F_INNER_MAP`.
pub(crate) fn resolve_inner(
    outer: &MapDef,
    inner: &MapDef,
    value: &[u8],
) -> Result<Arc<Map>, MapError> {
    let id = u32::from_le_bytes(
        value
            .try_into()
            .map_err(|_| MapError::invalid(format!("map ids are 4 bytes, got {}", value.len())))?,
    );
    let map =
        Map::by_id(id).ok_or_else(|| MapError::invalid(format!("no live map has id {id}")))?;
    let got = map.def();
    let mismatch = |what: &str, want: String, have: String| {
        Err(MapError::invalid(format!(
            "map {id} ('{}') cannot be stored in {} '{}': its {what} is {have}, the inner map definition says {want}",
            got.name, outer.map_type, outer.name
        )))
    };
    if got.map_type != inner.map_type {
        return mismatch("type", inner.map_type.to_string(), got.map_type.to_string());
    }
    if got.key_size != inner.key_size {
        return mismatch(
            "key_size",
            inner.key_size.to_string(),
            got.key_size.to_string(),
        );
    }
    if got.value_size != inner.value_size {
        return mismatch(
            "value_size",
            inner.value_size.to_string(),
            got.value_size.to_string(),
        );
    }
    if got.flags != inner.flags {
        return mismatch(
            "map_flags",
            format!("{:#x}", inner.flags),
            format!("{:#x}", got.flags),
        );
    }
    let array_like = matches!(inner.map_type, MapType::Array | MapType::PercpuArray);
    if array_like && inner.flags & BPF_F_INNER_MAP == 0 && got.max_entries != inner.max_entries {
        return mismatch(
            "max_entries",
            format!(
                "{} (set BPF_F_INNER_MAP to allow other sizes)",
                inner.max_entries
            ),
            got.max_entries.to_string(),
        );
    }
    Ok(map)
}

/// An array of maps.
pub struct ArrayOfMaps {
    def: MapDef,
    inner: MapDef,
    /// Slots are allocated as they are first set.
    slots: LazyTable<RwLock<Option<Arc<Map>>>>,
}

impl ArrayOfMaps {
    pub fn new(def: &MapDef) -> Result<ArrayOfMaps, MapError> {
        check_create_flags(def, BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK)?;
        let inner = check_outer_def(def)?.clone();
        if def.key_size != 4 {
            return Err(def_error(
                def,
                format!("key_size must be 4, got {}", def.key_size),
            ));
        }
        Ok(ArrayOfMaps {
            def: def.clone(),
            inner,
            slots: LazyTable::new(def.max_entries),
        })
    }

    /// The index of `key`; `TooBig` when out of range.
    fn index(&self, key: &[u8]) -> Result<u32, MapError> {
        let index = index_key(key)?;
        if index >= self.slots.len() {
            return Err(MapError::TooBig);
        }
        Ok(index)
    }

    /// The inner map at `key` (a u32 index), for the program-side lookup.
    pub fn lookup_map(&self, key: &[u8]) -> Option<Arc<Map>> {
        let slot = self.slots.get(index_key(key).ok()?)?;
        slot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stores `map` at `index` after checking it against the inner definition.
    pub fn set_map(&self, index: u32, map: &Arc<Map>) -> Result<(), MapError> {
        self.update(&index.to_le_bytes(), &map.id().to_le_bytes(), 0)
    }
}

impl MapImpl for ArrayOfMaps {
    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.lookup_map(key)
            .map(|m| m.id().to_le_bytes().to_vec())
            .ok_or(MapError::NotFound)
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        check_fd_array_flags(flags)?;
        let index = self.index(key)?;
        let map = resolve_inner(&self.def, &self.inner, value)?;
        let slot = self.slots.get_or_alloc(index).ok_or(MapError::TooBig)?;
        let old = slot.write().unwrap_or_else(|e| e.into_inner()).replace(map);
        drop(old);
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let slot = self.slots.get(self.index(key)?).ok_or(MapError::NotFound)?;
        let old = slot.write().unwrap_or_else(|e| e.into_inner()).take();
        old.map(drop).ok_or(MapError::NotFound)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        next_index(key, self.def.max_entries)
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
