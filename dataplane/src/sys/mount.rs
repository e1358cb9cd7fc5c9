//! Overlay mounts: an image task's root is its own writable layer over the
//! image's shared, read-only root filesystem.

use std::io;
use std::path::Path;

use super::netns::c_path;

/// Mounts at `target` an overlay of `upper` (writable, with `work` as its
/// scratch folder on the same filesystem) over `lower` (read-only).
pub fn overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    for p in [lower, upper, work] {
        let s = p.to_string_lossy();
        // Overlay's option syntax has no escaping for these.
        if s.contains([',', ':', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{s}: a path with ',' or ':' cannot be an overlay layer"),
            ));
        }
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let options = std::ffi::CString::new(options).map_err(io::Error::other)?;
    let target_c = c_path(target)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            target_c.as_ptr(),
            c"overlay".as_ptr(),
            libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mounting an overlay at {}: {e}", target.display()),
        ));
    }
    Ok(())
}

/// Detaches whatever is mounted at `target`; nothing mounted there is not
/// an error.
pub fn unmount(target: &Path) -> io::Result<()> {
    let target_c = c_path(target)?;
    // SAFETY: the path is a NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(target_c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Ok(());
        }
        return Err(io::Error::new(
            e.kind(),
            format!("unmounting {}: {e}", target.display()),
        ));
    }
    Ok(())
}

/// True when something is mounted at `path` (its device differs from its
/// parent's).
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(Ok(parent))) = (
        std::fs::symlink_metadata(path),
        path.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    me.dev() != parent.dev()
}
