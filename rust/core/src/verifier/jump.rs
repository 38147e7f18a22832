//! Conditional jumps: which arms are possible, and what each arm teaches
//! about its registers (bounds of scalars, null checks, packet ranges).

use super::explore::{Flow, VResult, Verifier};
use super::scalar::{self, AluOp, Scalar, Width};
use super::state::{Reg, RegType, State, INPUT_LEN_ID};
use super::tnum::Tnum;
use crate::isa::*;

/// Largest packet offset the verifier reasons about (the kernel's MAX_PACKET_OFF).
const MAX_PACKET_OFF: i64 = 0xffff;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Sgt,
    Sge,
    Slt,
    Sle,
    Set,
    /// The negation of `Set`: `a & b == 0`.
    NotSet,
}

impl Cmp {
    fn from_op(op: u8) -> Option<Cmp> {
        Some(match op {
            JMP_JEQ => Cmp::Eq,
            JMP_JNE => Cmp::Ne,
            JMP_JGT => Cmp::Gt,
            JMP_JGE => Cmp::Ge,
            JMP_JLT => Cmp::Lt,
            JMP_JLE => Cmp::Le,
            JMP_JSGT => Cmp::Sgt,
            JMP_JSGE => Cmp::Sge,
            JMP_JSLT => Cmp::Slt,
            JMP_JSLE => Cmp::Sle,
            JMP_JSET => Cmp::Set,
            _ => return None,
        })
    }

    fn negate(self) -> Cmp {
        match self {
            Cmp::Eq => Cmp::Ne,
            Cmp::Ne => Cmp::Eq,
            Cmp::Gt => Cmp::Le,
            Cmp::Ge => Cmp::Lt,
            Cmp::Lt => Cmp::Ge,
            Cmp::Le => Cmp::Gt,
            Cmp::Sgt => Cmp::Sle,
            Cmp::Sge => Cmp::Slt,
            Cmp::Slt => Cmp::Sge,
            Cmp::Sle => Cmp::Sgt,
            Cmp::Set => Cmp::NotSet,
            Cmp::NotSet => Cmp::Set,
        }
    }

    /// `b op' a` equivalent to `a op b`.
    fn swap(self) -> Cmp {
        match self {
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Sgt => Cmp::Slt,
            Cmp::Sge => Cmp::Sle,
            Cmp::Slt => Cmp::Sgt,
            Cmp::Sle => Cmp::Sge,
            c => c,
        }
    }
}

/// Unsigned/signed bounds of one width, widened to 64 bits.
#[derive(Clone, Copy)]
struct View {
    umin: u64,
    umax: u64,
    smin: i64,
    smax: i64,
    t: Tnum,
}

fn view(s: &Scalar, w: Width) -> View {
    match w {
        Width::W64 => View {
            umin: s.umin,
            umax: s.umax,
            smin: s.smin,
            smax: s.smax,
            t: s.var_off,
        },
        Width::W32 => View {
            umin: s.u32_min as u64,
            umax: s.u32_max as u64,
            smin: s.s32_min as i64,
            smax: s.s32_max as i64,
            t: s.var_off.subreg(),
        },
    }
}

/// Writes refined bounds back; returns false if they are contradictory.
fn store(s: &mut Scalar, v: View, w: Width) -> bool {
    if v.umin > v.umax || v.smin > v.smax {
        return false;
    }
    match w {
        Width::W64 => {
            s.umin = v.umin;
            s.umax = v.umax;
            s.smin = v.smin;
            s.smax = v.smax;
            s.var_off = v.t;
        }
        Width::W32 => {
            s.u32_min = v.umin as u32;
            s.u32_max = v.umax as u32;
            s.s32_min = v.smin as i32;
            s.s32_max = v.smax as i32;
            s.var_off = s.var_off.with_subreg(v.t);
        }
    }
    s.sync();
    !s.is_empty() && tnum_consistent(s)
}

