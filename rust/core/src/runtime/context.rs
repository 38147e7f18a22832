//! Program contexts at run time, and the load-time rewrite that makes
//! programs compiled for the kernel read real pointers from them.
//!
//! A kernel program reads 32-bit fields such as `xdp_md.data`; the kernel
//! rewrites those loads to fetch the real 64-bit pointers (its
//! `convert_ctx_access`). ebpfvm lays each run-time context out as the
//! public structure, byte for byte, followed by the 64-bit pointers, and
//! rewrites every load of a pointer field into an 8-byte load of its
//! pointer. All other fields are read and written in place, so the
//! instruction count and every jump stay as they are.

use crate::error::ProgramError;
use crate::isa::*;
use crate::program::Program;
use crate::progtype::ProgType;

/// `sizeof(struct xdp_md)`.
pub const XDP_MD_SIZE: usize = 24;
/// `sizeof(struct __sk_buff)`.
pub const SK_BUFF_SIZE: usize = 192;
/// Bytes of headroom before an XDP packet (`XDP_PACKET_HEADROOM`).
pub const XDP_HEADROOM: usize = 256;
/// A frame as the kernel's test run builds it: one page holds headroom,
/// packet and tailroom (`xdp_adjust_tail` may grow into the tailroom).
pub const XDP_FRAME: usize = 4096;
/// What the kernel keeps at the end of a frame (`skb_shared_info`).
pub const XDP_TAIL_RESERVE: usize = 320;

/// A context's run-time layout: the public structure, then the pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Size of the public structure (`struct xdp_md`, `struct __sk_buff`).
    pub public_size: usize,
    /// Offsets in the public structure of `data`, `data_end`, `data_meta`.
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
}

impl Layout {
    /// Run-time offset of the 64-bit `data` pointer (then `data_end`,
    /// `data_meta`).
    pub fn data_ptr(&self) -> usize {
        self.public_size
    }
    pub fn data_end_ptr(&self) -> usize {
        self.public_size + 8
    }
    pub fn data_meta_ptr(&self) -> usize {
        self.public_size + 16
    }
    /// Bytes of the whole run-time context.
    pub fn size(&self) -> usize {
        self.public_size + 24
    }

    /// The run-time offset an 8-byte load of public pointer field `off`
    /// becomes.
    fn pointer_slot(&self, off: u32) -> Option<usize> {
        if off == self.data {
            Some(self.data_ptr())
        } else if off == self.data_end {
            Some(self.data_end_ptr())
        } else if off == self.data_meta {
            Some(self.data_meta_ptr())
        } else {
            None
        }
    }
}

pub const XDP_LAYOUT: Layout = Layout {
    public_size: XDP_MD_SIZE,
    data: 0,
    data_end: 4,
    data_meta: 8,
};

pub const SKB_LAYOUT: Layout = Layout {
    public_size: SK_BUFF_SIZE,
    data: 76,
    data_end: 80,
    data_meta: 140,
};

/// The packet-context layout of a program type, if it has one.
pub fn layout(t: ProgType) -> Option<Layout> {
    use ProgType::*;
    match t {
        Xdp => Some(XDP_LAYOUT),
        SocketFilter | SchedCls | SchedAct | CgroupSkb | LwtIn | LwtOut | LwtXmit
        | LwtSeg6local | SkSkb => Some(SKB_LAYOUT),
        _ => None,
    }
}

/// A packet during a run: the buffer that holds it and where it is now.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    /// The whole buffer: headroom, packet, tailroom.
    pub buf: u64,
    pub cap: u64,
    pub data: u64,
    pub data_end: u64,
    pub data_meta: u64,
    pub layout: Layout,
}

impl Packet {
    pub fn len(&self) -> u64 {
        self.data_end - self.data
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the packet's pointers into the run-time context at `ctx`.
    ///
    /// # Safety
    /// `ctx` must point at a live run-time context of `self.layout`.
    pub unsafe fn store_pointers(&self, ctx: u64) {
        let p = ctx as *mut u8;
        let l = self.layout;
        (p.add(l.data_ptr()) as *mut u64).write_unaligned(self.data);
        (p.add(l.data_end_ptr()) as *mut u64).write_unaligned(self.data_end);
        (p.add(l.data_meta_ptr()) as *mut u64).write_unaligned(self.data_meta);
    }
}

/// Where a register may point, as far as context accesses are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prov {
    /// Nothing known yet (not reached).
    Unreached,
    /// The context plus a constant.
    Ctx(i64),
    /// Anything but the context.
    Other,
    /// The context on some paths and something else (or a variable offset
    /// into it) on others.
    Mixed,
}

