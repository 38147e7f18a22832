//! The baseline tier: eBPF straight to x86-64, one template per instruction.
//!
//! Cranelift's code is close to native C but takes milliseconds to produce;
//! this tier emits in one pass over the program, in tens of microseconds,
//! so a program runs as machine code at once while Cranelift compiles it in
//! the background (see [`crate::tiers`]). It shares everything else with the
//! Cranelift tier: the function signature `(ctx, r1..r5, count) -> (r0,
//! count)`, the run context, the status codes, the slow memory path and the
//! helper entry points, so runs of either tier are set up and finished by
//! the same code and behave identically.
//!
//! eBPF registers live in fixed machine registers (r0 rax, r1 rdi, r2 rsi,
//! r3 rdx, r4 r9, r5 r8, r6 rbx, r7 r13, r8 r14, r9 r15, r10 rbp); r12
//! holds the run context and r11 the instruction count; rcx and r10 are
//! scratch. Each eBPF function becomes one native function, called through
//! the run context's function table as the Cranelift tier's are.

// dynasm! converts every dynamic register number with `.into()`.
#![allow(clippy::useless_conversion)]

use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};

use ebpfvm_core::helpers::HelperImpl;
use ebpfvm_core::isa::*;
use ebpfvm_core::program::Program;

use crate::blocks::{count_insns, leaders};
use crate::runtime::{self, fault_info};
use crate::translate::off;

/// Machine register of each eBPF register r0..r10.
const REG: [u8; 11] = [0, 7, 6, 2, 9, 8, 3, 13, 14, 15, 5];
const RAX: u8 = 0;
const RDX: u8 = 2;
const RSI: u8 = 6;
const RDI: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;
const R11: u8 = 11;
/// eBPF r1-r5 and the count: caller-saved in the SysV ABI, yet they
/// survive calls in this runtime (both tiers restore r1-r5).
const ARGS_AND_COUNT: [u8; 6] = [RDI, RSI, RDX, R8, R9, R11];
/// All of a run's caller-saved state: r0 too, and the address in r10.
const ALL_CALLER_SAVED: [u8; 8] = [RAX, RDI, RSI, RDX, R8, R9, R10, R11];
const FRAME: i32 = STACK_FRAME_SIZE as i32;

/// Why the baseline produced no code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineError {
    /// Not an x86-64 host: the program is left to the optimizing tier.
    Host,
    /// The assembler refused what was emitted (a bug of this tier).
    Assembler(String),
}

/// What the baseline needs to know besides the program.
pub struct BaselineEnv<'a> {
    pub program: &'a Program,
    pub helpers: &'a [Option<HelperImpl>],
    pub unwind_helper: Option<u32>,
    pub verified: bool,
    pub probe_loads: &'a [usize],
}

/// A cold path, emitted after the body so the hot code stays straight.
enum Cold {
    /// Checked access that missed the input and the frame: ask Rust.
    SlowAccess {
        entry: DynamicLabel,
        resume: DynamicLabel,
        pc: usize,
        size: u8,
        store: bool,
        info: u64,
    },
    Misaligned {
        entry: DynamicLabel,
        pc: usize,
        info: u64,
    },
    /// A fault with nothing to report but its kind and place (budget,
    /// call depth).
    Fault {
        entry: DynamicLabel,
        pc: usize,
        status: u64,
    },
}

struct Emitter<'a> {
    asm: VecAssembler<X64Relocation>,
    env: &'a BaselineEnv<'a>,
    insns: &'a [Insn],
    /// Label of every instruction slot that starts a block.
    labels: Vec<Option<DynamicLabel>>,
    cold: Vec<Cold>,
    /// Shared exits: return with the status already stored, r0 and count
    /// in place (`exit`), or after a fault (r0 = count = 0).
    epilogue: DynamicLabel,
    fault_exit: DynamicLabel,
    stop: DynamicLabel,
    propagate: DynamicLabel,
}

/// Compiles every function of `env.program` to x86-64 machine code, in
/// the order of `program.functions()`.
pub fn compile(env: &BaselineEnv<'_>) -> Result<Vec<Vec<u8>>, BaselineError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(BaselineError::Host);
    }
    let insns = env.program.insns();
    let mut out = Vec::with_capacity(env.program.functions().len());
    for &f in env.program.functions() {
        let mut asm = VecAssembler::new(0);
        let starts: Vec<usize> = leaders(insns, f).into_iter().collect();
        let mut labels = vec![None; insns.len()];
        for &l in &starts {
            labels[l] = Some(asm.new_dynamic_label());
        }
        let mut e = Emitter {
            epilogue: asm.new_dynamic_label(),
            fault_exit: asm.new_dynamic_label(),
            stop: asm.new_dynamic_label(),
            propagate: asm.new_dynamic_label(),
            asm,
            env,
            insns,
            labels,
            cold: Vec::new(),
        };
        e.prologue();
        e.body(&starts, f.end);
        e.exits();
        out.push(
            e.asm
                .finalize()
                .map_err(|e| BaselineError::Assembler(format!("{e:?}")))?,
        );
    }
    Ok(out)
}

