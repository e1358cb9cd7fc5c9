//! Trust in the control plane, end to end: what a node's credentials let
//! it see and do, seen from that node's own network namespace with the
//! very key and certificate its daemon keeps in `<state-dir>/swarm/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use shoal_control::api::cluster_proto::cluster_client::ClusterClient;
use shoal_control::api::{self, client_config};
use shoal_control::pki::CaCertificate;
use shoal_control::state::ClusterState;
use shoal_control::swarm::files::SwarmDir;
use shoal_control::swarm::rpc::Empty;
use shoal_netns_tests::swarm::{T, addr, form, logs, manager_token, wait_converged, worker_token};
use shoal_netns_tests::{Lab, wait_until};
use tonic::Code;
use tonic::transport::Channel;

/// The server name every manager's certificate carries.
const ANY_MANAGER: &str = "swarm-manager";

/// What a node got from a manager when it asked with its own credentials.
struct Seen {
    /// The first state `WatchState` streamed to it.
    streamed: ClusterState,
    /// What `ReadState` answered: the state, or the refusal's code.
    read: Result<ClusterState, Code>,
}

/// Calls `to` as the node whose state directory is `state_dir`; to be run
/// inside that node's namespace.
fn call_as(state_dir: &Path, to: SocketAddr) -> Result<Seen> {
    let identity = SwarmDir::new(state_dir)
        .load()?
        .ok_or_else(|| anyhow!("{} holds no swarm identity", state_dir.display()))?;
    let tls = client_config(&identity.roots, &identity.cert, &[], &identity.key)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let channel: Channel = api::connect(to, tls, ANY_MANAGER).await?;
        let mut client = ClusterClient::new(channel).max_decoding_message_size(64 << 20);
        let mut stream = client.watch_state(Empty {}).await?.into_inner();
        let streamed = stream
            .message()
            .await?
            .context("the state stream ended before its first state")?
            .state
            .context("the state stream's first message carries no state")?;
        let read = match client.read_state(Empty {}).await {
            Ok(r) => Ok(r.into_inner().state),
            Err(s) => Err(s.code()),
        };
        Ok(Seen { streamed, read })
    })
}

/// The secrets `state` shows: their names, and any token or private key
/// found anywhere in it.
fn secrets_in(state: &ClusterState, tokens: &[&str]) -> Vec<String> {
    let json = serde_json::to_string(state).unwrap_or_default();
    let mut found: Vec<String> = state.secret_names().map(str::to_owned).collect();
    if json.contains("PRIVATE KEY") {
        found.push("a private key".into());
    }
    for t in tokens {
        if let Some(secret) = t.rsplit('-').next()
            && json.contains(secret)
        {
            found.push(format!("the token {t}"));
        }
    }
    found
}

#[test]
fn a_worker_joined_with_the_worker_token_receives_no_secret() -> Result<()> {
    let mut lab = Lab::new("trust-secrets")?;
    let swarm = form(&mut lab, 2, 1, &[])?;
    wait_converged(&swarm, &[0], 3)?;
    let (m1, m2, w1) = (&swarm.nodes[0], &swarm.nodes[1], &swarm.nodes[2]);
    let tokens = [worker_token(m1)?, manager_token(m1)?];
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();

    // From both managers, the leader and a follower.
    for manager in [m1, m2] {
        let to: SocketAddr = addr(manager).parse()?;
        let dir: PathBuf = w1.state_dir.clone();
        let seen = lab
            .in_netns(&w1.host.netns, move || call_as(&dir, to))?
            .with_context(|| logs(&swarm))?;
        if seen.streamed.nodes().len() != 3 {
            bail!(
                "the worker was streamed {} nodes, not 3",
                seen.streamed.nodes().len()
            );
        }
        assert_eq!(
            secrets_in(&seen.streamed, &tokens),
            Vec::<String>::new(),
            "{} streamed secrets to the worker",
            manager.host.name
        );
        assert_eq!(
            seen.read.as_ref().err(),
            Some(&Code::PermissionDenied),
            "ReadState for a worker"
        );
    }

    // The same calls with a manager's credentials do see the secrets in
    // ReadState (so the check above can fail), and never in the stream.
    let to: SocketAddr = addr(m1).parse()?;
    let dir = m2.state_dir.clone();
    let seen = lab.in_netns(&m2.host.netns, move || call_as(&dir, to))??;
    assert_eq!(secrets_in(&seen.streamed, &tokens), Vec::<String>::new());
    let full = seen
        .read
        .map_err(|c| anyhow!("ReadState for a manager: {c:?}"))?;
    let names: Vec<&str> = full.secret_names().collect();
    assert!(names.contains(&"swarm-ca-key"), "{names:?}");
    Ok(())
}

