//! The `shoal` command: node daemon, demo server and sandbox.

mod admin;
mod cli;
mod client;
mod engine;
mod logging;

fn main() -> std::process::ExitCode {
    cli::main()
}
