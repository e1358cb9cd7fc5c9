//! `shoal sandbox up | down | status`: a whole swarm in network namespaces
//! on this machine, built with the netns-tests harness, like `kind` for
//! Kubernetes. Each node `nK` is a namespace `shoal-sbx-nK` on one underlay
//! bridge (198.18.0.K) running a swarm-mode `shoal daemon`; n1 runs
//! `swarm init`, the first `--managers` nodes join as managers and the
//! rest as workers. As in the Swarm tutorials, n1 also runs a registry
//! (Debian's `docker-registry`, plain HTTP on 198.18.0.1:5000, which every
//! daemon lists with `--insecure-registry`), and the demo images built here
//! offline from busybox are pushed to it with skopeo: a whoami and the
//! tutorial stack's `kickscar/nginx` and `kickscar/hellodocker`. A demo
//! service `web` (the whoami image, one replica per node, port 8080
//! published through the routing mesh) is deployed on the overlay network
//! `demo` and asked from a client host on every node's address. Everything lives under `/run/shoal-sandbox`; `state.json`
//! there records what `down` removes.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use shoal_netns_tests::registry::{DockerRegistry, demo};
use shoal_netns_tests::swarm::addr;
use shoal_netns_tests::{
    Host, Lab, LabState, ProcRecord, SwarmNode, http_get, netns_list, teardown, wait_until,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create the nodes, form a swarm, deploy a demo service and show the
    /// routing mesh answering on every node.
    Up {
        /// How many nodes.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=MAX_NODES as i64))]
        nodes: u8,
        /// How many of them are managers (the others are workers).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=MAX_NODES as i64))]
        managers: u8,
    },
    /// Stop every process and delete every namespace of the sandbox.
    Down,
    /// Show the nodes, their daemons and the swarm's services.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: super::table::Format,
    },
}

const STATE_DIR: &str = "/run/shoal-sandbox";
const STATE_FILE: &str = "state.json";
const PREFIX: &str = "shoal-sbx";
const NETWORK: &str = "demo";
const MAX_NODES: u8 = 64;
/// The demo service and its published port.
const SERVICE: &str = "web";
/// The registry's port on n1, as in the tutorial.
const REGISTRY_PORT: u16 = 5000;
const PUBLISHED: u16 = 8080;
/// Where every node serves `/metrics` and managers the visualizer.
const METRICS_PORT: u16 = 9323;
const WEB_PORT: u16 = 8088;
/// How long the demo retries a request while the mesh comes up.
const DEMO_TIMEOUT: Duration = Duration::from_secs(30);

/// What `up` leaves behind for `down` and `status`.
#[derive(Debug, Serialize, Deserialize)]
struct SandboxState {
    lab: LabState,
    nodes: Vec<Node>,
    /// The registry on n1, `HOST:PORT`.
    #[serde(default)]
    registry: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Node {
    name: String,
    netns: String,
    underlay: Ipv4Addr,
    manager: bool,
    state_dir: PathBuf,
    socket: PathBuf,
    daemon: ProcRecord,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Up { nodes, managers } => up(nodes, managers),
        Command::Down => down(),
        Command::Status { format } => status(format),
    }
}

fn state_dir() -> &'static Path {
    Path::new(STATE_DIR)
}

fn node_name(k: u8) -> String {
    format!("n{k}")
}

/// The sandbox's namespaces that exist now, whether recorded or not.
fn leftover_netns() -> Vec<String> {
    netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .collect()
}

