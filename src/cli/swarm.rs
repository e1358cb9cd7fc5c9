//! `shoal swarm init | join | join-token | ca | leave`: forming the swarm,
//! with docker's words so that Swarm users can follow along (operator
//! certificates, under `swarm ca`, are in [`super::swarm_ca`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use shoal_control::Role;
use shoal_control::swarm::{
    CaOptions, CaReply, InitOptions, InitReply, JoinOptions, JoinReply, LeaveOptions, SwarmUpdate,
    TokenOptions, TokenReply,
};

use crate::client::Daemon;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a swarm with this node as its first manager.
    Init {
        /// Address other nodes reach this node at (default: the daemon's
        /// --advertise-addr, else the address of its default route).
        #[arg(long, value_name = "IP")]
        advertise_addr: Option<IpAddr>,
        /// How long node certificates live; nodes renew theirs at about
        /// two thirds of it.
        #[arg(long, value_name = "DURATION", default_value = "2160h", value_parser = super::parse_duration)]
        cert_expiry: Duration,
    },
    /// Change the swarm's settings.
    Update {
        /// How long node certificates live from their next renewal on.
        #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
        cert_expiry: Option<Duration>,
        /// Replace the key that seals gossip now, and with it the
        /// preshared key of encrypted overlay networks (derived from it);
        /// nodes move to it within seconds (the leader also replaces it
        /// every 12 hours).
        #[arg(long)]
        rotate_gossip_key: bool,
    },
    /// Join a swarm as the token says: worker or manager.
    Join {
        /// The join token from `shoal swarm join-token` on a manager.
        #[arg(long)]
        token: String,
        /// Address other nodes reach this node at.
        #[arg(long, value_name = "IP")]
        advertise_addr: Option<IpAddr>,
        /// A manager's address, ADDR:PORT (port 2377 by default).
        remote: String,
    },
    /// Show (or rotate) the token that joins a worker or a manager.
    JoinToken {
        /// Print the token only.
        #[arg(short, long)]
        quiet: bool,
        /// Replace the token; the old one stops working.
        #[arg(long)]
        rotate: bool,
        /// worker or manager.
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Show the swarm's root CA certificate, or replace the CA; issue and
    /// revoke the operator certificates that `shoal -H tcp://MANAGER:2377`
    /// uses from other machines.
    #[command(args_conflicts_with_subcommands = true)]
    Ca {
        #[command(subcommand)]
        action: Option<super::swarm_ca::Action>,
        /// Replace the CA: every node gets a certificate of the new one,
        /// then the old one is no longer trusted; the join tokens change.
        #[arg(long)]
        rotate: bool,
        /// Do not wait for every node to renew.
        #[arg(short, long)]
        detach: bool,
        /// Do not show the progress.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Leave the swarm.
    Leave {
        /// Leave even if this breaks the managers' quorum or is the last
        /// manager.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Worker,
    Manager,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Worker => Role::Worker,
            RoleArg::Manager => Role::Manager,
        }
    }
}

/// The cluster API port, when a join address has none.
const DEFAULT_PORT: u16 = 2377;

pub fn run(daemon: &Daemon, args: Args, tls_dir: Option<&std::path::Path>) -> Result<()> {
    match args.command {
        Command::Init {
            advertise_addr,
            cert_expiry,
        } => {
            let opts = InitOptions {
                advertise_addr,
                cert_expiry: Some(cert_expiry),
            };
            let reply: InitReply = daemon.post("/swarm/init", &opts)?;
            println!(
                "Swarm initialized: current node ({}) is now a manager.\n\nTo add a worker to \
                 this swarm, run the following command:\n\n    shoal swarm join --token {} {}\n\n\
                 To add a manager to this swarm, run 'shoal swarm join-token manager' and follow \
                 the instructions.",
                reply.node_id, reply.worker_token, reply.addr
            );
        }
        Command::Join {
            token,
            advertise_addr,
            remote,
        } => {
            let remote = parse_remote(&remote)?;
            let reply: JoinReply = daemon.post(
                "/swarm/join",
                &JoinOptions {
                    token,
                    remote,
                    advertise_addr,
                },
            )?;
            if reply.rejoined {
                println!(
                    "This node rejoined the swarm as a {} (node {}, with a new certificate).",
                    reply.role, reply.node_id
                );
            } else {
                match reply.role {
                    Role::Worker => println!("This node joined a swarm as a worker."),
                    Role::Manager => println!("This node joined a swarm as a manager."),
                }
            }
        }
        Command::JoinToken {
            quiet,
            rotate,
            role,
        } => {
            let reply: TokenReply = daemon.post(
                "/swarm/join-token",
                &TokenOptions {
                    role: role.into(),
                    rotate,
                },
            )?;
            if quiet {
                println!("{}", reply.token);
            } else {
                if rotate {
                    println!("Successfully rotated {} join token.\n", reply.role);
                }
                println!(
                    "To add a {} to this swarm, run the following command:\n\n    shoal swarm \
                     join --token {} {}\n",
                    reply.role, reply.token, reply.addr
                );
            }
        }
        Command::Update {
            cert_expiry,
            rotate_gossip_key,
        } => {
            if cert_expiry.is_none() && !rotate_gossip_key {
                anyhow::bail!(
                    "nothing to update; give --cert-expiry DURATION or --rotate-gossip-key"
                );
            }
            let () = daemon.post(
                "/swarm/update",
                &SwarmUpdate {
                    cert_expiry,
                    rotate_gossip_key,
                },
            )?;
            println!("Swarm updated.");
        }
        Command::Ca {
            action: Some(action),
            ..
        } => super::swarm_ca::run(daemon, action, tls_dir)?,
        Command::Ca {
            action: None,
            rotate,
            detach,
            quiet,
        } => {
            let mut reply: CaReply = daemon.post("/swarm/ca", &CaOptions { rotate })?;
            let mut shown = None;
            while rotate && !detach && reply.rotating {
                if !quiet && shown != Some(reply.renewed) {
                    eprintln!(
                        "Rotating the CA: {}/{} nodes renewed{}",
                        reply.renewed,
                        reply.nodes,
                        if reply.pending.is_empty() {
                            String::new()
                        } else {
                            format!(" (waiting for {})", reply.pending.join(", "))
                        }
                    );
                    shown = Some(reply.renewed);
                }
                std::thread::sleep(Duration::from_millis(500));
                reply = daemon.post("/swarm/ca", &CaOptions { rotate: false })?;
            }
            if rotate && !quiet && !reply.rotating {
                eprintln!(
                    "CA rotation done: every node trusts only the new CA {}",
                    reply.digest
                );
            }
            print!("{}", reply.root_pem);
        }
        Command::Leave { force } => {
            let () = daemon.post("/swarm/leave", &LeaveOptions { force })?;
            println!("Node left the swarm.");
        }
    }
    Ok(())
}

fn parse_remote(s: &str) -> Result<SocketAddr> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    Err(super::usage(format!(
        "`{s}` is not a manager address; give IP:PORT, e.g. 198.18.0.1:2377"
    )))
}
