//! The checked interpreter.
//!
//! A [`Program`] is translated once into a compact internal form (one
//! 16-byte [`Slot`] per instruction with the operation, resolved jump targets
//! and pre-extended immediates), then run by a single `match` loop. Every
//! memory access is checked against the regions the program may touch: the
//! input buffer, the stack frames of the live calls, and memory that helpers
//! hand out. Instructions are counted exactly (at each control transfer) and
//! compared against a budget so that no program can run forever.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{ExecError, FaultKind, ProgramError};
use crate::helpers::{HelperImpl, HelperMemory, HelperRegistry};
use crate::isa::*;
use crate::program::Program;

/// Default instruction budget per run (about a second of runaway loop).
pub const DEFAULT_MAX_INSTRUCTIONS: u64 = 1_000_000_000;

const FRAME: u64 = STACK_FRAME_SIZE as u64;
/// Bytes of stack one run needs: a frame per possible call level.
pub const STACK_BYTES: usize = STACK_FRAME_SIZE * MAX_CALL_FRAMES;

/// How a program is turned into an executable.
#[derive(Clone)]
pub struct LoadOptions {
    pub helpers: HelperRegistry,
    /// uBPF's rule: when this helper returns 0 the program stops at once and
    /// returns 0.
    pub unwind_helper: Option<u32>,
    /// Instructions one run may execute before it is stopped.
    pub max_instructions: u64,
    /// Some helper may move the input region (`xdp_adjust_head`, ...), so
    /// compiled code must re-read its bounds after helper calls.
    pub input_may_move: bool,
    /// The verifier proved every access in bounds and every loop bounded:
    /// compiled code leaves out bounds checks and the instruction budget
    /// (the interpreter keeps both; they cost it little).
    pub verified: bool,
    /// Loads the verifier marked as reads of kernel memory through BTF
    /// pointers ([`crate::verifier::PtrClass::Probe`]): in every mode they
    /// read 0 instead of faulting outside the program's memory, as the
    /// kernel's `BPF_PROBE_MEM` loads do. Instruction indices, sorted.
    pub probe_loads: Vec<usize>,
    /// The verifier proved that every stack byte a run reads was written
    /// earlier in that run (no [`crate::verifier::Verified::imprecise_stack_writes`]),
    /// so compiled code need not zero frames before running.
    pub stack_written_before_read: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            helpers: HelperRegistry::new(),
            unwind_helper: None,
            max_instructions: DEFAULT_MAX_INSTRUCTIONS,
            input_may_move: false,
            verified: false,
            probe_loads: Vec::new(),
            stack_written_before_read: false,
        }
    }
}

/// The internal operations; `Imm`/`Reg` name the source operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Add64Imm,
    Add64Reg,
    Sub64Imm,
    Sub64Reg,
    Mul64Imm,
    Mul64Reg,
    Div64Imm,
    Div64Reg,
    SDiv64Imm,
    SDiv64Reg,
    Or64Imm,
    Or64Reg,
    And64Imm,
    And64Reg,
    Lsh64Imm,
    Lsh64Reg,
    Rsh64Imm,
    Rsh64Reg,
    Neg64,
    Mod64Imm,
    Mod64Reg,
    SMod64Imm,
    SMod64Reg,
    Xor64Imm,
    Xor64Reg,
    Mov64Imm,
    Mov64Reg,
    MovSx8To64,
    MovSx16To64,
    MovSx32To64,
    Arsh64Imm,
    Arsh64Reg,
    Add32Imm,
    Add32Reg,
    Sub32Imm,
    Sub32Reg,
    Mul32Imm,
    Mul32Reg,
    Div32Imm,
    Div32Reg,
    SDiv32Imm,
    SDiv32Reg,
    Or32Imm,
    Or32Reg,
    And32Imm,
    And32Reg,
    Lsh32Imm,
    Lsh32Reg,
    Rsh32Imm,
    Rsh32Reg,
    Neg32,
    Mod32Imm,
    Mod32Reg,
    SMod32Imm,
    SMod32Reg,
    Xor32Imm,
    Xor32Reg,
    Mov32Imm,
    Mov32Reg,
    MovSx8To32,
    MovSx16To32,
    Arsh32Imm,
    Arsh32Reg,
    Le16,
    Le32,
    Le64,
    Be16,
    Be32,
    Be64,
    Ldxb,
    Ldxh,
    Ldxw,
    Ldxdw,
    Ldxsb,
    Ldxsh,
    Ldxsw,
    /// A load that reads 0 outside the program's memory; `aux` is the
    /// size, | 0x80 when sign-extending.
    ProbeLdx,
    Stb,
    Sth,
    Stw,
    Stdw,
    Stxb,
    Stxh,
    Stxw,
    Stxdw,
    Atomic32,
    Atomic64,
    Lddw,
    /// Second slot of `lddw`: never executed.
    LddwHi,
    LdAbs,
    LdInd,
    Ja,
    JeqImm,
    JeqReg,
    JgtImm,
    JgtReg,
    JgeImm,
    JgeReg,
    JltImm,
    JltReg,
    JleImm,
    JleReg,
    JsetImm,
    JsetReg,
    JneImm,
    JneReg,
    JsgtImm,
    JsgtReg,
    JsgeImm,
    JsgeReg,
    JsltImm,
    JsltReg,
    JsleImm,
    JsleReg,
    Jeq32Imm,
    Jeq32Reg,
    Jgt32Imm,
    Jgt32Reg,
    Jge32Imm,
    Jge32Reg,
    Jlt32Imm,
    Jlt32Reg,
    Jle32Imm,
    Jle32Reg,
    Jset32Imm,
    Jset32Reg,
    Jne32Imm,
    Jne32Reg,
    Jsgt32Imm,
    Jsgt32Reg,
    Jsge32Imm,
    Jsge32Reg,
    Jslt32Imm,
    Jslt32Reg,
    Jsle32Imm,
    Jsle32Reg,
    Call,
    CallLocal,
    Callx,
    Exit,
}

/// One pre-decoded instruction.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Slot {
    op: Op,
    dst: u8,
    src: u8,
    /// Access size for legacy packet loads; atomic operation code.
    aux: u8,
    /// Memory offset (sign-extended), or absolute jump/call target.
    off: i32,
    /// Immediate, sign-extended to 64 bits (full value for `lddw`).
    imm: u64,
}

/// A memory region the program may access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub lo: u64,
    pub len: u64,
    pub writable: bool,
}

/// Everything a run starts from: the argument registers, the memory the
/// program may touch besides its stack, and the per-run state helpers of
/// the program's type consult (a packet's bounds, a pending tail call).
#[derive(Clone, Copy, Debug)]
pub struct RunSetup<'a> {
    pub r1: u64,
    pub r2: u64,
    /// The primary region (the input buffer, or a packet): `[lo, lo+len)`.
    pub input_lo: u64,
    pub input_len: u64,
    pub input_writable: bool,
    /// Further regions (a context structure, global data, array maps).
    pub regions: &'a [Region],
    /// Opaque per-run state for helpers, handed to them through
    /// [`crate::helpers::HelperMemory::run_state`] (0 when there is none).
    pub state: usize,
}

