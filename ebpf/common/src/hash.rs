//! The load balancer's hash: one exactly specified function that every node,
//! every build and the eBPF programs compute bit for bit the same, so a flow
//! picks the same backend wherever it lands and a Maglev table built on one
//! node equals the one built on another.
//!
//! Bytes enter, a `u64` (or, for a flow, a `u32`) leaves; nothing is
//! allocated and every loop is bounded by the input length: the data plane
//! (`lb::hash`) and the eBPF programs use this one definition.
//!
//! # The algorithm (version 1; changing it is a wire-format change)
//!
//! [`hash_bytes`] is SipHash-1-3 (Aumasson and Bernstein, "SipHash: a fast
//! short-input PRF", 2012; one compression round per 8-byte block, three
//! finalization rounds) with the 128-bit key `k0 = seed`, `k1 =
//! 0x7368_6f61_6c2d_6c62` (ASCII "shoal-lb"). Blocks are read little-endian;
//! the last block holds the remaining 0..=7 bytes and `len mod 256` in its top
//! byte, as in the reference implementation. SipHash-1-3 is what Rust's std
//! and many kernels use for short keys: fast on 13-byte 5-tuples and a PRF.
//! The seed in use is the fixed [`crate::LB_FLOW_SEED`], the same
//! in every cluster; a per-cluster secret seed (which would keep clients from
//! aiming flows at one backend) needs the tables to carry it, and is not
//! done.
//!
//! [`flow_hash`] hashes the 13 bytes `src ‖ dst ‖ sport ‖ dport ‖ proto`
//! (addresses and ports in network byte order, as on the wire) and folds the
//! result to 32 bits: `(h ^ (h >> 32)) as u32`.

use core::net::Ipv4Addr;

/// The second SipHash key word: ASCII "shoal-lb".
pub use crate::LB_HASH_K1 as K1;

/// SipHash-1-3 of `data` keyed with `(seed, K1)`; see the module docs.
pub fn hash_bytes(seed: u64, data: &[u8]) -> u64 {
    siphash::<1, 3>(seed, K1, data)
}

/// The hash of an IPv4 5-tuple that picks a flow's Maglev slot; see the
/// module docs for the exact byte layout.
pub fn flow_hash(
    seed: u64,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    sport: u16,
    dport: u16,
) -> u32 {
    let mut tuple = [0u8; 13];
    tuple[0..4].copy_from_slice(&src.octets());
    tuple[4..8].copy_from_slice(&dst.octets());
    tuple[8..10].copy_from_slice(&sport.to_be_bytes());
    tuple[10..12].copy_from_slice(&dport.to_be_bytes());
    tuple[12] = proto;
    let h = hash_bytes(seed, &tuple);
    // Both halves feed the result so no key bit is dropped by the fold.
    (h ^ (h >> 32)) as u32
}

/// SipHash-c-d; generic over the round counts so the tests can check the
/// same code against the published SipHash-2-4 vectors.
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        for _ in 0..C {
            sipround(v);
        }
        v[0] ^= m;
    };

    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut block = [0u8; 8];
        block.copy_from_slice(chunk);
        compress(&mut v, u64::from_le_bytes(block));
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    // The reference keeps only the low byte of the length.
    last[7] = data.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));

    v[2] ^= 0xff;
    for _ in 0..D {
        sipround(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use proptest::prelude::*;

    /// The key of the reference vectors: bytes 00..0f.
    const REF_K0: u64 = 0x0706_0504_0302_0100;
    const REF_K1: u64 = 0x0f0e_0d0c_0b0a_0908;

    fn counting(len: usize) -> Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }

    #[test]
    fn core_matches_the_published_siphash_2_4_vectors() {
        // From the SipHash paper (appendix A) and the reference vectors.h.
        assert_eq!(
            siphash::<2, 4>(REF_K0, REF_K1, &counting(15)),
            0xa129_ca61_49be_45e5
        );
        assert_eq!(siphash::<2, 4>(REF_K0, REF_K1, &[]), 0x726f_db47_dd0e_0e31);
    }

    proptest! {
        #[test]
        fn core_agrees_with_std_siphash_2_4(k0: u64, k1: u64, data in proptest::collection::vec(any::<u8>(), 0..64)) {
            #[allow(deprecated)]
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            std::hash::Hasher::write(&mut reference, &data);
            prop_assert_eq!(siphash::<2, 4>(k0, k1, &data), std::hash::Hasher::finish(&reference));
        }
    }

    /// Known answers pin the exact function: if one of these changes, every
    /// node and the eBPF side must change together.
    #[test]
    fn hash_bytes_known_answers() {
        assert_eq!(hash_bytes(0, b""), 0xa93d_e1db_5412_99b1);
        assert_eq!(hash_bytes(0, b"10.10.0.2"), 0xaafb_6181_6574_62ef);
        assert_eq!(hash_bytes(1, b"10.10.0.2"), 0x6818_dc35_92df_eed0);
        assert_eq!(
            hash_bytes(0x0123_4567_89ab_cdef, &counting(16)),
            0xc7f9_1842_5f67_a875
        );
    }

    #[test]
    fn flow_hash_known_answers() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 10, 0, 100);
        assert_eq!(flow_hash(0, a, b, 6, 40000, 80), 0xd380_2c3a);
        assert_eq!(flow_hash(0, a, b, 17, 40000, 80), 0xafb3_296c);
        assert_eq!(flow_hash(7, a, b, 6, 40000, 80), 0x2180_758e);
    }

    #[test]
    fn flow_hash_is_hash_bytes_of_the_wire_layout() {
        let tuple = [10, 0, 0, 1, 10, 10, 0, 100, 0x9c, 0x40, 0, 80, 6];
        let h = hash_bytes(42, &tuple);
        let want = (h ^ (h >> 32)) as u32;
        let got = flow_hash(
            42,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 10, 0, 100),
            6,
            40000,
            80,
        );
        assert_eq!(got, want);
    }
}
