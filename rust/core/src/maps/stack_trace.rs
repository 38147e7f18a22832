//! `BPF_MAP_TYPE_STACK_TRACE`: stack traces stored by id for
//! `bpf_get_stackid`.
//!
//! A trace (instruction pointers, innermost first) is hashed; the hash
//! picks one of `max_entries` rounded up to a power of two buckets, and the
//! bucket index is the stack id. A bucket holding a different trace is a
//! collision: `EEXIST` unless the caller passes `BPF_F_REUSE_STACKID`. User
//! space reads a trace by id as `value_size / 8` u64s, zero-padded.
//! The runtime supplies the instruction pointers (in ebpfvm, of whatever
//! "stack" the hook exposes, e.g. Python frames).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Mutex;

use super::bloom_filter::jhash;
use super::reference_maps::BPF_F_NUMA_NODE;
use super::reference_maps::{check_create_flags, def_error, index_key, BPF_F_ACCESS_MASK};
use super::{MapDef, MapError, MapImpl};

/// Low 8 bits of the flags: frames to skip.
pub const BPF_F_SKIP_FIELD_MASK: u64 = 0xff;
pub const BPF_F_USER_STACK: u64 = 1 << 8;
/// Compare traces by hash only.
pub const BPF_F_FAST_STACK_CMP: u64 = 1 << 9;
/// Replace a colliding trace instead of failing.
pub const BPF_F_REUSE_STACKID: u64 = 1 << 10;
/// `BPF_F_STACK_BUILD_ID` creation flag (build-id + offset entries).
pub const BPF_F_STACK_BUILD_ID: u32 = 1 << 5;
/// The kernel's default `perf_event_max_stack`.
pub const MAX_STACK_DEPTH: u32 = 127;

struct Bucket {
    hash: u32,
    ips: Box<[u64]>,
}

/// A stack trace map.
pub struct StackTraceMap {
    max_depth: usize,
    value_size: usize,
    n_buckets: u32,
    /// Only buckets holding a trace exist.
    buckets: Mutex<BTreeMap<u32, Bucket>>,
}

impl StackTraceMap {
    pub fn new(def: &MapDef) -> Result<StackTraceMap, MapError> {
        if def.flags & BPF_F_STACK_BUILD_ID != 0 {
            return Err(MapError::unsupported(format!(
                "stack_trace map '{}': build-id stacks need the build ids of mapped ELF files, which ebpfvm does not collect",
                def.name
            )));
        }
        check_create_flags(def, BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK)?;
        if def.key_size != 4 {
            return Err(def_error(
                def,
                format!("key_size must be 4, got {}", def.key_size),
            ));
        }
        if def.value_size == 0
            || !def.value_size.is_multiple_of(8)
            || def.value_size / 8 > MAX_STACK_DEPTH
        {
            return Err(def_error(
                def,
                format!(
                    "value_size must be a multiple of 8 holding at most {MAX_STACK_DEPTH} frames, got {}",
                    def.value_size
                ),
            ));
        }
        if def.max_entries == 0 || def.max_entries > 1 << 31 {
            return Err(def_error(
                def,
                format!("max_entries must be 1..=2^31, got {}", def.max_entries),
            ));
        }
        Ok(StackTraceMap {
            max_depth: def.value_size as usize / 8,
            value_size: def.value_size as usize,
            n_buckets: def.max_entries.next_power_of_two(),
            buckets: Mutex::new(BTreeMap::new()),
        })
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Bucket>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `bpf_get_stackid`: stores `ips` (innermost first) after skipping
    /// `flags & 0xff` frames, keeping at most `value_size / 8`, and returns
    /// its id. `Exists` when the bucket holds another trace and
    /// `BPF_F_REUSE_STACKID` is not set; `Invalid` when no frame is left
    /// (the kernel's `EFAULT`) or flags are unknown.
    pub fn get_stackid(&self, ips: &[u64], flags: u64) -> Result<u32, MapError> {
        let known =
            BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP | BPF_F_REUSE_STACKID;
        if flags & !known != 0 {
            return Err(MapError::invalid(format!(
                "get_stackid flags {flags:#x} have unknown bits"
            )));
        }
        let skip = (flags & BPF_F_SKIP_FIELD_MASK) as usize;
        if ips.len() <= skip {
            return Err(MapError::invalid(format!(
                "stack of {} frames has nothing left after skipping {skip} (EFAULT in the kernel)",
                ips.len()
            )));
        }
        let trace = &ips[skip..ips.len().min(skip + self.max_depth)];
        let bytes: Vec<u8> = trace.iter().flat_map(|ip| ip.to_le_bytes()).collect();
        let hash = jhash(&bytes, 0);
        let id = hash & (self.n_buckets - 1);
        let mut buckets = self.buckets();
        if let Some(old) = buckets.get(&id) {
            let same =
                old.hash == hash && (flags & BPF_F_FAST_STACK_CMP != 0 || *old.ips == *trace);
            if same {
                return Ok(id);
            }
            if flags & BPF_F_REUSE_STACKID == 0 {
                return Err(MapError::Exists);
            }
        }
        buckets.insert(
            id,
            Bucket {
                hash,
                ips: trace.into(),
            },
        );
        Ok(id)
    }
}

impl MapImpl for StackTraceMap {
    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let id = index_key(key)?;
        let buckets = self.buckets();
        let bucket = buckets.get(&id).ok_or(MapError::NotFound)?;
        let mut value: Vec<u8> = bucket.ips.iter().flat_map(|ip| ip.to_ne_bytes()).collect();
        value.resize(self.value_size, 0);
        Ok(value)
    }

    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::invalid(
            "stack traces are stored by bpf_get_stackid, not by updates",
        ))
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let id = index_key(key)?;
        self.buckets()
            .remove(&id)
            .map(drop)
            .ok_or(MapError::NotFound)
    }

    /// Ids holding a trace, in order; an absent id restarts at the first.
    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let buckets = self.buckets();
        let after = match key {
            Some(k) => Some(index_key(k)?).filter(|id| buckets.contains_key(id)),
            None => None,
        };
        let next = match after {
            None => buckets.keys().next(),
            Some(id) => buckets.range(id + 1..).next().map(|(k, _)| k),
        };
        Ok(next.map(|id| id.to_le_bytes().to_vec()))
    }

    fn len(&self) -> usize {
        self.buckets().len()
    }

    fn memory_usage(&self) -> usize {
        self.buckets().values().map(|b| b.ips.len() * 8 + 48).sum()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
