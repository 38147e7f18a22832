//! `ebpfvm._core.Map` and friends: maps as raw bytes for the Python views in
//! `ebpfvm.maps`. Keys and values cross as `bytes`; many keys or values
//! cross as one buffer of fixed-size records, so batch operations are one
//! call. Typing (ints, structs, BTF) is the Python layer's business.

use std::collections::HashSet;
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use ebpfvm_core::maps::perf_event_array::PerfEventArray;
use ebpfvm_core::maps::ringbuf::RingBuf;
use ebpfvm_core::maps::{cpu, Map, MapDef, MapError as CoreMapError, MapType, BPF_F_RDONLY};

use crate::errors::{guard, MapError};

/// Batches larger than this release the GIL while Rust works through them.
const GIL_RELEASE_BATCH: usize = 4096;

/// Builds an `ebpfvm.MapError` with `.errno` and `.map_name` set; the
/// message names the map unless the core's message already does.
pub(crate) fn map_error(py: Python<'_>, map_name: &str, e: &CoreMapError) -> PyErr {
    map_error_at(py, map_name, e, None)
}

/// As [`map_error`], for element `index` of a batch (also set as `.index`).
fn map_error_at(py: Python<'_>, map_name: &str, e: &CoreMapError, index: Option<usize>) -> PyErr {
    let mut msg = e.to_string();
    if !msg.contains(&format!("map '{map_name}'")) {
        msg = format!("map '{map_name}': {msg}");
    }
    if let Some(i) = index {
        msg = format!("{msg} (batch element {i})");
    }
    new_map_error(py, msg, e.errno(), map_name, index)
}

/// An `ebpfvm.MapError` carrying `errno`, `map_name` and `index`.
pub(crate) fn new_map_error(
    py: Python<'_>,
    msg: String,
    errno: i32,
    map_name: &str,
    index: Option<usize>,
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let inst = py.get_type::<MapError>().call1((msg.clone(),))?;
        inst.setattr("errno", errno)?;
        inst.setattr("map_name", map_name)?;
        inst.setattr("index", index)?;
        Ok(PyErr::from_value(inst))
    };
    build().unwrap_or_else(|e| e)
}

/// Runs `f` on the bytes of `obj` (bytes without a copy; any other buffer,
/// such as a bytearray or memoryview, copied).
fn with_bytes<T>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> PyResult<T>) -> PyResult<T> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return f(b.as_bytes());
    }
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "expected bytes, got {}",
            type_name(obj)
        )));
    }
    let v = crate::buffer_bytes(obj)?;
    f(&v)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Runs `f` with the GIL released when `release` is set.
fn maybe_detach<T: Send>(py: Python<'_>, release: bool, f: impl FnOnce() -> T + Send) -> T {
    if release {
        py.detach(f)
    } else {
        f()
    }
}

/// A map, seen as raw bytes. Shared between threads and with programs.
#[pyclass(frozen, module = "ebpfvm._core", name = "Map")]
pub struct PyMap {
    inner: Arc<Map>,
}

impl PyMap {
    pub(crate) fn new(inner: Arc<Map>) -> Self {
        PyMap { inner }
    }

    /// The map itself, for binding code that hands maps to programs.
    pub(crate) fn inner(&self) -> &Arc<Map> {
        &self.inner
    }

    fn err(&self, py: Python<'_>, e: &CoreMapError) -> PyErr {
        map_error(py, self.inner.name(), e)
    }

    fn err_at(&self, py: Python<'_>, e: &CoreMapError, index: usize) -> PyErr {
        map_error_at(py, self.inner.name(), e, Some(index))
    }

    /// Checks that a batch buffer holds whole records of `size` bytes.
    fn record_count(&self, py: Python<'_>, what: &str, len: usize, size: usize) -> PyResult<usize> {
        if size == 0 {
            return Err(new_map_error(
                py,
                format!(
                    "map '{}': batch operations need keys and values (a {} has none)",
                    self.inner.name(),
                    self.inner.map_type()
                ),
                22,
                self.inner.name(),
                None,
            ));
        }
        if !len.is_multiple_of(size) {
            return Err(new_map_error(
                py,
                format!(
                    "map '{}': {what} buffer is {len} bytes, not a multiple of the {size}-byte record size",
                    self.inner.name()
                ),
                22,
                self.inner.name(),
                None,
            ));
        }
        Ok(len / size)
    }

