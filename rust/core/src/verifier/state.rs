//! The abstract machine state: typed registers, per-byte stack, call frames
//! and acquired references; and the subsumption test used for pruning.

use super::scalar::Scalar;
use crate::isa::{NUM_REGS, STACK_FRAME_SIZE};

/// What a register holds (the kernel's `enum bpf_reg_type`, the subset we
/// meet). `_OR_NULL` variants are `maybe_null` on the pointer types.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RegType {
    NotInit,
    Scalar,
    Ctx,
    Stack,
    Packet,
    PacketMeta,
    PacketEnd,
    MapValue,
    ConstMapPtr,
    /// Memory of `mem_size` bytes: raw program input, ring-buffer records.
    Mem,
    SockCommon,
    Socket,
    TcpSock,
    /// A kernel object (the kernel's `PTR_TO_BTF_ID`): passed to helpers,
    /// and read at constant offsets through probe loads.
    BtfId,
    /// The address of a BPF function (`lddw src=PSEUDO_FUNC`), for callbacks.
    Func,
}

impl RegType {
    pub fn is_pointer(self) -> bool {
        !matches!(self, RegType::NotInit | RegType::Scalar)
    }

    pub fn is_packet(self) -> bool {
        matches!(self, RegType::Packet | RegType::PacketMeta)
    }
}

/// One register. For pointers, `off` is the fixed offset and `v` the
/// variable part; for scalars only `v` matters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Reg {
    pub ty: RegType,
    pub maybe_null: bool,
    /// Memory a helper returned read-only, or a read-only map's value.
    pub rdonly: bool,
    /// Stack pointers: which frame's stack.
    pub frame: u8,
    /// Map pointers and map values: index into the program's maps; Func:
    /// the target instruction.
    pub map: u32,
    /// Shared by copies of one pointer, so a null check or a packet range
    /// proven on one copy applies to all.
    pub id: u32,
    /// Non-zero when the pointer is an acquired reference that must be
    /// released (ring-buffer records, sockets).
    pub ref_obj_id: u32,
    /// Pointers: the fixed offset. Scalars with an id: the constant this
    /// one differs by from the others with the id (`r2 = r1 + 4` links r2
    /// to r1 with offset 4), so a bound learnt on one bounds all.
    pub off: i32,
    /// Packet pointers with a variable part: the id of the pointer it was
    /// added to and of the scalar added (whose value, less the scalar's
    /// offset, is the variable part). Pointers made from the same pointer
    /// and scalar share their variable part, hence their id and range.
    pub base_id: u32,
    pub var_id: u32,
    /// Packet pointers: bytes proven readable from the pointer's id base.
    pub range: u32,
    /// Mem: size of the region.
    pub mem_size: u32,
    /// In a stored state: some later check depends on this scalar's value,
    /// so pruning must compare it (the kernel's precision marks).
    pub precise: bool,
    /// Scalars: an argument of a BTF tracing program (or a word loaded
    /// through one) that may be a kernel pointer. The kernel types it from
    /// the traced function's BTF, which user space does not have; loads
    /// through it are probe reads that cannot fault.
    pub kernel_ptr: bool,
    pub v: Scalar,
}

impl Reg {
    pub const NOT_INIT: Reg = Reg {
        ty: RegType::NotInit,
        maybe_null: false,
        rdonly: false,
        frame: 0,
        map: 0,
        id: 0,
        ref_obj_id: 0,
        off: 0,
        base_id: 0,
        var_id: 0,
        range: 0,
        mem_size: 0,
        precise: false,
        kernel_ptr: false,
        v: Scalar::unknown(),
    };

    pub fn scalar(v: Scalar) -> Reg {
        Reg {
            ty: RegType::Scalar,
            v,
            ..Reg::NOT_INIT
        }
    }

    pub fn unknown() -> Reg {
        Reg::scalar(Scalar::unknown())
    }

    pub fn constant(c: u64) -> Reg {
        Reg::scalar(Scalar::constant(c))
    }

