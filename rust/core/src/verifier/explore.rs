//! The path explorer: a depth-first walk over all paths with a stack of
//! pending branch states, state pruning at prune points, infinite-loop
//! detection and the complexity limit.

use std::time::Instant;

use super::liveness;
use super::log::{self, Log};
use super::state::{regsafe, states_equal, widen, Frame, IdMap, Reg, RegType, State, INPUT_LEN_ID};
use super::{PtrClass, Verified, VerifyError, VerifyOptions, VerifyStats};
use crate::isa::*;
use crate::kernel::contexts::{self, ContextDesc};
use crate::program::Program;
use crate::progtype::ProgType;

/// A rejection: where and why.
#[derive(Debug)]
pub(super) struct VErr {
    pub pc: usize,
    pub msg: String,
}

pub(super) type VResult<T> = Result<T, VErr>;

/// What happens after one instruction.
pub(super) enum Flow {
    Next(usize),
    /// Both ways are possible: `other` continues at `other_pc` later, the
    /// current state continues at `next`.
    Fork {
        other: Box<State>,
        other_pc: usize,
        next: usize,
    },
    /// The path ends (program exit, or an impossible branch).
    End,
}

/// One executed instruction of a path, for precision backtracking.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hist {
    pub pc: u32,
    /// 1 + (frame << 8 | slot) of a fixed-offset stack access, else 0.
    pub stack: u32,
}

/// `Hist::stack` flag: the access overwrote the whole slot.
pub(super) const FULL_WRITE: u32 = 1 << 20;

impl Hist {
    pub fn stack_slot(&self) -> Option<(u8, u8)> {
        let v = self.stack & !FULL_WRITE;
        (v != 0).then(|| (((v - 1) >> 8) as u8, (v - 1) as u8))
    }
}

const ALL_READ: [u64; MAX_CALL_FRAMES] = [u64::MAX; MAX_CALL_FRAMES];
/// In-progress states at an instruction compared for an infinite loop.
const RECENT_ANCESTORS: usize = 4;
/// Inside a loop, instructions on one path between stored states.
const LOOP_CHECKPOINT_DISTANCE: usize = 64;
/// Inside a loop, states kept per instruction for comparisons.
const MAX_LOOP_STATES_PER_INSN: usize = 64;

pub(super) struct Checkpoint {
    /// Per frame, the stack slots some later path read before overwriting
    /// (the kernel's stack liveness); others need not match when pruning.
    pub read: [u64; MAX_CALL_FRAMES],
    /// `None` once evicted.
    pub state: Option<State>,
    /// The instructions from the parent checkpoint to this one.
    pub hist: Vec<Hist>,
    /// Every scalar already marked precise here and above.
    pub all_precise: bool,
    /// Paths still being explored below this state; 0 = fully explored,
    /// so it may prune others.
    branches: u32,
    pub parent: Option<u32>,
    hits: u32,
    misses: u32,
}

struct Pending {
    state: State,
    pc: usize,
    parent: Option<u32>,
    hist: Vec<Hist>,
    from: usize,
}

enum Visit {
    Prune,
    Continue(Option<u32>),
}

pub(super) struct Verifier<'a> {
    pub insns: &'a [Insn],
    pub opts: &'a VerifyOptions<'a>,
    pub ctx: Option<&'static ContextDesc>,
    pub id_gen: u32,
    pub log: Log,
    pub mem_access: Vec<Option<PtrClass>>,
    /// See [`Verified::imprecise_stack_writes`].
    pub imprecise_stack_writes: bool,
    live: Vec<u16>,
    prune_point: Vec<bool>,
    /// Callback entries: re-entering one with a state an ancestor already
    /// covers is a fixpoint, not an infinite loop.
    pub iter_point: Vec<bool>,
    explored: Vec<Vec<u32>>,
    pub ckpts: Vec<Checkpoint>,
    /// The current path: its latest checkpoint and the instructions since.
    pub cur_parent: Option<u32>,
    pub cur_hist: Vec<Hist>,
    /// Set by a fixed-offset stack access of the instruction being checked.
    pub last_stack: u32,
    pending: Vec<Pending>,
    ids: IdMap,
    pub stats: VerifyStats,
    live_states: u64,
    jumps_processed: u64,
    /// The latest back edge taken: where a runaway loop is reported.
    last_back_edge: Option<usize>,
}

