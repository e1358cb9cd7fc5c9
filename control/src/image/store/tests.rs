//! Pulls from a small registry served on 127.0.0.1 by the test: it
//! answers the distribution API's manifest and blob requests from what the
//! test put in it, and counts the blob requests. It may want credentials,
//! as HTTP basic authentication or traded for a token at its `/token`
//! endpoint, as docker's registries do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn digest_of(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// What the registry wants before it answers under `/v2/`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    Open,
    /// `Authorization: Basic` with [`USER`] and [`PASSWORD`].
    Basic,
    /// `Authorization: Bearer` with the token `/token` gives for them.
    Bearer,
}

const USER: &str = "alice";
const PASSWORD: &str = "s3cret";
const TOKEN: &str = "token-for-alice";

#[derive(Default)]
struct Content {
    /// `repo:tag` and `repo@digest` to manifest bytes.
    manifests: HashMap<String, Vec<u8>>,
    /// digest to bytes served (which a test may tamper with).
    blobs: HashMap<String, Vec<u8>>,
}

struct Registry {
    addr: SocketAddr,
    content: Arc<Mutex<Content>>,
    blob_gets: Arc<AtomicUsize>,
}

/// One HTTP answer.
struct Reply {
    status: &'static str,
    ctype: &'static str,
    body: Vec<u8>,
    headers: Vec<String>,
}

impl Reply {
    fn ok(ctype: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status: "200 OK",
            ctype,
            body,
            headers: Vec::new(),
        }
    }

    fn error(status: &'static str, code: &str) -> Reply {
        Reply {
            status,
            ctype: "application/json",
            body: format!(r#"{{"errors":[{{"code":"{code}","message":"x","detail":null}}]}}"#)
                .into_bytes(),
            headers: Vec::new(),
        }
    }
}

impl Registry {
    async fn start() -> Registry {
        Registry::guarded(Guard::Open).await
    }

    async fn guarded(guard: Guard) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let content: Arc<Mutex<Content>> = Arc::default();
        let blob_gets = Arc::new(AtomicUsize::new(0));
        let (c, g) = (content.clone(), blob_gets.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (c, g) = (c.clone(), g.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let mut words = text.split_whitespace();
                    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    let authorization = text.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("authorization")
                            .then(|| value.trim().to_owned())
                    });
                    let reply = match check(guard, addr, path, authorization.as_deref()) {
                        Some(refusal) => refusal,
                        None => answer(&c, &g, path),
                    };
                    let mut out = format!(
                        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
                         Connection: close\r\n",
                        reply.status,
                        reply.ctype,
                        reply.body.len()
                    );
                    for h in &reply.headers {
                        out.push_str(&format!("{h}\r\n"));
                    }
                    out.push_str("\r\n");
                    let mut bytes = out.into_bytes();
                    if method != "HEAD" {
                        bytes.extend_from_slice(&reply.body);
                    }
                    let _ = conn.write_all(&bytes).await;
                });
            }
        });
        Registry {
            addr,
            content,
            blob_gets,
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn blob(&self, bytes: &[u8]) -> String {
        let d = digest_of(bytes);
        self.content
            .lock()
            .unwrap()
            .blobs
            .insert(d.clone(), bytes.to_vec());
        d
    }

    /// Pushes an image of `layers` (bytes, media type) under `repo:tag`;
    /// returns the manifest digest.
    fn push(&self, repo: &str, tag: &str, config: &str, layers: &[(Vec<u8>, &str)]) -> String {
        let config_digest = self.blob(config.as_bytes());
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|(bytes, media_type)| {
                serde_json::json!({
                    "mediaType": media_type,
                    "digest": self.blob(bytes),
                    "size": bytes.len(),
                })
            })
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers,
        }))
        .unwrap();
        let digest = digest_of(&manifest);
        let mut c = self.content.lock().unwrap();
        c.manifests
            .insert(format!("{repo}:{tag}"), manifest.clone());
        c.manifests.insert(format!("{repo}@{digest}"), manifest);
        digest
    }
}

