//! Random programs for the verifier's soundness oracle.
//!
//! Unlike `ebpfvm_core::gen` (arbitrary well-formed code, nearly all of which
//! a verifier rejects), these programs are built from small idioms that a
//! compiler emits and a verifier must reason about precisely: loads of unknown
//! values, bounds checks (64- and 32-bit, signed and unsigned, masks, shifts)
//! followed by variable-offset accesses to the input, the stack or a map
//! value; map lookups with and without null checks; spilled and refilled
//! pointers; bounded loops; helper and builtin calls with stack buffers. Each idiom is
//! put right at the edge of safety and then, often, nudged one byte or one
//! check past it, so that accepted programs sit next to rejected ones.
//!
//! Programs are of ebpfvm's raw type: r1 points at `mem_len` bytes of
//! readable and writable input, r2 holds the length. Register roles: r6 is
//! the input pointer (never overwritten), r8 and r9 carry scalars between
//! idioms, everything else is scratch.

use ebpfvm_core::gen::Rng;
use ebpfvm_core::isa::*;
use std::sync::Arc;

use ebpfvm_core::maps::{Map, MapDef, MapType, BPF_ANY};

/// The maps every generated program may use (index = lddw immediate).
pub fn maps() -> Vec<MapDef> {
    vec![
        MapDef::new(MapType::Array, 4, 24, 4).named("arr"),
        MapDef::new(MapType::Hash, 4, 16, 8).named("hash"),
    ]
}

/// Fresh maps for [`maps`], as programs run against them: some hash keys
/// present, so lookups there succeed as well as fail.
pub fn live_maps() -> Vec<Arc<Map>> {
    let live: Vec<Arc<Map>> = maps()
        .iter()
        .map(|d| Map::create(d.clone()).expect("the oracle's maps can be created"))
        .collect();
    for k in 0u32..4 {
        live[1]
            .update(&k.to_le_bytes(), &[0x11; 16], BPF_ANY)
            .expect("hash map accepts its first keys");
    }
    live
}

/// (key_size, value_size, max_entries) of [`maps`], for the generator.
const MAPS: [(u32, u32, u32); 2] = [(4, 24, 4), (4, 16, 8)];

/// One generated program and what it was built for.
pub struct Generated {
    pub insns: Vec<Insn>,
    pub mem_len: u32,
}

struct Gen<'a> {
    rng: &'a mut Rng,
    mem_len: u32,
    out: Vec<Insn>,
}

const SIZES: [(u8, i32); 4] = [(SIZE_B, 1), (SIZE_H, 2), (SIZE_W, 4), (SIZE_DW, 8)];

fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(CLS_LDX | MODE_MEM | size, dst, src, off, 0)
}

fn stx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(CLS_STX | MODE_MEM | size, dst, src, off, 0)
}

fn st(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
    Insn::new(CLS_ST | MODE_MEM | size, dst, 0, off, imm)
}

fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(CLS_ALU64 | op | SRC_K, dst, 0, 0, imm)
}

fn alu64_reg(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(CLS_ALU64 | op | SRC_X, dst, src, 0, 0)
}

fn mov(dst: u8, src: u8) -> Insn {
    alu64_reg(ALU_MOV, dst, src)
}

fn mov_imm(dst: u8, imm: i32) -> Insn {
    alu64_imm(ALU_MOV, dst, imm)
}

fn call(id: i32) -> Insn {
    Insn::new(OP_CALL, 0, CALL_HELPER, 0, id)
}

/// The two slots of `lddw dst, map_idx`.
fn ld_map(dst: u8, idx: i32) -> [Insn; 2] {
    [
        Insn::new(OP_LDDW, dst, PSEUDO_MAP_IDX, 0, idx),
        Insn::new(0, 0, 0, 0, 0),
    ]
}

/// A conditional jump whose target is patched by [`Gen::block`].
struct Skip;

