//! What an image says about running it, read from its raw config blob as
//! the registry serves it: Docker's fields included (an OCI conversion
//! drops `Healthcheck`, which Swarm honours).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The run settings of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The program, before [`cmd`](Self::cmd).
    pub entrypoint: Vec<String>,
    /// The default arguments (or program, without an entrypoint).
    pub cmd: Vec<String>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    /// The working directory; empty for `/`.
    pub working_dir: String,
    /// `user`, `uid`, `user:group` or `uid:gid`; empty for root.
    pub user: String,
    /// The signal that asks the program to stop, e.g. `SIGQUIT`.
    pub stop_signal: Option<String>,
    /// The image's HEALTHCHECK.
    pub healthcheck: Option<ImageHealthcheck>,
    /// `80/tcp`-style ports the image says it listens on.
    pub exposed_ports: Vec<String>,
    /// The image's labels.
    pub labels: BTreeMap<String, String>,
    /// The platform, e.g. `linux/amd64`.
    pub platform: String,
}

/// A Docker HEALTHCHECK.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageHealthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    /// Between checks; `None` for the default.
    pub interval: Option<Duration>,
    /// For one check.
    pub timeout: Option<Duration>,
    /// Failures are not counted before this.
    pub start_period: Option<Duration>,
    /// Failures in a row that make the task unhealthy.
    pub retries: Option<u32>,
}

/// The blob's shape (Docker and OCI share it; Docker adds fields).
#[derive(Deserialize)]
struct Blob {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RunBlob>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunBlob {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    healthcheck: Option<HealthBlob>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthBlob {
    #[serde(default)]
    test: Option<Vec<String>>,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    start_period: Option<u64>,
    #[serde(default)]
    retries: Option<u32>,
}

/// Docker writes durations in nanoseconds, 0 for "the default".
fn nanos(n: Option<u64>) -> Option<Duration> {
    n.filter(|n| *n > 0).map(Duration::from_nanos)
}

impl ImageConfig {
    /// Reads a config blob.
    pub fn parse(blob: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        let b: Blob = serde_json::from_slice(blob)?;
        let run = b.config.unwrap_or_default();
        Ok(ImageConfig {
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            env: run.env.unwrap_or_default(),
            working_dir: run.working_dir.unwrap_or_default(),
            user: run.user.unwrap_or_default(),
            stop_signal: run.stop_signal.filter(|s| !s.is_empty()),
            healthcheck: run.healthcheck.map(|h| ImageHealthcheck {
                test: h.test.unwrap_or_default(),
                interval: nanos(h.interval),
                timeout: nanos(h.timeout),
                start_period: nanos(h.start_period),
                retries: h.retries.filter(|r| *r > 0),
            }),
            exposed_ports: run.exposed_ports.unwrap_or_default().into_keys().collect(),
            labels: run.labels.unwrap_or_default(),
            platform: format!("{}/{}", b.os, b.architecture),
        })
    }

    /// The command a task runs: the service's `command` replaces the
    /// entrypoint and its `args` the image's CMD, as docker's `--entrypoint`
    /// and trailing arguments do; an entrypoint given without arguments
    /// drops the image's CMD, as docker does.
    pub fn command(&self, entrypoint: Option<&[String]>, args: Option<&[String]>) -> Vec<String> {
        let (entry, default_args) = match entrypoint {
            Some(e) => (e, &[][..]),
            None => (&self.entrypoint[..], &self.cmd[..]),
        };
        let args = args.unwrap_or(default_args);
        entry.iter().chain(args).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &str = r#"{
        "architecture": "amd64", "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin:/bin"],
            "Entrypoint": ["/docker-entrypoint.sh"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "WorkingDir": "/srv",
            "User": "101:101",
            "StopSignal": "SIGQUIT",
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"maintainer": "x"},
            "Healthcheck": {"Test": ["CMD", "/bin/true"], "Interval": 5000000000, "Timeout": 0, "Retries": 3}
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    }"#;

    #[test]
    fn docker_fields_are_read_healthcheck_included() {
        let c = ImageConfig::parse(DOCKER.as_bytes()).unwrap();
        assert_eq!(c.entrypoint, ["/docker-entrypoint.sh"]);
        assert_eq!(c.cmd, ["nginx", "-g", "daemon off;"]);
        assert_eq!(c.env, ["PATH=/usr/bin:/bin"]);
        assert_eq!(
            (c.working_dir.as_str(), c.user.as_str()),
            ("/srv", "101:101")
        );
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.exposed_ports, ["80/tcp"]);
        assert_eq!(c.platform, "linux/amd64");
        let h = c.healthcheck.unwrap();
        assert_eq!(h.test, ["CMD", "/bin/true"]);
        assert_eq!(h.interval, Some(Duration::from_secs(5)));
        assert_eq!((h.timeout, h.retries), (None, Some(3)));
    }

    #[test]
    fn a_minimal_config_has_defaults_and_garbage_is_an_error() {
        let c = ImageConfig::parse(br#"{"architecture":"amd64","os":"linux"}"#).unwrap();
        assert!(c.entrypoint.is_empty() && c.cmd.is_empty() && c.healthcheck.is_none());
        assert!(ImageConfig::parse(b"[1,2").is_err());
    }

    #[test]
    fn the_command_follows_dockers_overrides() {
        let c = ImageConfig::parse(DOCKER.as_bytes()).unwrap();
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            c.command(None, None),
            s(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
        assert_eq!(
            c.command(None, Some(&s(&["sh"]))),
            s(&["/docker-entrypoint.sh", "sh"])
        );
        assert_eq!(c.command(Some(&s(&["/bin/sh"])), None), s(&["/bin/sh"]));
        assert_eq!(
            c.command(Some(&s(&["/bin/sh"])), Some(&s(&["-c", "x"]))),
            s(&["/bin/sh", "-c", "x"])
        );
    }
}
