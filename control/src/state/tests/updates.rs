//! Service updates: what starts a rolling update, the previous spec, a
//! rollback and the update status, and records written before these
//! fields existed.

use super::*;

fn with_web() -> ClusterState {
    let mut s = cluster();
    ok(
        &mut s,
        Command::CreateService {
            id: svc_id("s1"),
            spec: spec("web", &["backend"]),
        },
    );
    s
}

fn web(s: &ClusterState) -> &Service {
    s.service(&svc_id("s1")).unwrap()
}

fn update(s: &ClusterState, spec: ServiceSpec, at_ms: u64) -> Command {
    Command::UpdateService {
        id: svc_id("s1"),
        version: web(s).version,
        spec,
        rollback: false,
        at_ms,
    }
}

fn rollback(s: &ClusterState, spec: ServiceSpec, at_ms: u64) -> Command {
    Command::UpdateService {
        id: svc_id("s1"),
        version: web(s).version,
        spec,
        rollback: true,
        at_ms,
    }
}

fn create_task(id: &str, at_ms: u64) -> Command {
    Command::CreateTask {
        id: task_id(id),
        service: svc_id("s1"),
        slot: Some(1),
        node: None,
        at_ms,
    }
}

#[test]
fn a_new_service_has_docker_defaults_and_no_update_history() {
    let s = with_web();
    let svc = web(&s);
    assert_eq!((svc.version, svc.spec_version), (1, 1));
    assert_eq!((&svc.previous_spec, &svc.update_status), (&None, &None));
    let restart = svc.spec.restart;
    assert_eq!(restart.condition, RestartCondition::Any);
    assert_eq!(
        (restart.delay_ms, restart.max_attempts, restart.window_ms),
        (5000, 0, 0)
    );
    for config in [svc.spec.update, svc.spec.rollback] {
        assert_eq!(config.parallelism, 1);
        assert_eq!(config.failure_action, FailureAction::Pause);
        assert_eq!(config.order, UpdateOrder::StopFirst);
        assert_eq!(config.monitor_ms, 5000);
    }
}

#[test]
fn an_update_that_changes_tasks_starts_a_rolling_update_and_keeps_the_previous_spec() {
    let mut s = with_web();
    let old = web(&s).spec.clone();
    let mut new = old.clone();
    new.env.push("MODE=fast".into());
    let cmd = update(&s, new.clone(), 7000);
    ok(&mut s, cmd);
    let svc = web(&s);
    assert_eq!((svc.version, svc.spec_version), (2, 2));
    assert_eq!(svc.previous_spec.as_ref(), Some(&old));
    assert_eq!(svc.previous_spec_version, 1);
    assert_eq!(
        svc.update_status,
        Some(UpdateStatus {
            state: UpdateState::Updating,
            message: "update in progress".into(),
            started_ms: 7000,
        })
    );
    ok(&mut s, create_task("t1", 7001));
    assert_eq!(s.task(&task_id("t1")).unwrap().spec_version, 2);

    // Each of these replaces tasks too.
    let changes: [fn(&mut ServiceSpec); 7] = [
        |s| s.command.push("-v".into()),
        |s| s.networks.clear(),
        |s| {
            s.ports.push(PortConfig {
                mode: PublishMode::Host,
                ..port(Some(8080), 80, Protocol::Tcp)
            })
        },
        |s| s.endpoint_mode = EndpointMode::Dnsrr,
        |s| s.constraints.push("node.role==worker".into()),
        |s| s.restart.condition = RestartCondition::None,
        // `service update --force`: nothing else changes.
        |s| s.force_update += 1,
    ];
    for change in changes {
        let mut spec = web(&s).spec.clone();
        change(&mut spec);
        let cmd = update(&s, spec, 8000);
        ok(&mut s, cmd);
        assert_eq!(web(&s).spec_version, web(&s).version);
    }
}

#[test]
fn scaling_or_changing_how_tasks_are_replaced_keeps_the_spec_version_and_status() {
    let mut s = with_web();
    let mut new = web(&s).spec.clone();
    new.env.push("MODE=fast".into());
    let cmd = update(&s, new, 7000);
    ok(&mut s, cmd);
    let status = web(&s).update_status.clone();

    let changes: [fn(&mut ServiceSpec); 7] = [
        |s| s.mode = ServiceMode::Replicated { replicas: 9 },
        |s| s.max_replicas = 2,
        |s| s.update.parallelism = 3,
        |s| s.rollback.order = UpdateOrder::StartFirst,
        |s| s.name = "web2".into(),
        // `--with-registry-auth`, and again with a new password: the next
        // pulls use them, running tasks stay (as docker).
        |s| {
            s.registry_auth = Some(crate::image::RegistryCredentials {
                username: "alice".into(),
                password: "one".into(),
            })
        },
        |s| {
            if let Some(c) = s.registry_auth.as_mut() {
                c.password = "two".into();
            }
        },
    ];
    for change in changes {
        let mut spec = web(&s).spec.clone();
        let before = spec.clone();
        change(&mut spec);
        let cmd = update(&s, spec, 9000);
        ok(&mut s, cmd);
        let svc = web(&s);
        assert_eq!(svc.spec_version, 2);
        assert_eq!(svc.update_status, status);
        assert_eq!(svc.previous_spec.as_ref(), Some(&before));
        assert_eq!(svc.previous_spec_version, 2);
    }
}