    /// A pointer of type `ty` at fixed offset 0.
    pub fn pointer(ty: RegType) -> Reg {
        Reg {
            ty,
            v: Scalar::constant(0),
            ..Reg::NOT_INIT
        }
    }

    pub fn is_scalar(&self) -> bool {
        self.ty == RegType::Scalar
    }

    pub fn is_init(&self) -> bool {
        self.ty != RegType::NotInit
    }

    pub fn is_pointer(&self) -> bool {
        self.ty.is_pointer()
    }

    pub fn is_const(&self) -> bool {
        self.is_scalar() && self.v.is_const()
    }

    /// A scalar that is certainly zero, or a NULL-able pointer known null.
    pub fn is_null_const(&self) -> bool {
        self.is_scalar() && self.v.is_zero()
    }

    /// The whole offset is a known constant.
    pub fn fixed_offset(&self) -> Option<i64> {
        self.v.const_value().map(|c| self.off as i64 + c as i64)
    }
}

/// What one byte of stack holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StackByte {
    Invalid,
    Misc,
    Zero,
    /// Part of the register spilled in this slot.
    Spill,
}

impl StackByte {
    pub fn letter(self) -> char {
        match self {
            StackByte::Invalid => '?',
            StackByte::Misc => 'm',
            StackByte::Zero => '0',
            StackByte::Spill => 'r',
        }
    }
}

/// Eight bytes of stack: slot `i` covers frame offsets `[-8(i+1), -8i)`;
/// `bytes[0]` is the lowest address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StackSlot {
    pub bytes: [StackByte; 8],
    pub spilled: Reg,
}

impl StackSlot {
    pub const EMPTY: StackSlot = StackSlot {
        bytes: [StackByte::Invalid; 8],
        spilled: Reg::NOT_INIT,
    };

    pub fn is_full_spill(&self) -> bool {
        self.bytes.iter().all(|&b| b == StackByte::Spill)
    }
}

pub const STACK_SLOTS: usize = STACK_FRAME_SIZE / 8;

/// One call frame.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Frame {
    pub regs: [Reg; NUM_REGS as usize],
    pub stack: Vec<StackSlot>,
    /// The call instruction in the caller (`usize::MAX` for the main frame).
    pub callsite: usize,
    /// First instruction of the function this frame runs.
    pub func_start: usize,
    /// Set when the frame runs a callback on behalf of a helper.
    pub callback: Option<Callback>,
}

/// A callback invocation: what the helper call needs to resume.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Callback {
    /// Allowed return values.
    pub ret_min: i64,
    pub ret_max: i64,
    /// The callback's arguments on re-entry (the helper calls it again).
    pub args: [Reg; 5],
    /// How many times the path re-entered it: repeating a callback is not
    /// an infinite loop, the helper bounds it.
    pub iteration: u32,
}

impl Callback {
    fn same_site(&self, other: &Callback) -> bool {
        self.ret_min == other.ret_min && self.ret_max == other.ret_max && self.args == other.args
    }
}

impl Frame {
    pub fn new(callsite: usize, func_start: usize, frameno: usize) -> Frame {
        let mut regs = [Reg::NOT_INIT; NUM_REGS as usize];
        regs[10] = Reg {
            frame: frameno as u8,
            ..Reg::pointer(RegType::Stack)
        };
        Frame {
            regs,
            stack: Vec::new(),
            callsite,
            func_start,
            callback: None,
        }
    }

    /// The slot and byte index of frame offset `off` (negative).
    pub fn locate(off: i64) -> (usize, usize) {
        let pos = (-off - 1) as usize; // 0 = byte at -1
        let slot = pos / 8;
        // bytes[] runs from low to high address; -1 is the top byte.
        (slot, 7 - pos % 8)
    }

    pub fn byte(&self, off: i64) -> StackByte {
        let (slot, b) = Frame::locate(off);
        self.stack
            .get(slot)
            .map_or(StackByte::Invalid, |s| s.bytes[b])
    }

