//! Loads, stores and atomics: each pointer type's rules for bounds,
//! alignment, initialisation and writability; the stack's per-byte model
//! with spilled registers; legacy packet loads.

use super::explore::{VResult, Verifier, FULL_WRITE};
use super::log::type_name;
use super::scalar::Scalar;
use super::state::{Frame, Reg, RegType, StackByte, State, STACK_SLOTS};
use super::PtrClass;
use crate::isa::*;
use crate::kernel::contexts::{self, CtxFieldKind};
use crate::maps::{MapDef, MapType, BPF_F_RDONLY_PROG};
use crate::progtype::ProgType;

const FRAME: i64 = STACK_FRAME_SIZE as i64;
/// Readable sizes of socket structures (`struct bpf_sock`, `bpf_tcp_sock`).
const SOCK_SIZE: i64 = 80;
const TCP_SOCK_SIZE: i64 = 112;

/// Whether `lddw map_value` may point into the map (array maps: global data).
pub(super) fn map_has_direct_value(def: &MapDef) -> bool {
    def.map_type == MapType::Array
}

/// Program types whose packet data may be written directly.
fn packet_writable(t: ProgType) -> bool {
    use ProgType::*;
    matches!(
        t,
        SchedCls | SchedAct | Xdp | LwtXmit | SkSkb | SkMsg | LwtSeg6local | Raw
    )
}

/// Program types whose context is the traced function's arguments, typed
/// by its BTF in the kernel: pointers to structs may be read through.
fn btf_typed_args(t: ProgType) -> bool {
    matches!(t, ProgType::Tracing | ProgType::Lsm | ProgType::StructOps)
}

/// An unknown value of `size` bytes.
fn unknown_of(size: u32) -> Scalar {
    let mut v = Scalar::unknown();
    v.truncate(size);
    v
}

/// A memory access to check: reading into a register or writing `value`
/// (`None`: bytes the program does not track, e.g. helper output).
#[derive(Clone, Copy)]
pub(super) enum Access<'r> {
    Read,
    Write(Option<&'r Reg>),
}

impl Access<'_> {
    fn is_write(&self) -> bool {
        matches!(self, Access::Write(_))
    }
}

fn class_of(t: RegType) -> PtrClass {
    match t {
        RegType::Ctx => PtrClass::Ctx,
        RegType::Stack => PtrClass::Stack,
        RegType::Packet | RegType::PacketMeta => PtrClass::Packet,
        RegType::MapValue => PtrClass::MapValue,
        RegType::Mem => PtrClass::Mem,
        _ => PtrClass::Other,
    }
}

