//! Programs: decoding executable sections, CO-RE and ELF relocations, and
//! libbpf-style linking of BPF-to-BPF calls (every subprogram a program
//! needs is appended after its code, transitively, and each call's or
//! callback load's immediate is fixed to the relative offset).

use std::collections::HashMap;

use object::elf::STT_FUNC;

use super::loader::{Elf, Reloc};
use super::maps::MapTable;
use super::{CodeSection, ElfError, ElfProgram, FuncInfo, LineInfo};
use crate::btf::core::{resolve_relo, CoreReloKind};
use crate::btf::ext::BtfExt;
use crate::btf::Btf;
use crate::error::ProgramError;
use crate::isa::*;
use crate::kernel::helper_protos;
use crate::program::{Program, DEFAULT_MAX_LEN};
use crate::progtype::ProgType;

/// Instructions all programs of one object may add up to after linking: a
/// bound against objects whose symbols make every program copy everything.
const MAX_TOTAL_INSNS: usize = 1 << 22;

pub(super) struct Linked {
    pub programs: Vec<ElfProgram>,
    pub relocations_applied: usize,
    pub core_relocations_applied: usize,
    pub code_sections: Vec<CodeSection>,
}

/// A function of an executable section: slots `start..end`.
#[derive(Clone)]
struct Func {
    name: String,
    start: usize,
    end: usize,
}

/// Instruction `idx` of executable section `sec`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Loc {
    sec: usize,
    idx: usize,
}

struct Code {
    /// Decoded instructions of each executable section.
    insns: HashMap<usize, Vec<Insn>>,
    /// Functions of each executable section, by start.
    funcs: HashMap<usize, Vec<Func>>,
    /// Targets of relocated calls and callback loads.
    targets: HashMap<Loc, Loc>,
    /// Instructions that refer to symbols nothing defines: a program that
    /// contains one cannot run, but the others of the object can.
    unresolved: HashMap<Loc, String>,
}

impl Code {
    /// The function of `sec` holding `idx`, or the whole section for
    /// objects without function symbols.
    fn func_at(&self, sec: usize, idx: usize) -> (usize, usize) {
        let len = self.insns.get(&sec).map_or(0, Vec::len);
        self.funcs
            .get(&sec)
            .and_then(|fs| fs.iter().find(|f| f.start <= idx && idx < f.end))
            .map_or((0, len), |f| (f.start, f.end))
    }
}

pub(super) fn build(
    elf: &Elf<'_>,
    btf: Option<&Btf>,
    ext: Option<&BtfExt>,
    maps: &MapTable,
    warnings: &mut Vec<String>,
) -> Result<Linked, ElfError> {
    let mut code = Code {
        insns: HashMap::new(),
        funcs: HashMap::new(),
        targets: HashMap::new(),
        unresolved: HashMap::new(),
    };
    for (i, s) in elf.sections.iter().enumerate() {
        if !s.is_exec() {
            continue;
        }
        let insns = decode_all(s.data).map_err(|rest| {
            ElfError::new(format!(
                "section '{}' is {} bytes, not a whole number of instructions ({rest} left over)",
                s.name,
                s.data.len()
            ))
        })?;
        code.funcs.insert(i, functions(elf, i, insns.len())?);
        code.insns.insert(i, insns);
    }
    let core_relocations_applied = match (btf, ext) {
        (Some(btf), Some(ext)) => apply_core_relos(elf, btf, ext, &mut code, warnings),
        _ => 0,
    };
    let mut relocations_applied = 0;
    let mut exec: Vec<usize> = code.insns.keys().copied().collect();
    exec.sort_unstable();
    for &sec in &exec {
        for r in elf.relocs.get(&sec).map(Vec::as_slice).unwrap_or(&[]) {
            if apply_reloc(elf, maps, &mut code, sec, r)? {
                relocations_applied += 1;
            }
        }
    }

    let mut programs = Vec::new();
    let mut total = 0usize;
    for &sec in &exec {
        let name = &elf.sections[sec].name;
        let funcs = &code.funcs[&sec];
        let len = code.insns[&sec].len();
        // Every function of a section is an entry point, static ones too
        // (clang places static helpers in .text; anything else in a program
        // section was put there on purpose). Functions of .text are
        // subprograms, listed so that they can also be run on their own.
        let mut entries: Vec<Func> = funcs.clone();
        if entries.is_empty() && len > 0 {
            entries.push(Func {
                name: name.clone(),
                start: 0,
                end: len,
            });
        }
        for f in entries {
            let prog = link_program(elf, btf, ext, &code, sec, &f, warnings);
            total += prog.insns.len();
            if total > MAX_TOTAL_INSNS {
                return Err(ElfError::new(format!(
                    "programs expand to more than {MAX_TOTAL_INSNS} instructions after linking"
                )));
            }
            programs.push(prog);
        }
    }
    let code_sections = exec
        .iter()
        .map(|&sec| CodeSection {
            name: elf.sections[sec].name.clone(),
            insns: code.insns[&sec].clone(),
        })
        .collect();
    Ok(Linked {
        code_sections,
        programs,
        relocations_applied,
        core_relocations_applied,
    })
}

