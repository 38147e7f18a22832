//! The basic blocks both tiers compile: each block first adds its
//! instruction count, so their blocks must be the same for counts at every
//! fault and stop to match the interpreter's.

use std::collections::BTreeSet;

use ebpfvm_core::isa::*;
use ebpfvm_core::program::Function;

/// Basic-block leaders of one function: its entry, jump targets, and what
/// follows a jump, an exit, a call or a legacy packet load (calls and
/// packet loads end a block so that counts at them and after a stop match
/// the interpreter).
pub fn leaders(insns: &[Insn], f: Function) -> BTreeSet<usize> {
    let mut set = BTreeSet::new();
    set.insert(f.start);
    let mut pc = f.start;
    while pc < f.end {
        let i = insns[pc];
        let next = pc + if i.is_lddw() { 2 } else { 1 };
        set.extend(i.jump_target(pc));
        let class = i.class();
        let ends_block =
            class == CLS_JMP || class == CLS_JMP32 || (class == CLS_LD && !i.is_lddw());
        if ends_block && next < f.end {
            set.insert(next);
        }
        pc = next;
    }
    set
}

/// Number of instructions in `[start, end)`, an lddw counting once.
pub fn count_insns(insns: &[Insn], start: usize, end: usize) -> i64 {
    let mut n = 0;
    let mut pc = start;
    while pc < end {
        n += 1;
        pc += if insns[pc].is_lddw() { 2 } else { 1 };
    }
    n
}
