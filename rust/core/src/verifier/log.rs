//! The verifier log in the kernel's format: instructions in the kernel's C-like
//! syntax (`r1 = *(u32 *)(r6 +0)`, `if r2 > r3 goto pc+4`) and register
//! states as `R1=pkt(off=0,r=14) R10=fp0 fp-8=mmmmmmmm`.

use std::fmt::Write;

use super::scalar::Scalar;
use super::state::{Reg, RegType, StackByte, State};
use crate::isa::*;
use crate::maps::MapDef;

pub(super) struct Log {
    pub level: u32,
    text: String,
}

impl Log {
    pub fn new(level: u32) -> Log {
        Log {
            level,
            text: String::new(),
        }
    }

    pub fn line(&mut self, s: String) {
        if self.level == 0 {
            return;
        }
        self.text.push_str(&s);
        self.text.push('\n');
    }

    pub fn mark(&self) -> usize {
        self.text.len()
    }

    pub fn reset_to(&mut self, mark: usize) {
        self.text.truncate(mark);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn alu_sym(op: u8) -> &'static str {
    match op {
        ALU_ADD => "+=",
        ALU_SUB => "-=",
        ALU_MUL => "*=",
        ALU_DIV => "/=",
        ALU_OR => "|=",
        ALU_AND => "&=",
        ALU_LSH => "<<=",
        ALU_RSH => ">>=",
        ALU_MOD => "%=",
        ALU_XOR => "^=",
        ALU_MOV => "=",
        ALU_ARSH => "s>>=",
        _ => "?=",
    }
}

fn jmp_sym(op: u8) -> &'static str {
    match op {
        JMP_JEQ => "==",
        JMP_JGT => ">",
        JMP_JGE => ">=",
        JMP_JSET => "&",
        JMP_JNE => "!=",
        JMP_JSGT => "s>",
        JMP_JSGE => "s>=",
        JMP_JLT => "<",
        JMP_JLE => "<=",
        JMP_JSLT => "s<",
        JMP_JSLE => "s<=",
        _ => "?",
    }
}

fn size_ty(opc: u8) -> &'static str {
    match opc & 0x18 {
        SIZE_W => "u32",
        SIZE_H => "u16",
        SIZE_B => "u8",
        _ => "u64",
    }
}

fn off_text(off: i16) -> String {
    if off >= 0 {
        format!("+{off}")
    } else {
        format!("{off}")
    }
}

/// The kernel's text for the instruction at `pc` (`(bf) r1 = r6`).
pub(super) fn insn_text(insns: &[Insn], pc: usize) -> String {
    let Some(&i) = insns.get(pc) else {
        return String::new();
    };
    let body = insn_body(insns, pc, &i);
    format!("({:02x}) {body}", i.opc)
}

