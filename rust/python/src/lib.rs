//! PyO3 bindings: `ebpfvm._core`. Thin by design: argument conversion, error
//! mapping, GIL handling. All logic lives in `ebpfvm-core`.

mod batch;
mod errors;
mod exec;
mod helpers;
mod maps;
mod object;

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ebpfvm_core::helpers::HelperRegistry;
use ebpfvm_core::kernel::helper_protos::{self, RetKind};
use ebpfvm_core::maps::Map;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::{asm, disasm, interp, program, runtime, verifier};

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

/// What a program from an object file (or assembled for a program type)
/// knows beyond its instructions.
#[derive(Clone, Default)]
pub(crate) struct ProgramMeta {
    pub(crate) name: String,
    pub(crate) section: Option<String>,
    pub(crate) prog_type: Option<ProgType>,
    /// The maps `lddw map_idx N` / `map_fd N` refer to, by index.
    pub(crate) maps: Vec<Arc<Map>>,
    /// (instruction, "file:line: source") from BTF line info.
    pub(crate) line_info: Vec<(usize, String)>,
}

/// A decoded, structurally checked eBPF program.
#[pyclass(frozen, module = "ebpfvm", name = "Program")]
pub struct PyProgram {
    pub(crate) inner: Arc<program::Program>,
    pub(crate) meta: ProgramMeta,
}

impl PyProgram {
    /// A program without a type runs as a raw one (r1 = buffer, r2 =
    /// length), unless it comes from an object file: there the kernel
    /// would need a type, and guessing one would run it wrongly.
    fn untyped_as_raw(&self) -> PyResult<ProgType> {
        match &self.meta.section {
            Some(section) => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "the type of program '{}' is unknown (section '{section}' does not say): \
                 give it with prog.with_type(\"...\"), prog_type=..., or Object.open(..., prog_types={{...}})",
                self.meta.name
            ))),
            None => Ok(ProgType::Raw),
        }
    }

    fn run_verifier(
        &self,
        py: Python<'_>,
        t: ProgType,
        log_level: u32,
        input: (u32, u32),
        max_insns: Option<u64>,
        hint: &dyn Fn(&verifier::VerifyError) -> Option<String>,
    ) -> PyResult<verifier::Verified> {
        if input.0 > input.1 {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "input_size ({}) is larger than max_input_size ({})",
                input.0, input.1
            )));
        }
        if log_level > 2 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "log_level is 0, 1 or 2",
            ));
        }
        let defs: Vec<_> = self.meta.maps.iter().map(|m| m.def().clone()).collect();
        let opts = verifier::VerifyOptions {
            prog_type: t,
            raw_input_size: input.0,
            raw_max_input_size: input.1,
            maps: &defs,
            log_level,
            line_info: &self.meta.line_info,
            max_processed_insns: max_insns.unwrap_or(verifier::DEFAULT_MAX_PROCESSED_INSNS),
            // Maps stay writable from Python: no value is constant.
            frozen_values: &[],
        };
        let prog = self.inner.clone();
        guard(py, || {
            py.detach(|| verifier::verify(&prog, &opts))
                .map_err(|e| errors::verifier_error(py, &e, hint(&e).as_deref()))
        })
    }

    /// Refuses calls to helpers given with `helpers=` that the verifier
    /// cannot vouch for. It checks a call against the kernel prototype of
    /// its id, and the helper given replaces the kernel's: that is sound
    /// when the prototype returns a number, but not when there is none,
    /// nor when compiled code would dereference what the helper returns.
    fn check_custom_helpers(
        &self,
        py: Python<'_>,
        t: ProgType,
        custom: &HelperRegistry,
    ) -> PyResult<()> {
        for &(pc, id) in self.inner.helper_calls() {
            if !custom.contains(id) {
                continue;
            }
            let message = match helper_protos::proto(id) {
                None => format!(
                    "helper #{id} was given with helpers= and has no prototype the verifier \
                     knows: it cannot prove calls to a custom helper safe"
                ),
                Some(p) if !helper_protos::allowed(t, id) => format!(
                    "helper #{id} given with helpers= has the id of the kernel's bpf_{}, which \
                     {} programs may not call (the verifier checks a custom helper's calls \
                     against the kernel prototype of its id)",
                    p.name,
                    t.name()
                ),
                Some(p) if matches!(p.ret, RetKind::Integer | RetKind::Void) => continue,
                Some(p) => format!(
                    "helper #{id} given with helpers= replaces the kernel's bpf_{}, whose \
                     result the verifier trusts as a pointer: a custom helper's result cannot \
                     be trusted so",
                    p.name
                ),
            };
            let refusal = verifier::VerifyError {
                pc: Some(pc),
                message,
                log: String::new(),
                stats: verifier::VerifyStats::default(),
            };
            return Err(errors::verifier_error(
                py,
                &refusal,
                Some(errors::CHECKED_MODE_HINT),
            ));
        }
        Ok(())
    }

    /// What to do about a refusal at load: run unverified, and, when the
    /// refused instruction calls a helper given with `helpers=`, know that
    /// it was checked against the kernel prototype of its id.
    fn load_hint(&self, e: &verifier::VerifyError, custom: &HelperRegistry) -> String {
        let custom_call = self
            .inner
            .helper_calls()
            .iter()
            .find(|&&(pc, id)| Some(pc) == e.pc && custom.contains(id));
        match custom_call.and_then(|&(_, id)| helper_protos::proto(id)) {
            Some(p) => format!(
                "helper #{} given with helpers= is checked against the prototype of the \
                 kernel's bpf_{}; {}",
                p.id,
                p.name,
                errors::CHECKED_MODE_HINT
            ),
            None => errors::CHECKED_MODE_HINT.to_string(),
        }
    }

    pub(crate) fn with_meta(p: program::Program, meta: ProgramMeta) -> Self {
        PyProgram {
            inner: Arc::new(p),
            meta,
        }
    }
}

