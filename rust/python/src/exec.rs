//! `ebpfvm.Executable`: running a loaded program on Python memory.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use std::sync::Arc;

use ebpfvm_core::error::ExecError;
use ebpfvm_core::interp::{Region, RunOutcome, RunSetup, Runner};
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::runtime::run::{self, Input, RunResult};
use ebpfvm_core::runtime::{self, context, Environment, LoadedProgram};
use ebpfvm_jit::engine::{Engine, EngineKind};

use crate::errors::{exec_error, guard};

/// The input sizes a verified raw program was proven for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct InputBounds {
    pub min: usize,
    pub max: usize,
}

impl InputBounds {
    pub const ANY: InputBounds = InputBounds {
        min: 0,
        max: usize::MAX,
    };

    /// Why an input of `len` bytes may not run, if it may not.
    pub fn refusal(self, len: usize) -> Option<String> {
        if len < self.min {
            Some(format!(
                "the input is {len} bytes, shorter than the {} bytes the program was verified for (input_size)",
                self.min
            ))
        } else if len > self.max {
            Some(format!(
                "the input is {len} bytes, longer than the {} bytes the program was verified for (max_input_size)",
                self.max
            ))
        } else {
            None
        }
    }
}

/// A loaded program, ready to run. Safe to share between threads.
#[pyclass(frozen, module = "ebpfvm", name = "Executable")]
pub struct PyExecutable {
    pub(crate) inner: Arc<Engine>,
    /// Set for programs loaded with a program type or maps: how to run
    /// them as the kernel would (context, packet, tail calls).
    loaded: Option<Arc<LoadedProgram>>,
    /// Helper objects (and what C pointers point into) kept alive.
    _keepalive: Vec<Py<PyAny>>,
    /// Verified by `load(verify=True)`: compiled without bounds checks.
    verified: bool,
    /// Raw verified programs were proven safe for inputs of at least this
    /// many bytes; shorter inputs are refused rather than run unchecked.
    input_bounds: InputBounds,
    /// Whether a run *can* take long: only programs with loops, calls or
    /// many instructions can; straight-line code finishes in nanoseconds.
    may_run_long: bool,
    /// Instructions executed by the latest run (u64::MAX before the first):
    /// releasing and re-taking the GIL costs more than a short run, so it is
    /// released only while runs of this program are long.
    last_instructions: AtomicU64,
    /// Whether the program calls helpers (which may run Python code).
    calls_helpers: bool,
}

/// Runs longer than this many instructions release the GIL (a few
/// microseconds in the interpreter).
const GIL_RELEASE_INSTRUCTIONS: u64 = 2_000;

impl PyExecutable {
    pub fn new(inner: Engine, keepalive: Vec<Py<PyAny>>) -> Self {
        let prog = inner.program();
        let calls_helpers = prog.calls_helpers();
        let may_run_long = prog.len() > 256
            || prog.has_back_edges()
            || calls_helpers
            || prog.functions().len() > 1;
        PyExecutable {
            inner: Arc::new(inner),
            loaded: None,
            verified: false,
            input_bounds: InputBounds::ANY,
            _keepalive: keepalive,
            may_run_long,
            last_instructions: AtomicU64::new(u64::MAX),
            calls_helpers,
        }
    }

    /// A program loaded to run as `prog_type` with its maps' `regions`.
    pub fn typed(
        inner: Engine,
        keepalive: Vec<Py<PyAny>>,
        name: String,
        prog_type: ProgType,
        regions: Vec<Region>,
        env: Arc<Environment>,
    ) -> Self {
        let mut exe = PyExecutable::new(inner, keepalive);
        exe.loaded = Some(Arc::new(LoadedProgram {
            id: runtime::next_program_id(),
            name,
            prog_type,
            runner: exe.inner.clone(),
            regions,
            env,
        }));
        exe
    }

    pub(crate) fn loaded(&self) -> Option<&Arc<LoadedProgram>> {
        self.loaded.as_ref()
    }

