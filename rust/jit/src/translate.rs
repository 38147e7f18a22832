//! eBPF → Cranelift IR, one eBPF function at a time.
//!
//! Registers r0–r9 are SSA variables, so Cranelift's register allocator
//! keeps them in machine registers; r10 is the frame pointer, fixed per
//! function. Every eBPF basic block becomes a Cranelift block that first adds
//! its instruction count, so the count (and the budget checked on back edges
//! and calls) matches the interpreter exactly. Faults never trap: they store
//! a status in the run context and return.

use std::collections::BTreeSet;
use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{
    AbiParam, AtomicRmwOp, Block, BlockArg, Function, Inst, InstBuilder, InstructionData,
    MemFlagsData, Opcode, Signature, Type, UserFuncName, Value, ValueDef,
};
use cranelift_codegen::isa::{CallConv, TargetIsa};
use cranelift_codegen::CompiledCode;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

use ebpfvm_core::helpers::HelperImpl;
use ebpfvm_core::interp::MemoryMap;
use ebpfvm_core::isa::*;
use ebpfvm_core::program::{Function as BpfFunction, Program};

use crate::blocks::{count_insns, leaders};
use crate::runtime::{self, RunCtx};

const NOARGS: &[BlockArg] = &[];
const FRAME: i64 = STACK_FRAME_SIZE as i64;

/// Offsets of run-context fields read or written by compiled code.
pub(crate) mod off {
    use super::*;
    pub const STACK_LO: i32 = (offset_of!(RunCtx, map) + offset_of!(MemoryMap, stack_lo)) as i32;
    pub const STACK_LEN: i32 = (offset_of!(RunCtx, map) + offset_of!(MemoryMap, stack_len)) as i32;
    pub const MEM_LO: i32 = (offset_of!(RunCtx, map) + offset_of!(MemoryMap, mem_lo)) as i32;
    pub const STATUS: i32 = offset_of!(RunCtx, status) as i32;
    pub const FAULT_PC: i32 = offset_of!(RunCtx, fault_pc) as i32;
    pub const FAULT_ADDR: i32 = offset_of!(RunCtx, fault_addr) as i32;
    pub const FAULT_INFO: i32 = offset_of!(RunCtx, fault_info) as i32;
    pub const DEPTH: i32 = offset_of!(RunCtx, depth) as i32;
    pub const BUDGET: i32 = offset_of!(RunCtx, budget) as i32;
    pub const FUNCTIONS: i32 = offset_of!(RunCtx, functions) as i32;
    pub const SLOW_OK: i32 = offset_of!(RunCtx, slow_ok) as i32;
    pub fn mem_lim(size: u8) -> i32 {
        (offset_of!(RunCtx, mem_lim) + 8 * size.trailing_zeros() as usize) as i32
    }
}

/// The signature shared by all compiled eBPF functions:
/// `(ctx, r1, r2, r3, r4, r5, count) -> (r0, count)`.
pub fn bpf_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..7 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig.returns.push(AbiParam::new(I64));
    sig
}

fn sig_of(call_conv: CallConv, params: usize, ret: bool) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..params {
        sig.params.push(AbiParam::new(I64));
    }
    if ret {
        sig.returns.push(AbiParam::new(I64));
    }
    sig
}

/// Per-program facts the translator needs.
pub struct TranslateEnv<'a> {
    pub program: &'a Program,
    pub helpers: &'a [Option<HelperImpl>],
    pub unwind_helper: Option<u32>,
    /// Index in `program.functions()` of each function start slot.
    pub function_index: &'a dyn Fn(usize) -> Option<usize>,
    /// Address of the register-preserving slow-path stub.
    pub slow_stub: u64,
    /// Helpers may move the input region: its bounds are re-read after
    /// every helper call instead of being hoisted.
    pub input_may_move: bool,
    /// Verified code shape: no bounds checks, no budget.
    pub verified: bool,
    /// Loads that read 0 outside the program's memory (sorted pcs).
    pub probe_loads: &'a [usize],
    /// Set when some compiled function touches the run context beyond
    /// reading its stack bound (or hands it to Rust). When it stays clear,
    /// runs need not build a context: see `JitExecutable::run_setup`.
    pub uses_run_ctx: std::cell::Cell<bool>,
}

/// For each block leader, the largest pc that can transfer control to it
/// (a jump, or the last instruction of the block before it falling
/// through); the function's entry also has the prologue as predecessor.
fn last_predecessors(
    insns: &[Insn],
    f: BpfFunction,
    starts: &[usize],
) -> std::collections::BTreeMap<usize, usize> {
    let mut last = std::collections::BTreeMap::new();
    let mut note = |target: usize, from: usize| {
        let e = last.entry(target).or_insert(0);
        *e = (*e).max(from);
    };
    let mut pc = f.start;
    while pc < f.end {
        let i = insns[pc];
        let next = pc + if i.is_lddw() { 2 } else { 1 };
        if let Some(t) = i.jump_target(pc) {
            note(t, pc);
        }
        if i.falls_through() && next < f.end && starts.binary_search(&next).is_ok() {
            note(next, pc);
        }
        pc = next;
    }
    last
}

/// For r0-r9: `Some(k)` when the register is known to hold r10 + k.
type FpFacts = [Option<i64>; 10];
const UNKNOWN: FpFacts = [None; 10];

/// Effect of one instruction on the stack provenance of registers. Only
/// copies of r10 and constant additions keep a fact; any other write to a
/// register forgets it. Calls keep r1-r9 (both engines restore them) but
/// not r0.
fn fp_transfer(facts: &mut FpFacts, i: &Insn) {
    let dst = (i.dst as usize) % 10;
    let fact_of = |facts: &FpFacts, r: u8| {
        if r == FRAME_REG {
            Some(0)
        } else {
            facts[(r as usize) % 10]
        }
    };
    match i.class() {
        CLS_ALU64 => {
            let op = i.opc & 0xf0;
            let x = i.opc & SRC_X != 0;
            facts[dst] = match (op, x) {
                (ALU_MOV, true) if i.off == 0 => fact_of(facts, i.src),
                (ALU_ADD, false) => facts[dst].map(|k| k.wrapping_add(i.imm as i64)),
                (ALU_SUB, false) => facts[dst].map(|k| k.wrapping_sub(i.imm as i64)),
                _ => None,
            };
        }
        CLS_ALU | CLS_LDX => facts[dst] = None,
        CLS_LD => {
            if i.is_lddw() {
                facts[dst] = None;
            } else {
                facts[0] = None; // legacy packet loads write r0
            }
        }
        CLS_STX if i.opc & 0xe0 == MODE_ATOMIC => {
            if i.imm == ATOMIC_CMPXCHG {
                facts[0] = None;
            } else if i.imm & ATOMIC_FETCH != 0 {
                facts[(i.src as usize) % 10] = None;
            }
        }
        CLS_JMP if i.opc & 0xf0 == JMP_CALL => facts[0] = None,
        _ => {}
    }
}

