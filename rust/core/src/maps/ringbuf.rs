//! `BPF_MAP_TYPE_RINGBUF`: a multi-producer, single-consumer ring of
//! variable-length records, with the kernel's record format and protocol.
//!
//! Each record is an 8-byte header (`len` with the BUSY bit 31 and DISCARD
//! bit 30, then the record's page offset) followed by its data, padded to
//! 8 bytes. Producers reserve space under a lock, fill it, then submit or
//! discard it without the lock by rewriting the header; the consumer reads
//! records in reservation order and stops at the first one still busy.
//!
//! As in the kernel, the data pages are mapped twice back to back, so a
//! record that runs past the end of the ring is still one contiguous slice.
//!
//! Programs pass record pointers back to `submit`/`discard`; nothing about
//! them is trusted: a pointer is accepted only if it is the start of a
//! record currently reserved and not yet submitted (a bitmap of reserved
//! record offsets is the source of truth, not the memory programs write).

use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use super::reference_maps::{check_create_flags, def_error, BPF_F_NUMA_NODE};
use super::{MapDef, MapError, MapImpl};

/// Submit/output flag: do not wake the consumer.
pub const BPF_RB_NO_WAKEUP: u64 = 1;
/// Submit/output flag: wake the consumer even if it is not waiting for
/// this record.
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// `query` selectors.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
pub const BPF_RB_RING_SIZE: u64 = 1;
pub const BPF_RB_CONS_POS: u64 = 2;
pub const BPF_RB_PROD_POS: u64 = 3;

/// Header bits of a record's `len`.
pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// Bytes of a record header.
pub const BPF_RINGBUF_HDR_SZ: u64 = 8;
/// Largest record the kernel lets a program reserve.
const MAX_RECORD_SIZE: u64 = u32::MAX as u64 / 4;

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Record bytes in the ring for `data_len` bytes of data.
fn record_span(data_len: u64) -> u64 {
    (data_len + BPF_RINGBUF_HDR_SZ).next_multiple_of(8)
}

/// `size` bytes of shared memory mapped at `base` and again at
/// `base + size`.
struct DoubleMapping {
    base: NonNull<u8>,
    size: usize,
}

// SAFETY: plain shared memory; synchronisation is the ring's protocol.
unsafe impl Send for DoubleMapping {}
unsafe impl Sync for DoubleMapping {}

impl DoubleMapping {
    fn new(size: usize) -> Result<DoubleMapping, String> {
        let os_error = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
        // SAFETY: the name is a NUL-terminated literal.
        let fd = unsafe { libc::memfd_create(c"ebpfvm-ringbuf".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error("memfd_create"));
        }
        let result = Self::map_twice(fd, size).map_err(os_error);
        // SAFETY: `fd` is ours; the mappings keep the memory alive.
        unsafe { libc::close(fd) };
        result
    }

    fn map_twice(fd: libc::c_int, size: usize) -> Result<DoubleMapping, &'static str> {
        // SAFETY: ftruncate on our own memfd.
        if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
            return Err("ftruncate");
        }
        // Reserve the address range first so both halves land next to
        // each other, then map the file over each half.
        // SAFETY: a fresh anonymous mapping at an address the kernel picks.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * size,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err("mmap (address reservation)");
        }
        for half in 0..2 {
            // SAFETY: MAP_FIXED inside the range reserved above.
            let p = unsafe {
                libc::mmap(
                    base.cast::<u8>().add(half * size).cast(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                // SAFETY: unmapping the range this function mapped.
                unsafe { libc::munmap(base, 2 * size) };
                return Err("mmap (data pages)");
            }
        }
        Ok(DoubleMapping {
            base: NonNull::new(base.cast()).ok_or("mmap returned null")?,
            size,
        })
    }
}

impl Drop for DoubleMapping {
    fn drop(&mut self) {
        // SAFETY: the range mapped in `new`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), 2 * self.size) };
    }
}

/// A position counter on its own cache line, so producers and the
/// consumer do not slow each other down.
#[repr(align(128))]
struct Position(AtomicU64);

