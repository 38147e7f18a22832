//! Precision tracking (the kernel's `mark_chain_precision`): when a check
//! depends on a scalar's value (pointer arithmetic, a size argument, a
//! branch decided by bounds), walk the path back through the recorded
//! instructions to find which registers and spilled slots the value came
//! from, and mark them precise in every stored state on the way. Pruning
//! then compares only precise scalars, so states that differ in values no
//! check ever looked at are treated as equal.

use super::explore::{Hist, Verifier};
use super::state::{StackByte, State};
use crate::isa::*;

/// Registers (per frame, bit per register) and spilled slots still to trace.
#[derive(Default, Clone)]
pub(super) struct Backtrack {
    regs: u16,
    /// (frame, slot)
    slots: Vec<(u8, u8)>,
}

impl Backtrack {
    fn is_empty(&self) -> bool {
        self.regs == 0 && self.slots.is_empty()
    }

    fn take_slot(&mut self, slot: (u8, u8)) -> bool {
        let before = self.slots.len();
        self.slots.retain(|&s| s != slot);
        self.slots.len() != before
    }

    fn add_slot(&mut self, slot: (u8, u8)) {
        if !self.slots.contains(&slot) {
            self.slots.push(slot);
        }
    }
}

fn bit(r: u8) -> u16 {
    1 << (r & 0xf)
}

/// Callback-running helpers: the path continues in another frame.
fn enters_callback(id: i32) -> bool {
    matches!(id, 164 | 170 | 180 | 181)
}

/// Steps the set back over one instruction; false when the instruction
/// crosses a frame boundary (then everything is marked instead).
fn step_back(insns: &[Insn], e: Hist, bt: &mut Backtrack) -> bool {
    let Some(&i) = insns.get(e.pc as usize) else {
        return false;
    };
    let d = bit(i.dst);
    let s = bit(i.src);
    let slot = e.stack_slot();
    match i.class() {
        CLS_ALU | CLS_ALU64 => {
            if bt.regs & d == 0 {
                return true;
            }
            let op = i.opc & 0xf0;
            let x = i.opc & SRC_X != 0;
            match op {
                ALU_MOV => {
                    bt.regs &= !d;
                    if x {
                        bt.regs |= s;
                    }
                }
                ALU_NEG | ALU_END => {}
                _ => {
                    if x {
                        bt.regs |= s;
                    }
                }
            }
        }
        CLS_LDX => {
            if bt.regs & d != 0 {
                bt.regs &= !d;
                if let Some(sl) = slot {
                    bt.add_slot(sl);
                }
            }
        }
        CLS_ST => {
            if let Some(sl) = slot {
                bt.take_slot(sl);
            }
        }
        CLS_STX => {
            if i.opc & 0xe0 == MODE_ATOMIC {
                if i.imm == ATOMIC_CMPXCHG {
                    bt.regs &= !1;
                } else if i.imm & ATOMIC_FETCH != 0 {
                    bt.regs &= !s;
                }
                if let Some(sl) = slot {
                    if bt.slots.contains(&sl) {
                        bt.regs |= s;
                    }
                }
            } else if let Some(sl) = slot {
                if bt.take_slot(sl) {
                    bt.regs |= s;
                }
            }
        }
        CLS_LD => {
            if i.is_lddw() {
                bt.regs &= !d;
            } else {
                bt.regs &= !0x3f;
            }
        }
        _ => {
            let op = i.opc & 0xf0;
            match op {
                JMP_CALL => {
                    if i.opc != OP_CALL || i.src != CALL_HELPER || enters_callback(i.imm) {
                        return false;
                    }
                    bt.regs &= !0x3f;
                }
                JMP_EXIT => return false,
                JMP_JA => {}
                _ => {
                    if i.opc & SRC_X != 0 && bt.regs & (d | s) != 0 {
                        bt.regs |= d | s;
                    }
                }
            }
        }
    }
    true
}