/// Stack provenance at every block leader of `f`, by forward dataflow to a
/// fixpoint (facts only ever get forgotten, so it ends quickly).
fn fp_provenance(
    insns: &[Insn],
    f: BpfFunction,
    leaders: &BTreeSet<usize>,
) -> std::collections::BTreeMap<usize, FpFacts> {
    let starts: Vec<usize> = leaders.iter().copied().collect();
    let mut at: std::collections::BTreeMap<usize, FpFacts> = Default::default();
    at.insert(f.start, UNKNOWN);
    let mut work = vec![f.start];
    while let Some(start) = work.pop() {
        let k = starts.binary_search(&start).expect("leader");
        let end = starts.get(k + 1).copied().unwrap_or(f.end);
        let mut facts = at[&start];
        let mut successors = Vec::with_capacity(2);
        let mut pc = start;
        let mut falls_through = true;
        while pc < end {
            let i = insns[pc];
            successors.extend(i.jump_target(pc));
            falls_through = i.falls_through();
            fp_transfer(&mut facts, &i);
            pc += if i.is_lddw() { 2 } else { 1 };
        }
        if falls_through && end < f.end {
            successors.push(end);
        }
        for succ in successors {
            let merged = match at.get(&succ) {
                None => facts,
                Some(old) => {
                    let mut m = *old;
                    for r in 0..10 {
                        if m[r] != facts[r] {
                            m[r] = None;
                        }
                    }
                    m
                }
            };
            if at.get(&succ) != Some(&merged) {
                at.insert(succ, merged);
                work.push(succ);
            }
        }
    }
    at
}

struct Translator<'a, 'b> {
    b: FunctionBuilder<'b>,
    env: &'a TranslateEnv<'a>,
    insns: &'a [Insn],
    regs: [Variable; 10],
    count: Variable,
    ctx: Value,
    fp: Value,
    blocks: std::collections::BTreeMap<usize, Block>,
    oob_block: Block,
    misaligned_block: Block,
    budget_block: Block,
    depth_block: Block,
    stop_block: Block,
    propagate_block: Block,
    call_conv: CallConv,
    ptr_ty: Type,
    /// Stack provenance of r0-r9 at the instruction being translated.
    facts: FpFacts,
    /// Provenance at each block leader.
    block_facts: std::collections::BTreeMap<usize, FpFacts>,
    /// First pc of the block being translated.
    block_start: usize,
}

impl Translator<'_, '_> {
    fn reg(&mut self, r: u8) -> Value {
        if r == FRAME_REG {
            self.fp
        } else {
            self.b.use_var(self.regs[(r & 15) as usize % 10])
        }
    }

    fn set(&mut self, r: u8, v: Value) {
        debug_assert!(r < 10);
        self.b.def_var(self.regs[r as usize % 10], v);
    }

    fn c64(&mut self, v: i64) -> Value {
        self.b.ins().iconst(I64, v)
    }

    fn c32(&mut self, v: i32) -> Value {
        self.b.ins().iconst(I32, v as u32 as i64)
    }

    /// The run context, for a use other than reading the stack bound.
    fn run_ctx(&mut self) -> Value {
        self.env.uses_run_ctx.set(true);
        self.ctx
    }

    /// The context for an access to field `offset`.
    fn ctx_for(&mut self, offset: i32) -> Value {
        if offset == off::STACK_LO {
            self.ctx
        } else {
            self.run_ctx()
        }
    }

    fn load_ctx(&mut self, offset: i32) -> Value {
        let ctx = self.ctx_for(offset);
        self.b.ins().load(I64, MemFlagsData::trusted(), ctx, offset)
    }

    /// A context field that holds one value for the whole of this
    /// function's activation (input bounds, budget, this frame's stack
    /// bounds: callees restore them before returning), so Cranelift may
    /// reuse and hoist the load.
    fn load_ctx_const(&mut self, offset: i32) -> Value {
        let ctx = self.ctx_for(offset);
        self.b
            .ins()
            .load(I64, MemFlagsData::trusted().with_readonly(), ctx, offset)
    }

    /// The input's bounds: constant for the run unless a helper may move
    /// the input.
    fn load_input_bound(&mut self, offset: i32) -> Value {
        if self.env.input_may_move {
            self.load_ctx(offset)
        } else {
            self.load_ctx_const(offset)
        }
    }

    fn store_ctx(&mut self, offset: i32, v: Value) {
        let ctx = self.run_ctx();
        self.b.ins().store(MemFlagsData::trusted(), v, ctx, offset);
    }

