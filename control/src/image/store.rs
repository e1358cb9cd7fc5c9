//! The image store under `<state-dir>/images/`:
//!
//! - `blobs/sha256/<hex>`: layers and configs, each written only after its
//!   bytes matched its digest while they streamed in;
//! - `images/<hex of the manifest digest>/`: `rootfs/`, the layers applied
//!   in order, and `image.json`; a folder appears (by rename) only once it
//!   is complete, so its presence means "pulled";
//! - `tmp/`: work in progress, emptied when the store opens.
//!
//! A pull by digest of an image already here needs no registry; a pull by
//! tag asks the registry for the tag's manifest, then fetches only the
//! blobs it lacks. A pull with credentials sends them as HTTP basic
//! authentication, or trades them for a token where the registry asks for
//! one (`WWW-Authenticate: Bearer realm=...`).

use std::collections::HashMap;
use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::auth::RegistryCredentials;
use super::config::ImageConfig;
use super::layer::{self, Compression, LayerError};

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry may stay silent in the middle of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an image could not be had. The messages are what `service ps`
/// shows, in docker's words where docker has some.
#[derive(Debug, Error)]
pub enum ImageError {
    /// Not an image reference.
    #[error("invalid reference format: `{reference}`: {reason}")]
    BadReference {
        /// As given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry has no such repository or tag.
    #[error("No such image: {0}")]
    NotFound(String),
    /// The registry wants credentials, and none were given.
    #[error(
        "unauthorized: authentication required to pull {reference}: `shoal login {registry}`, \
         then `--with-registry-auth` on `service create`, `service update` or `stack deploy`"
    )]
    Unauthorized {
        /// The image.
        reference: String,
        /// Its registry, as `shoal login` takes it.
        registry: String,
    },
    /// The registry refused the credentials given.
    #[error(
        "unauthorized: {registry} refused the credentials of `{username}` for {reference}: \
         `shoal login {registry}` again, then `shoal service update --with-registry-auth`"
    )]
    Refused {
        /// The image.
        reference: String,
        /// Its registry.
        registry: String,
        /// Whose credentials.
        username: String,
    },
    /// The registry could not be reached.
    #[error(
        "cannot reach the registry {registry} for {reference}: {reason} (a registry without \
         TLS must be listed with `shoal daemon --insecure-registry HOST:PORT`)"
    )]
    Unreachable {
        /// Its host and port.
        registry: String,
        /// The image.
        reference: String,
        /// What failed.
        reason: String,
    },
    /// A blob's bytes did not match its digest.
    #[error("{reference}: a blob does not match its digest ({reason}); nothing of it was kept")]
    Digest {
        /// The image.
        reference: String,
        /// Expected and received.
        reason: String,
    },
    /// The registry answered something else than an image.
    #[error("{reference}: {reason}")]
    Registry {
        /// The image.
        reference: String,
        /// What it answered.
        reason: String,
    },
    /// A layer in a format shoal does not unpack.
    #[error("{reference}: layers of type `{media_type}` are not supported (gzip or plain tar)")]
    UnsupportedLayer {
        /// The image.
        reference: String,
        /// The layer's media type.
        media_type: String,
    },
    /// A layer that could not be applied.
    #[error("{reference}: layer {digest}: {source}")]
    Layer {
        /// The image.
        reference: String,
        /// The layer's digest.
        digest: String,
        /// Why.
        source: LayerError,
    },
    /// The store's files.
    #[error("image store {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// How registries are reached.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`HOST:PORT`) reached over plain HTTP, as dockerd's
    /// `--insecure-registry`; every other one over HTTPS.
    pub insecure: Vec<String>,
}

/// A pulled image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The reference as it was pulled, pinned to its digest:
    /// `registry/repository@sha256:...`.
    pub pinned: String,
    /// The manifest's digest, `sha256:...`.
    pub digest: String,
    /// What the image says about running it.
    pub config: ImageConfig,
    /// Its root filesystem, shared by its tasks: never write to it.
    #[serde(skip)]
    pub rootfs: PathBuf,
}