/// Every entry under `dir` whose mode is not private: folders must be
/// 0700, files 0600, anything else (the admin socket) without group or
/// other bits. Returns the offenders and how many entries were checked.
fn wider_than_private(dir: &Path) -> Result<(Vec<String>, usize)> {
    use std::os::unix::fs::PermissionsExt;
    let mut wide = Vec::new();
    let mut checked = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta =
            std::fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        checked += 1;
        let ok = if kind.is_dir() {
            mode == 0o700
        } else if kind.is_file() {
            mode == 0o600
        } else {
            mode & 0o077 == 0
        };
        if !ok {
            wide.push(format!("{} {mode:o}", path.display()));
        }
        if kind.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                todo.push(entry?.path());
            }
        }
    }
    Ok((wide, checked))
}

#[test]
fn state_directories_are_private_and_tightened_on_start() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut lab = Lab::new("trust-modes")?;
    let swarm = form(&mut lab, 1, 1, &[])?;
    wait_converged(&swarm, &[0], 2)?;
    // A task on every node, so that task logs exist.
    let out = swarm.nodes[0].shoal_ok(&[
        "service",
        "create",
        "--name",
        "agent",
        "--mode",
        "global",
        "--",
        "sh",
        "-c",
        "echo up; sleep 1000",
    ])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let must_exist = [
        "swarm/node-key.pem",
        "swarm/node.pem",
        "swarm/node.json",
        "tasks",
    ];
    let check = |node: &shoal_netns_tests::SwarmNode, also: &[&str]| -> Result<()> {
        for name in must_exist.iter().chain(also) {
            let p = node.state_dir.join(name);
            if !p.exists() {
                bail!("{} is missing; the check would prove nothing", p.display());
            }
        }
        let (wide, checked) = wider_than_private(&node.state_dir)?;
        assert!(checked > 8, "{checked} entries under {}", node.host.name);
        assert_eq!(wide, Vec::<String>::new(), "on {}", node.host.name);
        Ok(())
    };
    check(&swarm.nodes[0], &["swarm/raft/raft.redb"])?;
    check(&swarm.nodes[1], &[])?;
    let logs_on = |node: &shoal_netns_tests::SwarmNode| -> usize {
        walk_files(&node.state_dir.join("tasks"))
            .iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "log"))
            .count()
    };
    assert!(logs_on(&swarm.nodes[1]) > 0, "the worker wrote no task log");

    // A state directory left wide open by an older daemon is tightened
    // when the daemon starts again.
    let mut nodes = swarm.nodes;
    let mut worker = nodes.pop().context("a worker")?;
    worker.proc.terminate()?;
    let open = |p: &Path, mode: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(mode));
    open(&worker.state_dir, 0o755)?;
    open(&worker.state_dir.join("swarm"), 0o755)?;
    open(&worker.state_dir.join("swarm/node.json"), 0o644)?;
    open(&worker.state_dir.join("swarm/node-key.pem"), 0o644)?;
    let worker = lab.restart_swarm_node(&worker)?;
    check(&worker, &[])?;
    Ok(())
}

/// The soft and hard limits on open files of process `pid`.
fn nofile_limits(pid: u32) -> Result<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .context("no `Max open files` in /proc/PID/limits")?;
    let mut f = line.split_whitespace().map(str::parse::<u64>);
    match (f.next(), f.next()) {
        (Some(Ok(soft)), Some(Ok(hard))) => Ok((soft, hard)),
        _ => bail!("unreadable limits: {line}"),
    }
}

#[test]
fn an_embedded_daemon_keeps_its_state_directory_private_and_raises_its_descriptor_limit()
-> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    const LOW: u64 = 512;
    let mut lab = Lab::new("trust-embed")?;
    let host = lab.add_host("h1")?;
    let mut config = shoal_netns_tests::DaemonConfig::in_lab(lab.dir(), "h1", &[]);
    // The daemon starts with a low soft limit, as under many init systems.
    let wrapper = lab.dir().join("shoal-low-nofile");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -Sn {LOW}\nexec {} \"$@\"\n",
            shoal_netns_tests::try_shoal_bin()?.display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, PermissionsExt::from_mode(0o755))?;
    config.bin = Some(wrapper);
    // A state directory left wide open by an older daemon.
    let old = config.state_dir.join("old");
    std::fs::create_dir_all(&old)?;
    std::fs::write(old.join("file"), "x")?;
    let open = |p: &Path, mode: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(mode));
    open(&config.state_dir, 0o755)?;
    open(&old, 0o755)?;
    open(&old.join("file"), 0o644)?;

    let tables = format!(
        "node: {{ name: h1, underlay: {} }}\nnetworks:\n  - {{ name: red, vni: 4097, subnet: \
         10.10.0.0/24 }}\nendpoints: []\n",
        host.underlay
    );
    let daemon = lab.start_daemon_with(&host, &tables, &config)?;
    for name in ["shoal.pid", "shoal.sock", "old/file"] {
        let p = daemon.state_dir.join(name);
        if !p.exists() {
            bail!("{} is missing; the check would prove nothing", p.display());
        }
    }
    let (wide, checked) = wider_than_private(&daemon.state_dir)?;
    assert!(checked >= 5, "{checked} entries");
    assert_eq!(wide, Vec::<String>::new());
    let (soft, hard) = nofile_limits(daemon.proc.pid)?;
    assert!(
        soft > LOW && soft == hard,
        "open files: soft {soft}, hard {hard}"
    );
    Ok(())
}

