//! The flat storage every array, hash and LRU map lives in.
//!
//! A map is one contiguous region of bytes: a [`Header`] at offset 0, then
//! whatever the map type lays out behind it (values, buckets, element
//! slots). Links inside the region are `u32` indexes, never pointers, so the
//! same bytes mean the same map in any process that maps them:
//! - ordinary maps use an anonymous shared mapping (lazily committed, so a
//!   large `max_entries` costs address space, not memory);
//! - pinned maps use a `MAP_SHARED` mapping of a file, which *is* the map:
//!   another process opening the path sees (and changes) the same contents,
//!   and an update survives its writer being killed once it has returned,
//!   because the bytes are already in the page cache.
//!
//! Maps with linked structures serialise writers with [`Region::lock`], a
//! spin lock whose word lives in the header (so it works across processes)
//! and names the owner process (pid and start time, so a recycled pid is not
//! mistaken for the owner), so that a lock left behind by a killed process
//! can be taken over. Processes sharing a pinned map must share a pid
//! namespace.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use super::{MapDef, MapError};

/// "EBPFVMAP", little-endian.
const MAGIC: u64 = u64::from_le_bytes(*b"EBPFVMAP");
/// Bumped whenever the layout of any map type or the key hash changes.
const LAYOUT_VERSION: u32 = 1;
/// Bytes reserved for the header; map types place their data after it.
pub(crate) const HEADER_SIZE: usize = 128;
/// Largest region we agree to map (address space, not memory).
const MAX_REGION: u64 = 1 << 40;

/// The start of every region. All fields are atomics because other threads
/// and other processes read and write them concurrently.
#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    map_type: AtomicU32,
    key_size: AtomicU32,
    value_size: AtomicU32,
    max_entries: AtomicU32,
    flags: AtomicU32,
    num_cpus: AtomicU32,
    /// Sequence count of structural changes (odd while one is under way),
    /// so that readers can walk hash chains without taking the lock.
    pub(crate) seq: AtomicU32,
    layout_len: AtomicU64,
    /// The process holding the writer lock ([`Owner`]), 0 when free.
    pub(crate) lock: AtomicU64,
    /// Entries currently stored (hash maps).
    pub(crate) count: AtomicU32,
    /// Element slots below this index have been handed out at least once.
    pub(crate) next_unused: AtomicU32,
    /// Head of the free list of slots (index + 1, 0 = empty).
    pub(crate) free_head: AtomicU32,
    /// Most recently used element (index + 1, 0 = none), LRU maps.
    pub(crate) lru_head: AtomicU32,
    /// Least recently used element (index + 1, 0 = none), LRU maps.
    pub(crate) lru_tail: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);

enum Backing {
    /// Our own `mmap(MAP_SHARED | MAP_ANONYMOUS)`, unmapped on drop.
    Anonymous,
    /// A pinned map's file; the mapping is unmapped when this drops.
    File { _mapping: memmap2::MmapMut },
}

/// A mapped region and the map parameters recorded in its header.
pub(crate) struct Region {
    base: NonNull<u8>,
    len: usize,
    num_cpus: u32,
    backing: Backing,
}

// SAFETY: the region is plain shared memory; every structural field is an
// atomic and value bytes are shared with programs exactly as kernel map
// values are (concurrent plain accesses to values are the program's
// business, as in the kernel).
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        if let Backing::Anonymous = self.backing {
            // SAFETY: base/len are exactly what our mmap returned.
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
        }
    }
}

/// How a map type sizes its region for a given number of CPUs.
pub(crate) type LayoutLen<'a> = &'a dyn Fn(u32) -> Result<usize, MapError>;

/// Adds up region sizes (`count * size` pairs) without overflow, failing
/// with `E2BIG` beyond what we agree to map.
pub(crate) fn checked_size(parts: &[(u64, u64)]) -> Result<usize, MapError> {
    let mut total: u64 = 0;
    for &(count, size) in parts {
        total = count
            .checked_mul(size)
            .and_then(|bytes| total.checked_add(bytes))
            .filter(|t| *t <= MAX_REGION)
            .ok_or(MapError::TooBig)?;
    }
    usize::try_from(total).map_err(|_| MapError::TooBig)
}