/// Function symbols of an executable section, checked and sorted.
fn functions(elf: &Elf<'_>, sec: usize, len: usize) -> Result<Vec<Func>, ElfError> {
    let syms: Vec<_> = elf
        .symbols_in(sec)
        .filter(|s| s.st_type == STT_FUNC)
        .collect();
    let mut out: Vec<Func> = Vec::with_capacity(syms.len());
    for (k, s) in syms.iter().enumerate() {
        let bad = |why: &str| {
            ElfError::new(format!(
                "function '{}' (offset {}, size {}) in section '{}' {why}",
                s.name,
                s.value,
                s.size,
                elf.section_name(sec)
            ))
        };
        if !s.value.is_multiple_of(8) || !s.size.is_multiple_of(8) {
            return Err(bad("is not aligned to instructions"));
        }
        let start = (s.value / 8) as usize;
        let end = if s.size > 0 {
            start.saturating_add((s.size / 8) as usize)
        } else {
            syms.get(k + 1).map_or(len, |n| (n.value / 8) as usize)
        };
        if start >= len || end > len {
            return Err(bad("lies outside the section"));
        }
        if out.last().is_some_and(|p| p.start == start) {
            continue; // an alias of the previous function
        }
        out.push(Func {
            name: s.name.clone(),
            start,
            end,
        });
    }
    Ok(out)
}

fn apply_core_relos(
    elf: &Elf<'_>,
    btf: &Btf,
    ext: &BtfExt,
    code: &mut Code,
    warnings: &mut Vec<String>,
) -> usize {
    let mut applied = 0;
    for sec_recs in &ext.core_relos {
        let Some(sec) = elf.section_index(&sec_recs.section) else {
            warnings.push(format!(
                "CO-RE relocations for unknown section '{}' ignored",
                sec_recs.section
            ));
            continue;
        };
        let Some(insns) = code.insns.get_mut(&sec) else {
            continue;
        };
        for rec in &sec_recs.records {
            let idx = (rec.insn_off / 8) as usize;
            let result = btf
                .string_at(rec.access_str_off)
                .map_err(|e| e.0)
                .and_then(|access| {
                    resolve_relo(btf, rec.type_id, &access, rec.kind).map_err(|e| e.0)
                })
                .and_then(|value| patch_core(insns, idx, rec.insn_off, rec.kind, value));
            match result {
                Ok(()) => applied += 1,
                // libbpf poisons such instructions; here they keep the
                // compiled value and the problem is reported.
                Err(e) => warnings.push(format!(
                    "CO-RE relocation at instruction {idx} of section '{}' not applied: {e}",
                    sec_recs.section
                )),
            }
        }
    }
    applied
}