impl RunSetup<'static> {
    /// The plain-memory setup: r1 = `ptr`, r2 = `len`, and that memory the
    /// input.
    pub fn memory(ptr: u64, len: u64, writable: bool) -> Self {
        RunSetup {
            r1: ptr,
            r2: len,
            input_lo: ptr,
            input_len: len,
            input_writable: writable,
            regions: &[],
            state: 0,
        }
    }
}

/// The address space of one run. `repr(C)` because compiled code reads and
/// updates the stack bounds in place.
#[repr(C)]
pub struct MemoryMap {
    /// Live stack frames: `[stack_lo, stack_lo + stack_len)`.
    pub stack_lo: u64,
    pub stack_len: u64,
    /// The writable input buffer.
    pub mem_lo: u64,
    pub mem_len: u64,
    /// Anything else (read-only input, memory helpers hand out).
    extra: Vec<Region>,
    /// Memory helpers handed out during the run (map values, ring-buffer
    /// records), sorted by address: a program may look up many values.
    grants: Vec<Region>,
    /// The run's [`RunSetup::state`].
    pub state: usize,
    /// Instructions run by callbacks helpers invoked (added to the run's
    /// count, and charged against its budget).
    pub callback_instructions: u64,
    /// The engine running this map's program, for helpers that call back
    /// into it (`bpf_loop`, `bpf_for_each_map_elem`). Valid during the run.
    invoker: Option<*const dyn Invoke>,
}

/// How a helper calls a function of the running program (a callback):
/// engines implement it for the duration of a run.
pub trait Invoke {
    /// Runs the program's function starting at slot `func` with r1-r5 =
    /// `args` in a new frame below the live ones, and returns its r0.
    fn invoke(&self, map: &mut MemoryMap, func: u64, args: [u64; 5]) -> Result<u64, ExecError>;
}

impl MemoryMap {
    /// Lets helpers call back into `engine` during this run.
    ///
    /// # Safety
    /// `engine` must outlive every use of this map (the run).
    pub unsafe fn set_invoker(&mut self, engine: &dyn Invoke) {
        let p: *const (dyn Invoke + '_) = engine;
        // SAFETY: the caller keeps `engine` alive for the run; the pointer
        // is only dereferenced during it.
        self.invoker = Some(std::mem::transmute::<
            *const (dyn Invoke + '_),
            *const dyn Invoke,
        >(p));
    }

    /// Calls function `func` of the running program (see [`Invoke`]).
    pub fn invoke(&mut self, func: u64, args: [u64; 5]) -> Result<u64, ExecError> {
        match self.invoker {
            // SAFETY: set by the engine for this run (set_invoker's contract).
            Some(inv) => unsafe { (*inv).invoke(self, func, args) },
            None => Err(ExecError::new(
                0,
                FaultKind::HelperFailed,
                "this engine cannot call back into the program",
            )),
        }
    }

    /// Live call frames (each engine keeps one 512-byte frame per level).
    pub fn live_frames(&self) -> usize {
        (self.stack_len / FRAME) as usize
    }

    /// Dropping this map would free nothing (no region was added or granted
    /// during the run), so an engine may skip the drop on its per-run path.
    #[inline]
    pub fn owns_nothing(&self) -> bool {
        self.extra.capacity() == 0 && self.grants.capacity() == 0
    }
}

impl MemoryMap {
    /// A map with one live stack frame below `stack_top` and the input at
    /// `[mem, mem+len)` (read-only inputs become an extra region).
    pub fn new(stack_top: u64, mem: u64, len: u64, writable: bool) -> Self {
        let mut map = MemoryMap {
            stack_lo: stack_top - FRAME,
            stack_len: FRAME,
            mem_lo: 0,
            mem_len: 0,
            extra: Vec::new(),
            grants: Vec::new(),
            state: 0,
            callback_instructions: 0,
            invoker: None,
        };
        if writable {
            map.mem_lo = mem;
            map.mem_len = len;
        } else {
            map.grant(mem, len, false);
        }
        map
    }

    /// The address space `setup` describes, with one live stack frame
    /// below `stack_top`. Built in place: it is on every run's path.
    #[inline]
    pub fn from_setup(stack_top: u64, setup: &RunSetup<'_>) -> Self {
        let (mem_lo, mem_len) = if setup.input_writable {
            (setup.input_lo, setup.input_len)
        } else {
            (0, 0)
        };
        let mut map = MemoryMap {
            stack_lo: stack_top - FRAME,
            stack_len: FRAME,
            mem_lo,
            mem_len,
            extra: Vec::new(),
            grants: Vec::new(),
            state: setup.state,
            callback_instructions: 0,
            invoker: None,
        };
        // Most runs have no further regions: nothing to build then.
        if !setup.input_writable && setup.input_len > 0 {
            map.extra.push(Region {
                lo: setup.input_lo,
                len: setup.input_len,
                writable: false,
            });
        }
        if !setup.regions.is_empty() {
            map.extra.extend(setup.regions.iter().filter(|r| r.len > 0));
        }
        map
    }

    /// [`MemoryMap::from_setup`] written field by field into `dst`, for
    /// callers that build a larger run context in place: returning the map
    /// by value makes the compiler assemble it in a temporary and copy it,
    /// which stalls on store forwarding on the per-run path.
    ///
    /// # Safety
    /// `dst` must be valid for writes; whatever it held is overwritten
    /// without being dropped.
    #[inline(always)]
    pub unsafe fn init_in_place(dst: *mut MemoryMap, stack_top: u64, setup: &RunSetup<'_>) {
        use std::ptr::addr_of_mut;
        addr_of_mut!((*dst).stack_lo).write(stack_top - FRAME);
        addr_of_mut!((*dst).stack_len).write(FRAME);
        addr_of_mut!((*dst).extra).write(Vec::new());
        addr_of_mut!((*dst).grants).write(Vec::new());
        addr_of_mut!((*dst).state).write(setup.state);
        addr_of_mut!((*dst).callback_instructions).write(0);
        addr_of_mut!((*dst).invoker).write(None);
        if setup.input_writable {
            addr_of_mut!((*dst).mem_lo).write(setup.input_lo);
            addr_of_mut!((*dst).mem_len).write(setup.input_len);
        } else {
            addr_of_mut!((*dst).mem_lo).write(0);
            addr_of_mut!((*dst).mem_len).write(0);
            if setup.input_len > 0 {
                (*dst).extra.push(Region {
                    lo: setup.input_lo,
                    len: setup.input_len,
                    writable: false,
                });
            }
        }
        if !setup.regions.is_empty() {
            (*dst)
                .extra
                .extend(setup.regions.iter().filter(|r| r.len > 0));
        }
    }

    /// Moves the primary region (a helper that grows or shrinks a packet).
    pub fn set_input(&mut self, lo: u64, len: u64) {
        self.mem_lo = lo;
        self.mem_len = len;
    }

    #[inline(always)]
    pub fn translate(&self, addr: u64, len: u64, write: bool) -> Option<*mut u8> {
        let so = addr.wrapping_sub(self.stack_lo);
        if so < self.stack_len && len <= self.stack_len - so {
            return Some(addr as *mut u8);
        }
        let mo = addr.wrapping_sub(self.mem_lo);
        if mo < self.mem_len && len <= self.mem_len - mo {
            return Some(addr as *mut u8);
        }
        self.translate_extra(addr, len, write)
    }

    /// The slow path of [`Self::translate`]: regions other than the stack and
    /// the writable input.
    #[cold]
    #[inline(never)]
    pub fn translate_extra(&self, addr: u64, len: u64, write: bool) -> Option<*mut u8> {
        let fits = |r: &Region| {
            let o = addr.wrapping_sub(r.lo);
            o < r.len && len <= r.len - o && (r.writable || !write)
        };
        if self.extra.iter().any(fits) {
            return Some(addr as *mut u8);
        }
        // The grant starting at or below `addr` closest to it holds the
        // access if any does (grants of distinct values do not overlap; a
        // few predecessors are checked for the rare ones that do).
        let at = self.grants.partition_point(|r| r.lo <= addr);
        self.grants[..at]
            .iter()
            .rev()
            .take(4)
            .any(fits)
            .then_some(addr as *mut u8)
    }

    /// Bytes accessible from `addr` to the end of the region holding it.
    pub(crate) fn accessible_len(&self, addr: u64, write: bool) -> u64 {
        let stack = Region {
            lo: self.stack_lo,
            len: self.stack_len,
            writable: true,
        };
        let input = Region {
            lo: self.mem_lo,
            len: self.mem_len,
            writable: true,
        };
        [stack, input]
            .iter()
            .chain(&self.extra)
            .chain(&self.grants)
            .filter(|r| r.writable || !write)
            .find_map(|r| {
                let o = addr.wrapping_sub(r.lo);
                (o < r.len).then(|| r.len - o)
            })
            .unwrap_or(0)
    }

    pub(crate) fn grant(&mut self, lo: u64, len: u64, writable: bool) {
        // Helpers hand out the same memory again and again (a lookup in a
        // loop): keep the list short.
        if len > 0 && self.translate(lo, len, writable).is_none() {
            let at = self.grants.partition_point(|r| r.lo <= lo);
            self.grants.insert(at, Region { lo, len, writable });
        }
    }

    pub(crate) fn revoke(&mut self, lo: u64, len: u64) {
        self.grants.retain(|r| !(r.lo == lo && r.len == len));
    }

    /// The accessible regions, for error messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "stack [0x{:x}, 0x{:x})",
            self.stack_lo,
            self.stack_lo + self.stack_len
        );
        if self.mem_len > 0 {
            s += &format!(
                ", input [0x{:x}, 0x{:x})",
                self.mem_lo,
                self.mem_lo + self.mem_len
            );
        } else {
            s += ", no input memory";
        }
        for r in self.extra.iter().chain(&self.grants) {
            s += &format!(
                ", {} [0x{:x}, 0x{:x})",
                if r.writable {
                    "region"
                } else {
                    "read-only region"
                },
                r.lo,
                r.lo.wrapping_add(r.len)
            );
        }
        s
    }
}

