//! Running swarm-mode daemons (`shoal daemon` without `--tables`) on test
//! hosts, and the CLI against them. A node's state lives in
//! `<lab>/<host>/state`, its output in `<lab>/<host>/daemon.log`; it counts
//! as started once its admin socket answers `GET /info`. The CLI runs in
//! the test's own namespace: it only needs the node's unix socket.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::DAEMON_START_TIMEOUT;
use crate::lab::{Host, Lab};
use crate::net::{unix_http_get, wait_until};
use crate::paths::try_shoal_bin;
use crate::proc::{Proc, SpawnOpts};

/// A swarm-mode daemon on a test host.
#[derive(Debug)]
pub struct SwarmNode {
    pub host: Host,
    pub proc: Proc,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// The daemon's extra arguments, kept for [`Lab::restart_swarm_node`].
    pub args: Vec<String>,
}

impl SwarmNode {
    /// Runs `shoal -H unix://<socket> <args>` and returns its output.
    pub fn shoal(&self, args: &[&str]) -> Result<Output> {
        let bin = try_shoal_bin()?;
        Command::new(&bin)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))
    }

    /// [`SwarmNode::shoal`] that must succeed; returns its stdout.
    pub fn shoal_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.shoal(args)?;
        if !out.status.success() {
            bail!(
                "`shoal {}` on {} failed ({}): {}{}",
                args.join(" "),
                self.host.name,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `GET path` on the admin socket.
    pub fn get(&self, path: &str) -> Result<String> {
        unix_http_get(&self.socket, path, Duration::from_secs(10))
    }
}

impl Lab {
    /// Starts `shoal daemon --state-dir <lab>/<host>/state --node-name
    /// <host> --advertise-addr <underlay> <extra_args>` on `host` and waits
    /// until its admin socket answers.
    pub fn start_swarm_node(&mut self, host: &Host, extra_args: &[&str]) -> Result<SwarmNode> {
        let dir = self.dir().join(&host.name);
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let bin = try_shoal_bin()?;
        let mut argv: Vec<String> = vec![
            bin.display().to_string(),
            "daemon".into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--node-name".into(),
            host.name.clone(),
            "--advertise-addr".into(),
            host.underlay.to_string(),
            "--dataplane".into(),
            "userspace".into(),
        ];
        argv.extend(extra_args.iter().map(|a| a.to_string()));
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let spawn = SpawnOpts {
            log: Some(dir.join("daemon.log")),
            ..SpawnOpts::default()
        };
        let mut proc = self.spawn_opts(&host.netns, &args, &spawn)?;
        let socket = state_dir.join("shoal.sock");
        let started = wait_until(
            &format!("{} to answer", socket.display()),
            DAEMON_START_TIMEOUT,
            || {
                if unix_http_get(&socket, "/info", Duration::from_secs(1)).is_ok() {
                    Some(Ok(()))
                } else {
                    proc.exit_status().map(Err)
                }
            },
        );
        let log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
        match started {
            Ok(Ok(())) => {}
            Ok(Err(status)) => bail!(
                "shoal daemon on host `{}` exited ({status}); its output:\n{}",
                host.name,
                log()
            ),
            Err(e) => bail!(
                "shoal daemon on host `{}`: {e}; its output:\n{}",
                host.name,
                log()
            ),
        }
        Ok(SwarmNode {
            host: host.clone(),
            proc,
            state_dir,
            socket,
            args: extra_args.iter().map(|a| a.to_string()).collect(),
        })
    }

    /// Starts `node`'s daemon again (after it stopped or was killed), with
    /// the same state directory and arguments.
    pub fn restart_swarm_node(&mut self, node: &SwarmNode) -> Result<SwarmNode> {
        let args: Vec<&str> = node.args.iter().map(String::as_str).collect();
        self.start_swarm_node(&node.host, &args)
    }
}
