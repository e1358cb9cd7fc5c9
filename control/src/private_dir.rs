//! The daemon's state directory is private: it holds the node's key, and
//! on managers the Raft log with the cluster CA's key. Folders are 0700
//! and files 0600 under it, whoever creates them (the umask is set when
//! the swarm starts, so redb's file and task logs get those modes too),
//! and a directory left by an older daemon with wider modes is tightened
//! then.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The daemon's file-mode creation mask: nothing for group or others.
pub const UMASK: u32 = 0o077;

/// Sets the daemon's umask, creates `dir` (0700) if needed, and takes
/// group and other access away from everything under it. Returns how many
/// entries had to be tightened.
pub fn claim(dir: &Path) -> io::Result<usize> {
    shoal_dataplane::sys::process::set_umask(UMASK);
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    tighten(dir)
}

/// Makes `path` and everything under it private: folders 0700, other
/// entries lose their group and other bits. Symbolic links are neither
/// followed nor changed.
pub fn tighten(path: &Path) -> io::Result<usize> {
    let meta = fs::symlink_metadata(path)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Ok(0);
    }
    let mode = meta.permissions().mode() & 0o7777;
    let wanted = if kind.is_dir() { 0o700 } else { mode & !0o077 };
    let mut changed = 0;
    if mode != wanted {
        fs::set_permissions(path, Permissions::from_mode(wanted))?;
        changed += 1;
    }
    if kind.is_dir() {
        for entry in fs::read_dir(path)? {
            changed += tighten(&entry?.path())?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_wide_open_tree_is_tightened_and_links_are_left_alone() {
        let root = std::env::temp_dir().join(format!("shoal-private-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let raft = root.join("swarm/raft");
        fs::create_dir_all(&raft).unwrap();
        fs::write(raft.join("raft.redb"), b"x").unwrap();
        fs::write(root.join("tool"), b"x").unwrap();
        let outside = std::env::temp_dir().join(format!("shoal-outside-{}", std::process::id()));
        fs::write(&outside, b"x").unwrap();
        fs::set_permissions(&outside, Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        for (p, m) in [
            (root.clone(), 0o755),
            (root.join("swarm"), 0o777),
            (raft.clone(), 0o755),
            (raft.join("raft.redb"), 0o644),
            (root.join("tool"), 0o755),
        ] {
            fs::set_permissions(&p, Permissions::from_mode(m)).unwrap();
        }

        assert_eq!(tighten(&root).unwrap(), 5);
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("swarm")), 0o700);
        assert_eq!(mode(&raft), 0o700);
        assert_eq!(mode(&raft.join("raft.redb")), 0o600);
        assert_eq!(mode(&root.join("tool")), 0o700, "the owner keeps its bits");
        assert_eq!(mode(&outside), 0o644, "a link is not followed");
        assert_eq!(tighten(&root).unwrap(), 0, "nothing left to do");

        fs::remove_dir_all(&root).unwrap();
        fs::remove_file(&outside).unwrap();
    }
}
