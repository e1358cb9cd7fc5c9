//! `shoal stack deploy | ls | ps | services | rm`: a whole app from a
//! compose file, on a manager. The file is parsed and checked here (errors
//! name the file, line, column and key); the manager checks the plan
//! against the cluster and applies all of it or none.

use std::path::PathBuf;

use anyhow::{Context, Result};
use shoal_control::swarm::{ServiceView, StackDeploy, StackReport, StackView, TaskView};

use super::table::{self, Format};
use crate::client::Daemon;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Deploy a new stack or update an existing one.
    Deploy {
        /// The compose file (`-` for standard input).
        #[arg(short = 'c', long = "compose-file", value_name = "FILE")]
        compose_file: PathBuf,
        /// Remove the stack's services the file no longer names.
        #[arg(long)]
        prune: bool,
        /// Send the credentials `shoal login` keeps for each service's
        /// image registry: the nodes pull with them.
        #[arg(long)]
        with_registry_auth: bool,
        /// The stack's name: its services are NAME_SERVICE.
        name: String,
    },
    /// List stacks.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List the tasks of a stack.
    Ps {
        #[command(flatten)]
        ps: super::tasks::PsArgs,
        name: String,
    },
    /// List the services of a stack.
    Services {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only the service ids.
        #[arg(short, long, conflicts_with = "format")]
        quiet: bool,
        name: String,
    },
    /// Remove stacks: their services, then their networks.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn run(daemon: &Daemon, args: Args) -> Result<()> {
    match args.command {
        Command::Deploy {
            compose_file,
            prune,
            with_registry_auth,
            name,
        } => deploy(daemon, &compose_file, prune, with_registry_auth, &name),
        Command::Ls { format } => {
            let stacks: Vec<StackView> = daemon.get("/stacks")?;
            if format == Format::Json {
                return table::json(&stacks);
            }
            let rows: Vec<Vec<String>> = stacks
                .iter()
                .map(|s| vec![s.name.clone(), s.services.to_string()])
                .collect();
            table::print(&["NAME", "SERVICES"], &rows);
            Ok(())
        }
        Command::Ps { ps, name } => {
            let path = format!("/stacks/{}/tasks", super::path_part(&name, "stack name")?);
            super::tasks::list(daemon, &ps, || daemon.get::<Vec<TaskView>>(&path))
        }
        Command::Services {
            format,
            quiet,
            name,
        } => {
            let path = format!(
                "/stacks/{}/services",
                super::path_part(&name, "stack name")?
            );
            let services: Vec<ServiceView> = daemon.get(&path)?;
            super::service::print_services(&services, format, quiet)
        }
        Command::Rm { names } => {
            for name in &names {
                let path = format!("/stacks/{}", super::path_part(name, "stack name")?);
                let report: StackReport = daemon.delete(&path)?;
                print_steps(&report);
            }
            Ok(())
        }
    }
}

fn print_steps(report: &StackReport) {
    for step in &report.steps {
        println!("{step}");
    }
}

fn deploy(
    daemon: &Daemon,
    file: &std::path::Path,
    prune: bool,
    with_registry_auth: bool,
    name: &str,
) -> Result<()> {
    let (shown, text) = if file.as_os_str() == "-" {
        let text = std::io::read_to_string(std::io::stdin()).context("reading standard input")?;
        ("-".to_owned(), text)
    } else {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        (file.display().to_string(), text)
    };
    let mut plan = shoal_control::stack::plan(&shown, &text, name)
        .map_err(|e| anyhow::anyhow!("{shown} is not a valid stack file:\n{e}"))?;
    if with_registry_auth {
        for s in &mut plan.services {
            if let Some(image) = &s.options.image {
                let credentials = super::login::credentials_for(image)
                    .with_context(|| format!("service {}", s.short))?;
                s.options.registry_auth = Some(credentials);
            }
        }
    }
    for w in &plan.warnings {
        eprintln!("{w}");
    }
    let report: StackReport = daemon.post("/stacks", &StackDeploy { plan, prune })?;
    if report.steps.is_empty() {
        println!("Stack {name} is up to date: nothing to change");
    }
    print_steps(&report);
    Ok(())
}