/// The checks every engine makes when loading: helpers exist, and no map or
/// kernel object references are left unresolved.
/// A load of `aux & 0x7f` bytes at `addr` (sign-extended when `aux &
/// 0x80`) that yields 0 where the program has no readable memory.
pub fn probe_load(map: &MemoryMap, addr: u64, aux: u8) -> u64 {
    let size = (aux & 0x7f) as usize;
    let Some(p) = map.translate(addr, size as u64, false) else {
        return 0;
    };
    let mut le = [0u8; 8];
    // SAFETY: translate proved the `size` (at most 8) bytes at p readable.
    unsafe { std::ptr::copy_nonoverlapping(p, le.as_mut_ptr(), size.min(8)) };
    let v = u64::from_le_bytes(le);
    if aux & 0x80 != 0 && size < 8 {
        let shift = 64 - 8 * size as u32;
        ((v << shift) as i64 >> shift) as u64
    } else {
        v
    }
}

pub fn check_load(program: &Program, opts: &LoadOptions) -> Result<(), ProgramError> {
    for &pc in &opts.probe_loads {
        let is_ldx = program
            .insns()
            .get(pc)
            .is_some_and(|i| i.class() == CLS_LDX);
        if !is_ldx {
            return Err(ProgramError::at(
                pc,
                "a probe load must be a load instruction (BPF_LDX)",
            ));
        }
    }
    for &(pc, id) in program.helper_calls() {
        if !opts.helpers.contains(id) {
            return Err(ProgramError::at(
                pc,
                format!("call to nonexistent function {id}"),
            ));
        }
    }
    if let Some(r) = program.object_refs().first() {
        let what = match r.kind {
            PSEUDO_MAP_FD => format!("map fd {}", r.id),
            PSEUDO_MAP_VALUE => format!("the value of map fd {}", r.id),
            PSEUDO_MAP_IDX => format!("map index {}", r.id),
            PSEUDO_MAP_IDX_VALUE => format!("the value of map index {}", r.id),
            _ => format!("kernel object with BTF id {}", r.id),
        };
        return Err(ProgramError::at(
            r.pc,
            format!("lddw refers to {what}, but no such object is available to this program"),
        ));
    }
    Ok(())
}

/// What every engine offers: a run on raw memory with a given stack, and
/// the conveniences built on it.
pub trait Runner {
    /// Runs from `setup` on a caller-provided stack of [`STACK_BYTES`]
    /// bytes (8-byte aligned).
    ///
    /// # Safety
    /// Every region of `setup` must be valid for reads (and writes where
    /// marked writable) for the whole run and not accessed concurrently in
    /// a conflicting way; `setup.state` must be what the registered helpers
    /// expect; `stack` must be valid for writes of `STACK_BYTES` bytes and
    /// not used elsewhere during the run.
    unsafe fn run_setup(
        &self,
        setup: &RunSetup<'_>,
        stack: *mut u8,
    ) -> Result<RunOutcome, ExecError>;

    /// Runs with `[ptr, ptr+len)` as the input (r1 = `ptr`, r2 = `len`)
    /// and a caller-provided stack: runs at the same addresses are
    /// reproducible, which differential testing needs when programs
    /// compute with pointers.
    ///
    /// # Safety
    /// As [`Runner::run_setup`] for the input `[ptr, ptr+len)`.
    unsafe fn run_raw_with_stack(
        &self,
        ptr: *mut u8,
        len: usize,
        writable: bool,
        stack: *mut u8,
    ) -> Result<RunOutcome, ExecError> {
        self.run_setup(&RunSetup::memory(ptr as u64, len as u64, writable), stack)
    }

    /// Runs on raw memory with a stack of its own.
    ///
    /// # Safety
    /// As [`Runner::run_raw_with_stack`] for `ptr` and `len`.
    unsafe fn run_raw(
        &self,
        ptr: *mut u8,
        len: usize,
        writable: bool,
    ) -> Result<RunOutcome, ExecError> {
        let mut stack = MaybeUninit::<[u64; STACK_BYTES / 8]>::uninit();
        self.run_raw_with_stack(ptr, len, writable, stack.as_mut_ptr() as *mut u8)
    }

    /// Runs with `mem` as the input buffer; the program may modify it.
    fn run(&self, mem: &mut [u8]) -> Result<RunOutcome, ExecError> {
        let ptr = if mem.is_empty() {
            std::ptr::null_mut()
        } else {
            mem.as_mut_ptr()
        };
        // SAFETY: the slice is valid and exclusively borrowed for the run.
        unsafe { self.run_raw(ptr, mem.len(), true) }
    }
}

