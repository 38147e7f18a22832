//! Maps: kernel-compatible key/value stores shared by programs and Python.
//!
//! Every map is a [`Map`] (held in an `Arc`): a global id, its [`MapDef`]
//! and an implementation of [`MapImpl`], one file per map type. All maps
//! are internally synchronised, so programs running on several threads
//! (with the GIL released) and Python may use one map at once.
//!
//! Two views of a value exist, as in the kernel:
//! - *program* view: [`MapImpl::lookup_ptr`] hands out a pointer into the
//!   map's own storage (for per-CPU maps, the running CPU's slot), valid as
//!   long as the map lives (storage is never freed before the map is);
//! - *user* view: [`MapImpl::lookup`]/[`MapImpl::update`] copy bytes; for
//!   per-CPU maps the value is every CPU's slot, each padded to 8 bytes.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};

pub mod cpu;
// Map types (one file each) are declared below this line.
pub mod array;
pub mod array_of_maps;
pub mod bloom_filter;
pub mod hash;
pub mod hash_of_maps;
pub mod local_storage;
pub mod lpm_trie;
pub mod lru_hash;
pub mod percpu_array;
pub mod percpu_hash;
pub mod perf_event_array;
pub mod prog_array;
pub mod queue;
pub mod reference_maps;
mod region;
pub mod ringbuf;
pub mod stack;
pub mod stack_trace;

/// `BPF_ANY`: create or update.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create only.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update only.
pub const BPF_EXIST: u64 = 2;
/// `BPF_F_LOCK`: update under the value's spin lock.
pub const BPF_F_LOCK: u64 = 4;

/// Map creation flags (`map_flags`) ebpfvm understands.
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
pub const BPF_F_RDONLY: u32 = 1 << 3;
pub const BPF_F_WRONLY: u32 = 1 << 4;
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
pub const BPF_F_WRONLY_PROG: u32 = 1 << 8;
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
pub const BPF_F_INNER_MAP: u32 = 1 << 12;

/// Kernel map type numbers (`enum bpf_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapType {
    Hash = 1,
    Array = 2,
    ProgArray = 3,
    PerfEventArray = 4,
    PercpuHash = 5,
    PercpuArray = 6,
    StackTrace = 7,
    CgroupArray = 8,
    LruHash = 9,
    LruPercpuHash = 10,
    LpmTrie = 11,
    ArrayOfMaps = 12,
    HashOfMaps = 13,
    Devmap = 14,
    Sockmap = 15,
    Cpumap = 16,
    Xskmap = 17,
    Sockhash = 18,
    CgroupStorage = 19,
    ReuseportSockarray = 20,
    PercpuCgroupStorage = 21,
    Queue = 22,
    Stack = 23,
    SkStorage = 24,
    DevmapHash = 25,
    StructOps = 26,
    Ringbuf = 27,
    InodeStorage = 28,
    TaskStorage = 29,
    BloomFilter = 30,
    UserRingbuf = 31,
    CgrpStorage = 32,
    Arena = 33,
}

impl MapType {
    const ALL: [MapType; 33] = [
        MapType::Hash,
        MapType::Array,
        MapType::ProgArray,
        MapType::PerfEventArray,
        MapType::PercpuHash,
        MapType::PercpuArray,
        MapType::StackTrace,
        MapType::CgroupArray,
        MapType::LruHash,
        MapType::LruPercpuHash,
        MapType::LpmTrie,
        MapType::ArrayOfMaps,
        MapType::HashOfMaps,
        MapType::Devmap,
        MapType::Sockmap,
        MapType::Cpumap,
        MapType::Xskmap,
        MapType::Sockhash,
        MapType::CgroupStorage,
        MapType::ReuseportSockarray,
        MapType::PercpuCgroupStorage,
        MapType::Queue,
        MapType::Stack,
        MapType::SkStorage,
        MapType::DevmapHash,
        MapType::StructOps,
        MapType::Ringbuf,
        MapType::InodeStorage,
        MapType::TaskStorage,
        MapType::BloomFilter,
        MapType::UserRingbuf,
        MapType::CgrpStorage,
        MapType::Arena,
    ];

    pub fn from_u32(n: u32) -> Option<MapType> {
        Self::ALL.iter().copied().find(|t| *t as u32 == n)
    }

