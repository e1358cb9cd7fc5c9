use super::*;
use shoal_dataplane::tables::WgKey;

#[test]
fn add_refuses_duplicates_and_empty_labels() {
    let mut s = cluster();
    let msg = refused(&mut s, Command::AddNode(node("w1", Role::Worker)));
    assert!(msg.contains("already a member"), "{msg}");
    let mut n = node("w2", Role::Worker);
    n.labels.insert(String::new(), "x".into());
    refused(&mut s, Command::AddNode(n));
}

#[test]
fn update_changes_fields_and_labels() {
    let mut s = cluster();
    let mut update = NodeUpdate {
        availability: Some(Availability::Drain),
        status: Some(NodeStatus::Down),
        ..NodeUpdate::default()
    };
    update.labels_add.insert("zone".into(), "a".into());
    ok(
        &mut s,
        Command::UpdateNode {
            id: node_id("w1"),
            update,
        },
    );
    let w1 = s.node(&node_id("w1")).unwrap();
    assert_eq!(w1.availability, Availability::Drain);
    assert_eq!(w1.status, NodeStatus::Down);
    assert_eq!(w1.labels.get("zone").map(String::as_str), Some("a"));

    let mut update = NodeUpdate::default();
    update.labels_rm.insert("zone".into());
    ok(
        &mut s,
        Command::UpdateNode {
            id: node_id("w1"),
            update,
        },
    );
    assert!(s.node(&node_id("w1")).unwrap().labels.is_empty());
}

#[test]
fn update_refuses_unknown_node_conflicting_labels_and_last_manager_demotion() {
    let mut s = cluster();
    let msg = refused(
        &mut s,
        Command::UpdateNode {
            id: node_id("nope"),
            update: NodeUpdate::default(),
        },
    );
    assert!(msg.contains("`shoal node ls`"), "{msg}");

    let mut update = NodeUpdate {
        availability: Some(Availability::Pause),
        ..Default::default()
    };
    update.labels_add.insert("k".into(), "v".into());
    update.labels_rm.insert("k".into());
    refused(
        &mut s,
        Command::UpdateNode {
            id: node_id("w1"),
            update,
        },
    );

    let demote = NodeUpdate {
        role: Some(Role::Worker),
        ..Default::default()
    };
    let msg = refused(
        &mut s,
        Command::UpdateNode {
            id: node_id("m1"),
            update: demote.clone(),
        },
    );
    assert!(msg.contains("last manager"), "{msg}");

    let promote = NodeUpdate {
        role: Some(Role::Manager),
        ..Default::default()
    };
    ok(
        &mut s,
        Command::UpdateNode {
            id: node_id("w1"),
            update: promote,
        },
    );
    ok(
        &mut s,
        Command::UpdateNode {
            id: node_id("m1"),
            update: demote,
        },
    );
    assert_eq!(s.node(&node_id("m1")).unwrap().role, Role::Worker);
}

#[test]
fn remove_refuses_managers_live_nodes_and_nodes_with_tasks() {
    let mut s = cluster();
    let msg = refused(
        &mut s,
        Command::RemoveNode {
            id: node_id("m1"),
            force: true,
        },
    );
    assert!(msg.contains("demote it first"), "{msg}");
    let msg = refused(
        &mut s,
        Command::RemoveNode {
            id: node_id("w1"),
            force: false,
        },
    );
    assert!(msg.contains("not down"), "{msg}");
    refused(
        &mut s,
        Command::RemoveNode {
            id: node_id("nope"),
            force: true,
        },
    );

    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: spec("web", &["backend"]),
        },
    );
    ok(
        &mut s,
        Command::CreateTask {
            id: task_id("t1"),
            service: svc_id("s1"),
            slot: Some(1),
            node: Some(node_id("w1")),
            at_ms: 0,
        },
    );
    let down = NodeUpdate {
        status: Some(NodeStatus::Down),
        ..Default::default()
    };
    ok(
        &mut s,
        Command::UpdateNode {
            id: node_id("w1"),
            update: down,
        },
    );
    let msg = refused(
        &mut s,
        Command::RemoveNode {
            id: node_id("w1"),
            force: false,
        },
    );
    assert!(msg.contains("1 task(s)"), "{msg}");

    // Once its task is told to stop, a down worker can go.
    let stop = TaskUpdate {
        desired: Some(DesiredState::Shutdown),
        ..Default::default()
    };
    let mut stopped = s.clone();
    ok(
        &mut stopped,
        Command::UpdateTask {
            id: task_id("t1"),
            update: stop,
        },
    );
    ok(
        &mut stopped,
        Command::RemoveNode {
            id: node_id("w1"),
            force: false,
        },
    );
    assert!(stopped.node(&node_id("w1")).is_none());
}

