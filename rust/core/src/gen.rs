//! A structured random program generator, for fuzzing and differential
//! testing: programs that pass the load-time checks (valid encodings, jumps
//! inside their function, functions ending in `exit`) yet mix every kind of
//! instruction — ALU, loads and stores on the stack and the input, atomics,
//! byte swaps, conditional and backward jumps, helper calls and BPF-to-BPF
//! calls — so that runs exercise the interpreter (and the JIT) deeply.
//!
//! Everything is derived from a seed, so a failing program is reproduced by
//! its seed alone.

use crate::isa::*;

/// A small, fast, seedable PRNG (SplitMix64); good enough for test input.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What the generated programs may use.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// Instructions per function, roughly.
    pub max_len: usize,
    /// Size of the input buffer the program is run on (r1/r2).
    pub mem_len: usize,
    /// Helper ids that will be registered when the program runs.
    pub helper_ids: Vec<u32>,
    /// Number of extra functions reached by `call local`.
    pub max_functions: usize,
    /// Percentage of memory accesses deliberately allowed to go anywhere
    /// (to exercise faults).
    pub wild_access_percent: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            max_len: 48,
            mem_len: 64,
            helper_ids: Vec::new(),
            max_functions: 2,
            wild_access_percent: 3,
        }
    }
}

const ALU_OPS: [u8; 12] = [
    ALU_ADD, ALU_SUB, ALU_MUL, ALU_DIV, ALU_OR, ALU_AND, ALU_LSH, ALU_RSH, ALU_MOD, ALU_XOR,
    ALU_MOV, ALU_ARSH,
];
const JMP_OPS: [u8; 11] = [
    JMP_JEQ, JMP_JGT, JMP_JGE, JMP_JSET, JMP_JNE, JMP_JSGT, JMP_JSGE, JMP_JLT, JMP_JLE, JMP_JSLT,
    JMP_JSLE,
];
const ATOMIC_OPS: [i32; 10] = [
    ATOMIC_ADD,
    ATOMIC_OR,
    ATOMIC_AND,
    ATOMIC_XOR,
    ATOMIC_ADD | ATOMIC_FETCH,
    ATOMIC_OR | ATOMIC_FETCH,
    ATOMIC_AND | ATOMIC_FETCH,
    ATOMIC_XOR | ATOMIC_FETCH,
    ATOMIC_XCHG,
    ATOMIC_CMPXCHG,
];

/// A value that makes arithmetic interesting: edges, small numbers, noise.
fn interesting_imm(rng: &mut Rng) -> i32 {
    match rng.below(8) {
        0 => rng.pick(&[0, 1, -1, i32::MIN, i32::MAX, 0x7fff, 0x8000, 0xffff]),
        1..=4 => rng.below(64) as i32 - 16,
        _ => rng.next_u64() as i32,
    }
}

/// Register conventions inside generated code: r1 holds the input pointer
/// and r2 its length at entry; r6 keeps a copy of the input pointer (never
/// overwritten), so memory accesses through r6 and r10 mostly hit.
const SCRATCH: [u8; 8] = [0, 1, 2, 3, 4, 5, 7, 8];

struct Builder<'a> {
    rng: &'a mut Rng,
    opts: &'a GenOptions,
    out: Vec<Insn>,
    /// (index of a jump in `out`, relative target in the function's body).
    fixups: Vec<(usize, usize)>,
    /// (index of a `call local`, function number).
    calls: Vec<(usize, usize)>,
}

