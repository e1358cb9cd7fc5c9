//! Registry credentials, kept where docker users have them: the `auths`
//! map of docker's `config.json`, each key a registry (`host:5000`, or
//! `https://index.docker.io/v1/` for Docker Hub) and each value
//! `{"auth": base64("user:password")}` or `username`/`password` fields.
//!
//! No I/O here: the CLI reads the file, finds the credentials for an
//! image's registry with [`DockerConfig::credentials`] and sends them with
//! the service; `shoal login`/`logout` edit the map with
//! [`DockerConfig::set`]/[`DockerConfig::remove`] and write the file
//! back with every other key as it was.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use super::ImageError;

/// The key `docker login` without a server writes for Docker Hub.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The names Docker Hub goes by, in references and in config keys.
const HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// What a service pulls its image with. They live in the replicated state,
/// since every node that runs a task pulls; they are never shown back
/// ([`redacted`](Self::redacted), and `Debug` hides the password).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    /// The user.
    pub username: String,
    /// The password or access token; empty once redacted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RegistryCredentials {
    /// The same user, without the password: what listings show.
    pub fn redacted(&self) -> RegistryCredentials {
        RegistryCredentials {
            username: self.username.clone(),
            password: String::new(),
        }
    }

    pub(super) fn auth(&self) -> RegistryAuth {
        RegistryAuth::Basic(self.username.clone(), self.password.clone())
    }
}

/// Why credentials could not be read from docker's config file.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CredentialsError {
    /// The file is not docker's JSON.
    #[error("not a docker config file: {0}")]
    Invalid(String),
    /// An `auth` that is not base64 of `user:password`.
    #[error(
        "the credentials for {server} are not base64 of USER:PASSWORD; `shoal login {server}` \
         writes them again"
    )]
    BadAuth {
        /// The key, as the file has it.
        server: String,
    },
    /// Docker keeps them with a credential helper, which shoal does not run.
    #[error(
        "docker keeps the credentials for {registry} with its credential helper `{helper}`, \
         which shoal does not run; `shoal login {registry}` keeps them in the file instead"
    )]
    Helper {
        /// The registry.
        registry: String,
        /// `credsStore` or the registry's `credHelpers` entry.
        helper: String,
    },
}

/// The registry an image reference pulls from (`docker.io` for
/// `nginx`), as `shoal login` takes it.
pub fn registry_of(reference: &str) -> Result<String, ImageError> {
    Ok(super::store::parse(reference)?.registry().to_owned())
}

/// docker's `config.json`: the `auths` map read and edited, every other
/// key kept as it was.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    root: Map<String, Value>,
}

impl DockerConfig {
    /// Reads the file's text; empty text is an empty file.
    pub fn parse(text: &str) -> Result<DockerConfig, CredentialsError> {
        if text.trim().is_empty() {
            return Ok(DockerConfig::default());
        }
        let root: Map<String, Value> =
            serde_json::from_str(text).map_err(|e| CredentialsError::Invalid(e.to_string()))?;
        match root.get("auths") {
            None | Some(Value::Object(_)) => Ok(DockerConfig { root }),
            Some(_) => Err(CredentialsError::Invalid("`auths` is not an object".into())),
        }
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.root).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }

    /// The credentials for `registry` (`host:port`, `docker.io`, or any
    /// spelling of a config key), if the file has them.
    pub fn credentials(
        &self,
        registry: &str,
    ) -> Result<Option<RegistryCredentials>, CredentialsError> {
        for (server, entry) in self.auths().into_iter().flatten() {
            if same_registry(server, registry)
                && let Some(credentials) = credentials_of(server, entry)?
            {
                return Ok(Some(credentials));
            }
        }
        let helper = self
            .root
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|helpers| {
                helpers
                    .iter()
                    .find(|(server, _)| same_registry(server, registry))
                    .map(|(_, h)| h)
            })
            .or_else(|| self.root.get("credsStore"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty());
        match helper {
            Some(helper) => Err(CredentialsError::Helper {
                registry: registry.to_owned(),
                helper: helper.to_owned(),
            }),
            None => Ok(None),
        }
    }

    /// Keeps `credentials` for `server` in place of any it had, under
    /// every spelling of its name; Docker Hub's under docker's key for it.
    pub fn set(&mut self, server: &str, credentials: &RegistryCredentials) {
        self.remove(server);
        let server = match host_of(server) {
            "docker.io" => DOCKER_HUB,
            _ => server.trim(),
        };
        let auth = STANDARD.encode(format!("{}:{}", credentials.username, credentials.password));
        let auths = self
            .root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(auths) = auths {
            auths.insert(server.to_owned(), serde_json::json!({ "auth": auth }));
        }
    }

    /// Forgets the credentials for `server`; false if it had none.
    pub fn remove(&mut self, server: &str) -> bool {
        let Some(Value::Object(auths)) = self.root.get_mut("auths") else {
            return false;
        };
        let before = auths.len();
        auths.retain(|key, _| !same_registry(key, server));
        auths.len() != before
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.root.get("auths").and_then(Value::as_object)
    }
}