    /// The name libbpf and bpftool use (`"hash"`, `"lru_percpu_hash"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::ProgArray => "prog_array",
            MapType::PerfEventArray => "perf_event_array",
            MapType::PercpuHash => "percpu_hash",
            MapType::PercpuArray => "percpu_array",
            MapType::StackTrace => "stack_trace",
            MapType::CgroupArray => "cgroup_array",
            MapType::LruHash => "lru_hash",
            MapType::LruPercpuHash => "lru_percpu_hash",
            MapType::LpmTrie => "lpm_trie",
            MapType::ArrayOfMaps => "array_of_maps",
            MapType::HashOfMaps => "hash_of_maps",
            MapType::Devmap => "devmap",
            MapType::Sockmap => "sockmap",
            MapType::Cpumap => "cpumap",
            MapType::Xskmap => "xskmap",
            MapType::Sockhash => "sockhash",
            MapType::CgroupStorage => "cgroup_storage",
            MapType::ReuseportSockarray => "reuseport_sockarray",
            MapType::PercpuCgroupStorage => "percpu_cgroup_storage",
            MapType::Queue => "queue",
            MapType::Stack => "stack",
            MapType::SkStorage => "sk_storage",
            MapType::DevmapHash => "devmap_hash",
            MapType::StructOps => "struct_ops",
            MapType::Ringbuf => "ringbuf",
            MapType::InodeStorage => "inode_storage",
            MapType::TaskStorage => "task_storage",
            MapType::BloomFilter => "bloom_filter",
            MapType::UserRingbuf => "user_ringbuf",
            MapType::CgrpStorage => "cgrp_storage",
            MapType::Arena => "arena",
        }
    }

    pub fn from_name(name: &str) -> Option<MapType> {
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// Per-CPU maps keep one value slot per virtual CPU.
    pub fn is_percpu(self) -> bool {
        matches!(
            self,
            MapType::PercpuHash
                | MapType::PercpuArray
                | MapType::LruPercpuHash
                | MapType::PercpuCgroupStorage
        )
    }

    /// Maps whose values are other maps.
    pub fn is_map_of_maps(self) -> bool {
        matches!(self, MapType::ArrayOfMaps | MapType::HashOfMaps)
    }
}

impl fmt::Display for MapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a map is: the fields of the kernel's `bpf_attr` for `BPF_MAP_CREATE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDef {
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    /// Type-specific extra (the bloom filter's hash count, ...).
    pub map_extra: u64,
    /// For maps of maps: the definition every inner map must match.
    pub inner: Option<Box<MapDef>>,
}