impl Emitter<'_> {
    fn prologue(&mut self) {
        dynasm!(self.asm
            ; .arch x64
            ; push rbp
            ; push rbx
            ; push r12
            ; push r13
            ; push r14
            ; push r15
            // The 7th argument (the count) sits above the return address
            // and the six registers just pushed.
            ; mov r11, [rsp + 56]
            ; sub rsp, 8
            ; mov r12, rdi
            ; mov rdi, rsi
            ; mov rsi, rdx
            ; mov rdx, rcx
            ; xchg r8, r9
            ; xor eax, eax
            ; xor ebx, ebx
            ; xor r13d, r13d
            ; xor r14d, r14d
            ; xor r15d, r15d
            ; mov rbp, [r12 + off::STACK_LO]
            ; add rbp, FRAME
        );
    }

    fn exits(&mut self) {
        let (epilogue, fault_exit, stop, propagate) =
            (self.epilogue, self.fault_exit, self.stop, self.propagate);
        for c in std::mem::take(&mut self.cold) {
            self.cold_path(c);
        }
        dynasm!(self.asm
            ; .arch x64
            ; =>stop
            ; mov QWORD [r12 + off::STATUS], runtime::STATUS_STOP as i32
            ; xor eax, eax
            ; jmp =>propagate
            ; =>fault_exit
            ; xor eax, eax
            ; xor r11d, r11d
            ; =>propagate
            ; mov rdx, r11
            ; =>epilogue
            ; add rsp, 8
            ; pop r15
            ; pop r14
            ; pop r13
            ; pop r12
            ; pop rbx
            ; pop rbp
            ; ret
        );
    }

    /// Stores the fault's pc and kind, then leaves through the fault exit.
    fn fault(&mut self, status: u64, pc: usize) {
        let fault_exit = self.fault_exit;
        dynasm!(self.asm
            ; .arch x64
            ; mov QWORD [r12 + off::STATUS], status as i32
            ; mov QWORD [r12 + off::FAULT_PC], pc as i32
            ; jmp =>fault_exit
        );
    }

    fn cold_path(&mut self, c: Cold) {
        match c {
            Cold::SlowAccess {
                entry,
                resume,
                pc,
                size,
                store,
                info,
            } => {
                dynasm!(self.asm ; .arch x64 ; =>entry);
                self.save(&ALL_CALLER_SAVED);
                dynasm!(self.asm
                    ; .arch x64
                    ; mov rdi, r12
                    ; mov rsi, r10
                    ; mov edx, size as i32
                    ; mov ecx, store as i32
                    ; mov rax, QWORD runtime::translate_slow as *const () as i64
                    ; call rax
                );
                self.restore(&ALL_CALLER_SAVED);
                dynasm!(self.asm
                    ; .arch x64
                    ; cmp QWORD [r12 + off::SLOW_OK], 0
                    ; jne =>resume
                    ; mov [r12 + off::FAULT_ADDR], r10
                    ; mov rcx, QWORD info as i64
                    ; mov [r12 + off::FAULT_INFO], rcx
                );
                self.fault(runtime::STATUS_OOB, pc);
            }
            Cold::Misaligned { entry, pc, info } => {
                dynasm!(self.asm
                    ; .arch x64
                    ; =>entry
                    ; mov [r12 + off::FAULT_ADDR], r10
                    ; mov rcx, QWORD info as i64
                    ; mov [r12 + off::FAULT_INFO], rcx
                );
                self.fault(runtime::STATUS_MISALIGNED, pc);
            }
            Cold::Fault { entry, pc, status } => {
                dynasm!(self.asm ; .arch x64 ; =>entry);
                self.fault(status, pc);
            }
        }
    }

    /// The blocks starting at `starts`, the last one ending at `last`.
    fn body(&mut self, starts: &[usize], last: usize) {
        let insns = self.insns;
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(last);
            let label = self.label_of(start);
            let n = count_insns(insns, start, end) as i32;
            dynasm!(self.asm
                ; .arch x64
                ; =>label
                ; add r11, n
            );
            let mut pc = start;
            while pc < end {
                let i = insns[pc];
                let next = pc + if i.is_lddw() { 2 } else { 1 };
                self.insn(pc, i, next);
                pc = next;
            }
        }
    }

    fn label_of(&self, pc: usize) -> DynamicLabel {
        self.labels[pc].expect("jump targets are block leaders")
    }

    fn insn(&mut self, pc: usize, i: Insn, next: usize) {
        match i.class() {
            CLS_ALU | CLS_ALU64 => self.alu(i),
            CLS_LDX => self.load(pc, i),
            CLS_ST | CLS_STX if i.opc & 0xe0 != MODE_ATOMIC => self.store(pc, i),
            CLS_STX => self.atomic(pc, i),
            CLS_LD if i.is_lddw() => {
                let v = if i.src == PSEUDO_FUNC {
                    (pc as i64 + 1 + i.imm as i64) as u64
                } else {
                    (i.imm as u32 as u64) | ((self.insns[pc + 1].imm as u32 as u64) << 32)
                };
                let d = REG[i.dst as usize % 11];
                dynasm!(self.asm
                    ; .arch x64
                    ; mov Rq(d), QWORD v as i64
                );
            }
            CLS_LD => self.packet_load(i),
            _ => match i.opc & 0xf0 {
                JMP_EXIT => {
                    let epilogue = self.epilogue;
                    dynasm!(self.asm
                        ; .arch x64
                        ; mov rdx, r11
                        ; jmp =>epilogue
                    );
                }
                JMP_JA => {
                    let rel = if i.opc == OP_JA32 {
                        i.imm as i64
                    } else {
                        i.off as i64
                    };
                    self.jump(pc, (pc as i64 + 1 + rel) as usize);
                }
                JMP_CALL => {
                    if i.opc == OP_CALLX {
                        self.dyn_call(pc, None, Some(i.dst));
                    } else if i.src == CALL_LOCAL {
                        self.local_call(pc, (pc as i64 + 1 + i.imm as i64) as usize);
                    } else {
                        self.helper_call(pc, i.imm as u32);
                    }
                    // Fall into the next block.
                }
                _ => self.cond_jump(pc, i, next),
            },
        }
        // A block that ends without a jump falls through: the next block's
        // code follows directly.
    }

    /// Jumps to `target`, checking the budget first on a back edge.
    fn jump(&mut self, pc: usize, target: usize) {
        if target <= pc {
            self.budget_check(pc);
        }
        let l = self.label_of(target);
        dynasm!(self.asm
            ; .arch x64
            ; jmp =>l
        );
    }

    fn budget_check(&mut self, pc: usize) {
        if self.env.verified {
            return;
        }
        let entry = self.asm.new_dynamic_label();
        dynasm!(self.asm
            ; .arch x64
            ; cmp r11, [r12 + off::BUDGET]
            ; ja =>entry
        );
        self.cold.push(Cold::Fault {
            entry,
            pc,
            status: runtime::STATUS_BUDGET,
        });
    }

    fn alu(&mut self, i: Insn) {
        let is64 = i.class() == CLS_ALU64;
        let x = i.opc & SRC_X != 0;
        let op = i.opc & 0xf0;
        let d = REG[i.dst as usize % 11];
        let s = REG[i.src as usize % 11];
        let imm = i.imm;
        macro_rules! both {
            ($($ins:tt)*) => {
                match (is64, x) {
                    (true, true) => dynasm!(self.asm ; .arch x64 ; $($ins)* Rq(d), Rq(s)),
                    (true, false) => dynasm!(self.asm ; .arch x64 ; $($ins)* Rq(d), imm),
                    (false, true) => dynasm!(self.asm ; .arch x64 ; $($ins)* Rd(d), Rd(s)),
                    (false, false) => dynasm!(self.asm ; .arch x64 ; $($ins)* Rd(d), imm),
                }
            };
        }
        match op {
            ALU_ADD => both!(add),
            ALU_SUB => both!(sub),
            ALU_OR => both!(or),
            ALU_AND => both!(and),
            ALU_XOR => both!(xor),
            ALU_MUL => match (is64, x) {
                (true, true) => dynasm!(self.asm ; .arch x64 ; imul Rq(d), Rq(s)),
                (true, false) => dynasm!(self.asm ; .arch x64 ; imul Rq(d), Rq(d), imm),
                (false, true) => dynasm!(self.asm ; .arch x64 ; imul Rd(d), Rd(s)),
                (false, false) => dynasm!(self.asm ; .arch x64 ; imul Rd(d), Rd(d), imm),
            },
            ALU_LSH | ALU_RSH | ALU_ARSH => self.shift(op, is64, x, d, s, imm),
            ALU_NEG => {
                if is64 {
                    dynasm!(self.asm ; .arch x64 ; neg Rq(d));
                } else {
                    dynasm!(self.asm ; .arch x64 ; neg Rd(d));
                }
            }
            ALU_MOV => self.mov(is64, x, d, s, i.off, imm),
            ALU_END => self.byte_swap(is64 || x, d, imm),
            ALU_DIV | ALU_MOD => self.divmod(is64, op == ALU_MOD, i.off == 1, x, d, s, imm),
            _ => unreachable!("checked at load time"),
        }
    }

    fn shift(&mut self, op: u8, is64: bool, x: bool, d: u8, s: u8, imm: i32) {
        if x {
            dynasm!(self.asm ; .arch x64 ; mov rcx, Rq(s));
            match (op, is64) {
                (ALU_LSH, true) => dynasm!(self.asm ; .arch x64 ; shl Rq(d), cl),
                (ALU_RSH, true) => dynasm!(self.asm ; .arch x64 ; shr Rq(d), cl),
                (_, true) => dynasm!(self.asm ; .arch x64 ; sar Rq(d), cl),
                (ALU_LSH, false) => dynasm!(self.asm ; .arch x64 ; shl Rd(d), cl),
                (ALU_RSH, false) => dynasm!(self.asm ; .arch x64 ; shr Rd(d), cl),
                (_, false) => dynasm!(self.asm ; .arch x64 ; sar Rd(d), cl),
            }
            if !is64 {
                // A zero count leaves the register as it was, upper half too.
                dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(d));
            }
            return;
        }
        // The amount is taken modulo the width, as the interpreter does;
        // a zero shift of a 32-bit register still clears its upper half.
        let k = (imm & if is64 { 63 } else { 31 }) as i8;
        match (op, is64) {
            (ALU_LSH, true) => dynasm!(self.asm ; .arch x64 ; shl Rq(d), k),
            (ALU_RSH, true) => dynasm!(self.asm ; .arch x64 ; shr Rq(d), k),
            (_, true) => dynasm!(self.asm ; .arch x64 ; sar Rq(d), k),
            (ALU_LSH, false) => dynasm!(self.asm ; .arch x64 ; shl Rd(d), k),
            (ALU_RSH, false) => dynasm!(self.asm ; .arch x64 ; shr Rd(d), k),
            (_, false) => dynasm!(self.asm ; .arch x64 ; sar Rd(d), k),
        }
        if k == 0 && !is64 {
            dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(d));
        }
    }

    fn mov(&mut self, is64: bool, x: bool, d: u8, s: u8, width: i16, imm: i32) {
        if !x {
            if is64 {
                dynasm!(self.asm ; .arch x64 ; mov Rq(d), DWORD imm);
            } else {
                dynasm!(self.asm ; .arch x64 ; mov Rd(d), imm);
            }
            return;
        }
        match (is64, width) {
            (true, 0) => dynasm!(self.asm ; .arch x64 ; mov Rq(d), Rq(s)),
            (false, 0) | (false, 32) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(s)),
            (true, 8) => dynasm!(self.asm ; .arch x64 ; movsx Rq(d), Rb(s)),
            (true, 16) => dynasm!(self.asm ; .arch x64 ; movsx Rq(d), Rw(s)),
            (true, _) => dynasm!(self.asm ; .arch x64 ; movsxd Rq(d), Rd(s)),
            (false, 8) => dynasm!(self.asm ; .arch x64 ; movsx Rd(d), Rb(s)),
            (false, _) => dynasm!(self.asm ; .arch x64 ; movsx Rd(d), Rw(s)),
        }
    }

    /// `be` (and `bswap`) swaps; `le` only truncates on this little-endian
    /// host.
    fn byte_swap(&mut self, swap: bool, d: u8, width: i32) {
        match (swap, width) {
            (false, 16) => dynasm!(self.asm ; .arch x64 ; movzx Rd(d), Rw(d)),
            (false, 32) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(d)),
            (false, _) => {}
            (true, 16) => dynasm!(self.asm
                ; .arch x64
                ; rol Rw(d), 8
                ; movzx Rd(d), Rw(d)
            ),
            (true, 32) => dynasm!(self.asm ; .arch x64 ; bswap Rd(d)),
            (true, _) => dynasm!(self.asm ; .arch x64 ; bswap Rq(d)),
        }
    }

    /// RFC 9669 division and modulo: by zero a quotient is 0 and a remainder
    /// the dividend; signed `MIN / -1` wraps (and its remainder is 0).
    #[allow(clippy::too_many_arguments)]
    fn divmod(&mut self, is64: bool, is_mod: bool, signed: bool, x: bool, d: u8, s: u8, imm: i32) {
        let by_zero = self.asm.new_dynamic_label();
        let by_minus_one = self.asm.new_dynamic_label();
        let done = self.asm.new_dynamic_label();
        // The divisor goes to r10 first: the division needs rax and rdx.
        match (is64, x) {
            (true, true) => dynasm!(self.asm ; .arch x64 ; mov r10, Rq(s)),
            (true, false) => dynasm!(self.asm ; .arch x64 ; mov r10, DWORD imm),
            (false, true) => dynasm!(self.asm ; .arch x64 ; mov r10d, Rd(s)),
            (false, false) => dynasm!(self.asm ; .arch x64 ; mov r10d, imm),
        }
        dynasm!(self.asm
            ; .arch x64
            ; test r10, r10
            ; jz =>by_zero
        );
        if signed {
            if is64 {
                dynasm!(self.asm ; .arch x64 ; cmp r10, -1 ; je =>by_minus_one);
            } else {
                dynasm!(self.asm ; .arch x64 ; cmp r10d, -1 ; je =>by_minus_one);
            }
        }
        dynasm!(self.asm
            ; .arch x64
            ; push rax
            ; push rdx
        );
        match (is64, signed) {
            (true, false) => dynasm!(self.asm
                ; .arch x64
                ; mov rax, Rq(d)
                ; xor edx, edx
                ; div r10
            ),
            (true, true) => dynasm!(self.asm
                ; .arch x64
                ; mov rax, Rq(d)
                ; cqo
                ; idiv r10
            ),
            (false, false) => dynasm!(self.asm
                ; .arch x64
                ; mov eax, Rd(d)
                ; xor edx, edx
                ; div r10d
            ),
            (false, true) => dynasm!(self.asm
                ; .arch x64
                ; mov eax, Rd(d)
                ; cdq
                ; idiv r10d
            ),
        }
        let result = if is_mod { RDX } else { RAX };
        if is64 {
            dynasm!(self.asm ; .arch x64 ; mov r10, Rq(result));
        } else {
            dynasm!(self.asm ; .arch x64 ; mov r10d, Rd(result));
        }
        dynasm!(self.asm
            ; .arch x64
            ; pop rdx
            ; pop rax
            ; mov Rq(d), r10
            ; jmp =>done
            ; =>by_zero
        );
        match (is_mod, is64) {
            (false, _) => dynasm!(self.asm ; .arch x64 ; xor Rd(d), Rd(d)),
            (true, true) => {}
            (true, false) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(d)),
        }
        if signed {
            dynasm!(self.asm ; .arch x64 ; jmp =>done ; =>by_minus_one);
            match (is_mod, is64) {
                (false, true) => dynasm!(self.asm ; .arch x64 ; neg Rq(d)),
                (false, false) => dynasm!(self.asm ; .arch x64 ; neg Rd(d)),
                (true, _) => dynasm!(self.asm ; .arch x64 ; xor Rd(d), Rd(d)),
            }
        } else {
            dynasm!(self.asm ; .arch x64 ; =>by_minus_one);
        }
        dynasm!(self.asm ; .arch x64 ; =>done);
    }

    fn cond_jump(&mut self, pc: usize, i: Insn, next: usize) {
        let is32 = i.class() == CLS_JMP32;
        let x = i.opc & SRC_X != 0;
        let op = i.opc & 0xf0;
        let d = REG[i.dst as usize % 11];
        let s = REG[i.src as usize % 11];
        let imm = i.imm;
        match (op == JMP_JSET, is32, x) {
            (false, false, true) => dynasm!(self.asm ; .arch x64 ; cmp Rq(d), Rq(s)),
            (false, false, false) => dynasm!(self.asm ; .arch x64 ; cmp Rq(d), imm),
            (false, true, true) => dynasm!(self.asm ; .arch x64 ; cmp Rd(d), Rd(s)),
            (false, true, false) => dynasm!(self.asm ; .arch x64 ; cmp Rd(d), imm),
            (true, false, true) => dynasm!(self.asm ; .arch x64 ; test Rq(d), Rq(s)),
            (true, false, false) => dynasm!(self.asm ; .arch x64 ; test Rq(d), imm),
            (true, true, true) => dynasm!(self.asm ; .arch x64 ; test Rd(d), Rd(s)),
            (true, true, false) => dynasm!(self.asm ; .arch x64 ; test Rd(d), imm),
        }
        let target = (pc as i64 + 1 + i.off as i64) as usize;
        if target <= pc && !self.env.verified {
            // A back edge: check the budget on the taken side only.
            let skip = self.label_of(next);
            self.jcc(op, skip, true);
            self.jump(pc, target);
        } else {
            // Not taken: the next block's code follows.
            let t = self.label_of(target);
            self.jcc(op, t, false);
        }
    }

    /// Jumps to `to` when the flags say the condition `op` holds (or, with
    /// `negate`, when it does not).
    fn jcc(&mut self, op: u8, to: DynamicLabel, negate: bool) {
        macro_rules! pick {
            ($yes:ident, $no:ident) => {
                if negate {
                    dynasm!(self.asm ; .arch x64 ; $no =>to)
                } else {
                    dynasm!(self.asm ; .arch x64 ; $yes =>to)
                }
            };
        }
        match op {
            JMP_JEQ => pick!(je, jne),
            JMP_JNE | JMP_JSET => pick!(jne, je),
            JMP_JGT => pick!(ja, jbe),
            JMP_JGE => pick!(jae, jb),
            JMP_JLT => pick!(jb, jae),
            JMP_JLE => pick!(jbe, ja),
            JMP_JSGT => pick!(jg, jle),
            JMP_JSGE => pick!(jge, jl),
            JMP_JSLT => pick!(jl, jge),
            _ => pick!(jle, jg),
        }
    }

    /// Leaves the address of `[base + off]` in r10, bounds-checked in the
    /// checked shape.
    fn address(&mut self, pc: usize, base: u8, off: i16, size: u8, store: bool) {
        let b = REG[base as usize % 11];
        let off32 = off as i32;
        dynasm!(self.asm ; .arch x64 ; lea r10, [Rq(b) + off32]);
        if self.env.verified {
            return;
        }
        // Accesses through r10 that stay inside the frame need no check.
        if base == FRAME_REG && off32 >= -FRAME && off32 + size as i32 <= 0 {
            return;
        }
        let ok = self.asm.new_dynamic_label();
        let entry = self.asm.new_dynamic_label();
        // In the input, or in the live stack frames? Otherwise Rust decides.
        // The stack test is `addr - lo + size <= len`, where a carry means
        // the access starts below the stack.
        let lim = off::mem_lim(size);
        dynasm!(self.asm
            ; .arch x64
            ; mov rcx, r10
            ; sub rcx, [r12 + off::MEM_LO]
            ; cmp rcx, [r12 + lim]
            ; jb =>ok
            ; mov rcx, r10
            ; sub rcx, [r12 + off::STACK_LO]
            ; add rcx, size as i32
            ; jc =>entry
            ; cmp rcx, [r12 + off::STACK_LEN]
            ; ja =>entry
            ; =>ok
        );
        self.cold.push(Cold::SlowAccess {
            entry,
            resume: ok,
            pc,
            size,
            store,
            info: fault_info(size, store, base, off),
        });
    }

    fn load(&mut self, pc: usize, i: Insn) {
        let size = access_size(i.opc);
        let d = REG[i.dst as usize % 11];
        let signed = i.opc & 0xe0 == MODE_MEMSX;
        if self.env.probe_loads.binary_search(&pc).is_ok() {
            let b = REG[i.src as usize % 11];
            let off32 = i.off as i32;
            let aux = size as i32 | (signed as i32) << 7;
            dynasm!(self.asm ; .arch x64 ; lea r10, [Rq(b) + off32]);
            self.call_out(|asm| {
                dynasm!(asm
                    ; .arch x64
                    ; mov rdi, r12
                    ; mov rsi, r10
                    ; mov edx, aux
                    ; mov rax, QWORD runtime::probe_load as *const () as i64
                    ; call rax
                    ; mov r10, rax
                );
            });
            dynasm!(self.asm ; .arch x64 ; mov Rq(d), r10);
            return;
        }
        self.address(pc, i.src, i.off, size, false);
        match (size, signed) {
            (1, false) => dynasm!(self.asm ; .arch x64 ; movzx Rd(d), BYTE [r10]),
            (2, false) => dynasm!(self.asm ; .arch x64 ; movzx Rd(d), WORD [r10]),
            (4, false) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), [r10]),
            (1, true) => dynasm!(self.asm ; .arch x64 ; movsx Rq(d), BYTE [r10]),
            (2, true) => dynasm!(self.asm ; .arch x64 ; movsx Rq(d), WORD [r10]),
            (4, true) => dynasm!(self.asm ; .arch x64 ; movsxd Rq(d), DWORD [r10]),
            _ => dynasm!(self.asm ; .arch x64 ; mov Rq(d), [r10]),
        }
    }

    fn store(&mut self, pc: usize, i: Insn) {
        let size = access_size(i.opc);
        self.address(pc, i.dst, i.off, size, true);
        let s = REG[i.src as usize % 11];
        let imm = i.imm;
        match (i.class() == CLS_ST, size) {
            (true, 1) => dynasm!(self.asm ; .arch x64 ; mov BYTE [r10], imm as i8),
            (true, 2) => dynasm!(self.asm ; .arch x64 ; mov WORD [r10], imm as i16),
            (true, 4) => dynasm!(self.asm ; .arch x64 ; mov DWORD [r10], imm),
            (true, _) => dynasm!(self.asm ; .arch x64 ; mov QWORD [r10], imm),
            (false, 1) => dynasm!(self.asm ; .arch x64 ; mov [r10], Rb(s)),
            (false, 2) => dynasm!(self.asm ; .arch x64 ; mov [r10], Rw(s)),
            (false, 4) => dynasm!(self.asm ; .arch x64 ; mov [r10], Rd(s)),
            (false, _) => dynasm!(self.asm ; .arch x64 ; mov [r10], Rq(s)),
        }
    }

    fn atomic(&mut self, pc: usize, i: Insn) {
        let wide = i.opc == 0xdb;
        let size: u8 = if wide { 8 } else { 4 };
        self.address(pc, i.dst, i.off, size, true);
        let entry = self.asm.new_dynamic_label();
        dynasm!(self.asm
            ; .arch x64
            ; test r10, size as i32 - 1
            ; jnz =>entry
        );
        self.cold.push(Cold::Misaligned {
            entry,
            pc,
            info: fault_info(size, true, i.dst, i.off),
        });
        let s = REG[i.src as usize % 11];
        let fetch = i.imm & ATOMIC_FETCH != 0;
        match i.imm {
            ATOMIC_CMPXCHG => {
                if wide {
                    dynasm!(self.asm ; .arch x64 ; lock cmpxchg [r10], Rq(s));
                } else {
                    // A 32-bit cmpxchg that succeeds leaves rax's upper half.
                    dynasm!(self.asm
                        ; .arch x64
                        ; lock cmpxchg [r10], Rd(s)
                        ; mov eax, eax
                    );
                }
            }
            ATOMIC_XCHG => {
                if wide {
                    dynasm!(self.asm ; .arch x64 ; mov rcx, Rq(s) ; xchg [r10], rcx ; mov Rq(s), rcx);
                } else {
                    dynasm!(self.asm ; .arch x64 ; mov ecx, Rd(s) ; xchg [r10], ecx ; mov Rq(s), rcx);
                }
            }
            k if k & !ATOMIC_FETCH == ATOMIC_ADD => match (fetch, wide) {
                (false, true) => dynasm!(self.asm ; .arch x64 ; lock add [r10], Rq(s)),
                (false, false) => dynasm!(self.asm ; .arch x64 ; lock add [r10], Rd(s)),
                (true, true) => dynasm!(self.asm
                    ; .arch x64
                    ; mov rcx, Rq(s)
                    ; lock xadd [r10], rcx
                    ; mov Rq(s), rcx
                ),
                (true, false) => dynasm!(self.asm
                    ; .arch x64
                    ; mov ecx, Rd(s)
                    ; lock xadd [r10], ecx
                    ; mov Rq(s), rcx
                ),
            },
            k => {
                let op = k & !ATOMIC_FETCH;
                if !fetch {
                    match (op, wide) {
                        (ATOMIC_OR, true) => dynasm!(self.asm ; .arch x64 ; lock or [r10], Rq(s)),
                        (ATOMIC_OR, false) => dynasm!(self.asm ; .arch x64 ; lock or [r10], Rd(s)),
                        (ATOMIC_AND, true) => dynasm!(self.asm ; .arch x64 ; lock and [r10], Rq(s)),
                        (ATOMIC_AND, false) => {
                            dynasm!(self.asm ; .arch x64 ; lock and [r10], Rd(s))
                        }
                        (_, true) => dynasm!(self.asm ; .arch x64 ; lock xor [r10], Rq(s)),
                        (_, false) => dynasm!(self.asm ; .arch x64 ; lock xor [r10], Rd(s)),
                    }
                    return;
                }
                self.fetch_logic(op, wide, s);
            }
        }
    }

    /// Fetching or/and/xor: a compare-and-exchange loop, which needs rax
    /// (r0) for the old value; r0 and the operand are kept on the stack.
    fn fetch_logic(&mut self, op: i32, wide: bool, s: u8) {
        let again = self.asm.new_dynamic_label();
        dynasm!(self.asm
            ; .arch x64
            ; push Rq(s)
            ; push rax
        );
        if wide {
            dynasm!(self.asm ; .arch x64 ; mov rax, [r10] ; =>again ; mov rcx, rax);
            match op {
                ATOMIC_OR => dynasm!(self.asm ; .arch x64 ; or rcx, [rsp + 8]),
                ATOMIC_AND => dynasm!(self.asm ; .arch x64 ; and rcx, [rsp + 8]),
                _ => dynasm!(self.asm ; .arch x64 ; xor rcx, [rsp + 8]),
            }
            dynasm!(self.asm ; .arch x64 ; lock cmpxchg [r10], rcx ; jne =>again ; mov rcx, rax);
        } else {
            dynasm!(self.asm ; .arch x64 ; mov eax, [r10] ; =>again ; mov ecx, eax);
            match op {
                ATOMIC_OR => dynasm!(self.asm ; .arch x64 ; or ecx, [rsp + 8]),
                ATOMIC_AND => dynasm!(self.asm ; .arch x64 ; and ecx, [rsp + 8]),
                _ => dynasm!(self.asm ; .arch x64 ; xor ecx, [rsp + 8]),
            }
            dynasm!(self.asm ; .arch x64 ; lock cmpxchg [r10], ecx ; jne =>again ; mov ecx, eax);
        }
        dynasm!(self.asm
            ; .arch x64
            ; pop rax
            ; add rsp, 8
            ; mov Rq(s), rcx
        );
    }

    /// Legacy `ld_abs`/`ld_ind`: a big-endian read of the input; out of
    /// range, the program stops with r0 = 0.
    fn packet_load(&mut self, i: Insn) {
        let size = access_size(i.opc);
        let imm = i.imm;
        let s = REG[i.src as usize % 11];
        let stop = self.stop;
        dynasm!(self.asm ; .arch x64 ; mov rcx, DWORD imm);
        if i.opc & 0xe0 == MODE_IND {
            dynasm!(self.asm ; .arch x64 ; movsxd r10, Rd(s) ; add rcx, r10);
        }
        let lim = off::mem_lim(size);
        dynasm!(self.asm
            ; .arch x64
            ; cmp rcx, [r12 + lim]
            ; jae =>stop
            ; add rcx, [r12 + off::MEM_LO]
        );
        match size {
            1 => dynasm!(self.asm ; .arch x64 ; movzx eax, BYTE [rcx]),
            2 => dynasm!(self.asm ; .arch x64 ; movzx eax, WORD [rcx] ; rol ax, 8 ; movzx eax, ax),
            _ => dynasm!(self.asm ; .arch x64 ; mov eax, [rcx] ; bswap eax),
        }
    }

    /// Calls out of compiled code with every caller-saved register that
    /// holds eBPF state saved around `call` (the count included).
    fn call_out(&mut self, call: impl FnOnce(&mut VecAssembler<X64Relocation>)) {
        self.save(&[RAX]);
        self.save(&ARGS_AND_COUNT);
        // Seven registers: one more slot keeps the stack 16-aligned.
        dynasm!(self.asm ; .arch x64 ; sub rsp, 8);
        call(&mut self.asm);
        dynasm!(self.asm ; .arch x64 ; add rsp, 8);
        self.restore(&ARGS_AND_COUNT);
        self.restore(&[RAX]);
    }

    /// Pushes `regs` in order (an even number keeps the stack 16-aligned).
    fn save(&mut self, regs: &[u8]) {
        for &r in regs {
            dynasm!(self.asm ; .arch x64 ; push Rq(r));
        }
    }

    /// Pops what [`Self::save`] pushed for the same `regs`.
    fn restore(&mut self, regs: &[u8]) {
        for &r in regs.iter().rev() {
            dynasm!(self.asm ; .arch x64 ; pop Rq(r));
        }
    }

    fn helper_call(&mut self, pc: usize, id: u32) {
        let native = match self.env.helpers.get(id as usize) {
            Some(Some(HelperImpl::Native(f))) => Some(*f),
            _ => None,
        };
        let Some(f) = native else {
            return self.dyn_call(pc, Some(id), None);
        };
        // r0 takes the result.
        self.save(&ARGS_AND_COUNT);
        dynasm!(self.asm
            ; .arch x64
            ; mov rcx, r9
            ; mov rax, QWORD f as *const () as i64
            ; call rax
        );
        self.restore(&ARGS_AND_COUNT);
        if self.env.unwind_helper == Some(id) {
            let stop = self.stop;
            dynasm!(self.asm ; .arch x64 ; test rax, rax ; jz =>stop);
        }
    }

    /// A BPF-to-BPF call: a new zeroed frame below the caller's, the budget
    /// checked, the callee called through the function table with r1-r5
    /// and the count; a fault or stop below returns at once.
    fn local_call(&mut self, pc: usize, target: usize) {
        let k = self
            .env
            .program
            .functions()
            .iter()
            .position(|f| f.start == target)
            .expect("call targets are functions") as i32;
        let too_deep = self.asm.new_dynamic_label();
        self.cold.push(Cold::Fault {
            entry: too_deep,
            pc,
            status: runtime::STATUS_CALL_DEPTH,
        });
        let propagate = self.propagate;
        dynasm!(self.asm
            ; .arch x64
            ; mov rcx, [r12 + off::DEPTH]
            ; cmp rcx, MAX_CALL_FRAMES as i32 - 1
            ; jae =>too_deep
            ; inc rcx
            ; mov [r12 + off::DEPTH], rcx
            ; sub QWORD [r12 + off::STACK_LO], FRAME
            ; add QWORD [r12 + off::STACK_LEN], FRAME
        );
        self.call_out(|asm| {
            dynasm!(asm
                ; .arch x64
                ; mov rdi, [r12 + off::STACK_LO]
                ; mov rax, QWORD runtime::zero_frame as *const () as i64
                ; call rax
            );
        });
        self.budget_check(pc);
        let args = &ARGS_AND_COUNT[..5];
        self.save(args);
        dynasm!(self.asm
            ; .arch x64
            // The count, the 7th argument (the frame stays 16-aligned).
            ; push r11
            ; mov rcx, rdx
            ; mov rdx, rsi
            ; mov rsi, rdi
            ; mov rdi, r12
            ; xchg r8, r9
            ; mov rax, [r12 + off::FUNCTIONS]
            ; call QWORD [rax + k * 8]
            ; mov r11, rdx
            ; add rsp, 8
        );
        self.restore(args);
        dynasm!(self.asm
            ; .arch x64
            ; cmp QWORD [r12 + off::STATUS], 0
            ; jne =>propagate
            ; dec QWORD [r12 + off::DEPTH]
            ; add QWORD [r12 + off::STACK_LO], FRAME
            ; sub QWORD [r12 + off::STACK_LEN], FRAME
        );
    }

    /// A helper implemented in Rust or Python, an unknown one, or `callx`:
    /// through [`runtime::call_helper`], which reports failures in the
    /// status; a failed call returns at once.
    fn dyn_call(&mut self, pc: usize, id: Option<u32>, callx: Option<u8>) {
        if let Some(r) = callx {
            let x = REG[r as usize % 11];
            dynasm!(self.asm ; .arch x64 ; mov r10, Rq(x));
        } else {
            dynasm!(self.asm ; .arch x64 ; mov r10d, id.unwrap_or(0) as i32);
        }
        let propagate = self.propagate;
        self.save(&ARGS_AND_COUNT);
        dynasm!(self.asm
            ; .arch x64
            // a5 and a4, the stack arguments (the frame stays 16-aligned).
            ; push r8
            ; push r9
            ; mov rcx, rdi
            ; mov r8, rsi
            ; mov r9, rdx
            ; mov rdi, r12
            ; mov esi, pc as i32
            ; mov rdx, r10
            ; mov rax, QWORD runtime::call_helper as *const () as i64
            ; call rax
            ; add rsp, 16
        );
        self.restore(&ARGS_AND_COUNT);
        dynasm!(self.asm
            ; .arch x64
            ; cmp QWORD [r12 + off::STATUS], 0
            ; jne =>propagate
        );
    }
}
