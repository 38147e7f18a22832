//! Static register liveness: which registers may be read before being
//! written on some path from each instruction. Pruning ignores dead
//! registers, which is what lets loops and diverging paths converge.

use crate::isa::*;
use crate::program::Program;

const ARGS: u16 = 0b11_1110; // r1-r5
const CALLER_SAVED: u16 = 0b11_1111; // r0-r5

fn bit(r: u8) -> u16 {
    1 << (r & 0xf)
}

/// (used, defined) registers of the instruction at `pc`.
fn use_def(insn: &Insn) -> (u16, u16) {
    let d = bit(insn.dst);
    let s = bit(insn.src);
    match insn.class() {
        CLS_ALU | CLS_ALU64 => {
            let op = insn.opc & 0xf0;
            let x = insn.opc & SRC_X != 0;
            match op {
                ALU_MOV => (if x { s } else { 0 }, d),
                ALU_NEG | ALU_END => (d, d),
                _ => (d | if x { s } else { 0 }, d),
            }
        }
        CLS_LDX => (s, d),
        CLS_ST => (d, 0),
        CLS_STX => {
            if insn.opc & 0xe0 == MODE_ATOMIC {
                if insn.imm == ATOMIC_CMPXCHG {
                    (d | s | 1, 1)
                } else if insn.imm & ATOMIC_FETCH != 0 {
                    (d | s, s)
                } else {
                    (d | s, 0)
                }
            } else {
                (d | s, 0)
            }
        }
        CLS_LD => {
            if insn.is_lddw() {
                (0, d)
            } else {
                // Legacy packet loads read r6 (and src) and clobber r0-r5.
                let ind = if insn.opc & 0xe0 == MODE_IND { s } else { 0 };
                (bit(6) | ind, CALLER_SAVED)
            }
        }
        _ => {
            let op = insn.opc & 0xf0;
            match op {
                JMP_CALL => {
                    let target = if insn.opc == OP_CALLX { d } else { 0 };
                    (ARGS | target, CALLER_SAVED)
                }
                JMP_EXIT => (1, 0),
                JMP_JA => (0, 0),
                _ => (d | if insn.opc & SRC_X != 0 { s } else { 0 }, 0),
            }
        }
    }
}

/// Live-in registers per instruction (r10 always live).
pub fn live_in(program: &Program) -> Vec<u16> {
    let insns = program.insns();
    let n = insns.len();
    let mut live = vec![0u16; n];
    let ud: Vec<(u16, u16)> = insns.iter().map(use_def).collect();
    // Second lddw halves are never executed: they stay at zero.
    let mut is_second = vec![false; n];
    let mut pc = 0;
    while pc < n {
        if insns[pc].is_lddw() && pc + 1 < n {
            is_second[pc + 1] = true;
            pc += 2;
        } else {
            pc += 1;
        }
    }
    let mut changed = true;
    while changed {
        changed = false;
        for pc in (0..n).rev() {
            if is_second[pc] {
                continue;
            }
            let insn = insns[pc];
            let next = if insn.is_lddw() { pc + 2 } else { pc + 1 };
            let mut out = 0u16;
            if insn.falls_through() && next < n {
                out |= live[next];
            }
            if let Some(t) = insn.jump_target(pc) {
                if t < n {
                    out |= live[t];
                }
            }
            let (u, d) = ud[pc];
            let inn = u | (out & !d) | bit(FRAME_REG);
            if inn != live[pc] {
                live[pc] = inn;
                changed = true;
            }
        }
    }
    live
}