impl<'a> Verifier<'a> {
    pub fn new_id(&mut self) -> u32 {
        self.id_gen += 1;
        self.id_gen
    }

    /// Records which kind of pointer the access at `pc` goes through.
    pub fn note_access(&mut self, pc: usize, class: PtrClass) {
        if let Some(slot) = self.mem_access.get_mut(pc) {
            *slot = match *slot {
                None => Some(class),
                Some(c) if c == class => Some(c),
                Some(_) => Some(PtrClass::Other),
            };
        }
    }

    fn live_masks(&self, st: &State, pc: usize) -> Vec<u16> {
        let n = st.frames.len();
        let mut masks = Vec::with_capacity(n);
        for (k, f) in st.frames.iter().enumerate() {
            if k + 1 == n {
                masks.push(self.live.get(pc).copied().unwrap_or(u16::MAX));
            } else {
                // The frame resumes after the call of the frame above it.
                let resume = st.frames[k + 1].callsite + 1;
                let m = self.live.get(resume).copied().unwrap_or(u16::MAX);
                masks.push(m & !0x3f);
            }
            let _ = f;
        }
        masks
    }

    fn is_state_visited(
        &mut self,
        st: &mut State,
        pc: usize,
        parent: Option<u32>,
    ) -> VResult<Visit> {
        let live = self.live_masks(st, pc);
        let mut looping = false;
        let mut widen_from = None;
        let mut prune_by = None;
        let list = std::mem::take(&mut self.explored[pc]);
        let mut result = None;
        // States still being explored below are ancestors of this path: an
        // infinite loop repeats the most recent of them, so only the last
        // few are compared (comparing all makes long loops quadratic; the
        // complexity limit still ends loops that never repeat exactly).
        let mut ancestors_checked = 0;
        for &ci in list.iter().rev() {
            let ck = &self.ckpts[ci as usize];
            let Some(old) = &ck.state else { continue };
            if ck.branches > 0 {
                if !self.iter_point[pc] {
                    if ancestors_checked >= RECENT_ANCESTORS {
                        looping = true;
                        continue;
                    }
                    ancestors_checked += 1;
                }
                if self.iter_point[pc] {
                    if states_equal(old, st, &live, &ck.read, &mut self.ids, false) {
                        result = Some(Visit::Prune);
                        break;
                    }
                    // The newest such state (the list is walked newest first).
                    widen_from = widen_from.or(Some(ci));
                } else if states_equal(old, st, &live, &ALL_READ, &mut self.ids, true)
                    && states_equal(st, old, &live, &ALL_READ, &mut self.ids, true)
                {
                    self.explored[pc] = list;
                    return Err(VErr {
                        pc,
                        msg: format!("infinite loop detected at insn {pc}"),
                    });
                }
                looping = true;
                continue;
            }
            if states_equal(old, st, &live, &ck.read, &mut self.ids, false) {
                self.ckpts[ci as usize].hits += 1;
                result = Some(Visit::Prune);
                prune_by = Some(ci);
                break;
            }
            self.ckpts[ci as usize].misses += 1;
        }
        // Forget states that keep failing to prune (as the kernel does).
        let mut list = list;
        list.retain(|&ci| {
            let ck = &mut self.ckpts[ci as usize];
            if ck.branches == 0 && ck.state.is_some() && ck.misses > ck.hits * 3 + 3 {
                ck.state = None;
                self.live_states -= 1;
                false
            } else {
                ck.state.is_some() || ck.branches > 0
            }
        });
        if let Some(v) = result {
            self.explored[pc] = list;
            if let Some(ci) = prune_by {
                // The pruned path relied on the old state's precise values
                // and will read what the old state's future read.
                if let Some(old) = self.ckpts[ci as usize].state.clone() {
                    self.propagate_precision(&old);
                }
                let read = self.ckpts[ci as usize].read;
                for (k, &m) in read.iter().enumerate() {
                    if m != 0 {
                        self.mark_stack_read(k, m);
                    }
                }
            } else {
                // Pruned against an ancestor (a repeated callback) whose
                // future is not fully known yet: assume it needs everything.
                self.mark_all_from(self.cur_parent);
                for k in 0..MAX_CALL_FRAMES {
                    self.mark_stack_read(k, u64::MAX);
                }
            }
            return Ok(v);
        }
        if let Some(ci) = widen_from {
            // A repeated callback: continue with a state covering both
            // iterations so that the next one is pruned.
            if let Some(w) = self.ckpts[ci as usize]
                .state
                .as_ref()
                .and_then(|old| widen(old, st))
            {
                *st = w;
            }
        } else if looping && self.cur_hist.len() < LOOP_CHECKPOINT_DISTANCE {
            // Inside a loop, states are stored only every so often along
            // this path (not since the last state stored anywhere: the exit
            // path of every iteration stores one, and the loop's own
            // history would then grow without bound, making precision
            // backtracking quadratic).
            self.explored[pc] = list;
            return Ok(Visit::Continue(parent));
        }
        let id = self.ckpts.len() as u32;
        let mut stored = st.clone();
        // Precision is about the future: it is found again by backtracking.
        stored.for_each_reg_mut(|r| r.precise = false);
        self.ckpts.push(Checkpoint {
            state: Some(stored),
            hist: std::mem::take(&mut self.cur_hist),
            read: [0; MAX_CALL_FRAMES],
            all_precise: false,
            branches: 1,
            parent,
            hits: 0,
            misses: 0,
        });
        // A long loop stores a state every few iterations. Past a point the
        // oldest iterations still running stop being compared (they stay
        // checkpoints of the path, for precision): comparing every later
        // iteration with all of them would make long loops quadratic.
        if looping && list.len() >= MAX_LOOP_STATES_PER_INSN {
            let ckpts = &self.ckpts;
            if let Some(k) = list.iter().position(|&ci| ckpts[ci as usize].branches > 0) {
                list.remove(k);
            }
        }
        list.push(id);
        self.stats.max_states_per_insn = self.stats.max_states_per_insn.max(list.len() as u64);
        self.explored[pc] = list;
        self.stats.states_total += 1;
        self.live_states += 1;
        self.stats.peak_states = self.stats.peak_states.max(self.live_states);
        Ok(Visit::Continue(Some(id)))
    }

