//! Fixed-width base36 (`0-9a-z`) for join tokens and ids.
//!
//! Swarm writes a token's CA digest and secret as big-endian integers in
//! base36, left-padded with `0` to a fixed width (50 characters for a
//! SHA-256, 25 for a 128-bit secret). We do the same so tokens look and
//! parse alike. Bytes enter as a big-endian number and leave as a string,
//! and back; nothing here allocates more than the output.

use thiserror::Error;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Why a base36 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Base36Error {
    /// A character outside `0-9a-z`.
    #[error("`{0}` is not a base36 character (only 0-9 and a-z are)")]
    Charset(char),
    /// The number does not fit in the expected number of bytes.
    #[error("the number is too large for {0} bytes")]
    Overflow(usize),
}

/// Encodes `bytes` (a big-endian number) in base36, left-padded with `0`
/// to at least `width` characters.
pub fn encode(bytes: &[u8], width: usize) -> String {
    // Schoolbook division by 36 on a copy of the big-endian digits; the
    // inputs are at most 32 bytes, so quadratic time is irrelevant.
    let mut num = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            // cur < 36 * 256, so the quotient fits in a byte.
            *b = u8::try_from(cur / 36).unwrap_or(u8::MAX);
            rem = cur % 36;
        }
        digits.push(ALPHABET[rem as usize % 36]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

/// Decodes a base36 string into an `N`-byte big-endian number.
pub fn decode<const N: usize>(s: &str) -> Result<[u8; N], Base36Error> {
    let mut out = [0u8; N];
    for c in s.chars() {
        let digit = match c {
            '0'..='9' => u32::from(c) - u32::from('0'),
            'a'..='z' => u32::from(c) - u32::from('a') + 10,
            _ => return Err(Base36Error::Charset(c)),
        };
        let mut carry = digit;
        for b in out.iter_mut().rev() {
            let cur = u32::from(*b) * 36 + carry;
            *b = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return Err(Base36Error::Overflow(N));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(encode(&[0], 3), "000");
        assert_eq!(encode(&[35], 1), "z");
        assert_eq!(encode(&[1, 0], 1), "74"); // 256 = 7*36 + 4
        assert_eq!(decode::<2>("74"), Ok([1, 0]));
    }

    #[test]
    fn widths_match_swarm() {
        assert_eq!(encode(&[0xff; 32], 50).len(), 50);
        assert_eq!(encode(&[0xff; 16], 25).len(), 25);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode::<1>("A"), Err(Base36Error::Charset('A')));
        assert_eq!(decode::<1>("zz"), Err(Base36Error::Overflow(1)));
    }

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 32]>()) {
            let s = encode(&bytes, 50);
            prop_assert_eq!(s.len(), 50);
            prop_assert_eq!(decode::<32>(&s), Ok(bytes));
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,80}") {
            let _ = decode::<16>(&s);
        }
    }
}
