//! The scheduler and the orchestrator alone, on simulated clusters:
//! placing 10,000 tasks onto 100 nodes and 100,000 onto 1,000 (Swarm's
//! largest community test ran 95,000 tasks on 2,384 nodes), half of the
//! nodes labelled so a constraint filters them.
//!
//! - `schedule`: the scheduler placing that many pending tasks of one
//!   service (filters, then spread);
//! - `reconcile`: one whole orchestrator round on a service scaled to that
//!   many replicas: creating every task (applied to the round's copy of
//!   the state) and placing it.
//!
//! `cargo run --release -p shoal-benches --bin sched-bench [ROUNDS]`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use shoal_control::orchestrator::{self, Options};
use shoal_control::scheduler::{Constraint, schedule};
use shoal_control::state::{
    Availability, ClusterState, Command, Node, NodeStatus, ServiceMode, ServiceSpec,
};
use shoal_control::{NodeId, Role, ServiceId, TaskId};

fn cluster(nodes: usize, replicas: u64) -> Result<(ClusterState, ServiceId)> {
    let mut state = ClusterState::new();
    for i in 0..nodes {
        let zone = if i % 2 == 0 { "a" } else { "b" };
        state
            .apply(Command::AddNode(Node {
                id: NodeId::new(format!("node{i:05}"))?,
                hostname: format!("host{i}"),
                role: if i < 3 { Role::Manager } else { Role::Worker },
                availability: Availability::Active,
                status: NodeStatus::Ready,
                labels: BTreeMap::from([("zone".to_owned(), zone.to_owned())]),
                addr: "198.18.0.1:2377".parse()?,
                gossip_addr: "198.18.0.1:7946".parse()?,
                engine: "shoal-process".into(),
                cert: None,
                tunnel_key: None,
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let id = ServiceId::new("svc1")?;
    state
        .apply(Command::CreateService {
            id: id.clone(),
            spec: ServiceSpec {
                name: "web".into(),
                mode: ServiceMode::Replicated { replicas },
                command: vec!["shoal".into(), "whoami".into()],
                constraints: vec!["node.labels.zone==a".into()],
                ..ServiceSpec::default()
            },
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((state, id))
}

fn time_schedule(nodes: usize, tasks: usize) -> Result<Duration> {
    let (state, id) = cluster(nodes, tasks as u64)?;
    let service = state.service(&id).context("service")?;
    let constraints =
        Constraint::parse_all(&service.spec.constraints).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ids: Vec<TaskId> = (0..tasks)
        .map(|i| TaskId::new(format!("t{i:07}")))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let placed = schedule(&state, service, &constraints, None, &ids);
    let took = started.elapsed();
    let ok = placed.iter().filter(|p| p.result.is_ok()).count();
    if ok != tasks {
        bail!("placed {ok} of {tasks}");
    }
    Ok(took)
}

fn time_reconcile(nodes: usize, tasks: usize) -> Result<Duration> {
    let (state, _) = cluster(nodes, tasks as u64)?;
    let mut n = 0u64;
    let mut ids = || {
        n += 1;
        Ok(TaskId::new(format!("t{n:07}")).expect("valid id"))
    };
    let started = Instant::now();
    let round = orchestrator::reconcile(&state, &Options::default(), 0, &mut ids)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = started.elapsed();
    if !round.refused.is_empty() || round.commands.len() < 2 * tasks {
        bail!(
            "{} commands, {} refused",
            round.commands.len(),
            round.refused.len()
        );
    }
    Ok(took)
}

fn main() -> Result<()> {
    let rounds = shoal_benches::count_arg("ROUNDS", 3)?;
    for (nodes, tasks) in [(100, 10_000), (1_000, 100_000)] {
        let mut s = Vec::new();
        let mut r = Vec::new();
        for _ in 0..rounds {
            s.push(time_schedule(nodes, tasks)?);
            r.push(time_reconcile(nodes, tasks)?);
        }
        s.sort();
        r.sort();
        println!(
            "{tasks} tasks onto {nodes} nodes: schedule {:.0} ms, whole orchestrator round {:.0} ms (best of {rounds})",
            s[0].as_secs_f64() * 1e3,
            r[0].as_secs_f64() * 1e3
        );
    }
    Ok(())
}
