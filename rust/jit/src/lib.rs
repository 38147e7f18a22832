//! ebpfvm-jit: compiles eBPF programs to native code, in two tiers: a
//! baseline that emits x86-64 in one pass (`baseline.rs`), and Cranelift
//! (`translate.rs`), whose optimized code replaces the baseline's from a
//! background thread (`tiers.rs`). Both share the ABI, run context and
//! run-time entry points below, so their runs are indistinguishable.
//!
//! Each eBPF function becomes one native function `(ctx, r1..r5, count) ->
//! (r0, count)`. Helpers are called through constant function addresses and
//! BPF-to-BPF calls through a table in the run context, so the generated code
//! needs no relocations. Code lives in an anonymous mapping owned by the
//! [`JitExecutable`] and is unmapped when it drops.
//!
//! In the *checked* code shape every access outside the current stack
//! frame is bounds-checked inline and the instruction budget is checked on
//! back edges and calls; failures return a status instead of trapping, and
//! become the same [`ExecError`]s the interpreter raises. The *verified*
//! shape leaves out what the verifier proved unnecessary.

mod baseline;
mod blocks;
pub mod engine;
mod runtime;
pub mod tiers;
mod translate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;

use ebpfvm_core::error::{ExecError, FaultKind, ProgramError};
use ebpfvm_core::helpers::HelperImpl;
use ebpfvm_core::interp::{
    check_load, Invoke, LoadOptions, MemoryMap, RunOutcome, RunSetup, Runner, STACK_BYTES,
};
use ebpfvm_core::isa::STACK_FRAME_SIZE;
use ebpfvm_core::program::Program;

use runtime::*;
pub use tiers::{JitTier, TieredJit};

/// The result of one compiled function: r0 and the instruction count.
#[repr(C)]
struct Pair {
    r0: u64,
    count: u64,
}

type EntryFn = unsafe extern "C" fn(*mut RunCtx, u64, u64, u64, u64, u64, u64) -> Pair;

/// The host's Cranelift target, built once per process (detecting the CPU
/// and building the settings costs more than compiling a small program).
fn host_isa() -> Result<&'static OwnedTargetIsa, String> {
    static ISA: std::sync::OnceLock<Result<OwnedTargetIsa, String>> = std::sync::OnceLock::new();
    ISA.get_or_init(build_host_isa)
        .as_ref()
        .map_err(|e| e.clone())
}

/// Address of a stub that calls [`runtime::translate_slow`] while
/// preserving every register, so the rarely taken slow path of a memory
/// check does not force compiled code to keep its eBPF registers out of
/// caller-saved registers. Built once per process and never freed.
fn slow_path_stub() -> Result<u64, String> {
    static STUB: std::sync::OnceLock<Result<u64, String>> = std::sync::OnceLock::new();
    STUB.get_or_init(build_slow_path_stub).clone()
}

fn build_slow_path_stub() -> Result<u64, String> {
    use cranelift_codegen::ir::{
        types::I64, AbiParam, Function, InstBuilder, Signature, UserFuncName,
    };
    use cranelift_codegen::isa::CallConv;
    let isa = host_isa()?;
    let mut sig = Signature::new(CallConv::PreserveAll);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(I64));
    }
    let mut func = Function::with_name_signature(UserFuncName::user(1, 0), sig);
    let mut fctx = FunctionBuilderContext::new();
    let mut b = cranelift_frontend::FunctionBuilder::new(&mut func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let mut inner = Signature::new(isa.default_call_conv());
    for _ in 0..4 {
        inner.params.push(AbiParam::new(I64));
    }
    let inner = b.import_signature(inner);
    let target = b
        .ins()
        .iconst(I64, runtime::translate_slow as *const () as i64);
    b.ins().call_indirect(inner, target, &params);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(isa.frontend_config());
    let mut ctx = Context::for_function(func);
    let code = ctx
        .compile(&**isa, &mut ControlPlane::default())
        .map_err(|e| format!("slow-path stub: {:?}", e.inner))?;
    let bytes = code.code_buffer().to_vec();
    let mut map = memmap2::MmapMut::map_anon(bytes.len().max(1))
        .map_err(|e| format!("slow-path stub: {e}"))?;
    map[..bytes.len()].copy_from_slice(&bytes);
    let map = map
        .make_exec()
        .map_err(|e| format!("slow-path stub: {e}"))?;
    let addr = map.as_ptr() as u64;
    // Lives for the whole process, shared by every compiled program.
    std::mem::forget(map);
    Ok(addr)
}