/// Verification statistics as a dict.
pub(crate) fn verify_stats<'py>(
    py: Python<'py>,
    s: &verifier::VerifyStats,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let d = pyo3::types::PyDict::new(py);
    d.set_item("insns_processed", s.insns_processed)?;
    d.set_item("states_total", s.states_total)?;
    d.set_item("peak_states", s.peak_states)?;
    d.set_item("max_states_per_insn", s.max_states_per_insn)?;
    d.set_item("time", s.duration.as_secs_f64())?;
    Ok(d)
}

/// Maps given from Python: core maps or views with a `core` attribute.
fn extract_maps(maps: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Arc<Map>>> {
    let Some(maps) = maps.filter(|m| !m.is_none()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in maps.try_iter()? {
        let item = item?;
        let core = if item.is_instance_of::<maps::PyMap>() {
            item
        } else {
            item.getattr("core").map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "maps must be ebpfvm maps, got {}",
                    item.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?
        };
        let m: PyRef<'_, maps::PyMap> = core.extract()?;
        out.push(m.inner().clone());
    }
    Ok(out)
}

fn parse_prog_type(name: Option<&str>) -> PyResult<Option<ProgType>> {
    name.map(|n| {
        ProgType::from_name(n).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "unknown program type {n:?} (use a kernel name such as \"xdp\", \"socket_filter\", \"sched_cls\", \"kprobe\", or \"raw\")"
            ))
        })
    })
    .transpose()
}

#[pymethods]
impl PyProgram {
    #[new]
    #[pyo3(signature = (code, *, max_len = program::DEFAULT_MAX_LEN, prog_type = None, maps = None))]
    fn new(
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        max_len: usize,
        prog_type: Option<&str>,
        maps: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let bytes = buffer_bytes(code)?;
        let meta = ProgramMeta {
            prog_type: parse_prog_type(prog_type)?,
            maps: extract_maps(maps)?,
            ..ProgramMeta::default()
        };
        guard(py, || {
            let p = program::Program::from_bytes_with_limit(&bytes, max_len)
                .map_err(|e| program_error(py, &e))?;
            Ok(PyProgram::with_meta(p, meta))
        })
    }

    /// Assembles `text` and checks the result. `prog_type` makes it run as
    /// that kind of kernel program (its context, its helpers); `maps` are
    /// what `lddw map_fd N` / `map_idx N` refer to.
    #[staticmethod]
    #[pyo3(signature = (text, *, max_len = program::DEFAULT_MAX_LEN, prog_type = None, maps = None))]
    fn from_asm(
        py: Python<'_>,
        text: &str,
        max_len: usize,
        prog_type: Option<&str>,
        maps: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let meta = ProgramMeta {
            prog_type: parse_prog_type(prog_type)?,
            maps: extract_maps(maps)?,
            ..ProgramMeta::default()
        };
        guard(py, || {
            let insns = asm::assemble(text).map_err(|e| assembler_error(py, &e))?;
            let p =
                program::Program::from_insns(insns, max_len).map_err(|e| program_error(py, &e))?;
            Ok(PyProgram::with_meta(p, meta))
        })
    }

