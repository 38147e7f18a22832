//! `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: per-CPU buffers for
//! `bpf_perf_event_output`.
//!
//! In the kernel each slot holds a perf event whose ring buffer user space
//! maps; here every slot is a bounded in-memory buffer for "its" CPU.
//! Records are accounted with the kernel's framing (an 8-byte perf event
//! header, a u32 size, the data, padded to 8 bytes); when a buffer has no
//! room the sample is dropped and counted as lost, and the helper fails
//! with `ENOSPC`, as `perf_output_begin` does.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::reference_maps::{check_create_flags, def_error, LazyTable};
use super::reference_maps::{BPF_F_ACCESS_MASK, BPF_F_NUMA_NODE};
use super::{cpu, MapDef, MapError, MapImpl};

/// Low 32 bits of the output flags: the slot, or this value for the
/// running CPU's slot.
pub const BPF_F_INDEX_MASK: u64 = 0xffff_ffff;
pub const BPF_F_CURRENT_CPU: u64 = BPF_F_INDEX_MASK;
/// Bits 32-51: `bpf_perf_event_output` context length to append (used by
/// `bpf_skb_output`/`bpf_xdp_output`; the caller appends the bytes).
pub const BPF_F_CTXLEN_MASK: u64 = 0xfffff << 32;

/// Default buffer size per CPU: 64 pages, as commonly passed to libbpf.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 4096;
/// Bytes of perf framing around each sample.
const SAMPLE_OVERHEAD: usize = 8 + 4;
/// The perf event header's size field is 16 bits.
const MAX_SAMPLE_SIZE: usize = u16::MAX as usize;

fn sample_span(data_len: usize) -> usize {
    (data_len + SAMPLE_OVERHEAD).next_multiple_of(8)
}

#[derive(Default)]
struct CpuBuffer {
    samples: VecDeque<Box<[u8]>>,
    used: usize,
    lost: u64,
}

/// A perf event array.
pub struct PerfEventArray {
    /// Buffers are allocated as their slots are first written.
    buffers: LazyTable<Mutex<CpuBuffer>>,
    capacity: AtomicUsize,
    wake_seq: Mutex<u64>,
    wake_cond: Condvar,
    waiters: AtomicUsize,
}

impl PerfEventArray {
    pub fn new(def: &MapDef) -> Result<PerfEventArray, MapError> {
        check_create_flags(def, BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK)?;
        if def.key_size != 4 || def.value_size != 4 {
            return Err(def_error(
                def,
                format!(
                    "keys and values must be 4 bytes, got key_size {} and value_size {}",
                    def.key_size, def.value_size
                ),
            ));
        }
        let slots = match def.max_entries {
            0 => cpu::num_cpus().min(u32::MAX as usize) as u32,
            n => n,
        };
        Ok(PerfEventArray {
            buffers: LazyTable::new(slots),
            capacity: AtomicUsize::new(DEFAULT_BUFFER_SIZE),
            wake_seq: Mutex::new(0),
            wake_cond: Condvar::new(),
            waiters: AtomicUsize::new(0),
        })
    }

    /// Number of slots (CPUs).
    pub fn slots(&self) -> u32 {
        self.buffers.len()
    }