/// Every regular file under `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                    todo.push(e.path());
                }
            }
            Ok(m) if m.is_file() => files.push(p),
            _ => {}
        }
    }
    files
}

/// A copy of a node's credentials (`<copy>/swarm/`), taken before the node
/// renews or forgets them.
fn save_credentials(node: &shoal_netns_tests::SwarmNode, to: &Path) -> Result<PathBuf> {
    let dir = to.join(&node.host.name);
    std::fs::create_dir_all(dir.join("swarm"))?;
    for f in ["node.json", "ca.pem", "node.pem", "node-key.pem"] {
        std::fs::copy(
            node.state_dir.join("swarm").join(f),
            dir.join("swarm").join(f),
        )
        .with_context(|| format!("copying {f} of {}", node.host.name))?;
    }
    Ok(dir)
}

/// Makes the calls named in `calls` (of every call of the cluster API but
/// `Join` and `Ping`) to `to` with the credentials under `state_dir`; each
/// call's name and status code.
fn calls_as(
    state_dir: &Path,
    to: SocketAddr,
    calls: &'static [&'static str],
) -> Result<Vec<(&'static str, Code)>> {
    use openraft_types::*;
    let identity = SwarmDir::new(state_dir)
        .load()?
        .ok_or_else(|| anyhow!("{} holds no swarm identity", state_dir.display()))?;
    let me = identity.record.node_id.clone();
    let tls = client_config(&identity.roots, &identity.cert, &[], &identity.key)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let channel: Channel = api::connect(to, tls, ANY_MANAGER).await?;
        let mut c = ClusterClient::new(channel);
        fn code<T>(r: Result<T, tonic::Status>) -> Code {
            r.map_or_else(|s| s.code(), |_| Code::Ok)
        }
        let vote = Vote::new(0, raft_id(&me));
        let task = TaskId::new("t1")?;
        let mut out = Vec::new();
        for &call in calls {
            let answer = match call {
                "Propose" => code(
                    c.propose(ProposeRequest {
                        command: Command::UpdateNode {
                            id: me.clone(),
                            update: NodeUpdate::default(),
                        },
                    })
                    .await,
                ),
                "ReadState" => code(c.read_state(Empty {}).await),
                "WatchState" => code(c.watch_state(Empty {}).await),
                "RenewCert" => code(
                    c.renew_cert(RenewRequest {
                        csr_pem: identity.key.csr_pem(&me)?,
                        tunnel_key: None,
                    })
                    .await,
                ),
                "AddVoter" => code(c.add_voter(VoterRequest { node: me.clone() }).await),
                "TaskLogs" => code(
                    c.task_logs(TaskLogsRequest {
                        task: task.clone(),
                        tail: None,
                        offset: None,
                    })
                    .await,
                ),
                "ReportTask" => code(
                    c.report_task(ReportTaskRequest {
                        task: task.clone(),
                        update: TaskUpdate::default(),
                    })
                    .await,
                ),
                "Leave" => code(c.leave(VoterRequest { node: me.clone() }).await),
                "RaftVote" => code(c.raft_vote(VoteRequest::new(vote, None)).await),
                "RaftAppend" => code(
                    c.raft_append(AppendEntriesRequest {
                        vote,
                        prev_log_id: None,
                        entries: Vec::new(),
                        leader_commit: None,
                    })
                    .await,
                ),
                "RaftSnapshot" => code(
                    c.raft_snapshot(InstallSnapshotRequest {
                        vote,
                        meta: Default::default(),
                        offset: 0,
                        data: Vec::new(),
                        done: false,
                    })
                    .await,
                ),
                other => bail!("no call `{other}` in the cluster API"),
            };
            out.push((call, answer));
        }
        Ok(out)
    })
}

/// Every call of the cluster API that needs a certificate.
const EVERY_CALL: &[&str] = &[
    "Propose",
    "ReadState",
    "WatchState",
    "RenewCert",
    "AddVoter",
    "TaskLogs",
    "ReportTask",
    "Leave",
    "RaftVote",
    "RaftAppend",
    "RaftSnapshot",
];

/// What a manager may do and a demoted one may not.
const MANAGER_CALLS: &[&str] = &["Propose", "ReadState", "AddVoter", "RaftVote"];

/// The Raft and request types [`calls_as`] sends.
mod openraft_types {
    pub use openraft::Vote;
    pub use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    pub use shoal_control::TaskId;
    pub use shoal_control::consensus::raft_id;
    pub use shoal_control::state::{Command, NodeUpdate, TaskUpdate};
    pub use shoal_control::swarm::rpc::{
        ProposeRequest, RenewRequest, ReportTaskRequest, TaskLogsRequest, VoterRequest,
    };
}

