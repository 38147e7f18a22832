//! ALU instructions: scalar arithmetic through the bounds tracker, and
//! pointer arithmetic as the kernel's `adjust_ptr_min_max_vals` allows it.

use super::explore::{VResult, Verifier};
use super::log::type_name;
use super::scalar::{self, AluOp, Scalar, Width};
use super::state::{Reg, RegType, State, INPUT_LEN_ID};
use crate::isa::*;
use crate::progtype::ProgType;

/// The input pointer of a raw program as it came in (r1 on entry).
fn is_input_start(r: &Reg) -> bool {
    r.ty == RegType::Packet && r.off == 0 && r.v.is_zero()
}

/// `dst += c` / `dst -= c` on a linked scalar, when the result is exactly
/// the value plus a constant: it stays linked, at a new offset.
fn linked_add(dst: &Reg, src: &Reg, op: u8, is64: bool) -> Option<Reg> {
    if dst.id == 0 || !dst.is_scalar() || !matches!(op, ALU_ADD | ALU_SUB) {
        return None;
    }
    let c = src.v.const_value()?;
    let c = if is64 {
        c as i64
    } else {
        c as u32 as i32 as i64
    };
    let delta = if op == ALU_ADD { c } else { c.checked_neg()? };
    let w = if is64 { Width::W64 } else { Width::W32 };
    if !is64 {
        // A 32-bit result is the 64-bit sum only if nothing wraps.
        let v = &dst.v;
        let fits = v.umax <= u32::MAX as u64
            && if delta >= 0 {
                v.umax.checked_add(delta as u64)? <= u32::MAX as u64
            } else {
                v.umin >= delta.unsigned_abs()
            };
        if !fits {
            return None;
        }
    }
    let off = i32::try_from(dst.off as i64 + delta).ok()?;
    let aop = if op == ALU_ADD {
        AluOp::Add
    } else {
        AluOp::Sub
    };
    Some(Reg {
        off,
        precise: false,
        v: scalar::alu(&dst.v, &src.v, aop, w),
        ..*dst
    })
}

/// Largest offset a pointer may carry (the kernel's BPF_MAX_VAR_OFF); keeps
/// offset arithmetic far away from overflow.
pub const MAX_VAR_OFF: i64 = 1 << 29;

fn alu_op(op: u8, signed: bool) -> Option<AluOp> {
    Some(match op {
        ALU_ADD => AluOp::Add,
        ALU_SUB => AluOp::Sub,
        ALU_MUL => AluOp::Mul,
        ALU_DIV if !signed => AluOp::Div,
        ALU_MOD if !signed => AluOp::Mod,
        ALU_OR => AluOp::Or,
        ALU_AND => AluOp::And,
        ALU_XOR => AluOp::Xor,
        ALU_LSH => AluOp::Lsh,
        ALU_RSH => AluOp::Rsh,
        ALU_ARSH => AluOp::Arsh,
        _ => return None,
    })
}

fn op_sym(op: u8) -> &'static str {
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
        ALU_ARSH => "s>>=",
        _ => "?=",
    }
}