/// Known bits agree with the bounds (some value satisfies both ends).
fn tnum_consistent(s: &Scalar) -> bool {
    let t = s.var_off;
    t.value <= s.umax && (t.value | t.mask) >= s.umin
}

fn tnum_conflict(a: Tnum, b: Tnum) -> bool {
    (a.value ^ b.value) & !a.mask & !b.mask != 0
}

/// Removes the constant `c` from the edges of `p`'s ranges; false if
/// nothing is left.
fn exclude(p: &mut View, c: u64, w: Width) -> bool {
    if p.t.is_const() && p.t.value == c {
        return false;
    }
    if p.umin == c {
        match p.umin.checked_add(1) {
            Some(v) => p.umin = v,
            None => return false,
        }
    }
    if p.umax == c {
        match p.umax.checked_sub(1) {
            Some(v) => p.umax = v,
            None => return false,
        }
    }
    let sc = match w {
        Width::W64 => c as i64,
        Width::W32 => c as u32 as i32 as i64,
    };
    if p.smin == sc {
        match p.smin.checked_add(1) {
            Some(v) => p.smin = v,
            None => return false,
        }
    }
    if p.smax == sc {
        match p.smax.checked_sub(1) {
            Some(v) => p.smax = v,
            None => return false,
        }
    }
    true
}

/// Refines `a` and `b` assuming `a cmp b` holds at width `w`; false if it
/// cannot hold.
fn refine(a: &mut Scalar, b: &mut Scalar, cmp: Cmp, w: Width) -> bool {
    let mut x = view(a, w);
    let mut y = view(b, w);
    match cmp {
        Cmp::Eq => {
            if tnum_conflict(x.t, y.t) {
                return false;
            }
            let t = x.t.intersect(y.t);
            let v = View {
                umin: x.umin.max(y.umin),
                umax: x.umax.min(y.umax),
                smin: x.smin.max(y.smin),
                smax: x.smax.min(y.smax),
                t,
            };
            x = v;
            y = v;
        }
        Cmp::Ne => {
            // Only a constant side excludes anything.
            let (cx, cy) = (x, y);
            if cy.t.is_const() && !exclude(&mut x, cy.t.value, w) {
                return false;
            }
            if cx.t.is_const() && !exclude(&mut y, cx.t.value, w) {
                return false;
            }
        }
        Cmp::Le | Cmp::Lt => {
            let strict = cmp == Cmp::Lt;
            // x <= y - strict
            let ymax = if strict {
                match y.umax.checked_sub(1) {
                    Some(v) => v,
                    None => return false,
                }
            } else {
                y.umax
            };
            let xmin = if strict {
                match x.umin.checked_add(1) {
                    Some(v) => v,
                    None => return false,
                }
            } else {
                x.umin
            };
            x.umax = x.umax.min(ymax);
            y.umin = y.umin.max(xmin);
            if w == Width::W32 && (x.umax > u32::MAX as u64 || y.umin > u32::MAX as u64) {
                return false;
            }
        }
        Cmp::Ge | Cmp::Gt => return refine(b, a, cmp.swap(), w),
        Cmp::Sle | Cmp::Slt => {
            let strict = cmp == Cmp::Slt;
            let (lo, hi) = match w {
                Width::W64 => (i64::MIN, i64::MAX),
                Width::W32 => (i32::MIN as i64, i32::MAX as i64),
            };
            let ymax = if strict {
                if y.smax == lo {
                    return false;
                }
                y.smax - 1
            } else {
                y.smax
            };
            let xmin = if strict {
                if x.smin == hi {
                    return false;
                }
                x.smin + 1
            } else {
                x.smin
            };
            x.smax = x.smax.min(ymax);
            y.smin = y.smin.max(xmin);
        }
        Cmp::Sge | Cmp::Sgt => return refine(b, a, cmp.swap(), w),
        Cmp::Set => {
            // Some bit in common: impossible if no bit may be common.
            if (x.t.value | x.t.mask) & (y.t.value | y.t.mask) == 0 {
                return false;
            }
            if y.t.is_const() && y.t.value.is_power_of_two() {
                x.t = x.t.or(y.t);
                if x.umin == 0 {
                    x.umin = 1;
                }
            }
            if x.t.is_const() && x.t.value.is_power_of_two() {
                y.t = y.t.or(x.t);
                if y.umin == 0 {
                    y.umin = 1;
                }
            }
        }
        Cmp::NotSet => {
            if x.t.value & y.t.value != 0 {
                return false;
            }
            if y.t.is_const() {
                x.t = x.t.and(Tnum::constant(!y.t.value));
            }
            if x.t.is_const() {
                y.t = y.t.and(Tnum::constant(!x.t.value));
            }
        }
    }
    store(a, x, w) && store(b, y, w)
}

