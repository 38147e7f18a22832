//! Map helpers: lookup, update, delete, push, pop, peek.

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::array_of_maps::ArrayOfMaps;
use crate::maps::hash_of_maps::HashOfMaps;
use crate::maps::{cpu, MapType, BPF_F_RDONLY_PROG};
use crate::runtime::{Environment, MapRef};

use super::{errno, fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (1, map_lookup_elem),
    (2, map_update_elem),
    (3, map_delete_elem),
    (87, map_push_elem),
    (88, map_pop_elem),
    (89, map_peek_elem),
    (195, map_lookup_percpu_elem),
];

fn map<'e>(env: &'e Environment, handle: u64, helper: &str) -> Result<MapRef<'e>, HelperError> {
    env.map(handle)
        .ok_or_else(|| fault(format!("{helper}: r1 (0x{handle:x}) is not a map")))
}

fn key<'m>(
    mem: &'m HelperMemory<'_>,
    m: &MapRef<'_>,
    addr: u64,
    helper: &str,
) -> Result<&'m [u8], HelperError> {
    mem.slice(addr, m.def().key_size as u64).map_err(|_| {
        fault(format!(
            "{helper}: the {}-byte key of map '{}' at r2 (0x{addr:x}) is not readable memory of the program",
            m.def().key_size,
            m.name()
        ))
    })
}

fn lookup(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    handle: u64,
    key_addr: u64,
    cpu: u32,
    helper: &str,
) -> Result<u64, HelperError> {
    let m = map(env, handle, helper)?;
    // The key is copied out (the grant below needs the memory mutably):
    // on the stack for the usual small keys.
    let mut small = [0u8; 64];
    let mut large = Vec::new();
    let k: &[u8] = {
        let src = key(mem, &m, key_addr, helper)?;
        if src.len() <= small.len() {
            small[..src.len()].copy_from_slice(src);
            &small[..src.len()]
        } else {
            large.extend_from_slice(src);
            &large
        }
    };
    // Maps of maps hand out the inner map itself.
    if m.map_type() == MapType::ArrayOfMaps || m.map_type() == MapType::HashOfMaps {
        let inner = match m.map_type() {
            MapType::ArrayOfMaps => m.downcast::<ArrayOfMaps>().and_then(|o| o.lookup_map(k)),
            _ => m.downcast::<HashOfMaps>().and_then(|o| o.lookup_map(k)),
        };
        return Ok(inner.map_or(0, |i| i.handle()));
    }
    if m.map_type() == MapType::ProgArray {
        return Err(fault(format!(
            "{helper}: program arrays cannot be read by programs (map '{}')",
            m.name()
        )));
    }
    let Some(p) = m.imp().lookup_ptr(k, cpu) else {
        return Ok(0);
    };
    let writable = m.def().flags & BPF_F_RDONLY_PROG == 0;
    // SAFETY: map values stay allocated while the map lives, and the
    // environment keeps the map alive for the run.
    unsafe { mem.grant(p.as_ptr(), m.def().value_size as usize, writable) };
    Ok(p.as_ptr() as u64)
}

fn map_lookup_elem(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    lookup(
        env,
        mem,
        a[0],
        a[1],
        cpu::current_cpu(),
        "bpf_map_lookup_elem",
    )
}

fn map_lookup_percpu_elem(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let m = map(env, a[0], "bpf_map_lookup_percpu_elem")?;
    if !m.map_type().is_percpu() || a[2] >= m.num_cpus() as u64 {
        return Ok(0);
    }
    drop(m);
    lookup(
        env,
        mem,
        a[0],
        a[1],
        a[2] as u32,
        "bpf_map_lookup_percpu_elem",
    )
}

fn map_update_elem(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_map_update_elem";
    let m = map(env, a[0], helper)?;
    if m.map_type().is_map_of_maps() || m.map_type() == MapType::ProgArray {
        return Ok(errno(95));
    }
    let k = key(mem, &m, a[1], helper)?;
    let v = mem.slice(a[2], m.def().value_size as u64).map_err(|_| {
        fault(format!(
            "{helper}: the {}-byte value for map '{}' at r3 (0x{:x}) is not readable memory of the program",
            m.def().value_size,
            m.name(),
            a[2]
        ))
    })?;
    if a[3] > 4 || a[3] & 3 == 3 {
        return Ok(errno(22));
    }
    Ok(
        match m.imp().update_from_program(k, v, a[3], cpu::current_cpu()) {
            Ok(()) => 0,
            Err(e) => errno(e.errno()),
        },
    )
}

fn map_delete_elem(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_map_delete_elem";
    let m = map(env, a[0], helper)?;
    if m.map_type().is_map_of_maps() || m.map_type() == MapType::ProgArray {
        return Ok(errno(95));
    }
    let k = key(mem, &m, a[1], helper)?;
    Ok(match m.imp().delete(k) {
        Ok(()) => 0,
        Err(e) => errno(e.errno()),
    })
}

fn map_push_elem(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_map_push_elem";
    let m = map(env, a[0], helper)?;
    let v = mem.slice(a[1], m.def().value_size as u64).map_err(|_| {
        fault(format!(
            "{helper}: the {}-byte value for map '{}' at r2 (0x{:x}) is not readable memory of the program",
            m.def().value_size,
            m.name(),
            a[1]
        ))
    })?;
    Ok(match m.imp().push(v, a[2]) {
        Ok(()) => 0,
        Err(e) => errno(e.errno()),
    })
}

fn pop_or_peek(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
    pop: bool,
) -> Result<u64, HelperError> {
    let helper = if pop {
        "bpf_map_pop_elem"
    } else {
        "bpf_map_peek_elem"
    };
    let m = map(env, a[0], helper)?;
    let size = m.def().value_size as u64;
    if m.map_type() == MapType::BloomFilter {
        // The bloom filter's peek is its membership test: r2 is the value.
        let v = mem
            .slice(a[1], size)
            .map_err(|_| fault(format!("{helper}: r2 is not {size} readable bytes")))?;
        return Ok(match m.imp().peek(Some(v)) {
            Ok(_) => 0,
            Err(e) => errno(e.errno()),
        });
    }
    let got = if pop {
        m.imp().pop()
    } else {
        m.imp().peek(None)
    };
    let out = mem.slice_mut(a[1], size).map_err(|_| {
        fault(format!(
            "{helper}: r2 (0x{:x}) is not {size} writable bytes of the program",
            a[1]
        ))
    })?;
    Ok(match got {
        Ok(v) => {
            let n = v.len().min(out.len());
            out[..n].copy_from_slice(&v[..n]);
            0
        }
        Err(e) => errno(e.errno()),
    })
}

fn map_pop_elem(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    pop_or_peek(env, mem, a, true)
}

fn map_peek_elem(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    pop_or_peek(env, mem, a, false)
}
