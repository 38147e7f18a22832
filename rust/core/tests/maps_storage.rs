//! Array, per-CPU array, hash, per-CPU hash, LRU and LRU per-CPU hash maps:
//! kernel semantics, a differential test against a model, concurrency, and
//! (ignored by default) program-side timings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ebpfvm_core::maps::{
    Map, MapDef, MapError, MapType, BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC, BPF_NOEXIST,
};
use proptest::prelude::*;

fn create(map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> Arc<Map> {
    Map::create(MapDef::new(map_type, key_size, value_size, max_entries).named("test"))
        .unwrap_or_else(|e| panic!("creating a {map_type} map: {e}"))
}

fn k32(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}

fn v64(v: u64) -> [u8; 8] {
    v.to_ne_bytes()
}

fn as_u64(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes[..8].try_into().unwrap())
}

fn all_keys(map: &Map) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    while let Some(next) = map.next_key(cursor.as_deref()).unwrap() {
        assert!(
            keys.len() <= map.def().max_entries as usize,
            "iteration does not end"
        );
        keys.push(next.clone());
        cursor = Some(next);
    }
    keys
}

// ---------------------------------------------------------------- arrays

#[test]
fn array_values_start_zeroed_and_round_trip() {
    let map = create(MapType::Array, 4, 12, 5);
    for i in 0..5 {
        assert_eq!(map.lookup(&k32(i)).unwrap(), vec![0; 12]);
    }
    let value: Vec<u8> = (1..=12).collect();
    map.update(&k32(3), &value, BPF_ANY).unwrap();
    assert_eq!(map.lookup(&k32(3)).unwrap(), value);
    assert_eq!(map.lookup(&k32(2)).unwrap(), vec![0; 12]);
    map.update(&k32(3), &[9; 12], BPF_EXIST).unwrap();
    assert_eq!(map.lookup(&k32(3)).unwrap(), vec![9; 12]);
    assert_eq!(map.len(), 5);
}

#[test]
fn array_errors_follow_the_kernel() {
    let map = create(MapType::Array, 4, 8, 4);
    assert_eq!(map.lookup(&k32(4)), Err(MapError::NotFound));
    assert_eq!(map.lookup(&k32(u32::MAX)), Err(MapError::NotFound));
    assert_eq!(map.update(&k32(4), &v64(1), BPF_ANY), Err(MapError::TooBig));
    assert_eq!(
        map.update(&k32(1), &v64(1), BPF_NOEXIST),
        Err(MapError::Exists)
    );
    // The index is checked before the flag, as in the kernel.
    assert_eq!(
        map.update(&k32(9), &v64(1), BPF_NOEXIST),
        Err(MapError::TooBig)
    );
    assert!(matches!(map.delete(&k32(1)), Err(MapError::Invalid(_))));
    assert!(matches!(
        map.update(&k32(1), &v64(1), BPF_F_LOCK),
        Err(MapError::Invalid(_))
    ));
    assert!(map.imp().lookup_ptr(&k32(4), 0).is_none());
    assert!(map.imp().lookup_ptr(&[0, 0], 0).is_none());
    assert!(matches!(
        map.imp().update(&k32(0), &[1, 2, 3], BPF_ANY),
        Err(MapError::Invalid(_))
    ));
}

#[test]
fn array_iterates_indexes() {
    let map = create(MapType::Array, 4, 4, 3);
    assert_eq!(
        all_keys(&map),
        vec![k32(0).to_vec(), k32(1).to_vec(), k32(2).to_vec()]
    );
    // An out-of-range key restarts from the first index.
    assert_eq!(map.next_key(Some(&k32(77))).unwrap(), Some(k32(0).to_vec()));
}

