//! ebpfvm's builtins: the C library functions clang calls when it does
//! not inline them (`memset`, `memcpy`, `memmove`, `memcmp`), at the ids
//! the ELF loader gives those calls
//! ([`crate::kernel::helper_protos::BUILTIN_IDS`]). C semantics, with every
//! byte reached through [`HelperMemory`], so a bad pointer or length from
//! an unverified program fails the run instead of touching other memory.

use crate::helpers::{HelperError, HelperMemory};
use crate::kernel::helper_protos::{
    BUILTIN_MEMCMP, BUILTIN_MEMCPY, BUILTIN_MEMMOVE, BUILTIN_MEMSET,
};
use crate::runtime::Environment;

use super::HelperFn;

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (BUILTIN_MEMSET, memset),
    (BUILTIN_MEMCPY, memmove),
    (BUILTIN_MEMMOVE, memmove),
    (BUILTIN_MEMCMP, memcmp),
];

/// `memset(dst, c, n)`: returns `dst`. Nothing is touched when `n` is 0,
/// whatever `dst` is, as in C.
fn memset(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let [dst, c, n, ..] = a;
    if n > 0 {
        mem.slice_mut(dst, n)?.fill(c as u8);
    }
    Ok(dst)
}

/// `memcpy(dst, src, n)` and `memmove(dst, src, n)`: returns `dst`. Both
/// copy as memmove does, so overlapping buffers (undefined for memcpy in C)
/// still give a well-defined result.
fn memmove(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let [dst, src, n, ..] = a;
    if n > 0 {
        mem.copy(dst, src, n)?;
    }
    Ok(dst)
}

/// `memcmp(a, b, n)`: the difference of the first differing bytes (as
/// unsigned chars), 0 when the `n` bytes are equal; a C `int`, sign-extended.
fn memcmp(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let [x, y, n, ..] = a;
    if n == 0 {
        return Ok(0);
    }
    let (left, right) = (mem.slice(x, n)?, mem.slice(y, n)?);
    let diff = left
        .iter()
        .zip(right)
        .find(|(l, r)| l != r)
        .map_or(0, |(&l, &r)| l as i64 - r as i64);
    Ok(diff as u64)
}
