//! A registry of the OCI distribution API, small enough to read, served
//! from a test host: it answers `GET /v2/`, manifests by tag or digest and
//! blobs from what the test pushed, over plain HTTP (the daemons list it
//! with `--insecure-registry`). Images are built here too, from files and
//! Debian's static busybox, so nothing comes from outside.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::lab::{Host, Lab};
use crate::net::wait_until;
use crate::proc::SpawnOpts;

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
        let image = Built::new(files, config)?;
        self.blob(&image.config);
        self.blob(&image.layer);
        let mut c = self
            .content
            .lock()
            .map_err(|_| anyhow::anyhow!("registry content lock poisoned"))?;
        c.manifests
            .insert(format!("{repo}:{tag}"), image.manifest.clone());
        c.manifests
            .insert(format!("{repo}@{}", image.digest), image.manifest);
        Ok(image.digest)
    }
}

/// An image made here: its config, one gzip layer and its OCI manifest.
pub struct Built {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
    /// The manifest's digest: what a registry pins the image to.
    pub digest: String,
}

impl Built {
    /// An image of `files` (path, mode, bytes) and `config` (the image
    /// config's `config` object).
    pub fn new(files: &[(String, u32, Vec<u8>)], config: serde_json::Value) -> Result<Built> {
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
                "digest": digest_of(&config),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest_of(&layer),
                "size": layer.len(),
            }],
        }))?;
        let digest = digest_of(&manifest);
        Ok(Built {
            config,
            layer,
            manifest,
            digest,
        })
    }

    /// Writes it to `dir` as an OCI image layout tagged `tag`: what `umoci`
    /// builds and `skopeo copy oci:DIR:TAG ...` pushes.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> Result<()> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        for bytes in [&self.config, &self.layer, &self.manifest] {
            let hex = digest_of(bytes).trim_start_matches("sha256:").to_owned();
            std::fs::write(blobs.join(hex), bytes)?;
        }
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": self.digest,
                "size": self.manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }
}

/// Debian's `docker-registry` (the distribution project's registry, as
/// `registry:2` runs it), serving plain HTTP on a host of a lab and
/// storing under the lab's directory. The lab stops it with its other
/// processes.
pub struct DockerRegistry {
    /// Where it answers.
    pub addr: SocketAddrV4,
}

impl DockerRegistry {
    /// Starts it on `host`, port `port`; `detach` lets it outlive this
    /// process (the sandbox).
    pub fn start(lab: &mut Lab, host: &Host, port: u16, detach: bool) -> Result<DockerRegistry> {
        let addr = SocketAddrV4::new(host.underlay, port);
        let dir = lab.dir().join(format!("{}-registry", host.name));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n  secret: shoal-sandbox\n",
                data.display()
            ),
        )?;
        let config = config.display().to_string();
        let spawn = SpawnOpts {
            log: Some(dir.join("registry.log")),
            detach,
            ..SpawnOpts::default()
        };
        lab.spawn_opts(&host.netns, &[REGISTRY_BIN, "serve", &config], &spawn)
            .context("starting docker-registry (scripts/setup.sh installs it)")?;
        let path = shoal_dataplane::sys::netns::path_of(&host.netns);
        wait_until(
            &format!("the registry on {addr}"),
            Duration::from_secs(10),
            || {
                shoal_dataplane::sys::netns::run_in(&path, move || {
                    crate::http_get(addr, Duration::from_secs(1)).ok()
                })
                .ok()
                .flatten()
            },
        )?;
        Ok(DockerRegistry { addr })
    }

    /// `HOST:PORT`, as image references and `--insecure-registry` name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Pushes `image` as `repo:tag` from `from`'s namespace with skopeo,
    /// as a user would; returns the full reference.
    pub fn push(
        &self,
        lab: &Lab,
        from: &Host,
        image: &Built,
        repo: &str,
        tag: &str,
    ) -> Result<String> {
        let layout = lab
            .dir()
            .join("layouts")
            .join(format!("{}-{tag}", repo.replace('/', "-")));
        image.write_layout(&layout, tag)?;
        let reference = format!("{}/{repo}:{tag}", self.host());
        let src = format!("oci:{}:{tag}", layout.display());
        let dest = format!("docker://{reference}");
        lab.run_ok(
            &from.netns,
            &[
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                &src,
                &dest,
            ],
        )
        .with_context(|| format!("pushing {reference} with skopeo"))?;
        Ok(reference)
    }
}

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// The demo images of the sandbox and the tutorial stack, made from
/// Debian's static busybox; each serves HTTP from a CGI script (busybox
/// `httpd` runs `/cgi-bin/index.cgi` for `/`).
pub mod demo {
    use anyhow::Result;

    use super::{Built, busybox_files};

    /// `whoami` on port 80: `Hostname:` (the task's name) and
    /// `RemoteAddr:` (the client as the task sees it).
    pub fn whoami() -> Result<Built> {
        cgi(
            80,
            "echo \"Hostname: $(/bin/busybox hostname)\"\n\
             echo \"RemoteAddr: $REMOTE_ADDR:$REMOTE_PORT\"\n",
        )
    }

    /// The tutorial's API (`kickscar/hellodocker`) on port 3000.
    pub fn api() -> Result<Built> {
        cgi(3000, "echo \"hello from api $(/bin/busybox hostname)\"\n")
    }

    /// The tutorial's front (`kickscar/nginx`) on port 80: asks
    /// `$BACKEND_HOST` (`NAME:PORT`) by name over the overlay and shows
    /// both answers. (Debian's static busybox `wget` crashes without the
    /// host's NSS modules; `nc` resolves through the task's DNS alone.)
    pub fn front() -> Result<Built> {
        cgi(
            80,
            "echo \"front $(/bin/busybox hostname)\"\n\
             printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 5 \"${BACKEND_HOST%:*}\" \"${BACKEND_HOST##*:}\" \\\n\
             | /bin/busybox sed '1,/^\\r$/d' | /bin/busybox grep . || echo \"api at $BACKEND_HOST: no answer\"\n",
        )
    }

    fn cgi(port: u16, body: &str) -> Result<Built> {
        let script =
            format!("#!/bin/busybox sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n{body}");
        Built::new(
            &busybox_files(&[("www/cgi-bin/index.cgi", 0o755, script.into_bytes())])?,
            serde_json::json!({
                "Entrypoint": ["/bin/busybox", "httpd", "-f", "-h", "/www"],
                // IPv4 only, so REMOTE_ADDR reads as the client's address.
                "Cmd": ["-p", format!("0.0.0.0:{port}")],
                "ExposedPorts": {format!("{port}/tcp"): {}},
                "StopSignal": "SIGTERM",
            }),
        )
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