#[test]
fn array_definitions_are_checked() {
    let bad_key = Map::create(MapDef::new(MapType::Array, 8, 4, 4));
    assert!(matches!(bad_key, Err(MapError::Invalid(m)) if m.contains("4-byte keys")));
    let zero_value = Map::create(MapDef::new(MapType::Array, 4, 0, 4));
    assert!(matches!(zero_value, Err(MapError::Invalid(_))));
    let mut def = MapDef::new(MapType::Array, 4, 4, 4);
    def.flags = BPF_F_NO_PREALLOC;
    assert!(matches!(Map::create(def), Err(MapError::Invalid(m)) if m.contains("0x1")));
    let huge = Map::create(MapDef::new(MapType::Array, 4, 8 << 20, 1));
    assert_eq!(huge.unwrap_err(), MapError::TooBig);
}

#[test]
fn array_value_region_uses_an_eight_byte_stride() {
    let map = create(MapType::Array, 4, 5, 4);
    let (base, len) = map
        .imp()
        .value_region()
        .expect("arrays expose their values");
    assert_eq!(len, 4 * 8);
    map.update(&k32(2), &[1, 2, 3, 4, 5], BPF_ANY).unwrap();
    let region = unsafe { std::slice::from_raw_parts(base.as_ptr(), len) };
    assert_eq!(&region[16..21], &[1, 2, 3, 4, 5]);
    // Programs write through the same memory.
    let ptr = map.imp().lookup_ptr(&k32(3), 0).unwrap();
    assert_eq!(ptr.as_ptr() as usize - base.as_ptr() as usize, 24);
    unsafe { ptr.as_ptr().write(42) };
    assert_eq!(map.lookup(&k32(3)).unwrap(), vec![42, 0, 0, 0, 0]);
    assert!(map.imp().memory_usage() >= len);
    let hash = create(MapType::Hash, 4, 8, 100);
    let empty = hash.imp().memory_usage();
    hash.update(&k32(1), &v64(1), BPF_ANY).unwrap();
    assert!(hash.imp().memory_usage() > empty);
}

#[test]
fn percpu_array_slots_are_per_cpu() {
    let map = create(MapType::PercpuArray, 4, 4, 3);
    let ncpus = map.num_cpus();
    assert!(ncpus >= 1);
    assert_eq!(map.user_value_size(), ncpus * 8);
    assert_eq!(map.lookup(&k32(1)).unwrap(), vec![0; ncpus * 8]);
    let last = (ncpus - 1) as u32;
    map.imp()
        .update_from_program(&k32(1), &7u32.to_ne_bytes(), BPF_ANY, last)
        .unwrap();
    let mut expected = vec![0; ncpus * 8];
    expected[last as usize * 8..last as usize * 8 + 4].copy_from_slice(&7u32.to_ne_bytes());
    assert_eq!(map.lookup(&k32(1)).unwrap(), expected);
    // lookup_ptr hands out the CPU's own slot.
    let p0 = map.imp().lookup_ptr(&k32(1), 0).unwrap();
    let plast = map.imp().lookup_ptr(&k32(1), last).unwrap();
    assert_eq!(
        plast.as_ptr() as usize - p0.as_ptr() as usize,
        last as usize * 8
    );
    assert_eq!(unsafe { plast.as_ptr().cast::<u32>().read() }, 7);
    assert!(map.imp().lookup_ptr(&k32(1), ncpus as u32).is_none());
    assert!(map
        .imp()
        .update_from_program(&k32(1), &[0; 4], BPF_ANY, ncpus as u32)
        .is_err());
    // The user view writes every slot.
    let all: Vec<u8> = (0..ncpus * 8).map(|i| i as u8).collect();
    map.update(&k32(2), &all, BPF_ANY).unwrap();
    assert_eq!(map.lookup(&k32(2)).unwrap(), all);
    let (_, len) = map.imp().value_region().unwrap();
    assert_eq!(len, 3 * ncpus * 8);
    assert_eq!(map.update(&k32(3), &all, BPF_ANY), Err(MapError::TooBig));
    assert_eq!(
        map.update(&k32(0), &all, BPF_NOEXIST),
        Err(MapError::Exists)
    );
}

// ------------------------------------------------------------ hash maps

