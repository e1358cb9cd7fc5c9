//! `shoal network create | ls | inspect | rm`: overlay networks, on a
//! manager.

use anyhow::Result;
use shoal_control::swarm::{NetworkOptions, NetworkView};

use super::table::{self, Format};
use crate::client::Daemon;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create an overlay network.
    Create {
        /// Driver; only `overlay`.
        #[arg(short, long, default_value = "overlay")]
        driver: String,
        /// Subnet in CIDR form (default: the lowest free /24 of 10.0.0.0/8).
        #[arg(long)]
        subnet: Option<ipnet::Ipv4Net>,
        /// Let standalone tasks attach.
        #[arg(long)]
        attachable: bool,
        /// Driver option (`encrypted`).
        #[arg(short, long = "opt", value_name = "OPTION")]
        opt: Vec<String>,
        /// Network label KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::service::parse_label)]
        labels: Vec<(String, String)>,
        name: String,
    },
    /// List networks.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only the network ids.
        #[arg(short, long, conflicts_with = "format")]
        quiet: bool,
    },
    /// Show networks in detail (JSON).
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks no service uses.
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

pub fn run(daemon: &Daemon, args: Args) -> Result<()> {
    match args.command {
        Command::Create {
            driver,
            subnet,
            attachable,
            opt,
            labels,
            name,
        } => {
            let n: NetworkView = daemon.post(
                "/networks",
                &NetworkOptions {
                    name,
                    driver: Some(driver),
                    subnet,
                    attachable,
                    options: opt,
                    labels: labels.into_iter().collect(),
                },
            )?;
            println!("{}", n.id);
        }
        Command::Ls { format, quiet } => {
            let list: Vec<NetworkView> = daemon.get("/networks")?;
            match format {
                _ if quiet => table::quiet(list.iter().map(|n| table::short_id(n.id.as_str()))),
                Format::Json => table::json(&list)?,
                Format::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|n| {
                            vec![
                                table::short_id(n.id.as_str()).to_owned(),
                                n.name.clone(),
                                n.driver.clone(),
                                n.scope.clone(),
                                n.subnet.to_string(),
                            ]
                        })
                        .collect();
                    table::print(&["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"], &rows);
                }
            }
        }
        Command::Inspect { networks } => {
            let mut views = Vec::new();
            for key in &networks {
                views.push(daemon.get::<NetworkView>(&format!("/networks/{}", path_part(key)?))?);
            }
            table::json(&views)?;
        }
        Command::Rm { networks } => {
            for key in &networks {
                let () = daemon.delete(&format!("/networks/{}", path_part(key)?))?;
                println!("{key}");
            }
        }
    }
    Ok(())
}

fn path_part(key: &str) -> Result<&str> {
    super::path_part(key, "network name or id")
}
