//! Map definitions: BTF-defined maps in `.maps`, legacy `maps` sections
//! (`bpf_map_def`, `bpf_load_map_def`, iproute2's `bpf_elf_map`) and the
//! global data sections libbpf turns into single-entry arrays.

use std::collections::HashMap;

use object::elf::{SHT_NOBITS, SHT_PROGBITS, STT_FUNC, STT_OBJECT};

use super::loader::{Elf, Symbol};
use super::{DataVar, ElfError, MapKind, MapSpec, Pinning};
use crate::btf::{Btf, BtfKind};
use crate::maps::{MapDef, MapType, BPF_F_MMAPABLE, BPF_F_RDONLY_PROG};

/// Largest global data section accepted: a bound against bogus `.bss`
/// sizes (the kernel's own limit for an array value is smaller still).
const MAX_DATA_SECTION: u64 = 64 << 20;

/// The maps of an object and how relocations find them.
pub(super) struct MapTable {
    pub specs: Vec<MapSpec>,
    /// `(section, offset)` of a map's definition → index in `specs`.
    by_definition: HashMap<(usize, u64), usize>,
    /// Global data section → index in `specs`.
    by_data_section: HashMap<usize, usize>,
    /// `.kconfig` extern name → (map index, offset).
    kconfig: HashMap<String, (usize, u32)>,
}

impl MapTable {
    /// The map defined at `offset` of `section` (legacy or BTF maps).
    pub fn by_definition(&self, section: usize, offset: u64) -> Option<usize> {
        self.by_definition.get(&(section, offset)).copied()
    }

    pub fn by_data_section(&self, section: usize) -> Option<usize> {
        self.by_data_section.get(&section).copied()
    }

    pub fn kconfig(&self, name: &str) -> Option<(usize, u32)> {
        self.kconfig.get(name).copied()
    }
}

fn regular(def: MapDef, section: &str) -> MapSpec {
    MapSpec {
        def,
        pinning: Pinning::None,
        numa_node: 0,
        kind: MapKind::Regular {
            section: section.to_string(),
        },
        initial_value: None,
        key_type: None,
        value_type: None,
        inner: None,
        prog_array_init: Vec::new(),
        map_in_map_init: Vec::new(),
    }
}

fn map_type(n: u32, name: &str, section: &str) -> Result<MapType, ElfError> {
    MapType::from_u32(n).ok_or_else(|| {
        ElfError::new(format!(
            "map '{name}' in section '{section}' has unknown map type {n}"
        ))
    })
}

pub(super) fn build(
    elf: &Elf<'_>,
    btf: Option<&Btf>,
    warnings: &mut Vec<String>,
) -> Result<MapTable, ElfError> {
    let mut table = MapTable {
        specs: Vec::new(),
        by_definition: HashMap::new(),
        by_data_section: HashMap::new(),
        kconfig: HashMap::new(),
    };
    let mut links = Vec::new();
    for (i, s) in elf.sections.iter().enumerate() {
        if s.name == "maps" || s.name.starts_with("maps/") {
            legacy_maps(elf, i, &mut table, &mut links)?;
        }
    }
    link_legacy_inner_maps(&mut table, &links);
    if let Some(i) = elf.section_index(".maps") {
        let btf = btf
            .ok_or_else(|| ElfError::new("section .maps needs BTF, but the object has no .BTF"))?;
        btf_maps(elf, btf, i, &mut table, warnings)?;
    }
    for (i, s) in elf.sections.iter().enumerate() {
        if is_data_section(&s.name) && matches!(s.sh_type, SHT_PROGBITS | SHT_NOBITS) && s.size > 0
        {
            data_map(elf, btf, i, &mut table)?;
        }
    }
    if let Some(btf) = btf {
        kconfig_map(btf, &mut table)?;
    }
    Ok(table)
}