#[test]
fn hash_update_flags_follow_the_kernel() {
    let map = create(MapType::Hash, 4, 8, 2);
    assert_eq!(map.lookup(&k32(1)), Err(MapError::NotFound));
    assert_eq!(
        map.update(&k32(1), &v64(1), BPF_EXIST),
        Err(MapError::NotFound)
    );
    map.update(&k32(1), &v64(10), BPF_NOEXIST).unwrap();
    assert_eq!(
        map.update(&k32(1), &v64(11), BPF_NOEXIST),
        Err(MapError::Exists)
    );
    map.update(&k32(1), &v64(12), BPF_EXIST).unwrap();
    assert_eq!(as_u64(&map.lookup(&k32(1)).unwrap()), 12);
    map.update(&k32(2), &v64(20), BPF_ANY).unwrap();
    assert_eq!(map.len(), 2);
    // Full: a new key is refused, an existing one still updates.
    assert_eq!(
        map.update(&k32(3), &v64(30), BPF_ANY),
        Err(MapError::TooBig)
    );
    map.update(&k32(2), &v64(21), BPF_ANY).unwrap();
    assert_eq!(as_u64(&map.lookup(&k32(2)).unwrap()), 21);
    assert_eq!(map.delete(&k32(3)), Err(MapError::NotFound));
    map.delete(&k32(1)).unwrap();
    assert_eq!(map.delete(&k32(1)), Err(MapError::NotFound));
    assert_eq!(map.len(), 1);
    // The freed slot is reused.
    map.update(&k32(3), &v64(30), BPF_ANY).unwrap();
    assert_eq!(as_u64(&map.lookup(&k32(3)).unwrap()), 30);
    assert!(matches!(
        map.update(&k32(3), &v64(30), BPF_F_LOCK),
        Err(MapError::Invalid(_))
    ));
}

#[test]
fn hash_iteration_follows_the_kernel() {
    let map = create(MapType::Hash, 4, 8, 64);
    assert_eq!(map.next_key(None).unwrap(), None);
    for i in 0..40 {
        map.update(&k32(i * 7), &v64(i as u64), BPF_ANY).unwrap();
    }
    let mut keys = all_keys(&map);
    assert_eq!(map.next_key(None).unwrap().as_ref(), keys.first());
    // A key that is not in the map restarts from the first key.
    assert_eq!(map.next_key(Some(&k32(5))).unwrap().as_ref(), keys.first());
    keys.sort();
    let mut expected: Vec<Vec<u8>> = (0..40).map(|i| k32(i * 7).to_vec()).collect();
    expected.sort();
    assert_eq!(keys, expected);
}

#[test]
fn hash_definitions_are_checked() {
    assert!(matches!(
        Map::create(MapDef::new(MapType::Hash, 0, 8, 4)),
        Err(MapError::Invalid(_))
    ));
    assert!(matches!(
        Map::create(MapDef::new(MapType::Hash, 4, 0, 4)),
        Err(MapError::Invalid(_))
    ));
    assert_eq!(
        Map::create(MapDef::new(MapType::Hash, 513, 8, 4)).unwrap_err(),
        MapError::TooBig
    );
    let mut def = MapDef::new(MapType::Hash, 4, 8, 4);
    def.flags = BPF_F_NO_COMMON_LRU;
    assert!(matches!(
        Map::create(def.clone()),
        Err(MapError::Invalid(_))
    ));
    def.map_type = MapType::LruHash;
    Map::create(def.clone()).unwrap();
    def.flags = BPF_F_NO_PREALLOC;
    assert!(
        matches!(Map::create(def.clone()), Err(MapError::Invalid(m)) if m.contains("preallocated"))
    );
    def.map_type = MapType::Hash;
    Map::create(def).unwrap();
}

#[test]
fn hash_keys_of_odd_sizes() {
    let map = create(MapType::Hash, 13, 3, 100);
    for i in 0..100u8 {
        let key: Vec<u8> = (0..13)
            .map(|j| i.wrapping_mul(31).wrapping_add(j))
            .collect();
        map.update(&key, &[i, i, i], BPF_NOEXIST).unwrap();
    }
    for i in 0..100u8 {
        let key: Vec<u8> = (0..13)
            .map(|j| i.wrapping_mul(31).wrapping_add(j))
            .collect();
        assert_eq!(map.lookup(&key).unwrap(), vec![i, i, i]);
    }
    assert!(matches!(map.lookup(&[0; 4]), Err(MapError::Invalid(_))));
    assert!(map.imp().lookup_ptr(&[0; 4], 0).is_none());
}

