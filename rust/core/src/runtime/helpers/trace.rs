//! `bpf_trace_printk`, `bpf_trace_vprintk` and `bpf_snprintf`: the kernel's
//! restricted printf (`bpf_bprintf_prepare` + `bstr_printf`), writing to
//! the trace pipe ([`crate::runtime::trace`]) or into the program's memory.
//!
//! Accepted conversions: `%d %i %u %x %X` with `l`/`ll` (64-bit), `%c`,
//! `%s`, `%p`, `%pK`, `%px`, `%ps`, `%pS`, `%pB`, `%pks`, `%pus`, `%pI4`,
//! `%pi4`, `%pI6`, `%pi6`, `%%`, each with the flags `0 + - space` and a
//! width (no precision). The format must be printable ASCII or whitespace
//! and NUL-terminated within its size; anything else is `-EINVAL`.

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::cpu;
use crate::runtime::{trace as pipe, Environment};

use super::strings::copy_str;
use super::task::{current_comm, current_tid};
use super::time::clock_ns;
use super::{errno, fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] =
    &[(6, trace_printk), (165, snprintf), (177, trace_vprintk)];

const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;

/// Arguments `trace_printk` takes (`MAX_TRACE_PRINTK_VARARGS`).
pub const MAX_TRACE_PRINTK_VARARGS: usize = 3;
/// Arguments `snprintf` and `trace_vprintk` take (`MAX_BPRINTF_VARARGS`).
pub const MAX_BPRINTF_VARARGS: usize = 12;
/// Bytes of a formatted trace message, NUL included (`MAX_BPRINTF_BUF`).
pub const MAX_BPRINTF_BUF: usize = 1024;
/// Bytes the kernel copies arguments into before formatting
/// (`MAX_BPRINTF_BIN_ARGS`); strings longer than what is left are cut.
pub const MAX_BPRINTF_BIN_ARGS: usize = 512;

/// Flags and width of one conversion.
#[derive(Clone, Copy, Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    width: usize,
}

impl Spec {
    /// `body` padded with spaces to the width (strings, chars, pointers).
    fn pad(&self, out: &mut Vec<u8>, body: &[u8]) {
        let fill = self.width.saturating_sub(body.len());
        if !self.left {
            out.resize(out.len() + fill, b' ');
        }
        out.extend_from_slice(body);
        if self.left {
            out.resize(out.len() + fill, b' ');
        }
    }

    /// A number: sign, then zeros (with `0` and no `-`) or spaces.
    fn number(&self, out: &mut Vec<u8>, sign: Option<u8>, digits: &[u8]) {
        let len = digits.len() + sign.is_some() as usize;
        let fill = self.width.saturating_sub(len);
        if self.zero && !self.left {
            out.extend(sign);
            out.resize(out.len() + fill, b'0');
            out.extend_from_slice(digits);
            return;
        }
        if !self.left {
            out.resize(out.len() + fill, b' ');
        }
        out.extend(sign);
        out.extend_from_slice(digits);
        if self.left {
            out.resize(out.len() + fill, b' ');
        }
    }
}

fn is_punct(c: u8) -> bool {
    c.is_ascii_punctuation()
}

/// What a `%s`-like conversion may be followed by.
fn ends_word(c: u8) -> bool {
    c == 0 || c.is_ascii_whitespace() || c == 0x0b || is_punct(c)
}