#[test]
fn forced_removal_orphans_unfinished_tasks() {
    let mut s = cluster();
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: spec("web", &["backend"]),
        },
    );
    ok(
        &mut s,
        Command::CreateTask {
            id: task_id("t1"),
            service: svc_id("s1"),
            slot: Some(1),
            node: Some(node_id("w1")),
            at_ms: 0,
        },
    );
    ok(
        &mut s,
        Command::RemoveNode {
            id: node_id("w1"),
            force: true,
        },
    );
    let t = s.task(&task_id("t1")).unwrap();
    assert_eq!(t.state, TaskState::Orphaned);
    assert_eq!(t.desired, DesiredState::Shutdown);
}

#[test]
fn the_gossip_keyring_keeps_the_newest_key_and_the_one_before() {
    let mut s = ClusterState::new();
    let rotate = |byte: u8, at_ms: u64| Command::RotateGossipKey {
        key: SecretBytes(vec![byte; 32]),
        at_ms,
    };
    for (byte, at) in [(1, 10), (2, 20), (3, 30)] {
        s.apply(rotate(byte, at)).unwrap();
    }
    let keys = s.gossip_keys();
    assert_eq!(keys.len(), GOSSIP_KEYS);
    assert_eq!((keys[0].id, keys[0].created_ms), (3, 30));
    assert_eq!((keys[1].id, keys[1].key.0[0]), (2, 2));
    // Workers seal gossip too: the redacted state keeps the keyring.
    assert_eq!(s.redacted().gossip_keys(), keys);

    let before = s.clone();
    let err = s
        .apply(Command::RotateGossipKey {
            key: SecretBytes(vec![0; 16]),
            at_ms: 40,
        })
        .unwrap_err();
    assert!(err.to_string().contains("32 bytes, not 16"), "{err}");
    assert_eq!(s, before);
}

#[test]
fn a_node_record_from_before_tunnel_keys_decodes_and_takes_one() {
    let old = r#"{"id":"w9","hostname":"h","role":"worker","availability":"active",
        "status":"ready","labels":{},"addr":"198.18.0.9:2377",
        "gossip_addr":"198.18.0.9:7946","engine":"userspace"}"#;
    let old: Node = serde_json::from_str(old).unwrap();
    assert_eq!(old.tunnel_key, None);
    // Written back, it says nothing of a key, as before.
    assert!(!serde_json::to_string(&old).unwrap().contains("tunnel_key"));

    let mut s = ClusterState::new();
    ok(&mut s, Command::AddNode(old));
    let key = WgKey([9; 32]);
    let report = |key| Command::UpdateNode {
        id: node_id("w9"),
        update: NodeUpdate {
            tunnel_key: Some(key),
            ..NodeUpdate::default()
        },
    };
    ok(&mut s, report(key));
    assert_eq!(s.node(&node_id("w9")).unwrap().tunnel_key, Some(key));
    // A record in JSON carries it in base64, and reads back.
    let json = serde_json::to_string(s.node(&node_id("w9")).unwrap()).unwrap();
    assert!(json.contains(&format!(r#""tunnel_key":"{key}""#)), "{json}");
    let back: Node = serde_json::from_str(&json).unwrap();
    assert_eq!(back.tunnel_key, Some(key));

    // No private key has an all-zero public key: a broken file.
    let msg = refused(&mut s, report(WgKey([0; 32])));
    assert!(msg.contains("all-zero tunnel key"), "{msg}");
    let mut zero = node("w8", Role::Worker);
    zero.tunnel_key = Some(WgKey([0; 32]));
    refused(&mut s, Command::AddNode(zero));
}