impl Verifier<'_> {
    pub(super) fn check_ldx(&mut self, st: &mut State, pc: usize, insn: &Insn) -> VResult<()> {
        self.check_read(st, pc, insn.src)?;
        let size = access_size(insn.opc) as u32;
        let sx = insn.opc & 0xe0 == MODE_MEMSX;
        let v = self.check_mem_access(st, pc, insn.src, insn.off as i64, size, Access::Read)?;
        let mut v = v.unwrap_or_else(Reg::unknown);
        if sx && v.is_scalar() {
            v.v.sign_extend(size);
            v.id = 0;
            v.off = 0;
        }
        *st.reg_mut(insn.dst) = v;
        Ok(())
    }

    pub(super) fn check_store(&mut self, st: &mut State, pc: usize, insn: &Insn) -> VResult<()> {
        self.check_read(st, pc, insn.dst)?;
        let size = access_size(insn.opc) as u32;
        let value = if insn.class() == CLS_ST {
            Reg::constant(insn.imm as i64 as u64)
        } else {
            self.check_read(st, pc, insn.src)?;
            *st.reg(insn.src)
        };
        self.check_mem_access(
            st,
            pc,
            insn.dst,
            insn.off as i64,
            size,
            Access::Write(Some(&value)),
        )?;
        Ok(())
    }

    pub(super) fn check_atomic(&mut self, st: &mut State, pc: usize, insn: &Insn) -> VResult<()> {
        let size = access_size(insn.opc) as u32;
        self.check_read(st, pc, insn.dst)?;
        self.check_read(st, pc, insn.src)?;
        let cmpxchg = insn.imm == ATOMIC_CMPXCHG;
        if cmpxchg {
            self.check_read(st, pc, 0)?;
            if st.reg(0).is_pointer() {
                return self.err(pc, "R0 leaks addr into mem");
            }
        }
        if st.reg(insn.src).is_pointer() {
            return self.err(pc, format!("R{} leaks addr into mem", insn.src));
        }
        let ptr = *st.reg(insn.dst);
        if !matches!(ptr.ty, RegType::Stack | RegType::MapValue | RegType::Mem) {
            if ptr.is_pointer() {
                return self.err(
                    pc,
                    format!(
                        "BPF_ATOMIC stores into R{} {} is not allowed",
                        insn.dst,
                        type_name(&ptr)
                    ),
                );
            }
            return self.err(
                pc,
                format!("R{} invalid mem access '{}'", insn.dst, type_name(&ptr)),
            );
        }
        let fetch = insn.imm & ATOMIC_FETCH != 0;
        self.check_mem_access(st, pc, insn.dst, insn.off as i64, size, Access::Read)?;
        self.check_mem_access(st, pc, insn.dst, insn.off as i64, size, Access::Write(None))?;
        if cmpxchg {
            *st.reg_mut(0) = Reg::scalar(unknown_of(size));
        } else if fetch {
            *st.reg_mut(insn.src) = Reg::scalar(unknown_of(size));
        }
        Ok(())
    }

    /// Legacy `ldabs`/`ldind`: packet loads through the skb in r6.
    pub(super) fn check_ld_abs(&mut self, st: &mut State, pc: usize, insn: &Insn) -> VResult<()> {
        use ProgType::*;
        if !matches!(
            self.opts.prog_type,
            SocketFilter | SchedCls | SchedAct | CgroupSkb | LwtIn | LwtOut | LwtXmit
        ) {
            return self.err(
                pc,
                "BPF_LD_[ABS|IND] instructions not allowed for this program type",
            );
        }
        if !st.refs.is_empty() {
            return self.err(
                pc,
                "BPF_LD_[ABS|IND] cannot be mixed with socket references",
            );
        }
        self.check_read(st, pc, 6)?;
        let r6 = st.reg(6);
        if r6.ty != RegType::Ctx || r6.off != 0 || !r6.v.is_zero() {
            return self.err(pc, "at the time of BPF_LD_ABS|IND R6 != pointer to skb");
        }
        if insn.opc & 0xe0 == MODE_IND {
            self.check_read(st, pc, insn.src)?;
            if st.reg(insn.src).is_pointer() {
                return self.err(pc, format!("R{} leaks addr into packet index", insn.src));
            }
        }
        let size = access_size(insn.opc) as u32;
        for r in 1..=5 {
            *st.reg_mut(r) = Reg::NOT_INIT;
        }
        *st.reg_mut(0) = Reg::scalar(unknown_of(size));
        Ok(())
    }

    /// Checks one access of `size` bytes at `ptr + off` through register
    /// `regno`; returns the loaded value for reads.
    pub(super) fn check_mem_access(
        &mut self,
        st: &mut State,
        pc: usize,
        regno: u8,
        insn_off: i64,
        size: u32,
        access: Access,
    ) -> VResult<Option<Reg>> {
        let ptr = *st.reg(regno);
        if ptr.maybe_null && ptr.is_pointer() {
            return self.err(
                pc,
                format!("R{regno} invalid mem access '{}'", type_name(&ptr)),
            );
        }
        if let Access::Write(Some(v)) = access {
            // Addresses may only be kept on the stack: anywhere else the
            // program's user (or the next run) could read them back.
            if v.is_pointer() && ptr.ty != RegType::Stack {
                let what = match ptr.ty {
                    RegType::Ctx => "ctx",
                    RegType::Packet | RegType::PacketMeta => "packet",
                    RegType::MapValue => "map",
                    _ => "mem",
                };
                let src = self.insns.get(pc).map_or(0, |i| i.src);
                return self.err(pc, format!("R{src} leaks addr into {what}"));
            }
        }
        if ptr.ty == RegType::BtfId || (ptr.is_scalar() && ptr.kernel_ptr) {
            return self.kernel_mem_access(pc, regno, &ptr, insn_off, size, access);
        }
        if ptr.is_pointer() && self.mem_access.get(pc) == Some(&Some(PtrClass::Probe)) {
            return self.err(pc, "same insn cannot be used with different pointers");
        }
        self.note_access(pc, class_of(ptr.ty));
        let off = ptr.off as i64 + insn_off;
        match ptr.ty {
            RegType::Stack => self.stack_access(st, pc, regno, &ptr, off, size, access),
            RegType::Ctx => self.ctx_access(pc, regno, &ptr, off, size, access),
            RegType::Packet | RegType::PacketMeta => {
                if access.is_write() && !packet_writable(self.opts.prog_type) {
                    return self.err(pc, format!("cannot write into packet (R{regno})"));
                }
                if ptr.v.smin < 0 {
                    return self.err(
                        pc,
                        format!(
                            "R{regno} min value is negative, either use unsigned index or do a if (index >=0) check."
                        ),
                    );
                }
                self.check_packet_bytes(st, pc, regno, &ptr, off, size)?;
                Ok(Some(Reg::scalar(unknown_of(size))))
            }
            RegType::PacketEnd if st.input_len.is_init() => {
                // A raw program addressing its input from the end.
                let len_min = st.input_len.v.umin;
                if !ptr.v.is_zero() || off + size as i64 > 0 || (-off) as u64 > len_min {
                    return self.err(
                        pc,
                        format!(
                            "invalid access to the input from its end, off={off} size={size}: the input may be only {len_min} bytes long, R{regno}"
                        ),
                    );
                }
                if access.is_write() && !packet_writable(self.opts.prog_type) {
                    return self.err(pc, format!("cannot write into packet (R{regno})"));
                }
                self.mark_input_len_precise();
                Ok(Some(Reg::scalar(unknown_of(size))))
            }
            RegType::MapValue => {
                let def = self.map_def(ptr.map);
                let value_size = def.map_or(0, |d| d.value_size) as i64;
                self.region_access(pc, regno, &ptr, off, size as i64, value_size, "map value")?;
                let rdonly = ptr.rdonly || def.is_some_and(|d| d.flags & BPF_F_RDONLY_PROG != 0);
                if access.is_write() && rdonly {
                    return self.err(
                        pc,
                        format!(
                            "write into map forbidden, value_size={value_size} off={off} size={size}"
                        ),
                    );
                }
                if !access.is_write() {
                    if let Some(c) = self.frozen_read(&ptr, off, size) {
                        return Ok(Some(Reg::constant(c)));
                    }
                }
                Ok(Some(Reg::scalar(unknown_of(size))))
            }
            RegType::Mem => {
                self.region_access(
                    pc,
                    regno,
                    &ptr,
                    off,
                    size as i64,
                    ptr.mem_size as i64,
                    "memory",
                )?;
                if access.is_write() && ptr.rdonly {
                    return self.err(
                        pc,
                        format!("R{regno} cannot write into {}", type_name(&ptr)),
                    );
                }
                Ok(Some(Reg::scalar(unknown_of(size))))
            }
            RegType::SockCommon | RegType::Socket | RegType::TcpSock => {
                let limit = if ptr.ty == RegType::TcpSock {
                    TCP_SOCK_SIZE
                } else {
                    SOCK_SIZE
                };
                if access.is_write() {
                    return self.err(
                        pc,
                        format!("R{regno} cannot write into {}", type_name(&ptr)),
                    );
                }
                let fixed = ptr.v.is_zero();
                if !fixed || off < 0 || off + size as i64 > limit || off % size as i64 != 0 {
                    return self.err(
                        pc,
                        format!(
                            "R{regno} invalid {} access off={off} size={size}",
                            type_name(&ptr)
                        ),
                    );
                }
                Ok(Some(Reg::scalar(unknown_of(size))))
            }
            _ => self.err(
                pc,
                format!("R{regno} invalid mem access '{}'", type_name(&ptr)),
            ),
        }
    }

    /// A load through a BTF pointer (a helper's `ptr_` result, or a
    /// tracing argument that may be a kernel pointer): the kernel's
    /// `PTR_TO_BTF_ID` load, which it turns into a `BPF_PROBE_MEM` read that
    /// cannot fault. Without kernel BTF the object's size is unknown, so
    /// only the sign of the offset is checked; the instruction is marked
    /// [`PtrClass::Probe`] and engines read 0 outside the program's memory.
    fn kernel_mem_access(
        &mut self,
        pc: usize,
        regno: u8,
        ptr: &Reg,
        insn_off: i64,
        size: u32,
        access: Access,
    ) -> VResult<Option<Reg>> {
        let what = if ptr.is_scalar() {
            "scalar (a tracing argument)".to_string()
        } else {
            type_name(ptr)
        };
        if access.is_write() {
            return self.err(
                pc,
                format!("R{regno} is {what}: only read is supported through kernel pointers"),
            );
        }
        if !ptr.is_scalar() && !ptr.v.is_zero() {
            return self.err(
                pc,
                format!(
                    "R{regno} is {what} invalid variable offset: off={}, var_off=({:#x}; {:#x})",
                    ptr.off, ptr.v.var_off.value, ptr.v.var_off.mask
                ),
            );
        }
        let off = if ptr.is_scalar() {
            insn_off
        } else {
            ptr.off as i64 + insn_off
        };
        if off < 0 {
            return self.err(
                pc,
                format!("R{regno} is {what} invalid negative access: off={off}"),
            );
        }
        if matches!(self.mem_access.get(pc), Some(Some(c)) if *c != PtrClass::Probe) {
            return self.err(pc, "same insn cannot be used with different pointers");
        }
        self.note_access(pc, PtrClass::Probe);
        // A whole word may be a pointer member: it may be read through
        // again (the kernel knows from BTF which words are pointers).
        Ok(Some(Reg {
            kernel_ptr: size == 8,
            ..Reg::scalar(unknown_of(size))
        }))
    }

    /// The value a load of `size` bytes at `off` past the map value
    /// pointer `ptr` reads from a frozen map (zero-extended), when the
    /// offset is known. Bounds are already checked.
    fn frozen_read(&self, ptr: &Reg, off: i64, size: u32) -> Option<u64> {
        let def = self.map_def(ptr.map)?;
        if def.map_type != MapType::Array
            || def.max_entries != 1
            || def.flags & BPF_F_RDONLY_PROG == 0
        {
            return None;
        }
        let bytes = (*self.opts.frozen_values.get(ptr.map as usize)?)?;
        let start = usize::try_from(off.checked_add(ptr.v.const_value()? as i64)?).ok()?;
        let end = start.checked_add(size as usize)?;
        let field = bytes.get(start..end)?;
        let mut le = [0u8; 8];
        le[..field.len()].copy_from_slice(field);
        Some(u64::from_le_bytes(le))
    }

    /// Bounds of a map value or helper memory with a variable offset (the
    /// kernel's `check_mem_region_access`).
    #[allow(clippy::too_many_arguments)]
    fn region_access(
        &self,
        pc: usize,
        regno: u8,
        ptr: &Reg,
        off: i64,
        size: i64,
        mem_size: i64,
        what: &str,
    ) -> VResult<()> {
        let v = &ptr.v;
        if v.smin < 0 && (v.smin == i64::MIN || v.smin + off < 0) {
            return self.err(
                pc,
                format!(
                    "R{regno} min value is negative, either use unsigned index or do a if (index >=0) check."
                ),
            );
        }
        let size_name = if what == "map value" {
            "value_size"
        } else {
            "mem_size"
        };
        let lo = v.smin.max(0) + off;
        if lo < 0 || lo + size > mem_size {
            return self.err(
                pc,
                format!("invalid access to {what}, {size_name}={mem_size} off={lo} size={size}"),
            );
        }
        if v.umax >= super::alu::MAX_VAR_OFF as u64 {
            return self.err(
                pc,
                format!(
                    "R{regno} unbounded memory access, make sure to bounds check any such access"
                ),
            );
        }
        let hi = v.umax as i64 + off;
        if hi < 0 || hi + size > mem_size {
            return self.err(
                pc,
                format!("invalid access to {what}, {size_name}={mem_size} off={hi} size={size}"),
            );
        }
        Ok(())
    }

    fn ctx_access(
        &mut self,
        pc: usize,
        regno: u8,
        ptr: &Reg,
        off: i64,
        size: u32,
        access: Access,
    ) -> VResult<Option<Reg>> {
        if !ptr.v.is_zero() {
            return self.err(
                pc,
                format!(
                    "variable ctx access var_off=({:#x}; {:#x}) disallowed",
                    ptr.v.var_off.value, ptr.v.var_off.mask
                ),
            );
        }
        if ptr.off != 0 {
            return self.err(
                pc,
                format!(
                    "dereference of modified ctx ptr R{regno} off={} disallowed",
                    ptr.off
                ),
            );
        }
        let Some(desc) = self.ctx else {
            return self.err(
                pc,
                format!(
                    "invalid bpf_context access off={off} size={size}: program type {} has no context description",
                    self.opts.prog_type.name()
                ),
            );
        };
        let kind = match contexts::check_access(desc, off, size, access.is_write()) {
            Ok((_, kind)) => kind,
            Err(why) => {
                return self.err(
                    pc,
                    format!("invalid bpf_context access off={off} size={size} ({why})"),
                )
            }
        };
        let v = match kind {
            CtxFieldKind::Scalar | CtxFieldKind::Pointer
                if size == 8 && btf_typed_args(self.opts.prog_type) =>
            {
                Reg {
                    kernel_ptr: true,
                    ..Reg::unknown()
                }
            }
            CtxFieldKind::Scalar | CtxFieldKind::Pointer => Reg::scalar(unknown_of(size)),
            CtxFieldKind::PacketStart => Reg::pointer(RegType::Packet),
            CtxFieldKind::PacketEnd => Reg::pointer(RegType::PacketEnd),
            CtxFieldKind::PacketMeta => Reg::pointer(RegType::PacketMeta),
            CtxFieldKind::SocketOrNull => Reg {
                maybe_null: true,
                id: self.new_id(),
                ..Reg::pointer(RegType::SockCommon)
            },
        };
        Ok(Some(v))
    }

    #[allow(clippy::too_many_arguments)]
    fn stack_access(
        &mut self,
        st: &mut State,
        pc: usize,
        regno: u8,
        ptr: &Reg,
        off: i64,
        size: u32,
        access: Access,
    ) -> VResult<Option<Reg>> {
        let frameno = ptr.frame as usize;
        if frameno >= st.frames.len() {
            return self.err(
                pc,
                format!("R{regno} points to a stack frame that has returned"),
            );
        }
        let dir = if access.is_write() {
            "write to"
        } else {
            "read from"
        };
        if let Some(c) = ptr.v.const_value() {
            let off = off + c as i64;
            if off < -FRAME || off + size as i64 > 0 {
                return self.err(
                    pc,
                    format!("invalid {dir} stack R{regno} off={off} size={size}"),
                );
            }
            if off % size as i64 != 0 {
                return self.err(
                    pc,
                    format!("misaligned stack access off {off}+0+0 size {size}"),
                );
            }
            let slot = Frame::locate(off).0;
            self.last_stack = 1 + ((frameno as u32) << 8 | slot as u32);
            match access {
                Access::Write(_) if size == 8 => self.last_stack |= FULL_WRITE,
                Access::Read => self.mark_stack_read(frameno, 1u64 << slot),
                _ => {}
            }
            let frame = &mut st.frames[frameno];
            return match access {
                Access::Write(v) => {
                    if let Some(v) = v {
                        if v.is_pointer() && size != 8 {
                            return self.err(pc, "invalid size of register spill");
                        }
                    }
                    stack_write(frame, off, size, v);
                    Ok(None)
                }
                Access::Read => match stack_read(frame, off, size) {
                    Ok(v) => Ok(Some(v)),
                    Err(msg) => self.err(pc, msg),
                },
            };
        }
        // A variable offset: every byte it may touch must qualify.
        let v = &ptr.v;
        if v.smin <= -FRAME * 2 || v.smax >= FRAME * 2 {
            return self.err(
                pc,
                format!(
                    "invalid unbounded variable-offset {} stack R{regno}",
                    if access.is_write() {
                        "write to"
                    } else {
                        "read from"
                    }
                ),
            );
        }
        let min = off + v.smin;
        let max = off + v.smax;
        if min < -FRAME || max + size as i64 > 0 {
            return self.err(
                pc,
                format!(
                    "invalid variable-offset {dir} stack R{regno} var_off=({:#x}; {:#x}) off={off} size={size}",
                    v.var_off.value, v.var_off.mask
                ),
            );
        }
        if (v.var_off.mask | v.var_off.value.wrapping_add(off as u64)) & (size as u64 - 1) != 0 {
            return self.err(
                pc,
                format!("misaligned variable-offset stack access off {off} size {size}"),
            );
        }
        let frame = &mut st.frames[frameno];
        match access {
            Access::Write(val) => {
                if val.is_some_and(|r| r.is_pointer()) {
                    return self.err(
                        pc,
                        format!("R{regno} variable-offset stack write of a pointer prohibited"),
                    );
                }
                let zero = val.is_some_and(|r| r.is_null_const());
                mark_stack_range(frame, min, max + size as i64, zero);
                self.imprecise_stack_writes |= min != max;
                Ok(None)
            }
            Access::Read => {
                self.mark_stack_read(frameno, slots_mask(min, max + size as i64));
                let frame = &st.frames[frameno];
                let mut all_zero = true;
                for o in min..max + size as i64 {
                    match frame.byte(o) {
                        StackByte::Invalid => {
                            return self.err(
                                pc,
                                format!(
                                    "invalid variable-offset read from stack R{regno} off {o} size {size}"
                                ),
                            )
                        }
                        StackByte::Zero => {}
                        _ => all_zero = false,
                    }
                }
                Ok(Some(if all_zero {
                    Reg::constant(0)
                } else {
                    Reg::scalar(unknown_of(size))
                }))
            }
        }
    }

    /// Memory a helper reads (`need_init`) or writes, `[lo, lo+size)` past
    /// the pointer in `regno`, size known to lie in `min_size..=max_size`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_helper_mem(
        &mut self,
        st: &mut State,
        pc: usize,
        regno: u8,
        max_size: u64,
        write: bool,
        need_init: bool,
        allow_null: bool,
    ) -> VResult<()> {
        let ptr = *st.reg(regno);
        if ptr.is_null_const() && (allow_null || max_size == 0) {
            self.mark_precise(st.frameno(), 1 << regno);
            return Ok(());
        }
        if max_size == 0 && ptr.is_pointer() && !ptr.maybe_null {
            return Ok(());
        }
        if max_size >= super::alu::MAX_VAR_OFF as u64 {
            return self.err(
                pc,
                format!(
                    "R{} unbounded memory access, use 'var &= const' or 'if (var < const)'",
                    regno + 1
                ),
            );
        }
        let size = max_size as i64;
        if ptr.maybe_null && ptr.is_pointer() {
            return self.err(
                pc,
                format!(
                    "R{regno} type={} expected=fp, pkt, pkt_meta, map_value, mem",
                    type_name(&ptr)
                ),
            );
        }
        match ptr.ty {
            RegType::Stack => {
                let frameno = ptr.frame as usize;
                if frameno >= st.frames.len() {
                    return self.err(
                        pc,
                        format!("R{regno} points to a stack frame that has returned"),
                    );
                }
                let v = ptr.v;
                if v.smin <= -FRAME * 2 || v.smax >= FRAME * 2 {
                    return self.err(pc, format!("R{regno} unbounded indirect access to stack"));
                }
                let lo = ptr.off as i64 + v.smin;
                let hi = ptr.off as i64 + v.smax + size;
                if lo < -FRAME || hi > 0 {
                    return self.err(
                        pc,
                        format!(
                            "invalid indirect access to stack R{regno} off={} size={size}",
                            ptr.off as i64 + v.smin
                        ),
                    );
                }
                if need_init {
                    self.mark_stack_read(frameno, slots_mask(lo, hi));
                }
                let frame = &mut st.frames[frameno];
                if need_init {
                    for o in lo..hi {
                        let (slot, _) = Frame::locate(o);
                        let leaks = frame.byte(o) == StackByte::Spill
                            && frame.slot(slot).spilled.is_pointer();
                        if frame.byte(o) == StackByte::Invalid || leaks {
                            let base = ptr.off as i64 + v.smin;
                            return self.err(
                                pc,
                                format!(
                                    "invalid indirect read from stack R{regno} off {base}+{} size {size}",
                                    o - base
                                ),
                            );
                        }
                    }
                }
                if write {
                    mark_stack_range(frame, lo, hi, false);
                    self.imprecise_stack_writes |= v.smin != v.smax;
                }
                self.note_access(pc, PtrClass::Stack);
                Ok(())
            }
            RegType::MapValue => {
                let def = self.map_def(ptr.map);
                let value_size = def.map_or(0, |d| d.value_size) as i64;
                self.region_access(
                    pc,
                    regno,
                    &ptr,
                    ptr.off as i64,
                    size,
                    value_size,
                    "map value",
                )?;
                let rdonly = ptr.rdonly || def.is_some_and(|d| d.flags & BPF_F_RDONLY_PROG != 0);
                if write && rdonly {
                    return self.err(pc, format!("R{regno} write into map forbidden"));
                }
                Ok(())
            }
            RegType::Mem => {
                self.region_access(
                    pc,
                    regno,
                    &ptr,
                    ptr.off as i64,
                    size,
                    ptr.mem_size as i64,
                    "memory",
                )?;
                if write && ptr.rdonly {
                    return self.err(
                        pc,
                        format!("R{regno} cannot write into {}", type_name(&ptr)),
                    );
                }
                Ok(())
            }
            RegType::Packet | RegType::PacketMeta => {
                if write && !packet_writable(self.opts.prog_type) {
                    return self.err(
                        pc,
                        format!(
                            "helper access to the packet is not allowed for writing (R{regno})"
                        ),
                    );
                }
                let Ok(size) = u32::try_from(size) else {
                    return self.err(pc, format!("R{regno} invalid packet access size {size}"));
                };
                self.check_packet_bytes(st, pc, regno, &ptr, ptr.off as i64, size)
            }
            _ => self.err(
                pc,
                format!(
                    "R{regno} type={} expected=fp, pkt, pkt_meta, map_value, mem",
                    type_name(&ptr)
                ),
            ),
        }
    }
}