/// One `auths` entry's credentials: `auth`, else `username` and
/// `password`; `None` when it has neither (docker leaves `{}` when a
/// helper keeps them).
fn credentials_of(
    server: &str,
    entry: &Value,
) -> Result<Option<RegistryCredentials>, CredentialsError> {
    let field = |name| entry.get(name).and_then(Value::as_str).unwrap_or_default();
    let bad = || CredentialsError::BadAuth {
        server: server.to_owned(),
    };
    let auth = field("auth");
    if !auth.is_empty() {
        let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        return match decoded.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Some(RegistryCredentials {
                username: user.to_owned(),
                password: password.to_owned(),
            })),
            _ => Err(bad()),
        };
    }
    let (username, password) = (field("username"), field("password"));
    Ok((!username.is_empty()).then(|| RegistryCredentials {
        username: username.to_owned(),
        password: password.to_owned(),
    }))
}

/// Whether two config keys or registries name the same registry, as
/// docker compares them: without scheme or path, in any case.
fn same_registry(a: &str, b: &str) -> bool {
    host_of(a).eq_ignore_ascii_case(host_of(b))
}

/// A config key or registry without scheme or path, and one name for
/// Docker Hub.
fn host_of(server: &str) -> &str {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    if HUB_ALIASES.iter().any(|a| a.eq_ignore_ascii_case(s)) {
        "docker.io"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(username: &str, password: &str) -> RegistryCredentials {
        RegistryCredentials {
            username: username.into(),
            password: password.into(),
        }
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn credentials_are_found_by_the_images_registry_under_any_spelling() {
        let text = format!(
            r#"{{
                "auths": {{
                    "198.18.0.1:5000": {{"auth": "{}"}},
                    "https://index.docker.io/v1/": {{"auth": "{}"}},
                    "http://ghcr.io/v2/": {{"username": "gh", "password": "tok"}},
                    "quay.io": {{}}
                }},
                "psFormat": "table {{{{.ID}}}}"
            }}"#,
            b64("alice:s3cr:et"),
            b64("hubby:pw"),
        );
        let config = DockerConfig::parse(&text).unwrap();
        let find = |reference: &str| {
            config
                .credentials(&registry_of(reference).unwrap())
                .unwrap()
        };
        assert_eq!(
            find("198.18.0.1:5000/team/app:1"),
            Some(creds("alice", "s3cr:et"))
        );
        for hub in [
            "nginx",
            "library/nginx:1.27",
            "docker.io/library/nginx",
            "index.docker.io/x/y",
            "registry-1.docker.io/x/y",
        ] {
            assert_eq!(find(hub), Some(creds("hubby", "pw")), "{hub}");
        }
        assert_eq!(find("ghcr.io/o/app"), Some(creds("gh", "tok")));
        assert_eq!(find("quay.io/o/app"), None, "an empty entry");
        assert_eq!(find("198.18.0.1:5001/app"), None, "another port");
        assert_eq!(find("example.com/app"), None);
    }

    #[test]
    fn files_docker_cannot_have_written_fail_clearly() {
        assert!(
            DockerConfig::parse("")
                .unwrap()
                .credentials("h")
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            DockerConfig::parse("{").unwrap_err(),
            CredentialsError::Invalid(_)
        ));
        assert!(matches!(
            DockerConfig::parse(r#"{"auths": []}"#).unwrap_err(),
            CredentialsError::Invalid(_)
        ));
        for auth in ["%%%".to_owned(), b64("nocolon"), b64(":pw")] {
            let text = format!(r#"{{"auths": {{"h:1": {{"auth": "{auth}"}}}}}}"#);
            let err = DockerConfig::parse(&text)
                .unwrap()
                .credentials("h:1")
                .unwrap_err();
            assert_eq!(
                err,
                CredentialsError::BadAuth {
                    server: "h:1".into()
                }
            );
        }
        let helper = r#"{"auths": {"h:1": {}}, "credsStore": "desktop",
                         "credHelpers": {"gcr.io": "gcloud"}}"#;
        let config = DockerConfig::parse(helper).unwrap();
        for (registry, helper) in [("h:1", "desktop"), ("gcr.io", "gcloud")] {
            let err = config.credentials(registry).unwrap_err();
            assert_eq!(
                err,
                CredentialsError::Helper {
                    registry: registry.into(),
                    helper: helper.into()
                }
            );
            assert!(err.to_string().contains("shoal login"), "{err}");
        }
    }

    #[test]
    fn login_and_logout_edit_only_their_entry() {
        let text = format!(
            r#"{{"auths": {{"http://h:1/": {{"auth": "{}"}}, "other:2": {{"auth": "{}"}}}},
                "credHelpers": {{"gcr.io": "gcloud"}}, "detachKeys": "ctrl-x"}}"#,
            b64("old:old"),
            b64("o:o"),
        );
        let mut config = DockerConfig::parse(&text).unwrap();
        config.set("h:1", &creds("new", "pw"));
        let mut config = DockerConfig::parse(&config.to_json()).unwrap();
        assert_eq!(config.credentials("h:1").unwrap(), Some(creds("new", "pw")));
        assert_eq!(
            config.credentials("other:2").unwrap(),
            Some(creds("o", "o"))
        );
        let json: Value = serde_json::from_str(&config.to_json()).unwrap();
        assert_eq!(json["detachKeys"], "ctrl-x");
        assert_eq!(json["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(json["auths"]["h:1"]["auth"], b64("new:pw"));
        assert!(json["auths"].get("http://h:1/").is_none(), "{json}");

        assert!(config.remove("https://h:1"));
        assert!(!config.remove("h:1"));
        assert_eq!(config.credentials("h:1").unwrap(), None);
        assert_eq!(
            config.credentials("other:2").unwrap(),
            Some(creds("o", "o"))
        );

        let mut empty = DockerConfig::parse("").unwrap();
        assert!(!empty.remove(DOCKER_HUB));
        empty.set("docker.io", &creds("u", "p"));
        assert_eq!(
            empty.credentials("index.docker.io").unwrap(),
            Some(creds("u", "p"))
        );
        let json: Value = serde_json::from_str(&empty.to_json()).unwrap();
        assert_eq!(json["auths"][DOCKER_HUB]["auth"], b64("u:p"));
    }

    #[test]
    fn the_password_is_never_shown() {
        let c = creds("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let shown = serde_json::to_string(&c.redacted()).unwrap();
        assert_eq!(shown, r#"{"username":"alice"}"#);
    }
}
