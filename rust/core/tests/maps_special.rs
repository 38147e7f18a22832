//! Kernel semantics of the special-purpose map types: queue, stack, bloom
//! filter, LPM trie, ring buffer, perf event array, program array, maps of
//! maps, object-reference maps, local storage and stack traces.

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebpfvm_core::maps::array_of_maps::ArrayOfMaps;
use ebpfvm_core::maps::bloom_filter::BloomFilter;
use ebpfvm_core::maps::hash_of_maps::HashOfMaps;
use ebpfvm_core::maps::local_storage::{CgroupStorage, LocalStorage};
use ebpfvm_core::maps::perf_event_array::{PerfEventArray, BPF_F_CURRENT_CPU};
use ebpfvm_core::maps::prog_array::ProgArray;
use ebpfvm_core::maps::ringbuf::*;
use ebpfvm_core::maps::stack_trace::{StackTraceMap, BPF_F_REUSE_STACKID};
use ebpfvm_core::maps::{
    cpu, Map, MapDef, MapError, MapType, BPF_ANY, BPF_EXIST, BPF_F_INNER_MAP, BPF_F_NO_PREALLOC,
    BPF_NOEXIST,
};

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn create(def: MapDef) -> Arc<Map> {
    Map::create(def.clone()).unwrap_or_else(|e| panic!("creating {def:?}: {e}"))
}

fn create_err(def: MapDef) -> MapError {
    match Map::create(def) {
        Ok(m) => panic!("map {:?} should have been rejected", m.def()),
        Err(e) => e,
    }
}

fn u32v(n: u32) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

// ---------------------------------------------------------------- queue/stack

#[test]
fn queue_is_fifo_and_stack_is_lifo() {
    let q = create(MapDef::new(MapType::Queue, 0, 4, 3));
    let s = create(MapDef::new(MapType::Stack, 0, 4, 3));
    for m in [&q, &s] {
        assert_eq!(m.pop(), Err(MapError::NotFound));
        assert_eq!(m.peek(None), Err(MapError::NotFound));
        for i in 1..=3 {
            m.push(&u32v(i), BPF_ANY).unwrap();
        }
        assert_eq!(m.len(), 3);
    }
    assert_eq!(q.peek(None).unwrap(), u32v(1));
    assert_eq!(s.peek(None).unwrap(), u32v(3));
    // The user view maps lookup to peek and update to push.
    assert_eq!(q.lookup(&[]).unwrap(), u32v(1));
    let popped_q: Vec<_> = (0..3).map(|_| q.pop().unwrap()).collect();
    let popped_s: Vec<_> = (0..3).map(|_| s.pop().unwrap()).collect();
    assert_eq!(popped_q, vec![u32v(1), u32v(2), u32v(3)]);
    assert_eq!(popped_s, vec![u32v(3), u32v(2), u32v(1)]);
    assert_eq!(q.pop(), Err(MapError::NotFound));
    s.update(&[], &u32v(9), BPF_ANY).unwrap();
    assert_eq!(s.pop().unwrap(), u32v(9));
}

#[test]
fn full_queue_and_stack_refuse_or_overwrite_the_oldest_with_bpf_exist() {
    let q = create(MapDef::new(MapType::Queue, 0, 4, 2));
    let s = create(MapDef::new(MapType::Stack, 0, 4, 2));
    for m in [&q, &s] {
        m.push(&u32v(1), BPF_ANY).unwrap();
        m.push(&u32v(2), BPF_ANY).unwrap();
        // The kernel answers E2BIG for a full queue or stack.
        assert_eq!(m.push(&u32v(3), BPF_ANY), Err(MapError::TooBig));
        m.push(&u32v(3), BPF_EXIST).unwrap();
        assert_eq!(m.len(), 2);
        assert!(matches!(
            m.push(&u32v(4), BPF_NOEXIST),
            Err(MapError::Invalid(_))
        ));
    }
    // 1 was dropped in both.
    assert_eq!(q.pop().unwrap(), u32v(2));
    assert_eq!(q.pop().unwrap(), u32v(3));
    assert_eq!(s.pop().unwrap(), u32v(3));
    assert_eq!(s.pop().unwrap(), u32v(2));
    assert_eq!(s.pop(), Err(MapError::NotFound));
}

#[test]
fn queue_definitions_follow_the_kernel() {
    assert!(matches!(
        create_err(MapDef::new(MapType::Queue, 4, 4, 2)),
        MapError::Invalid(_)
    ));
    assert!(matches!(
        create_err(MapDef::new(MapType::Stack, 0, 0, 2)),
        MapError::Invalid(_)
    ));
    assert!(matches!(
        create_err(MapDef::new(MapType::Queue, 0, 4, 2).named("x").with_flags(BPF_F_NO_PREALLOC)),
        MapError::Invalid(m) if m.contains("map_flags")
    ));
    let q = create(MapDef::new(MapType::Queue, 0, 8, 2));
    assert!(matches!(
        q.push(&[0; 4], BPF_ANY),
        Err(MapError::Invalid(_))
    ));
    assert!(matches!(q.next_key(None), Err(MapError::Invalid(_))));
}

trait WithFlags {
    fn with_flags(self, flags: u32) -> Self;
    fn with_extra(self, extra: u64) -> Self;
    fn with_inner(self, inner: MapDef) -> Self;
}

impl WithFlags for MapDef {
    fn with_flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
    fn with_extra(mut self, extra: u64) -> Self {
        self.map_extra = extra;
        self
    }
    fn with_inner(mut self, inner: MapDef) -> Self {
        self.inner = Some(Box::new(inner));
        self
    }
}

// ---------------------------------------------------------------- bloom filter

#[test]
fn bloom_filter_has_no_false_negatives_and_few_false_positives() {
    let m = create(MapDef::new(MapType::BloomFilter, 0, 8, 10_000));
    let bloom = m.downcast::<BloomFilter>().unwrap();
    assert_eq!(bloom.hash_funcs(), 5);
    // 10000 * 5 / 5 * 7 = 70000 bits, rounded up to a power of two.
    assert_eq!(bloom.bit_count(), 131_072);
    let mut rng = Rng(7);
    let added: Vec<u64> = (0..10_000).map(|_| rng.next()).collect();
    for v in &added {
        m.push(&v.to_le_bytes(), BPF_ANY).unwrap();
    }
    for v in &added {
        assert_eq!(
            m.peek(Some(&v.to_le_bytes())),
            Ok(Vec::new()),
            "false negative for {v}"
        );
    }
    let set: HashSet<u64> = added.iter().copied().collect();
    let probes: Vec<u64> = (0..20_000)
        .map(|_| rng.next())
        .filter(|v| !set.contains(v))
        .collect();
    let false_positives = probes
        .iter()
        .filter(|v| m.peek(Some(&v.to_le_bytes())).is_ok())
        .count();
    let rate = false_positives as f64 / probes.len() as f64;
    assert!(rate < 0.02, "false positive rate {rate}");
    assert!(rate > 0.0, "a filter at capacity has some false positives");
}

