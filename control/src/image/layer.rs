//! Applying an image layer (a tar stream, gzip-compressed or not) onto a
//! root filesystem, as the OCI image spec describes changesets: entries
//! add or replace files, `.wh.NAME` removes `NAME` of the layers below,
//! `.wh..wh..opq` hides everything the layers below put in its folder.
//!
//! Nothing is written outside the root: entries whose path has `..`, or
//! that would go through a symbolic link pointing out of the root, and
//! hard links to a target outside it, are refused (the `tar` crate's
//! `unpack_in` checks both) and the layer fails.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// The whiteout prefix of the OCI image spec.
const WHITEOUT: &str = ".wh.";
/// The opaque-folder marker.
const OPAQUE: &str = ".wh..wh..opq";
/// Two zero blocks and a spare one: some tools (umoci) end layers without
/// the end-of-archive blocks, which Go's reader accepts and `tar` does not.
const END_OF_ARCHIVE: u64 = 1536;

/// Why a layer could not be applied.
#[derive(Debug, Error)]
pub enum LayerError {
    /// The archive is not a tar stream (or not gzip when it says so).
    #[error("the layer is not a valid tar archive: {0}")]
    Archive(io::Error),
    /// An entry would land outside the root.
    #[error("the layer's entry `{0}` points outside the image's root filesystem; refused")]
    Escape(String),
    /// Writing the entry failed.
    #[error("unpacking `{path}`: {source}")]
    Unpack {
        /// The entry.
        path: String,
        /// What went wrong.
        source: io::Error,
    },
}

/// How a layer's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip.
    Gzip,
}

/// Applies the layer read from `reader` onto `root`.
pub fn apply(root: &Path, reader: impl Read, compression: Compression) -> Result<(), LayerError> {
    match compression {
        Compression::None => apply_tar(root, reader),
        Compression::Gzip => apply_tar(root, flate2::read::GzDecoder::new(reader)),
    }
}

fn apply_tar(root: &Path, reader: impl Read) -> Result<(), LayerError> {
    let padded = reader.chain(io::repeat(0).take(END_OF_ARCHIVE));
    let mut archive = tar::Archive::new(padded);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    // What this layer wrote, so that an opaque marker hides only what the
    // layers below put in its folder, whatever the order of entries.
    let mut added: HashSet<PathBuf> = HashSet::new();
    let mut opaque: Vec<PathBuf> = Vec::new();
    for entry in archive.entries().map_err(LayerError::Archive)? {
        let mut entry = entry.map_err(LayerError::Archive)?;
        let raw = entry.path().map_err(LayerError::Archive)?.into_owned();
        let shown = raw.display().to_string();
        let Some(rel) = inside(&raw) else {
            return Err(LayerError::Escape(shown));
        };
        let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
            // The root itself ("./"): nothing to write.
            continue;
        };
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if name == OPAQUE {
            opaque.push(parent);
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            remove_below(root, &parent.join(hidden)).map_err(|source| LayerError::Unpack {
                path: shown,
                source,
            })?;
            continue;
        }
        let unpacked = entry.unpack_in(root).map_err(|source| {
            if source.to_string().contains("outside of") {
                LayerError::Escape(shown.clone())
            } else {
                LayerError::Unpack {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
        if !unpacked {
            return Err(LayerError::Escape(shown));
        }
        for ancestor in rel.ancestors() {
            if !added.insert(ancestor.to_path_buf()) {
                break;
            }
        }
    }
    for folder in opaque {
        hide_lower(root, &folder, &added).map_err(|source| LayerError::Unpack {
            path: folder.join(OPAQUE).display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// `path` relative to the root, without `.` and leading `/`; `None` when
/// it has `..` (a layer never needs one).
fn inside(path: &Path) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => rel.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(rel)
}

/// The real location of `rel` under `root`, when every folder on the way
/// is a real folder (not a symbolic link), so removing it cannot reach out
/// of the root; `None` when it does not exist.
fn real_path(root: &Path, rel: &Path) -> io::Result<Option<PathBuf>> {
    let mut at = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let last = i + 1 == parts.len();
        if !last && !meta.is_dir() {
            // A file or a link in the middle: what is below is not in
            // this root (or does not exist).
            return Ok(None);
        }
    }
    Ok(Some(at))
}

/// Removes `rel` (a file, a link, or a whole folder) from `root`.
fn remove_below(root: &Path, rel: &Path) -> io::Result<()> {
    let Some(path) = real_path(root, rel)? else {
        return Ok(());
    };
    if std::fs::symlink_metadata(&path)?.is_dir() {
        std::fs::remove_dir_all(&path)
    } else {
        std::fs::remove_file(&path)
    }
}

/// Removes from the folder `rel` whatever this layer did not add.
fn hide_lower(root: &Path, rel: &Path, added: &HashSet<PathBuf>) -> io::Result<()> {
    let Some(folder) = real_path(root, rel)? else {
        return Ok(());
    };
    if !std::fs::symlink_metadata(&folder)?.is_dir() {
        return Ok(());
    }
    for child in std::fs::read_dir(&folder)? {
        let child = child?;
        let child_rel = rel.join(child.file_name());
        if added.contains(&child_rel) {
            if child.file_type()?.is_dir() {
                hide_lower(root, &child_rel, added)?;
            }
            continue;
        }
        remove_below(root, &child_rel)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