/// `None` when `guard` lets the request through; else the refusal, or
/// the token a `/token` request earned.
fn check(guard: Guard, addr: SocketAddr, path: &str, authorization: Option<&str>) -> Option<Reply> {
    let basic = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let unauthorized = |challenge: String| Reply {
        headers: vec![format!("WWW-Authenticate: {challenge}")],
        ..Reply::error("401 Unauthorized", "UNAUTHORIZED")
    };
    match guard {
        Guard::Open => None,
        Guard::Basic => (authorization != Some(basic.as_str()))
            .then(|| unauthorized(r#"Basic realm="fake""#.into())),
        Guard::Bearer if path.starts_with("/token") => Some(if authorization == Some(&basic) {
            Reply::ok(
                "application/json",
                format!(r#"{{"token":"{TOKEN}"}}"#).into_bytes(),
            )
        } else {
            Reply::error("401 Unauthorized", "UNAUTHORIZED")
        }),
        Guard::Bearer => (authorization != Some(&format!("Bearer {TOKEN}"))).then(|| {
            unauthorized(format!(
                r#"Bearer realm="http://{addr}/token",service="fake""#
            ))
        }),
    }
}

fn answer(content: &Mutex<Content>, blob_gets: &AtomicUsize, path: &str) -> Reply {
    let c = content.lock().unwrap();
    if path == "/v2/" {
        return Reply::ok("application/json", b"{}".to_vec());
    }
    let unknown = |code: &str| Reply::error("404 Not Found", code);
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
            Some(m) => Reply {
                headers: vec![format!("Docker-Content-Digest: {}", digest_of(m))],
                ..Reply::ok("application/vnd.oci.image.manifest.v1+json", m.clone())
            },
            None => unknown("MANIFEST_UNKNOWN"),
        };
    }
    if let Some((_, digest)) = rest.split_once("/blobs/") {
        blob_gets.fetch_add(1, Ordering::SeqCst);
        return match c.blobs.get(digest) {
            Some(b) => Reply::ok("application/octet-stream", b.clone()),
            None => unknown("BLOB_UNKNOWN"),
        };
    }
    unknown("NAME_UNKNOWN")
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, path, body.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

const CONFIG: &str = r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/httpd"],"Cmd":["-f"],"Healthcheck":{"Test":["CMD","/bin/true"]}}}"#;
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

fn store(dir: &Path, registry: &Registry) -> ImageStore {
    ImageStore::open(
        dir,
        &RegistryOptions {
            insecure: vec![registry.host()],
        },
    )
    .unwrap()
}

/// Everything under `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_image_is_pulled_verified_unpacked_and_kept() {
    let reg = Registry::start().await;
    let base = gzip(&tar_of(&[("www/index.html", "v1"), ("etc/motd", "hi")]));
    let top = tar_of(&[("www/index.html", "v2"), ("etc/.wh.motd", "")]);
    let digest = reg.push("demo/web", "1", CONFIG, &[(base, GZIP), (top, TAR)]);
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &reg);
    let reference = format!("{}/demo/web:1", reg.host());
    assert_eq!(store.resolve(&reference, None).await.unwrap(), digest);

    let image = store.pull(&reference, None).await.unwrap();
    assert_eq!(image.digest, digest);
    assert_eq!(image.pinned, format!("{}/demo/web@{digest}", reg.host()));
    assert_eq!(image.config.command(None, None), ["/bin/httpd", "-f"]);
    assert!(image.config.healthcheck.is_some());
    assert_eq!(
        std::fs::read_to_string(image.rootfs.join("www/index.html")).unwrap(),
        "v2"
    );
    assert!(!image.rootfs.join("etc/motd").exists());
    let fetched = reg.blob_gets.load(Ordering::SeqCst);
    assert_eq!(fetched, 3, "config and two layers");

    // By tag again: the manifest is asked for, no layer is fetched again.
    let again = store.pull(&reference, None).await.unwrap();
    assert_eq!(again, image);
    assert!(
        reg.blob_gets.load(Ordering::SeqCst) <= fetched + 1,
        "layers fetched again"
    );
    // By digest: the registry is not needed at all.
    let before = reg.blob_gets.load(Ordering::SeqCst);
    let offline = ImageStore::open(dir.path(), &RegistryOptions::default()).unwrap();
    let pinned = offline.pull(&image.pinned, None).await.unwrap();
    assert_eq!(pinned.rootfs, image.rootfs);
    assert_eq!(reg.blob_gets.load(Ordering::SeqCst), before);
    assert!(files(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn bad_images_fail_clearly_and_leave_only_verified_blobs() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), &reg);
    let anon = None;
    let host = reg.host();

    let err = store
        .pull(&format!("{host}/nope:1"), anon)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("No such image: {host}/nope:1"));

    let err = store.pull("UPPER/Case::x", anon).await.unwrap_err();
    assert!(
        err.to_string().starts_with("invalid reference format"),
        "{err}"
    );

    // A layer whose bytes were changed on the registry.
    let good = gzip(&tar_of(&[("a", "a")]));
    reg.push("demo/tampered", "1", CONFIG, &[(good.clone(), GZIP)]);
    let layer_digest = digest_of(&good);
    reg.content
        .lock()
        .unwrap()
        .blobs
        .insert(layer_digest.clone(), gzip(&tar_of(&[("a", "evil")])));
    let err = store
        .pull(&format!("{host}/demo/tampered:1"), anon)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Digest { .. }), "{err:?}");
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    let blob = dir.path().join("blobs/sha256").join(hex_of(&layer_digest));
    assert!(!blob.exists(), "a tampered blob was kept");

    // A layer that escapes the root: verified, kept as a blob, not unpacked.
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.as_old_mut().name[..12].copy_from_slice(b"../../pwned\0");
    h.set_cksum();
    evil.append(&h, &b"x"[..]).unwrap();
    let evil = evil.into_inner().unwrap();
    reg.push("demo/evil", "1", CONFIG, &[(evil, TAR)]);
    let err = store
        .pull(&format!("{host}/demo/evil:1"), anon)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("outside the image's root"),
        "{err}"
    );
    assert!(files(&dir.path().join("images")).is_empty());
    assert!(files(&dir.path().join("tmp")).is_empty());
    assert!(!dir.path().join("pwned").exists() && !dir.path().join("../pwned").exists());

    // Zstd and other layer types are refused by name.
    reg.push(
        "demo/zstd",
        "1",
        CONFIG,
        &[(b"x".to_vec(), "application/vnd.oci.image.layer.v1.tar+zstd")],
    );
    let err = store
        .pull(&format!("{host}/demo/zstd:1"), anon)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");

    // A registry nobody answers at.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let store = ImageStore::open(
        dir.path(),
        &RegistryOptions {
            insecure: vec![gone.to_string()],
        },
    )
    .unwrap();
    let err = store.pull(&format!("{gone}/x:1"), anon).await.unwrap_err();
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.to_string().lines().count(), 1, "{err}");
}