impl Runner for Executable {
    unsafe fn run_setup(
        &self,
        setup: &RunSetup<'_>,
        stack: *mut u8,
    ) -> Result<RunOutcome, ExecError> {
        let top = stack.add(STACK_BYTES);
        // Only live frames are reachable, and each is zeroed when entered.
        std::ptr::write_bytes(top.sub(STACK_FRAME_SIZE), 0, STACK_FRAME_SIZE);
        let mut map = MemoryMap::from_setup(top as u64, setup);
        map.set_invoker(self);
        let args = [setup.r1, setup.r2, 0, 0, 0];
        let out = self.execute::<false>(&mut map, 0, args, top as u64, 0, &mut |_, _| {})?;
        Ok(RunOutcome {
            r0: out.r0,
            instructions: out.instructions.wrapping_add(map.callback_instructions),
        })
    }
}

/// The index in `program.functions()` of the callback a helper asked to
/// call at slot `func`, if it is a function and one more frame fits.
pub fn callback_function(
    program: &Program,
    map: &MemoryMap,
    func: u64,
) -> Result<usize, ExecError> {
    let Some(k) = program
        .functions()
        .iter()
        .position(|f| f.start as u64 == func)
    else {
        return Err(ExecError::new(
            0,
            FaultKind::HelperFailed,
            format!("callback 0x{func:x} is not a function of the program"),
        ));
    };
    if map.live_frames() >= MAX_CALL_FRAMES {
        return Err(ExecError::call_depth(func as usize));
    }
    Ok(k)
}

impl Invoke for Executable {
    fn invoke(&self, map: &mut MemoryMap, func: u64, args: [u64; 5]) -> Result<u64, ExecError> {
        let start = self.program.functions()[callback_function(&self.program, map, func)?].start;
        let frames = map.live_frames();
        let top = map.stack_lo;
        map.stack_lo -= FRAME;
        map.stack_len += FRAME;
        // SAFETY: the new frame lies inside the stack buffer (fewer than
        // MAX_CALL_FRAMES frames are live).
        unsafe { std::ptr::write_bytes(map.stack_lo as *mut u8, 0, STACK_FRAME_SIZE) };
        let out = self.execute::<false>(map, start, args, top, frames, &mut |_, _| {});
        map.stack_lo += FRAME;
        map.stack_len -= FRAME;
        let out = out?;
        map.callback_instructions = map.callback_instructions.wrapping_add(out.instructions);
        Ok(out.r0)
    }
}

/// The outcome of a successful run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    pub r0: u64,
    /// Instructions executed (an `lddw` counts once).
    pub instructions: u64,
}

/// A program ready to run in the checked interpreter. Immutable and
/// shareable across threads: each run has its own registers and stack.
pub struct Executable {
    code: Box<[Slot]>,
    helpers: Box<[Option<HelperImpl>]>,
    unwind_helper: Option<u32>,
    max_instructions: u64,
    program: Arc<Program>,
}