    /// Bytes each slot's buffer holds.
    pub fn buffer_size(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Sets the per-slot buffer size: a power-of-two number of 4096-byte
    /// pages, as libbpf's `perf_buffer__new` requires. Samples already
    /// buffered are kept.
    pub fn set_buffer_size(&self, bytes: usize) -> Result<(), MapError> {
        if bytes == 0 || !bytes.is_multiple_of(4096) || !(bytes / 4096).is_power_of_two() {
            return Err(MapError::invalid(format!(
                "perf buffer size must be a power-of-two number of 4096-byte pages, got {bytes}"
            )));
        }
        self.capacity.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn lock(buffer: &Mutex<CpuBuffer>) -> MutexGuard<'_, CpuBuffer> {
        buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn buffer(&self, slot: u32) -> Option<MutexGuard<'_, CpuBuffer>> {
        self.buffers.get(slot).map(Self::lock)
    }

    /// The buffers written so far, with their slots.
    fn written(&self) -> impl Iterator<Item = (u32, MutexGuard<'_, CpuBuffer>)> {
        self.buffers
            .allocated()
            .map(|(slot, b)| (slot, Self::lock(b)))
    }

    /// `bpf_perf_event_output`: appends `data` to the slot named by the
    /// low 32 bits of `flags` (`BPF_F_CURRENT_CPU`: the slot of `cpu`, the
    /// running CPU). `TooBig` for a slot out of range or a sample larger
    /// than perf can frame, `NoSpace` (and a lost sample) when the buffer
    /// is full.
    pub fn output(&self, flags: u64, cpu: u32, data: &[u8]) -> Result<(), MapError> {
        if flags & !(BPF_F_INDEX_MASK | BPF_F_CTXLEN_MASK) != 0 {
            return Err(MapError::invalid(format!(
                "perf event output flags {flags:#x} have unknown bits"
            )));
        }
        let slot = match flags & BPF_F_INDEX_MASK {
            BPF_F_CURRENT_CPU => cpu,
            index => index as u32,
        };
        if sample_span(data.len()) > MAX_SAMPLE_SIZE {
            return Err(MapError::TooBig);
        }
        let mut buffer = self
            .buffers
            .get_or_alloc(slot)
            .map(Self::lock)
            .ok_or(MapError::TooBig)?;
        let span = sample_span(data.len());
        if buffer.used + span > self.buffer_size() {
            buffer.lost += 1;
            return Err(MapError::NoSpace);
        }
        buffer.used += span;
        buffer.samples.push_back(data.into());
        drop(buffer);
        self.wake_up();
        Ok(())
    }

    /// Samples dropped so far from `cpu`'s buffer because it was full.
    pub fn lost(&self, cpu: u32) -> u64 {
        self.buffer(cpu).map_or(0, |b| b.lost)
    }

    /// Samples waiting in all buffers.
    pub fn pending(&self) -> usize {
        self.written().map(|(_, b)| b.samples.len()).sum()
    }

    /// Calls `f(cpu, data)` on every buffered sample, slot by slot, oldest
    /// first within a slot, and frees them. Returns how many there were.
    pub fn consume(&self, f: &mut dyn FnMut(u32, &[u8])) -> usize {
        let mut count = 0;
        for (slot, buffer) in self.buffers.allocated() {
            // Take the samples out so `f` runs without blocking producers.
            let samples = {
                let mut b = Self::lock(buffer);
                b.used = 0;
                std::mem::take(&mut b.samples)
            };
            for sample in &samples {
                f(slot, sample);
            }
            count += samples.len();
        }
        count
    }

    fn wake_up(&self) {
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut seq = self.wake_seq.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        self.wake_cond.notify_all();
    }

    /// Blocks until some buffer holds a sample or `timeout` passes (`None`:
    /// no limit). Returns whether samples are waiting.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut seq = self.wake_seq.lock().unwrap_or_else(|e| e.into_inner());
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let ready = loop {
            if self.pending() > 0 {
                break true;
            }
            match deadline {
                None => seq = self.wake_cond.wait(seq).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    seq = self
                        .wake_cond
                        .wait_timeout(seq, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        ready
    }
}

impl MapImpl for PerfEventArray {
    fn lookup(&self, _key: &[u8]) -> Result<Vec<u8>, MapError> {
        Err(MapError::unsupported(
            "perf event array slots are buffers: read samples with consume",
        ))
    }

    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<(), MapError> {
        Err(MapError::unsupported(
            "perf event array slots are buffers ebpfvm creates; there are no perf event fds to store",
        ))
    }

    fn delete(&self, _key: &[u8]) -> Result<(), MapError> {
        Err(MapError::unsupported(
            "perf event array slots are buffers ebpfvm creates and cannot be removed",
        ))
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        super::reference_maps::next_index(key, self.slots())
    }

    /// Samples waiting to be consumed.
    fn len(&self) -> usize {
        self.pending()
    }

    fn memory_usage(&self) -> usize {
        self.buffers.memory_usage() + self.written().map(|(_, b)| b.used).sum::<usize>()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