impl Prov {
    fn join(self, o: Prov) -> Prov {
        match (self, o) {
            (Prov::Unreached, x) | (x, Prov::Unreached) => x,
            (a, b) if a == b => a,
            _ => Prov::Mixed,
        }
    }
}

/// Registers r0-r9 and the 8-byte stack slots of the current frame.
#[derive(Clone, PartialEq, Eq)]
struct State {
    regs: [Prov; 10],
    /// Spill slots at r10 - 8*(i+1).
    stack: [Prov; STACK_FRAME_SIZE / 8],
}

impl State {
    fn unreached() -> State {
        State {
            regs: [Prov::Unreached; 10],
            stack: [Prov::Unreached; STACK_FRAME_SIZE / 8],
        }
    }

    fn entry(args: [Prov; 5]) -> State {
        let mut s = State {
            regs: [Prov::Other; 10],
            stack: [Prov::Other; STACK_FRAME_SIZE / 8],
        };
        s.regs[1..6].copy_from_slice(&args);
        s
    }

    fn join(&mut self, o: &State) -> bool {
        let before = self.clone();
        for (a, b) in self.regs.iter_mut().zip(o.regs) {
            *a = a.join(b);
        }
        for (a, b) in self.stack.iter_mut().zip(o.stack.iter()) {
            *a = a.join(*b);
        }
        *self != before
    }
}

fn slot(off: i16) -> Option<usize> {
    (off < 0 && off % 8 == 0 && (off as i32) >= -(STACK_FRAME_SIZE as i32))
        .then(|| ((-(off as i32)) / 8 - 1) as usize)
}

/// Rewrites `program`'s context accesses for `prog_type`'s run-time
/// layout and returns the new instructions (same length, same jumps).
/// Types without a packet context are returned unchanged: their context is
/// plain memory read in place.
pub fn rewrite(program: &Program, prog_type: ProgType) -> Result<Vec<Insn>, ProgramError> {
    let mut insns = program.insns().to_vec();
    let Some(layout) = layout(prog_type) else {
        return Ok(insns);
    };
    let provs = ctx_provenance(program)?;
    for (pc, base) in provs.into_iter().enumerate() {
        let Some(base) = base else { continue };
        let insn = insns[pc];
        let off = base + insn.off as i64;
        let size = access_size(insn.opc) as i64;
        let cls = insn.class();
        let fail = |what: &str| {
            Err(ProgramError::at(
                pc,
                format!("invalid bpf_context access off={off} size={size}: {what}"),
            ))
        };
        if off < 0 || off + size > layout.public_size as i64 {
            return fail(&format!(
                "outside the {}-byte context of a {prog_type} program",
                layout.public_size
            ));
        }
        let off32 = off as u32;
        let field_of = |f: u32| off32 < f + 4 && off32 + size as u32 > f;
        let touches_pointer = [layout.data, layout.data_end, layout.data_meta]
            .into_iter()
            .any(field_of);
        if !touches_pointer {
            continue;
        }
        if cls != CLS_LDX || insn.opc & 0xe0 != MODE_MEM {
            return fail("packet pointer fields can only be read");
        }
        let Some(slot) = layout.pointer_slot(off32).filter(|_| size == 4) else {
            return fail("packet pointer fields are read whole, as 32-bit loads");
        };
        let rel = slot as i64 - base;
        insns[pc] = Insn::new(
            CLS_LDX | MODE_MEM | SIZE_DW,
            insn.dst,
            insn.src,
            i16::try_from(rel).map_err(|_| {
                ProgramError::at(pc, "context pointer offset does not fit an instruction")
            })?,
            0,
        );
    }
    Ok(insns)
}