    /// Stack slots `mask` of frame `frame` are read now: every stored state
    /// since they were last overwritten must keep them when pruning.
    pub fn mark_stack_read(&mut self, frame: usize, mut mask: u64) {
        if frame >= MAX_CALL_FRAMES {
            return;
        }
        let screen = |e: &Hist, mask: &mut u64| {
            if e.stack & FULL_WRITE != 0 {
                if let Some((f, sl)) = e.stack_slot() {
                    if f as usize == frame && sl < 64 {
                        *mask &= !(1u64 << sl);
                    }
                }
            }
        };
        for e in self.cur_hist.iter().rev() {
            screen(e, &mut mask);
            if mask == 0 {
                return;
            }
        }
        let mut ck = self.cur_parent;
        while let Some(c) = ck {
            let ckpt = &mut self.ckpts[c as usize];
            let new = mask & !ckpt.read[frame];
            if new == 0 {
                return;
            }
            ckpt.read[frame] |= new;
            mask = new;
            for e in ckpt.hist.iter().rev() {
                screen(e, &mut mask);
                if mask == 0 {
                    return;
                }
            }
            ck = ckpt.parent;
        }
    }

    fn finish_path(&mut self, mut parent: Option<u32>) {
        while let Some(p) = parent {
            let ck = &mut self.ckpts[p as usize];
            ck.branches = ck.branches.saturating_sub(1);
            if ck.branches > 0 {
                break;
            }
            parent = ck.parent;
        }
    }

