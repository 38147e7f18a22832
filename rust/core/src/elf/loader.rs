//! Reading the ELF container: header checks, sections, symbols and
//! relocation tables, then handing over to the map and program builders.

use std::collections::HashMap;

use object::elf::{
    FileHeader64, EM_BPF, SHF_EXECINSTR, SHN_LORESERVE, SHN_XINDEX, SHT_NOBITS, SHT_PROGBITS,
    SHT_REL, SHT_RELA, SHT_SYMTAB, STT_SECTION,
};
use object::read::elf::{FileHeader, Rel, Rela, SectionHeader, Sym};
use object::LittleEndian as LE;

use super::{link, maps, ElfError, Object};
use crate::btf::ext::BtfExt;
use crate::btf::Btf;

pub(super) struct Section<'a> {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    /// File contents (empty for `SHT_NOBITS`).
    pub data: &'a [u8],
    /// `sh_size` (differs from `data.len()` for `SHT_NOBITS`).
    pub size: u64,
}

impl Section<'_> {
    pub fn is_exec(&self) -> bool {
        self.sh_type == SHT_PROGBITS && self.flags & SHF_EXECINSTR as u64 != 0
    }
}

pub(super) struct Symbol {
    pub name: String,
    /// Section index of a defined symbol; `None` for undefined, absolute
    /// and common symbols.
    pub shndx: Option<usize>,
    pub value: u64,
    pub size: u64,
    pub st_type: u8,
}

impl Symbol {
    pub fn is_section(&self) -> bool {
        self.st_type == STT_SECTION
    }
}

#[derive(Clone, Copy)]
pub(super) struct Reloc {
    pub offset: u64,
    pub sym: usize,
    /// `Some` for `SHT_RELA` entries; `REL` addends live in the instruction.
    pub addend: Option<i64>,
}

pub(super) struct Elf<'a> {
    pub sections: Vec<Section<'a>>,
    pub symbols: Vec<Symbol>,
    /// Relocations by the index of the section they apply to.
    pub relocs: HashMap<usize, Vec<Reloc>>,
    /// Indices into `symbols` of the named, non-section symbols defined in
    /// each section, by offset (one pass, so that objects with many
    /// sections and symbols stay linear).
    pub by_section: HashMap<usize, Vec<usize>>,
}

impl Elf<'_> {
    pub fn section_index(&self, name: &str) -> Option<usize> {
        self.sections.iter().position(|s| s.name == name)
    }

    /// Named, non-section symbols defined in section `index`, by offset.
    pub fn symbols_in(&self, index: usize) -> impl Iterator<Item = &Symbol> {
        self.by_section
            .get(&index)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|&i| &self.symbols[i])
    }

    pub fn section_name(&self, index: usize) -> &str {
        self.sections.get(index).map_or("?", |s| s.name.as_str())
    }

    /// The symbol a relocation names, or an error saying where.
    pub fn reloc_symbol(&self, r: &Reloc, section: usize) -> Result<&Symbol, ElfError> {
        self.symbols.get(r.sym).ok_or_else(|| {
            ElfError::new(format!(
                "relocation at offset {} of section '{}' names symbol {}, but the symbol table has {}",
                r.offset,
                self.section_name(section),
                r.sym,
                self.symbols.len()
            ))
        })
    }
}

fn obj_err(what: &str) -> impl Fn(object::read::Error) -> ElfError + '_ {
    move |e| ElfError::new(format!("{what}: {e}"))
}

/// Checks what `object` would only call "invalid" with a precise message.
fn check_ident(bytes: &[u8]) -> Result<(), ElfError> {
    if bytes.len() < 16 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::new("not an ELF file (bad magic)"));
    }
    match bytes[4] {
        2 => {}
        1 => return Err(ElfError::new("32-bit ELF object; BPF objects are 64-bit")),
        c => return Err(ElfError::new(format!("bad ELF class {c}"))),
    }
    match bytes[5] {
        1 => {}
        2 => {
            return Err(ElfError::new(
                "big-endian ELF object (compiled with -target bpfeb?); only little-endian objects are supported",
            ))
        }
        d => return Err(ElfError::new(format!("bad ELF data encoding {d}"))),
    }
    Ok(())
}