/// The slots covering frame offsets `[lo, hi)`.
fn slots_mask(lo: i64, hi: i64) -> u64 {
    if hi <= lo {
        return 0;
    }
    let first = Frame::locate(hi - 1).0;
    let last = Frame::locate(lo).0.min(63);
    let mut m = 0u64;
    for s in first..=last {
        m |= 1 << s;
    }
    m
}

/// A fixed-offset stack write (alignment already checked, so the bytes lie
/// in one slot).
fn stack_write(frame: &mut Frame, off: i64, size: u32, value: Option<&Reg>) {
    let (slot_idx, first) = Frame::locate(off);
    if slot_idx >= STACK_SLOTS {
        return;
    }
    let slot = frame.slot_mut(slot_idx);
    let size = size as usize;
    let spill = value.is_some_and(|v| size == 8 || (size == 4 && v.is_scalar()));
    // One spilled register per slot: a write that breaks it leaves plain data.
    if slot.bytes.contains(&StackByte::Spill) {
        for b in slot.bytes.iter_mut() {
            if *b == StackByte::Spill {
                *b = StackByte::Misc;
            }
        }
        slot.spilled = Reg::NOT_INIT;
    }
    let byte = if spill {
        StackByte::Spill
    } else if value.is_some_and(|v| v.is_null_const()) {
        StackByte::Zero
    } else {
        StackByte::Misc
    };
    for b in &mut slot.bytes[first..first + size] {
        *b = byte;
    }
    if spill {
        if let Some(v) = value {
            slot.spilled = *v;
        }
    }
}

