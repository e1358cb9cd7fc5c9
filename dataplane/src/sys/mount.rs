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

/// One line of `/proc/PID/mountinfo` that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    mount_point: String,
    fstype: String,
    super_options: String,
}

fn mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?.to_owned();
            let mut r = right.split(' ');
            let fstype = r.next()?.to_owned();
            let _source = r.next()?;
            let super_options = r.next().unwrap_or("").to_owned();
            Some(MountEntry {
                mount_point,
                fstype,
                super_options,
            })
        })
        .collect()
}

/// The cgroup mounts of PID 1's namespace to make again in ours, in
/// order: the tmpfs holding them (hybrid and v1 hosts), then each
/// hierarchy. Empty when ours has cgroup mounts already.
fn cgroup_mounts(ours: &str, host: &str) -> Vec<MountEntry> {
    let is_cgroup = |m: &MountEntry| m.fstype == "cgroup" || m.fstype == "cgroup2";
    if mountinfo(ours).iter().any(is_cgroup) {
        return Vec::new();
    }
    mountinfo(host)
        .into_iter()
        .filter(|m| {
            m.mount_point.starts_with("/sys/fs/cgroup")
                && (is_cgroup(m) || (m.fstype == "tmpfs" && m.mount_point == "/sys/fs/cgroup"))
        })
        .collect()
}

/// When this process's mount namespace shows no cgroup hierarchy while
/// PID 1's does (as under `ip netns exec`, which mounts a fresh sysfs in
/// a mount namespace of its own), mounts the hierarchies PID 1 has, so an
/// OCI runtime can place containers in cgroups. In PID 1's own namespace
/// both show the same mounts, so nothing is done there; returns how many
/// mounts it made.
pub fn restore_cgroups() -> io::Result<usize> {
    let ours = std::fs::read_to_string("/proc/self/mountinfo")?;
    let host = std::fs::read_to_string("/proc/1/mountinfo")?;
    let wanted = cgroup_mounts(&ours, &host);
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    for m in &wanted {
        let target = Path::new(&m.mount_point);
        std::fs::create_dir_all(target)?;
        let data = match m.fstype.as_str() {
            "tmpfs" => "mode=755".to_owned(),
            // The controllers (or name=) pick the existing hierarchy.
            "cgroup" => m
                .super_options
                .split(',')
                .filter(|o| *o != "rw" && *o != "ro")
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        };
        let fstype = std::ffi::CString::new(m.fstype.as_str()).map_err(io::Error::other)?;
        let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
        let target_c = c_path(target)?;
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target_c.as_ptr(),
                fstype.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mounting {} at {}: {e}", m.fstype, m.mount_point),
            ));
        }
    }
    Ok(wanted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 1 0:40 / /run rw - tmpfs tmpfs rw
";

    #[test]
    fn the_hosts_cgroup_mounts_are_made_again_only_when_missing() {
        let ours = "23 1 0:50 / /sys rw - sysfs sysfs rw\n";
        let got: Vec<(String, String)> = cgroup_mounts(ours, HOST)
            .into_iter()
            .map(|m| (m.mount_point, m.fstype))
            .collect();
        let want = [
            ("/sys/fs/cgroup", "tmpfs"),
            ("/sys/fs/cgroup/cpu", "cgroup"),
            ("/sys/fs/cgroup/systemd", "cgroup"),
            ("/sys/fs/cgroup/unified", "cgroup2"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
        );
        assert!(cgroup_mounts(HOST, HOST).is_empty());
    }
}
