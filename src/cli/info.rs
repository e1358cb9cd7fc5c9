//! `shoal info`: this node's place in the swarm and its data plane.

use anyhow::Result;
use shoal_control::swarm::Info;

use super::table::{self, Format};
use crate::client::Daemon;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(daemon: &Daemon, args: Args) -> Result<()> {
    let info: Info = daemon.get("/info")?;
    if args.format == Format::Json {
        return table::json(&info);
    }
    let or_dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    println!("Swarm: {}", info.swarm);
    println!(" NodeID: {}", or_dash(info.node_id.map(|i| i.to_string())));
    println!(" Hostname: {}", info.hostname);
    println!(" Role: {}", or_dash(info.role.map(|r| r.to_string())));
    println!(" ClusterID: {}", or_dash(info.cluster_id));
    println!(
        " Node Address: {}",
        or_dash(info.addr.map(|a| a.to_string()))
    );
    println!(" Nodes: {}", info.nodes);
    println!(" Managers: {}", info.managers.len());
    for m in &info.managers {
        println!("  {m}");
    }
    println!(" Leader: {}", or_dash(info.leader.map(|l| l.to_string())));
    if let Some(at) = info.cert_expiry {
        println!(" Node certificate expiry: {}", super::expires_in(at));
    }
    if let Some(raft) = &info.raft {
        println!(" Raft:");
        println!("  Term: {}", raft.term);
        println!("  Applied index: {}", raft.applied);
        println!("  Voters: {}", raft.voters);
    }
    println!("Data plane: {}", info.dataplane);
    if let Some(key) = info.tunnel_key {
        println!(" Tunnel public key: {key}");
    }
    Ok(())
}
