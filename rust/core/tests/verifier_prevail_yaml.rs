//! PREVAIL's YAML test cases (`../shared/verifier-corpus/prevail-yaml/`) run
//! through our verifier, where they can be expressed.
//!
//! Each case gives an initial abstract state (`pre`), a snippet in PREVAIL's
//! assembly dialect (kernel syntax: `r1 = *(u32 *)(r2 + 4)`, `if w1 > 3 goto
//! <out>`, plus PREVAIL's `assume` and `lock`/`fetch` forms) and the messages
//! PREVAIL reports. We turn the `pre` state into a prologue that establishes
//! it (unknown numbers come from `bpf_ktime_get_ns` spilled to the bottom of
//! the stack and refilled, bounds from conditional jumps to a final `exit`,
//! stack and context pointers from r10 and r1, packet pointers from an XDP
//! context with a checked length), translate the snippet (`assume c`
//! becomes `if !c goto exit`), close it with `r0 = 0; exit` when it can
//! fall off its end, and compare verdicts: PREVAIL rejects when it reports
//! a message other than "Code becomes unreachable".
//!
//! Not expressible (counted, skipped): map pseudo-registers, `callx`,
//! legacy packet loads, relational preconditions, PREVAIL-only options
//! (division by zero as an error, big-endian), register types other than
//! number/ctx/stack/packet. PREVAIL and the kernel disagree by design in
//! places (e.g. reading an uninitialised register in `r5 = r5`), so the
//! test asserts a floor on agreement, not full agreement.
//!
//!     cargo test -p ebpfvm-core --test verifier_prevail_yaml -- --nocapture

mod verifier_support;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ebpfvm_core::isa::*;
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::verifier::{verify, VerifyOptions};
use verifier_support::{panic_text, shared_dir};
use yaml_rust2::{Yaml, YamlLoader};

/// Cases converted and cases on which we agree with PREVAIL when this floor
/// was last raised; fewer is a regression.
const CONVERTED_FLOOR: usize = 547;
const AGREE_FLOOR: usize = 480;

/// A test case as read from the YAML.
struct Case {
    file: String,
    name: String,
    options: Vec<String>,
    pre: Vec<String>,
    /// (label, text) in document order.
    code: Vec<(String, String)>,
    messages: Vec<String>,
}

fn strings(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a
            .iter()
            .map(|v| match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                other => format!("{other:?}"),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The cases of every file, and the documents that could not be read.
fn read_cases(dir: &std::path::Path) -> (Vec<Case>, Vec<String>) {
    let mut unreadable = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.ends_with("test-schema.yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable yaml");
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        // yaml-rust2 refuses a flow sequence closed at column 0 (`]` alone on
        // a line), which PyYAML and PREVAIL's reader accept: indent it.
        let text = text.replace("\n]", "\n  ]");
        let mut docs = Vec::new();
        for (i, chunk) in text.split("\n---").enumerate() {
            match YamlLoader::load_from_str(chunk) {
                Ok(d) => docs.extend(d),
                Err(e) => unreadable.push(format!("{file} document {i}: {e}")),
            }
        }
        for doc in docs {
            let Some(name) = doc["test-case"].as_str() else {
                continue;
            };
            let mut code = Vec::new();
            if let Yaml::Hash(h) = &doc["code"] {
                for (k, v) in h {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                        code.push((
                            k.trim_matches(|c| c == '<' || c == '>').to_string(),
                            v.to_string(),
                        ));
                    }
                }
            }
            cases.push(Case {
                file: file.clone(),
                name: name.to_string(),
                options: strings(&doc["options"]),
                pre: strings(&doc["pre"]),
                code,
                messages: strings(&doc["messages"]),
            });
        }
    }
    (cases, unreadable)
}

/// Why a case cannot be expressed.
type Skip = String;

/// What `pre` says about one register.
#[derive(Default, Clone)]
struct RegPre {
    kind: Option<String>,
    svalue: Option<(i64, i64)>,
    uvalue: Option<(u64, u64)>,
    ctx_offset: Option<i64>,
    stack_offset: Option<i64>,
    packet_offset: Option<PacketOff>,
}

#[derive(Clone, Copy)]
enum PacketOff {
    At(i64),
    End,
}

