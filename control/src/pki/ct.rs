//! Constant-time comparison of secrets.
//!
//! Comparing a presented join-token secret with `==` would return as soon
//! as a byte differs, and the time taken would tell an attacker how many
//! leading bytes they got right. This looks at every byte whatever the
//! contents; only the (public) lengths may short-cut.

/// True when `a` and `b` are equal, in time that depends only on their
/// lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimizer from turning the fold back into an
    // early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn compares() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