#[test]
fn a_rollback_restores_the_previous_spec_and_its_version_once() {
    let mut s = with_web();
    let old = web(&s).spec.clone();
    let cmd = rollback(&s, old.clone(), 100);
    let msg = refused(&mut s, cmd);
    assert!(msg.contains("no previous spec to roll back to"), "{msg}");

    let mut new = old.clone();
    new.command.push("--v2".into());
    let cmd = update(&s, new.clone(), 1000);
    ok(&mut s, cmd);
    let cmd = rollback(&s, new.clone(), 2000);
    let msg = refused(&mut s, cmd);
    assert!(msg.contains("must carry its previous spec"), "{msg}");

    let cmd = rollback(&s, old.clone(), 2000);

    ok(&mut s, cmd);
    let svc = web(&s);
    assert_eq!(svc.spec, old);
    assert_eq!((svc.version, svc.spec_version), (3, 1));
    assert_eq!(svc.previous_spec, None);
    assert_eq!(
        svc.update_status,
        Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            message: "rollback started".into(),
            started_ms: 2000,
        })
    );
    ok(&mut s, create_task("t1", 2001));
    assert_eq!(s.task(&task_id("t1")).unwrap().spec_version, 1);
    let cmd = rollback(&s, old, 3000);
    refused(&mut s, cmd);
}

#[test]
fn set_update_status_checks_the_version() {
    let mut s = with_web();
    let status = UpdateStatus {
        state: UpdateState::Completed,
        message: "update completed".into(),
        started_ms: 5,
    };
    let set = |version| Command::SetUpdateStatus {
        id: svc_id("s1"),
        version,
        status: status.clone(),
    };
    let msg = refused(&mut s, set(2));
    assert!(msg.contains("version 1, you had 2"), "{msg}");
    ok(&mut s, set(1));
    assert_eq!(web(&s).update_status.as_ref(), Some(&status));
    assert_eq!(web(&s).version, 1, "progress is not a new version");
    refused(
        &mut s,
        Command::SetUpdateStatus {
            id: svc_id("ghost"),
            version: 1,
            status,
        },
    );
}

#[test]
fn records_written_before_policies_and_times_existed_still_decode() {
    let spec = r#"{"name":"web","mode":{"replicated":{"replicas":2}},"command":["true"],
        "env":[],"networks":[],"ports":[],"endpoint_mode":"vip","constraints":[]}"#;
    let spec: ServiceSpec = serde_json::from_str(spec).unwrap();
    assert_eq!(spec.restart, RestartPolicy::default());
    assert_eq!(spec.update, UpdateConfig::default());

    let service = format!(
        r#"{{"id":"s1","spec":{},"vips":{{}},"version":4}}"#,
        serde_json::to_string(&spec).unwrap()
    );
    let service: Service = serde_json::from_str(&service).unwrap();
    assert_eq!((service.spec_version, service.update_status), (0, None));

    let task = r#"{"id":"t1","service":"s1","slot":1,"node":null,"desired":"running",
        "state":"failed","addresses":{},"error":"exit 1"}"#;
    let task: Task = serde_json::from_str(task).unwrap();
    assert_eq!((task.spec_version, task.status_ms), (0, 0));
    assert!(!task.ended_on_its_own);

    let cmd = r#"{"update_service":{"id":"s1","version":4,"spec":{"name":"web",
        "mode":{"replicated":{"replicas":2}},"command":[],"env":[],"networks":[],
        "ports":[],"endpoint_mode":"vip","constraints":[]}}}"#;
    let cmd: Command = serde_json::from_str(cmd).unwrap();
    assert!(matches!(
        cmd,
        Command::UpdateService {
            rollback: false,
            at_ms: 0,
            ..
        }
    ));
    let policy = r#"{"condition":"on-failure","max_attempts":3}"#;
    let policy: RestartPolicy = serde_json::from_str(policy).unwrap();
    assert_eq!(
        (policy.condition, policy.delay_ms, policy.max_attempts),
        (RestartCondition::OnFailure, 5000, 3)
    );
}