impl MapDef {
    pub fn new(map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> MapDef {
        MapDef {
            name: String::new(),
            map_type,
            key_size,
            value_size,
            max_entries,
            flags: 0,
            map_extra: 0,
            inner: None,
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> MapDef {
        self.name = name.into();
        self
    }

    /// Bytes of one CPU's slot in a per-CPU value as user space sees it.
    pub fn percpu_stride(&self) -> usize {
        (self.value_size as usize).next_multiple_of(8)
    }
}

/// Why a map operation failed; each maps to the errno the kernel returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapError {
    /// ENOENT: no such key (or empty queue/stack/ring).
    NotFound,
    /// EEXIST: `BPF_NOEXIST` and the key is present.
    Exists,
    /// E2BIG: the map is full (hash maps), or the index is out of range.
    TooBig,
    /// ENOSPC: no room (queue, stack).
    NoSpace,
    /// EINVAL: a bad argument (key or value size, flags, definition).
    Invalid(String),
    /// EOPNOTSUPP: the operation does not exist for this map type.
    Unsupported(String),
    /// EBUSY: a lock could not be taken.
    Busy,
    /// A pinned map's file could not be created, opened or mapped.
    Io(String),
}

impl MapError {
    pub fn invalid(msg: impl Into<String>) -> MapError {
        MapError::Invalid(msg.into())
    }

    pub fn unsupported(msg: impl Into<String>) -> MapError {
        MapError::Unsupported(msg.into())
    }

    /// The positive errno (helpers return its negation to programs).
    pub fn errno(&self) -> i32 {
        match self {
            MapError::NotFound => 2,
            MapError::Exists => 17,
            MapError::TooBig => 7,
            MapError::NoSpace => 28,
            MapError::Invalid(_) => 22,
            MapError::Unsupported(_) => 95,
            MapError::Busy => 16,
            MapError::Io(_) => 5,
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::NotFound => f.write_str("no such key (ENOENT)"),
            MapError::Exists => f.write_str("key already exists (EEXIST)"),
            MapError::TooBig => f.write_str("map is full or index out of range (E2BIG)"),
            MapError::NoSpace => f.write_str("no space left in the map (ENOSPC)"),
            MapError::Invalid(m) => write!(f, "{m} (EINVAL)"),
            MapError::Unsupported(m) => write!(f, "{m} (EOPNOTSUPP)"),
            MapError::Busy => f.write_str("map is busy (EBUSY)"),
            MapError::Io(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for MapError {}

/// The operations of one map type. Methods a type does not have keep the
/// default, which reports `EOPNOTSUPP` naming the operation.
///
/// Keys and values are exactly `key_size`/`value_size` bytes (the [`Map`]
/// wrapper checks sizes before calling in, so implementations may assume
/// them), except per-CPU user-view values, which are `ncpus * stride`.
pub trait MapImpl: Send + Sync {
    /// Program view: a pointer to the value stored for `key` (the slot of
    /// `cpu` for per-CPU maps). The memory stays allocated until the map is
    /// dropped, even if the entry is deleted (as with preallocated kernel
    /// maps, a later entry may then reuse it).
    fn lookup_ptr(&self, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// User view: a copy of the value.
    fn lookup(&self, _key: &[u8]) -> Result<Vec<u8>, MapError> {
        Err(MapError::unsupported("lookup"))
    }

    /// User view: store `value` (all CPUs' slots for per-CPU maps).
    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::unsupported("update"))
    }

    /// Program view of update: for per-CPU maps only `cpu`'s slot is
    /// written and `value` is one slot's worth; others behave like `update`.
    fn update_from_program(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        _cpu: u32,
    ) -> Result<(), MapError> {
        self.update(key, value, flags)
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::unsupported("delete"))
    }

    /// The key after `key` in iteration order (the first key for `None`);
    /// `Ok(None)` at the end. A `key` not in the map restarts from the first
    /// key, as the kernel does for hash maps.
    fn next_key(&self, _key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        Err(MapError::unsupported("iteration"))
    }

    /// Queue, stack and bloom filter: add a value (`BPF_EXIST` makes a full
    /// queue or stack drop its oldest element).
    fn push(&self, _value: &[u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::unsupported("push"))
    }

    /// Queue and stack: remove and return the next value.
    fn pop(&self) -> Result<Vec<u8>, MapError> {
        Err(MapError::unsupported("pop"))
    }

    /// Queue and stack: the next value without removing it. Bloom filter:
    /// `Ok` with an empty vector if `value` may be present (`peek` is the
    /// bloom filter's membership test), `NotFound` if certainly absent.
    fn peek(&self, _value: Option<&[u8]>) -> Result<Vec<u8>, MapError> {
        Err(MapError::unsupported("peek"))
    }

    /// Number of entries currently stored (for arrays: `max_entries`).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Array-like maps: the contiguous storage of all values, for global
    /// data (`lddw map_value`), zero-copy NumPy views and `mmap`.
    fn value_region(&self) -> Option<(NonNull<u8>, usize)> {
        None
    }

    /// Bytes of memory the map holds (reported to users).
    fn memory_usage(&self) -> usize;

    /// Virtual CPUs of a per-CPU map: fixed when it is created (a pinned
    /// map keeps the count recorded in its file).
    fn num_cpus(&self) -> usize {
        cpu::num_cpus()
    }

    /// Type-specific operations (ring buffer consumers, program arrays,
    /// maps of maps) are reached by downcasting.
    fn as_any(&self) -> &dyn Any;
}

/// A map: its id, definition and storage. Held in an `Arc`; the address of
/// the `Map` is the *handle* programs see in registers (what the kernel
/// calls a `struct bpf_map *`).
pub struct Map {
    id: u32,
    def: MapDef,
    pin_path: Option<PathBuf>,
    imp: Box<dyn MapImpl>,
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("id", &self.id)
            .field("def", &self.def)
            .field("pin_path", &self.pin_path)
            .finish()
    }
}

struct Registry {
    by_id: HashMap<u32, Weak<Map>>,
    by_handle: HashMap<u64, Weak<Map>>,
}

fn registry() -> &'static RwLock<Registry> {
    static R: OnceLock<RwLock<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        RwLock::new(Registry {
            by_id: HashMap::new(),
            by_handle: HashMap::new(),
        })
    })
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

impl Map {
    /// Creates an empty map.
    pub fn create(def: MapDef) -> Result<Arc<Map>, MapError> {
        validate(&def)?;
        let imp = new_impl(&def, None)?;
        Ok(Self::register(def, imp, None))
    }