#[test]
fn bloom_filter_options_and_errors() {
    let m = create(MapDef::new(MapType::BloomFilter, 0, 3, 100).with_extra(3));
    let bloom = m.downcast::<BloomFilter>().unwrap();
    assert_eq!(bloom.hash_funcs(), 3);
    assert_eq!(bloom.bit_count(), 512); // 100 * 3 / 5 * 7 = 420 -> 512
    assert_eq!(m.peek(Some(b"abc")), Err(MapError::NotFound));
    m.update(&[], b"abc", BPF_ANY).unwrap();
    assert!(m.peek(Some(b"abc")).is_ok());
    assert!(matches!(m.peek(None), Err(MapError::Invalid(_))));
    assert!(matches!(
        m.push(b"abd", BPF_EXIST),
        Err(MapError::Invalid(_))
    ));
    assert!(matches!(m.pop(), Err(MapError::Unsupported(_))));
    assert!(matches!(
        create_err(MapDef::new(MapType::BloomFilter, 0, 4, 100).with_extra(0x10)),
        MapError::Invalid(m) if m.contains("map_extra")
    ));
    assert!(matches!(
        create_err(MapDef::new(MapType::BloomFilter, 4, 4, 100)),
        MapError::Invalid(_)
    ));
    // Small filters get at least one 64-bit word.
    let tiny = create(MapDef::new(MapType::BloomFilter, 0, 4, 1).with_extra(1));
    assert_eq!(tiny.downcast::<BloomFilter>().unwrap().bit_count(), 64);
}

// ---------------------------------------------------------------- LPM trie

mod lpm {
    use super::Rng;
    use super::*;
    use proptest::prelude::{any, proptest, ProptestConfig};
    use std::collections::BTreeMap;

    pub fn lpm_def(data_len: u32, max_entries: u32) -> MapDef {
        MapDef::new(MapType::LpmTrie, 4 + data_len, 4, max_entries).with_flags(BPF_F_NO_PREALLOC)
    }

    pub fn key(prefixlen: u32, addr: &[u8]) -> Vec<u8> {
        let mut k = prefixlen.to_ne_bytes().to_vec();
        k.extend_from_slice(addr);
        k
    }

    pub fn masked(addr: &[u8], prefixlen: u32) -> Vec<u8> {
        addr.iter()
            .enumerate()
            .map(|(i, b)| {
                let bits = prefixlen.saturating_sub(i as u32 * 8).min(8);
                if bits == 0 {
                    0
                } else {
                    b & (0xffu8 << (8 - bits))
                }
            })
            .collect()
    }

    /// The brute-force answer: the longest stored prefix covering `addr`
    /// (no longer than `key_prefixlen`).
    pub fn model_lookup(
        model: &BTreeMap<(u32, Vec<u8>), u32>,
        addr: &[u8],
        key_prefixlen: u32,
    ) -> Option<u32> {
        model
            .iter()
            .filter(|((plen, net), _)| *plen <= key_prefixlen && masked(addr, *plen) == *net)
            .max_by_key(|((plen, _), _)| *plen)
            .map(|(_, v)| *v)
    }

    /// Addresses drawn so that prefixes overlap often: each byte is one of
    /// a few values or random.
    pub fn biased_addr(rng: &mut Rng, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| match rng.next() % 5 {
                0 => 0x0a,
                1 => 0x80,
                2 => 0xff,
                3 => 0x00,
                _ => rng.next() as u8,
            })
            .collect()
    }

    fn all_keys(m: &Map) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        while let Some(next) = m.next_key(cur.as_deref()).unwrap() {
            keys.push(next.clone());
            cur = Some(next);
            assert!(keys.len() <= m.len(), "iteration does not end");
        }
        keys
    }

    /// Runs `ops` random inserts, deletes and lookups against the trie and
    /// the model, checking every answer and, at the end, iteration.
    pub fn check_against_model(data_len: usize, seed: u64, ops: usize) {
        let max_bits = data_len as u32 * 8;
        let m = create(lpm_def(data_len as u32, 1 << 20));
        let mut model: BTreeMap<(u32, Vec<u8>), u32> = BTreeMap::new();
        let mut rng = Rng(seed | 1);
        let mut stored: Vec<(u32, Vec<u8>)> = Vec::new();
        for op in 0..ops {
            match rng.next() % 10 {
                0..=4 => {
                    let plen = (rng.next() % (max_bits as u64 + 1)) as u32;
                    let addr = biased_addr(&mut rng, data_len);
                    let value = op as u32;
                    m.update(&key(plen, &addr), &value.to_le_bytes(), BPF_ANY)
                        .unwrap();
                    model.insert((plen, masked(&addr, plen)), value);
                    stored.push((plen, addr));
                }
                5 if !stored.is_empty() => {
                    let (plen, addr) =
                        stored.swap_remove((rng.next() % stored.len() as u64) as usize);
                    let expect = model.remove(&(plen, masked(&addr, plen)));
                    let got = m.delete(&key(plen, &addr));
                    assert_eq!(got.is_ok(), expect.is_some(), "delete /{plen} {addr:?}");
                    if expect.is_none() {
                        assert_eq!(got, Err(MapError::NotFound));
                    }
                }
                _ => {
                    let addr = biased_addr(&mut rng, data_len);
                    let kplen = if rng.next().is_multiple_of(4) {
                        (rng.next() % (max_bits as u64 + 1)) as u32
                    } else {
                        max_bits
                    };
                    let want = model_lookup(&model, &addr, kplen);
                    let got = m
                        .lookup(&key(kplen, &addr))
                        .ok()
                        .map(|v| u32::from_le_bytes(v.try_into().unwrap()));
                    assert_eq!(got, want, "lookup /{kplen} {addr:?}");
                }
            }
            assert_eq!(m.len(), model.len());
        }
        let keys = all_keys(&m);
        let seen: BTreeMap<(u32, Vec<u8>), ()> = keys
            .iter()
            .map(|k| {
                let plen = u32::from_ne_bytes(k[..4].try_into().unwrap());
                ((plen, masked(&k[4..], plen)), ())
            })
            .collect();
        assert_eq!(keys.len(), model.len(), "every entry visited exactly once");
        assert!(seen.keys().eq(model.keys()));
    }

    #[test]
    fn ipv4_table_matches_brute_force() {
        check_against_model(4, 0x1234, 4000);
    }

    #[test]
    fn ipv6_table_matches_brute_force() {
        check_against_model(16, 0x9876, 3000);
    }

    #[test]
    fn odd_address_sizes_match_brute_force() {
        check_against_model(1, 5, 600);
        check_against_model(9, 6, 1500);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_sequences_match_brute_force(seed in any::<u64>(), v6 in any::<bool>()) {
            check_against_model(if v6 { 16 } else { 4 }, seed, 300);
        }
    }

    #[test]
    fn exact_match_rules_and_limits() {
        let m = create(lpm_def(4, 3));
        let net = |plen, a: [u8; 4]| key(plen, &a);
        m.update(&net(8, [10, 0, 0, 0]), &u32v(1), BPF_NOEXIST)
            .unwrap();
        assert_eq!(
            m.update(&net(8, [10, 9, 9, 9]), &u32v(2), BPF_NOEXIST),
            Err(MapError::Exists)
        );
        assert_eq!(
            m.update(&net(16, [10, 1, 0, 0]), &u32v(2), BPF_EXIST),
            Err(MapError::NotFound)
        );
        m.update(&net(16, [10, 1, 0, 0]), &u32v(2), BPF_ANY)
            .unwrap();
        m.update(&net(24, [10, 1, 2, 0]), &u32v(3), BPF_ANY)
            .unwrap();
        // Full: a new prefix gets ENOSPC, a replacement still works.
        assert_eq!(
            m.update(&net(32, [1, 2, 3, 4]), &u32v(4), BPF_ANY),
            Err(MapError::NoSpace)
        );
        m.update(&net(24, [10, 1, 2, 0]), &u32v(30), BPF_EXIST)
            .unwrap();
        assert_eq!(m.lookup(&net(32, [10, 1, 2, 3])).unwrap(), u32v(30));
        assert_eq!(m.lookup(&net(32, [10, 1, 3, 3])).unwrap(), u32v(2));
        assert_eq!(m.lookup(&net(32, [10, 2, 3, 3])).unwrap(), u32v(1));
        assert_eq!(m.lookup(&net(32, [11, 2, 3, 3])), Err(MapError::NotFound));
        // The key's own prefix length bounds the match.
        assert_eq!(m.lookup(&net(20, [10, 1, 2, 3])).unwrap(), u32v(2));
        assert!(matches!(
            m.update(&net(33, [1, 2, 3, 4]), &u32v(4), BPF_ANY),
            Err(MapError::Invalid(_))
        ));
        assert!(matches!(
            m.delete(&net(33, [1, 2, 3, 4])),
            Err(MapError::Invalid(_))
        ));
        assert_eq!(m.delete(&net(16, [10, 2, 0, 0])), Err(MapError::NotFound));
        m.delete(&net(16, [10, 1, 0, 0])).unwrap();
        assert_eq!(m.lookup(&net(32, [10, 1, 3, 3])).unwrap(), u32v(1));
        // Post-order: the more specific prefix first.
        let first = m.next_key(None).unwrap().unwrap();
        assert_eq!(first, net(24, [10, 1, 2, 0]));
        assert_eq!(
            m.next_key(Some(&first)).unwrap().unwrap(),
            net(8, [10, 0, 0, 0])
        );
        assert_eq!(m.next_key(Some(&net(8, [10, 0, 0, 0]))).unwrap(), None);
        // A default route matches everything.
        m.update(&net(0, [0; 4]), &u32v(0), BPF_ANY).unwrap();
        assert_eq!(m.lookup(&net(32, [192, 168, 0, 1])).unwrap(), u32v(0));
    }

    #[test]
    fn definitions_follow_the_kernel() {
        let no_prealloc = MapDef::new(MapType::LpmTrie, 8, 4, 10);
        assert!(
            matches!(create_err(no_prealloc), MapError::Invalid(m) if m.contains("BPF_F_NO_PREALLOC"))
        );
        assert!(matches!(create_err(lpm_def(0, 10)), MapError::Invalid(_)));
        assert!(matches!(create_err(lpm_def(257, 10)), MapError::Invalid(_)));
        create(lpm_def(256, 10));
    }

    #[test]
    fn value_pointers_stay_valid_across_updates() {
        let m = create(lpm_def(4, 1000));
        m.update(&key(24, &[10, 0, 0, 0]), &u32v(7), BPF_ANY)
            .unwrap();
        let p = m.imp().lookup_ptr(&key(32, &[10, 0, 0, 9]), 0).unwrap();
        for i in 0..500u32 {
            m.update(&key(32, &i.to_be_bytes()), &u32v(i), BPF_ANY)
                .unwrap();
        }
        // SAFETY: map values stay allocated while the map lives.
        assert_eq!(unsafe { p.as_ptr().cast::<u32>().read() }, 7);
        // A program writing through the pointer updates the entry.
        unsafe { p.as_ptr().cast::<u32>().write(8) };
        assert_eq!(m.lookup(&key(32, &[10, 0, 0, 1])).unwrap(), u32v(8));
    }

    #[test]
    fn large_ipv6_table_lookups_are_fast() {
        let m = create(lpm_def(16, 200_000));
        let mut rng = Rng(99);
        let mut addrs = Vec::new();
        for i in 0..100_000u32 {
            let mut a = [0u8; 16];
            a[..8].copy_from_slice(&rng.next().to_be_bytes());
            let plen = 16 + (rng.next() % 49) as u32;
            m.update(&key(plen, &a), &u32v(i), BPF_ANY).unwrap();
            addrs.push(a);
        }
        let start = Instant::now();
        let mut hits = 0;
        for a in addrs.iter().take(100_000) {
            hits += m.imp().lookup_ptr(&key(128, a), 0).is_some() as usize;
        }
        let per_lookup = start.elapsed() / 100_000;
        assert_eq!(hits, 100_000);
        // Generous even for a debug build: a linear scan would take ms.
        assert!(
            per_lookup < Duration::from_micros(50),
            "{per_lookup:?} per lookup"
        );
    }
}