/// Formats `fmt` (the bytes before its NUL) with `args` as the kernel does.
/// Returns the whole output (callers cut it to their buffer) or the errno
/// the kernel returns for the format.
pub(super) fn bprintf(mem: &HelperMemory<'_>, fmt: &[u8], args: &[u64]) -> Result<Vec<u8>, i32> {
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    let mut out = Vec::with_capacity(fmt.len() + 16);
    let mut next_arg = 0usize;
    // Bytes of the kernel's argument buffer used so far.
    let mut bin = 0usize;
    let mut i = 0usize;
    while i < fmt.len() {
        let c = fmt[i];
        if !(c.is_ascii_graphic() || c.is_ascii_whitespace() || c == 0x0b) {
            return Err(EINVAL);
        }
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        if at(i + 1) == b'%' {
            out.push(b'%');
            i += 2;
            continue;
        }
        let Some(&arg) = args.get(next_arg) else {
            return Err(EINVAL);
        };
        next_arg += 1;
        i += 1;
        let mut spec = Spec::default();
        loop {
            match at(i) {
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b'-' => spec.left = true,
                b' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        while at(i).is_ascii_digit() {
            spec.width = spec
                .width
                .saturating_mul(10)
                .saturating_add((at(i) - b'0') as usize);
            i += 1;
        }
        // Kernel widths are ints; no message is that long anyway.
        spec.width = spec.width.min(MAX_BPRINTF_BUF);
        match at(i) {
            b'p' => {
                let ext = at(i + 1);
                match ext {
                    b'k' | b'u' if at(i + 2) == b's' => {
                        i += 3;
                        string(mem, &mut out, &mut bin, spec, arg, at(i))?;
                    }
                    b'I' | b'i' if matches!(at(i + 2), b'4' | b'6') => {
                        let v6 = at(i + 2) == b'6';
                        // The kernel pre-formats addresses into its
                        // argument buffer.
                        let text = ip(mem, arg, ext == b'I', v6);
                        bin = bin.next_multiple_of(4);
                        if MAX_BPRINTF_BIN_ARGS - bin < if v6 { 16 } else { 4 } {
                            return Err(ENOSPC);
                        }
                        bin = (bin + text.len() + 1).min(MAX_BPRINTF_BIN_ARGS);
                        spec.pad(&mut out, text.as_bytes());
                        i += 3;
                    }
                    b'K' | b'x' | b's' | b'S' | b'B' => {
                        bin = bin.next_multiple_of(4) + 8;
                        if bin > MAX_BPRINTF_BIN_ARGS {
                            return Err(ENOSPC);
                        }
                        pointer(&mut out, spec, arg, ext);
                        i += 2;
                    }
                    e if ends_word(e) => {
                        bin = bin.next_multiple_of(4) + 8;
                        if bin > MAX_BPRINTF_BIN_ARGS {
                            return Err(ENOSPC);
                        }
                        pointer(&mut out, spec, arg, 0);
                        i += 1;
                    }
                    _ => return Err(EINVAL),
                }
            }
            b's' => {
                i += 1;
                string(mem, &mut out, &mut bin, spec, arg, at(i))?;
            }
            b'c' => {
                if bin == MAX_BPRINTF_BIN_ARGS {
                    return Err(ENOSPC);
                }
                bin += 1;
                spec.pad(&mut out, &[arg as u8]);
                i += 1;
            }
            _ => {
                let mut wide = false;
                if at(i) == b'l' {
                    wide = true;
                    i += 1;
                    if at(i) == b'l' {
                        i += 1;
                    }
                }
                let conv = at(i);
                if !matches!(conv, b'd' | b'i' | b'u' | b'x' | b'X') {
                    return Err(EINVAL);
                }
                bin = bin.next_multiple_of(4) + if wide { 8 } else { 4 };
                if bin > MAX_BPRINTF_BIN_ARGS {
                    return Err(ENOSPC);
                }
                integer(&mut out, spec, arg, wide, conv);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn integer(out: &mut Vec<u8>, spec: Spec, arg: u64, wide: bool, conv: u8) {
    let value = if wide { arg } else { arg as u32 as u64 };
    match conv {
        b'd' | b'i' => {
            let v = if wide {
                value as i64
            } else {
                value as u32 as i32 as i64
            };
            let sign = if v < 0 {
                Some(b'-')
            } else if spec.plus {
                Some(b'+')
            } else if spec.space {
                Some(b' ')
            } else {
                None
            };
            spec.number(out, sign, v.unsigned_abs().to_string().as_bytes());
        }
        b'u' => spec.number(out, None, value.to_string().as_bytes()),
        b'x' => spec.number(out, None, format!("{value:x}").as_bytes()),
        _ => spec.number(out, None, format!("{value:X}").as_bytes()),
    }
}

/// `%s`, `%pks`, `%pus`: the string at `addr`, cut to what is left of the
/// argument buffer; an unreadable string prints as empty, as in the kernel.
fn string(
    mem: &HelperMemory<'_>,
    out: &mut Vec<u8>,
    bin: &mut usize,
    spec: Spec,
    addr: u64,
    next: u8,
) -> Result<(), i32> {
    if !ends_word(next) {
        return Err(EINVAL);
    }
    let room = MAX_BPRINTF_BIN_ARGS - *bin;
    if room == 0 {
        return Err(ENOSPC);
    }
    let s = copy_str(mem, addr, room as u64).unwrap_or_else(|| vec![0]);
    *bin += s.len();
    spec.pad(out, &s[..s.len() - 1]);
    Ok(())
}

fn pointer(out: &mut Vec<u8>, spec: Spec, p: u64, ext: u8) {
    match ext {
        // No kernel symbols in user space: the address itself.
        b's' | b'S' | b'B' if p != 0 => spec.pad(out, format!("0x{p:x}").as_bytes()),
        b'K' | b'x' => spec.pad(out, format!("{p:016x}").as_bytes()),
        _ if p == 0 => spec.pad(out, b"(null)"),
        _ => spec.pad(out, format!("{p:016x}").as_bytes()),
    }
}

/// `%pI4` `1.2.3.4`, `%pi4` `001.002.003.004`, `%pI6` eight colon-separated
/// groups, `%pi6` 32 hex digits; unreadable addresses print as zeroes.
fn ip(mem: &HelperMemory<'_>, addr: u64, upper: bool, v6: bool) -> String {
    let n = if v6 { 16 } else { 4 };
    let mut b = [0u8; 16];
    if let Ok(bytes) = mem.slice(addr, n) {
        b[..n as usize].copy_from_slice(bytes);
    }
    match (v6, upper) {
        (false, true) => format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]),
        (false, false) => format!("{:03}.{:03}.{:03}.{:03}", b[0], b[1], b[2], b[3]),
        (true, _) => {
            let groups: Vec<String> = b
                .chunks(2)
                .map(|g| format!("{:02x}{:02x}", g[0], g[1]))
                .collect();
            groups.join(if upper { ":" } else { "" })
        }
    }
}

/// The format at `addr`: `size` readable bytes that hold a NUL; the bytes
/// before it. `Ok(None)` when there is no NUL (the kernel's `-EINVAL`).
fn format_arg<'m>(
    mem: &'m HelperMemory<'_>,
    addr: u64,
    size: u64,
    helper: &str,
    regs: &str,
) -> Result<Option<&'m [u8]>, HelperError> {
    let bytes = mem.slice(addr, size).map_err(|_| {
        fault(format!(
            "{helper}: the format at {regs} (0x{addr:x}, {size} bytes) is not readable memory of the program"
        ))
    })?;
    Ok(bytes.iter().position(|&b| b == 0).map(|n| &bytes[..n]))
}

/// The u64 arguments of the array forms: `len` bytes at `addr`, a multiple
/// of 8 and at most [`MAX_BPRINTF_VARARGS`] of them, or the errno.
fn data_args(
    mem: &HelperMemory<'_>,
    addr: u64,
    len: u64,
    helper: &str,
    reg: &str,
) -> Result<Result<Vec<u64>, i32>, HelperError> {
    if !len.is_multiple_of(8) || len > (MAX_BPRINTF_VARARGS * 8) as u64 || (len != 0 && addr == 0) {
        return Ok(Err(EINVAL));
    }
    let bytes = mem.slice(addr, len).map_err(|_| {
        fault(format!(
            "{helper}: the {len}-byte argument array at {reg} (0x{addr:x}) is not readable memory of the program"
        ))
    })?;
    Ok(Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8-byte chunks")))
        .collect()))
}

