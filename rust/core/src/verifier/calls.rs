//! Calls and exits: helper calls checked against their prototypes,
//! BPF-to-BPF calls with a frame each, callbacks (`bpf_loop`,
//! `for_each_map_elem`, ...) verified as functions the helper may run any
//! number of times, tail calls, and the checks made at exit.

use super::explore::{Flow, VResult, Verifier};
use super::log::type_name;
use super::scalar::Scalar;
use super::state::{Callback, Frame, RefState, Reg, RegType, State};
use crate::isa::*;
use crate::kernel::helper_protos::{self, ArgKind, HelperProto, RetKind};
use crate::maps::{MapDef, MapType, BPF_F_RDONLY_PROG};
use crate::progtype::ProgType;

/// `Reg::map` bit marking the inner map of a map-of-maps entry.
pub(super) const INNER_MAP: u32 = 1 << 31;

const TAIL_CALL: u32 = 12;
const SK_LOOKUP_TCP: u32 = 84;
const SK_LOOKUP_UDP: u32 = 85;
const SK_RELEASE: u32 = 86;
const SPIN_LOCK: u32 = 93;
const SPIN_UNLOCK: u32 = 94;
const SKC_LOOKUP_TCP: u32 = 99;
const RINGBUF_RESERVE: u32 = 131;
const FOR_EACH_MAP_ELEM: u32 = 164;
const TIMER_SET_CALLBACK: u32 = 170;
const FIND_VMA: u32 = 180;
const LOOP: u32 = 181;

/// What the arguments told about the call.
#[derive(Default)]
struct CallMeta {
    map: Option<u32>,
    alloc_size: Option<u64>,
    /// Last size argument's largest value.
    mem_size: Option<u64>,
    callback: Option<usize>,
    /// Register (1-5) of the callback context argument.
    released_ref: Option<u32>,
    /// A reference the helper passes on (socket casts).
    inherited_ref: u32,
}

