//! `shoal version`: this program's version and, when the daemon answers,
//! the daemon's, as `docker version` shows client and server.

use anyhow::Result;
use serde::Serialize;
use shoal_control::swarm::Info;

use super::table::Format;
use crate::client::Daemon;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// One side's version.
#[derive(Debug, Clone, Serialize)]
struct Side {
    version: String,
    os_arch: String,
}

#[derive(Debug, Serialize)]
struct Versions {
    client: Side,
    /// `None` when no daemon answered.
    server: Option<ServerSide>,
}

#[derive(Debug, Serialize)]
struct ServerSide {
    version: String,
    swarm: String,
    engine: String,
}

pub fn run(daemon: Result<Daemon>, args: Args) -> Result<()> {
    let client = Side {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os_arch: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    };
    let server = daemon
        .and_then(|d| d.get::<Info>("/info"))
        .map(|info| ServerSide {
            version: info.version.clone(),
            swarm: info.swarm.clone(),
            engine: info.dataplane.clone(),
        });
    let (server, unreachable) = match server {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let v = Versions { client, server };
    if args.format == Format::Json {
        return super::table::json(&v);
    }
    println!("Client:");
    println!(" Version:\t{}", v.client.version);
    println!(" OS/Arch:\t{}", v.client.os_arch);
    println!();
    println!("Server:");
    match (&v.server, unreachable) {
        (Some(s), _) => {
            println!(" Version:\t{}", s.version);
            println!(" Swarm:\t\t{}", s.swarm);
            println!(" Data plane:\t{}", s.engine);
        }
        (None, Some(e)) => println!(" not reachable: {e:#}"),
        (None, None) => {}
    }
    Ok(())
}
