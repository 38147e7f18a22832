//! The ELF and BTF parsers on damaged input: truncations, byte flips and
//! overwritten size fields of real objects. Every outcome must be `Ok` or
//! an error; no panic, no hang, no huge allocation (a bogus size would
//! abort the test process).

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ebpfvm_core::btf::ext::BtfExt;
use ebpfvm_core::btf::Btf;
use ebpfvm_core::elf::Object;
use proptest::prelude::*;

/// Objects small enough to parse thousands of times in a debug build.
const MAX_FUZZ_OBJECT: usize = 48 * 1024;
/// No parse of a damaged object may take this long.
const SLOW: Duration = Duration::from_secs(5);

fn seeds() -> &'static Vec<(String, Vec<u8>)> {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let corpus = root.join("../../../shared/verifier-corpus");
        assert!(
            corpus.is_dir(),
            "the shared verifier corpus is missing: expected {}",
            corpus.display()
        );
        let mut out = Vec::new();
        let mut stack = vec![corpus.clone(), root.join("tests/elf_data")];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let bytes = fs::read(&p).unwrap();
                if bytes.starts_with(b"\x7fELF") && bytes.len() <= MAX_FUZZ_OBJECT {
                    out.push((p.display().to_string(), bytes));
                }
            }
        }
        out.sort();
        assert!(
            out.len() > 50,
            "expected many small objects, found {}",
            out.len()
        );
        out
    })
}

/// Parses and uses everything the loader returns, as a consumer would.
fn exercise(bytes: &[u8]) {
    let start = Instant::now();
    if let Ok(obj) = Object::parse(bytes) {
        for p in &obj.programs {
            if let Ok(prog) = &p.program {
                assert_eq!(prog.len(), p.insns.len());
            }
        }
        if let Some(btf) = &obj.btf {
            for m in &obj.maps {
                for id in [m.key_type, m.value_type].into_iter().flatten() {
                    let _ = btf.describe(id);
                }
            }
        }
    }
    assert!(start.elapsed() < SLOW, "parsing took {:?}", start.elapsed());
}

/// Every type of a BTF blob, resolved, sized and described.
fn exercise_btf(bytes: &[u8]) {
    let start = Instant::now();
    if let Ok(btf) = Btf::parse(bytes) {
        for id in 0..btf.len() as u32 {
            let _ = btf.resolve(id);
            let _ = btf.size_of(id);
            let _ = btf.describe(id);
            let _ = btf.members(id);
        }
        let _ = BtfExt::parse(bytes, &btf);
    }
    assert!(
        start.elapsed() < SLOW,
        "BTF parsing took {:?}",
        start.elapsed()
    );
}

/// The `.BTF` blob of an object, found by its header (magic, version 1).
fn btf_blob(bytes: &[u8]) -> Option<&[u8]> {
    let at = bytes.windows(4).position(|w| w == [0x9f, 0xeb, 1, 0])?;
    Some(&bytes[at..])
}

/// The `.BTF` blobs of the seeds.
fn btf_seeds() -> &'static Vec<Vec<u8>> {
    static BLOBS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BLOBS.get_or_init(|| {
        let blobs: Vec<Vec<u8>> = seeds()
            .iter()
            .filter_map(|(_, b)| btf_blob(b).map(<[u8]>::to_vec))
            .collect();
        assert!(
            blobs.len() > 20,
            "expected objects with BTF, found {}",
            blobs.len()
        );
        blobs
    })
}

#[derive(Clone, Debug)]
enum Damage {
    Truncate(usize),
    Flip(Vec<(usize, u8)>),
    /// A 32- or 64-bit field set to a large or boundary value.
    Field {
        at: usize,
        value: u64,
        wide: bool,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..12).prop_map(Damage::Flip),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u64),
                Just(u32::MAX as u64),
                Just(u64::MAX),
                Just(0x8000_0000),
                Just(0x7fff_fff8),
                any::<u64>()
            ],
            any::<bool>()
        )
            .prop_map(|(at, value, wide)| Damage::Field { at, value, wide }),
    ]
}

fn apply(seed: &[u8], d: &Damage) -> Vec<u8> {
    let mut b = seed.to_vec();
    match d {
        Damage::Truncate(n) => b.truncate(n % (b.len() + 1)),
        Damage::Flip(flips) => {
            for &(at, v) in flips {
                let i = at % b.len();
                b[i] ^= v.max(1);
            }
        }
        Damage::Field { at, value, wide } => {
            let w = if *wide { 8 } else { 4 };
            if b.len() >= w {
                // Aligned like the header and table fields it may hit.
                let i = (at % (b.len() - w + 1)) & !(w - 1);
                b[i..i + w].copy_from_slice(&value.to_le_bytes()[..w]);
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn damaged_objects_never_panic(pick in any::<usize>(), d in damage()) {
        let seeds = seeds();
        let (_, seed) = &seeds[pick % seeds.len()];
        exercise(&apply(seed, &d));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 5_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn damaged_btf_never_panics(pick in any::<usize>(), d in damage()) {
        let blobs = btf_seeds();
        let seed = &blobs[pick % blobs.len()];
        exercise_btf(&apply(seed, &d));
    }
}

#[test]
fn undamaged_seeds_parse() {
    // The seeds themselves: every one outside invalid/ loads.
    for (name, bytes) in seeds() {
        let r = Object::parse(bytes);
        if !name.contains("/invalid/") {
            assert!(r.is_ok(), "{name}: {:?}", r.err());
        }
        if let Some(b) = btf_blob(bytes) {
            exercise_btf(b);
        }
    }
}