/// A ring buffer map.
pub struct RingBuf {
    data: DoubleMapping,
    mask: u64,
    page_shift: u32,
    consumer_pos: Position,
    producer_pos: Position,
    /// Producers' lock, guarding the position of the oldest record not yet
    /// known to be committed (the kernel's `pending_pos`).
    producer_lock: Mutex<u64>,
    /// One bit per 8-byte offset: set while a record starting there is
    /// reserved and not yet submitted or discarded.
    reserved: Box<[AtomicU64]>,
    /// Serialises consumers (the protocol has one).
    consumer_lock: Mutex<()>,
    /// Counts wake-ups; waiters sleep on `wake_cond` until it changes.
    wake_seq: Mutex<u64>,
    wake_cond: Condvar,
    waiters: AtomicUsize,
}

impl RingBuf {
    pub fn new(def: &MapDef) -> Result<RingBuf, MapError> {
        check_create_flags(def, BPF_F_NUMA_NODE)?;
        if def.key_size != 0 || def.value_size != 0 {
            return Err(def_error(
                def,
                format!(
                    "key_size and value_size must be 0, got {} and {}",
                    def.key_size, def.value_size
                ),
            ));
        }
        let page = page_size();
        let size = def.max_entries as usize;
        if !size.is_power_of_two() || !size.is_multiple_of(page) {
            return Err(def_error(
                def,
                format!(
                    "max_entries (the data size) must be a power of two and a multiple of the page size {page}, got {size}"
                ),
            ));
        }
        let data = DoubleMapping::new(size).map_err(MapError::Io)?;
        let words = (size / 8).div_ceil(64);
        Ok(RingBuf {
            data,
            mask: size as u64 - 1,
            page_shift: page.trailing_zeros(),
            consumer_pos: Position(AtomicU64::new(0)),
            producer_pos: Position(AtomicU64::new(0)),
            producer_lock: Mutex::new(0),
            reserved: (0..words).map(|_| AtomicU64::new(0)).collect(),
            consumer_lock: Mutex::new(()),
            wake_seq: Mutex::new(0),
            wake_cond: Condvar::new(),
            waiters: AtomicUsize::new(0),
        })
    }

    /// Bytes of data the ring holds (`max_entries`).
    pub fn size(&self) -> usize {
        self.data.size
    }

    fn header_len(&self, offset: u64) -> &AtomicU32 {
        // SAFETY: `offset & mask` is 8-byte aligned inside the first
        // mapping; the memory lives as long as `self`.
        unsafe {
            &*self
                .data
                .base
                .as_ptr()
                .add((offset & self.mask) as usize)
                .cast::<AtomicU32>()
        }
    }

    fn header_pg_off(&self, offset: u64) -> &AtomicU32 {
        // SAFETY: as for `header_len`, four bytes further.
        unsafe {
            &*self
                .data
                .base
                .as_ptr()
                .add((offset & self.mask) as usize + 4)
                .cast::<AtomicU32>()
        }
    }

    fn reserved_bit(&self, offset: u64) -> (&AtomicU64, u64) {
        let slot = (offset & self.mask) / 8;
        (&self.reserved[(slot / 64) as usize], 1 << (slot % 64))
    }

    /// Reserves a record of `size` bytes and returns its data (8-byte
    /// aligned, contiguous even across the end of the ring), or `None` if
    /// there is no room (or `size` is beyond the kernel's record limit).
    pub fn reserve(&self, size: u64) -> Option<NonNull<u8>> {
        if size > MAX_RECORD_SIZE {
            return None;
        }
        let span = record_span(size);
        if span > self.mask + 1 {
            return None;
        }
        let cons_pos = self.consumer_pos.0.load(Ordering::Acquire);
        let mut pending = self.producer_lock.lock().unwrap_or_else(|e| e.into_inner());
        let prod_pos = self.producer_pos.0.load(Ordering::Relaxed);
        // Skip records committed since the last reservation: the distance
        // from the oldest busy record to the newest must stay below the
        // ring size, or a wrapped record would overwrite a busy one.
        while *pending < prod_pos {
            let len = self.header_len(*pending).load(Ordering::Acquire);
            if len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let step = record_span((len & !BPF_RINGBUF_DISCARD_BIT) as u64);
            if step > prod_pos - *pending {
                break; // a corrupted header: stop rather than run past
            }
            *pending += step;
        }
        let new_prod_pos = prod_pos + span;
        if new_prod_pos - cons_pos > self.mask || new_prod_pos - *pending > self.mask {
            return None;
        }
        let pg_off = ((prod_pos & self.mask) >> self.page_shift) as u32;
        self.header_pg_off(prod_pos)
            .store(pg_off, Ordering::Relaxed);
        self.header_len(prod_pos)
            .store(size as u32 | BPF_RINGBUF_BUSY_BIT, Ordering::Relaxed);
        let (word, bit) = self.reserved_bit(prod_pos);
        word.fetch_or(bit, Ordering::Relaxed);
        // Publishes the header to the consumer (pairs with its acquire).
        self.producer_pos.0.store(new_prod_pos, Ordering::Release);
        drop(pending);
        // SAFETY: inside the first mapping, past the header.
        Some(unsafe { self.data.base.add((prod_pos & self.mask) as usize + 8) })
    }

