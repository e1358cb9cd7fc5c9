//! Network namespaces: creating and removing named ones (as `ip netns
//! add`/`del` do, so `ip netns` sees ours and we see its), resolving them by
//! name or path, and running code inside one on a thread of its own (the
//! calling thread never moves).

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
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

/// Creates the network namespace `name` exactly as `ip netns add NAME` does,
/// brings its loopback interface up, and returns the path of its file.
///
/// Fails with `AlreadyExists` if the name is taken and `InvalidInput` if it
/// is not a valid file name; on any failure nothing is left behind.
pub fn create(name: &str) -> io::Result<PathBuf> {
    validate(name)?;
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {NETNS_RUN_DIR}: {e}")))?;
    make_shared(dir)?;
    let path = dir.join(name);
    if let Err(e) = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
    {
        if e.kind() == io::ErrorKind::AlreadyExists {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "network namespace `{name}` already exists; `ip netns del {name}` removes it"
                ),
            ));
        }
        return Err(io::Error::new(
            e.kind(),
            format!(
                "creating network namespace `{name}`: {}: {e}",
                path.display()
            ),
        ));
    }
    let file = path.clone();
    let made = std::thread::Builder::new()
        .name("netns-add".into())
        .spawn(move || bind_new_here(&file))
        .and_then(|thread| {
            thread
                .join()
                .map_err(|_| io::Error::other("namespace thread panicked"))?
        });
    if let Err(e) = made {
        let _ = detach_and_unlink(&path);
        return Err(io::Error::new(
            e.kind(),
            format!("creating network namespace `{name}`: {e}"),
        ));
    }
    Ok(path)
}

/// Removes the network namespace `name` as `ip netns del NAME` does: its file
/// is unmounted (lazily) and unlinked. The namespace itself lives on while a
/// process or descriptor still uses it. A missing name is not an error.
pub fn remove(name: &str) -> io::Result<()> {
    validate(name)?;
    detach_and_unlink(&Path::new(NETNS_RUN_DIR).join(name)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("removing network namespace `{name}`: {e}"),
        )
    })
}

/// Refuses names that are not a single file name under [`NETNS_RUN_DIR`].
fn validate(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(['/', '\0'])
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid network namespace name {name:?}: it must be 1 to 255 bytes, \
                 without `/` or NUL, and not `.` or `..`"
            ),
        ));
    }
    Ok(())
}

/// Makes `dir` a mount point with shared propagation, as iproute2 does, so
/// that unmounting a namespace file there unmounts it in every mount
/// namespace and the namespace can be freed.
fn make_shared(dir: &Path) -> io::Result<()> {
    let lock = File::open(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", dir.display())))?;
    // Two racing creators could each bind-mount the directory onto itself,
    // stacking mounts without end; iproute2 takes the same lock, and goes on
    // without it if it cannot have it.
    let _ = lock.lock();
    let c_dir = c_path(dir)?;
    let mut made_mount = false;
    loop {
        match mount(None, &c_dir, None, libc::MS_SHARED | libc::MS_REC) {
            Ok(()) => return Ok(()),
            // EINVAL: not a mount point yet.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !made_mount => {
                mount(Some(&c_dir), &c_dir, None, libc::MS_BIND | libc::MS_REC).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("bind-mounting {} onto itself: {e}", dir.display()),
                    )
                })?;
                made_mount = true;
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("making {} a shared mount: {e}", dir.display()),
                ));
            }
        }
    }
}

/// Moves the calling thread, which must be a throwaway one, into a new
/// network namespace, pins it on `file`, and brings its `lo` up.
fn bind_new_here(file: &Path) -> io::Result<()> {
    let target = c_path(file)?;
    // SAFETY: unshare takes no pointers; it moves only the calling thread,
    // which the caller spawned for this and which ends right after.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("unshare: {e}")));
    }
    mount(
        Some(c"/proc/thread-self/ns/net"),
        &target,
        None,
        libc::MS_BIND,
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("bind-mounting it on {}: {e}", file.display()),
        )
    })?;
    bring_up_loopback().map_err(|e| io::Error::new(e.kind(), format!("bringing `lo` up: {e}")))
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn bring_up_loopback() -> io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: ifreq is plain old data for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the descriptor is open and `req` is a valid, NUL-terminated
    // ifreq that the kernel fills in for SIOCGIFFLAGS.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the union holds `ifru_flags`.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as for SIOCGIFFLAGS; the kernel only reads `req`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lazily unmounts and unlinks a namespace file; missing is fine.
fn detach_and_unlink(path: &Path) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    // UMOUNT_NOFOLLOW: a symlink planted in the directory cannot make us
    // detach whatever it points at.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) } != 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point (a file left half made); ENOENT: gone.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(io::Error::new(
                e.kind(),
                format!("unmounting {}: {e}", path.display()),
            ));
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("removing {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or a NUL-terminated string that outlives
    // the call; no data argument is passed.
    let rc = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", path.display()),
        )
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A namespace made for one test, removed when the test ends, pass or fail.
    pub(in crate::sys) struct ScratchNs {
        pub name: String,
        pub path: PathBuf,
    }

    impl ScratchNs {
        pub fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "shoal-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = create(&name).expect("creating a scratch namespace (are we root?)");
            ScratchNs { name, path }
        }
    }

    impl Drop for ScratchNs {
        fn drop(&mut self) {
            let _ = remove(&self.name);
        }
    }

    #[test]
    fn create_makes_a_namespace_with_lo_up_and_remove_unmakes_it() {
        let ns = ScratchNs::new();
        assert!(exists(&ns.name));
        assert_eq!(ns.path, path_of(&ns.name));
        let out = run_in(&ns.path, || {
            Command::new("ip").args(["-o", "link", "show"]).output()
        })
        .unwrap()
        .unwrap();
        let links = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            links.lines().count(),
            1,
            "a fresh namespace has only lo: {links}"
        );
        assert!(links.contains("lo: <LOOPBACK,UP,LOWER_UP>"), "{links}");

        remove(&ns.name).unwrap();
        assert!(!exists(&ns.name));
        remove(&ns.name).unwrap();
    }

    #[test]
    fn create_refuses_a_taken_name() {
        let ns = ScratchNs::new();
        let err = create(&ns.name).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains(&ns.name), "{err}");
        assert!(
            exists(&ns.name),
            "the failed create must not remove the first"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let long = "n".repeat(256);
        for name in ["", ".", "..", "a/b", "/abs", "nul\0", long.as_str()] {
            let err = create(name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
            assert_eq!(
                remove(name).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
