//! Command-line interface, following `docker` verbs.

mod daemon;
mod sandbox;
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon.
    Daemon(daemon::Args),
    /// Tiny HTTP (or UDP echo) server for demos and tests.
    Whoami(whoami::Args),
    /// A whole cluster in network namespaces on this machine.
    Sandbox(sandbox::Args),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Daemon(args) => daemon::run(args),
        Command::Whoami(args) => whoami::run(args),
        Command::Sandbox(args) => sandbox::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
