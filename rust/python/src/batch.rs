//! `Executable.run_batch`: one program over many records, off the GIL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ebpfvm_core::error::ExecError;
use ebpfvm_core::interp::{Runner, STACK_BYTES};

use crate::errors::{exec_error, guard};
use crate::exec::{BufferView, PyExecutable};

/// One record: where it is, and whether the program may write it in place
/// (read-only records run on a per-thread copy).
#[derive(Clone, Copy)]
struct Record {
    ptr: usize,
    len: usize,
    writable: bool,
}

/// Records as raw memory, plus whatever keeps that memory alive.
struct Records {
    items: Vec<Record>,
    _views: Vec<BufferView>,
    _array: Option<ArrayView>,
    _bytes: Vec<Py<PyAny>>,
}

/// A held export of a whole array (boxed: with PyBUF_ND an exporter may
/// point `shape` into the struct itself).
struct ArrayView(Box<ffi::Py_buffer>);

impl Drop for ArrayView {
    fn drop(&mut self) {
        // SAFETY: filled by a successful PyObject_GetBuffer; the GIL is held.
        unsafe { ffi::PyBuffer_Release(&mut *self.0) };
    }
}

/// A whole-array view with its shape, for the array form of `records`.
fn array_records(obj: &Bound<'_, PyAny>) -> PyResult<Option<Records>> {
    // Lists, tuples and other sequences are not buffers.
    if obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<pyo3::types::PyByteArray>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "run_batch needs many records: a sequence of buffers or an array whose first \
             dimension indexes records, not one bytes object (use [data] for a single record)",
        ));
    }
    let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
    let flags_rw = ffi::PyBUF_WRITABLE | ffi::PyBUF_ND | ffi::PyBUF_C_CONTIGUOUS;
    let mut rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags_rw) };
    if rc != 0 {
        unsafe { ffi::PyErr_Clear() };
        rc = unsafe {
            ffi::PyObject_GetBuffer(
                obj.as_ptr(),
                &mut *view,
                ffi::PyBUF_ND | ffi::PyBUF_C_CONTIGUOUS,
            )
        };
    }
    if rc != 0 {
        unsafe { ffi::PyErr_Clear() };
        return Ok(None);
    }
    let ndim = view.ndim as usize;
    let shape: Vec<usize> = if view.shape.is_null() {
        vec![view.len as usize]
    } else {
        (0..ndim)
            .map(|i| unsafe { *view.shape.add(i) } as usize)
            .collect()
    };
    let itemsize = view.itemsize as usize;
    let ptr = view.buf as usize;
    let total = view.len as usize;
    let writable = view.readonly == 0;
    let holder = ArrayView(view);
    if ndim == 0 || (ndim == 1 && itemsize == 1) {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "run_batch needs many records: a 1-D byte buffer is a single record; pass a \
             sequence of buffers, a 2-D uint8 array (one record per row) or a record array",
        ));
    }
    let n = shape[0];
    let size = total.checked_div(n).unwrap_or(0);
    let items = (0..n)
        .map(|k| Record {
            ptr: ptr + k * size,
            len: size,
            writable,
        })
        .collect();
    Ok(Some(Records {
        items,
        _views: Vec::new(),
        _array: Some(holder),
        _bytes: Vec::new(),
    }))
}

fn sequence_records(obj: &Bound<'_, PyAny>) -> PyResult<Records> {
    let mut items = Vec::new();
    let mut views = Vec::new();
    let mut bytes = Vec::new();
    let iter = obj.try_iter().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(
            "records must be a sequence of buffers or a C-contiguous array",
        )
    })?;
    for item in iter {
        let item = item?;
        if let Ok(b) = item.cast::<PyBytes>() {
            let data = b.as_bytes();
            items.push(Record {
                ptr: data.as_ptr() as usize,
                len: data.len(),
                writable: false,
            });
            // Keeps the (immutable) bytes alive while their memory is used.
            bytes.push(item.unbind());
            continue;
        }
        let v = BufferView::get(&item)?;
        items.push(Record {
            ptr: v.ptr as usize,
            len: v.len,
            writable: !v.readonly,
        });
        views.push(v);
    }
    Ok(Records {
        items,
        _views: views,
        _array: None,
        _bytes: bytes,
    })
}

/// Records per thread below which `threads` is reduced.
const MIN_RECORDS_PER_THREAD: usize = 256;

