//! The embedded DNS resolver: service discovery for tasks (DESIGN.md §4).
//!
//! Every network namespace holding a local endpoint gets a resolver on
//! `127.0.0.11:53` (UDP and TCP) inside it, as Docker's embedded DNS does,
//! and, for a named namespace, `/etc/netns/NAME/resolv.conf` pointing there.
//!
//! - [`names`]: the tables turned into answers; sans-IO and pure.
//! - [`server`]: [`Resolver`], which the daemon feeds every applied
//!   [`Tables`](crate::tables::Tables); it starts and stops the per-namespace
//!   servers and swaps the names they answer from atomically.
//! - `handler`: one query in, one answer out: ours from [`names`], the
//!   rest through [`forward`] to the daemon's own upstream resolvers.
//! - `listen` binds the sockets inside a namespace; [`resolv_conf`] owns
//!   the files written for tasks and the record that survives a crash.

pub mod forward;
mod handler;
mod listen;
pub mod names;
pub mod resolv_conf;
pub mod server;

use std::io;
use std::path::PathBuf;

pub use forward::upstreams_from_resolv_conf;
pub use names::{Answer, Names};
pub use server::Resolver;

/// Where the resolver listens inside every task namespace (Docker's choice).
pub const LISTEN_ADDR: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(127, 0, 0, 11), 53);

/// Why the resolver could not do what the tables ask.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(
        "cannot serve DNS on {LISTEN_ADDR} (UDP and TCP) in network namespace `{netns}`: {source}; \
         is another resolver bound there, and does the daemon run as root?"
    )]
    Listen {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot write {}: {source}; the daemon needs write access to /etc/netns (run it as root)",
        .path.display()
    )]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot read {}: {source}; check that the file exists and is readable",
        .path.display()
    )]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Several namespaces failed; each is listed.
    #[error("{}", list(.0))]
    Several(Vec<DnsError>),
}

impl DnsError {
    /// One error for a list of them (`None` when the list is empty).
    pub(crate) fn from_list(mut errors: Vec<DnsError>) -> Option<DnsError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(DnsError::Several(errors)),
        }
    }
}

fn list(errors: &[DnsError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}
