//! `BPF_MAP_TYPE_BLOOM_FILTER`: a probabilistic set of values (no keys).
//!
//! Push adds a value; peek with a value tests membership: `NotFound` means
//! certainly absent, `Ok` means possibly present (no false negatives).
//! Sizing follows the kernel: `map_extra` bits 0-3 give the number of hash
//! functions (5 when 0), and the bit array holds about
//! `max_entries * hashes / ln 2` bits rounded up to a power of two.

use std::alloc::{self, Layout};
use std::any::Any;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::reference_maps::{check_create_flags, def_error, BPF_F_ACCESS_MASK, BPF_F_NUMA_NODE};
use super::{MapDef, MapError, MapImpl, BPF_ANY};

/// `BPF_F_ZERO_SEED`: hash with seed 0 instead of a random one.
pub const BPF_F_ZERO_SEED: u32 = 1 << 6;

const DEFAULT_HASH_FUNCS: u32 = 5;
const JHASH_INITVAL: u32 = 0xdead_beef;

fn jhash_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn jhash_final(mut a: u32, mut b: u32, mut c: u32) -> u32 {
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

/// Bob Jenkins' lookup3 hash of `data` (the kernel's `jhash`), reading
/// words little-endian so results do not depend on the host.
pub(crate) fn jhash(data: &[u8], initval: u32) -> u32 {
    let init = JHASH_INITVAL
        .wrapping_add(data.len() as u32)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    let word = |w: &[u8]| {
        let mut buf = [0u8; 4];
        buf[..w.len()].copy_from_slice(w);
        u32::from_le_bytes(buf)
    };
    let mut rest = data;
    while rest.len() > 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        jhash_mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        return c;
    }
    a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
    if rest.len() > 4 {
        b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(word(&rest[8..]));
    }
    jhash_final(a, b, c)
}

/// A Bloom filter map: bits updated atomically, so pushes and membership
/// tests from any number of threads need no lock.
pub struct BloomFilter {
    value_size: usize,
    hash_funcs: u32,
    seed: u32,
    bit_mask: u64,
    words: NonNull<AtomicU64>,
    word_count: usize,
}

// SAFETY: the bit array is only accessed through atomics.
unsafe impl Send for BloomFilter {}
unsafe impl Sync for BloomFilter {}

impl BloomFilter {
    pub fn new(def: &MapDef) -> Result<BloomFilter, MapError> {
        check_create_flags(def, BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | BPF_F_ACCESS_MASK)?;
        if def.key_size != 0 {
            return Err(def_error(
                def,
                format!("key_size must be 0, got {}", def.key_size),
            ));
        }
        if def.value_size == 0 {
            return Err(def_error(def, "value_size must be positive"));
        }
        if def.max_entries == 0 {
            return Err(def_error(def, "max_entries must be positive"));
        }
        if def.map_extra & !0xf != 0 {
            return Err(def_error(
                def,
                format!(
                    "map_extra {:#x}: only bits 0-3 (the number of hash functions) may be set",
                    def.map_extra
                ),
            ));
        }
        let hash_funcs = match def.map_extra as u32 {
            0 => DEFAULT_HASH_FUNCS,
            n => n,
        };
        // About max_entries * hash_funcs / ln(2) bits (7/5 approximates 1/ln 2).
        let wanted = def.max_entries as u64 * hash_funcs as u64 / 5 * 7;
        let bits: u64 = if wanted > 1 << 31 {
            1 << 32
        } else {
            wanted.max(64).next_power_of_two()
        };
        let word_count = (bits / 64) as usize;
        let layout = Layout::array::<AtomicU64>(word_count)
            .map_err(|_| def_error(def, "bloom filter bit array is too large"))?;
        // SAFETY: non-zero size; zeroed memory is a valid AtomicU64 array.
        // Large arrays come from zero pages the OS maps in lazily.
        let words = NonNull::new(unsafe { alloc::alloc_zeroed(layout) } as *mut AtomicU64)
            .ok_or_else(|| def_error(def, "out of memory for the bit array"))?;
        let seed = if def.flags & BPF_F_ZERO_SEED != 0 {
            0
        } else {
            RandomState::new().hash_one(0u64) as u32
        };
        Ok(BloomFilter {
            value_size: def.value_size as usize,
            hash_funcs,
            seed,
            bit_mask: bits - 1,
            words,
            word_count,
        })
    }

    /// Number of bits in the filter.
    pub fn bit_count(&self) -> u64 {
        self.bit_mask + 1
    }

    /// Number of hash functions (bits set per value).
    pub fn hash_funcs(&self) -> u32 {
        self.hash_funcs
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `words` points to `word_count` initialised atomics owned
        // by `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr(), self.word_count) }
    }

    fn bits_of<'a>(&'a self, value: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
        (0..self.hash_funcs)
            .map(move |i| jhash(value, self.seed.wrapping_add(i)) as u64 & self.bit_mask)
    }

    fn check_value(&self, value: &[u8]) -> Result<(), MapError> {
        if value.len() != self.value_size {
            return Err(MapError::invalid(format!(
                "bloom filter values are {} bytes, got {}",
                self.value_size,
                value.len()
            )));
        }
        Ok(())
    }

    /// Adds `value` (flags must be `BPF_ANY`).
    pub fn add(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        if flags != BPF_ANY {
            return Err(MapError::invalid(format!(
                "bloom filter push flags must be BPF_ANY, got {flags:#x}"
            )));
        }
        self.check_value(value)?;
        let words = self.words();
        for bit in self.bits_of(value) {
            words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether `value` may have been added (false: certainly not).
    pub fn may_contain(&self, value: &[u8]) -> bool {
        let words = self.words();
        self.bits_of(value)
            .all(|bit| words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0)
    }
}

impl Drop for BloomFilter {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::array::<AtomicU64>(self.word_count) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { alloc::dealloc(self.words.as_ptr() as *mut u8, layout) };
        }
    }
}

impl MapImpl for BloomFilter {
    fn lookup(&self, _key: &[u8]) -> Result<Vec<u8>, MapError> {
        Err(MapError::invalid(
            "a bloom filter lookup needs the value to test: use peek(value)",
        ))
    }

    fn update(&self, _key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.add(value, flags)
    }

    fn push(&self, value: &[u8], flags: u64) -> Result<(), MapError> {
        self.add(value, flags)
    }

    fn peek(&self, value: Option<&[u8]>) -> Result<Vec<u8>, MapError> {
        let value = value
            .ok_or_else(|| MapError::invalid("a bloom filter peek needs the value to test"))?;
        self.check_value(value)?;
        if self.may_contain(value) {
            Ok(Vec::new())
        } else {
            Err(MapError::NotFound)
        }
    }

    fn pop(&self) -> Result<Vec<u8>, MapError> {
        Err(MapError::unsupported(
            "values cannot be removed from a bloom filter",
        ))
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::unsupported(
            "values cannot be removed from a bloom filter",
        ))
    }

    /// A bloom filter does not know how many values it holds: 0.
    fn len(&self) -> usize {
        0
    }

    fn memory_usage(&self) -> usize {
        self.word_count * 8
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
