//! What is known about a 64-bit value: its known bits plus signed and
//! unsigned bounds of the whole register and of its low 32 bits, kept
//! consistent with each other as the kernel's `reg_bounds_sync` does.
//!
//! Pointers use the same record for the variable part of their offset.

use super::tnum::Tnum;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Scalar {
    pub var_off: Tnum,
    pub smin: i64,
    pub smax: i64,
    pub umin: u64,
    pub umax: u64,
    pub s32_min: i32,
    pub s32_max: i32,
    pub u32_min: u32,
    pub u32_max: u32,
}

impl Default for Scalar {
    fn default() -> Self {
        Scalar::unknown()
    }
}

impl Scalar {
    pub const fn unknown() -> Scalar {
        Scalar {
            var_off: Tnum::UNKNOWN,
            smin: i64::MIN,
            smax: i64::MAX,
            umin: 0,
            umax: u64::MAX,
            s32_min: i32::MIN,
            s32_max: i32::MAX,
            u32_min: 0,
            u32_max: u32::MAX,
        }
    }

    pub const fn constant(v: u64) -> Scalar {
        Scalar {
            var_off: Tnum::constant(v),
            smin: v as i64,
            smax: v as i64,
            umin: v,
            umax: v,
            s32_min: v as i32,
            s32_max: v as i32,
            u32_min: v as u32,
            u32_max: v as u32,
        }
    }

    /// Any value of `[0, max]`.
    pub fn up_to(max: u64) -> Scalar {
        let mut s = Scalar::unknown();
        s.umax = max;
        s.sync();
        s
    }

    /// Any value of `[min, max]` (unsigned).
    pub fn urange(min: u64, max: u64) -> Scalar {
        let mut s = Scalar::unknown();
        s.umin = min;
        s.umax = max;
        s.sync();
        s
    }

    pub fn is_const(&self) -> bool {
        self.var_off.is_const()
    }

    pub fn const_value(&self) -> Option<u64> {
        self.is_const().then_some(self.var_off.value)
    }

    pub fn is_const32(&self) -> bool {
        self.var_off.subreg().is_const()
    }

