//! Tristate numbers: known bits of a 64-bit value (the kernel's `tnum`).
//!
//! A bit of `mask` set means the bit is unknown; otherwise it equals the bit
//! of `value`. Invariant: `value & mask == 0`.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tnum {
    pub value: u64,
    pub mask: u64,
}

impl fmt::Debug for Tnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(0x{:x}; 0x{:x})", self.value, self.mask)
    }
}

// `add`/`sub`/`mul` are abstract (wrapping) operations, not `std::ops`.
#[allow(clippy::should_implement_trait)]
impl Tnum {
    pub const UNKNOWN: Tnum = Tnum {
        value: 0,
        mask: u64::MAX,
    };

    pub const fn new(value: u64, mask: u64) -> Tnum {
        Tnum {
            value: value & !mask,
            mask,
        }
    }

    pub const fn constant(v: u64) -> Tnum {
        Tnum { value: v, mask: 0 }
    }

    /// The smallest tnum holding every value of `[min, max]`.
    pub fn range(min: u64, max: u64) -> Tnum {
        let chi = min ^ max;
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return Tnum::UNKNOWN;
        }
        let delta = (1u64 << bits) - 1;
        Tnum::new(min & !delta, delta)
    }

    pub fn is_const(self) -> bool {
        self.mask == 0
    }

    pub fn is_unknown(self) -> bool {
        self.mask == u64::MAX
    }

    /// Whether `v` is one of the values this tnum stands for.
    pub fn contains_value(self, v: u64) -> bool {
        v & !self.mask == self.value
    }

    /// Whether every value of `other` is a value of `self`.
    pub fn contains(self, other: Tnum) -> bool {
        if other.mask & !self.mask != 0 {
            return false;
        }
        other.value & !self.mask == self.value
    }

    pub fn lshift(self, shift: u32) -> Tnum {
        Tnum::new(self.value << shift, self.mask << shift)
    }

    pub fn rshift(self, shift: u32) -> Tnum {
        Tnum::new(self.value >> shift, self.mask >> shift)
    }

    /// Arithmetic right shift at `bits` (32 or 64) width.
    pub fn arshift(self, shift: u32, bits: u32) -> Tnum {
        if bits == 32 {
            Tnum::new(
                ((self.value as i32) >> shift) as u32 as u64,
                ((self.mask as i32) >> shift) as u32 as u64,
            )
        } else {
            Tnum::new(
                ((self.value as i64) >> shift) as u64,
                ((self.mask as i64) >> shift) as u64,
            )
        }
    }

    pub fn add(self, b: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(b.mask);
        let sv = self.value.wrapping_add(b.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | b.mask;
        Tnum::new(sv & !mu, mu)
    }

    pub fn sub(self, b: Tnum) -> Tnum {
        let dv = self.value.wrapping_sub(b.value);
        let alpha = dv.wrapping_add(self.mask);
        let beta = dv.wrapping_sub(b.mask);
        let chi = alpha ^ beta;
        let mu = chi | self.mask | b.mask;
        Tnum::new(dv & !mu, mu)
    }

    pub fn and(self, b: Tnum) -> Tnum {
        let alpha = self.value | self.mask;
        let beta = b.value | b.mask;
        let v = self.value & b.value;
        Tnum::new(v, alpha & beta & !v)
    }

    pub fn or(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask | b.mask;
        Tnum::new(v, mu & !v)
    }

    pub fn xor(self, b: Tnum) -> Tnum {
        let v = self.value ^ b.value;
        let mu = self.mask | b.mask;
        Tnum::new(v & !mu, mu)
    }

    /// Long multiplication over known and unknown bits.
    pub fn mul(self, b: Tnum) -> Tnum {
        let mut a = self;
        let mut b = b;
        let acc_v = self.value.wrapping_mul(b.value);
        let mut acc_m = Tnum::constant(0);
        while a.value != 0 || a.mask != 0 {
            if a.value & 1 != 0 {
                acc_m = acc_m.add(Tnum::new(0, b.mask));
            } else if a.mask & 1 != 0 {
                acc_m = acc_m.add(Tnum::new(0, b.value | b.mask));
            }
            a = a.rshift(1);
            b = b.lshift(1);
        }
        Tnum::constant(acc_v).add(acc_m)
    }

    /// Values known to be in both.
    pub fn intersect(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask & b.mask;
        Tnum::new(v & !mu, mu)
    }

    /// The smallest tnum holding the values of both.
    pub fn union(self, b: Tnum) -> Tnum {
        let mu = self.mask | b.mask | (self.value ^ b.value);
        Tnum::new(self.value & !mu, mu)
    }

    /// Truncated to `size` bytes (zero-extended).
    pub fn cast(self, size: u32) -> Tnum {
        if size >= 8 {
            return self;
        }
        let m = (1u64 << (size * 8)) - 1;
        Tnum::new(self.value & m, self.mask & m)
    }

    /// The low 32 bits.
    pub fn subreg(self) -> Tnum {
        self.cast(4)
    }

    pub fn clear_subreg(self) -> Tnum {
        self.rshift(32).lshift(32)
    }

    /// Upper 32 bits of `self`, low 32 bits of `sub`.
    pub fn with_subreg(self, sub: Tnum) -> Tnum {
        self.clear_subreg().or(sub.subreg())
    }

    /// Sign-extension from `size` bytes.
    pub fn sext(self, size: u32) -> Tnum {
        if size >= 8 {
            return self;
        }
        let shift = 64 - size * 8;
        Tnum::new(
            (((self.value << shift) as i64) >> shift) as u64,
            (((self.mask << shift) as i64) >> shift) as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 4-bit tnum (value, mask) over the low bits.
    fn small_tnums() -> Vec<Tnum> {
        let mut out = Vec::new();
        for mask in 0..16u64 {
            for value in 0..16u64 {
                if value & mask == 0 {
                    out.push(Tnum::new(value, mask));
                }
            }
        }
        out
    }

    fn members(t: Tnum) -> Vec<u64> {
        (0..16u64).filter(|&v| t.contains_value(v)).collect()
    }

    #[test]
    fn binary_ops_are_sound_exhaustively_on_small_tnums() {
        type Op = (fn(Tnum, Tnum) -> Tnum, fn(u64, u64) -> u64);
        let ops: [Op; 6] = [
            (Tnum::add, u64::wrapping_add),
            (Tnum::sub, u64::wrapping_sub),
            (Tnum::and, |a, b| a & b),
            (Tnum::or, |a, b| a | b),
            (Tnum::xor, |a, b| a ^ b),
            (Tnum::mul, u64::wrapping_mul),
        ];
        let all = small_tnums();
        for (k, (abs, conc)) in ops.iter().enumerate() {
            for &a in &all {
                for &b in &all {
                    let r = abs(a, b);
                    assert_eq!(r.value & r.mask, 0);
                    for x in members(a) {
                        for y in members(b) {
                            assert!(
                                r.contains_value(conc(x, y)),
                                "op {k}: {a:?} {b:?} -> {r:?} misses {x} {y}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn range_shift_cast_intersect_union_are_sound() {
        for min in 0..64u64 {
            for max in min..64u64 {
                let t = Tnum::range(min, max);
                assert!((min..=max).all(|v| t.contains_value(v)));
            }
        }
        for a in small_tnums() {
            let a = Tnum::new(a.value << 60 | a.value, a.mask << 60 | a.mask);
            for s in 0..8u32 {
                let l = a.lshift(s);
                let r = a.rshift(s);
                let ar = a.arshift(s, 64);
                let ar32 = a.arshift(s, 32);
                for hi in 0..16u64 {
                    for lo in 0..16u64 {
                        let v = hi << 60 | lo;
                        if !a.contains_value(v) {
                            continue;
                        }
                        assert!(l.contains_value(v << s));
                        assert!(r.contains_value(v >> s));
                        assert!(ar.contains_value(((v as i64) >> s) as u64));
                        assert!(ar32.contains_value(((v as i32) >> s) as u32 as u64));
                        assert!(a.sext(1).contains_value(v as i8 as i64 as u64));
                        assert!(a.cast(1).contains_value(v as u8 as u64));
                    }
                }
            }
        }
        let all = small_tnums();
        for &a in &all {
            for &b in &all {
                let i = a.intersect(b);
                let u = a.union(b);
                for v in 0..16 {
                    if a.contains_value(v) && b.contains_value(v) {
                        assert!(i.contains_value(v));
                    }
                    if a.contains_value(v) || b.contains_value(v) {
                        assert!(u.contains_value(v));
                    }
                }
                assert_eq!(
                    a.contains(b),
                    members(b).iter().all(|&v| a.contains_value(v))
                        && (b.mask & !0xf) & !a.mask == 0
                );
            }
        }
    }
}