fn read_elf(bytes: &[u8]) -> Result<Elf<'_>, ElfError> {
    check_ident(bytes)?;
    let header = FileHeader64::<LE>::parse(bytes).map_err(obj_err("ELF header"))?;
    let machine = header.e_machine(LE);
    // Old LLVM releases wrote EM_NONE; libbpf accepts those too.
    if machine != EM_BPF && machine != 0 {
        return Err(ElfError::new(format!(
            "ELF machine is {machine}, not BPF (247)"
        )));
    }
    let table = header
        .sections(LE, bytes)
        .map_err(obj_err("ELF section headers"))?;
    let mut sections = Vec::with_capacity(table.len());
    for (i, sh) in table.iter().enumerate() {
        let name = table
            .section_name(LE, sh)
            .map_err(|e| ElfError::new(format!("name of section {i}: {e}")))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let sh_type = sh.sh_type(LE);
        let data = if sh_type == SHT_NOBITS {
            &[][..]
        } else {
            sh.data(LE, bytes)
                .map_err(|e| ElfError::new(format!("contents of section '{name}': {e}")))?
        };
        sections.push(Section {
            name,
            sh_type,
            flags: sh.sh_flags(LE),
            data,
            size: sh.sh_size(LE),
        });
    }
    let symtab = table
        .symbols(LE, bytes, SHT_SYMTAB)
        .map_err(obj_err("symbol table"))?;
    let mut symbols = Vec::with_capacity(symtab.len());
    for (i, sym) in symtab.iter().enumerate() {
        let name = sym
            .name(LE, symtab.strings())
            .map_err(|e| ElfError::new(format!("name of symbol {i}: {e}")))?;
        let raw = sym.st_shndx(LE);
        let shndx = if raw == SHN_XINDEX {
            symtab.shndx(LE, object::SymbolIndex(i)).map(|x| x as usize)
        } else if raw == 0 || raw >= SHN_LORESERVE {
            None
        } else {
            Some(raw as usize)
        };
        symbols.push(Symbol {
            name: String::from_utf8_lossy(name).into_owned(),
            shndx: shndx.filter(|&s| s < sections.len()),
            value: sym.st_value(LE),
            size: sym.st_size(LE),
            st_type: sym.st_type(),
        });
    }
    let mut relocs: HashMap<usize, Vec<Reloc>> = HashMap::new();
    for (i, sh) in table.iter().enumerate() {
        let target = sh.sh_info(LE) as usize;
        let list: Vec<Reloc> = match sh.sh_type(LE) {
            SHT_REL => {
                let (rels, _) = sh
                    .rel(LE, bytes)
                    .map_err(|e| {
                        ElfError::new(format!("relocation section '{}': {e}", sections[i].name))
                    })?
                    .unwrap_or((&[], object::SectionIndex(0)));
                rels.iter()
                    .map(|r| Reloc {
                        offset: r.r_offset(LE),
                        sym: r.r_sym(LE) as usize,
                        addend: None,
                    })
                    .collect()
            }
            SHT_RELA => {
                let (rels, _) = sh
                    .rela(LE, bytes)
                    .map_err(|e| {
                        ElfError::new(format!("relocation section '{}': {e}", sections[i].name))
                    })?
                    .unwrap_or((&[], object::SectionIndex(0)));
                rels.iter()
                    .map(|r| Reloc {
                        offset: r.r_offset(LE),
                        sym: r.r_sym(LE, false) as usize,
                        addend: Some(r.r_addend(LE)),
                    })
                    .collect()
            }
            _ => continue,
        };
        if target == 0 || target >= sections.len() {
            return Err(ElfError::new(format!(
                "relocation section '{}' applies to section {target}, which does not exist",
                sections[i].name
            )));
        }
        relocs.entry(target).or_default().extend(list);
    }
    let mut by_section: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, s) in symbols.iter().enumerate() {
        if let Some(sec) = s.shndx.filter(|_| !s.is_section() && !s.name.is_empty()) {
            by_section.entry(sec).or_default().push(i);
        }
    }
    for list in by_section.values_mut() {
        list.sort_by_key(|&i| symbols[i].value);
    }
    Ok(Elf {
        sections,
        symbols,
        relocs,
        by_section,
    })
}

pub(super) fn parse(bytes: &[u8]) -> Result<Object, ElfError> {
    let elf = read_elf(bytes)?;
    let mut warnings = Vec::new();

    let needs_btf = elf.section_index(".maps").is_some();
    let btf = match elf.section_index(".BTF") {
        Some(i) => match Btf::parse(elf.sections[i].data) {
            Ok(b) => Some(b),
            Err(e) if needs_btf => {
                return Err(ElfError::new(format!(
                    "{e} (needed for the BTF-defined maps in .maps)"
                )))
            }
            Err(e) => {
                warnings.push(format!("{e}; continuing without BTF"));
                None
            }
        },
        None => None,
    };
    let ext = match (&btf, elf.section_index(".BTF.ext")) {
        (Some(btf), Some(i)) => match BtfExt::parse(elf.sections[i].data, btf) {
            Ok(x) => Some(x),
            Err(e) => {
                warnings.push(format!(
                    "{e}; continuing without line info and CO-RE relocations"
                ));
                None
            }
        },
        _ => None,
    };

    let license = elf.section_index("license").map(|i| {
        let d = elf.sections[i].data;
        let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
        String::from_utf8_lossy(&d[..end]).into_owned()
    });
    let kernel_version = elf
        .section_index("version")
        .and_then(|i| elf.sections[i].data.get(..4))
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));

    let map_table = maps::build(&elf, btf.as_ref(), &mut warnings)?;
    let linked = link::build(&elf, btf.as_ref(), ext.as_ref(), &map_table, &mut warnings)?;
    Ok(Object {
        programs: linked.programs,
        maps: map_table.specs,
        btf,
        license,
        kernel_version,
        warnings,
        relocations_applied: linked.relocations_applied,
        core_relocations_applied: linked.core_relocations_applied,
        code_sections: linked.code_sections,
    })
}