impl Region {
    /// The region for `def`: fresh anonymous memory when `pin` is `None`,
    /// otherwise the file at `pin`, created (for `num_cpus` CPUs) if absent
    /// or validated against `def` if present. `layout_len(ncpus)` is the
    /// size the map type needs.
    pub(crate) fn open(
        def: &MapDef,
        pin: Option<&Path>,
        num_cpus: u32,
        layout_len: LayoutLen<'_>,
    ) -> Result<Region, MapError> {
        match pin {
            None => Self::anonymous(def, num_cpus, layout_len(num_cpus)?),
            Some(path) => Self::pinned(def, path, num_cpus, layout_len),
        }
    }

    fn anonymous(def: &MapDef, num_cpus: u32, len: usize) -> Result<Region, MapError> {
        // SAFETY: a fresh mapping at an address of the kernel's choosing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MapError::Io(format!(
                "map '{}': cannot reserve {len} bytes: {}",
                def.name,
                io::Error::last_os_error()
            )));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| {
            MapError::Io(format!("map '{}': mmap returned a null region", def.name))
        })?;
        let region = Region {
            base,
            len,
            num_cpus,
            backing: Backing::Anonymous,
        };
        region.init_header(def, num_cpus, len);
        Ok(region)
    }

    fn pinned(
        def: &MapDef,
        path: &Path,
        num_cpus: u32,
        layout_len: LayoutLen<'_>,
    ) -> Result<Region, MapError> {
        // Another process may be creating the same pin right now: try the
        // existing file first, and publish a new one atomically (fully
        // initialised under a temporary name, then hard-linked into place,
        // which fails rather than replaces if someone else won).
        for _ in 0..8 {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(file) => return Self::from_existing(def, path, file, layout_len),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(path, "cannot open", &e)),
            }
            match Self::create_file(def, path, num_cpus, layout_len(num_cpus)?)? {
                Some(region) => return Ok(region),
                None => continue,
            }
        }
        Err(MapError::Io(format!(
            "pinned map {}: the file keeps appearing and disappearing",
            path.display()
        )))
    }

    /// Creates and publishes a new pin; `None` if another process published
    /// one at `path` first.
    fn create_file(
        def: &MapDef,
        path: &Path,
        num_cpus: u32,
        len: usize,
    ) -> Result<Option<Region>, MapError> {
        let tmp = temp_path(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_error(path, "cannot create", &e))?;
        let cleanup = TempFile(&tmp);
        file.set_len(len as u64)
            .map_err(|e| io_error(path, "cannot size", &e))?;
        reserve_disk(&file, len)
            .map_err(|e| io_error(path, "cannot reserve disk space for", &e))?;
        let region = Self::map_file(path, &file, len, num_cpus)?;
        region.init_header(def, num_cpus, len);
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(Some(region)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                drop(cleanup);
                Ok(None)
            }
            Err(e) => Err(io_error(path, "cannot publish", &e)),
        }
    }

    fn from_existing(
        def: &MapDef,
        path: &Path,
        file: File,
        layout_len: LayoutLen<'_>,
    ) -> Result<Region, MapError> {
        let file_len = file
            .metadata()
            .map_err(|e| io_error(path, "cannot stat", &e))?
            .len();
        if file_len < HEADER_SIZE as u64 {
            return Err(MapError::Io(format!(
                "pinned map {}: file is truncated ({file_len} bytes, shorter than the {HEADER_SIZE}-byte header)",
                path.display()
            )));
        }
        let file_len = usize::try_from(file_len)
            .ok()
            .filter(|l| *l as u64 <= MAX_REGION)
            .ok_or_else(|| {
                MapError::Io(format!(
                    "pinned map {}: file of {file_len} bytes is too large to map",
                    path.display()
                ))
            })?;
        let mut region = Self::map_file(path, &file, file_len, 0)?;
        let ncpus = region.validate(def, path)?;
        let need = layout_len(ncpus)?;
        let recorded = region.header().layout_len.load(Ordering::Acquire);
        if recorded != need as u64 {
            return Err(MapError::Invalid(format!(
                "pinned map {}: layout is {recorded} bytes in the file, {need} expected for this definition",
                path.display()
            )));
        }
        if file_len < need {
            return Err(MapError::Io(format!(
                "pinned map {}: file is truncated ({file_len} bytes, the map needs {need})",
                path.display()
            )));
        }
        region.num_cpus = ncpus;
        Ok(region)
    }

    fn map_file(path: &Path, file: &File, len: usize, num_cpus: u32) -> Result<Region, MapError> {
        // SAFETY: the file is a map file shared on purpose; other processes
        // changing it concurrently is the point (all structure is atomics).
        let mut mmap = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) }
            .map_err(|e| io_error(path, "cannot map", &e))?;
        let base = NonNull::new(mmap.as_mut_ptr())
            .ok_or_else(|| MapError::Io(format!("pinned map {}: empty mapping", path.display())))?;
        Ok(Region {
            base,
            len,
            num_cpus,
            backing: Backing::File { _mapping: mmap },
        })
    }

    /// Writes the header of a fresh region; the magic goes last, so a
    /// half-written header is never taken for a map.
    fn init_header(&self, def: &MapDef, num_cpus: u32, len: usize) {
        let h = self.header();
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.map_type.store(def.map_type as u32, Ordering::Relaxed);
        h.key_size.store(def.key_size, Ordering::Relaxed);
        h.value_size.store(def.value_size, Ordering::Relaxed);
        h.max_entries.store(def.max_entries, Ordering::Relaxed);
        h.flags.store(def.flags, Ordering::Relaxed);
        h.num_cpus.store(num_cpus, Ordering::Relaxed);
        h.layout_len.store(len as u64, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
    }

    /// Checks an existing header against `def`; returns the CPU count the
    /// map was created with.
    fn validate(&self, def: &MapDef, path: &Path) -> Result<u32, MapError> {
        let h = self.header();
        let where_ = path.display();
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(MapError::Invalid(format!(
                "pinned map {where_}: not an ebpfvm map file (bad magic)"
            )));
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(MapError::Invalid(format!(
                "pinned map {where_}: layout version {version}, this ebpfvm reads version {LAYOUT_VERSION}"
            )));
        }
        let fields = [
            (
                "map_type",
                h.map_type.load(Ordering::Relaxed),
                def.map_type as u32,
            ),
            ("key_size", h.key_size.load(Ordering::Relaxed), def.key_size),
            (
                "value_size",
                h.value_size.load(Ordering::Relaxed),
                def.value_size,
            ),
            (
                "max_entries",
                h.max_entries.load(Ordering::Relaxed),
                def.max_entries,
            ),
            ("map_flags", h.flags.load(Ordering::Relaxed), def.flags),
        ];
        for (name, in_file, wanted) in fields {
            if in_file != wanted {
                return Err(MapError::Invalid(format!(
                    "pinned map {where_}: {name} is {in_file} in the file but {wanted} in the definition"
                )));
            }
        }
        let ncpus = h.num_cpus.load(Ordering::Relaxed);
        if ncpus == 0 || ncpus > 4096 {
            return Err(MapError::Io(format!(
                "pinned map {where_}: corrupt header (num_cpus {ncpus})"
            )));
        }
        let max = def.max_entries;
        let next_unused = h.next_unused.load(Ordering::Relaxed);
        let checks = [
            ("next_unused", next_unused, max),
            (
                "free_head",
                h.free_head.load(Ordering::Relaxed),
                next_unused,
            ),
            ("count", h.count.load(Ordering::Relaxed), max),
            ("lru_head", h.lru_head.load(Ordering::Relaxed), next_unused),
            ("lru_tail", h.lru_tail.load(Ordering::Relaxed), next_unused),
        ];
        for (name, value, limit) in checks {
            if value > limit {
                return Err(MapError::Io(format!(
                    "pinned map {where_}: corrupt header ({name} {value} exceeds {limit})"
                )));
            }
        }
        Ok(ncpus)
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: every region is at least HEADER_SIZE bytes, page aligned.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// CPUs the map was created with (1 for maps that are not per-CPU).
    pub(crate) fn num_cpus(&self) -> u32 {
        self.num_cpus
    }

    /// Address of byte `off`; callers keep `off` inside their layout.
    #[inline]
    pub(crate) fn ptr(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.len);
        // SAFETY: offsets come from the map's layout, which fits the region.
        unsafe { self.base.as_ptr().add(off) }
    }

    #[inline]
    pub(crate) fn nonnull(&self, off: usize) -> NonNull<u8> {
        // SAFETY: base is non-null and off stays inside the region.
        unsafe { NonNull::new_unchecked(self.ptr(off)) }
    }

    /// The `u32` at a 4-aligned offset, as an atomic.
    #[inline]
    pub(crate) fn word(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: aligned, inside the region, lives as long as `self`.
        unsafe { AtomicU32::from_ptr(self.ptr(off).cast::<u32>()) }
    }

    #[inline]
    pub(crate) fn read(&self, off: usize, out: &mut [u8]) {
        debug_assert!(off + out.len() <= self.len);
        // SAFETY: in bounds; `out` is a separate buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(off), out.as_mut_ptr(), out.len()) }
    }

    #[inline]
    pub(crate) fn write(&self, off: usize, data: &[u8]) {
        debug_assert!(off + data.len() <= self.len);
        // SAFETY: in bounds; `data` is a separate buffer.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(off), data.len()) }
    }

    /// The `u64` at an 8-aligned offset, as an atomic.
    #[inline]
    pub(crate) fn dword(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: aligned, inside the region, lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.ptr(off).cast::<u64>()) }
    }

    #[inline]
    pub(crate) fn zero(&self, off: usize, len: usize) {
        debug_assert!(off + len <= self.len);
        // SAFETY: in bounds.
        unsafe { std::ptr::write_bytes(self.ptr(off), 0, len) }
    }

    /// Takes the writer lock. `LockGuard::took_over` says whether it was
    /// taken from a dead process, in which case the structure may be half
    /// updated and the caller must repair it before use.
    #[inline]
    pub(crate) fn lock(&self) -> LockGuard<'_> {
        let word = &self.header().lock;
        let me = Owner::current().0;
        if word
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return LockGuard {
                word,
                took_over: false,
            };
        }
        lock_slow(word, me)
    }
}