    /// Address of a checked access of `size` bytes at `[base + off]`;
    /// branches to the fault path when it is outside every region.
    fn checked_addr(&mut self, pc: usize, base: u8, off: i16, size: u8, store: bool) -> Value {
        let b = self.reg(base);
        let addr = self.b.ins().iadd_imm_s(b, off as i64);
        if self.env.verified {
            return addr;
        }
        let size_i = size as i64;
        // Accesses proven to lie inside the current frame (through r10, or a
        // register known to hold r10 plus a constant) need no check.
        let frame_offset = if base == FRAME_REG {
            Some(0)
        } else {
            self.facts[(base as usize) % 10]
        };
        if let Some(k) = frame_offset {
            let at = k as i128 + off as i128;
            if at >= -(FRAME as i128) && at + size_i as i128 <= 0 {
                return addr;
            }
        }
        let cont = self.b.create_block();
        let slow = self.b.create_block();
        self.b.set_cold_block(slow);

        // In the input or in the live stack frames? One branch for both.
        let mem_lo = self.load_input_bound(off::MEM_LO);
        let rel = self.b.ins().isub(addr, mem_lo);
        let lim = self.load_input_bound(off::mem_lim(size));
        let in_mem = self.b.ins().icmp(IntCC::UnsignedLessThan, rel, lim);
        let stack_lo = self.load_ctx_const(off::STACK_LO);
        let stack_len = self.load_ctx_const(off::STACK_LEN);
        let rel = self.b.ins().isub(addr, stack_lo);
        let lim = self.b.ins().iadd_imm_s(stack_len, 1 - size_i);
        let in_stack = self.b.ins().icmp(IntCC::UnsignedLessThan, rel, lim);
        let ok = self.b.ins().bor(in_mem, in_stack);
        self.b.ins().brif(ok, cont, NOARGS, slow, NOARGS);
        self.b.seal_block(slow);

        self.b.switch_to_block(slow);
        let mut stub_sig = Signature::new(CallConv::PreserveAll);
        for _ in 0..4 {
            stub_sig.params.push(AbiParam::new(I64));
        }
        let sig = self.b.import_signature(stub_sig);
        let f = self.b.ins().iconst(self.ptr_ty, self.env.slow_stub as i64);
        let size_v = self.c64(size_i);
        let write = self.c64(store as i64);
        let ctx = self.run_ctx();
        self.b
            .ins()
            .call_indirect(sig, f, &[ctx, addr, size_v, write]);
        let ok = self.load_ctx(off::SLOW_OK);
        let pcv = self.c64(pc as i64);
        let reg = base;
        let info = self.c64(runtime::fault_info(size, store, reg, off) as i64);
        self.b.ins().brif(
            ok,
            cont,
            NOARGS,
            self.oob_block,
            &[
                BlockArg::Value(pcv),
                BlockArg::Value(addr),
                BlockArg::Value(info),
            ],
        );
        self.b.seal_block(cont);

        self.b.switch_to_block(cont);
        addr
    }

    fn jump_to(&mut self, from: usize, target: usize) {
        let block = self.blocks[&target];
        if target <= from {
            self.budget_check(from);
        }
        self.b.ins().jump(block, NOARGS);
    }

    /// Faults when the count is over budget; continues in a fresh block.
    fn budget_check(&mut self, pc: usize) {
        if self.env.verified {
            return;
        }
        let cnt = self.b.use_var(self.count);
        let budget = self.load_ctx_const(off::BUDGET);
        let over = self.b.ins().icmp(IntCC::UnsignedGreaterThan, cnt, budget);
        let cont = self.b.create_block();
        let pcv = self.c64(pc as i64);
        self.b.ins().brif(
            over,
            self.budget_block,
            &[BlockArg::Value(pcv)],
            cont,
            NOARGS,
        );
        self.b.seal_block(cont);
        self.b.switch_to_block(cont);
    }

    /// After a call that may fail or stop the program: return at once when
    /// the status says so, handing back `r0` and the count.
    fn return_status_check(&mut self, r0: Value) {
        let status = self.load_ctx(off::STATUS);
        let cont = self.b.create_block();
        let cnt = self.b.use_var(self.count);
        self.b.ins().brif(
            status,
            self.propagate_block,
            &[BlockArg::Value(r0), BlockArg::Value(cnt)],
            cont,
            NOARGS,
        );
        self.b.seal_block(cont);
        self.b.switch_to_block(cont);
    }

    fn alu(&mut self, i: Insn) {
        let is64 = i.class() == CLS_ALU64;
        let x = i.opc & SRC_X != 0;
        let op = i.opc & 0xf0;
        let dst = i.dst;
        if op == ALU_END {
            let v = self.reg(dst);
            let be = x || is64;
            let r = match (be, i.imm) {
                (_, 64) if !be => v,
                (_, 64) => self.b.ins().bswap(v),
                (_, w) => {
                    let ty = if w == 16 { I16 } else { I32 };
                    let n = self.b.ins().ireduce(ty, v);
                    let n = if be { self.b.ins().bswap(n) } else { n };
                    self.b.ins().uextend(I64, n)
                }
            };
            self.set(dst, r);
            return;
        }
        if op == ALU_MOV {
            let r = if x {
                let s = self.reg(i.src);
                match (is64, i.off) {
                    (true, 0) => s,
                    (false, 0) => {
                        let n = self.b.ins().ireduce(I32, s);
                        self.b.ins().uextend(I64, n)
                    }
                    (_, w) => {
                        let ty = match w {
                            8 => I8,
                            16 => I16,
                            _ => I32,
                        };
                        let n = self.b.ins().ireduce(ty, s);
                        if is64 {
                            self.b.ins().sextend(I64, n)
                        } else {
                            let n = self.b.ins().sextend(I32, n);
                            self.b.ins().uextend(I64, n)
                        }
                    }
                }
            } else if is64 {
                self.c64(i.imm as i64)
            } else {
                self.c64(i.imm as u32 as i64)
            };
            self.set(dst, r);
            return;
        }
        let ty = if is64 { I64 } else { I32 };
        let a = self.reg(dst);
        let a = if is64 {
            a
        } else {
            self.b.ins().ireduce(I32, a)
        };
        // The source operand: a register, or the immediate (sign-extended
        // for 64-bit operations).
        let imm = if is64 {
            Some(i.imm as i64)
        } else {
            Some(i.imm as u32 as i64)
        }
        .filter(|_| !x);
        let bv = match imm {
            Some(k) => self.b.ins().iconst(ty, k),
            None => {
                let s = self.reg(i.src);
                if is64 {
                    s
                } else {
                    self.b.ins().ireduce(I32, s)
                }
            }
        };
        let signed = i.off == 1;
        let r = match op {
            ALU_ADD => self.b.ins().iadd(a, bv),
            ALU_SUB => self.b.ins().isub(a, bv),
            ALU_MUL => self.b.ins().imul(a, bv),
            ALU_OR => self.b.ins().bor(a, bv),
            ALU_AND => self.b.ins().band(a, bv),
            ALU_XOR => self.b.ins().bxor(a, bv),
            // Cranelift shifts take the amount modulo the width, as eBPF.
            ALU_LSH => self.b.ins().ishl(a, bv),
            ALU_RSH => self.b.ins().ushr(a, bv),
            ALU_ARSH => self.b.ins().sshr(a, bv),
            ALU_NEG => self.b.ins().ineg(a),
            ALU_DIV | ALU_MOD => self.divmod(ty, op == ALU_MOD, signed, a, bv, imm),
            _ => unreachable!("checked at load time"),
        };
        let r = if is64 {
            r
        } else {
            self.b.ins().uextend(I64, r)
        };
        self.set(dst, r);
    }