#[test]
fn hash_pointers_stay_valid_after_delete() {
    let map = create(MapType::Hash, 4, 8, 4);
    map.update(&k32(1), &v64(5), BPF_ANY).unwrap();
    let ptr = map.imp().lookup_ptr(&k32(1), 0).unwrap();
    map.delete(&k32(1)).unwrap();
    // The memory is still the map's: writing through it is harmless.
    unsafe { ptr.as_ptr().cast::<u64>().write(99) };
    assert_eq!(map.lookup(&k32(1)), Err(MapError::NotFound));
    // ... and the slot is reused by the next insert, as in the kernel.
    map.update(&k32(2), &v64(6), BPF_ANY).unwrap();
    assert_eq!(map.imp().lookup_ptr(&k32(2), 0), Some(ptr));
}

#[test]
fn large_max_entries_costs_address_space_not_memory() {
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
    let before = resident_bytes();
    // About 1.6 GB of slots if it were committed.
    let map = create(MapType::Hash, 8, 64, 16 << 20);
    for i in 0..1000u64 {
        map.update(&i.to_ne_bytes(), &[1; 64], BPF_ANY).unwrap();
    }
    let grown = resident_bytes().saturating_sub(before);
    // Reported usage covers the bucket array (4 bytes a bucket, 64 MiB
    // here) and the slots handed out, not the 1.6 GB reservation.
    let usage = map.imp().memory_usage();
    assert!(
        ((64 << 20) + 1000 * 64..80 << 20).contains(&usage),
        "memory_usage {usage}"
    );
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    assert_eq!(map.len(), 1000);
}

#[test]
fn percpu_hash_program_updates_write_one_slot() {
    let map = create(MapType::PercpuHash, 4, 4, 8);
    let ncpus = map.num_cpus();
    let stride = 8;
    let last = ncpus - 1;
    // A new element from a program: other CPUs start at zero, even when
    // the slot held an older element's values.
    map.update(&k32(9), &vec![0xff; ncpus * stride], BPF_ANY)
        .unwrap();
    map.delete(&k32(9)).unwrap();
    map.imp()
        .update_from_program(&k32(1), &5u32.to_ne_bytes(), BPF_ANY, last as u32)
        .unwrap();
    let mut expected = vec![0; ncpus * stride];
    expected[last * stride..last * stride + 4].copy_from_slice(&5u32.to_ne_bytes());
    assert_eq!(map.lookup(&k32(1)).unwrap(), expected);
    // An existing element: only that CPU's slot changes.
    let all: Vec<u8> = (0..ncpus * stride).map(|i| i as u8 + 1).collect();
    map.update(&k32(1), &all, BPF_EXIST).unwrap();
    map.imp()
        .update_from_program(&k32(1), &[7, 7, 7, 7], BPF_EXIST, 0)
        .unwrap();
    let mut expected = all.clone();
    expected[..4].copy_from_slice(&[7, 7, 7, 7]);
    assert_eq!(map.lookup(&k32(1)).unwrap(), expected);
    let p = map.imp().lookup_ptr(&k32(1), last as u32).unwrap();
    let expect_last = &expected[last * stride..last * stride + 4];
    assert_eq!(
        unsafe { std::slice::from_raw_parts(p.as_ptr(), 4) },
        expect_last
    );
    assert!(map.imp().lookup_ptr(&k32(1), ncpus as u32).is_none());
    assert_eq!(
        map.imp()
            .update_from_program(&k32(1), &[0; 4], BPF_NOEXIST, 0),
        Err(MapError::Exists)
    );
    assert!(matches!(
        map.imp().update_from_program(&k32(2), &[0; 8], BPF_ANY, 0),
        Err(MapError::Invalid(_))
    ));
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let map = create(MapType::LruHash, 4, 8, 3);
    for i in 1..=3 {
        map.update(&k32(i), &v64(i as u64), BPF_ANY).unwrap();
    }
    // Use 1 from a program, refresh 2 by update: 3 is now the oldest.
    assert!(map.imp().lookup_ptr(&k32(1), 0).is_some());
    map.update(&k32(2), &v64(22), BPF_EXIST).unwrap();
    map.update(&k32(4), &v64(4), BPF_NOEXIST).unwrap();
    assert_eq!(map.lookup(&k32(3)), Err(MapError::NotFound));
    assert_eq!(map.len(), 3);
    // User-space lookups do not count as use: 1 is the oldest now.
    map.lookup(&k32(1)).unwrap();
    map.update(&k32(5), &v64(5), BPF_ANY).unwrap();
    assert_eq!(map.lookup(&k32(1)), Err(MapError::NotFound));
    assert_eq!(
        map.update(&k32(4), &v64(0), BPF_NOEXIST),
        Err(MapError::Exists)
    );
    let mut keys = all_keys(&map);
    keys.sort();
    assert_eq!(
        keys,
        vec![k32(2).to_vec(), k32(4).to_vec(), k32(5).to_vec()]
    );
}