/// Whether register type `t` compared against `end_ty` proves packet range.
fn pkt_pair(left: RegType, right: RegType) -> bool {
    matches!(
        (left, right),
        (RegType::Packet, RegType::PacketEnd) | (RegType::PacketMeta, RegType::Packet)
    )
}

impl Verifier<'_> {
    pub(super) fn check_cond_jump(
        &mut self,
        st: &mut State,
        pc: usize,
        insn: &Insn,
    ) -> VResult<Flow> {
        let op = insn.opc & 0xf0;
        let Some(cmp) = Cmp::from_op(op) else {
            return self.err(pc, format!("invalid BPF_JMP opcode 0x{:02x}", insn.opc));
        };
        let w = if insn.class() == CLS_JMP32 {
            Width::W32
        } else {
            Width::W64
        };
        let x = insn.opc & SRC_X != 0;
        let d = insn.dst;
        self.check_read(st, pc, d)?;
        if x {
            self.check_read(st, pc, insn.src)?;
        }
        let target = insn.jump_target(pc).unwrap_or(pc + 1);
        let next = pc + 1;
        let dst = *st.reg(d);
        let src = if x {
            *st.reg(insn.src)
        } else {
            let imm = match w {
                Width::W64 => insn.imm as i64 as u64,
                Width::W32 => insn.imm as u32 as u64,
            };
            Reg::constant(imm)
        };
        // `st` becomes the fall-through state, `taken` the jump's.
        let mut taken = st.clone();
        let (taken_ok, fall_ok) = if dst.is_scalar() && src.is_scalar() {
            let t = self.refine_scalars(&mut taken, insn, &dst, &src, cmp, w);
            let f = self.refine_scalars(st, insn, &dst, &src, cmp.negate(), w);
            (t, f)
        } else {
            self.refine_pointers(&mut taken, st, &dst, &src, cmp, w)
        };
        if !(taken_ok && fall_ok) && dst.is_scalar() && src.is_scalar() {
            // The bounds decided the branch: they must be kept exact.
            if dst.id == INPUT_LEN_ID || src.id == INPUT_LEN_ID {
                self.mark_input_len_precise();
            }
            let mut regs = 1u16 << d;
            if x {
                regs |= 1 << insn.src;
            }
            self.mark_precise(st.frameno(), regs);
        } else if x && (dst.is_scalar() != src.is_scalar()) {
            // A pointer compared with a scalar: a null check if the scalar is 0.
            let scalar_reg = if dst.is_scalar() { d } else { insn.src };
            self.mark_precise(st.frameno(), 1 << scalar_reg);
        }
        match (taken_ok, fall_ok) {
            (true, true) => Ok(Flow::Fork {
                other: Box::new(taken),
                other_pc: target,
                next,
            }),
            (true, false) => {
                *st = taken;
                Ok(Flow::Next(target))
            }
            (false, true) => Ok(Flow::Next(next)),
            (false, false) => Ok(Flow::End),
        }
    }

    /// Applies `dst cmp src` to the scalar registers of `st` (and their
    /// copies); false if the condition cannot hold.
    fn refine_scalars(
        &mut self,
        st: &mut State,
        insn: &Insn,
        dst: &Reg,
        src: &Reg,
        cmp: Cmp,
        w: Width,
    ) -> bool {
        let mut a = dst.v;
        let mut b = src.v;
        if !refine(&mut a, &mut b, cmp, w) {
            return false;
        }
        let x = insn.opc & SRC_X != 0;
        set_scalar(st, insn.dst, a);
        if x && insn.src != insn.dst {
            set_scalar(st, insn.src, b);
        }
        true
    }

    /// Comparisons involving pointers: null checks and packet ranges.
    /// Returns which arms are possible.
    fn refine_pointers(
        &mut self,
        taken: &mut State,
        fall: &mut State,
        dst: &Reg,
        src: &Reg,
        cmp: Cmp,
        w: Width,
    ) -> (bool, bool) {
        if w == Width::W32 {
            return (true, true);
        }
        // Null checks: pointer ==/!= 0.
        let null_cmp = |p: &Reg, other: &Reg| p.is_pointer() && other.is_null_const();
        if matches!(cmp, Cmp::Eq | Cmp::Ne) && (null_cmp(dst, src) || null_cmp(src, dst)) {
            let p = if dst.is_pointer() { dst } else { src };
            if !p.maybe_null {
                // Known non-null pointers are never 0.
                return if cmp == Cmp::Eq {
                    (false, true)
                } else {
                    (true, false)
                };
            }
            let (is_null, not_null) = if cmp == Cmp::Eq {
                (&mut *taken, &mut *fall)
            } else {
                (&mut *fall, &mut *taken)
            };
            mark_null(is_null, p.id, true);
            mark_null(not_null, p.id, false);
            return (true, true);
        }
        // A raw program's input: comparing a pointer into it with its end
        // bounds the length (and an arm the length rules out is dead).
        if taken.input_len.is_init() {
            let rel = match (dst.ty, src.ty) {
                (RegType::Packet, RegType::PacketEnd) if src.off == 0 => Some((dst, cmp)),
                (RegType::PacketEnd, RegType::Packet) if dst.off == 0 => Some((src, cmp.swap())),
                _ => None,
            };
            if let Some((p, rel)) = rel {
                let taken_ok = bound_input_len(taken, p, rel);
                let fall_ok = bound_input_len(fall, p, rel.negate());
                if !(taken_ok && fall_ok) {
                    // The length's bounds decided the branch.
                    self.mark_input_len_precise();
                    return (taken_ok, fall_ok);
                }
            }
        }
        // Only the end itself bounds the packet (a raw program may also hold
        // `end - k`).
        let exact_end = |r: &Reg| r.ty != RegType::PacketEnd || r.off == 0;
        if dst.is_pointer() && src.is_pointer() && exact_end(dst) && exact_end(src) {
            if pkt_pair(dst.ty, src.ty) {
                // dst is the data pointer, src the end.
                match cmp {
                    Cmp::Gt => find_good_pkt_pointers(fall, dst, false),
                    Cmp::Ge => find_good_pkt_pointers(fall, dst, true),
                    Cmp::Lt => find_good_pkt_pointers(taken, dst, true),
                    Cmp::Le => find_good_pkt_pointers(taken, dst, false),
                    _ => {}
                }
            } else if pkt_pair(src.ty, dst.ty) {
                // dst is the end, src the data pointer.
                match cmp {
                    Cmp::Gt => find_good_pkt_pointers(taken, src, true),
                    Cmp::Ge => find_good_pkt_pointers(taken, src, false),
                    Cmp::Lt => find_good_pkt_pointers(fall, src, false),
                    Cmp::Le => find_good_pkt_pointers(fall, src, true),
                    _ => {}
                }
            }
        }
        (true, true)
    }
}

