//! Disassembler producing the dialect accepted by [`crate::asm`].
//!
//! Jump and call targets are written as relative `+N`/`-N`, so every line
//! assembles on its own. Each line is checked by re-assembling it: a slot
//! whose canonical text would not reproduce it bit for bit (unknown opcode,
//! non-zero unused fields, a truncated or malformed `lddw`, ...) is written as
//! `.raw 0x<64-bit word>` followed by a `#` comment saying what it is. Hence
//! `assemble(disassemble(p))` gives back exactly the bytes of `p`.

use crate::asm::assemble;
use crate::isa::*;

/// Disassembles a whole program, one instruction per line (`lddw` takes one
/// line for its two slots). Every line ends with a newline.
pub fn disassemble(insns: &[Insn]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while pc < insns.len() {
        let (text, n) = disassemble_insn(insns, pc);
        out.push_str(&text);
        out.push('\n');
        pc += n.max(1);
    }
    out
}

/// Disassembles the instruction at `pc`, returning its text and the number of
/// slots it consumed (2 for a well-formed `lddw`, otherwise 1). Returns an
/// empty string and 0 if `pc` is past the end.
pub fn disassemble_insn(insns: &[Insn], pc: usize) -> (String, usize) {
    let Some(insn) = insns.get(pc) else {
        return (String::new(), 0);
    };
    match canonical(insns, pc) {
        Ok((text, n)) => {
            if reassembles_to(&text, insns.get(pc..pc + n)) {
                (text, n)
            } else {
                (format!("{} # not canonical: {text}", raw(insn)), 1)
            }
        }
        Err(why) => (format!("{} # {why}", raw(insn)), 1),
    }
}

fn raw(insn: &Insn) -> String {
    format!(".raw 0x{:016x}", u64::from_le_bytes(insn.encode()))
}

fn reassembles_to(text: &str, want: Option<&[Insn]>) -> bool {
    let (Ok(got), Some(want)) = (assemble(text), want) else {
        return false;
    };
    got.len() == want.len() && got.iter().zip(want).all(|(a, b)| a.encode() == b.encode())
}

fn mem(reg: u8, off: i16) -> String {
    match off {
        0 => format!("[%r{reg}]"),
        o if o > 0 => format!("[%r{reg}+{o}]"),
        o => format!("[%r{reg}-{}]", -(o as i32)),
    }
}

/// Small immediates in decimal, large ones as their 32-bit hex pattern (which
/// the assembler reads back as the same bits).
fn imm(v: i32) -> String {
    if (-0x1000..=0xffff).contains(&v) {
        v.to_string()
    } else {
        format!("0x{:x}", v as u32)
    }
}

fn size_name(opc: u8) -> &'static str {
    match opc & 0x18 {
        SIZE_W => "w",
        SIZE_H => "h",
        SIZE_B => "b",
        _ => "dw",
    }
}

