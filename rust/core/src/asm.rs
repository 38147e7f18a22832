//! Text assembler for the eBPF assembly dialect used by the conformance suites
//! (the bpf_conformance / uBPF dialect, see `shared/conformance/FORMAT.md` §4).
//!
//! # Syntax
//!
//! One instruction per line. `#` starts a comment. Operands are separated by
//! whitespace and/or commas (`add %r0, 1` and `add %r0,1` are the same).
//! Labels are `name:` on their own line or in front of an instruction
//! (`loop: add %r1, 1`). The label `exit` is predefined as the first `exit`
//! instruction unless the program defines `exit:` itself. Jump and call
//! targets are a label or a relative slot count `+N` / `-N` counted from the
//! instruction after the jump.
//!
//! * registers: `%r0`..`%r10`, also `%r11`..`%r15` (so that invalid-register
//!   programs can be written) and the bare forms `r0`..`r15`;
//! * immediates: decimal (optionally signed) or `0x` hex; a 32-bit field
//!   takes anything that fits `i32` or `u32` (`0xfffffff8` is -8), `lddw`
//!   anything that fits `i64` or `u64`;
//! * memory operands: `[%rN]`, `[%rN+off]`, `[%rN-off]`, offset fitting `i16`;
//! * ALU: `add sub mul div sdiv or and lsh rsh mod smod xor mov arsh`, 64-bit
//!   without suffix or with `64`, 32-bit with `32`; `neg`/`neg32`;
//!   `movsx864 movsx1664 movsx3264 movsx832 movsx1632`;
//!   `le16/32/64`, `be16/32/64`, `bswap16/32/64` (alias `swap16/32/64`);
//! * memory: `ldx{b,h,w,dw}`, `ldxs{b,h,w}`, `st{b,h,w,dw}`, `stx{b,h,w,dw}`,
//!   `lddw dst, imm64`, `lock [fetch] add|and|or|xor|xchg|cmpxchg[32]
//!   [dst+off], src`;
//! * jumps: `ja target`, `ja32 target` (0x06, target in imm),
//!   `jeq jne jgt jge jlt jle jsgt jsge jslt jsle jset` with optional `32`
//!   suffix, `dst, src|imm, target`;
//! * calls: `call N` (helper), `call local target`, `call %rN` /
//!   `call helper N|%rN` (a register gives callx 0x8d, register in dst),
//!   `exit`.
//!
//! # Extensions beyond the upstream dialect
//!
//! * legacy packet loads: `ldabsb|ldabsh|ldabsw imm` (0x30/0x28/0x20) and
//!   `ldindb|ldindh|ldindw %rS, imm` (0x50/0x48/0x40, register in src);
//! * `lddw` pseudo forms (src field in parentheses): `lddw %rD, map_fd N` (1),
//!   `lddw %rD, map_value N, OFF` (2; OFF goes in the second slot's imm),
//!   `lddw %rD, btf_id N` (3), `lddw %rD, func target` (4; imm relative like
//!   `call local`), `lddw %rD, map_idx N` (5), `lddw %rD, map_idx_value N, OFF`
//!   (6);
//! * `call btf N` (0x85 with src 2; `call runtime N` is accepted as an alias);
//! * `.raw W` emits one slot given as the 64-bit little-endian word `W`, the
//!   same notation as the `-- raw` sections (opcode = low byte). The
//!   disassembler uses it for slots that have no canonical text;
//! * bare register names, `name: insn` on one line, bare unsigned numbers as
//!   relative targets, spaces inside brackets (`[%r1 + 4]`), and mnemonics in
//!   any letter case.

use std::collections::HashMap;
use std::fmt;

use crate::isa::*;

/// An assembly error with its 1-based source line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for AsmError {}

/// Which field of the first slot a resolved target is written to.
#[derive(Clone, Copy)]
enum Field {
    Off16,
    Imm32,
}

enum Target {
    Rel(i128),
    Label(String),
}

/// A target that is resolved once all labels are known.
struct Fixup {
    target: Target,
    token: String,
    field: Field,
}

/// One parsed instruction line.
struct Stmt {
    insns: Vec<Insn>,
    fixup: Option<Fixup>,
    is_exit: bool,
}

impl Stmt {
    fn one(insn: Insn) -> Self {
        Stmt {
            insns: vec![insn],
            fixup: None,
            is_exit: false,
        }
    }
}