#[test]
fn lru_percpu_hash_evicts_and_keeps_per_cpu_slots() {
    let map = create(MapType::LruPercpuHash, 4, 8, 2);
    let ncpus = map.num_cpus();
    for i in 1..=3u32 {
        map.imp()
            .update_from_program(&k32(i), &v64(i as u64), BPF_ANY, 0)
            .unwrap();
    }
    assert_eq!(map.lookup(&k32(1)), Err(MapError::NotFound));
    let value = map.lookup(&k32(3)).unwrap();
    assert_eq!(value.len(), ncpus * 8);
    assert_eq!(as_u64(&value), 3);
    assert!(value[8..].iter().all(|b| *b == 0));
}

// ------------------------------------------- differential against a model

#[derive(Clone, Debug)]
enum Op {
    Update(u8, u64, u64),
    Lookup(u8),
    ProgramLookup(u8),
    Delete(u8),
    NextKey(Option<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..20;
    prop_oneof![
        4 => (key.clone(), any::<u64>(), 0u64..3).prop_map(|(k, v, f)| Op::Update(k, v, f)),
        2 => key.clone().prop_map(Op::Lookup),
        2 => key.clone().prop_map(Op::ProgramLookup),
        2 => key.clone().prop_map(Op::Delete),
        1 => proptest::option::of(key).prop_map(Op::NextKey),
    ]
}

/// The kernel's semantics, written plainly: a map from key to each CPU's
/// value (one CPU for maps that are not per-CPU) and, for LRU maps, the keys
/// from least to most recently used.
struct Model {
    capacity: usize,
    lru: bool,
    ncpus: usize,
    values: HashMap<u8, Vec<u64>>,
    recency: Vec<u8>,
}

/// What an update writes: every CPU's value, or (a program's update of a
/// per-CPU map) one CPU's.
#[derive(Clone, Copy)]
enum Write {
    All(u64),
    Cpu(usize, u64),
}

impl Model {
    fn touch(&mut self, key: u8) {
        self.recency.retain(|k| *k != key);
        self.recency.push(key);
    }

    /// The user view of `All(v)`: CPU `c` gets `v + c`.
    fn all_cpus(&self, v: u64) -> Vec<u64> {
        (0..self.ncpus as u64).map(|c| v.wrapping_add(c)).collect()
    }

