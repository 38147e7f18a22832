//! Kernel helpers run from assembled programs through the run-time, with
//! results checked against independently computed expectations.

use std::sync::{Arc, Mutex, MutexGuard};

use ebpfvm_core::asm::assemble;
use ebpfvm_core::error::ExecError;
use ebpfvm_core::interp::{Executable, LoadOptions};
use ebpfvm_core::kernel::helper_protos::{helper_id, proto};
use ebpfvm_core::maps::perf_event_array::PerfEventArray;
use ebpfvm_core::maps::ringbuf::RingBuf;
use ebpfvm_core::maps::{cpu, Map, MapDef, MapType};
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::runtime::helpers::kernel_helpers;
use ebpfvm_core::runtime::run::{run, Input, RunResult};
use ebpfvm_core::runtime::{self, trace, Environment, LoadedProgram};

const EFAULT: u64 = -14i64 as u64;
const EINVAL: u64 = -22i64 as u64;
const EACCES: u64 = -13i64 as u64;
const ERANGE: u64 = -34i64 as u64;

fn load(src: &str, t: ProgType, maps: Vec<Arc<Map>>) -> Arc<LoadedProgram> {
    let insns = assemble(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let program = Program::from_insns(insns, 4096).unwrap();
    let prepared = runtime::prepare(&program, t, &maps).unwrap();
    let regions = runtime::map_regions(&maps);
    let env = Environment::new(maps);
    let exe = Executable::new(
        Arc::new(prepared),
        LoadOptions {
            helpers: kernel_helpers(&env),
            input_may_move: true,
            ..Default::default()
        },
    )
    .unwrap();
    Arc::new(LoadedProgram {
        id: runtime::next_program_id(),
        name: "test".into(),
        prog_type: t,
        runner: Arc::new(exe),
        regions,
        env,
    })
}

/// Runs a raw program on `buf` (r1 = buf, r2 = its length).
fn run_raw(src: &str, buf: &mut [u8]) -> Result<u64, ExecError> {
    let prog = load(src, ProgType::Raw, vec![]);
    run(&prog, Input::Memory(buf)).map(|r| r.retval)
}

fn run_packet(prog: &Arc<LoadedProgram>, packet: &[u8], ctx: Option<&[u8]>) -> RunResult {
    run(prog, Input::Packet { packet, ctx }).unwrap()
}

fn fault_of(r: Result<u64, ExecError>) -> String {
    match r {
        Ok(v) => panic!("expected a fault, the run returned {v:#x}"),
        Err(e) => e.reason,
    }
}

#[test]
fn registered_ids_are_the_kernels() {
    let env = Environment::new(vec![]);
    let reg = kernel_helpers(&env);
    for name in [
        "ktime_get_ns",
        "ktime_get_boot_ns",
        "ktime_get_coarse_ns",
        "ktime_get_tai_ns",
        "jiffies64",
        "get_prandom_u32",
        "get_smp_processor_id",
        "get_numa_node_id",
        "trace_printk",
        "snprintf",
        "trace_vprintk",
        "strncmp",
        "strtol",
        "strtoul",
        "probe_read",
        "probe_read_kernel",
        "probe_read_user",
        "probe_read_str",
        "probe_read_kernel_str",
        "probe_read_user_str",
        "get_current_pid_tgid",
        "get_current_uid_gid",
        "get_current_comm",
        "ringbuf_output",
        "ringbuf_reserve",
        "ringbuf_submit",
        "ringbuf_discard",
        "ringbuf_query",
        "xdp_adjust_head",
        "xdp_adjust_meta",
        "xdp_adjust_tail",
        "skb_load_bytes",
        "skb_load_bytes_relative",
        "skb_store_bytes",
        "skb_pull_data",
        "skb_change_tail",
        "skb_change_head",
        "l3_csum_replace",
        "l4_csum_replace",
        "csum_diff",
        "csum_update",
        "get_hash_recalc",
        "redirect",
        "redirect_map",
        "spin_lock",
        "spin_unlock",
        "perf_event_output",
        "skb_vlan_push",
        "skb_vlan_pop",
        "copy_from_user",
        "set_hash",
        "set_hash_invalid",
        "skb_change_type",
        "xdp_get_buff_len",
        "xdp_load_bytes",
        "xdp_store_bytes",
        "skb_adjust_room",
        "skb_change_proto",
        "redirect_neigh",
        "redirect_peer",
        "dynptr_from_mem",
        "ringbuf_reserve_dynptr",
        "ringbuf_submit_dynptr",
        "ringbuf_discard_dynptr",
        "dynptr_read",
        "dynptr_write",
        "dynptr_data",
        "get_current_cgroup_id",
        "get_current_ancestor_cgroup_id",
        "get_ns_current_pid_tgid",
        "sk_storage_get",
        "sk_storage_delete",
        "task_storage_get",
        "task_storage_delete",
        "inode_storage_get",
        "inode_storage_delete",
        "cgrp_storage_get",
        "cgrp_storage_delete",
    ] {
        let id = helper_id(name).unwrap_or_else(|| panic!("the kernel has no helper {name}"));
        assert!(reg.contains(id), "{name} (id {id}) is not registered");
    }
    // Everything registered has a prototype the verifier can check calls
    // against.
    for id in reg.ids() {
        assert!(proto(id).is_some(), "helper {id} has no prototype");
    }
}

// --- time, randomness, CPU, task -------------------------------------------

fn clock(c: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec.
    assert_eq!(unsafe { libc::clock_gettime(c, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn clocks_read_the_host_clocks_of_the_same_name() {
    for (id, c) in [
        (5, libc::CLOCK_MONOTONIC),
        (125, libc::CLOCK_BOOTTIME),
        (208, libc::CLOCK_TAI),
    ] {
        let before = clock(c);
        let got = run_raw(&format!("call {id}\nexit"), &mut []).unwrap();
        let after = clock(c);
        assert!(
            before <= got && got <= after,
            "helper {id}: {before} <= {got} <= {after}"
        );
    }
    // Coarse time lags the fine clock by at most a tick.
    let coarse = run_raw("call 160\nexit", &mut []).unwrap();
    let fine = clock(libc::CLOCK_MONOTONIC);
    assert!(coarse <= fine && fine - coarse < 100_000_000);

    // jiffies at HZ=250 from boot, offset by INITIAL_JIFFIES.
    let initial = (-300i64 * 250) as u32 as u64;
    let before = initial + clock(libc::CLOCK_BOOTTIME) / 4_000_000;
    let got = run_raw("call 118\nexit", &mut []).unwrap();
    let after = initial + clock(libc::CLOCK_BOOTTIME) / 4_000_000;
    assert!(
        before <= got && got <= after,
        "{before} <= {got} <= {after}"
    );
}

#[test]
fn prandom_values_are_32_bit_and_spread() {
    let prog = load("call 7\nexit", ProgType::Raw, vec![]);
    let values: Vec<u64> = (0..256)
        .map(|_| run(&prog, Input::Memory(&mut [])).unwrap().retval)
        .collect();
    assert!(values.iter().all(|&v| v <= u32::MAX as u64));
    let mut distinct = values.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 250, "{} distinct of 256", distinct.len());
    // Both halves of the range and both parities turn up.
    assert!(values.iter().any(|&v| v >= 1 << 31) && values.iter().any(|&v| v < 1 << 31));
    assert!(values.iter().any(|&v| v & 1 == 1) && values.iter().any(|&v| v & 1 == 0));
}

#[test]
fn processor_id_is_the_threads_virtual_cpu() {
    let prog = load("call 8\nexit", ProgType::Raw, vec![]);
    for c in [0u32, 1, 5] {
        let got = cpu::with_cpu(c, || run(&prog, Input::Memory(&mut [])).unwrap().retval);
        assert_eq!(got, (c % cpu::num_cpus() as u32) as u64);
    }
    assert_eq!(run_raw("call 42\nexit", &mut []).unwrap(), 0);
}

#[test]
fn pid_tgid_uid_gid_and_comm_describe_the_calling_thread() {
    let out = std::thread::Builder::new()
        .name("helpers-comm-thread".into())
        .spawn(|| {
            // SAFETY: plain syscalls.
            let (pid, tid, uid, gid) = unsafe {
                (
                    libc::getpid() as u64,
                    libc::syscall(libc::SYS_gettid) as u64,
                    libc::getuid() as u64,
                    libc::getgid() as u64,
                )
            };
            assert_eq!(run_raw("call 14\nexit", &mut []).unwrap(), pid << 32 | tid);
            assert_eq!(run_raw("call 15\nexit", &mut []).unwrap(), gid << 32 | uid);
            let comm = "call 16\nexit";
            let mut buf = [0xffu8; 20];
            assert_eq!(run_raw(comm, &mut buf).unwrap(), 0);
            let mut short = [0xffu8; 4];
            run_raw(comm, &mut short).unwrap();
            (buf, short)
        })
        .unwrap()
        .join()
        .unwrap();
    // The OS keeps 15 bytes of a thread name; the rest is NUL padding.
    let mut expect = b"helpers-comm-th".to_vec();
    expect.resize(20, 0);
    assert_eq!(out.0.to_vec(), expect);
    assert_eq!(&out.1, b"hel\0");
}

// --- probe_read, strings ----------------------------------------------------

#[test]
fn probe_read_copies_program_memory_and_zeroes_on_a_bad_source() {
    for id in [4, 112, 113, 148] {
        let mut buf: Vec<u8> = (0..32).collect();
        // dst = buf, size = 8, src = buf + 16
        let src = format!("mov %r6, %r1\nmov %r3, %r1\nadd %r3, 16\nmov %r2, 8\ncall {id}\nexit");
        assert_eq!(run_raw(&src, &mut buf).unwrap(), 0);
        assert_eq!(&buf[..8], &[16, 17, 18, 19, 20, 21, 22, 23]);
        assert_eq!(buf[8], 8);

        let bad = format!("mov %r2, 8\nlddw %r3, 0x1000\ncall {id}\nexit");
        let mut buf = [0xaau8; 12];
        assert_eq!(run_raw(&bad, &mut buf).unwrap(), EFAULT);
        assert_eq!(buf, [0, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa]);

        // A source running past the end of the buffer is bad too.
        let past = format!("mov %r3, %r1\nadd %r3, 8\nmov %r2, 8\ncall {id}\nexit");
        let mut buf = [7u8; 12];
        assert_eq!(run_raw(&past, &mut buf).unwrap(), EFAULT);
        assert_eq!(&buf[..8], &[0; 8]);
    }
    let unwritable = "mov %r2, 8\nmov %r3, %r1\nlddw %r1, 0x1000\ncall 4\nexit";
    let msg = fault_of(run_raw(unwritable, &mut [0u8; 8]));
    assert!(msg.contains("bpf_probe_read: r1"), "{msg}");
}

#[test]
fn probe_read_str_returns_the_length_with_its_nul() {
    for id in [45, 114, 115] {
        // buf[32..] holds "hello\0"; copy into buf[0..size].
        let prog =
            |size: u32| format!("mov %r3, %r1\nadd %r3, 32\nmov %r2, {size}\ncall {id}\nexit");
        let fresh = || {
            let mut b = vec![0xeeu8; 40];
            b[32..38].copy_from_slice(b"hello\0");
            b
        };
        let mut buf = fresh();
        assert_eq!(run_raw(&prog(16), &mut buf).unwrap(), 6);
        assert_eq!(&buf[..7], b"hello\0\xee");
        // Cut to size - 1 bytes and a NUL.
        let mut buf = fresh();
        assert_eq!(run_raw(&prog(3), &mut buf).unwrap(), 3);
        assert_eq!(&buf[..4], b"he\0\xee");
        // An unterminated string running off the buffer faults.
        let mut buf = fresh();
        buf[32..40].copy_from_slice(b"abcdefgh");
        assert_eq!(run_raw(&prog(16), &mut buf).unwrap(), EFAULT);
        assert_eq!(&buf[..16], &[0; 16]);
        // ... unless it is cut before the end.
        let mut buf = fresh();
        buf[32..40].copy_from_slice(b"abcdefgh");
        assert_eq!(run_raw(&prog(5), &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"abcd\0");
    }
}

#[test]
fn strncmp_compares_like_the_kernel() {
    // s1 = buf[0..n], s2 = buf[16..] (NUL-terminated).
    let cases: &[(&[u8], &[u8], u32, i64)] = &[
        (b"abcdef", b"abc\0", 3, 0),
        (b"abcdef", b"abc\0", 4, 1),
        (b"abb", b"abc\0", 3, -1),
        (b"ab\0x", b"ab\0", 4, 0),
        (b"\x80", b"\x01\0", 1, 1),
    ];
    for &(s1, s2, n, want) in cases {
        let mut buf = vec![0u8; 32];
        buf[..s1.len()].copy_from_slice(s1);
        buf[16..16 + s2.len()].copy_from_slice(s2);
        let src = format!("mov %r3, %r1\nadd %r3, 16\nmov %r2, {n}\ncall 182\nexit");
        assert_eq!(
            run_raw(&src, &mut buf).unwrap() as i64,
            want,
            "{s1:?} {s2:?} {n}"
        );
    }
    // s2 without a NUL in the program's memory is a fault.
    let mut buf = vec![b'a'; 32];
    let src = "mov %r3, %r1\nadd %r3, 16\nmov %r2, 4\ncall 182\nexit";
    let msg = fault_of(run_raw(src, &mut buf));
    assert!(msg.contains("bpf_strncmp: r3"), "{msg}");
}

/// Runs strtol (105) or strtoul (106) on `text` with `flags`; returns r0
/// and the stored result.
fn strto(id: u32, text: &[u8], flags: u64) -> (u64, i64) {
    let mut buf = vec![0x55u8; 8 + text.len()];
    buf[8..].copy_from_slice(text);
    let src = format!(
        "mov %r4, %r1\nadd %r1, 8\nmov %r2, {}\nmov %r3, {flags}\ncall {id}\nexit",
        text.len()
    );
    let r0 = run_raw(&src, &mut buf).unwrap();
    (r0, i64::from_ne_bytes(buf[..8].try_into().unwrap()))
}

#[test]
fn strtol_and_strtoul_parse_like_the_kernel() {
    assert_eq!(strto(105, b" -42xyz", 10), (4, -42));
    assert_eq!(strto(105, b"0x7f", 0), (4, 127));
    assert_eq!(strto(105, b"0755", 0), (4, 0o755));
    assert_eq!(strto(105, b"ff", 16), (2, 255));
    assert_eq!(strto(105, b"-9223372036854775808", 10), (20, i64::MIN));
    assert_eq!(strto(105, b"9223372036854775808", 10).0, ERANGE);
    assert_eq!(strto(106, b"18446744073709551615", 10), (20, -1));
    assert_eq!(strto(106, b"-1", 10).0, EINVAL);
    assert_eq!(strto(105, b"xyz", 10).0, EINVAL);
    assert_eq!(strto(105, b"12", 3).0, EINVAL);
    // Nothing is stored on failure.
    assert_eq!(strto(105, b"xyz", 10).1, i64::from_ne_bytes([0x55; 8]));
}

// --- trace_printk, snprintf, trace_vprintk ----------------------------------

/// The trace pipe is global: tests that read it take turns.
fn trace_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Message and bcc-style fields of the trace lines written by this thread.
fn my_trace_lines() -> Vec<String> {
    // SAFETY: gettid.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    trace::take_lines(None)
        .into_iter()
        .filter(|l| {
            l.get(17..)
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|t| t == tid.to_string())
        })
        .collect()
}

/// Runs trace_printk with `fmt` (placed at buf+64) and three arguments;
/// `%s` arguments may point at `buf` (given as the marker `BUF`).
fn printk(fmt: &[u8], fmt_size: usize, args: [&str; 3], buf: &mut [u8]) -> u64 {
    buf[64..64 + fmt.len()].copy_from_slice(fmt);
    let mut src = String::from("mov %r6, %r1\n");
    for (i, a) in args.iter().enumerate() {
        if *a == "BUF" {
            src += &format!("mov %r{}, %r6\n", i + 3);
        } else {
            src += &format!("lddw %r{}, {a}\n", i + 3);
        }
    }
    src += &format!("mov %r1, %r6\nadd %r1, 64\nmov %r2, {fmt_size}\ncall 6\nexit");
    run_raw(&src, buf).unwrap()
}

#[test]
fn trace_printk_formats_and_writes_a_trace_line() {
    let _g = trace_lock();
    trace::take_lines(None);
    let mut buf = vec![0u8; 256];
    buf[..6].copy_from_slice(b"world\0");
    let fmt = b"hi %s %d %u %x %c %%\n\0";
    let r0 = printk(fmt, fmt.len(), ["BUF", "-5", "0xffffffff"], &mut buf);
    // %c takes a 4th argument: the kernel allows 3, so this is -EINVAL.
    assert_eq!(r0, EINVAL);
    let fmt = b"hi %s %d %lx%%\n\0";
    let r0 = printk(fmt, fmt.len(), ["BUF", "-5", "0x1234567890"], &mut buf);
    let expect = "hi world -5 1234567890%\n";
    assert_eq!(r0, expect.len() as u64);
    let lines = my_trace_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    // bcc's trace_fields parsing: task in the first 16 columns, then
    // "-pid [cpu] flags ts: sym: msg".
    let rest = &line[17..];
    let ts_end = rest.find(':').unwrap();
    let fields: Vec<&str> = rest[..ts_end].split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert_eq!(fields[1], format!("[{:03}]", cpu::current_cpu()));
    let ts: f64 = fields[3].parse().unwrap();
    let now = clock(libc::CLOCK_MONOTONIC) as f64 / 1e9;
    assert!(ts <= now && now - ts < 60.0);
    let msg = &rest[ts_end + 1..];
    assert_eq!(msg, " bpf_trace_printk: hi world -5 1234567890%");
}

#[test]
fn trace_printk_widths_flags_and_sizes_match_printf() {
    let _g = trace_lock();
    trace::take_lines(None);
    let mut buf = vec![0u8; 256];
    buf[..3].copy_from_slice(b"ab\0");
    let cases: Vec<(&[u8], [&str; 3], String)> = vec![
        (
            b"[%5d|%-5d|%05d]\0",
            ["42", "-7", "-42"],
            format!("[{:5}|{:<5}|{:05}]", 42, -7, -42),
        ),
        (
            b"[%+d|% d|%X]\0",
            ["3", "4", "0xabc"],
            "[+3| 4|ABC]".to_string(),
        ),
        (
            b"[%lld|%llu|%i]\0",
            ["-1", "-1", "0x1ffffffff"],
            format!("[-1|{}|-1]", u64::MAX),
        ),
        (
            b"[%6s|%-4s|%08x]\0",
            ["BUF", "BUF", "0xbeef"],
            "[    ab|ab  |0000beef]".to_string(),
        ),
        (
            b"[%px|%p]\0",
            ["0x1234", "0", "0"],
            "[0000000000001234|(null)]".to_string(),
        ),
    ];
    for (fmt, args, expect) in cases {
        let r0 = printk(fmt, fmt.len(), args, &mut buf);
        assert_eq!(r0, expect.len() as u64, "{}", String::from_utf8_lossy(fmt));
        let lines = my_trace_lines();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with(&format!("bpf_trace_printk: {expect}")),
            "{}",
            lines[0]
        );
    }
}

#[test]
fn trace_printk_rejects_what_the_kernel_rejects() {
    let _g = trace_lock();
    trace::take_lines(None);
    let mut buf = vec![0u8; 256];
    let bad: Vec<(&[u8], usize)> = vec![
        (b"%y\0", 3),           // unknown conversion
        (b"%.2d\0", 5),         // precision
        (b"%hd\0", 4),          // short
        (b"%d %d %d %d\0", 12), // four arguments
        (b"%sx\0", 4),          // %s followed by a letter
        (b"tab\x01\0", 5),      // non-printable
        (b"\xc3\xa9\0", 3),     // non-ASCII
        (b"no nul", 6),         // no NUL within fmt_size
        (b"%\0", 2),            // lone %
    ];
    for (fmt, size) in bad {
        let r0 = printk(fmt, size, ["1", "2", "3"], &mut buf);
        assert_eq!(r0, EINVAL, "{:?}", String::from_utf8_lossy(fmt));
    }
    assert!(my_trace_lines().is_empty());
    // A format larger than the program's memory is a fault naming r1.
    let src = "add %r1, 64\nmov %r2, 4096\ncall 6\nexit";
    let msg = fault_of(run_raw(src, &mut buf));
    assert!(
        msg.contains("bpf_trace_printk") && msg.contains("r1"),
        "{msg}"
    );
    // An unreadable %s prints as empty, as in the kernel.
    let r0 = printk(b"[%s]\0", 5, ["0x1000", "0", "0"], &mut buf);
    assert_eq!(r0, 2);
    assert!(my_trace_lines()[0].ends_with("bpf_trace_printk: []"));
}

#[test]
fn snprintf_and_trace_vprintk_take_argument_arrays() {
    let _g = trace_lock();
    trace::take_lines(None);
    // buf: [0..32) output, [32..96) u64 args, [96..) format.
    let mut buf = vec![0u8; 160];
    let args: [u64; 5] = [1, 2, 3, 4, 5];
    for (i, a) in args.iter().enumerate() {
        buf[32 + 8 * i..40 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let fmt = b"%d-%d-%d-%d-%d\0";
    buf[96..96 + fmt.len()].copy_from_slice(fmt);
    let snprintf = |size: u32, data_len: u32, buf: &mut [u8]| {
        let src = format!(
            "mov %r4, %r1\nadd %r4, 32\nmov %r3, %r1\nadd %r3, 96\nmov %r2, {size}\nmov %r5, {data_len}\ncall 165\nexit"
        );
        run_raw(&src, buf).unwrap()
    };
    assert_eq!(snprintf(32, 40, &mut buf), 10);
    assert_eq!(&buf[..10], b"1-2-3-4-5\0");
    // Truncated to size - 1 and a NUL; the return value is the full length.
    buf[..10].fill(0xee);
    assert_eq!(snprintf(4, 40, &mut buf), 10);
    assert_eq!(&buf[..5], b"1-2\0\xee");
    // Too few arguments, or a length that is not a multiple of 8.
    assert_eq!(snprintf(32, 32, &mut buf), EINVAL);
    assert_eq!(snprintf(32, 36, &mut buf), EINVAL);

    let vprintk = format!(
        "mov %r3, %r1\nadd %r3, 32\nadd %r1, 96\nmov %r2, {}\nmov %r4, 40\ncall 177\nexit",
        fmt.len()
    );
    assert_eq!(run_raw(&vprintk, &mut buf).unwrap(), 9);
    let lines = my_trace_lines();
    assert!(
        lines[0].ends_with("bpf_trace_printk: 1-2-3-4-5"),
        "{lines:?}"
    );
}

// --- ring buffer --------------------------------------------------------

fn ring() -> Arc<Map> {
    Map::create(MapDef::new(MapType::Ringbuf, 0, 0, 4096).named("events")).unwrap()
}

fn records(m: &Map) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    m.downcast::<RingBuf>().unwrap().consume(&mut |r| {
        out.push(r.to_vec());
        true
    });
    out
}

#[test]
fn ringbuf_reserve_submit_discard_output_query() {
    let rb = ring();
    let reserve_submit = "
        mov %r6, %r1
        lddw %r1, map_idx 0
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, fail
        lddw %r2, 0x1122334455667788
        stxdw [%r0], %r2
        ldxdw %r3, [%r6]
        stxdw [%r0+8], %r3
        mov %r1, %r0
        mov %r2, 0
        call 132
        mov %r0, 1
        exit
    fail:
        mov %r0, 0
        exit";
    let prog = load(reserve_submit, ProgType::Raw, vec![rb.clone()]);
    let mut buf = 42u64.to_ne_bytes();
    assert_eq!(run(&prog, Input::Memory(&mut buf)).unwrap().retval, 1);
    let mut expect = 0x1122334455667788u64.to_ne_bytes().to_vec();
    expect.extend(42u64.to_ne_bytes());
    assert_eq!(records(&rb), vec![expect]);

    // Discarded records never reach the consumer.
    let discard = reserve_submit.replace("call 132", "call 133");
    let prog = load(&discard, ProgType::Raw, vec![rb.clone()]);
    assert_eq!(run(&prog, Input::Memory(&mut buf)).unwrap().retval, 1);
    assert!(records(&rb).is_empty());

    // Nonzero reserve flags give NULL.
    let flagged = reserve_submit.replace("mov %r3, 0\n", "mov %r3, 1\n");
    let prog = load(&flagged, ProgType::Raw, vec![rb.clone()]);
    assert_eq!(run(&prog, Input::Memory(&mut buf)).unwrap().retval, 0);

    // output copies the program's bytes; query sees them until consumed.
    let output = "
        mov %r2, %r1
        lddw %r1, map_idx 0
        mov %r3, 5
        mov %r4, 0
        call 130
        mov %r6, %r0
        lddw %r1, map_idx 0
        mov %r2, 0
        call 134
        lsh %r0, 8
        or %r0, %r6
        exit";
    let prog = load(output, ProgType::Raw, vec![rb.clone()]);
    let mut data = *b"hello";
    let r0 = run(&prog, Input::Memory(&mut data)).unwrap().retval;
    // 0 from output; 16 bytes (8 header + 5 data, padded) available.
    assert_eq!(r0, 16 << 8);
    assert_eq!(records(&rb), vec![b"hello".to_vec()]);
    let size = "lddw %r1, map_idx 0\nmov %r2, 1\ncall 134\nexit";
    let prog = load(size, ProgType::Raw, vec![rb.clone()]);
    assert_eq!(run(&prog, Input::Memory(&mut [])).unwrap().retval, 4096);

    // A full ring: output returns -EAGAIN, reserve NULL.
    let big = "mov %r2, %r1\nlddw %r1, map_idx 0\nmov %r3, 3000\nmov %r4, 0\ncall 130\nexit";
    let prog = load(big, ProgType::Raw, vec![rb.clone()]);
    let mut data = vec![1u8; 3000];
    assert_eq!(run(&prog, Input::Memory(&mut data)).unwrap().retval, 0);
    assert_eq!(
        run(&prog, Input::Memory(&mut data)).unwrap().retval,
        -11i64 as u64
    );
    assert_eq!(records(&rb).len(), 1);
}

#[test]
fn ringbuf_submit_rejects_forged_and_repeated_pointers() {
    let rb = ring();
    // Submitting the program's own buffer.
    let forged = "lddw %r6, map_idx 0\nmov %r2, 0\ncall 132\nmov %r0, 0\nexit";
    let prog = load(forged, ProgType::Raw, vec![rb.clone()]);
    let err = run(&prog, Input::Memory(&mut [0u8; 16])).unwrap_err();
    assert!(
        err.reason.contains("bpf_ringbuf_submit: r1"),
        "{}",
        err.reason
    );
    // A pointer 8 bytes into a reserved record.
    let inside = "
        lddw %r1, map_idx 0
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, +4
        mov %r1, %r0
        add %r1, 8
        mov %r2, 0
        call 133
        exit";
    let prog = load(inside, ProgType::Raw, vec![rb.clone()]);
    let err = run(&prog, Input::Memory(&mut [])).unwrap_err();
    assert!(
        err.reason.contains("bpf_ringbuf_discard: r1"),
        "{}",
        err.reason
    );
    // Submitting the same record twice.
    let twice = "
        lddw %r1, map_idx 0
        mov %r2, 8
        mov %r3, 0
        call 131
        jeq %r0, 0, +6
        mov %r6, %r0
        mov %r1, %r6
        mov %r2, 0
        call 132
        mov %r1, %r6
        call 132
        exit";
    let prog = load(twice, ProgType::Raw, vec![rb.clone()]);
    let err = run(&prog, Input::Memory(&mut [])).unwrap_err();
    assert!(err.reason.contains("already submitted"), "{}", err.reason);
    // A committed record is no longer the program's to write.
    for commit in [132, 133] {
        let after = format!(
            "
            lddw %r1, map_idx 0
            mov %r2, 8
            mov %r3, 0
            call 131
            jeq %r0, 0, +6
            mov %r6, %r0
            mov %r1, %r6
            mov %r2, 0
            call {commit}
            stdw [%r6], 7
            mov %r0, 1
            exit"
        );
        let prog = load(&after, ProgType::Raw, vec![rb.clone()]);
        let err = run(&prog, Input::Memory(&mut [])).unwrap_err();
        assert!(err.reason.contains("out of bounds"), "{}", err.reason);
    }
    // A map that is not a ring buffer.
    let array = Map::create(MapDef::new(MapType::Array, 4, 8, 1)).unwrap();
    let wrong = "lddw %r1, map_idx 0\nmov %r2, 1\ncall 134\nexit";
    let prog = load(wrong, ProgType::Raw, vec![array]);
    let err = run(&prog, Input::Memory(&mut [])).unwrap_err();
    assert!(err.reason.contains("not a ringbuf"), "{}", err.reason);
}

// --- spin locks -----------------------------------------------------------

/// value = { struct bpf_spin_lock lock; u32 counter; }
const LOCKED_INCREMENT: &str = "
    lddw %r6, map_idx_value 0, 0
    mov %r1, %r6
    call 93
    ldxw %r2, [%r6+4]
    add %r2, 1
    stxw [%r6+4], %r2
    mov %r1, %r6
    call 94
    mov %r0, 0
    exit";

#[test]
fn spin_lock_serialises_threads() {
    let m = Map::create(MapDef::new(MapType::Array, 4, 8, 1)).unwrap();
    let prog = load(LOCKED_INCREMENT, ProgType::Raw, vec![m.clone()]);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let prog = prog.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    run(&prog, Input::Memory(&mut [])).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let v = m.lookup(&0u32.to_ne_bytes()).unwrap();
    assert_eq!(u32::from_ne_bytes(v[4..8].try_into().unwrap()), 8000);
    assert_eq!(
        u32::from_ne_bytes(v[..4].try_into().unwrap()),
        0,
        "lock left held"
    );
}

#[test]
fn spin_lock_misuse_faults_instead_of_hanging() {
    let first = Map::create(MapDef::new(MapType::Array, 4, 8, 1)).unwrap();
    let twice = "lddw %r6, map_idx_value 0, 0\nmov %r1, %r6\ncall 93\nmov %r1, %r6\ncall 93\nexit";
    let prog = load(twice, ProgType::Raw, vec![first.clone()]);
    let err = run(&prog, Input::Memory(&mut [])).unwrap_err();
    assert!(err.reason.contains("deadlock"), "{}", err.reason);
    // The faulted run left the lock held; once user space clears the
    // value, this thread can take it again.
    first.update(&0u32.to_ne_bytes(), &[0; 8], 0).unwrap();
    let prog = load(LOCKED_INCREMENT, ProgType::Raw, vec![first.clone()]);
    run(&prog, Input::Memory(&mut [])).unwrap();
    assert_eq!(
        first.lookup(&0u32.to_ne_bytes()).unwrap(),
        [0, 0, 0, 0, 1, 0, 0, 0]
    );

    let m = Map::create(MapDef::new(MapType::Array, 4, 8, 1)).unwrap();
    let unlock = "lddw %r1, map_idx_value 0, 0\ncall 94\nexit";
    let prog = load(unlock, ProgType::Raw, vec![m.clone()]);
    let err = run(&prog, Input::Memory(&mut [])).unwrap_err();
    assert!(err.reason.contains("not held"), "{}", err.reason);

    // A lock someone else holds and never releases: a fault after the
    // timeout, not a hang.
    m.update(&0u32.to_ne_bytes(), &[1, 0, 0, 0, 0, 0, 0, 0], 0)
        .unwrap();
    let prog = load(LOCKED_INCREMENT, ProgType::Raw, vec![m.clone()]);
    let start = std::time::Instant::now();
    let err = run(&prog, Input::Memory(&mut [])).unwrap_err();
    assert!(err.reason.contains("still held"), "{}", err.reason);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));

    let unaligned = "lddw %r1, map_idx_value 0, 2\ncall 93\nexit";
    let prog = load(unaligned, ProgType::Raw, vec![m]);
    let err = run(&prog, Input::Memory(&mut [])).unwrap_err();
    assert!(err.reason.contains("aligned"), "{}", err.reason);
    drop(first);
}

// --- XDP ------------------------------------------------------------------

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// Calls `helper(ctx, delta)`, then returns r0 << 8 | XDP_PASS after
/// writing 0xaa over the first `mark` bytes at the (new) ctx->data.
fn xdp_adjust(helper: u32, delta: i32, mark: usize) -> String {
    let mut s = format!("mov %r6, %r1\nmov %r2, {delta}\ncall {helper}\nmov %r7, %r0\n");
    s += "ldxw %r2, [%r6]\nldxw %r3, [%r6+4]\n";
    if mark > 0 {
        s += &format!("mov %r4, %r2\nadd %r4, {mark}\njgt %r4, %r3, +{}\n", mark);
        for i in 0..mark {
            s += &format!("stb [%r2+{i}], 0xaa\n");
        }
    }
    s += "mov %r0, %r7\nlsh %r0, 8\nor %r0, 2\nexit";
    s
}

#[test]
fn xdp_adjust_head_moves_the_start_within_the_kernels_limits() {
    let pkt = frame(60);
    let grow = load(&xdp_adjust(44, -4, 4), ProgType::Xdp, vec![]);
    let r = run_packet(&grow, &pkt, None);
    assert_eq!(r.retval, 2);
    let mut expect = vec![0xaa; 4];
    expect.extend(&pkt);
    assert_eq!(r.data, expect);

    let shrink = load(&xdp_adjust(44, 14, 0), ProgType::Xdp, vec![]);
    let r = run_packet(&shrink, &pkt, None);
    assert_eq!(r.retval, 2);
    assert_eq!(r.data, pkt[14..]);

    // data may not pass data_end - ETH_HLEN, nor the buffer's start.
    let too_far = load(&xdp_adjust(44, 47, 0), ProgType::Xdp, vec![]);
    let r = run_packet(&too_far, &pkt, None);
    assert_eq!(r.retval, EINVAL << 8 | 2);
    assert_eq!(r.data, pkt);
    let edge = load(&xdp_adjust(44, 46, 0), ProgType::Xdp, vec![]);
    assert_eq!(run_packet(&edge, &pkt, None).data, pkt[46..]);
    let before_buf = load(&xdp_adjust(44, -257, 0), ProgType::Xdp, vec![]);
    assert_eq!(run_packet(&before_buf, &pkt, None).retval, EINVAL << 8 | 2);
}

#[test]
fn xdp_adjust_tail_grows_with_zeroes_and_shrinks_to_an_ethernet_header() {
    let pkt = frame(60);
    let grow = load(&xdp_adjust(65, 10, 0), ProgType::Xdp, vec![]);
    let r = run_packet(&grow, &pkt, None);
    let mut expect = pkt.clone();
    expect.extend([0; 10]);
    assert_eq!((r.retval, r.data), (2, expect));

    let shrink = load(&xdp_adjust(65, -46, 0), ProgType::Xdp, vec![]);
    let r = run_packet(&shrink, &pkt, None);
    assert_eq!((r.retval, r.data), (2, pkt[..14].to_vec()));

    let below = load(&xdp_adjust(65, -47, 0), ProgType::Xdp, vec![]);
    assert_eq!(run_packet(&below, &pkt, None).retval, EINVAL << 8 | 2);
    let beyond = load(&xdp_adjust(65, 5000, 0), ProgType::Xdp, vec![]);
    let r = run_packet(&beyond, &pkt, None);
    assert_eq!((r.retval, r.data), (EINVAL << 8 | 2, pkt));
}

#[test]
fn xdp_adjust_meta_makes_room_before_the_packet() {
    let pkt = frame(40);
    // Reserve 8 bytes of metadata, write them, read them back through
    // ctx->data_meta.
    let src = "
        mov %r6, %r1
        mov %r2, -8
        call 54
        jne %r0, 0, out
        ldxw %r2, [%r6+8]
        ldxw %r3, [%r6]
        mov %r4, %r2
        add %r4, 8
        jgt %r4, %r3, out
        stdw [%r2], 0x5a5a
        ldxdw %r0, [%r2]
        exit
    out:
        exit";
    let prog = load(src, ProgType::Xdp, vec![]);
    let r = run_packet(&prog, &pkt, None);
    assert_eq!(r.retval, 0x5a5a);
    assert_eq!(r.data, pkt);
    // Not a multiple of 4, or more than 32 bytes: -EACCES.
    for delta in [-3, -36] {
        let prog = load(&xdp_adjust(54, delta, 0), ProgType::Xdp, vec![]);
        assert_eq!(run_packet(&prog, &pkt, None).retval, EACCES << 8 | 2);
    }
    // Past data: -EINVAL.
    let prog = load(&xdp_adjust(54, 4, 0), ProgType::Xdp, vec![]);
    assert_eq!(run_packet(&prog, &pkt, None).retval, EINVAL << 8 | 2);
}

#[test]
fn xdp_helpers_check_their_context_and_program_type() {
    let pkt = frame(40);
    let wrong_ctx = load(
        "mov %r1, %r10\nmov %r2, 4\ncall 44\nexit",
        ProgType::Xdp,
        vec![],
    );
    let err = run(
        &wrong_ctx,
        Input::Packet {
            packet: &pkt,
            ctx: None,
        },
    )
    .unwrap_err();
    assert!(
        err.reason.contains("bpf_xdp_adjust_head: r1"),
        "{}",
        err.reason
    );
    let tc = load("mov %r2, 4\ncall 44\nexit", ProgType::SchedCls, vec![]);
    let err = run(
        &tc,
        Input::Packet {
            packet: &pkt,
            ctx: None,
        },
    )
    .unwrap_err();
    assert!(err.reason.contains("XDP helper"), "{}", err.reason);
    let raw = fault_of(run_raw("mov %r2, 4\ncall 44\nexit", &mut [0u8; 64]));
    assert!(raw.contains("bpf_xdp_adjust_head"), "{raw}");
}

#[test]
fn redirects_record_the_target_and_return_the_types_action() {
    let pkt = frame(40);
    let redirect = |flags: u64| format!("mov %r1, 5\nmov %r2, {flags}\ncall 23\nexit");
    let xdp = load(&redirect(0), ProgType::Xdp, vec![]);
    let r = run_packet(&xdp, &pkt, None);
    assert_eq!((r.retval, r.redirect), (4, Some(5)));
    let xdp = load(&redirect(1), ProgType::Xdp, vec![]);
    let r = run_packet(&xdp, &pkt, None);
    assert_eq!((r.retval, r.redirect), (0, None));
    let tc = load(&redirect(1), ProgType::SchedCls, vec![]);
    let r = run_packet(&tc, &pkt, None);
    assert_eq!((r.retval, r.redirect), (7, Some(5)));
    let tc = load(&redirect(2), ProgType::SchedCls, vec![]);
    assert_eq!(run_packet(&tc, &pkt, None).retval, 2);

    let devmap = Map::create(MapDef::new(MapType::Devmap, 4, 4, 8)).unwrap();
    devmap
        .update(&1u32.to_ne_bytes(), &9u32.to_ne_bytes(), 0)
        .unwrap();
    let via_map = |key: u32, flags: u64| {
        format!("lddw %r1, map_idx 0\nmov %r2, {key}\nmov %r3, {flags}\ncall 51\nexit")
    };
    let prog = load(&via_map(1, 0), ProgType::Xdp, vec![devmap.clone()]);
    let r = run_packet(&prog, &pkt, None);
    assert_eq!((r.retval, r.redirect), (4, Some(9)));
    // An absent key returns the flags' action bits (XDP_PASS here).
    let prog = load(&via_map(2, 2), ProgType::Xdp, vec![devmap.clone()]);
    let r = run_packet(&prog, &pkt, None);
    assert_eq!((r.retval, r.redirect), (2, None));
    let prog = load(&via_map(1, 0x100), ProgType::Xdp, vec![devmap]);
    assert_eq!(run_packet(&prog, &pkt, None).retval, 0);
}

// --- __sk_buff --------------------------------------------------------------

fn be16_sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

const IP_SRC: [u8; 4] = [10, 0, 0, 1];
const IP_DST: [u8; 4] = [10, 0, 0, 2];
const IP_NEW: [u8; 4] = [192, 168, 7, 9];

/// Ethernet + IPv4 + UDP (ports 1234 -> 53) + payload, checksums valid.
fn udp_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let payload = b"query!";
    let udp_len = 8 + payload.len();
    let mut p = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, (20 + udp_len) as u8, 0, 1, 0, 0, 64, 17, 0, 0];
    ip.extend(src);
    ip.extend(dst);
    let ip_sum = !fold(be16_sum(&ip));
    ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    p.extend(&ip);
    let mut udp = sport.to_be_bytes().to_vec();
    udp.extend(dport.to_be_bytes());
    udp.extend((udp_len as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    p.extend(&udp);
    let sum = udp_checksum(&p);
    p[40..42].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The UDP checksum over the pseudo header and datagram of `p` (field
/// taken as zero).
fn udp_checksum(p: &[u8]) -> u16 {
    let udp = &p[34..];
    let mut pseudo = p[26..34].to_vec();
    pseudo.extend([0, 17]);
    pseudo.extend((udp.len() as u16).to_be_bytes());
    let mut d = udp.to_vec();
    d[6..8].fill(0);
    match !fold(be16_sum(&pseudo) + be16_sum(&d)) {
        0 => 0xffff,
        s => s,
    }
}

fn ip_checksum_ok(p: &[u8]) -> bool {
    fold(be16_sum(&p[14..34])) == 0xffff
}

#[test]
fn skb_load_bytes_reads_the_packet_and_clears_on_bad_offsets() {
    let pkt = udp_packet(IP_SRC, IP_DST, 1234, 53);
    // Load 8 bytes at `offset` to the stack and return them (or r0).
    let prog = |offset: u32| {
        format!(
            "mov %r2, {offset}\nmov %r3, %r10\nadd %r3, -8\nstdw [%r10-8], -1\nmov %r4, 8\ncall 26\njne %r0, 0, +1\nldxdw %r0, [%r10-8]\nexit"
        )
    };
    let p = load(&prog(26), ProgType::SchedCls, vec![]);
    let r = run_packet(&p, &pkt, None);
    assert_eq!(r.retval.to_ne_bytes(), pkt[26..34]);
    let p = load(&prog(pkt.len() as u32 - 7), ProgType::SchedCls, vec![]);
    assert_eq!(run_packet(&p, &pkt, None).retval, EFAULT);
    // The destination is zeroed on failure.
    let zeroed = prog(pkt.len() as u32 - 7).replace("jne %r0, 0, +1\n", "");
    let p = load(&zeroed, ProgType::SchedCls, vec![]);
    assert_eq!(run_packet(&p, &pkt, None).retval, 0);

    // Relative loads: socket filters see data from the network header.
    let rel = |offset: u32, start: u32| {
        format!(
            "mov %r2, {offset}\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 4\nmov %r5, {start}\ncall 68\njne %r0, 0, +1\nldxw %r0, [%r10-8]\nexit"
        )
    };
    for t in [ProgType::SocketFilter, ProgType::SchedCls] {
        let mac = load(&rel(6, 0), t, vec![]);
        assert_eq!(
            run_packet(&mac, &pkt, None).retval.to_ne_bytes()[..4],
            pkt[6..10]
        );
        let net = load(&rel(12, 1), t, vec![]);
        assert_eq!(
            run_packet(&net, &pkt, None).retval.to_ne_bytes()[..4],
            pkt[26..30]
        );
        let bad = load(&rel(0, 2), t, vec![]);
        assert_eq!(run_packet(&bad, &pkt, None).retval, EFAULT);
    }
    let off_end = load(&rel(pkt.len() as u32 - 16, 1), ProgType::SchedCls, vec![]);
    assert_eq!(run_packet(&off_end, &pkt, None).retval, EFAULT);
}

#[test]
fn nat_rewrite_with_store_bytes_and_checksum_replace_keeps_checksums_valid() {
    let pkt = udp_packet(IP_SRC, IP_DST, 1234, 53);
    let old = u32::from_ne_bytes(IP_DST);
    let new = u32::from_ne_bytes(IP_NEW);
    let nat = format!(
        "
        mov %r6, %r1
        stw [%r10-4], {new}
        mov %r1, %r6
        mov %r2, 30
        mov %r3, %r10
        add %r3, -4
        mov %r4, 4
        mov %r5, 2
        call 9
        jne %r0, 0, out
        mov %r1, %r6
        mov %r2, 24
        mov %r3, {old}
        mov %r4, {new}
        mov %r5, 4
        call 10
        jne %r0, 0, out
        mov %r1, %r6
        mov %r2, 40
        mov %r3, {old}
        mov %r4, {new}
        mov %r5, 0x14
        call 11
    out:
        exit"
    );
    let prog = load(&nat, ProgType::SchedCls, vec![]);
    let mut ctx = vec![0u8; 192];
    ctx[68..72].copy_from_slice(&0xdeadu32.to_ne_bytes());
    let r = run_packet(&prog, &pkt, Some(&ctx));
    assert_eq!(r.retval, 0);
    let expect_pkt = udp_packet(IP_SRC, IP_NEW, 1234, 53);
    assert_eq!(r.data, expect_pkt);
    assert!(ip_checksum_ok(&r.data));
    assert_eq!(
        u16::from_be_bytes([r.data[40], r.data[41]]),
        udp_checksum(&r.data)
    );
    // BPF_F_INVALIDATE_HASH cleared __sk_buff.hash.
    assert_eq!(&r.ctx[68..72], &[0; 4]);

    // The 16-bit form: change the destination port.
    let port = format!(
        "
        mov %r6, %r1
        sth [%r10-2], {new_port}
        mov %r1, %r6
        mov %r2, 36
        mov %r3, %r10
        add %r3, -2
        mov %r4, 2
        mov %r5, 0
        call 9
        mov %r1, %r6
        mov %r2, 40
        mov %r3, {old_port}
        mov %r4, {new_port}
        mov %r5, 2
        call 11
        exit",
        old_port = u16::from_ne_bytes(53u16.to_be_bytes()),
        new_port = u16::from_ne_bytes(5353u16.to_be_bytes()),
    );
    let prog = load(&port, ProgType::SchedCls, vec![]);
    let r = run_packet(&prog, &pkt, None);
    assert_eq!(r.retval, 0);
    assert_eq!(r.data, udp_packet(IP_SRC, IP_DST, 1234, 5353));
}

#[test]
fn checksum_helpers_reject_bad_arguments_and_honour_mangled_0() {
    let mut pkt = udp_packet(IP_SRC, IP_DST, 1234, 53);
    let call = |id: u32, offset: u32, from: u64, to: u64, flags: u64| {
        format!("mov %r2, {offset}\nlddw %r3, {from}\nlddw %r4, {to}\nmov %r5, {flags}\ncall {id}\nexit")
    };
    let cases = [
        (call(10, 25, 0, 1, 4), EFAULT),               // odd offset
        (call(10, 24, 0, 1, 3), EINVAL),               // field size 3
        (call(10, 24, 1, 1, 0), EINVAL),               // diff form needs from == 0
        (call(10, 24, 0, 1, 0x10), EINVAL),            // l4 flag on l3
        (call(11, 40, 0, 1, 0x104), EINVAL),           // unknown flag
        (call(11, pkt.len() as u32, 0, 1, 4), EFAULT), // past the end
    ];
    for (src, want) in cases {
        let prog = load(&src, ProgType::SchedCls, vec![]);
        let r = run_packet(&prog, &pkt, None);
        assert_eq!(r.retval, want, "{src}");
        assert_eq!(r.data, pkt);
    }
    // A zero UDP checksum ("none") stays zero with BPF_F_MARK_MANGLED_0 ...
    pkt[40..42].fill(0);
    let prog = load(&call(11, 40, 1, 2, 0x24), ProgType::SchedCls, vec![]);
    assert_eq!(run_packet(&prog, &pkt, None).data, pkt);
    // ... and a result of zero is written as 0xffff.
    let sum = 0x1234u16;
    pkt[40..42].copy_from_slice(&sum.to_ne_bytes());
    // A diff equal to the old sum folds the new sum to 0: ~(~sum + sum).
    let to = sum as u64;
    let prog = load(&call(11, 40, 0, to, 0x20), ProgType::SchedCls, vec![]);
    let r = run_packet(&prog, &pkt, None);
    assert_eq!(&r.data[40..42], &[0xff, 0xff]);
}

#[test]
fn csum_diff_matches_a_reference_sum() {
    // from = buf[0..8], to = buf[8..20].
    let mut buf: Vec<u8> = (0..24u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let diff = |from_size: u32, to_size: u32, seed: u32, buf: &mut [u8]| {
        let src = format!(
            "mov %r3, %r1\nadd %r3, 8\nmov %r2, {from_size}\nmov %r4, {to_size}\nmov %r5, {seed}\ncall 28\nexit"
        );
        run_raw(&src, buf).unwrap()
    };
    // Ones' complement sums of 16-bit words as the CPU loads them.
    let ne_sum = |b: &[u8]| -> u32 {
        b.chunks(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]) as u32)
            .sum()
    };
    let (from, to) = (buf[..8].to_vec(), buf[8..20].to_vec());
    let r = diff(8, 12, 0, &mut buf);
    assert!(r <= u32::MAX as u64);
    // sum(to) - sum(from) in ones' complement = sum(to) + sum(~from).
    let not_from: Vec<u8> = from.iter().map(|b| !b).collect();
    assert_eq!(fold(r as u32), fold(ne_sum(&to) + ne_sum(&not_from)));
    // Pushing data onto a seed.
    let r = diff(0, 12, 0x10000, &mut buf);
    assert_eq!(fold(r as u32), fold(ne_sum(&to) + 1));
    assert_eq!(diff(2, 4, 0, &mut buf), EINVAL);
    assert_eq!(diff(256, 260, 0, &mut buf), EINVAL);
    let msg = fault_of(run_raw("mov %r2, 64\nmov %r4, 0\ncall 28\nexit", &mut buf));
    assert!(msg.contains("bpf_csum_diff: r1"), "{msg}");
}

#[test]
fn skb_change_tail_and_head_resize_the_packet_and_its_len() {
    let pkt = udp_packet(IP_SRC, IP_DST, 1234, 53);
    let call = |id: u32, arg: u32, flags: u64| {
        format!("mov %r6, %r1\nmov %r2, {arg}\nmov %r3, {flags}\ncall {id}\nldxw %r1, [%r6]\nlsh %r0, 32\nor %r0, %r1\nexit")
    };
    let n = pkt.len() as u64;
    let grow = load(&call(38, 100, 0), ProgType::SchedCls, vec![]);
    let r = run_packet(&grow, &pkt, None);
    assert_eq!(r.retval, 100);
    let mut expect = pkt.clone();
    expect.resize(100, 0);
    assert_eq!(r.data, expect);
    assert_eq!(u32::from_ne_bytes(r.ctx[..4].try_into().unwrap()), 100);

    let trim = load(&call(38, 20, 0), ProgType::SchedCls, vec![]);
    let r = run_packet(&trim, &pkt, None);
    assert_eq!((r.retval, r.data), (20, pkt[..20].to_vec()));
    // Never below the network header; no flags; bounded.
    for (len, flags) in [(13, 0), (60, 1), (16065, 0)] {
        let p = load(&call(38, len, flags), ProgType::SchedCls, vec![]);
        let r = run_packet(&p, &pkt, None);
        assert_eq!(r.retval, (EINVAL << 32) | n, "len {len} flags {flags}");
    }

    let head = load(&call(43, 4, 0), ProgType::SchedCls, vec![]);
    let r = run_packet(&head, &pkt, None);
    assert_eq!(r.retval, n + 4);
    let mut expect = vec![0; 4];
    expect.extend(&pkt);
    assert_eq!(r.data, expect);
    let flagged = load(&call(43, 4, 1), ProgType::SchedCls, vec![]);
    assert_eq!(run_packet(&flagged, &pkt, None).retval, (EINVAL << 32) | n);

    // pull_data: fine up to the packet's length.
    let pull = |len: u32| format!("mov %r2, {len}\ncall 39\nexit");
    let p = load(&pull(n as u32), ProgType::SchedCls, vec![]);
    assert_eq!(run_packet(&p, &pkt, None).retval, 0);
    let p = load(&pull(n as u32 + 1), ProgType::SchedCls, vec![]);
    assert_eq!(run_packet(&p, &pkt, None).retval, -12i64 as u64);
}

#[test]
fn get_hash_recalc_is_a_symmetric_flow_hash_stored_in_the_skb() {
    let prog = load("call 34\nexit", ProgType::SchedCls, vec![]);
    let a = run_packet(&prog, &udp_packet(IP_SRC, IP_DST, 1234, 53), None);
    let back = run_packet(&prog, &udp_packet(IP_DST, IP_SRC, 53, 1234), None);
    let other = run_packet(&prog, &udp_packet(IP_SRC, IP_DST, 1235, 53), None);
    assert_ne!(a.retval, 0);
    assert_eq!(a.retval, back.retval);
    assert_ne!(a.retval, other.retval);
    assert_eq!(
        u32::from_ne_bytes(a.ctx[68..72].try_into().unwrap()) as u64,
        a.retval
    );
    // The payload is not part of the flow.
    let mut same_flow = udp_packet(IP_SRC, IP_DST, 1234, 53);
    *same_flow.last_mut().unwrap() ^= 0xff;
    assert_eq!(run_packet(&prog, &same_flow, None).retval, a.retval);
}

#[test]
fn skb_helpers_refuse_xdp_programs() {
    let pkt = frame(40);
    let prog = load(
        "mov %r2, 0\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 8\ncall 26\nexit",
        ProgType::Xdp,
        vec![],
    );
    let err = run(
        &prog,
        Input::Packet {
            packet: &pkt,
            ctx: None,
        },
    )
    .unwrap_err();
    assert!(err.reason.contains("bpf_skb_load_bytes"), "{}", err.reason);
    // And an unwritable destination is a fault naming r3.
    let prog = load(
        "mov %r2, 0\nlddw %r3, 0x1000\nmov %r4, 8\ncall 26\nexit",
        ProgType::SchedCls,
        vec![],
    );
    let err = run(
        &prog,
        Input::Packet {
            packet: &pkt,
            ctx: None,
        },
    )
    .unwrap_err();
    assert!(
        err.reason.contains("bpf_skb_load_bytes: r3"),
        "{}",
        err.reason
    );
}

// --- perf event output --------------------------------------------------------

fn perf_samples(m: &Map) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    m.downcast::<PerfEventArray>()
        .unwrap()
        .consume(&mut |cpu, data| out.push((cpu, data.to_vec())));
    out
}

#[test]
fn perf_event_output_writes_to_the_running_cpus_slot() {
    let perf = Map::create(MapDef::new(MapType::PerfEventArray, 4, 4, 4)).unwrap();
    // The sample is the 8-byte buffer the program runs on.
    let output = |flags: u64| {
        format!(
            "mov %r4, %r1\nlddw %r2, map_idx 0\nlddw %r3, {flags:#x}\nmov %r5, 8\ncall 25\nexit"
        )
    };
    let this_cpu = cpu::with_cpu(1, cpu::current_cpu);
    let run_on_cpu = |flags: u64| {
        let prog = load(&output(flags), ProgType::Raw, vec![perf.clone()]);
        let mut buf = 0x0102030405060708u64.to_ne_bytes();
        cpu::with_cpu(1, || run(&prog, Input::Memory(&mut buf)).unwrap().retval)
    };
    let sample = 0x0102030405060708u64.to_ne_bytes().to_vec();
    assert_eq!(run_on_cpu(0xffff_ffff), 0);
    assert_eq!(perf_samples(&perf), vec![(this_cpu, sample.clone())]);
    assert_eq!(run_on_cpu(this_cpu as u64), 0);
    assert_eq!(perf_samples(&perf), vec![(this_cpu, sample)]);
    // Another CPU's slot, a slot past the array, unknown flag bits, and a
    // packet length for a program without a packet.
    let other = (this_cpu as u64 + 1) % 4;
    assert_eq!(run_on_cpu(other), -95i64 as u64);
    assert_eq!(run_on_cpu(9), -7i64 as u64);
    assert_eq!(run_on_cpu(1 << 60 | 0xffff_ffff), EINVAL);
    assert_eq!(run_on_cpu(4 << 32 | 0xffff_ffff), EINVAL);
    assert!(perf_samples(&perf).is_empty());

    // XDP: the first (flags >> 32) packet bytes follow the sample.
    let xdp = "
        mov %r6, %r1
        stdw [%r10-8], 0x77
        mov %r1, %r6
        lddw %r2, map_idx 0
        lddw %r3, 0x6ffffffff
        mov %r4, %r10
        add %r4, -8
        mov %r5, 8
        call 25
        exit";
    let prog = load(xdp, ProgType::Xdp, vec![perf.clone()]);
    let pkt = frame(40);
    let r = cpu::with_cpu(1, || run_packet(&prog, &pkt, None));
    assert_eq!(r.retval, 0);
    let mut expect = 0x77u64.to_ne_bytes().to_vec();
    expect.extend(&pkt[..6]);
    assert_eq!(perf_samples(&perf), vec![(this_cpu, expect)]);
    let too_long = xdp.replace("0x6ffffffff", "0x29ffffffff");
    let prog = load(&too_long, ProgType::Xdp, vec![perf.clone()]);
    assert_eq!(run_packet(&prog, &pkt, None).retval, EFAULT);

    let array = Map::create(MapDef::new(MapType::Array, 4, 8, 1)).unwrap();
    let prog = load(&output(0xffff_ffff), ProgType::Raw, vec![array]);
    let err = run(&prog, Input::Memory(&mut [0u8; 8])).unwrap_err();
    assert!(
        err.reason.contains("not a perf_event_array"),
        "{}",
        err.reason
    );
}

// --- local storage ------------------------------------------------------------

#[test]
fn storage_get_creates_finds_and_deletes_per_owner_values() {
    let mut def = MapDef::new(MapType::SkStorage, 4, 8, 0);
    def.flags = 1; // BPF_F_NO_PREALLOC
    let sk = Map::create(def).unwrap();
    // r0 = the value for owner `owner` (get with `flags`, init from the
    // buffer when `init`), then `*value += 1` and return the new count.
    let get = |owner: u64, flags: u64, init: bool| {
        let init = if init { "mov %r3, %r1" } else { "mov %r3, 0" };
        format!(
            "{init}\nlddw %r1, map_idx 0\nlddw %r2, {owner:#x}\nmov %r4, {flags}\ncall 107\njeq %r0, 0, +4\nldxdw %r1, [%r0]\nadd %r1, 1\nstxdw [%r0], %r1\nmov %r0, %r1\nexit"
        )
    };
    let go = |src: String| {
        let prog = load(&src, ProgType::Raw, vec![sk.clone()]);
        let mut init = 100u64.to_ne_bytes();
        run(&prog, Input::Memory(&mut init)).unwrap().retval
    };
    assert_eq!(go(get(0xabc, 0, false)), 0, "no value without F_CREATE");
    assert_eq!(go(get(0xabc, 1, false)), 1, "created zeroed");
    assert_eq!(go(get(0xabc, 0, false)), 2, "found again");
    assert_eq!(
        go(get(0xdef, 1, true)),
        101,
        "created from the initial value"
    );
    assert_eq!(go(get(0, 1, false)), 0, "NULL owner");
    assert_eq!(go(get(0xabc, 2, false)), 0, "unknown flags");
    // User space sees the owner's value under its id.
    assert_eq!(
        sk.lookup(&0xabcu32.to_le_bytes()).unwrap(),
        2u64.to_ne_bytes()
    );

    let delete = |owner: u64| format!("lddw %r1, map_idx 0\nlddw %r2, {owner:#x}\ncall 108\nexit");
    assert_eq!(go(delete(0xabc)), 0);
    assert_eq!(go(delete(0xabc)), -2i64 as u64);
    assert_eq!(go(delete(0)), EINVAL);
    assert_eq!(go(get(0xabc, 0, false)), 0);

    // The map must be of the helper's kind.
    let mut def = MapDef::new(MapType::TaskStorage, 4, 8, 0);
    def.flags = 1;
    let task = Map::create(def).unwrap();
    let prog = load(&get(1, 1, false), ProgType::Raw, vec![task]);
    let err = run(&prog, Input::Memory(&mut [0u8; 8])).unwrap_err();
    assert!(err.reason.contains("not a sk_storage"), "{}", err.reason);
}

// --- robustness -----------------------------------------------------------------

/// splitmix64: a fixed-seed generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Instructions that put something plausible-but-arbitrary in `reg`: a
/// constant, a pointer into the context/buffer, the stack or the packet,
/// or one of the program's maps.
fn random_arg(rng: &mut Rng, reg: usize, packet: bool, maps: usize) -> String {
    match rng.below(8) {
        0 => format!("lddw %r{reg}, {:#x}\n", rng.next()),
        1 => format!("mov %r{reg}, {}\n", rng.below(80) as i64 - 8),
        2 => format!("lddw %r{reg}, map_idx {}\n", rng.below(maps as u64)),
        3 => format!("mov %r{reg}, %r6\nadd %r{reg}, {}\n", rng.below(200)),
        4 => format!("mov %r{reg}, %r10\nadd %r{reg}, -{}\n", rng.below(520)),
        5 if packet => format!("ldxw %r{reg}, [%r6]\nadd %r{reg}, {}\n", rng.below(80)),
        6 => format!(
            "mov %r{reg}, {}\n",
            [0, 1, 2, 4, 8, 16, 0x14, 0xffff][rng.below(8) as usize]
        ),
        _ => format!("mov %r{reg}, %r6\n"),
    }
}

#[test]
fn helpers_fail_safely_on_arbitrary_arguments() {
    let mut sk = MapDef::new(MapType::SkStorage, 4, 8, 0);
    sk.flags = 1;
    let maps = vec![
        Map::create(MapDef::new(MapType::Array, 4, 16, 4)).unwrap(),
        Map::create(MapDef::new(MapType::Hash, 4, 8, 16)).unwrap(),
        ring(),
        Map::create(MapDef::new(MapType::PerfEventArray, 4, 4, 2)).unwrap(),
        Map::create(sk).unwrap(),
        Map::create(MapDef::new(MapType::Devmap, 4, 4, 4)).unwrap(),
    ];
    let env = Environment::new(vec![]);
    // Spin locks are left out: an arbitrary nonzero word is a held lock,
    // and waiting for it is the (tested) one-second timeout.
    let ids: Vec<u32> = kernel_helpers(&env)
        .ids()
        .filter(|id| ![93, 94].contains(id))
        .collect();
    let mut rng = Rng(0x5eed);
    let (mut ok, mut failed) = (0, 0);
    let pkt = udp_packet(IP_SRC, IP_DST, 1234, 53);
    for t in [
        ProgType::Raw,
        ProgType::Xdp,
        ProgType::SchedCls,
        ProgType::SocketFilter,
    ] {
        let packet = t != ProgType::Raw;
        for &id in &ids {
            for _ in 0..12 {
                let mut src = String::from("mov %r6, %r1\n");
                for reg in 1..=5 {
                    src += &random_arg(&mut rng, reg, packet, maps.len());
                }
                src += &format!("call {id}\nexit");
                let prog = load(&src, t, maps.clone());
                let result = if packet {
                    run(
                        &prog,
                        Input::Packet {
                            packet: &pkt,
                            ctx: None,
                        },
                    )
                } else {
                    run(&prog, Input::Memory(&mut [0x11u8; 64]))
                };
                match result {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        assert!(!e.reason.is_empty());
                        failed += 1;
                    }
                }
            }
        }
    }
    // Both outcomes are common: the arguments are often usable.
    assert!(
        ok > 100 && failed > 100,
        "{ok} runs returned, {failed} faulted"
    );
}

// --- VLAN tags ------------------------------------------------------------------

/// An Ethernet frame with `tags` (TPID, TCI) after the MAC addresses.
fn tagged(tags: &[(u16, u16)], payload_type: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for &(tpid, tci) in tags {
        f.extend(tpid.to_be_bytes());
        f.extend(tci.to_be_bytes());
    }
    f.extend(payload_type.to_be_bytes());
    f.extend(b"payload-bytes-here-and-more-to-pad-it");
    f
}

/// (vlan_present, vlan_tci, vlan_proto as a host value, protocol as a host
/// value) from an `__sk_buff`.
fn vlan_fields(ctx: &[u8]) -> (u32, u32, u16, u16) {
    let u = |o: usize| u32::from_ne_bytes(ctx[o..o + 4].try_into().unwrap());
    (
        u(20),
        u(24),
        u16::from_be(u(28) as u16),
        u16::from_be(u(16) as u16),
    )
}

#[test]
fn vlan_pop_takes_tags_out_of_the_packet_and_the_skb() {
    let pop = load("call 19\nexit", ProgType::SchedCls, vec![]);
    let r = run_packet(&pop, &tagged(&[(0x8100, 100)], 0x0800), None);
    assert_eq!(r.retval, 0);
    assert_eq!(r.data, tagged(&[], 0x0800));
    assert_eq!(vlan_fields(&r.ctx), (0, 0, 0, 0x0800));
    assert_eq!(
        u32::from_ne_bytes(r.ctx[..4].try_into().unwrap()) as usize,
        r.data.len()
    );

    // Q-in-Q: the outer tag goes, the inner one becomes the skb's tag.
    let r = run_packet(&pop, &tagged(&[(0x88a8, 7), (0x8100, 42)], 0x86dd), None);
    assert_eq!(r.data, tagged(&[], 0x86dd));
    assert_eq!(vlan_fields(&r.ctx), (1, 42, 0x8100, 0x86dd));

    // An skb tag is dropped without touching the packet.
    let mut ctx = vec![0u8; 192];
    ctx[20..24].copy_from_slice(&1u32.to_ne_bytes());
    ctx[24..28].copy_from_slice(&9u32.to_ne_bytes());
    ctx[28..32].copy_from_slice(&(0x8100u16.to_be() as u32).to_ne_bytes());
    let untagged = tagged(&[], 0x0800);
    let r = run_packet(&pop, &untagged, Some(&ctx));
    assert_eq!((r.retval, &r.data), (0, &untagged));
    assert_eq!(vlan_fields(&r.ctx), (0, 0, 0, 0x0800));
    // Nothing to pop.
    let r = run_packet(&pop, &untagged, None);
    assert_eq!((r.retval, r.data), (0, untagged));
}

#[test]
fn vlan_push_sets_the_skb_tag_and_moves_an_existing_one_into_the_packet() {
    let push = |proto: u16, tci: u16| {
        format!(
            "mov %r6, %r1\nmov %r2, {}\nmov %r3, {tci}\ncall 18\nexit",
            proto.to_be()
        )
    };
    let plain = tagged(&[], 0x0800);
    let p = load(&push(0x88a8, 5), ProgType::SchedCls, vec![]);
    let r = run_packet(&p, &plain, None);
    assert_eq!((r.retval, &r.data), (0, &plain));
    assert_eq!(vlan_fields(&r.ctx), (1, 5, 0x88a8, 0x0800));

    // A second push: the first tag enters the packet.
    let twice = "
        mov %r6, %r1
        mov %r2, 0x0081
        mov %r3, 100
        call 18
        mov %r1, %r6
        mov %r2, 0xa888
        mov %r3, 200
        call 18
        exit";
    let p = load(twice, ProgType::SchedCls, vec![]);
    let r = run_packet(&p, &plain, None);
    assert_eq!(r.retval, 0);
    assert_eq!(r.data, tagged(&[(0x8100, 100)], 0x0800));
    assert_eq!(vlan_fields(&r.ctx), (1, 200, 0x88a8, 0x8100));

    // Unknown protocols are taken as 802.1Q.
    let p = load(&push(0x1234, 1), ProgType::SchedCls, vec![]);
    assert_eq!(vlan_fields(&run_packet(&p, &plain, None).ctx).2, 0x8100);
}

#[test]
fn xdp_load_store_and_length_use_offsets_from_data() {
    let pkt = frame(40);
    // Copy 4 bytes from offset 6 to offset 0 through the stack; return
    // the length r0 << 32 | the two results.
    let copy = |from: u32, to: u32, len: u32| {
        format!(
            "
            mov %r6, %r1
            mov %r2, {from}
            mov %r3, %r10
            add %r3, -8
            mov %r4, {len}
            call 189
            mov %r7, %r0
            mov %r1, %r6
            mov %r2, {to}
            mov %r3, %r10
            add %r3, -8
            mov %r4, {len}
            call 190
            and %r0, 0xff
            and %r7, 0xff
            lsh %r7, 8
            or %r7, %r0
            mov %r1, %r6
            call 188
            lsh %r0, 32
            or %r0, %r7
            exit"
        )
    };
    let prog = load(&copy(6, 0, 4), ProgType::Xdp, vec![]);
    let r = run_packet(&prog, &pkt, None);
    assert_eq!(r.retval, 40 << 32);
    let mut expect = pkt.clone();
    expect.copy_within(6..10, 0);
    assert_eq!(r.data, expect);
    // Past the end: -EINVAL from both; offsets past 16 bits: -EFAULT.
    let prog = load(&copy(38, 37, 4), ProgType::Xdp, vec![]);
    let r = run_packet(&prog, &pkt, None);
    assert_eq!(r.retval, 40 << 32 | (EINVAL & 0xff) << 8 | (EINVAL & 0xff));
    assert_eq!(r.data, pkt);
    let prog = load(&copy(0x10000, 0x10000, 4), ProgType::Xdp, vec![]);
    let r = run_packet(&prog, &pkt, None);
    assert_eq!(r.retval, 40 << 32 | (EFAULT & 0xff) << 8 | (EFAULT & 0xff));
}

#[test]
fn set_hash_and_change_type_write_the_skb() {
    let pkt = udp_packet(IP_SRC, IP_DST, 1234, 53);
    let set = load(
        "mov %r2, 0x1234567\ncall 48\nexit",
        ProgType::SchedCls,
        vec![],
    );
    let r = run_packet(&set, &pkt, None);
    assert_eq!(
        (r.retval, &r.ctx[68..72]),
        (0, &0x1234567u32.to_ne_bytes()[..])
    );
    let mut ctx = vec![0u8; 192];
    ctx[68..72].copy_from_slice(&7u32.to_ne_bytes());
    let clear = load("call 41\nexit", ProgType::SchedCls, vec![]);
    assert_eq!(&run_packet(&clear, &pkt, Some(&ctx)).ctx[68..72], &[0; 4]);

    let change = |t: u32| {
        load(
            &format!("mov %r2, {t}\ncall 32\nexit"),
            ProgType::SchedCls,
            vec![],
        )
    };
    let r = run_packet(&change(2), &pkt, None);
    assert_eq!((r.retval, r.ctx[4]), (0, 2));
    assert_eq!(run_packet(&change(4), &pkt, None).retval, EINVAL);
    ctx[4] = 7; // PACKET_LOOPBACK may not be changed
    assert_eq!(run_packet(&change(1), &pkt, Some(&ctx)).retval, EINVAL);
}

#[test]
fn skb_adjust_room_inserts_and_removes_bytes_after_a_header() {
    let pkt = udp_packet(IP_SRC, IP_DST, 1234, 53);
    let adjust = |diff: i32, mode: u32, flags: u64| {
        load(
            &format!("mov %r2, {diff}\nmov %r3, {mode}\nlddw %r4, {flags:#x}\ncall 50\nexit"),
            ProgType::SchedCls,
            vec![],
        )
    };
    // 8 zero bytes after the IPv4 header (room for an encapsulation).
    let r = run_packet(&adjust(8, 0, 0), &pkt, None);
    assert_eq!(r.retval, 0);
    let mut expect = pkt[..34].to_vec();
    expect.extend([0; 8]);
    expect.extend(&pkt[34..]);
    assert_eq!(r.data, expect);
    assert_eq!(
        u32::from_ne_bytes(r.ctx[..4].try_into().unwrap()) as usize,
        expect.len()
    );
    // ... and out again, after the MAC header this time (leaving at least
    // an IPv4 header's worth).
    let r = run_packet(&adjust(-8, 1, 0), &pkt, None);
    let mut expect = pkt[..14].to_vec();
    expect.extend(&pkt[22..]);
    assert_eq!((r.retval, r.data), (0, expect));
    assert_eq!(
        run_packet(&adjust(-15, 1, 0), &pkt, None).retval,
        -524i64 as u64
    );
    // Decapsulation names the inner protocol.
    let mut big = pkt.clone();
    big.resize(pkt.len() + 40, 0x33);
    let r = run_packet(&adjust(-8, 0, 1 << 8), &big, None);
    assert_eq!(r.retval, 0);
    assert_eq!(r.data, [&big[..34], &big[42..]].concat());
    assert_eq!(vlan_fields(&r.ctx).3, 0x86dd);
    // ... whose header must still fit.
    assert_eq!(
        run_packet(&adjust(-8, 0, 1 << 8), &pkt, None).retval,
        -524i64 as u64
    );

    let enotsupp = -524i64 as u64;
    let cases = [
        (adjust(8, 2, 0), enotsupp),      // unknown mode
        (adjust(0x1000, 0, 0), EFAULT),   // too much at once
        (adjust(8, 0, 1 << 9), EINVAL),   // unknown flag
        (adjust(8, 0, 1 << 7), EINVAL),   // decap while growing
        (adjust(-15, 0, 0), enotsupp),    // leaves less than an IPv4 header
        (adjust(8, 0, 1 << 1), enotsupp), // encapsulation offload
    ];
    for (prog, want) in cases {
        let r = run_packet(&prog, &pkt, None);
        assert_eq!((r.retval, &r.data), (want, &pkt));
    }
    // Not IP: not supported.
    let arp = tagged(&[], 0x0806);
    assert_eq!(run_packet(&adjust(8, 1, 0), &arp, None).retval, enotsupp);
}

#[test]
fn redirect_neigh_and_peer_are_tc_redirects() {
    let pkt = frame(40);
    let neigh = |plen: u32, flags: u32| {
        format!("mov %r1, 3\nmov %r2, %r10\nadd %r2, -24\nmov %r3, {plen}\nmov %r4, {flags}\ncall 152\nexit")
    };
    let run_tc = |src: &str| {
        let r = run_packet(&load(src, ProgType::SchedCls, vec![]), &pkt, None);
        (r.retval, r.redirect)
    };
    assert_eq!(run_tc(&neigh(0, 0)), (7, Some(3)));
    assert_eq!(run_tc(&neigh(20, 0)), (7, Some(3)));
    assert_eq!(run_tc(&neigh(8, 0)), (2, None));
    assert_eq!(run_tc(&neigh(0, 1)), (2, None));
    assert_eq!(
        run_tc("mov %r1, 4\nmov %r2, 0\ncall 155\nexit"),
        (7, Some(4))
    );
    assert_eq!(run_tc("mov %r1, 4\nmov %r2, 1\ncall 155\nexit"), (2, None));
    let xdp = load(
        "mov %r1, 4\nmov %r2, 0\ncall 155\nexit",
        ProgType::Xdp,
        vec![],
    );
    let err = run(
        &xdp,
        Input::Packet {
            packet: &pkt,
            ctx: None,
        },
    )
    .unwrap_err();
    assert!(err.reason.contains("tc helper"), "{}", err.reason);
}

// --- dynptrs ----------------------------------------------------------------------

#[test]
fn local_dynptrs_read_write_and_hand_out_data_within_bounds() {
    // A dynptr at r10-16 over the 16-byte input buffer; write 4 bytes of
    // the stack at offset 8, read 8 bytes from offset 4 back to the stack,
    // take a direct pointer to offset 12. Returns the results packed.
    let src = |write_off: u32, read_off: u32, data_off: u32| {
        format!(
            "
            mov %r6, %r1
            mov %r2, 16
            mov %r3, 0
            mov %r4, %r10
            add %r4, -16
            call 197
            mov %r7, %r0
            stw [%r10-24], 0x44434241
            mov %r1, %r10
            add %r1, -16
            mov %r2, {write_off}
            mov %r3, %r10
            add %r3, -24
            mov %r4, 4
            mov %r5, 0
            call 202
            lsh %r7, 8
            and %r0, 0xff
            or %r7, %r0
            mov %r1, %r10
            add %r1, -32
            mov %r2, 8
            mov %r3, %r10
            add %r3, -16
            mov %r4, {read_off}
            mov %r5, 0
            call 201
            lsh %r7, 8
            and %r0, 0xff
            or %r7, %r0
            mov %r1, %r10
            add %r1, -16
            mov %r2, {data_off}
            mov %r3, 4
            call 203
            jeq %r0, 0, +2
            sub %r0, %r6
            add %r0, 1
            lsh %r7, 8
            or %r7, %r0
            ldxdw %r1, [%r10-32]
            stxdw [%r6], %r1
            mov %r0, %r7
            exit"
        )
    };
    let mut buf: Vec<u8> = (0..16).collect();
    let r0 = run_raw(&src(8, 4, 12), &mut buf).unwrap();
    // from_mem 0, write 0, read 0, data = buf + 12 (13 after the +1).
    assert_eq!(r0, 13);
    // buf[8..12] = "ABCD"; the read of buf[4..12] went to buf[0..8].
    assert_eq!(&buf[..8], &[4, 5, 6, 7, b'A', b'B', b'C', b'D']);
    assert_eq!(&buf[8..12], b"ABCD");
    // Past the end: -E2BIG for write and read, NULL from data.
    let mut buf: Vec<u8> = (0..16).collect();
    let e2big = 0xf9u64; // low byte of -7
    let r0 = run_raw(&src(13, 9, 13), &mut buf).unwrap();
    assert_eq!(r0, e2big << 16 | e2big << 8);

    // A dynptr whose data points outside the program's memory is a fault
    // when used, never an access.
    let forged = "
        lddw %r1, 0x1000
        stxdw [%r10-16], %r1
        stw [%r10-8], 0x10000010
        stw [%r10-4], 0
        mov %r1, %r10
        add %r1, -32
        mov %r2, 8
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0
        mov %r5, 0
        call 201
        exit";
    let msg = fault_of(run_raw(forged, &mut [0u8; 8]));
    assert!(msg.contains("bpf_dynptr_read: the dynptr at r3"), "{msg}");
    // Flags are refused, leaving a null dynptr.
    let flagged = "mov %r2, 8\nmov %r3, 1\nmov %r4, %r10\nadd %r4, -16\ncall 197\nldxdw %r1, [%r10-16]\nlsh %r0, 8\nor %r0, %r1\nexit";
    assert_eq!(run_raw(flagged, &mut [0u8; 8]).unwrap(), EINVAL << 8);
}

#[test]
fn ringbuf_dynptrs_reserve_submit_and_discard() {
    let rb = ring();
    let program = |flags: u32, commit: u32| {
        format!(
            "
            lddw %r1, map_idx 0
            mov %r2, 8
            mov %r3, {flags}
            mov %r4, %r10
            add %r4, -16
            call 198
            mov %r6, %r0
            stdw [%r10-24], 0x2a
            mov %r1, %r10
            add %r1, -16
            mov %r2, 0
            mov %r3, %r10
            add %r3, -24
            mov %r4, 8
            mov %r5, 0
            call 202
            mov %r1, %r10
            add %r1, -16
            mov %r2, 0
            call {commit}
            ldxdw %r0, [%r10-16]
            add %r0, %r6
            exit"
        )
    };
    let prog = load(&program(0, 199), ProgType::Raw, vec![rb.clone()]);
    // Submitting nulls the dynptr.
    assert_eq!(run(&prog, Input::Memory(&mut [])).unwrap().retval, 0);
    assert_eq!(records(&rb), vec![42u64.to_ne_bytes().to_vec()]);
    let prog = load(&program(0, 200), ProgType::Raw, vec![rb.clone()]);
    assert_eq!(run(&prog, Input::Memory(&mut [])).unwrap().retval, 0);
    assert!(records(&rb).is_empty());
    // Flags: -EINVAL and a null dynptr, which submit ignores.
    let prog = load(&program(1, 199), ProgType::Raw, vec![rb.clone()]);
    assert_eq!(run(&prog, Input::Memory(&mut [])).unwrap().retval, EINVAL);
    assert!(records(&rb).is_empty());
    // A local dynptr cannot be submitted.
    let local = "
        mov %r2, 8
        mov %r3, 0
        mov %r4, %r10
        add %r4, -16
        call 197
        mov %r1, %r10
        add %r1, -16
        mov %r2, 0
        call 199
        exit";
    let prog = load(local, ProgType::Raw, vec![rb.clone()]);
    let err = run(&prog, Input::Memory(&mut [0u8; 8])).unwrap_err();
    assert!(
        err.reason.contains("not a ring buffer dynptr"),
        "{}",
        err.reason
    );
}

// --- cgroups and pid namespaces ---------------------------------------------------

#[test]
fn cgroup_ids_are_the_cgroup2_directory_inodes() {
    use std::os::unix::fs::MetadataExt;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = mounts.lines().find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        (fields.get(dash + 1) == Some(&"cgroup2")).then(|| fields[4].to_string())
    });
    let own = std::fs::read_to_string("/proc/thread-self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string));
    let (expect_own, expect_root) = match (root, own) {
        (Some(root), Some(own)) => (
            std::fs::metadata(format!("{root}{own}")).unwrap().ino(),
            std::fs::metadata(&root).unwrap().ino(),
        ),
        _ => (0, 0),
    };
    assert_eq!(run_raw("call 80\nexit", &mut []).unwrap(), expect_own);
    assert_eq!(
        run_raw("mov %r1, 0\ncall 123\nexit", &mut []).unwrap(),
        expect_root
    );
    // Deeper than the thread's cgroup: no ancestor.
    assert_eq!(
        run_raw("mov %r1, 1000\ncall 123\nexit", &mut []).unwrap(),
        0
    );
}