/// Pulls and keeps images.
pub struct ImageStore {
    root: PathBuf,
    options: RegistryOptions,
    /// For anonymous pulls. oci-client keeps the first credentials it is
    /// given for a registry for good, so pulls with credentials each get a
    /// client of their own and this one never sees any.
    anonymous: Client,
    /// One pull at a time per reference.
    pulling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl ImageStore {
    /// Opens (or creates) the store at `root`, dropping unfinished work.
    pub fn open(root: &Path, options: &RegistryOptions) -> Result<ImageStore, ImageError> {
        for dir in [root.join("blobs/sha256"), root.join("images")] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| io_err(&dir, source))?;
        }
        let tmp = root.join("tmp");
        match std::fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, e)),
        }
        DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|source| io_err(&tmp, source))?;
        // oci-client builds its HTTPS client on the process's default
        // provider; ring is the one shoal uses everywhere else.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(ImageStore {
            root: root.to_path_buf(),
            anonymous: client(options),
            options: options.clone(),
            pulling: Mutex::default(),
        })
    }

    /// A client for `credentials`, and how it authenticates.
    fn client(&self, credentials: Option<&RegistryCredentials>) -> (Client, RegistryAuth) {
        match credentials {
            None => (self.anonymous.clone(), RegistryAuth::Anonymous),
            Some(c) => (client(&self.options), c.auth()),
        }
    }

    /// The digest the registry gives `reference` now: what a manager pins
    /// a service's image to, so every node runs the same one.
    pub async fn resolve(
        &self,
        reference: &str,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<String, ImageError> {
        let r = parse(reference)?;
        if let Some(digest) = r.digest() {
            return Ok(checked_digest(reference, digest)?.to_owned());
        }
        let (client, auth) = self.client(credentials);
        let digest = client
            .fetch_manifest_digest(&r, &auth)
            .await
            .map_err(|e| registry_error(&r, credentials, e))?;
        Ok(checked_digest(reference, &digest)?.to_owned())
    }

    /// The image `reference` names, pulled and unpacked unless it is here
    /// already.
    pub async fn pull(
        &self,
        reference: &str,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<Image, ImageError> {
        let r = parse(reference)?;
        if let Some(digest) = r.digest()
            && let Some(image) = self.load(checked_digest(reference, digest)?)?
        {
            return Ok(image);
        }
        let lock = {
            let mut pulling = self.pulling.lock().unwrap_or_else(PoisonError::into_inner);
            pulling.entry(r.whole()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let (client, auth) = self.client(credentials);
        let (manifest, digest, config) = client
            .pull_manifest_and_config(&r, &auth)
            .await
            .map_err(|e| registry_error(&r, credentials, e))?;
        let digest = checked_digest(reference, &digest)?.to_owned();
        if let Some(image) = self.load(&digest)? {
            return Ok(image);
        }
        let config = ImageConfig::parse(config.as_bytes()).map_err(|e| ImageError::Registry {
            reference: reference.to_owned(),
            reason: format!("the image's config is not valid JSON: {e}"),
        })?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            let compression = compression(reference, &layer.media_type)?;
            let path = self.fetch_blob(&client, &r, credentials, layer).await?;
            layers.push((layer.digest.clone(), path, compression));
        }
        let image = Image {
            pinned: format!("{}/{}@{digest}", r.resolve_registry(), r.repository()),
            digest: digest.clone(),
            config,
            rootfs: PathBuf::new(),
        };
        self.unpack(reference, image, layers).await
    }

    /// An image already in the store.
    fn load(&self, digest: &str) -> Result<Option<Image>, ImageError> {
        let dir = self.image_dir(digest);
        let path = dir.join("image.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        let mut image: Image = serde_json::from_slice(&text)
            .map_err(|e| io_err(&path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
        image.rootfs = dir.join("rootfs");
        Ok(Some(image))
    }

    fn image_dir(&self, digest: &str) -> PathBuf {
        self.root.join("images").join(hex_of(digest))
    }

    /// The verified blob `desc` names, fetched unless it is here.
    async fn fetch_blob(
        &self,
        client: &Client,
        r: &Reference,
        credentials: Option<&RegistryCredentials>,
        desc: &OciDescriptor,
    ) -> Result<PathBuf, ImageError> {
        let digest = checked_digest(&r.whole(), &desc.digest)?;
        let path = self.root.join("blobs/sha256").join(hex_of(digest));
        if path.exists() {
            return Ok(path);
        }
        let tmp = self.tmp_path(hex_of(digest));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_err(&tmp, e))?;
        let pulled = client.pull_blob(r, desc, file).await;
        if let Err(e) = pulled {
            let _ = std::fs::remove_file(&tmp);
            return Err(registry_error(r, credentials, e));
        }
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        Ok(path)
    }

    /// Applies `layers` into a new root, then moves it into place.
    async fn unpack(
        &self,
        reference: &str,
        mut image: Image,
        layers: Vec<(String, PathBuf, Compression)>,
    ) -> Result<Image, ImageError> {
        let work = self.tmp_path("image");
        let target = self.image_dir(&image.digest);
        let reference = reference.to_owned();
        let record =
            serde_json::to_vec_pretty(&image).map_err(|e| io_err(&work, io::Error::other(e)))?;
        let built = {
            let (work, target) = (work.clone(), target.clone());
            tokio::task::spawn_blocking(move || {
                let rootfs = work.join("rootfs");
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&rootfs)
                    .map_err(|e| io_err(&rootfs, e))?;
                for (digest, path, compression) in layers {
                    let file = File::open(&path).map_err(|e| io_err(&path, e))?;
                    layer::apply(&rootfs, io::BufReader::new(file), compression).map_err(
                        |source| ImageError::Layer {
                            reference: reference.clone(),
                            digest,
                            source,
                        },
                    )?;
                }
                let json = work.join("image.json");
                std::fs::write(&json, record).map_err(|e| io_err(&json, e))?;
                std::fs::rename(&work, &target).map_err(|e| io_err(&target, e))
            })
            .await
        };
        let built = built.unwrap_or_else(|e| Err(io_err(&work, io::Error::other(e))));
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&work);
            // Another pull of the same image by another name may have
            // won the rename.
            if let Some(image) = self.load(&image.digest)? {
                return Ok(image);
            }
            return Err(e);
        }
        image.rootfs = target.join("rootfs");
        Ok(image)
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        let mut b = [0u8; 8];
        let _ = crate::ids::random_bytes(&mut b);
        let n = u64::from_le_bytes(b);
        self.root.join("tmp").join(format!("{what}-{n:016x}"))
    }
}

fn client(options: &RegistryOptions) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(options.insecure.clone()),
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..ClientConfig::default()
    })
}