    fn update(&mut self, key: u8, write: Write, flags: u64) -> Result<(), MapError> {
        let present = self.values.contains_key(&key);
        if present && flags == BPF_NOEXIST {
            return Err(MapError::Exists);
        }
        if !present && flags == BPF_EXIST {
            return Err(MapError::NotFound);
        }
        if !present && self.values.len() == self.capacity {
            if !self.lru {
                return Err(MapError::TooBig);
            }
            let victim = self.recency.remove(0);
            self.values.remove(&victim);
        }
        let ncpus = self.ncpus;
        let slots = self.values.entry(key).or_insert_with(|| vec![0; ncpus]);
        match write {
            Write::All(v) => {
                for (cpu, slot) in slots.iter_mut().enumerate() {
                    *slot = v.wrapping_add(cpu as u64);
                }
            }
            Write::Cpu(cpu, v) => slots[cpu] = v,
        }
        if self.lru {
            self.touch(key);
        }
        Ok(())
    }

    fn delete(&mut self, key: u8) -> Result<(), MapError> {
        self.values.remove(&key).ok_or(MapError::NotFound)?;
        self.recency.retain(|k| *k != key);
        Ok(())
    }
}

fn key_bytes(k: u8) -> [u8; 4] {
    u32::from(k).wrapping_mul(0x9e37_79b9).to_ne_bytes()
}

fn run_differential(map_type: MapType, ops: &[Op]) -> Result<(), TestCaseError> {
    let capacity = 8;
    let map = create(map_type, 4, 8, capacity as u32);
    let percpu = map_type.is_percpu();
    let mut model = Model {
        capacity,
        lru: matches!(map_type, MapType::LruHash | MapType::LruPercpuHash),
        ncpus: if percpu { map.num_cpus() } else { 1 },
        values: HashMap::new(),
        recency: Vec::new(),
    };
    let key_of = |bytes: &[u8]| (0u8..20).find(|k| key_bytes(*k) == bytes);
    for op in ops {
        match *op {
            Op::Update(k, v, flags) => {
                // Per-CPU maps: odd values come from a program on one CPU.
                let write = if percpu && v % 2 == 1 {
                    Write::Cpu((v >> 1) as usize % model.ncpus, v)
                } else {
                    Write::All(v)
                };
                let got = match write {
                    Write::All(v) => {
                        let bytes: Vec<u8> =
                            model.all_cpus(v).iter().flat_map(|x| v64(*x)).collect();
                        map.update(&key_bytes(k), &bytes, flags)
                    }
                    Write::Cpu(cpu, v) => {
                        map.imp()
                            .update_from_program(&key_bytes(k), &v64(v), flags, cpu as u32)
                    }
                };
                prop_assert_eq!(got, model.update(k, write, flags), "{:?}", op);
            }
            Op::Lookup(k) => {
                let got = map
                    .lookup(&key_bytes(k))
                    .map(|v| v.chunks(8).map(as_u64).collect::<Vec<_>>());
                let want = model.values.get(&k).cloned().ok_or(MapError::NotFound);
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::ProgramLookup(k) => {
                let cpu = model.ncpus - 1;
                let got = map
                    .imp()
                    .lookup_ptr(&key_bytes(k), cpu as u32)
                    .map(|p| unsafe { p.as_ptr().cast::<u64>().read_unaligned() });
                let want = model.values.get(&k).map(|slots| slots[cpu]);
                if want.is_some() && model.lru {
                    model.touch(k);
                }
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::Delete(k) => {
                prop_assert_eq!(map.delete(&key_bytes(k)), model.delete(k), "{:?}", op);
            }
            Op::NextKey(k) => {
                let from = k.map(key_bytes);
                let next = map.next_key(from.as_ref().map(|b| &b[..])).unwrap();
                match next {
                    None => {
                        // The end: either empty, or k was present (last key).
                        prop_assert!(
                            model.values.is_empty()
                                || k.is_some_and(|k| model.values.contains_key(&k)),
                            "iteration ended early from {:?}",
                            k
                        );
                    }
                    Some(bytes) => {
                        let key = key_of(&bytes);
                        prop_assert!(
                            key.is_some_and(|k| model.values.contains_key(&k)),
                            "next_key returned a key that is not in the map"
                        );
                    }
                }
            }
        }
        prop_assert_eq!(map.len(), model.values.len());
    }
    let mut keys: Vec<u8> = all_keys(&map).iter().map(|b| key_of(b).unwrap()).collect();
    keys.sort();
    let mut expected: Vec<u8> = model.values.keys().copied().collect();
    expected.sort();
    prop_assert_eq!(keys, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn hash_matches_a_model(ops in proptest::collection::vec(op(), 1..200)) {
        run_differential(MapType::Hash, &ops)?;
    }

    #[test]
    fn lru_hash_matches_an_exact_lru_model(ops in proptest::collection::vec(op(), 1..200)) {
        run_differential(MapType::LruHash, &ops)?;
    }

    #[test]
    fn percpu_hash_matches_a_model(ops in proptest::collection::vec(op(), 1..200)) {
        run_differential(MapType::PercpuHash, &ops)?;
    }

    #[test]
    fn lru_percpu_hash_matches_an_exact_lru_model(
        ops in proptest::collection::vec(op(), 1..200)
    ) {
        run_differential(MapType::LruPercpuHash, &ops)?;
    }
}

// ------------------------------------------------------------ concurrency

const THREADS: u32 = 4;

#[test]
fn concurrent_inserts_deletes_and_lookups_lose_nothing() {
    let per_thread = 2000u32;
    let map = create(MapType::Hash, 4, 8, THREADS * per_thread);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let map = &map;
            s.spawn(move || {
                for i in 0..per_thread {
                    let key = t * per_thread + i;
                    map.update(&k32(key), &v64(key as u64), BPF_NOEXIST)
                        .unwrap();
                    // Churn: delete and re-insert every other key.
                    if i.is_multiple_of(2) {
                        map.delete(&k32(key)).unwrap();
                        map.update(&k32(key), &v64(key as u64 * 2), BPF_NOEXIST)
                            .unwrap();
                    }
                    let seen = map.lookup(&k32(key)).unwrap();
                    let want = if i.is_multiple_of(2) {
                        key as u64 * 2
                    } else {
                        key as u64
                    };
                    assert_eq!(as_u64(&seen), want);
                }
            });
        }
    });
    assert_eq!(map.len(), (THREADS * per_thread) as usize);
    for key in 0..THREADS * per_thread {
        let want = if (key % per_thread).is_multiple_of(2) {
            key as u64 * 2
        } else {
            key as u64
        };
        assert_eq!(as_u64(&map.lookup(&k32(key)).unwrap()), want);
    }
    assert_eq!(all_keys(&map).len(), (THREADS * per_thread) as usize);
}

fn hammer_counter(map: &Map, key: &[u8], per_thread: u64) {
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let p = map.imp().lookup_ptr(key, 0).unwrap();
                    let counter = unsafe { AtomicU64::from_ptr(p.as_ptr().cast()) };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
}

#[test]
fn atomic_adds_through_lookup_ptr_are_not_lost() {
    let per_thread = 50_000;
    let array = create(MapType::Array, 4, 8, 4);
    hammer_counter(&array, &k32(2), per_thread);
    assert_eq!(
        as_u64(&array.lookup(&k32(2)).unwrap()),
        THREADS as u64 * per_thread
    );
    let hash = create(MapType::Hash, 4, 8, 4);
    hash.update(&k32(7), &v64(0), BPF_ANY).unwrap();
    hammer_counter(&hash, &k32(7), per_thread);
    assert_eq!(
        as_u64(&hash.lookup(&k32(7)).unwrap()),
        THREADS as u64 * per_thread
    );
}

#[test]
fn concurrent_lru_churn_keeps_the_table_consistent() {
    let capacity = 64u32;
    let map = create(MapType::LruHash, 4, 8, capacity);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let map = &map;
            s.spawn(move || {
                for i in 0..20_000u32 {
                    let key = (i * 7 + t * 13) % 500;
                    match i % 4 {
                        0 | 1 => map.update(&k32(key), &v64(key as u64), BPF_ANY).unwrap(),
                        2 => {
                            if let Some(p) = map.imp().lookup_ptr(&k32(key), 0) {
                                // The slot may have been evicted and reused
                                // since (as in the kernel), but it only ever
                                // holds values this test wrote.
                                let v = unsafe { p.as_ptr().cast::<u64>().read_volatile() };
                                assert!(v < 512, "garbage value {v}");
                            }
                        }
                        _ => {
                            let _ = map.delete(&k32(key));
                        }
                    }
                }
            });
        }
    });
    let keys = all_keys(&map);
    assert_eq!(keys.len(), map.len());
    assert!(map.len() <= capacity as usize);
    for key in keys {
        let k = u32::from_ne_bytes(key[..].try_into().unwrap());
        assert_eq!(as_u64(&map.lookup(&key).unwrap()), k as u64);
    }
    // Still full-capacity: inserting fresh keys fills it up to max_entries.
    for key in 1000..1000 + capacity {
        map.update(&k32(key), &v64(key as u64), BPF_ANY).unwrap();
    }
    assert_eq!(map.len(), capacity as usize);
}