/// The calls of `answers` that were not refused: `permission_denied` for
/// a role or membership, `unauthenticated` for a spent certificate.
fn not_refused(answers: &[(&'static str, Code)]) -> Vec<(&'static str, Code)> {
    answers
        .iter()
        .filter(|(_, code)| !matches!(code, Code::PermissionDenied | Code::Unauthenticated))
        .cloned()
        .collect()
}

#[test]
fn demoted_and_removed_nodes_lose_their_powers_with_their_old_certificates() -> Result<()> {
    let mut lab = Lab::new("trust-roles")?;
    let swarm = form(&mut lab, 3, 1, &[])?;
    wait_converged(&swarm, &[0], 4)?;
    let (m1, m3, w1) = (&swarm.nodes[0], &swarm.nodes[2], &swarm.nodes[3]);
    let saved = lab.dir().join("saved");
    let old_m3 = save_credentials(m3, &saved)?;
    let old_w1 = save_credentials(w1, &saved)?;
    let to: SocketAddr = addr(m1).parse()?;

    // While m3 is a manager its certificate does what a manager may.
    let dir = old_m3.clone();
    let answers = lab.in_netns(&m3.host.netns, move || calls_as(&dir, to, MANAGER_CALLS))??;
    assert!(
        answers.iter().all(|(_, code)| *code == Code::Ok),
        "{answers:?}"
    );

    m1.shoal_ok(&["node", "demote", "m3"])?;
    wait_until("m3 to be a worker out of Raft", T, || {
        let i: serde_json::Value =
            serde_json::from_str(&m1.shoal_ok(&["info", "--format", "json"]).ok()?).ok()?;
        let m3_role: serde_json::Value =
            serde_json::from_str(&m3.shoal_ok(&["info", "--format", "json"]).ok()?).ok()?;
        (i["raft"]["voters"] == 2 && m3_role["role"] == "worker").then_some(())
    })
    .with_context(|| logs(&swarm))?;
    for manager in [m1, &swarm.nodes[1]] {
        let to: SocketAddr = addr(manager).parse()?;
        let dir = old_m3.clone();
        let answers = lab.in_netns(&m3.host.netns, move || calls_as(&dir, to, MANAGER_CALLS))??;
        assert_eq!(
            not_refused(&answers),
            Vec::new(),
            "{}: {answers:?}",
            manager.host.name
        );
    }

    // A removed worker: every call is refused, whoever it asks.
    let dir = old_w1.clone();
    let answers = lab.in_netns(&w1.host.netns, move || calls_as(&dir, to, &["WatchState"]))??;
    assert_eq!(answers, [("WatchState", Code::Ok)], "a member may watch");
    m1.shoal_ok(&["node", "rm", "--force", "w1"])?;
    wait_until("w1 to leave", T, || {
        (!w1.state_dir.join("swarm/node.json").exists()).then_some(())
    })?;
    for manager in [m1, &swarm.nodes[1]] {
        let to: SocketAddr = addr(manager).parse()?;
        let dir = old_w1.clone();
        let answers = lab.in_netns(&w1.host.netns, move || calls_as(&dir, to, EVERY_CALL))??;
        assert_eq!(answers.len(), 11);
        assert_eq!(
            not_refused(&answers),
            Vec::new(),
            "{}: {answers:?}",
            manager.host.name
        );
    }
    // The swarm is fine.
    wait_converged(&swarm, &[0, 1], 3)?;
    Ok(())
}

/// How many times `node`'s daemon says it renewed its certificate.
fn renewals(node: &shoal_netns_tests::SwarmNode) -> usize {
    daemon_log(node)
        .matches("renewed this node's certificate")
        .count()
}

/// What `node`'s daemon has logged so far.
fn daemon_log(node: &shoal_netns_tests::SwarmNode) -> String {
    let log = node.state_dir.parent().map(|d| d.join("daemon.log"));
    log.and_then(|l| std::fs::read_to_string(l).ok())
        .unwrap_or_default()
}

/// Waits until port `port` on every node of `nodes` answers from exactly
/// the hostnames in `want`, asked from `client`.
fn wait_mesh(
    lab: &Lab,
    nodes: &[&shoal_netns_tests::SwarmNode],
    client: &shoal_netns_tests::Host,
    port: u16,
    want: &std::collections::BTreeSet<String>,
) -> Result<()> {
    for node in nodes {
        let to = std::net::SocketAddrV4::new(node.host.underlay, port);
        let mut last = std::collections::BTreeMap::new();
        wait_until(&format!("{to} to answer from {want:?}"), T, || {
            let (seen, _) = shoal_netns_tests::whoami_spray(
                lab,
                &client.netns,
                to,
                20,
                std::time::Duration::from_secs(2),
            );
            last = seen.clone();
            (seen
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                == *want)
                .then_some(())
        })
        .with_context(|| format!("last answers: {last:?}"))?;
    }
    Ok(())
}

#[test]
fn a_swarm_with_certificates_of_seconds_runs_through_several_lifetimes() -> Result<()> {
    use std::time::{Duration, Instant};
    const LIFE: Duration = Duration::from_secs(8);
    let mut lab = Lab::new("trust-expiry")?;
    let started = Instant::now();
    let swarm = shoal_netns_tests::swarm::form_with(&mut lab, 3, 2, &[], &["--cert-expiry", "8s"])?;
    wait_converged(&swarm, &[0], 5)?;
    let client = lab.add_host("client")?;
    let m1 = &swarm.nodes[0];
    let info: serde_json::Value =
        serde_json::from_str(&m1.shoal_ok(&["info", "--format", "json"])?)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let expiry = info["cert_expiry"]
        .as_u64()
        .context("info shows the certificate expiry")?;
    assert!(
        expiry <= now + LIFE.as_secs(),
        "{expiry} vs now {now}: not 8 s"
    );

    m1.shoal_ok(&["network", "create", "-d", "overlay", "skynet"])?;
    let out = m1.shoal_ok(&[
        "service",
        "create",
        "--name",
        "http",
        "--network",
        "skynet",
        "--replicas",
        "2",
        "-p",
        "80:80",
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let nodes: Vec<&shoal_netns_tests::SwarmNode> = swarm.nodes.iter().collect();
    let mut scale = [5, 3, 4].into_iter().cycle();
    // Keep changing the service and checking the mesh on every node until
    // three lifetimes have passed.
    while started.elapsed() < LIFE * 3 + Duration::from_secs(2) {
        let replicas = scale.next().unwrap_or(3);
        let out = swarm.nodes[1].shoal_ok(&["service", "scale", &format!("http={replicas}")])?;
        assert!(out.contains("verify: Service converged"), "{out}");
        // A replica that is stopping may still be listed a moment.
        let tasks = wait_until(&format!("{replicas} running replicas"), T, || {
            shoal_netns_tests::swarm::running_tasks(m1, "http")
                .ok()
                .filter(|t| t.len() == replicas)
        })
        .with_context(|| logs(&swarm))?;
        let want = tasks.keys().cloned().collect();
        wait_mesh(&lab, &nodes, &client, 80, &want).with_context(|| logs(&swarm))?;
    }
    for node in &swarm.nodes {
        let n = renewals(node);
        assert!(
            n >= 3,
            "{} renewed {n} times in {:?}\n{}",
            node.host.name,
            started.elapsed(),
            logs(&swarm)
        );
        let i: serde_json::Value =
            serde_json::from_str(&node.shoal_ok(&["info", "--format", "json"])?)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        assert!(
            i["cert_expiry"].as_u64().is_some_and(|e| e >= now),
            "{}: {i}",
            node.host.name
        );
    }
    // node inspect shows what the state recorded.
    let inspect: serde_json::Value =
        serde_json::from_str(&m1.shoal_ok(&["node", "inspect", "w1"])?)?;
    let recorded = inspect[0]["cert_expiry"]
        .as_u64()
        .context("node inspect shows the expiry")?;
    assert!(
        recorded > expiry + LIFE.as_secs(),
        "renewed since {expiry}: {inspect}"
    );

    // A longer lifetime applies from the next renewals on.
    m1.shoal_ok(&["swarm", "update", "--cert-expiry", "1h"])?;
    wait_until("every node to hold a certificate of an hour", T, || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        swarm
            .nodes
            .iter()
            .all(|n| {
                n.shoal_ok(&["info", "--format", "json"])
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| v["cert_expiry"].as_u64())
                    .is_some_and(|e| e > now + 1800)
            })
            .then_some(())
    })
    .with_context(|| logs(&swarm))?;

    // A node joins at the end, and the mesh answers on it too.
    let w3 = lab.add_host("w3")?;
    let w3 = lab.start_swarm_node(&w3, &[])?;
    let out = w3.shoal_ok(&["swarm", "join", "--token", &worker_token(m1)?, &addr(m1)])?;
    assert!(out.contains("as a worker"), "{out}");
    wait_converged(&swarm, &[0], 6)?;
    let tasks = shoal_netns_tests::swarm::running_tasks(m1, "http")?;
    let want = tasks.keys().cloned().collect();
    wait_mesh(&lab, &[&w3], &client, 80, &want).with_context(|| logs(&swarm))?;
    Ok(())
}

/// When the certificate in `node`'s files expires.
fn cert_expiry(node: &shoal_netns_tests::SwarmNode) -> Result<std::time::SystemTime> {
    let identity = SwarmDir::new(&node.state_dir)
        .load()?
        .ok_or_else(|| anyhow!("{} holds no swarm identity", node.state_dir.display()))?;
    Ok(identity.cert.not_after())
}

#[test]
fn a_node_whose_certificate_expired_while_it_was_down_rejoins_and_keeps_its_place() -> Result<()> {
    use std::time::{Duration, SystemTime};
    let mut lab = Lab::new("trust-rejoin")?;
    let mut swarm =
        shoal_netns_tests::swarm::form_with(&mut lab, 1, 1, &[], &["--cert-expiry", "6s"])?;
    wait_converged(&swarm, &[0], 2)?;
    let m1 = &swarm.nodes[0];
    m1.shoal_ok(&["node", "update", "--label-add", "zone=a", "w1"])?;
    let out = m1.shoal_ok(&[
        "service",
        "create",
        "--name",
        "pinned",
        "--constraint",
        "node.labels.zone==a",
        "--",
        "sleep",
        "1000",
    ])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let on_w1 = |m1: &shoal_netns_tests::SwarmNode| {
        shoal_netns_tests::swarm::running_tasks(m1, "pinned")
            .ok()
            .filter(|t| t.len() == 1 && t.values().all(|n| n == "w1"))
    };
    wait_until("the pinned task on w1", T, || on_w1(m1)).with_context(|| logs(&swarm))?;
    let id = info_of(&swarm.nodes[1], "node_id").context("w1's node id")?;
    let nodes = shoal_netns_tests::swarm::node_ls(m1)?.len();

    // w1 is down while its certificate is due for renewal, and past its
    // expiry.
    swarm.nodes[1].proc.terminate()?;
    let expiry = cert_expiry(&swarm.nodes[1])?;
    while SystemTime::now() < expiry + Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(200));
    }
    swarm.nodes[1] = lab.restart_swarm_node(&swarm.nodes[1])?;
    let (m1, w1) = (&swarm.nodes[0], &swarm.nodes[1]);
    assert!(cert_expiry(w1)? < SystemTime::now(), "w1 came back expired");
    // Its state stream is refused: it cannot follow the swarm by itself.
    let err = lab
        .in_netns(&w1.host.netns, {
            let (dir, to) = (w1.state_dir.clone(), addr(m1).parse::<SocketAddr>()?);
            move || call_as(&dir, to).err().map(|e| format!("{e:#}"))
        })?
        .context("a node with an expired certificate was streamed the state")?;
    eprintln!("with the expired certificate: {err}");

    let out = w1.shoal_ok(&["swarm", "join", "--token", &worker_token(m1)?, &addr(m1)])?;
    assert!(
        out.contains("rejoined the swarm as a worker") && out.contains(&id),
        "{out}"
    );
    assert!(
        cert_expiry(w1)? > SystemTime::now(),
        "w1 has a new certificate"
    );
    assert_eq!(info_of(w1, "node_id"), Some(id.clone()), "w1 kept its id");
    wait_converged(&swarm, &[0], nodes).with_context(|| logs(&swarm))?;
    let listed = shoal_netns_tests::swarm::node_ls(m1)?;
    assert_eq!(listed.len(), nodes, "no node was added: {listed:?}");
    let w1_entry = listed
        .iter()
        .find(|n| n["id"] == id.as_str())
        .context("w1 is listed under its old id")?;
    assert_eq!(w1_entry["labels"]["zone"], "a", "{w1_entry}");
    wait_until("the pinned task running on w1 again", T, || on_w1(m1))
        .with_context(|| logs(&swarm))?;

    // A node whose certificate is still good is in a swarm: no rejoin.
    let refused = m1.shoal(&["swarm", "join", "--token", &worker_token(m1)?, &addr(m1)])?;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(said.contains("already part of a swarm"), "{said}");
    Ok(())
}