impl Verifier<'_> {
    /// The definition of map `idx` (or of the inner map of a map of maps).
    pub(super) fn map_def(&self, idx: u32) -> Option<&MapDef> {
        if idx & INNER_MAP != 0 {
            self.opts
                .maps
                .get((idx & !INNER_MAP) as usize)
                .and_then(|m| m.inner.as_deref())
        } else {
            self.opts.maps.get(idx as usize)
        }
    }

    pub(super) fn check_call(&mut self, st: &mut State, pc: usize, insn: &Insn) -> VResult<Flow> {
        if insn.opc == OP_CALLX {
            return self.err(
                pc,
                "callx (indirect calls) is not supported by the verifier",
            );
        }
        match insn.src {
            CALL_LOCAL => self.check_func_call(st, pc, insn),
            CALL_HELPER => self.check_helper_call(st, pc, insn.imm as u32),
            _ => self.err(pc, "calls to kernel functions (kfuncs) are not supported"),
        }
    }

    fn push_frame(
        &mut self,
        st: &mut State,
        pc: usize,
        target: usize,
        args: [Reg; 5],
    ) -> VResult<()> {
        if st.frames.len() >= MAX_CALL_FRAMES {
            return self.err(
                pc,
                format!(
                    "the call stack of {} frames is too deep",
                    st.frames.len() + 1
                ),
            );
        }
        let mut f = Frame::new(pc, target, st.frames.len());
        f.regs[1..6].copy_from_slice(&args);
        st.frames.push(f);
        Ok(())
    }

    fn check_func_call(&mut self, st: &mut State, pc: usize, insn: &Insn) -> VResult<Flow> {
        if st.lock.is_some() {
            return self.err(pc, "function calls are not allowed while holding a lock");
        }
        let target = (pc as i64 + 1 + insn.imm as i64) as usize;
        let mut args = [Reg::NOT_INIT; 5];
        args.copy_from_slice(&st.cur().regs[1..6]);
        self.push_frame(st, pc, target, args)?;
        Ok(Flow::Next(target))
    }

    pub(super) fn check_exit(&mut self, st: &mut State, pc: usize) -> VResult<Flow> {
        let r0 = *st.reg(0);
        if !r0.is_init() {
            return self.err(pc, "R0 !read_ok");
        }
        if st.frames.len() == 1 {
            if let Some(r) = st.refs.first() {
                return self.err(
                    pc,
                    format!("Unreleased reference id={} alloc_insn={}", r.id, r.pc),
                );
            }
            if st.lock.is_some() {
                return self.err(pc, "bpf_spin_unlock is missing");
            }
            if !r0.is_scalar() {
                return self.err(
                    pc,
                    format!(
                        "At program exit the register R0 is not a known value ({})",
                        type_name(&r0)
                    ),
                );
            }
            if let Some((lo, hi)) = return_range(self.opts.prog_type) {
                self.mark_precise(0, 1);
                if r0.v.smin < lo || r0.v.smax > hi {
                    return self.err(
                        pc,
                        format!(
                            "At program exit the register R0 has smin={} smax={} should have been in [{lo}, {hi}]",
                            r0.v.smin, r0.v.smax
                        ),
                    );
                }
            }
            return Ok(Flow::End);
        }
        let frameno = st.frameno();
        if st.cur().callback.is_some() {
            self.mark_precise(frameno, 1);
        }
        let callee = st.frames.pop().expect("more than one frame");
        if r0.ty == RegType::Stack && r0.frame as usize >= frameno {
            return self.err(pc, "cannot return stack pointer to the caller frame");
        }
        let resume = callee.callsite + 1;
        let caller = st.cur_mut();
        for r in 1..=5 {
            caller.regs[r] = Reg::NOT_INIT;
        }
        if let Some(cb) = callee.callback {
            if !r0.is_scalar() {
                return self.err(pc, format!("R0 not a scalar value ({})", type_name(&r0)));
            }
            if r0.v.smin < cb.ret_min || r0.v.smax > cb.ret_max {
                return self.err(
                    pc,
                    format!(
                        "At callback return the register R0 has smin={} smax={} should have been in [{}, {}]",
                        r0.v.smin, r0.v.smax, cb.ret_min, cb.ret_max
                    ),
                );
            }
            caller.regs[0] = Reg::unknown();
            // The helper may call the callback again.
            let mut again = st.clone();
            again.cur_mut().regs[0] = Reg::NOT_INIT;
            self.push_frame(&mut again, callee.callsite, callee.func_start, cb.args)?;
            if let Some(f) = again.frames.last_mut() {
                f.callback = Some(Callback {
                    iteration: cb.iteration.saturating_add(1),
                    ..cb
                });
            }
            return Ok(Flow::Fork {
                other: Box::new(again),
                other_pc: callee.func_start,
                next: resume,
            });
        }
        caller.regs[0] = r0;
        Ok(Flow::Next(resume))
    }

    fn check_helper_call(&mut self, st: &mut State, pc: usize, id: u32) -> VResult<Flow> {
        let Some(proto) = helper_protos::proto(id) else {
            return self.err(pc, format!("invalid func unknown#{id}"));
        };
        if !helper_protos::allowed(self.opts.prog_type, id) {
            return self.err(
                pc,
                format!(
                    "program of type {} cannot call helper bpf_{}#{id}",
                    self.opts.prog_type.name(),
                    proto.name
                ),
            );
        }
        // Builtins only touch the memory they are given: harmless under a lock.
        let builtin = helper_protos::BUILTIN_IDS.contains(&id);
        if st.lock.is_some() && id != SPIN_UNLOCK && !builtin {
            return self.err(pc, "function calls are not allowed while holding a lock");
        }
        let mut meta = CallMeta::default();
        for i in 0..5 {
            self.check_arg(st, pc, proto, i, &mut meta)?;
        }
        // Special semantics.
        match id {
            SPIN_LOCK => {
                let r1 = st.reg(1);
                st.lock = Some((r1.map, r1.off as i64));
            }
            SPIN_UNLOCK => {
                let r1 = st.reg(1);
                let want = (r1.map, r1.off as i64);
                match st.lock {
                    None => return self.err(pc, "bpf_spin_unlock without taking a lock"),
                    Some(l) if l != want => {
                        return self.err(pc, "bpf_spin_unlock of different lock")
                    }
                    _ => st.lock = None,
                }
            }
            TAIL_CALL => {
                if !st.refs.is_empty() {
                    return self.err(pc, "tail_call would lead to reference leak");
                }
                if let Some(m) = meta.map.and_then(|m| self.map_def(m)) {
                    if m.map_type != MapType::ProgArray {
                        return self.err(
                            pc,
                            format!(
                                "cannot pass map_type {} into func bpf_tail_call#12",
                                m.map_type as u32
                            ),
                        );
                    }
                }
            }
            SK_RELEASE => {
                let r = st.reg(1).ref_obj_id;
                if r == 0 {
                    return self.err(pc, "R1 must be referenced when passed to release function");
                }
                meta.released_ref = Some(r);
            }
            _ => {}
        }
        if let Some(r) = meta.released_ref {
            release_reference(st, r);
        }
        // The callback context argument, read before r1-r5 are clobbered.
        let cb_args = match meta.callback {
            Some(_) => Some(self.callback_args(st, pc, id, &meta)?),
            None => None,
        };
        let first_arg = *st.reg(1);
        for r in 1..=5 {
            *st.reg_mut(r) = Reg::NOT_INIT;
        }
        if proto.changes_packet_data {
            st.for_each_reg_mut(|reg| {
                if matches!(
                    reg.ty,
                    RegType::Packet | RegType::PacketMeta | RegType::PacketEnd
                ) {
                    *reg = Reg::unknown();
                }
            });
        }
        let r0 = self.return_value(st, pc, proto, &meta, &first_arg)?;
        *st.reg_mut(0) = r0;
        if let (Some(target), Some((args, ret_min, ret_max))) = (meta.callback, cb_args) {
            let cb = Callback {
                ret_min,
                ret_max,
                args,
                iteration: 0,
            };
            if id == TIMER_SET_CALLBACK {
                // Runs later on its own: verified as a separate program
                // entered with the callback's arguments.
                let mut f = Frame::new(usize::MAX, target, 0);
                f.regs[1..6].copy_from_slice(&args);
                let alone = State::new(f);
                return Ok(Flow::Fork {
                    other: Box::new(alone),
                    other_pc: target,
                    next: pc + 1,
                });
            }
            // Zero calls: continue after the helper. Otherwise run it.
            let skip = st.clone();
            let mut enter = std::mem::replace(st, skip);
            enter.cur_mut().regs[0] = Reg::NOT_INIT;
            self.push_frame(&mut enter, pc, target, args)?;
            if let Some(f) = enter.frames.last_mut() {
                f.callback = Some(cb);
            }
            return Ok(Flow::Fork {
                other: Box::new(enter),
                other_pc: target,
                next: pc + 1,
            });
        }
        Ok(Flow::Next(pc + 1))
    }

    /// Arguments a helper passes to its callback, and the allowed returns.
    fn callback_args(
        &mut self,
        st: &State,
        pc: usize,
        id: u32,
        meta: &CallMeta,
    ) -> VResult<([Reg; 5], i64, i64)> {
        let mut a = [Reg::NOT_INIT; 5];
        let map_regs = |v: &Self, m: u32| -> (Reg, Reg, Reg) {
            let def = v.map_def(m);
            let key = Reg {
                mem_size: def.map_or(0, |d| d.key_size),
                rdonly: true,
                ..Reg::pointer(RegType::Mem)
            };
            let value = Reg {
                map: m,
                rdonly: def.is_some_and(|d| d.flags & BPF_F_RDONLY_PROG != 0),
                ..Reg::pointer(RegType::MapValue)
            };
            (
                Reg {
                    map: m,
                    ..Reg::pointer(RegType::ConstMapPtr)
                },
                key,
                value,
            )
        };
        match id {
            LOOP => {
                a[0] = Reg::scalar(Scalar::up_to(u32::MAX as u64));
                a[1] = *st.reg(3);
                Ok((a, 0, 1))
            }
            FOR_EACH_MAP_ELEM => {
                let Some(m) = meta.map else {
                    return self.err(pc, "for_each_map_elem needs a map");
                };
                let (mp, k, v) = map_regs(self, m);
                a[0] = mp;
                a[1] = k;
                a[2] = v;
                a[3] = *st.reg(3);
                Ok((a, 0, 1))
            }
            TIMER_SET_CALLBACK => {
                let m = st.reg(1).map;
                let (mp, k, v) = map_regs(self, m);
                a[0] = mp;
                a[1] = k;
                a[2] = v;
                Ok((a, 0, 0))
            }
            FIND_VMA => {
                a[0] = Reg::pointer(RegType::BtfId);
                a[1] = Reg::pointer(RegType::BtfId);
                a[2] = *st.reg(4);
                Ok((a, 0, 1))
            }
            _ => self.err(
                pc,
                format!("callbacks of helper #{id} are not supported by the verifier"),
            ),
        }
    }

    fn return_value(
        &mut self,
        st: &mut State,
        pc: usize,
        proto: &HelperProto,
        meta: &CallMeta,
        first_arg: &Reg,
    ) -> VResult<Reg> {
        Ok(match proto.ret {
            RetKind::Integer => Reg::unknown(),
            // Our helpers always leave some value in r0 (the kernel leaves
            // it uninitialised; PREVAIL reads it as a number).
            RetKind::Void => Reg::unknown(),
            RetKind::FirstArg => *first_arg,
            RetKind::PtrToMapValueOrNull | RetKind::PtrToMapValue => {
                let Some(m) = meta.map else {
                    return self.err(
                        pc,
                        "kernel subsystem misconfigured verifier: no map for a map value",
                    );
                };
                let Some(def) = self.map_def(m) else {
                    return self.err(pc, format!("map index {m} out of range"));
                };
                let maybe_null = proto.ret == RetKind::PtrToMapValueOrNull;
                if def.map_type.is_map_of_maps() {
                    if m & INNER_MAP != 0 || def.inner.is_none() {
                        return self.err(
                            pc,
                            format!("map of maps '{}' has no inner map definition", def.name),
                        );
                    }
                    return Ok(Reg {
                        map: m | INNER_MAP,
                        maybe_null,
                        id: self.new_id(),
                        ..Reg::pointer(RegType::ConstMapPtr)
                    });
                }
                let rdonly = def.flags & BPF_F_RDONLY_PROG != 0;
                Reg {
                    map: m,
                    maybe_null,
                    rdonly,
                    id: if maybe_null { self.new_id() } else { 0 },
                    ..Reg::pointer(RegType::MapValue)
                }
            }
            RetKind::PtrToRingbufMemOrNull => {
                let Some(size) = meta.alloc_size else {
                    return self.err(pc, "R2 is not a known constant");
                };
                let id = self.new_id();
                st.refs.push(RefState { id, pc });
                Reg {
                    mem_size: size as u32,
                    maybe_null: true,
                    id,
                    ref_obj_id: id,
                    ..Reg::pointer(RegType::Mem)
                }
            }
            RetKind::PtrToSocketOrNull
            | RetKind::PtrToTcpSockOrNull
            | RetKind::PtrToSockCommonOrNull => {
                let ty = match proto.ret {
                    RetKind::PtrToSocketOrNull => RegType::Socket,
                    RetKind::PtrToTcpSockOrNull => RegType::TcpSock,
                    _ => RegType::SockCommon,
                };
                let id = self.new_id();
                let ref_obj_id = if matches!(id_kind(proto.id), Acquire::Yes) {
                    st.refs.push(RefState { id, pc });
                    id
                } else {
                    // Casts of a socket keep its reference.
                    let _ = id;
                    first_arg.ref_obj_id.max(meta.inherited_ref)
                };
                Reg {
                    maybe_null: true,
                    id,
                    ref_obj_id,
                    ..Reg::pointer(ty)
                }
            }
            RetKind::PtrToMemOrBtfId => Reg::pointer(RegType::BtfId),
            RetKind::PtrToBtfIdOrNull => Reg {
                maybe_null: true,
                id: self.new_id(),
                ..Reg::pointer(RegType::BtfId)
            },
            RetKind::PtrToMemOrNull => Reg {
                maybe_null: true,
                id: self.new_id(),
                mem_size: meta.mem_size.unwrap_or(0) as u32,
                rdonly: true,
                ..Reg::pointer(RegType::Mem)
            },
        })
    }

    /// The constant in `regno`, which now has to stay exact.
    fn precise_const(&mut self, st: &State, regno: u8) -> Option<u64> {
        self.mark_precise(st.frameno(), 1 << regno);
        st.reg(regno).v.const_value()
    }

    fn arg_type_err<T>(&self, pc: usize, regno: u8, reg: &Reg, expected: &str) -> VResult<T> {
        self.err(
            pc,
            format!("R{regno} type={} expected={expected}", type_name(reg)),
        )
    }

    /// Checks argument `i` (register `i+1`) against its kind.
    fn check_arg(
        &mut self,
        st: &mut State,
        pc: usize,
        proto: &HelperProto,
        i: usize,
        meta: &mut CallMeta,
    ) -> VResult<()> {
        let kind = proto.args[i];
        let regno = i as u8 + 1;
        if kind == ArgKind::DontCare {
            return Ok(());
        }
        let reg = *st.reg(regno);
        if !reg.is_init() {
            return self.err(pc, format!("R{regno} !read_ok"));
        }
        let null_ok = matches!(
            kind,
            ArgKind::PtrToMemOrNull | ArgKind::PtrToCtxOrNull | ArgKind::PtrToStackOrNull
        );
        if null_ok && reg.is_null_const() {
            self.mark_precise(st.frameno(), 1 << regno);
            return Ok(());
        }
        let plain_ptr = |r: &Reg| r.off == 0 && r.v.is_zero();
        match kind {
            ArgKind::DontCare | ArgKind::Anything => Ok(()),
            ArgKind::Scalar => {
                if !reg.is_scalar() {
                    return self.arg_type_err(pc, regno, &reg, "scalar");
                }
                Ok(())
            }
            ArgKind::ConstMapPtr => {
                if reg.ty != RegType::ConstMapPtr || reg.maybe_null {
                    return self.arg_type_err(pc, regno, &reg, "map_ptr");
                }
                meta.map = Some(reg.map);
                Ok(())
            }
            ArgKind::PtrToMapKey | ArgKind::PtrToMapValue | ArgKind::PtrToUninitMapValue => {
                let Some(def) = meta.map.and_then(|m| self.map_def(m)) else {
                    return self.err(
                        pc,
                        format!(
                            "invalid map_ptr to access map->{}",
                            if kind == ArgKind::PtrToMapKey {
                                "key"
                            } else {
                                "value"
                            }
                        ),
                    );
                };
                let size = if kind == ArgKind::PtrToMapKey {
                    def.key_size
                } else {
                    def.value_size
                } as u64;
                let write = kind == ArgKind::PtrToUninitMapValue;
                self.check_helper_mem(st, pc, regno, size, write, !write, false)
            }
            ArgKind::PtrToMem | ArgKind::PtrToMemOrNull | ArgKind::PtrToUninitMem => {
                // Checked together with its size argument.
                let has_size = proto
                    .args
                    .get(proto.size_arg_of(i))
                    .is_some_and(|k| matches!(k, ArgKind::ConstSize | ArgKind::ConstSizeOrZero));
                if !has_size {
                    // A fixed-size buffer we cannot size: require a pointer.
                    if !reg.is_pointer() {
                        return self.arg_type_err(
                            pc,
                            regno,
                            &reg,
                            "fp, pkt, pkt_meta, map_value, mem",
                        );
                    }
                }
                if reg.is_pointer() && reg.maybe_null {
                    return self.arg_type_err(pc, regno, &reg, "fp, pkt, pkt_meta, map_value, mem");
                }
                Ok(())
            }
            ArgKind::ConstSize | ArgKind::ConstSizeOrZero => {
                if !reg.is_scalar() {
                    return self.arg_type_err(pc, regno, &reg, "scalar");
                }
                self.mark_precise(st.frameno(), 1 << regno);
                let v = reg.v;
                if v.smin < 0 {
                    return self.err(
                        pc,
                        format!(
                            "R{regno} min value is negative, either use unsigned or 'var &= const'"
                        ),
                    );
                }
                if kind == ArgKind::ConstSize && v.umin == 0 {
                    return self.err(
                        pc,
                        format!(
                            "R{regno} invalid zero-sized read: u64=[{},{}]",
                            v.umin, v.umax
                        ),
                    );
                }
                if v.umax >= super::alu::MAX_VAR_OFF as u64 {
                    return self.err(
                        pc,
                        format!(
                            "R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'"
                        ),
                    );
                }
                meta.mem_size = Some(v.umax);
                // The memory this size describes: the argument before it
                // (kernel helpers), or both pointers of a builtin. Reads
                // first, so that memcpy's source cannot count as
                // initialised by the write to an overlapping destination.
                for writes in [false, true] {
                    for j in (0..proto.args.len()).filter(|&j| j != i) {
                        let (write, init, null) = match proto.args[j] {
                            ArgKind::PtrToMem => (false, true, false),
                            ArgKind::PtrToMemOrNull => (false, true, true),
                            ArgKind::PtrToUninitMem => (true, false, false),
                            _ => continue,
                        };
                        if write == writes && proto.size_arg_of(j) == i {
                            self.check_helper_mem(st, pc, j as u8 + 1, v.umax, write, init, null)?;
                            // Up to a bound, not an exact size.
                            self.imprecise_stack_writes |= write && v.umin != v.umax;
                        }
                    }
                }
                Ok(())
            }
            ArgKind::ConstAllocSizeOrZero => match self.precise_const(st, regno) {
                Some(c) if reg.is_scalar() && c < super::alu::MAX_VAR_OFF as u64 => {
                    meta.alloc_size = Some(c);
                    Ok(())
                }
                _ => self.err(pc, format!("R{regno} is not a known constant")),
            },
            ArgKind::PtrToCtx | ArgKind::PtrToCtxOrNull => {
                if reg.ty != RegType::Ctx {
                    return self.arg_type_err(pc, regno, &reg, "ctx");
                }
                if !plain_ptr(&reg) {
                    return self.err(
                        pc,
                        format!(
                            "dereference of modified ctx ptr R{regno} off={} disallowed",
                            reg.off
                        ),
                    );
                }
                Ok(())
            }
            ArgKind::PtrToStack | ArgKind::PtrToStackOrNull => {
                if reg.ty != RegType::Stack {
                    return self.arg_type_err(pc, regno, &reg, "fp");
                }
                Ok(())
            }
            ArgKind::PtrToFunc => {
                if reg.ty != RegType::Func {
                    return self.arg_type_err(pc, regno, &reg, "func");
                }
                meta.callback = Some(reg.map as usize);
                Ok(())
            }
            ArgKind::PtrToSpinLock | ArgKind::PtrToTimer => {
                if reg.ty != RegType::MapValue || reg.maybe_null || !reg.v.is_zero() {
                    return self.arg_type_err(pc, regno, &reg, "map_value");
                }
                let size = if kind == ArgKind::PtrToSpinLock {
                    4
                } else {
                    16
                };
                self.check_helper_mem(st, pc, regno, size, true, false, false)
            }
            ArgKind::PtrToLong | ArgKind::PtrToInt => {
                let size = if kind == ArgKind::PtrToLong { 8 } else { 4 };
                if reg.is_scalar() {
                    return self.arg_type_err(pc, regno, &reg, "fp, pkt, pkt_meta, map_value, mem");
                }
                self.check_helper_mem(st, pc, regno, size, true, false, false)
            }
            ArgKind::PtrToConstStr => {
                let rdonly = reg.ty == RegType::MapValue
                    && self
                        .map_def(reg.map)
                        .is_some_and(|d| d.flags & BPF_F_RDONLY_PROG != 0);
                if !rdonly || reg.maybe_null || !reg.v.is_const() {
                    return self.err(pc, format!("R{regno} does not point to a readonly map'"));
                }
                self.check_helper_mem(st, pc, regno, 1, false, false, false)
            }
            ArgKind::PtrToRingbufMem => {
                if reg.ty != RegType::Mem || reg.ref_obj_id == 0 || reg.maybe_null {
                    return self.arg_type_err(pc, regno, &reg, "ringbuf_mem");
                }
                if !plain_ptr(&reg) {
                    return self.err(
                        pc,
                        format!("R{regno} must have zero offset when passed to release func"),
                    );
                }
                meta.released_ref = Some(reg.ref_obj_id);
                Ok(())
            }
            ArgKind::PtrToSocket | ArgKind::PtrToSockCommon => {
                let ok = if kind == ArgKind::PtrToSocket {
                    reg.ty == RegType::Socket
                } else {
                    matches!(
                        reg.ty,
                        RegType::Socket | RegType::SockCommon | RegType::TcpSock
                    ) || (reg.kernel_ptr && reg.is_scalar() && is_btf_sock_cast(proto))
                };
                if !ok || reg.maybe_null {
                    return self.arg_type_err(pc, regno, &reg, "sock");
                }
                meta.inherited_ref = reg.ref_obj_id;
                Ok(())
            }
            ArgKind::PtrToBtfId => {
                // Socket pointers stand for the BTF socket types.
                let ok = matches!(
                    reg.ty,
                    RegType::BtfId | RegType::Socket | RegType::SockCommon | RegType::TcpSock
                ) && !reg.maybe_null;
                if !ok {
                    return self.arg_type_err(pc, regno, &reg, "ptr_");
                }
                meta.inherited_ref = reg.ref_obj_id;
                Ok(())
            }
            ArgKind::PtrToDynptr | ArgKind::PtrToKptr => self.err(
                pc,
                format!(
                    "R{regno}: helper bpf_{} takes a {}, which the verifier does not support",
                    proto.name,
                    if kind == ArgKind::PtrToDynptr {
                        "dynptr"
                    } else {
                        "kptr"
                    }
                ),
            ),
        }
    }
}