    /// Opens the map pinned at `path`, creating it there (empty) if the file
    /// does not exist. An existing pin must match `def` (type, sizes,
    /// max_entries, flags) or the open fails.
    pub fn open_pinned(def: MapDef, path: &Path) -> Result<Arc<Map>, MapError> {
        validate(&def)?;
        let imp = new_impl(&def, Some(path))?;
        Ok(Self::register(def, imp, Some(path.to_path_buf())))
    }

    fn register(def: MapDef, imp: Box<dyn MapImpl>, pin_path: Option<PathBuf>) -> Arc<Map> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let map = Arc::new(Map {
            id,
            def,
            pin_path,
            imp,
        });
        let mut r = registry().write().unwrap_or_else(|e| e.into_inner());
        r.by_id.insert(id, Arc::downgrade(&map));
        r.by_handle.insert(map.handle(), Arc::downgrade(&map));
        map
    }

    /// The map with global id `id`, if it is still alive.
    pub fn by_id(id: u32) -> Option<Arc<Map>> {
        let r = registry().read().unwrap_or_else(|e| e.into_inner());
        r.by_id.get(&id).and_then(Weak::upgrade)
    }

    /// The live map whose handle is `handle`; `None` for any other value,
    /// so a forged pointer from an unverified program is harmless.
    pub fn from_handle(handle: u64) -> Option<Arc<Map>> {
        let r = registry().read().unwrap_or_else(|e| e.into_inner());
        r.by_handle.get(&handle).and_then(Weak::upgrade)
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn def(&self) -> &MapDef {
        &self.def
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn map_type(&self) -> MapType {
        self.def.map_type
    }

    pub fn pin_path(&self) -> Option<&Path> {
        self.pin_path.as_deref()
    }

    /// The value programs hold for this map (its address).
    pub fn handle(&self) -> u64 {
        self as *const Map as u64
    }

    pub fn imp(&self) -> &dyn MapImpl {
        &*self.imp
    }

    /// The implementation as its concrete type (`RingBuf`, `ProgArray`, ...).
    pub fn downcast<T: 'static>(&self) -> Option<&T> {
        self.imp.as_any().downcast_ref::<T>()
    }

    /// Bytes of a user-view value: per-CPU maps hold one padded slot per CPU.
    pub fn user_value_size(&self) -> usize {
        if self.def.map_type.is_percpu() {
            self.def.percpu_stride() * self.num_cpus()
        } else {
            self.def.value_size as usize
        }
    }

    /// Virtual CPUs of a per-CPU map (fixed when it is created).
    pub fn num_cpus(&self) -> usize {
        self.imp.num_cpus()
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() != self.def.key_size as usize {
            return Err(MapError::invalid(format!(
                "map '{}' has {}-byte keys, got {} bytes",
                self.def.name,
                self.def.key_size,
                key.len()
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8], expected: usize) -> Result<(), MapError> {
        if value.len() != expected {
            return Err(MapError::invalid(format!(
                "map '{}' has {expected}-byte values, got {} bytes",
                self.def.name,
                value.len()
            )));
        }
        Ok(())
    }

    /// User view lookup, with the key size checked.
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.check_key(key)?;
        self.imp.lookup(key)
    }

    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.check_key(key)?;
        self.check_value(value, self.user_value_size())?;
        if flags & !(BPF_NOEXIST | BPF_EXIST | BPF_F_LOCK) != 0
            || flags & (BPF_NOEXIST | BPF_EXIST) == (BPF_NOEXIST | BPF_EXIST)
        {
            return Err(MapError::invalid(format!("bad update flags {flags:#x}")));
        }
        self.imp.update(key, value, flags)
    }

    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        self.imp.delete(key)
    }

    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        if let Some(k) = key {
            self.check_key(k)?;
        }
        self.imp.next_key(key)
    }