    /// Marks the executable as verified (for raw programs: for inputs of
    /// `input.0` to `input.1` bytes).
    pub fn verified_for(mut self, verified: bool, input: (u32, u32)) -> Self {
        self.verified = verified;
        let raw = self
            .loaded
            .as_ref()
            .is_none_or(|l| l.prog_type == ProgType::Raw);
        if verified && raw {
            self.input_bounds = InputBounds {
                min: input.0 as usize,
                max: input.1 as usize,
            };
        }
        self
    }

    pub(crate) fn input_bounds(&self) -> InputBounds {
        self.input_bounds
    }

    fn check_input(&self, len: usize) -> PyResult<()> {
        match self.input_bounds.refusal(len) {
            Some(why) => Err(crate::errors::ExecutionError::new_err(why)),
            None => Ok(()),
        }
    }

    /// Runs a typed program through the run-time: packet programs on a
    /// copy of the packet, tracing programs on a copy of their context,
    /// raw programs on the buffer itself.
    fn run_typed(
        &self,
        py: Python<'_>,
        loaded: &Arc<LoadedProgram>,
        mem: Option<&Bound<'_, PyAny>>,
        ctx: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let t = loaded.prog_type;
        let ctx_bytes = match ctx.filter(|c| !c.is_none()) {
            Some(c) => match c.cast::<pyo3::types::PyDict>() {
                Ok(d) => Some(context_from_dict(t, d)?),
                Err(_) => Some(crate::buffer_bytes(c)?),
            },
            None => None,
        };
        if t == ProgType::Raw {
            if ctx_bytes.is_some() {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "raw programs take no context: pass the memory only",
                ));
            }
            let mut view = None;
            let mut owned = Vec::new();
            let (ptr, len) = match mem.filter(|m| !m.is_none()) {
                // A slice may not be built on a null pointer, even empty.
                None => (std::ptr::NonNull::<u8>::dangling().as_ptr(), 0),
                Some(obj) => {
                    let v = BufferView::get(obj)?;
                    if v.len == 0 {
                        (std::ptr::NonNull::<u8>::dangling().as_ptr(), 0)
                    } else if v.readonly {
                        // SAFETY: readable while the view is held.
                        owned = unsafe { std::slice::from_raw_parts(v.ptr, v.len) }.to_vec();
                        (owned.as_mut_ptr(), owned.len())
                    } else {
                        let p = (v.ptr as *mut u8, v.len);
                        view = Some(v);
                        p
                    }
                }
            };
            self.check_input(len)?;
            let (ptr, len) = (ptr as usize, len);
            let r = self.finish_typed(
                py,
                move |l| {
                    // SAFETY: a writable export held until after the run, or
                    // our own copy.
                    let buf = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) };
                    run::run(l, Input::Memory(buf))
                },
                loaded,
            );
            drop(view);
            drop(owned);
            return Ok(r?.retval.into_pyobject(py)?.into_any().unbind());
        }
        let data = match mem.filter(|m| !m.is_none()) {
            Some(m) => crate::buffer_bytes(m)?,
            None => Vec::new(),
        };
        let result = if context::layout(t).is_some() {
            self.finish_typed(
                py,
                |l| {
                    run::run(
                        l,
                        Input::Packet {
                            packet: &data,
                            ctx: ctx_bytes.as_deref(),
                        },
                    )
                },
                loaded,
            )?
        } else {
            // Tracing and other context-only types: the context is the
            // argument (`ctx=`, or the first argument for convenience).
            let c = ctx_bytes.unwrap_or(data);
            self.finish_typed(py, |l| run::run(l, Input::Context(&c)), loaded)?
        };
        Ok(Py::new(
            py,
            crate::object::PyRunResult {
                result,
                prog_type: t,
            },
        )?
        .into_any())
    }

    fn finish_typed(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Arc<LoadedProgram>) -> Result<RunResult, ExecError> + Send,
        loaded: &Arc<LoadedProgram>,
    ) -> PyResult<RunResult> {
        let release = self.releases_gil();
        let result = guard(py, || {
            Ok(if release {
                py.detach(|| f(loaded))
            } else {
                f(loaded)
            })
        })?;
        if let Ok(o) = &result {
            self.last_instructions
                .store(o.instructions, Ordering::Relaxed);
        }
        result.map_err(|e| exec_error(py, e))
    }

    fn execute(&self, py: Python<'_>, mem: Option<&Bound<'_, PyAny>>) -> PyResult<RunOutcome> {
        if self.input_bounds != InputBounds::ANY {
            let len = match mem.filter(|m| !m.is_none()) {
                None => 0,
                Some(m) => BufferView::get(m)?.len,
            };
            self.check_input(len)?;
        }
        let Some(obj) = mem.filter(|m| !m.is_none()) else {
            return self.finish(py, |exe| unsafe {
                exe.run_raw(std::ptr::null_mut(), 0, true)
            });
        };
        // Immutable bytes: run on a private copy, so the program may write.
        if let Ok(b) = obj.cast::<PyBytes>() {
            let src = b.as_bytes();
            if src.len() <= 1024 {
                let mut buf = std::mem::MaybeUninit::<[u8; 1024]>::uninit();
                // SAFETY: the first src.len() bytes are initialised by the
                // copy, and only they are used.
                let buf = unsafe {
                    let p = buf.as_mut_ptr() as *mut u8;
                    std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
                    std::slice::from_raw_parts_mut(p, src.len())
                };
                return self.run_slice(py, buf);
            }
            let mut v = src.to_vec();
            return self.run_slice(py, &mut v);
        }
        // A bytearray during a short run without helper calls: no Python
        // code can run (the GIL is held throughout), so nothing can resize
        // it and its storage can be used without taking a buffer export.
        if !self.calls_helpers && !self.releases_gil() {
            if let Ok(ba) = obj.cast_exact::<pyo3::types::PyByteArray>() {
                // SAFETY: see above; the storage stays put while the GIL is
                // held and nothing else uses it during the run.
                let buf = unsafe { std::slice::from_raw_parts_mut(ba.data(), ba.len()) };
                return self.run_slice(py, buf);
            }
        }
        let view = BufferView::get(obj)?;
        if view.readonly {
            // SAFETY: the exporter guarantees buf..buf+len is readable
            // while the view is held.
            let mut copy = unsafe { std::slice::from_raw_parts(view.ptr, view.len) }.to_vec();
            return self.run_slice(py, &mut copy);
        }
        let (ptr, len) = (view.ptr as usize, view.len);
        // SAFETY: a writable, contiguous export, held (so not resizable)
        // until `view` drops after the run.
        let r = self.finish(py, |exe| unsafe { exe.run_raw(ptr as *mut u8, len, true) });
        drop(view);
        r
    }

    /// Whether the next run releases the GIL.
    fn releases_gil(&self) -> bool {
        self.may_run_long
            && self.last_instructions.load(Ordering::Relaxed) > GIL_RELEASE_INSTRUCTIONS
    }

    fn run_slice(&self, py: Python<'_>, buf: &mut [u8]) -> PyResult<RunOutcome> {
        let (ptr, len) = (buf.as_mut_ptr() as usize, buf.len());
        // SAFETY: `buf` outlives the run and nothing else touches it.
        self.finish(py, |exe| unsafe {
            exe.run_raw(
                if len == 0 {
                    std::ptr::null_mut()
                } else {
                    ptr as *mut u8
                },
                len,
                true,
            )
        })
    }

    pub(crate) fn finish(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Engine) -> Result<RunOutcome, ExecError> + Send,
    ) -> PyResult<RunOutcome> {
        let exe = &self.inner;
        let release = self.releases_gil();
        let result = guard(py, || {
            Ok(if release {
                py.detach(|| f(exe))
            } else {
                f(exe)
            })
        })?;
        if let Ok(o) = &result {
            self.last_instructions
                .store(o.instructions, Ordering::Relaxed);
        }
        result.map_err(|e| exec_error(py, e))
    }
}