fn insn_body(insns: &[Insn], pc: usize, i: &Insn) -> String {
    let (d, s) = (i.dst, i.src);
    match i.class() {
        CLS_ALU | CLS_ALU64 => {
            let is64 = i.class() == CLS_ALU64;
            let r = if is64 { "r" } else { "w" };
            let op = i.opc & 0xf0;
            let x = i.opc & SRC_X != 0;
            let src = if x {
                format!("{r}{s}")
            } else {
                format!("{}", i.imm)
            };
            match op {
                ALU_NEG => format!("{r}{d} = -{r}{d}"),
                ALU_END => {
                    let kind = if is64 {
                        "bswap"
                    } else if x {
                        "be"
                    } else {
                        "le"
                    };
                    format!("r{d} = {kind}{} r{d}", i.imm)
                }
                ALU_MOV if x && i.off != 0 => {
                    format!("{r}{d} = (s{}){r}{s}", i.off)
                }
                ALU_DIV | ALU_MOD if i.off == 1 => {
                    format!("{r}{d} s{} {src}", alu_sym(op))
                }
                _ => format!("{r}{d} {} {src}", alu_sym(op)),
            }
        }
        CLS_LDX => {
            let sx = i.opc & 0xe0 == MODE_MEMSX;
            let ty = size_ty(i.opc);
            let ty = if sx {
                ty.replacen('u', "s", 1)
            } else {
                ty.into()
            };
            format!("r{d} = *({ty} *)(r{s} {})", off_text(i.off))
        }
        CLS_ST => format!(
            "*({} *)(r{d} {}) = {}",
            size_ty(i.opc),
            off_text(i.off),
            i.imm
        ),
        CLS_STX => {
            if i.opc & 0xe0 == MODE_ATOMIC {
                let ty = size_ty(i.opc);
                let r = if i.opc & 0x18 == SIZE_DW { "r" } else { "w" };
                let op = i.imm & !ATOMIC_FETCH;
                let fetch = i.imm & ATOMIC_FETCH != 0;
                if i.imm == ATOMIC_XCHG {
                    return format!(
                        "{r}{s} = atomic_xchg(({ty} *)(r{d} {}), {r}{s})",
                        off_text(i.off)
                    );
                }
                if i.imm == ATOMIC_CMPXCHG {
                    return format!(
                        "r0 = atomic_cmpxchg(({ty} *)(r{d} {}), r0, {r}{s})",
                        off_text(i.off)
                    );
                }
                let name = match op {
                    ATOMIC_ADD => "add",
                    ATOMIC_OR => "or",
                    ATOMIC_AND => "and",
                    _ => "xor",
                };
                if fetch {
                    format!(
                        "{r}{s} = atomic_fetch_{name}(({ty} *)(r{d} {}), {r}{s})",
                        off_text(i.off)
                    )
                } else {
                    format!(
                        "lock *({ty} *)(r{d} {}) {}= {r}{s}",
                        off_text(i.off),
                        match op {
                            ATOMIC_ADD => "+",
                            ATOMIC_OR => "|",
                            ATOMIC_AND => "&",
                            _ => "^",
                        }
                    )
                }
            } else {
                format!("*({} *)(r{d} {}) = r{s}", size_ty(i.opc), off_text(i.off))
            }
        }
        CLS_LD => {
            if i.is_lddw() {
                let hi = insns.get(pc + 1).map_or(0, |n| n.imm);
                match i.src {
                    PSEUDO_MAP_FD | PSEUDO_MAP_IDX => format!("r{d} = map[id:{}]", i.imm),
                    PSEUDO_MAP_VALUE | PSEUDO_MAP_IDX_VALUE => {
                        format!("r{d} = map[id:{}][0]+{hi}", i.imm)
                    }
                    PSEUDO_FUNC => format!("r{d} = func pc{:+}", i.imm),
                    _ => {
                        let v = (i.imm as u32 as u64) | ((hi as u32 as u64) << 32);
                        format!("r{d} = 0x{v:x}")
                    }
                }
            } else {
                let ty = size_ty(i.opc);
                if i.opc & 0xe0 == MODE_IND {
                    format!("r0 = *({ty} *)skb[r{s} + {}]", i.imm)
                } else {
                    format!("r0 = *({ty} *)skb[{}]", i.imm)
                }
            }
        }
        _ => {
            let op = i.opc & 0xf0;
            match op {
                JMP_CALL => {
                    if i.opc == OP_CALLX {
                        format!("call r{d}")
                    } else if i.src == CALL_LOCAL {
                        format!("call pc{:+}", i.imm)
                    } else if let Some(name) =
                        crate::kernel::helper_protos::builtin_name(i.imm as u32)
                    {
                        format!("call {name}#{}", i.imm)
                    } else {
                        let name = crate::kernel::helper_protos::helper_name(i.imm as u32)
                            .unwrap_or("unknown");
                        format!("call bpf_{name}#{}", i.imm)
                    }
                }
                JMP_EXIT => "exit".into(),
                JMP_JA => {
                    if i.opc == OP_JA32 {
                        format!("gotol pc{:+}", i.imm)
                    } else {
                        format!("goto pc{:+}", i.off)
                    }
                }
                _ => {
                    let r = if i.class() == CLS_JMP32 { "w" } else { "r" };
                    let src = if i.opc & SRC_X != 0 {
                        format!("{r}{s}")
                    } else {
                        format!("{:#x}", i.imm)
                    };
                    format!("if {r}{d} {} {src} goto pc{:+}", jmp_sym(op), i.off)
                }
            }
        }
    }
}

/// Kernel names of register types.
pub(super) fn type_name(r: &Reg) -> String {
    let base = match r.ty {
        RegType::NotInit => "?",
        RegType::Scalar => "scalar",
        RegType::Ctx => "ctx",
        RegType::Stack => "fp",
        RegType::Packet => "pkt",
        RegType::PacketMeta => "pkt_meta",
        RegType::PacketEnd => "pkt_end",
        RegType::MapValue => "map_value",
        RegType::ConstMapPtr => "map_ptr",
        RegType::Mem => {
            if r.ref_obj_id != 0 {
                "ringbuf_mem"
            } else {
                "mem"
            }
        }
        RegType::SockCommon => "sock_common",
        RegType::Socket => "sock",
        RegType::TcpSock => "tcp_sock",
        RegType::BtfId => "ptr_",
        RegType::Func => "func",
    };
    let mut s = String::new();
    if r.rdonly && r.ty == RegType::Mem {
        s.push_str("rdonly_");
    }
    s.push_str(base);
    if r.maybe_null {
        s.push_str("_or_null");
    }
    s
}

