//! Command-line interface, following `docker` verbs.

pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