/// Return values the kernel allows at program exit (`check_return_code`),
/// for the program types whose callers interpret them as verdicts.
fn return_range(t: ProgType) -> Option<(i64, i64)> {
    use ProgType::*;
    match t {
        CgroupSockAddr | CgroupSock | CgroupDevice | CgroupSysctl | CgroupSockopt | SkLookup => {
            Some((0, 1))
        }
        // Egress programs may also return congestion notification bits.
        CgroupSkb => Some((0, 3)),
        _ => None,
    }
}

enum Acquire {
    Yes,
    No,
}

/// Helpers that return a new reference the program must release.
fn id_kind(id: u32) -> Acquire {
    match id {
        SK_LOOKUP_TCP | SK_LOOKUP_UDP | SKC_LOOKUP_TCP | RINGBUF_RESERVE => Acquire::Yes,
        _ => Acquire::No,
    }
}

/// Drops reference `r`: every pointer holding it becomes unusable.
fn release_reference(st: &mut State, r: u32) {
    st.refs.retain(|x| x.id != r);
    st.for_each_reg_mut(|reg| {
        if reg.is_pointer() && reg.ref_obj_id == r {
            *reg = Reg::unknown();
        }
    });
}

/// The `bpf_skc_to_*` casts: they take any socket pointer, including a
/// tracing program's BTF argument, and return a BTF pointer or NULL.
fn is_btf_sock_cast(proto: &HelperProto) -> bool {
    proto.ret == RetKind::PtrToBtfIdOrNull && proto.args.first() == Some(&ArgKind::PtrToSockCommon)
}