/// A fixed-offset stack read within one slot.
fn stack_read(frame: &Frame, off: i64, size: u32) -> Result<Reg, String> {
    let (slot_idx, first) = Frame::locate(off);
    let slot = frame.slot(slot_idx);
    let size_us = size as usize;
    let bytes = &slot.bytes[first..first + size_us];
    if bytes.contains(&StackByte::Spill) {
        let spill_start = slot.bytes.iter().position(|&b| b == StackByte::Spill);
        let spilled = slot.spilled;
        if spilled.is_pointer() {
            if size == 8 && slot.is_full_spill() {
                return Ok(spilled);
            }
            return Err("invalid size of register fill".into());
        }
        if bytes.iter().all(|&b| b == StackByte::Spill) && spill_start == Some(first) {
            if size == 8 {
                return Ok(spilled);
            }
            let mut v = spilled.v;
            v.truncate(size);
            return Ok(Reg::scalar(v));
        }
    }
    let mut all_zero = true;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            StackByte::Invalid => {
                return Err(format!("invalid read from stack off {off}+{i} size {size}"));
            }
            StackByte::Zero => {}
            StackByte::Spill if slot.spilled.is_null_const() => {}
            _ => all_zero = false,
        }
    }
    if all_zero {
        return Ok(Reg::constant(0));
    }
    Ok(Reg::scalar(unknown_of(size)))
}