    /// RFC 9669 division and modulo, which never trap: by zero, a quotient
    /// is 0 and a remainder is the dividend; `MIN / -1` wraps.
    fn divmod(
        &mut self,
        ty: Type,
        is_mod: bool,
        signed: bool,
        a: Value,
        b: Value,
        imm: Option<i64>,
    ) -> Value {
        let bits = ty.bits();
        if let Some(k) = imm {
            // Constant divisor: no run-time guard needed.
            let k = if bits == 32 {
                k as u32 as i32 as i64
            } else {
                k
            };
            return match (k, is_mod, signed) {
                (0, false, _) => self.b.ins().iconst(ty, 0),
                (0, true, _) => a,
                (-1, false, true) => self.b.ins().ineg(a),
                (-1, true, true) => self.b.ins().iconst(ty, 0),
                (_, false, false) => self.b.ins().udiv(a, b),
                (_, true, false) => self.b.ins().urem(a, b),
                (_, false, true) => self.b.ins().sdiv(a, b),
                (_, true, true) => self.b.ins().srem(a, b),
            };
        }
        let zero = self.b.ins().iconst(ty, 0);
        let one = self.b.ins().iconst(ty, 1);
        let is_zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        if !signed {
            let safe = self.b.ins().select(is_zero, one, b);
            if is_mod {
                let r = self.b.ins().urem(a, safe);
                self.b.ins().select(is_zero, a, r)
            } else {
                let q = self.b.ins().udiv(a, safe);
                self.b.ins().select(is_zero, zero, q)
            }
        } else {
            let minus_one = self
                .b
                .ins()
                .iconst(ty, if bits == 32 { 0xffff_ffff } else { -1 });
            let is_m1 = self.b.ins().icmp(IntCC::Equal, b, minus_one);
            let special = self.b.ins().bor(is_zero, is_m1);
            let safe = self.b.ins().select(special, one, b);
            if is_mod {
                let r = self.b.ins().srem(a, safe);
                let r = self.b.ins().select(is_m1, zero, r);
                self.b.ins().select(is_zero, a, r)
            } else {
                let q = self.b.ins().sdiv(a, safe);
                let neg = self.b.ins().ineg(a);
                let q = self.b.ins().select(is_m1, neg, q);
                self.b.ins().select(is_zero, zero, q)
            }
        }
    }

    fn cond_jump(&mut self, pc: usize, i: Insn, next: usize) {
        let is32 = i.class() == CLS_JMP32;
        let x = i.opc & SRC_X != 0;
        let op = i.opc & 0xf0;
        let a = self.reg(i.dst);
        let (a, bv) = if is32 {
            let a = self.b.ins().ireduce(I32, a);
            let bv = if x {
                let s = self.reg(i.src);
                self.b.ins().ireduce(I32, s)
            } else {
                self.c32(i.imm)
            };
            (a, bv)
        } else {
            let bv = if x {
                self.reg(i.src)
            } else {
                self.c64(i.imm as i64)
            };
            (a, bv)
        };
        let cond = match op {
            JMP_JSET => {
                let m = self.b.ins().band(a, bv);
                self.b.ins().icmp_imm_s(IntCC::NotEqual, m, 0)
            }
            _ => {
                let cc = match op {
                    JMP_JEQ => IntCC::Equal,
                    JMP_JNE => IntCC::NotEqual,
                    JMP_JGT => IntCC::UnsignedGreaterThan,
                    JMP_JGE => IntCC::UnsignedGreaterThanOrEqual,
                    JMP_JLT => IntCC::UnsignedLessThan,
                    JMP_JLE => IntCC::UnsignedLessThanOrEqual,
                    JMP_JSGT => IntCC::SignedGreaterThan,
                    JMP_JSGE => IntCC::SignedGreaterThanOrEqual,
                    JMP_JSLT => IntCC::SignedLessThan,
                    _ => IntCC::SignedLessThanOrEqual,
                };
                self.b.ins().icmp(cc, a, bv)
            }
        };
        let target = (pc as i64 + 1 + i.off as i64) as usize;
        let fall = self.blocks[&next];
        // A back edge checks the budget on its taken side only. Verified
        // code has no budget: a block that loops to its own start branches
        // there directly, so that the loop ends in one conditional jump.
        // Longer loops keep the separate taken side, where Cranelift can
        // sink the count updates the loop does not need.
        let self_loop = self.env.verified && target == self.block_start;
        if target <= pc && !self_loop {
            let taken = self.b.create_block();
            self.b.ins().brif(cond, taken, NOARGS, fall, NOARGS);
            self.b.seal_block(taken);
            self.b.switch_to_block(taken);
            self.jump_to(pc, target);
        } else if self.insns.get(target).is_some_and(|t| t.opc == OP_EXIT) {
            // An early return: a run takes one of them at most. Through a
            // cold block of its own, so that the values only the return
            // needs (r0, the count) are computed there instead of before
            // the branch on the path that goes on.
            let edge = self.b.create_block();
            self.b.set_cold_block(edge);
            self.b.ins().brif(cond, edge, NOARGS, fall, NOARGS);
            self.b.seal_block(edge);
            self.b.switch_to_block(edge);
            let t = self.blocks[&target];
            self.b.ins().jump(t, NOARGS);
        } else {
            let t = self.blocks[&target];
            self.b.ins().brif(cond, t, NOARGS, fall, NOARGS);
        }
    }