impl Executable {
    pub fn new(program: Arc<Program>, opts: LoadOptions) -> Result<Self, ProgramError> {
        check_load(&program, &opts)?;
        let mut code = translate(&program)?;
        for &pc in &opts.probe_loads {
            let slot = &mut code[pc];
            let signed = matches!(slot.op, Op::Ldxsb | Op::Ldxsh | Op::Ldxsw);
            slot.aux = access_size(program.insns()[pc].opc) | if signed { 0x80 } else { 0 };
            slot.op = Op::ProbeLdx;
        }
        Ok(Executable {
            code,
            helpers: opts.helpers.table().into_boxed_slice(),
            unwind_helper: opts.unwind_helper,
            max_instructions: opts.max_instructions,
            program,
        })
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Runs like [`Self::run`], calling `trace(pc, registers)` before each
    /// instruction (a debugging aid; a separate copy of the loop, so plain
    /// runs pay nothing for it).
    pub fn run_traced(
        &self,
        mem: &mut [u8],
        trace: &mut dyn FnMut(usize, &[u64; 11]),
    ) -> Result<RunOutcome, ExecError> {
        let mut stack = MaybeUninit::<[u64; STACK_BYTES / 8]>::uninit();
        // SAFETY: as in run_raw_with_stack.
        unsafe {
            let top = (stack.as_mut_ptr() as *mut u8).add(STACK_BYTES);
            std::ptr::write_bytes(top.sub(STACK_FRAME_SIZE), 0, STACK_FRAME_SIZE);
            let ptr = if mem.is_empty() {
                std::ptr::null_mut()
            } else {
                mem.as_mut_ptr()
            };
            let mut map = MemoryMap::new(top as u64, ptr as u64, mem.len() as u64, true);
            map.set_invoker(self);
            let args = [ptr as u64, mem.len() as u64, 0, 0, 0];
            self.execute::<true>(&mut map, 0, args, top as u64, 0, trace)
        }
    }

    #[inline(never)]
    fn execute<const TRACE: bool>(
        &self,
        map: &mut MemoryMap,
        start: usize,
        args: [u64; 5],
        stack_top: u64,
        base_depth: usize,
        trace: &mut dyn FnMut(usize, &[u64; 11]),
    ) -> Result<RunOutcome, ExecError> {
        #[derive(Clone, Copy)]
        struct Frame {
            ret: usize,
            /// r1-r9: callee-saved r6-r9, and r1-r5 too so that the caller
            /// sees the same registers whichever engine runs it.
            saved: [u64; 9],
            fp: u64,
        }
        let code = &*self.code;
        let budget = self
            .max_instructions
            .saturating_sub(map.callback_instructions);
        let mut r = [0u64; 16];
        r[1..6].copy_from_slice(&args);
        r[10] = stack_top;
        // Written when a call is made, read only when it returns.
        let mut frames = [const { MaybeUninit::<Frame>::uninit() }; MAX_CALL_FRAMES];
        let mut depth = 0usize;
        let mut pc = start;
        let mut block_start = start;
        let mut executed = 0u64;

        // Counts the instructions of the block just left and moves to
        // `target`.
        macro_rules! transfer {
            ($target:expr) => {{
                executed = executed.wrapping_add((pc - block_start) as u64);
                pc = $target as usize;
                block_start = pc;
            }};
        }
        // The budget is checked on back edges and calls, exactly where
        // compiled code checks it, so both engines stop at the same point.
        macro_rules! check_budget {
            ($from:expr) => {{
                if executed > budget {
                    return Err(ExecError::budget_exhausted($from, budget));
                }
            }};
        }
        macro_rules! jump {
            ($target:expr) => {{
                let from = pc - 1;
                transfer!($target);
                if pc <= from {
                    check_budget!(from);
                }
            }};
        }
        macro_rules! cond {
            ($s:expr, $c:expr) => {{
                if $c {
                    jump!($s.off)
                }
            }};
        }
        macro_rules! load {
            ($s:expr, $ty:ty, $conv:expr) => {{
                let addr = r[($s.src & 15) as usize].wrapping_add($s.off as i64 as u64);
                match map.translate(addr, std::mem::size_of::<$ty>() as u64, false) {
                    // SAFETY: translate proved the access is inside a live region.
                    Some(p) => {
                        r[($s.dst & 15) as usize] =
                            $conv(unsafe { (p as *const $ty).read_unaligned() })
                    }
                    None => {
                        return Err(oob(
                            pc - 1,
                            $s,
                            addr,
                            std::mem::size_of::<$ty>(),
                            false,
                            map,
                        ))
                    }
                }
            }};
        }
        macro_rules! store {
            ($s:expr, $ty:ty, $val:expr) => {{
                let addr = r[($s.dst & 15) as usize].wrapping_add($s.off as i64 as u64);
                match map.translate(addr, std::mem::size_of::<$ty>() as u64, true) {
                    // SAFETY: as for loads; the region is writable.
                    Some(p) => unsafe { (p as *mut $ty).write_unaligned($val as $ty) },
                    None => {
                        return Err(oob(pc - 1, $s, addr, std::mem::size_of::<$ty>(), true, map))
                    }
                }
            }};
        }

        loop {
            debug_assert!(pc < code.len());
            // SAFETY: load-time checks guarantee every reachable pc is in
            // range: each function ends in exit or ja, every jump and call
            // target is a real slot, and calls are never a function's last
            // instruction, so return addresses are in range too.
            let s = unsafe { code.get_unchecked(pc) };
            if TRACE {
                let mut regs = [0u64; 11];
                regs.copy_from_slice(&r[..11]);
                trace(pc, &regs);
            }
            pc += 1;
            let d = (s.dst & 15) as usize;
            let sr = (s.src & 15) as usize;
            match s.op {
                Op::Add64Imm => r[d] = r[d].wrapping_add(s.imm),
                Op::Add64Reg => r[d] = r[d].wrapping_add(r[sr]),
                Op::Sub64Imm => r[d] = r[d].wrapping_sub(s.imm),
                Op::Sub64Reg => r[d] = r[d].wrapping_sub(r[sr]),
                Op::Mul64Imm => r[d] = r[d].wrapping_mul(s.imm),
                Op::Mul64Reg => r[d] = r[d].wrapping_mul(r[sr]),
                Op::Div64Imm => r[d] = udiv64(r[d], s.imm),
                Op::Div64Reg => r[d] = udiv64(r[d], r[sr]),
                Op::SDiv64Imm => r[d] = sdiv64(r[d], s.imm),
                Op::SDiv64Reg => r[d] = sdiv64(r[d], r[sr]),
                Op::Or64Imm => r[d] |= s.imm,
                Op::Or64Reg => r[d] |= r[sr],
                Op::And64Imm => r[d] &= s.imm,
                Op::And64Reg => r[d] &= r[sr],
                Op::Lsh64Imm => r[d] = r[d].wrapping_shl(s.imm as u32),
                Op::Lsh64Reg => r[d] = r[d].wrapping_shl(r[sr] as u32),
                Op::Rsh64Imm => r[d] = r[d].wrapping_shr(s.imm as u32),
                Op::Rsh64Reg => r[d] = r[d].wrapping_shr(r[sr] as u32),
                Op::Neg64 => r[d] = r[d].wrapping_neg(),
                Op::Mod64Imm => r[d] = umod64(r[d], s.imm),
                Op::Mod64Reg => r[d] = umod64(r[d], r[sr]),
                Op::SMod64Imm => r[d] = smod64(r[d], s.imm),
                Op::SMod64Reg => r[d] = smod64(r[d], r[sr]),
                Op::Xor64Imm => r[d] ^= s.imm,
                Op::Xor64Reg => r[d] ^= r[sr],
                Op::Mov64Imm => r[d] = s.imm,
                Op::Mov64Reg => r[d] = r[sr],
                Op::MovSx8To64 => r[d] = r[sr] as i8 as i64 as u64,
                Op::MovSx16To64 => r[d] = r[sr] as i16 as i64 as u64,
                Op::MovSx32To64 => r[d] = r[sr] as i32 as i64 as u64,
                Op::Arsh64Imm => r[d] = (r[d] as i64).wrapping_shr(s.imm as u32) as u64,
                Op::Arsh64Reg => r[d] = (r[d] as i64).wrapping_shr(r[sr] as u32) as u64,
                Op::Add32Imm => r[d] = (r[d] as u32).wrapping_add(s.imm as u32) as u64,
                Op::Add32Reg => r[d] = (r[d] as u32).wrapping_add(r[sr] as u32) as u64,
                Op::Sub32Imm => r[d] = (r[d] as u32).wrapping_sub(s.imm as u32) as u64,
                Op::Sub32Reg => r[d] = (r[d] as u32).wrapping_sub(r[sr] as u32) as u64,
                Op::Mul32Imm => r[d] = (r[d] as u32).wrapping_mul(s.imm as u32) as u64,
                Op::Mul32Reg => r[d] = (r[d] as u32).wrapping_mul(r[sr] as u32) as u64,
                Op::Div32Imm => r[d] = udiv32(r[d], s.imm),
                Op::Div32Reg => r[d] = udiv32(r[d], r[sr]),
                Op::SDiv32Imm => r[d] = sdiv32(r[d], s.imm),
                Op::SDiv32Reg => r[d] = sdiv32(r[d], r[sr]),
                Op::Or32Imm => r[d] = (r[d] as u32 | s.imm as u32) as u64,
                Op::Or32Reg => r[d] = (r[d] as u32 | r[sr] as u32) as u64,
                Op::And32Imm => r[d] = (r[d] as u32 & s.imm as u32) as u64,
                Op::And32Reg => r[d] = (r[d] as u32 & r[sr] as u32) as u64,
                Op::Lsh32Imm => r[d] = (r[d] as u32).wrapping_shl(s.imm as u32) as u64,
                Op::Lsh32Reg => r[d] = (r[d] as u32).wrapping_shl(r[sr] as u32) as u64,
                Op::Rsh32Imm => r[d] = (r[d] as u32).wrapping_shr(s.imm as u32) as u64,
                Op::Rsh32Reg => r[d] = (r[d] as u32).wrapping_shr(r[sr] as u32) as u64,
                Op::Neg32 => r[d] = (r[d] as u32).wrapping_neg() as u64,
                Op::Mod32Imm => r[d] = umod32(r[d], s.imm),
                Op::Mod32Reg => r[d] = umod32(r[d], r[sr]),
                Op::SMod32Imm => r[d] = smod32(r[d], s.imm),
                Op::SMod32Reg => r[d] = smod32(r[d], r[sr]),
                Op::Xor32Imm => r[d] = (r[d] as u32 ^ s.imm as u32) as u64,
                Op::Xor32Reg => r[d] = (r[d] as u32 ^ r[sr] as u32) as u64,
                Op::Mov32Imm => r[d] = s.imm as u32 as u64,
                Op::Mov32Reg => r[d] = r[sr] as u32 as u64,
                Op::MovSx8To32 => r[d] = r[sr] as i8 as i32 as u32 as u64,
                Op::MovSx16To32 => r[d] = r[sr] as i16 as i32 as u32 as u64,
                Op::Arsh32Imm => r[d] = (r[d] as i32).wrapping_shr(s.imm as u32) as u32 as u64,
                Op::Arsh32Reg => r[d] = (r[d] as i32).wrapping_shr(r[sr] as u32) as u32 as u64,
                Op::Le16 => r[d] = (r[d] as u16).to_le() as u64,
                Op::Le32 => r[d] = (r[d] as u32).to_le() as u64,
                Op::Le64 => r[d] = r[d].to_le(),
                Op::Be16 => r[d] = (r[d] as u16).to_be() as u64,
                Op::Be32 => r[d] = (r[d] as u32).to_be() as u64,
                Op::Be64 => r[d] = r[d].to_be(),
                Op::Ldxb => load!(s, u8, |v: u8| v as u64),
                Op::Ldxh => load!(s, u16, |v: u16| v as u64),
                Op::Ldxw => load!(s, u32, |v: u32| v as u64),
                Op::Ldxdw => load!(s, u64, |v: u64| v),
                Op::Ldxsb => load!(s, i8, |v: i8| v as i64 as u64),
                Op::Ldxsh => load!(s, i16, |v: i16| v as i64 as u64),
                Op::Ldxsw => load!(s, i32, |v: i32| v as i64 as u64),
                Op::ProbeLdx => {
                    let addr = r[sr].wrapping_add(s.off as i64 as u64);
                    r[d] = probe_load(map, addr, s.aux);
                }
                Op::Stb => store!(s, u8, s.imm),
                Op::Sth => store!(s, u16, s.imm),
                Op::Stw => store!(s, u32, s.imm),
                Op::Stdw => store!(s, u64, s.imm),
                Op::Stxb => store!(s, u8, r[sr]),
                Op::Stxh => store!(s, u16, r[sr]),
                Op::Stxw => store!(s, u32, r[sr]),
                Op::Stxdw => store!(s, u64, r[sr]),
                Op::Atomic32 | Op::Atomic64 => atomic(pc - 1, s, &mut r, map)?,
                Op::Lddw => {
                    r[d] = s.imm;
                    pc += 1;
                    // The skipped second slot is not an instruction of its own.
                    executed = executed.wrapping_sub(1);
                }
                Op::LdAbs | Op::LdInd => {
                    let base = if s.op == Op::LdInd {
                        r[sr] as i32 as i64
                    } else {
                        0
                    };
                    let off = base.wrapping_add(s.imm as i64);
                    let size = s.aux as u64;
                    if off < 0 || (off as u64).saturating_add(size) > map.mem_len {
                        // The kernel ends the program with r0 = 0.
                        executed = executed.wrapping_add((pc - block_start) as u64);
                        return Ok(RunOutcome {
                            r0: 0,
                            instructions: executed,
                        });
                    }
                    let p = (map.mem_lo + off as u64) as *const u8;
                    // SAFETY: bounds checked against the input buffer above.
                    r[0] = unsafe {
                        match size {
                            1 => *p as u64,
                            2 => u16::from_be((p as *const u16).read_unaligned()) as u64,
                            _ => u32::from_be((p as *const u32).read_unaligned()) as u64,
                        }
                    };
                }
                Op::Ja => jump!(s.off),
                Op::JeqImm => cond!(s, r[d] == s.imm),
                Op::JeqReg => cond!(s, r[d] == r[sr]),
                Op::JgtImm => cond!(s, r[d] > s.imm),
                Op::JgtReg => cond!(s, r[d] > r[sr]),
                Op::JgeImm => cond!(s, r[d] >= s.imm),
                Op::JgeReg => cond!(s, r[d] >= r[sr]),
                Op::JltImm => cond!(s, r[d] < s.imm),
                Op::JltReg => cond!(s, r[d] < r[sr]),
                Op::JleImm => cond!(s, r[d] <= s.imm),
                Op::JleReg => cond!(s, r[d] <= r[sr]),
                Op::JsetImm => cond!(s, r[d] & s.imm != 0),
                Op::JsetReg => cond!(s, r[d] & r[sr] != 0),
                Op::JneImm => cond!(s, r[d] != s.imm),
                Op::JneReg => cond!(s, r[d] != r[sr]),
                Op::JsgtImm => cond!(s, (r[d] as i64) > s.imm as i64),
                Op::JsgtReg => cond!(s, (r[d] as i64) > r[sr] as i64),
                Op::JsgeImm => cond!(s, (r[d] as i64) >= s.imm as i64),
                Op::JsgeReg => cond!(s, (r[d] as i64) >= r[sr] as i64),
                Op::JsltImm => cond!(s, (r[d] as i64) < s.imm as i64),
                Op::JsltReg => cond!(s, (r[d] as i64) < r[sr] as i64),
                Op::JsleImm => cond!(s, (r[d] as i64) <= s.imm as i64),
                Op::JsleReg => cond!(s, (r[d] as i64) <= r[sr] as i64),
                Op::Jeq32Imm => cond!(s, r[d] as u32 == s.imm as u32),
                Op::Jeq32Reg => cond!(s, r[d] as u32 == r[sr] as u32),
                Op::Jgt32Imm => cond!(s, r[d] as u32 > s.imm as u32),
                Op::Jgt32Reg => cond!(s, r[d] as u32 > r[sr] as u32),
                Op::Jge32Imm => cond!(s, r[d] as u32 >= s.imm as u32),
                Op::Jge32Reg => cond!(s, r[d] as u32 >= r[sr] as u32),
                Op::Jlt32Imm => cond!(s, (r[d] as u32) < s.imm as u32),
                Op::Jlt32Reg => cond!(s, (r[d] as u32) < r[sr] as u32),
                Op::Jle32Imm => cond!(s, r[d] as u32 <= s.imm as u32),
                Op::Jle32Reg => cond!(s, r[d] as u32 <= r[sr] as u32),
                Op::Jset32Imm => cond!(s, r[d] as u32 & s.imm as u32 != 0),
                Op::Jset32Reg => cond!(s, r[d] as u32 & r[sr] as u32 != 0),
                Op::Jne32Imm => cond!(s, r[d] as u32 != s.imm as u32),
                Op::Jne32Reg => cond!(s, r[d] as u32 != r[sr] as u32),
                Op::Jsgt32Imm => cond!(s, r[d] as i32 > s.imm as i32),
                Op::Jsgt32Reg => cond!(s, r[d] as i32 > r[sr] as i32),
                Op::Jsge32Imm => cond!(s, r[d] as i32 >= s.imm as i32),
                Op::Jsge32Reg => cond!(s, r[d] as i32 >= r[sr] as i32),
                Op::Jslt32Imm => cond!(s, (r[d] as i32) < s.imm as i32),
                Op::Jslt32Reg => cond!(s, (r[d] as i32) < r[sr] as i32),
                Op::Jsle32Imm => cond!(s, r[d] as i32 <= s.imm as i32),
                Op::Jsle32Reg => cond!(s, r[d] as i32 <= r[sr] as i32),
                Op::Call | Op::Callx => {
                    let id = if s.op == Op::Call { s.imm } else { r[d] };
                    let helper = match self.helpers.get(id as usize) {
                        Some(Some(h)) => h,
                        _ => return Err(ExecError::unknown_helper(pc - 1, id)),
                    };
                    let args = [r[1], r[2], r[3], r[4], r[5]];
                    r[0] = match helper {
                        // SAFETY: registered under register_native's contract.
                        HelperImpl::Native(f) => unsafe {
                            f(args[0], args[1], args[2], args[3], args[4])
                        },
                        HelperImpl::Dyn(h) => {
                            match h.call(&mut HelperMemory { map: &mut *map }, args) {
                                Ok(v) => v,
                                Err(e) => return Err(ExecError::from_helper(pc - 1, id, e)),
                            }
                        }
                    };
                    if r[0] == 0 && self.unwind_helper == Some(id as u32) && id <= u32::MAX as u64 {
                        executed = executed.wrapping_add((pc - block_start) as u64);
                        return Ok(RunOutcome {
                            r0: 0,
                            instructions: executed,
                        });
                    }
                }
                Op::CallLocal => {
                    if base_depth + depth + 1 >= MAX_CALL_FRAMES {
                        return Err(ExecError::call_depth(pc - 1));
                    }
                    frames[depth].write(Frame {
                        ret: pc,
                        saved: [r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]],
                        fp: r[10],
                    });
                    depth += 1;
                    // A callee starts from a clean r0 and r6-r9 (the kernel
                    // treats them as uninitialised; compiled code too).
                    [r[0], r[6], r[7], r[8], r[9]] = [0; 5];
                    r[10] = stack_top - FRAME * depth as u64;
                    map.stack_lo -= FRAME;
                    map.stack_len += FRAME;
                    // SAFETY: the new frame lies inside the stack buffer
                    // (depth < MAX_CALL_FRAMES).
                    unsafe { std::ptr::write_bytes(map.stack_lo as *mut u8, 0, STACK_FRAME_SIZE) };
                    let from = pc - 1;
                    transfer!(s.off);
                    check_budget!(from);
                }
                Op::Exit => {
                    if depth == 0 {
                        executed = executed.wrapping_add((pc - block_start) as u64);
                        return Ok(RunOutcome {
                            r0: r[0],
                            instructions: executed,
                        });
                    }
                    depth -= 1;
                    // SAFETY: frames[depth] was written by the call that
                    // made this depth live.
                    let f = unsafe { frames[depth].assume_init() };
                    [r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]] = f.saved;
                    r[10] = f.fp;
                    map.stack_lo += FRAME;
                    map.stack_len -= FRAME;
                    transfer!(f.ret);
                }
                Op::LddwHi => {
                    return Err(ExecError::new(
                        pc - 1,
                        FaultKind::Unreachable,
                        "reached the second half of an lddw",
                    ))
                }
            }
        }
    }
}