// --------------------------------------------------------------- timings

/// Nanoseconds per call of `f`: the best of many short rounds, each short
/// enough to run without being preempted on a busy machine.
fn time_ns(iterations: u64, mut f: impl FnMut(u64)) -> f64 {
    const ROUND: u64 = 10_000;
    let mut i = 0;
    let mut best = f64::INFINITY;
    while i < iterations {
        let start = Instant::now();
        for _ in 0..ROUND {
            f(i);
            i += 1;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / ROUND as f64);
    }
    best
}

/// Program-side cost of lookups and updates. Run with
/// `cargo test --release -p ebpfvm-core --test maps_storage -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn program_side_costs() {
    let n = 1_000_000;
    let array = create(MapType::Array, 4, 8, 1024);
    let hash = create(MapType::Hash, 4, 8, 1024);
    for i in 0..1024 {
        hash.update(&k32(i), &v64(i as u64), BPF_ANY).unwrap();
    }
    let mut found = 0u64;
    let report = |what: &str, ns: f64| println!("{what:<32} {ns:7.1} ns/op");
    report(
        "array lookup_ptr",
        time_ns(n, |i| {
            found += array.imp().lookup_ptr(&k32(i as u32 & 1023), 0).is_some() as u64
        }),
    );
    report(
        "array update_from_program",
        time_ns(n, |i| {
            array
                .imp()
                .update_from_program(&k32(i as u32 & 1023), &v64(i), BPF_ANY, 0)
                .unwrap()
        }),
    );
    report(
        "hash lookup_ptr (hit)",
        time_ns(n, |i| {
            found += hash.imp().lookup_ptr(&k32(i as u32 & 1023), 0).is_some() as u64
        }),
    );
    report(
        "hash lookup_ptr (miss)",
        time_ns(n, |i| {
            found += hash
                .imp()
                .lookup_ptr(&k32(5000 + (i as u32 & 1023)), 0)
                .is_some() as u64
        }),
    );
    report(
        "hash update_from_program",
        time_ns(n, |i| {
            hash.imp()
                .update_from_program(&k32(i as u32 & 1023), &v64(i), BPF_EXIST, 0)
                .unwrap()
        }),
    );
    let lru = create(MapType::LruHash, 4, 8, 1024);
    for i in 0..1024 {
        lru.update(&k32(i), &v64(i as u64), BPF_ANY).unwrap();
    }
    report(
        "lru lookup_ptr (hit)",
        time_ns(n, |i| {
            found += lru.imp().lookup_ptr(&k32(i as u32 & 1023), 0).is_some() as u64
        }),
    );
    report(
        "lru insert with eviction",
        time_ns(n / 4, |i| {
            lru.update(&k32(2000 + i as u32), &v64(i), BPF_ANY).unwrap()
        }),
    );
    // Every hit found its key.
    assert_eq!(found, 3 * n);
    // Two threads looking up one map at once (the lock is contended).
    for (what, map) in [("array", &array), ("hash", &hash)] {
        let per_op = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        time_ns(n, |i| {
                            assert!(map.imp().lookup_ptr(&k32(i as u32 & 1023), 0).is_some())
                        })
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum::<f64>() / 2.0
        });
        report(&format!("{what} lookup_ptr, 2 threads"), per_op);
    }
}