    /// Whether the value is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.const_value() == Some(0)
    }

    /// Whether `v` is allowed by every part of the record.
    pub fn contains_value(&self, v: u64) -> bool {
        self.var_off.contains_value(v)
            && (self.smin..=self.smax).contains(&(v as i64))
            && (self.umin..=self.umax).contains(&v)
            && (self.s32_min..=self.s32_max).contains(&(v as i32))
            && (self.u32_min..=self.u32_max).contains(&(v as u32))
    }

    /// Whether every value of `other` is a value of `self`.
    pub fn contains(&self, other: &Scalar) -> bool {
        self.smin <= other.smin
            && self.smax >= other.smax
            && self.umin <= other.umin
            && self.umax >= other.umax
            && self.s32_min <= other.s32_min
            && self.s32_max >= other.s32_max
            && self.u32_min <= other.u32_min
            && self.u32_max >= other.u32_max
            && self.var_off.contains(other.var_off)
    }

    /// No value satisfies every part (a branch that cannot be taken).
    pub fn is_empty(&self) -> bool {
        self.smin > self.smax
            || self.umin > self.umax
            || self.s32_min > self.s32_max
            || self.u32_min > self.u32_max
            || !self.var_off.contains_value(self.var_off.value)
            || self.umax < self.var_off.value
            || self.umin > self.var_off.value | self.var_off.mask
            || (self.u32_max as u64) < self.var_off.subreg().value
            || self.u32_min > (self.var_off.subreg().value | self.var_off.subreg().mask) as u32
    }

    fn mark_unbounded64(&mut self) {
        self.smin = i64::MIN;
        self.smax = i64::MAX;
        self.umin = 0;
        self.umax = u64::MAX;
    }

    fn mark_unbounded32(&mut self) {
        self.s32_min = i32::MIN;
        self.s32_max = i32::MAX;
        self.u32_min = 0;
        self.u32_max = u32::MAX;
    }

    fn update_bounds_from_tnum(&mut self) {
        let t = self.var_off;
        self.smin = self.smin.max((t.value | (t.mask & (1 << 63))) as i64);
        self.smax = self
            .smax
            .min((t.value | (t.mask & (i64::MAX as u64))) as i64);
        self.umin = self.umin.max(t.value);
        self.umax = self.umax.min(t.value | t.mask);
        let t = t.subreg();
        self.s32_min = self
            .s32_min
            .max((t.value | (t.mask & 0x8000_0000)) as u32 as i32);
        self.s32_max = self
            .s32_max
            .min((t.value | (t.mask & 0x7fff_ffff)) as u32 as i32);
        self.u32_min = self.u32_min.max(t.value as u32);
        self.u32_max = self.u32_max.min((t.value | t.mask) as u32);
    }

    fn deduce32(&mut self) {
        // 64-bit bounds whose upper halves agree bound the lower half.
        if (self.umin >> 32) == (self.umax >> 32) {
            self.u32_min = self.u32_min.max(self.umin as u32);
            self.u32_max = self.u32_max.min(self.umax as u32);
            if (self.umin as i32) <= (self.umax as i32) {
                self.s32_min = self.s32_min.max(self.umin as i32);
                self.s32_max = self.s32_max.min(self.umax as i32);
            }
        }
        if (self.smin >> 32) == (self.smax >> 32) {
            if (self.smin as u32) <= (self.smax as u32) {
                self.u32_min = self.u32_min.max(self.smin as u32);
                self.u32_max = self.u32_max.min(self.smax as u32);
            }
            if (self.smin as i32) <= (self.smax as i32) {
                self.s32_min = self.s32_min.max(self.smin as i32);
                self.s32_max = self.s32_max.min(self.smax as i32);
            }
        }
        // The same sign half: signed and unsigned orders agree.
        if (self.u32_min as i32) <= (self.u32_max as i32) {
            self.s32_min = self.s32_min.max(self.u32_min as i32);
            self.s32_max = self.s32_max.min(self.u32_max as i32);
        }
        if (self.s32_min as u32) <= (self.s32_max as u32) {
            self.u32_min = self.u32_min.max(self.s32_min as u32);
            self.u32_max = self.u32_max.min(self.s32_max as u32);
        }
    }

    fn deduce64(&mut self) {
        if (self.umin as i64) <= (self.umax as i64) {
            self.smin = self.smin.max(self.umin as i64);
            self.smax = self.smax.min(self.umax as i64);
        }
        if (self.smin as u64) <= (self.smax as u64) {
            self.umin = self.umin.max(self.smin as u64);
            self.umax = self.umax.min(self.smax as u64);
        } else {
            // The signed range crosses zero: [smin, -1] ∪ [0, smax] in
            // unsigned terms; one side may be excluded by umin/umax.
            if self.umax < self.smin as u64 {
                // Only the non-negative part remains.
                self.smin = self.smin.max(0).max(self.umin as i64);
                self.umax = self.umax.min(self.smax as u64);
            } else if self.umin > self.smax as u64 {
                self.smax = self.smax.min(-1).min(self.umax as i64);
                self.umin = self.umin.max(self.smin as u64);
            }
        }
    }

    fn deduce_mixed(&mut self) {
        if (self.umin >> 32) == (self.umax >> 32) {
            let hi = self.umin & !0xffff_ffff;
            self.umin = self.umin.max(hi | self.u32_min as u64);
            self.umax = self.umax.min(hi | self.u32_max as u64);
        }
        if (self.smin >> 32) == (self.smax >> 32) {
            let hi = self.smin & !0xffff_ffff;
            self.smin = self.smin.max(hi | self.u32_min as i64);
            self.smax = self.smax.min(hi | self.u32_max as i64);
        }
    }

    fn bound_tnum(&mut self) {
        let t64 = self.var_off.intersect(Tnum::range(self.umin, self.umax));
        let t32 = t64
            .subreg()
            .intersect(Tnum::range(self.u32_min as u64, self.u32_max as u64));
        self.var_off = t64.with_subreg(t32);
    }

    /// Makes tnum, 64-bit and 32-bit bounds agree (the kernel's
    /// `reg_bounds_sync`).
    pub fn sync(&mut self) {
        if self.is_empty() {
            return;
        }
        self.update_bounds_from_tnum();
        for _ in 0..2 {
            self.deduce32();
            self.deduce64();
            self.deduce_mixed();
            self.deduce64();
        }
        self.bound_tnum();
        self.update_bounds_from_tnum();
    }

    /// The low 32 bits zero-extended (result of every ALU32 operation).
    pub fn zext32(&mut self) {
        self.var_off = self.var_off.subreg();
        self.umin = self.u32_min as u64;
        self.umax = self.u32_max as u64;
        if self.s32_min >= 0 {
            self.smin = self.s32_min as i64;
            self.smax = self.s32_max as i64;
        } else {
            self.smin = 0;
            self.smax = u32::MAX as i64;
        }
        self.sync();
    }

    /// Truncated to `size` bytes and zero-extended (narrow loads, casts).
    pub fn truncate(&mut self, size: u32) {
        if size >= 8 {
            return;
        }
        let max = (1u64 << (size * 8)) - 1;
        if self.umax <= max {
            // The upper bytes are already zero.
            return;
        }
        let mut s = Scalar::unknown();
        s.var_off = self.var_off.cast(size);
        s.umax = max;
        s.smin = 0;
        s.smax = max as i64;
        if size == 4 {
            s.u32_min = self.u32_min;
            s.u32_max = self.u32_max;
            s.s32_min = self.s32_min;
            s.s32_max = self.s32_max;
        }
        s.sync();
        *self = s;
    }

    /// Sign-extended from `size` bytes (movsx, ldsx).
    pub fn sign_extend(&mut self, size: u32) {
        if size >= 8 {
            return;
        }
        let bits = size * 8;
        let lo = -(1i64 << (bits - 1));
        let hi = (1i64 << (bits - 1)) - 1;
        let t = self.var_off.sext(size);
        if self.smin >= lo && self.smax <= hi {
            // Values already fit: unchanged.
            return;
        }
        if self.umax <= hi as u64 {
            // Non-negative and fitting: unchanged too.
            return;
        }
        let mut s = Scalar::unknown();
        s.var_off = t;
        s.smin = lo;
        s.smax = hi;
        s.sync();
        *self = s;
    }
}