#[test]
fn ns_pid_tgid_needs_the_threads_own_pid_namespace() {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/thread-self/ns/pid").unwrap();
    // The 8-byte struct bpf_pidns_info { u32 pid; u32 tgid; } as a u64.
    let call = |dev: u64, ino: u64, size: u32| {
        format!(
            "lddw %r1, {dev:#x}\nlddw %r2, {ino:#x}\nmov %r3, %r10\nadd %r3, -8\nstdw [%r10-8], -1\nmov %r4, {size}\ncall 120\nldxdw %r0, [%r10-8]\nexit"
        )
    };
    // SAFETY: plain syscalls.
    let (pid, tid) = unsafe {
        (
            libc::getpid() as u64,
            libc::syscall(libc::SYS_gettid) as u64,
        )
    };
    let got = run_raw(&call(ns.dev(), ns.ino(), 8), &mut []).unwrap();
    assert_eq!(got, pid << 32 | tid);
    // Another namespace, or a wrong size: zeroed.
    assert_eq!(
        run_raw(&call(ns.dev(), ns.ino() + 1, 8), &mut []).unwrap(),
        0
    );
    let r0 = "lddw %r1, 0\nlddw %r2, 0\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 8\ncall 120\nexit";
    assert_eq!(run_raw(r0, &mut []).unwrap(), EINVAL);
}