impl Gen<'_> {
    fn chance(&mut self, percent: u64) -> bool {
        self.rng.chance(percent)
    }

    fn below(&mut self, n: u64) -> i32 {
        self.rng.below(n) as i32
    }

    /// Emits a block in which `body` may emit jumps to the block's end
    /// (through [`Gen::skip_if`]); patches them once the end is known.
    fn block(&mut self, body: impl FnOnce(&mut Self, &mut Vec<usize>)) {
        let mut skips = Vec::new();
        body(self, &mut skips);
        let end = self.out.len();
        for at in skips {
            self.out[at].off = (end - at - 1) as i16;
        }
    }

    /// `if <dst> <op> <imm> goto end-of-block`.
    fn skip_if(&mut self, skips: &mut Vec<usize>, class: u8, op: u8, dst: u8, imm: i32) -> Skip {
        skips.push(self.out.len());
        self.out.push(Insn::new(class | op | SRC_K, dst, 0, 0, imm));
        Skip
    }

    fn skip_if_reg(&mut self, skips: &mut Vec<usize>, op: u8, dst: u8, src: u8) -> Skip {
        skips.push(self.out.len());
        self.out
            .push(Insn::new(CLS_JMP | op | SRC_X, dst, src, 0, 0));
        Skip
    }

    /// A size and an offset that is in bounds for a region of `len` bytes,
    /// or (sometimes) just past either edge.
    fn edge_access(&mut self, len: i32) -> (u8, i32, i16) {
        let (size, width) = self.rng.pick(&SIZES);
        let max = (len - width).max(0);
        let off = match self.below(10) {
            0 => max + 1 + self.below(3),
            1 => -1 - self.below(4),
            2 | 3 => max,
            _ => self.below(max as u64 + 1) & !(width - 1),
        };
        (size, width, off as i16)
    }

    /// r8 or r9 := an unknown value loaded from the input.
    fn load_unknown(&mut self, dst: u8) {
        let (size, _, off) = self.edge_access(self.mem_len as i32);
        self.out.push(ldx(size, dst, 6, off));
    }

    /// Bounds `reg` to [0, limit] by one of the idioms compilers emit, or a
    /// subtly wrong version of one. Jumps leave the block when out of range.
    fn bound(&mut self, skips: &mut Vec<usize>, reg: u8, limit: i32) {
        let limit = limit
            + if self.chance(15) {
                self.below(3) - 1
            } else {
                0
            };
        match self.below(8) {
            0 => {
                self.skip_if(skips, CLS_JMP, JMP_JGT, reg, limit);
            }
            1 => {
                self.skip_if(skips, CLS_JMP, JMP_JGE, reg, limit + 1);
            }
            2 => {
                // 32-bit compare: sound only if the upper half is known zero.
                if self.chance(70) {
                    // w = w clears the upper half.
                    self.out
                        .push(Insn::new(CLS_ALU | ALU_MOV | SRC_X, reg, reg, 0, 0));
                }
                self.skip_if(skips, CLS_JMP32, JMP_JGT, reg, limit);
            }
            3 => {
                // Signed: needs the lower bound too.
                if self.chance(75) {
                    self.skip_if(skips, CLS_JMP, JMP_JSLT, reg, 0);
                }
                self.skip_if(skips, CLS_JMP, JMP_JSGT, reg, limit);
            }
            4 => {
                // Mask to the largest 2^k - 1 that fits (or one that does not).
                let mut mask = 1;
                while mask * 2 - 1 <= limit {
                    mask *= 2;
                }
                let mask = if self.chance(15) {
                    mask * 2 - 1
                } else {
                    mask - 1
                };
                self.out.push(alu64_imm(ALU_AND, reg, mask));
            }
            5 => {
                // `if limit < reg` written with the constant in a register.
                self.out.push(mov_imm(4, limit));
                self.skip_if_reg(skips, JMP_JLT, 4, reg);
            }
            6 => {
                // Shift down: reg >> s <= limit when the value is u8/u16 wide.
                self.out.push(alu64_imm(ALU_AND, reg, 0xffff));
                let mut s = 0;
                while s < 16 && (0xffff >> s) > limit {
                    s += 1;
                }
                let s = if self.chance(15) { (s - 1).max(0) } else { s };
                self.out.push(alu64_imm(ALU_RSH, reg, s));
            }
            _ => {
                // Modulo by a constant.
                let m = if self.chance(85) {
                    limit + 1
                } else {
                    limit + 2
                };
                self.out.push(alu64_imm(ALU_MOD, reg, m.max(1)));
            }
        }
    }

    /// Access through `base` + bounded `r8`, inside a region of `len` bytes.
    fn variable_access(&mut self, skips: &mut Vec<usize>, base: u8, len: i32) {
        let (size, width) = self.rng.pick(&SIZES);
        let off = self.below((len - width).max(0) as u64 / 2 + 1);
        self.bound(skips, 8, len - width - off);
        self.out.push(mov(3, base));
        self.out.push(alu64_reg(ALU_ADD, 3, 8));
        if self.chance(50) {
            self.out.push(ldx(size, 0, 3, off as i16));
        } else {
            self.out.push(stx(size, 3, 9, off as i16));
        }
    }

    fn idiom_input(&mut self) {
        self.block(|g, skips| {
            g.load_unknown(8);
            g.variable_access(skips, 6, g.mem_len as i32);
        });
    }

    fn idiom_const_access(&mut self) {
        let (size, _, off) = self.edge_access(self.mem_len as i32);
        if self.chance(50) {
            self.out.push(ldx(size, 9, 6, off));
        } else {
            self.out.push(stx(size, 6, 8, off));
        }
    }

    fn idiom_stack(&mut self) {
        // A 64-byte buffer at r10-64; writes first (sometimes not all of it).
        let words = if self.chance(80) { 8 } else { self.below(8) };
        for i in 0..words {
            let off = -64 + 8 * i as i16;
            if self.chance(50) {
                self.out.push(stx(SIZE_DW, 10, 8, off));
            } else {
                let imm = self.below(1000);
                self.out.push(st(SIZE_DW, 10, off, imm));
            }
        }
        match self.below(3) {
            0 => {
                let (size, _, off) = self.edge_access(64);
                self.out.push(ldx(size, 9, 10, off - 64));
            }
            1 => self.block(|g, skips| {
                g.load_unknown(8);
                g.out.push(mov(5, 10));
                g.out.push(alu64_imm(ALU_ADD, 5, -64));
                g.variable_access(skips, 5, 64);
            }),
            _ => {
                // Spill a pointer, maybe clobber part of the slot, refill, use.
                self.out.push(stx(SIZE_DW, 10, 6, -72));
                if self.chance(20) {
                    let at = -72 + self.below(8) as i16;
                    self.out.push(st(SIZE_B, 10, at, 0));
                }
                self.out.push(ldx(SIZE_DW, 3, 10, -72));
                let (size, _, off) = self.edge_access(self.mem_len as i32);
                self.out.push(ldx(size, 9, 3, off));
            }
        }
    }

    fn idiom_map(&mut self) {
        let m = self.below(MAPS.len() as u64);
        let (_, value_size, max_entries) = MAPS[m as usize];
        let key = self.below(u64::from(max_entries) + 2);
        self.block(|g, skips| {
            g.out.push(st(SIZE_W, 10, -4, key));
            g.out.extend(ld_map(1, m));
            g.out.push(mov(2, 10));
            g.out.push(alu64_imm(ALU_ADD, 2, -4));
            if g.chance(60) {
                g.out.push(call(1));
                if g.chance(90) {
                    g.skip_if(skips, CLS_JMP, JMP_JEQ, 0, 0);
                }
                g.out.push(mov(7, 0));
                if g.chance(50) {
                    let (size, _, off) = g.edge_access(value_size as i32);
                    g.out.push(ldx(size, 9, 7, off));
                } else {
                    g.load_unknown(8);
                    g.variable_access(skips, 7, value_size as i32);
                }
            } else {
                // update: value at r10-40 (value_size bytes), maybe partly written.
                let words = value_size as i32 / 8;
                let written = if g.chance(85) {
                    words
                } else {
                    g.below(words as u64)
                };
                for i in 0..written {
                    g.out.push(stx(SIZE_DW, 10, 9, (-40 + 8 * i) as i16));
                }
                g.out.push(mov(3, 10));
                g.out.push(alu64_imm(ALU_ADD, 3, -40));
                g.out.push(mov_imm(4, 0));
                let id = if g.chance(80) { 2 } else { 3 };
                g.out.push(call(id));
            }
        });
    }

    fn idiom_alu(&mut self) {
        let ops = [
            ALU_ADD, ALU_SUB, ALU_MUL, ALU_DIV, ALU_OR, ALU_AND, ALU_LSH, ALU_RSH, ALU_MOD,
            ALU_XOR, ALU_ARSH,
        ];
        for _ in 0..1 + self.below(3) {
            let op = self.rng.pick(&ops);
            let dst = self.rng.pick(&[8, 9]);
            let imm = match op {
                ALU_LSH | ALU_RSH | ALU_ARSH => self.below(64),
                _ => self.rng.pick(&[0, 1, 3, 7, 255, -1, 4096, i32::MIN]),
            };
            if self.chance(30) {
                self.out
                    .push(Insn::new(CLS_ALU | op | SRC_K, dst, 0, 0, imm & 31));
            } else if self.chance(30) {
                self.out
                    .push(alu64_reg(op, dst, if dst == 8 { 9 } else { 8 }));
            } else {
                self.out.push(alu64_imm(op, dst, imm));
            }
        }
    }

    fn idiom_pointer_arith(&mut self) {
        // r3 = r6 + c1 - c2 (+ r8 bounded), then an access relative to it.
        let len = self.mem_len as i32;
        let c1 = self.below(len as u64 + 8);
        let c2 = self.below(c1 as u64 + 4);
        self.out.push(mov(3, 6));
        self.out.push(alu64_imm(ALU_ADD, 3, c1));
        self.out.push(alu64_imm(ALU_SUB, 3, c2));
        if self.chance(20) {
            // Pointer minus pointer is a scalar (a length).
            self.out.push(mov(8, 3));
            self.out.push(alu64_reg(ALU_SUB, 8, 6));
        }
        if self.chance(10) {
            // Operations that destroy pointer-ness.
            let op = self.rng.pick(&[ALU_AND, ALU_MUL, ALU_OR]);
            self.out.push(alu64_imm(op, 3, 0xff));
        }
        let region = len - (c1 - c2);
        let (size, _, off) = self.edge_access(region.max(1));
        self.out.push(ldx(size, 9, 3, off));
    }

    fn idiom_loop(&mut self) {
        // r5 = 0; do { access input[r5]; r5 += step } while (r5 < n)
        let width = self.rng.pick(&[1, 2, 4]);
        let size = match width {
            1 => SIZE_B,
            2 => SIZE_H,
            _ => SIZE_W,
        };
        let n = match self.below(6) {
            0 => self.mem_len as i32 + width,
            _ => self.below(self.mem_len as u64 / width as u64 + 1) * width,
        };
        let step = if self.chance(95) { width } else { 0 };
        self.out.push(mov_imm(5, 0));
        let top = self.out.len();
        self.out.push(mov(3, 6));
        self.out.push(alu64_reg(ALU_ADD, 3, 5));
        self.out.push(ldx(size, 0, 3, 0));
        self.out.push(alu64_reg(ALU_ADD, 9, 0));
        self.out.push(alu64_imm(ALU_ADD, 5, step));
        let here = self.out.len() as i32;
        let op = if self.chance(90) { JMP_JLT } else { JMP_JNE };
        self.out.push(Insn::new(
            CLS_JMP | op | SRC_K,
            5,
            0,
            (top as i32 - here - 1) as i16,
            n,
        ));
    }

    fn idiom_helper(&mut self) {
        match self.below(4) {
            0 => {
                self.out.push(call(self.rng.pick(&[5, 7, 8])));
                self.out.push(mov(8, 0));
            }
            1 => {
                // bpf_probe_read_kernel(stack buf, n, input): n bounded or not.
                self.block(|g, skips| {
                    g.load_unknown(8);
                    g.bound(skips, 8, 32);
                    if g.chance(80) {
                        g.skip_if(skips, CLS_JMP, JMP_JEQ, 8, 0);
                    }
                    g.out.push(mov(1, 10));
                    g.out.push(alu64_imm(ALU_ADD, 1, -32));
                    g.out.push(mov(2, 8));
                    g.out.push(mov(3, 6));
                    g.out.push(call(113));
                });
            }
            2 => {
                // The builtins: memset, memcpy or memmove (from the input,
                // which may be shorter than n) into a 32-byte stack buffer,
                // or memcmp of the two, n bounded or not; then a read at the
                // edge of the buffer.
                self.block(|g, skips| {
                    g.load_unknown(8);
                    g.bound(skips, 8, 32);
                    let builtin = g.rng.pick(&[0x400, 0x401, 0x402, 0x403]);
                    if builtin == 0x403 && g.chance(80) {
                        // memcmp reads its first buffer: initialise it.
                        g.out.push(st(SIZE_DW, 10, -32, 0));
                        g.out.push(st(SIZE_DW, 10, -24, 0));
                        g.out.push(st(SIZE_DW, 10, -16, 0));
                        g.out.push(st(SIZE_DW, 10, -8, 0));
                    }
                    g.out.push(mov(1, 10));
                    g.out.push(alu64_imm(ALU_ADD, 1, -32));
                    if builtin == 0x400 {
                        g.out.push(mov_imm(2, 0x5a));
                    } else {
                        g.out.push(mov(2, 6));
                    }
                    g.out.push(mov(3, 8));
                    g.out.push(call(builtin));
                    let (size, _, off) = g.edge_access(32);
                    g.out.push(ldx(size, 9, 10, off - 32));
                });
            }
            _ => {
                // Read a stack buffer a helper wrote: after probe_read_kernel
                // of a constant size, the bytes are initialised.
                let n = 1 + self.below(32);
                self.out.push(mov(1, 10));
                self.out.push(alu64_imm(ALU_ADD, 1, -32));
                self.out.push(mov_imm(2, n));
                self.out.push(mov(3, 6));
                self.out.push(call(113));
                let (size, _, off) = self.edge_access(n);
                self.out.push(ldx(size, 9, 10, off - 32));
            }
        }
    }
}

