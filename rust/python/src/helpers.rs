//! Python-supplied helpers: plain callables, memory-aware callables
//! (`ebpfvm.Helper(func, memory=True)`), and C function pointers
//! (`ebpfvm.NativeHelper`), turned into core helper registrations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ebpfvm_core::helpers::{Helper, HelperError, HelperMemory, HelperRegistry, NativeFn};

/// A Python callable run as a helper, with the GIL taken for the call.
struct PyHelper {
    func: Py<PyAny>,
    memory: bool,
}

impl Helper for PyHelper {
    fn call(&self, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
        Python::attach(|py| {
            let result = if self.memory {
                let view = VMMemory {
                    mem: AtomicUsize::new(mem as *mut HelperMemory<'_> as *mut () as usize),
                };
                let view = Py::new(py, view).map_err(abort)?;
                let r = self
                    .func
                    .call1(py, (view.clone_ref(py), a[0], a[1], a[2], a[3], a[4]));
                // The memory is only valid during the call, whatever the
                // helper did with the view.
                view.get().mem.store(0, Ordering::SeqCst);
                r
            } else {
                self.func.call1(py, (a[0], a[1], a[2], a[3], a[4]))
            };
            let value = result.map_err(abort)?;
            to_u64(value.bind(py)).map_err(abort)
        })
    }
}

fn abort(e: PyErr) -> HelperError {
    HelperError::Abort(Box::new(e))
}

/// A helper's return value as the 64-bit r0: ints wrap modulo 2**64.
fn to_u64(v: &Bound<'_, PyAny>) -> PyResult<u64> {
    if !v.is_instance_of::<pyo3::types::PyInt>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "a helper must return an int, not {}",
            v.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    }
    if let Ok(x) = v.extract::<u64>() {
        return Ok(x);
    }
    if let Ok(x) = v.extract::<i64>() {
        return Ok(x as u64);
    }
    v.call_method1("__and__", (u64::MAX,))?.extract::<u64>()
}

/// The running program's memory, handed to helpers registered with
/// `ebpfvm.Helper(func, memory=True)`. Valid only during that call.
#[pyclass(frozen, module = "ebpfvm", name = "VMMemory")]
pub struct VMMemory {
    /// `*mut HelperMemory` while the call lasts, 0 afterwards.
    mem: AtomicUsize,
}

impl VMMemory {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut HelperMemory<'_>) -> Result<T, HelperError>,
    ) -> PyResult<T> {
        let p = self.mem.load(Ordering::SeqCst);
        if p == 0 {
            return Err(Python::attach(|py| {
                crate::errors::helper_memory_error(
                    py,
                    "this VMMemory is no longer valid: it can only be used during the helper call it was passed to".into(),
                    ebpfvm_core::error::FaultKind::HelperFailed,
                )
            }));
        }
        // SAFETY: p points at the HelperMemory of the helper call in
        // progress on this thread (the GIL is held and the VM thread is
        // blocked in the helper); it is cleared before that call returns.
        let mem = unsafe { &mut *(p as *mut HelperMemory<'_>) };
        f(mem).map_err(|e| {
            let msg = match e {
                HelperError::Fault(msg) => msg,
                HelperError::Abort(_) => "memory access aborted".into(),
                HelperError::Exec(e) => e.reason,
            };
            Python::attach(|py| {
                crate::errors::helper_memory_error(
                    py,
                    msg,
                    ebpfvm_core::error::FaultKind::OutOfBounds,
                )
            })
        })
    }
}

#[pymethods]
impl VMMemory {
    /// `size` bytes at VM address `addr`.
    fn read<'py>(&self, py: Python<'py>, addr: u64, size: u64) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.with(|m| m.slice(addr, size).map(|s| s.to_vec()))?;
        Ok(PyBytes::new(py, &v))
    }

    /// Writes `data` at VM address `addr`.
    fn write(&self, addr: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = crate::buffer_bytes(data)?;
        self.with(|m| {
            m.slice_mut(addr, bytes.len() as u64)?
                .copy_from_slice(&bytes);
            Ok(())
        })
    }

    /// The NUL-terminated string at `addr` (without the NUL), at most `max`
    /// bytes.
    #[pyo3(signature = (addr, max = 4096))]
    fn read_cstr<'py>(
        &self,
        py: Python<'py>,
        addr: u64,
        max: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.with(|m| m.cstr(addr, max).map(|s| s.to_vec()))?;
        Ok(PyBytes::new(py, &v))
    }

    #[getter]
    fn valid(&self) -> bool {
        self.mem.load(Ordering::SeqCst) != 0
    }
}

/// Builds the helper registry from `{id: helper}`; returns the Python
/// objects that must live as long as the executable.
pub fn build_registry(
    py: Python<'_>,
    helpers: Option<&Bound<'_, PyAny>>,
) -> PyResult<(HelperRegistry, Vec<Py<PyAny>>)> {
    let mut reg = HelperRegistry::new();
    let mut keepalive = Vec::new();
    let Some(helpers) = helpers else {
        return Ok((reg, keepalive));
    };
    let items = helpers.call_method0("items").map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err("helpers must be a mapping of helper id to helper")
    })?;
    for pair in items.try_iter()? {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
        let id: u32 = k.extract().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "helper ids must be non-negative ints, got {k:?}"
            ))
        })?;
        let bad = |e: String| pyo3::exceptions::PyValueError::new_err(e);
        if let Ok(addr) = v.getattr("__ebpfvm_native_address__") {
            let addr: usize = addr.extract()?;
            if addr == 0 {
                return Err(bad(format!("helper {id}: NULL function pointer")));
            }
            // SAFETY: NativeHelper's contract: the address is a C function
            // taking five u64 and returning u64; `v` keeps it alive.
            let f: NativeFn = unsafe { std::mem::transmute::<usize, NativeFn>(addr) };
            unsafe { reg.register_native(id, f) }.map_err(bad)?;
        } else if let Ok(func) = v.getattr("__ebpfvm_memory_helper__") {
            if !func.is_callable() {
                return Err(bad(format!("helper {id}: Helper.func is not callable")));
            }
            reg.register(
                id,
                Arc::new(PyHelper {
                    func: func.unbind(),
                    memory: true,
                }),
            )
            .map_err(bad)?;
        } else if v.is_callable() {
            reg.register(
                id,
                Arc::new(PyHelper {
                    func: v.clone().unbind(),
                    memory: false,
                }),
            )
            .map_err(bad)?;
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "helper {id} must be callable, an ebpfvm.Helper or an ebpfvm.NativeHelper"
            )));
        }
        keepalive.push(v.unbind());
    }
    let _ = py;
    Ok((reg, keepalive))
}