#[tokio::test]
async fn a_registry_that_wants_credentials_gets_them_as_basic_or_for_a_token() {
    for guard in [Guard::Basic, Guard::Bearer] {
        let reg = Registry::guarded(guard).await;
        let layer = gzip(&tar_of(&[("www/index.html", "private")]));
        let digest = reg.push("team/app", "1", CONFIG, &[(layer, GZIP)]);
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), &reg);
        let reference = format!("{}/team/app:1", reg.host());
        let credentials = |password: &str| RegistryCredentials {
            username: USER.into(),
            password: password.into(),
        };

        // Anonymous: refused, in docker's words, saying what to do.
        for err in [
            store.resolve(&reference, None).await.unwrap_err(),
            store.pull(&reference, None).await.unwrap_err(),
        ] {
            assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.starts_with("unauthorized: authentication required"),
                "{message}"
            );
            assert!(message.contains("--with-registry-auth"), "{message}");
            assert!(
                message.contains(&format!("shoal login {}", reg.host())),
                "{message}"
            );
        }

        // A wrong password: refused, naming the user and not the password.
        let wrong = credentials("hunter2");
        let err = store.pull(&reference, Some(&wrong)).await.unwrap_err();
        assert!(matches!(err, ImageError::Refused { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("`alice`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        // The right one, after the wrong one: nothing of it was kept.
        let right = credentials(PASSWORD);
        assert_eq!(
            store.resolve(&reference, Some(&right)).await.unwrap(),
            digest
        );
        let image = store.pull(&reference, Some(&right)).await.unwrap();
        assert_eq!(image.digest, digest);
        assert_eq!(
            std::fs::read_to_string(image.rootfs.join("www/index.html")).unwrap(),
            "private"
        );

        // And anonymous pulls did not inherit it.
        let err = store.resolve(&reference, None).await.unwrap_err();
        assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    }
}