/// Running tasks in `node`'s own copy of the state, from its `/metrics`.
fn running_seen_by(node: &shoal_netns_tests::SwarmNode) -> Option<f64> {
    let text = node.get("/metrics").ok()?;
    shoal_netns_tests::openmetrics::Exposition::parse(&text)
        .ok()?
        .get("shoal_tasks", &[("state", "running")])
}

#[test]
fn a_worker_whose_manager_goes_silent_follows_another_within_ten_seconds() -> Result<()> {
    use std::time::{Duration, Instant};
    let mut lab = Lab::new("trust-silent")?;
    let swarm = form(&mut lab, 3, 1, &[])?;
    wait_converged(&swarm, &[0], 4)?;
    let (m1, m2, m3, w1) = (
        &swarm.nodes[0],
        &swarm.nodes[1],
        &swarm.nodes[2],
        &swarm.nodes[3],
    );
    m1.shoal_ok(&[
        "service",
        "create",
        "--name",
        "idle",
        "--replicas",
        "1",
        "--constraint",
        "node.role==manager",
        "--",
        "sleep",
        "1000",
    ])?;
    let seen = |n: f64, within: Duration| -> Result<()> {
        wait_until(&format!("w1 to see {n} running tasks"), within, || {
            (running_seen_by(w1) == Some(n)).then_some(())
        })
        .with_context(|| logs(&swarm))
        .map(drop)
    };
    seen(1.0, T)?;

    // w1 can reach m1 only, so it streams from m1.
    lab.cut_off(&w1.host, &[&m2.host, &m3.host])?;
    m1.shoal_ok(&["service", "scale", "idle=2"])?;
    seen(2.0, T)?;

    // m1 goes silent for w1; a change made on m2 reaches w1 anyway.
    lab.cut_off(&w1.host, &[&m1.host])?;
    let change = Instant::now();
    m2.shoal_ok(&["service", "scale", "--detach", "idle=3"])?;
    seen(
        3.0,
        Duration::from_secs(10).saturating_sub(change.elapsed()),
    )?;
    eprintln!(
        "w1 followed another manager {:?} after the change",
        change.elapsed()
    );
    lab.cut_off(&w1.host, &[])?;
    Ok(())
}

