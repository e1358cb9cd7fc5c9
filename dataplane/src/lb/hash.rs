//! The load balancer's hash, SipHash-1-3 of the flow's wire bytes: defined
//! once for both engines in `shoal_ebpf_common::hash`, where the exact
//! algorithm and its known answers are.

pub use shoal_ebpf_common::hash::{K1, flow_hash, hash_bytes};
