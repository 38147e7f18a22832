//! The trace pipe: where `bpf_trace_printk` writes, as the kernel's
//! `/sys/kernel/debug/tracing/trace_pipe`, read from Python (`read_trace`).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Lines kept before the oldest are dropped (the kernel's buffer is
/// bounded too).
pub const TRACE_CAPACITY: usize = 65536;

struct Pipe {
    lines: Mutex<(VecDeque<String>, u64)>,
    ready: Condvar,
}

fn pipe() -> &'static Pipe {
    static P: OnceLock<Pipe> = OnceLock::new();
    P.get_or_init(|| Pipe {
        lines: Mutex::new((VecDeque::new(), 0)),
        ready: Condvar::new(),
    })
}

/// Appends one line (without its newline).
pub fn write_line(line: String) {
    let p = pipe();
    let mut g = p.lines.lock().unwrap_or_else(|e| e.into_inner());
    if g.0.len() == TRACE_CAPACITY {
        g.0.pop_front();
        g.1 += 1;
    }
    g.0.push_back(line);
    p.ready.notify_all();
}

/// Takes every line written so far (oldest first), waiting up to `timeout`
/// for the first one when there is none.
pub fn take_lines(timeout: Option<Duration>) -> Vec<String> {
    let p = pipe();
    let mut g = p.lines.lock().unwrap_or_else(|e| e.into_inner());
    if g.0.is_empty() {
        if let Some(t) = timeout {
            g = p
                .ready
                .wait_timeout_while(g, t, |g| g.0.is_empty())
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
    g.0.drain(..).collect()
}

/// Lines dropped because the pipe was full.
pub fn dropped() -> u64 {
    pipe().lines.lock().unwrap_or_else(|e| e.into_inner()).1
}
