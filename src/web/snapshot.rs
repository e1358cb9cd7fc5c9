//! What the visualizer draws, made from the cluster state: the nodes as
//! `node ls` lists them, the services with their counts, and the tasks
//! that hold or take a place on a node. Plain serde values, compared whole
//! so that the feed sends a snapshot only when it changed.

use std::collections::BTreeMap;

use serde::Serialize;
use shoal_control::state::{
    Availability, ClusterState, DesiredState, NodeStatus, ServiceMode, Task, TaskHealth, TaskState,
};
use shoal_control::swarm::{ManagerStatus, NodeView};
use shoal_control::{NodeId, Role, ServiceId, TaskId};

/// The whole picture at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// One column each: managers first, then by hostname.
    pub nodes: Vec<NodeColumn>,
    /// Every service, by name.
    pub services: Vec<ServiceSummary>,
    /// The tasks drawn (see [`drawn`]), by service name, then slot, then
    /// node.
    pub tasks: Vec<TaskCard>,
}

/// A node's column heading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeColumn {
    /// Its id.
    pub id: NodeId,
    /// Its hostname.
    pub hostname: String,
    /// Manager or worker.
    pub role: Role,
    /// Active, pause or drain.
    pub availability: Availability,
    /// Ready, down or unknown.
    pub status: NodeStatus,
    /// For managers: Leader, Reachable or Unreachable.
    pub manager_status: Option<ManagerStatus>,
    /// Whether it leads Raft.
    pub leader: bool,
    /// Whether it is the manager serving the page.
    pub is_self: bool,
}

/// A service in the legend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSummary {
    /// Its id.
    pub id: ServiceId,
    /// Its name.
    pub name: String,
    /// `replicated` or `global`.
    pub mode: &'static str,
    /// Tasks running and meant to run.
    pub running: u64,
    /// Tasks wanted: the replicas, or the live global tasks.
    pub desired: u64,
}

/// A task's card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskCard {
    /// Its id.
    pub id: TaskId,
    /// Its service's id.
    pub service_id: ServiceId,
    /// Its service's name.
    pub service: String,
    /// Its slot; none for a global task (its node says which it is).
    pub slot: Option<u64>,
    /// Its node, once placed.
    pub node_id: Option<NodeId>,
    /// What it does.
    pub state: TaskState,
    /// What it should do.
    pub desired: DesiredState,
    /// Its health, when its service has a check.
    pub health: Option<Health>,
    /// Why it failed or waits.
    pub error: Option<String>,
}

/// A checked task's health, as `docker ps` words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No verdict yet.
    Starting,
    /// Its check passed.
    Healthy,
    /// Its check failed its retries.
    Unhealthy,
}

impl Snapshot {
    /// The snapshot of `state`, with `nodes` as [`NodeView::all`] lists
    /// them from the same state.
    pub fn of(nodes: Vec<NodeView>, state: &ClusterState) -> Snapshot {
        let nodes = nodes
            .into_iter()
            .map(|n| NodeColumn {
                leader: n.manager_status == Some(ManagerStatus::Leader),
                id: n.id,
                hostname: n.hostname,
                role: n.role,
                availability: n.availability,
                status: n.status,
                manager_status: n.manager_status,
                is_self: n.is_self,
            })
            .collect();

        let mut services: Vec<ServiceSummary> = state
            .services()
            .values()
            .map(|s| {
                let tasks = || state.tasks().values().filter(|t| t.service == s.id);
                let running = tasks()
                    .filter(|t| t.desired == DesiredState::Running && t.state == TaskState::Running)
                    .count() as u64;
                let (mode, desired) = match s.spec.mode {
                    ServiceMode::Replicated { replicas } => ("replicated", replicas),
                    ServiceMode::Global => {
                        ("global", tasks().filter(|t| t.is_live()).count() as u64)
                    }
                };
                ServiceSummary {
                    id: s.id.clone(),
                    name: s.spec.name.clone(),
                    mode,
                    running,
                    desired,
                }
            })
            .collect();
        services.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));

        let hostname = |id: &Option<NodeId>| {
            id.as_ref()
                .and_then(|id| state.node(id))
                .map(|n| n.hostname.clone())
        };
        let mut tasks: Vec<(Option<String>, TaskCard)> = drawn(state)
            .into_iter()
            .filter_map(|t| {
                let service = state.service(&t.service)?;
                let health = service.spec.healthcheck.as_ref().map(|_| match t.health {
                    None => Health::Starting,
                    Some(TaskHealth::Healthy) => Health::Healthy,
                    Some(TaskHealth::Unhealthy) => Health::Unhealthy,
                });
                let card = TaskCard {
                    id: t.id.clone(),
                    service_id: t.service.clone(),
                    service: service.spec.name.clone(),
                    slot: t.slot,
                    node_id: t.node.clone(),
                    state: t.state,
                    desired: t.desired,
                    health,
                    error: t.error.clone(),
                };
                Some((hostname(&t.node), card))
            })
            .collect();
        tasks.sort_by(|(ha, a), (hb, b)| {
            (&a.service, a.slot, ha, &a.id).cmp(&(&b.service, b.slot, hb, &b.id))
        });
        Snapshot {
            nodes,
            services,
            tasks: tasks.into_iter().map(|(_, card)| card).collect(),
        }
    }
}

