//! A decoded program and the structural checks every program passes at load
//! time, whatever the safety mode: valid opcodes and reserved fields, register
//! numbers, no writes to the frame pointer, well-formed `lddw`, jump and call
//! targets inside their function, functions that end in `exit` or `ja`.

use crate::error::ProgramError;
use crate::isa::*;

/// Longest program accepted by default (as uBPF; the kernel's limit on
/// instructions *processed* by its verifier is a different thing).
pub const DEFAULT_MAX_LEN: usize = 65536;

/// One BPF-to-BPF function: slots `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub start: usize,
    pub end: usize,
}

/// An `lddw` pseudo load that refers to a map (or other kernel object) and
/// must be resolved when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub pc: usize,
    /// One of the `PSEUDO_*` constants.
    pub kind: u8,
    /// The fd, index or BTF id in the first slot's imm.
    pub id: i32,
    /// The offset into the map value in the second slot's imm (map-value forms).
    pub offset: i32,
}

/// A decoded, structurally valid program. Immutable once built.
#[derive(Clone, Debug)]
pub struct Program {
    insns: Vec<Insn>,
    functions: Vec<Function>,
    helper_calls: Vec<(usize, u32)>,
    object_refs: Vec<ObjectRef>,
}

impl Program {
    /// Decodes and checks bytecode with the default size limit.
    pub fn from_bytes(code: &[u8]) -> Result<Self, ProgramError> {
        Self::from_bytes_with_limit(code, DEFAULT_MAX_LEN)
    }

    pub fn from_bytes_with_limit(code: &[u8], max_len: usize) -> Result<Self, ProgramError> {
        let insns = decode_all(code).map_err(|rest| {
            ProgramError::whole(format!(
                "code is {} bytes, not a multiple of the 8-byte instruction size ({rest} bytes left over)",
                code.len()
            ))
        })?;
        Self::from_insns(insns, max_len)
    }

    pub fn from_insns(insns: Vec<Insn>, max_len: usize) -> Result<Self, ProgramError> {
        if insns.is_empty() {
            return Err(ProgramError::whole("program is empty"));
        }
        if insns.len() > max_len {
            return Err(ProgramError::whole(format!(
                "too many instructions: {} (max {max_len})",
                insns.len()
            )));
        }
        let mut checker = Checker {
            insns: &insns,
            second_half: vec![false; insns.len()],
            func_starts: vec![0],
            helper_calls: Vec::new(),
            object_refs: Vec::new(),
        };
        checker.check_slots()?;
        let functions = checker.check_control_flow()?;
        let helper_calls = checker.helper_calls;
        let object_refs = checker.object_refs;
        Ok(Program {
            insns,
            functions,
            helper_calls,
            object_refs,
        })
    }

    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        encode_all(&self.insns)
    }

    /// Functions in slot order; the first is the entry point.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// `(pc, helper id)` of every static helper call.
    pub fn helper_calls(&self) -> &[(usize, u32)] {
        &self.helper_calls
    }

    /// Whether any jump goes backwards (a loop, or a way to repeat code).
    pub fn has_back_edges(&self) -> bool {
        self.insns
            .iter()
            .enumerate()
            .any(|(pc, i)| i.jump_target(pc).is_some_and(|t| t <= pc))
    }

    /// Whether the program calls helpers, statically or through `callx`.
    pub fn calls_helpers(&self) -> bool {
        !self.helper_calls.is_empty() || self.insns.iter().any(|i| i.opc == OP_CALLX)
    }

    /// Map and object references made by `lddw` pseudo loads.
    pub fn object_refs(&self) -> &[ObjectRef] {
        &self.object_refs
    }
}

struct Checker<'a> {
    insns: &'a [Insn],
    second_half: Vec<bool>,
    func_starts: Vec<usize>,
    helper_calls: Vec<(usize, u32)>,
    object_refs: Vec<ObjectRef>,
}