    /// Every key, concatenated in iteration order, each once. A map changed
    /// while it is walked yields each key present throughout exactly once;
    /// the walk is bounded even if a concurrent delete makes `next_key`
    /// start over.
    fn collect_keys(&self) -> Result<Vec<u8>, CoreMapError> {
        let map = &self.inner;
        let key_size = map.def().key_size as usize;
        let mut keys: Vec<u8> = Vec::with_capacity(map.len() * key_size);
        let mut seen: HashSet<Vec<u8>> = HashSet::with_capacity(map.len());
        let mut cursor: Option<Vec<u8>> = None;
        let limit = 4 * (map.def().max_entries as usize + map.len() + 1);
        for _ in 0..limit {
            match map.next_key(cursor.as_deref())? {
                None => break,
                Some(k) => {
                    if !seen.contains(&k) {
                        keys.extend_from_slice(&k);
                        seen.insert(k.clone());
                    }
                    cursor = Some(k);
                }
            }
        }
        Ok(keys)
    }
}

#[pymethods]
impl PyMap {
    /// Creates a map (or opens the one pinned at `pin`, creating it there if
    /// the file does not exist). `map_type` is a libbpf name such as
    /// `"hash"` or the kernel's type number. `inner` is a map whose
    /// definition the inner maps of a map of maps must match.
    #[new]
    #[pyo3(signature = (map_type, key_size, value_size, max_entries, *, flags = 0, name = "", map_extra = 0, inner = None, pin = None))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        map_type: &Bound<'_, PyAny>,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        flags: u32,
        name: &str,
        map_extra: u64,
        inner: Option<PyRef<'_, PyMap>>,
        pin: Option<PathBuf>,
    ) -> PyResult<Self> {
        let ty = parse_map_type(map_type)?;
        let mut def = MapDef::new(ty, key_size, value_size, max_entries).named(name);
        def.flags = flags;
        def.map_extra = map_extra;
        def.inner = inner.map(|m| Box::new(m.inner.def().clone()));
        guard(py, || {
            let map = match &pin {
                Some(path) => Map::open_pinned(def, path),
                None => Map::create(def),
            }
            .map_err(|e| map_error(py, name, &e))?;
            Ok(PyMap { inner: map })
        })
    }

    /// The live map with global id `id`, or None.
    #[staticmethod]
    fn by_id(id: u32) -> Option<PyMap> {
        Map::by_id(id).map(PyMap::new)
    }

    /// The value stored for `key`, or None if there is none.
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        with_bytes(key, |k| {
            guard(py, || match self.inner.lookup(k) {
                Ok(v) => Ok(Some(PyBytes::new(py, &v))),
                Err(CoreMapError::NotFound) => Ok(None),
                Err(e) => Err(self.err(py, &e)),
            })
        })
    }

    /// Stores `value` for `key`; `flags` is BPF_ANY, BPF_NOEXIST or BPF_EXIST.
    #[pyo3(signature = (key, value, flags = 0))]
    fn update(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        flags: u64,
    ) -> PyResult<()> {
        with_bytes(key, |k| {
            with_bytes(value, |v| {
                guard(py, || {
                    self.inner.update(k, v, flags).map_err(|e| self.err(py, &e))
                })
            })
        })
    }

    /// Deletes `key`; False if it was not there.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        with_bytes(key, |k| {
            guard(py, || match self.inner.delete(k) {
                Ok(()) => Ok(true),
                Err(CoreMapError::NotFound) => Ok(false),
                Err(e) => Err(self.err(py, &e)),
            })
        })
    }

    /// The key after `key` (the first key for None); None at the end.
    #[pyo3(signature = (key = None))]
    fn next_key<'py>(
        &self,
        py: Python<'py>,
        key: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let step = |k: Option<&[u8]>| {
            guard(py, || match self.inner.next_key(k) {
                Ok(next) => Ok(next.map(|n| PyBytes::new(py, &n))),
                Err(e) => Err(self.err(py, &e)),
            })
        };
        match key.filter(|k| !k.is_none()) {
            Some(k) => with_bytes(k, |k| step(Some(k))),
            None => step(None),
        }
    }

    /// Queue, stack, bloom filter: adds `value` (BPF_EXIST lets a full queue
    /// or stack drop its oldest element).
    #[pyo3(signature = (value, flags = 0))]
    fn push(&self, py: Python<'_>, value: &Bound<'_, PyAny>, flags: u64) -> PyResult<()> {
        with_bytes(value, |v| {
            guard(py, || {
                self.inner.push(v, flags).map_err(|e| self.err(py, &e))
            })
        })
    }

    /// Queue and stack: removes and returns the next value; None if empty.
    fn pop<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        guard(py, || match self.inner.pop() {
            Ok(v) => Ok(Some(PyBytes::new(py, &v))),
            Err(CoreMapError::NotFound) => Ok(None),
            Err(e) => Err(self.err(py, &e)),
        })
    }

    /// Queue and stack: the next value, left in place; None if empty.
    fn peek<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        guard(py, || match self.inner.peek(None) {
            Ok(v) => Ok(Some(PyBytes::new(py, &v))),
            Err(CoreMapError::NotFound) => Ok(None),
            Err(e) => Err(self.err(py, &e)),
        })
    }

    /// Bloom filter: whether `value` may be present (False: certainly not).
    fn contains_value(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        with_bytes(value, |v| {
            guard(py, || match self.inner.peek(Some(v)) {
                Ok(_) => Ok(true),
                Err(CoreMapError::NotFound) => Ok(false),
                Err(e) => Err(self.err(py, &e)),
            })
        })
    }

    /// Every key, concatenated (`key_size` bytes each), in iteration order.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let keys = guard(py, || self.collect_keys().map_err(|e| self.err(py, &e)))?;
        Ok(PyBytes::new(py, &keys))
    }

    /// Every entry as `(keys, values)`, each concatenated; per-CPU values
    /// are `num_cpus` slots of `value_size` rounded up to 8 bytes. Entries
    /// deleted while the map is walked are left out.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let (keys, values) = guard(py, || {
            let keys = self.collect_keys().map_err(|e| self.err(py, &e))?;
            let key_size = (self.inner.def().key_size as usize).max(1);
            let mut kept = Vec::with_capacity(keys.len());
            let mut values =
                Vec::with_capacity(keys.len() / key_size * self.inner.user_value_size());
            for k in keys.chunks_exact(key_size) {
                match self.inner.lookup(k) {
                    Ok(v) => {
                        kept.extend_from_slice(k);
                        values.extend_from_slice(&v);
                    }
                    Err(CoreMapError::NotFound) => {}
                    Err(e) => return Err(self.err(py, &e)),
                }
            }
            Ok((kept, values))
        })?;
        Ok((PyBytes::new(py, &keys), PyBytes::new(py, &values)))
    }

    /// Looks up many keys (concatenated) in one call: returns the values
    /// (concatenated; zeros where a key is missing) and a mask with one byte
    /// per key, 1 where it was found.
    fn lookup_batch<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let key_size = self.inner.def().key_size as usize;
        let value_size = self.inner.user_value_size();
        let (values, found) = with_bytes(keys, |ks| {
            let n = self.record_count(py, "keys", ks.len(), key_size)?;
            let work = || -> Result<(Vec<u8>, Vec<u8>), (CoreMapError, usize)> {
                let mut values = vec![0u8; n * value_size];
                let mut found = vec![0u8; n];
                for (i, k) in ks.chunks_exact(key_size).enumerate() {
                    match self.inner.lookup(k) {
                        Ok(v) => {
                            values[i * value_size..(i + 1) * value_size].copy_from_slice(&v);
                            found[i] = 1;
                        }
                        Err(CoreMapError::NotFound) => {}
                        Err(e) => return Err((e, i)),
                    }
                }
                Ok((values, found))
            };
            guard(py, || {
                maybe_detach(py, n > GIL_RELEASE_BATCH, work)
                    .map_err(|(e, i)| self.err_at(py, &e, i))
            })
        })?;
        Ok((PyBytes::new(py, &values), PyBytes::new(py, &found)))
    }

    /// Stores many entries in one call (keys and values concatenated, in the
    /// same order). Stops at the first failure, as the kernel does: entries
    /// before it are stored and the error's `.index` is the failing one.
    #[pyo3(signature = (keys, values, flags = 0))]
    fn update_batch(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        flags: u64,
    ) -> PyResult<()> {
        let key_size = self.inner.def().key_size as usize;
        let value_size = self.inner.user_value_size();
        with_bytes(keys, |ks| {
            with_bytes(values, |vs| {
                let n = self.record_count(py, "keys", ks.len(), key_size)?;
                let nv = self.record_count(py, "values", vs.len(), value_size)?;
                if n != nv {
                    return Err(new_map_error(
                        py,
                        format!(
                            "map '{}': update_batch got {n} keys but {nv} values",
                            self.inner.name()
                        ),
                        22,
                        self.inner.name(),
                        None,
                    ));
                }
                let work = || -> Result<(), (CoreMapError, usize)> {
                    for (i, (k, v)) in ks
                        .chunks_exact(key_size)
                        .zip(vs.chunks_exact(value_size))
                        .enumerate()
                    {
                        self.inner.update(k, v, flags).map_err(|e| (e, i))?;
                    }
                    Ok(())
                };
                guard(py, || {
                    maybe_detach(py, n > GIL_RELEASE_BATCH, work)
                        .map_err(|(e, i)| self.err_at(py, &e, i))
                })
            })
        })
    }

    /// Deletes many keys (concatenated) in one call and returns how many
    /// were deleted. A missing key is an ENOENT error (with `.index`; keys
    /// before it are deleted) unless `missing_ok`.
    #[pyo3(signature = (keys, missing_ok = false))]
    fn delete_batch(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        missing_ok: bool,
    ) -> PyResult<usize> {
        let key_size = self.inner.def().key_size as usize;
        with_bytes(keys, |ks| {
            let n = self.record_count(py, "keys", ks.len(), key_size)?;
            let work = || -> Result<usize, (CoreMapError, usize)> {
                let mut deleted = 0;
                for (i, k) in ks.chunks_exact(key_size).enumerate() {
                    match self.inner.delete(k) {
                        Ok(()) => deleted += 1,
                        Err(CoreMapError::NotFound) if missing_ok => {}
                        Err(e) => return Err((e, i)),
                    }
                }
                Ok(deleted)
            };
            guard(py, || {
                maybe_detach(py, n > GIL_RELEASE_BATCH, work)
                    .map_err(|(e, i)| self.err_at(py, &e, i))
            })
        })
    }

    /// The storage of an array map's values as a writable buffer (zero-copy:
    /// what is written through it, programs see). Elements are `value_size`
    /// rounded up to 8 bytes apart, as in the kernel.
    fn value_memory(&self, py: Python<'_>) -> PyResult<MapMemory> {
        match self.inner.imp().value_region() {
            Some((ptr, len)) => Ok(MapMemory {
                map: self.inner.clone(),
                addr: ptr.as_ptr() as usize,
                len,
                readonly: self.inner.def().flags & BPF_F_RDONLY != 0,
            }),
            None => Err(new_map_error(
                py,
                format!(
                    "map '{}': a {} map has no contiguous value storage (only array maps do)",
                    self.inner.name(),
                    self.inner.map_type()
                ),
                95,
                self.inner.name(),
                None,
            )),
        }
    }

    /// The libbpf name of the map type, such as "hash".
    #[getter]
    fn map_type(&self) -> &'static str {
        self.inner.map_type().name()
    }

    /// The kernel's number for the map type.
    #[getter]
    fn map_type_id(&self) -> u32 {
        self.inner.map_type() as u32
    }

    #[getter]
    fn key_size(&self) -> u32 {
        self.inner.def().key_size
    }

    #[getter]
    fn value_size(&self) -> u32 {
        self.inner.def().value_size
    }

    /// Bytes of a value as `lookup` returns it (all CPUs' slots for per-CPU maps).
    #[getter]
    fn user_value_size(&self) -> usize {
        self.inner.user_value_size()
    }

    #[getter]
    fn max_entries(&self) -> u32 {
        self.inner.def().max_entries
    }

    #[getter]
    fn flags(&self) -> u32 {
        self.inner.def().flags
    }

    #[getter]
    fn map_extra(&self) -> u64 {
        self.inner.def().map_extra
    }

    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The map's global id (what maps of maps store for it).
    #[getter]
    fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Virtual CPUs (slots per value of a per-CPU map).
    #[getter]
    fn num_cpus(&self) -> usize {
        self.inner.num_cpus()
    }

    #[getter]
    fn pin_path(&self) -> Option<PathBuf> {
        self.inner.pin_path().map(|p| p.to_path_buf())
    }

    /// Bytes of memory the map holds.
    #[getter]
    fn memory_usage(&self) -> usize {
        self.inner.imp().memory_usage()
    }

    /// For maps of maps: the inner maps' definition as a dict, else None.
    #[getter]
    fn inner_def<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(inner) = &self.inner.def().inner else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("map_type", inner.map_type.name())?;
        d.set_item("key_size", inner.key_size)?;
        d.set_item("value_size", inner.value_size)?;
        d.set_item("max_entries", inner.max_entries)?;
        d.set_item("flags", inner.flags)?;
        Ok(Some(d))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyMap>()
            .map(|o| Arc::ptr_eq(&self.inner, &o.get().inner))
            .unwrap_or(false)
    }

    fn __hash__(&self) -> u64 {
        self.inner.id() as u64
    }

    fn __repr__(&self) -> String {
        let def = self.inner.def();
        format!(
            "<ebpfvm._core.Map {} '{}' id={} key_size={} value_size={} max_entries={}>",
            def.map_type,
            def.name,
            self.inner.id(),
            def.key_size,
            def.value_size,
            def.max_entries
        )
    }
}

