//! Task listings: `service ps`, `node ps` and `stack ps`, with docker's
//! columns, `-f` filters, `-q` and `--no-trunc`. The daemon answers with
//! every task of the services or nodes asked about; filtering and the
//! CURRENT STATE's age (from this machine's clock) are done here.

use std::collections::BTreeSet;

use anyhow::Result;
use shoal_control::swarm::{NodeView, TaskView};

use super::filter::TaskFilter;
use super::table::{self, Format};
use crate::client::Daemon;

/// The options of every task listing.
#[derive(clap::Args)]
pub struct PsArgs {
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Show whole ids, pinned image digests and whole errors.
    #[arg(long)]
    no_trunc: bool,
    /// Only the task ids.
    #[arg(short, long, conflicts_with = "format")]
    quiet: bool,
    /// Only tasks that match, e.g. desired-state=running, node=NODE,
    /// name=NAME, id=ID (repeatable: one key's values are alternatives,
    /// different keys must all match).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
}

/// Lists the tasks that `fetch` gets from the daemon, as `args` ask; the
/// filters are checked first, so a wrong one asks the daemon nothing.
pub fn list(
    daemon: &Daemon,
    args: &PsArgs,
    fetch: impl FnOnce() -> Result<Vec<TaskView>>,
) -> Result<()> {
    let mut filter = TaskFilter::parse(&args.filter).map_err(super::usage)?;
    if filter.names_self() {
        let me: NodeView = daemon.get("/nodes/self")?;
        filter.resolve_self(me.id.as_str());
    }
    let tasks: Vec<TaskView> = fetch()?.into_iter().filter(|t| filter.keeps(t)).collect();
    if args.quiet {
        table::quiet(tasks.iter().map(|t| id(t, args.no_trunc)));
        return Ok(());
    }
    match args.format {
        Format::Json => table::json(&tasks),
        Format::Table => {
            table::print(&HEADER, &rows(&tasks, args.no_trunc, table::now_ms()));
            Ok(())
        }
    }
}

const HEADER: [&str; 7] = [
    "ID",
    "NAME",
    "IMAGE",
    "NODE",
    "DESIRED STATE",
    "CURRENT STATE",
    "ERROR",
];

/// How much of an error `ps` shows without `--no-trunc`, as docker.
const ERROR_WIDTH: usize = 30;

/// The task's id as listed: 12 characters unless `no_trunc`.
fn id(t: &TaskView, no_trunc: bool) -> &str {
    let id = t.id.as_str();
    if no_trunc { id } else { table::short_id(id) }
}

/// docker's columns for `tasks`, their ages taken from `now_ms`;
/// `no_trunc` shows whole ids, the pinned image digests and whole errors.
fn rows(tasks: &[TaskView], no_trunc: bool, now_ms: u64) -> Vec<Vec<String>> {
    let mut seen = BTreeSet::new();
    tasks
        .iter()
        .map(|t| {
            // Older tasks of a slot are shown as its history, as docker does.
            let name = if seen.insert(t.name.clone()) {
                t.name.clone()
            } else {
                format!(" \\_ {}", t.name)
            };
            let image = match &t.image {
                Some(i) if no_trunc => i.clone(),
                Some(i) => i.split('@').next().unwrap_or(i).to_owned(),
                None => String::new(),
            };
            let state = capitalize(&t.state.to_string());
            // A task from before states were timed has no age to show.
            let current = if t.status_ms == 0 {
                state
            } else {
                format!("{state} {}", table::ago(t.status_ms, now_ms))
            };
            let error = t.error.as_deref().unwrap_or_default();
            vec![
                id(t, no_trunc).to_owned(),
                name,
                image,
                t.node.clone().unwrap_or_default(),
                capitalize(&t.desired.to_string()),
                current,
                match error {
                    "" => String::new(),
                    e if no_trunc || e.chars().count() <= ERROR_WIDTH => format!("\"{e}\""),
                    e => format!(
                        "\"{}…\"",
                        e.chars().take(ERROR_WIDTH - 1).collect::<String>()
                    ),
                },
            ]
        })
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::state::{DesiredState, TaskState};

    fn task(id: &str, name: &str, desired: DesiredState, state: TaskState, at: u64) -> TaskView {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "name": name,
            "service": "svc0000000000000000000000",
            "slot": 1,
            "node_id": "node1aaaaaaaaaaaaaaaaaaaaa",
            "node": "n1",
            "desired": desired,
            "state": state,
            "error": null,
            "health": null,
            "addresses": {},
            "spec_version": 1,
            "image": "nginx:1.27@sha256:abcd",
            "status_ms": at,
        }))
        .expect("a task view")
    }

    /// Two tasks of slot 1, the old one shut down: docker's `service ps`.
    fn history(now: u64) -> Vec<TaskView> {
        vec![
            task(
                "t2bbbbbbbbbbbbbbbbbbbbbbbb",
                "web.1",
                DesiredState::Running,
                TaskState::Running,
                now - 5 * 60_000,
            ),
            task(
                "t1aaaaaaaaaaaaaaaaaaaaaaaa",
                "web.1",
                DesiredState::Shutdown,
                TaskState::Shutdown,
                now - 2_000,
            ),
        ]
    }

    #[test]
    fn ps_shows_dockers_columns_and_ages() {
        let now = 1_700_000_000_000;
        let text = table::render(&HEADER, &rows(&history(now), false, now));
        assert_eq!(
            text,
            "\
ID             NAME        IMAGE        NODE   DESIRED STATE   CURRENT STATE            ERROR
t2bbbbbbbbbb   web.1       nginx:1.27   n1     Running         Running 5 minutes ago
t1aaaaaaaaaa    \\_ web.1   nginx:1.27   n1     Shutdown        Shutdown 2 seconds ago
"
        );
        let whole = rows(&history(now), true, now);
        assert_eq!(whole[0][0], "t2bbbbbbbbbbbbbbbbbbbbbbbb");
        assert_eq!(whole[0][2], "nginx:1.27@sha256:abcd");
    }

    #[test]
    fn filters_pick_tasks_as_docker_does() {
        let now = 1_700_000_000_000;
        let tasks = history(now);
        let pick = |flags: &[&str]| -> Vec<String> {
            let flags: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
            let f = TaskFilter::parse(&flags).expect("valid filters");
            tasks
                .iter()
                .filter(|t| f.keeps(t))
                .map(|t| id(t, false).to_owned())
                .collect()
        };
        assert_eq!(pick(&["desired-state=running"]), ["t2bbbbbbbbbb"]);
        assert_eq!(
            pick(&["desired-state=running", "desired-state=shutdown"]).len(),
            2
        );
        assert!(pick(&["desired-state=accepted"]).is_empty());
        assert_eq!(pick(&["id=t1"]), ["t1aaaaaaaaaa"]);
        assert_eq!(pick(&["name=web.1.t1"]), ["t1aaaaaaaaaa"]);
        assert_eq!(pick(&["name=web", "node=n1"]).len(), 2);
        assert_eq!(pick(&["node=node1"]).len(), 2);
        assert!(pick(&["node=n2"]).is_empty());
        assert!(pick(&["desired-state=running", "id=t1"]).is_empty());
    }
}
