//! Tiered compilation: baseline machine code at once, Cranelift's optimized
//! code from a background thread as soon as it is ready.
//!
//! Runs always use the best code available: they check (one atomic load)
//! whether the optimized code is in place and otherwise run the baseline.
//! Both tiers behave identically, so a run never notices the switch. One
//! background thread compiles for the whole process, in load order, and
//! skips programs dropped before their turn.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ebpfvm_core::error::{ExecError, ProgramError};
use ebpfvm_core::interp::{LoadOptions, RunOutcome, RunSetup, Runner};
use ebpfvm_core::program::Program;

use crate::JitExecutable;

/// Which code a JIT load produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JitTier {
    /// Baseline code at once, optimized code swapped in when the background
    /// compile ends.
    #[default]
    Tiered,
    /// Baseline code only (Cranelift's on hosts without a baseline tier).
    Baseline,
    /// Cranelift's code, compiled before the load returns.
    Optimized,
}

impl JitTier {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tiered" => Some(JitTier::Tiered),
            "baseline" => Some(JitTier::Baseline),
            "optimized" => Some(JitTier::Optimized),
            _ => None,
        }
    }
}

/// Where the background compile leaves its result.
struct Slot {
    code: OnceLock<Result<JitExecutable, ProgramError>>,
    filled: Mutex<bool>,
    cv: Condvar,
}

impl Slot {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            code: OnceLock::new(),
            filled: Mutex::new(false),
            cv: Condvar::new(),
        })
    }

    fn fill(&self, r: Result<JitExecutable, ProgramError>) {
        let _ = self.code.set(r);
        *self.filled.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }
}

/// A program compiled by one or both tiers.
pub struct TieredJit {
    /// `None` when the program was compiled by Cranelift before the load
    /// returned (asked for, or on a host without a baseline tier).
    baseline: Option<JitExecutable>,
    optimized: Arc<Slot>,
    /// A background compile was queued.
    queued: bool,
}

type Job = Box<dyn FnOnce() + Send>;

/// Background compiles run in this process (programs dropped before their
/// turn are not compiled, and not counted).
static BACKGROUND_COMPILES: AtomicU64 = AtomicU64::new(0);

/// How many optimizing compiles the background thread has run in this
/// process: a statistic, and how tests see that dropped programs are
/// skipped.
pub fn background_compiles() -> u64 {
    BACKGROUND_COMPILES.load(Ordering::Relaxed)
}

/// Hands `job` to the process's background compiler thread, started on
/// first use. False when no thread can be started.
fn submit(job: Job) -> bool {
    /// The thread's queue, with the process it was started in.
    static QUEUE: Mutex<Option<(u32, Sender<Job>)>> = Mutex::new(None);
    let mut queue = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    // A child made by fork() inherits the queue but not the thread.
    if queue.as_ref().is_none_or(|(owner, _)| *owner != pid) {
        let (tx, rx) = channel::<Job>();
        let started = std::thread::Builder::new()
            .name("ebpfvm-jit".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            });
        *queue = started.ok().map(|_| (pid, tx));
    }
    match queue.as_ref() {
        Some((_, tx)) => tx.send(job).is_ok(),
        None => false,
    }
}

impl TieredJit {
    pub fn compile(
        program: Arc<Program>,
        opts: LoadOptions,
        tier: JitTier,
    ) -> Result<Self, ProgramError> {
        let optimized = Slot::new();
        let baseline = match tier {
            JitTier::Optimized => None,
            _ => JitExecutable::compile_baseline(program.clone(), opts.clone())?,
        };
        let Some(baseline) = baseline else {
            optimized.fill(Ok(JitExecutable::compile(program, opts)?));
            return Ok(TieredJit {
                baseline: None,
                optimized,
                queued: false,
            });
        };
        let mut queued = false;
        if tier == JitTier::Tiered {
            let slot: Weak<Slot> = Arc::downgrade(&optimized);
            queued = submit(Box::new(move || {
                // Dropped before its turn: nothing to do.
                let Some(slot) = slot.upgrade() else { return };
                BACKGROUND_COMPILES.fetch_add(1, Ordering::Relaxed);
                let r = catch_unwind(AssertUnwindSafe(|| JitExecutable::compile(program, opts)))
                    .unwrap_or_else(|_| {
                        Err(ProgramError::whole("the optimizing compiler panicked"))
                    });
                slot.fill(r);
            }));
        }
        Ok(TieredJit {
            baseline: Some(baseline),
            optimized,
            queued,
        })
    }

    /// The code runs use now: the optimized code once it is in place.
    pub fn current(&self) -> &JitExecutable {
        match (self.optimized.code.get(), &self.baseline) {
            (Some(Ok(o)), _) => o,
            (_, Some(b)) => b,
            // Without a baseline the optimized code was compiled (and
            // checked) before the load returned.
            (_, None) => unreachable!("a tiered program has code"),
        }
    }

    /// Why the background compile failed; the baseline keeps running.
    pub fn optimize_error(&self) -> Option<&ProgramError> {
        match self.optimized.code.get() {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }

    /// Waits until the optimized code is in place, at most `timeout` (for
    /// ever with `None`). True when it is; false when it is not coming
    /// (baseline only, or its compile failed) or the time ran out.
    pub fn wait_optimized(&self, timeout: Option<Duration>) -> bool {
        if !self.queued {
            return matches!(self.optimized.code.get(), Some(Ok(_)));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut filled = self
            .optimized
            .filled
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while !*filled {
            filled = match deadline {
                None => self
                    .optimized
                    .cv
                    .wait(filled)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    self.optimized
                        .cv
                        .wait_timeout(filled, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        matches!(self.optimized.code.get(), Some(Ok(_)))
    }

    pub fn program(&self) -> &Arc<Program> {
        self.current().program()
    }
}

impl Runner for TieredJit {
    unsafe fn run_setup(
        &self,
        setup: &RunSetup<'_>,
        stack: *mut u8,
    ) -> Result<RunOutcome, ExecError> {
        self.current().run_setup(setup, stack)
    }
}
