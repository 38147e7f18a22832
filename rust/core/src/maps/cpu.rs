//! Virtual CPUs: per-CPU maps keep a slot for each, and every thread that
//! runs programs is given one (`bpf_get_smp_processor_id`).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

static NUM_CPUS: AtomicUsize = AtomicUsize::new(0);
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THIS_CPU: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Number of virtual CPUs (default: the host's available parallelism).
pub fn num_cpus() -> usize {
    match NUM_CPUS.load(Ordering::Relaxed) {
        0 => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            match NUM_CPUS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => n,
                Err(set) => set,
            }
        }
        n => n,
    }
}

/// Sets the number of virtual CPUs. Only maps created afterwards use it;
/// fails once a per-CPU map exists with a different count.
pub fn set_num_cpus(n: usize) -> Result<(), String> {
    if n == 0 || n > 4096 {
        return Err(format!(
            "number of CPUs must be between 1 and 4096, got {n}"
        ));
    }
    NUM_CPUS.store(n, Ordering::Relaxed);
    Ok(())
}

/// The virtual CPU of the calling thread: threads are numbered round robin
/// the first time they ask, so a thread keeps its CPU for its lifetime.
pub fn current_cpu() -> u32 {
    THIS_CPU.with(|c| match c.get() {
        Some(cpu) => cpu % num_cpus() as u32,
        None => {
            let cpu = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) as u32;
            c.set(Some(cpu));
            cpu % num_cpus() as u32
        }
    })
}

/// Runs `f` with the calling thread pinned to virtual CPU `cpu` (tests and
/// `run(cpu=...)` use this to choose a per-CPU slot).
pub fn with_cpu<R>(cpu: u32, f: impl FnOnce() -> R) -> R {
    let old = THIS_CPU.with(|c| c.replace(Some(cpu)));
    let r = f();
    THIS_CPU.with(|c| c.set(old));
    r
}