/// What `node`'s `/info` says of `key`.
fn info_of(node: &shoal_netns_tests::SwarmNode, key: &str) -> Option<String> {
    let info: serde_json::Value = serde_json::from_str(&node.get("/info").ok()?).ok()?;
    info[key].as_str().map(str::to_owned)
}

#[test]
fn a_worker_whose_manager_falls_behind_the_others_follows_one_ahead_within_ten_seconds()
-> Result<()> {
    use std::time::{Duration, Instant};
    let mut lab = Lab::new("trust-behind")?;
    let swarm = form(&mut lab, 3, 1, &[])?;
    wait_converged(&swarm, &[0], 4)?;
    let (m1, m2, m3, w1) = (
        &swarm.nodes[0],
        &swarm.nodes[1],
        &swarm.nodes[2],
        &swarm.nodes[3],
    );
    m1.shoal_ok(&[
        "service",
        "create",
        "--name",
        "idle",
        "--replicas",
        "1",
        "--constraint",
        "node.hostname==m1",
        "--",
        "sleep",
        "1000",
    ])?;
    let seen = |n: f64, within: Duration| -> Result<()> {
        wait_until(&format!("w1 to see {n} running tasks"), within, || {
            (running_seen_by(w1) == Some(n)).then_some(())
        })
        .with_context(|| logs(&swarm))
        .map(drop)
    };
    seen(1.0, T)?;

    // w1 can reach m2 only, so it streams from m2.
    lab.cut_off(&w1.host, &[&m1.host, &m3.host])?;
    m1.shoal_ok(&["service", "scale", "idle=2"])?;
    seen(2.0, T)?;

    // m2 is cut off (the tasks run on m1, which carries on) from the other managers but not from w1: it keeps
    // answering w1, heartbeats included, with a state that no longer
    // moves. m1 and m3 carry on without it.
    lab.cut_off(&m2.host, &[&m1.host, &m3.host])?;
    lab.cut_off(&w1.host, &[])?;
    let m2_id = info_of(m2, "node_id").context("m2's node id")?;
    wait_until("m1 and m3 to agree on a leader other than m2", T, || {
        let leader = info_of(m1, "leader")?;
        (leader != m2_id && info_of(m3, "leader") == Some(leader.clone())).then_some(())
    })
    .with_context(|| logs(&swarm))?;
    let change = Instant::now();
    m1.shoal_ok(&["service", "scale", "--detach", "idle=3"])?;
    seen(
        3.0,
        Duration::from_secs(10).saturating_sub(change.elapsed()),
    )?;
    eprintln!(
        "w1 left m2, which fell behind, {:?} after the change",
        change.elapsed()
    );
    let w1_log = daemon_log(w1);
    assert!(
        w1_log.contains("has not applied entry"),
        "w1 followed another manager, but not because m2 fell behind:\n{w1_log}"
    );
    lab.cut_off(&m2.host, &[])?;
    Ok(())
}