/// Holds the region's writer lock until dropped.
pub(crate) struct LockGuard<'a> {
    word: &'a AtomicU64,
    pub(crate) took_over: bool,
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.word.store(0, Ordering::Release);
    }
}

/// How long a holder may keep the lock before we check whether it is alive.
const LIVENESS_AFTER: Duration = Duration::from_millis(2);

#[cold]
fn lock_slow(word: &AtomicU64, me: u64) -> LockGuard<'_> {
    let started = Instant::now();
    let mut next_check = LIVENESS_AFTER;
    let mut spins = 0u32;
    loop {
        let holder = word.load(Ordering::Relaxed);
        if holder == 0 {
            if word
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return LockGuard {
                    word,
                    took_over: false,
                };
            }
            continue;
        }
        if spins < 64 {
            spins += 1;
            std::hint::spin_loop();
            continue;
        }
        std::thread::yield_now();
        if started.elapsed() >= next_check {
            next_check += LIVENESS_AFTER;
            if holder != me
                && !Owner(holder).alive()
                && word
                    .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return LockGuard {
                    word,
                    took_over: true,
                };
            }
        }
    }
}

/// A lock owner: pid in the low 32 bits, the low 32 bits of the process's
/// start time (clock ticks after boot) in the high ones, 0 if unknown.
#[derive(Clone, Copy)]
struct Owner(u64);

