//! `shoal daemon`: the node daemon.
//!
//! Without `--tables` it is a swarm node: it waits for `shoal swarm init`
//! or `join` (or resumes the swarm it was in), serves the cluster API and
//! gossip, and answers `shoal node` and `shoal info` on the admin socket;
//! with `--web` it also serves the visualizer while it is a manager.
//! With `--tables FILE` it runs in embed mode: another orchestrator owns
//! the tasks and writes the tables file; shoal applies it, reapplies it on
//! change or SIGHUP, and serves its counters on the admin socket.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_control::swarm::{Info, Swarm, SwarmConfig, TablesSink};
use shoal_dataplane::overlay::tunnel::NodeKey;
use shoal_dataplane::sys;
use shoal_dataplane::tables::{Tables, WgKey};
use tokio::signal::unix::{SignalKind, signal};

use crate::admin;
use crate::node_dataplane::{Engine, NodeDataplane, Wire, start_engine, start_resolver};

#[derive(clap::Args)]
pub struct Args {
    /// Embed mode: apply this tables file (YAML or JSON, DESIGN.md §3),
    /// reread on change or SIGHUP.
    #[arg(long, value_name = "FILE")]
    tables: Option<PathBuf>,
    /// Where the daemon keeps its state and its admin socket (shoal.sock).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/shoal")]
    state_dir: PathBuf,
    /// Data-plane engine.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    dataplane: EngineChoice,
    /// UDP port for VXLAN.
    #[arg(long, value_name = "PORT", default_value_t = 4789)]
    vxlan_port: u16,
    /// UDP port for the WireGuard tunnels of encrypted networks.
    #[arg(long, value_name = "PORT", default_value_t = shoal_dataplane::overlay::tunnel::DEFAULT_PORT)]
    tunnel_port: u16,
    /// This node's name in listings (default: the machine's hostname).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// The address other nodes reach this node at (default: the only
    /// non-loopback IPv4 address, if there is only one).
    #[arg(long, value_name = "IP")]
    advertise_addr: Option<IpAddr>,
    /// Where the cluster API listens (managers; TCP, mTLS).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:2377")]
    listen_addr: SocketAddr,
    /// Where gossip listens (UDP).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:7946")]
    gossip_addr: SocketAddr,
    /// How soon a dead node is declared down, e.g. 2s or 500ms.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = super::parse_duration)]
    failure_detection: Duration,
    /// Also serve `GET /metrics` (OpenMetrics text) over plain HTTP on this
    /// address, for Prometheus, e.g. 0.0.0.0:9323.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_addr: Option<SocketAddr>,
    /// A registry reached over plain HTTP instead of HTTPS, HOST:PORT (as
    /// dockerd's); repeat for several.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// The OCI runtime for image tasks: auto picks crun where it works
    /// (installed, and the host's cgroups are not hybrid), else runc.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Auto)]
    runtime: RuntimeArg,
    /// Serve the visualizer, a live web page of the nodes and their tasks,
    /// on this address while this node is a manager (swarm mode).
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "tables")]
    web: Option<SocketAddr>,
}