    /// One program of the object file at `path`: the only one, the only
    /// one in `section`, or the function `name`. Its maps are created with
    /// it (use `ebpfvm.Object` to reach them from Python).
    #[staticmethod]
    #[pyo3(signature = (path, section = None, name = None, *, prog_type = None))]
    fn from_elf<'py>(
        py: Python<'py>,
        path: PathBuf,
        section: Option<&str>,
        name: Option<&str>,
        prog_type: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let obj = py
            .import("ebpfvm")?
            .getattr("Object")?
            .call_method1("open", (path,))?;
        let p = obj.call_method1("program", (name, section))?;
        let prog = p.getattr("program")?;
        match prog_type {
            Some(t) => prog.call_method1("with_type", (t,)),
            None => Ok(prog),
        }
    }

    /// Proves the program safe for its type (or `prog_type`), as the
    /// kernel's verifier does, and returns statistics (`insns_processed`,
    /// `states_total`, `peak_states`, `max_states_per_insn`, `time` in
    /// seconds, and `log` at `log_level` 1 or 2); raises `VerifierError`
    /// (`.pc`, `.message`, `.log`) when it cannot. Raw programs (no type)
    /// are verified for inputs of `input_size` to `max_input_size` bytes.
    #[pyo3(signature = (log_level = 0, *, prog_type = None, input_size = 0, max_input_size = u32::MAX, max_insns = None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        log_level: u32,
        prog_type: Option<&str>,
        input_size: u32,
        max_input_size: u32,
        max_insns: Option<u64>,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let t = match parse_prog_type(prog_type)?.or(self.meta.prog_type) {
            Some(t) => t,
            None => self.untyped_as_raw()?,
        };
        let v = self.run_verifier(
            py,
            t,
            log_level,
            (input_size, max_input_size),
            max_insns,
            &|_| None,
        )?;
        let d = verify_stats(py, &v.stats)?;
        d.set_item("log", v.log)?;
        Ok(d)
    }

    /// The maps the program is bound to (index = `map_idx`).
    #[getter]
    fn maps(&self) -> Vec<maps::PyMap> {
        self.meta
            .maps
            .iter()
            .cloned()
            .map(maps::PyMap::new)
            .collect()
    }

    /// The C function name (programs from objects), else "".
    #[getter]
    fn name(&self) -> &str {
        &self.meta.name
    }

    /// The ELF section the program came from, if any.
    #[getter]
    fn section(&self) -> Option<&str> {
        self.meta.section.as_deref()
    }

    /// The program type ("xdp", "socket_filter", ...), or None when unknown.
    #[getter]
    fn prog_type(&self) -> Option<&'static str> {
        self.meta.prog_type.map(|t| t.name())
    }

    /// The same program, to be run as `prog_type`.
    fn with_type(&self, prog_type: &str) -> PyResult<Self> {
        let mut meta = self.meta.clone();
        meta.prog_type = parse_prog_type(Some(prog_type))?;
        Ok(PyProgram {
            inner: self.inner.clone(),
            meta,
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
    /// `ebpfvm.Program.load`. `verify` not given means verified, unless
    /// `unwind_helper` is given: that uBPF convention is for checked mode.
    #[pyo3(signature = (engine = "auto", verify = None, helpers = None, unwind_helper = None, max_instructions = None, input_size = None, max_input_size = None, jit_tier = "tiered"))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        &self,
        py: Python<'_>,
        engine: &str,
        verify: Option<bool>,
        helpers: Option<&Bound<'_, PyAny>>,
        unwind_helper: Option<u32>,
        max_instructions: Option<u64>,
        input_size: Option<u32>,
        max_input_size: Option<u32>,
        jit_tier: &str,
    ) -> PyResult<exec::PyExecutable> {
        let Some(kind) = ebpfvm_jit::engine::EngineKind::parse(engine) else {
            return Err(Error::new_err(format!(
                "unknown engine {engine:?}: use \"interpreter\", \"jit\" or \"auto\""
            )));
        };
        let Some(tier) = ebpfvm_jit::JitTier::parse(jit_tier) else {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown jit_tier {jit_tier:?}: use \"tiered\", \"baseline\" or \"optimized\""
            )));
        };
        if max_instructions == Some(0) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "max_instructions must be positive",
            ));
        }
        let (registry, keepalive) = helpers::build_registry(py, helpers)?;
        let max_instructions = max_instructions.unwrap_or(interp::DEFAULT_MAX_INSTRUCTIONS);
        let input = (input_size.unwrap_or(0), max_input_size.unwrap_or(u32::MAX));
        let verify = match (verify, unwind_helper) {
            (Some(true), Some(_)) => {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "unwind_helper is a uBPF convention for unverified programs; load with verify=False",
                ));
            }
            (Some(verify), _) => verify,
            (None, unwind) => unwind.is_none(),
        };
        let mut probe_loads = Vec::new();
        let mut stack_written_before_read = false;
        if verify {
            let t = match self.meta.prog_type {
                Some(t) => t,
                None => self.untyped_as_raw()?,
            };
            self.check_custom_helpers(py, t, &registry)?;
            let hint = |e: &verifier::VerifyError| Some(self.load_hint(e, &registry));
            let verified = self.run_verifier(py, t, 0, input, None, &hint)?;
            probe_loads = verified.probe_loads();
            stack_written_before_read = !verified.imprecise_stack_writes;
        } else if input_size.is_some() || max_input_size.is_some() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "input_size and max_input_size are what the verifier proves raw programs against; \
                 they have no use with verify=False (or unwind_helper)",
            ));
        }
        if self.meta.prog_type.is_none() && self.meta.maps.is_empty() {
            let opts = interp::LoadOptions {
                helpers: registry,
                unwind_helper,
                max_instructions,
                verified: verify,
                probe_loads,
                stack_written_before_read,
                ..interp::LoadOptions::default()
            };
            return guard(py, || {
                let exe = ebpfvm_jit::engine::Engine::load_with_tier(
                    kind,
                    tier,
                    self.inner.clone(),
                    opts,
                )
                .map_err(|e| program_error(py, &e))?;
                Ok(exec::PyExecutable::new(exe, keepalive).verified_for(verify, input))
            });
        }
        // A kernel-style program: its context, maps and kernel helpers
        // (helpers given here replace kernel ones with the same id).
        let prog_type = match self.meta.prog_type {
            Some(t) => t,
            None => self.untyped_as_raw()?,
        };
        let maps = self.meta.maps.clone();
        guard(py, || {
            let prepared = runtime::prepare(&self.inner, prog_type, &maps)
                .map_err(|e| program_error(py, &e))?;
            let env = runtime::Environment::new(maps.clone());
            let mut all = runtime::helpers::kernel_helpers(&env);
            all.extend(&registry);
            let opts = interp::LoadOptions {
                helpers: all,
                unwind_helper,
                max_instructions,
                // Only helpers that change packet data move the packet.
                input_may_move: self.inner.helper_calls().iter().any(|&(_, id)| {
                    ebpfvm_core::kernel::helper_protos::proto(id)
                        .is_some_and(|p| p.changes_packet_data)
                }),
                verified: verify,
                probe_loads,
                stack_written_before_read,
            };
            let engine =
                ebpfvm_jit::engine::Engine::load_with_tier(kind, tier, Arc::new(prepared), opts)
                    .map_err(|e| program_error(py, &e))?;
            Ok(exec::PyExecutable::typed(
                engine,
                keepalive,
                self.meta.name.clone(),
                prog_type,
                runtime::map_regions(&maps),
                env,
            )
            .verified_for(verify, input))
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
    object::register(m)?;
    m.add("MAX_PROGRAM_LEN", program::DEFAULT_MAX_LEN)?;
    m.add("DEFAULT_MAX_INSTRUCTIONS", interp::DEFAULT_MAX_INSTRUCTIONS)?;
    m.add("STACK_FRAME_SIZE", ebpfvm_core::isa::STACK_FRAME_SIZE)?;
    m.add("MAX_CALL_FRAMES", ebpfvm_core::isa::MAX_CALL_FRAMES)?;
    Ok(())
}