static CURRENT_OWNER: AtomicU64 = AtomicU64::new(0);

extern "C" fn forget_owner_in_child() {
    CURRENT_OWNER.store(0, Ordering::Relaxed);
}

impl Owner {
    /// This process, cached (getpid is a system call) and forgotten in a
    /// forked child.
    #[inline]
    fn current() -> Owner {
        match CURRENT_OWNER.load(Ordering::Relaxed) {
            0 => Self::identify_current(),
            owner => Owner(owner),
        }
    }

    #[cold]
    fn identify_current() -> Owner {
        static AT_FORK: Once = Once::new();
        AT_FORK.call_once(|| {
            // SAFETY: registers a plain function that stores an atomic.
            unsafe { libc::pthread_atfork(None, None, Some(forget_owner_in_child)) };
        });
        let pid = std::process::id();
        let start = start_time(pid).unwrap_or(0);
        let owner = Owner((start as u64) << 32 | pid as u64);
        CURRENT_OWNER.store(owner.0, Ordering::Relaxed);
        owner
    }

    fn pid(self) -> u32 {
        self.0 as u32
    }

    fn start(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Whether the owner still runs. When in doubt (no permission to look),
    /// it is taken to be alive: waiting is safe, stealing a live lock is not.
    fn alive(self) -> bool {
        let Ok(pid) = libc::pid_t::try_from(self.pid()) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        if r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return false;
        }
        // The pid exists; it is the owner unless it was recycled.
        match (self.start(), start_time(self.pid())) {
            (0, _) | (_, None) => true,
            (recorded, Some(now)) => recorded == now,
        }
    }
}

