use super::*;

fn with_service() -> ClusterState {
    let mut s = cluster();
    let mut web = spec("web", &["backend"]);
    web.ports.push(port(Some(80), 80, Protocol::Tcp));
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: web,
        },
    );
    s
}

fn create(id: &str, node: Option<&str>) -> Command {
    Command::CreateTask {
        id: task_id(id),
        service: svc_id("s1"),
        slot: Some(1),
        node: node.map(node_id),
        at_ms: 0,
    }
}

#[test]
fn create_allocates_from_the_bottom_of_every_attached_network() {
    let mut s = with_service();
    let out = ok(&mut s, create("t1", None));
    let Outcome::TaskCreated { addresses } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        addresses.get(&net_id("backend")),
        Some(&"10.0.1.2".parse().unwrap())
    );
    assert_eq!(
        addresses.get(&net_id("ingress")),
        Some(&"10.0.0.2".parse().unwrap())
    );
    assert_eq!(s.task(&task_id("t1")).unwrap().state, TaskState::New);
    ok(&mut s, create("t2", Some("w1")));
    assert_eq!(s.task(&task_id("t2")).unwrap().state, TaskState::Assigned);
}

#[test]
fn create_refuses_duplicates_and_unknown_references() {
    let mut s = with_service();
    ok(&mut s, create("t1", None));
    refused(&mut s, create("t1", None));
    let msg = refused(&mut s, create("t2", Some("ghost")));
    assert!(msg.contains("node `ghost` not found"), "{msg}");
    let msg = refused(
        &mut s,
        Command::CreateTask {
            id: task_id("t2"),
            service: svc_id("ghost"),
            slot: None,
            node: None,
            at_ms: 0,
        },
    );
    assert!(msg.contains("service `ghost` not found"), "{msg}");
}

#[test]
fn updates_only_move_forward() {
    let mut s = with_service();
    ok(&mut s, create("t1", None));
    let to = |state| TaskUpdate {
        state: Some(state),
        ..Default::default()
    };
    ok(
        &mut s,
        Command::UpdateTask {
            id: task_id("t1"),
            update: TaskUpdate {
                node: Some(node_id("w1")),
                ..to(TaskState::Assigned)
            },
        },
    );
    ok(
        &mut s,
        Command::UpdateTask {
            id: task_id("t1"),
            update: to(TaskState::Running),
        },
    );
    let msg = refused(
        &mut s,
        Command::UpdateTask {
            id: task_id("t1"),
            update: to(TaskState::Starting),
        },
    );
    assert!(msg.contains("from running back to starting"), "{msg}");

    let fail = TaskUpdate {
        error: Some("exit 1".into()),
        ..to(TaskState::Failed)
    };
    ok(
        &mut s,
        Command::UpdateTask {
            id: task_id("t1"),
            update: fail,
        },
    );
    assert_eq!(
        s.task(&task_id("t1")).unwrap().error.as_deref(),
        Some("exit 1")
    );

    let stop = TaskUpdate {
        desired: Some(DesiredState::Shutdown),
        ..Default::default()
    };
    ok(
        &mut s,
        Command::UpdateTask {
            id: task_id("t1"),
            update: stop,
        },
    );
    let run = TaskUpdate {
        desired: Some(DesiredState::Running),
        ..Default::default()
    };
    let msg = refused(
        &mut s,
        Command::UpdateTask {
            id: task_id("t1"),
            update: run,
        },
    );
    assert!(msg.contains("cannot run again"), "{msg}");

    let ghost_node = TaskUpdate {
        node: Some(node_id("ghost")),
        ..Default::default()
    };
    refused(
        &mut s,
        Command::UpdateTask {
            id: task_id("t1"),
            update: ghost_node,
        },
    );
    refused(
        &mut s,
        Command::UpdateTask {
            id: task_id("nope"),
            update: TaskUpdate::default(),
        },
    );
}