#[pymethods]
impl PyExecutable {
    /// Runs the program with `mem` as its input buffer and returns r0.
    /// Programs of a packet type (xdp, socket_filter, sched_cls, ...) run on
    /// a copy of the packet `mem` and return a `RunResult` (return value,
    /// packet and context after the run); `ctx` gives the initial context
    /// structure's bytes. Tracing programs get `ctx` (or `mem`) as their
    /// context.
    #[pyo3(signature = (mem = None, ctx = None))]
    fn run(
        &self,
        py: Python<'_>,
        mem: Option<&Bound<'_, PyAny>>,
        ctx: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if let Some(l) = &self.loaded {
            return self.run_typed(py, l, mem, ctx);
        }
        if ctx.is_some_and(|c| !c.is_none()) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "ctx= needs a program loaded with a program type",
            ));
        }
        Ok(self
            .execute(py, mem)?
            .r0
            .into_pyobject(py)?
            .into_any()
            .unbind())
    }

    /// The program type this executable runs as, or None for plain
    /// programs (r1 = memory, r2 = its length).
    #[getter]
    fn prog_type(&self) -> Option<&'static str> {
        self.loaded.as_ref().map(|l| l.prog_type.name())
    }

    /// Program id (programs loaded with a type), as a program array reports.
    #[getter]
    fn id(&self) -> Option<u32> {
        self.loaded.as_ref().map(|l| l.id)
    }

    /// Like `run`, also returning the number of instructions executed.
    #[pyo3(signature = (mem = None))]
    fn run_counted(&self, py: Python<'_>, mem: Option<&Bound<'_, PyAny>>) -> PyResult<(u64, u64)> {
        if let Some(l) = &self.loaded {
            if l.prog_type != ProgType::Raw {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "run_counted is for raw programs; RunResult.instructions has the count for typed ones",
                ));
            }
            let data = match mem.filter(|m| !m.is_none()) {
                Some(m) => crate::buffer_bytes(m)?,
                None => Vec::new(),
            };
            let mut data = data;
            let r = self.finish_typed(py, |l| run::run(l, Input::Memory(&mut data)), l)?;
            return Ok((r.retval, r.instructions));
        }
        let o = self.execute(py, mem)?;
        Ok((o.r0, o.instructions))
    }

    /// Runs the program once per record and returns a NumPy `uint64` array
    /// of r0 values. `records` is a sequence of buffers, or one C-contiguous
    /// array whose first dimension indexes the records (a 2-D `uint8` array
    /// with one record per row, or a NumPy record array). Writable records
    /// are modified in place. The GIL is released; `threads` spreads the
    /// records over that many threads.
    #[pyo3(signature = (records, *, threads = None))]
    fn run_batch<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::batch::run_batch(self, py, records, threads)
    }

    /// Runs the program `number` times inside Rust on a private copy of
    /// `mem` and returns the total time in seconds: the cost of the program
    /// itself, without the Python call around it (a benchmarking aid).
    #[pyo3(signature = (mem = None, number = 1000))]
    fn timeit(&self, py: Python<'_>, mem: Option<&Bound<'_, PyAny>>, number: u64) -> PyResult<f64> {
        let mut data = match mem.filter(|m| !m.is_none()) {
            Some(m) => crate::buffer_bytes(m)?,
            None => Vec::new(),
        };
        self.check_input(data.len())?;
        let engine = &self.inner;
        let loaded = self.loaded.clone();
        let result = guard(py, || {
            Ok(py.detach(|| {
                let start = std::time::Instant::now();
                if let Some(l) = &loaded {
                    for _ in 0..number {
                        run_loaded_record(l, &mut data)?;
                    }
                    return Ok(start.elapsed().as_secs_f64());
                }
                let mut stack = vec![0u64; ebpfvm_core::interp::STACK_BYTES / 8];
                let sp = stack.as_mut_ptr() as *mut u8;
                let (ptr, len) = if data.is_empty() {
                    (std::ptr::null_mut(), 0)
                } else {
                    (data.as_mut_ptr(), data.len())
                };
                let setup = RunSetup::memory(ptr as u64, len as u64, true);
                let start = std::time::Instant::now();
                for _ in 0..number {
                    // SAFETY: `data` and `stack` outlive the loop.
                    unsafe { engine.run_setup(&setup, sp) }?;
                }
                Ok(start.elapsed().as_secs_f64())
            }))
        })?;
        result.map_err(|e| exec_error(py, e))
    }

    /// "interpreter", "jit" or "auto".
    #[getter]
    fn engine(&self) -> &'static str {
        match self.inner.kind() {
            EngineKind::Interpreter => "interpreter",
            EngineKind::Jit => "jit",
            EngineKind::Auto => "auto",
        }
    }

    /// Whether native code runs the program (always for "jit"; for "auto",
    /// once it has become hot).
    #[getter]
    fn compiled(&self) -> bool {
        self.inner.jit().is_some()
    }

    /// Bytes of machine code, when compiled: of the tier running now (see
    /// `jit_tier`).
    #[getter]
    fn code_size(&self) -> Option<usize> {
        self.inner.jit().map(|j| j.code_size())
    }

    /// Seconds compilation took, when compiled: by the tier running now
    /// (see `jit_tier`; a tiered load returns after the baseline's).
    #[getter]
    fn compile_time(&self) -> Option<f64> {
        self.inner.jit().map(|j| j.compile_time().as_secs_f64())
    }

    /// Which compiler's code runs the program now: "baseline" (emitted at
    /// once) or "optimized" (Cranelift's); None while it is interpreted.
    #[getter]
    fn jit_tier(&self) -> Option<&'static str> {
        self.inner.jit().map(|j| j.tier().name())
    }

    /// Waits (without the GIL) until Cranelift's optimized code runs the
    /// program, at most `timeout` seconds (None: as long as it takes).
    /// True once it does; False if it will not (not compiled yet, loaded
    /// with jit_tier="baseline", or the optimizing compile failed) or the
    /// time ran out.
    #[pyo3(signature = (timeout = None))]
    fn wait_optimized(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = match timeout {
            None => None,
            Some(t) if t.is_finite() && t >= 0.0 => Some(std::time::Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "timeout must be a non-negative number of seconds, not {t}"
                )))
            }
        };
        let Some(tiered) = self.inner.tiered() else {
            return Ok(false);
        };
        Ok(py.detach(|| tiered.wait_optimized(timeout)))
    }

    /// Why the optimizing compile failed in the background (the baseline
    /// code keeps running the program).
    #[getter]
    fn optimize_error(&self) -> Option<String> {
        self.inner
            .tiered()
            .and_then(|t| t.optimize_error())
            .map(|e| e.to_string())
    }

    /// Why "auto" could not compile the program (it keeps interpreting).
    #[getter]
    fn compile_error(&self) -> Option<String> {
        self.inner
            .auto()
            .and_then(|a| a.compile_error())
            .map(|e| e.to_string())
    }

    /// Whether the verifier proved the program safe at load (the JIT then
    /// runs it without bounds checks).
    #[getter]
    fn verified(&self) -> bool {
        self.verified
    }

    fn __repr__(&self) -> String {
        format!(
            "<ebpfvm.Executable: {}, {}, {} instructions>",
            self.engine(),
            if self.verified { "verified" } else { "checked" },
            self.inner.program().len()
        )
    }
}