/// Which half of the register an ALU operation works on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Width {
    W32,
    W64,
}

/// Bounds for one width during an operation: unsigned and signed, widened
/// to 64 bits (for W32, values stay within the 32-bit ranges).
#[derive(Clone, Copy, Debug)]
struct Bounds {
    umin: u64,
    umax: u64,
    smin: i64,
    smax: i64,
}

impl Bounds {
    fn of(s: &Scalar, w: Width) -> Bounds {
        match w {
            Width::W64 => Bounds {
                umin: s.umin,
                umax: s.umax,
                smin: s.smin,
                smax: s.smax,
            },
            Width::W32 => Bounds {
                umin: s.u32_min as u64,
                umax: s.u32_max as u64,
                smin: s.s32_min as i64,
                smax: s.s32_max as i64,
            },
        }
    }

    fn unbounded(w: Width) -> Bounds {
        match w {
            Width::W64 => Bounds {
                umin: 0,
                umax: u64::MAX,
                smin: i64::MIN,
                smax: i64::MAX,
            },
            Width::W32 => Bounds {
                umin: 0,
                umax: u32::MAX as u64,
                smin: i32::MIN as i64,
                smax: i32::MAX as i64,
            },
        }
    }

    fn store(self, s: &mut Scalar, w: Width) {
        match w {
            Width::W64 => {
                s.umin = self.umin;
                s.umax = self.umax;
                s.smin = self.smin;
                s.smax = self.smax;
            }
            Width::W32 => {
                s.u32_min = self.umin as u32;
                s.u32_max = self.umax as u32;
                s.s32_min = self.smin as i32;
                s.s32_max = self.smax as i32;
            }
        }
    }
}

fn umax_of(w: Width) -> u128 {
    match w {
        Width::W64 => u64::MAX as u128,
        Width::W32 => u32::MAX as u128,
    }
}

fn srange_of(w: Width) -> (i128, i128) {
    match w {
        Width::W64 => (i64::MIN as i128, i64::MAX as i128),
        Width::W32 => (i32::MIN as i128, i32::MAX as i128),
    }
}

/// Unsigned `[lo, hi]` if it fits the width, else unbounded.
fn ufit(lo: u128, hi: u128, w: Width) -> (u64, u64) {
    if hi <= umax_of(w) && lo <= hi {
        (lo as u64, hi as u64)
    } else {
        (0, umax_of(w) as u64)
    }
}

fn sfit(lo: i128, hi: i128, w: Width) -> (i64, i64) {
    let (min, max) = srange_of(w);
    if lo >= min && hi <= max && lo <= hi {
        (lo as i64, hi as i64)
    } else {
        (min as i64, max as i64)
    }
}