pub(super) fn parse(reference: &str) -> Result<Reference, ImageError> {
    Reference::try_from(reference.trim()).map_err(|e| ImageError::BadReference {
        reference: reference.to_owned(),
        reason: e.to_string(),
    })
}

/// `digest` when it is `sha256:` and 64 lowercase hex digits: it becomes
/// a file name, so a registry cannot choose a path.
fn checked_digest<'a>(reference: &str, digest: &'a str) -> Result<&'a str, ImageError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(digest)
    } else {
        Err(ImageError::Registry {
            reference: reference.to_owned(),
            reason: format!(
                "`{}` is not a sha256 digest",
                digest.chars().take(80).collect::<String>()
            ),
        })
    }
}

/// The hex part of a checked digest.
fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn compression(reference: &str, media_type: &str) -> Result<Compression, ImageError> {
    use oci_client::manifest::{
        IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE, IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE,
        IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE,
    };
    match media_type {
        IMAGE_LAYER_GZIP_MEDIA_TYPE | IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE => Ok(Compression::Gzip),
        IMAGE_LAYER_MEDIA_TYPE | IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE => Ok(Compression::None),
        other => Err(ImageError::UnsupportedLayer {
            reference: reference.to_owned(),
            media_type: other.to_owned(),
        }),
    }
}

fn io_err(path: &Path, source: io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a registry's refusal means for the user.
fn registry_error(
    r: &Reference,
    credentials: Option<&RegistryCredentials>,
    e: OciDistributionError,
) -> ImageError {
    let reference = r.whole();
    let unknown = |code: &OciErrorCode| {
        matches!(
            code,
            OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
        )
    };
    let denied =
        |code: &OciErrorCode| matches!(code, OciErrorCode::Unauthorized | OciErrorCode::Denied);
    let unauthorized = |reference: String| match credentials {
        None => ImageError::Unauthorized {
            reference,
            registry: r.registry().to_owned(),
        },
        Some(c) => ImageError::Refused {
            reference,
            registry: r.registry().to_owned(),
            username: c.username.clone(),
        },
    };
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => ImageError::NotFound(reference),
        OciDistributionError::RegistryError { ref envelope, .. }
            if envelope.errors.iter().any(|e| unknown(&e.code)) =>
        {
            ImageError::NotFound(reference)
        }
        OciDistributionError::ServerError { code: 404, .. } => ImageError::NotFound(reference),
        OciDistributionError::RegistryError { ref envelope, .. }
            if envelope.errors.iter().any(|e| denied(&e.code)) =>
        {
            unauthorized(reference)
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::ServerError { code: 401, .. } => unauthorized(reference),
        OciDistributionError::DigestError(d) => ImageError::Digest {
            reference,
            reason: d.to_string(),
        },
        OciDistributionError::RequestError(ref re) if re.is_connect() || re.is_timeout() => {
            ImageError::Unreachable {
                registry: r.resolve_registry().to_owned(),
                reference,
                reason: chain(&e),
            }
        }
        other => ImageError::Registry {
            reference,
            reason: chain(&other),
        },
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !s.contains(&more) {
            s.push_str(": ");
            s.push_str(&more);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests;