/// For every load, store or atomic whose address register holds the
/// context pointer plus a constant: that constant. A register that holds
/// the context on some paths only, or at a variable offset, is an error at
/// the access (the kernel rejects such programs too).
fn ctx_provenance(program: &Program) -> Result<Vec<Option<i64>>, ProgramError> {
    let insns = program.insns();
    let funcs = program.functions();
    let func_of = |pc: usize| funcs.iter().position(|f| f.start <= pc && pc < f.end);
    let mut entry_args: Vec<[Prov; 5]> = vec![[Prov::Unreached; 5]; funcs.len()];
    if !funcs.is_empty() {
        entry_args[0] = [
            Prov::Ctx(0),
            Prov::Other,
            Prov::Other,
            Prov::Other,
            Prov::Other,
        ];
    }
    let mut states: Vec<State> = vec![State::unreached(); insns.len()];
    let mut result = vec![None; insns.len()];
    // Functions are re-analysed until their entry states stop changing.
    loop {
        let mut changed = false;
        for (fi, f) in funcs.iter().enumerate() {
            if entry_args[fi].iter().all(|p| *p == Prov::Unreached) {
                continue;
            }
            let entry = State::entry(entry_args[fi]);
            states[f.start].join(&entry);
            let mut work: Vec<usize> = (f.start..f.end).collect();
            work.reverse();
            let mut queued = vec![true; f.end - f.start];
            while let Some(pc) = work.pop() {
                queued[pc - f.start] = false;
                let insn = insns[pc];
                // (The second slot of an lddw is never reached: its first
                // slot's successor is the slot after it.)
                let mut s = states[pc].clone();
                if s.regs.iter().all(|p| *p == Prov::Unreached) {
                    continue;
                }
                let succ = step(insn, pc, &mut s, &mut result, |callee, args| {
                    if let Some(ci) = func_of(callee) {
                        let mut any = false;
                        for (a, b) in entry_args[ci].iter_mut().zip(args) {
                            let j = a.join(b);
                            any |= j != *a;
                            *a = j;
                        }
                        changed |= any;
                    }
                })?;
                for next in succ.into_iter().flatten() {
                    if next < f.start || next >= f.end {
                        continue;
                    }
                    if states[next].join(&s) && !queued[next - f.start] {
                        queued[next - f.start] = true;
                        work.push(next);
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    Ok(result)
}

/// Applies one instruction; returns its successors.
fn step(
    insn: Insn,
    pc: usize,
    s: &mut State,
    result: &mut [Option<i64>],
    mut on_call: impl FnMut(usize, [Prov; 5]),
) -> Result<[Option<usize>; 2], ProgramError> {
    let cls = insn.class();
    let dst = (insn.dst as usize).min(10);
    let src = (insn.src as usize).min(10);
    let reg = |s: &State, r: usize| if r == 10 { Prov::Other } else { s.regs[r] };
    let mut note_access = |base: Prov, s_reg: usize| -> Result<(), ProgramError> {
        match base {
            Prov::Ctx(off) => {
                result[pc] = Some(off);
                Ok(())
            }
            Prov::Mixed => Err(ProgramError::at(
                pc,
                format!(
                    "r{s_reg} holds the context pointer on some paths only (or at a variable offset): the same instruction cannot access the context and other memory"
                ),
            )),
            _ => Ok(()),
        }
    };
    let next = Some(pc + 1);
    match cls {
        CLS_ALU64 | CLS_ALU => {
            if dst < 10 {
                let op = insn.opc & 0xf0;
                let is_imm = insn.opc & SRC_X == 0;
                s.regs[dst] = match (cls, op, reg(s, dst)) {
                    (CLS_ALU64, ALU_MOV, _) if !is_imm && insn.off == 0 => reg(s, src),
                    (CLS_ALU64, ALU_ADD, Prov::Ctx(o)) if is_imm => Prov::Ctx(o + insn.imm as i64),
                    (CLS_ALU64, ALU_SUB, Prov::Ctx(o)) if is_imm => Prov::Ctx(o - insn.imm as i64),
                    (CLS_ALU64, ALU_ADD | ALU_SUB, Prov::Ctx(_)) => Prov::Mixed,
                    (CLS_ALU64, ALU_ADD, _) if !is_imm && matches!(reg(s, src), Prov::Ctx(_)) => {
                        Prov::Mixed
                    }
                    _ => Prov::Other,
                };
            }
            Ok([next, None])
        }
        CLS_LD => {
            if dst < 10 {
                s.regs[dst] = Prov::Other;
            }
            if insn.is_lddw() {
                Ok([Some(pc + 2), None])
            } else {
                // Legacy packet loads clobber r0 and r1-r5.
                for r in 0..6 {
                    s.regs[r] = Prov::Other;
                }
                Ok([next, None])
            }
        }
        CLS_LDX => {
            note_access(reg(s, src), src)?;
            let v = if src == 10 && access_size(insn.opc) == 8 {
                slot(insn.off).map_or(Prov::Other, |i| s.stack[i])
            } else {
                Prov::Other
            };
            if dst < 10 {
                s.regs[dst] = if v == Prov::Unreached { Prov::Other } else { v };
            }
            Ok([next, None])
        }
        CLS_ST | CLS_STX => {
            note_access(reg(s, dst), dst)?;
            if dst == 10 {
                let size = access_size(insn.opc);
                let is_atomic = insn.opc & 0xe0 == MODE_ATOMIC;
                let stored = if cls == CLS_STX && size == 8 && !is_atomic {
                    reg(s, src)
                } else {
                    Prov::Other
                };
                // Any write overlapping a slot ends what it held.
                let lo = insn.off as i64;
                let hi = lo + size as i64;
                for (i, p) in s.stack.iter_mut().enumerate() {
                    let so = -8 * (i as i64 + 1);
                    if lo < so + 8 && hi > so {
                        *p = if lo == so && size == 8 {
                            stored
                        } else {
                            Prov::Other
                        };
                    }
                }
            }
            if cls == CLS_STX && insn.opc & 0xe0 == MODE_ATOMIC {
                let op = insn.imm;
                if op == ATOMIC_CMPXCHG {
                    s.regs[0] = Prov::Other;
                } else if op & ATOMIC_FETCH != 0 && src < 10 {
                    s.regs[src] = Prov::Other;
                }
            }
            Ok([next, None])
        }
        CLS_JMP | CLS_JMP32 => {
            let op = insn.opc & 0xf0;
            if cls == CLS_JMP && op == JMP_EXIT {
                return Ok([None, None]);
            }
            if cls == CLS_JMP && op == JMP_CALL {
                if insn.src == 1 {
                    let callee = (pc as i64 + 1 + insn.imm as i64) as usize;
                    let mut args = [Prov::Other; 5];
                    args.copy_from_slice(&s.regs[1..6]);
                    on_call(callee, args);
                }
                for r in 0..6 {
                    s.regs[r] = Prov::Other;
                }
                return Ok([next, None]);
            }
            let target = insn.jump_target(pc);
            if insn.is_unconditional_jump() {
                return Ok([target, None]);
            }
            Ok([next, target])
        }
        _ => Ok([next, None]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;

    fn rewritten(src: &str, t: ProgType) -> Result<Vec<Insn>, ProgramError> {
        let p = Program::from_insns(assemble(src).unwrap(), 4096).unwrap();
        rewrite(&p, t)
    }

    #[test]
    fn xdp_pointer_loads_become_8_byte_loads_of_the_hidden_pointers() {
        let out = rewritten(
            "mov %r6, %r1\nldxw %r2, [%r6]\nldxw %r3, [%r6+4]\nldxw %r4, [%r6+12]\nmov %r0, 2\nexit",
            ProgType::Xdp,
        )
        .unwrap();
        assert_eq!(out[1].opc, CLS_LDX | MODE_MEM | SIZE_DW);
        assert_eq!(out[1].off, 24);
        assert_eq!(out[2].off, 32);
        // ingress_ifindex is read in place.
        assert_eq!(out[3].opc, CLS_LDX | MODE_MEM | SIZE_W);
        assert_eq!(out[3].off, 12);
    }

    #[test]
    fn spilled_context_pointer_is_followed() {
        let out = rewritten(
            "stxdw [%r10-8], %r1\nldxdw %r7, [%r10-8]\nadd %r7, 76\nldxw %r2, [%r7]\nmov %r0, 0\nexit",
            ProgType::SchedCls,
        )
        .unwrap();
        assert_eq!(out[3].opc, CLS_LDX | MODE_MEM | SIZE_DW);
        assert_eq!(out[3].off as i64, 192 - 76);
    }

    #[test]
    fn context_passed_to_a_subprogram_is_followed() {
        let out = rewritten(
            "mov %r6, %r1\nmov %r1, %r6\ncall local f\nexit\nf:\nldxw %r0, [%r1+4]\nexit",
            ProgType::Xdp,
        )
        .unwrap();
        assert_eq!(out[4].opc, CLS_LDX | MODE_MEM | SIZE_DW);
        assert_eq!(out[4].off, 32);
    }

    #[test]
    fn ambiguous_context_use_is_rejected() {
        let err = rewritten(
            "jeq %r2, 0, +1\nmov %r1, %r10\nldxw %r0, [%r1+4]\nexit",
            ProgType::Xdp,
        )
        .unwrap_err();
        assert_eq!(err.pc, Some(2));
        assert!(err.reason.contains("r1"), "{}", err.reason);
    }

    #[test]
    fn writes_and_narrow_reads_of_pointer_fields_are_rejected() {
        let e = rewritten("stw [%r1+4], 0\nmov %r0, 0\nexit", ProgType::Xdp).unwrap_err();
        assert!(e.reason.contains("only be read"), "{}", e.reason);
        let e = rewritten("ldxh %r0, [%r1]\nexit", ProgType::Xdp).unwrap_err();
        assert!(e.reason.contains("32-bit"), "{}", e.reason);
        let e = rewritten("ldxw %r0, [%r1+24]\nexit", ProgType::Xdp).unwrap_err();
        assert!(e.reason.contains("outside"), "{}", e.reason);
    }

    #[test]
    fn raw_programs_are_unchanged() {
        let src = "ldxw %r0, [%r1]\nexit";
        let p = Program::from_insns(assemble(src).unwrap(), 16).unwrap();
        assert_eq!(rewrite(&p, ProgType::Raw).unwrap(), p.insns());
    }
}