    fn run_path(&mut self, mut st: State, mut pc: usize) -> VResult<()> {
        loop {
            self.stats.insns_processed += 1;
            if self.stats.insns_processed > self.opts.max_processed_insns {
                // A program this long to explore is almost always a loop the
                // verifier cannot bound: point at its back edge.
                return Err(VErr {
                    pc: self.last_back_edge.unwrap_or(pc),
                    msg: format!(
                        "BPF program is too large. Processed {} insn (limit {})",
                        self.stats.insns_processed, self.opts.max_processed_insns
                    ),
                });
            }
            if pc >= self.insns.len() {
                return Err(VErr {
                    pc,
                    msg: format!("invalid insn idx {pc}"),
                });
            }
            if self.prune_point[pc] {
                match self.is_state_visited(&mut st, pc, self.cur_parent)? {
                    Visit::Prune => {
                        if self.log.level >= 2 {
                            self.log.line(format!("{pc}: safe"));
                        }
                        self.finish_path(self.cur_parent);
                        return Ok(());
                    }
                    Visit::Continue(p) => self.cur_parent = p,
                }
            }
            if self.log.level >= 1 {
                if let Some(src) = self.line_at(pc) {
                    self.log.line(format!("; {src}"));
                }
            }
            let insn_text = if self.log.level >= 1 {
                log::insn_text(self.insns, pc)
            } else {
                String::new()
            };
            self.last_stack = 0;
            let flow = self.step(&mut st, pc);
            if self.log.level >= 1 {
                let state = if self.log.level >= 2 {
                    format!(" ; {}", log::state_text(&st, self.opts.maps))
                } else {
                    String::new()
                };
                self.log.line(format!("{pc}: {insn_text}{state}"));
            }
            let flow = flow?;
            self.cur_hist.push(Hist {
                pc: pc as u32,
                stack: self.last_stack,
            });
            match flow {
                Flow::Next(n) => {
                    if n <= pc {
                        self.last_back_edge = Some(pc);
                    }
                    pc = n
                }
                Flow::Fork {
                    other,
                    other_pc,
                    next,
                } => {
                    if next <= pc {
                        self.last_back_edge = Some(pc);
                    }
                    self.jumps_processed += 1;
                    if let Some(p) = self.cur_parent {
                        self.ckpts[p as usize].branches += 1;
                    }
                    self.pending.push(Pending {
                        state: *other,
                        pc: other_pc,
                        parent: self.cur_parent,
                        hist: self.cur_hist.clone(),
                        from: pc,
                    });
                    pc = next;
                }
                Flow::End => {
                    self.finish_path(self.cur_parent);
                    return Ok(());
                }
            }
        }
    }

    fn line_at(&self, pc: usize) -> Option<&str> {
        let li = self.opts.line_info;
        li.binary_search_by_key(&pc, |(i, _)| *i)
            .ok()
            .map(|k| li[k].1.as_str())
    }

    /// Dispatches one instruction.
    fn step(&mut self, st: &mut State, pc: usize) -> VResult<Flow> {
        let insn = self.insns[pc];
        match insn.class() {
            CLS_ALU | CLS_ALU64 => {
                self.check_alu(st, pc, &insn)?;
                Ok(Flow::Next(pc + 1))
            }
            CLS_LDX => {
                self.check_ldx(st, pc, &insn)?;
                Ok(Flow::Next(pc + 1))
            }
            CLS_ST | CLS_STX => {
                if insn.opc & 0xe0 == MODE_ATOMIC {
                    self.check_atomic(st, pc, &insn)?;
                } else {
                    self.check_store(st, pc, &insn)?;
                }
                Ok(Flow::Next(pc + 1))
            }
            CLS_LD => {
                if insn.is_lddw() {
                    self.check_lddw(st, pc, &insn)?;
                    Ok(Flow::Next(pc + 2))
                } else {
                    self.check_ld_abs(st, pc, &insn)?;
                    Ok(Flow::Next(pc + 1))
                }
            }
            _ => {
                let op = insn.opc & 0xf0;
                match op {
                    JMP_CALL => self.check_call(st, pc, &insn),
                    JMP_EXIT => self.check_exit(st, pc),
                    JMP_JA => {
                        let t = insn.jump_target(pc).unwrap_or(pc + 1);
                        Ok(Flow::Next(t))
                    }
                    _ => self.check_cond_jump(st, pc, &insn),
                }
            }
        }
    }

