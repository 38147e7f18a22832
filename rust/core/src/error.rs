//! Errors of the core: structural problems found when a program is loaded,
//! and faults raised while a program runs in checked mode.

use std::any::Any;
use std::fmt;

use crate::helpers::HelperError;
use crate::isa::MAX_CALL_FRAMES;

/// A program was rejected before running: bad encoding, bad register, bad
/// jump, missing helper, size limits. `pc` is the offending slot when there is
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramError {
    pub pc: Option<usize>,
    pub reason: String,
}

impl ProgramError {
    pub fn at(pc: usize, reason: impl Into<String>) -> Self {
        ProgramError {
            pc: Some(pc),
            reason: reason.into(),
        }
    }

    pub fn whole(reason: impl Into<String>) -> Self {
        ProgramError {
            pc: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pc {
            Some(pc) => write!(f, "instruction {pc}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ProgramError {}

/// What went wrong at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A load, store or atomic touched memory outside every region the
    /// program may access.
    OutOfBounds,
    /// The instruction budget ran out (a runaway loop).
    BudgetExhausted,
    /// BPF-to-BPF calls nested deeper than the frame limit.
    CallDepth,
    /// `callx` named a helper that is not registered.
    UnknownHelper,
    /// An atomic operation on an address that is not naturally aligned.
    Misaligned,
    /// A helper reported an error of its own.
    HelperFailed,
    /// A helper aborted the run with a payload for the caller (for example a
    /// Python exception); see [`ExecError::payload`].
    HelperAborted,
    /// Control reached a slot that can never be executed (an internal
    /// invariant; kept as a fault rather than undefined behaviour).
    Unreachable,
}

impl FaultKind {
    /// Stable snake_case name, used by the Python layer.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::OutOfBounds => "out_of_bounds",
            FaultKind::BudgetExhausted => "budget_exhausted",
            FaultKind::CallDepth => "call_depth",
            FaultKind::UnknownHelper => "unknown_helper",
            FaultKind::Misaligned => "misaligned",
            FaultKind::HelperFailed => "helper_failed",
            FaultKind::HelperAborted => "helper_aborted",
            FaultKind::Unreachable => "unreachable",
        }
    }
}

/// A fault while running in checked mode.
pub struct ExecError {
    pub pc: usize,
    pub kind: FaultKind,
    pub reason: String,
    /// Set for [`FaultKind::HelperAborted`]: whatever the helper handed over.
    pub payload: Option<Box<dyn Any + Send>>,
}

impl ExecError {
    pub fn new(pc: usize, kind: FaultKind, reason: impl Into<String>) -> Self {
        ExecError {
            pc,
            kind,
            reason: reason.into(),
            payload: None,
        }
    }
}

/// The faults both engines raise, worded once so that the interpreter and
/// compiled code report them identically.
impl ExecError {
    /// An access of `size` bytes at `addr`, written `[r{reg}{off:+}]`;
    /// `accessible` describes the regions the program may touch.
    #[cold]
    pub fn out_of_bounds(
        pc: usize,
        reg: u8,
        off: i16,
        addr: u64,
        size: u64,
        store: bool,
        accessible: &str,
    ) -> Self {
        ExecError::new(
            pc,
            FaultKind::OutOfBounds,
            format!(
                "out of bounds memory {} of {size} bytes at 0x{addr:x} ([r{reg}{off:+}]); accessible: {accessible}",
                if store { "store" } else { "load" },
            ),
        )
    }

    #[cold]
    pub fn misaligned(pc: usize, addr: u64, size: u64) -> Self {
        ExecError::new(
            pc,
            FaultKind::Misaligned,
            format!("atomic operation on misaligned address 0x{addr:x} ({size}-byte access)"),
        )
    }

    #[cold]
    pub fn budget_exhausted(pc: usize, budget: u64) -> Self {
        ExecError::new(
            pc,
            FaultKind::BudgetExhausted,
            format!("instruction budget of {budget} exhausted (a loop that does not end?)"),
        )
    }

    #[cold]
    pub fn call_depth(pc: usize) -> Self {
        ExecError::new(
            pc,
            FaultKind::CallDepth,
            format!("BPF-to-BPF calls nested more than {MAX_CALL_FRAMES} frames deep"),
        )
    }

    #[cold]
    pub fn unknown_helper(pc: usize, id: u64) -> Self {
        ExecError::new(
            pc,
            FaultKind::UnknownHelper,
            format!("call to unregistered helper {id}"),
        )
    }

    /// Helper `id`, called at `pc`, did not return a value.
    #[cold]
    pub fn from_helper(pc: usize, id: u64, e: HelperError) -> Self {
        match e {
            HelperError::Fault(msg) => ExecError::new(
                pc,
                FaultKind::HelperFailed,
                format!("helper {id} failed: {msg}"),
            ),
            HelperError::Abort(payload) => ExecError {
                pc,
                kind: FaultKind::HelperAborted,
                reason: format!("helper {id} aborted the program"),
                payload: Some(payload),
            },
            // A callback the helper ran faulted: that fault is the run's.
            HelperError::Exec(e) => *e,
        }
    }
}

impl fmt::Debug for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecError")
            .field("pc", &self.pc)
            .field("kind", &self.kind)
            .field("reason", &self.reason)
            .field("payload", &self.payload.is_some())
            .finish()
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "instruction {}: {}", self.pc, self.reason)
    }
}

impl std::error::Error for ExecError {}