/// Assembles a program. `lddw` yields two slots.
pub fn assemble(text: &str) -> Result<Vec<Insn>, AsmError> {
    // name -> (slot, defining line)
    let mut labels: HashMap<String, (usize, usize)> = HashMap::new();
    let mut stmts: Vec<(usize, usize, Stmt)> = Vec::new();
    let mut pc = 0usize;
    let mut first_exit = None;

    for (idx, raw_line) in text.lines().enumerate() {
        let line = idx + 1;
        let err = |message: String| AsmError { line, message };
        let code = match raw_line.find('#') {
            Some(p) => &raw_line[..p],
            None => raw_line,
        };
        let mut rest = code.trim();
        // Leading labels; `:` appears nowhere else in the syntax.
        while let Some(p) = rest.find(':') {
            let name = rest[..p].trim();
            if !is_label_name(name) {
                return Err(err(format!("invalid label name '{name}'")));
            }
            if let Some(&(_, prev)) = labels.get(name) {
                return Err(err(format!(
                    "duplicate label '{name}' (first defined on line {prev})"
                )));
            }
            labels.insert(name.to_string(), (pc, line));
            rest = rest[p + 1..].trim_start();
        }
        if rest.is_empty() {
            continue;
        }
        let toks = tokenize(rest);
        let stmt = parse_insn(&toks).map_err(err)?;
        if stmt.is_exit && first_exit.is_none() {
            first_exit = Some(pc);
        }
        let n = stmt.insns.len();
        stmts.push((line, pc, stmt));
        pc += n;
    }
    if !labels.contains_key("exit") {
        if let Some(p) = first_exit {
            labels.insert("exit".to_string(), (p, 0));
        }
    }

    let mut out = Vec::with_capacity(pc);
    for (line, pc, mut stmt) in stmts {
        if let Some(fix) = &stmt.fixup {
            let rel = match &fix.target {
                Target::Rel(v) => *v,
                Target::Label(name) => match labels.get(name) {
                    Some(&(t, _)) => t as i128 - (pc as i128 + 1),
                    None => {
                        return Err(AsmError {
                            line,
                            message: format!("undefined label '{name}'"),
                        })
                    }
                },
            };
            let range_err = |bits: u32| AsmError {
                line,
                message: format!(
                    "jump target '{}' out of range (offset {rel} does not fit in {bits} bits)",
                    fix.token
                ),
            };
            // The first slot always exists: every statement has one.
            let first = &mut stmt.insns[0];
            match fix.field {
                Field::Off16 => first.off = i16::try_from(rel).map_err(|_| range_err(16))?,
                Field::Imm32 => first.imm = i32::try_from(rel).map_err(|_| range_err(32))?,
            }
        }
        out.extend(stmt.insns);
    }
    Ok(out)
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Splits on whitespace and commas; a bracketed memory operand stays one
/// token with its inner spaces removed.
fn tokenize(s: &str) -> Vec<String> {
    let mut toks = Vec::new();
    let mut cur = String::new();
    let mut in_brackets = false;
    for c in s.chars() {
        if in_brackets {
            if c == ']' {
                in_brackets = false;
            }
            if !c.is_whitespace() {
                cur.push(c);
            }
        } else if c.is_whitespace() || c == ',' {
            if !cur.is_empty() {
                toks.push(std::mem::take(&mut cur));
            }
        } else {
            if c == '[' {
                in_brackets = true;
            }
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        toks.push(cur);
    }
    toks
}

fn expect_ops(mn: &str, ops: &[String], n: usize) -> Result<(), String> {
    if ops.len() == n {
        Ok(())
    } else {
        let s = if n == 1 { "" } else { "s" };
        Err(format!("'{mn}' expects {n} operand{s}, got {}", ops.len()))
    }
}

/// Parses an unsigned decimal or `0x` hex number; digits that overflow
/// saturate so that the caller reports "out of range" rather than "invalid".
fn parse_unsigned(s: &str) -> Option<u128> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(u128::from_str_radix(digits, radix).unwrap_or(u128::MAX))
}

/// Parses an optionally signed integer.
fn parse_int(tok: &str) -> Option<i128> {
    let (neg, body) = if let Some(b) = tok.strip_prefix('-') {
        (true, b)
    } else if let Some(b) = tok.strip_prefix('+') {
        (false, b)
    } else {
        (false, tok)
    };
    let mag = i128::try_from(parse_unsigned(body)?).unwrap_or(i128::MAX);
    Some(if neg { -mag } else { mag })
}

fn parse_imm32(tok: &str) -> Result<i32, String> {
    let v = parse_int(tok).ok_or_else(|| format!("invalid immediate '{tok}'"))?;
    if let Ok(x) = i32::try_from(v) {
        Ok(x)
    } else if let Ok(x) = u32::try_from(v) {
        // A value above i32::MAX is the bit pattern.
        Ok(x as i32)
    } else {
        Err(format!("immediate '{tok}' does not fit in 32 bits"))
    }
}

fn parse_imm64(tok: &str) -> Result<i64, String> {
    let v = parse_int(tok).ok_or_else(|| format!("invalid immediate '{tok}'"))?;
    if let Ok(x) = i64::try_from(v) {
        Ok(x)
    } else if let Ok(x) = u64::try_from(v) {
        Ok(x as i64)
    } else {
        Err(format!("immediate '{tok}' does not fit in 64 bits"))
    }
}

fn looks_like_reg(tok: &str) -> bool {
    tok.starts_with('%')
        || tok
            .strip_prefix('r')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_reg(tok: &str) -> Result<u8, String> {
    let digits = tok
        .strip_prefix("%r")
        .or_else(|| tok.strip_prefix('r'))
        .ok_or_else(|| format!("invalid register '{tok}'"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid register '{tok}'"));
    }
    match digits.parse::<u8>() {
        Ok(n) if n <= 15 => Ok(n),
        _ => Err(format!("invalid register '{tok}' (registers are r0..r15)")),
    }
}

/// Parses `[%rN]`, `[%rN+off]` or `[%rN-off]`.
fn parse_mem(tok: &str) -> Result<(u8, i16), String> {
    let inner = tok
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("invalid memory operand '{tok}'"))?;
    let (reg, off) = match inner.find(['+', '-']) {
        Some(p) => (
            &inner[..p],
            Some((inner.as_bytes()[p] == b'-', &inner[p + 1..])),
        ),
        None => (inner, None),
    };
    let reg = parse_reg(reg).map_err(|e| format!("{e} in memory operand '{tok}'"))?;
    let off = match off {
        None => 0,
        Some((neg, digits)) => {
            let mag = parse_unsigned(digits)
                .ok_or_else(|| format!("invalid offset in memory operand '{tok}'"))?;
            let mag = i128::try_from(mag).unwrap_or(i128::MAX);
            i16::try_from(if neg { -mag } else { mag })
                .map_err(|_| format!("offset in '{tok}' does not fit in 16 bits"))?
        }
    };
    Ok((reg, off))
}

fn parse_target(tok: &str, field: Field) -> Result<Fixup, String> {
    let target = if let Some(v) = parse_int(tok) {
        Target::Rel(v)
    } else if is_label_name(tok) {
        Target::Label(tok.to_string())
    } else {
        return Err(format!("invalid jump target '{tok}'"));
    };
    Ok(Fixup {
        target,
        token: tok.to_string(),
        field,
    })
}

fn alu_op(base: &str) -> Option<(u8, i16)> {
    Some(match base {
        "add" => (ALU_ADD, 0),
        "sub" => (ALU_SUB, 0),
        "mul" => (ALU_MUL, 0),
        "div" => (ALU_DIV, 0),
        "sdiv" => (ALU_DIV, 1),
        "or" => (ALU_OR, 0),
        "and" => (ALU_AND, 0),
        "lsh" => (ALU_LSH, 0),
        "rsh" => (ALU_RSH, 0),
        "mod" => (ALU_MOD, 0),
        "smod" => (ALU_MOD, 1),
        "xor" => (ALU_XOR, 0),
        "mov" => (ALU_MOV, 0),
        "arsh" => (ALU_ARSH, 0),
        _ => return None,
    })
}

fn jmp_op(base: &str) -> Option<u8> {
    Some(match base {
        "jeq" => JMP_JEQ,
        "jgt" => JMP_JGT,
        "jge" => JMP_JGE,
        "jset" => JMP_JSET,
        "jne" => JMP_JNE,
        "jsgt" => JMP_JSGT,
        "jsge" => JMP_JSGE,
        "jlt" => JMP_JLT,
        "jle" => JMP_JLE,
        "jslt" => JMP_JSLT,
        "jsle" => JMP_JSLE,
        _ => return None,
    })
}

fn size_suffix(s: &str) -> Option<u8> {
    Some(match s {
        "b" => SIZE_B,
        "h" => SIZE_H,
        "w" => SIZE_W,
        "dw" => SIZE_DW,
        _ => return None,
    })
}

/// Splits an ALU mnemonic into its base and class (`32` = ALU, `64` or no
/// suffix = ALU64).
fn alu_class(mn: &str) -> (&str, u8) {
    if let Some(b) = mn.strip_suffix("32") {
        (b, CLS_ALU)
    } else if let Some(b) = mn.strip_suffix("64") {
        (b, CLS_ALU64)
    } else {
        (mn, CLS_ALU64)
    }
}

fn parse_insn(toks: &[String]) -> Result<Stmt, String> {
    let Some((first, ops)) = toks.split_first() else {
        return Err("empty instruction".to_string());
    };
    let mn = first.to_ascii_lowercase();
    let mn = mn.as_str();
    match mn {
        ".raw" => {
            expect_ops(mn, ops, 1)?;
            let w = parse_imm64(&ops[0])? as u64;
            return Ok(Stmt::one(Insn::decode(&w.to_le_bytes())));
        }
        "exit" => {
            expect_ops(mn, ops, 0)?;
            let mut s = Stmt::one(Insn::new(OP_EXIT, 0, 0, 0, 0));
            s.is_exit = true;
            return Ok(s);
        }
        "ja" | "ja32" => {
            expect_ops(mn, ops, 1)?;
            let (opc, field) = if mn == "ja" {
                (OP_JA, Field::Off16)
            } else {
                (OP_JA32, Field::Imm32)
            };
            let mut s = Stmt::one(Insn::new(opc, 0, 0, 0, 0));
            s.fixup = Some(parse_target(&ops[0], field)?);
            return Ok(s);
        }
        "call" => return parse_call(ops),
        "lock" => return parse_lock(ops),
        "lddw" => return parse_lddw(ops),
        _ => {}
    }

    // Sign-extending moves: the offset is the source width.
    let movsx = match mn {
        "movsx864" => Some((CLS_ALU64, 8)),
        "movsx1664" => Some((CLS_ALU64, 16)),
        "movsx3264" => Some((CLS_ALU64, 32)),
        "movsx832" => Some((CLS_ALU, 8)),
        "movsx1632" => Some((CLS_ALU, 16)),
        _ => None,
    };
    if let Some((cls, off)) = movsx {
        expect_ops(mn, ops, 2)?;
        let dst = parse_reg(&ops[0])?;
        if !looks_like_reg(&ops[1]) {
            return Err(format!("'{mn}' needs a register source, got '{}'", ops[1]));
        }
        let src = parse_reg(&ops[1])?;
        return Ok(Stmt::one(Insn::new(
            cls | ALU_MOV | SRC_X,
            dst,
            src,
            off,
            0,
        )));
    }

    // Byte swaps: the immediate is the width.
    for (prefix, opc) in [
        ("le", CLS_ALU | ALU_END | SRC_K),
        ("be", CLS_ALU | ALU_END | SRC_X),
        ("bswap", CLS_ALU64 | ALU_END | SRC_K),
        ("swap", CLS_ALU64 | ALU_END | SRC_K),
    ] {
        let width = match mn.strip_prefix(prefix) {
            Some("16") => 16,
            Some("32") => 32,
            Some("64") => 64,
            _ => continue,
        };
        expect_ops(mn, ops, 1)?;
        let dst = parse_reg(&ops[0])?;
        return Ok(Stmt::one(Insn::new(opc, dst, 0, 0, width)));
    }

    if let Some(sfx) = mn.strip_prefix("neg") {
        let cls = match sfx {
            "" | "64" => Some(CLS_ALU64),
            "32" => Some(CLS_ALU),
            _ => None,
        };
        if let Some(cls) = cls {
            expect_ops(mn, ops, 1)?;
            let dst = parse_reg(&ops[0])?;
            return Ok(Stmt::one(Insn::new(cls | ALU_NEG, dst, 0, 0, 0)));
        }
    }

    let (base, cls) = alu_class(mn);
    if let Some((op, off)) = alu_op(base) {
        expect_ops(mn, ops, 2)?;
        let dst = parse_reg(&ops[0])?;
        return Ok(Stmt::one(if looks_like_reg(&ops[1]) {
            Insn::new(cls | op | SRC_X, dst, parse_reg(&ops[1])?, off, 0)
        } else {
            Insn::new(cls | op | SRC_K, dst, 0, off, parse_imm32(&ops[1])?)
        }));
    }

    let (base, cls) = match mn.strip_suffix("32") {
        Some(b) => (b, CLS_JMP32),
        None => (mn, CLS_JMP),
    };
    if let Some(op) = jmp_op(base) {
        expect_ops(mn, ops, 3)?;
        let dst = parse_reg(&ops[0])?;
        let insn = if looks_like_reg(&ops[1]) {
            Insn::new(cls | op | SRC_X, dst, parse_reg(&ops[1])?, 0, 0)
        } else {
            Insn::new(cls | op | SRC_K, dst, 0, 0, parse_imm32(&ops[1])?)
        };
        let mut s = Stmt::one(insn);
        s.fixup = Some(parse_target(&ops[2], Field::Off16)?);
        return Ok(s);
    }

    // Loads and stores; longer prefixes first so `ldxs`/`stx` win.
    let mem_forms: [(&str, u8, bool); 6] = [
        ("ldxs", CLS_LDX | MODE_MEMSX, false),
        ("ldx", CLS_LDX | MODE_MEM, true),
        ("stx", CLS_STX | MODE_MEM, true),
        ("st", CLS_ST | MODE_MEM, true),
        ("ldabs", CLS_LD | MODE_ABS, false),
        ("ldind", CLS_LD | MODE_IND, false),
    ];
    for (prefix, base_opc, dw_ok) in mem_forms {
        let Some(size) = mn.strip_prefix(prefix).and_then(size_suffix) else {
            continue;
        };
        if size == SIZE_DW && !dw_ok {
            break;
        }
        let opc = base_opc | size;
        let insn = match prefix {
            "ldxs" | "ldx" => {
                expect_ops(mn, ops, 2)?;
                let dst = parse_reg(&ops[0])?;
                let (src, off) = parse_mem(&ops[1])?;
                Insn::new(opc, dst, src, off, 0)
            }
            "stx" => {
                expect_ops(mn, ops, 2)?;
                let (dst, off) = parse_mem(&ops[0])?;
                Insn::new(opc, dst, parse_reg(&ops[1])?, off, 0)
            }
            "st" => {
                expect_ops(mn, ops, 2)?;
                let (dst, off) = parse_mem(&ops[0])?;
                Insn::new(opc, dst, 0, off, parse_imm32(&ops[1])?)
            }
            "ldabs" => {
                expect_ops(mn, ops, 1)?;
                Insn::new(opc, 0, 0, 0, parse_imm32(&ops[0])?)
            }
            _ => {
                expect_ops(mn, ops, 2)?;
                Insn::new(opc, 0, parse_reg(&ops[0])?, 0, parse_imm32(&ops[1])?)
            }
        };
        return Ok(Stmt::one(insn));
    }

    Err(format!("unknown mnemonic '{first}'"))
}

fn parse_call(ops: &[String]) -> Result<Stmt, String> {
    let helper_or_callx = |tok: &str| -> Result<Insn, String> {
        if looks_like_reg(tok) {
            Ok(Insn::new(OP_CALLX, parse_reg(tok)?, 0, 0, 0))
        } else if parse_int(tok).is_some() {
            Ok(Insn::new(OP_CALL, 0, CALL_HELPER, 0, parse_imm32(tok)?))
        } else {
            Err(format!(
                "invalid call target '{tok}' (expected a helper number, a register, \
                 or 'local <target>')"
            ))
        }
    };
    match ops {
        [one] => Ok(Stmt::one(helper_or_callx(one)?)),
        [kind, arg] => match kind.to_ascii_lowercase().as_str() {
            "local" => {
                let mut s = Stmt::one(Insn::new(OP_CALL, 0, CALL_LOCAL, 0, 0));
                s.fixup = Some(parse_target(arg, Field::Imm32)?);
                Ok(s)
            }
            "helper" => Ok(Stmt::one(helper_or_callx(arg)?)),
            "btf" | "runtime" => Ok(Stmt::one(Insn::new(
                OP_CALL,
                0,
                CALL_BTF_ID,
                0,
                parse_imm32(arg)?,
            ))),
            _ => Err(format!(
                "unknown call kind '{kind}' (expected local, helper or btf)"
            )),
        },
        _ => Err(format!("'call' expects 1 or 2 operands, got {}", ops.len())),
    }
}

fn parse_lock(ops: &[String]) -> Result<Stmt, String> {
    let (fetch, rest) = match ops.split_first() {
        Some((f, rest)) if f.eq_ignore_ascii_case("fetch") => (true, rest),
        _ => (false, ops),
    };
    let [op, mem, src] = rest else {
        return Err(format!(
            "'lock' expects '[fetch] op [dst+off], src', got {} operands",
            ops.len()
        ));
    };
    let op_l = op.to_ascii_lowercase();
    let (base, size) = match op_l.strip_suffix("32") {
        Some(b) => (b, SIZE_W),
        None => (op_l.as_str(), SIZE_DW),
    };
    let imm = match base {
        "add" => ATOMIC_ADD,
        "or" => ATOMIC_OR,
        "and" => ATOMIC_AND,
        "xor" => ATOMIC_XOR,
        "xchg" => ATOMIC_XCHG,
        "cmpxchg" => ATOMIC_CMPXCHG,
        _ => return Err(format!("unknown atomic operation '{op}'")),
    };
    let imm = if fetch { imm | ATOMIC_FETCH } else { imm };
    let (dst, off) = parse_mem(mem)?;
    let src = parse_reg(src)?;
    Ok(Stmt::one(Insn::new(
        CLS_STX | MODE_ATOMIC | size,
        dst,
        src,
        off,
        imm,
    )))
}

fn parse_lddw(ops: &[String]) -> Result<Stmt, String> {
    let (dst_tok, rest) = ops
        .split_first()
        .ok_or_else(|| "'lddw' expects a destination register".to_string())?;
    let dst = parse_reg(dst_tok)?;
    let pair = |src: u8, imm: i32, hi: i32| Stmt {
        insns: vec![
            Insn::new(OP_LDDW, dst, src, 0, imm),
            Insn::new(0, 0, 0, 0, hi),
        ],
        fixup: None,
        is_exit: false,
    };
    match rest {
        [value] => {
            let v = parse_imm64(value)?;
            Ok(pair(0, v as i32, (v >> 32) as i32))
        }
        [kind, arg] | [kind, arg, _] => {
            let kind_l = kind.to_ascii_lowercase();
            let (src, two) = match kind_l.as_str() {
                "map_fd" => (PSEUDO_MAP_FD, false),
                "map_value" => (PSEUDO_MAP_VALUE, true),
                "btf_id" => (PSEUDO_BTF_ID, false),
                "func" => (PSEUDO_FUNC, false),
                "map_idx" => (PSEUDO_MAP_IDX, false),
                "map_idx_value" => (PSEUDO_MAP_IDX_VALUE, true),
                _ => return Err(format!("unknown lddw pseudo source '{kind}'")),
            };
            let want = if two { 3 } else { 2 };
            if rest.len() != want {
                return Err(format!(
                    "'lddw {kind_l}' expects {} operand{} after the register, got {}",
                    want - 1,
                    if want == 3 { "s" } else { "" },
                    rest.len() - 1
                ));
            }
            if src == PSEUDO_FUNC {
                let mut s = pair(src, 0, 0);
                s.fixup = Some(parse_target(arg, Field::Imm32)?);
                return Ok(s);
            }
            let imm = parse_imm32(arg)?;
            let hi = match rest.get(2) {
                Some(t) => parse_imm32(t)?,
                None => 0,
            };
            Ok(pair(src, imm, hi))
        }
        _ => Err(format!("'lddw' expects 2 operands, got {}", ops.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(insns: &[Insn]) -> Vec<u64> {
        insns
            .iter()
            .map(|i| u64::from_le_bytes(i.encode()))
            .collect()
    }

    fn asm_words(text: &str) -> Vec<u64> {
        words(&assemble(text).unwrap_or_else(|e| panic!("{e}")))
    }

    fn err(text: &str) -> AsmError {
        assemble(text).expect_err("expected an assembly error")
    }

    #[test]
    fn basic_forms() {
        assert_eq!(
            asm_words("mov %r0, 1\nadd32 %r1,%r2\nexit"),
            vec![0x00000001_000000b7, 0x0000_0000_0000_210c, 0x95]
        );
        assert_eq!(asm_words("neg %r3\nneg32 %r3"), vec![0x0387, 0x0384]);
        assert_eq!(
            asm_words("sdiv32 %r1, 3\nsmod %r1, %r2"),
            vec![0x00000003_00010134, 0x0000_0000_0001_219f]
        );
        assert_eq!(
            asm_words("movsx1664 %r1, %r2\nmovsx832 r1, r2"),
            vec![0x0000_0000_0010_21bf, 0x0000_0000_0008_21bc]
        );
        assert_eq!(
            asm_words("le16 %r1\nbe64 %r1\nbswap32 %r1\nswap16 %r1"),
            vec![0x10_000001d4, 0x40_000001dc, 0x20_000001d7, 0x10_000001d7]
        );
    }

    #[test]
    fn hex_immediates_are_bit_patterns() {
        assert_eq!(
            assemble("add %r1, 0xfffffff8").unwrap()[0].imm,
            -8,
            "32-bit hex pattern"
        );
        assert_eq!(assemble("mov %r1, 4294967295").unwrap()[0].imm, -1);
        assert_eq!(assemble("mov %r1, -2147483648").unwrap()[0].imm, i32::MIN);
        let e = err("mov %r0, 0\nmov %r1, 0x100000000");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("0x100000000"), "{e}");
        assert!(assemble("mov %r1, -2147483649").is_err());
    }

    #[test]
    fn lddw_values() {
        assert_eq!(
            asm_words("lddw %r0, 0x1122334455667788"),
            vec![0x5566778800000018, 0x1122334400000000]
        );
        assert_eq!(
            asm_words("lddw %r2, 0xffffffffffffffff"),
            vec![0xffffffff_00000218, 0xffffffff_00000000]
        );
        assert_eq!(
            asm_words("lddw %r2, -1"),
            asm_words("lddw %r2, 0xffffffffffffffff")
        );
        assert_eq!(
            asm_words("lddw %r2, -9223372036854775808"),
            vec![0x218, 0x80000000_00000000]
        );
        assert!(assemble("lddw %r2, 0x10000000000000000").is_err());
    }

    #[test]
    fn pseudo_lddw_forms() {
        assert_eq!(asm_words("lddw %r1, map_fd 7"), vec![0x7_00001118, 0]);
        assert_eq!(
            asm_words("lddw %r1, map_value 7, 16"),
            vec![0x7_00002118, 0x10_00000000]
        );
        assert_eq!(asm_words("lddw %r1, btf_id 3"), vec![0x3_00003118, 0]);
        assert_eq!(asm_words("lddw %r1, map_idx 0"), vec![0x5118, 0]);
        assert_eq!(
            asm_words("lddw %r1, map_idx_value 2, -4"),
            vec![0x2_00006118, 0xfffffffc_00000000]
        );
        // func is relative to the slot after the first lddw slot.
        let p = assemble("lddw %r1, func f\nexit\nf:\nexit").unwrap();
        assert_eq!((p[0].src, p[0].imm), (PSEUDO_FUNC, 2));
        assert_eq!(assemble("lddw %r1, func -3").unwrap()[0].imm, -3);
        assert!(assemble("lddw %r1, map_fd 1, 2").is_err());
        assert!(assemble("lddw %r1, map_value 1").is_err());
        assert!(assemble("lddw %r1, bogus 1").is_err());
    }

    #[test]
    fn packet_loads_and_calls() {
        assert_eq!(
            asm_words("ldabsb 4\nldabsh 4\nldabsw 4"),
            vec![0x4_00000030, 0x4_00000028, 0x4_00000020]
        );
        assert_eq!(
            asm_words("ldindb %r3, 4\nldindh %r3, 4\nldindw %r3, 4"),
            vec![0x4_00003050, 0x4_00003048, 0x4_00003040]
        );
        assert!(assemble("ldabsdw 4").is_err());
        assert_eq!(
            asm_words("call 5\ncall helper 5\ncall %r2\ncall helper r2\ncall btf 9"),
            vec![0x5_00000085, 0x5_00000085, 0x028d, 0x028d, 0x9_00002085]
        );
        assert_eq!(
            asm_words("call local f\nexit\nf:\nexit"),
            vec![0x1_00001085, 0x95, 0x95]
        );
        assert!(assemble("call f").is_err());
    }

    #[test]
    fn memory_and_atomics() {
        assert_eq!(
            asm_words("ldxw %r1, [%r2-32768]\nstdw [%r10-0x200], 456\nstxb [%r1 + 3], %r4"),
            vec![0x80002161, 0x1c8_fe000a7a, 0x0003_4173]
        );
        assert_eq!(
            asm_words(
                "lock add [%r10-8], %r1\nlock fetch xor32 [%r10-4], %r3\n\
                 lock cmpxchg [%r1], %r2\nlock xchg32 [%r1], %r2"
            ),
            vec![0xfff81adb, 0xa1_fffc3ac3, 0xf1_000021db, 0xe1_000021c3]
        );
        assert!(assemble("ldxw %r1, [%r2+32768]").is_err());
        assert!(assemble("ldxw %r1, [%r2").is_err());
        assert!(assemble("ldxsdw %r1, [%r2]").is_err());
        assert!(assemble("lock nand [%r1], %r2").is_err());
    }

    #[test]
    fn labels_and_exit() {
        // `exit` is the first exit instruction when not defined.
        let p = assemble("ja exit\nmov %r0, 1\nexit\nexit").unwrap();
        assert_eq!(p[0].off, 1);
        // An explicit `exit:` label wins.
        let p = assemble("ja exit\nexit\nexit:\nexit").unwrap();
        assert_eq!(p[0].off, 1);
        // Label and instruction on one line; lddw counts two slots.
        let p = assemble("jeq %r1, 0, done\nlddw %r0, 1\ndone: exit").unwrap();
        assert_eq!(p[0].off, 2);
        let p = assemble("top:\nja top").unwrap();
        assert_eq!(p[0].off, -1);
        let p = assemble("ja32 +70000\nja32 -1").unwrap();
        assert_eq!((p[0].imm, p[1].imm), (70000, -1));
    }

    #[test]
    fn error_line_numbers_and_messages() {
        let e = err("mov %r0, 0\n\n# comment\nfrob %r0\nexit");
        assert_eq!(e.line, 4);
        assert!(e.message.contains("frob"), "{e}");
        assert_eq!(e.to_string(), "line 4: unknown mnemonic 'frob'");

        let e = err("mov %r0\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("mov"), "{e}");

        let e = err("exit\nmov %r16, 1");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("%r16"), "{e}");

        let e = err("mov %r0, 0\nja nowhere\nexit");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("nowhere"), "{e}");

        let e = err("a:\nexit\na:\nexit");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("'a'"), "{e}");

        let e = err("ja +32768");
        assert!(e.message.contains("+32768"), "{e}");
        let e = err("jeq %r0, 0, far\n.raw 0\n");
        assert!(e.message.contains("far"), "{e}");

        let mut long = String::from("ja end\n");
        long.push_str(&"mov %r0, 0\n".repeat(40000));
        long.push_str("end:\nexit\n");
        let e = err(&long);
        assert_eq!(e.line, 1);
        assert!(e.message.contains("end"), "{e}");

        // No `exit` instruction means no predefined `exit` label.
        assert!(assemble("ja exit").is_err());
        assert!(assemble("exit 1").is_err());
        assert!(assemble("stw [%r1], %r2").is_err());
        assert!(assemble("movsx864 %r1, 5").is_err());
        assert!(assemble("le17 %r1").is_err());
        assert!(assemble("bad label: exit").is_err());
    }

    #[test]
    fn invalid_registers_are_accepted_up_to_15() {
        assert_eq!(asm_words("mov %r11, 1"), vec![0x1_00000bb7]);
        assert_eq!(asm_words("mov %r15, %r12"), vec![0xcfbf]);
        assert!(assemble("mov %r16, 1").is_err());
        assert!(assemble("mov %rx, 1").is_err());
    }

    #[test]
    fn raw_escape() {
        assert_eq!(
            asm_words(".raw 0x5566778800000018\n.raw 0xffffffffffffffff"),
            vec![0x5566778800000018, u64::MAX]
        );
        assert!(assemble(".raw").is_err());
        assert!(assemble(".raw 0x1ffffffffffffffff").is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let pieces = [
            "",
            " ",
            ",",
            "[",
            "]",
            "%r",
            "%r1",
            "r99",
            "+",
            "-",
            "0x",
            "0x1",
            "-0x",
            ":",
            "a:",
            "#",
            "lock",
            "fetch",
            "lddw",
            "call",
            "local",
            "map_value",
            "ja",
            "jeq",
            "[%r1+",
            "[%r1-]",
            "é",
            "ldxw",
            "\u{2028}",
            "999999999999999999999999999999999999999999",
        ];
        let mut seed = 0x1234_5678_u64;
        for _ in 0..20000 {
            let mut line = String::new();
            for _ in 0..(seed % 6) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                line.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
                if seed & 0x100 != 0 {
                    line.push(' ');
                }
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let _ = assemble(&line);
        }
    }
}
