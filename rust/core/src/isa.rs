//! The eBPF instruction set (RFC 9669): opcode constants and the 8-byte
//! instruction encoding.
//!
//! An instruction is `opcode:8 | dst:4 src:4 | off:16 | imm:32`, little-endian.
//! `lddw` (and its map pseudo forms) take two slots; the second slot carries
//! the upper 32 bits of the immediate in its `imm` and must be otherwise zero.

/// Size of one instruction slot in bytes.
pub const INSN_SIZE: usize = 8;
/// Number of general registers (r0..r10); r10 is the read-only frame pointer.
pub const NUM_REGS: u8 = 11;
/// The frame pointer register.
pub const FRAME_REG: u8 = 10;
/// Bytes of stack each call frame gets (as in the kernel).
pub const STACK_FRAME_SIZE: usize = 512;
/// Deepest nesting of BPF-to-BPF calls, main program included (the kernel's
/// MAX_CALL_FRAMES).
pub const MAX_CALL_FRAMES: usize = 8;

// Instruction classes (low 3 bits of the opcode).
pub const CLS_LD: u8 = 0x00;
pub const CLS_LDX: u8 = 0x01;
pub const CLS_ST: u8 = 0x02;
pub const CLS_STX: u8 = 0x03;
pub const CLS_ALU: u8 = 0x04;
pub const CLS_JMP: u8 = 0x05;
pub const CLS_JMP32: u8 = 0x06;
pub const CLS_ALU64: u8 = 0x07;

// Source operand for ALU and JMP classes.
pub const SRC_K: u8 = 0x00;
pub const SRC_X: u8 = 0x08;

// ALU operations (high 4 bits).
pub const ALU_ADD: u8 = 0x00;
pub const ALU_SUB: u8 = 0x10;
pub const ALU_MUL: u8 = 0x20;
pub const ALU_DIV: u8 = 0x30;
pub const ALU_OR: u8 = 0x40;
pub const ALU_AND: u8 = 0x50;
pub const ALU_LSH: u8 = 0x60;
pub const ALU_RSH: u8 = 0x70;
pub const ALU_NEG: u8 = 0x80;
pub const ALU_MOD: u8 = 0x90;
pub const ALU_XOR: u8 = 0xa0;
pub const ALU_MOV: u8 = 0xb0;
pub const ALU_ARSH: u8 = 0xc0;
pub const ALU_END: u8 = 0xd0;

// Jump operations (high 4 bits).
pub const JMP_JA: u8 = 0x00;
pub const JMP_JEQ: u8 = 0x10;
pub const JMP_JGT: u8 = 0x20;
pub const JMP_JGE: u8 = 0x30;
pub const JMP_JSET: u8 = 0x40;
pub const JMP_JNE: u8 = 0x50;
pub const JMP_JSGT: u8 = 0x60;
pub const JMP_JSGE: u8 = 0x70;
pub const JMP_CALL: u8 = 0x80;
pub const JMP_EXIT: u8 = 0x90;
pub const JMP_JLT: u8 = 0xa0;
pub const JMP_JLE: u8 = 0xb0;
pub const JMP_JSLT: u8 = 0xc0;
pub const JMP_JSLE: u8 = 0xd0;

// Load/store size (bits 3-4) and mode (bits 5-7).
pub const SIZE_W: u8 = 0x00;
pub const SIZE_H: u8 = 0x08;
pub const SIZE_B: u8 = 0x10;
pub const SIZE_DW: u8 = 0x18;
pub const MODE_IMM: u8 = 0x00;
pub const MODE_ABS: u8 = 0x20;
pub const MODE_IND: u8 = 0x40;
pub const MODE_MEM: u8 = 0x60;
pub const MODE_MEMSX: u8 = 0x80;
pub const MODE_ATOMIC: u8 = 0xc0;

// Atomic operations (in imm).
pub const ATOMIC_ADD: i32 = 0x00;
pub const ATOMIC_OR: i32 = 0x40;
pub const ATOMIC_AND: i32 = 0x50;
pub const ATOMIC_XOR: i32 = 0xa0;
pub const ATOMIC_FETCH: i32 = 0x01;
pub const ATOMIC_XCHG: i32 = 0xe0 | ATOMIC_FETCH;
pub const ATOMIC_CMPXCHG: i32 = 0xf0 | ATOMIC_FETCH;

