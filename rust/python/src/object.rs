//! `ebpfvm._core.ElfObject` and typed runs: the bindings over the ELF
//! loader (`ebpfvm_core::elf`) and the run-time (`ebpfvm_core::runtime`).
//! The Python `ebpfvm.Object` builds on these.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use ebpfvm_core::btf::{IntKind, TypeDesc};
use ebpfvm_core::elf::{self, MapKind, Pinning};
use ebpfvm_core::kernel::contexts;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::runtime::{self, run::RunResult};

use crate::errors::{guard, program_error, ElfError};
use crate::exec::PyExecutable;
use crate::maps::PyMap;

/// A parsed object file (`clang -target bpf` output).
#[pyclass(frozen, module = "ebpfvm._core", name = "ElfObject")]
pub struct PyElfObject {
    obj: Mutex<elf::Object>,
}

fn elf_error(e: impl std::fmt::Display) -> PyErr {
    ElfError::new_err(e.to_string())
}

impl PyElfObject {
    fn with<T>(&self, f: impl FnOnce(&mut elf::Object) -> T) -> T {
        f(&mut self.obj.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A BTF type as the dict Python's typed map views take.
pub(crate) fn type_desc<'py>(py: Python<'py>, t: &TypeDesc) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match t {
        TypeDesc::Void => {
            d.set_item("kind", "bytes")?;
            d.set_item("size", 0)?;
        }
        TypeDesc::Int { size, signed, kind } => {
            let k = match kind {
                IntKind::Bool => "bool",
                IntKind::Char => "char",
                IntKind::Plain => "int",
            };
            d.set_item("kind", k)?;
            d.set_item("size", size)?;
            d.set_item("signed", signed)?;
        }
        TypeDesc::Float { size } => {
            d.set_item("kind", "float")?;
            d.set_item("size", size)?;
        }
        TypeDesc::Ptr { .. } => {
            d.set_item("kind", "ptr")?;
            d.set_item("size", 8)?;
        }
        TypeDesc::Array { elem, len } => {
            let e = type_desc(py, elem)?;
            let esize: usize = e.get_item("size")?.map_or(Ok(0), |v| v.extract())?;
            d.set_item("kind", "array")?;
            d.set_item("len", len)?;
            d.set_item("size", esize * *len as usize)?;
            d.set_item("elem", e)?;
        }
        TypeDesc::Struct {
            name,
            size,
            is_union,
            members,
        } => {
            d.set_item("kind", if *is_union { "union" } else { "struct" })?;
            d.set_item("name", name)?;
            d.set_item("size", size)?;
            let ms = PyList::empty(py);
            for m in members {
                let md = PyDict::new(py);
                md.set_item("name", &m.name)?;
                md.set_item("offset", m.bit_offset / 8)?;
                // Bits past `offset` (nonzero only for bitfields).
                md.set_item("bit_offset", m.bit_offset % 8)?;
                md.set_item("bit_size", m.bitfield_size)?;
                md.set_item("type", type_desc(py, &m.ty)?)?;
                ms.append(md)?;
            }
            d.set_item("members", ms)?;
        }
        TypeDesc::Enum {
            name,
            size,
            signed,
            values,
        } => {
            d.set_item("kind", "enum")?;
            d.set_item("name", name)?;
            d.set_item("size", size)?;
            d.set_item("signed", signed)?;
            let vs = PyDict::new(py);
            for (n, v) in values {
                vs.set_item(n, v)?;
            }
            d.set_item("values", vs)?;
        }
    }
    Ok(d)
}

fn pinning_name(p: Pinning) -> &'static str {
    match p {
        Pinning::None => "none",
        Pinning::ByName => "by_name",
        Pinning::ObjectNs => "object_ns",
        Pinning::GlobalNs => "global_ns",
        Pinning::Other(_) => "other",
    }
}