fn build_host_isa() -> Result<OwnedTargetIsa, String> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| format!("cranelift setting {k}={v}: {e}"))
    };
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "is_pic", "false")?;
    // Block offsets and edges, to place loops (see translate::short_loops).
    set(&mut flags, "machine_code_cfg_info", "true")?;
    set(
        &mut flags,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    let builder = cranelift_native::builder().map_err(|e| format!("unsupported host: {e}"))?;
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| format!("cranelift: {e}"))
}

/// A compiled program. Immutable and shareable across threads.
pub struct JitExecutable {
    /// Owns the machine code; kept alive as long as `functions` is used.
    _code: memmap2::Mmap,
    functions: Box<[u64]>,
    /// The first function's code, which runs start in (read on every run).
    entry: EntryFn,
    helpers: Box<[Option<HelperImpl>]>,
    unwind_helper: Option<u32>,
    max_instructions: u64,
    program: Arc<Program>,
    code_size: usize,
    compile_time: Duration,
    /// The verifier proved that no stack byte is read before it is
    /// written, so runs need not zero the frame.
    skip_frame_zeroing: bool,
    tier: Tier,
    /// The code reads the run context beyond the stack bound, or hands it
    /// to Rust (helpers, calls, checks, faults). When not, a run passes a
    /// bare [`StackBound`] instead of building a [`RunCtx`].
    needs_run_ctx: bool,
}

/// What a compiler found out about its code, for runs and placement.
struct CodeFacts {
    /// See [`JitExecutable::needs_run_ctx`].
    needs_run_ctx: bool,
    /// Per function, its short loops ([`translate::short_loops`]).
    loops: Vec<Vec<(u32, u32)>>,
}

impl CodeFacts {
    /// Nothing known: the code may read any field of the run context, and
    /// no loop is placed.
    fn unknown() -> Self {
        CodeFacts {
            needs_run_ctx: true,
            loops: Vec::new(),
        }
    }
}

/// The two compilers: the baseline emits machine code in one pass, at
/// once; Cranelift optimizes, taking milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Baseline,
    Optimized,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

impl JitExecutable {
    /// Compiles `program` with Cranelift, in the checked or (with
    /// `opts.verified`) the verified shape.
    pub fn compile(program: Arc<Program>, opts: LoadOptions) -> Result<Self, ProgramError> {
        check_load(&program, &opts)?;
        let start = Instant::now();
        let isa = host_isa().map_err(ProgramError::whole)?;
        let slow_stub = slow_path_stub().map_err(ProgramError::whole)?;
        let helpers = opts.helpers.table().into_boxed_slice();
        let funcs = program.functions().to_vec();
        let index_of = |slot: usize| funcs.iter().position(|f| f.start == slot);
        let mut probe_loads = opts.probe_loads.clone();
        probe_loads.sort_unstable();
        let env = translate::TranslateEnv {
            program: &program,
            helpers: &helpers,
            unwind_helper: opts.unwind_helper,
            function_index: &index_of,
            slow_stub,
            input_may_move: opts.input_may_move,
            verified: opts.verified,
            probe_loads: &probe_loads,
            uses_run_ctx: Default::default(),
        };
        let mut fctx = FunctionBuilderContext::new();
        let mut ctx = Context::new();
        let mut blobs: Vec<Vec<u8>> = Vec::with_capacity(funcs.len());
        let mut loops = Vec::with_capacity(funcs.len());
        for (k, f) in funcs.iter().enumerate() {
            ctx.clear();
            ctx.func = translate::translate_function(&env, *f, k, &**isa, &mut fctx);
            let code = ctx
                .compile(&**isa, &mut ControlPlane::default())
                .map_err(|e| {
                    ProgramError::at(f.start, format!("JIT compilation failed: {:?}", e.inner))
                })?;
            if !code.buffer.relocs().is_empty() {
                return Err(ProgramError::at(
                    f.start,
                    "JIT compilation produced relocations, which this engine does not support",
                ));
            }
            loops.push(translate::short_loops(code));
            blobs.push(code.code_buffer().to_vec());
        }
        let needs_run_ctx = env.uses_run_ctx.get();
        let facts = CodeFacts {
            needs_run_ctx,
            loops,
        };
        Self::install(
            program,
            opts,
            helpers,
            &blobs,
            start,
            Tier::Optimized,
            facts,
        )
    }

