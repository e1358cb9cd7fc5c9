//! The resolver files shoal writes for named task namespaces, and the
//! record of them that lets a restarted daemon clean up after a crash.
//!
//! `ip netns exec NAME` mounts `/etc/netns/NAME/resolv.conf` over
//! `/etc/resolv.conf` (DESIGN.md §3), so that is where a task learns about
//! 127.0.0.11. A file that was there before is kept in the record and put
//! back when the namespace leaves the tables. The record is
//! `<state-dir>/dns.json`, rewritten whenever the set of files changes.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DnsError;

/// Where `ip netns exec` looks for per-namespace configuration files.
pub const ETC_NETNS: &str = "/etc/netns";

/// What a task's resolv.conf says: our resolver, and every name tried as
/// given first (Swarm's names have dots: `tasks.web`, `web.net`).
pub const CONTENT: &str = "# written by shoal: the embedded DNS resolver of this network namespace\n\
                           nameserver 127.0.0.11\n\
                           options ndots:0\n";

/// One file written: enough to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub path: PathBuf,
    /// Whether shoal created the directory holding it.
    pub created_dir: bool,
    /// What the file held before, to put back.
    pub previous: Option<String>,
}

/// The resolv.conf of the named namespace `netns`; `None` for a namespace
/// given by path (`/proc/PID/ns/net`), whose mounts are its owner's business.
pub fn path_for(netns: &str) -> Option<PathBuf> {
    let plain = !netns.is_empty() && netns != "." && netns != ".." && !netns.contains('/');
    plain.then(|| Path::new(ETC_NETNS).join(netns).join("resolv.conf"))
}

/// Writes [`CONTENT`] to `path`, creating its directory if needed.
pub fn write(path: &Path) -> Result<Written, DnsError> {
    let fail = |source: io::Error| DnsError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new(ETC_NETNS));
    let created_dir = !dir.exists();
    if created_dir {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(fail)?;
    }
    let previous = std::fs::read_to_string(path)
        .ok()
        .filter(|text| text != CONTENT);
    std::fs::write(path, CONTENT).map_err(fail)?;
    // Readable by every user in the task, whatever the daemon's umask.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(fail)?;
    Ok(Written {
        path: path.to_path_buf(),
        created_dir,
        previous,
    })
}

/// Undoes [`write`]: puts the previous file back or removes ours, then the
/// directory if shoal created it and it is empty. A file someone else has
/// changed since is left alone. Best effort: problems are logged.
pub fn undo(w: &Written) {
    match std::fs::read_to_string(&w.path) {
        Ok(text) if text == CONTENT => {
            let done = match &w.previous {
                Some(previous) => std::fs::write(&w.path, previous),
                None => std::fs::remove_file(&w.path),
            };
            if let Err(e) = done {
                tracing::warn!("dns: cannot restore {}: {e}", w.path.display());
            }
        }
        Ok(_) => tracing::info!(
            "dns: {} was changed by someone else; leaving it",
            w.path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("dns: cannot read {}: {e}", w.path.display()),
    }
    if w.created_dir
        && let Some(dir) = w.path.parent()
    {
        // Fails when not empty, which is what we want.
        let _ = std::fs::remove_dir(dir);
    }
}

/// `<state-dir>/dns.json`: the files written, as a JSON list of [`Written`].
#[derive(Debug, Clone)]
pub struct Record {
    file: PathBuf,
}

impl Record {
    pub fn new(state_dir: &Path) -> Record {
        Record {
            file: state_dir.join("dns.json"),
        }
    }

    /// Undoes every file a previous daemon recorded (it crashed, or was
    /// killed), then empties the record.
    pub fn clean_leftovers(&self) -> Result<(), DnsError> {
        if let Ok(text) = std::fs::read_to_string(&self.file) {
            match serde_json::from_str::<Vec<Written>>(&text) {
                Ok(list) => list.iter().for_each(undo),
                Err(e) => tracing::warn!(
                    "dns: ignoring {}, which is not a list of files: {e}",
                    self.file.display()
                ),
            }
        }
        self.save(&[])
    }

    /// Replaces the record with `written`; an empty list removes the file.
    pub fn save(&self, written: &[Written]) -> Result<(), DnsError> {
        let fail = |source: io::Error| DnsError::WriteFile {
            path: self.file.clone(),
            source,
        };
        if written.is_empty() {
            return match std::fs::remove_file(&self.file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(fail(e)),
                _ => Ok(()),
            };
        }
        let text = serde_json::to_string_pretty(written).map_err(io::Error::other);
        let mut tmp = self.file.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, text.map_err(fail)?).map_err(fail)?;
        std::fs::rename(&tmp, &self.file).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shoal-dns-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn paths_only_for_plain_names() {
        assert_eq!(
            path_for("web1"),
            Some(PathBuf::from("/etc/netns/web1/resolv.conf"))
        );
        for bad in ["", ".", "..", "/proc/1/ns/net", "a/b"] {
            assert_eq!(path_for(bad), None, "{bad}");
        }
    }

    #[test]
    fn write_then_undo_restores_what_was_there() {
        let dir = scratch("undo");
        let fresh = dir.join("new").join("resolv.conf");
        let w = write(&fresh).unwrap();
        assert!(w.created_dir && w.previous.is_none());
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), CONTENT);
        undo(&w);
        assert!(!fresh.parent().unwrap().exists());

        let old = dir.join("resolv.conf");
        std::fs::write(&old, "nameserver 198.18.0.53\n").unwrap();
        let w = write(&old).unwrap();
        assert_eq!(w.previous.as_deref(), Some("nameserver 198.18.0.53\n"));
        undo(&w);
        assert_eq!(
            std::fs::read_to_string(&old).unwrap(),
            "nameserver 198.18.0.53\n"
        );

        // Changed by someone else since: left alone.
        let w = write(&old).unwrap();
        std::fs::write(&old, "nameserver 198.18.0.54\n").unwrap();
        undo(&w);
        assert_eq!(
            std::fs::read_to_string(&old).unwrap(),
            "nameserver 198.18.0.54\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn record_cleans_leftovers_of_a_crash() {
        let dir = scratch("record");
        let file = dir.join("t1").join("resolv.conf");
        let record = Record::new(&dir);
        let w = write(&file).unwrap();
        record.save(std::slice::from_ref(&w)).unwrap();
        assert!(dir.join("dns.json").exists());
        // The next daemon starts.
        Record::new(&dir).clean_leftovers().unwrap();
        assert!(!file.exists() && !dir.join("t1").exists());
        assert!(!dir.join("dns.json").exists());
        // A record that is not JSON is ignored, not fatal.
        std::fs::write(dir.join("dns.json"), "{{{").unwrap();
        record.clean_leftovers().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