/// A program from `seed`.
pub fn generate(seed: u64) -> Generated {
    let mut rng = Rng::new(seed);
    let mem_len = rng.pick(&[8u32, 16, 20, 32, 64, 100]);
    let mut g = Gen {
        rng: &mut rng,
        mem_len,
        out: Vec::new(),
    };
    g.out.push(mov(6, 1));
    // r8/r9 start as known scalars unless the program forgets to.
    if g.chance(97) {
        g.out.push(mov_imm(8, 0));
    }
    if g.chance(97) {
        g.out.push(mov_imm(9, 0));
    }
    for _ in 0..1 + g.below(6) {
        match g.below(10) {
            0 | 1 => g.idiom_input(),
            2 => g.idiom_const_access(),
            3 => g.idiom_stack(),
            4 | 5 => g.idiom_map(),
            6 => g.idiom_alu(),
            7 => g.idiom_pointer_arith(),
            8 => g.idiom_loop(),
            _ => g.idiom_helper(),
        }
    }
    match g.below(20) {
        0 => {}                     // r0 as left (maybe a pointer, maybe unset)
        1 => g.out.push(mov(0, 6)), // leaks a pointer
        _ => g.out.push(mov(0, 9)),
    }
    g.out.push(Insn::new(OP_EXIT, 0, 0, 0, 0));
    Generated {
        insns: g.out,
        mem_len,
    }
}

/// Input bytes for a run: mostly small numbers and edge values, so that
/// loaded values hit the bounds the program checks.
pub fn input(seed: u64, len: u32) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x5eed_1234_abcd_ef01);
    let mut out = Vec::with_capacity(len as usize);
    while out.len() < len as usize {
        let v: u64 = match rng.below(6) {
            0 => 0,
            1 => rng.below(16),
            2 => rng.below(300),
            3 => u64::MAX - rng.below(4),
            4 => 1 << rng.below(64),
            _ => rng.next_u64(),
        };
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(len as usize);
    out
}