/// The tasks that get a card: those that hold or take a place (not yet
/// stopped, also while being stopped), and for a place that is still
/// wanted but has none of those, its newest task if that failed or was
/// refused, so the picture shows why the place is empty (while a restart
/// waits out its delay, or for good without one). The rest (stopped,
/// completed, lost with a node, older failures) is `service ps`'s history.
pub fn drawn(state: &ClusterState) -> Vec<&Task> {
    let mut places: BTreeMap<(&ServiceId, Place<'_>), Vec<&Task>> = BTreeMap::new();
    for t in state.tasks().values() {
        let place = match (t.slot, &t.node) {
            (Some(slot), _) => Place::Slot(slot),
            (None, Some(node)) => Place::Node(node),
            (None, None) => Place::Task(&t.id),
        };
        places.entry((&t.service, place)).or_default().push(t);
    }
    let mut drawn = Vec::new();
    for ((service, place), tasks) in places {
        let holding: Vec<&Task> = tasks
            .iter()
            .copied()
            .filter(|t| !t.state.is_terminal())
            .collect();
        if !holding.is_empty() {
            drawn.extend(holding);
            continue;
        }
        let wanted = state
            .service(service)
            .is_some_and(|s| match (s.spec.mode, place) {
                (ServiceMode::Replicated { replicas }, Place::Slot(slot)) => slot <= replicas,
                (ServiceMode::Global, Place::Node(node)) => state
                    .node(node)
                    .is_some_and(|n| n.availability != Availability::Drain),
                _ => false,
            });
        let newest = tasks
            .into_iter()
            .max_by_key(|t| (t.status_ms, t.created_ms, &t.id));
        if let Some(t) =
            newest.filter(|t| wanted && matches!(t.state, TaskState::Failed | TaskState::Rejected))
        {
            drawn.push(t);
        }
    }
    drawn
}

/// Where a task belongs: its slot, its node (global), or, unplaced and
/// without either, itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place<'a> {
    Slot(u64),
    Node(&'a NodeId),
    Task(&'a TaskId),
}

#[cfg(test)]
mod tests {
    use shoal_control::state::{
        Command, HealthCheck, Node, NodeUpdate, ServiceMode, ServiceSpec, TaskUpdate,
    };
    use shoal_control::swarm::view::Liveness;

    use super::*;

    fn node(id: &str, hostname: &str, role: Role) -> Node {
        Node {
            id: NodeId::new(id).unwrap(),
            hostname: hostname.into(),
            role,
            availability: Availability::Active,
            status: NodeStatus::Ready,
            labels: Default::default(),
            addr: "198.18.0.1:2377".parse().unwrap(),
            gossip_addr: "198.18.0.1:7946".parse().unwrap(),
            engine: "shoal-process".into(),
            cert: None,
            tunnel_key: None,
        }
    }

    fn apply(state: &mut ClusterState, cmd: Command) {
        if let Err(e) = state.apply(cmd.clone()) {
            panic!("{cmd:?} was refused: {e}");
        }
    }

    fn task(state: &mut ClusterState, id: &str, service: &str, slot: Option<u64>, node: &str) {
        apply(
            state,
            Command::CreateTask {
                id: TaskId::new(id).unwrap(),
                service: ServiceId::new(service).unwrap(),
                slot,
                node: Some(NodeId::new(node).unwrap()),
                at_ms: 1,
            },
        );
    }

    fn set(state: &mut ClusterState, id: &str, update: TaskUpdate) {
        apply(
            state,
            Command::UpdateTask {
                id: TaskId::new(id).unwrap(),
                update,
            },
        );
    }

    fn running(state: &mut ClusterState, id: &str) {
        set(
            state,
            id,
            TaskUpdate {
                state: Some(TaskState::Running),
                ..TaskUpdate::default()
            },
        );
    }

    /// Two nodes (m1 leads), `web` with 3 replicas (two running on w1 and
    /// m1, one pending), the global `agent` with a health check.
    fn cluster() -> (ClusterState, Liveness) {
        let mut s = ClusterState::new();
        apply(&mut s, Command::AddNode(node("w1id", "w1", Role::Worker)));
        apply(&mut s, Command::AddNode(node("m1id", "m1", Role::Manager)));
        let spec = |name: &str, mode| ServiceSpec {
            name: name.into(),
            mode,
            command: vec!["shoal".into(), "whoami".into()],
            ..ServiceSpec::default()
        };
        apply(
            &mut s,
            Command::CreateService {
                id: ServiceId::new("websvc").unwrap(),
                spec: spec("web", ServiceMode::Replicated { replicas: 3 }),
            },
        );
        apply(
            &mut s,
            Command::CreateService {
                id: ServiceId::new("agentsvc").unwrap(),
                spec: ServiceSpec {
                    healthcheck: Some(HealthCheck::default()),
                    ..spec("agent", ServiceMode::Global)
                },
            },
        );
        task(&mut s, "web2", "websvc", Some(2), "m1id");
        task(&mut s, "web1", "websvc", Some(1), "w1id");
        running(&mut s, "web1");
        running(&mut s, "web2");
        apply(
            &mut s,
            Command::CreateTask {
                id: TaskId::new("web3").unwrap(),
                service: ServiceId::new("websvc").unwrap(),
                slot: Some(3),
                node: None,
                at_ms: 1,
            },
        );
        set(
            &mut s,
            "web3",
            TaskUpdate {
                state: Some(TaskState::Pending),
                error: Some("no suitable node (1 node not available: <b>drained</b>)".into()),
                ..TaskUpdate::default()
            },
        );
        task(&mut s, "agent1", "agentsvc", None, "w1id");
        running(&mut s, "agent1");
        let live = Liveness {
            me: Some(NodeId::new("m1id").unwrap()),
            leader: Some(NodeId::new("m1id").unwrap()),
            voters: [NodeId::new("m1id").unwrap()].into(),
            alive: [NodeId::new("m1id").unwrap(), NodeId::new("w1id").unwrap()].into(),
        };
        (s, live)
    }

    fn snapshot(s: &ClusterState, live: &Liveness) -> Snapshot {
        Snapshot::of(NodeView::all(s, live), s)
    }

    fn ids(snap: &Snapshot) -> Vec<&str> {
        snap.tasks.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn nodes_services_and_tasks_as_drawn() {
        let (s, live) = cluster();
        let snap = snapshot(&s, &live);
        let nodes: Vec<(&str, Role, bool, bool)> = snap
            .nodes
            .iter()
            .map(|n| (n.hostname.as_str(), n.role, n.leader, n.is_self))
            .collect();
        assert_eq!(
            nodes,
            [
                ("m1", Role::Manager, true, true),
                ("w1", Role::Worker, false, false)
            ]
        );
        let services: Vec<(&str, &str, u64, u64)> = snap
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.mode, s.running, s.desired))
            .collect();
        assert_eq!(
            services,
            [("agent", "global", 1, 1), ("web", "replicated", 2, 3)]
        );
        assert_eq!(ids(&snap), ["agent1", "web1", "web2", "web3"]);
        let agent = &snap.tasks[0];
        assert_eq!(
            (agent.service.as_str(), agent.slot, agent.health),
            ("agent", None, Some(Health::Starting))
        );
        let pending = &snap.tasks[3];
        assert_eq!(pending.node_id, None);
        assert_eq!(pending.state, TaskState::Pending);
        assert_eq!(pending.health, None, "web has no check");
        assert!(pending.error.as_deref().unwrap().contains("<b>drained</b>"));

        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["nodes"][0]["role"], "manager");
        assert_eq!(json["nodes"][0]["manager_status"], "Leader");
        assert_eq!(json["nodes"][1]["availability"], "active");
        assert_eq!(json["tasks"][1]["state"], "running");
        assert_eq!(json["tasks"][1]["node_id"], "w1id");
        assert_eq!(json["tasks"][0]["health"], "starting");
    }

    fn stop(state: &mut ClusterState, id: &str, to: TaskState, at_ms: u64) {
        set(
            state,
            id,
            TaskUpdate {
                state: Some(to),
                error: (to == TaskState::Failed).then(|| format!("{id}: exit status 3")),
                at_ms: Some(at_ms),
                ..TaskUpdate::default()
            },
        );
    }

    fn retire(state: &mut ClusterState, id: &str) {
        set(
            state,
            id,
            TaskUpdate {
                desired: Some(DesiredState::Shutdown),
                ..TaskUpdate::default()
            },
        );
    }

    #[test]
    fn history_is_not_drawn_but_the_failure_of_an_empty_place_is() {
        let (mut s, live) = cluster();
        // web1 is being stopped: it still holds its node.
        retire(&mut s, "web1");
        assert_eq!(
            ids(&snapshot(&s, &live)),
            ["agent1", "web1", "web2", "web3"]
        );
        // Once stopped it is history.
        stop(&mut s, "web1", TaskState::Shutdown, 10);
        assert_eq!(ids(&snapshot(&s, &live)), ["agent1", "web2", "web3"]);

        // web2 fails; retired by the orchestrator, it stays drawn while
        // its slot waits for a replacement, with its error.
        stop(&mut s, "web2", TaskState::Failed, 20);
        retire(&mut s, "web2");
        let snap = snapshot(&s, &live);
        assert_eq!(ids(&snap), ["agent1", "web2", "web3"]);
        assert_eq!(snap.tasks[1].error.as_deref(), Some("web2: exit status 3"));
        // The replacement takes its place on the picture ...
        task(&mut s, "web2b", "websvc", Some(2), "w1id");
        assert_eq!(ids(&snapshot(&s, &live)), ["agent1", "web2b", "web3"]);
        // ... and when it fails too, only the newest failure is drawn.
        stop(&mut s, "web2b", TaskState::Failed, 30);
        assert_eq!(ids(&snapshot(&s, &live)), ["agent1", "web2b", "web3"]);

        // A completed task is history, and so is a failure on a drained
        // node, where its global service no longer wants a task.
        stop(&mut s, "agent1", TaskState::Complete, 40);
        assert_eq!(ids(&snapshot(&s, &live)), ["web2b", "web3"]);
        task(&mut s, "agent2", "agentsvc", None, "m1id");
        stop(&mut s, "agent2", TaskState::Failed, 50);
        assert_eq!(ids(&snapshot(&s, &live)), ["agent2", "web2b", "web3"]);
        apply(
            &mut s,
            Command::UpdateNode {
                id: NodeId::new("m1id").unwrap(),
                update: NodeUpdate {
                    availability: Some(Availability::Drain),
                    ..NodeUpdate::default()
                },
            },
        );
        assert_eq!(ids(&snapshot(&s, &live)), ["web2b", "web3"]);
    }

    #[test]
    fn a_failed_slot_beyond_the_replicas_is_not_drawn() {
        let (mut s, live) = cluster();
        stop(&mut s, "web2", TaskState::Failed, 20);
        assert!(ids(&snapshot(&s, &live)).contains(&"web2"));
        let spec = s
            .service(&ServiceId::new("websvc").unwrap())
            .unwrap()
            .spec
            .clone();
        let version = s
            .service(&ServiceId::new("websvc").unwrap())
            .unwrap()
            .version;
        apply(
            &mut s,
            Command::UpdateService {
                id: ServiceId::new("websvc").unwrap(),
                version,
                spec: ServiceSpec {
                    mode: ServiceMode::Replicated { replicas: 1 },
                    ..spec
                },
                rollback: false,
                at_ms: 30,
            },
        );
        assert_eq!(ids(&snapshot(&s, &live)), ["agent1", "web1", "web3"]);
    }

    #[test]
    fn a_snapshot_changes_with_what_is_drawn_only() {
        let (mut s, live) = cluster();
        let before = snapshot(&s, &live);
        assert_eq!(before, snapshot(&s, &live), "same state, same snapshot");

        // A report that changes nothing drawn (the time of a state) is no
        // change.
        set(
            &mut s,
            "web1",
            TaskUpdate {
                at_ms: Some(99),
                ..TaskUpdate::default()
            },
        );
        assert_eq!(before, snapshot(&s, &live));

        // Health, state, placement and leadership are.
        set(
            &mut s,
            "agent1",
            TaskUpdate {
                health: Some(TaskHealth::Healthy),
                ..TaskUpdate::default()
            },
        );
        let healthy = snapshot(&s, &live);
        assert_ne!(before, healthy);
        assert_eq!(healthy.tasks[0].health, Some(Health::Healthy));

        set(
            &mut s,
            "web3",
            TaskUpdate {
                node: Some(NodeId::new("w1id").unwrap()),
                state: Some(TaskState::Assigned),
                ..TaskUpdate::default()
            },
        );
        let placed = snapshot(&s, &live);
        assert_ne!(healthy, placed);
        assert_eq!(placed.tasks[3].error, None);

        let leaderless = Liveness {
            leader: None,
            ..live.clone()
        };
        let snap = snapshot(&s, &leaderless);
        assert_ne!(placed, snap);
        assert!(snap.nodes.iter().all(|n| !n.leader));
    }
}
