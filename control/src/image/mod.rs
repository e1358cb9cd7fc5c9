//! Container images: pulled from a registry into a store under the state
//! directory, every blob verified against its digest while it streams in,
//! and unpacked once into a root filesystem that the image's tasks share
//! (read-only, each with its own writable layer on top).
//!
//! [`layer`] applies layers onto a root; [`store`] pulls and keeps
//! images; [`config`] reads what an image says about running it;
//! [`auth`] finds the credentials a registry wants.

pub mod auth;
pub mod config;
pub mod layer;
pub mod store;

pub use auth::RegistryCredentials;
pub use config::ImageConfig;
pub use store::{Image, ImageError, ImageStore, RegistryOptions};

/// Checks that `reference` names an image (`nginx`, `nginx:1.27`,
/// `registry:5000/team/app@sha256:...`).
pub fn check_reference(reference: &str) -> Result<(), ImageError> {
    store::parse(reference).map(drop)
}

/// `reference` with `digest` added, unless it names one already.
pub fn pinned(reference: &str, digest: &str) -> String {
    let reference = reference.trim();
    if reference.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}@{digest}")
    }
}
