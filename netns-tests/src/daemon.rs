//! Running `shoal daemon` on a test host in embed mode: its tables file and
//! state directory live under the lab directory (`<lab>/<host>/tables.yaml`,
//! `<lab>/<host>/state`), and it counts as started once its admin socket
//! `<state>/shoal.sock` exists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::lab::{Host, Lab};
use crate::net::{unix_http_get, wait_until};
use crate::paths::try_shoal_bin;
use crate::proc::{Proc, SpawnOpts};

/// How long a daemon gets to create its socket.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a daemon's files go and how it is started.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The `shoal` binary; `None` means [`crate::try_shoal_bin`].
    pub bin: Option<PathBuf>,
    pub tables: PathBuf,
    pub state_dir: PathBuf,
    pub extra_args: Vec<String>,
    pub spawn: SpawnOpts,
}

impl DaemonConfig {
    /// The layout of [`Lab::start_daemon`]: `<lab_dir>/<host>/tables.yaml`,
    /// state in `<lab_dir>/<host>/state`, output in `<lab_dir>/<host>/daemon.log`.
    pub fn in_lab(lab_dir: &Path, host: &str, extra_args: &[&str]) -> DaemonConfig {
        let dir = lab_dir.join(host);
        DaemonConfig {
            bin: None,
            tables: dir.join("tables.yaml"),
            state_dir: dir.join("state"),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            spawn: SpawnOpts {
                log: Some(dir.join("daemon.log")),
                ..SpawnOpts::default()
            },
        }
    }

    /// The admin socket the daemon creates once its tables are applied.
    pub fn socket(&self) -> PathBuf {
        self.state_dir.join("shoal.sock")
    }

    /// The command line, given the binary: `--dataplane userspace` unless
    /// the extra arguments name an engine.
    pub fn argv(&self, bin: &Path) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            bin.display().to_string(),
            "daemon".into(),
            "--tables".into(),
            self.tables.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ];
        if !self.extra_args.iter().any(|a| a == "--dataplane") {
            argv.extend(["--dataplane".into(), "userspace".into()]);
        }
        argv.extend(self.extra_args.iter().cloned());
        argv
    }
}

/// A running `shoal daemon`.
#[derive(Debug)]
pub struct Daemon {
    pub host: Host,
    pub proc: Proc,
    pub tables: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
}

impl Daemon {
    /// Replaces its tables file atomically (write, then rename) and sends
    /// SIGHUP so it rereads it.
    pub fn reload(&mut self, yaml: &str) -> Result<()> {
        write_atomic(&self.tables, yaml)?;
        self.proc.signal(Signal::SIGHUP)
    }

    /// `GET /metrics` on its admin socket (Prometheus text format).
    pub fn metrics(&self) -> Result<String> {
        unix_http_get(&self.socket, "/metrics", Duration::from_secs(5))
    }
}

impl Lab {
    /// Starts `shoal daemon --tables <lab>/<host>/tables.yaml --state-dir
    /// <lab>/<host>/state [--dataplane userspace] <extra_args>` inside the
    /// host's namespace and waits until its socket exists.
    pub fn start_daemon(
        &mut self,
        host: &Host,
        tables_yaml: &str,
        extra_args: &[&str],
    ) -> Result<Daemon> {
        let config = DaemonConfig::in_lab(self.dir(), &host.name, extra_args);
        self.start_daemon_with(host, tables_yaml, &config)
    }

    /// [`Lab::start_daemon`] with a layout of one's own.
    pub fn start_daemon_with(
        &mut self,
        host: &Host,
        tables_yaml: &str,
        config: &DaemonConfig,
    ) -> Result<Daemon> {
        let bin = match &config.bin {
            Some(bin) => bin.clone(),
            None => try_shoal_bin()?,
        };
        for dir in [config.tables.parent(), Some(config.state_dir.as_path())]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if let Some(log) = config.spawn.log.as_deref().and_then(Path::parent) {
            std::fs::create_dir_all(log).with_context(|| format!("creating {}", log.display()))?;
        }
        write_atomic(&config.tables, tables_yaml)?;
        let argv = config.argv(&bin);
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut proc = self.spawn_opts(&host.netns, &args, &config.spawn)?;
        let socket = config.socket();
        // A socket file left by a killed daemon exists but refuses
        // connections: ready means answering.
        let started = wait_until(
            &format!("{} to answer", socket.display()),
            DAEMON_START_TIMEOUT,
            || {
                if unix_http_get(&socket, "/metrics", Duration::from_secs(1)).is_ok() {
                    Some(Ok(()))
                } else {
                    proc.exit_status().map(Err)
                }
            },
        );
        match started {
            Ok(Ok(())) => {}
            Ok(Err(status)) => bail!(
                "shoal daemon on host `{}` exited ({status}) before creating {}; its output:\n{}",
                host.name,
                socket.display(),
                proc.stderr()
            ),
            Err(e) => bail!(
                "shoal daemon on host `{}`: {e}; its output:\n{}",
                host.name,
                proc.stderr()
            ),
        }
        Ok(Daemon {
            host: host.clone(),
            proc,
            tables: config.tables.clone(),
            state_dir: config.state_dir.clone(),
            socket,
        })
    }
}

/// Writes `path` through a temporary file and a rename, so a reader never
/// sees half a file.
pub fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_layout_and_command_line() {
        let config = DaemonConfig::in_lab(Path::new("/t/lab"), "n1", &["--node-name", "n1"]);
        assert_eq!(config.tables, Path::new("/t/lab/n1/tables.yaml"));
        assert_eq!(config.state_dir, Path::new("/t/lab/n1/state"));
        assert_eq!(config.socket(), Path::new("/t/lab/n1/state/shoal.sock"));
        assert_eq!(
            config.spawn.log.as_deref(),
            Some(Path::new("/t/lab/n1/daemon.log"))
        );
        assert_eq!(
            config.argv(Path::new("/b/shoal")).join(" "),
            "/b/shoal daemon --tables /t/lab/n1/tables.yaml --state-dir /t/lab/n1/state \
             --dataplane userspace --node-name n1"
        );
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = crate::paths::target_dir()
            .join("netns-tests")
            .join(format!("unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tables.yaml");
        write_atomic(&file, "a: 1\n").unwrap();
        write_atomic(&file, "b: 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "b: 2\n");
        assert!(!dir.join("tables.yaml.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