#[cold]
#[inline(never)]
fn oob(pc: usize, s: &Slot, addr: u64, size: usize, store: bool, map: &MemoryMap) -> ExecError {
    let reg = if store { s.dst } else { s.src };
    ExecError::out_of_bounds(
        pc,
        reg,
        s.off as i16,
        addr,
        size as u64,
        store,
        &map.describe(),
    )
}

#[inline(never)]
fn atomic(pc: usize, s: &Slot, r: &mut [u64; 16], map: &MemoryMap) -> Result<(), ExecError> {
    let wide = s.op == Op::Atomic64;
    let size = if wide { 8 } else { 4 };
    let addr = r[(s.dst & 15) as usize].wrapping_add(s.off as i64 as u64);
    let Some(p) = map.translate(addr, size, true) else {
        return Err(oob(pc, s, addr, size as usize, true, map));
    };
    if !addr.is_multiple_of(size) {
        return Err(ExecError::misaligned(pc, addr, size));
    }
    let src = (s.src & 15) as usize;
    let v = r[src];
    let op = s.aux as i32;
    let fetch = op & ATOMIC_FETCH != 0;
    let ord = Ordering::SeqCst;
    // SAFETY: p is in bounds, writable and naturally aligned.
    let old = if wide {
        let a = unsafe { AtomicU64::from_ptr(p as *mut u64) };
        match op {
            o if o == ATOMIC_XCHG => a.swap(v, ord),
            o if o == ATOMIC_CMPXCHG => match a.compare_exchange(r[0], v, ord, ord) {
                Ok(x) | Err(x) => x,
            },
            o => match o & !ATOMIC_FETCH {
                ATOMIC_ADD => a.fetch_add(v, ord),
                ATOMIC_OR => a.fetch_or(v, ord),
                ATOMIC_AND => a.fetch_and(v, ord),
                _ => a.fetch_xor(v, ord),
            },
        }
    } else {
        let a = unsafe { AtomicU32::from_ptr(p as *mut u32) };
        let v = v as u32;
        (match op {
            o if o == ATOMIC_XCHG => a.swap(v, ord),
            o if o == ATOMIC_CMPXCHG => match a.compare_exchange(r[0] as u32, v, ord, ord) {
                Ok(x) | Err(x) => x,
            },
            o => match o & !ATOMIC_FETCH {
                ATOMIC_ADD => a.fetch_add(v, ord),
                ATOMIC_OR => a.fetch_or(v, ord),
                ATOMIC_AND => a.fetch_and(v, ord),
                _ => a.fetch_xor(v, ord),
            },
        }) as u64
    };
    if op == ATOMIC_CMPXCHG {
        r[0] = old;
    } else if fetch {
        r[src] = old;
    }
    Ok(())
}

