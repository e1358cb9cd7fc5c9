//! The few `ip` (iproute2) commands the harness needs: create and delete
//! named network namespaces, list them, and find the processes inside one.
//! Every failure names the command and carries its stderr.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use shoal_dataplane::sys::netns::NETNS_RUN_DIR;

/// Serializes `ip netns add` inside this process: the first call makes
/// `/var/run/netns` a shared mount, and concurrent first calls can stack
/// mounts on top of each other.
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// Runs `ip ARGS...` and returns its stdout, or an error with its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running `ip`: is iproute2 installed and in PATH?")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates the named network namespace and brings its loopback up.
pub(crate) fn netns_add(name: &str) -> Result<()> {
    {
        let _guard = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
        ip(&["netns", "add", name]).with_context(|| {
            format!("creating network namespace `{name}` (needs root; `ip netns del {name}` removes a leftover)")
        })?;
    }
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes the named network namespace after killing every process still
/// inside it, and removes its `/etc/netns/NAME` directory (where resolvers
/// put its `resolv.conf`). A namespace that is already gone is not an error.
pub(crate) fn netns_del(name: &str) -> Result<()> {
    if Path::new(NETNS_RUN_DIR).join(name).exists() {
        for pid in netns_pids(name) {
            crate::proc::kill_pid(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if let Err(e) = ip(&["netns", "del", name])
            && Path::new(NETNS_RUN_DIR).join(name).exists()
        {
            return Err(e);
        }
    }
    let etc = Path::new("/etc/netns").join(name);
    if etc.exists() {
        std::fs::remove_dir_all(&etc).with_context(|| format!("removing {}", etc.display()))?;
    }
    Ok(())
}

/// The pids of the processes whose network namespace is the named one.
pub(crate) fn netns_pids(name: &str) -> Vec<u32> {
    ip(&["netns", "pids", name])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The names of all named network namespaces (`ip netns list`).
pub fn netns_list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}