/// One record of `run_batch` for a program run as its type: r0 and the
/// instruction count.
pub(crate) fn run_loaded_record(
    l: &Arc<LoadedProgram>,
    rec: &mut [u8],
) -> Result<RunOutcome, ExecError> {
    let t = l.prog_type;
    let r = if t == ProgType::Raw {
        run::run(l, Input::Memory(rec))?
    } else if context::layout(t).is_some() {
        run::run(
            l,
            Input::Packet {
                packet: rec,
                ctx: None,
            },
        )?
    } else {
        run::run(l, Input::Context(rec))?
    };
    Ok(RunOutcome {
        r0: r.retval,
        instructions: r.instructions,
    })
}

/// The public context structure of a `t` program with the named fields of
/// `d` set (`{"ingress_ifindex": 3}`, `{"mark": 1, "cb": [1, 2]}`).
fn context_from_dict(t: ProgType, d: &Bound<'_, pyo3::types::PyDict>) -> PyResult<Vec<u8>> {
    let desc = ebpfvm_core::kernel::contexts::context_for(t).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "{t} programs have no named context fields; pass the context as bytes"
        ))
    })?;
    let mut out = vec![0u8; desc.size as usize];
    for (k, v) in d.iter() {
        let name: String = k.extract()?;
        let values: Vec<(String, u64)> = match v.extract::<Vec<u64>>() {
            Ok(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, x)| (format!("{name}[{i}]"), x))
                .collect(),
            Err(_) => vec![(
                name.clone(),
                v.extract::<u64>().map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err(format!(
                        "context field {name:?} takes an int (or a list of ints for arrays)"
                    ))
                })?,
            )],
        };
        for (field, value) in values {
            let f = desc
                .fields
                .iter()
                .find(|f| f.name == field)
                .ok_or_else(|| {
                    let names: Vec<&str> = desc.fields.iter().map(|f| f.name).collect();
                    pyo3::exceptions::PyKeyError::new_err(format!(
                        "{} has no field {field:?} (fields: {})",
                        desc.c_type,
                        names.join(", ")
                    ))
                })?;
            let (o, n) = (f.offset as usize, (f.size as usize).min(8));
            if n < 8 && value >> (8 * n) != 0 {
                return Err(pyo3::exceptions::PyOverflowError::new_err(format!(
                    "{value} does not fit the {n}-byte field {field}"
                )));
            }
            out[o..o + n].copy_from_slice(&value.to_le_bytes()[..n]);
        }
    }
    Ok(out)
}

