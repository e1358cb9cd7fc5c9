//! The only module where shoal makes raw operating-system calls.
//!
//! `unsafe` is allowed here and nowhere else in the crate: creating and
//! entering network namespaces (`unshare`, `setns`, `mount`), starting task
//! processes isolated inside them ([`process`]) and polling descriptors need
//! libc. Every `unsafe` block states why it is sound in a `// SAFETY:` line.
#![allow(unsafe_code)]

pub mod clock;
pub mod link;
pub mod mesh;
pub mod mount;
pub mod netns;
pub mod poll;
pub mod process;
pub mod socket;
pub mod tap;
pub mod veth;
