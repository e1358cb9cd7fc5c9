//! `shoal service logs [-f] [--tail N] SERVICE|TASK`: the output of a
//! service's tasks (or of one task), gathered by a manager from the nodes
//! that ran them, each line prefixed with docker's `name.slot.id@node |`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use shoal_control::TaskId;
use shoal_control::swarm::{LogsRequest, TaskLog};

use crate::client::Daemon;

/// How often `--follow` asks for more.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

pub fn run(
    daemon: &Daemon,
    service: &str,
    follow: bool,
    tail: Option<String>,
    prefix: bool,
) -> Result<()> {
    let tail = match tail.as_deref() {
        None | Some("all") => None,
        Some(n) => match n.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(super::usage(format!(
                    "--tail `{n}` is not a number of lines or `all`"
                )));
            }
        },
    };
    let path = format!("/services/{service}/logs");
    let mut offsets: BTreeMap<TaskId, u64> = BTreeMap::new();
    let mut warned = std::collections::BTreeSet::new();
    loop {
        let logs: Vec<TaskLog> = daemon.post(
            &path,
            &LogsRequest {
                tail,
                offsets: offsets.clone(),
            },
        )?;
        let mut out = std::io::stdout().lock();
        let width = logs.iter().map(|l| l.name.len()).max().unwrap_or(0);
        for log in &logs {
            if let Some(e) = &log.error {
                if warned.insert(log.task.clone()) {
                    eprintln!("shoal: {}: {e}", log.name);
                }
                continue;
            }
            offsets.insert(log.task.clone(), log.offset);
            for line in &log.lines {
                if prefix {
                    writeln!(out, "{:<width$} | {line}", log.name)?;
                } else {
                    writeln!(out, "{line}")?;
                }
            }
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}