// RFC 9669 division: by zero gives 0, modulo by zero leaves dst unchanged,
// and the signed overflow case wraps.
#[inline(always)]
fn udiv64(a: u64, b: u64) -> u64 {
    a.checked_div(b).unwrap_or(0)
}
#[inline(always)]
fn sdiv64(a: u64, b: u64) -> u64 {
    if b == 0 {
        0
    } else {
        (a as i64).wrapping_div(b as i64) as u64
    }
}
#[inline(always)]
fn umod64(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        a % b
    }
}
#[inline(always)]
fn smod64(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        (a as i64).wrapping_rem(b as i64) as u64
    }
}
#[inline(always)]
fn udiv32(a: u64, b: u64) -> u64 {
    (a as u32).checked_div(b as u32).unwrap_or(0) as u64
}
#[inline(always)]
fn sdiv32(a: u64, b: u64) -> u64 {
    if b as u32 == 0 {
        0
    } else {
        (a as i32).wrapping_div(b as i32) as u32 as u64
    }
}
#[inline(always)]
fn umod32(a: u64, b: u64) -> u64 {
    if b as u32 == 0 {
        a as u32 as u64
    } else {
        ((a as u32) % (b as u32)) as u64
    }
}
#[inline(always)]
fn smod32(a: u64, b: u64) -> u64 {
    if b as u32 == 0 {
        a as u32 as u64
    } else {
        (a as i32).wrapping_rem(b as i32) as u32 as u64
    }
}