#[derive(Default)]
struct Pre {
    regs: BTreeMap<u8, RegPre>,
    /// (first, last) byte offsets from the stack bottom (r10 - 512) holding numbers.
    stack_numbers: Vec<(i64, i64, Option<i64>)>,
    packet_size: Option<i64>,
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b.trim()),
        None => (false, s),
    };
    let v: i128 = if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else {
        body.parse().ok()?
    };
    let v = if neg { -v } else { v };
    i64::try_from(v)
        .ok()
        .or_else(|| u64::try_from(v).ok().map(|u| u as i64))
}

/// `K` or `[a, b]`.
fn parse_range(s: &str) -> Option<(i64, i64)> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        let (a, b) = inner.split_once(',')?;
        Some((parse_int(a)?, parse_int(b)?))
    } else {
        let v = parse_int(s)?;
        Some((v, v))
    }
}

fn parse_reg(s: &str) -> Option<u8> {
    let n: u8 = s.strip_prefix('r')?.parse().ok()?;
    (n <= 10).then_some(n)
}

fn parse_pre(items: &[String]) -> Result<Pre, Skip> {
    let mut pre = Pre::default();
    for item in items {
        let (lhs, rhs) = item
            .split_once('=')
            .ok_or_else(|| format!("pre `{item}`"))?;
        let (lhs, rhs) = (lhs.trim(), rhs.trim());
        if lhs == "meta_offset" {
            if parse_int(rhs) != Some(0) {
                return Err(format!("pre `{item}`"));
            }
            continue;
        }
        if lhs == "packet_size" {
            let (lo, _) = parse_range(rhs).ok_or_else(|| format!("pre `{item}`"))?;
            pre.packet_size = Some(lo);
            continue;
        }
        if let Some(range) = lhs.strip_prefix("s[") {
            // s[a...b].type=number / .svalue / .uvalue
            let (span, field) = range
                .split_once("].")
                .ok_or_else(|| format!("pre `{item}`"))?;
            let (a, b) = span
                .split_once("...")
                .ok_or_else(|| format!("pre `{item}`"))?;
            let (a, b) = (
                parse_int(a).ok_or_else(|| format!("pre `{item}`"))?,
                parse_int(b).ok_or_else(|| format!("pre `{item}`"))?,
            );
            if !(0..512).contains(&a) || !(a..512).contains(&b) {
                return Err(format!("pre `{item}`"));
            }
            match field {
                "type" if rhs == "number" => {
                    if !pre.stack_numbers.iter().any(|s| s.0 == a && s.1 == b) {
                        pre.stack_numbers.push((a, b, None));
                    }
                }
                "svalue" | "uvalue" => {
                    let v = parse_int(rhs);
                    match pre.stack_numbers.iter_mut().find(|s| s.0 == a && s.1 == b) {
                        Some(s) => s.2 = s.2.or(v),
                        None => pre.stack_numbers.push((a, b, v)),
                    }
                }
                _ => return Err(format!("pre `{item}`")),
            }
            continue;
        }
        let (reg, field) = lhs.split_once('.').ok_or_else(|| format!("pre `{item}`"))?;
        let reg = parse_reg(reg).ok_or_else(|| format!("pre `{item}`"))?;
        let r = pre.regs.entry(reg).or_default();
        match field {
            "type" => match rhs {
                "number" | "ctx" | "stack" | "packet" => r.kind = Some(rhs.to_string()),
                _ => return Err(format!("register type `{rhs}`")),
            },
            "svalue" => {
                if rhs.starts_with('r') {
                    return Err(format!("relational pre `{item}`"));
                }
                r.svalue = Some(parse_range(rhs).ok_or_else(|| format!("pre `{item}`"))?);
            }
            "uvalue" => {
                if rhs.starts_with('r') {
                    // uvalue=rN.svalue: the same range read unsigned; the
                    // signed bounds already say it.
                    continue;
                }
                let (a, b) = parse_range(rhs).ok_or_else(|| format!("pre `{item}`"))?;
                r.uvalue = Some((a as u64, b as u64));
            }
            "ctx_offset" => r.ctx_offset = parse_int(rhs),
            "stack_offset" => {
                r.stack_offset = Some(parse_int(rhs).ok_or_else(|| format!("pre `{item}`"))?)
            }
            "packet_offset" => {
                r.packet_offset = Some(if rhs == "packet_size" {
                    PacketOff::End
                } else {
                    PacketOff::At(parse_int(rhs).ok_or_else(|| format!("pre `{item}`"))?)
                })
            }
            "stack_numeric_size" => {}
            _ => return Err(format!("pre field `{field}`")),
        }
    }
    Ok(pre)
}