/// `map_type` as a name ("hash") or a kernel type number.
fn parse_map_type(obj: &Bound<'_, PyAny>) -> PyResult<MapType> {
    if let Ok(n) = obj.extract::<u32>() {
        return MapType::from_u32(n)
            .ok_or_else(|| PyValueError::new_err(format!("unknown map type number {n}")));
    }
    if let Ok(s) = obj.extract::<String>() {
        let name = s.to_ascii_lowercase();
        let name = name.strip_prefix("bpf_map_type_").unwrap_or(&name);
        return MapType::from_name(name)
            .ok_or_else(|| PyValueError::new_err(format!("unknown map type {s:?}")));
    }
    Err(PyTypeError::new_err(format!(
        "map_type must be a str or an int, not {}",
        type_name(obj)
    )))
}

/// How an integer key or value is laid out: little-endian, 1, 2, 4 or 8
/// bytes, signed or not.
#[derive(Clone, Copy)]
struct IntLayout {
    size: usize,
    signed: bool,
}

impl IntLayout {
    fn new(size: usize, signed: bool) -> PyResult<IntLayout> {
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(PyValueError::new_err(format!(
                "integer keys and values are 1, 2, 4 or 8 bytes, not {size}"
            )));
        }
        Ok(IntLayout { size, signed })
    }

    /// `obj` as `size` little-endian bytes (in an 8-byte buffer);
    /// TypeError or OverflowError for anything else (the Python view then
    /// explains the problem with the map's name).
    fn encode(&self, obj: &Bound<'_, PyAny>) -> PyResult<[u8; 8]> {
        let bits = self.size as u32 * 8;
        let out_of_range = || pyo3::exceptions::PyOverflowError::new_err("out of range");
        let raw = if self.signed {
            let v: i64 = obj.extract()?;
            if bits < 64 && !(-(1i64 << (bits - 1))..(1i64 << (bits - 1))).contains(&v) {
                return Err(out_of_range());
            }
            v as u64
        } else {
            let v: u64 = obj.extract()?;
            if bits < 64 && v >> bits != 0 {
                return Err(out_of_range());
            }
            v
        };
        Ok(raw.to_le_bytes())
    }

    fn decode<'py>(&self, py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyAny> {
        let mut buf = [0u8; 8];
        let n = self.size.min(bytes.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        let raw = u64::from_le_bytes(buf);
        let shift = 64 - self.size as u32 * 8;
        if self.signed {
            let Ok(v) = (((raw << shift) as i64) >> shift).into_pyobject(py);
            v.into_any()
        } else {
            let Ok(v) = raw.into_pyobject(py);
            v.into_any()
        }
    }
}