    /// Compiles `program` with the baseline tier: one pass, no
    /// optimization, in microseconds rather than milliseconds. `None` on
    /// hosts other than x86-64.
    pub fn compile_baseline(
        program: Arc<Program>,
        opts: LoadOptions,
    ) -> Result<Option<Self>, ProgramError> {
        check_load(&program, &opts)?;
        let start = Instant::now();
        let helpers = opts.helpers.table().into_boxed_slice();
        let mut probe_loads = opts.probe_loads.clone();
        probe_loads.sort_unstable();
        let env = baseline::BaselineEnv {
            program: &program,
            helpers: &helpers,
            unwind_helper: opts.unwind_helper,
            verified: opts.verified,
            probe_loads: &probe_loads,
        };
        let blobs = match baseline::compile(&env) {
            Ok(blobs) => blobs,
            Err(baseline::BaselineError::Host) => return Ok(None),
            Err(baseline::BaselineError::Assembler(e)) => {
                return Err(ProgramError::whole(format!(
                    "baseline JIT compilation failed: {e}"
                )))
            }
        };
        let facts = CodeFacts::unknown();
        Self::install(program, opts, helpers, &blobs, start, Tier::Baseline, facts).map(Some)
    }

    /// Lays the functions' code out in one executable mapping, 16-byte
    /// aligned, each placed so that its short loops do not straddle a
    /// fetch line, and wraps it.
    fn install(
        program: Arc<Program>,
        opts: LoadOptions,
        helpers: Box<[Option<HelperImpl>]>,
        blobs: &[Vec<u8>],
        start: Instant,
        tier: Tier,
        facts: CodeFacts,
    ) -> Result<Self, ProgramError> {
        let mut offsets = Vec::with_capacity(blobs.len());
        let mut size = 0usize;
        for (k, b) in blobs.iter().enumerate() {
            let loops = facts.loops.get(k).map_or(&[][..], |l| &l[..]);
            size += translate::loop_padding(loops, size);
            offsets.push(size);
            size = (size + b.len() + 15) & !15;
        }
        let mut map = memmap2::MmapMut::map_anon(size.max(1))
            .map_err(|e| ProgramError::whole(format!("cannot map JIT code memory: {e}")))?;
        for (b, &o) in blobs.iter().zip(&offsets) {
            map[o..o + b.len()].copy_from_slice(b);
        }
        let code = map
            .make_exec()
            .map_err(|e| ProgramError::whole(format!("cannot make JIT code executable: {e}")))?;
        let base = code.as_ptr() as u64;
        let Some(&first) = offsets.first() else {
            return Err(ProgramError::whole("the program has no function to run"));
        };
        // SAFETY: the first function's code was compiled with the entry
        // signature; it lives as long as `code`, which self keeps.
        let entry = unsafe { std::mem::transmute::<u64, EntryFn>(base + first as u64) };
        let functions = offsets.iter().map(|&o| base + o as u64).collect();
        Ok(JitExecutable {
            _code: code,
            functions,
            entry,
            helpers,
            unwind_helper: opts.unwind_helper,
            max_instructions: opts.max_instructions,
            program,
            code_size: size,
            compile_time: start.elapsed(),
            skip_frame_zeroing: opts.stack_written_before_read,
            tier,
            needs_run_ctx: facts.needs_run_ctx,
        })
    }

    /// Which compiler produced this code.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The machine code (all functions), for inspection.
    pub fn code_bytes(&self) -> &[u8] {
        &self._code[..self.code_size]
    }

