//! The `shoal` command: node daemon, demo server and sandbox.

mod admin;
mod cli;
mod client;
mod logging;
mod node_dataplane;
mod web;

fn main() -> std::process::ExitCode {
    cli::main()
}