/// One instruction whose jump target may still be a label.
struct Emit {
    insn: Insn,
    target: Option<String>,
}

const BAIL: &str = "#bail";

struct Builder {
    out: Vec<Emit>,
    labels: BTreeMap<String, usize>,
}

impl Builder {
    fn push(&mut self, insn: Insn) {
        self.out.push(Emit { insn, target: None });
    }

    fn jump(&mut self, insn: Insn, label: &str) {
        self.out.push(Emit {
            insn,
            target: Some(label.to_string()),
        });
    }

    fn lddw(&mut self, dst: u8, v: i64) {
        self.push(Insn::new(OP_LDDW, dst, 0, 0, v as i32));
        self.push(Insn::new(0, 0, 0, 0, (v >> 32) as i32));
    }

    /// `dst = v` with the shortest encoding.
    fn mov_const(&mut self, dst: u8, v: i64) {
        match i32::try_from(v) {
            Ok(i) => self.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, dst, 0, 0, i)),
            Err(_) => self.lddw(dst, v),
        }
    }

    /// `if dst <op> v goto bail`, through `temp` when `v` is not an i32.
    fn bail_if(&mut self, op: u8, dst: u8, v: i64, temp: Option<u8>) -> Result<(), Skip> {
        match i32::try_from(v) {
            Ok(i) => self.jump(Insn::new(CLS_JMP | op | SRC_K, dst, 0, 0, i), BAIL),
            Err(_) => {
                let t = temp.ok_or("a bound needs a free register")?;
                self.lddw(t, v);
                self.jump(Insn::new(CLS_JMP | op | SRC_X, dst, t, 0, 0), BAIL);
            }
        }
        Ok(())
    }
}

fn size_of(s: &str) -> Option<(u8, bool)> {
    Some(match s {
        "u8" => (SIZE_B, false),
        "u16" => (SIZE_H, false),
        "u32" => (SIZE_W, false),
        "u64" => (SIZE_DW, false),
        "s8" => (SIZE_B, true),
        "s16" => (SIZE_H, true),
        "s32" => (SIZE_W, true),
        _ => return None,
    })
}

/// `*(u32 *)(r2 + 4)` → (size, signed, reg, off).
fn parse_mem(s: &str) -> Option<(u8, bool, u8, i16)> {
    let s = s.trim().strip_prefix("*(")?;
    let (ty, rest) = s.split_once("*)")?;
    let (size, signed) = size_of(ty.trim())?;
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (reg, off) = if let Some((r, o)) = inner.split_once('+') {
        (r, parse_int(o)?)
    } else if let Some((r, o)) = inner.split_once('-') {
        (r, -parse_int(o)?)
    } else {
        (inner, 0)
    };
    Some((
        size,
        signed,
        parse_reg(reg.trim())?,
        i16::try_from(off).ok()?,
    ))
}

/// A register operand: (number, is 32-bit `wN`).
fn parse_operand_reg(s: &str) -> Option<(u8, bool)> {
    let s = s.trim();
    if let Some(n) = s.strip_prefix('w') {
        let n: u8 = n.parse().ok()?;
        return (n <= 10).then_some((n, true));
    }
    parse_reg(s).map(|r| (r, false))
}

fn alu_op(op: &str) -> Option<(u8, i16)> {
    // (opcode, offset field: 1 for the signed div/mod forms)
    Some(match op {
        "+=" => (ALU_ADD, 0),
        "-=" => (ALU_SUB, 0),
        "*=" => (ALU_MUL, 0),
        "/=" => (ALU_DIV, 0),
        "%=" => (ALU_MOD, 0),
        "s/=" => (ALU_DIV, 1),
        "s%=" => (ALU_MOD, 1),
        "|=" => (ALU_OR, 0),
        "&=" => (ALU_AND, 0),
        "^=" => (ALU_XOR, 0),
        "<<=" => (ALU_LSH, 0),
        ">>=" => (ALU_RSH, 0),
        "s>>=" => (ALU_ARSH, 0),
        _ => return None,
    })
}

