//! The `ebpfvm.Error` hierarchy, and the conversion of core errors and Rust
//! panics into it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use ebpfvm_core::asm::AsmError;
use ebpfvm_core::error::{ExecError, FaultKind, ProgramError as CoreProgramError};

create_exception!(
    ebpfvm,
    Error,
    PyException,
    "Base class of every ebpfvm error."
);
create_exception!(
    ebpfvm,
    AssemblerError,
    Error,
    "Assembly text could not be assembled; `.line` is the 1-based source line."
);
create_exception!(ebpfvm, ProgramError, Error, "A program was rejected when loaded; `.pc` is the offending instruction (or None), `.reason` the cause.");
create_exception!(
    ebpfvm,
    VerifierError,
    ProgramError,
    "The verifier could not prove a program safe."
);
create_exception!(ebpfvm, ExecutionError, Error, "A program faulted at run time in checked mode; `.pc`, `.reason` and `.kind` describe the fault.");
create_exception!(
    ebpfvm,
    ElfError,
    Error,
    "An ELF object could not be loaded."
);
create_exception!(ebpfvm, MapError, Error, "A map operation failed.");

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("AssemblerError", py.get_type::<AssemblerError>())?;
    m.add("ProgramError", py.get_type::<ProgramError>())?;
    m.add("VerifierError", py.get_type::<VerifierError>())?;
    m.add("ExecutionError", py.get_type::<ExecutionError>())?;
    m.add("ElfError", py.get_type::<ElfError>())?;
    m.add("MapError", py.get_type::<MapError>())?;
    Ok(())
}

/// A value as a Python object for an exception attribute (None should the
/// conversion fail, which it does not for the types used here).
fn attr<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: T) -> Py<PyAny> {
    value
        .into_bound_py_any(py)
        .map(Bound::unbind)
        .unwrap_or_else(|_| py.None())
}

/// Builds an exception instance of `ty` with attributes set.
fn with_attrs(
    py: Python<'_>,
    ty: Bound<'_, pyo3::types::PyType>,
    msg: String,
    attrs: &[(&str, Py<PyAny>)],
) -> PyErr {
    match ty.call1((msg.clone(),)) {
        Ok(inst) => {
            for (k, v) in attrs {
                if let Err(e) = inst.setattr(*k, v.clone_ref(py)) {
                    return e;
                }
            }
            PyErr::from_value(inst)
        }
        Err(e) => e,
    }
}

/// An `ExecutionError` for a bad memory access made by a helper through
/// its `VMMemory`; the instruction is filled in when it reaches `run`.
pub fn helper_memory_error(py: Python<'_>, msg: String, kind: FaultKind) -> PyErr {
    let none = py.None();
    let kind = attr(py, kind.name());
    let reason = attr(py, msg.clone());
    with_attrs(
        py,
        py.get_type::<ExecutionError>(),
        msg,
        &[("pc", none), ("kind", kind), ("reason", reason)],
    )
}

pub fn program_error(py: Python<'_>, e: &CoreProgramError) -> PyErr {
    let pc = attr(py, e.pc);
    let reason = attr(py, e.reason.clone());
    with_attrs(
        py,
        py.get_type::<ProgramError>(),
        e.to_string(),
        &[("pc", pc), ("reason", reason)],
    )
}

/// What a program the verifier refused at load can do instead.
pub const CHECKED_MODE_HINT: &str = "to run it anyway, load it with verify=False: \
     it then runs in checked mode, where every memory access is bounds-checked at run time";

/// A `VerifierError` with `.pc`, `.message`, `.log` and `.stats`; its text
/// may also say, after the failing instruction, what the user can do about
/// it (`.message` stays the verifier's own).
pub fn verifier_error(
    py: Python<'_>,
    e: &ebpfvm_core::verifier::VerifyError,
    hint: Option<&str>,
) -> PyErr {
    let pc = attr(py, e.pc);
    let message = attr(py, e.message.clone());
    let reason = attr(py, e.message.clone());
    let log = attr(py, e.log.clone());
    let stats = crate::verify_stats(py, &e.stats)
        .map(|d| d.into_any().unbind())
        .unwrap_or_else(|_| py.None());
    let mut text = e.to_string();
    if let Some(hint) = hint {
        text = format!("{text}\n({hint})");
    }
    if !e.log.is_empty() {
        text = format!("{text}\n{}", e.log.trim_end());
    }
    with_attrs(
        py,
        py.get_type::<VerifierError>(),
        text,
        &[
            ("pc", pc),
            ("message", message),
            ("reason", reason),
            ("log", log),
            ("stats", stats),
        ],
    )
}

pub fn assembler_error(py: Python<'_>, e: &AsmError) -> PyErr {
    let line = attr(py, e.line);
    with_attrs(
        py,
        py.get_type::<AssemblerError>(),
        e.to_string(),
        &[("line", line)],
    )
}

/// Converts a run-time fault. A helper that aborted with a Python exception
/// gets that exception back, unchanged.
pub fn exec_error(py: Python<'_>, e: ExecError) -> PyErr {
    if e.kind == FaultKind::HelperAborted {
        if let Some(payload) = e.payload {
            match payload.downcast::<PyErr>() {
                Ok(err) => {
                    // An ExecutionError raised by the helper's VMMemory gets
                    // the place of the call filled in; anything else passes
                    // through unchanged.
                    let value = err.value(py);
                    if value.is_instance_of::<ExecutionError>()
                        && value.getattr("pc").map(|v| v.is_none()).unwrap_or(true)
                    {
                        let _ = value.setattr("pc", e.pc);
                        if value.getattr("kind").is_err() {
                            let _ = value.setattr("kind", FaultKind::HelperFailed.name());
                        }
                        if value.getattr("reason").is_err() {
                            let _ = value.setattr(
                                "reason",
                                value.str().map(|s| s.to_string()).unwrap_or_default(),
                            );
                        }
                    }
                    return *err;
                }
                Err(_) => {
                    return Error::new_err(format!("instruction {}: {}", e.pc, e.reason));
                }
            }
        }
    }
    let pc = attr(py, e.pc);
    let reason = attr(py, e.reason.clone());
    let kind = attr(py, e.kind.name());
    with_attrs(
        py,
        py.get_type::<ExecutionError>(),
        e.to_string(),
        &[("pc", pc), ("reason", reason), ("kind", kind)],
    )
}

/// Runs `f`, turning a Rust panic into `ebpfvm.Error` instead of letting it
/// reach Python as a `PanicException` (which `except Exception` misses).
pub fn guard<T>(_py: Python<'_>, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::new_err(format!(
                "internal error in ebpfvm (please report it): {msg}"
            )))
        }
    }
}
