//! The `shoal` command: node daemon, demo server and sandbox.

mod admin;
mod cli;
mod client;
mod logging;
mod node_dataplane;

fn main() -> std::process::ExitCode {
    cli::main()
}
