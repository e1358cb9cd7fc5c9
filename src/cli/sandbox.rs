//! `shoal sandbox up | down | status`: a whole cluster in network namespaces
//! on this machine, built with the netns-tests harness. Each node `nK` is a
//! namespace `shoal-sbx-nK` on one underlay bridge (198.18.0.K) running
//! `shoal daemon` in embed mode, with one task namespace `shoal-sbx-nK-web`
//! running `shoal whoami` on the overlay network `demo` (10.10.0.(10+K)).
//! Everything lives under `/run/shoal-sandbox`; `state.json` there records
//! what `down` removes.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use shoal_netns_tests::{
    DaemonConfig, Lab, LabState, ProcRecord, SpawnOpts, http_get, netns_list, teardown, wait_until,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create the nodes, start a daemon and a whoami task on each, and show
    /// them talking over the overlay.
    Up {
        /// How many nodes.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=MAX_NODES as i64))]
        nodes: u8,
    },
    /// Stop every process and delete every namespace of the sandbox.
    Down,
    /// Show the nodes, their daemons and tasks.
    Status,
}

const STATE_DIR: &str = "/run/shoal-sandbox";
const STATE_FILE: &str = "state.json";
const PREFIX: &str = "shoal-sbx";
const NETWORK: &str = "demo";
const VNI: u32 = 4097;
const SUBNET: &str = "10.10.0.0/24";
const MAX_NODES: u8 = 64;
const WHOAMI_PORT: u16 = 80;
/// The demo service: its VIP on the `demo` network and its published port.
const SERVICE: &str = "web";
const VIP: &str = "10.10.0.100";
const PUBLISHED: u16 = 8080;
/// How long the demo retries a request while the overlay comes up.
const DEMO_TIMEOUT: Duration = Duration::from_secs(15);

/// What `up` leaves behind for `down` and `status`.
#[derive(Debug, Serialize, Deserialize)]
struct SandboxState {
    lab: LabState,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Node {
    name: String,
    netns: String,
    underlay: Ipv4Addr,
    state_dir: PathBuf,
    daemon: ProcRecord,
    task: Task,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    name: String,
    netns: String,
    ip: Ipv4Addr,
    whoami: ProcRecord,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Up { nodes } => up(nodes),
        Command::Down => down(),
        Command::Status => status(),
    }
}

fn state_dir() -> &'static Path {
    Path::new(STATE_DIR)
}

fn node_name(k: u8) -> String {
    format!("n{k}")
}

fn underlay_ip(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, k)
}

fn task_ip(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 10, 0, 10 + k)
}

fn task_netns(k: u8) -> String {
    format!("{PREFIX}-{}-web", node_name(k))
}

/// The sandbox's namespaces that exist now, whether recorded or not.
fn leftover_netns() -> Vec<String> {
    netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .collect()
}