impl Args {
    fn wire(&self) -> Wire {
        Wire {
            vxlan_port: self.vxlan_port,
            tunnel_port: self.tunnel_port,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeArg {
    Auto,
    Runc,
    Crun,
}

/// The runtime `--runtime` gives on this host; the log says which and why.
fn image_runtime(arg: RuntimeArg) -> anyhow::Result<PathBuf> {
    use shoal_control::agent::container::{CgroupLayout, RuntimeChoice, choose_runtime, installed};
    let choice = match arg {
        RuntimeArg::Auto => RuntimeChoice::Auto,
        RuntimeArg::Runc => RuntimeChoice::Runc,
        RuntimeArg::Crun => RuntimeChoice::Crun,
    };
    // PID 1's view: under `ip netns exec` this process's /sys has none.
    let mountinfo = std::fs::read_to_string("/proc/1/mountinfo")
        .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
        .unwrap_or_default();
    match choose_runtime(choice, CgroupLayout::of(&mountinfo), installed) {
        Ok((program, why)) => {
            tracing::info!("image tasks run with {program} ({why})");
            Ok(PathBuf::from(program))
        }
        // Only image tasks need one: say so, and run the rest.
        Err(why) if choice == RuntimeChoice::Auto => {
            tracing::warn!("image tasks cannot run on this node: {why}");
            Ok(PathBuf::from(
                shoal_control::agent::container::DEFAULT_RUNTIME,
            ))
        }
        Err(why) => anyhow::bail!(why),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineChoice {
    Auto,
    Ebpf,
    Userspace,
}

/// How often the tables file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init();
    // Every task interface, DNS socket, connection and log file takes a
    // descriptor from one table; the soft limit is often 1024.
    match sys::process::raise_nofile_limit() {
        Ok(n) => tracing::debug!("open descriptors allowed: {n}"),
        Err(e) => tracing::warn!("raising the open-descriptor limit: {e}"),
    }
    let Some(tables_path) = args.tables.clone() else {
        return swarm_mode(args);
    };
    let engine = engine_choice(args.dataplane)?;
    let tables = load(&tables_path)?;
    let state = StateDir::claim(&args.state_dir)?;
    let tunnel_key = state.tunnel_key()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(args, engine, tables_path, tables, &state, tunnel_key));
    state.release();
    result
}

/// Which engine runs, said in the log with the reason.
fn engine_choice(choice: EngineChoice) -> anyhow::Result<Engine> {
    use shoal_dataplane::engine::ebpf;
    match choice {
        EngineChoice::Ebpf => {
            if let Some(why) = ebpf::unavailable() {
                bail!("--dataplane ebpf: {why}; use --dataplane userspace (or auto)");
            }
            tracing::info!(
                "dataplane: ebpf (requested; overlay networks and service VIPs: tables with published ports are refused)"
            );
            Ok(Engine::Ebpf)
        }
        EngineChoice::Auto => {
            let ebpf = match ebpf::unavailable() {
                Some(why) => format!("the eBPF engine cannot run here: {why}"),
                None => "the eBPF engine does not carry the routing mesh yet".to_owned(),
            };
            tracing::info!("dataplane: userspace (auto; {ebpf})");
            Ok(Engine::Userspace)
        }
        EngineChoice::Userspace => {
            tracing::info!("dataplane: userspace (requested)");
            Ok(Engine::Userspace)
        }
    }
}

/// Reads and validates a tables file, including the checks that need this
/// machine (namespaces that must exist).
fn load(path: &Path) -> anyhow::Result<Tables> {
    let tables = Tables::load(path)?;
    if let Err(problems) = tables.check_host(&sys::netns::exists) {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {p}", path.display()))
            .collect();
        bail!("tables refused, nothing applied:\n{}", lines.join("\n"));
    }
    Ok(tables)
}

async fn serve(
    args: Args,
    engine: Engine,
    path: PathBuf,
    tables: Tables,
    state: &StateDir,
    tunnel_key: NodeKey,
) -> anyhow::Result<()> {
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(admin::metrics::bind(addr).await?),
        None => None,
    };
    let engine_name = engine.name();
    let mut engine = start_engine(
        engine,
        tables.node.underlay,
        args.wire(),
        &tunnel_key,
        &tables.node.name,
    )
    .await
    .with_context(|| format!("{}: node.underlay", path.display()))?;
    let report = engine.apply(&tables).context("applying the tables")?;
    tracing::info!("tables applied: {report}");
    let mut resolver = start_resolver(&args.state_dir)?;
    if let Err(e) = resolver.apply(&tables) {
        tracing::error!("{e}");
    }

    let shared = engine.metrics();
    let exposition = admin::metrics::Exposition::new(move || {
        let mut out = String::new();
        shared.encode_metrics(&mut out);
        std::future::ready(out)
    });
    let metrics_server = metrics_listener.map(|l| admin::metrics::serve(l, exposition.clone()));
    let applied = Arc::new(std::sync::Mutex::new(tables));
    let server = admin::serve(
        &state.socket(),
        admin::data_plane_routes({
            let applied = applied.clone();
            let info = embedded_info(engine_name, tunnel_key.public());
            let of_node = applied.clone();
            admin::Sources {
                metrics: exposition,
                tables: Box::new(move || {
                    let tables = applied.lock().map(|t| t.clone()).ok();
                    serde_json::to_string_pretty(&tables).unwrap_or_default()
                }),
                info: Box::new(move || {
                    let mut info = info.clone();
                    if let Ok(t) = of_node.lock() {
                        info.hostname = t.node.name.clone();
                    }
                    serde_json::to_string_pretty(&info).unwrap_or_default()
                }),
            }
        }),
    )
    .await?;

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut last_text = std::fs::read(&path).ok();
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        let forced = tokio::select! {
            _ = hup.recv() => true,
            _ = tick.tick() => false,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let text = std::fs::read(&path).ok();
        if !forced && text == last_text {
            continue;
        }
        last_text = text;
        match load(&path) {
            Ok(tables) => match engine.apply(&tables) {
                Ok(report) => {
                    tracing::info!("tables reapplied: {report}");
                    if let Err(e) = resolver.apply(&tables) {
                        tracing::error!("{e}");
                    }
                    if let Ok(mut a) = applied.lock() {
                        *a = tables;
                    }
                }
                Err(e) => tracing::error!("reapplying the tables failed: {e}"),
            },
            Err(e) => tracing::error!("{e:#}; the tables in force stay"),
        }
    }
    tracing::info!("stopping: removing task interfaces and resolvers");
    server.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    engine.shutdown();
    resolver.shutdown();
    Ok(())
}

/// The daemon's state directory, claimed by a pid file so that two daemons
/// never share one, and private in either mode (umask 077; folders 0700
/// and files 0600 under it, a wider one tightened). Leftovers of a
/// crashed daemon (stale pid file and socket) are cleared on the next
/// start; its task interfaces are already gone, since the kernel removes a
/// TAP when its last descriptor closes.
struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    fn claim(dir: &Path) -> anyhow::Result<StateDir> {
        let tightened = shoal_control::private_dir::claim(dir)
            .with_context(|| format!("making the state directory {} private", dir.display()))?;
        if tightened > 0 {
            tracing::info!(
                "made {tightened} entries under {} private (0700 folders, 0600 files)",
                dir.display()
            );
        }
        let pid_file = dir.join("shoal.pid");
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            bail!(
                "another shoal daemon (pid {pid}) uses the state directory {}; stop it or pick another --state-dir",
                dir.display()
            );
        }
        let _ = std::fs::remove_file(dir.join("shoal.sock"));
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", pid_file.display()))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("shoal.sock")
    }