fn up(nodes: u8, managers: u8) -> Result<()> {
    if managers > nodes {
        return Err(super::usage(format!(
            "--managers {managers} is more than --nodes {nodes}"
        )));
    }
    if state_dir().join(STATE_FILE).exists() || !leftover_netns().is_empty() {
        bail!("a sandbox is already up; `shoal sandbox down` first");
    }
    let bin = std::env::current_exe().context("finding the running shoal binary")?;
    let lab = match Lab::with_names("sandbox", PREFIX, state_dir().to_path_buf()) {
        Ok(lab) => lab,
        Err(e) => {
            let _ = std::fs::remove_dir_all(state_dir());
            return Err(e.context("creating the sandbox underlay (needs root)"));
        }
    };
    let mut lab = lab;
    match build(&mut lab, nodes, managers, &bin) {
        Ok((nodes, registry)) => {
            let state = SandboxState {
                lab: lab.persist(),
                nodes,
                registry,
            };
            if let Err(e) = save(&state) {
                let _ = teardown(&state.lab);
                let _ = std::fs::remove_dir_all(state_dir());
                return Err(e);
            }
            print_access(&state.nodes, &state.registry);
            Ok(())
        }
        Err(e) => {
            eprintln!("shoal sandbox: setting up failed; removing what was created");
            drop(lab);
            let _ = std::fs::remove_dir_all(state_dir());
            Err(e)
        }
    }
}

/// Starts the registry and the daemons, forms the swarm, pushes the demo
/// images, deploys the demo service and asks it through the mesh. Returns
/// the nodes and the registry's `HOST:PORT`.
fn build(lab: &mut Lab, count: u8, managers: u8, bin: &Path) -> Result<(Vec<Node>, String)> {
    let mut started: Vec<(SwarmNode, bool)> = Vec::new();
    let mut registry = None;
    for k in 1..=count {
        let host = lab.add_host(&node_name(k))?;
        let registry = match &registry {
            Some(r) => r,
            None => registry.insert(
                DockerRegistry::start(lab, &host, REGISTRY_PORT, true)
                    .context("starting the registry on n1")?,
            ),
        };
        let metrics = format!("0.0.0.0:{METRICS_PORT}");
        let web = format!("0.0.0.0:{WEB_PORT}");
        let insecure = registry.host();
        let node = lab
            .start_swarm_node_with(
                &host,
                &[
                    "--metrics-addr",
                    &metrics,
                    "--web",
                    &web,
                    "--insecure-registry",
                    &insecure,
                ],
                bin,
                true,
            )
            .with_context(|| format!("starting the daemon of node {}", host.name))?;
        started.push((node, k <= managers));
    }
    let first = &started[0].0;
    first.shoal_ok(&["swarm", "init"])?;
    let manager_token = first.shoal_ok(&["swarm", "join-token", "-q", "manager"])?;
    let worker_token = first.shoal_ok(&["swarm", "join-token", "-q", "worker"])?;
    let leader = addr(first);
    for (node, manager) in started.iter().skip(1) {
        let token = if *manager {
            &manager_token
        } else {
            &worker_token
        };
        node.shoal_ok(&["swarm", "join", "--token", token.trim(), &leader])?;
    }
    let registry = registry.context("no node, so no registry")?;
    let mut images = Vec::new();
    for (repo, tag, image) in [
        ("demo/whoami", "1", demo::whoami()?),
        ("kickscar/hellodocker", "latest", demo::api()?),
        ("kickscar/nginx", "latest", demo::front()?),
    ] {
        let reference = registry.push(lab, &first.host, &image, repo, tag)?;
        println!("pushed {reference} (built here from busybox-static, pushed with skopeo)");
        images.push(reference);
    }
    let replicas = count.to_string();
    let published = format!("{PUBLISHED}:80");
    println!("$ shoal network create -d overlay {NETWORK}");
    first.shoal_ok(&["network", "create", "-d", "overlay", NETWORK])?;
    let create = [
        "service",
        "create",
        "--name",
        SERVICE,
        "--network",
        NETWORK,
        "--replicas",
        &replicas,
        "-p",
        &published,
        &images[0],
    ];
    println!("$ shoal {}", create.join(" "));
    print!("{}", first.shoal_ok(&create)?);
    println!("$ shoal node ls");
    print!("{}", first.shoal_ok(&["node", "ls"])?);
    let client = lab.add_host("client")?;
    mesh_demo(lab, &started, &client)?;
    let nodes = started
        .iter()
        .map(|(n, manager)| Node {
            name: n.host.name.clone(),
            netns: n.host.netns.clone(),
            underlay: n.host.underlay,
            manager: *manager,
            state_dir: n.state_dir.clone(),
            socket: n.socket.clone(),
            daemon: n.proc.record().clone(),
        })
        .collect();
    Ok((nodes, registry.host()))
}

