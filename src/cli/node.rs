//! `shoal node ls | inspect | update | promote | demote | rm`, on a manager.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use shoal_control::Role;
use shoal_control::state::{Availability, NodeStatus};
use shoal_control::swarm::{ManagerStatus, NodeChange, NodeView};

use super::filter::NodeFilter;
use super::table::{self, Format};
use crate::client::Daemon;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List the swarm's nodes.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only the node ids.
        #[arg(short, long, conflicts_with = "format")]
        quiet: bool,
        /// Only nodes that match, e.g. role=manager, name=HOST, id=ID,
        /// node.label=KEY[=VALUE] (repeatable: one key's values are
        /// alternatives, different keys must all match).
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Show nodes in detail (JSON, or --pretty).
    Inspect {
        /// Human-readable instead of JSON.
        #[arg(long)]
        pretty: bool,
        /// Nodes by id, id prefix or hostname; `self` is this node.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Change a node's availability, role or labels.
    Update {
        #[arg(long, value_enum)]
        availability: Option<AvailabilityArg>,
        /// Add or change a label, key=value (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        label_add: Vec<String>,
        /// Remove a label (repeatable).
        #[arg(long, value_name = "KEY")]
        label_rm: Vec<String>,
        #[arg(long, value_enum)]
        role: Option<super::swarm::RoleArg>,
        node: String,
    },
    /// Make nodes managers.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// List the tasks on nodes (default: this node, `self`).
    Ps {
        #[command(flatten)]
        ps: super::tasks::PsArgs,
        /// Nodes by id, id prefix or hostname; `self` is this node.
        nodes: Vec<String>,
    },
    /// Remove nodes from the swarm.
    Rm {
        /// Remove even if the node is up or still has tasks.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AvailabilityArg {
    Active,
    Pause,
    Drain,
}

pub fn run(daemon: &Daemon, args: Args) -> Result<()> {
    match args.command {
        Command::Ls {
            format,
            quiet,
            filter,
        } => {
            let filter = NodeFilter::parse(&filter).map_err(super::usage)?;
            let nodes: Vec<NodeView> = daemon.get("/nodes")?;
            let nodes: Vec<NodeView> = nodes.into_iter().filter(|n| filter.keeps(n)).collect();
            match format {
                // Node ids are listed whole, as docker lists them.
                _ if quiet => table::quiet(nodes.iter().map(|n| n.id.as_str())),
                Format::Json => table::json(&nodes)?,
                Format::Table => list(&nodes),
            }
        }
        Command::Inspect { pretty, nodes } => {
            let mut views = Vec::new();
            for key in &nodes {
                views.push(daemon.get::<NodeView>(&format!("/nodes/{}", path_part(key)?))?);
            }
            if pretty {
                for v in &views {
                    pretty_print(v);
                }
            } else {
                table::json(&views)?;
            }
        }
        Command::Update {
            availability,
            label_add,
            label_rm,
            role,
            node,
        } => {
            let mut labels_add = BTreeMap::new();
            for l in label_add {
                let Some((k, v)) = l.split_once('=') else {
                    return Err(super::usage(format!("--label-add {l}: give KEY=VALUE")));
                };
                labels_add.insert(k.to_owned(), v.to_owned());
            }
            let change = NodeChange {
                availability: availability.map(|a| match a {
                    AvailabilityArg::Active => Availability::Active,
                    AvailabilityArg::Pause => Availability::Pause,
                    AvailabilityArg::Drain => Availability::Drain,
                }),
                role: role.map(Role::from),
                labels_add,
                labels_rm: label_rm.into_iter().collect::<BTreeSet<_>>(),
            };
            update(daemon, &node, &change)?;
            println!("{node}");
        }
        Command::Promote { nodes } => set_role(daemon, &nodes, Role::Manager)?,
        Command::Demote { nodes } => set_role(daemon, &nodes, Role::Worker)?,
        Command::Ps { ps, nodes } => {
            let nodes = if nodes.is_empty() {
                vec!["self".to_owned()]
            } else {
                nodes
            };
            let paths = nodes
                .iter()
                .map(|key| Ok(format!("/nodes/{}/tasks", path_part(key)?)))
                .collect::<Result<Vec<_>>>()?;
            super::tasks::list(daemon, &ps, || {
                let mut tasks = Vec::new();
                for path in &paths {
                    tasks.extend(daemon.get::<Vec<shoal_control::swarm::TaskView>>(path)?);
                }
                Ok(tasks)
            })?;
        }
        Command::Rm { force, nodes } => {
            for key in &nodes {
                let force = if force { "?force=true" } else { "" };
                let () = daemon.delete(&format!("/nodes/{}{force}", path_part(key)?))?;
                println!("{key}");
            }
        }
    }
    Ok(())
}

fn update(daemon: &Daemon, key: &str, change: &NodeChange) -> Result<()> {
    daemon.post(&format!("/nodes/{}/update", path_part(key)?), change)
}

fn set_role(daemon: &Daemon, nodes: &[String], role: Role) -> Result<()> {
    for key in nodes {
        let change = NodeChange {
            role: Some(role),
            ..NodeChange::default()
        };
        update(daemon, key, &change)?;
        let what = match role {
            Role::Manager => "promoted to a manager",
            Role::Worker => "demoted in the swarm",
        };
        println!("Node {key} {what}.");
    }
    Ok(())
}

fn path_part(key: &str) -> Result<&str> {
    super::path_part(key, "node id or hostname")
}

fn list(nodes: &[NodeView]) {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                format!("{}{}", n.id, if n.is_self { " *" } else { "" }),
                n.hostname.clone(),
                status(n.status).into(),
                availability(n.availability).into(),
                n.manager_status
                    .map(manager_status)
                    .unwrap_or_default()
                    .into(),
            ]
        })
        .collect();
    table::print(
        &["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"],
        &rows,
    );
}

fn pretty_print(n: &NodeView) {
    println!("ID:\t\t\t{}", n.id);
    println!("Hostname:\t\t{}", n.hostname);
    println!("Status:\t\t\t{}", status(n.status));
    println!("Availability:\t\t{}", availability(n.availability));
    println!("Role:\t\t\t{}", n.role);
    if let Some(m) = n.manager_status {
        println!("Manager Status:\t\t{}", manager_status(m));
    }
    println!("Address:\t\t{}", n.addr);
    println!("Gossip address:\t\t{}", n.gossip_addr);
    println!("Engine:\t\t\t{}", n.engine);
    if let Some(at) = n.cert_expiry {
        println!("Certificate expiry:\t{}", super::expires_in(at));
    }
    if !n.labels.is_empty() {
        println!("Labels:");
        for (k, v) in &n.labels {
            println!(" - {k}={v}");
        }
    }
    println!();
}

fn status(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Unknown => "Unknown",
        NodeStatus::Ready => "Ready",
        NodeStatus::Down => "Down",
    }
}

fn availability(a: Availability) -> &'static str {
    match a {
        Availability::Active => "Active",
        Availability::Pause => "Pause",
        Availability::Drain => "Drain",
    }
}

fn manager_status(m: ManagerStatus) -> &'static str {
    match m {
        ManagerStatus::Leader => "Leader",
        ManagerStatus::Reachable => "Reachable",
        ManagerStatus::Unreachable => "Unreachable",
    }
}