/// A map seen with integer keys and values (the common `u32 -> u64`
/// case): `m[k]` of a typed view is one call, with no bytes objects.
#[pyclass(frozen, module = "ebpfvm._core", name = "IntMapView")]
pub struct IntMapView {
    map: Arc<Map>,
    key: IntLayout,
    value: IntLayout,
}

#[pymethods]
impl IntMapView {
    #[new]
    fn new(map: PyRef<'_, PyMap>, key_signed: bool, value_signed: bool) -> PyResult<IntMapView> {
        let def = map.inner.def();
        if map.inner.user_value_size() != def.value_size as usize {
            return Err(PyValueError::new_err(format!(
                "map '{}': per-CPU values are not single integers",
                def.name
            )));
        }
        Ok(IntMapView {
            key: IntLayout::new(def.key_size as usize, key_signed)?,
            value: IntLayout::new(def.value_size as usize, value_signed)?,
            map: map.inner.clone(),
        })
    }

    /// The value of `key`, or None.
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let k = self.key.encode(key)?;
        guard(py, || match self.map.lookup(&k[..self.key.size]) {
            Ok(v) => Ok(Some(self.value.decode(py, &v))),
            Err(CoreMapError::NotFound) => Ok(None),
            Err(e) => Err(map_error(py, self.map.name(), &e)),
        })
    }

    /// Whether `key` is present.
    fn contains(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = self.key.encode(key)?;
        guard(py, || match self.map.lookup(&k[..self.key.size]) {
            Ok(_) => Ok(true),
            Err(CoreMapError::NotFound) => Ok(false),
            Err(e) => Err(map_error(py, self.map.name(), &e)),
        })
    }

    /// Stores `value` for `key` with update `flags`.
    #[pyo3(signature = (key, value, flags = 0))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        flags: u64,
    ) -> PyResult<()> {
        let k = self.key.encode(key)?;
        let v = self.value.encode(value)?;
        guard(py, || {
            self.map
                .update(&k[..self.key.size], &v[..self.value.size], flags)
                .map_err(|e| map_error(py, self.map.name(), &e))
        })
    }
}