    /// Whether runs build a full run context: the code reads more of it
    /// than the stack bound, or hands it to Rust (checks, faults, calls,
    /// helpers other than native ones).
    pub fn needs_run_ctx(&self) -> bool {
        self.needs_run_ctx
    }

    /// Bytes of machine code.
    pub fn code_size(&self) -> usize {
        self.code_size
    }

    /// How long compilation took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    #[cold]
    fn outcome(&self, ctx: &mut RunCtx, out: Pair) -> Result<RunOutcome, ExecError> {
        let pc = ctx.fault_pc as usize;
        match ctx.status {
            STATUS_OK => Ok(RunOutcome {
                r0: out.r0,
                instructions: out.count,
            }),
            STATUS_STOP => Ok(RunOutcome {
                r0: 0,
                instructions: out.count,
            }),
            STATUS_OOB => {
                let info = ctx.fault_info;
                Err(ExecError::out_of_bounds(
                    pc,
                    (info >> 16) as u8,
                    (info >> 32) as u16 as i16,
                    ctx.fault_addr,
                    info & 0xff,
                    (info >> 8) & 1 == 1,
                    &ctx.map.describe(),
                ))
            }
            STATUS_MISALIGNED => Err(ExecError::misaligned(
                pc,
                ctx.fault_addr,
                ctx.fault_info & 0xff,
            )),
            STATUS_BUDGET => Err(ExecError::budget_exhausted(pc, self.max_instructions)),
            STATUS_CALL_DEPTH => Err(ExecError::call_depth(pc)),
            _ => Err(ctx.error.take().unwrap_or_else(|| {
                ExecError::new(pc, FaultKind::Unreachable, "unknown JIT status")
            })),
        }
    }
}

impl Invoke for JitExecutable {
    fn invoke(&self, map: &mut MemoryMap, func: u64, args: [u64; 5]) -> Result<u64, ExecError> {
        let k = ebpfvm_core::interp::callback_function(&self.program, map, func)?;
        // SAFETY: compiled code hands helpers the map of its RunCtx, whose
        // first field it is (repr(C)), and the run is in progress.
        let ctx = unsafe { &mut *(map as *mut MemoryMap as *mut RunCtx) };
        let saved = (ctx.depth, ctx.budget);
        ctx.map.stack_lo -= STACK_FRAME_SIZE as u64;
        ctx.map.stack_len += STACK_FRAME_SIZE as u64;
        zero_frame(ctx.map.stack_lo);
        ctx.depth += 1;
        ctx.budget = self
            .max_instructions
            .saturating_sub(ctx.map.callback_instructions);
        // SAFETY: functions[k] is compiled code with the entry signature.
        let out = unsafe {
            let entry: EntryFn = std::mem::transmute::<u64, EntryFn>(self.functions[k]);
            entry(ctx, args[0], args[1], args[2], args[3], args[4], 0)
        };
        (ctx.depth, ctx.budget) = saved;
        ctx.map.stack_lo += STACK_FRAME_SIZE as u64;
        ctx.map.stack_len -= STACK_FRAME_SIZE as u64;
        let r = self.outcome(ctx, out);
        // The caller of the helper goes on (or fails with the error the
        // helper returns): this call's status is consumed here.
        ctx.status = STATUS_OK;
        let o = r?;
        ctx.map.callback_instructions = ctx.map.callback_instructions.wrapping_add(o.instructions);
        Ok(o.r0)
    }
}

impl Runner for JitExecutable {
    unsafe fn run_setup(
        &self,
        setup: &RunSetup<'_>,
        stack: *mut u8,
    ) -> Result<RunOutcome, ExecError> {
        let top = stack.add(STACK_BYTES);
        if !self.skip_frame_zeroing {
            std::ptr::write_bytes(top.sub(STACK_FRAME_SIZE), 0, STACK_FRAME_SIZE);
        }
        let entry = self.entry;
        if !self.needs_run_ctx {
            // Such code cannot fail, stop, or call anything that counts
            // instructions: its result is the run's.
            let mut bound = StackBound {
                stack_lo: top as u64 - STACK_FRAME_SIZE as u64,
            };
            let ctx = std::ptr::addr_of_mut!(bound).cast::<RunCtx>();
            let out = entry(ctx, setup.r1, setup.r2, 0, 0, 0, 0);
            return Ok(RunOutcome {
                r0: out.r0,
                instructions: out.count,
            });
        }
        self.run_with_ctx(setup, top, entry)
    }
}