/// An uninitialised `uint64` array of `n` elements, made through the NumPy
/// C API (a Python-level `numpy.empty` call costs several times more, which
/// small batches feel), and the address of its data.
fn new_u64_array(py: Python<'_>, n: usize) -> PyResult<(Bound<'_, PyAny>, usize)> {
    use numpy::{PyArray1, PyArrayMethods};
    // The C API needs NumPy imported: checked once, with a clear error
    // when it is missing (the C API would panic).
    static IMPORTED: pyo3::sync::PyOnceLock<()> = pyo3::sync::PyOnceLock::new();
    IMPORTED.get_or_try_init(py, || -> PyResult<()> {
        py.import("numpy").map(drop).map_err(|e| {
            let err = pyo3::exceptions::PyImportError::new_err(
                "run_batch returns a NumPy array: install numpy",
            );
            err.set_cause(py, Some(e));
            err
        })
    })?;
    // SAFETY: every element is written before the array is handed back
    // (a failed batch drops the array instead).
    let array = unsafe { PyArray1::<u64>::new(py, [n], false) };
    let data = array.data() as usize;
    Ok((array.into_any(), data))
}

pub fn run_batch<'py>(
    exe: &PyExecutable,
    py: Python<'py>,
    records: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let recs = match array_records(records)? {
        Some(r) => r,
        None => sequence_records(records)?,
    };
    let n = recs.items.len();
    let (out, out_ptr) = new_u64_array(py, n)?;
    // A thread is only worth starting for a few hundred records.
    let threads = threads
        .unwrap_or(1)
        .clamp(1, (n / MIN_RECORDS_PER_THREAD).max(1));
    let items = &recs.items;
    let engine = &exe.inner;
    let loaded = exe.loaded().cloned();
    let input_bounds = exe.input_bounds();
    // The lowest failing record so far: threads skip records above it but
    // finish those below, so the error reported is the first one.
    let first_fail = AtomicUsize::new(usize::MAX);
    let first_error: Mutex<Option<(usize, ExecError)>> = Mutex::new(None);

    let work = |range: std::ops::Range<usize>| {
        // Each run zeroes the frames it uses; nothing reads the rest.
        let mut stack = std::mem::MaybeUninit::<[u64; STACK_BYTES / 8]>::uninit();
        let sp = stack.as_mut_ptr() as *mut u8;
        let mut scratch: Vec<u8> = Vec::new();
        for k in range {
            if k > first_fail.load(Ordering::Relaxed) {
                return;
            }
            let r = items[k];
            if let Some(why) = input_bounds.refusal(r.len) {
                let e = ExecError::new(
                    0,
                    ebpfvm_core::error::FaultKind::OutOfBounds,
                    format!("record {k}: {why}"),
                );
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_none_or(|(j, _)| k < *j) {
                    *slot = Some((k, e));
                }
                first_fail.fetch_min(k, Ordering::Relaxed);
                return;
            }
            // SAFETY: every record stays alive and exported until run_batch
            // returns; read-only records are copied first.
            let res = unsafe {
                if let Some(l) = &loaded {
                    let rec = if r.len == 0 {
                        &mut []
                    } else if r.writable {
                        std::slice::from_raw_parts_mut(r.ptr as *mut u8, r.len)
                    } else {
                        scratch.clear();
                        scratch.extend_from_slice(std::slice::from_raw_parts(
                            r.ptr as *const u8,
                            r.len,
                        ));
                        &mut scratch[..]
                    };
                    crate::exec::run_loaded_record(l, rec)
                } else if r.writable {
                    engine.run_raw_with_stack(r.ptr as *mut u8, r.len, true, sp)
                } else {
                    scratch.clear();
                    scratch
                        .extend_from_slice(std::slice::from_raw_parts(r.ptr as *const u8, r.len));
                    let p = if r.len == 0 {
                        std::ptr::null_mut()
                    } else {
                        scratch.as_mut_ptr()
                    };
                    engine.run_raw_with_stack(p, r.len, true, sp)
                }
            };
            match res {
                // SAFETY: out has n u64 slots; each index is written once.
                Ok(o) => unsafe { *(out_ptr as *mut u64).add(k) = o.r0 },
                Err(e) => {
                    first_fail.fetch_min(k, Ordering::Relaxed);
                    let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                    if slot.as_ref().is_none_or(|(i, _)| k < *i) {
                        *slot = Some((k, e));
                    }
                    return;
                }
            }
        }
    };

    guard(py, || {
        py.detach(|| {
            if threads == 1 {
                work(0..n);
            } else {
                let chunk = n.div_ceil(threads);
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let lo = t * chunk;
                        let hi = ((t + 1) * chunk).min(n);
                        if lo < hi {
                            let work = &work;
                            s.spawn(move || work(lo..hi));
                        }
                    }
                });
            }
        });
        Ok(())
    })?;
    drop(recs);
    if let Some((k, e)) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let err = exec_error(py, e);
        let _ = err.value(py).setattr("index", k);
        return Err(err);
    }
    Ok(out)
}