/// Bytes `[lo, hi)` written with data the verifier does not track.
fn mark_stack_range(frame: &mut Frame, lo: i64, hi: i64, zero: bool) {
    for o in lo..hi {
        let (slot_idx, b) = Frame::locate(o);
        if slot_idx >= STACK_SLOTS {
            continue;
        }
        let slot = frame.slot_mut(slot_idx);
        if slot.bytes.contains(&StackByte::Spill) {
            for x in slot.bytes.iter_mut() {
                if *x == StackByte::Spill {
                    *x = StackByte::Misc;
                }
            }
            slot.spilled = Reg::NOT_INIT;
        }
        slot.bytes[b] = if zero && slot.bytes[b] == StackByte::Zero {
            StackByte::Zero
        } else {
            StackByte::Misc
        };
    }
}

impl Verifier<'_> {
    /// `size` bytes at fixed offset `off` of packet pointer `ptr` (register
    /// `regno`): within the range a comparison with the end proved, or, for
    /// a raw program's input, within the length's lower bound (which then
    /// matters for pruning).
    fn check_packet_bytes(
        &mut self,
        st: &State,
        pc: usize,
        regno: u8,
        ptr: &Reg,
        off: i64,
        size: u32,
    ) -> VResult<()> {
        let in_range = ptr.v.smin >= 0 && off >= 0 && off + size as i64 <= ptr.range as i64;
        if in_range {
            return Ok(());
        }
        if input_access_ok(st, ptr, off, size) {
            self.mark_input_len_precise();
            return Ok(());
        }
        if st.input_len.is_init() {
            let reach = off.saturating_add(ptr.v.umax.min(i64::MAX as u64) as i64);
            return self.err(
                pc,
                format!(
                    "invalid access to the input, off={reach} size={size}: the input may be only {} bytes long, R{regno}(off={},r={})",
                    st.input_len.v.umin, ptr.off, ptr.range
                ),
            );
        }
        self.err(
            pc,
            format!(
                "invalid access to packet, off={off} size={size}, R{regno}(id={},off={},r={})",
                ptr.id, ptr.off, ptr.range
            ),
        )
    }
}

/// A raw program's input access through a pointer derived from its start:
/// in bounds for every length the path allows (`off` is the fixed offset of
/// the access, the pointer's variable part is added at its largest).
fn input_access_ok(st: &State, ptr: &Reg, off: i64, size: u32) -> bool {
    if !st.input_len.is_init() || ptr.ty != RegType::Packet || off < 0 {
        return false;
    }
    let end = (off as u64)
        .checked_add(ptr.v.umax)
        .and_then(|e| e.checked_add(size as u64));
    end.is_some_and(|e| e <= st.input_len.v.umin)
}