fn is_data_section(name: &str) -> bool {
    [".data", ".rodata", ".bss"].iter().any(|p| {
        name == *p
            || name
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Symbols defined in section `index` (section symbols excluded), by offset.
fn section_symbols<'e>(elf: &'e Elf<'_>, index: usize) -> Vec<&'e Symbol> {
    elf.symbols_in(index).collect()
}

fn u32_at(data: &[u8], off: usize) -> u32 {
    data.get(off..off + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Legacy definitions: every map symbol of the section names one record;
/// the record size is the section size divided by the number of symbols,
/// as libbpf and iproute2 compute it.
/// How a legacy record names other maps: iproute2's `id` and `inner_id`,
/// or `bpf_load_map_def`'s `inner_map_idx`.
struct LegacyLink {
    spec: usize,
    id: u32,
    inner_id: u32,
    /// `bpf_load_map_def.inner_map_idx`.
    inner_idx: Option<u32>,
    /// `bpf_elf_map.inner_idx`: the slot this map takes in the maps of maps
    /// whose `inner_id` is this map's `id` (`u32::MAX`, iproute2's -1: none).
    slot: u32,
}

fn legacy_maps(
    elf: &Elf<'_>,
    index: usize,
    table: &mut MapTable,
    links: &mut Vec<LegacyLink>,
) -> Result<(), ElfError> {
    let sec = &elf.sections[index];
    let syms = section_symbols(elf, index);
    if syms.is_empty() {
        if sec.data.is_empty() {
            return Ok(());
        }
        return Err(ElfError::new(format!(
            "legacy maps section '{}' holds {} bytes but no map symbols",
            sec.name,
            sec.data.len()
        )));
    }
    let n = syms.len();
    if sec.data.is_empty() || !sec.data.len().is_multiple_of(n) {
        return Err(ElfError::new(format!(
            "legacy maps section '{}' is {} bytes, not a multiple of its {n} map symbols",
            sec.name,
            sec.data.len()
        )));
    }
    let rec = sec.data.len() / n;
    for sym in &syms {
        let off = sym.value as usize;
        if !sym.value.is_multiple_of(4) || off.checked_add(rec).is_none_or(|e| e > sec.data.len()) {
            return Err(ElfError::new(format!(
                "map symbol '{}' at offset {} of section '{}' does not start a {rec}-byte record",
                sym.name, sym.value, sec.name
            )));
        }
        let r = &sec.data[off..off + rec];
        let field = |i: usize| u32_at(r, i * 4);
        let mut def = MapDef::new(
            map_type(field(0), &sym.name, &sec.name)?,
            field(1),
            field(2),
            field(3),
        )
        .named(sym.name.clone());
        def.flags = field(4);
        let mut spec = regular(def, &sec.name);
        if rec >= 36 {
            // iproute2 struct bpf_elf_map: id, pinning, inner_id, inner_idx.
            spec.pinning = match field(6) {
                0 => Pinning::None,
                1 => Pinning::ObjectNs,
                2 => Pinning::GlobalNs,
                p => Pinning::Other(p),
            };
            links.push(LegacyLink {
                spec: table.specs.len(),
                id: field(5),
                inner_id: field(7),
                inner_idx: None,
                slot: field(8),
            });
        } else if rec >= 28 {
            // struct bpf_load_map_def: inner_map_idx, numa_node.
            spec.numa_node = field(6);
            links.push(LegacyLink {
                spec: table.specs.len(),
                id: 0,
                inner_id: 0,
                inner_idx: Some(field(5)),
                slot: u32::MAX,
            });
        }
        table
            .by_definition
            .insert((index, sym.value), table.specs.len());
        table.specs.push(spec);
    }
    Ok(())
}

/// Maps of maps take their inner template from another legacy record:
/// `inner_map_idx` counts legacy maps in file order, across sections.
fn link_legacy_inner_maps(table: &mut MapTable, links: &[LegacyLink]) {
    for l in links {
        if !table.specs[l.spec].def.map_type.is_map_of_maps() {
            continue;
        }
        // Legacy loaders create maps of maps with 4-byte (map id) values
        // whatever the record says.
        if table.specs[l.spec].def.value_size == 0 {
            table.specs[l.spec].def.value_size = 4;
        }
        let inner = match l.inner_idx {
            Some(idx) => links.get(idx as usize).map(|x| x.spec),
            None if l.inner_id != 0 => links.iter().find(|x| x.id == l.inner_id).map(|x| x.spec),
            None => None,
        };
        if let Some(i) = inner.filter(|&i| i != l.spec) {
            let inner_spec = table.specs[i].clone();
            let outer = &mut table.specs[l.spec];
            outer.def.inner = Some(Box::new(inner_spec.def.clone()));
            outer.inner = Some(Box::new(inner_spec));
        }
        // iproute2 puts each map with an id (and no inner_id of its own)
        // at slot inner_idx of the maps of maps whose inner_id is that id.
        if l.inner_id != 0 {
            let init: Vec<(u32, String)> = links
                .iter()
                .filter(|x| x.id == l.inner_id && x.inner_id == 0 && x.slot != u32::MAX)
                .filter(|x| x.spec != l.spec)
                .map(|x| (x.slot, table.specs[x.spec].def.name.clone()))
                .collect();
            table.specs[l.spec].map_in_map_init.extend(init);
        }
    }
}

/// An integer encoded as BTF maps encode them: `int (*name)[N]`, or an
/// enum whose only value is N (libbpf's `__ulong`).
fn btf_int(btf: &Btf, type_id: u32, map: &str, member: &str) -> Result<u64, ElfError> {
    let bad = || {
        ElfError::new(format!(
            "BTF map '{map}': member '{member}' is not encoded as __uint()"
        ))
    };
    let t = btf
        .get(btf.resolve(type_id).map_err(|e| ElfError::new(e.0))?)
        .map_err(|e| ElfError::new(e.0))?;
    match &t.kind {
        BtfKind::Ptr(target) => {
            let a = btf
                .get(btf.resolve(*target).map_err(|e| ElfError::new(e.0))?)
                .map_err(|e| ElfError::new(e.0))?;
            match a.kind {
                BtfKind::Array { len, .. } => Ok(len as u64),
                _ => Err(bad()),
            }
        }
        BtfKind::Enum { values, .. } if values.len() == 1 => Ok(values[0].1 as u64),
        _ => Err(bad()),
    }
}

/// The type a `__type(key, T)` member points to, and its size.
fn btf_pointee(btf: &Btf, type_id: u32, map: &str, member: &str) -> Result<(u32, u32), ElfError> {
    let t = btf
        .get(btf.resolve(type_id).map_err(|e| ElfError::new(e.0))?)
        .map_err(|e| ElfError::new(e.0))?;
    let BtfKind::Ptr(target) = t.kind else {
        return Err(ElfError::new(format!(
            "BTF map '{map}': member '{member}' is not a pointer (__type())"
        )));
    };
    let size = btf
        .size_of(target)
        .map_err(|e| ElfError::new(format!("BTF map '{map}': {member}: {e}")))?;
    Ok((target, size))
}

/// Where a map's `values` initialiser array lies, and what it holds.
struct ValuesMember {
    byte_offset: u32,
}

/// Parses one map definition struct (`struct { __uint(type, ...); ... }`).
fn btf_map_def(
    btf: &Btf,
    struct_id: u32,
    name: &str,
    section: &str,
    depth: usize,
    warnings: &mut Vec<String>,
) -> Result<(MapSpec, Option<ValuesMember>), ElfError> {
    let members = btf
        .members(struct_id)
        .map_err(|e| ElfError::new(format!("BTF map '{name}': {e}")))?
        .to_vec();
    let mut type_num = None;
    let mut def = MapDef::new(MapType::Array, 0, 0, 0).named(name);
    let mut spec_pinning = Pinning::None;
    let mut numa_node = 0;
    let (mut key_type, mut value_type) = (None, None);
    let mut inner = None;
    let mut values = None;
    let mut value_size_set = false;
    for m in &members {
        let int = || btf_int(btf, m.type_id, name, &m.name);
        match m.name.as_str() {
            "type" => type_num = Some(int()? as u32),
            "max_entries" => def.max_entries = int()? as u32,
            "map_flags" => def.flags = int()? as u32,
            "numa_node" => numa_node = int()? as u32,
            "map_extra" => def.map_extra = int()?,
            "key_size" => def.key_size = int()? as u32,
            "value_size" => {
                def.value_size = int()? as u32;
                value_size_set = true;
            }
            "pinning" => {
                spec_pinning = match int()? as u32 {
                    0 => Pinning::None,
                    1 => Pinning::ByName,
                    p => Pinning::Other(p),
                }
            }
            "key" => {
                let (t, size) = btf_pointee(btf, m.type_id, name, "key")?;
                key_type = Some(t);
                def.key_size = size;
            }
            "value" => {
                let (t, size) = btf_pointee(btf, m.type_id, name, "value")?;
                value_type = Some(t);
                def.value_size = size;
                value_size_set = true;
            }
            "values" => {
                let at = btf
                    .get(btf.resolve(m.type_id).map_err(|e| ElfError::new(e.0))?)
                    .map_err(|e| ElfError::new(e.0))?;
                let BtfKind::Array { elem, .. } = at.kind else {
                    return Err(ElfError::new(format!(
                        "BTF map '{name}': 'values' is not an array"
                    )));
                };
                let pt = btf
                    .get(btf.resolve(elem).map_err(|e| ElfError::new(e.0))?)
                    .map_err(|e| ElfError::new(e.0))?;
                let BtfKind::Ptr(target) = pt.kind else {
                    return Err(ElfError::new(format!(
                        "BTF map '{name}': 'values' is not an array of pointers"
                    )));
                };
                let target = btf.resolve(target).map_err(|e| ElfError::new(e.0))?;
                let is_struct = matches!(
                    btf.get(target).map_err(|e| ElfError::new(e.0))?.kind,
                    BtfKind::Struct { .. }
                );
                if is_struct {
                    if depth > 0 {
                        return Err(ElfError::new(format!(
                            "BTF map '{name}': inner maps cannot themselves hold maps"
                        )));
                    }
                    let (spec, _) = btf_map_def(
                        btf,
                        target,
                        &format!("{name}.inner"),
                        section,
                        depth + 1,
                        warnings,
                    )?;
                    inner = Some(spec);
                }
                values = Some(ValuesMember {
                    byte_offset: m.bit_offset / 8,
                });
            }
            other => warnings.push(format!(
                "BTF map '{name}': unknown member '{other}' ignored"
            )),
        }
    }
    let Some(type_num) = type_num else {
        return Err(ElfError::new(format!(
            "BTF map '{name}' in section '{section}' has no 'type' member"
        )));
    };
    def.map_type = map_type(type_num, name, section)?;
    match def.map_type {
        // Ring buffers have no keys or values of their own; a declared
        // value type only documents the records (cilium/ebpf objects).
        MapType::Ringbuf | MapType::UserRingbuf => {
            def.key_size = 0;
            def.value_size = 0;
        }
        // Perf event arrays hold CPU indices and event fds, whatever the
        // record type declared (libbpf and cilium/ebpf fix these to 4).
        MapType::PerfEventArray => {
            def.key_size = 4;
            def.value_size = 4;
        }
        _ => {}
    }
    if values.is_some() || def.map_type.is_map_of_maps() {
        if value_size_set && def.value_size != 4 {
            return Err(ElfError::new(format!(
                "BTF map '{name}': value_size {} of a map holding maps or programs must be 4",
                def.value_size
            )));
        }
        if values.is_some() {
            def.value_size = 4;
        }
    }
    if def.map_type.is_map_of_maps() && inner.is_none() {
        return Err(ElfError::new(format!(
            "BTF map '{name}' holds maps but has no 'values' inner map definition"
        )));
    }
    let inner: Option<MapSpec> = inner;
    def.inner = inner.as_ref().map(|i| Box::new(i.def.clone()));
    let mut spec = regular(def, section);
    spec.pinning = spec_pinning;
    spec.numa_node = numa_node;
    spec.key_type = key_type;
    spec.value_type = value_type;
    spec.inner = inner.map(Box::new);
    Ok((spec, values))
}

fn btf_maps(
    elf: &Elf<'_>,
    btf: &Btf,
    index: usize,
    table: &mut MapTable,
    warnings: &mut Vec<String>,
) -> Result<(), ElfError> {
    let sec = &elf.sections[index];
    let Some(ds) = btf.find(".maps", |k| matches!(k, BtfKind::Datasec { .. })) else {
        return Err(ElfError::new("section .maps has no DATASEC '.maps' in BTF"));
    };
    let BtfKind::Datasec { vars, .. } = &btf.get(ds).map_err(|e| ElfError::new(e.0))?.kind else {
        return Err(ElfError::new("BTF '.maps' is not a DATASEC"));
    };
    let syms = section_symbols(elf, index);
    // (map index, start, end, values member) to place initialisers.
    let mut placed = Vec::new();
    for v in vars {
        let var = btf.get(v.type_id).map_err(|e| ElfError::new(e.0))?;
        let BtfKind::Var { type_id, .. } = var.kind else {
            return Err(ElfError::new(format!(
                "DATASEC .maps entry {} is a {}, not a VAR",
                v.type_id,
                var.kind.kind_name()
            )));
        };
        let name = var.name.clone();
        // clang leaves offsets in object files to the symbol table.
        let sym = syms.iter().find(|s| s.name == name);
        let offset = sym.map_or(v.offset as u64, |s| s.value);
        let size = sym.map_or(v.size as u64, |s| s.size.max(v.size as u64));
        let (spec, values) = btf_map_def(btf, type_id, &name, &sec.name, 0, warnings)?;
        let idx = table.specs.len();
        table.by_definition.insert((index, offset), idx);
        placed.push((idx, offset, offset.saturating_add(size), values));
        table.specs.push(spec);
    }
    // Initialisers: relocations inside a map's `values` array.
    for r in elf.relocs.get(&index).map(Vec::as_slice).unwrap_or(&[]) {
        let sym = elf.reloc_symbol(r, index)?;
        let Some(&(idx, start, _, Some(ref values))) =
            placed.iter().find(|p| (p.1..p.2).contains(&r.offset))
        else {
            return Err(ElfError::new(format!(
                "relocation against '{}' at offset {} of .maps is not inside a map's 'values'",
                sym.name, r.offset
            )));
        };
        let rel = r.offset - start;
        let base = values.byte_offset as u64;
        if rel < base || !(rel - base).is_multiple_of(8) {
            return Err(ElfError::new(format!(
                "relocation against '{}' at offset {} of .maps is not aligned to a 'values' slot",
                sym.name, r.offset
            )));
        }
        let slot = ((rel - base) / 8) as u32;
        let spec = &mut table.specs[idx];
        if spec.def.map_type == MapType::ProgArray {
            if sym.st_type != STT_FUNC {
                return Err(ElfError::new(format!(
                    "program array '{}' slot {slot} refers to '{}', which is not a function",
                    spec.def.name, sym.name
                )));
            }
            spec.prog_array_init.push((slot, sym.name.clone()));
        } else if spec.def.map_type.is_map_of_maps() {
            if sym.shndx != Some(index) {
                return Err(ElfError::new(format!(
                    "map of maps '{}' slot {slot} refers to '{}', which is not a map in .maps",
                    spec.def.name, sym.name
                )));
            }
            spec.map_in_map_init.push((slot, sym.name.clone()));
        } else {
            return Err(ElfError::new(format!(
                "map '{}' of type {} cannot be initialised with '{}'",
                spec.def.name, spec.def.map_type, sym.name
            )));
        }
    }
    Ok(())
}

/// Variables of a data section: from its BTF DATASEC when there is one
/// (offsets from the symbol table, as libbpf fixes them up), else from
/// the object symbols.
fn data_vars(elf: &Elf<'_>, btf: Option<&Btf>, index: usize) -> Vec<DataVar> {
    let sec = &elf.sections[index];
    let syms = section_symbols(elf, index);
    let datasec = btf.and_then(|b| {
        let id = b.find(&sec.name, |k| matches!(k, BtfKind::Datasec { .. }))?;
        match &b.get(id).ok()?.kind {
            BtfKind::Datasec { vars, .. } => Some((b, vars.clone())),
            _ => None,
        }
    });
    if let Some((b, vars)) = datasec {
        let mut out = Vec::new();
        for v in vars {
            let Ok(t) = b.get(v.type_id) else { continue };
            let BtfKind::Var { type_id, .. } = t.kind else {
                continue;
            };
            let sym = syms.iter().find(|s| s.name == t.name);
            out.push(DataVar {
                name: t.name.clone(),
                offset: sym.map_or(v.offset, |s| s.value as u32),
                size: v.size,
                type_id: Some(type_id),
            });
        }
        return out;
    }
    syms.iter()
        .filter(|s| s.st_type == STT_OBJECT)
        .map(|s| DataVar {
            name: s.name.clone(),
            offset: s.value as u32,
            size: s.size as u32,
            type_id: None,
        })
        .collect()
}

fn data_map(
    elf: &Elf<'_>,
    btf: Option<&Btf>,
    index: usize,
    table: &mut MapTable,
) -> Result<(), ElfError> {
    let sec = &elf.sections[index];
    if sec.size > MAX_DATA_SECTION {
        return Err(ElfError::new(format!(
            "global data section '{}' is {} bytes; at most {MAX_DATA_SECTION} are supported",
            sec.name, sec.size
        )));
    }
    let mut def = MapDef::new(MapType::Array, 4, sec.size as u32, 1).named(sec.name.clone());
    def.flags = BPF_F_MMAPABLE;
    if sec.name.starts_with(".rodata") {
        def.flags |= BPF_F_RDONLY_PROG;
    }
    let initial = if sec.sh_type == SHT_NOBITS {
        vec![0; sec.size as usize]
    } else {
        sec.data.to_vec()
    };
    let mut spec = regular(def, &sec.name);
    spec.kind = MapKind::GlobalData {
        section: sec.name.clone(),
        vars: data_vars(elf, btf, index),
    };
    spec.initial_value = Some(initial);
    if let Some(b) = btf {
        spec.value_type = b.find(&sec.name, |k| matches!(k, BtfKind::Datasec { .. }));
    }
    table.by_data_section.insert(index, table.specs.len());
    table.specs.push(spec);
    Ok(())
}

/// `extern ... __kconfig` variables: there is no kernel configuration in
/// user space, so they live zero-initialised in a `.kconfig` map that
/// users may fill before loading.
fn kconfig_map(btf: &Btf, table: &mut MapTable) -> Result<(), ElfError> {
    let Some(ds) = btf.find(".kconfig", |k| matches!(k, BtfKind::Datasec { .. })) else {
        return Ok(());
    };
    let BtfKind::Datasec { vars, .. } = &btf.get(ds).map_err(|e| ElfError::new(e.0))?.kind else {
        return Ok(());
    };
    let mut offset = 0u32;
    let mut out = Vec::new();
    for v in vars {
        let t = btf.get(v.type_id).map_err(|e| ElfError::new(e.0))?;
        let BtfKind::Var { type_id, .. } = t.kind else {
            continue;
        };
        let size = btf
            .size_of(type_id)
            .map_err(|e| ElfError::new(format!(".kconfig extern '{}': {e}", t.name)))?;
        let align = size.clamp(1, 8).next_power_of_two();
        offset = offset.next_multiple_of(align);
        out.push(DataVar {
            name: t.name.clone(),
            offset,
            size,
            type_id: Some(type_id),
        });
        offset = offset
            .checked_add(size)
            .filter(|&end| end as u64 <= MAX_DATA_SECTION)
            .ok_or_else(|| {
                ElfError::new(format!(
                    ".kconfig externs take more than {MAX_DATA_SECTION} bytes ('{}' is {size})",
                    t.name
                ))
            })?;
    }
    if out.is_empty() {
        return Ok(());
    }
    let idx = table.specs.len();
    for v in &out {
        table.kconfig.insert(v.name.clone(), (idx, v.offset));
    }
    let mut def = MapDef::new(MapType::Array, 4, offset.max(1), 1).named(".kconfig");
    def.flags = BPF_F_MMAPABLE | BPF_F_RDONLY_PROG;
    let mut spec = regular(def, ".kconfig");
    spec.initial_value = Some(vec![0; offset.max(1) as usize]);
    spec.kind = MapKind::GlobalData {
        section: ".kconfig".into(),
        vars: out,
    };
    spec.value_type = Some(ds);
    table.specs.push(spec);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::loader::Section;

    /// An object holding one legacy `maps` section with records of
    /// `rec` bytes, one per name.
    fn legacy(rec: usize, records: &[(&str, &[u32])]) -> Result<MapTable, ElfError> {
        let mut data = Vec::new();
        for (_, fields) in records {
            let mut r: Vec<u8> = fields.iter().flat_map(|f| f.to_le_bytes()).collect();
            r.resize(rec, 0);
            data.extend(r);
        }
        let elf = Elf {
            sections: vec![
                Section {
                    name: String::new(),
                    sh_type: 0,
                    flags: 0,
                    data: &[],
                    size: 0,
                },
                Section {
                    name: "maps".into(),
                    sh_type: SHT_PROGBITS,
                    flags: 0,
                    data: &data,
                    size: data.len() as u64,
                },
            ],
            symbols: records
                .iter()
                .enumerate()
                .map(|(i, (name, _))| Symbol {
                    name: name.to_string(),
                    shndx: Some(1),
                    value: (i * rec) as u64,
                    size: 0,
                    st_type: STT_OBJECT,
                })
                .collect(),
            relocs: HashMap::new(),
            by_section: HashMap::from([(1, (0..records.len()).collect())]),
        };
        build(&elf, None, &mut Vec::new())
    }

    #[test]
    fn legacy_record_sizes() {
        // struct bpf_map_def: 20 bytes.
        let t = legacy(20, &[("h", &[1, 4, 8, 16, 1])]).unwrap();
        let d = &t.specs[0].def;
        assert_eq!(
            (
                d.name.as_str(),
                d.map_type,
                d.key_size,
                d.value_size,
                d.max_entries,
                d.flags
            ),
            ("h", MapType::Hash, 4, 8, 16, 1)
        );
        assert_eq!(t.by_definition(1, 0), Some(0));
        // bpf_load_map_def: inner_map_idx and numa_node.
        let t = legacy(
            28,
            &[
                ("outer", &[12, 4, 4, 2, 0, 1, 0]),
                ("inner", &[2, 4, 8, 1, 0, 0, 3]),
            ],
        )
        .unwrap();
        assert_eq!(t.specs[0].inner.as_ref().unwrap().def.name, "inner");
        assert_eq!(t.specs[0].def.inner.as_ref().unwrap().value_size, 8);
        assert_eq!(t.specs[1].numa_node, 3);
        assert_eq!(t.by_definition(1, 28), Some(1));
        // iproute2 bpf_elf_map: id, pinning, inner_id, inner_idx.
        let t = legacy(
            36,
            &[
                ("map_inner", &[2, 4, 4, 1, 0, 42, 2, 0, 0]),
                ("map_outer", &[12, 4, 4, 1, 0, 0, 2, 42, u32::MAX]),
            ],
        )
        .unwrap();
        assert_eq!(t.specs[0].pinning, Pinning::GlobalNs);
        let outer = &t.specs[1];
        assert_eq!(outer.inner.as_ref().unwrap().def.name, "map_inner");
        assert_eq!(outer.map_in_map_init, [(0, "map_inner".to_string())]);
    }

    #[test]
    fn legacy_errors_name_the_map() {
        let e = legacy(20, &[("weird", &[999, 4, 4, 1])]).err().unwrap();
        assert!(
            e.message.contains("'weird'") && e.message.contains("999"),
            "{e}"
        );
    }
}