    pub fn slot_mut(&mut self, slot: usize) -> &mut StackSlot {
        if self.stack.len() <= slot {
            self.stack.resize(slot + 1, StackSlot::EMPTY);
        }
        &mut self.stack[slot]
    }

    pub fn slot(&self, slot: usize) -> StackSlot {
        self.stack.get(slot).copied().unwrap_or(StackSlot::EMPTY)
    }
}

/// An acquired reference that must be released before exit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RefState {
    pub id: u32,
    /// Where it was acquired (for the leak message).
    pub pc: usize,
}

/// The id every copy of a raw program's input length carries (r2 on
/// entry): a comparison on any copy bounds the input, and `data + len` is
/// the end of the input. Never handed out by `Verifier::new_id`.
pub const INPUT_LEN_ID: u32 = u32::MAX;

/// The state of one path.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct State {
    pub frames: Vec<Frame>,
    pub refs: Vec<RefState>,
    /// Held `bpf_spin_lock` (map index, offset), if any.
    pub lock: Option<(u32, i64)>,
    /// Raw programs: what is known of the input's length, kept apart from
    /// the registers so it survives r2 being overwritten (a scalar with id
    /// [`INPUT_LEN_ID`]); `NOT_INIT` for other program types.
    pub input_len: Reg,
}

impl State {
    pub fn cur(&self) -> &Frame {
        self.frames.last().expect("a state always has a frame")
    }

    pub fn cur_mut(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("a state always has a frame")
    }

    pub fn reg(&self, r: u8) -> &Reg {
        &self.cur().regs[r as usize]
    }

    pub fn reg_mut(&mut self, r: u8) -> &mut Reg {
        &mut self.cur_mut().regs[r as usize]
    }

    pub fn frameno(&self) -> usize {
        self.frames.len() - 1
    }

    /// A state of one frame, holding no references or locks.
    pub fn new(frame: Frame) -> State {
        State {
            frames: vec![frame],
            refs: Vec::new(),
            lock: None,
            input_len: Reg::NOT_INIT,
        }
    }

    /// Every register and spilled register in every frame, and the input
    /// length.
    /// [`State::for_each_reg_mut`], read only.
    pub fn regs(&self) -> impl Iterator<Item = &Reg> {
        let len = self.input_len.is_init().then_some(&self.input_len);
        len.into_iter().chain(self.frames.iter().flat_map(|fr| {
            fr.regs.iter().chain(
                fr.stack
                    .iter()
                    .filter(|s| s.bytes.contains(&StackByte::Spill))
                    .map(|s| &s.spilled),
            )
        }))
    }

    pub fn for_each_reg_mut(&mut self, mut f: impl FnMut(&mut Reg)) {
        if self.input_len.is_init() {
            f(&mut self.input_len);
        }
        for fr in &mut self.frames {
            for r in fr.regs.iter_mut() {
                f(r);
            }
            for s in fr.stack.iter_mut() {
                if s.bytes.contains(&StackByte::Spill) {
                    f(&mut s.spilled);
                }
            }
        }
    }
}

/// Maps ids of an old state to ids of the current one; two different old
/// ids must not map to one current id (and vice versa), or the old state's
/// "these are the same pointer" facts would not hold in the current one.
#[derive(Default)]
pub struct IdMap {
    pairs: Vec<(u32, u32)>,
}

impl IdMap {
    pub fn clear(&mut self) {
        self.pairs.clear();
    }

    pub fn check(&mut self, old: u32, cur: u32) -> bool {
        if old == 0 && cur == 0 {
            return true;
        }
        if old == 0 || cur == 0 {
            return false;
        }
        for &(o, c) in &self.pairs {
            if o == old || c == cur {
                return o == old && c == cur;
            }
        }
        self.pairs.push((old, cur));
        true
    }
}

/// Whether every concrete value the current register may hold is covered
/// by the old one (whose exploration found no error). Unless `exact`, an
/// old scalar no check depended on (not precise) covers any scalar.
pub fn regsafe(old: &Reg, cur: &Reg, ids: &mut IdMap, exact: bool) -> bool {
    regsafe_linked(old, cur, ids, exact, &[])
}