#[test]
fn remove_frees_addresses_for_reuse() {
    let mut s = with_service();
    ok(&mut s, create("t1", None));
    ok(&mut s, create("t2", None));
    ok(&mut s, Command::RemoveTask { id: task_id("t1") });
    refused(&mut s, Command::RemoveTask { id: task_id("t1") });
    let out = ok(&mut s, create("t3", None));
    let Outcome::TaskCreated { addresses } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        addresses.get(&net_id("backend")),
        Some(&"10.0.1.2".parse().unwrap())
    );
}

#[test]
fn a_full_network_refuses_the_task_everywhere() {
    let mut s = cluster();
    ok(
        &mut s,
        Command::CreateNetwork(network("tiny", "tiny", Some("192.168.0.0/29"))),
    );
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: spec("web", &["backend", "tiny"]),
        },
    );
    // /29: 5 allocatable addresses, one is the VIP.
    for i in 0..4 {
        ok(&mut s, create(&format!("t{i}"), None));
    }
    let msg = refused(&mut s, create("t9", None));
    assert!(
        msg.contains("network `tiny` (192.168.0.0/29) has no free address"),
        "{msg}"
    );
}

#[test]
fn secrets_are_set_read_and_removed() {
    let mut s = ClusterState::new();
    ok(
        &mut s,
        Command::SetSecret {
            name: "overlay-key".into(),
            value: SecretBytes(vec![1, 2, 3]),
        },
    );
    assert_eq!(s.secret("overlay-key"), Some(&[1u8, 2, 3][..]));
    assert!(!format!("{s:?}").contains("[1, 2, 3]"));
    refused(
        &mut s,
        Command::SetSecret {
            name: "bad name".into(),
            value: SecretBytes(vec![]),
        },
    );
    ok(
        &mut s,
        Command::RemoveSecret {
            name: "overlay-key".into(),
        },
    );
    refused(
        &mut s,
        Command::RemoveSecret {
            name: "overlay-key".into(),
        },
    );
}

#[test]
fn the_trust_names_a_ca_and_is_replaced_whole() {
    let mut s = ClusterState::new();
    assert!(s.trust().roots().is_empty());
    let msg = refused(&mut s, Command::SetTrust(Trust::default()));
    assert!(msg.contains("must name the CA"), "{msg}");
    assert_eq!(s.trust(), &Trust::default());
    let one = Trust {
        root: "ROOT".into(),
        rotation: None,
    };
    ok(&mut s, Command::SetTrust(one.clone()));
    assert_eq!(s.trust(), &one);
    assert_eq!(s.trust().roots(), ["ROOT"]);
}

#[test]
fn the_redacted_view_drops_every_secret_and_keeps_the_rest() {
    let mut s = with_service();
    ok(&mut s, create("t1", None));
    for name in ["swarm-ca-key", "swarm-tokens", "overlay-key"] {
        ok(
            &mut s,
            Command::SetSecret {
                name: name.into(),
                value: SecretBytes(b"-----BEGIN PRIVATE KEY-----".to_vec()),
            },
        );
    }
    let trust = Trust {
        root: "ROOT".into(),
        rotation: Some(Rotation {
            previous: "OLD".into(),
            cross_signed: "CROSS".into(),
        }),
    };
    ok(&mut s, Command::SetTrust(trust.clone()));
    let view = s.redacted();
    assert_eq!(view.trust(), &trust, "the CAs are public");
    assert_eq!(view.trust().roots(), ["ROOT", "OLD"]);
    assert_eq!(view.secret_names().count(), 0);
    assert!(view.secret("swarm-ca-key").is_none());
    let json = serde_json::to_string(&view).unwrap();
    assert!(
        !json.contains("PRIVATE KEY") && !json.contains("swarm-tokens"),
        "{json}"
    );
    assert_eq!(view.nodes(), s.nodes());
    assert_eq!(view.networks(), s.networks());
    assert_eq!(view.services(), s.services());
    assert_eq!(view.tasks(), s.tasks());
    let mut with_secrets_removed = s.clone();
    for name in ["swarm-ca-key", "swarm-tokens", "overlay-key"] {
        ok(
            &mut with_secrets_removed,
            Command::RemoveSecret { name: name.into() },
        );
    }
    assert_eq!(view, with_secrets_removed);
}