fn patch_core(
    insns: &mut [Insn],
    idx: usize,
    insn_off: u32,
    kind: u32,
    value: u64,
) -> Result<(), String> {
    if !insn_off.is_multiple_of(8) || idx >= insns.len() {
        return Err(format!(
            "instruction offset {insn_off} is outside the section"
        ));
    }
    let insn = insns[idx];
    match insn.class() {
        CLS_ALU | CLS_ALU64 if insn.opc & SRC_X == 0 => {
            let v = u32::try_from(value)
                .map_err(|_| format!("value {value} does not fit in 32 bits"))?;
            insns[idx].imm = v as i32;
        }
        CLS_LDX | CLS_ST | CLS_STX if kind == CoreReloKind::FieldByteOffset as u32 => {
            let v = i16::try_from(value)
                .map_err(|_| format!("offset {value} does not fit in 16 bits"))?;
            insns[idx].off = v;
        }
        CLS_LD if insn.is_lddw() && idx + 1 < insns.len() => {
            insns[idx].imm = value as u32 as i32;
            insns[idx + 1].imm = (value >> 32) as u32 as i32;
        }
        _ => return Err(format!("cannot patch opcode 0x{:02x}", insn.opc)),
    }
    Ok(())
}

/// Applies one relocation of executable section `sec`. `Ok(false)` when the
/// symbol is undefined: the instruction is then recorded as unresolved and
/// fails the programs that contain it.
fn apply_reloc(
    elf: &Elf<'_>,
    maps: &MapTable,
    code: &mut Code,
    sec: usize,
    r: &Reloc,
) -> Result<bool, ElfError> {
    let sym = elf.reloc_symbol(r, sec)?;
    let sec_name = elf.section_name(sec);
    // Length of the code the symbol lies in, when it lies in code.
    let target_len = sym
        .shndx
        .and_then(|t| code.insns.get(&t))
        .map_or(0, Vec::len) as i64;
    let insns = code
        .insns
        .get_mut(&sec)
        .expect("relocations are applied to executable sections");
    let idx = (r.offset / 8) as usize;
    let at = |why: String| {
        ElfError::new(format!(
            "relocation against '{}' at instruction {idx} of section '{sec_name}': {why}",
            sym.name
        ))
    };
    if !r.offset.is_multiple_of(8) || idx >= insns.len() {
        return Err(at(format!(
            "offset {} is not an instruction of the section",
            r.offset
        )));
    }
    let insn = insns[idx];
    // The addend: in the instruction for REL, in the entry for RELA.
    let implicit = insn.imm as i64;
    let addend = r.addend.unwrap_or(implicit);
    if insn.is_lddw() {
        if idx + 1 >= insns.len() {
            return Err(at("lddw is missing its second half".into()));
        }
        let Some(target_sec) = sym.shndx else {
            if let Some((map, off)) = maps.kconfig(&sym.name) {
                set_map_value(insns, idx, map, off as i64);
                return Ok(true);
            }
            code.unresolved.insert(
                Loc { sec, idx },
                format!(
                    "lddw refers to '{}', an undefined symbol (an extern that is neither a map, a global variable nor a .kconfig value)",
                    sym.name
                ),
            );
            return Ok(false);
        };
        if elf.sections[target_sec].is_exec() {
            // A callback: a pointer to a function, in bytes.
            let byte = (sym.value as i64)
                .checked_add(addend)
                .filter(|b| b % 8 == 0 && *b >= 0 && b / 8 < target_len);
            let Some(byte) = byte else {
                return Err(at(format!(
                    "function pointer is not an instruction of section '{}'",
                    elf.section_name(target_sec)
                )));
            };
            insns[idx].src = PSEUDO_FUNC;
            insns[idx].imm = 0;
            insns[idx + 1].imm = 0;
            code.targets.insert(
                Loc { sec, idx },
                Loc {
                    sec: target_sec,
                    idx: (byte / 8) as usize,
                },
            );
            return Ok(true);
        }
        let def_off = if sym.is_section() {
            (sym.value as i64).saturating_add(addend) as u64
        } else {
            sym.value
        };
        if let Some(map) = maps.by_definition(target_sec, def_off) {
            insns[idx].src = PSEUDO_MAP_IDX;
            insns[idx].imm = map as i32;
            insns[idx + 1].imm = 0;
            return Ok(true);
        }
        if let Some(map) = maps.by_data_section(target_sec) {
            let off = (sym.value as i64).saturating_add(addend);
            if off < 0 || off > i32::MAX as i64 {
                return Err(at(format!(
                    "offset {off} into '{}' is out of range",
                    elf.section_name(target_sec)
                )));
            }
            set_map_value(insns, idx, map, off);
            return Ok(true);
        }
        return Err(at(format!(
            "symbol is in section '{}', which is neither a map nor a global data section",
            elf.section_name(target_sec)
        )));
    }
    if insn.opc == OP_CALL {
        let Some(target_sec) = sym.shndx else {
            if let Some(id) = extern_call_id(&sym.name) {
                insns[idx].src = CALL_HELPER;
                insns[idx].imm = id as i32;
                return Ok(true);
            }
            code.unresolved.insert(
                Loc { sec, idx },
                format!(
                    "call to '{}', an undefined function (only kernel helpers, named bpf_*, and memset, memcpy, memmove and memcmp can be called as externs; kernel functions and other externs are not available)",
                    sym.name
                ),
            );
            return Ok(false);
        };
        if !elf.sections[target_sec].is_exec() {
            return Err(at("call target is not in an executable section".into()));
        }
        if insn.src != CALL_LOCAL {
            return Err(at(format!(
                "relocated call has src {} (expected a BPF-to-BPF call)",
                insn.src
            )));
        }
        if !sym.value.is_multiple_of(8) {
            return Err(at("call target is not aligned to an instruction".into()));
        }
        let target = (sym.value / 8) as i64 + implicit + 1 + r.addend.map_or(0, |a| a / 8);
        if target < 0 || target >= target_len {
            return Err(at(format!(
                "call target {target} lies outside section '{}'",
                elf.section_name(target_sec)
            )));
        }
        code.targets.insert(
            Loc { sec, idx },
            Loc {
                sec: target_sec,
                idx: target as usize,
            },
        );
        return Ok(true);
    }
    Err(at(format!(
        "opcode 0x{:02x} is neither lddw nor call",
        insn.opc
    )))
}