#[pymethods]
impl PyElfObject {
    /// Parses an object file's bytes.
    #[staticmethod]
    fn parse(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = crate::buffer_bytes(data)?;
        guard(py, || {
            let obj = py
                .detach(|| elf::Object::parse(&bytes))
                .map_err(elf_error)?;
            Ok(PyElfObject {
                obj: Mutex::new(obj),
            })
        })
    }

    #[getter]
    fn license(&self) -> Option<String> {
        self.with(|o| o.license.clone())
    }

    #[getter]
    fn kernel_version(&self) -> Option<u32> {
        self.with(|o| o.kernel_version)
    }

    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.with(|o| o.warnings.clone())
    }

    /// One dict per program: name, section, prog_type (None when the
    /// section name does not say), insns, error (why it cannot load, or None).
    fn programs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.with(|o| {
            o.programs
                .iter()
                .map(|p| {
                    let d = PyDict::new(py);
                    d.set_item("name", &p.name)?;
                    d.set_item("section", &p.section)?;
                    d.set_item("prog_type", p.prog_type.map(|t| t.name()))?;
                    d.set_item("insns", p.insns.len())?;
                    d.set_item("subprogram", p.subprogram)?;
                    d.set_item("error", p.program.as_ref().err().map(|e| e.to_string()))?;
                    Ok(d)
                })
                .collect()
        })
    }

    /// One dict per map, in index order: its definition, kind ("map" or
    /// "data"), section, pinning, BTF key/value types, and for global data
    /// its variables.
    fn maps<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.with(|o| {
            let btf = o.btf.as_ref();
            let desc = |id: Option<u32>| -> PyResult<Option<Bound<'py, PyDict>>> {
                match (id, btf) {
                    (Some(id), Some(b)) => match b.describe(id) {
                        Ok(t) => Ok(Some(type_desc(py, &t)?)),
                        Err(_) => Ok(None),
                    },
                    _ => Ok(None),
                }
            };
            o.maps
                .iter()
                .map(|m| {
                    let d = PyDict::new(py);
                    d.set_item("name", &m.def.name)?;
                    d.set_item("map_type", m.def.map_type.name())?;
                    d.set_item("key_size", m.def.key_size)?;
                    d.set_item("value_size", m.def.value_size)?;
                    d.set_item("max_entries", m.def.max_entries)?;
                    d.set_item("flags", m.def.flags)?;
                    d.set_item("pinning", pinning_name(m.pinning))?;
                    let (kind, section) = match &m.kind {
                        MapKind::Regular { section } => ("map", section),
                        MapKind::GlobalData { section, .. } => ("data", section),
                    };
                    d.set_item("kind", kind)?;
                    d.set_item("section", section)?;
                    d.set_item("key_type", desc(m.key_type)?)?;
                    d.set_item("value_type", desc(m.value_type)?)?;
                    let vars = PyList::empty(py);
                    for v in m.vars() {
                        let vd = PyDict::new(py);
                        vd.set_item("name", &v.name)?;
                        vd.set_item("offset", v.offset)?;
                        vd.set_item("size", v.size)?;
                        vd.set_item("type", desc(v.type_id)?)?;
                        vars.append(vd)?;
                    }
                    d.set_item("vars", vars)?;
                    Ok(d)
                })
                .collect()
        })
    }

    /// Creates the object's maps (pinned ones under `pin_root`), in index
    /// order, and returns them with any warnings. Call once: every call
    /// creates new maps.
    #[pyo3(signature = (pin_root = None))]
    fn create_maps(
        &self,
        py: Python<'_>,
        pin_root: Option<PathBuf>,
    ) -> PyResult<(Vec<PyMap>, Vec<String>)> {
        guard(py, || {
            let (maps, warnings) = self
                .with(|o| runtime::object::create_maps(o, pin_root.as_deref()))
                .map_err(|(name, e)| crate::maps::map_error(py, &name, &e))?;
            Ok((maps.into_iter().map(PyMap::new).collect(), warnings))
        })
    }

    /// The program `name`, bound to `maps` (from `create_maps`).
    fn program(
        &self,
        py: Python<'_>,
        name: &str,
        maps: Vec<PyRef<'_, PyMap>>,
    ) -> PyResult<crate::PyProgram> {
        guard(py, || {
            self.with(|o| {
                let p = o
                    .program(name)
                    .ok_or_else(|| elf_error(format!("the object has no program '{name}'")))?;
                let prog = p.program.clone().map_err(|e| program_error(py, &e))?;
                let lines = p
                    .line_info
                    .iter()
                    .map(|l| {
                        (
                            l.insn,
                            format!("{}:{}: {}", l.file, l.line, l.source.trim()),
                        )
                    })
                    .collect();
                Ok(crate::PyProgram::with_meta(
                    prog,
                    crate::ProgramMeta {
                        name: p.name.clone(),
                        section: Some(p.section.clone()),
                        prog_type: p.prog_type,
                        maps: maps.iter().map(|m| m.inner().clone()).collect(),
                        line_info: lines,
                    },
                ))
            })
        })
    }

    /// Fills program arrays from their `.maps` initialisers, with the
    /// loaded programs by name.
    fn init_prog_arrays(
        &self,
        py: Python<'_>,
        maps: Vec<PyRef<'_, PyMap>>,
        programs: HashMap<String, PyRef<'_, PyExecutable>>,
    ) -> PyResult<()> {
        let maps: Vec<_> = maps.iter().map(|m| m.inner().clone()).collect();
        let mut progs = HashMap::new();
        for (name, exe) in &programs {
            let loaded = exe.loaded().ok_or_else(|| {
                crate::errors::Error::new_err(format!(
                    "program '{name}' was not loaded from an object"
                ))
            })?;
            progs.insert(name.clone(), (loaded.clone(), loaded.id));
        }
        guard(py, || {
            self.with(|o| runtime::object::init_prog_arrays(o, &maps, &progs))
                .map_err(|e| crate::maps::new_map_error(py, e.to_string(), e.errno(), "", None))
        })
    }

    /// Sets a global variable's initial bytes (before `create_maps`).
    fn set_var(&self, map_name: &str, var_name: &str, value: &[u8]) -> PyResult<()> {
        self.with(|o| {
            let i = o
                .map_index(map_name)
                .ok_or_else(|| elf_error(format!("the object has no map '{map_name}'")))?;
            o.maps[i].set_var(var_name, value).map_err(elf_error)
        })
    }
}