fn signed_text(v: i64) -> String {
    v.to_string()
}

/// `umin=0,umax=255,var_off=(0x0; 0xff)` — only the parts that say something.
fn scalar_fields(v: &Scalar, out: &mut Vec<String>) {
    if v.smin != i64::MIN && (v.smin != v.umin as i64 || v.smin < 0) {
        out.push(format!("smin={}", signed_text(v.smin)));
    }
    if v.smax != i64::MAX && (v.smax != v.umax as i64 || v.smax < 0) {
        out.push(format!("smax={}", signed_text(v.smax)));
    }
    if v.umin != 0 {
        out.push(format!("umin={}", v.umin));
    }
    if v.umax != u64::MAX {
        out.push(format!("umax={}", v.umax));
    }
    if v.s32_min != i32::MIN && v.s32_min as i64 != v.smin {
        out.push(format!("smin32={}", v.s32_min));
    }
    if v.s32_max != i32::MAX && v.s32_max as i64 != v.smax {
        out.push(format!("smax32={}", v.s32_max));
    }
    if v.u32_min != 0 && v.u32_min as u64 != v.umin {
        out.push(format!("umin32={}", v.u32_min));
    }
    if v.u32_max != u32::MAX && v.u32_max as u64 != v.umax {
        out.push(format!("umax32={}", v.u32_max));
    }
    if !v.var_off.is_unknown() {
        out.push(format!(
            "var_off=(0x{:x}; 0x{:x})",
            v.var_off.value, v.var_off.mask
        ));
    }
}

pub(super) fn reg_text(r: &Reg, maps: &[MapDef]) -> String {
    match r.ty {
        RegType::NotInit => "?".into(),
        RegType::Scalar => {
            if let Some(c) = r.v.const_value() {
                return format!("{}", c as i64);
            }
            let mut f = Vec::new();
            if r.id != 0 {
                f.push(format!("id={}", r.id));
            }
            scalar_fields(&r.v, &mut f);
            format!("scalar({})", f.join(","))
        }
        RegType::Stack if r.v.is_zero() => format!("fp{}", r.off),
        _ => {
            let mut f = Vec::new();
            if r.id != 0 {
                f.push(format!("id={}", r.id));
            }
            if r.ref_obj_id != 0 {
                f.push(format!("ref_obj_id={}", r.ref_obj_id));
            }
            if matches!(r.ty, RegType::MapValue | RegType::ConstMapPtr) {
                if let Some(m) = maps.get(r.map as usize) {
                    f.push(format!("map={}", m.name));
                    if r.ty == RegType::MapValue {
                        f.push(format!("ks={},vs={}", m.key_size, m.value_size));
                    }
                }
            }
            if r.off != 0 || r.ty.is_packet() {
                f.push(format!("off={}", r.off));
            }
            if r.ty.is_packet() {
                f.push(format!("r={}", r.range));
            }
            if r.ty == RegType::Mem {
                f.push(format!("sz={}", r.mem_size));
            }
            if !r.v.is_zero() {
                scalar_fields(&r.v, &mut f);
            }
            format!("{}({})", type_name(r), f.join(","))
        }
    }
}

/// Registers and stack of the current frame (caller frames first, as
/// `frameN:` prefixed groups).
pub(super) fn state_text(st: &State, maps: &[MapDef]) -> String {
    let mut out = String::new();
    let nframes = st.frames.len();
    for (k, f) in st.frames.iter().enumerate() {
        if nframes > 1 {
            let _ = write!(out, "frame{k}: ");
        }
        let mut first = true;
        for (r, reg) in f.regs.iter().enumerate() {
            if !reg.is_init() {
                continue;
            }
            if !first {
                out.push(' ');
            }
            first = false;
            let _ = write!(out, "R{r}={}", reg_text(reg, maps));
        }
        for (i, slot) in f.stack.iter().enumerate() {
            if slot.bytes.iter().all(|&b| b == StackByte::Invalid) {
                continue;
            }
            let off = -8 * (i as i64 + 1);
            if slot.is_full_spill() {
                let _ = write!(out, " fp{off}={}", reg_text(&slot.spilled, maps));
            } else {
                let s: String = slot.bytes.iter().rev().map(|b| b.letter()).collect();
                let _ = write!(out, " fp{off}={s}");
            }
        }
        if k + 1 < nframes {
            out.push(' ');
        }
    }
    for r in &st.refs {
        let _ = write!(out, " refs={}", r.id);
    }
    out
}