/// In `st`, `p rel end` holds for a pointer `p` into a raw program's input:
/// narrows the input length accordingly (the hidden length and every copy
/// of it); false if no length is left.
fn bound_input_len(st: &mut State, p: &Reg, rel: Cmp) -> bool {
    if p.v.smin < 0 || p.off < 0 {
        return true;
    }
    // p lies at input offset a..=b; the end is at offset L.
    let a = (p.off as u64).saturating_add(p.v.umin);
    let b = (p.off as u64).saturating_add(p.v.umax);
    let (lo, hi) = match rel {
        Cmp::Gt => match b.checked_sub(1) {
            Some(hi) => (0, hi),  // L < p
            None => return false, // L < 0
        },
        Cmp::Ge => (0, b),                          // L <= p
        Cmp::Lt => (a.saturating_add(1), u64::MAX), // L > p
        Cmp::Le => (a, u64::MAX),                   // L >= p
        Cmp::Eq => (a, b),
        _ => return true,
    };
    let len = st.input_len.v;
    if lo > len.umax || hi < len.umin {
        return false;
    }
    let mut v = len;
    let mut bound = Scalar::urange(lo.max(len.umin), hi.min(len.umax));
    if !refine(&mut v, &mut bound, Cmp::Eq, Width::W64) {
        return false;
    }
    st.for_each_reg_mut(|reg| {
        if reg.ty == RegType::Scalar && reg.id == INPUT_LEN_ID {
            narrow_linked(reg, &v, 0);
        }
    });
    true
}