/// Opens up to `n` TCP connections to `to` and keeps them, sending nothing.
fn idle_connections(to: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_millis(500)).ok()
        })
        .collect()
}

/// How many of `conns` the other end has closed.
fn closed(conns: &[std::net::TcpStream]) -> usize {
    use std::io::{ErrorKind, Read};
    conns
        .iter()
        .filter(|c| {
            let _ = c.set_read_timeout(Some(std::time::Duration::from_millis(20)));
            let mut buf = [0u8; 64];
            let mut stream: &std::net::TcpStream = c;
            match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            }
        })
        .count()
}

#[test]
fn idle_connections_to_metrics_and_the_visualizer_do_not_stop_the_daemon() -> Result<()> {
    use std::time::{Duration, Instant};
    let mut lab = Lab::new("trust-idle")?;
    let host = lab.add_host("m1")?;
    let metrics: SocketAddr = format!("{}:9323", host.underlay).parse()?;
    let web: SocketAddr = format!("{}:8080", host.underlay).parse()?;
    let (m, w) = (metrics.to_string(), web.to_string());
    let m1 = lab.start_swarm_node(&host, &["--metrics-addr", &m, "--web", &w])?;
    m1.shoal_ok(&["swarm", "init"])?;
    let client = lab.add_host("client")?;
    // 2,000 connections held here need more than the usual 1,024
    // descriptors.
    let limit = shoal_dataplane::sys::process::raise_nofile_limit()?;
    assert!(
        limit >= 2_100,
        "this test needs 2,100 descriptors; the hard limit is {limit}"
    );
    let opened = Instant::now();
    let (to_metrics, to_web) = lab.in_netns(&client.netns, move || {
        (
            idle_connections(metrics, 1_000),
            idle_connections(web, 1_000),
        )
    })?;
    eprintln!(
        "{} idle connections to /metrics, {} to the visualizer",
        to_metrics.len(),
        to_web.len()
    );
    // The daemon takes a few of them; the kernel's backlog (4,096 per
    // listener) holds the rest for it.
    assert!(
        to_metrics.len() + to_web.len() == 2_000,
        "{} + {} connections opened",
        to_metrics.len(),
        to_web.len()
    );

    // The admin API, Raft and new tasks still work at once.
    let start = Instant::now();
    m1.shoal_ok(&["node", "ls"])?;
    let out = m1.shoal_ok(&[
        "service", "create", "--name", "after", "--", "sleep", "1000",
    ])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", m1.proc.pid))?.count();
    assert!(fds < 800, "the daemon holds {fds} descriptors");

    // Those it accepted, it closes once their request head is late (the
    // rest wait in the backlog, costing it nothing).
    wait_until(
        "the idle connections to be closed",
        Duration::from_secs(60),
        || {
            let (cm, cw) = (closed(&to_metrics), closed(&to_web));
            (cm >= 32 && cw >= 256).then_some((cm, cw))
        },
    )?;
    assert!(
        opened.elapsed() >= Duration::from_secs(10),
        "closed before the header timeout"
    );
    Ok(())
}

