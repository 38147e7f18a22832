//! Memory and string helpers: `probe_read*` over the program's own
//! accessible memory (there is no other memory to probe in user space),
//! `strncmp`, `strtol` and `strtoul` with the kernel's rules.

use crate::helpers::{HelperError, HelperMemory};
use crate::runtime::Environment;

use super::{errno, fault, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (4, probe_read),
    (45, probe_read_str),
    (105, strtol),
    (106, strtoul),
    (112, probe_read_user),
    (113, probe_read_kernel),
    (114, probe_read_user_str),
    (115, probe_read_kernel_str),
    (148, copy_from_user),
    (182, strncmp),
];

const EFAULT: i32 = 14;
const EINVAL: i32 = 22;
const ERANGE: i32 = 34;

/// The kernel's `strncpy_from_kernel_nofault(dst, src, count)` over the
/// program's memory: the string at `src` cut to `count - 1` bytes, with
/// its NUL (so 1..=`count` bytes), or `None` if a byte it needs is not
/// readable. `count` must be at least 1.
pub(super) fn copy_str(mem: &HelperMemory<'_>, src: u64, count: u64) -> Option<Vec<u8>> {
    let avail = mem.map.accessible_len(src, false).min(count);
    let bytes = mem.slice(src, avail).ok()?;
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => Some(bytes[..=n].to_vec()),
        None if avail == count => {
            let mut s = bytes[..count as usize - 1].to_vec();
            s.push(0);
            Some(s)
        }
        None => None,
    }
}

/// The writable destination `dst` of `size` bytes (r1, r2 of every probe
/// helper).
fn destination<'m>(
    mem: &'m mut HelperMemory<'_>,
    dst: u64,
    size: u64,
    helper: &str,
) -> Result<&'m mut [u8], HelperError> {
    mem.slice_mut(dst, size).map_err(|_| {
        fault(format!(
            "{helper}: r1 (0x{dst:x}) is not {size} writable bytes of the program (r2 = {size})"
        ))
    })
}

/// `bpf_probe_read*(dst, size, src)`: copies `size` bytes, or zeroes the
/// destination and returns `-EFAULT` if the source is not readable.
fn probe(mem: &mut HelperMemory<'_>, a: [u64; 5], helper: &str) -> Result<u64, HelperError> {
    let (dst, size, src) = (a[0], a[1] as u32 as u64, a[2]);
    if size == 0 {
        return Ok(0);
    }
    let out = destination(mem, dst, size, helper)?.as_mut_ptr();
    let Some(from) = mem.map.translate(src, size, false) else {
        destination(mem, dst, size, helper)?.fill(0);
        return Ok(errno(EFAULT));
    };
    // SAFETY: both ranges were checked to be `size` bytes of the program's
    // memory (the destination writable); `copy` allows them to overlap.
    unsafe { std::ptr::copy(from, out, size as usize) };
    Ok(0)
}

/// `bpf_probe_read*_str(dst, size, src)`: copies the string at `src` with
/// its NUL, cut to `size - 1` bytes; returns the bytes written (NUL
/// included), or zeroes the destination and returns `-EFAULT`.
fn probe_str(mem: &mut HelperMemory<'_>, a: [u64; 5], helper: &str) -> Result<u64, HelperError> {
    let (dst, size, src) = (a[0], a[1] as u32 as u64, a[2]);
    if size == 0 {
        return Ok(0);
    }
    destination(mem, dst, size, helper)?;
    let copied = copy_str(mem, src, size);
    let out = destination(mem, dst, size, helper)?;
    Ok(match copied {
        Some(s) => {
            out[..s.len()].copy_from_slice(&s);
            s.len() as u64
        }
        None => {
            out.fill(0);
            errno(EFAULT)
        }
    })
}

fn probe_read(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    probe(mem, a, "bpf_probe_read")
}

fn probe_read_user(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    probe(mem, a, "bpf_probe_read_user")
}

fn probe_read_kernel(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    probe(mem, a, "bpf_probe_read_kernel")
}

/// `bpf_copy_from_user(dst, size, user_ptr)`: `probe_read_user` for
/// sleepable programs, with the same result.
fn copy_from_user(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    probe(mem, a, "bpf_copy_from_user")
}

fn probe_read_str(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    probe_str(mem, a, "bpf_probe_read_str")
}

fn probe_read_user_str(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    probe_str(mem, a, "bpf_probe_read_user_str")
}

fn probe_read_kernel_str(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    probe_str(mem, a, "bpf_probe_read_kernel_str")
}

/// `bpf_strncmp(s1, s1_sz, s2)`: the kernel's `strncmp(s1, s2, s1_sz)`,
/// which returns -1, 0 or 1. `s2` must be a NUL-terminated string.
fn strncmp(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let (s1, n, s2) = (a[0], a[1] as u32 as u64, a[2]);
    let left = mem.slice(s1, n).map_err(|_| {
        fault(format!(
            "bpf_strncmp: r1 (0x{s1:x}) is not {n} readable bytes of the program (r2 = {n})"
        ))
    })?;
    let right = mem.cstr(s2, u64::MAX).map_err(|_| {
        fault(format!(
            "bpf_strncmp: r3 (0x{s2:x}) is not a NUL-terminated string in the program's memory"
        ))
    })?;
    for (i, &c1) in left.iter().enumerate() {
        let c2 = right.get(i).copied().unwrap_or(0);
        if c1 != c2 {
            return Ok(if c1 < c2 { -1i64 as u64 } else { 1 });
        }
        if c1 == 0 {
            break;
        }
    }
    Ok(0)
}

