//! Loading ELF objects compiled with `clang -target bpf`, as libbpf does.
//!
//! [`Object::parse`] reads a relocatable 64-bit little-endian BPF object and
//! returns its programs (relocated, with their BPF-to-BPF subprograms
//! appended), its maps (BTF-defined `.maps`, legacy `maps` sections, and the
//! global data sections `.data`, `.rodata`, `.bss`, ...), its BTF and its
//! license. Map references in programs are rewritten to
//! `PSEUDO_MAP_IDX`/`PSEUDO_MAP_IDX_VALUE` loads whose immediate is an
//! index into [`Object::maps`]; the loader that creates the maps replaces
//! them with real map handles.
//!
//! Programs: every function symbol of an executable section is a program
//! (static ones too: cilium places tail-call programs in sections as static
//! functions); objects without function symbols give one program per
//! section, named after it. Functions of `.text` are listed as well, marked
//! [`ElfProgram::subprogram`]: libbpf only links them into other programs,
//! ebpfvm also lets them run on their own.
//!
//! CO-RE relocations are resolved against the object's own BTF (there is no
//! kernel BTF in user space; see [`crate::btf::core`]).
//!
//! Extern functions: a call to an undefined function named after a kernel
//! helper (`bpf_map_lookup_elem`) becomes that helper's call, and a call to
//! `memset`, `memcpy`, `memmove` or `memcmp` (which clang emits when it does
//! not inline them) becomes a call to the ebpfvm builtin of that name (see
//! [`crate::kernel::helper_protos::BUILTIN_IDS`]).
//!
//! Errors: a malformed container, symbol table, map definition or
//! relocation is an [`ElfError`] naming the section, symbol or offset at
//! fault. A reference to something nothing defines (a call to a kernel
//! function, an `extern` that is not a `.kconfig` value) makes only
//! the programs that contain it invalid: [`ElfProgram::program`] holds the
//! error, naming the symbol and the instruction, and the other programs of
//! the object stay usable. Nothing here panics on malformed input.

use std::fmt;

use crate::btf::Btf;
use crate::error::ProgramError;
use crate::isa::Insn;
use crate::maps::MapDef;
use crate::program::Program;
use crate::progtype::ProgType;

mod link;
mod loader;
mod maps;

/// Why an object could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfError {
    pub message: String,
}

impl ElfError {
    pub fn new(message: impl Into<String>) -> ElfError {
        ElfError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ElfError {}

/// A parsed object file.
#[derive(Clone, Debug)]
pub struct Object {
    pub programs: Vec<ElfProgram>,
    pub maps: Vec<MapSpec>,
    pub btf: Option<Btf>,
    /// Contents of the `license` section.
    pub license: Option<String>,
    /// Contents of the `version` section (legacy kprobe objects).
    pub kernel_version: Option<u32>,
    /// Problems that did not stop loading (BTF that could not be parsed in
    /// an object that does not need it, ...).
    pub warnings: Vec<String>,
    /// Relocations applied to instructions (map, global data and call
    /// relocations; CO-RE relocations are counted separately).
    pub relocations_applied: usize,
    pub core_relocations_applied: usize,
    /// Every executable section, in file order, with its instruction count
    /// (before linking).
    pub code_sections: Vec<CodeSection>,
}

/// An executable section of the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeSection {
    pub name: String,
    /// The section's instructions, relocated but not linked (calls keep
    /// their in-section offsets).
    pub insns: Vec<Insn>,
}

impl Object {
    /// Parses an object from its bytes.
    pub fn parse(bytes: &[u8]) -> Result<Object, ElfError> {
        loader::parse(bytes)
    }

    /// The program called `name` (the function symbol, or the section name
    /// for objects without function symbols).
    pub fn program(&self, name: &str) -> Option<&ElfProgram> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The index of the map called `name` in [`Object::maps`].
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.def.name == name)
    }
}

/// One program of the object.
#[derive(Clone, Debug)]
pub struct ElfProgram {
    pub name: String,
    /// The ELF section (the libbpf `SEC()` name).
    pub section: String,
    /// The type libbpf infers from the section name; `None` when it is not
    /// a libbpf name (the user chooses the type at load time).
    pub prog_type: Option<ProgType>,
    /// A function of `.text`: libbpf treats these only as subprograms of
    /// other programs; ebpfvm also lets them run on their own.
    pub subprogram: bool,
    /// Relocated instructions, subprograms appended.
    pub insns: Vec<Insn>,
    /// The structural check of `insns`: the program, or why it is invalid.
    pub program: Result<Program, ProgramError>,
    pub func_info: Vec<FuncInfo>,
    pub line_info: Vec<LineInfo>,
}