/// A held buffer export (released on drop, with the GIL held).
pub(crate) struct BufferView {
    pub(crate) view: ffi::Py_buffer,
    pub(crate) ptr: *const u8,
    pub(crate) len: usize,
    pub(crate) readonly: bool,
}

impl BufferView {
    pub(crate) fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        // PyBUF_SIMPLE: contiguous bytes and no shape, so the struct holds no
        // pointers into itself and may be moved.
        let mut view: ffi::Py_buffer = unsafe { std::mem::zeroed() };
        // Ask for a writable contiguous view first, then a read-only one.
        let mut rc =
            unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut view, ffi::PyBUF_WRITABLE) };
        if rc != 0 {
            unsafe { ffi::PyErr_Clear() };
            rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut view, ffi::PyBUF_SIMPLE) };
        }
        if rc != 0 {
            let cause = PyErr::fetch(obj.py());
            let name = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            let err = pyo3::exceptions::PyTypeError::new_err(format!(
                "memory must be None, bytes or a contiguous buffer (bytearray, memoryview, numpy array...), got {name}"
            ));
            err.set_cause(obj.py(), Some(cause));
            return Err(err);
        }
        let ptr = view.buf as *const u8;
        let len = view.len.max(0) as usize;
        let readonly = view.readonly != 0;
        Ok(BufferView {
            view,
            ptr,
            len,
            readonly,
        })
    }
}

impl Drop for BufferView {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and
        // is released once; callers hold the GIL.
        unsafe { ffi::PyBuffer_Release(&mut self.view) };
    }
}
