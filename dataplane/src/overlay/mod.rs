//! The VTEP core: forwarding by table, ARP answered locally, VXLAN encap and
//! decap, MTU and segmentation offloads. Sans-IO: frames in, verdicts out;
//! the engines in [`crate::engine`] do the I/O.

pub mod arp;
pub mod fdb;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod tunnel;
pub mod vtep;