    /// `lddw`: a constant, a map pointer, a map value address or a function.
    fn check_lddw(&mut self, st: &mut State, pc: usize, insn: &Insn) -> VResult<()> {
        let hi = self.insns.get(pc + 1).map_or(0, |i| i.imm);
        let reg = match insn.src {
            0 => Reg::constant((insn.imm as u32 as u64) | ((hi as u32 as u64) << 32)),
            PSEUDO_MAP_FD | PSEUDO_MAP_IDX | PSEUDO_MAP_VALUE | PSEUDO_MAP_IDX_VALUE => {
                let idx = insn.imm as u32;
                let Some(def) = self.opts.maps.get(idx as usize) else {
                    return Err(VErr {
                        pc,
                        msg: format!(
                            "map index {idx} out of range: the program has {} maps",
                            self.opts.maps.len()
                        ),
                    });
                };
                if matches!(insn.src, PSEUDO_MAP_FD | PSEUDO_MAP_IDX) {
                    Reg {
                        map: idx,
                        ..Reg::pointer(RegType::ConstMapPtr)
                    }
                } else {
                    let off = hi as i64;
                    if off < 0 || off >= def.value_size as i64 {
                        return Err(VErr {
                            pc,
                            msg: format!(
                                "invalid access to map value pointer, value_size={} off={off}",
                                def.value_size
                            ),
                        });
                    }
                    if !super::memory::map_has_direct_value(def) {
                        return Err(VErr {
                            pc,
                            msg: format!(
                                "map '{}' of type {} has no direct value access",
                                def.name,
                                def.map_type.name()
                            ),
                        });
                    }
                    Reg {
                        map: idx,
                        off: off as i32,
                        rdonly: def.flags & crate::maps::BPF_F_RDONLY_PROG != 0,
                        ..Reg::pointer(RegType::MapValue)
                    }
                }
            }
            PSEUDO_FUNC => {
                // The target is relative, in `imm` (checked by `Program`).
                let t = (pc as i64 + 1 + insn.imm as i64) as usize;
                Reg {
                    map: t as u32,
                    ..Reg::pointer(RegType::Func)
                }
            }
            _ => {
                return Err(VErr {
                    pc,
                    msg: "unsupported lddw pseudo form (BTF ids need kernel BTF)".into(),
                })
            }
        };
        *st.reg_mut(insn.dst) = reg;
        Ok(())
    }

    pub fn err<T>(&self, pc: usize, msg: impl Into<String>) -> VResult<T> {
        Err(VErr {
            pc,
            msg: msg.into(),
        })
    }

    /// Fails unless register `r` holds a value.
    pub fn check_read(&self, st: &State, pc: usize, r: u8) -> VResult<()> {
        if !st.reg(r).is_init() {
            return self.err(pc, format!("R{r} !read_ok"));
        }
        Ok(())
    }

    fn initial_state(&mut self) -> State {
        let mut f = Frame::new(usize::MAX, 0, 0);
        let mut input_len = Reg::NOT_INIT;
        if self.opts.prog_type == ProgType::Raw {
            // The input is addressed like a packet whose end is r1 + r2:
            // accesses are proven against what comparisons taught about the
            // length (see `State::input_len`).
            f.regs[1] = Reg::pointer(RegType::Packet);
            let min = self.opts.raw_input_size as u64;
            let max = (self.opts.raw_max_input_size as u64).max(min);
            input_len = Reg {
                id: INPUT_LEN_ID,
                ..Reg::scalar(super::scalar::Scalar::urange(min, max))
            };
            f.regs[2] = input_len;
        } else {
            f.regs[1] = Reg::pointer(RegType::Ctx);
        }
        State {
            input_len,
            ..State::new(f)
        }
    }

    fn explore(&mut self) -> VResult<()> {
        let init = self.initial_state();
        self.pending.push(Pending {
            state: init,
            pc: 0,
            parent: None,
            hist: Vec::new(),
            from: usize::MAX,
        });
        while let Some(p) = self.pending.pop() {
            let mark = self.log.mark();
            if self.log.level >= 1 && p.from != usize::MAX {
                self.log.line(String::new());
                self.log.line(format!(
                    "from {} to {}: {}",
                    p.from,
                    p.pc,
                    log::state_text(&p.state, self.opts.maps)
                ));
            }
            self.cur_parent = p.parent;
            self.cur_hist = p.hist;
            if p.from != usize::MAX && p.pc <= p.from {
                self.last_back_edge = Some(p.from);
            }
            self.run_path(p.state, p.pc)?;
            if self.log.level == 1 {
                // Level 1 keeps only the path that fails.
                self.log.reset_to(mark);
            }
        }
        Ok(())
    }
}