fn up(nodes: u8) -> Result<()> {
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
    match build(&mut lab, nodes, &bin) {
        Ok(nodes) => {
            let state = SandboxState {
                lab: lab.persist(),
                nodes,
            };
            if let Err(e) = save(&state) {
                let _ = teardown(&state.lab);
                let _ = std::fs::remove_dir_all(state_dir());
                return Err(e);
            }
            print_access(&state.nodes);
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

/// Creates the nodes and tasks, starts their processes and runs the demo.
fn build(lab: &mut Lab, count: u8, bin: &Path) -> Result<Vec<Node>> {
    let mut planned = Vec::new();
    for k in 1..=count {
        let host = lab.add_host(&node_name(k))?;
        let task = lab.add_netns(&format!("{}-web", node_name(k)))?;
        planned.push((k, host, task));
    }
    let mut nodes = Vec::new();
    for (k, host, task_ns) in &planned {
        let dir = state_dir().join(&host.name);
        let config = DaemonConfig {
            bin: Some(bin.to_path_buf()),
            tables: dir.join("tables.yaml"),
            state_dir: dir.clone(),
            extra_args: Vec::new(),
            spawn: SpawnOpts {
                log: Some(dir.join("daemon.log")),
                detach: true,
                ..SpawnOpts::default()
            },
        };
        let daemon = lab
            .start_daemon_with(host, &tables_yaml(*k, count), &config)
            .with_context(|| {
                format!(
                    "starting the daemon of node {} (log: {})",
                    host.name,
                    dir.join("daemon.log").display()
                )
            })?;
        let task_name = format!("web-{}", host.name);
        let port = WHOAMI_PORT.to_string();
        let bin_str = bin.display().to_string();
        let whoami = lab.spawn_opts(
            task_ns,
            &[&bin_str, "whoami", "--port", &port, "--name", &task_name],
            &SpawnOpts {
                log: Some(dir.join("web.log")),
                detach: true,
                ..SpawnOpts::default()
            },
        )?;
        println!(
            "node {}: daemon pid {}, task {task_name} at {}",
            host.name,
            daemon.proc.pid,
            task_ip(*k)
        );
        nodes.push(Node {
            name: host.name.clone(),
            netns: host.netns.clone(),
            underlay: host.underlay,
            state_dir: dir,
            daemon: daemon.proc.record().clone(),
            task: Task {
                name: task_name,
                netns: task_ns.clone(),
                ip: task_ip(*k),
                whoami: whoami.record().clone(),
            },
        });
    }
    demo(lab, &nodes)?;
    let client = lab.add_host("client")?;
    mesh_demo(lab, &nodes, &client)?;
    Ok(nodes)
}

/// From a client host outside the overlay, one request to the published
/// port of every node: any node answers, a task on any node serves it, and
/// the task sees the client's own address.
fn mesh_demo(lab: &Lab, nodes: &[Node], client: &shoal_netns_tests::Host) -> Result<()> {
    for node in nodes {
        let addr = SocketAddrV4::new(node.underlay, PUBLISHED);
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

/// From the task on the first node, one request to every other task (or to
/// itself when alone), printing who answered.
fn demo(lab: &Lab, nodes: &[Node]) -> Result<()> {
    let Some(first) = nodes.first() else {
        return Ok(());
    };
    let targets: Vec<&Node> = if nodes.len() == 1 {
        nodes.iter().collect()
    } else {
        nodes.iter().skip(1).collect()
    };
    for target in targets {
        let addr = SocketAddrV4::new(target.task.ip, WHOAMI_PORT);
        let body = lab
            .in_netns(&first.task.netns, move || {
                let mut last = String::new();
                wait_until(
                    &format!("an answer from http://{addr}/"),
                    DEMO_TIMEOUT,
                    || match http_get(addr, Duration::from_secs(2)) {
                        Ok(body) => Some(body),
                        Err(e) => {
                            last = format!("{e:#}");
                            None
                        }
                    },
                )
                .map_err(|e| e.context(last))
            })?
            .with_context(|| {
                format!(
                    "{} could not reach {} over the overlay (logs: {}/*/daemon.log)",
                    first.task.name, target.task.name, STATE_DIR
                )
            })?;
        let hostname = body
            .lines()
            .find(|l| l.starts_with("Hostname:"))
            .unwrap_or("(no Hostname line)");
        println!(
            "{} -> http://{}/  {hostname}",
            first.task.name, target.task.ip
        );
    }
    Ok(())
}

/// The embed-mode tables of node `k` of `count`: the `demo` network with
/// every node's task, the one of node `k` local.
fn tables_yaml(k: u8, count: u8) -> String {
    let mut y = format!(
        "# Generated by `shoal sandbox up` for node {name}.\n\
         node: {{ name: {name}, underlay: {underlay} }}\n\
         networks:\n  - {{ name: {NETWORK}, vni: {VNI}, subnet: {SUBNET} }}\n\
         endpoints:\n",
        name = node_name(k),
        underlay = underlay_ip(k),
    );
    for j in 1..=count {
        let local = if j == k {
            format!(", netns: {}", task_netns(j))
        } else {
            String::new()
        };
        y.push_str(&format!(
            "  - {{ network: {NETWORK}, ip: {}, node: {}, task: web-{}{local} }}\n",
            task_ip(j),
            underlay_ip(j),
            node_name(j)
        ));
    }
    let backends: Vec<String> = (1..=count)
        .map(|j| format!("{{ ip: {} }}", task_ip(j)))
        .collect();
    y.push_str(&format!(
        "services:\n  - name: {SERVICE}\n    vips: {{ {NETWORK}: {VIP} }}\n    \
         ports: [ {{ protocol: tcp, target: {WHOAMI_PORT}, published: {PUBLISHED} }} ]\n    \
         backends: [ {} ]\n",
        backends.join(", ")
    ));
    y
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

fn print_access(nodes: &[Node]) {
    println!(
        "\nThe sandbox is up: {} node(s) on the underlay 198.18.0.0/24, overlay `{NETWORK}` {SUBNET}.",
        nodes.len()
    );
    for node in nodes {
        println!(
            "  {name}: ip netns exec {ns} bash        (underlay {ul}, daemon log {log})",
            name = node.name,
            ns = node.netns,
            ul = node.underlay,
            log = node.state_dir.join("daemon.log").display()
        );
        println!(
            "      task {}: ip netns exec {} curl http://{}/",
            node.task.name, node.task.netns, node.task.ip
        );
    }
    if let Some(first) = nodes.first() {
        println!(
            "  service `{SERVICE}` (VIP {VIP}, published {PUBLISHED} on every node):\n      \
             ip netns exec {PREFIX}-client curl http://{}:{PUBLISHED}/    (routing mesh; RemoteAddr is the client)\n      \
             ip netns exec {} curl http://{SERVICE}/    (by name, from a task)",
            first.underlay, first.task.netns
        );
    }
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

fn status() -> Result<()> {
    let Some(state) = load()? else {
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
        "{:<6} {:<16} {:<14} {:<22} TASKS",
        "NODE", "NETNS", "UNDERLAY", "DAEMON"
    );
    for node in &state.nodes {
        let netns_gone = if shoal_dataplane::sys::netns::exists(&node.netns) {
            ""
        } else {
            " (netns gone)"
        };
        println!(
            "{:<6} {:<16} {:<14} {:<22} {} {} {} (whoami pid {} {})",
            node.name,
            format!("{}{netns_gone}", node.netns),
            node.underlay,
            format!("pid {} {}", node.daemon.pid, alive(&node.daemon)),
            node.task.name,
            node.task.netns,
            node.task.ip,
            node.task.whoami.pid,
            alive(&node.task.whoami)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_dataplane::tables::Tables;

    #[test]
    fn generated_tables_are_valid_and_local_where_they_should_be() {
        let yaml = tables_yaml(2, 3);
        let tables = Tables::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        tables
            .validate()
            .unwrap_or_else(|p| panic!("{p:?}\n{yaml}"));
        assert_eq!(tables.node.name, "n2");
        assert_eq!(tables.node.underlay, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(tables.networks.len(), 1);
        assert_eq!(tables.networks[0].vni, VNI);
        assert_eq!(tables.endpoints.len(), 3);
        assert_eq!(tables.services.len(), 1);
        assert_eq!(tables.services[0].backends.len(), 3);
        assert_eq!(tables.services[0].ports[0].published, Some(PUBLISHED));
        for (i, e) in tables.endpoints.iter().enumerate() {
            let j = i as u8 + 1;
            assert_eq!(e.ip, task_ip(j));
            assert_eq!(e.node, underlay_ip(j));
            assert_eq!(e.netns.as_deref(), (j == 2).then_some("shoal-sbx-n2-web"));
        }
    }
}