// ---------------------------------------------------------------- ring buffer

fn ringbuf(size: u32) -> Arc<Map> {
    create(MapDef::new(MapType::Ringbuf, 0, 0, size))
}

fn rb(m: &Map) -> &RingBuf {
    m.downcast::<RingBuf>().unwrap()
}

fn drain(r: &RingBuf) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    r.consume(&mut |rec| {
        out.push(rec.to_vec());
        true
    });
    out
}

fn fill(ptr: NonNull<u8>, bytes: &[u8]) {
    // SAFETY: tests write within their reservations.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
}

#[test]
fn ringbuf_sizes_follow_the_kernel() {
    ringbuf(4096);
    ringbuf(1 << 20);
    for bad in [4097, 3 * 4096, 2048] {
        assert!(
            matches!(
                create_err(MapDef::new(MapType::Ringbuf, 0, 0, bad)),
                MapError::Invalid(_)
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        create_err(MapDef::new(MapType::Ringbuf, 4, 0, 4096)),
        MapError::Invalid(_)
    ));
    assert!(matches!(
        create_err(MapDef::new(MapType::Ringbuf, 0, 8, 4096)),
        MapError::Invalid(_)
    ));
}

#[test]
fn ringbuf_output_consume_and_query() {
    let m = ringbuf(4096);
    let r = rb(&m);
    assert_eq!(r.query(BPF_RB_RING_SIZE), 4096);
    r.output(b"hello", 0).unwrap();
    r.output(b"", 0).unwrap();
    r.output(&[7u8; 20], 0).unwrap();
    // 8-byte headers, data padded to 8: 16 + 8 + 32.
    assert_eq!(r.query(BPF_RB_PROD_POS), 56);
    assert_eq!(r.query(BPF_RB_AVAIL_DATA), 56);
    assert_eq!(r.available(), 56);
    assert_eq!(r.query(99), 0);
    // Stopping early leaves the rest.
    let mut first = Vec::new();
    assert_eq!(
        r.consume(&mut |rec| {
            first.push(rec.to_vec());
            false
        }),
        1
    );
    assert_eq!(first, vec![b"hello".to_vec()]);
    assert_eq!(r.query(BPF_RB_CONS_POS), 16);
    // A callback that consumes again gets nothing instead of deadlocking.
    let mut nested = None;
    assert_eq!(
        r.consume(&mut |_| {
            nested = Some(r.consume(&mut |_| true));
            true
        }),
        2
    );
    assert_eq!(nested, Some(0));
    assert_eq!(r.query(BPF_RB_AVAIL_DATA), 0);
    assert!(matches!(r.output(b"x", 4), Err(MapError::Invalid(_))));
    assert!(matches!(m.lookup(&[]), Err(MapError::Unsupported(_))));
}

#[test]
fn ringbuf_records_straddling_the_end_are_contiguous() {
    let m = ringbuf(4096);
    let r = rb(&m);
    let mut rng = Rng(3);
    let mut straddled = 0;
    for round in 0..2000u32 {
        let len = 1 + (rng.next() % 1500) as usize;
        let pos = r.query(BPF_RB_PROD_POS);
        let ptr = r.reserve(len as u64).expect("room after draining");
        if (pos % 4096) + 8 + len as u64 > 4096 {
            straddled += 1;
        }
        let data: Vec<u8> = (0..len).map(|i| (i as u32 * 31 + round) as u8).collect();
        fill(ptr, &data);
        r.submit(ptr, 0).unwrap();
        assert_eq!(drain(r), vec![data]);
    }
    assert!(straddled > 100, "only {straddled} records wrapped");
}

#[test]
fn ringbuf_out_of_order_commits_are_consumed_in_reservation_order() {
    let m = ringbuf(4096);
    let r = rb(&m);
    let a = r.reserve(8).unwrap();
    let b = r.reserve(8).unwrap();
    let c = r.reserve(8).unwrap();
    fill(a, b"AAAAAAAA");
    fill(b, b"BBBBBBBB");
    fill(c, b"CCCCCCCC");
    r.submit(c, 0).unwrap();
    r.discard(b, 0).unwrap();
    // A is still busy: nothing can be consumed yet.
    assert_eq!(drain(r).len(), 0);
    r.submit(a, 0).unwrap();
    assert_eq!(drain(r), vec![b"AAAAAAAA".to_vec(), b"CCCCCCCC".to_vec()]);
    assert_eq!(r.available(), 0);
}

#[test]
fn ringbuf_reserve_fails_when_full() {
    let m = ringbuf(4096);
    let r = rb(&m);
    // A record may not fill the ring entirely (positions stay < size apart).
    assert!(r.reserve(4088).is_none());
    assert!(r.reserve(u64::MAX).is_none());
    let big = r.reserve(4000).unwrap();
    assert!(r.reserve(100).is_none());
    assert_eq!(r.output(&[0; 100], 0), Err(MapError::NoSpace));
    let small = r.reserve(64).unwrap();
    r.submit(small, 0).unwrap();
    r.submit(big, 0).unwrap();
    assert_eq!(drain(r).len(), 2);
    // A busy record that is not the oldest still blocks reuse of its space.
    let busy = r.reserve(2000).unwrap();
    r.output(&[1; 1000], 0).unwrap();
    assert_eq!(drain(r).len(), 0);
    assert!(r.reserve(2000).is_none());
    r.submit(busy, 0).unwrap();
    assert_eq!(drain(r).len(), 2);
    assert!(r.reserve(2000).is_some());
}

#[test]
fn ringbuf_rejects_forged_and_reused_record_pointers() {
    let m = ringbuf(4096);
    let other = ringbuf(4096);
    let r = rb(&m);
    let rec = r.reserve(64).unwrap();
    let forged = [
        NonNull::new(0x1000 as *mut u8).unwrap(),
        NonNull::new(usize::MAX as *mut u8).unwrap(),
        // Inside the record, after a fake header with the busy bit.
        unsafe { rec.add(16) },
        unsafe { rec.add(1) },
        // Before the data area.
        unsafe { NonNull::new_unchecked(rec.as_ptr().wrapping_sub(64)) },
        // The second mapping of the same record.
        unsafe { rec.add(4096) },
    ];
    fill(rec, &[0u8; 8]);
    fill(unsafe { rec.add(8) }, &(0x8000_0008u32).to_ne_bytes());
    for p in forged {
        assert!(matches!(r.submit(p, 0), Err(MapError::Invalid(_))), "{p:p}");
        assert!(
            matches!(r.discard(p, 0), Err(MapError::Invalid(_))),
            "{p:p}"
        );
    }
    assert!(matches!(
        rb(&other).submit(rec, 0),
        Err(MapError::Invalid(_))
    ));
    assert!(matches!(r.submit(rec, 8), Err(MapError::Invalid(_))));
    r.submit(rec, 0).unwrap();
    assert!(matches!(r.submit(rec, 0), Err(MapError::Invalid(_))));
    assert!(matches!(r.discard(rec, 0), Err(MapError::Invalid(_))));
    assert_eq!(drain(r).len(), 1);
}

/// Runs `wait` on another thread while `act` runs here; returns what it
/// returned and how long it blocked.
fn wait_during(r: &'static RingBuf, timeout: Duration, act: impl FnOnce()) -> (bool, Duration) {
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        (r.wait(Some(timeout)), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    act();
    waiter.join().unwrap()
}

#[test]
fn ringbuf_wait_honours_wakeup_flags() {
    let m: &'static Map = Box::leak(Box::new(ringbuf(4096)));
    let r = rb(m);
    let long = Duration::from_millis(1500);
    // Ready records make wait return at once.
    r.output(b"x", 0).unwrap();
    assert!(r.wait(Some(Duration::ZERO)));
    drain(r);
    assert!(!r.wait(Some(Duration::from_millis(20))));

    let (woken, took) = wait_during(r, long, || r.output(b"a", 0).unwrap());
    assert!(
        woken && took < Duration::from_millis(1200),
        "default wake-up took {took:?}"
    );
    drain(r);

    let (ready, took) = wait_during(r, Duration::from_millis(600), || {
        r.output(b"b", BPF_RB_NO_WAKEUP).unwrap()
    });
    assert!(
        took >= Duration::from_millis(550),
        "NO_WAKEUP woke the consumer after {took:?}"
    );
    assert!(ready, "the record is there once the wait times out");
    drain(r);

    // The consumer waits for a busy record; a later one does not wake it
    // unless forced.
    let busy = r.reserve(8).unwrap();
    let (_, took) = wait_during(r, Duration::from_millis(600), || r.output(b"c", 0).unwrap());
    assert!(
        took >= Duration::from_millis(550),
        "woken for a record behind a busy one"
    );
    let (woken, took) = wait_during(r, long, || r.output(b"d", BPF_RB_FORCE_WAKEUP).unwrap());
    assert!(
        woken && took < Duration::from_millis(1200),
        "FORCE_WAKEUP took {took:?}"
    );
    let (woken, took) = wait_during(r, long, || r.submit(busy, 0).unwrap());
    assert!(
        woken && took < Duration::from_millis(1200),
        "committing the awaited record took {took:?}"
    );
    assert_eq!(drain(r).len(), 3);
}

#[test]
fn ringbuf_many_producers_one_consumer() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 20_000;
    let m = ringbuf(16 * 4096);
    let consumer_map = m.clone();
    let consumer = std::thread::spawn(move || {
        let r = rb(&consumer_map);
        let mut next = [0u64; PRODUCERS as usize];
        let mut total = 0;
        while total < PRODUCERS * PER_PRODUCER {
            r.consume(&mut |rec| {
                let producer = u64::from_le_bytes(rec[..8].try_into().unwrap());
                let seq = u64::from_le_bytes(rec[8..16].try_into().unwrap());
                assert_eq!(
                    seq, next[producer as usize],
                    "producer {producer} out of order"
                );
                assert!(
                    rec[16..].iter().all(|&b| b == seq as u8),
                    "corrupted record"
                );
                next[producer as usize] += 1;
                total += 1;
                true
            });
            r.wait(Some(Duration::from_millis(5)));
        }
        next
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let m = m.clone();
            std::thread::spawn(move || {
                let r = rb(&m);
                let mut rng = Rng(p + 11);
                let mut seq = 0;
                while seq < PER_PRODUCER {
                    let len = 16 + (rng.next() % 200) as usize;
                    let Some(ptr) = r.reserve(len as u64) else {
                        std::thread::yield_now();
                        continue;
                    };
                    let mut rec = vec![seq as u8; len];
                    rec[..8].copy_from_slice(&p.to_le_bytes());
                    rec[8..16].copy_from_slice(&seq.to_le_bytes());
                    fill(ptr, &rec);
                    // Every third record is first discarded then redone.
                    if rng.next().is_multiple_of(3) {
                        r.discard(ptr, 0).unwrap();
                        continue;
                    }
                    r.submit(ptr, 0).unwrap();
                    seq += 1;
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let counts = consumer.join().unwrap();
    assert_eq!(counts, [PER_PRODUCER; PRODUCERS as usize]);
    assert_eq!(rb(&m).available(), 0);
}

// ---------------------------------------------------------------- perf event array

#[test]
fn perf_event_array_buffers_per_cpu_and_counts_lost_samples() {
    let m = create(MapDef::new(MapType::PerfEventArray, 4, 4, 0));
    let p = m.downcast::<PerfEventArray>().unwrap();
    assert_eq!(p.slots() as usize, cpu::num_cpus());
    let m = create(MapDef::new(MapType::PerfEventArray, 4, 4, 2));
    let p = m.downcast::<PerfEventArray>().unwrap();
    p.output(BPF_F_CURRENT_CPU, 1, b"on cpu 1").unwrap();
    p.output(0, 1, b"to slot 0").unwrap();
    assert_eq!(p.output(2, 0, b"x"), Err(MapError::TooBig));
    assert_eq!(p.output(BPF_F_CURRENT_CPU, 5, b"x"), Err(MapError::TooBig));
    assert!(matches!(
        p.output(1 << 60, 0, b"x"),
        Err(MapError::Invalid(_))
    ));
    let mut seen = Vec::new();
    assert_eq!(
        p.consume(&mut |cpu, data| seen.push((cpu, data.to_vec()))),
        2
    );
    assert_eq!(
        seen,
        vec![(0, b"to slot 0".to_vec()), (1, b"on cpu 1".to_vec())]
    );
    assert_eq!(p.consume(&mut |_, _| ()), 0);

    // 4096-byte buffers: 1000-byte samples take 1016 bytes with framing.
    p.set_buffer_size(4096).unwrap();
    assert!(matches!(
        p.set_buffer_size(3 * 4096),
        Err(MapError::Invalid(_))
    ));
    for _ in 0..4 {
        p.output(0, 0, &[1; 1000]).unwrap();
    }
    assert_eq!(p.output(0, 0, &[1; 1000]), Err(MapError::NoSpace));
    assert_eq!(p.output(0, 0, &[1; 1000]), Err(MapError::NoSpace));
    assert_eq!(p.lost(0), 2);
    assert_eq!(p.lost(1), 0);
    assert_eq!(p.consume(&mut |_, _| ()), 4);
    p.output(0, 0, &[1; 1000]).unwrap();
    assert!(p.wait(Some(Duration::ZERO)));
    p.consume(&mut |_, _| ());
    assert!(!p.wait(Some(Duration::from_millis(10))));
}

#[test]
fn perf_event_array_wait_wakes_on_output() {
    let m = create(MapDef::new(MapType::PerfEventArray, 4, 4, 2));
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let got = m2
            .downcast::<PerfEventArray>()
            .unwrap()
            .wait(Some(Duration::from_secs(5)));
        (got, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    m.downcast::<PerfEventArray>()
        .unwrap()
        .output(1, 0, b"event")
        .unwrap();
    let (got, took) = waiter.join().unwrap();
    assert!(got && took < Duration::from_secs(4));
}

// ---------------------------------------------------------------- program array

#[test]
fn prog_array_holds_programs_by_index() {
    let m = create(MapDef::new(MapType::ProgArray, 4, 4, 4));
    let pa = m.downcast::<ProgArray>().unwrap();
    let prog: Arc<dyn std::any::Any + Send + Sync> = Arc::new(String::from("program one"));
    pa.set(2, prog.clone(), 41).unwrap();
    assert_eq!(pa.set(4, prog.clone(), 41), Err(MapError::TooBig));
    let got = pa.get(2).unwrap();
    assert_eq!(got.downcast_ref::<String>().unwrap(), "program one");
    drop(got);
    assert!(pa.get(1).is_none());
    assert!(pa.get(u32::MAX).is_none());
    assert_eq!(m.lookup(&u32v(2)).unwrap(), u32v(41));
    assert_eq!(m.lookup(&u32v(1)), Err(MapError::NotFound));
    assert!(
        matches!(m.update(&u32v(1), &u32v(41), BPF_ANY), Err(MapError::Unsupported(m)) if m.contains("set a program"))
    );
    // Replacing releases the old program.
    pa.set(2, Arc::new(7u32), 42).unwrap();
    assert_eq!(Arc::strong_count(&prog), 1);
    assert_eq!(m.next_key(None).unwrap(), Some(u32v(0)));
    assert_eq!(m.next_key(Some(&u32v(3))).unwrap(), None);
    m.delete(&u32v(2)).unwrap();
    assert!(pa.get(2).is_none());
    assert_eq!(m.delete(&u32v(2)), Err(MapError::NotFound));
    assert_eq!(pa.clear(9), Err(MapError::TooBig));
    assert!(matches!(
        create_err(MapDef::new(MapType::ProgArray, 4, 8, 4)),
        MapError::Invalid(_)
    ));
}

// ---------------------------------------------------------------- maps of maps

#[test]
fn maps_of_maps_check_inner_maps_against_the_template() {
    let inner_def = MapDef::new(MapType::Array, 4, 8, 16);
    let outer = create(
        MapDef::new(MapType::ArrayOfMaps, 4, 4, 4)
            .named("outer")
            .with_inner(inner_def.clone()),
    );
    let good = create(inner_def.clone().named("good"));
    let wrong_type = create(MapDef::new(MapType::Hash, 4, 8, 16).named("h"));
    let wrong_value = create(MapDef::new(MapType::Array, 4, 16, 16).named("v"));
    let wrong_size = create(MapDef::new(MapType::Array, 4, 8, 32).named("s"));
    outer.update(&u32v(0), &u32v(good.id()), BPF_ANY).unwrap();
    for (m, what) in [
        (&wrong_type, "type"),
        (&wrong_value, "value_size"),
        (&wrong_size, "max_entries"),
    ] {
        match outer.update(&u32v(1), &u32v(m.id()), BPF_ANY) {
            Err(MapError::Invalid(msg)) => {
                assert!(msg.contains(what) && msg.contains("outer"), "{msg}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(
        matches!(outer.update(&u32v(1), &u32v(u32::MAX), BPF_ANY), Err(MapError::Invalid(m)) if m.contains("no live map"))
    );
    assert_eq!(
        outer.update(&u32v(4), &u32v(good.id()), BPF_ANY),
        Err(MapError::TooBig)
    );
    // Arrays of object references take only BPF_ANY, as in the kernel.
    for flags in [BPF_NOEXIST, BPF_EXIST] {
        assert!(matches!(
            outer.update(&u32v(1), &u32v(good.id()), flags),
            Err(MapError::Invalid(_))
        ));
    }
    assert_eq!(outer.lookup(&u32v(0)).unwrap(), u32v(good.id()));
    assert_eq!(outer.lookup(&u32v(1)), Err(MapError::NotFound));

    // The outer map keeps its inner maps alive.
    let good_id = good.id();
    drop(good);
    let inner = outer
        .downcast::<ArrayOfMaps>()
        .unwrap()
        .lookup_map(&u32v(0))
        .unwrap();
    assert_eq!(inner.id(), good_id);
    drop(inner);
    assert!(Map::by_id(good_id).is_some());
    outer.delete(&u32v(0)).unwrap();
    assert!(Map::by_id(good_id).is_none());
    assert_eq!(outer.delete(&u32v(0)), Err(MapError::NotFound));

    // BPF_F_INNER_MAP lets array inner maps differ in size.
    let flexible = MapDef::new(MapType::Array, 4, 8, 16).with_flags(BPF_F_INNER_MAP);
    let outer2 = create(MapDef::new(MapType::ArrayOfMaps, 4, 4, 2).with_inner(flexible.clone()));
    let bigger = create(MapDef::new(MapType::Array, 4, 8, 1000).with_flags(BPF_F_INNER_MAP));
    outer2
        .update(&u32v(0), &u32v(bigger.id()), BPF_ANY)
        .unwrap();
    // ...but flags must still match, as in the kernel.
    assert!(
        matches!(outer2.update(&u32v(1), &u32v(wrong_size.id()), BPF_ANY), Err(MapError::Invalid(m)) if m.contains("map_flags"))
    );
}

#[test]
fn hash_of_maps_keys_and_flags() {
    let inner_def = MapDef::new(MapType::Hash, 8, 8, 100);
    let outer = create(MapDef::new(MapType::HashOfMaps, 8, 4, 2).with_inner(inner_def.clone()));
    let a = create(inner_def.clone());
    // Hash inner maps may differ in max_entries (only arrays check it).
    let b = create(MapDef::new(MapType::Hash, 8, 8, 5000));
    let k = |n: u64| n.to_le_bytes();
    outer.update(&k(1), &u32v(a.id()), BPF_NOEXIST).unwrap();
    assert_eq!(
        outer.update(&k(1), &u32v(b.id()), BPF_NOEXIST),
        Err(MapError::Exists)
    );
    assert_eq!(
        outer.update(&k(2), &u32v(b.id()), BPF_EXIST),
        Err(MapError::NotFound)
    );
    outer.update(&k(2), &u32v(b.id()), BPF_ANY).unwrap();
    assert_eq!(
        outer.update(&k(3), &u32v(b.id()), BPF_ANY),
        Err(MapError::TooBig)
    );
    let hm = outer.downcast::<HashOfMaps>().unwrap();
    assert_eq!(hm.lookup_map(&k(2)).unwrap().id(), b.id());
    assert!(hm.lookup_map(&k(3)).is_none());
    let first = outer.next_key(None).unwrap().unwrap();
    let second = outer.next_key(Some(&first)).unwrap().unwrap();
    assert_ne!(first, second);
    assert_eq!(outer.next_key(Some(&second)).unwrap(), None);
    outer.delete(&k(1)).unwrap();
    assert_eq!(outer.len(), 1);
    assert!(matches!(
        create_err(MapDef::new(MapType::HashOfMaps, 8, 4, 2)),
        MapError::Invalid(_)
    ));
    // Maps of maps cannot nest.
    let nested = MapDef::new(MapType::ArrayOfMaps, 4, 4, 2).with_inner(inner_def);
    assert!(matches!(
        create_err(MapDef::new(MapType::HashOfMaps, 8, 4, 2).with_inner(nested)),
        MapError::Invalid(_)
    ));
}

// ---------------------------------------------------------------- object references

#[test]
fn reference_maps_store_their_values() {
    let devmap = create(MapDef::new(MapType::Devmap, 4, 4, 8));
    devmap.update(&u32v(3), &u32v(17), BPF_ANY).unwrap();
    assert_eq!(devmap.lookup(&u32v(3)).unwrap(), u32v(17));
    assert_eq!(devmap.lookup(&u32v(2)), Err(MapError::NotFound));
    assert_eq!(
        devmap.update(&u32v(2), &u32v(1), BPF_NOEXIST),
        Err(MapError::Exists)
    );
    devmap.update(&u32v(2), &u32v(18), BPF_EXIST).unwrap();
    assert_eq!(devmap.lookup(&u32v(2)).unwrap(), u32v(18));
    let p = devmap.imp().lookup_ptr(&u32v(3), 0).unwrap();
    assert_eq!(unsafe { p.as_ptr().cast::<u32>().read_unaligned() }, 17);
    assert_eq!(
        devmap.update(&u32v(8), &u32v(1), BPF_ANY),
        Err(MapError::TooBig)
    );
    assert_eq!(devmap.next_key(Some(&u32v(6))).unwrap(), Some(u32v(7)));
    assert_eq!(devmap.next_key(Some(&u32v(7))).unwrap(), None);
    devmap.delete(&u32v(3)).unwrap();
    assert_eq!(devmap.lookup(&u32v(3)), Err(MapError::NotFound));
    // struct bpf_devmap_val may carry a program fd.
    create(MapDef::new(MapType::Devmap, 4, 8, 8));
    assert!(matches!(
        create_err(MapDef::new(MapType::Devmap, 4, 12, 8)),
        MapError::Invalid(_)
    ));
    assert!(matches!(
        create_err(MapDef::new(MapType::Xskmap, 4, 8, 8)),
        MapError::Invalid(_)
    ));
    assert!(matches!(
        create_err(MapDef::new(MapType::Cpumap, 8, 4, 8)),
        MapError::Invalid(_)
    ));

    let devhash = create(MapDef::new(MapType::DevmapHash, 4, 4, 2));
    devhash.update(&u32v(100), &u32v(1), BPF_ANY).unwrap();
    devhash.update(&u32v(200), &u32v(2), BPF_ANY).unwrap();
    assert_eq!(
        devhash.update(&u32v(300), &u32v(3), BPF_ANY),
        Err(MapError::TooBig)
    );
    assert_eq!(
        devhash.update(&u32v(100), &u32v(3), BPF_NOEXIST),
        Err(MapError::Exists)
    );
    assert_eq!(devhash.next_key(None).unwrap(), Some(u32v(100)));

    // A cpumap queue size of 0 removes the entry; oversized queues are refused.
    let cpumap = create(MapDef::new(MapType::Cpumap, 4, 4, 4));
    cpumap.update(&u32v(1), &u32v(192), BPF_ANY).unwrap();
    cpumap.update(&u32v(1), &u32v(0), BPF_ANY).unwrap();
    assert_eq!(cpumap.lookup(&u32v(1)), Err(MapError::NotFound));
    assert!(matches!(
        cpumap.update(&u32v(1), &u32v(100_000), BPF_ANY),
        Err(MapError::Invalid(_))
    ));

    let sockhash = create(MapDef::new(MapType::Sockhash, 12, 8, 16));
    sockhash
        .update(&[1; 12], &7u64.to_le_bytes(), BPF_ANY)
        .unwrap();
    assert_eq!(sockhash.lookup(&[1; 12]).unwrap(), 7u64.to_le_bytes());
    for t in [
        MapType::Sockmap,
        MapType::CgroupArray,
        MapType::ReuseportSockarray,
        MapType::Xskmap,
    ] {
        let m = create(MapDef::new(t, 4, 4, 2));
        m.update(&u32v(1), &u32v(5), BPF_ANY).unwrap();
        assert_eq!(m.lookup(&u32v(1)).unwrap(), u32v(5), "{t}");
        // Only the cgroup array is an fd array in the kernel (BPF_ANY only).
        let exist = m.update(&u32v(1), &u32v(6), BPF_EXIST);
        assert_eq!(
            matches!(exist, Err(MapError::Invalid(_))),
            t == MapType::CgroupArray,
            "{t}: {exist:?}"
        );
    }
}

// ---------------------------------------------------------------- storage maps

#[test]
fn local_storage_is_per_owner() {
    for t in [
        MapType::SkStorage,
        MapType::InodeStorage,
        MapType::TaskStorage,
        MapType::CgrpStorage,
    ] {
        assert!(
            matches!(create_err(MapDef::new(t, 4, 8, 0)), MapError::Invalid(m) if m.contains("NO_PREALLOC"))
        );
        assert!(matches!(
            create_err(MapDef::new(t, 4, 8, 10).with_flags(BPF_F_NO_PREALLOC)),
            MapError::Invalid(m) if m.contains("max_entries")
        ));
        create(MapDef::new(t, 4, 8, 0).with_flags(BPF_F_NO_PREALLOC));
    }
    let m = create(MapDef::new(MapType::SkStorage, 8, 8, 0).with_flags(BPF_F_NO_PREALLOC));
    let ls = m.downcast::<LocalStorage>().unwrap();
    assert!(ls.get(0xdead_beef_0000).is_none());
    let p = ls
        .get_or_create(0xdead_beef_0000, Some(&5u64.to_le_bytes()))
        .unwrap();
    assert_eq!(unsafe { p.as_ptr().cast::<u64>().read() }, 5);
    // Created once: the init value applies only the first time.
    let again = ls
        .get_or_create(0xdead_beef_0000, Some(&6u64.to_le_bytes()))
        .unwrap();
    assert_eq!(p, again);
    let zeroed = ls.get_or_create(1, None).unwrap();
    assert_eq!(unsafe { zeroed.as_ptr().cast::<u64>().read() }, 0);
    assert!(ls.get_or_create(2, Some(&[1, 2, 3])).is_none());
    unsafe { p.as_ptr().cast::<u64>().write(9) };
    assert_eq!(
        m.lookup(&0xdead_beef_0000u64.to_le_bytes()).unwrap(),
        9u64.to_le_bytes()
    );
    m.update(&3u64.to_le_bytes(), &4u64.to_le_bytes(), BPF_NOEXIST)
        .unwrap();
    assert_eq!(m.len(), 3);
    let mut owners = Vec::new();
    let mut cur = None;
    while let Some(k) = m.next_key(cur.as_deref()).unwrap() {
        owners.push(u64::from_le_bytes(k.clone().try_into().unwrap()));
        cur = Some(k);
    }
    assert_eq!(owners, vec![1, 3, 0xdead_beef_0000]);
    ls.remove(1).unwrap();
    assert_eq!(ls.remove(1), Err(MapError::NotFound));
    assert_eq!(m.delete(&3u64.to_le_bytes()), Ok(()));
}

#[test]
fn cgroup_storage_per_key_and_per_cpu() {
    assert!(matches!(
        create_err(MapDef::new(MapType::CgroupStorage, 4, 8, 0)),
        MapError::Invalid(_)
    ));
    assert!(matches!(
        create_err(MapDef::new(MapType::CgroupStorage, 8, 8, 1)),
        MapError::Invalid(_)
    ));
    let m = create(MapDef::new(MapType::CgroupStorage, 16, 8, 0));
    let cs = m.downcast::<CgroupStorage>().unwrap();
    let key = [1u8; 16];
    let p = cs.get_or_create(&key, 0).unwrap();
    unsafe { p.as_ptr().cast::<u64>().write(77) };
    assert_eq!(m.lookup(&key).unwrap(), 77u64.to_le_bytes());
    assert!(matches!(
        m.update(&key, &[0; 8], BPF_NOEXIST),
        Err(MapError::Invalid(_))
    ));
    assert_eq!(
        m.update(&[2u8; 16], &[0; 8], BPF_EXIST),
        Err(MapError::NotFound)
    );
    assert!(matches!(m.delete(&key), Err(MapError::Invalid(_))));

    let pm = create(MapDef::new(MapType::PercpuCgroupStorage, 8, 4, 0));
    let pcs = pm.downcast::<CgroupStorage>().unwrap();
    let ncpus = pm.num_cpus();
    let key = 5u64.to_le_bytes();
    for cpu in 0..ncpus as u32 {
        let p = pcs.get_or_create(&key, cpu).unwrap();
        unsafe { p.as_ptr().cast::<u32>().write(cpu + 100) };
    }
    let all = pm.lookup(&key).unwrap();
    assert_eq!(all.len(), 8 * ncpus);
    for cpu in 0..ncpus {
        assert_eq!(all[cpu * 8..cpu * 8 + 4], (cpu as u32 + 100).to_le_bytes());
    }
}

#[test]
fn stack_trace_ids_and_collisions() {
    let m = create(MapDef::new(MapType::StackTrace, 4, 8 * 4, 64));
    let st = m.downcast::<StackTraceMap>().unwrap();
    let a = st.get_stackid(&[0x10, 0x20, 0x30], 0).unwrap();
    assert_eq!(st.get_stackid(&[0x10, 0x20, 0x30], 0).unwrap(), a);
    let mut want = Vec::new();
    for ip in [0x10u64, 0x20, 0x30, 0] {
        want.extend_from_slice(&ip.to_ne_bytes());
    }
    assert_eq!(m.lookup(&u32v(a)).unwrap(), want);
    // Skipping frames and truncating to value_size / 8 frames.
    let b = st.get_stackid(&[1, 2, 3, 4, 5, 6, 7], 2).unwrap();
    let trace = m.lookup(&u32v(b)).unwrap();
    assert_eq!(u64::from_ne_bytes(trace[..8].try_into().unwrap()), 3);
    assert_eq!(u64::from_ne_bytes(trace[24..32].try_into().unwrap()), 6);
    assert!(matches!(st.get_stackid(&[1], 1), Err(MapError::Invalid(_))));
    assert!(matches!(
        m.update(&u32v(a), &want, BPF_ANY),
        Err(MapError::Invalid(_))
    ));
    m.delete(&u32v(a)).unwrap();
    assert_eq!(m.lookup(&u32v(a)), Err(MapError::NotFound));

    // One bucket: every other trace collides.
    let one = create(MapDef::new(MapType::StackTrace, 4, 8, 1));
    let st1 = one.downcast::<StackTraceMap>().unwrap();
    assert_eq!(st1.get_stackid(&[1], 0).unwrap(), 0);
    assert_eq!(st1.get_stackid(&[2], 0), Err(MapError::Exists));
    assert_eq!(st1.get_stackid(&[2], BPF_F_REUSE_STACKID).unwrap(), 0);
    assert_eq!(one.lookup(&u32v(0)).unwrap(), 2u64.to_ne_bytes());
    assert_eq!(one.next_key(None).unwrap(), Some(u32v(0)));
    assert!(matches!(
        create_err(MapDef::new(MapType::StackTrace, 4, 12, 8)),
        MapError::Invalid(_)
    ));
    assert!(matches!(
        create_err(MapDef::new(MapType::StackTrace, 4, 8 * 128, 8)),
        MapError::Invalid(_)
    ));
}

// ---------------------------------------------------------------- unsupported

#[test]
fn kernel_only_types_and_pinning_are_refused_with_reasons() {
    for (t, why) in [
        (MapType::StructOps, "kernel function tables"),
        (MapType::UserRingbuf, "bpf_user_ringbuf_drain"),
        (MapType::Arena, "page-fault"),
    ] {
        match create_err(MapDef::new(t, 4, 4, 4096)) {
            MapError::Unsupported(m) => assert!(m.contains(why), "{m}"),
            other => panic!("{t}: {other:?}"),
        }
    }
    let path = std::env::temp_dir().join(format!("ebpfvm-special-pin-{}", std::process::id()));
    match Map::open_pinned(MapDef::new(MapType::Queue, 0, 4, 4), &path) {
        Err(MapError::Unsupported(m)) => assert!(m.contains("pinning")),
        other => panic!("{other:?}"),
    }
    assert!(!path.exists());
}

// ---------------------------------------------------------------- ring buffer model

mod ringbuf_model {
    use super::*;
    use proptest::prelude::{prop, prop_oneof, proptest, ProptestConfig, Strategy};

    #[derive(Clone, Debug)]
    enum Op {
        Reserve(u64),
        Submit(usize),
        Discard(usize),
        Consume(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..1400).prop_map(Op::Reserve),
            2 => (0usize..8).prop_map(Op::Submit),
            1 => (0usize..8).prop_map(Op::Discard),
            1 => (1usize..5).prop_map(Op::Consume),
        ]
    }

    #[derive(Clone, PartialEq, Debug)]
    enum State {
        Busy,
        Committed,
        Discarded,
    }

    struct Record {
        pos: u64,
        span: u64,
        data: Vec<u8>,
        state: State,
        ptr: NonNull<u8>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Reservations succeed exactly when the kernel's position rules
        /// allow, and the consumer sees committed records in reservation
        /// order, stopping at the first busy one.
        #[test]
        fn ring_buffer_matches_a_model(ops in prop::collection::vec(op(), 1..120)) {
            let m = ringbuf(4096);
            let r = rb(&m);
            let size = 4096u64;
            let mut records: Vec<Record> = Vec::new(); // not yet consumed, in order
            let mut prod = 0u64;
            let mut cons = 0u64;
            let mut stamp = 0u8;
            for op in ops {
                match op {
                    Op::Reserve(len) => {
                        let span = (len + 8).next_multiple_of(8);
                        let pending = records.iter().find(|rec| rec.state == State::Busy).map_or(prod, |rec| rec.pos);
                        let fits = span < size && prod + span - cons < size && prod + span - pending < size;
                        let got = r.reserve(len);
                        assert_eq!(got.is_some(), fits, "reserve({len}) at prod {prod} cons {cons} pending {pending}");
                        if let Some(ptr) = got {
                            stamp = stamp.wrapping_add(1);
                            let data: Vec<u8> = (0..len).map(|i| stamp ^ i as u8).collect();
                            fill(ptr, &data);
                            records.push(Record { pos: prod, span, data, state: State::Busy, ptr });
                            prod += span;
                        }
                    }
                    Op::Submit(i) | Op::Discard(i) => {
                        let discard = matches!(op, Op::Discard(_));
                        let busy: Vec<usize> = (0..records.len()).filter(|&k| records[k].state == State::Busy).collect();
                        if busy.is_empty() {
                            continue;
                        }
                        let k = busy[i % busy.len()];
                        let ptr = records[k].ptr;
                        if discard {
                            r.discard(ptr, 0).unwrap();
                            records[k].state = State::Discarded;
                        } else {
                            r.submit(ptr, 0).unwrap();
                            records[k].state = State::Committed;
                        }
                        // Committing twice is always refused.
                        assert!(r.submit(ptr, 0).is_err());
                    }
                    Op::Consume(limit) => {
                        let mut want = Vec::new();
                        let mut taken = 0;
                        for rec in &records {
                            if rec.state == State::Busy || want.len() == limit {
                                break;
                            }
                            taken += 1;
                            if rec.state == State::Committed {
                                want.push(rec.data.clone());
                            }
                        }
                        let mut got = Vec::new();
                        r.consume(&mut |data| {
                            got.push(data.to_vec());
                            got.len() < limit
                        });
                        assert_eq!(got, want);
                        for rec in records.drain(..taken) {
                            cons = rec.pos + rec.span;
                        }
                    }
                }
                assert_eq!(r.query(BPF_RB_PROD_POS), prod);
                assert_eq!(r.query(BPF_RB_CONS_POS), cons);
            }
        }
    }
}

/// Keys and values of any length reaching the implementations directly
/// (as a runtime bug or a forged program argument might pass them) give
/// errors, never panics.
#[test]
fn implementations_survive_wrong_sized_arguments() {
    let inner = MapDef::new(MapType::Array, 4, 4, 4);
    let defs = [
        MapDef::new(MapType::Queue, 0, 4, 4),
        MapDef::new(MapType::Stack, 0, 4, 4),
        MapDef::new(MapType::BloomFilter, 0, 4, 4),
        lpm::lpm_def(4, 16),
        lpm::lpm_def(16, 16),
        MapDef::new(MapType::Ringbuf, 0, 0, 4096),
        MapDef::new(MapType::PerfEventArray, 4, 4, 2),
        MapDef::new(MapType::ProgArray, 4, 4, 4),
        MapDef::new(MapType::ArrayOfMaps, 4, 4, 4).with_inner(inner.clone()),
        MapDef::new(MapType::HashOfMaps, 8, 4, 4).with_inner(inner),
        MapDef::new(MapType::Devmap, 4, 8, 4),
        MapDef::new(MapType::DevmapHash, 4, 4, 4),
        MapDef::new(MapType::Cpumap, 4, 4, 4),
        MapDef::new(MapType::Sockhash, 6, 8, 4),
        MapDef::new(MapType::SkStorage, 4, 8, 0).with_flags(BPF_F_NO_PREALLOC),
        MapDef::new(MapType::CgroupStorage, 8, 8, 0),
        MapDef::new(MapType::PercpuCgroupStorage, 16, 4, 0),
        MapDef::new(MapType::StackTrace, 4, 16, 4),
    ];
    let mut rng = Rng(17);
    for def in defs {
        let m = create(def);
        let imp = m.imp();
        for _ in 0..300 {
            let key: Vec<u8> = (0..rng.next() % 40).map(|_| rng.next() as u8).collect();
            let value: Vec<u8> = (0..rng.next() % 40).map(|_| rng.next() as u8).collect();
            let flags = rng.next() % 5;
            let _ = imp.update(&key, &value, flags);
            let _ = imp.update_from_program(&key, &value, flags, (rng.next() % 4) as u32);
            let _ = imp.lookup(&key);
            let _ = imp.lookup_ptr(&key, (rng.next() % 4) as u32);
            let _ = imp.next_key(Some(&key));
            let _ = imp.push(&value, flags);
            let _ = imp.peek(Some(&value));
            let _ = imp.pop();
            let _ = imp.delete(&key);
        }
        let _ = (imp.len(), imp.memory_usage(), imp.next_key(None));
    }
}

/// Huge `max_entries` cost memory only for the entries used.
#[test]
fn huge_maps_allocate_only_what_they_use() {
    let inner = MapDef::new(MapType::Array, 4, 4, 4);
    let last = u32::MAX - 1;
    let pa = create(MapDef::new(MapType::ProgArray, 4, 4, u32::MAX));
    let progs = pa.downcast::<ProgArray>().unwrap();
    progs.set(last, Arc::new(()), 5).unwrap();
    assert_eq!(pa.lookup(&u32v(last)).unwrap(), u32v(5));
    assert!(progs.get(7).is_none());
    assert_eq!(pa.len(), 1);
    let aom = create(MapDef::new(MapType::ArrayOfMaps, 4, 4, u32::MAX).with_inner(inner.clone()));
    let member = create(inner);
    aom.update(&u32v(last), &u32v(member.id()), BPF_ANY)
        .unwrap();
    assert_eq!(aom.lookup(&u32v(last)).unwrap(), u32v(member.id()));
    let dev = create(MapDef::new(MapType::Devmap, 4, 4, u32::MAX));
    dev.update(&u32v(last), &u32v(3), BPF_ANY).unwrap();
    assert_eq!(dev.lookup(&u32v(last)).unwrap(), u32v(3));
    let perf = create(MapDef::new(MapType::PerfEventArray, 4, 4, u32::MAX));
    let pe = perf.downcast::<PerfEventArray>().unwrap();
    pe.output(last as u64, 0, b"far").unwrap();
    let mut seen = Vec::new();
    pe.consume(&mut |cpu, data| seen.push((cpu, data.to_vec())));
    assert_eq!(seen, vec![(last, b"far".to_vec())]);
    let st = create(MapDef::new(MapType::StackTrace, 4, 8, 1 << 31));
    let id = st
        .downcast::<StackTraceMap>()
        .unwrap()
        .get_stackid(&[42], 0)
        .unwrap();
    assert_eq!(st.next_key(None).unwrap(), Some(u32v(id)));
    for m in [&pa, &aom, &dev, &perf, &st] {
        assert!(
            m.imp().memory_usage() < 16 << 20,
            "{}: {}",
            m.map_type(),
            m.imp().memory_usage()
        );
    }
}