/// The helper an extern function stands for: a kernel helper declared by
/// its `bpf_` name, or a C library function ebpfvm provides as a builtin.
/// The prefix is required so that a C function that happens to share a
/// helper's bare name (`strncmp`, `snprintf`) is not bound to the helper,
/// whose arguments differ.
fn extern_call_id(name: &str) -> Option<u32> {
    if let Some(id) = helper_protos::builtin_id(name) {
        return Some(id);
    }
    name.strip_prefix("bpf_").and_then(helper_protos::helper_id)
}

fn set_map_value(insns: &mut [Insn], idx: usize, map: usize, off: i64) {
    insns[idx].src = PSEUDO_MAP_IDX_VALUE;
    insns[idx].imm = map as i32;
    insns[idx + 1].imm = off as i32;
}

/// One piece of a linked program: slots `start..end` of `sec`, placed at `base`.
struct Unit {
    sec: usize,
    start: usize,
    end: usize,
    base: usize,
}

fn link_program(
    elf: &Elf<'_>,
    btf: Option<&Btf>,
    ext: Option<&BtfExt>,
    code: &Code,
    sec: usize,
    entry: &Func,
    warnings: &mut Vec<String>,
) -> ElfProgram {
    let section = elf.sections[sec].name.clone();
    let mut out: Vec<Insn> = code.insns[&sec][entry.start..entry.end].to_vec();
    let mut units = vec![Unit {
        sec,
        start: entry.start,
        end: entry.end,
        base: 0,
    }];
    let mut error = None;
    let mut k = 0;
    while k < units.len() && error.is_none() {
        let (usec, ustart, uend, ubase) =
            (units[k].sec, units[k].start, units[k].end, units[k].base);
        let src = &code.insns[&usec];
        for j in ustart..uend {
            if let Some(why) = code.unresolved.get(&Loc { sec: usec, idx: j }) {
                error = Some(ProgramError::at(ubase + (j - ustart), why.clone()));
                break;
            }
            let insn = src[j];
            let is_call = insn.opc == OP_CALL && insn.src == CALL_LOCAL;
            let is_func = insn.is_lddw() && insn.src == PSEUDO_FUNC;
            if !is_call && !is_func {
                continue;
            }
            let new_pc = ubase + (j - ustart);
            let target = match code.targets.get(&Loc { sec: usec, idx: j }) {
                Some(t) => *t,
                None => {
                    let t = j as i64 + 1 + insn.imm as i64;
                    if t < 0 || t >= src.len() as i64 {
                        error = Some(ProgramError::at(
                            new_pc,
                            format!(
                                "call target {t} lies outside section '{}'",
                                elf.section_name(usec)
                            ),
                        ));
                        break;
                    }
                    Loc {
                        sec: usec,
                        idx: t as usize,
                    }
                }
            };
            let placed = units
                .iter()
                .find(|u| u.sec == target.sec && u.start <= target.idx && target.idx < u.end)
                .map(|u| u.base + (target.idx - u.start));
            let new_target = match placed {
                Some(p) => p,
                None => {
                    let (fstart, fend) = code.func_at(target.sec, target.idx);
                    let base = out.len();
                    if base + (fend - fstart) > DEFAULT_MAX_LEN * 16 {
                        error = Some(ProgramError::whole(format!(
                            "program '{}' grows beyond {} instructions with its subprograms",
                            entry.name,
                            DEFAULT_MAX_LEN * 16
                        )));
                        break;
                    }
                    out.extend_from_slice(&code.insns[&target.sec][fstart..fend]);
                    units.push(Unit {
                        sec: target.sec,
                        start: fstart,
                        end: fend,
                        base,
                    });
                    base + (target.idx - fstart)
                }
            };
            out[new_pc].imm = (new_target as i64 - new_pc as i64 - 1) as i32;
        }
        k += 1;
    }
    let (func_info, line_info) = match (btf, ext) {
        (Some(btf), Some(ext)) => debug_info(elf, btf, ext, &units, warnings),
        _ => (Vec::new(), Vec::new()),
    };
    let program = match error {
        Some(e) => Err(e),
        None => Program::from_insns(out.clone(), DEFAULT_MAX_LEN),
    };
    ElfProgram {
        name: entry.name.clone(),
        prog_type: ProgType::from_section(&section),
        subprogram: section == ".text",
        section,
        insns: out,
        program,
        func_info,
        line_info,
    }
}