    pub fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        self.check_value(value, self.def.value_size as usize)?;
        self.imp.push(value, flags)
    }

    pub fn pop(&self) -> Result<Vec<u8>, MapError> {
        self.imp.pop()
    }

    pub fn peek(&self, value: Option<&[u8]>) -> Result<Vec<u8>, MapError> {
        if let Some(v) = value {
            self.check_value(v, self.def.value_size as usize)?;
        }
        self.imp.peek(value)
    }

    pub fn len(&self) -> usize {
        self.imp.len()
    }

    pub fn is_empty(&self) -> bool {
        self.imp.is_empty()
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        let mut r = registry().write().unwrap_or_else(|e| e.into_inner());
        r.by_id.remove(&self.id);
        r.by_handle.remove(&self.handle());
    }
}

/// Checks a definition against what every map type requires.
fn validate(def: &MapDef) -> Result<(), MapError> {
    let bad = |m: String| Err(MapError::Invalid(format!("map '{}': {m}", def.name)));
    // Storage owned by sockets, tasks, cgroups... has no size limit to give.
    let unsized_storage = matches!(
        def.map_type,
        MapType::SkStorage
            | MapType::InodeStorage
            | MapType::TaskStorage
            | MapType::CgrpStorage
            | MapType::CgroupStorage
            | MapType::PercpuCgroupStorage
    );
    if def.max_entries == 0 && def.map_type != MapType::PerfEventArray && !unsized_storage {
        return bad("max_entries must be positive".into());
    }
    if def.map_type.is_map_of_maps() && def.inner.is_none() {
        return bad(format!("a {} needs an inner map definition", def.map_type));
    }
    Ok(())
}

/// The implementation for `def`, backed by the file at `pin` if given.
fn new_impl(def: &MapDef, pin: Option<&Path>) -> Result<Box<dyn MapImpl>, MapError> {
    match def.map_type {
        // One arm per map type.
        MapType::Array => Ok(Box::new(array::Array::open(def, pin)?)),
        MapType::PercpuArray => Ok(Box::new(percpu_array::PercpuArray::open(def, pin)?)),
        MapType::Hash => Ok(Box::new(hash::Hash::open(def, pin)?)),
        MapType::PercpuHash => Ok(Box::new(percpu_hash::PercpuHash::open(def, pin)?)),
        MapType::LruHash => Ok(Box::new(lru_hash::LruHash::open(def, pin)?)),
        MapType::LruPercpuHash => Ok(Box::new(lru_hash::LruPercpuHash::open(def, pin)?)),
        MapType::Queue => reference_maps::unpinned(pin, || queue::QueueMap::new(def)),
        MapType::Stack => reference_maps::unpinned(pin, || stack::StackMap::new(def)),
        MapType::BloomFilter => {
            reference_maps::unpinned(pin, || bloom_filter::BloomFilter::new(def))
        }
        MapType::ProgArray => reference_maps::unpinned(pin, || prog_array::ProgArray::new(def)),
        MapType::ArrayOfMaps => {
            reference_maps::unpinned(pin, || array_of_maps::ArrayOfMaps::new(def))
        }
        MapType::HashOfMaps => reference_maps::unpinned(pin, || hash_of_maps::HashOfMaps::new(def)),
        MapType::Ringbuf => reference_maps::unpinned(pin, || ringbuf::RingBuf::new(def)),
        MapType::LpmTrie => reference_maps::unpinned(pin, || lpm_trie::LpmTrie::new(def)),
        MapType::PerfEventArray => {
            reference_maps::unpinned(pin, || perf_event_array::PerfEventArray::new(def))
        }
        MapType::StackTrace => {
            reference_maps::unpinned(pin, || stack_trace::StackTraceMap::new(def))
        }
        MapType::SkStorage
        | MapType::InodeStorage
        | MapType::TaskStorage
        | MapType::CgrpStorage => {
            reference_maps::unpinned(pin, || local_storage::LocalStorage::new(def))
        }
        MapType::CgroupStorage | MapType::PercpuCgroupStorage => {
            reference_maps::unpinned(pin, || local_storage::CgroupStorage::new(def))
        }
        MapType::StructOps | MapType::UserRingbuf | MapType::Arena => {
            Err(reference_maps::unsupported_type(def.map_type))
        }
        MapType::Devmap
        | MapType::DevmapHash
        | MapType::Cpumap
        | MapType::Xskmap
        | MapType::Sockmap
        | MapType::Sockhash
        | MapType::CgroupArray
        | MapType::ReuseportSockarray => {
            reference_maps::unpinned(pin, || reference_maps::ReferenceMap::new(def))
        }
    }
}