#[test]
fn pid_tgid_is_right_in_a_forked_child() {
    let prog = load("call 14\nexit", ProgType::Raw, vec![]);
    // The parent's answer is cached for its thread; the child must not
    // inherit it.
    run(&prog, Input::Memory(&mut [])).unwrap();
    // SAFETY: the child only runs the already loaded program (glibc's
    // malloc is fork-safe) and leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let got = run(&prog, Input::Memory(&mut [])).ok().map(|r| r.retval);
        // SAFETY: plain syscalls in the child.
        let want =
            unsafe { (libc::getpid() as u64) << 32 | libc::syscall(libc::SYS_gettid) as u64 };
        unsafe { libc::_exit(if got == Some(want) { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
}

// --- objects compiled by clang ------------------------------------------------------

/// `program` of the example object `name`, loaded with the object's maps.
fn load_example(
    name: &str,
    program: &str,
    set: &[(&str, &[u8])],
) -> (Arc<LoadedProgram>, ebpfvm_core::elf::Object, Vec<Arc<Map>>) {
    let path = format!("{}/../../examples/bpf/{name}.o", env!("CARGO_MANIFEST_DIR"));
    let mut obj = ebpfvm_core::elf::Object::parse(&std::fs::read(path).unwrap()).unwrap();
    for &(var, value) in set {
        let spec = obj
            .maps
            .iter_mut()
            .find(|m| m.vars().iter().any(|v| v.name == var))
            .unwrap();
        spec.set_var(var, value).unwrap();
    }
    let (maps, _warnings) = runtime::object::create_maps(&obj, None).unwrap();
    let p = obj.program(program).unwrap();
    let t = p.prog_type.unwrap();
    let code = p.program.as_ref().unwrap();
    let prepared = runtime::prepare(code, t, &maps).unwrap();
    let env = Environment::new(maps.clone());
    let exe = Executable::new(
        Arc::new(prepared),
        LoadOptions {
            helpers: kernel_helpers(&env),
            input_may_move: true,
            ..Default::default()
        },
    )
    .unwrap();
    let loaded = Arc::new(LoadedProgram {
        id: runtime::next_program_id(),
        name: program.into(),
        prog_type: t,
        runner: Arc::new(exe),
        regions: runtime::map_regions(&maps),
        env,
    });
    (loaded, obj, maps)
}

#[test]
fn clang_built_ring_buffer_producers_record_what_the_kernel_would() {
    let (xdp, obj, maps) = load_example("ringbuf_events", "xdp_sampler", &[]);
    let events = &maps[obj.map_index("events").unwrap()];
    let stats = &maps[obj.map_index("stats").unwrap()];
    let pkt = udp_packet(IP_SRC, IP_DST, 1234, 53);
    let mut ctx = vec![0u8; 24];
    ctx[12..16].copy_from_slice(&3u32.to_ne_bytes()); // ingress_ifindex
    ctx[16..20].copy_from_slice(&1u32.to_ne_bytes()); // rx_queue_index
    let before = clock(libc::CLOCK_MONOTONIC);
    let r = run_packet(&xdp, &pkt, Some(&ctx));
    let after = clock(libc::CLOCK_MONOTONIC);
    assert_eq!(r.retval, 2); // XDP_PASS
    let recs = records(events);
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    let u32_at = |o: usize| u32::from_ne_bytes(rec[o..o + 4].try_into().unwrap());
    assert_eq!(
        (u32_at(0), u32_at(4), u32_at(8), u32_at(12)),
        (2, pkt.len() as u32, 3, 1)
    );
    let ts = u64::from_ne_bytes(rec[16..24].try_into().unwrap());
    assert!(before <= ts && ts <= after);
    assert_eq!(&rec[24..38], &pkt[..14]);
    // A runt frame: the record is discarded and counted.
    let r = run_packet(&xdp, &pkt[..10], None);
    assert_eq!(r.retval, 1); // XDP_DROP
    assert!(records(events).is_empty());
    assert_eq!(
        stats.lookup(&1u32.to_ne_bytes()).unwrap(),
        1u64.to_ne_bytes()
    );

    let (tp, obj, maps) = load_example("ringbuf_events", "trace_openat", &[]);
    let events = &maps[obj.map_index("events").unwrap()];
    // struct sys_enter_ctx: common, id, args[6].
    let mut tp_ctx = vec![0u8; 64];
    tp_ctx[8..16].copy_from_slice(&257i64.to_ne_bytes());
    tp_ctx[16..24].copy_from_slice(&(-100i64).to_ne_bytes());
    tp_ctx[32..40].copy_from_slice(&0o2000000u64.to_ne_bytes());
    let out = std::thread::Builder::new()
        .name("openat-tracer".into())
        .spawn(move || {
            let r = cpu::with_cpu(1, || run(&tp, Input::Context(&tp_ctx)).unwrap());
            // SAFETY: plain syscalls.
            let ids = unsafe {
                (
                    libc::syscall(libc::SYS_gettid) as u32,
                    libc::getpid() as u32,
                )
            };
            (r.retval, ids, cpu::with_cpu(1, cpu::current_cpu))
        })
        .unwrap()
        .join()
        .unwrap();
    let (retval, (tid, pid), this_cpu) = out;
    assert_eq!(retval, 0);
    let recs = records(events);
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    let u32_at = |o: usize| u32::from_ne_bytes(rec[o..o + 4].try_into().unwrap());
    let i64_at = |o: usize| i64::from_ne_bytes(rec[o..o + 8].try_into().unwrap());
    assert_eq!(
        (u32_at(0), u32_at(4), u32_at(8), u32_at(12)),
        (1, tid, pid, this_cpu)
    );
    assert_eq!((i64_at(24), i64_at(32), i64_at(40)), (257, -100, 0o2000000));
    assert_eq!(&rec[48..64], b"openat-tracer\0\0\0");
}

#[test]
fn clang_built_bpf_printk_reaches_the_trace_pipe() {
    let _g = trace_lock();
    trace::take_lines(None);
    let (prog, _, _) = load_example(
        "globals_calls",
        "count_globals",
        &[("scale", &2u32.to_ne_bytes()), ("verbose", &[1])],
    );
    for len in [60, 61] {
        assert_eq!(run_packet(&prog, &frame(len), None).retval, 2);
    }
    let lines = my_trace_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].ends_with("bpf_trace_printk: ebpfvm: len=60 weighted=120"),
        "{lines:?}"
    );
    assert!(
        lines[1].ends_with("bpf_trace_printk: ebpfvm: len=61 weighted=122"),
        "{lines:?}"
    );
}

#[test]
fn skb_change_proto_makes_room_for_the_other_ip_header() {
    let v4 = udp_packet(IP_SRC, IP_DST, 1234, 53);
    let change = |proto: u16, flags: u32| {
        load(
            &format!(
                "mov %r2, {}\nmov %r3, {flags}\ncall 31\nexit",
                proto.to_be()
            ),
            ProgType::SchedCls,
            vec![],
        )
    };
    let r = run_packet(&change(0x86dd, 0), &v4, None);
    assert_eq!(r.retval, 0);
    assert_eq!(r.data, [&v4[..14], &[0; 20][..], &v4[14..]].concat());
    assert_eq!(vlan_fields(&r.ctx).3, 0x86dd);
    assert_eq!(
        u32::from_ne_bytes(r.ctx[..4].try_into().unwrap()) as usize,
        v4.len() + 20
    );

    // And back: a 6-to-4 translation drops 20 bytes after the MAC header.
    let mut v6 = v4.clone();
    v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let r = run_packet(&change(0x0800, 0), &v6, None);
    assert_eq!(r.retval, 0);
    assert_eq!(r.data, [&v6[..14], &v6[34..]].concat());
    assert_eq!(vlan_fields(&r.ctx).3, 0x0800);

    let enotsupp = -524i64 as u64;
    assert_eq!(run_packet(&change(0x0800, 0), &v4, None).retval, enotsupp);
    assert_eq!(run_packet(&change(0x86dd, 1), &v4, None).retval, EINVAL);
}

// --- builtins: memset, memcpy, memmove, memcmp ------------------------------------------

/// `program` of tests/elf_data/builtins.o, verified, then loaded with the
/// object's maps.
fn load_builtins(program: &str) -> (Arc<LoadedProgram>, Arc<Map>) {
    let path = format!("{}/tests/elf_data/builtins.o", env!("CARGO_MANIFEST_DIR"));
    let obj = ebpfvm_core::elf::Object::parse(&std::fs::read(path).unwrap()).unwrap();
    let (maps, _warnings) = runtime::object::create_maps(&obj, None).unwrap();
    let p = obj.program(program).unwrap();
    let code = p.program.as_ref().unwrap();
    let defs: Vec<MapDef> = obj.maps.iter().map(|m| m.def.clone()).collect();
    let opts = ebpfvm_core::verifier::VerifyOptions {
        prog_type: ProgType::Xdp,
        maps: &defs,
        ..Default::default()
    };
    if let Err(e) = ebpfvm_core::verifier::verify(code, &opts) {
        panic!("{program} rejected at {:?}: {}", e.pc, e.message);
    }
    let prepared = runtime::prepare(code, ProgType::Xdp, &maps).unwrap();
    let env = Environment::new(maps.clone());
    let exe = Executable::new(
        Arc::new(prepared),
        LoadOptions {
            helpers: kernel_helpers(&env),
            ..Default::default()
        },
    )
    .unwrap();
    let blobs = maps[obj.map_index("blobs").unwrap()].clone();
    let loaded = Arc::new(LoadedProgram {
        id: runtime::next_program_id(),
        name: program.into(),
        prog_type: ProgType::Xdp,
        runner: Arc::new(exe),
        regions: runtime::map_regions(&maps),
        env,
    });
    (loaded, blobs)
}

const BLOB: usize = 2048;

fn set_blob(blobs: &Map, slot: u32, value: &[u8]) {
    blobs.update(&slot.to_le_bytes(), value, 0).unwrap();
}

fn blob(blobs: &Map, slot: u32) -> Vec<u8> {
    blobs.lookup(&slot.to_le_bytes()).unwrap()
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..BLOB)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn run_xdp(prog: &Arc<LoadedProgram>) -> u64 {
    run_packet(prog, &udp_packet(IP_SRC, IP_DST, 1, 2), None).retval
}

#[test]
fn clang_memcpy_and_memset_calls_copy_and_fill_map_values() {
    let (copy, blobs) = load_builtins("copy_blob");
    set_blob(&blobs, 0, &pattern(3));
    set_blob(&blobs, 1, &[0; BLOB]);
    assert_eq!(run_xdp(&copy), 2); // XDP_PASS
    assert_eq!(blob(&blobs, 1), pattern(3));

    let (fill, blobs) = load_builtins("fill_blob");
    set_blob(&blobs, 0, &pattern(9));
    assert_eq!(run_xdp(&fill), 2);
    assert_eq!(blob(&blobs, 0), vec![0xa5; BLOB]);
}

#[test]
fn clang_memmove_call_handles_overlap() {
    let (shift, blobs) = load_builtins("shift_blob");
    let before = pattern(5);
    set_blob(&blobs, 0, &before);
    assert_eq!(run_xdp(&shift), 2);
    let after = blob(&blobs, 0);
    // Every word moved up one place; the first stays.
    assert_eq!(after[..8], before[..8]);
    assert_eq!(after[8..], before[..BLOB - 8]);
}

#[test]
fn clang_memcmp_call_orders_bytes_as_unsigned() {
    let (cmp, blobs) = load_builtins("compare_blobs");
    let mut a = pattern(1);
    let mut b = a.clone();
    set_blob(&blobs, 0, &a);
    set_blob(&blobs, 1, &b);
    assert_eq!(run_xdp(&cmp), 2, "equal");
    // The first difference decides, as unsigned bytes: 0x80 > 0x7f.
    a[1000] = 0x80;
    b[1000] = 0x7f;
    a[1500] = 0;
    b[1500] = 0xff;
    set_blob(&blobs, 0, &a);
    set_blob(&blobs, 1, &b);
    assert_eq!(run_xdp(&cmp), 3, "above");
    set_blob(&blobs, 0, &b);
    set_blob(&blobs, 1, &a);
    assert_eq!(run_xdp(&cmp), 1, "below");
    // Only the last byte differs.
    let mut c = b.clone();
    c[BLOB - 1] = c[BLOB - 1].wrapping_add(1);
    set_blob(&blobs, 1, &c);
    assert_eq!(run_xdp(&cmp), 1, "last byte");
}

#[test]
fn clang_memset_call_of_variable_length_on_the_stack() {
    let (clear, blobs) = load_builtins("clear_stack");
    for (n, sum) in [(0u64, 0u64), (1, 7), (40, 280), (63, 441), (64 + 5, 35)] {
        let mut v = vec![0u8; BLOB];
        v[..8].copy_from_slice(&n.to_le_bytes());
        set_blob(&blobs, 0, &v);
        assert_eq!(run_xdp(&clear), sum, "n = {n}");
    }
}

#[test]
fn builtins_fault_on_memory_the_program_cannot_reach() {
    let mut buf = [0u8; 16];
    // One byte past the buffer.
    let over = fault_of(run_raw(
        "mov %r2, 0\nmov %r3, 17\ncall 1024\nexit",
        &mut buf,
    ));
    assert!(over.contains("write 17 bytes"), "{over}");
    // A forged pointer.
    let forged = fault_of(run_raw(
        "mov %r2, %r1\nlddw %r1, 0x10000\nmov %r3, 4\ncall 1025\nexit",
        &mut buf,
    ));
    assert!(forged.contains("write 4 bytes at 0x10000"), "{forged}");
    let read = fault_of(run_raw(
        "lddw %r2, 0x10000\nmov %r3, 4\ncall 1026\nexit",
        &mut buf,
    ));
    assert!(read.contains("read 4 bytes at 0x10000"), "{read}");
    // A length no memory has.
    let huge = fault_of(run_raw(
        "mov %r2, %r1\nmov %r3, -1\ncall 1027\nexit",
        &mut buf,
    ));
    assert!(huge.contains("read 18446744073709551615 bytes"), "{huge}");
    assert_eq!(buf, [0; 16], "nothing was written");
}
