//! Running swarm-mode daemons (`shoal daemon` without `--tables`) on test
//! hosts, and the CLI against them. A node's state lives in
//! `<lab>/<host>/state`, its output in `<lab>/<host>/daemon.log`; it counts
//! as started once its admin socket answers `GET /info`. The CLI runs in
//! the test's own namespace: it only needs the node's unix socket.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::DAEMON_START_TIMEOUT;
use crate::ip::netns_list;
use crate::lab::{Host, Lab, task_netns};
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
    /// The shoal binary the daemon runs, and the CLI too.
    pub bin: PathBuf,
    /// Whether the daemon runs in a session of its own.
    pub detach: bool,
}

impl SwarmNode {
    /// The pids of the containers this node's runtime (runc) runs: each
    /// container's init.
    pub fn container_inits(&self) -> Vec<u32> {
        let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(self.state_dir.join("runtime"))
            .args(["list", "--format", "json"])
            .output()
        else {
            return Vec::new();
        };
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
            .filter(|p| *p > 0)
            .collect()
    }

    /// Runs `shoal -H unix://<socket> <args>` and returns its output.
    pub fn shoal(&self, args: &[&str]) -> Result<Output> {
        let bin = &self.bin;
        Command::new(bin)
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
        let bin = try_shoal_bin()?;
        self.start_swarm_node_with(host, extra_args, &bin, false)
    }

    /// [`Lab::start_swarm_node`] with the binary `bin`, and the daemon in
    /// a session of its own when `detach` (it outlives its starter).
    pub fn start_swarm_node_with(
        &mut self,
        host: &Host,
        extra_args: &[&str],
        bin: &std::path::Path,
        detach: bool,
    ) -> Result<SwarmNode> {
        let dir = self.dir().join(&host.name);
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
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
            detach,
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
            bin: bin.to_path_buf(),
            detach,
        })
    }

    /// Starts `node`'s daemon again (after it stopped or was killed), with
    /// the same state directory and arguments.
    pub fn restart_swarm_node(&mut self, node: &SwarmNode) -> Result<SwarmNode> {
        let args: Vec<&str> = node.args.iter().map(String::as_str).collect();
        self.start_swarm_node_with(&node.host, &args, &node.bin, node.detach)
    }
}

/// Long enough for an election plus failure detection on a busy machine.
pub const T: Duration = Duration::from_secs(30);

/// A formed swarm: managers first, then workers.
pub struct Swarm {
    pub nodes: Vec<SwarmNode>,
    pub managers: usize,
}

impl Swarm {
    /// The `i`th manager.
    pub fn manager(&self, i: usize) -> &SwarmNode {
        &self.nodes[i]
    }
}

/// The worker join token.
pub fn worker_token(node: &SwarmNode) -> Result<String> {
    Ok(node
        .shoal_ok(&["swarm", "join-token", "-q", "worker"])?
        .trim()
        .to_owned())
}

/// The manager join token.
pub fn manager_token(node: &SwarmNode) -> Result<String> {
    Ok(node
        .shoal_ok(&["swarm", "join-token", "-q", "manager"])?
        .trim()
        .to_owned())
}

/// A node's cluster API address.
pub fn addr(node: &SwarmNode) -> String {
    format!("{}:2377", node.host.underlay)
}