/// Translates checked program slots into interpreter slots.
fn translate(program: &Program) -> Result<Box<[Slot]>, ProgramError> {
    let insns = program.insns();
    let mut out = Vec::with_capacity(insns.len());
    let mut pc = 0;
    while pc < insns.len() {
        let i = insns[pc];
        let mut slot = Slot {
            op: Op::Exit,
            dst: i.dst,
            src: i.src,
            aux: 0,
            off: i.off as i32,
            imm: i.imm as i64 as u64,
        };
        let target = |rel: i64| (pc as i64 + 1 + rel) as i32;
        slot.op = match i.class() {
            CLS_ALU64 | CLS_ALU => alu_op(&i),
            CLS_LDX => match i.opc {
                0x61 => Op::Ldxw,
                0x69 => Op::Ldxh,
                0x71 => Op::Ldxb,
                0x79 => Op::Ldxdw,
                0x81 => Op::Ldxsw,
                0x89 => Op::Ldxsh,
                _ => Op::Ldxsb,
            },
            CLS_ST => match i.opc {
                0x62 => Op::Stw,
                0x6a => Op::Sth,
                0x72 => Op::Stb,
                _ => Op::Stdw,
            },
            CLS_STX => match i.opc {
                0x63 => Op::Stxw,
                0x6b => Op::Stxh,
                0x73 => Op::Stxb,
                0x7b => Op::Stxdw,
                0xc3 => {
                    slot.aux = i.imm as u8;
                    Op::Atomic32
                }
                _ => {
                    slot.aux = i.imm as u8;
                    Op::Atomic64
                }
            },
            CLS_LD => {
                if i.is_lddw() {
                    let hi = insns[pc + 1].imm as u32 as u64;
                    slot.imm = (i.imm as u32 as u64) | (hi << 32);
                    if i.src == PSEUDO_FUNC {
                        // A function's address is its entry slot.
                        slot.imm = target(i.imm as i64) as u64;
                    }
                    Op::Lddw
                } else {
                    slot.aux = access_size(i.opc);
                    if i.opc & 0xe0 == MODE_IND {
                        Op::LdInd
                    } else {
                        Op::LdAbs
                    }
                }
            }
            _ => {
                let op = i.opc & 0xf0;
                let is32 = i.class() == CLS_JMP32;
                match op {
                    JMP_JA => {
                        slot.off = target(if is32 { i.imm as i64 } else { i.off as i64 });
                        Op::Ja
                    }
                    JMP_CALL => {
                        if i.opc == OP_CALLX {
                            Op::Callx
                        } else if i.src == CALL_LOCAL {
                            slot.off = target(i.imm as i64);
                            Op::CallLocal
                        } else {
                            slot.imm = i.imm as u32 as u64;
                            Op::Call
                        }
                    }
                    JMP_EXIT => Op::Exit,
                    _ => {
                        slot.off = target(i.off as i64);
                        if is32 {
                            slot.imm = i.imm as u32 as u64;
                        }
                        jmp_op(op, i.opc & SRC_X != 0, is32).ok_or_else(|| {
                            ProgramError::at(pc, format!("unknown opcode 0x{:02x}", i.opc))
                        })?
                    }
                }
            }
        };
        out.push(slot);
        if i.is_lddw() {
            out.push(Slot {
                op: Op::LddwHi,
                dst: 0,
                src: 0,
                aux: 0,
                off: 0,
                imm: 0,
            });
            pc += 2;
        } else {
            pc += 1;
        }
    }
    Ok(out.into_boxed_slice())
}

fn alu_op(i: &Insn) -> Op {
    let is64 = i.class() == CLS_ALU64;
    let x = i.opc & SRC_X != 0;
    let pick = |imm64: Op, reg64: Op, imm32: Op, reg32: Op| match (is64, x) {
        (true, false) => imm64,
        (true, true) => reg64,
        (false, false) => imm32,
        (false, true) => reg32,
    };
    let signed = i.off == 1;
    match i.opc & 0xf0 {
        ALU_ADD => pick(Op::Add64Imm, Op::Add64Reg, Op::Add32Imm, Op::Add32Reg),
        ALU_SUB => pick(Op::Sub64Imm, Op::Sub64Reg, Op::Sub32Imm, Op::Sub32Reg),
        ALU_MUL => pick(Op::Mul64Imm, Op::Mul64Reg, Op::Mul32Imm, Op::Mul32Reg),
        ALU_DIV if signed => pick(Op::SDiv64Imm, Op::SDiv64Reg, Op::SDiv32Imm, Op::SDiv32Reg),
        ALU_DIV => pick(Op::Div64Imm, Op::Div64Reg, Op::Div32Imm, Op::Div32Reg),
        ALU_OR => pick(Op::Or64Imm, Op::Or64Reg, Op::Or32Imm, Op::Or32Reg),
        ALU_AND => pick(Op::And64Imm, Op::And64Reg, Op::And32Imm, Op::And32Reg),
        ALU_LSH => pick(Op::Lsh64Imm, Op::Lsh64Reg, Op::Lsh32Imm, Op::Lsh32Reg),
        ALU_RSH => pick(Op::Rsh64Imm, Op::Rsh64Reg, Op::Rsh32Imm, Op::Rsh32Reg),
        ALU_NEG => {
            if is64 {
                Op::Neg64
            } else {
                Op::Neg32
            }
        }
        ALU_MOD if signed => pick(Op::SMod64Imm, Op::SMod64Reg, Op::SMod32Imm, Op::SMod32Reg),
        ALU_MOD => pick(Op::Mod64Imm, Op::Mod64Reg, Op::Mod32Imm, Op::Mod32Reg),
        ALU_XOR => pick(Op::Xor64Imm, Op::Xor64Reg, Op::Xor32Imm, Op::Xor32Reg),
        ALU_MOV => match (is64, x, i.off) {
            (true, true, 8) => Op::MovSx8To64,
            (true, true, 16) => Op::MovSx16To64,
            (true, true, 32) => Op::MovSx32To64,
            (false, true, 8) => Op::MovSx8To32,
            (false, true, 16) => Op::MovSx16To32,
            _ => pick(Op::Mov64Imm, Op::Mov64Reg, Op::Mov32Imm, Op::Mov32Reg),
        },
        ALU_ARSH => pick(Op::Arsh64Imm, Op::Arsh64Reg, Op::Arsh32Imm, Op::Arsh32Reg),
        _ => {
            // ALU_END: 0xd4 le, 0xdc be, 0xd7 bswap (unconditional = be on
            // a little-endian reading of the ISA).
            let be = x || is64;
            match (be, i.imm) {
                (false, 16) => Op::Le16,
                (false, 32) => Op::Le32,
                (false, _) => Op::Le64,
                (true, 16) => Op::Be16,
                (true, 32) => Op::Be32,
                (true, _) => Op::Be64,
            }
        }
    }
}

fn jmp_op(op: u8, x: bool, is32: bool) -> Option<Op> {
    use Op::*;
    let table: [(u8, Op, Op, Op, Op); 11] = [
        (JMP_JEQ, JeqImm, JeqReg, Jeq32Imm, Jeq32Reg),
        (JMP_JGT, JgtImm, JgtReg, Jgt32Imm, Jgt32Reg),
        (JMP_JGE, JgeImm, JgeReg, Jge32Imm, Jge32Reg),
        (JMP_JLT, JltImm, JltReg, Jlt32Imm, Jlt32Reg),
        (JMP_JLE, JleImm, JleReg, Jle32Imm, Jle32Reg),
        (JMP_JSET, JsetImm, JsetReg, Jset32Imm, Jset32Reg),
        (JMP_JNE, JneImm, JneReg, Jne32Imm, Jne32Reg),
        (JMP_JSGT, JsgtImm, JsgtReg, Jsgt32Imm, Jsgt32Reg),
        (JMP_JSGE, JsgeImm, JsgeReg, Jsge32Imm, Jsge32Reg),
        (JMP_JSLT, JsltImm, JsltReg, Jslt32Imm, Jslt32Reg),
        (JMP_JSLE, JsleImm, JsleReg, Jsle32Imm, Jsle32Reg),
    ];
    table.iter().find(|t| t.0 == op).map(|t| match (is32, x) {
        (false, false) => t.1,
        (false, true) => t.2,
        (true, false) => t.3,
        (true, true) => t.4,
    })
}