    fn load(&mut self, pc: usize, i: Insn) {
        let size = access_size(i.opc);
        if self.env.probe_loads.binary_search(&pc).is_ok() {
            // Kernel memory through a BTF pointer: never faults, in either
            // mode; Rust checks the address against the memory map.
            let b = self.reg(i.src);
            let addr = self.b.ins().iadd_imm_s(b, i.off as i64);
            let signed = (i.opc & 0xe0 == MODE_MEMSX) as i64;
            let aux = self.c64(size as i64 | signed << 7);
            let sig = self.b.import_signature(sig_of(self.call_conv, 3, true));
            let f = self
                .b
                .ins()
                .iconst(self.ptr_ty, runtime::probe_load as *const () as i64);
            let ctx = self.run_ctx();
            let call = self.b.ins().call_indirect(sig, f, &[ctx, addr, aux]);
            let v = self.b.inst_results(call)[0];
            self.set(i.dst, v);
            return;
        }
        let addr = self.checked_addr(pc, i.src, i.off, size, false);
        let fl = MemFlagsData::new().with_notrap();
        let signed = i.opc & 0xe0 == MODE_MEMSX;
        let v = match (size, signed) {
            (1, false) => self.b.ins().uload8(I64, fl, addr, 0),
            (2, false) => self.b.ins().uload16(I64, fl, addr, 0),
            (4, false) => self.b.ins().uload32(fl, addr, 0),
            (1, true) => self.b.ins().sload8(I64, fl, addr, 0),
            (2, true) => self.b.ins().sload16(I64, fl, addr, 0),
            (4, true) => self.b.ins().sload32(fl, addr, 0),
            _ => self.b.ins().load(I64, fl, addr, 0),
        };
        self.set(i.dst, v);
    }

    fn store(&mut self, pc: usize, i: Insn) {
        let size = access_size(i.opc);
        let addr = self.checked_addr(pc, i.dst, i.off, size, true);
        let v = if i.class() == CLS_ST {
            self.c64(i.imm as i64)
        } else {
            self.reg(i.src)
        };
        let fl = MemFlagsData::new().with_notrap();
        match size {
            1 => self.b.ins().istore8(fl, v, addr, 0),
            2 => self.b.ins().istore16(fl, v, addr, 0),
            4 => self.b.ins().istore32(fl, v, addr, 0),
            _ => self.b.ins().store(fl, v, addr, 0),
        };
    }

    fn atomic(&mut self, pc: usize, i: Insn) {
        let wide = i.opc == 0xdb;
        let size: u8 = if wide { 8 } else { 4 };
        let addr = self.checked_addr(pc, i.dst, i.off, size, true);
        let mis = self.b.ins().band_imm_s(addr, size as i64 - 1);
        let cont = self.b.create_block();
        let pcv = self.c64(pc as i64);
        let info = self.c64(runtime::fault_info(size, true, i.dst, i.off) as i64);
        self.b.ins().brif(
            mis,
            self.misaligned_block,
            &[
                BlockArg::Value(pcv),
                BlockArg::Value(addr),
                BlockArg::Value(info),
            ],
            cont,
            NOARGS,
        );
        self.b.switch_to_block(cont);
        let ty = if wide { I64 } else { I32 };
        let src = self.reg(i.src);
        let v = if wide {
            src
        } else {
            self.b.ins().ireduce(I32, src)
        };
        let fl = MemFlagsData::new().with_notrap();
        let old = if i.imm == ATOMIC_CMPXCHG {
            let r0 = self.reg(0);
            let expected = if wide {
                r0
            } else {
                self.b.ins().ireduce(I32, r0)
            };
            self.b.ins().atomic_cas(fl, addr, expected, v)
        } else {
            let op = match i.imm {
                ATOMIC_XCHG => AtomicRmwOp::Xchg,
                k => match k & !ATOMIC_FETCH {
                    ATOMIC_ADD => AtomicRmwOp::Add,
                    ATOMIC_OR => AtomicRmwOp::Or,
                    ATOMIC_AND => AtomicRmwOp::And,
                    _ => AtomicRmwOp::Xor,
                },
            };
            self.b.ins().atomic_rmw(ty, fl, op, addr, v)
        };
        let old = if wide {
            old
        } else {
            self.b.ins().uextend(I64, old)
        };
        if i.imm == ATOMIC_CMPXCHG {
            self.set(0, old);
        } else if i.imm & ATOMIC_FETCH != 0 {
            self.set(i.src, old);
        }
    }

    fn packet_load(&mut self, i: Insn) {
        let size = access_size(i.opc);
        let imm = self.c64(i.imm as i64);
        let off = if i.opc & 0xe0 == MODE_IND {
            let s = self.reg(i.src);
            let s = self.b.ins().ireduce(I32, s);
            let s = self.b.ins().sextend(I64, s);
            self.b.ins().iadd(s, imm)
        } else {
            imm
        };
        let lim = self.load_input_bound(off::mem_lim(size));
        let ok = self.b.ins().icmp(IntCC::UnsignedLessThan, off, lim);
        let cont = self.b.create_block();
        self.b.ins().brif(ok, cont, NOARGS, self.stop_block, NOARGS);
        self.b.seal_block(cont);
        self.b.switch_to_block(cont);
        let mem_lo = self.load_input_bound(off::MEM_LO);
        let addr = self.b.ins().iadd(mem_lo, off);
        let fl = MemFlagsData::new().with_notrap();
        let v = match size {
            1 => self.b.ins().uload8(I64, fl, addr, 0),
            2 => {
                let v = self.b.ins().load(I16, fl, addr, 0);
                let v = self.b.ins().bswap(v);
                self.b.ins().uextend(I64, v)
            }
            _ => {
                let v = self.b.ins().load(I32, fl, addr, 0);
                let v = self.b.ins().bswap(v);
                self.b.ins().uextend(I64, v)
            }
        };
        self.set(0, v);
    }

