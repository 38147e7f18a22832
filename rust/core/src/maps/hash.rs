//! `BPF_MAP_TYPE_HASH`, and the hash table every hash-like map type
//! (per-CPU, LRU, LRU per-CPU) is built on.
//!
//! Layout of the region, behind the header:
//! - `n_buckets` (the next power of two ≥ `max_entries`) `u32` bucket heads;
//! - `max_entries` preallocated element slots, each
//!   `[next: u32][hash: u32][lru_prev: u32][lru_next: u32][key, padded to 8]
//!   [value: ncpus slots of round_up(value_size, 8)]`.
//!
//! Every link is a slot index plus one, so zero-filled memory is an empty
//! table and nothing needs initialising up front. Slots are handed out from
//! a free list, then from a high-water mark (`next_unused`), so a large
//! `max_entries` only costs the pages actually used. A slot's value memory
//! is never released while the map lives: `lookup_ptr` pointers stay valid
//! after a delete (a later insert may reuse the slot, as in the kernel).
//!
//! Every operation takes the region's lock except program lookups in maps
//! without an LRU list: those walk the chain optimistically and check the
//! header's sequence count (bumped around every change to the chains or
//! the free list) before trusting the result, falling back to the lock if a
//! change got in the way, so readers on several threads share no written
//! cache line. (User-space lookups keep the lock: values are updated in
//! place, and the lock keeps a copy from being torn by a user update.)
//! Key comparisons read whole 8-byte words (a key's padding is never
//! written, so it stays zero).
//!
//! Writes are ordered so that a process killed in the middle of one leaves
//! only a leaked slot or a stale count, never a broken chain: an element is
//! filled before it is linked, and unlinked before it is freed. Whoever takes the lock over from a dead
//! process rebuilds the count, the free list and the LRU list from the
//! bucket chains ([`HashCore::repair`]).

use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use super::percpu_array::MAX_PERCPU_VALUE;
use super::region::{
    check_flags, check_len, checked_size, hash_key, round8, LockGuard, Region, HEADER_SIZE,
};
use super::{
    cpu, MapDef, MapError, BPF_EXIST, BPF_F_LOCK, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC,
    BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY, BPF_F_WRONLY_PROG, BPF_NOEXIST,
};

/// `BPF_F_NUMA_NODE`, accepted and ignored.
const BPF_F_NUMA_NODE: u32 = 1 << 2;
/// `BPF_F_ZERO_SEED`, accepted: our hash is unseeded anyway (it is part of
/// the pinned file format).
const BPF_F_ZERO_SEED: u32 = 1 << 6;
/// Largest key the kernel accepts (`MAX_BPF_STACK`).
const MAX_KEY: u32 = 512;
/// Largest value the kernel accepts in a hash element (about
/// `KMALLOC_MAX_SIZE` less the key and element header).
const MAX_HASH_VALUE: u32 = (4 << 20) - MAX_KEY - 64;

const HASH_FLAGS: u32 = BPF_F_NO_PREALLOC
    | BPF_F_NUMA_NODE
    | BPF_F_RDONLY
    | BPF_F_WRONLY
    | BPF_F_ZERO_SEED
    | BPF_F_RDONLY_PROG
    | BPF_F_WRONLY_PROG;

// Element field offsets.
const E_NEXT: usize = 0;
const E_HASH: usize = 4;
const E_LRU_PREV: usize = 8;
const E_LRU_NEXT: usize = 12;
const E_KEY: usize = 16;

/// Which hash-like map a [`HashCore`] implements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kind {
    pub(crate) percpu: bool,
    pub(crate) lru: bool,
}

