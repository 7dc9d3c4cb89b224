//! Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4): never compare raw `u32`s with `<`.

/// `a < b` in sequence space (Wireshark's `LT_SEQ`).
#[inline]
pub fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
#[inline]
pub fn le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// `a > b` in sequence space.
#[inline]
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// `a >= b` in sequence space.
#[inline]
pub fn ge(a: u32, b: u32) -> bool {
    le(b, a)
}

/// A sequence number: a `u32` ordered in sequence space (RFC 9293 §3.4), like smoltcp's
/// `TcpSeqNumber`. Only `PartialOrd`: the order is circular, so it is not transitive over
/// distances of 2^31 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Seq(pub u32);

impl Seq {
    /// `self + n`, wrapping.
    #[inline]
    pub fn plus(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// How far `self` lies after `other` (negative when before).
    #[inline]
    pub fn since(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// The later of two sequence numbers.
    #[inline]
    pub fn max(self, other: Seq) -> Seq {
        if self.since(other) >= 0 {
            self
        } else {
            other
        }
    }
}

impl PartialOrd for Seq {
    #[inline]
    fn partial_cmp(&self, other: &Seq) -> Option<std::cmp::Ordering> {
        Some(self.since(*other).cmp(&0))
    }
}

/// Follows one direction's sequence numbers across wraps, so long flows keep a 64-bit position.
///
/// `unwrap(raw)` returns the 64-bit value nearest to the last one seen: good as long as two
/// consecutive segments are less than 2^31 apart, which TCP's window guarantees.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwrapper {
    last: Option<u64>,
}

impl Unwrapper {
    /// Start so that `base` maps to `2^32` (room below for segments before the base).
    pub fn new(base: u32) -> Self {
        Unwrapper {
            last: Some((1u64 << 32) + base as u64),
        }
    }

    pub fn unwrap(&mut self, raw: u32) -> u64 {
        let v = match self.last {
            None => (1u64 << 32) + raw as u64,
            Some(last) => {
                let delta = raw.wrapping_sub(last as u32) as i32 as i64;
                (last as i64 + delta).max(0) as u64
            }
        };
        // Only move forward, so a late retransmission does not drag the reference back.
        if self.last.is_none_or(|l| v > l) {
            self.last = Some(v);
        }
        v
    }

    /// The 64-bit value of `raw` without moving the reference point.
    pub fn peek(&self, raw: u32) -> u64 {
        match self.last {
            None => (1u64 << 32) + raw as u64,
            Some(last) => {
                let delta = raw.wrapping_sub(last as u32) as i32 as i64;
                (last as i64 + delta).max(0) as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn order_across_the_wrap() {
        assert!(lt(u32::MAX - 5, 3));
        assert!(gt(3, u32::MAX - 5));
        assert!(le(7, 7) && ge(7, 7));
        assert!(!lt(7, 7));
    }

    #[test]
    fn unwrap_follows_a_long_flow() {
        let mut u = Unwrapper::new(u32::MAX - 10);
        let a = u.unwrap(u32::MAX - 10);
        let b = u.unwrap(5);
        assert_eq!(b - a, 16);
        // A retransmission from before the wrap maps below, not 4 GiB ahead.
        assert_eq!(u.unwrap(u32::MAX - 2), a + 8);
    }

    #[test]
    fn seq_type_orders_across_the_wrap() {
        let a = Seq(u32::MAX - 5);
        let b = a.plus(9);
        assert_eq!(b, Seq(3));
        assert!(a < b);
        assert!(b > a);
        assert!(a.partial_cmp(&a) == Some(std::cmp::Ordering::Equal));
        assert_eq!(b.since(a), 9);
        assert_eq!(a.since(b), -9);
        assert_eq!(a.max(b), b);
        assert_eq!(b.max(a), b);
    }

    proptest! {
        #[test]
        fn seq_type_agrees_with_the_functions(a: u32, b: u32) {
            prop_assert_eq!(Seq(a) < Seq(b), lt(a, b));
            prop_assert_eq!(Seq(a) >= Seq(b), ge(a, b));
        }

        #[test]
        fn lt_is_antisymmetric(a: u32, d in 1u32..(1 << 31)) {
            let b = a.wrapping_add(d);
            prop_assert!(lt(a, b));
            prop_assert!(!lt(b, a));
            prop_assert!(gt(b, a));
            prop_assert!(le(a, b) && !le(b, a));
        }

        #[test]
        fn unwrap_matches_64_bit_sums(start: u32, steps in proptest::collection::vec(0u32..65536, 1..200)) {
            let mut u = Unwrapper::new(start);
            let mut pos = (1u64 << 32) + start as u64;
            for s in steps {
                pos += s as u64;
                prop_assert_eq!(u.unwrap(pos as u32), pos);
            }
        }
    }
}