/// [`regsafe`], where old scalars whose id is in `linked` are compared as
/// if precise: a precise scalar, or a pointer's variable part, is bounded
/// through them.
fn regsafe_linked(old: &Reg, cur: &Reg, ids: &mut IdMap, exact: bool, linked: &[u32]) -> bool {
    if old.ty == RegType::NotInit {
        return true;
    }
    if old.ty != cur.ty {
        return false;
    }
    match old.ty {
        RegType::NotInit => true,
        RegType::Scalar => {
            if old.kernel_ptr && !cur.kernel_ptr {
                // The old path may have loaded through it.
                return false;
            }
            if !exact && !old.precise && (old.id == 0 || !linked.contains(&old.id)) {
                return true;
            }
            // Scalar ids link copies for bounds propagation; an old id
            // that is mapped consistently is enough.
            old.v.contains(&cur.v)
                && (old.id == 0 || (ids.check(old.id, cur.id) && old.off == cur.off))
        }
        _ => {
            old.maybe_null == cur.maybe_null
                && old.rdonly == cur.rdonly
                && old.frame == cur.frame
                && old.map == cur.map
                && old.off == cur.off
                && old.mem_size == cur.mem_size
                && old.range <= cur.range
                && old.v.contains(&cur.v)
                && ids.check(old.id, cur.id)
                && ids.check(old.ref_obj_id, cur.ref_obj_id)
                && ids.check(old.base_id, cur.base_id)
                && ids.check(old.var_id, cur.var_id)
        }
    }
}

fn stacksafe(
    old: &Frame,
    cur: &Frame,
    ids: &mut IdMap,
    exact: bool,
    read: u64,
    linked: &[u32],
) -> bool {
    for (i, os) in old.stack.iter().enumerate() {
        if i >= 64 || read & (1 << i) == 0 {
            // Never read (before being overwritten) after the old state.
            continue;
        }
        let cs = cur.slot(i);
        let mut need_spill = false;
        for b in 0..8 {
            let ok = match os.bytes[b] {
                StackByte::Invalid => true,
                StackByte::Misc => match cs.bytes[b] {
                    StackByte::Misc | StackByte::Zero => true,
                    StackByte::Spill => cs.spilled.is_scalar(),
                    StackByte::Invalid => false,
                },
                StackByte::Zero => {
                    cs.bytes[b] == StackByte::Zero
                        || (cs.bytes[b] == StackByte::Spill && cs.spilled.is_null_const())
                }
                StackByte::Spill => {
                    need_spill = true;
                    cs.bytes[b] == StackByte::Spill
                }
            };
            if !ok {
                return false;
            }
        }
        if need_spill
            && (os.bytes != cs.bytes
                || !regsafe_linked(&os.spilled, &cs.spilled, ids, exact, linked))
        {
            return false;
        }
    }
    true
}

/// The kernel's `states_equal`: whether `cur` is subsumed by `old`.
/// `live` gives, per frame (outermost first), the registers that may be
/// read later; dead ones are not compared.
/// `read` gives, per frame, the stack slots read after `old` (bit per slot).
pub fn states_equal(
    old: &State,
    cur: &State,
    live: &[u16],
    read: &[u64],
    ids: &mut IdMap,
    exact: bool,
) -> bool {
    ids.clear();
    if old.frames.len() != cur.frames.len() || old.lock != cur.lock {
        return false;
    }
    if old.refs.len() != cur.refs.len() {
        return false;
    }
    // Some check after the old state depended on the length's bounds.
    if old.input_len.is_init()
        && (exact || old.input_len.precise)
        && !old.input_len.v.contains(&cur.input_len.v)
    {
        return false;
    }
    for (of, cf) in old.frames.iter().zip(&cur.frames) {
        let same_callback = match (&of.callback, &cf.callback) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_site(b) && (!exact || a.iteration == b.iteration),
            _ => false,
        };
        if of.callsite != cur_callsite(cf) || !same_callback {
            return false;
        }
    }
    let linked = linked_ids(old);
    for (k, (of, cf)) in old.frames.iter().zip(&cur.frames).enumerate() {
        let mask = live.get(k).copied().unwrap_or(u16::MAX);
        for r in 0..NUM_REGS as usize {
            if mask & (1 << r) == 0 {
                continue;
            }
            if !regsafe_linked(&of.regs[r], &cf.regs[r], ids, exact, &linked) {
                return false;
            }
        }
        let read_mask = read.get(k).copied().unwrap_or(u64::MAX);
        if !stacksafe(of, cf, ids, exact, read_mask, &linked) {
            return false;
        }
    }
    for (o, c) in old.refs.iter().zip(&cur.refs) {
        if !ids.check(o.id, c.id) {
            return false;
        }
    }
    true
}