/// An array map's value storage exported through the buffer protocol. It
/// holds the map, so the memory stays valid while any view of it exists.
#[pyclass(frozen, module = "ebpfvm._core", name = "MapMemory")]
pub struct MapMemory {
    map: Arc<Map>,
    addr: usize,
    len: usize,
    readonly: bool,
}

#[pymethods]
impl MapMemory {
    /// # Safety
    /// Called by Python with a view to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let me = slf.get();
        if me.readonly && flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                "map '{}' is read-only",
                me.map.name()
            )));
        }
        // SAFETY: addr..addr+len is the map's value storage, which lives as
        // long as the map, which `slf` (stored in view.obj) keeps alive.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                me.addr as *mut std::ffi::c_void,
                me.len as ffi::Py_ssize_t,
                c_int::from(me.readonly),
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.len
    }

    #[getter]
    fn readonly(&self) -> bool {
        self.readonly
    }
}

/// Waits on `wait` with the GIL released, in short slices so that Ctrl-C
/// (or any signal handler raising) interrupts a long or endless wait.
/// `timeout_ms < 0` waits until woken. Returns whether it was woken.
fn wait_interruptibly(
    py: Python<'_>,
    timeout_ms: i64,
    wait: impl Fn(Duration) -> bool + Sync,
) -> PyResult<bool> {
    const SLICE: Duration = Duration::from_millis(50);
    let deadline =
        (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.min(SLICE)
            }
        };
        if py.detach(|| wait(slice)) {
            return Ok(true);
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

/// Whether a consumer callback asked to stop: libbpf stops at a negative
/// return value.
fn asks_to_stop(ret: &Bound<'_, PyAny>) -> bool {
    ret.extract::<i64>().is_ok_and(|v| v < 0)
}

/// The consumer of a ring buffer map: calls `callback(data: bytes)` for
/// each record, in order. Records are consumed as they are handed over; a
/// callback returning a negative int stops the round, one raising stops it
/// and the exception propagates (that record counts as consumed).
#[pyclass(frozen, module = "ebpfvm._core", name = "RingBufferConsumer")]
pub struct RingBufferConsumer {
    map: Arc<Map>,
    callback: Option<Py<PyAny>>,
}

impl RingBufferConsumer {
    fn ring(&self) -> &RingBuf {
        // Checked when the consumer was made.
        self.map
            .downcast::<RingBuf>()
            .expect("RingBufferConsumer holds a ring buffer map")
    }

    /// Hands each ready record to `f` until it returns false; `f`'s error
    /// stops the round and is returned.
    fn each(&self, py: Python<'_>, mut f: impl FnMut(&[u8]) -> PyResult<bool>) -> PyResult<usize> {
        let mut failure: Option<PyErr> = None;
        let n = guard(py, || {
            Ok(self.ring().consume(&mut |record| match f(record) {
                Ok(go_on) => go_on,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }))
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    fn deliver(&self, py: Python<'_>) -> PyResult<usize> {
        let Some(cb) = &self.callback else {
            return Err(no_callback(py, &self.map));
        };
        let cb = cb.bind(py);
        self.each(py, |record| {
            let ret = cb.call1((PyBytes::new(py, record),))?;
            Ok(!asks_to_stop(&ret))
        })
    }
}

#[pymethods]
impl RingBufferConsumer {
    #[new]
    #[pyo3(signature = (map, callback = None))]
    fn new(py: Python<'_>, map: PyRef<'_, PyMap>, callback: Option<Py<PyAny>>) -> PyResult<Self> {
        let m = map.inner.clone();
        if m.downcast::<RingBuf>().is_none() {
            return Err(new_map_error(
                py,
                format!("map '{}' is a {}, not a ringbuf", m.name(), m.map_type()),
                22,
                m.name(),
                None,
            ));
        }
        Ok(RingBufferConsumer { map: m, callback })
    }

    /// Hands every ready record to the callback without waiting; returns
    /// how many it got.
    fn consume(&self, py: Python<'_>) -> PyResult<usize> {
        self.deliver(py)
    }

    /// Waits up to `timeout_ms` (< 0: until a record comes) for records,
    /// with the GIL released, then consumes them; returns how many.
    #[pyo3(signature = (timeout_ms = -1))]
    fn poll(&self, py: Python<'_>, timeout_ms: i64) -> PyResult<usize> {
        let ring = self.ring();
        if ring.available() == 0 {
            wait_interruptibly(py, timeout_ms, |slice| ring.wait(Some(slice)))?;
        }
        self.deliver(py)
    }

    /// The ready records (at most `max`), consumed, without the callback.
    #[pyo3(signature = (max = None))]
    fn drain<'py>(
        &self,
        py: Python<'py>,
        max: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let mut out = Vec::new();
        let limit = max.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(out);
        }
        self.each(py, |record| {
            out.push(PyBytes::new(py, record));
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Writes a record from user space, as `bpf_ringbuf_output` does;
    /// ENOSPC when the ring is full.
    #[pyo3(signature = (data, flags = 0))]
    fn output(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: u64) -> PyResult<()> {
        with_bytes(data, |d| {
            guard(py, || {
                self.ring()
                    .output(d, flags)
                    .map_err(|e| map_error(py, self.map.name(), &e))
            })
        })
    }

    /// Bytes not yet consumed (records, their headers and discarded ones).
    #[getter]
    fn available(&self) -> usize {
        self.ring().available()
    }

    /// Bytes of data the ring holds.
    #[getter]
    fn size(&self) -> usize {
        self.ring().size()
    }
}

/// The consumer of a perf event array: calls `callback(cpu, data)` for
/// each sample, CPU by CPU, and `lost_callback(cpu, count)` when samples
/// were dropped because a CPU's buffer was full.
#[pyclass(frozen, module = "ebpfvm._core", name = "PerfBufferConsumer")]
pub struct PerfBufferConsumer {
    map: Arc<Map>,
    callback: Option<Py<PyAny>>,
    lost_callback: Option<Py<PyAny>>,
    /// Lost-sample counts already reported, per CPU.
    lost_seen: std::sync::Mutex<Vec<u64>>,
}

impl PerfBufferConsumer {
    fn perf(&self) -> &PerfEventArray {
        self.map
            .downcast::<PerfEventArray>()
            .expect("PerfBufferConsumer holds a perf event array")
    }

    fn report_lost(&self, py: Python<'_>) -> PyResult<()> {
        let perf = self.perf();
        let mut news = Vec::new();
        {
            let mut seen = self.lost_seen.lock().unwrap_or_else(|e| e.into_inner());
            for cpu in 0..perf.slots() {
                let lost = perf.lost(cpu);
                let old = seen.get(cpu as usize).copied().unwrap_or(0);
                if lost > old {
                    news.push((cpu, lost - old));
                }
                if let Some(s) = seen.get_mut(cpu as usize) {
                    *s = lost;
                }
            }
        }
        if let Some(cb) = &self.lost_callback {
            for (cpu, count) in news {
                cb.bind(py).call1((cpu, count))?;
            }
        }
        Ok(())
    }

    fn each(
        &self,
        py: Python<'_>,
        mut f: impl FnMut(u32, &[u8]) -> PyResult<()>,
    ) -> PyResult<usize> {
        let mut failure: Option<PyErr> = None;
        let n = guard(py, || {
            Ok(self.perf().consume(&mut |cpu, sample| {
                if failure.is_none() {
                    if let Err(e) = f(cpu, sample) {
                        failure = Some(e);
                    }
                }
            }))
        })?;
        self.report_lost(py)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    fn deliver(&self, py: Python<'_>) -> PyResult<usize> {
        let Some(cb) = &self.callback else {
            return Err(no_callback(py, &self.map));
        };
        let cb = cb.bind(py);
        self.each(py, |cpu, sample| {
            cb.call1((cpu, PyBytes::new(py, sample)))?;
            Ok(())
        })
    }
}

#[pymethods]
impl PerfBufferConsumer {
    /// `page_cnt`: pages (of 4096 bytes, a power of two) of each CPU's
    /// buffer, as in libbpf's `perf_buffer__new`.
    #[new]
    #[pyo3(signature = (map, callback = None, lost_callback = None, page_cnt = None))]
    fn new(
        py: Python<'_>,
        map: PyRef<'_, PyMap>,
        callback: Option<Py<PyAny>>,
        lost_callback: Option<Py<PyAny>>,
        page_cnt: Option<usize>,
    ) -> PyResult<Self> {
        let m = map.inner.clone();
        let Some(perf) = m.downcast::<PerfEventArray>() else {
            return Err(new_map_error(
                py,
                format!(
                    "map '{}' is a {}, not a perf_event_array",
                    m.name(),
                    m.map_type()
                ),
                22,
                m.name(),
                None,
            ));
        };
        if let Some(pages) = page_cnt {
            perf.set_buffer_size(pages.saturating_mul(4096))
                .map_err(|e| map_error(py, m.name(), &e))?;
        }
        let seen = (0..perf.slots()).map(|cpu| perf.lost(cpu)).collect();
        Ok(PerfBufferConsumer {
            map: m.clone(),
            callback,
            lost_callback,
            lost_seen: std::sync::Mutex::new(seen),
        })
    }

    /// Hands every buffered sample to the callback without waiting.
    fn consume(&self, py: Python<'_>) -> PyResult<usize> {
        self.deliver(py)
    }

    /// Waits up to `timeout_ms` (< 0: until a sample comes) with the GIL
    /// released, then consumes; returns how many samples there were.
    #[pyo3(signature = (timeout_ms = -1))]
    fn poll(&self, py: Python<'_>, timeout_ms: i64) -> PyResult<usize> {
        let perf = self.perf();
        if perf.pending() == 0 {
            wait_interruptibly(py, timeout_ms, |slice| perf.wait(Some(slice)))?;
        }
        self.deliver(py)
    }

    /// The buffered samples as `(cpu, data)` pairs, consumed, without the callback.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Vec<(u32, Bound<'py, PyBytes>)>> {
        let mut out = Vec::new();
        self.each(py, |cpu, sample| {
            out.push((cpu, PyBytes::new(py, sample)));
            Ok(())
        })?;
        Ok(out)
    }

    /// Writes a sample into `cpu`'s buffer from user space, as
    /// `bpf_perf_event_output` does; ENOSPC (and a lost sample) when full.
    #[pyo3(signature = (data, cpu = 0))]
    fn output(&self, py: Python<'_>, data: &Bound<'_, PyAny>, cpu: u32) -> PyResult<()> {
        with_bytes(data, |d| {
            guard(py, || {
                self.perf()
                    .output(cpu as u64, cpu, d)
                    .map_err(|e| map_error(py, self.map.name(), &e))
            })
        })
    }

    /// Samples waiting in all CPUs' buffers.
    #[getter]
    fn pending(&self) -> usize {
        self.perf().pending()
    }

    /// Samples dropped so far from `cpu`'s buffer because it was full.
    fn lost(&self, cpu: u32) -> u64 {
        self.perf().lost(cpu)
    }

    /// Bytes each CPU's buffer holds.
    #[getter]
    fn buffer_size(&self) -> usize {
        self.perf().buffer_size()
    }
}

/// Sets how many virtual CPUs per-CPU maps created afterwards have.
#[pyfunction]
fn set_num_cpus(n: usize) -> PyResult<()> {
    cpu::set_num_cpus(n).map_err(PyValueError::new_err)
}

/// The number of virtual CPUs new per-CPU maps get.
#[pyfunction]
fn num_cpus() -> usize {
    cpu::num_cpus()
}

/// Adds the map classes and functions to `ebpfvm._core`.
/// A consumer asked to deliver records without a callback (EINVAL).
fn no_callback(py: Python<'_>, map: &Map) -> PyErr {
    new_map_error(
        py,
        format!(
            "map '{}': this consumer has no callback: iterate it or use drain()",
            map.name()
        ),
        22,
        map.name(),
        None,
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMap>()?;
    m.add_class::<MapMemory>()?;
    m.add_class::<IntMapView>()?;
    m.add_class::<RingBufferConsumer>()?;
    m.add_class::<PerfBufferConsumer>()?;
    m.add_function(wrap_pyfunction!(set_num_cpus, m)?)?;
    m.add_function(wrap_pyfunction!(num_cpus, m)?)?;
    Ok(())
}
