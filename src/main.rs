//! The `shoal` command: node daemon, demo server and sandbox.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