/// ALU operations the bounds tracker understands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Or,
    And,
    Xor,
    Lsh,
    Rsh,
    Arsh,
}

/// `dst op src` at width `w` (ALU32 results are zero-extended), following
/// the kernel's `adjust_scalar_min_max_vals`: tnum and per-width bounds,
/// then a bounds sync.
pub fn alu(dst: &Scalar, src: &Scalar, op: AluOp, w: Width) -> Scalar {
    if dst.is_empty() || src.is_empty() {
        return Scalar::unknown();
    }
    let mut out = *dst;
    let bits = if w == Width::W32 { 32 } else { 64 };
    // Operands seen at this width (a 32-bit view of a 64-bit register).
    let a = Bounds::of(dst, w);
    let b = Bounds::of(src, w);
    let (ta, tb) = match w {
        Width::W64 => (dst.var_off, src.var_off),
        Width::W32 => (dst.var_off.subreg(), src.var_off.subreg()),
    };
    let res: (Tnum, Bounds) = match op {
        AluOp::Add => {
            let (umin, umax) = ufit(
                a.umin as u128 + b.umin as u128,
                a.umax as u128 + b.umax as u128,
                w,
            );
            let (smin, smax) = sfit(
                a.smin as i128 + b.smin as i128,
                a.smax as i128 + b.smax as i128,
                w,
            );
            (
                ta.add(tb),
                Bounds {
                    umin,
                    umax,
                    smin,
                    smax,
                },
            )
        }
        AluOp::Sub => {
            let (umin, umax) = if a.umin >= b.umax {
                (a.umin - b.umax, a.umax - b.umin)
            } else {
                (0, umax_of(w) as u64)
            };
            let (smin, smax) = sfit(
                a.smin as i128 - b.smax as i128,
                a.smax as i128 - b.smin as i128,
                w,
            );
            (
                ta.sub(tb),
                Bounds {
                    umin,
                    umax,
                    smin,
                    smax,
                },
            )
        }
        AluOp::Mul => {
            let (umin, umax) = ufit(
                a.umin as u128 * b.umin as u128,
                a.umax as u128 * b.umax as u128,
                w,
            );
            let corners = [
                a.smin as i128 * b.smin as i128,
                a.smin as i128 * b.smax as i128,
                a.smax as i128 * b.smin as i128,
                a.smax as i128 * b.smax as i128,
            ];
            let (smin, smax) = sfit(
                *corners.iter().min().unwrap_or(&0),
                *corners.iter().max().unwrap_or(&0),
                w,
            );
            (
                ta.mul(tb),
                Bounds {
                    umin,
                    umax,
                    smin,
                    smax,
                },
            )
        }
        AluOp::Div | AluOp::Mod => {
            // Unsigned division and modulo by a known non-zero constant are
            // tracked; anything else (including /0, which yields 0, and
            // %0, which keeps dst) gives an unknown value of the width.
            let cb = if b.umin == b.umax { Some(b.umin) } else { None };
            match (op, cb) {
                (AluOp::Div, Some(c)) if c != 0 => {
                    let lo = a.umin / c;
                    let hi = a.umax / c;
                    let mut t = Tnum::range(lo, hi);
                    if w == Width::W32 {
                        t = t.subreg();
                    }
                    (
                        t,
                        Bounds {
                            umin: lo,
                            umax: hi,
                            ..Bounds::unbounded(w)
                        },
                    )
                }
                (AluOp::Mod, Some(c)) if c != 0 => {
                    if a.umax < c {
                        (ta, a)
                    } else {
                        (
                            Tnum::range(0, c - 1),
                            Bounds {
                                umin: 0,
                                umax: c - 1,
                                ..Bounds::unbounded(w)
                            },
                        )
                    }
                }
                _ => (
                    if w == Width::W32 {
                        Tnum::UNKNOWN.subreg()
                    } else {
                        Tnum::UNKNOWN
                    },
                    Bounds::unbounded(w),
                ),
            }
        }
        AluOp::And => {
            let t = ta.and(tb);
            let mut r = Bounds::unbounded(w);
            r.umin = t.value;
            r.umax = a.umax.min(b.umax);
            if a.smin >= 0 && b.smin >= 0 {
                r.smin = r.umin as i64;
                r.smax = r.umax as i64;
            }
            (t, r)
        }
        AluOp::Or => {
            let t = ta.or(tb);
            let mut r = Bounds::unbounded(w);
            r.umin = a.umin.max(b.umin);
            r.umax = t.value | t.mask;
            if a.smin >= 0 && b.smin >= 0 {
                r.smin = r.umin as i64;
                r.smax = r.umax as i64;
            }
            (t, r)
        }
        AluOp::Xor => {
            let t = ta.xor(tb);
            let mut r = Bounds::unbounded(w);
            r.umin = t.value;
            r.umax = t.value | t.mask;
            if a.smin >= 0 && b.smin >= 0 {
                r.smin = r.umin as i64;
                r.smax = r.umax as i64;
            }
            (t, r)
        }
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => {
            // The shift amount must be a known constant below the width;
            // otherwise nothing is known of the result.
            if b.umin != b.umax || b.umax >= bits as u64 {
                let t = if w == Width::W32 {
                    Tnum::UNKNOWN.subreg()
                } else {
                    Tnum::UNKNOWN
                };
                (t, Bounds::unbounded(w))
            } else {
                let s = b.umin as u32;
                match op {
                    AluOp::Lsh => {
                        let mut r = Bounds::unbounded(w);
                        if (a.umax as u128) << s <= umax_of(w) {
                            r.umin = a.umin << s;
                            r.umax = a.umax << s;
                        }
                        let mut t = ta.lshift(s);
                        if w == Width::W32 {
                            t = t.subreg();
                        }
                        (t, r)
                    }
                    AluOp::Rsh => {
                        let mut r = Bounds::unbounded(w);
                        r.umin = a.umin >> s;
                        r.umax = a.umax >> s;
                        (ta.rshift(s), r)
                    }
                    _ => {
                        let mut r = Bounds::unbounded(w);
                        r.smin = a.smin >> s;
                        r.smax = a.smax >> s;
                        (ta.arshift(s, bits), r)
                    }
                }
            }
        }
    };
    let (t, r) = res;
    match w {
        Width::W64 => {
            out.var_off = t;
            r.store(&mut out, w);
            out.mark_unbounded32();
            out.sync();
        }
        Width::W32 => {
            out.var_off = t.subreg();
            out.mark_unbounded64();
            r.store(&mut out, w);
            // The upper half is zero after any ALU32 operation.
            out.umin = 0;
            out.umax = u32::MAX as u64;
            out.zext32();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no external randomness in tests).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Values clustered around interesting edges.
        fn value(&mut self) -> u64 {
            let edges = [
                0u64,
                1,
                7,
                0xff,
                0x7fff_ffff,
                0x8000_0000,
                0xffff_ffff,
                0x1_0000_0000,
                i64::MAX as u64,
                1 << 63,
                u64::MAX,
            ];
            let e = edges[(self.next() % edges.len() as u64) as usize];
            let d = self.next() % 8;
            if self.next().is_multiple_of(2) {
                e.wrapping_add(d)
            } else {
                e.wrapping_sub(d)
            }
        }
    }

    /// A scalar holding a few random concrete values (plus the samples).
    fn sample(rng: &mut Rng) -> (Scalar, Vec<u64>) {
        let n = 1 + rng.next() % 4;
        let vals: Vec<u64> = (0..n).map(|_| rng.value()).collect();
        let mut s = Scalar::unknown();
        s.umin = *vals.iter().min().unwrap();
        s.umax = *vals.iter().max().unwrap();
        s.smin = vals.iter().map(|&v| v as i64).min().unwrap();
        s.smax = vals.iter().map(|&v| v as i64).max().unwrap();
        s.u32_min = vals.iter().map(|&v| v as u32).min().unwrap();
        s.u32_max = vals.iter().map(|&v| v as u32).max().unwrap();
        s.s32_min = vals.iter().map(|&v| v as i32).min().unwrap();
        s.s32_max = vals.iter().map(|&v| v as i32).max().unwrap();
        s.var_off = vals[1..]
            .iter()
            .fold(Tnum::constant(vals[0]), |t, &v| t.union(Tnum::constant(v)));
        s.sync();
        for &v in &vals {
            assert!(s.contains_value(v), "{s:?} lost {v:#x}");
        }
        (s, vals)
    }

    fn concrete(op: AluOp, w: Width, a: u64, b: u64) -> u64 {
        let (a, b) = match w {
            Width::W64 => (a, b),
            Width::W32 => (a as u32 as u64, b as u32 as u64),
        };
        let bits = if w == Width::W32 { 32 } else { 64 };
        let r = match op {
            AluOp::Add => a.wrapping_add(b),
            AluOp::Sub => a.wrapping_sub(b),
            AluOp::Mul => a.wrapping_mul(b),
            AluOp::Div => a.checked_div(b).unwrap_or(0),
            AluOp::Mod => a.checked_rem(b).unwrap_or(a),
            AluOp::Or => a | b,
            AluOp::And => a & b,
            AluOp::Xor => a ^ b,
            AluOp::Lsh => a << (b & (bits - 1)),
            AluOp::Rsh => a >> (b & (bits - 1)),
            AluOp::Arsh => {
                if bits == 32 {
                    ((a as i32) >> (b & 31)) as u32 as u64
                } else {
                    ((a as i64) >> (b & 63)) as u64
                }
            }
        };
        if w == Width::W32 {
            r as u32 as u64
        } else {
            r
        }
    }

    #[test]
    fn alu_results_contain_every_concrete_result() {
        let ops = [
            AluOp::Add,
            AluOp::Sub,
            AluOp::Mul,
            AluOp::Div,
            AluOp::Mod,
            AluOp::Or,
            AluOp::And,
            AluOp::Xor,
            AluOp::Lsh,
            AluOp::Rsh,
            AluOp::Arsh,
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20000 {
            let (a, av) = sample(&mut rng);
            let (mut b, mut bv) = sample(&mut rng);
            let op = ops[(rng.next() % ops.len() as u64) as usize];
            if matches!(op, AluOp::Lsh | AluOp::Rsh | AluOp::Arsh) && rng.next().is_multiple_of(2) {
                let s = rng.next() % 64;
                b = Scalar::constant(s);
                bv = vec![s];
            }
            for w in [Width::W32, Width::W64] {
                let r = alu(&a, &b, op, w);
                for &x in &av {
                    for &y in &bv {
                        let c = concrete(op, w, x, y);
                        assert!(
                            r.contains_value(c),
                            "{op:?} {w:?}: {x:#x} {y:#x} = {c:#x} not in {r:?}\n a={a:?}\n b={b:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn constants_stay_exact() {
        let r = alu(
            &Scalar::constant(40),
            &Scalar::constant(2),
            AluOp::Add,
            Width::W64,
        );
        assert_eq!(r.const_value(), Some(42));
        let r = alu(
            &Scalar::constant(1),
            &Scalar::constant(2),
            AluOp::Sub,
            Width::W32,
        );
        assert_eq!(r.const_value(), Some(0xffff_ffff));
        let r = alu(
            &Scalar::up_to(0xffff),
            &Scalar::constant(0xff),
            AluOp::And,
            Width::W64,
        );
        assert_eq!((r.umin, r.umax), (0, 0xff));
    }

    #[test]
    fn sync_narrows_from_tnum_and_cross_widths() {
        let mut s = Scalar::unknown();
        s.var_off = Tnum::new(0, 0xff);
        s.sync();
        assert_eq!((s.umax, s.smin, s.smax, s.u32_max), (0xff, 0, 0xff, 0xff));
        let mut s = Scalar::unknown();
        s.smin = 0;
        s.smax = 100;
        s.sync();
        assert_eq!((s.umin, s.umax), (0, 100));
    }

    #[test]
    fn truncate_and_sign_extend_are_sound() {
        let mut rng = Rng(12345);
        for _ in 0..5000 {
            let (a, av) = sample(&mut rng);
            for size in [1u32, 2, 4] {
                let mut t = a;
                t.truncate(size);
                let mut s = a;
                s.sign_extend(size);
                for &v in &av {
                    let m = (1u64 << (size * 8)) - 1;
                    assert!(t.contains_value(v & m), "trunc {size} {v:#x} {t:?}");
                    let sh = 64 - size * 8;
                    let sx = (((v << sh) as i64) >> sh) as u64;
                    assert!(s.contains_value(sx), "sext {size} {v:#x} {s:?}");
                }
            }
            let mut z = a;
            z.zext32();
            for &v in &av {
                assert!(z.contains_value(v as u32 as u64));
            }
        }
    }
}