/// Puts a loaded program into slot `index` of a program array (`None`
/// empties the slot).
#[pyfunction]
#[pyo3(signature = (map, index, program))]
fn prog_array_set(
    py: Python<'_>,
    map: PyRef<'_, PyMap>,
    index: u32,
    program: Option<PyRef<'_, PyExecutable>>,
) -> PyResult<()> {
    let m = map.inner().clone();
    let array = m
        .downcast::<ebpfvm_core::maps::prog_array::ProgArray>()
        .ok_or_else(|| {
            crate::errors::MapError::new_err(format!(
                "map '{}' is a {}, not a prog_array",
                m.name(),
                m.map_type()
            ))
        })?;
    let r = match program {
        None => array.clear(index),
        Some(exe) => {
            let loaded = exe.loaded().ok_or_else(|| {
                crate::errors::Error::new_err(
                    "only programs loaded with a program type can be tail-called; load it from an object or with prog_type=",
                )
            })?;
            array.set(index, loaded.clone(), loaded.id)
        }
    };
    r.map_err(|e| crate::maps::map_error(py, m.name(), &e))
}

/// Empties every slot of a program array; returns how many were set.
#[pyfunction]
fn prog_array_clear(map: PyRef<'_, PyMap>) -> PyResult<usize> {
    let m = map.inner();
    let array = m
        .downcast::<ebpfvm_core::maps::prog_array::ProgArray>()
        .ok_or_else(|| {
            crate::errors::MapError::new_err(format!(
                "map '{}' is a {}, not a prog_array",
                m.name(),
                m.map_type()
            ))
        })?;
    Ok(array.clear_all())
}