    fn helper_call(&mut self, pc: usize, id: Option<u32>, callx_reg: Option<u8>) {
        let args: Vec<Value> = (1..=5).map(|r| self.reg(r)).collect();
        let native = id.and_then(|id| match self.env.helpers.get(id as usize) {
            Some(Some(HelperImpl::Native(f))) => Some(*f),
            _ => None,
        });
        let r0 = if let Some(f) = native {
            let sig = self.b.import_signature(sig_of(self.call_conv, 5, true));
            let fv = self.b.ins().iconst(self.ptr_ty, f as *const () as i64);
            let call = self.b.ins().call_indirect(sig, fv, &args);
            let r0 = self.b.inst_results(call)[0];
            if self.env.unwind_helper == id {
                let cont = self.b.create_block();
                self.b.ins().brif(r0, cont, NOARGS, self.stop_block, NOARGS);
                self.b.switch_to_block(cont);
            }
            r0
        } else {
            let sig = self.b.import_signature(sig_of(self.call_conv, 8, true));
            let fv = self
                .b
                .ins()
                .iconst(self.ptr_ty, runtime::call_helper as *const () as i64);
            let idv = match (id, callx_reg) {
                (Some(id), _) => self.c64(id as i64),
                (None, Some(r)) => self.reg(r),
                _ => unreachable!(),
            };
            let pcv = self.c64(pc as i64);
            let mut all = vec![self.run_ctx(), pcv, idv];
            all.extend_from_slice(&args);
            let call = self.b.ins().call_indirect(sig, fv, &all);
            let r0 = self.b.inst_results(call)[0];
            self.return_status_check(r0);
            r0
        };
        self.set(0, r0);
    }

    fn local_call(&mut self, pc: usize, target: usize) {
        let depth = self.load_ctx(off::DEPTH);
        let too_deep = self.b.ins().icmp_imm_s(
            IntCC::UnsignedGreaterThanOrEqual,
            depth,
            MAX_CALL_FRAMES as i64 - 1,
        );
        let cont = self.b.create_block();
        let pcv = self.c64(pc as i64);
        self.b.ins().brif(
            too_deep,
            self.depth_block,
            &[BlockArg::Value(pcv)],
            cont,
            NOARGS,
        );
        self.b.seal_block(cont);
        self.b.switch_to_block(cont);
        let d1 = self.b.ins().iadd_imm_s(depth, 1);
        self.store_ctx(off::DEPTH, d1);
        let stack_lo = self.load_ctx_const(off::STACK_LO);
        let stack_len = self.load_ctx_const(off::STACK_LEN);
        let new_lo = self.b.ins().iadd_imm_s(stack_lo, -FRAME);
        let new_len = self.b.ins().iadd_imm_s(stack_len, FRAME);
        self.store_ctx(off::STACK_LO, new_lo);
        self.store_ctx(off::STACK_LEN, new_len);
        let zsig = self.b.import_signature(sig_of(self.call_conv, 1, false));
        let zf = self
            .b
            .ins()
            .iconst(self.ptr_ty, runtime::zero_frame as *const () as i64);
        self.b.ins().call_indirect(zsig, zf, &[new_lo]);
        self.budget_check(pc);
        let k = (self.env.function_index)(target).expect("call target is a function");
        let table = self.load_ctx(off::FUNCTIONS);
        let fptr = self
            .b
            .ins()
            .load(I64, MemFlagsData::trusted(), table, (k * 8) as i32);
        let sig = self.b.import_signature(bpf_signature(self.call_conv));
        let mut args = vec![self.run_ctx()];
        for r in 1..=5 {
            args.push(self.reg(r));
        }
        args.push(self.b.use_var(self.count));
        let call = self.b.ins().call_indirect(sig, fptr, &args);
        let (r0, cnt) = {
            let res = self.b.inst_results(call);
            (res[0], res[1])
        };
        self.set(0, r0);
        self.b.def_var(self.count, cnt);
        // A fault below returns at once, leaving the map as it was then
        // (error messages describe the faulting frame).
        self.return_status_check(r0);
        self.store_ctx(off::DEPTH, depth);
        self.store_ctx(off::STACK_LO, stack_lo);
        self.store_ctx(off::STACK_LEN, stack_len);
    }

    /// Translates the block starting at `start` (ending before `end`).
    fn block(&mut self, start: usize, end: usize) {
        self.block_start = start;
        self.facts = self.block_facts.get(&start).copied().unwrap_or(UNKNOWN);
        let n = count_insns(self.insns, start, end);
        let cnt = self.b.use_var(self.count);
        let cnt = self.b.ins().iadd_imm_s(cnt, n);
        self.b.def_var(self.count, cnt);
        let mut pc = start;
        while pc < end {
            let i = self.insns[pc];
            let next = pc + if i.is_lddw() { 2 } else { 1 };
            match i.class() {
                CLS_ALU | CLS_ALU64 => self.alu(i),
                CLS_LDX => self.load(pc, i),
                CLS_ST => self.store(pc, i),
                CLS_STX if i.opc & 0xe0 == MODE_ATOMIC => self.atomic(pc, i),
                CLS_STX => self.store(pc, i),
                CLS_LD if i.is_lddw() => {
                    let v = if i.src == PSEUDO_FUNC {
                        (pc as i64 + 1 + i.imm as i64) as u64
                    } else {
                        (i.imm as u32 as u64) | ((self.insns[pc + 1].imm as u32 as u64) << 32)
                    };
                    let v = self.c64(v as i64);
                    self.set(i.dst, v);
                }
                CLS_LD => self.packet_load(i),
                _ => {
                    let op = i.opc & 0xf0;
                    match op {
                        JMP_EXIT => {
                            let r0 = self.reg(0);
                            let cnt = self.b.use_var(self.count);
                            self.b.ins().return_(&[r0, cnt]);
                            return;
                        }
                        JMP_JA => {
                            let rel = if i.opc == OP_JA32 {
                                i.imm as i64
                            } else {
                                i.off as i64
                            };
                            self.jump_to(pc, (pc as i64 + 1 + rel) as usize);
                            return;
                        }
                        JMP_CALL => {
                            if i.opc == OP_CALLX {
                                self.helper_call(pc, None, Some(i.dst));
                            } else if i.src == CALL_LOCAL {
                                self.local_call(pc, (pc as i64 + 1 + i.imm as i64) as usize);
                            } else {
                                self.helper_call(pc, Some(i.imm as u32), None);
                            }
                        }
                        _ => {
                            self.cond_jump(pc, i, next);
                            return;
                        }
                    }
                }
            }
            fp_transfer(&mut self.facts, &i);
            pc = next;
        }
        // Fall through into the next block.
        let next = self.blocks[&end];
        self.b.ins().jump(next, NOARGS);
    }
}

