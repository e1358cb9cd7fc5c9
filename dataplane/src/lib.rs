//! shoal's data plane.
//!
//! The control plane hands this crate one value, [`tables::Tables`]: the
//! desired state of one node's data plane. An engine ([`engine`]) installs it.
//! Packets are parsed in [`wire`], forwarded by the sans-IO overlay core in
//! [`overlay`], and touch the operating system only in [`sys`].

pub mod dns;
pub mod engine;
pub mod lb;
pub mod overlay;
pub mod sys;
pub mod tables;
pub mod wire;
