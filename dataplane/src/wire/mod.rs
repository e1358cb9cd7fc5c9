//! Zero-copy packet views. Standard protocols come from `smoltcp::wire`;
//! the files here add what it lacks, in the same `Packet`/`Repr` style:
//! a `Packet<T: AsRef<[u8]>>` view whose `new_checked` validates the length
//! once, and a `Repr` with `parse`/`emit`. Each parser has a fuzz target in
//! `fuzz/`.

pub mod checksum;
pub mod flow;
pub mod virtio_net;
pub mod vxlan;

pub use virtio_net::{Packet as VirtioNetPacket, Repr as VirtioNetRepr};
pub use vxlan::{Packet as VxlanPacket, Repr as VxlanRepr};