/// `node ls --format json` on `node`.
pub fn node_ls(node: &SwarmNode) -> Result<Vec<Value>> {
    let text = node.shoal_ok(&["node", "ls", "--format", "json"])?;
    let v: Value = serde_json::from_str(&text).context("node ls json")?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// (hostname, status, manager_status) for every node, sorted.
pub fn summary(nodes: &[Value]) -> Vec<(String, String, String)> {
    let mut s: Vec<(String, String, String)> = nodes
        .iter()
        .map(|n| {
            (
                n["hostname"].as_str().unwrap_or("?").to_owned(),
                n["status"].as_str().unwrap_or("?").to_owned(),
                n["manager_status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    s.sort();
    s
}

/// Forms a swarm of `managers` managers and `workers` workers, each host
/// named m1.., w1...
pub fn form(lab: &mut Lab, managers: usize, workers: usize, extra: &[&str]) -> Result<Swarm> {
    form_with(lab, managers, workers, extra, &[])
}

/// [`form`], with `init` as extra arguments of `swarm init`.
pub fn form_with(
    lab: &mut Lab,
    managers: usize,
    workers: usize,
    extra: &[&str],
    init: &[&str],
) -> Result<Swarm> {
    let mut nodes = Vec::new();
    for i in 1..=managers {
        let host = lab.add_host(&format!("m{i}"))?;
        nodes.push(lab.start_swarm_node(&host, extra)?);
    }
    for i in 1..=workers {
        let host = lab.add_host(&format!("w{i}"))?;
        nodes.push(lab.start_swarm_node(&host, extra)?);
    }
    let mut init_args = vec!["swarm", "init"];
    init_args.extend_from_slice(init);
    let out = nodes[0].shoal_ok(&init_args)?;
    if !out.contains("shoal swarm join --token SWMTKN-1-") {
        bail!("swarm init did not print the join command:\n{out}");
    }
    let mtoken = manager_token(&nodes[0])?;
    let wtoken = worker_token(&nodes[0])?;
    let leader = addr(&nodes[0]);
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let token = if i < managers { &mtoken } else { &wtoken };
        let out = node.shoal_ok(&["swarm", "join", "--token", token, &leader])?;
        let role = if i < managers { "manager" } else { "worker" };
        if !out.contains(&format!("joined a swarm as a {role}")) {
            bail!("join said:\n{out}");
        }
    }
    Ok(Swarm { nodes, managers })
}

/// The running tasks of `service` as `node` lists them: each task's
/// hostname (`SERVICE.SLOT.ID`, what `shoal whoami` answers with) and the
/// hostname of its node.
pub fn running_tasks(
    node: &SwarmNode,
    service: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let v: Value = serde_json::from_str(&node.get(&format!("/services/{service}/tasks"))?)
        .context("the service's tasks as JSON")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "running" && t["desired"] == "running")
        .map(|t| {
            let hostname = format!(
                "{}.{}",
                t["name"].as_str().unwrap_or("?"),
                t["id"].as_str().unwrap_or("?")
            );
            (hostname, t["node"].as_str().unwrap_or("?").to_owned())
        })
        .collect())
}

/// [`form`], then waits until the first manager lists every node Ready.
pub fn formed(lab: &mut Lab, managers: usize, workers: usize) -> Result<Swarm> {
    let swarm = form(lab, managers, workers, &[])?;
    wait_converged(&swarm, &[0], managers + workers)?;
    Ok(swarm)
}

/// Waits until every manager's `node ls` shows `n` Ready nodes and one
/// leader.
pub fn wait_converged(swarm: &Swarm, managers: &[usize], n: usize) -> Result<()> {
    for &m in managers {
        let mut last = Vec::new();
        let waited = wait_until(
            &format!("{} to list {n} Ready nodes", swarm.manager(m).host.name),
            T,
            || {
                let nodes = node_ls(swarm.manager(m)).ok()?;
                last = summary(&nodes);
                let ready = last.iter().filter(|(_, st, _)| st == "ready").count();
                let leaders = last.iter().filter(|(_, _, ms)| ms == "Leader").count();
                (ready == n && leaders == 1).then_some(())
            },
        );
        if let Err(e) = waited {
            bail!("{e}; last seen: {last:?}\n{}", logs(swarm));
        }
    }
    Ok(())
}

/// The tail of every daemon's log, for failure messages.
pub fn logs(swarm: &Swarm) -> String {
    let mut out = String::new();
    for n in &swarm.nodes {
        let log = n.state_dir.parent().map(|d| d.join("daemon.log"));
        let text = log
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        out.push_str(&format!("--- {} ---\n", n.host.name));
        for l in tail.into_iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The pids of every task the lab's daemons started (from their logs).
pub fn task_pids(lab: &Lab) -> Vec<u32> {
    task_pids_in(lab.dir())
}

/// The pids of every task started by the daemons whose `daemon.log` is in
/// a folder of `dir` (a lab's, or the sandbox's).
pub fn task_pids_in(dir: &std::path::Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let log = std::fs::read_to_string(entry.path().join("daemon.log")).unwrap_or_default();
        for line in log.lines() {
            if let Some((_, rest)) = line.split_once(" started: pid ")
                && let Some(pid) = rest.split_whitespace().next().and_then(|p| p.parse().ok())
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Whether `pid` is a `shoal whoami` task that still runs (not a zombie).
pub fn is_running(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let whoami = String::from_utf8_lossy(&cmdline).contains("whoami");
    whoami
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
}

/// The namespaces of the lab's tasks that still exist.
pub fn task_namespaces_left(lab: &Lab) -> Vec<String> {
    let existing = netns_list();
    task_netns(lab.dir())
        .into_iter()
        .filter(|n| existing.contains(n))
        .collect()
}
