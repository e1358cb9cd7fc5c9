//! Command-line interface, following `docker` verbs.

mod daemon;
mod filter;
mod info;
mod login;
mod logs;
mod network;
mod node;
mod progress;
mod sandbox;
mod service;
mod stack;
mod swarm;
mod swarm_ca;
mod table;
mod tasks;
mod version;
mod whoami;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Swarm-mode networking without Docker: overlay, service VIPs, routing mesh."
)]
struct Cli {
    /// The daemon to talk to: unix:///path/shoal.sock (default
    /// unix:///var/lib/shoal/shoal.sock), or a manager on another machine
    /// as tcp://MANAGER:2377, reached over mTLS with an operator
    /// certificate (see --tls-dir).
    #[arg(
        short = 'H',
        long,
        global = true,
        env = "SHOAL_HOST",
        value_name = "HOST"
    )]
    host: Option<String>,
    /// The folder of the operator certificate for -H tcp://...: ca.pem,
    /// cert.pem and key.pem, as `shoal swarm ca client-cert --out DIR`
    /// writes them on a manager (default ~/.shoal).
    #[arg(long, global = true, env = "SHOAL_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon.
    Daemon(daemon::Args),
    /// Form, join and leave a swarm.
    Swarm(swarm::Args),
    /// Manage the swarm's nodes (on a manager).
    Node(node::Args),
    /// Manage overlay networks (on a manager).
    Network(network::Args),
    /// Manage services and their tasks (on a manager).
    Service(service::Args),
    /// Deploy and manage stacks of services from compose files (on a manager).
    Stack(stack::Args),
    /// Keep credentials for a registry in docker's config file, for
    /// `--with-registry-auth`.
    Login(login::LoginArgs),
    /// Forget the credentials for a registry.
    Logout(login::LogoutArgs),
    /// This node's place in the swarm.
    Info(info::Args),
    /// Tiny HTTP (or UDP echo) server for demos and tests.
    Whoami(whoami::Args),
    /// A whole cluster in network namespaces on this machine.
    Sandbox(sandbox::Args),
    /// Show the version of this program and of the daemon.
    Version(version::Args),
    /// The eBPF engine's helper: removes its task interfaces once standard
    /// input ends, i.e. once the daemon that started it is gone.
    #[command(hide = true)]
    ReapTaskInterfaces,
    /// Print a shell completion script: `source <(shoal completion bash)`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Exit status when the command line is wrong (clap's, and ours for what
/// clap cannot check); 1 is any other failure.
const USAGE_EXIT: u8 = 2;

/// A mistake in the command line found after parsing: exits with 2 like
/// clap's own usage errors.
#[derive(Debug)]
pub(crate) struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A [`Usage`] error.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(USAGE_EXIT)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let tls_dir = cli.tls_dir.as_deref();
    let daemon = || crate::client::Daemon::from_host(cli.host.as_deref(), tls_dir);
    let result = match cli.command {
        Command::Daemon(args) => daemon::run(args),
        Command::Swarm(args) => daemon().and_then(|d| swarm::run(&d, args, tls_dir)),
        Command::Node(args) => daemon().and_then(|d| node::run(&d, args)),
        Command::Network(args) => daemon().and_then(|d| network::run(&d, args)),
        Command::Service(args) => daemon().and_then(|d| service::run(&d, args)),
        Command::Info(args) => daemon().and_then(|d| info::run(&d, args)),
        Command::Whoami(args) => whoami::run(args),
        Command::Stack(args) => daemon().and_then(|d| stack::run(&d, args)),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Version(args) => version::run(daemon(), args),
        Command::ReapTaskInterfaces => {
            use shoal_dataplane::engine::ebpf::NODE_END_PREFIX;
            shoal_dataplane::sys::veth::reap_after_eof(std::io::stdin(), NODE_END_PREFIX)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("removing task interfaces: {e}"))
        }
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "shoal", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            eprintln!("shoal: {e:#}");
            eprintln!("Run 'shoal --help' for usage.");
            ExitCode::from(USAGE_EXIT)
        }
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Names and ids go into the admin API's URL paths; they are made of
/// Docker's name characters, so anything else is refused here rather than
/// escaped.
fn path_part<'a>(key: &'a str, what: &str) -> anyhow::Result<&'a str> {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(key)
    } else {
        Err(usage(format!("`{key}` is not a {what}")))
    }
}

/// A duration as docker writes them: `500ms`, `2s`, `1.5s`, `1m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let bad = || format!("`{s}` is not a duration; write e.g. 2s, 500ms or 1m");
    let (number, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        return Err(bad());
    };
    number
        .parse::<f64>()
        .ok()
        .map(|v| v * unit)
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(bad)
}

/// When the Unix time `at` is, from now: `in 89d 23h (unix 1767225600)`,
/// or `expired 5s ago (...)`.
pub(crate) fn expires_in(at: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (word, secs) = if at >= now {
        ("in", at - now)
    } else {
        ("expired", now - at)
    };
    let span = match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    };
    if word == "in" {
        format!("in {span} (unix {at})")
    } else {
        format!("expired {span} ago (unix {at})")
    }
}

/// [`parse_duration`] in milliseconds.
pub(crate) fn parse_millis(s: &str) -> Result<u64, String> {
    parse_duration(s).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