// Whole opcodes that are referred to by name.
pub const OP_LDDW: u8 = CLS_LD | MODE_IMM | SIZE_DW; // 0x18
pub const OP_JA: u8 = CLS_JMP | JMP_JA; // 0x05
pub const OP_JA32: u8 = CLS_JMP32 | JMP_JA; // 0x06, "gotol"
pub const OP_CALL: u8 = CLS_JMP | JMP_CALL; // 0x85
pub const OP_CALLX: u8 = CLS_JMP | JMP_CALL | SRC_X; // 0x8d
pub const OP_EXIT: u8 = CLS_JMP | JMP_EXIT; // 0x95

// `src` values of `call` (0x85).
pub const CALL_HELPER: u8 = 0;
pub const CALL_LOCAL: u8 = 1;
pub const CALL_BTF_ID: u8 = 2;

// `src` values of `lddw` (the libbpf / kernel pseudo forms).
pub const PSEUDO_MAP_FD: u8 = 1;
pub const PSEUDO_MAP_VALUE: u8 = 2;
pub const PSEUDO_BTF_ID: u8 = 3;
pub const PSEUDO_FUNC: u8 = 4;
pub const PSEUDO_MAP_IDX: u8 = 5;
pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;

/// One decoded instruction slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Insn {
    pub opc: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(opc: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            opc,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Decodes one slot; registers are kept as their raw 4-bit values so that
    /// validation can report out-of-range registers precisely.
    pub fn decode(b: &[u8; INSN_SIZE]) -> Self {
        Insn {
            opc: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    pub fn encode(&self) -> [u8; INSN_SIZE] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.opc,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }

    pub fn class(&self) -> u8 {
        self.opc & 0x07
    }

    /// True for the first slot of a two-slot `lddw`.
    pub fn is_lddw(&self) -> bool {
        self.opc == OP_LDDW
    }

    /// Relative target of a jump (`off`, or `imm` for `ja32`); `None` for
    /// everything else, calls and exit included.
    pub fn jump_offset(&self) -> Option<i64> {
        match self.class() {
            CLS_JMP32 if self.opc == OP_JA32 => Some(self.imm as i64),
            CLS_JMP | CLS_JMP32 => {
                let op = self.opc & 0xf0;
                (op != JMP_CALL && op != JMP_EXIT).then_some(self.off as i64)
            }
            _ => None,
        }
    }

    /// Absolute target of a jump at `pc`.
    pub fn jump_target(&self, pc: usize) -> Option<usize> {
        self.jump_offset().map(|rel| (pc as i64 + 1 + rel) as usize)
    }

    /// `ja` or `ja32`.
    pub fn is_unconditional_jump(&self) -> bool {
        self.opc == OP_JA || self.opc == OP_JA32
    }

    /// Whether control can continue with the next instruction.
    pub fn falls_through(&self) -> bool {
        self.opc != OP_EXIT && !self.is_unconditional_jump()
    }
}

/// Splits a byte string into instruction slots. The length must be a
/// multiple of 8; the error carries the number of trailing bytes.
pub fn decode_all(code: &[u8]) -> Result<Vec<Insn>, usize> {
    if !code.len().is_multiple_of(INSN_SIZE) {
        return Err(code.len() % INSN_SIZE);
    }
    Ok(code
        .chunks_exact(INSN_SIZE)
        .map(|c| Insn::decode(c.try_into().expect("chunk of 8")))
        .collect())
}

/// Encodes slots back to bytes.
pub fn encode_all(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.encode()).collect()
}

/// Size in bytes of a load/store with the given size bits.
pub fn access_size(opc: u8) -> u8 {
    match opc & 0x18 {
        SIZE_W => 4,
        SIZE_H => 2,
        SIZE_B => 1,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip() {
        let i = Insn::new(0xb7, 3, 9, -2, -123456);
        assert_eq!(Insn::decode(&i.encode()), i);
    }

    #[test]
    fn raw_word_layout_matches_conformance_format() {
        // 0x5566778800000018 read little-endian: opcode 0x18, imm 0x55667788.
        let i = Insn::decode(&0x5566778800000018u64.to_le_bytes());
        assert_eq!(i.opc, 0x18);
        assert_eq!(i.imm, 0x55667788);
        assert_eq!((i.dst, i.src, i.off), (0, 0, 0));
    }

    #[test]
    fn decode_all_rejects_partial_slot() {
        assert_eq!(decode_all(&[0u8; 12]), Err(4));
        assert_eq!(decode_all(&[]).unwrap().len(), 0);
    }
}