/// Marks jump targets, branch fall-throughs and call returns as places
/// to compare states; rejects unreachable instructions.
fn analyse_cfg(program: &Program) -> Result<(Vec<bool>, Vec<bool>), VErr> {
    let insns = program.insns();
    let n = insns.len();
    let mut prune = vec![false; n];
    let mut iter_point = vec![false; n];
    let mut reached = vec![false; n];
    let mut work = vec![0usize];
    reached[0] = true;
    prune[0] = true;
    let push = |t: usize, reached: &mut Vec<bool>, work: &mut Vec<usize>| {
        if t < n && !reached[t] {
            reached[t] = true;
            work.push(t);
        }
    };
    while let Some(pc) = work.pop() {
        let insn = insns[pc];
        let next = if insn.is_lddw() { pc + 2 } else { pc + 1 };
        if insn.is_lddw() && insn.src == PSEUDO_FUNC {
            let t = (pc as i64 + 1 + insn.imm as i64) as usize;
            if t < n {
                prune[t] = true;
                iter_point[t] = true;
            }
            push(t, &mut reached, &mut work);
        }
        if insn.opc == OP_CALL && insn.src == CALL_LOCAL {
            let t = (pc as i64 + 1 + insn.imm as i64) as usize;
            if t < n {
                prune[t] = true;
            }
            push(t, &mut reached, &mut work);
            if next < n {
                prune[next] = true;
            }
        }
        if insn.opc == OP_CALL && next < n {
            prune[next] = true;
        }
        if let Some(t) = insn.jump_target(pc) {
            if t < n {
                prune[t] = true;
            }
            push(t, &mut reached, &mut work);
            if !insn.is_unconditional_jump() && next < n {
                prune[next] = true;
            }
        }
        if insn.falls_through() {
            push(next, &mut reached, &mut work);
        }
    }
    let mut pc = 0;
    while pc < n {
        if !reached[pc] {
            return Err(VErr {
                pc,
                msg: format!("unreachable insn {pc}"),
            });
        }
        pc += if insns[pc].is_lddw() { 2 } else { 1 };
    }
    Ok((prune, iter_point))
}

pub(super) fn run(program: &Program, opts: &VerifyOptions) -> Result<Verified, VerifyError> {
    let start = Instant::now();
    let mut log = Log::new(opts.log_level);
    let fail = |pc: Option<usize>, msg: String, mut log: Log, stats: VerifyStats| {
        log.line(msg.clone());
        VerifyError {
            pc,
            message: msg,
            log: log.finish(),
            stats,
        }
    };
    let (prune_point, iter_point) = match analyse_cfg(program) {
        Ok(x) => x,
        Err(e) => {
            let stats = VerifyStats {
                duration: start.elapsed(),
                ..VerifyStats::default()
            };
            return Err(fail(Some(e.pc), e.msg, log, stats));
        }
    };
    let ctx = if opts.prog_type == ProgType::Raw {
        None
    } else {
        contexts::context_for(opts.prog_type)
    };
    if opts.log_level >= 1 {
        log.line(format!("func#0 @0 ({})", opts.prog_type.name()));
    }
    let n = program.len();
    let mut v = Verifier {
        insns: program.insns(),
        opts,
        ctx,
        id_gen: 0,
        log,
        mem_access: vec![None; n],
        imprecise_stack_writes: false,
        live: liveness::live_in(program),
        prune_point,
        iter_point,
        explored: vec![Vec::new(); n],
        ckpts: Vec::new(),
        cur_parent: None,
        cur_hist: Vec::new(),
        last_stack: 0,
        pending: Vec::new(),
        ids: IdMap::default(),
        stats: VerifyStats::default(),
        live_states: 0,
        jumps_processed: 0,
        last_back_edge: None,
    };
    let res = v.explore();
    v.stats.duration = start.elapsed();
    let stats_line = format!(
        "processed {} insns (limit {}) max_states_per_insn {} total_states {} peak_states {} mark_read 0",
        v.stats.insns_processed,
        opts.max_processed_insns,
        v.stats.max_states_per_insn,
        v.stats.states_total,
        v.stats.peak_states
    );
    match res {
        Ok(()) => {
            let mut log = v.log;
            if opts.log_level >= 1 {
                log.line(stats_line);
            }
            Ok(Verified {
                stats: v.stats,
                log: log.finish(),
                mem_access: v.mem_access,
                imprecise_stack_writes: v.imprecise_stack_writes,
            })
        }
        Err(e) => {
            let mut log = v.log;
            log.line(e.msg.clone());
            if opts.log_level >= 1 {
                log.line(stats_line);
            }
            Err(VerifyError {
                pc: Some(e.pc),
                message: e.msg,
                log: log.finish(),
                stats: v.stats,
            })
        }
    }
}

/// Registers equal in the sense pruning uses (for tests of subsumption).
#[allow(dead_code)]
pub(super) fn reg_subsumes(old: &Reg, cur: &Reg) -> bool {
    regsafe(old, cur, &mut IdMap::default(), false)
}
