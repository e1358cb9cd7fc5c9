//! Where things are: the cargo target directory (for lab output) and the
//! `shoal` binary under test.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The cargo target directory: `$CARGO_TARGET_DIR`, else the `target/`
/// above the running executable's `deps/` folder (test binaries), else the
/// workspace's `target/`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(deps) = exe.parent()
        && deps.file_name().is_some_and(|n| n == "deps")
        && let Some(target) = deps.parent().and_then(Path::parent)
    {
        return target.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// The `shoal` binary to test; like [`try_shoal_bin`], but panics with its
/// message, for use directly in tests.
pub fn shoal_bin() -> PathBuf {
    match try_shoal_bin() {
        Ok(bin) => bin,
        Err(e) => panic!("{e:#}"),
    }
}

/// The `shoal` binary to test: `$SHOAL_BIN`, else `shoal` in the running
/// test executable's profile directory (`target/<profile>/deps/x` gives
/// `target/<profile>/shoal`), else in the other profile's.
pub fn try_shoal_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SHOAL_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!(
                "SHOAL_BIN={} is not a file; point it at a built `shoal` binary",
                bin.display()
            );
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut profile_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let mut candidates = vec![profile_dir.join("shoal")];
    if let Some(target) = profile_dir.parent() {
        for profile in ["release", "debug"] {
            let c = target.join(profile).join("shoal");
            if !candidates.contains(&c) {
                candidates.push(c);
            }
        }
    }
    if let Some(bin) = candidates.iter().find(|c| c.is_file()) {
        return Ok(bin.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    bail!(
        "no `shoal` binary at {}; run `cargo build --release --bin shoal` (or `cargo build --bin shoal`) first, or set SHOAL_BIN",
        looked.join(", ")
    )
}