/// `isspace` of the kernel's ctype table (Latin-1: NBSP counts too).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

/// The kernel's `__bpf_strtoull`: skips leading spaces, takes an optional
/// '-', then parses at most 63 characters in `base` (0 = by prefix: `0x`
/// hex, `0` octal, else decimal). Returns (magnitude, negative, characters
/// consumed) or an errno.
fn strtoull(buf: &[u8], flags: u64) -> Result<(u64, bool, u64), i32> {
    let mut base = (flags & 0x1f) as u32;
    if buf.is_empty() || flags & !0x1f != 0 || !matches!(base, 0 | 8 | 10 | 16) {
        return Err(EINVAL);
    }
    let mut pos = buf.iter().take_while(|&&c| is_space(c)).count();
    let negative = buf.get(pos) == Some(&b'-');
    if negative {
        pos += 1;
    }
    if pos == buf.len() {
        return Err(EINVAL);
    }
    // The kernel parses a NUL-terminated copy of at most 63 characters.
    let mut s: Vec<u8> = buf[pos..].iter().copied().take(63).collect();
    s.push(0);
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut i = 0;
    if base == 0 {
        base = if at(0) == b'0' {
            if at(1).eq_ignore_ascii_case(&b'x') && at(2).is_ascii_hexdigit() {
                16
            } else {
                8
            }
        } else {
            10
        };
    }
    if base == 16 && at(0) == b'0' && at(1).eq_ignore_ascii_case(&b'x') {
        i = 2;
    }
    let digits_start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(d) = (at(i) as char).to_digit(16).filter(|&d| d < base) {
        match value
            .checked_mul(base as u64)
            .and_then(|v| v.checked_add(d as u64))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if overflow {
        return Err(ERANGE);
    }
    if i == digits_start {
        return Err(EINVAL);
    }
    Ok((value, negative, (pos + i) as u64))
}

/// The buffer (r1, r2) and the 8-byte result slot (r4) of strtol/strtoul.
fn parse_args(
    mem: &HelperMemory<'_>,
    a: [u64; 5],
    helper: &str,
) -> Result<Result<(u64, bool, u64), i32>, HelperError> {
    let (buf, len, res) = (a[0], a[1] as u32 as u64, a[3]);
    let bytes = mem.slice(buf, len).map_err(|_| {
        fault(format!(
            "{helper}: r1 (0x{buf:x}) is not {len} readable bytes of the program (r2 = {len})"
        ))
    })?;
    if mem.map.translate(res, 8, true).is_none() {
        return Err(fault(format!(
            "{helper}: r4 (0x{res:x}) is not 8 writable bytes of the program"
        )));
    }
    Ok(strtoull(bytes, a[2]))
}

fn store_result(mem: &mut HelperMemory<'_>, addr: u64, v: u64) -> Result<(), HelperError> {
    mem.slice_mut(addr, 8)?.copy_from_slice(&v.to_ne_bytes());
    Ok(())
}

/// `bpf_strtol(buf, buf_len, flags, res)`: characters consumed, with the
/// signed value in `*res`; `-ERANGE` if it does not fit a `long`.
fn strtol(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let (magnitude, negative, consumed) = match parse_args(mem, a, "bpf_strtol")? {
        Ok(r) => r,
        Err(e) => return Ok(errno(e)),
    };
    let value = if negative {
        let v = magnitude.wrapping_neg();
        if (v as i64) > 0 {
            return Ok(errno(ERANGE));
        }
        v
    } else {
        if (magnitude as i64) < 0 {
            return Ok(errno(ERANGE));
        }
        magnitude
    };
    store_result(mem, a[3], value)?;
    Ok(consumed)
}

/// `bpf_strtoul(buf, buf_len, flags, res)`: characters consumed, with the
/// value in `*res`; a '-' sign is `-EINVAL`.
fn strtoul(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let (value, negative, consumed) = match parse_args(mem, a, "bpf_strtoul")? {
        Ok(r) => r,
        Err(e) => return Ok(errno(e)),
    };
    if negative {
        return Ok(errno(EINVAL));
    }
    store_result(mem, a[3], value)?;
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use super::strtoull;

    #[test]
    fn strtoull_follows_the_kernel_prefix_and_error_rules() {
        assert_eq!(strtoull(b"  -123abc", 10), Ok((123, true, 6)));
        assert_eq!(strtoull(b"0x1f", 0), Ok((31, false, 4)));
        assert_eq!(strtoull(b"0x1f", 16), Ok((31, false, 4)));
        assert_eq!(strtoull(b"017", 0), Ok((15, false, 3)));
        // "0x" without a hex digit after it: octal "0", then stop.
        assert_eq!(strtoull(b"0xg", 0), Ok((0, false, 1)));
        assert_eq!(strtoull(b"abc", 10), Err(22));
        assert_eq!(strtoull(b"   ", 10), Err(22));
        assert_eq!(strtoull(b"12", 7), Err(22));
        assert_eq!(strtoull(b"12", 0x20 | 10), Err(22));
        assert_eq!(strtoull(b"99999999999999999999", 10), Err(34));
        assert_eq!(
            strtoull(b"18446744073709551615", 10),
            Ok((u64::MAX, false, 20))
        );
    }
}