#[test]
fn a_task_records_its_spec_version_and_when_its_state_changed() {
    let mut s = with_service();
    ok(
        &mut s,
        Command::CreateTask {
            id: task_id("t1"),
            service: svc_id("s1"),
            slot: Some(1),
            node: Some(node_id("w1")),
            at_ms: 100,
        },
    );
    let t = s.task(&task_id("t1")).unwrap();
    assert_eq!((t.spec_version, t.created_ms, t.status_ms), (1, 100, 100));
    let report = |state, at_ms| Command::UpdateTask {
        id: task_id("t1"),
        update: TaskUpdate {
            state: Some(state),
            at_ms,
            ..TaskUpdate::default()
        },
    };
    ok(&mut s, report(TaskState::Running, Some(250)));
    // The same state again is no change; a report without a time keeps
    // the last one.
    ok(&mut s, report(TaskState::Running, Some(300)));
    let t = s.task(&task_id("t1")).unwrap();
    assert_eq!((t.status_ms, t.started_ms), (250, Some(250)));
    ok(&mut s, report(TaskState::Failed, None));
    let t = s.task(&task_id("t1")).unwrap();
    assert_eq!(
        (t.created_ms, t.status_ms, t.started_ms),
        (100, 250, Some(250))
    );
}

#[test]
fn a_new_state_replaces_the_error_and_a_same_state_can_change_it() {
    let mut s = with_service();
    ok(&mut s, create("t1", None));
    let update = |state, error: Option<&str>| Command::UpdateTask {
        id: task_id("t1"),
        update: TaskUpdate {
            state,
            error: error.map(str::to_owned),
            ..TaskUpdate::default()
        },
    };
    let error = |s: &ClusterState| s.task(&task_id("t1")).unwrap().error.clone();
    ok(
        &mut s,
        update(Some(TaskState::Pending), Some("no suitable node")),
    );
    ok(&mut s, update(Some(TaskState::Pending), Some("still none")));
    assert_eq!(error(&s).as_deref(), Some("still none"));
    ok(&mut s, update(None, None));
    assert_eq!(error(&s).as_deref(), Some("still none"));
    ok(&mut s, update(Some(TaskState::Assigned), None));
    assert_eq!(error(&s), None);
}

#[test]
fn only_a_task_that_ends_while_meant_to_run_ended_on_its_own() {
    let mut s = with_service();
    let ended = |s: &ClusterState, id| s.task(&task_id(id)).unwrap().ended_on_its_own;
    for (id, desired, state, expected) in [
        ("t1", None, TaskState::Failed, true),
        ("t2", None, TaskState::Complete, true),
        ("t3", None, TaskState::Rejected, true),
        ("t4", None, TaskState::Shutdown, true),
        ("t5", None, TaskState::Orphaned, false),
        ("t6", Some(DesiredState::Shutdown), TaskState::Failed, false),
        (
            "t7",
            Some(DesiredState::Shutdown),
            TaskState::Shutdown,
            false,
        ),
    ] {
        ok(&mut s, create(id, Some("w1")));
        let update = TaskUpdate {
            desired,
            state: Some(state),
            ..TaskUpdate::default()
        };
        ok(
            &mut s,
            Command::UpdateTask {
                id: task_id(id),
                update,
            },
        );
        assert_eq!(ended(&s, id), expected, "{id}");
    }
    // Told to shut down afterwards, it still ended on its own.
    let stop = TaskUpdate {
        desired: Some(DesiredState::Shutdown),
        ..TaskUpdate::default()
    };
    ok(
        &mut s,
        Command::UpdateTask {
            id: task_id("t1"),
            update: stop,
        },
    );
    assert!(ended(&s, "t1"));
}