impl Builder<'_> {
    fn reg(&mut self) -> u8 {
        self.rng.pick(&SCRATCH)
    }

    fn alu(&mut self) {
        let is64 = self.rng.chance(60);
        let class = if is64 { CLS_ALU64 } else { CLS_ALU };
        let dst = self.reg();
        match self.rng.below(20) {
            0 => self.out.push(Insn::new(class | ALU_NEG, dst, 0, 0, 0)),
            1 => {
                let imm = self.rng.pick(&[16, 32, 64]);
                let opc = if is64 {
                    CLS_ALU64 | ALU_END
                } else if self.rng.chance(50) {
                    CLS_ALU | ALU_END | SRC_X
                } else {
                    CLS_ALU | ALU_END
                };
                self.out.push(Insn::new(opc, dst, 0, 0, imm));
            }
            2 => {
                // movsx
                let off = if is64 {
                    self.rng.pick(&[8, 16, 32])
                } else {
                    self.rng.pick(&[8, 16])
                };
                let src = self.rng.below(10) as u8;
                self.out
                    .push(Insn::new(class | ALU_MOV | SRC_X, dst, src, off, 0));
            }
            _ => {
                let op = self.rng.pick(&ALU_OPS);
                let off = if matches!(op, ALU_DIV | ALU_MOD) && self.rng.chance(40) {
                    1
                } else {
                    0
                };
                if self.rng.chance(50) {
                    let src = self.rng.below(10) as u8;
                    self.out
                        .push(Insn::new(class | op | SRC_X, dst, src, off, 0));
                } else {
                    let imm = interesting_imm(self.rng);
                    self.out.push(Insn::new(class | op, dst, 0, off, imm));
                }
            }
        }
    }

    /// A base register and offset for an access of `size` bytes: usually
    /// inside the stack or the input, sometimes anywhere.
    fn address(&mut self, size: i16, aligned: bool) -> (u8, i16) {
        let mem_len = self.opts.mem_len as i16;
        if self.rng.chance(self.opts.wild_access_percent) {
            return (self.reg(), self.rng.below(64) as i16 - 32);
        }
        if self.rng.chance(15) {
            // A pointer derived from r10 (as compilers make for arrays on
            // the stack), usually pointing into the frame.
            let reg = self.reg();
            let k = self.rng.below(STACK_FRAME_SIZE as u64) as i32 + 1;
            self.out
                .push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, reg, FRAME_REG, 0, 0));
            self.out.push(Insn::new(CLS_ALU64 | ALU_ADD, reg, 0, 0, -k));
            let mut off = self.rng.below(k as u64 + 8) as i16 - size;
            if aligned {
                off -= (off - k as i16).rem_euclid(size);
            }
            return (reg, off);
        }
        if mem_len >= size && self.rng.chance(50) {
            let mut off = self.rng.below((mem_len - size + 1) as u64) as i16;
            if aligned {
                off -= off % size;
            }
            (6, off)
        } else {
            let mut off =
                -(self.rng.below(STACK_FRAME_SIZE as u64 / size as u64) as i16 + 1) * size;
            if !aligned {
                off += self.rng.below(size as u64) as i16;
                off = off.min(-size);
            }
            (FRAME_REG, off)
        }
    }

    fn memory(&mut self) {
        let size_bits = self.rng.pick(&[SIZE_B, SIZE_H, SIZE_W, SIZE_DW]);
        let size = access_size(size_bits) as i16;
        match self.rng.below(5) {
            0 | 1 => {
                let (base, off) = self.address(size, false);
                let signed = size < 8 && self.rng.chance(25);
                let mode = if signed { MODE_MEMSX } else { MODE_MEM };
                let dst = self.reg();
                self.out
                    .push(Insn::new(CLS_LDX | mode | size_bits, dst, base, off, 0));
            }
            2 => {
                let (base, off) = self.address(size, false);
                let imm = interesting_imm(self.rng);
                self.out
                    .push(Insn::new(CLS_ST | MODE_MEM | size_bits, base, 0, off, imm));
            }
            3 => {
                let (base, off) = self.address(size, false);
                let src = self.rng.below(11) as u8;
                self.out
                    .push(Insn::new(CLS_STX | MODE_MEM | size_bits, base, src, off, 0));
            }
            _ => {
                let wide = self.rng.chance(50);
                let (size_bits, size) = if wide { (SIZE_DW, 8) } else { (SIZE_W, 4) };
                let (base, off) = self.address(size, true);
                let src = self.reg();
                let op = self.rng.pick(&ATOMIC_OPS);
                self.out.push(Insn::new(
                    CLS_STX | MODE_ATOMIC | size_bits,
                    base,
                    src,
                    off,
                    op,
                ));
            }
        }
    }

    fn jump(&mut self, body_len: usize) {
        let is32 = self.rng.chance(35);
        let class = if is32 { CLS_JMP32 } else { CLS_JMP };
        let target = self.rng.below(body_len as u64 + 1) as usize;
        let idx = self.out.len();
        if self.rng.chance(12) {
            let opc = if self.rng.chance(30) { OP_JA32 } else { OP_JA };
            self.out.push(Insn::new(opc, 0, 0, 0, 0));
        } else {
            let op = self.rng.pick(&JMP_OPS);
            let dst = self.rng.below(10) as u8;
            if self.rng.chance(50) {
                let src = self.rng.below(11) as u8;
                self.out.push(Insn::new(class | op | SRC_X, dst, src, 0, 0));
            } else {
                let imm = interesting_imm(self.rng);
                self.out.push(Insn::new(class | op, dst, 0, 0, imm));
            }
        }
        self.fixups.push((idx, target));
    }

    /// One function body ending in `exit`; `func` numbers it, callers may
    /// only call higher-numbered functions (so recursion stays bounded by
    /// the frame limit anyway, but mostly terminates early).
    fn function(&mut self, func: usize, nfuncs: usize) {
        let start = self.out.len();
        let len = 1 + self.rng.below(self.opts.max_len as u64) as usize;
        // Body positions are counted in emitted slots, fixed up below.
        let mut positions = Vec::with_capacity(len + 1);
        if func == 0 {
            // Keep the input pointer in r6 for memory accesses.
            positions.push(self.out.len());
            self.out
                .push(Insn::new(CLS_ALU64 | ALU_MOV | SRC_X, 6, 1, 0, 0));
        }
        for _ in 0..len {
            positions.push(self.out.len());
            match self.rng.below(100) {
                0..=44 => self.alu(),
                45..=69 => self.memory(),
                70..=84 => self.jump(len),
                85..=89 => {
                    let dst = self.reg();
                    let v = self.rng.next_u64();
                    self.out.push(Insn::new(OP_LDDW, dst, 0, 0, v as i32));
                    self.out.push(Insn::new(0, 0, 0, 0, (v >> 32) as i32));
                }
                90..=94 if !self.opts.helper_ids.is_empty() => {
                    let id = self.rng.pick(&self.opts.helper_ids);
                    if self.rng.chance(20) {
                        let r = self.reg();
                        self.out
                            .push(Insn::new(CLS_ALU64 | ALU_MOV, r, 0, 0, id as i32));
                        self.out.push(Insn::new(OP_CALLX, r, 0, 0, 0));
                    } else {
                        self.out
                            .push(Insn::new(OP_CALL, 0, CALL_HELPER, 0, id as i32));
                    }
                }
                95..=99 if func + 1 < nfuncs => {
                    let callee = func + 1 + self.rng.below((nfuncs - func - 1) as u64) as usize;
                    self.calls.push((self.out.len(), callee));
                    self.out.push(Insn::new(OP_CALL, 0, CALL_LOCAL, 0, 0));
                }
                _ => self.alu(),
            }
        }
        positions.push(self.out.len());
        self.out.push(Insn::new(OP_EXIT, 0, 0, 0, 0));
        // Resolve this function's jumps to slot offsets.
        for (idx, target) in std::mem::take(&mut self.fixups) {
            let t = positions[target.min(positions.len() - 1)] as i64;
            let rel = t - idx as i64 - 1;
            if rel == -1 && (self.out[idx].opc == OP_JA || self.out[idx].opc == OP_JA32) {
                // A self-jump would be rejected: make it fall through.
                self.set_rel(idx, 0);
            } else {
                self.set_rel(idx, rel);
            }
        }
        let _ = start;
    }

    fn set_rel(&mut self, idx: usize, rel: i64) {
        let insn = &mut self.out[idx];
        if insn.opc == OP_JA32 {
            insn.imm = rel as i32;
        } else {
            insn.off = rel as i16;
        }
    }
}