/// The CA certificates `node` trusts, from its files.
fn roots_of(node: &shoal_netns_tests::SwarmNode) -> Result<Vec<CaCertificate>> {
    Ok(SwarmDir::new(&node.state_dir)
        .load()?
        .ok_or_else(|| anyhow!("{} holds no swarm identity", node.state_dir.display()))?
        .roots)
}

#[test]
fn a_ca_rotation_gives_every_node_a_certificate_of_the_new_ca_while_the_mesh_answers() -> Result<()>
{
    let mut lab = Lab::new("trust-ca-rotate")?;
    let swarm = shoal_netns_tests::swarm::form(&mut lab, 3, 2, &[])?;
    wait_converged(&swarm, &[0], 5)?;
    let client = lab.add_host("client")?;
    let m1 = &swarm.nodes[0];
    let old = CaCertificate::from_pem(&m1.shoal_ok(&["swarm", "ca"])?)?;
    let old_token = worker_token(m1)?;
    m1.shoal_ok(&["network", "create", "-d", "overlay", "skynet"])?;
    let out = m1.shoal_ok(&[
        "service",
        "create",
        "--name",
        "http",
        "--network",
        "skynet",
        "--replicas",
        "2",
        "-p",
        "80:80",
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let nodes: Vec<&shoal_netns_tests::SwarmNode> = swarm.nodes.iter().collect();
    let tasks = shoal_netns_tests::swarm::running_tasks(m1, "http")?;
    wait_mesh(&lab, &nodes, &client, 80, &tasks.keys().cloned().collect())?;

    // On a manager that may not lead; the command waits for every node.
    let m2 = &swarm.nodes[1];
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(&m2.bin)
        .arg("-H")
        .arg(format!("unix://{}", m2.socket.display()))
        .args(["swarm", "ca", "--rotate"])
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}\n{}", logs(&swarm));
    assert!(stderr.contains("CA rotation done"), "{stderr}");
    let new = CaCertificate::from_pem(&stdout)?;
    assert_ne!(new, old);
    for node in &swarm.nodes {
        let name = &node.host.name;
        wait_until(&format!("{name} to trust the new CA alone"), T, || {
            (roots_of(node).ok()? == [new.clone()]).then_some(())
        })
        .with_context(|| logs(&swarm))?;
        let identity = SwarmDir::new(&node.state_dir).load()?.context("identity")?;
        identity.cert.verify_issued_by(&new)?;
        assert!(
            daemon_log(node).contains("with the cluster's new CA"),
            "{name} did not renew with the new CA"
        );
    }
    // The control plane works on the new certificates, and so does the
    // mesh on every node.
    let out = swarm.nodes[2].shoal_ok(&["service", "scale", "http=3"])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let tasks = wait_until("3 running replicas", T, || {
        shoal_netns_tests::swarm::running_tasks(m1, "http")
            .ok()
            .filter(|t| t.len() == 3)
    })?;
    wait_mesh(&lab, &nodes, &client, 80, &tasks.keys().cloned().collect())
        .with_context(|| logs(&swarm))?;

    // The old token pins the old CA: refused, in one line; the new joins.
    let w3 = lab.add_host("w3")?;
    let w3 = lab.start_swarm_node(&w3, &[])?;
    let refused = w3.shoal(&["swarm", "join", "--token", &old_token, &addr(m1)])?;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "joined with the old token");
    assert!(err.contains("join token pins"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let new_token = worker_token(m1)?;
    assert_ne!(new_token, old_token);
    let out = w3.shoal_ok(&["swarm", "join", "--token", &new_token, &addr(m1)])?;
    assert!(out.contains("as a worker"), "{out}");
    assert_eq!(roots_of(&w3)?, std::slice::from_ref(&new));
    wait_converged(&swarm, &[0], 6)?;
    wait_mesh(&lab, &[&w3], &client, 80, &tasks.keys().cloned().collect())
        .with_context(|| logs(&swarm))?;
    Ok(())
}