fn jmp_op(op: &str) -> Option<u8> {
    Some(match op {
        "==" => JMP_JEQ,
        "!=" => JMP_JNE,
        ">" => JMP_JGT,
        ">=" => JMP_JGE,
        "<" => JMP_JLT,
        "<=" => JMP_JLE,
        "s>" => JMP_JSGT,
        "s>=" => JMP_JSGE,
        "s<" => JMP_JSLT,
        "s<=" => JMP_JSLE,
        "&==" => JMP_JSET,
        _ => return None,
    })
}

/// The condition that holds exactly when `op` does not.
fn negate(op: u8) -> Option<u8> {
    Some(match op {
        JMP_JEQ => JMP_JNE,
        JMP_JNE => JMP_JEQ,
        JMP_JGT => JMP_JLE,
        JMP_JLE => JMP_JGT,
        JMP_JGE => JMP_JLT,
        JMP_JLT => JMP_JGE,
        JMP_JSGT => JMP_JSLE,
        JMP_JSLE => JMP_JSGT,
        JMP_JSGE => JMP_JSLT,
        JMP_JSLT => JMP_JSGE,
        _ => return None,
    })
}

/// `rA <op> rB|K` → a conditional jump instruction (target patched later).
fn cond(text: &str, negated: bool) -> Result<Insn, Skip> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [a, op, b] = parts[..] else {
        return Err(format!("condition `{text}`"));
    };
    let (ra, w) = parse_operand_reg(a).ok_or_else(|| format!("condition `{text}`"))?;
    let mut op = jmp_op(op).ok_or_else(|| format!("condition `{text}`"))?;
    if negated {
        op = negate(op).ok_or_else(|| format!("negated condition `{text}`"))?;
    }
    let class = if w { CLS_JMP32 } else { CLS_JMP };
    if let Some((rb, _)) = parse_operand_reg(b) {
        Ok(Insn::new(class | op | SRC_X, ra, rb, 0, 0))
    } else {
        let k = parse_int(b).ok_or_else(|| format!("condition `{text}`"))?;
        let k = i32::try_from(k)
            .or_else(|_| u32::try_from(k).map(|u| u as i32))
            .map_err(|_| format!("immediate in `{text}`"))?;
        Ok(Insn::new(class | op | SRC_K, ra, 0, 0, k))
    }
}