/// Marks the traced registers and slots precise in `st`; true if they
/// all were already (so the ancestors are marked too).
fn mark_state(st: &mut State, bt: &Backtrack, frame: usize) -> bool {
    let mut all_done = true;
    if let Some(f) = st.frames.get_mut(frame) {
        for r in 0..11u8 {
            if bt.regs & bit(r) != 0 {
                let reg = &mut f.regs[r as usize];
                if reg.is_scalar() && !reg.precise {
                    reg.precise = true;
                    all_done = false;
                }
            }
        }
    } else {
        return false;
    }
    for &(fr, sl) in &bt.slots {
        if let Some(f) = st.frames.get_mut(fr as usize) {
            if let Some(slot) = f.stack.get_mut(sl as usize) {
                if slot.bytes.contains(&StackByte::Spill)
                    && slot.spilled.is_scalar()
                    && !slot.spilled.precise
                {
                    slot.spilled.precise = true;
                    all_done = false;
                }
            }
        }
    }
    all_done
}

/// Every scalar of `st` precise; true if they already were.
fn mark_all(st: &mut State) -> bool {
    let mut all_done = true;
    st.for_each_reg_mut(|r| {
        if r.is_scalar() && !r.precise {
            r.precise = true;
            all_done = false;
        }
    });
    all_done
}

impl Verifier<'_> {
    /// Registers `regs` (bits) of frame `frame` of the current state must
    /// keep their exact bounds in every stored state they came through.
    pub(super) fn mark_precise(&mut self, frame: usize, regs: u16) {
        let bt = Backtrack {
            regs,
            slots: Vec::new(),
        };
        self.backtrack(frame, bt);
    }

    /// After pruning against `old`: the current path relied on `old`'s
    /// precise scalars, so they become precise along the current path too.
    /// A check depended on the input length's bounds: every stored state
    /// on the current path must keep them when pruning (the length only
    /// changes by comparisons, so all ancestors are marked).
    pub(super) fn mark_input_len_precise(&mut self) {
        let mut ck = self.cur_parent;
        while let Some(c) = ck {
            let c = c as usize;
            if let Some(st) = self.ckpts[c].state.as_mut() {
                if st.input_len.precise || !st.input_len.is_init() {
                    return;
                }
                st.input_len.precise = true;
            }
            ck = self.ckpts[c].parent;
        }
    }

    pub(super) fn propagate_precision(&mut self, old: &State) {
        if old.input_len.precise {
            self.mark_input_len_precise();
        }
        if old.frames.len() != 1 {
            self.mark_all_from(self.cur_parent);
            return;
        }
        let f = &old.frames[0];
        let mut bt = Backtrack::default();
        for (r, reg) in f.regs.iter().enumerate() {
            if reg.is_scalar() && reg.precise {
                bt.regs |= bit(r as u8);
            }
        }
        for (i, slot) in f.stack.iter().enumerate() {
            if slot.bytes.contains(&StackByte::Spill)
                && slot.spilled.is_scalar()
                && slot.spilled.precise
            {
                bt.add_slot((0, i as u8));
            }
        }
        if !bt.is_empty() {
            self.backtrack(0, bt);
        }
    }

    fn backtrack(&mut self, frame: usize, mut bt: Backtrack) {
        let insns = self.insns;
        // The current segment, newest first.
        for k in (0..self.cur_hist.len()).rev() {
            let e = self.cur_hist[k];
            if !step_back(insns, e, &mut bt) {
                self.mark_all_from(self.cur_parent);
                return;
            }
            if bt.is_empty() {
                return;
            }
        }
        let mut ck = self.cur_parent;
        while let Some(c) = ck {
            let c = c as usize;
            let done = match self.ckpts[c].state.as_mut() {
                Some(st) => mark_state(st, &bt, frame),
                None => false,
            };
            if done {
                return;
            }
            let parent = self.ckpts[c].parent;
            for k in (0..self.ckpts[c].hist.len()).rev() {
                let e = self.ckpts[c].hist[k];
                if !step_back(insns, e, &mut bt) {
                    self.mark_all_from(parent);
                    return;
                }
                if bt.is_empty() {
                    return;
                }
            }
            ck = parent;
        }
    }

    /// The fallback: every scalar precise in `from` and its ancestors.
    pub(super) fn mark_all_from(&mut self, from: Option<u32>) {
        let mut ck = from;
        while let Some(c) = ck {
            let c = c as usize;
            if self.ckpts[c].all_precise {
                return;
            }
            if let Some(st) = self.ckpts[c].state.as_mut() {
                mark_all(st);
            }
            self.ckpts[c].all_precise = true;
            ck = self.ckpts[c].parent;
        }
    }
}