impl Checker<'_> {
    fn check_slots(&mut self) -> Result<(), ProgramError> {
        let n = self.insns.len();
        let mut pc = 0;
        while pc < n {
            let insn = self.insns[pc];
            check_opcode(pc, &insn)?;
            check_registers(pc, &insn)?;
            if insn.is_lddw() {
                self.check_lddw(pc)?;
                self.second_half[pc + 1] = true;
                pc += 2;
                continue;
            }
            if insn.opc == OP_CALL {
                match insn.src {
                    CALL_HELPER => self.helper_calls.push((pc, insn.imm as u32)),
                    CALL_LOCAL => {
                        let target = self.target(pc, insn.imm as i64)?;
                        self.func_starts.push(target);
                    }
                    _ => {}
                }
            }
            pc += 1;
        }
        Ok(())
    }

    fn check_lddw(&mut self, pc: usize) -> Result<(), ProgramError> {
        let insn = self.insns[pc];
        let Some(next) = self.insns.get(pc + 1) else {
            return Err(ProgramError::at(pc, "incomplete lddw"));
        };
        if next.opc != 0 {
            return Err(ProgramError::at(pc, "incomplete lddw"));
        }
        if next.dst != 0 || next.src != 0 || next.off != 0 {
            return Err(ProgramError::at(pc + 1, "invalid lddw second half"));
        }
        match insn.src {
            0 => {}
            PSEUDO_FUNC => {
                let target = self.target(pc, insn.imm as i64)?;
                self.func_starts.push(target);
            }
            PSEUDO_MAP_FD | PSEUDO_MAP_VALUE | PSEUDO_BTF_ID | PSEUDO_MAP_IDX
            | PSEUDO_MAP_IDX_VALUE => {
                if matches!(insn.src, PSEUDO_MAP_FD | PSEUDO_BTF_ID | PSEUDO_MAP_IDX)
                    && next.imm != 0
                {
                    return Err(ProgramError::at(
                        pc + 1,
                        "invalid lddw second half: must be zero for this pseudo load",
                    ));
                }
                self.object_refs.push(ObjectRef {
                    pc,
                    kind: insn.src,
                    id: insn.imm,
                    offset: next.imm,
                })
            }
            _ => return Err(ProgramError::at(pc, "invalid source register for LDDW")),
        }
        Ok(())
    }

    /// Target of a relative jump or call; must be a real slot.
    fn target(&self, pc: usize, rel: i64) -> Result<usize, ProgramError> {
        let t = pc as i64 + 1 + rel;
        if t < 0 || t >= self.insns.len() as i64 {
            return Err(ProgramError::at(pc, "jump out of bounds"));
        }
        let t = t as usize;
        if t > 0 && self.insns[t - 1].is_lddw() && self.is_first_half(t - 1) {
            return Err(ProgramError::at(pc, "jump to middle of lddw"));
        }
        Ok(t)
    }

    /// Whether slot `i` (an lddw opcode) really starts an lddw, rather than
    /// being the second half of an earlier one.
    fn is_first_half(&self, i: usize) -> bool {
        let mut j = i;
        // Count consecutive lddw opcodes backwards: parity decides.
        while j > 0 && self.insns[j - 1].is_lddw() {
            j -= 1;
        }
        (i - j).is_multiple_of(2)
    }

    fn check_control_flow(&mut self) -> Result<Vec<Function>, ProgramError> {
        let n = self.insns.len();
        self.func_starts.sort_unstable();
        self.func_starts.dedup();
        let starts = self.func_starts.clone();
        let mut functions = Vec::with_capacity(starts.len());
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(n);
            functions.push(Function { start, end });
        }
        for f in &functions {
            let mut pc = f.start;
            while pc < f.end {
                let insn = self.insns[pc];
                if let Some(rel) = insn.jump_offset() {
                    let t = self.target(pc, rel)?;
                    if t < f.start || t >= f.end {
                        return Err(ProgramError::at(pc, "jump out of bounds"));
                    }
                    if t == pc && insn.is_unconditional_jump() {
                        return Err(ProgramError::at(pc, "infinite loop"));
                    }
                }
                pc += if insn.is_lddw() { 2 } else { 1 };
            }
            // The last instruction of each function (not a second lddw half).
            let last = if f.end >= 2 && self.second_half[f.end - 1] {
                None
            } else {
                Some(self.insns[f.end - 1])
            };
            let ends_ok = last.is_some_and(|i| !i.falls_through());
            if !ends_ok {
                return Err(ProgramError::at(
                    f.end - 1,
                    "sub-program does not end with EXIT or unconditional jump",
                ));
            }
        }
        Ok(functions)
    }
}

fn unknown(pc: usize, insn: &Insn) -> ProgramError {
    ProgramError::at(pc, format!("unknown opcode 0x{:02x}", insn.opc))
}

fn reserved(pc: usize, field: &str) -> ProgramError {
    ProgramError::at(pc, format!("reserved field '{field}' must be zero"))
}