impl Verifier<'_> {
    pub(super) fn check_alu(&mut self, st: &mut State, pc: usize, insn: &Insn) -> VResult<()> {
        let op = insn.opc & 0xf0;
        let is64 = insn.class() == CLS_ALU64;
        let w = if is64 { Width::W64 } else { Width::W32 };
        let x = insn.opc & SRC_X != 0;
        let d = insn.dst;
        if op == ALU_END {
            self.check_read(st, pc, d)?;
            if st.reg(d).is_pointer() {
                return self.err(pc, format!("R{d} pointer arithmetic prohibited"));
            }
            let mut v = st.reg(d).v;
            let size = (insn.imm as u32) / 8;
            // `le` on our little-endian host is a truncation; byte swaps
            // keep only the width.
            if is64 || x {
                v = Scalar::unknown();
            }
            v.truncate(size);
            *st.reg_mut(d) = Reg::scalar(v);
            return Ok(());
        }
        if op == ALU_NEG {
            self.check_read(st, pc, d)?;
            if st.reg(d).is_pointer() {
                return self.err(pc, format!("R{d} pointer arithmetic prohibited"));
            }
            let v = scalar::alu(&Scalar::constant(0), &st.reg(d).v, AluOp::Sub, w);
            *st.reg_mut(d) = Reg::scalar(v);
            return Ok(());
        }
        let src = if x {
            self.check_read(st, pc, insn.src)?;
            *st.reg(insn.src)
        } else {
            let imm = if is64 {
                insn.imm as i64 as u64
            } else {
                insn.imm as u32 as u64
            };
            Reg::constant(imm)
        };
        if op == ALU_MOV {
            return self.check_mov(st, pc, insn, src, is64);
        }
        self.check_read(st, pc, d)?;
        if !x {
            let bits = if is64 { 64 } else { 32 };
            if matches!(op, ALU_LSH | ALU_RSH | ALU_ARSH) && insn.imm as u32 >= bits {
                return self.err(pc, format!("invalid shift {}", insn.imm));
            }
            if matches!(op, ALU_DIV | ALU_MOD) && insn.imm == 0 {
                return self.err(pc, "div by zero");
            }
        }
        let mut dst = *st.reg(d);
        let mut src = src;
        if dst.is_pointer() || src.is_pointer() {
            // A variable packet offset gets an id, so that pointers made
            // from the same pointer and value can share a proven range.
            let (scalar_reg, ptr) = if dst.is_pointer() {
                (insn.src, dst)
            } else {
                (d, src)
            };
            let scalar = if dst.is_pointer() { &mut src } else { &mut dst };
            if x && ptr.ty.is_packet()
                && scalar.is_scalar()
                && !scalar.v.is_const()
                && scalar.id == 0
            {
                scalar.id = self.new_id();
                scalar.off = 0;
                st.reg_mut(scalar_reg).id = scalar.id;
                st.reg_mut(scalar_reg).off = 0;
            }
            let mut r = self.pointer_alu(pc, insn, &dst, &src, is64)?;
            if r.ty.is_packet() && r.var_id != 0 {
                // Copies of one id share their range (every copy gets it).
                let same = st
                    .regs()
                    .find(|q| q.ty == r.ty && q.var_id == r.var_id && q.base_id == r.base_id);
                if let Some(q) = same {
                    r.id = q.id;
                    r.range = q.range;
                }
            }
            if x && dst.is_pointer() != src.is_pointer() {
                // The offset's bounds now matter.
                self.mark_precise(st.frameno(), 1 << scalar_reg);
            }
            *st.reg_mut(d) = r;
            return Ok(());
        }
        if op == ALU_AND && is64 && src.is_const() {
            // A mask that keeps every bit the value may have set leaves it
            // unchanged: it stays a copy (same id), so a later comparison
            // on it still bounds the original (e.g. `len & 1` of a length
            // known to be 0 or 1).
            let bits = dst.v.var_off.value | dst.v.var_off.mask;
            if bits & !src.v.var_off.value == 0 {
                return Ok(());
            }
        }
        if let Some(r) = linked_add(&dst, &src, op, is64) {
            *st.reg_mut(d) = r;
            return Ok(());
        }
        let signed = matches!(op, ALU_DIV | ALU_MOD) && insn.off == 1;
        let v = match alu_op(op, signed) {
            Some(aop) => scalar::alu(&dst.v, &src.v, aop, w),
            None => {
                // Signed division and modulo: nothing known but the width.
                let mut u = Scalar::unknown();
                if !is64 {
                    u.zext32();
                }
                u
            }
        };
        *st.reg_mut(d) = Reg::scalar(v);
        Ok(())
    }

    fn check_mov(
        &mut self,
        st: &mut State,
        pc: usize,
        insn: &Insn,
        src: Reg,
        is64: bool,
    ) -> VResult<()> {
        let d = insn.dst;
        let x = insn.opc & SRC_X != 0;
        if insn.off != 0 && x {
            // movsx: sign extension of the low 8/16/32 bits.
            if src.is_pointer() {
                return self.err(
                    pc,
                    format!("R{} sign-extension of pointer prohibited", insn.src),
                );
            }
            let size = (insn.off as u32) / 8;
            let mut v = src.v;
            v.truncate(size);
            v.sign_extend(size);
            if !is64 {
                v = scalar::alu(&v, &Scalar::constant(0), AluOp::Add, scalar::Width::W32);
            }
            *st.reg_mut(d) = Reg::scalar(v);
            return Ok(());
        }
        if is64 {
            let mut r = src;
            if x && r.is_scalar() && !r.v.is_const() {
                // Copies share an id, so a comparison on one bounds both.
                if r.id == 0 {
                    let id = self.new_id();
                    st.reg_mut(insn.src).id = id;
                    r.id = id;
                }
            }
            *st.reg_mut(d) = r;
        } else {
            if src.is_pointer() {
                // A partial copy of a pointer is some 32-bit number.
                let mut v = Scalar::unknown();
                v.zext32();
                *st.reg_mut(d) = Reg::scalar(v);
                return Ok(());
            }
            if x && src.is_scalar() && src.v.umax <= u32::MAX as u64 && !src.v.is_const() {
                // The value fits in 32 bits: the copy is exact, and linked
                // like a 64-bit one.
                let mut r = src;
                if r.id == 0 {
                    r.id = self.new_id();
                    r.off = 0;
                    st.reg_mut(insn.src).id = r.id;
                    st.reg_mut(insn.src).off = 0;
                }
                r.precise = false;
                *st.reg_mut(d) = r;
                return Ok(());
            }
            let mut v = src.v;
            v.zext32();
            *st.reg_mut(d) = Reg::scalar(v);
        }
        Ok(())
    }

    /// Arithmetic with at least one pointer operand.
    fn pointer_alu(
        &mut self,
        pc: usize,
        insn: &Insn,
        dst: &Reg,
        src: &Reg,
        is64: bool,
    ) -> VResult<Reg> {
        let op = insn.opc & 0xf0;
        let d = insn.dst;
        let pkt_family = |t: RegType| {
            matches!(
                t,
                RegType::Packet | RegType::PacketMeta | RegType::PacketEnd
            )
        };
        let same_space = dst.is_pointer()
            && src.is_pointer()
            && !dst.maybe_null
            && !src.maybe_null
            && ((pkt_family(dst.ty) && pkt_family(src.ty))
                || (dst.ty == src.ty
                    && matches!(dst.ty, RegType::Stack | RegType::MapValue | RegType::Mem)
                    && dst.frame == src.frame
                    && dst.map == src.map));
        if !is64 {
            if op == ALU_SUB {
                // A 32-bit difference involving a pointer is some number (the
                // kernel allows it for privileged programs: e.g. the low
                // halves of data_end and data give the packet length).
                let mut v = Scalar::unknown();
                v.zext32();
                return Ok(Reg::scalar(v));
            }
            return self.err(pc, format!("R{d} 32-bit pointer arithmetic prohibited"));
        }
        if dst.is_pointer() && src.is_pointer() {
            if op != ALU_SUB {
                return self.err(
                    pc,
                    format!("R{d} pointer {} pointer prohibited", op_sym(op)),
                );
            }
            if !same_space {
                return self.err(
                    pc,
                    format!(
                        "R{d} pointer -= pointer prohibited ({} - {})",
                        type_name(dst),
                        type_name(src)
                    ),
                );
            }
            return Ok(Reg::unknown());
        }
        let (ptr, off_reg, ptr_is_dst) = if dst.is_pointer() {
            (dst, src, true)
        } else {
            (src, dst, false)
        };
        if !ptr_is_dst && op == ALU_SUB {
            return self.err(pc, format!("R{d} tried to subtract pointer from scalar"));
        }
        if op != ALU_ADD && op != ALU_SUB {
            if matches!(op, ALU_AND | ALU_OR | ALU_XOR) {
                return self.err(
                    pc,
                    format!("R{d} bitwise operator {} on pointer prohibited", op_sym(op)),
                );
            }
            return self.err(
                pc,
                format!(
                    "R{d} pointer arithmetic with {} operator prohibited",
                    op_sym(op)
                ),
            );
        }
        if ptr.maybe_null {
            return self.err(
                pc,
                format!(
                    "R{d} pointer arithmetic on {} prohibited, null-check it first",
                    type_name(ptr)
                ),
            );
        }
        let raw = self.opts.prog_type == ProgType::Raw;
        if raw
            && op == ALU_ADD
            && is_input_start(ptr)
            && off_reg.id == INPUT_LEN_ID
            && off_reg.off == 0
        {
            // data + len: the end of a raw program's input.
            return Ok(Reg::pointer(RegType::PacketEnd));
        }
        if raw && ptr.ty == RegType::PacketEnd && ptr_is_dst {
            // Raw programs may address the input from its end (`end[-1]`):
            // such accesses are proven against the length's lower bound.
            if let Some(c) = off_reg.v.const_value() {
                let c = c as i64;
                let off = if op == ALU_ADD {
                    ptr.off as i64 + c
                } else {
                    ptr.off as i64 - c
                };
                if off > 0 || off <= -MAX_VAR_OFF {
                    return self.err(
                        pc,
                        format!("value {off} makes pkt_end pointer be out of bounds"),
                    );
                }
                return Ok(Reg {
                    off: off as i32,
                    ..*ptr
                });
            }
        }
        match ptr.ty {
            RegType::ConstMapPtr
            | RegType::PacketEnd
            | RegType::SockCommon
            | RegType::Socket
            | RegType::TcpSock
            | RegType::BtfId
            | RegType::Func => {
                return self.err(
                    pc,
                    format!("R{d} pointer arithmetic on {} prohibited", type_name(ptr)),
                );
            }
            _ => {}
        }
        let k = &off_reg.v;
        let tname = type_name(ptr);
        if let Some(c) = k.const_value() {
            let c = c as i64;
            if c <= -MAX_VAR_OFF || c >= MAX_VAR_OFF {
                return self.err(
                    pc,
                    format!("math between {tname} pointer and {c} is not allowed"),
                );
            }
        } else {
            if k.smin == i64::MIN {
                return self.err(
                    pc,
                    format!(
                        "math between {tname} pointer and register with unbounded min value is not allowed"
                    ),
                );
            }
            if k.smin <= -MAX_VAR_OFF || k.smax >= MAX_VAR_OFF {
                return self.err(
                    pc,
                    format!("value {} makes {tname} pointer be out of bounds", k.smax),
                );
            }
        }
        let mut r = *ptr;
        if let Some(c) = k.const_value() {
            let c = c as i64;
            let off = if op == ALU_ADD {
                r.off as i64 + c
            } else {
                r.off as i64 - c
            };
            if off <= -MAX_VAR_OFF || off >= MAX_VAR_OFF {
                return self.err(
                    pc,
                    format!("value {off} makes {tname} pointer be out of bounds"),
                );
            }
            r.off = off as i32;
            return Ok(r);
        }
        let aop = if op == ALU_ADD {
            AluOp::Add
        } else {
            AluOp::Sub
        };
        r.v = scalar::alu(&ptr.v, k, aop, Width::W64);
        if r.v.smin <= -MAX_VAR_OFF || r.v.smax >= MAX_VAR_OFF {
            return self.err(
                pc,
                format!(
                    "value {} makes {tname} pointer be out of bounds",
                    if r.v.smin <= -MAX_VAR_OFF {
                        r.v.smin
                    } else {
                        r.v.smax
                    }
                ),
            );
        }
        if ptr.ty.is_packet() {
            // A new variable part: ranges proven for the old one do not
            // carry over, unless the caller finds a pointer with the same.
            r.id = self.new_id();
            r.range = 0;
            r.base_id = 0;
            r.var_id = 0;
            if op == ALU_ADD && off_reg.id != 0 {
                // The variable part is the scalar's linked value: its own
                // offset from that value is part of the fixed offset.
                let delta = off_reg.off as i64;
                let linked =
                    scalar::alu(k, &Scalar::constant(delta as u64), AluOp::Sub, Width::W64);
                let off = r.off as i64 + delta;
                if off.abs() < MAX_VAR_OFF
                    && linked.smin > -MAX_VAR_OFF
                    && linked.smax < MAX_VAR_OFF
                {
                    r.v = scalar::alu(&ptr.v, &linked, AluOp::Add, Width::W64);
                    r.off = off as i32;
                    r.base_id = ptr.id;
                    r.var_id = off_reg.id;
                }
            }
        }
        Ok(r)
    }
}