fn translate_line(b: &mut Builder, line: &str) -> Result<(), Skip> {
    let line = line.split(';').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(());
    }
    let bad = || format!("instruction `{line}`");
    if line == "exit" {
        b.push(Insn::new(OP_EXIT, 0, 0, 0, 0));
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix("goto ") {
        let label = rest.trim().trim_matches(|c| c == '<' || c == '>');
        b.jump(Insn::new(OP_JA, 0, 0, 0, 0), label);
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix("call ") {
        let rest = rest.trim();
        if let Some(label) = rest.strip_prefix('<') {
            b.jump(
                Insn::new(OP_CALL, 0, CALL_LOCAL, 0, 0),
                label.trim_end_matches('>'),
            );
        } else {
            let id = parse_int(rest).ok_or_else(bad)?;
            b.push(Insn::new(OP_CALL, 0, CALL_HELPER, 0, id as i32));
        }
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix("assume ") {
        let insn = cond(rest, true)?;
        b.jump(insn, BAIL);
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix("if ") {
        let (c, target) = rest.split_once(" goto ").ok_or_else(bad)?;
        let insn = cond(c, false)?;
        let label = target.trim().trim_matches(|c| c == '<' || c == '>');
        b.jump(insn, label);
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix("lock ") {
        // lock *(u64 *)(r1 + 0) += r2 [fetch]: the operand ends at the first ") ".
        let close = rest.find(") ").ok_or_else(bad)?;
        let (mem, op_src) = (&rest[..=close], rest[close + 1..].trim());
        let (size, _, dst, off) = parse_mem(mem).ok_or_else(bad)?;
        let parts: Vec<&str> = op_src.split_whitespace().collect();
        let (op, src, fetch) = match parts[..] {
            [op, src] => (op, src, false),
            [op, src, "fetch"] => (op, src, true),
            _ => return Err(bad()),
        };
        let (src, _) = parse_operand_reg(src).ok_or_else(bad)?;
        let code = match op {
            "+=" => ATOMIC_ADD,
            "|=" => ATOMIC_OR,
            "&=" => ATOMIC_AND,
            "^=" => ATOMIC_XOR,
            "x=" => ATOMIC_XCHG,
            "cx=" => ATOMIC_CMPXCHG,
            _ => return Err(bad()),
        } | if fetch { ATOMIC_FETCH } else { 0 };
        b.push(Insn::new(CLS_STX | MODE_ATOMIC | size, dst, src, off, code));
        return Ok(());
    }
    // Assignments: `lhs op rhs`, tolerating `r5=r5`.
    let parts: Vec<String> = if line.contains(' ') {
        let (lhs, rest) = line.split_once(' ').ok_or_else(bad)?;
        let (op, rhs) = rest.trim().split_once(' ').ok_or_else(bad)?;
        vec![lhs.into(), op.into(), rhs.trim().into()]
    } else {
        let (lhs, rhs) = line.split_once('=').ok_or_else(bad)?;
        vec![lhs.into(), "=".into(), rhs.into()]
    };
    let (lhs, op, rhs) = (parts[0].as_str(), parts[1].as_str(), parts[2].as_str());
    if lhs.starts_with("*(") {
        // store: *(u32 *)(r1 + 4) = r2 | imm — the lhs was split at its first space.
        let (mem, value) = line.rsplit_once(" = ").ok_or_else(bad)?;
        let (size, signed, dst, off) = parse_mem(mem).ok_or_else(bad)?;
        if signed {
            return Err(bad());
        }
        if let Some((src, _)) = parse_operand_reg(value) {
            b.push(Insn::new(CLS_STX | MODE_MEM | size, dst, src, off, 0));
        } else {
            let k = parse_int(value).ok_or_else(bad)?;
            b.push(Insn::new(CLS_ST | MODE_MEM | size, dst, 0, off, k as i32));
        }
        return Ok(());
    }
    let (dst, w) = parse_operand_reg(lhs).ok_or_else(bad)?;
    let class = if w { CLS_ALU } else { CLS_ALU64 };
    if op == "=" {
        if rhs.starts_with("*(") {
            let (size, signed, src, off) = parse_mem(rhs).ok_or_else(bad)?;
            let mode = if signed { MODE_MEMSX } else { MODE_MEM };
            b.push(Insn::new(CLS_LDX | mode | size, dst, src, off, 0));
            return Ok(());
        }
        if let Some(v) = rhs.strip_suffix("ll") {
            let k = parse_int(v).ok_or_else(bad)?;
            b.lddw(dst, k);
            return Ok(());
        }
        if let Some(r) = rhs.strip_prefix('-').map(str::trim) {
            if let Some((src, _)) = parse_operand_reg(r) {
                if src != dst {
                    return Err(bad());
                }
                b.push(Insn::new(class | ALU_NEG, dst, 0, 0, 0));
                return Ok(());
            }
        }
        for (prefix, kind) in [("be", 1), ("le", 0), ("swap", 2)] {
            if let Some(rest) = rhs.strip_prefix(prefix) {
                let (bits, reg) = rest.split_once(' ').ok_or_else(bad)?;
                let bits: i32 = bits.parse().map_err(|_| bad())?;
                if parse_operand_reg(reg).map(|r| r.0) != Some(dst) {
                    return Err(bad());
                }
                let insn = match kind {
                    0 => Insn::new(CLS_ALU | ALU_END, dst, 0, 0, bits),
                    1 => Insn::new(CLS_ALU | ALU_END | SRC_X, dst, 0, 0, bits),
                    _ => Insn::new(CLS_ALU64 | ALU_END, dst, 0, 0, bits),
                };
                b.push(insn);
                return Ok(());
            }
        }
        if let Some((src, _)) = parse_operand_reg(rhs) {
            b.push(Insn::new(class | ALU_MOV | SRC_X, dst, src, 0, 0));
            return Ok(());
        }
        let k = parse_int(rhs).ok_or_else(bad)?;
        if w {
            let k = i32::try_from(k)
                .or_else(|_| u32::try_from(k).map(|u| u as i32))
                .map_err(|_| bad())?;
            b.push(Insn::new(CLS_ALU | ALU_MOV | SRC_K, dst, 0, 0, k));
        } else {
            b.mov_const(dst, k);
        }
        return Ok(());
    }
    if let Some(bits) = op.strip_prefix('s').and_then(|x| x.strip_suffix('=')) {
        // movsx: r1 s8= r2
        let bits: i16 = bits.parse().map_err(|_| bad())?;
        let (src, _) = parse_operand_reg(rhs).ok_or_else(bad)?;
        b.push(Insn::new(class | ALU_MOV | SRC_X, dst, src, bits, 0));
        return Ok(());
    }
    let (code, off) = alu_op(op).ok_or_else(bad)?;
    if let Some((src, _)) = parse_operand_reg(rhs) {
        b.push(Insn::new(class | code | SRC_X, dst, src, off, 0));
    } else {
        let k = parse_int(rhs).ok_or_else(bad)?;
        let k = i32::try_from(k)
            .or_else(|_| u32::try_from(k).map(|u| u as i32))
            .map_err(|_| bad())?;
        b.push(Insn::new(class | code | SRC_K, dst, 0, off, k));
    }
    Ok(())
}

/// The whole program for a case, and the type to verify it as.
fn convert(case: &Case) -> Result<(Vec<Insn>, ProgType), Skip> {
    for o in &case.options {
        if o != "termination" && o != "!big_endian" {
            return Err(format!("option `{o}`"));
        }
    }
    let pre = parse_pre(&case.pre)?;
    let uses_packet = pre.packet_size.is_some()
        || pre
            .regs
            .values()
            .any(|r| matches!(r.kind.as_deref(), Some("packet" | "ctx")));
    let prog_type = if uses_packet {
        ProgType::Xdp
    } else {
        ProgType::Raw
    };
    let mut b = Builder {
        out: Vec::new(),
        labels: BTreeMap::new(),
    };
    let used: BTreeSet<u8> = pre.regs.keys().copied().collect();
    let free: Vec<u8> = (0..10).filter(|r| !used.contains(r)).collect();
    // The context pointer survives the calls in a callee-saved register.
    let ctx_home = if uses_packet {
        let r = *free
            .iter()
            .find(|r| (6..=9).contains(*r))
            .ok_or("no free callee-saved register for the context")?;
        b.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, r, 1, 0, 0));
        Some(r)
    } else {
        None
    };
    let temp = free
        .iter()
        .copied()
        .find(|r| Some(*r) != ctx_home && *r != 0);
    // Unknown numbers: ktime_get_ns spilled to the bottom of the stack.
    let numbers: Vec<(u8, RegPre)> = pre
        .regs
        .iter()
        .filter(|(_, r)| r.kind.as_deref() == Some("number"))
        .map(|(n, r)| (*n, r.clone()))
        .collect();
    let mut slot = 0i16;
    let mut unknown_slots = BTreeMap::new();
    for (n, r) in &numbers {
        let singleton = r.svalue.filter(|(a, b)| a == b).is_some()
            || r.uvalue.filter(|(a, b)| a == b).is_some();
        if !singleton {
            b.push(Insn::new(OP_CALL, 0, CALL_HELPER, 0, 5));
            b.push(Insn::new(
                CLS_STX | MODE_MEM | SIZE_DW,
                10,
                0,
                -512 + 8 * slot,
                0,
            ));
            unknown_slots.insert(*n, -512 + 8 * slot);
            slot += 1;
        }
    }
    if !pre.stack_numbers.is_empty() {
        b.push(Insn::new(OP_CALL, 0, CALL_HELPER, 0, 5));
    }
    for &(first, last, value) in &pre.stack_numbers {
        let off = first - 512;
        let len = last - first + 1;
        let size = match len {
            1 => Some(SIZE_B),
            2 => Some(SIZE_H),
            4 => Some(SIZE_W),
            8 => Some(SIZE_DW),
            _ => None,
        };
        match (value, size) {
            (Some(v), Some(size)) if i32::try_from(v).is_ok() && first % len == 0 => b.push(
                Insn::new(CLS_ST | MODE_MEM | size, 10, 0, off as i16, v as i32),
            ),
            _ => {
                for i in 0..len {
                    b.push(Insn::new(
                        CLS_STX | MODE_MEM | SIZE_B,
                        10,
                        0,
                        (off + i) as i16,
                        0,
                    ));
                }
            }
        }
    }
    // Pointers.
    for (n, r) in &pre.regs {
        match r.kind.as_deref() {
            Some("ctx") => {
                let home = ctx_home.expect("packet programs have a context home");
                b.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, *n, home, 0, 0));
                if let Some(off) = r.ctx_offset.filter(|o| *o != 0) {
                    b.push(Insn::new(CLS_ALU64 | ALU_ADD | SRC_K, *n, 0, 0, off as i32));
                }
            }
            Some("stack") => {
                let off = r.stack_offset.ok_or("stack register without an offset")?;
                if *n != 10 {
                    b.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, *n, 10, 0, 0));
                    b.push(Insn::new(
                        CLS_ALU64 | ALU_ADD | SRC_K,
                        *n,
                        0,
                        0,
                        (off - 512) as i32,
                    ));
                } else if off != 512 {
                    return Err("r10 is always the top of the stack".into());
                }
            }
            Some("packet") => {
                let home = ctx_home.expect("packet programs have a context home");
                match r.packet_offset.ok_or("packet register without an offset")? {
                    PacketOff::End => {
                        b.push(Insn::new(CLS_LDX | MODE_MEM | SIZE_W, *n, home, 4, 0));
                    }
                    PacketOff::At(k) => {
                        b.push(Insn::new(CLS_LDX | MODE_MEM | SIZE_W, *n, home, 0, 0));
                        if k != 0 {
                            b.push(Insn::new(CLS_ALU64 | ALU_ADD | SRC_K, *n, 0, 0, k as i32));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(size) = pre.packet_size.filter(|s| *s > 0) {
        // data + size <= data_end, through two scratch registers.
        let home = ctx_home.expect("packet programs have a context home");
        let mut scratch = free.iter().copied().filter(|r| Some(*r) != ctx_home);
        let (t1, t2) = match (scratch.next(), scratch.next()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err("no scratch registers for the packet length check".into()),
        };
        b.push(Insn::new(CLS_LDX | MODE_MEM | SIZE_W, t1, home, 0, 0));
        b.push(Insn::new(
            CLS_ALU64 | ALU_ADD | SRC_K,
            t1,
            0,
            0,
            size as i32,
        ));
        b.push(Insn::new(CLS_LDX | MODE_MEM | SIZE_W, t2, home, 4, 0));
        b.jump(Insn::new(CLS_JMP | JMP_JGT | SRC_X, t1, t2, 0, 0), BAIL);
    }
    // Numbers last (r0 among them).
    for (n, r) in &numbers {
        let temp = temp.filter(|t| t != n);
        match unknown_slots.get(n) {
            None => {
                let v = r
                    .svalue
                    .map(|s| s.0)
                    .or(r.uvalue.map(|u| u.0 as i64))
                    .expect("singletons have a value");
                b.mov_const(*n, v);
            }
            Some(&off) => {
                b.push(Insn::new(CLS_LDX | MODE_MEM | SIZE_DW, *n, 10, off, 0));
                if let Some((lo, hi)) = r.svalue {
                    b.bail_if(JMP_JSLT, *n, lo, temp)?;
                    b.bail_if(JMP_JSGT, *n, hi, temp)?;
                }
                if let Some((lo, hi)) = r.uvalue {
                    if lo != 0 {
                        b.bail_if(JMP_JLT, *n, lo as i64, temp)?;
                    }
                    if hi != u64::MAX {
                        b.bail_if(JMP_JGT, *n, hi as i64, temp)?;
                    }
                }
            }
        }
    }
    // The snippet.
    for (label, text) in &case.code {
        b.labels.insert(label.clone(), b.out.len());
        for line in text.lines() {
            translate_line(&mut b, line)?;
        }
    }
    // Close it when the last instruction can fall through or a label names
    // the end.
    let end = b.out.len();
    let falls_through = b.out.last().is_none_or(|e| {
        let op = e.insn.opc;
        op != OP_EXIT && op != OP_JA
    });
    if falls_through || b.labels.values().any(|&at| at == end) {
        b.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 0, 0, 0, 0));
        b.push(Insn::new(OP_EXIT, 0, 0, 0, 0));
    }
    if b.out.iter().any(|e| e.target.as_deref() == Some(BAIL)) {
        b.labels.insert(BAIL.into(), b.out.len());
        b.push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_K, 0, 0, 0, 0));
        b.push(Insn::new(OP_EXIT, 0, 0, 0, 0));
    }
    let mut insns = Vec::with_capacity(b.out.len());
    for (pc, e) in b.out.iter().enumerate() {
        let mut insn = e.insn;
        if let Some(label) = &e.target {
            let at = *b
                .labels
                .get(label)
                .ok_or_else(|| format!("unknown label <{label}>"))?;
            let rel = at as i64 - pc as i64 - 1;
            if insn.opc == OP_CALL {
                insn.imm = rel as i32;
            } else {
                insn.off = i16::try_from(rel).map_err(|_| "jump too far")?;
            }
        }
        insns.push(insn);
    }
    Ok((insns, prog_type))
}