/// Ids of `st`'s precise scalars and of the scalars packet pointers were
/// made with: their copies must match too when pruning, or a bound the old
/// path learnt through a copy would not hold on the current one.
fn linked_ids(st: &State) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for r in st.regs() {
        // The input length is a precise scalar of its own (INPUT_LEN_ID).
        let id = match r.ty {
            RegType::Scalar if r.precise => r.id,
            t if t.is_packet() => r.var_id,
            _ => 0,
        };
        if id != 0 && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

fn cur_callsite(f: &Frame) -> usize {
    f.callsite
}

/// A state covering both `old` and `cur` where that is cheap to say: differing
/// scalars become unknown, differing stack bytes become plain data (or
/// unreadable). Used where a helper repeats a callback: its iterations are
/// bounded by the helper, so over-approximating them lets exploration
/// converge instead of following every iteration. `None` when the two
/// have different shapes.
pub fn widen(old: &State, cur: &State) -> Option<State> {
    if old.frames.len() != cur.frames.len() || old.refs.len() != cur.refs.len() {
        return None;
    }
    let mut out = cur.clone();
    if !old.input_len.v.contains(&cur.input_len.v) {
        let (o, c) = (&old.input_len.v, &cur.input_len.v);
        out.input_len.v = Scalar::urange(o.umin.min(c.umin), o.umax.max(c.umax));
    }
    let mut ids = IdMap::default();
    for (of, wf) in old.frames.iter().zip(out.frames.iter_mut()) {
        if of.callsite != wf.callsite {
            return None;
        }
        for (o, w) in of.regs.iter().zip(wf.regs.iter_mut()) {
            ids.clear();
            if regsafe(o, w, &mut ids, true) {
                // Already covered; keep the current register (and its ids).
            } else if o.is_scalar() && w.is_scalar() {
                *w = Reg::unknown();
            } else if o.ty != w.ty || !w.is_pointer() {
                *w = Reg::NOT_INIT;
            }
        }
        let n = of.stack.len().max(wf.stack.len());
        for i in 0..n {
            let os = of.slot(i);
            let ws = *wf.slot_mut(i);
            if os == ws {
                continue;
            }
            let both_scalar_spills = os.is_full_spill()
                && ws.is_full_spill()
                && os.spilled.is_scalar()
                && ws.spilled.is_scalar();
            let slot = wf.slot_mut(i);
            if both_scalar_spills {
                slot.spilled = Reg::unknown();
                continue;
            }
            for b in 0..8 {
                let (x, y) = (os.bytes[b], ws.bytes[b]);
                slot.bytes[b] = if x == y && x != StackByte::Spill {
                    x
                } else if x == StackByte::Invalid || y == StackByte::Invalid {
                    StackByte::Invalid
                } else {
                    StackByte::Misc
                };
            }
            if !slot.bytes.contains(&StackByte::Spill) {
                slot.spilled = Reg::NOT_INIT;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn precise(v: Scalar) -> Reg {
        Reg {
            precise: true,
            ..Reg::scalar(v)
        }
    }

    fn state(regs: &[(usize, Reg)]) -> State {
        let mut f = Frame::new(usize::MAX, 0, 0);
        for &(r, reg) in regs {
            f.regs[r] = reg;
        }
        State::new(f)
    }

    #[test]
    fn scalars_are_compared_by_containment_when_precise() {
        let mut ids = IdMap::default();
        let old = precise(Scalar::up_to(10));
        assert!(regsafe(
            &old,
            &Reg::scalar(Scalar::urange(2, 5)),
            &mut ids,
            false
        ));
        assert!(!regsafe(
            &old,
            &Reg::scalar(Scalar::up_to(11)),
            &mut ids,
            false
        ));
        // Imprecise: any scalar, but never a pointer.
        let loose = Reg::scalar(Scalar::up_to(10));
        assert!(regsafe(&loose, &Reg::unknown(), &mut ids, false));
        assert!(!regsafe(&loose, &Reg::unknown(), &mut ids, true));
        assert!(!regsafe(
            &loose,
            &Reg::pointer(RegType::Ctx),
            &mut ids,
            false
        ));
        // Uninitialised in the old state: nothing was read, anything goes.
        assert!(regsafe(
            &Reg::NOT_INIT,
            &Reg::pointer(RegType::Ctx),
            &mut ids,
            false
        ));
        assert!(!regsafe(&Reg::unknown(), &Reg::NOT_INIT, &mut ids, false));
    }

    #[test]
    fn packet_pointers_need_at_least_the_old_range() {
        let mut ids = IdMap::default();
        let old = Reg {
            range: 10,
            ..Reg::pointer(RegType::Packet)
        };
        let more = Reg { range: 14, ..old };
        let less = Reg { range: 8, ..old };
        assert!(regsafe(&old, &more, &mut ids, false));
        ids.clear();
        assert!(!regsafe(&old, &less, &mut ids, false));
    }

    #[test]
    fn ids_must_map_one_to_one() {
        let p = |id| Reg {
            id,
            maybe_null: true,
            ..Reg::pointer(RegType::MapValue)
        };
        // Old: r6 and r7 are copies of one pointer; current: two pointers.
        let old = state(&[(6, p(1)), (7, p(1))]);
        let split = state(&[(6, p(5)), (7, p(6))]);
        let same = state(&[(6, p(9)), (7, p(9))]);
        let live = [u16::MAX];
        let read = [u64::MAX];
        let mut ids = IdMap::default();
        assert!(!states_equal(&old, &split, &live, &read, &mut ids, false));
        assert!(states_equal(&old, &same, &live, &read, &mut ids, false));
        // Dead registers are not compared.
        let live_r6 = [1u16 << 6 | 1 << 10];
        assert!(states_equal(&old, &split, &live_r6, &read, &mut ids, false));
    }

    #[test]
    fn stack_slots_never_read_again_are_ignored() {
        let mut old = state(&[]);
        old.frames[0].slot_mut(0).bytes = [StackByte::Misc; 8];
        let cur = state(&[]);
        let live = [u16::MAX];
        let mut ids = IdMap::default();
        assert!(!states_equal(&old, &cur, &live, &[1], &mut ids, false));
        assert!(states_equal(&old, &cur, &live, &[0], &mut ids, false));
        // Initialised data covers zeros, not the other way round.
        let mut zero = state(&[]);
        zero.frames[0].slot_mut(0).bytes = [StackByte::Zero; 8];
        assert!(states_equal(&old, &zero, &live, &[1], &mut ids, false));
        assert!(!states_equal(&zero, &old, &live, &[1], &mut ids, false));
    }

    #[test]
    fn widening_covers_both_states() {
        let a = state(&[(3, Reg::constant(1)), (4, Reg::pointer(RegType::Ctx))]);
        let b = state(&[(3, Reg::constant(2)), (4, Reg::pointer(RegType::Ctx))]);
        let w = widen(&a, &b).expect("same shape");
        let live = [u16::MAX];
        let read = [u64::MAX];
        let mut ids = IdMap::default();
        assert!(states_equal(&w, &a, &live, &read, &mut ids, true));
        assert!(states_equal(&w, &b, &live, &read, &mut ids, true));
    }
}