/// func_info and line_info records of the linked units, renumbered.
fn debug_info(
    elf: &Elf<'_>,
    btf: &Btf,
    ext: &BtfExt,
    units: &[Unit],
    warnings: &mut Vec<String>,
) -> (Vec<FuncInfo>, Vec<LineInfo>) {
    let mut funcs = Vec::new();
    let mut lines = Vec::new();
    let mut bad_strings = 0usize;
    for u in units {
        let name = elf.section_name(u.sec);
        let place = |insn_off: u32| {
            let i = (insn_off / 8) as usize;
            (insn_off.is_multiple_of(8) && u.start <= i && i < u.end).then(|| u.base + i - u.start)
        };
        for s in ext.func_info.iter().filter(|s| s.section == name) {
            for r in &s.records {
                if let Some(insn) = place(r.insn_off) {
                    let name = btf
                        .get(r.type_id)
                        .map(|t| t.name.clone())
                        .unwrap_or_default();
                    funcs.push(FuncInfo {
                        insn,
                        type_id: r.type_id,
                        name,
                    });
                }
            }
        }
        for s in ext.line_info.iter().filter(|s| s.section == name) {
            for r in &s.records {
                let Some(insn) = place(r.insn_off) else {
                    continue;
                };
                match (btf.string_at(r.file_name_off), btf.string_at(r.line_off)) {
                    (Ok(file), Ok(source)) => lines.push(LineInfo {
                        insn,
                        file,
                        line: r.line,
                        column: r.column,
                        source,
                    }),
                    _ => bad_strings += 1,
                }
            }
        }
    }
    if bad_strings > 0 {
        warnings.push(format!(
            "{bad_strings} line_info records name strings outside .BTF; dropped"
        ));
    }
    funcs.sort_by_key(|f| f.insn);
    lines.sort_by_key(|l| l.insn);
    (funcs, lines)
}