/// PREVAIL rejects when it reports anything but dead-branch notes.
fn prevail_rejects(case: &Case) -> bool {
    case.messages
        .iter()
        .any(|m| !m.contains("Code becomes unreachable"))
}

#[test]
fn prevail_yaml_cases() {
    let dir = shared_dir().join("verifier-corpus/prevail-yaml");
    let (cases, unreadable) = read_cases(&dir);
    assert!(
        cases.len() > 500,
        "only {} PREVAIL cases found",
        cases.len()
    );
    assert!(
        unreadable.is_empty(),
        "unreadable YAML:\n{}",
        unreadable.join("\n")
    );

    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_file: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new(); // cases, converted, agree
    let mut disagreements = Vec::new();
    let mut panics = Vec::new();
    for case in &cases {
        let entry = per_file.entry(case.file.clone()).or_default();
        entry.0 += 1;
        let (insns, prog_type) = match convert(case) {
            Ok(x) => x,
            Err(why) => {
                let kind = why.split('`').next().unwrap_or(&why).trim().to_string();
                *skipped.entry(kind).or_default() += 1;
                continue;
            }
        };
        entry.1 += 1;
        // A program the structural check refuses is rejected at load time,
        // as the kernel would.
        let ours: Result<(), String> = match Program::from_insns(insns, 4096) {
            Err(e) => Err(format!("load: {e}")),
            Ok(program) => {
                let opts = VerifyOptions {
                    prog_type,
                    raw_input_size: 4096,
                    // The snippets are tiny; this bounds the cases that loop.
                    max_processed_insns: 100_000,
                    ..VerifyOptions::default()
                };
                match catch_unwind(AssertUnwindSafe(|| verify(&program, &opts))) {
                    Ok(r) => r.map(|_| ()).map_err(|e| e.to_string()),
                    Err(p) => {
                        panics.push(format!("{}: {}: {}", case.file, case.name, panic_text(&*p)));
                        continue;
                    }
                }
            }
        };
        let we_reject = ours.is_err();
        if we_reject == prevail_rejects(case) {
            entry.2 += 1;
        } else {
            disagreements.push(format!(
                "{}: {}: PREVAIL {}, ebpfvm {}",
                case.file,
                case.name,
                if prevail_rejects(case) {
                    format!("rejects ({})", case.messages.join("; "))
                } else {
                    "accepts".into()
                },
                match &ours {
                    Ok(_) => "accepts".into(),
                    Err(e) => format!("rejects ({e})"),
                }
            ));
        }
    }
    let (total, converted, agree) = per_file
        .values()
        .fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
    println!("| file | cases | converted | agree |\n|---|---|---|---|");
    for (f, (n, c, a)) in &per_file {
        println!("| {f} | {n} | {c} | {a} |");
    }
    println!("| **all** | {total} | {converted} | {agree} |");
    println!("\nnot convertible, by reason:");
    for (why, n) in &skipped {
        println!("  {n:4}  {why}");
    }
    println!("\ndisagreements ({}):", disagreements.len());
    for d in &disagreements {
        println!("  {d}");
    }
    assert!(
        panics.is_empty(),
        "the verifier panicked:\n{}",
        panics.join("\n")
    );
    assert!(
        converted >= CONVERTED_FLOOR,
        "only {converted} cases converted, the floor is {CONVERTED_FLOOR}"
    );
    assert!(
        agree >= AGREE_FLOOR,
        "regression: {agree} cases agree with PREVAIL, the floor is {AGREE_FLOOR}"
    );
}