/// Writes one message to the trace pipe as the kernel's trace does:
/// `<comm>-<tid> [<cpu>] <flags> <secs>.<usecs>: bpf_trace_printk: <msg>`.
fn emit(msg: &[u8]) {
    let shown = &msg[..msg.len().min(MAX_BPRINTF_BUF - 1)];
    let shown = shown.strip_suffix(b"\n").unwrap_or(shown);
    let now = clock_ns(libc::CLOCK_MONOTONIC);
    pipe::write_line(format!(
        "{:>16}-{:<7} [{:03}] d..1. {:5}.{:06}: bpf_trace_printk: {}",
        String::from_utf8_lossy(&current_comm()),
        current_tid(),
        cpu::current_cpu(),
        now / 1_000_000_000,
        now % 1_000_000_000 / 1000,
        String::from_utf8_lossy(shown)
    ));
}

/// `bpf_trace_printk(fmt, fmt_size, a1, a2, a3)`: bytes of the message
/// (before truncation to the trace buffer), or `-EINVAL`.
fn trace_printk(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_trace_printk";
    let Some(fmt) = format_arg(mem, a[0], a[1] as u32 as u64, helper, "r1 (size r2)")? else {
        return Ok(errno(EINVAL));
    };
    match bprintf(mem, fmt, &a[2..2 + MAX_TRACE_PRINTK_VARARGS]) {
        Ok(msg) => {
            emit(&msg);
            Ok(msg.len() as u64)
        }
        Err(e) => Ok(errno(e)),
    }
}