    /// The ring offset of the record whose data is at `ptr`, if `ptr` is
    /// the start of a record currently reserved; the record stops being
    /// reserved (so a second submit of it fails).
    fn take_reserved(&self, ptr: NonNull<u8>) -> Result<u64, MapError> {
        let forged = || {
            MapError::invalid(format!(
                "{ptr:p} is not a record reserved in this ring buffer and not yet submitted or discarded"
            ))
        };
        let offset = (ptr.as_ptr() as u64)
            .checked_sub(self.data.base.as_ptr() as u64 + BPF_RINGBUF_HDR_SZ)
            .ok_or_else(forged)?;
        if offset > self.mask || !offset.is_multiple_of(8) {
            return Err(forged());
        }
        let (word, bit) = self.reserved_bit(offset);
        if word.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            return Err(forged());
        }
        Ok(offset)
    }

    fn check_wakeup_flags(flags: u64) -> Result<(), MapError> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(MapError::invalid(format!(
                "ring buffer flags {flags:#x}: only BPF_RB_NO_WAKEUP and BPF_RB_FORCE_WAKEUP apply"
            )));
        }
        Ok(())
    }

    fn commit(&self, ptr: NonNull<u8>, flags: u64, discard: bool) -> Result<(), MapError> {
        Self::check_wakeup_flags(flags)?;
        let offset = self.take_reserved(ptr)?;
        let header = self.header_len(offset);
        let mut len = header.load(Ordering::Relaxed) & !BPF_RINGBUF_BUSY_BIT;
        if discard {
            len |= BPF_RINGBUF_DISCARD_BIT;
        }
        // SeqCst pairs with the waiter registration in `wait`.
        header.swap(len, Ordering::SeqCst);
        let cons_offset = self.consumer_pos.0.load(Ordering::SeqCst) & self.mask;
        if flags & BPF_RB_FORCE_WAKEUP != 0
            || (cons_offset == offset && flags & BPF_RB_NO_WAKEUP == 0)
        {
            self.wake_up();
        }
        Ok(())
    }

    /// Makes the reserved record at `ptr` visible to the consumer.
    pub fn submit(&self, ptr: NonNull<u8>, flags: u64) -> Result<(), MapError> {
        self.commit(ptr, flags, false)
    }

    /// Drops the reserved record at `ptr`; the consumer skips it.
    pub fn discard(&self, ptr: NonNull<u8>, flags: u64) -> Result<(), MapError> {
        self.commit(ptr, flags, true)
    }

    /// Copies `data` into a new record and submits it. `NoSpace` when the
    /// ring is full (the kernel's helper returns `-EAGAIN` then).
    pub fn output(&self, data: &[u8], flags: u64) -> Result<(), MapError> {
        Self::check_wakeup_flags(flags)?;
        let ptr = self.reserve(data.len() as u64).ok_or(MapError::NoSpace)?;
        // SAFETY: the reservation holds `data.len()` writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.as_ptr(), data.len()) };
        self.submit(ptr, flags)
    }

    /// `bpf_ringbuf_query`: available bytes, ring size, consumer or
    /// producer position; 0 for an unknown selector.
    pub fn query(&self, flags: u64) -> u64 {
        let cons = self.consumer_pos.0.load(Ordering::Acquire);
        let prod = self.producer_pos.0.load(Ordering::Acquire);
        match flags {
            BPF_RB_AVAIL_DATA => prod.saturating_sub(cons),
            BPF_RB_RING_SIZE => self.mask + 1,
            BPF_RB_CONS_POS => cons,
            BPF_RB_PROD_POS => prod,
            _ => 0,
        }
    }

    /// Bytes between the consumer and producer positions (records not yet
    /// consumed, including busy and discarded ones).
    pub fn available(&self) -> usize {
        self.query(BPF_RB_AVAIL_DATA) as usize
    }

    /// Whether `consume` would make progress now.
    fn ready(&self) -> bool {
        let cons = self.consumer_pos.0.load(Ordering::SeqCst);
        let prod = self.producer_pos.0.load(Ordering::SeqCst);
        cons < prod && self.header_len(cons).load(Ordering::SeqCst) & BPF_RINGBUF_BUSY_BIT == 0
    }

    /// Calls `f` on each committed record in reservation order, skipping
    /// discarded ones and stopping at the first record still busy, or after
    /// the record for which `f` returns false. Returns the number of
    /// records passed to `f` (0 if another consumer is running).
    pub fn consume(&self, f: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        // One consumer at a time: a second one (or `f` calling back in)
        // gets nothing rather than blocking.
        let _consumer = match self.consumer_lock.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return 0,
        };
        let mut cons = self.consumer_pos.0.load(Ordering::Acquire);
        let mut count = 0;
        loop {
            let mut progressed = false;
            let prod = self.producer_pos.0.load(Ordering::Acquire);
            while cons < prod {
                let len = self.header_len(cons).load(Ordering::Acquire);
                if len & BPF_RINGBUF_BUSY_BIT != 0 {
                    return count;
                }
                let data_len = (len & !BPF_RINGBUF_DISCARD_BIT) as u64;
                let span = record_span(data_len);
                if span > prod - cons {
                    return count; // a corrupted header: never read past the producer
                }
                progressed = true;
                let offset = (cons & self.mask) as usize;
                cons += span;
                let mut keep_going = true;
                if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                    // SAFETY: the record lies within `size` bytes from
                    // `offset`, inside the double mapping; the producer
                    // finished writing it (acquire on its header).
                    let record = unsafe {
                        std::slice::from_raw_parts(
                            self.data.base.as_ptr().add(offset + 8),
                            data_len as usize,
                        )
                    };
                    keep_going = f(record);
                    count += 1;
                }
                // Hands the space back to producers once `f` is done with it.
                self.consumer_pos.0.store(cons, Ordering::Release);
                if !keep_going {
                    return count;
                }
            }
            if !progressed {
                return count;
            }
        }
    }

    fn wake_up(&self) {
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut seq = self.lock_wake();
        *seq += 1;
        self.wake_cond.notify_all();
    }

    fn lock_wake(&self) -> MutexGuard<'_, u64> {
        self.wake_seq.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until a record is ready to consume or a producer wakes the
    /// consumer, or until `timeout` passes (`None`: no limit). Producers
    /// wake it when they commit the record it is waiting for, unless they
    /// pass `BPF_RB_NO_WAKEUP`, and always with `BPF_RB_FORCE_WAKEUP`.
    /// Returns whether it was woken or records are ready.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut seq = self.lock_wake();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // Checked after registering as a waiter: a producer committing
        // now either sees the waiter or has its record seen here.
        let woken = self.ready() || {
            let start = *seq;
            loop {
                if *seq != start {
                    break true;
                }
                match deadline {
                    None => seq = self.wake_cond.wait(seq).unwrap_or_else(|e| e.into_inner()),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break self.ready();
                        }
                        seq = self
                            .wake_cond
                            .wait_timeout(seq, deadline - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        woken
    }
}

impl MapImpl for RingBuf {
    fn lookup(&self, _key: &[u8]) -> Result<Vec<u8>, MapError> {
        Err(MapError::unsupported(
            "ring buffers have no keys: read records with consume",
        ))
    }

    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::unsupported(
            "ring buffers have no keys: write records with output or reserve/submit",
        ))
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::unsupported("ring buffers have no keys to delete"))
    }

    fn next_key(&self, _key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        Err(MapError::unsupported(
            "ring buffers have no keys to iterate",
        ))
    }

    /// Bytes not yet consumed.
    fn len(&self) -> usize {
        self.available()
    }

    fn memory_usage(&self) -> usize {
        self.data.size + self.reserved.len() * 8 + 512
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
