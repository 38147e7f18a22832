//! Bringing an ELF object's maps to life, as libbpf's `bpf_object__load`
//! does before it loads the programs: create (or reuse pinned) maps, give
//! global data its initial contents, fill maps of maps from their `.maps`
//! initialisers, and, once programs are loaded, program arrays.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::elf::{MapSpec, Object, Pinning};
use crate::maps::array_of_maps::ArrayOfMaps;
use crate::maps::hash_of_maps::HashOfMaps;
use crate::maps::prog_array::ProgArray;
use crate::maps::{Map, MapError, MapType, BPF_ANY};

use super::LoadedProgram;

/// The maps of an object, in index order, and the loader's warnings.
pub type CreatedMaps = (Vec<Arc<Map>>, Vec<String>);
/// A map error and the name of the map it is about.
pub type NamedMapError = (String, MapError);

/// Creates every map `obj` asks for, in order (the index of a map is the
/// index programs use in `lddw map_idx`). Maps pinned by name are opened
/// at `pin_root/<name>` (created there if absent, reused if present, as
/// libbpf reuses pinned maps); a pinned map is required to have a
/// `pin_root`.
///
/// Returns the maps and warnings (a map that asks to be pinned but whose
/// type cannot live in a file is created unpinned, with a warning); an
/// error names the map it is about.
pub fn create_maps(obj: &Object, pin_root: Option<&Path>) -> Result<CreatedMaps, NamedMapError> {
    let mut maps = Vec::with_capacity(obj.maps.len());
    let mut warnings = Vec::new();
    for spec in &obj.maps {
        let named = |e: MapError| (spec.def.name.clone(), e);
        let map = match create_map(spec, pin_root) {
            Err(MapError::Unsupported(why)) if spec.pinning != Pinning::None => {
                warnings.push(format!("map '{}' is not pinned: {why}", spec.def.name));
                let unpinned = MapSpec {
                    pinning: Pinning::None,
                    ..spec.clone()
                };
                create_map(&unpinned, None).map_err(named)?
            }
            r => r.map_err(named)?,
        };
        maps.push(map);
    }
    for (spec, outer) in obj.maps.iter().zip(&maps) {
        for (slot, inner_name) in &spec.map_in_map_init {
            let inner = obj.map_index(inner_name).map(|i| &maps[i]).ok_or_else(|| {
                (
                    spec.def.name.clone(),
                    MapError::invalid(format!(
                        "slot {slot} names map '{inner_name}', which the object does not define"
                    )),
                )
            })?;
            let set = if let Some(a) = outer.downcast::<ArrayOfMaps>() {
                a.set_map(*slot, inner)
            } else if let Some(h) = outer.downcast::<HashOfMaps>() {
                h.set_map(&slot.to_le_bytes(), inner, BPF_ANY)
            } else {
                Ok(())
            };
            set.map_err(|e| (spec.def.name.clone(), e))?;
        }
    }
    Ok((maps, warnings))
}

fn create_map(spec: &MapSpec, pin_root: Option<&Path>) -> Result<Arc<Map>, MapError> {
    let map = match spec.pinning {
        Pinning::None => Map::create(spec.def.clone())?,
        _ => {
            let root = pin_root.ok_or_else(|| {
                MapError::invalid(format!(
                    "map '{}' is pinned by name but no pin directory was given",
                    spec.def.name
                ))
            })?;
            std::fs::create_dir_all(root).map_err(|e| {
                MapError::Io(format!(
                    "cannot create pin directory {}: {e}",
                    root.display()
                ))
            })?;
            let path = root.join(&spec.def.name);
            let existed = path.exists();
            let map = Map::open_pinned(spec.def.clone(), &path)?;
            if existed {
                return Ok(map);
            }
            map
        }
    };
    if let Some(init) = &spec.initial_value {
        if spec.def.map_type == MapType::Array && !init.is_empty() {
            map.update(&0u32.to_le_bytes(), init, BPF_ANY)?;
        }
    }
    Ok(map)
}

/// Fills the program arrays of `obj` from their `.maps` initialisers with
/// the loaded programs, by name.
pub fn init_prog_arrays(
    obj: &Object,
    maps: &[Arc<Map>],
    programs: &HashMap<String, (Arc<LoadedProgram>, u32)>,
) -> Result<(), MapError> {
    for (spec, map) in obj.maps.iter().zip(maps) {
        if spec.prog_array_init.is_empty() {
            continue;
        }
        let array = map.downcast::<ProgArray>().ok_or_else(|| {
            MapError::invalid(format!(
                "map '{}' has program initialisers but is a {}",
                spec.def.name,
                map.map_type()
            ))
        })?;
        for (slot, name) in &spec.prog_array_init {
            let (prog, id) = programs.get(name).ok_or_else(|| {
                MapError::invalid(format!(
                    "program array '{}' slot {slot} names program '{name}', which is not loaded",
                    spec.def.name
                ))
            })?;
            array.set(*slot, prog.clone(), *id)?;
        }
    }
    Ok(())
}