/// `reg` is linked to a scalar now known to be `v` at offset `v_off`:
/// narrows it to `v` moved by the difference of their offsets.
fn narrow_linked(reg: &mut Reg, v: &Scalar, v_off: i32) {
    let k = reg.off as i64 - v_off as i64;
    if k == 0 {
        reg.v = *v;
        return;
    }
    let mut moved = scalar::alu(v, &Scalar::constant(k as u64), AluOp::Add, Width::W64);
    let mut own = reg.v;
    // Both describe the register: keep what both allow (if they disagree
    // the path is dead, and the moved bounds are as good as any).
    reg.v = if refine(&mut own, &mut moved, Cmp::Eq, Width::W64) {
        own
    } else {
        moved
    };
}

/// Sets a scalar register and every copy of it (same id).
fn set_scalar(st: &mut State, r: u8, v: Scalar) {
    let (id, off) = (st.reg(r).id, st.reg(r).off);
    st.reg_mut(r).v = v;
    if id != 0 {
        st.for_each_reg_mut(|reg| {
            if reg.ty == RegType::Scalar && reg.id == id {
                narrow_linked(reg, &v, off);
            }
        });
    }
}

/// After a null check: every copy of the pointer becomes 0 or non-null.
fn mark_null(st: &mut State, id: u32, is_null: bool) {
    if id == 0 {
        return;
    }
    let mut released = None;
    st.for_each_reg_mut(|reg| {
        if reg.is_pointer() && reg.maybe_null && reg.id == id {
            if is_null {
                if reg.ref_obj_id != 0 {
                    released = Some(reg.ref_obj_id);
                }
                *reg = Reg::constant(0);
            } else {
                reg.maybe_null = false;
            }
        }
    });
    if let Some(r) = released {
        // A null reference needs no release.
        st.refs.retain(|x| x.id != r);
    }
}