/// Low 32 bits of a process's start time (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    Some(ticks as u32)
}

/// Gives the file its blocks now, so that running out of disk is an error
/// here rather than a SIGBUS when a page is first written.
fn reserve_disk(file: &File, len: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid descriptor we own.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        // File systems without fallocate: keep the sparse file.
        libc::EOPNOTSUPP | libc::ENOSYS => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::AtomicUsize;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Removes a temporary file when dropped.
struct TempFile<'a>(&'a Path);

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

fn io_error(path: &Path, what: &str, e: &io::Error) -> MapError {
    MapError::Io(format!("pinned map {}: {what} file: {e}", path.display()))
}

/// Hash of a key: FxHash-style word mixing finished with the MurmurHash3
/// 64-bit finaliser, so every output bit depends on every input bit. It is
/// part of the pinned file format (fixed, unseeded): changing it needs a new
/// `LAYOUT_VERSION`.
#[inline]
pub(crate) fn hash_key(key: &[u8]) -> u32 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = key.len() as u64;
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}

/// Rounds a size up to the 8-byte alignment of values and keys.
pub(crate) fn round8(n: u32) -> u64 {
    (n as u64).next_multiple_of(8)
}

/// Fails with `EINVAL` naming the first flag outside `allowed`.
pub(crate) fn check_flags(def: &MapDef, allowed: u32) -> Result<(), MapError> {
    let bad = def.flags & !allowed;
    if bad != 0 {
        return Err(MapError::Invalid(format!(
            "map '{}': flag {:#x} is not valid for a {} map",
            def.name,
            1u32 << bad.trailing_zeros(),
            def.map_type
        )));
    }
    Ok(())
}

/// The key length check every implementation repeats (programs reach
/// `MapImpl` without the `Map` wrapper's checks).
#[inline]
pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<(), MapError> {
    if got != want {
        return Err(MapError::Invalid(format!(
            "{want}-byte {what} expected, got {got} bytes"
        )));
    }
    Ok(())
}