    /// This node's WireGuard key (`tunnel.key`), made on the first start.
    fn tunnel_key(&self) -> anyhow::Result<NodeKey> {
        let path = self.dir.join("tunnel.key");
        let key = NodeKey::load_or_create(&path)
            .with_context(|| format!("loading this node's tunnel key {}", path.display()))?;
        tracing::info!("tunnel public key: {}", key.public());
        Ok(key)
    }

    fn release(&self) {
        let _ = std::fs::remove_file(self.dir.join("shoal.sock"));
        let _ = std::fs::remove_file(self.dir.join("shoal.pid"));
    }
}

/// A swarm node: resumes the swarm it was in, or waits for `swarm init` or
/// `swarm join` on the admin socket.
fn swarm_mode(args: Args) -> anyhow::Result<()> {
    let engine = engine_choice(args.dataplane)?;
    let hostname = match args.node_name.clone() {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading this machine's hostname; give --node-name")?
            .trim()
            .to_owned(),
    };
    let state = StateDir::claim(&args.state_dir)?;
    let dataplane_of_node = Arc::new(NodeDataplane::new(
        engine,
        args.wire(),
        &args.state_dir,
        state.tunnel_key()?,
    ));
    // Operators' CLIs reach the admin API through the cluster API's port.
    let (operator_sink, operator_sessions) = admin::operators::channel();
    let config = SwarmConfig {
        state_dir: args.state_dir.clone(),
        hostname,
        advertise_ip: args.advertise_addr.or_else(only_address),
        listen_addr: args.listen_addr,
        gossip_addr: args.gossip_addr,
        detection: args.failure_detection,
        dataplane: engine.name().to_owned(),
        registries: shoal_control::image::RegistryOptions {
            insecure: args.insecure_registries.clone(),
        },
        runtime: image_runtime(args.runtime)?,
        tables: TablesSink(dataplane_of_node.clone()),
        tunnel_key: Some(dataplane_of_node.tunnel_key.public()),
        operators: Some(operator_sink),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let metrics_listener = match args.metrics_addr {
            Some(addr) => Some(admin::metrics::bind(addr).await?),
            None => None,
        };
        let web = match args.web {
            Some(addr) => Some(crate::web::bind(addr).await?),
            None => None,
        };
        let swarm = Swarm::start(config).await?;
        let exposition = swarm_exposition(swarm.clone(), dataplane_of_node);
        let metrics_server = metrics_listener.map(|l| admin::metrics::serve(l, exposition.clone()));
        let routes = admin::swarm::routes(swarm.clone()).merge(admin::metrics::route(exposition));
        let operators = admin::operators::serve(operator_sessions, routes.clone(), admin::LIMITS);
        let server = admin::serve(&state.socket(), routes).await?;
        let web = web.map(|listener| crate::web::serve(listener, swarm.clone()));
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping");
        server.abort();
        operators.abort();
        if let Some(m) = metrics_server {
            m.abort();
        }
        if let Some(web) = web {
            web.abort();
        }
        swarm.shutdown().await;
        anyhow::Ok(())
    });
    state.release();
    result
}

/// `shoal info` in embed mode: no swarm, the engine and the tunnel key.
fn embedded_info(engine: &str, tunnel_key: WgKey) -> Info {
    Info {
        swarm: "embedded".into(),
        node_id: None,
        hostname: String::new(),
        role: None,
        cluster_id: None,
        addr: None,
        managers: Vec::new(),
        nodes: 0,
        leader: None,
        raft: None,
        dataplane: engine.to_owned(),
        cert_expiry: None,
        tunnel_key: Some(tunnel_key),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// A swarm node's `/metrics`: the control plane's families, then those of
/// its data plane once it runs.
fn swarm_exposition(swarm: Swarm, dataplane: Arc<NodeDataplane>) -> admin::metrics::Exposition {
    admin::metrics::Exposition::new(move || {
        let (swarm, dataplane) = (swarm.clone(), dataplane.clone());
        async move {
            let mut out = String::new();
            swarm.metrics().await.encode(&mut out);
            dataplane.encode_metrics(&mut out);
            out
        }
    })
}

/// The machine's address when it has exactly one non-loopback IPv4 one.
fn only_address() -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .filter(|i| !i.is_loopback())
        .map(|i| i.ip())
        .filter(IpAddr::is_ipv4)
        .collect();
    match addrs[..] {
        [one] => Some(one),
        _ => None,
    }
}