/// The canonical text of the instruction at `pc` and its slot count, or why
/// there is none. The text is not guaranteed to round-trip (unused fields are
/// ignored here); the caller checks that.
fn canonical(insns: &[Insn], pc: usize) -> Result<(String, usize), String> {
    let i = insns[pc];
    let (d, s) = (i.dst, i.src);
    let unknown = || Err(format!("unknown opcode 0x{:02x}", i.opc));
    let text = match i.class() {
        CLS_ALU | CLS_ALU64 => {
            let sfx = if i.class() == CLS_ALU { "32" } else { "" };
            let x = i.opc & SRC_X != 0;
            let op = i.opc & 0xf0;
            let name = match (op, i.off) {
                (ALU_ADD, _) => "add",
                (ALU_SUB, _) => "sub",
                (ALU_MUL, _) => "mul",
                (ALU_DIV, 1) => "sdiv",
                (ALU_DIV, _) => "div",
                (ALU_OR, _) => "or",
                (ALU_AND, _) => "and",
                (ALU_LSH, _) => "lsh",
                (ALU_RSH, _) => "rsh",
                (ALU_MOD, 1) => "smod",
                (ALU_MOD, _) => "mod",
                (ALU_XOR, _) => "xor",
                (ALU_MOV, _) => "mov",
                (ALU_ARSH, _) => "arsh",
                (ALU_NEG, _) if x => return unknown(),
                (ALU_NEG, _) => return Ok((format!("neg{sfx} %r{d}"), 1)),
                (ALU_END, _) => {
                    let name = match (i.class(), x) {
                        (CLS_ALU, false) => "le",
                        (CLS_ALU, true) => "be",
                        (CLS_ALU64, false) => "bswap",
                        _ => return unknown(),
                    };
                    return Ok((format!("{name}{} %r{d}", i.imm), 1));
                }
                _ => return unknown(),
            };
            if op == ALU_MOV && x && i.off != 0 {
                format!(
                    "movsx{}{} %r{d}, %r{s}",
                    i.off,
                    if sfx.is_empty() { "64" } else { sfx }
                )
            } else if x {
                format!("{name}{sfx} %r{d}, %r{s}")
            } else {
                format!("{name}{sfx} %r{d}, {}", imm(i.imm))
            }
        }
        CLS_JMP | CLS_JMP32 => {
            let jmp32 = i.class() == CLS_JMP32;
            let x = i.opc & SRC_X != 0;
            let name = match i.opc & 0xf0 {
                // JMP32 has no call/exit, and only call has an X form (callx).
                JMP_CALL | JMP_EXIT if jmp32 => return unknown(),
                JMP_JA | JMP_EXIT if x => return unknown(),
                JMP_JA if jmp32 => return Ok((format!("ja32 {:+}", i.imm), 1)),
                JMP_JA => return Ok((format!("ja {:+}", i.off), 1)),
                JMP_CALL if x => return Ok((format!("call %r{d}"), 1)),
                JMP_CALL => {
                    let text = match s {
                        CALL_LOCAL => format!("call local {:+}", i.imm),
                        CALL_BTF_ID => format!("call btf {}", i.imm),
                        _ => format!("call {}", i.imm),
                    };
                    return Ok((text, 1));
                }
                JMP_EXIT => return Ok(("exit".to_string(), 1)),
                JMP_JEQ => "jeq",
                JMP_JGT => "jgt",
                JMP_JGE => "jge",
                JMP_JSET => "jset",
                JMP_JNE => "jne",
                JMP_JSGT => "jsgt",
                JMP_JSGE => "jsge",
                JMP_JLT => "jlt",
                JMP_JLE => "jle",
                JMP_JSLT => "jslt",
                JMP_JSLE => "jsle",
                _ => return unknown(),
            };
            let sfx = if jmp32 { "32" } else { "" };
            if x {
                format!("{name}{sfx} %r{d}, %r{s}, {:+}", i.off)
            } else {
                format!("{name}{sfx} %r{d}, {}, {:+}", imm(i.imm), i.off)
            }
        }
        CLS_LD => match i.opc {
            OP_LDDW => {
                let Some(hi) = insns.get(pc + 1) else {
                    return Err("truncated lddw".to_string());
                };
                let text = match s {
                    0 => {
                        let v = (i.imm as u32 as u64) | ((hi.imm as u32 as u64) << 32);
                        format!("lddw %r{d}, 0x{v:x}")
                    }
                    PSEUDO_MAP_FD => format!("lddw %r{d}, map_fd {}", i.imm),
                    PSEUDO_MAP_VALUE => format!("lddw %r{d}, map_value {}, {}", i.imm, hi.imm),
                    PSEUDO_BTF_ID => format!("lddw %r{d}, btf_id {}", i.imm),
                    PSEUDO_FUNC => format!("lddw %r{d}, func {:+}", i.imm),
                    PSEUDO_MAP_IDX => format!("lddw %r{d}, map_idx {}", i.imm),
                    PSEUDO_MAP_IDX_VALUE => {
                        format!("lddw %r{d}, map_idx_value {}, {}", i.imm, hi.imm)
                    }
                    _ => return Err(format!("lddw with unknown source {s}")),
                };
                return Ok((text, 2));
            }
            o if o & 0xe0 == MODE_ABS && o & 0x18 != SIZE_DW => {
                format!("ldabs{} {}", size_name(o), i.imm)
            }
            o if o & 0xe0 == MODE_IND && o & 0x18 != SIZE_DW => {
                format!("ldind{} %r{s}, {}", size_name(o), i.imm)
            }
            _ => return unknown(),
        },
        CLS_LDX => match i.opc & 0xe0 {
            MODE_MEM => format!("ldx{} %r{d}, {}", size_name(i.opc), mem(s, i.off)),
            MODE_MEMSX => format!("ldxs{} %r{d}, {}", size_name(i.opc), mem(s, i.off)),
            _ => return unknown(),
        },
        CLS_ST => match i.opc & 0xe0 {
            MODE_MEM => format!("st{} {}, {}", size_name(i.opc), mem(d, i.off), imm(i.imm)),
            _ => return unknown(),
        },
        // CLS_STX: the class has 3 bits, so this is the last case.
        _ => match (i.opc & 0xe0, i.opc & 0x18) {
            (MODE_MEM, _) => format!("stx{} {}, %r{s}", size_name(i.opc), mem(d, i.off)),
            (MODE_ATOMIC, SIZE_W | SIZE_DW) => {
                let sfx = if i.opc & 0x18 == SIZE_W { "32" } else { "" };
                let (fetch, name) = match i.imm {
                    ATOMIC_XCHG => ("", "xchg"),
                    ATOMIC_CMPXCHG => ("", "cmpxchg"),
                    op => {
                        let fetch = if op & ATOMIC_FETCH != 0 { "fetch " } else { "" };
                        let name = match op & !ATOMIC_FETCH {
                            ATOMIC_ADD => "add",
                            ATOMIC_OR => "or",
                            ATOMIC_AND => "and",
                            ATOMIC_XOR => "xor",
                            _ => return Err(format!("unknown atomic operation 0x{op:x}")),
                        };
                        (fetch, name)
                    }
                };
                format!("lock {fetch}{name}{sfx} {}, %r{s}", mem(d, i.off))
            }
            _ => return unknown(),
        },
    };
    Ok((text, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(words: &[u64]) -> Vec<Insn> {
        words
            .iter()
            .map(|x| Insn::decode(&x.to_le_bytes()))
            .collect()
    }

    fn bytes(insns: &[Insn]) -> Vec<u8> {
        encode_all(insns)
    }

    fn roundtrip(insns: &[Insn]) -> String {
        let text = disassemble(insns);
        let back = assemble(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(bytes(&back), bytes(insns), "{text}");
        text
    }

    #[test]
    fn canonical_text() {
        let src = "mov %r0, 1\nadd32 %r1, %r2\nsdiv %r1, -3\nmovsx3264 %r1, %r2\n\
                   le16 %r1\nbe32 %r2\nbswap64 %r3\nneg32 %r4\n\
                   ldxsh %r1, [%r2-4]\nstw [%r1+8], -1\nstxdw [%r10-512], %r1\n\
                   lock fetch add32 [%r10-8], %r1\nlock cmpxchg [%r1], %r2\n\
                   jne32 %r1, 256, -2\njset %r1, %r2, +0\nja +3\nja32 -70000\n\
                   call 1\ncall local -5\ncall %r2\ncall btf 7\n\
                   lddw %r1, 0x1122334455667788\nlddw %r1, map_value 3, 16\n\
                   lddw %r2, func +4\nldabsh 12\nldindw %r3, -1\nexit\n";
        let insns = assemble(src).unwrap();
        assert_eq!(disassemble(&insns), src);
    }

    #[test]
    fn non_canonical_slots_become_raw() {
        // ja32 encoding (0x06) alone is fine; unknown opcode 0x07|0xe0 is not.
        let insns = w(&[
            0x0000000000000006,
            0x00000000000000e7,
            0x0000000500000107, // add %r1, 5 ...
            0x0000000500030107, // ... with a stray offset
            0x5566778800000018, // lddw with bad second half
            0x0000000000011100,
            0x0000000000000018, // truncated lddw at the end
        ]);
        let text = roundtrip(&insns);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ja32 +0");
        assert!(
            lines[1].starts_with(".raw 0x00000000000000e7 # unknown"),
            "{text}"
        );
        assert_eq!(lines[2], "add %r1, 5");
        assert!(
            lines[3].starts_with(".raw 0x0000000500030107 # not canonical"),
            "{text}"
        );
        assert!(lines[4].starts_with(".raw 0x5566778800000018"), "{text}");
        assert!(lines[5].starts_with(".raw 0x0000000000011100"), "{text}");
        assert!(lines[6].contains("truncated lddw"), "{text}");
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn disassemble_insn_reports_slots() {
        let insns = assemble("lddw %r0, 5\nexit").unwrap();
        assert_eq!(
            disassemble_insn(&insns, 0),
            ("lddw %r0, 0x5".to_string(), 2)
        );
        assert_eq!(disassemble_insn(&insns, 2), ("exit".to_string(), 1));
        assert_eq!(disassemble_insn(&insns, 3), (String::new(), 0));
        // Starting in the middle of an lddw gives a raw second slot.
        assert!(disassemble_insn(&insns, 1).0.starts_with(".raw "));
    }

    /// A small deterministic generator (64-bit LCG, high bits used).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let a = self.0 >> 32;
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (a << 32) | (self.0 >> 32)
        }
    }

    #[test]
    fn random_slots_roundtrip() {
        // Opcodes that have a text form, so that the generator often hits
        // canonical encodings and not only `.raw`.
        let mut known = Vec::new();
        for opc in 0..=255u8 {
            let is_known = [0u8, 2].iter().any(|&src| {
                [0i16, 1, 8].iter().any(|&off| {
                    [0i32, 1, 16, ATOMIC_XCHG].iter().any(|&imm| {
                        let slots = [Insn::new(opc, 1, src, off, imm), Insn::default()];
                        !disassemble_insn(&slots, 0).0.starts_with(".raw")
                    })
                })
            });
            if is_known {
                known.push(opc);
            }
        }
        assert!(known.len() > 100, "only {} opcodes known", known.len());

        let mut rng = Rng(0x00c0_ffee);
        let mut canonical = 0usize;
        let mut total = 0usize;
        let mut lddw = 0usize;
        for _ in 0..200 {
            let mut prog = Vec::with_capacity(1000);
            for _ in 0..1000 {
                let r = rng.next();
                let mut word = rng.next();
                let mask = rng.next();
                // Zero fields at random (each with probability 3/4) to
                // produce plausible instructions.
                if mask & 3 != 0 {
                    word &= !0x0000_0000_ffff_0000; // off
                }
                if (mask >> 2) & 3 != 0 {
                    word &= !0xffff_ffff_0000_0000; // imm
                }
                if (mask >> 4) & 3 != 0 {
                    word &= !0x0000_0000_0000_f000; // src
                }
                if (mask >> 6) & 1 != 0 {
                    word &= 0x0000_0000_ffff_ffff; // small imm
                    word |= (r & 0x7f) << 32;
                }
                if (mask >> 7) & 7 != 0 {
                    word = (word & !0xff) | u64::from(known[(r >> 8) as usize % known.len()]);
                }
                if (mask >> 10) & 7 == 0 {
                    word &= 0xffff_ffff_0000_0000; // second lddw slot shape
                }
                prog.push(Insn::decode(&word.to_le_bytes()));
            }
            let text = roundtrip(&prog);
            total += text.lines().count();
            canonical += text.lines().filter(|l| !l.starts_with(".raw")).count();
            lddw += text.lines().filter(|l| l.starts_with("lddw")).count();
        }
        // Sanity check that the generator exercises real instructions.
        assert!(canonical * 3 > total, "{canonical} of {total} canonical");
        assert!(lddw > 50, "only {lddw} two-slot lddw");
    }
}