impl ElfProgram {
    /// The source line instruction `insn` comes from: the last line_info
    /// record at or before it (clang records a line where it changes).
    pub fn line_at(&self, insn: usize) -> Option<&LineInfo> {
        let after = self.line_info.partition_point(|l| l.insn <= insn);
        after.checked_sub(1).map(|i| &self.line_info[i])
    }

    /// The function (from func_info) instruction `insn` belongs to.
    pub fn func_at(&self, insn: usize) -> Option<&FuncInfo> {
        let after = self.func_info.partition_point(|f| f.insn <= insn);
        after.checked_sub(1).map(|i| &self.func_info[i])
    }
}

/// A function of a program (from `.BTF.ext` func_info).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    /// Instruction index in [`ElfProgram::insns`].
    pub insn: usize,
    /// The `FUNC` BTF type id.
    pub type_id: u32,
    pub name: String,
}

/// Where an instruction comes from in the C source (from `.BTF.ext`
/// line_info).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// Instruction index in [`ElfProgram::insns`].
    pub insn: usize,
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// The text of the source line, as clang recorded it.
    pub source: String,
}

/// How a map is pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinning {
    None,
    /// libbpf's `LIBBPF_PIN_BY_NAME` (BTF maps, `pinning` = 1).
    ByName,
    /// iproute2's `PIN_OBJECT_NS` (legacy `bpf_elf_map`, `pinning` = 1).
    ObjectNs,
    /// iproute2's `PIN_GLOBAL_NS` (legacy `bpf_elf_map`, `pinning` = 2).
    GlobalNs,
    /// Any other value, kept as found.
    Other(u32),
}

/// A variable of a global data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataVar {
    pub name: String,
    /// Byte offset in the map value.
    pub offset: u32,
    pub size: u32,
    /// BTF type of the variable (the `VAR`'s type), when the object has BTF.
    pub type_id: Option<u32>,
}

/// Where a map comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// A map defined in `.maps` (BTF) or a legacy `maps` section.
    Regular { section: String },
    /// A single-entry array holding a global data section (`.data`,
    /// `.rodata`, `.bss`, `.data.*`, `.rodata.*`, `.kconfig`).
    GlobalData { section: String, vars: Vec<DataVar> },
}

/// A map the object asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// What to create (name, type, sizes, flags; `inner` for maps of maps).
    pub def: MapDef,
    pub pinning: Pinning,
    pub numa_node: u32,
    pub kind: MapKind,
    /// Initial value of entry 0 for global data (zeros for `.bss`).
    pub initial_value: Option<Vec<u8>>,
    /// BTF ids of the key and value types, when the object says.
    pub key_type: Option<u32>,
    pub value_type: Option<u32>,
    /// For maps of maps: the template every inner map matches.
    pub inner: Option<Box<MapSpec>>,
    /// Program arrays: `(slot, program name)` from `.maps` initialisers.
    pub prog_array_init: Vec<(u32, String)>,
    /// Maps of maps: `(slot, map name)` from `.maps` initialisers.
    pub map_in_map_init: Vec<(u32, String)>,
}

impl MapSpec {
    /// Whether this map holds a global data section.
    pub fn is_global_data(&self) -> bool {
        matches!(self.kind, MapKind::GlobalData { .. })
    }

    /// The variables of a global data map (empty for other maps).
    pub fn vars(&self) -> &[DataVar] {
        match &self.kind {
            MapKind::GlobalData { vars, .. } => vars,
            MapKind::Regular { .. } => &[],
        }
    }

    /// Sets a global variable's bytes in the initial value (how users set
    /// `const volatile` configuration before loading).
    pub fn set_var(&mut self, name: &str, value: &[u8]) -> Result<(), ElfError> {
        let var = self
            .vars()
            .iter()
            .find(|v| v.name == name)
            .cloned()
            .ok_or_else(|| {
                ElfError::new(format!("map '{}' has no variable '{name}'", self.def.name))
            })?;
        if value.len() != var.size as usize {
            return Err(ElfError::new(format!(
                "variable '{name}' of map '{}' is {} bytes, got {}",
                self.def.name,
                var.size,
                value.len()
            )));
        }
        let size = self.def.value_size as usize;
        let init = self.initial_value.get_or_insert_with(|| vec![0; size]);
        let range = var.offset as usize..var.offset as usize + value.len();
        match init.get_mut(range) {
            Some(slot) => {
                slot.copy_from_slice(value);
                Ok(())
            }
            None => Err(ElfError::new(format!(
                "variable '{name}' (offset {}, {} bytes) lies outside map '{}' ({size} bytes)",
                var.offset, var.size, self.def.name
            ))),
        }
    }
}