/// Checks that the opcode exists and its unused fields are zero, as the
/// kernel does, so that every accepted encoding has one meaning.
fn check_opcode(pc: usize, insn: &Insn) -> Result<(), ProgramError> {
    let opc = insn.opc;
    match insn.class() {
        CLS_LD => match opc {
            OP_LDDW => {
                if insn.off != 0 {
                    return Err(reserved(pc, "off"));
                }
                Ok(())
            }
            0x20 | 0x28 | 0x30 | 0x40 | 0x48 | 0x50 => {
                if insn.off != 0 {
                    return Err(reserved(pc, "off"));
                }
                if opc & 0xe0 == MODE_ABS && insn.src != 0 {
                    return Err(reserved(pc, "src"));
                }
                if insn.dst != 0 {
                    return Err(reserved(pc, "dst"));
                }
                Ok(())
            }
            _ => Err(unknown(pc, insn)),
        },
        CLS_LDX => match opc {
            0x61 | 0x69 | 0x71 | 0x79 | 0x81 | 0x89 | 0x91 => {
                if insn.imm != 0 {
                    return Err(reserved(pc, "imm"));
                }
                Ok(())
            }
            _ => Err(unknown(pc, insn)),
        },
        CLS_ST => match opc {
            0x62 | 0x6a | 0x72 | 0x7a => {
                if insn.src != 0 {
                    return Err(reserved(pc, "src"));
                }
                Ok(())
            }
            _ => Err(unknown(pc, insn)),
        },
        CLS_STX => match opc {
            0x63 | 0x6b | 0x73 | 0x7b => {
                if insn.imm != 0 {
                    return Err(reserved(pc, "imm"));
                }
                Ok(())
            }
            0xc3 | 0xdb => match insn.imm {
                ATOMIC_ADD | ATOMIC_OR | ATOMIC_AND | ATOMIC_XOR => Ok(()),
                i if i == ATOMIC_ADD | ATOMIC_FETCH
                    || i == ATOMIC_OR | ATOMIC_FETCH
                    || i == ATOMIC_AND | ATOMIC_FETCH
                    || i == ATOMIC_XOR | ATOMIC_FETCH
                    || i == ATOMIC_XCHG
                    || i == ATOMIC_CMPXCHG =>
                {
                    Ok(())
                }
                i => Err(ProgramError::at(
                    pc,
                    format!("invalid atomic operation 0x{:02x}", i as u32),
                )),
            },
            _ => Err(unknown(pc, insn)),
        },
        CLS_ALU | CLS_ALU64 => check_alu(pc, insn),
        _ => check_jmp(pc, insn),
    }
}

fn check_alu(pc: usize, insn: &Insn) -> Result<(), ProgramError> {
    let op = insn.opc & 0xf0;
    let is64 = insn.class() == CLS_ALU64;
    let reg_src = insn.opc & SRC_X != 0;
    if op > ALU_END {
        return Err(unknown(pc, insn));
    }
    if op == ALU_END {
        // 0xd4 le, 0xdc be, 0xd7 bswap; 0xdf does not exist.
        if is64 && reg_src {
            return Err(unknown(pc, insn));
        }
        if !matches!(insn.imm, 16 | 32 | 64) {
            return Err(ProgramError::at(pc, "invalid endian immediate"));
        }
        if insn.off != 0 {
            return Err(reserved(pc, "off"));
        }
        return Ok(());
    }
    if op == ALU_NEG {
        if reg_src {
            return Err(unknown(pc, insn));
        }
        if insn.off != 0 || insn.imm != 0 {
            return Err(reserved(pc, "off/imm"));
        }
        return Ok(());
    }
    let off_ok = match op {
        ALU_DIV | ALU_MOD => insn.off == 0 || insn.off == 1,
        ALU_MOV if reg_src => match insn.off {
            0 | 8 | 16 => true,
            32 => is64,
            _ => false,
        },
        _ => insn.off == 0,
    };
    if !off_ok {
        return Err(ProgramError::at(
            pc,
            format!("invalid offset {} for this ALU operation", insn.off),
        ));
    }
    if reg_src && insn.imm != 0 {
        return Err(reserved(pc, "imm"));
    }
    Ok(())
}

fn check_jmp(pc: usize, insn: &Insn) -> Result<(), ProgramError> {
    let op = insn.opc & 0xf0;
    let is32 = insn.class() == CLS_JMP32;
    let reg_src = insn.opc & SRC_X != 0;
    match op {
        JMP_JA => {
            if reg_src {
                return Err(unknown(pc, insn));
            }
            if is32 {
                if insn.off != 0 {
                    return Err(reserved(pc, "off"));
                }
            } else if insn.imm != 0 {
                return Err(reserved(pc, "imm"));
            }
            Ok(())
        }
        JMP_CALL => {
            if is32 {
                return Err(unknown(pc, insn));
            }
            if insn.off != 0 {
                return Err(reserved(pc, "off"));
            }
            if reg_src {
                // callx: target register in dst.
                if insn.imm != 0 || insn.src != 0 {
                    return Err(reserved(pc, "imm/src"));
                }
                return Ok(());
            }
            if insn.dst != 0 {
                return Err(reserved(pc, "dst"));
            }
            match insn.src {
                CALL_HELPER | CALL_LOCAL => Ok(()),
                CALL_BTF_ID => Err(ProgramError::at(
                    pc,
                    "calls to kernel functions by BTF id (kfuncs) are not supported",
                )),
                _ => Err(ProgramError::at(
                    pc,
                    format!("invalid call kind (src {})", insn.src),
                )),
            }
        }
        JMP_EXIT => {
            if is32 || reg_src {
                return Err(unknown(pc, insn));
            }
            if insn.dst != 0 || insn.src != 0 || insn.off != 0 || insn.imm != 0 {
                return Err(reserved(pc, "dst/src/off/imm"));
            }
            Ok(())
        }
        0xe0 | 0xf0 => Err(unknown(pc, insn)),
        _ => {
            if reg_src && insn.imm != 0 {
                return Err(reserved(pc, "imm"));
            }
            Ok(())
        }
    }
}

