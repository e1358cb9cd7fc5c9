//! The only module where shoal makes raw operating-system calls.
//!
//! `unsafe` is allowed here and nowhere else in the crate: entering network
//! namespaces (`setns`) and polling descriptors need libc. Every `unsafe`
//! block states why it is sound in a `// SAFETY:` line.
#![allow(unsafe_code)]

pub mod link;
pub mod mesh;
pub mod netns;
pub mod poll;
pub mod socket;
pub mod tap;
