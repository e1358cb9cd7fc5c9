//! A registry of the OCI distribution API, small enough to read, served
//! from a test host: it answers `GET /v2/`, manifests by tag or digest and
//! blobs from what the test pushed, over plain HTTP (the daemons list it
//! with `--insecure-registry`). Images are built here too, from files and
//! Debian's static busybox, so nothing comes from outside.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::lab::Host;

#[derive(Default)]
struct Content {
    manifests: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
}

/// A running registry; it stops when dropped.
pub struct Registry {
    /// Where it answers.
    pub addr: SocketAddrV4,
    content: Arc<Mutex<Content>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Registry {
    /// Serves on `host`'s underlay address, port `port`.
    pub fn start(host: &Host, port: u16) -> Result<Registry> {
        let addr = SocketAddrV4::new(host.underlay, port);
        let path = shoal_dataplane::sys::netns::path_of(&host.netns);
        let listener = shoal_dataplane::sys::netns::run_in(&path, move || TcpListener::bind(addr))
            .context("entering the registry's host")?
            .with_context(|| format!("binding the registry to {addr}"))?;
        listener.set_nonblocking(true)?;
        let content: Arc<Mutex<Content>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (content, stop) = (content.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => serve(conn, &content),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(Registry {
            addr,
            content,
            stop,
            thread: Some(thread),
        })
    }

    /// `HOST:PORT`, as image references and `--insecure-registry` name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    fn blob(&self, bytes: &[u8]) -> String {
        let d = digest_of(bytes);
        if let Ok(mut c) = self.content.lock() {
            c.blobs.insert(d.clone(), bytes.to_vec());
        }
        d
    }

    /// Pushes an image of one gzip layer of `files` (path, mode, bytes) and
    /// `config` (the image config's `config` object) as `repo:tag`;
    /// returns the manifest digest.
    pub fn push(
        &self,
        repo: &str,
        tag: &str,
        files: &[(String, u32, Vec<u8>)],
        config: serde_json::Value,
    ) -> Result<String> {
        let layer = gzip_tar(files)?;
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": []},
        }))?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": self.blob(&config),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": self.blob(&layer),
                "size": layer.len(),
            }],
        }))?;
        let digest = digest_of(&manifest);
        let mut c = self
            .content
            .lock()
            .map_err(|_| anyhow::anyhow!("registry content lock poisoned"))?;
        c.manifests
            .insert(format!("{repo}:{tag}"), manifest.clone());
        c.manifests.insert(format!("{repo}@{digest}"), manifest);
        Ok(digest)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The files of a busybox image: the static binary as `/bin/busybox` and
/// its `sh`, plus `extra`.
pub fn busybox_files(extra: &[(&str, u32, Vec<u8>)]) -> Result<Vec<(String, u32, Vec<u8>)>> {
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (Debian's busybox-static, installed by scripts/setup.sh)")?;
    let mut files = vec![("bin/busybox".to_owned(), 0o755, busybox)];
    files.extend(
        extra
            .iter()
            .map(|(p, m, b)| ((*p).to_owned(), *m, b.clone())),
    );
    Ok(files)
}

fn gzip_tar(files: &[(String, u32, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, path, &bytes[..])?;
    }
    let tar = b.into_inner()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    Ok(gz.finish()?)
}

fn serve(mut conn: TcpStream, content: &Mutex<Content>) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let Ok(c) = content.lock() else {
        return;
    };
    let (status, ctype, body, digest) = answer(&c, path);
    drop(c);
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(d) = digest {
        out.push_str(&format!("Docker-Content-Digest: {d}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if method != "HEAD" {
        bytes.extend_from_slice(&body);
    }
    let _ = conn.write_all(&bytes);
}

type Answer = (&'static str, &'static str, Vec<u8>, Option<String>);

fn answer(c: &Content, path: &str) -> Answer {
    let unknown = |code: &str| -> Answer {
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"unknown"}}]}}"#);
        ("404 Not Found", "application/json", body.into_bytes(), None)
    };
    if path == "/v2/" {
        return ("200 OK", "application/json", b"{}".to_vec(), None);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return unknown("NAME_UNKNOWN");
    };
    if let Some((repo, reference)) = rest.split_once("/manifests/") {
        let sep = if reference.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        return match c.manifests.get(&format!("{repo}{sep}{reference}")) {
            Some(m) => (
                "200 OK",
                "application/vnd.oci.image.manifest.v1+json",
                m.clone(),
                Some(digest_of(m)),
            ),
            None => unknown("MANIFEST_UNKNOWN"),
        };
    }
    if let Some((_, digest)) = rest.split_once("/blobs/") {
        return match c.blobs.get(digest) {
            Some(b) => ("200 OK", "application/octet-stream", b.clone(), None),
            None => unknown("BLOB_UNKNOWN"),
        };
    }
    unknown("NAME_UNKNOWN")
}