/// Register numbers in range, and nothing writes r10.
fn check_registers(pc: usize, insn: &Insn) -> Result<(), ProgramError> {
    if insn.dst >= NUM_REGS {
        return Err(ProgramError::at(pc, "invalid destination register"));
    }
    let src_is_reg = match insn.class() {
        CLS_LD => insn.opc & 0xe0 == MODE_IND,
        CLS_JMP => insn.opc != OP_CALL,
        _ => true,
    };
    if src_is_reg && insn.src >= NUM_REGS {
        return Err(ProgramError::at(pc, "invalid source register"));
    }
    let writes_dst = matches!(insn.class(), CLS_ALU | CLS_ALU64 | CLS_LDX) || insn.is_lddw();
    if writes_dst && insn.dst == FRAME_REG {
        return Err(ProgramError::at(
            pc,
            "cannot write to r10, the read-only frame pointer",
        ));
    }
    if matches!(insn.opc, 0xc3 | 0xdb)
        && insn.imm & ATOMIC_FETCH != 0
        && insn.imm != ATOMIC_CMPXCHG
        && insn.src == FRAME_REG
    {
        return Err(ProgramError::at(
            pc,
            "cannot write to r10, the read-only frame pointer (atomic fetch into r10)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(words: &[u64]) -> Result<Program, ProgramError> {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        Program::from_bytes(&bytes)
    }

    const EXIT: u64 = 0x95;

    #[test]
    fn accepts_minimal_program() {
        let p = prog(&[0xb7, EXIT]).unwrap();
        assert_eq!(p.functions(), &[Function { start: 0, end: 2 }]);
    }

    #[test]
    fn rejects_empty_and_partial() {
        assert_eq!(prog(&[]).unwrap_err().reason, "program is empty");
        assert!(Program::from_bytes(&[0x95, 0, 0])
            .unwrap_err()
            .reason
            .contains("multiple of"));
    }

    #[test]
    fn rejects_bad_registers_and_r10_writes() {
        // mov r11, 1
        let e = prog(&[0x1_0000_0000 | 0x0b_b7, EXIT]).unwrap_err();
        assert_eq!(
            (e.pc, e.reason.as_str()),
            (Some(0), "invalid destination register")
        );
        // mov r10, 1
        let e = prog(&[0x1_0000_0000 | 0x0a_b7, EXIT]).unwrap_err();
        assert!(e.reason.contains("r10"));
    }

    #[test]
    fn lddw_checks() {
        assert_eq!(
            prog(&[0x5566778800000018, EXIT]).unwrap_err().reason,
            "incomplete lddw"
        );
        let e = prog(&[0x18, 0x0000000000011100, EXIT]).unwrap_err();
        assert_eq!(
            (e.pc, e.reason.as_str()),
            (Some(1), "invalid lddw second half")
        );
        // ja +1 into the middle of an lddw
        let e = prog(&[0x0001_0005, 0x18, 0, EXIT]).unwrap_err();
        assert_eq!(e.reason, "jump to middle of lddw");
        // map fd pseudo load is carried as an object reference
        let p = prog(&[0x0000_0007_0000_1118, 0, EXIT]).unwrap();
        assert_eq!(p.object_refs()[0].id, 7);
        assert_eq!(p.object_refs()[0].kind, PSEUDO_MAP_FD);
    }

    #[test]
    fn control_flow_checks() {
        let e = prog(&[0xffff_0005, EXIT]).unwrap_err();
        assert_eq!(e.reason, "infinite loop");
        let e = prog(&[0x0002_0005, EXIT]).unwrap_err();
        assert_eq!(e.reason, "jump out of bounds");
        // call local +0 then exit: main function ends in a call.
        let e = prog(&[0x0000_0000_0000_1085, EXIT]).unwrap_err();
        assert_eq!(e.pc, Some(0));
        assert!(e.reason.contains("does not end"));
        let e = prog(&[0xb7]).unwrap_err();
        assert!(e.reason.contains("does not end"));
    }
}