impl JitExecutable {
    /// A run that builds the whole [`RunCtx`]. Kept out of `run_setup`, so
    /// that runs without one do not pay for this one's stack frame and
    /// saved registers.
    #[inline(never)]
    unsafe fn run_with_ctx(
        &self,
        setup: &RunSetup<'_>,
        top: *mut u8,
        entry: EntryFn,
    ) -> Result<RunOutcome, ExecError> {
        // From the setup, not read back from the map written below: that
        // load would wait on store forwarding.
        let mem_len = if setup.input_writable {
            setup.input_len
        } else {
            0
        };
        let mem_lim = mem_limits(mem_len);
        // Built in place, field by field: this is on every run's path, and
        // assembling the context in a temporary first stalls on store
        // forwarding when it is copied.
        // Dropped when the run ends, also if a helper panics through it;
        // nothing below can unwind before every field is written.
        let mut holder = InPlace(std::mem::MaybeUninit::uninit());
        let c = holder.0.as_mut_ptr();
        MemoryMap::init_in_place(std::ptr::addr_of_mut!((*c).map), top as u64, setup);
        std::ptr::addr_of_mut!((*c).status).write(STATUS_OK);
        std::ptr::addr_of_mut!((*c).fault_pc).write(0);
        std::ptr::addr_of_mut!((*c).fault_addr).write(0);
        std::ptr::addr_of_mut!((*c).fault_info).write(0);
        std::ptr::addr_of_mut!((*c).depth).write(0);
        std::ptr::addr_of_mut!((*c).budget).write(self.max_instructions);
        std::ptr::addr_of_mut!((*c).functions).write(self.functions.as_ptr());
        std::ptr::addr_of_mut!((*c).helpers).write(self.helpers.as_ptr());
        std::ptr::addr_of_mut!((*c).helpers_len).write(self.helpers.len() as u64);
        std::ptr::addr_of_mut!((*c).unwind_helper)
            .write(self.unwind_helper.map_or(u64::MAX, |h| h as u64));
        std::ptr::addr_of_mut!((*c).slow_ok).write(0);
        std::ptr::addr_of_mut!((*c).mem_lim).write(mem_lim);
        std::ptr::addr_of_mut!((*c).error).write(None);
        let ctx = holder.get();
        ctx.map.set_invoker(self);
        let out = entry(ctx, setup.r1, setup.r2, 0, 0, 0, 0);
        let extra = ctx.map.callback_instructions;
        if ctx.status == STATUS_OK {
            let ok = Ok(RunOutcome {
                r0: out.r0,
                instructions: out.count.wrapping_add(extra),
            });
            // Most runs leave nothing to free: skip the out-of-line drop.
            if ctx.error.is_none() && ctx.map.owns_nothing() {
                std::mem::forget(holder);
            }
            return ok;
        }
        self.outcome(ctx, out).map(|o| RunOutcome {
            r0: o.r0,
            instructions: o.instructions.wrapping_add(extra),
        })
    }
}

/// What code that does not need a [`RunCtx`] reads of it: the stack bound,
/// at the same offset.
#[repr(C)]
struct StackBound {
    stack_lo: u64,
}

const _: () = assert!(
    std::mem::offset_of!(RunCtx, map) + std::mem::offset_of!(MemoryMap, stack_lo) == 0,
    "StackBound mirrors the start of RunCtx"
);

/// An initialised run context living in its caller's frame; dropped with it.
struct InPlace(std::mem::MaybeUninit<RunCtx>);

impl InPlace {
    fn get(&mut self) -> &mut RunCtx {
        // SAFETY: constructed only after every field was written.
        unsafe { self.0.assume_init_mut() }
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        // SAFETY: as in `get`; dropped once.
        unsafe { self.0.assume_init_drop() }
    }
}
