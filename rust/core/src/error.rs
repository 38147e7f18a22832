//! Errors of the core: structural problems found when a program is loaded,
//! and faults raised while a program runs in checked mode.

use std::any::Any;
use std::fmt;

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