/// From a client host outside the overlay, requests to the published port
/// of every node: any node answers, a task on any node serves it, and the
/// task sees the client's own address.
fn mesh_demo(lab: &Lab, nodes: &[(SwarmNode, bool)], client: &Host) -> Result<()> {
    for (node, _) in nodes {
        let addr = SocketAddrV4::new(node.host.underlay, PUBLISHED);
        let body = lab
            .in_netns(&client.netns, move || {
                wait_until(
                    &format!("an answer from http://{addr}/"),
                    DEMO_TIMEOUT,
                    || http_get(addr, Duration::from_secs(2)).ok(),
                )
            })?
            .with_context(|| {
                format!(
                    "the routing mesh did not answer on {addr} (logs: {STATE_DIR}/*/daemon.log)"
                )
            })?;
        let line = |prefix: &str| {
            body.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or("")
                .to_string()
        };
        println!(
            "client {} -> http://{addr}/  {}  {}",
            client.underlay,
            line("Hostname:"),
            line("RemoteAddr:")
        );
    }
    Ok(())
}

fn save(state: &SandboxState) -> Result<()> {
    let path = state_dir().join(STATE_FILE);
    let json = serde_json::to_string_pretty(state).context("encoding the sandbox state")?;
    shoal_netns_tests::write_atomic(&path, &json)
}

fn load() -> Result<Option<SandboxState>> {
    let path = state_dir().join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).with_context(|| {
        format!(
            "{} is damaged; `shoal sandbox down` removes the sandbox anyway",
            path.display()
        )
    })
}

fn print_access(nodes: &[Node], registry: &str) {
    println!(
        "\nThe sandbox is up: a swarm of {} node(s) on the underlay 198.18.0.0/24.",
        nodes.len()
    );
    for node in nodes {
        println!(
            "  {name} ({role}): shoal -H unix://{sock} node ls    (ip netns exec {ns} bash; log {log})",
            name = node.name,
            role = if node.manager { "manager" } else { "worker" },
            sock = node.socket.display(),
            ns = node.netns,
            log = node
                .state_dir
                .parent()
                .unwrap_or(&node.state_dir)
                .join("daemon.log")
                .display()
        );
    }
    if let Some(first) = nodes.first() {
        println!(
            "  export SHOAL_HOST=unix://{sock}    # then: shoal service ls | ps {SERVICE} | scale {SERVICE}=5 | logs {SERVICE}\n  \
             ip netns exec {PREFIX}-client curl http://{ul}:{PUBLISHED}/    # the routing mesh, from outside\n  \
             ip netns exec {PREFIX}-client curl http://{ul}:{METRICS_PORT}/metrics    # every node's metrics\n  \
             ip netns exec {PREFIX}-client curl http://{ul}:{WEB_PORT}/api/cluster    # the visualizer's data (its page: http://{ul}:{WEB_PORT}/ from the client namespace)",
            sock = first.socket.display(),
            ul = first.underlay,
        );
    }
    println!(
        "  registry on n1: {registry} (demo/whoami:1, kickscar/nginx:latest, kickscar/hellodocker:latest); \
         push with: ip netns exec {PREFIX}-n1 skopeo copy --dest-tls-verify=false oci:DIR:TAG docker://{registry}/NAME:TAG\n  \
         the Swarm tutorial's stack: shoal network create -d overlay hellodocker-network && \
         shoal stack deploy -c examples/hellodocker-stack.yml hellodocker-api"
    );
    println!("`shoal sandbox status` shows it, `shoal sandbox down` removes it.");
}

