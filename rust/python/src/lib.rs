//! PyO3 bindings: `ebpfvm._core`. Thin by design: argument conversion, error
//! mapping, GIL handling. All logic lives in `ebpfvm-core`.

mod batch;
mod errors;
mod exec;
mod helpers;
mod maps;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ebpfvm_core::{asm, disasm, interp, program};

use crate::errors::{assembler_error, guard, program_error, Error};

/// Reads any object with the buffer protocol as bytes.
pub(crate) fn buffer_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let buf = pyo3::buffer::PyBuffer::<u8>::get(obj).map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "expected bytes or a buffer of bytes, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    buf.to_vec(obj.py())
}

/// Assembles text in the conformance-suite dialect into bytecode.
#[pyfunction]
fn assemble<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyBytes>> {
    guard(py, || {
        let insns = asm::assemble(text).map_err(|e| assembler_error(py, &e))?;
        Ok(PyBytes::new(py, &ebpfvm_core::isa::encode_all(&insns)))
    })
}

/// Disassembles bytecode; the text assembles back to the same bytes.
#[pyfunction]
fn disassemble(py: Python<'_>, code: &Bound<'_, PyAny>) -> PyResult<String> {
    let bytes = buffer_bytes(code)?;
    guard(py, || {
        let insns = ebpfvm_core::isa::decode_all(&bytes).map_err(|rest| {
            Error::new_err(format!(
                "code is {} bytes, not a multiple of 8 ({rest} bytes left over)",
                bytes.len()
            ))
        })?;
        Ok(disasm::disassemble(&insns))
    })
}

/// Does nothing: the baseline a benchmark sets a Python-to-Rust call against.
#[pyfunction]
#[pyo3(signature = (_arg = None))]
fn _noop(_arg: Option<&Bound<'_, PyAny>>) {}

/// A decoded, structurally checked eBPF program.
#[pyclass(frozen, module = "ebpfvm", name = "Program")]
pub struct PyProgram {
    pub(crate) inner: Arc<program::Program>,
}

#[pymethods]
impl PyProgram {
    #[new]
    #[pyo3(signature = (code, *, max_len = program::DEFAULT_MAX_LEN))]
    fn new(py: Python<'_>, code: &Bound<'_, PyAny>, max_len: usize) -> PyResult<Self> {
        let bytes = buffer_bytes(code)?;
        guard(py, || {
            let p = program::Program::from_bytes_with_limit(&bytes, max_len)
                .map_err(|e| program_error(py, &e))?;
            Ok(PyProgram { inner: Arc::new(p) })
        })
    }

    /// Assembles `text` and checks the result.
    #[staticmethod]
    #[pyo3(signature = (text, *, max_len = program::DEFAULT_MAX_LEN))]
    fn from_asm(py: Python<'_>, text: &str, max_len: usize) -> PyResult<Self> {
        guard(py, || {
            let insns = asm::assemble(text).map_err(|e| assembler_error(py, &e))?;
            let p =
                program::Program::from_insns(insns, max_len).map_err(|e| program_error(py, &e))?;
            Ok(PyProgram { inner: Arc::new(p) })
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The bytecode, 8 bytes per slot.
    #[getter]
    fn code<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// `(start, end)` slot ranges of the program's functions; the first is
    /// the entry point.
    #[getter]
    fn functions(&self) -> Vec<(usize, usize)> {
        self.inner
            .functions()
            .iter()
            .map(|f| (f.start, f.end))
            .collect()
    }

    /// Helper ids called statically, in program order, without repeats.
    #[getter]
    fn helper_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = Vec::new();
        for &(_, id) in self.inner.helper_calls() {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    fn disassemble(&self) -> String {
        disasm::disassemble(self.inner.insns())
    }

    fn __repr__(&self) -> String {
        format!(
            "<ebpfvm.Program: {} instructions, {} functions>",
            self.inner.len(),
            self.inner.functions().len()
        )
    }

    /// Prepares the program to run. See the Python documentation of
    /// `ebpfvm.Program.load`.
    #[pyo3(signature = (engine = "auto", verify = false, helpers = None, unwind_helper = None, max_instructions = None))]
    fn load(
        &self,
        py: Python<'_>,
        engine: &str,
        verify: bool,
        helpers: Option<&Bound<'_, PyAny>>,
        unwind_helper: Option<u32>,
        max_instructions: Option<u64>,
    ) -> PyResult<exec::PyExecutable> {
        if verify {
            return Err(errors::VerifierError::new_err(
                "verify=True needs the verifier, which this version of ebpfvm does not have yet; \
                 load with verify=False to run in checked mode (every access bounds-checked at run time)",
            ));
        }
        let Some(kind) = ebpfvm_jit::engine::EngineKind::parse(engine) else {
            return Err(Error::new_err(format!(
                "unknown engine {engine:?}: use \"interpreter\", \"jit\" or \"auto\""
            )));
        };
        if max_instructions == Some(0) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "max_instructions must be positive",
            ));
        }
        let (registry, keepalive) = helpers::build_registry(py, helpers)?;
        let opts = interp::LoadOptions {
            helpers: registry,
            unwind_helper,
            max_instructions: max_instructions.unwrap_or(interp::DEFAULT_MAX_INSTRUCTIONS),
            ..interp::LoadOptions::default()
        };
        guard(py, || {
            let exe = ebpfvm_jit::engine::Engine::load(kind, self.inner.clone(), opts)
                .map_err(|e| program_error(py, &e))?;
            Ok(exec::PyExecutable::new(exe, keepalive))
        })
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_function(wrap_pyfunction!(assemble, m)?)?;
    m.add_function(wrap_pyfunction!(disassemble, m)?)?;
    m.add_function(wrap_pyfunction!(_noop, m)?)?;
    m.add_class::<PyProgram>()?;
    m.add_class::<exec::PyExecutable>()?;
    m.add_class::<helpers::VMMemory>()?;
    maps::register(m)?;
    m.add("MAX_PROGRAM_LEN", program::DEFAULT_MAX_LEN)?;
    m.add("DEFAULT_MAX_INSTRUCTIONS", interp::DEFAULT_MAX_INSTRUCTIONS)?;
    m.add("STACK_FRAME_SIZE", ebpfvm_core::isa::STACK_FRAME_SIZE)?;
    m.add("MAX_CALL_FRAMES", ebpfvm_core::isa::MAX_CALL_FRAMES)?;
    Ok(())
}
