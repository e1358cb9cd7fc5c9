//! Network namespaces: resolving them by name or path, and running code
//! inside one on a thread of its own (the calling thread never moves).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where `ip netns add NAME` puts its namespaces.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// The file of a network namespace given by name (`ip netns` style) or path
/// (`/proc/PID/ns/net`, a bind mount made by a container runtime).
pub fn path_of(name_or_path: &str) -> PathBuf {
    if name_or_path.starts_with('/') {
        PathBuf::from(name_or_path)
    } else {
        Path::new(NETNS_RUN_DIR).join(name_or_path)
    }
}

/// Whether `name_or_path` names an existing network namespace.
pub fn exists(name_or_path: &str) -> bool {
    path_of(name_or_path).exists()
}

/// Moves the calling thread into the network namespace at `path` for good.
/// Sockets and devices it opens afterwards belong to that namespace.
pub fn enter(path: &Path) -> io::Result<()> {
    let file = File::open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {}: {e}", path.display()),
        )
    })?;
    // SAFETY: `file` is an open descriptor for the duration of the call, and
    // setns only changes the namespace of the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("entering network namespace {}: {e}", path.display()),
        ));
    }
    Ok(())
}

/// Runs `f` on a new thread inside the network namespace at `path` and
/// returns its result. The caller's own namespace never changes.
pub fn run_in<T, F>(path: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            enter(&path)?;
            Ok(f())
        })?
        .join()
        .map_err(|_| io::Error::other("thread inside the network namespace panicked"))?
}