/// Builds the Cranelift function for eBPF function `f`.
pub fn translate_function(
    env: &TranslateEnv<'_>,
    f: BpfFunction,
    index: usize,
    isa: &dyn TargetIsa,
    fctx: &mut FunctionBuilderContext,
) -> Function {
    let call_conv = isa.default_call_conv();
    let mut func = Function::with_name_signature(
        UserFuncName::user(0, index as u32),
        bpf_signature(call_conv),
    );
    let insns = env.program.insns();
    let mut b = FunctionBuilder::new(&mut func, fctx);
    let regs: [Variable; 10] = std::array::from_fn(|_| b.declare_var(I64));
    let count = b.declare_var(I64);

    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let ctx = params[0];
    let zero = b.ins().iconst(I64, 0);
    for (r, var) in regs.iter().enumerate() {
        let v = if (1..=5).contains(&r) {
            params[r]
        } else {
            zero
        };
        b.def_var(*var, v);
    }
    b.def_var(count, params[6]);
    let fl = MemFlagsData::trusted();
    // Only ctx and fp stay in registers for the whole function; the bounds
    // and the budget are reloaded from the context where they are needed,
    // which keeps register pressure (and register allocation time) low.
    // The frame's bound, for this whole activation (callees restore it):
    // a pure load, left out when the function never uses r10.
    let stack_lo = b
        .ins()
        .load(I64, fl.with_readonly().with_can_move(), ctx, off::STACK_LO);
    let fp = b.ins().iadd_imm_s(stack_lo, FRAME);

    let leaders = leaders(insns, f);
    let mut blocks = std::collections::BTreeMap::new();
    for &l in &leaders {
        blocks.insert(l, b.create_block());
    }
    let mk_cold = |b: &mut FunctionBuilder<'_>, params: usize| {
        let blk = b.create_block();
        b.set_cold_block(blk);
        for _ in 0..params {
            b.append_block_param(blk, I64);
        }
        blk
    };
    let oob_block = mk_cold(&mut b, 3);
    let misaligned_block = mk_cold(&mut b, 3);
    let budget_block = mk_cold(&mut b, 1);
    let depth_block = mk_cold(&mut b, 1);
    let stop_block = mk_cold(&mut b, 0);
    let propagate_block = mk_cold(&mut b, 2);
    let first = blocks[&f.start];
    b.ins().jump(first, NOARGS);

    let mut t = Translator {
        b,
        env,
        insns,
        regs,
        count,
        ctx,
        fp,
        blocks,
        oob_block,
        misaligned_block,
        budget_block,
        depth_block,
        stop_block,
        propagate_block,
        call_conv,
        ptr_ty: isa.pointer_type(),
        facts: UNKNOWN,
        block_facts: fp_provenance(insns, f, &leaders),
        block_start: f.start,
    };
    let starts: Vec<usize> = leaders.iter().copied().collect();
    // Seal each block as soon as its last predecessor has been translated:
    // the SSA builder then resolves variables directly instead of adding
    // parameters to every block and pruning them at the end, which made
    // compile time grow faster than program size.
    let last_pred = last_predecessors(insns, f, &starts);
    let mut pending: std::collections::BTreeMap<usize, Vec<Block>> = Default::default();
    for &l in &starts {
        match last_pred.get(&l) {
            Some(&pc) => pending.entry(pc).or_default().push(t.blocks[&l]),
            // Reached only from the prologue, or not at all.
            None => t.b.seal_block(t.blocks[&l]),
        }
    }
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(f.end);
        // Blocks whose predecessors all come before `start`.
        let ready: Vec<usize> = pending.range(..start).map(|(&pc, _)| pc).collect();
        for pc in ready {
            for blk in pending.remove(&pc).unwrap_or_default() {
                t.b.seal_block(blk);
            }
        }
        let blk = t.blocks[&start];
        t.b.switch_to_block(blk);
        t.block(start, end);
    }

    // Shared exits. Every branch to them has been emitted: one nothing
    // branches to only returns, so that it does not count as a use of the
    // run context.
    let enter_exit = |t: &mut Translator<'_, '_>, blk: Block| {
        t.b.seal_block(blk);
        t.b.switch_to_block(blk);
        if t.b.is_unreachable() {
            let zero = t.c64(0);
            t.b.ins().return_(&[zero, zero]);
            return false;
        }
        true
    };
    let fault = |t: &mut Translator<'_, '_>, blk: Block, status: u64, with_addr: bool| {
        if !enter_exit(t, blk) {
            return;
        }
        let p = t.b.block_params(blk).to_vec();
        let st = t.c64(status as i64);
        t.store_ctx(off::STATUS, st);
        t.store_ctx(off::FAULT_PC, p[0]);
        if with_addr {
            t.store_ctx(off::FAULT_ADDR, p[1]);
            t.store_ctx(off::FAULT_INFO, p[2]);
        }
        // The count is not reported for faults.
        let zero = t.c64(0);
        t.b.ins().return_(&[zero, zero]);
    };
    fault(&mut t, oob_block, runtime::STATUS_OOB, true);
    fault(&mut t, misaligned_block, runtime::STATUS_MISALIGNED, true);
    fault(&mut t, budget_block, runtime::STATUS_BUDGET, false);
    fault(&mut t, depth_block, runtime::STATUS_CALL_DEPTH, false);
    if enter_exit(&mut t, stop_block) {
        let st = t.c64(runtime::STATUS_STOP as i64);
        t.store_ctx(off::STATUS, st);
        let zero = t.c64(0);
        let cnt = t.b.use_var(t.count);
        t.b.ins().return_(&[zero, cnt]);
    }
    t.b.switch_to_block(propagate_block);
    let p = t.b.block_params(propagate_block).to_vec();
    t.b.ins().return_(&[p[0], p[1]]);

    t.b.seal_all_blocks();
    t.b.finalize(isa.frontend_config());
    merge_twin_params(&mut func);
    func
}

/// Bytes the CPU fetches and caches decoded instructions by: a loop that
/// straddles two such lines runs at about half the speed of one inside a
/// line (measured on the checksum benchmark, both on Zen 4), and Cranelift
/// does not align loops.
const FETCH_LINE: u32 = 64;

