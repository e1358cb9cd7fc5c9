use super::*;
use crate::state::Command;
use crate::testkit::{apply, node, with_status};

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn member(role: Role, raft: Option<RaftMetrics>) -> SwarmMetrics {
    let mut state = ClusterState::new();
    apply(&mut state, Command::AddNode(node("m1", Role::Manager)));
    apply(&mut state, Command::AddNode(node("w1", Role::Worker)));
    apply(
        &mut state,
        Command::AddNode(with_status(node("w2", Role::Worker), NodeStatus::Down)),
    );
    let tasks = [TaskState::Running, TaskState::Running, TaskState::Failed];
    SwarmMetrics {
        member: Some(MemberMetrics {
            node_id: id(if role == Role::Manager { "m1" } else { "w1" }),
            role,
            raft,
            gossip_members: 2,
            gossip_rejected: [("forged", 3)].into_iter().collect(),
            nodes: count_nodes(&state),
            tasks: count_tasks(tasks.into_iter()),
            cert_expiry: 1_767_225_600,
        }),
    }
}

fn render(m: &SwarmMetrics) -> String {
    let mut out = String::new();
    m.encode(&mut out);
    out
}

fn has(out: &str, line: &str) -> bool {
    out.lines().any(|l| l == line)
}

#[test]
fn counts_nodes_by_role_and_status_and_tasks_by_state_with_zeros() {
    let m = member(Role::Worker, None);
    let out = render(&m);
    for line in [
        r#"shoal_nodes{role="manager",status="ready"} 1"#,
        r#"shoal_nodes{role="worker",status="ready"} 1"#,
        r#"shoal_nodes{role="worker",status="down"} 1"#,
        r#"shoal_nodes{role="manager",status="down"} 0"#,
        r#"shoal_nodes{role="worker",status="unknown"} 0"#,
        r#"shoal_tasks{state="running"} 2"#,
        r#"shoal_tasks{state="failed"} 1"#,
        r#"shoal_tasks{state="pending"} 0"#,
        "shoal_gossip_members 2",
        r#"shoal_gossip_rejected_total{reason="forged"} 3"#,
        r#"shoal_gossip_rejected_total{reason="replayed"} 0"#,
        "shoal_cert_expiry_timestamp_seconds 1767225600",
        "shoal_swarm_manager 0",
        r#"shoal_swarm_node_info{node_id="w1",role="worker"} 1"#,
    ] {
        assert!(has(&out, line), "no `{line}` in\n{out}");
    }
    let task_series = out
        .lines()
        .filter(|l| l.starts_with("shoal_tasks{"))
        .count();
    assert_eq!(task_series, TASK_STATES.len());
    let node_series = out
        .lines()
        .filter(|l| l.starts_with("shoal_nodes{"))
        .count();
    assert_eq!(node_series, 6);
}

#[test]
fn a_worker_shows_no_raft() {
    let out = render(&member(Role::Worker, None));
    assert!(!out.contains("shoal_raft"), "{out}");
    assert!(!out.contains("# EOF"), "the caller closes the exposition");
}

#[test]
fn a_manager_shows_its_raft_standing_and_the_leader() {
    let raft = RaftMetrics {
        term: 7,
        commit_index: 42,
        is_leader: false,
        leader: Some(id("m2")),
        voters: 3,
    };
    let out = render(&member(Role::Manager, Some(raft.clone())));
    for line in [
        "shoal_raft_term 7",
        "shoal_raft_commit_index 42",
        "shoal_raft_leader 0",
        "shoal_raft_voters 3",
        r#"shoal_raft_leader_node_info{leader="m2"} 1"#,
        "shoal_swarm_manager 1",
        "# TYPE shoal_raft_term gauge",
        "# TYPE shoal_raft_leader_node info",
    ] {
        assert!(has(&out, line), "no `{line}` in\n{out}");
    }
    let leading = RaftMetrics {
        is_leader: true,
        leader: None,
        ..raft
    };
    let out = render(&member(Role::Manager, Some(leading)));
    assert!(has(&out, "shoal_raft_leader 1"), "{out}");
    assert!(!out.contains("leader_node"), "no leader known: {out}");
}

#[test]
fn outside_a_swarm_there_is_nothing_to_show() {
    assert_eq!(render(&SwarmMetrics::default()), "");
}
