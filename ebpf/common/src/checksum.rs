//! The Internet checksum (RFC 1071) for the packet hot path, and its
//! incremental update (RFC 1624) for NAT: one definition for both engines
//! (the data plane re-exports it as `wire::checksum`).
//!
//! A checksum is built from partial sums: [`sum`] of each chunk of bytes,
//! [`pseudo_header_v4`] for UDP and TCP, added together with `+` (each partial
//! sum is at most `0xffff`, so billions of them fit in the `u64`), then
//! [`finish`]ed into the value that goes into the header. Every chunk but the
//! last must have an even length: a chunk is summed as 16-bit big-endian
//! words, so an odd chunk in the middle would shift the bytes after it.
//!
//! ```
//! use shoal_ebpf_common::checksum;
//! let (header, payload) = ([0x45u8, 0x00, 0x00, 0x1c], [0xab, 0xcd, 0xef]);
//! let split = checksum::finish(checksum::sum(&header) + checksum::sum(&payload));
//! assert_eq!(split, checksum::finish(checksum::sum(&[0x45, 0, 0, 0x1c, 0xab, 0xcd, 0xef])));
//! ```
//!
//! UDP sends a computed `0x0000` as `0xffff` (zero means "no checksum");
//! that mapping is the caller's, as it is UDP's and not the checksum's.

use core::net::Ipv4Addr;

/// The partial sum of `data`, read as big-endian 16-bit words (an odd last
/// byte is padded with a zero byte). At most `0xffff`.
///
/// Reads eight bytes at a time into native-endian `u64` words with
/// end-around carry; the ones-complement sum does not care about byte order
/// (RFC 1071 §2B), so one byte swap at the end gives the big-endian sum.
#[inline]
pub fn sum(data: &[u8]) -> u64 {
    let (pairs, rest) = data.as_chunks::<16>();
    let (mut a, mut b) = (0u64, 0u64);
    for pair in pairs {
        let (words, _) = pair.as_chunks::<8>();
        a = add_carry(a, u64::from_ne_bytes(words[0]));
        b = add_carry(b, u64::from_ne_bytes(words[1]));
    }
    let (words, tail) = rest.as_chunks::<8>();
    for word in words {
        a = add_carry(a, u64::from_ne_bytes(*word));
    }
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        b = add_carry(b, u64::from_ne_bytes(last));
    }
    u64::from(u16::from_be(fold(add_carry(a, b))))
}

/// Folds a partial sum into 16 bits with end-around carry (no complement).
#[inline]
pub fn fold(acc: u64) -> u16 {
    let mut acc = (acc >> 32) + (acc & 0xffff_ffff);
    while acc > 0xffff {
        acc = (acc >> 16) + (acc & 0xffff);
    }
    // The loop leaves at most 0xffff.
    acc as u16
}

/// The checksum to store in a header: the complement of the folded sum.
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The partial sum of the IPv4 pseudo header of UDP and TCP: addresses,
/// protocol number and the length of the UDP or TCP header plus payload.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    let (s, d) = (u32::from(src), u32::from(dst));
    u64::from(s >> 16)
        + u64::from(s & 0xffff)
        + u64::from(d >> 16)
        + u64::from(d & 0xffff)
        + u64::from(protocol)
        + u64::from(length)
}

/// The checksum after one 16-bit word covered by it changed from `old` to
/// `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old) + u64::from(new))
}

/// The checksum after a 32-bit field (two aligned 16-bit words) covered by it
/// changed from `old` to `new`.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let (old_hi, old_lo) = ((old >> 16) as u16, old as u16);
    let (new_hi, new_lo) = ((new >> 16) as u16, new as u16);
    !fold(
        u64::from(!checksum)
            + u64::from(!old_hi)
            + u64::from(!old_lo)
            + u64::from(new_hi)
            + u64::from(new_lo),
    )
}

/// The checksum after an IPv4 address covered by it (in the IPv4 header, or
/// in the pseudo header of UDP and TCP) was rewritten from `old` to `new`.
#[inline]
pub fn update_ipv4_addr(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(checksum, u32::from(old), u32::from(new))
}

#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use proptest::prelude::*;

    /// The textbook algorithm: 16-bit big-endian words into a u32.
    fn naive(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            acc += u32::from(word);
            acc = (acc >> 16) + (acc & 0xffff);
        }
        acc as u16
    }

    #[test]
    fn ipv4_header_example() {
        // A classic example header; its checksum is 0xb861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(sum(&header)), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(sum(&header)), 0xffff);
    }

    #[test]
    fn empty_and_zero_and_odd() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(finish(sum(&[0; 17])), 0xffff);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(fold(0xffff_ffff_ffff_ffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
    }

    #[test]
    fn nat_rewrite_of_an_address_keeps_the_header_valid() {
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let new = Ipv4Addr::new(10, 10, 0, 100);
        let updated = update_ipv4_addr(0xb861, Ipv4Addr::new(192, 168, 0, 199), new);
        header[16..20].copy_from_slice(&new.octets());
        header[10..12].copy_from_slice(&updated.to_be_bytes());
        assert_eq!(fold(sum(&header)), 0xffff);
    }

    fn buffer_and_index() -> impl Strategy<Value = (Vec<u8>, usize)> {
        (1..200usize)
            .prop_flat_map(|words| (proptest::collection::vec(any::<u8>(), words * 2), 0..words))
    }

    proptest! {
        #[test]
        fn fast_sum_equals_naive(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert_eq!(fold(sum(&data)), naive(&data));
        }

        #[test]
        fn chunks_of_even_length_add_up(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0..150usize) {
            let cut = (cut * 2).min(data.len() & !1);
            let (head, tail) = data.split_at(cut);
            prop_assert_eq!(finish(sum(head) + sum(tail)), finish(sum(&data)));
        }

        #[test]
        fn update_u16_equals_recomputation((mut data, i) in buffer_and_index(), new in any::<u16>()) {
            let before = finish(sum(&data));
            let at = i * 2;
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            // Ones-complement has two zeros; an all-zero buffer is no header.
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(update_u16(before, old, new), finish(sum(&data)));
        }

        #[test]
        fn update_u32_equals_recomputation((mut data, i) in buffer_and_index(), new in any::<u32>()) {
            prop_assume!(data.len() >= 4);
            let at = (i * 2).min(data.len() - 4);
            let before = finish(sum(&data));
            let old = u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(update_u32(before, old, new), finish(sum(&data)));
            let via_addr = update_ipv4_addr(before, Ipv4Addr::from(old), Ipv4Addr::from(new));
            prop_assert_eq!(via_addr, finish(sum(&data)));
        }
    }
}