fn down() -> Result<()> {
    let state = match load() {
        Ok(state) => state,
        Err(e) => {
            eprintln!("shoal sandbox: {e:#}");
            None
        }
    };
    let leftovers = leftover_netns();
    if state.is_none() && leftovers.is_empty() && !state_dir().exists() {
        println!("no sandbox is up");
        return Ok(());
    }
    let mut errors = Vec::new();
    if let Some(state) = &state
        && let Err(e) = teardown(&state.lab)
    {
        errors.push(format!("{e:#}"));
    }
    // Namespaces an interrupted `up` created but never recorded, and the
    // processes inside them.
    let leftovers = leftover_netns();
    if !leftovers.is_empty() {
        let orphans = LabState {
            name: "sandbox".into(),
            prefix: PREFIX.into(),
            dir: state_dir().to_path_buf(),
            switch: format!("{PREFIX}-switch"),
            netns: leftovers,
            hosts: Vec::new(),
            procs: Vec::new(),
        };
        if let Err(e) = teardown(&orphans) {
            errors.push(format!("{e:#}"));
        }
    }
    if state_dir().exists()
        && let Err(e) = std::fs::remove_dir_all(state_dir())
    {
        errors.push(format!("removing {STATE_DIR}: {e}"));
    }
    if !errors.is_empty() {
        bail!(
            "the sandbox is only partly removed: {}; run `shoal sandbox down` again",
            errors.join("; ")
        );
    }
    println!("sandbox removed");
    Ok(())
}

fn status(format: super::table::Format) -> Result<()> {
    let state = load()?;
    if format == super::table::Format::Json {
        #[derive(Serialize)]
        struct NodeStatus<'a> {
            #[serde(flatten)]
            node: &'a Node,
            running: bool,
        }
        let nodes: Vec<NodeStatus> = state
            .iter()
            .flat_map(|s| &s.nodes)
            .map(|node| NodeStatus {
                node,
                running: node.daemon.is_alive(),
            })
            .collect();
        return super::table::json(&serde_json::json!({
            "up": state.is_some(),
            "nodes": nodes,
            "leftover_netns": if state.is_none() { leftover_netns() } else { Vec::new() },
        }));
    }
    let Some(state) = state else {
        let leftovers = leftover_netns();
        if leftovers.is_empty() {
            println!("no sandbox is up; `shoal sandbox up` creates one");
        } else {
            println!(
                "no sandbox is recorded, but these namespaces remain: {}",
                leftovers.join(", ")
            );
            println!("`shoal sandbox down` removes them");
        }
        return Ok(());
    };
    let alive = |r: &ProcRecord| if r.is_alive() { "running" } else { "dead" };
    println!(
        "{:<6} {:<8} {:<14} {:<14} {:<22} SOCKET",
        "NODE", "ROLE", "NETNS", "UNDERLAY", "DAEMON"
    );
    for node in &state.nodes {
        println!(
            "{:<6} {:<8} {:<14} {:<14} {:<22} {}",
            node.name,
            if node.manager { "manager" } else { "worker" },
            node.netns,
            node.underlay,
            format!("pid {} {}", node.daemon.pid, alive(&node.daemon)),
            node.socket.display()
        );
    }
    if let Some(first) = state.nodes.first() {
        let daemon = crate::client::Daemon::from_host(
            Some(&format!("unix://{}", first.socket.display())),
            None,
        )?;
        println!();
        let services = daemon.get("/services");
        if let Err(e) = services.and_then(|s: Vec<_>| {
            super::service::print_services(&s, super::table::Format::Table, false)
        }) {
            println!("services: {e:#}");
        }
    }
    Ok(())
}