/// `bpf_trace_vprintk(fmt, fmt_size, data, data_len)`: `trace_printk` with
/// up to 12 arguments in an array of u64.
fn trace_vprintk(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_trace_vprintk";
    let args = match data_args(mem, a[2], a[3] as u32 as u64, helper, "r3 (size r4)")? {
        Ok(v) => v,
        Err(e) => return Ok(errno(e)),
    };
    let Some(fmt) = format_arg(mem, a[0], a[1] as u32 as u64, helper, "r1 (size r2)")? else {
        return Ok(errno(EINVAL));
    };
    match bprintf(mem, fmt, &args) {
        Ok(msg) => {
            emit(&msg);
            Ok(msg.len() as u64)
        }
        Err(e) => Ok(errno(e)),
    }
}

/// `bpf_snprintf(str, str_size, fmt, data, data_len)`: writes at most
/// `str_size - 1` bytes and a NUL; returns the untruncated length plus one.
fn snprintf(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let helper = "bpf_snprintf";
    let (dst, size) = (a[0], a[1] as u32 as u64);
    if size > 0 && mem.map.translate(dst, size, true).is_none() {
        return Err(fault(format!(
            "{helper}: r1 (0x{dst:x}) is not {size} writable bytes of the program (r2 = {size})"
        )));
    }
    let args = match data_args(mem, a[3], a[4] as u32 as u64, helper, "r4 (size r5)")? {
        Ok(v) => v,
        Err(e) => return Ok(errno(e)),
    };
    let fmt = mem.cstr(a[2], u64::MAX).map_err(|_| {
        fault(format!(
            "{helper}: r3 (0x{:x}) is not a NUL-terminated format in the program's memory",
            a[2]
        ))
    })?;
    let msg = match bprintf(mem, fmt, &args) {
        Ok(m) => m,
        Err(e) => return Ok(errno(e)),
    };
    if size > 0 {
        let out = mem.slice_mut(dst, size)?;
        let n = msg.len().min(out.len() - 1);
        out[..n].copy_from_slice(&msg[..n]);
        out[n] = 0;
    }
    Ok(msg.len() as u64 + 1)
}
