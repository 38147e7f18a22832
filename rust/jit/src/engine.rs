//! One type for "a loaded program", whichever engine runs it, including
//! `auto`: interpret the first runs, compile once the program is hot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ebpfvm_core::error::{ExecError, ProgramError};
use ebpfvm_core::interp::{Executable, LoadOptions, RunOutcome, RunSetup, Runner};
use ebpfvm_core::program::Program;

use crate::tiers::{JitTier, TieredJit};
use crate::JitExecutable;

/// When `auto` compiles: after this many runs...
pub const AUTO_HOT_RUNS: u64 = 64;
/// ...or once this many instructions have been interpreted.
pub const AUTO_HOT_INSTRUCTIONS: u64 = 1_000_000;

/// Which engine to load a program into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Interpreter,
    Jit,
    Auto,
}

impl EngineKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "interpreter" | "interp" => Some(EngineKind::Interpreter),
            "jit" => Some(EngineKind::Jit),
            "auto" => Some(EngineKind::Auto),
            _ => None,
        }
    }
}

/// `auto`: the interpreter until the program is hot, then compiled code.
pub struct AutoExecutable {
    interp: Executable,
    jit: OnceLock<Result<TieredJit, ProgramError>>,
    opts: LoadOptions,
    tier: JitTier,
    runs: AtomicU64,
    instructions: AtomicU64,
}

impl AutoExecutable {
    fn hot(&self) -> Option<&TieredJit> {
        match self.jit.get() {
            Some(Ok(j)) => Some(j),
            _ => None,
        }
    }

    /// Whether compiled code runs the program now.
    pub fn compiled(&self) -> bool {
        self.hot().is_some()
    }

    /// Why compilation failed, if it did; the interpreter keeps running it.
    pub fn compile_error(&self) -> Option<&ProgramError> {
        match self.jit.get() {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}

impl Runner for AutoExecutable {
    unsafe fn run_setup(
        &self,
        setup: &RunSetup<'_>,
        stack: *mut u8,
    ) -> Result<RunOutcome, ExecError> {
        if let Some(j) = self.hot() {
            return j.run_setup(setup, stack);
        }
        let runs = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
        if runs > AUTO_HOT_RUNS || self.instructions.load(Ordering::Relaxed) > AUTO_HOT_INSTRUCTIONS
        {
            // Compile on the triggering run, as the kernel does; other
            // threads wait for it rather than compiling twice.
            let jit = self.jit.get_or_init(|| {
                TieredJit::compile(self.interp.program().clone(), self.opts.clone(), self.tier)
            });
            if let Ok(j) = jit {
                return j.run_setup(setup, stack);
            }
        }
        let out = self.interp.run_setup(setup, stack);
        if let Ok(o) = &out {
            self.instructions
                .fetch_add(o.instructions, Ordering::Relaxed);
        }
        out
    }
}

/// A program loaded into one of the engines.
pub enum Engine {
    Interpreter(Executable),
    Jit(TieredJit),
    Auto(AutoExecutable),
}

impl Engine {
    /// Loads `program`; the JIT engines compile tiered.
    pub fn load(
        kind: EngineKind,
        program: Arc<Program>,
        opts: LoadOptions,
    ) -> Result<Self, ProgramError> {
        Self::load_with_tier(kind, JitTier::default(), program, opts)
    }

    /// Loads `program`, compiling (for `jit`, and `auto` once hot) as
    /// `tier` says.
    pub fn load_with_tier(
        kind: EngineKind,
        tier: JitTier,
        program: Arc<Program>,
        opts: LoadOptions,
    ) -> Result<Self, ProgramError> {
        Ok(match kind {
            EngineKind::Interpreter => Engine::Interpreter(Executable::new(program, opts)?),
            EngineKind::Jit => Engine::Jit(TieredJit::compile(program, opts, tier)?),
            EngineKind::Auto => Engine::Auto(AutoExecutable {
                interp: Executable::new(program, opts.clone())?,
                jit: OnceLock::new(),
                opts,
                tier,
                runs: AtomicU64::new(0),
                instructions: AtomicU64::new(0),
            }),
        })
    }

    pub fn kind(&self) -> EngineKind {
        match self {
            Engine::Interpreter(_) => EngineKind::Interpreter,
            Engine::Jit(_) => EngineKind::Jit,
            Engine::Auto(_) => EngineKind::Auto,
        }
    }

    pub fn program(&self) -> &Arc<Program> {
        match self {
            Engine::Interpreter(e) => e.program(),
            Engine::Jit(j) => j.program(),
            Engine::Auto(a) => a.interp.program(),
        }
    }

    /// The compiled code runs use now, if any.
    pub fn jit(&self) -> Option<&JitExecutable> {
        self.tiered().map(TieredJit::current)
    }

    /// The compiled program with its tiers, if it is compiled.
    pub fn tiered(&self) -> Option<&TieredJit> {
        match self {
            Engine::Interpreter(_) => None,
            Engine::Jit(j) => Some(j),
            Engine::Auto(a) => a.hot(),
        }
    }

    pub fn auto(&self) -> Option<&AutoExecutable> {
        match self {
            Engine::Auto(a) => Some(a),
            _ => None,
        }
    }
}

impl Runner for Engine {
    unsafe fn run_setup(
        &self,
        setup: &RunSetup<'_>,
        stack: *mut u8,
    ) -> Result<RunOutcome, ExecError> {
        match self {
            Engine::Interpreter(e) => e.run_setup(setup, stack),
            Engine::Jit(j) => j.run_setup(setup, stack),
            Engine::Auto(a) => a.run_setup(setup, stack),
        }
    }
}