/// `ptr` (data + off) is proven at most the end: every copy of the same
/// packet pointer may access `off` (+1 if strict) bytes.
fn find_good_pkt_pointers(st: &mut State, ptr: &Reg, strict: bool) {
    let off = ptr.off as i64;
    if off < 0 || (off == 0 && strict) {
        return;
    }
    if ptr.v.umax > MAX_PACKET_OFF as u64 || ptr.v.umax as i64 + off > MAX_PACKET_OFF {
        return;
    }
    let range = (off + strict as i64) as u32;
    let (ty, id) = (ptr.ty, ptr.id);
    st.for_each_reg_mut(|reg| {
        if reg.ty == ty && reg.id == id {
            reg.range = reg.range.max(range);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn concrete(cmp: Cmp, w: Width, a: u64, b: u64) -> bool {
        let (a, b, sa, sb) = match w {
            Width::W64 => (a, b, a as i64, b as i64),
            Width::W32 => (
                a as u32 as u64,
                b as u32 as u64,
                a as i32 as i64,
                b as i32 as i64,
            ),
        };
        match cmp {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Sgt => sa > sb,
            Cmp::Sge => sa >= sb,
            Cmp::Slt => sa < sb,
            Cmp::Sle => sa <= sb,
            Cmp::Set => a & b != 0,
            Cmp::NotSet => a & b == 0,
        }
    }

    #[test]
    fn refinement_keeps_every_pair_that_satisfies_the_condition() {
        let cmps = [
            Cmp::Eq,
            Cmp::Ne,
            Cmp::Gt,
            Cmp::Ge,
            Cmp::Lt,
            Cmp::Le,
            Cmp::Sgt,
            Cmp::Sge,
            Cmp::Slt,
            Cmp::Sle,
            Cmp::Set,
            Cmp::NotSet,
        ];
        let mut rng = Rng(77);
        let pick = |rng: &mut Rng| -> u64 {
            let base = [
                0u64,
                5,
                0xff,
                0x7fff_fff0,
                0xffff_fff0,
                1 << 63,
                u64::MAX - 8,
            ];
            base[(rng.next() % base.len() as u64) as usize].wrapping_add(rng.next() % 16)
        };
        for _ in 0..20000 {
            let av: Vec<u64> = (0..3).map(|_| pick(&mut rng)).collect();
            let bv: Vec<u64> = (0..2).map(|_| pick(&mut rng)).collect();
            let mk = |vals: &[u64]| {
                let mut s = Scalar::unknown();
                s.umin = *vals.iter().min().unwrap();
                s.umax = *vals.iter().max().unwrap();
                s.smin = vals.iter().map(|&v| v as i64).min().unwrap();
                s.smax = vals.iter().map(|&v| v as i64).max().unwrap();
                s.var_off = vals
                    .iter()
                    .fold(Tnum::constant(vals[0]), |t, &v| t.union(Tnum::constant(v)));
                s.sync();
                s
            };
            let (a, b) = (
                mk(&av),
                if rng.next().is_multiple_of(3) {
                    Scalar::constant(bv[0])
                } else {
                    mk(&bv)
                },
            );
            let bv = if b.is_const() { vec![bv[0]] } else { bv };
            let cmp = cmps[(rng.next() % cmps.len() as u64) as usize];
            for w in [Width::W32, Width::W64] {
                let (mut ra, mut rb) = (a, b);
                let ok = refine(&mut ra, &mut rb, cmp, w);
                for &x in &av {
                    for &y in &bv {
                        if concrete(cmp, w, x, y) {
                            assert!(ok, "{cmp:?} {w:?} {x:#x} {y:#x} judged impossible");
                            assert!(
                                ra.contains_value(x),
                                "{cmp:?} {w:?} lost a={x:#x} (b={y:#x}): {ra:?}"
                            );
                            assert!(
                                rb.contains_value(y),
                                "{cmp:?} {w:?} lost b={y:#x} (a={x:#x}): {rb:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn impossible_arms_are_detected() {
        let mut a = Scalar::up_to(10);
        let mut b = Scalar::constant(20);
        assert!(!refine(&mut a, &mut b, Cmp::Eq, Width::W64));
        let mut a = Scalar::up_to(10);
        let mut b = Scalar::constant(20);
        assert!(refine(&mut a, &mut b, Cmp::Lt, Width::W64));
        let mut a = Scalar::up_to(10);
        let mut b = Scalar::constant(20);
        assert!(!refine(&mut a, &mut b, Cmp::Gt, Width::W64));
        let mut a = Scalar::unknown();
        let mut b = Scalar::constant(100);
        assert!(refine(&mut a, &mut b, Cmp::Lt, Width::W64));
        assert_eq!((a.umin, a.umax), (0, 99));
    }
}