/// Generates a program from `seed`: it passes [`crate::program::Program`]'s
/// checks as long as `opts.max_len` keeps jumps within 16-bit offsets.
pub fn random_program(seed: u64, opts: &GenOptions) -> Vec<Insn> {
    let mut rng = Rng::new(seed);
    let nfuncs = 1 + rng.below(opts.max_functions as u64 + 1) as usize;
    let mut b = Builder {
        rng: &mut rng,
        opts,
        out: Vec::new(),
        fixups: Vec::new(),
        calls: Vec::new(),
    };
    let mut starts = Vec::with_capacity(nfuncs);
    for f in 0..nfuncs {
        starts.push(b.out.len());
        b.function(f, nfuncs);
    }
    for (idx, callee) in std::mem::take(&mut b.calls) {
        b.out[idx].imm = (starts[callee] as i64 - idx as i64 - 1) as i32;
    }
    b.out
}

/// Random input memory of `len` bytes from `seed`.
pub fn random_memory(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x5eed_5eed_5eed_5eed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::Program;

    #[test]
    fn generated_programs_pass_load_checks() {
        let opts = GenOptions {
            helper_ids: vec![1, 2],
            ..GenOptions::default()
        };
        for seed in 0..3000 {
            let insns = random_program(seed, &opts);
            if let Err(e) = Program::from_insns(insns.clone(), 1 << 20) {
                panic!("seed {seed}: {e}\n{}", crate::disasm::disassemble(&insns));
            }
        }
    }

    #[test]
    fn generation_is_deterministic() {
        let o = GenOptions::default();
        assert_eq!(random_program(7, &o), random_program(7, &o));
        assert_ne!(random_program(7, &o), random_program(8, &o));
    }
}
