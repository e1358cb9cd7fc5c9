//! `shoal daemon`: the node daemon. With `--tables FILE` it runs in embed
//! mode: another orchestrator owns the tasks and writes the tables file;
//! shoal applies it, reapplies it on change or SIGHUP, and serves its
//! counters on the admin socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_dataplane::dns;
use shoal_dataplane::engine::Dataplane;
use shoal_dataplane::engine::userspace::{Options, UserspaceEngine};
use shoal_dataplane::sys;
use shoal_dataplane::tables::Tables;
use tokio::signal::unix::{SignalKind, signal};

use crate::admin;

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
    let Some(tables_path) = args.tables.clone() else {
        bail!(
            "the daemon needs --tables FILE: embed mode is what this build runs \
             (the swarm control plane arrives with `shoal swarm init`)"
        );
    };
    match args.dataplane {
        EngineChoice::Ebpf => {
            bail!("the eBPF engine is not part of this build; use --dataplane userspace (or auto)")
        }
        EngineChoice::Auto => {
            tracing::info!("dataplane: userspace (auto; this build has no eBPF engine)")
        }
        EngineChoice::Userspace => tracing::info!("dataplane: userspace (requested)"),
    }

    let tables = load(&tables_path)?;
    let state = StateDir::claim(&args.state_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(args, tables_path, tables, &state));
    state.release();
    result
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

async fn serve(args: Args, path: PathBuf, tables: Tables, state: &StateDir) -> anyhow::Result<()> {
    let underlay = sys::link::find_underlay(tables.node.underlay)
        .await
        .with_context(|| format!("{}: node.underlay", path.display()))?;
    tracing::info!(
        "node {} on underlay {} ({}, MTU {})",
        tables.node.name,
        tables.node.underlay,
        underlay.name,
        underlay.mtu
    );
    let mut engine = UserspaceEngine::start(Options {
        underlay: tables.node.underlay,
        underlay_mtu: underlay.mtu,
        vxlan_port: args.vxlan_port,
    })?;
    let report = engine.apply(&tables).context("applying the tables")?;
    tracing::info!("tables applied: {report}");
    let mut resolver = start_resolver(&args.state_dir)?;
    if let Err(e) = resolver.apply(&tables) {
        tracing::error!("{e}");
    }

    let shared = engine.shared();
    let applied = Arc::new(std::sync::Mutex::new(tables));
    let server = admin::serve(&state.socket(), {
        let applied = applied.clone();
        admin::Sources {
            metrics: Box::new(move || shared.counters.render()),
            tables: Box::new(move || {
                let tables = applied.lock().map(|t| t.clone()).ok();
                serde_json::to_string_pretty(&tables).unwrap_or_default()
            }),
        }
    })
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
    engine.shutdown();
    resolver.shutdown();
    Ok(())
}

/// The embedded DNS resolver, forwarding to the resolvers of the daemon's
/// own namespace.
fn start_resolver(state_dir: &Path) -> anyhow::Result<dns::Resolver> {
    let resolv_conf = Path::new("/etc/resolv.conf");
    let upstreams = dns::upstreams_from_resolv_conf(resolv_conf)?;
    if upstreams.is_empty() {
        tracing::warn!(
            "dns: {} names no resolver; tasks get SERVFAIL for names that are not services",
            resolv_conf.display()
        );
    }
    Ok(dns::Resolver::new(state_dir, upstreams)?)
}

/// The daemon's state directory, claimed by a pid file so that two daemons
/// never share one. Leftovers of a crashed daemon (stale pid file and
/// socket) are cleared on the next start; its task interfaces are already
/// gone, since the kernel removes a TAP when its last descriptor closes.
struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    fn claim(dir: &Path) -> anyhow::Result<StateDir> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
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

    fn release(&self) {
        let _ = std::fs::remove_file(self.dir.join("shoal.sock"));
        let _ = std::fs::remove_file(self.dir.join("shoal.pid"));
    }
}