/// Lines `bpf_trace_printk` wrote since the last call (oldest first),
/// waiting up to `timeout` seconds for one when there are none.
#[pyfunction]
#[pyo3(signature = (timeout = None))]
fn read_trace(py: Python<'_>, timeout: Option<f64>) -> Vec<String> {
    let t = timeout.map(|s| std::time::Duration::from_secs_f64(s.max(0.0)));
    py.detach(|| runtime::trace::take_lines(t))
}

/// The named fields of a program type's context: `(name, offset, size)`.
#[pyfunction]
fn context_fields(prog_type: &str) -> PyResult<Vec<(String, u32, u32)>> {
    let t = ProgType::from_name(prog_type).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown program type {prog_type:?}"))
    })?;
    Ok(contexts::context_for(t)
        .map(|d| {
            d.fields
                .iter()
                .map(|f| (f.name.to_string(), f.offset, f.size))
                .collect()
        })
        .unwrap_or_default())
}

/// The result of running a program as its type.
#[pyclass(frozen, module = "ebpfvm", name = "RunResult")]
pub struct PyRunResult {
    pub(crate) result: RunResult,
    pub(crate) prog_type: ProgType,
}

#[pymethods]
impl PyRunResult {
    /// r0 of the program that finished (an `XdpAction` for XDP programs).
    #[getter]
    fn retval<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = self.result.retval;
        if self.prog_type == ProgType::Xdp && v <= 4 {
            return py.import("ebpfvm")?.getattr("XdpAction")?.call1((v,));
        }
        Ok(v.into_pyobject(py)?.into_any())
    }

    /// Same as `retval` (the name XDP users expect).
    #[getter]
    fn action<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.retval(py)
    }

    /// The packet after the run.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.result.data)
    }

    #[getter]
    fn instructions(&self) -> u64 {
        self.result.instructions
    }

    #[getter]
    fn tail_calls(&self) -> u32 {
        self.result.tail_calls
    }

    /// Where `bpf_redirect*` sent the packet (an ifindex or map key), or None.
    #[getter]
    fn redirect(&self) -> Option<u64> {
        self.result.redirect
    }

    /// The context's named fields after the run (`cb` and other arrays as
    /// lists), e.g. `{"mark": 7, "priority": 0, "cb": [0, 0, 0, 0, 0], ...}`.
    #[getter]
    fn ctx<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let Some(desc) = contexts::context_for(self.prog_type) else {
            return Ok(d);
        };
        let bytes = &self.result.ctx;
        let mut arrays: Vec<(String, Vec<u64>)> = Vec::new();
        for f in desc.fields {
            let (o, n) = (f.offset as usize, f.size as usize);
            if o + n > bytes.len() || !(1..=8).contains(&n) {
                continue;
            }
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&bytes[o..o + n]);
            let v = u64::from_le_bytes(v);
            // "cb[2]" and friends are gathered into lists.
            if let Some((base, _)) = f.name.split_once('[') {
                match arrays.iter_mut().find(|(b, _)| b == base) {
                    Some((_, vs)) => vs.push(v),
                    None => arrays.push((base.to_string(), vec![v])),
                }
            } else {
                d.set_item(f.name, v)?;
            }
        }
        for (base, vs) in arrays {
            d.set_item(base, vs)?;
        }
        Ok(d)
    }

    /// The raw public context structure after the run.
    #[getter]
    fn ctx_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.result.ctx)
    }

    fn __repr__(&self) -> String {
        format!(
            "RunResult(retval={}, data=<{} bytes>, tail_calls={})",
            self.result.retval,
            self.result.data.len(),
            self.result.tail_calls
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyElfObject>()?;
    m.add_class::<PyRunResult>()?;
    m.add_function(wrap_pyfunction!(prog_array_set, m)?)?;
    m.add_function(wrap_pyfunction!(prog_array_clear, m)?)?;
    m.add_function(wrap_pyfunction!(read_trace, m)?)?;
    m.add_function(wrap_pyfunction!(context_fields, m)?)?;
    Ok(())
}