/// A value being stored.
#[derive(Clone, Copy)]
pub(crate) enum NewValue<'a> {
    /// The user view: the whole value (every CPU's slot for per-CPU maps).
    All(&'a [u8]),
    /// A program's update of a per-CPU map: only this CPU's slot.
    Cpu(usize, &'a [u8]),
}

/// The table behind every hash-like map type.
pub(crate) struct HashCore {
    region: Region,
    lru: bool,
    percpu: bool,
    key_size: usize,
    value_size: usize,
    /// Bytes of one CPU's value slot.
    slot: usize,
    ncpus: usize,
    max_entries: u32,
    bucket_mask: u32,
    buckets: usize,
    elems: usize,
    elem_stride: usize,
    value_offset: usize,
}

impl HashCore {
    pub(crate) fn open(def: &MapDef, pin: Option<&Path>, kind: Kind) -> Result<HashCore, MapError> {
        let name = &def.name;
        let mut allowed = HASH_FLAGS;
        if kind.lru {
            if def.flags & BPF_F_NO_PREALLOC != 0 {
                return Err(MapError::Invalid(format!(
                    "map '{name}': LRU maps are always preallocated (BPF_F_NO_PREALLOC not allowed)"
                )));
            }
            allowed |= BPF_F_NO_COMMON_LRU;
        }
        check_flags(def, allowed)?;
        if def.key_size == 0 || def.value_size == 0 {
            return Err(MapError::Invalid(format!(
                "map '{name}': key_size and value_size must be positive (got {} and {})",
                def.key_size, def.value_size
            )));
        }
        let max_value = if kind.percpu {
            MAX_PERCPU_VALUE
        } else {
            MAX_HASH_VALUE
        };
        if def.key_size > MAX_KEY || def.value_size > max_value {
            return Err(MapError::TooBig);
        }
        let n_buckets = (def.max_entries as u64).next_power_of_two();
        let buckets = HEADER_SIZE;
        let elems = (buckets as u64 + n_buckets * 4).next_multiple_of(64);
        let value_offset = E_KEY as u64 + round8(def.key_size);
        let stride = |ncpus: u32| value_offset + round8(def.value_size) * ncpus as u64;
        let layout =
            |ncpus: u32| checked_size(&[(1, elems), (def.max_entries as u64, stride(ncpus))]);
        let ncpus = if kind.percpu {
            cpu::num_cpus() as u32
        } else {
            1
        };
        let region = Region::open(def, pin, ncpus, &layout)?;
        let ncpus = region.num_cpus();
        Ok(HashCore {
            lru: kind.lru,
            percpu: kind.percpu,
            key_size: def.key_size as usize,
            value_size: def.value_size as usize,
            slot: round8(def.value_size) as usize,
            ncpus: ncpus as usize,
            max_entries: def.max_entries,
            // n_buckets ≤ 2^32, so the mask fits.
            bucket_mask: (n_buckets - 1) as u32,
            buckets,
            elems: elems as usize,
            elem_stride: stride(ncpus) as usize,
            value_offset: value_offset as usize,
            region,
        })
    }

    pub(crate) fn num_cpus(&self) -> usize {
        self.ncpus
    }

    /// Bytes of the user view of a value.
    pub(crate) fn user_value_size(&self) -> usize {
        if self.percpu {
            self.slot * self.ncpus
        } else {
            self.value_size
        }
    }

    /// The slot a link names (links are index + 1; 0 and out-of-range
    /// values, which only a corrupt file can hold, name none).
    #[inline]
    fn slot_of(&self, link: u32) -> Option<u32> {
        link.checked_sub(1).filter(|i| *i < self.max_entries)
    }

    #[inline]
    fn elem(&self, index: u32) -> usize {
        self.elems + index as usize * self.elem_stride
    }

    #[inline]
    fn bucket(&self, hash: u32) -> usize {
        self.buckets + (hash & self.bucket_mask) as usize * 4
    }

    #[inline]
    fn field(&self, index: u32, field: usize) -> u32 {
        self.region
            .word(self.elem(index) + field)
            .load(Ordering::Relaxed)
    }

    #[inline]
    fn set_field(&self, index: u32, field: usize, value: u32) {
        self.region
            .word(self.elem(index) + field)
            .store(value, Ordering::Release)
    }

    /// Takes the lock, repairing the table first if a dead process held it.
    #[inline]
    fn lock(&self) -> LockGuard<'_> {
        let guard = self.region.lock();
        if guard.took_over {
            self.repair();
        }
        guard
    }

    /// The slot holding `key` and the offset of the link that points at it.
    /// Caller holds the lock.
    #[inline]
    fn find(&self, key: &[u8], hash: u32) -> Option<(u32, usize)> {
        let mut link = self.bucket(hash);
        // A chain longer than the table only exists in a corrupt file.
        for _ in 0..=self.max_entries {
            let index = self.slot_of(self.region.word(link).load(Ordering::Acquire))?;
            let elem = self.elem(index);
            if self.region.word(elem + E_HASH).load(Ordering::Relaxed) == hash
                && self.key_matches(elem, key)
            {
                return Some((index, link));
            }
            link = elem + E_NEXT;
        }
        None
    }

    /// Compares a stored key with `key`, a word at a time.
    #[inline]
    fn key_matches(&self, elem: usize, key: &[u8]) -> bool {
        let mut at = elem + E_KEY;
        let mut words = key.chunks_exact(8);
        for word in &mut words {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            if self.region.dword(at).load(Ordering::Relaxed) != u64::from_ne_bytes(bytes) {
                return false;
            }
            at += 8;
        }
        let rest = words.remainder();
        if rest.is_empty() {
            return true;
        }
        let mut bytes = [0u8; 8];
        bytes[..rest.len()].copy_from_slice(rest);
        self.region.dword(at).load(Ordering::Relaxed) == u64::from_ne_bytes(bytes)
    }

    /// `find` without the lock: `Some(answer)` if no change to the chains
    /// overlapped the walk, `None` if the caller must take the lock.
    #[inline]
    fn find_unlocked(&self, key: &[u8], hash: u32) -> Option<Option<u32>> {
        let seq = &self.region.header().seq;
        for _ in 0..4 {
            let before = seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let found = self.find(key, hash).map(|(index, _)| index);
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == before {
                    return Some(found);
                }
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Opens a window in which chains and the free list may change: lock-free
    /// readers that overlap it retry. Caller holds the lock.
    #[inline]
    fn begin_change(&self) -> ChangeWindow<'_> {
        let seq = &self.region.header().seq;
        // Even, even if a dead writer left it odd and no repair ran yet.
        let start = seq.load(Ordering::Relaxed) & !1;
        seq.store(start.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        ChangeWindow { seq, start }
    }

    /// Program view of an update: only `cpu`'s slot for per-CPU maps (the
    /// other CPUs' slots of a new element start zeroed), the value otherwise.
    pub(crate) fn update_from_program(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: u32,
    ) -> Result<(), MapError> {
        let new = if self.percpu {
            NewValue::Cpu(cpu as usize, value)
        } else {
            NewValue::All(value)
        };
        self.update(key, new, flags)
    }

    /// Program view: the value for `key`, `cpu`'s slot for per-CPU maps
    /// (the only slot otherwise, whatever `cpu`).
    #[inline]
    pub(crate) fn lookup_ptr(&self, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        let cpu = if self.percpu { cpu } else { 0 };
        if key.len() != self.key_size || cpu as usize >= self.ncpus {
            return None;
        }
        let hash = hash_key(key);
        // LRU lookups reorder the list, so they always need the lock.
        let unlocked = if self.lru {
            None
        } else {
            self.find_unlocked(key, hash)
        };
        let index = match unlocked {
            Some(found) => found?,
            None => {
                let _guard = self.lock();
                let (index, _) = self.find(key, hash)?;
                if self.lru {
                    self.touch(index);
                }
                index
            }
        };
        Some(
            self.region
                .nonnull(self.elem(index) + self.value_offset + cpu as usize * self.slot),
        )
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        check_len("key", key.len(), self.key_size)?;
        let hash = hash_key(key);
        let mut out = vec![0; self.user_value_size()];
        let _guard = self.lock();
        let (index, _) = self.find(key, hash).ok_or(MapError::NotFound)?;
        self.region
            .read(self.elem(index) + self.value_offset, &mut out);
        Ok(out)
    }

    pub(crate) fn update(
        &self,
        key: &[u8],
        value: NewValue<'_>,
        flags: u64,
    ) -> Result<(), MapError> {
        check_len("key", key.len(), self.key_size)?;
        match value {
            NewValue::All(v) => check_len("value", v.len(), self.user_value_size())?,
            NewValue::Cpu(cpu, v) => {
                check_len("value", v.len(), self.value_size)?;
                if cpu >= self.ncpus {
                    return Err(MapError::Invalid(format!(
                        "CPU {cpu} out of range: the map has {} CPUs",
                        self.ncpus
                    )));
                }
            }
        }
        if flags & !BPF_F_LOCK > BPF_EXIST {
            return Err(MapError::Invalid(format!("bad update flags {flags:#x}")));
        }
        if flags & BPF_F_LOCK != 0 {
            return Err(MapError::invalid(
                "BPF_F_LOCK needs a value with a bpf_spin_lock, which this map does not have",
            ));
        }
        let hash = hash_key(key);
        let _guard = self.lock();
        if let Some((index, _)) = self.find(key, hash) {
            if flags & BPF_NOEXIST != 0 {
                return Err(MapError::Exists);
            }
            self.write_value(index, value, false);
            if self.lru {
                self.touch(index);
            }
            return Ok(());
        }
        if flags & BPF_EXIST != 0 {
            return Err(MapError::NotFound);
        }
        let _window = self.begin_change();
        let index = self.alloc_slot()?;
        let elem = self.elem(index);
        self.set_field(index, E_HASH, hash);
        self.region.write(elem + E_KEY, key);
        self.write_value(index, value, true);
        let bucket = self.region.word(self.bucket(hash));
        self.set_field(index, E_NEXT, bucket.load(Ordering::Relaxed));
        // The element is complete: publishing it is the single store below.
        bucket.store(index + 1, Ordering::Release);
        if self.lru {
            self.lru_push_front(index);
        }
        let count = &self.region.header().count;
        // Only a damaged file could push it past max_entries.
        count.store(
            count
                .load(Ordering::Relaxed)
                .saturating_add(1)
                .min(self.max_entries),
            Ordering::Relaxed,
        );
        Ok(())
    }

    fn write_value(&self, index: u32, value: NewValue<'_>, fresh: bool) {
        let at = self.elem(index) + self.value_offset;
        match value {
            NewValue::All(v) => self.region.write(at, v),
            NewValue::Cpu(cpu, v) => {
                // A new per-CPU element starts with every other CPU at zero.
                if fresh {
                    self.region.zero(at, self.slot * self.ncpus);
                }
                self.region.write(at + cpu * self.slot, v);
            }
        }
    }

    /// A slot for a new element: from the free list, then never-used
    /// slots, then (LRU maps) by evicting the least recently used element.
    fn alloc_slot(&self) -> Result<u32, MapError> {
        let header = self.region.header();
        let next_unused = header
            .next_unused
            .load(Ordering::Relaxed)
            .min(self.max_entries);
        let free = header.free_head.load(Ordering::Relaxed);
        if let Some(index) = self.slot_of(free).filter(|i| *i < next_unused) {
            let next = self.field(index, E_NEXT);
            let next = if self.slot_of(next).is_some_and(|n| n < next_unused) {
                next
            } else {
                0
            };
            header.free_head.store(next, Ordering::Relaxed);
            return Ok(index);
        }
        if free != 0 {
            // Only a corrupt file gets here: drop the broken list.
            header.free_head.store(0, Ordering::Relaxed);
        }
        if next_unused < self.max_entries {
            header.next_unused.store(next_unused + 1, Ordering::Relaxed);
            return Ok(next_unused);
        }
        if self.lru {
            if let Some(victim) = self.slot_of(header.lru_tail.load(Ordering::Relaxed)) {
                self.evict(victim);
                return Ok(victim);
            }
        }
        Err(MapError::TooBig)
    }

    /// Removes `victim` from its chain and the LRU list, without freeing
    /// it: the caller reuses the slot at once.
    fn evict(&self, victim: u32) {
        let hash = self.field(victim, E_HASH);
        let mut link = self.bucket(hash);
        for _ in 0..=self.max_entries {
            let word = self.region.word(link);
            let current = word.load(Ordering::Relaxed);
            if current == victim + 1 {
                word.store(self.field(victim, E_NEXT), Ordering::Release);
                break;
            }
            match self.slot_of(current) {
                Some(index) => link = self.elem(index) + E_NEXT,
                None => break,
            }
        }
        self.lru_unlink(victim);
        self.decrement_count();
    }

    fn decrement_count(&self) {
        let count = &self.region.header().count;
        count.store(
            count.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        check_len("key", key.len(), self.key_size)?;
        let hash = hash_key(key);
        let _guard = self.lock();
        let (index, link) = self.find(key, hash).ok_or(MapError::NotFound)?;
        let _window = self.begin_change();
        self.region
            .word(link)
            .store(self.field(index, E_NEXT), Ordering::Release);
        if self.lru {
            self.lru_unlink(index);
        }
        self.decrement_count();
        let header = self.region.header();
        self.set_field(index, E_NEXT, header.free_head.load(Ordering::Relaxed));
        header.free_head.store(index + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Iteration in bucket order, as the kernel does.
    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        if let Some(key) = key {
            check_len("key", key.len(), self.key_size)?;
        }
        let hash = key.map(hash_key);
        let _guard = self.lock();
        let mut first_bucket = 0usize;
        if let (Some(key), Some(hash)) = (key, hash) {
            if let Some((index, _)) = self.find(key, hash) {
                if let Some(next) = self.slot_of(self.field(index, E_NEXT)) {
                    return Ok(Some(self.key_of(next)));
                }
                first_bucket = (hash & self.bucket_mask) as usize + 1;
            }
        }
        let n_buckets = self.bucket_mask as usize + 1;
        for bucket in first_bucket..n_buckets {
            let head = self
                .region
                .word(self.buckets + bucket * 4)
                .load(Ordering::Relaxed);
            if let Some(index) = self.slot_of(head) {
                return Ok(Some(self.key_of(index)));
            }
        }
        Ok(None)
    }

    fn key_of(&self, index: u32) -> Vec<u8> {
        let mut key = vec![0; self.key_size];
        self.region.read(self.elem(index) + E_KEY, &mut key);
        key
    }

    pub(crate) fn len(&self) -> usize {
        self.region.header().count.load(Ordering::Relaxed) as usize
    }

    /// Bytes of the region that can hold data: the header, the buckets and
    /// every slot ever handed out (an upper bound of what is resident).
    /// Slots above the high-water mark have never been touched, so (being
    /// lazily committed) they cost no memory.
    pub(crate) fn memory_usage(&self) -> usize {
        let used = self
            .region
            .header()
            .next_unused
            .load(Ordering::Relaxed)
            .min(self.max_entries);
        self.elems + used as usize * self.elem_stride
    }

    // LRU list: head is the most recently used element, tail the least.

    fn touch(&self, index: u32) {
        if self.region.header().lru_head.load(Ordering::Relaxed) != index + 1 {
            self.lru_unlink(index);
            self.lru_push_front(index);
        }
    }

    fn lru_unlink(&self, index: u32) {
        let header = self.region.header();
        let prev = self.field(index, E_LRU_PREV);
        let next = self.field(index, E_LRU_NEXT);
        match self.slot_of(prev) {
            Some(p) => self.set_field(p, E_LRU_NEXT, next),
            None => header.lru_head.store(next, Ordering::Relaxed),
        }
        match self.slot_of(next) {
            Some(n) => self.set_field(n, E_LRU_PREV, prev),
            None => header.lru_tail.store(prev, Ordering::Relaxed),
        }
        self.set_field(index, E_LRU_PREV, 0);
        self.set_field(index, E_LRU_NEXT, 0);
    }

    fn lru_push_front(&self, index: u32) {
        let header = self.region.header();
        let old = header.lru_head.load(Ordering::Relaxed);
        self.set_field(index, E_LRU_PREV, 0);
        self.set_field(index, E_LRU_NEXT, old);
        match self.slot_of(old) {
            Some(o) => self.set_field(o, E_LRU_PREV, index + 1),
            None => header.lru_tail.store(index + 1, Ordering::Relaxed),
        }
        header.lru_head.store(index + 1, Ordering::Relaxed);
    }

    /// Rebuilds everything derived from the bucket chains after a process
    /// died holding the lock: chains are cut where they stop making sense,
    /// the count is recounted, every slot not in a chain goes back to the
    /// free list, and the LRU list keeps its order for the elements it still
    /// reaches (the others join at the cold end). Caller holds the lock.
    pub(crate) fn repair(&self) {
        let _window = self.begin_change();
        let header = self.region.header();
        let next_unused = header
            .next_unused
            .load(Ordering::Relaxed)
            .min(self.max_entries);
        header.next_unused.store(next_unused, Ordering::Relaxed);
        let mut live = vec![false; next_unused as usize];
        let mut count = 0u32;
        for bucket in 0..=self.bucket_mask as usize {
            let mut link = self.buckets + bucket * 4;
            loop {
                let word = self.region.word(link);
                let Some(index) = self.slot_of(word.load(Ordering::Relaxed)) else {
                    word.store(0, Ordering::Relaxed);
                    break;
                };
                let valid = index < next_unused
                    && !live[index as usize]
                    && (self.field(index, E_HASH) & self.bucket_mask) as usize == bucket;
                if !valid {
                    word.store(0, Ordering::Relaxed);
                    break;
                }
                live[index as usize] = true;
                count += 1;
                link = self.elem(index) + E_NEXT;
            }
        }
        header.count.store(count, Ordering::Relaxed);
        let mut free = 0u32;
        for index in (0..next_unused).rev() {
            if !live[index as usize] {
                self.set_field(index, E_NEXT, free);
                free = index + 1;
            }
        }
        header.free_head.store(free, Ordering::Relaxed);
        if self.lru {
            let mut order = Vec::with_capacity(count as usize);
            let mut listed = vec![false; next_unused as usize];
            let mut link = header.lru_head.load(Ordering::Relaxed);
            while let Some(index) = self.slot_of(link).filter(|i| *i < next_unused) {
                if !live[index as usize] || listed[index as usize] {
                    break;
                }
                listed[index as usize] = true;
                order.push(index);
                link = self.field(index, E_LRU_NEXT);
            }
            order.extend((0..next_unused).filter(|i| live[*i as usize] && !listed[*i as usize]));
            header.lru_head.store(0, Ordering::Relaxed);
            header.lru_tail.store(0, Ordering::Relaxed);
            for &index in order.iter().rev() {
                self.lru_push_front(index);
            }
        }
    }
}

/// Closes a [`HashCore::begin_change`] window when dropped.
struct ChangeWindow<'a> {
    seq: &'a AtomicU32,
    start: u32,
}

impl Drop for ChangeWindow<'_> {
    #[inline]
    fn drop(&mut self) {
        self.seq
            .store(self.start.wrapping_add(2), Ordering::Release);
    }
}

/// The `MapImpl` of a hash-family map type: a struct whose `core` field is
/// the [`HashCore`] that does everything (its `Kind` decides per-CPU
/// values and LRU order).
macro_rules! hash_core_map_impl {
    ($t:ty) => {
        impl $crate::maps::MapImpl for $t {
            #[inline]
            fn lookup_ptr(&self, key: &[u8], cpu: u32) -> Option<std::ptr::NonNull<u8>> {
                self.core.lookup_ptr(key, cpu)
            }

            fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, $crate::maps::MapError> {
                self.core.lookup(key)
            }

            fn update(
                &self,
                key: &[u8],
                value: &[u8],
                flags: u64,
            ) -> Result<(), $crate::maps::MapError> {
                self.core
                    .update(key, $crate::maps::hash::NewValue::All(value), flags)
            }

            fn update_from_program(
                &self,
                key: &[u8],
                value: &[u8],
                flags: u64,
                cpu: u32,
            ) -> Result<(), $crate::maps::MapError> {
                self.core.update_from_program(key, value, flags, cpu)
            }

            fn delete(&self, key: &[u8]) -> Result<(), $crate::maps::MapError> {
                self.core.delete(key)
            }

            fn next_key(
                &self,
                key: Option<&[u8]>,
            ) -> Result<Option<Vec<u8>>, $crate::maps::MapError> {
                self.core.next_key(key)
            }

            fn len(&self) -> usize {
                self.core.len()
            }

            fn memory_usage(&self) -> usize {
                self.core.memory_usage()
            }

            fn num_cpus(&self) -> usize {
                self.core.num_cpus()
            }

            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}
pub(super) use hash_core_map_impl;

/// `BPF_MAP_TYPE_HASH`.
pub struct Hash {
    core: HashCore,
}

impl Hash {
    /// A hash map for `def`, in fresh memory or in the pinned file at `pin`.
    pub fn open(def: &MapDef, pin: Option<&Path>) -> Result<Hash, MapError> {
        let kind = Kind {
            percpu: false,
            lru: false,
        };
        Ok(Hash {
            core: HashCore::open(def, pin, kind)?,
        })
    }
}

hash_core_map_impl!(Hash);

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::{Map, MapDef, MapType, BPF_ANY, BPF_NOEXIST};
    use super::hash_key;

    /// Keys that all land in bucket 0 of a table with `mask + 1` buckets.
    fn colliding_keys(count: usize, mask: u32) -> Vec<[u8; 4]> {
        (0u32..)
            .map(u32::to_ne_bytes)
            .filter(|k| hash_key(k) & mask == 0)
            .take(count)
            .collect()
    }

    /// Lock-free program lookups walk one long chain while another thread
    /// keeps deleting and reusing the slots in front of the keys sought: a
    /// reader must never miss a present key nor report an absent one.
    #[test]
    fn unlocked_lookups_racing_with_churn_are_exact() {
        let max_entries = 256;
        let keys = colliding_keys(220, max_entries - 1);
        let (stable, rest) = keys.split_at(100);
        let (churn, absent) = rest.split_at(80);
        let map = Map::create(MapDef::new(MapType::Hash, 4, 8, max_entries)).unwrap();
        for (i, key) in stable.iter().enumerate() {
            map.update(key, &(i as u64).to_ne_bytes(), BPF_NOEXIST)
                .unwrap();
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let (map, stop) = (&map, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Inserted at the chain's head, in front of the stable keys.
                    for key in churn {
                        map.update(key, &u64::MAX.to_ne_bytes(), BPF_ANY).unwrap();
                    }
                    for key in churn {
                        map.delete(key).unwrap();
                    }
                }
            });
            let readers: Vec<_> = (0..2)
                .map(|r| {
                    s.spawn(move || {
                        for i in 0..20_000usize {
                            let index = (i * 7 + r) % stable.len();
                            let ptr = map.imp().lookup_ptr(&stable[index], 0);
                            let ptr = ptr.unwrap_or_else(|| panic!("stable key {index} missed"));
                            let value = unsafe { ptr.as_ptr().cast::<u64>().read() };
                            assert_eq!(value, index as u64);
                            let missing = &absent[i % absent.len()];
                            assert!(map.imp().lookup_ptr(missing, 0).is_none());
                        }
                    })
                })
                .collect();
            // Stop the writer before reporting a reader's failure.
            let results: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
            stop.store(true, Ordering::Relaxed);
            for result in results {
                if let Err(panic) = result {
                    std::panic::resume_unwind(panic);
                }
            }
        });
        assert_eq!(map.len(), stable.len());
    }
}
