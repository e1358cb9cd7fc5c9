use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// A layer built entry by entry.
#[derive(Default)]
struct Layer {
    builder: Option<tar::Builder<Vec<u8>>>,
}

impl Layer {
    fn b(&mut self) -> &mut tar::Builder<Vec<u8>> {
        self.builder
            .get_or_insert_with(|| tar::Builder::new(Vec::new()))
    }

    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        // Paths as layers carry them, `..` included, bypassing the
        // builder's checks.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    fn file(mut self, path: &str, body: &str) -> Layer {
        let h = Self::header(path, tar::EntryType::Regular, body.len() as u64, 0o644);
        self.b().append(&h, body.as_bytes()).unwrap();
        self
    }

    fn dir(mut self, path: &str) -> Layer {
        let h = Self::header(path, tar::EntryType::Directory, 0, 0o755);
        self.b().append(&h, io::empty()).unwrap();
        self
    }

    fn link(mut self, path: &str, kind: tar::EntryType, target: &str) -> Layer {
        let mut h = Self::header(path, kind, 0, 0o777);
        h.set_link_name(target).unwrap();
        h.set_cksum();
        self.b().append(&h, io::empty()).unwrap();
        self
    }

    fn bytes(mut self) -> Vec<u8> {
        self.b();
        self.builder.take().unwrap().into_inner().unwrap()
    }

    fn gzip(self) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.bytes()).unwrap();
        gz.finish().unwrap()
    }
}

/// Every path under `root` with what it is: `f:body`, `d`, `l:target`.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(at).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                out.push(format!(
                    "{rel} l:{}",
                    std::fs::read_link(&p).unwrap().display()
                ));
            } else if t.is_dir() {
                out.push(format!("{rel} d"));
                walk(root, &p, out);
            } else {
                out.push(format!("{rel} f:{}", std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn layers_add_replace_and_white_out_files() {
    let root = tempfile::tempdir().unwrap();
    let base = Layer::default()
        .dir("etc/")
        .file("etc/os-release", "base")
        .file("etc/motd", "hello")
        .dir("www/")
        .file("www/index.html", "v1")
        .file("www/old.html", "old")
        .dir("www/sub/")
        .file("www/sub/deep", "deep")
        .link("bin", tar::EntryType::Symlink, "usr/bin")
        .link("etc/issue", tar::EntryType::Link, "etc/motd");
    apply(root.path(), &base.gzip()[..], Compression::Gzip).unwrap();
    let meta = std::fs::metadata(root.path().join("etc/os-release")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let same = std::fs::metadata(root.path().join("etc/issue")).unwrap();
    assert_eq!(
        same.ino(),
        std::fs::metadata(root.path().join("etc/motd"))
            .unwrap()
            .ino()
    );

    let top = Layer::default()
        .file("etc/.wh.motd", "")
        .file("etc/os-release", "top")
        // The marker after a file of the same layer: the file stays.
        .file("www/new.html", "new")
        .file("www/.wh..wh..opq", "")
        .file("www/sub/added", "added")
        .file(".wh.bin", "");
    apply(root.path(), &top.bytes()[..], Compression::None).unwrap();
    assert_eq!(
        tree(root.path()),
        [
            "etc d",
            "etc/issue f:hello",
            "etc/os-release f:top",
            "www d",
            "www/new.html f:new",
            "www/sub d",
            "www/sub/added f:added",
        ]
    );
}

#[test]
fn a_layer_without_its_end_blocks_is_accepted() {
    let root = tempfile::tempdir().unwrap();
    let mut bytes = Layer::default().file("a", "body").bytes();
    // Data padded to its block, no end-of-archive blocks (umoci's layers).
    bytes.truncate(1024);
    apply(root.path(), &bytes[..], Compression::None).unwrap();
    assert_eq!(tree(root.path()), ["a f:body"]);
}

#[test]
fn nothing_is_written_outside_the_root() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let outside = scratch.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "keep").unwrap();
    let outside_s = outside.display().to_string();
    let secret_s = outside.join("secret").display().to_string();
    let cases = [
        ("dot-dot", Layer::default().file("../outside/pwned", "x")),
        (
            "deep dot-dot",
            Layer::default().file("a/../../outside/pwned", "x"),
        ),
        (
            "through a symlink",
            Layer::default()
                .link("evil", tar::EntryType::Symlink, &outside_s)
                .file("evil/pwned", "x"),
        ),
        (
            "hard link out",
            Layer::default().link("h", tar::EntryType::Link, "../outside/secret"),
        ),
        (
            "hard link to an absolute path",
            Layer::default().link("h", tar::EntryType::Link, &secret_s),
        ),
    ];
    for (what, layer) in cases {
        let err = apply(&root, &layer.bytes()[..], Compression::None).unwrap_err();
        assert!(
            matches!(err, LayerError::Escape(_) | LayerError::Unpack { .. }),
            "{what}: {err:?}"
        );
        let mut left: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["secret"], "{what} wrote outside");
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "keep",
            "{what}"
        );
        assert_eq!(
            std::fs::metadata(outside.join("secret")).unwrap().nlink(),
            1,
            "{what}"
        );
    }
    // A whiteout through a symlink does not remove what is outside.
    let layer = Layer::default()
        .link("out", tar::EntryType::Symlink, &outside_s)
        .file("out/.wh.secret", "")
        .file(".wh.out/secret", "");
    let _ = apply(&root, &layer.bytes()[..], Compression::None);
    assert!(outside.join("secret").exists());
}

#[test]
fn garbage_is_refused_as_an_archive() {
    let root = tempfile::tempdir().unwrap();
    let err = apply(
        root.path(),
        &b"not a gzip stream at all"[..],
        Compression::Gzip,
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::Archive(_)), "{err:?}");
}