/// The `[start, end)` code offsets of the loops of a compiled function
/// that are short enough to fit in one fetch line.
pub fn short_loops(code: &CompiledCode) -> Vec<(u32, u32)> {
    let len = code.code_buffer().len() as u32;
    let mut starts = code.bb_starts.clone();
    starts.sort_unstable();
    code.bb_edges
        .iter()
        .filter(|&&(from, to)| to <= from)
        .filter_map(|&(from, to)| {
            let k = starts.partition_point(|&s| s <= from);
            let end = starts.get(k).copied().unwrap_or(len);
            (end - to <= FETCH_LINE).then_some((to, end))
        })
        .collect()
}

/// Padding, a multiple of 16 below a fetch line, to put before a function
/// placed at offset `at` (16-byte aligned) of a line-aligned mapping so
/// that the fewest of its `loops` straddle a fetch line.
pub fn loop_padding(loops: &[(u32, u32)], at: usize) -> usize {
    let straddling = |pad: u32| {
        let base = (at as u32).wrapping_add(pad) % FETCH_LINE;
        loops
            .iter()
            .filter(|&&(start, end)| (base + start) / FETCH_LINE != (base + end - 1) / FETCH_LINE)
            .count()
    };
    (0..FETCH_LINE)
        .step_by(16)
        .min_by_key(|&pad| (straddling(pad), pad))
        .unwrap_or(0) as usize
}

/// What a block argument is, for comparing arguments: the value, or the
/// constant an `iconst` gives (eBPF code sets registers to the same
/// constant with separate instructions).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ArgKey {
    Value(Value),
    Const(Type, i64),
    Other,
}

fn arg_key(func: &Function, arg: BlockArg) -> ArgKey {
    let BlockArg::Value(v) = arg else {
        return ArgKey::Other;
    };
    let v = func.dfg.resolve_aliases(v);
    if let ValueDef::Result(inst, 0) = func.dfg.value_def(v) {
        if let InstructionData::UnaryImm {
            opcode: Opcode::Iconst,
            imm,
        } = func.dfg.insts[inst]
        {
            return ArgKey::Const(func.dfg.value_type(v), imm.bits());
        }
    }
    ArgKey::Value(v)
}

/// Passes over the function [`merge_twin_params`] makes at most.
const MERGE_ROUNDS: usize = 4;

/// Merges pairs of block parameters that receive the same value on every
/// incoming edge, such as two eBPF registers that hold copies of one
/// induction variable around a loop (`r3 = r4` at the end of each
/// iteration). The SSA builder only removes a parameter whose incoming
/// values are all one value; left as a pair, both stay live and the back
/// edge needs a copy, so the loop cannot end in one conditional branch.
fn merge_twin_params(func: &mut Function) {
    // Incoming edges of each block: (branch, destination index).
    let mut incoming: std::collections::HashMap<Block, Vec<(Inst, usize)>> = Default::default();
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            let dests = func.dfg.insts[inst]
                .branch_destination(&func.dfg.jump_tables, &func.dfg.exception_tables);
            for (k, d) in dests.iter().enumerate() {
                incoming
                    .entry(d.block(&func.dfg.value_lists))
                    .or_default()
                    .push((inst, k));
            }
        }
    }
    let blocks: Vec<Block> = func.layout.blocks().collect();
    // A merge can make the arguments of other blocks equal: repeat while
    // merges happen, a few rounds at most, so that compile time stays
    // linear in the program (a merge missed only costs a copy).
    for _ in 0..MERGE_ROUNDS {
        let mut merged = false;
        for &block in &blocks {
            let Some(edges) = incoming.get(&block) else {
                continue; // the entry block, or unreachable
            };
            while let Some((keep, drop)) = twin_params(func, block, edges) {
                let params = func.dfg.block_params(block);
                let (kept, dropped) = (params[keep], params[drop]);
                for &(inst, k) in edges {
                    let dfg = &mut func.dfg;
                    let dests = dfg.insts[inst]
                        .branch_destination_mut(&mut dfg.jump_tables, &mut dfg.exception_tables);
                    dests[k].remove(drop, &mut dfg.value_lists);
                }
                func.dfg.remove_block_param(dropped);
                func.dfg.change_to_alias(dropped, kept);
                merged = true;
            }
        }
        if !merged {
            break;
        }
    }
}

/// Two parameters `(i, j)` of `block` that are equal on every incoming
/// edge, assuming them equal where an edge passes them back in (a loop).
fn twin_params(func: &Function, block: Block, edges: &[(Inst, usize)]) -> Option<(usize, usize)> {
    let params = func.dfg.block_params(block);
    if params.len() < 2 {
        return None;
    }
    let pool = &func.dfg.value_lists;
    let args: Vec<Vec<ArgKey>> = edges
        .iter()
        .map(|&(inst, k)| {
            let dests = func.dfg.insts[inst]
                .branch_destination(&func.dfg.jump_tables, &func.dfg.exception_tables);
            dests[k].args(pool).map(|a| arg_key(func, a)).collect()
        })
        .collect();
    for j in 1..params.len() {
        for i in 0..j {
            let (pi, pj) = (ArgKey::Value(params[i]), ArgKey::Value(params[j]));
            let same = |a: ArgKey| if a == pj { pi } else { a };
            if args
                .iter()
                .all(|e| e[i] != ArgKey::Other && same(e[i]) == same(e[j]))
            {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_padding_moves_a_loop_off_a_line_boundary() {
        // The checksum loop as compiled: 35 bytes from offset 0x23, across
        // the 0x40 line boundary unless the function moves by 32.
        let loops = [(0x23, 0x46)];
        assert_eq!(loop_padding(&loops, 0), 32);
        assert_eq!(loop_padding(&loops, 16), 16);
        // Placed at 32 or 48 already, it fits as it is.
        assert_eq!(loop_padding(&loops, 32), 0);
        assert_eq!(loop_padding(&loops, 48), 0);
    }

    #[test]
    fn loop_padding_prefers_the_placement_most_loops_fit() {
        assert_eq!(loop_padding(&[], 16), 0);
        // Two loops: [0x08, 0x30) fits at 0 and 16, [0x38, 0x48) at 16.
        assert_eq!(loop_padding(&[(0x08, 0x30), (0x38, 0x48)], 0), 16);
    }
}
