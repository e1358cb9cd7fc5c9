//! Builds the eBPF programs in `ebpf/programs` with aya-build when the
//! toolchain for them is here (the pinned nightly with rust-src, and
//! bpf-linker),
//! and sets `cfg(shoal_ebpf)` so the engine includes the object. Without
//! it, the build goes on without the eBPF engine and says why.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in the child that runs aya-build: the path of `ebpf/programs`.
const CHILD: &str = "SHOAL_EBPF_BUILD_CHILD";

/// The nightly the programs build with, pinned: a newer one emits bitcode of
/// a newer LLVM, which a bpf-linker built for LLVM 22 cannot read.
/// `scripts/setup.sh` installs exactly `nightly-2026-05-20` under this name.
const TOOLCHAIN: &str = "shoal-bpf-nightly-2026-05-20";
/// The LLVM major version bpf-linker is built against (`--features llvm-22`).
const LLVM_MAJOR: &str = "22";

fn main() {
    if let Some(programs) = std::env::var_os(CHILD) {
        let package = aya_build::Package {
            name: "shoal-ebpf",
            root_dir: programs.to_str().expect("workspace path is UTF-8"),
            ..Default::default()
        };
        if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(TOOLCHAIN)) {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    println!("cargo::rustc-check-cfg=cfg(shoal_ebpf)");
    println!("cargo::rerun-if-env-changed=SHOAL_EBPF");
    println!("cargo::rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo::rerun-if-env-changed=PATH");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("dataplane sits in the workspace");
    let programs = root.join("ebpf/programs");
    println!(
        "cargo::rerun-if-changed={}",
        root.join("ebpf/common/src").display()
    );

    if let Err(why) = toolchain(&programs) {
        println!(
            "cargo::warning=the ebpf engine is unavailable in this build: {why}; run scripts/setup.sh to install the eBPF toolchain"
        );
        // The engine repeats the reason when asked why it cannot run.
        println!("cargo::rustc-env=SHOAL_EBPF_LEFT_OUT={why}");
        // Look again once scripts/setup.sh has installed something.
        for dir in toolchain_dirs() {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
        return;
    }
    // aya-build relays every line of the nested cargo as a cargo warning,
    // which cargo then repeats on every build; it runs in a child whose
    // output is kept to the rerun directives unless the build fails.
    let child = Command::new(std::env::current_exe().expect("the build script's path"))
        .env(CHILD, programs.as_os_str())
        .env("CARGO_TERM_QUIET", "true")
        .output()
        .expect("running the build script again for the eBPF build");
    let stdout = String::from_utf8_lossy(&child.stdout);
    for line in stdout.lines() {
        let rerun = line.starts_with("cargo:rerun-if") || line.starts_with("cargo::rerun-if");
        if rerun || !child.status.success() {
            println!("{line}");
        }
    }
    // The toolchain is here, so a program that does not build is an error,
    // not a reason to quietly leave the engine out.
    if !child.status.success() {
        panic!(
            "building the eBPF programs in ebpf/programs failed (warnings above): {}",
            String::from_utf8_lossy(&child.stderr).trim()
        );
    }
    println!("cargo::rustc-cfg=shoal_ebpf");
}

/// Why the eBPF programs cannot be built here, if they cannot.
fn toolchain(programs: &Path) -> Result<(), String> {
    if std::env::var_os("SHOAL_EBPF").is_some_and(|v| v == "0") {
        return Err("SHOAL_EBPF=0 turns it off".into());
    }
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return Err("AYA_BUILD_SKIP is set".into());
    }
    // cargo-fuzz builds the dataplane with its own flags and target dir;
    // the fuzz targets never load programs.
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        return Err("fuzzing builds leave it out".into());
    }
    if std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a != "x86_64" && a != "aarch64") {
        return Err("only x86_64 and aarch64 hosts are supported".into());
    }
    if !programs.join("Cargo.toml").is_file() {
        return Err(format!("{} is missing", programs.display()));
    }
    let sysroot = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        .output()
        .map_err(|e| format!("rustup not found ({e})"))?;
    if !sysroot.status.success() {
        return Err(format!("the toolchain {TOOLCHAIN} is not installed"));
    }
    let version = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "-vV"])
        .output()
        .map_err(|e| format!("rustup not found ({e})"))?;
    let version = String::from_utf8_lossy(&version.stdout);
    let llvm = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .unwrap_or("unknown");
    if llvm.split('.').next() != Some(LLVM_MAJOR) {
        return Err(format!(
            "{TOOLCHAIN} has LLVM {llvm}, and bpf-linker reads LLVM {LLVM_MAJOR} bitcode"
        ));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
    {
        return Err(format!("the toolchain {TOOLCHAIN} lacks rust-src"));
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.is_ok_and(|o| o.status.success()) {
        return Err("bpf-linker is not on PATH".into());
    }
    Ok(())
}

/// Where installing the toolchain changes something: cargo's bin directory
/// (bpf-linker) and rustup's toolchains (the nightly, rust-src).
fn toolchain_dirs() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".rustup")));
    [
        cargo_home.map(|c| c.join("bin")),
        rustup_home.map(|r| r.join("toolchains")),
    ]
    .into_iter()
    .flatten()
    .filter(|d| d.is_dir())
    .collect()
}
