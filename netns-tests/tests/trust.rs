//! Trust in the control plane, end to end: what a node's credentials let
//! it see and do, seen from that node's own network namespace with the
//! very key and certificate its daemon keeps in `<state-dir>/swarm/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use shoal_control::api::cluster_proto::cluster_client::ClusterClient;
use shoal_control::api::{self, client_config};
use shoal_control::state::ClusterState;
use shoal_control::swarm::files::SwarmDir;
use shoal_control::swarm::rpc::Empty;
use shoal_netns_tests::Lab;
use shoal_netns_tests::swarm::{addr, form, logs, manager_token, wait_converged, worker_token};
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
    let tls = client_config(&identity.ca, &identity.cert, &identity.key)?;
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
            .state;
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
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("stat {}", path.display()))?;
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
        "service", "create", "--name", "agent", "--mode", "global", "--", "sh", "-c",
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
