//! Compose files in, plans or located errors out.

use proptest::prelude::*;

use super::*;
use crate::scheduler::Constraint;
use crate::state::{Protocol, PublishMode};
use crate::swarm::parse_publish;

const FILE: &str = "compose.yml";

fn ok(text: &str) -> StackPlan {
    match plan(FILE, text, "web") {
        Ok(p) => p,
        Err(e) => panic!("the file was refused:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<ComposeError> {
    match plan(FILE, text, "web") {
        Ok(p) => panic!("the file was accepted: {p:#?}"),
        Err(e) => e.0,
    }
}

/// The only error of `text`.
fn error(text: &str) -> ComposeError {
    let mut e = errors(text);
    assert_eq!(e.len(), 1, "{}", ComposeErrors(e.clone()));
    e.remove(0)
}

fn service<'p>(plan: &'p StackPlan, short: &str) -> &'p ServiceOptions {
    &plan
        .services
        .iter()
        .find(|s| s.short == short)
        .unwrap_or_else(|| panic!("no service {short} in {plan:#?}"))
        .options
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const EXAMPLE: &str = r#"version: "3"
services:
  nginx:
    command: shoal whoami --port 80
    deploy: { replicas: 3, placement: { constraints: [node.role != manager] } }
    environment: { BACKEND_HOST: api:3000 }
    networks: [ hellonet ]
    ports: ["8080:80"]
  api:
    command: ["shoal", "whoami", "--port", "3000"]
    deploy: { replicas: 3 }
    networks: [ hellonet ]
networks:
  hellonet: { external: true }
"#;

#[test]
fn the_example_becomes_two_services_on_an_external_network() {
    let plan = ok(EXAMPLE);
    assert_eq!(plan.stack, "web");
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!(plan.networks.len(), 1);
    let net = &plan.networks[0];
    assert_eq!((net.short.as_str(), net.external), ("hellonet", true));
    assert_eq!(net.options.name, "hellonet");

    let names: Vec<&str> = plan.services.iter().map(|s| s.short.as_str()).collect();
    assert_eq!(names, ["nginx", "api"]);
    let nginx = service(&plan, "nginx");
    assert_eq!(nginx.name, "web_nginx");
    assert_eq!(nginx.command, ["shoal", "whoami", "--port", "80"]);
    assert_eq!((nginx.replicas, nginx.global), (Some(3), false));
    assert_eq!(nginx.constraints, ["node.role != manager"]);
    assert_eq!(nginx.env, ["BACKEND_HOST=api:3000"]);
    assert_eq!(nginx.networks, ["hellonet"]);
    assert_eq!(nginx.publish, ["8080:80"]);
    let api = service(&plan, "api");
    assert_eq!(api.name, "web_api");
    assert_eq!(api.command, ["shoal", "whoami", "--port", "3000"]);
    assert_eq!(api.replicas, Some(3));
    assert!(api.publish.is_empty() && api.env.is_empty() && api.constraints.is_empty());
}

const FULL: &str = r#"version: "3.8"
x-defaults: &defaults
  restart_policy: &restart
    condition: on-failure
    delay: 5s
    max_attempts: 3
    window: 2m
services:
  api:
    entrypoint: ["/usr/bin/env", "PORT=3000"]
    command: shoal whoami --name 'api server' --port "3000"
    environment:
      - MODE=prod
      - EMPTY=
      - EQUALS=a=b
    deploy:
      mode: replicated
      replicas: 5
      endpoint_mode: vip
      placement:
        constraints:
          - node.labels.zone == east
          - node.role==worker
        max_replicas_per_node: 2
      update_config:
        parallelism: 2
        delay: 10s
        failure_action: rollback
        monitor: 1m30s
        max_failure_ratio: 0
        order: start-first
      rollback_config:
        parallelism: 0
        delay: 500ms
        failure_action: continue
        monitor: 2.5s
        order: stop-first
      restart_policy: *restart
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:3000/?a=1&b=2"]
      interval: 1m30s
      timeout: 10s
      retries: 3
      start_period: 40s
    networks:
      front:
      back:
    ports:
      - 80
      - "8000:8080"
      - "9000-9001:7000-7001/udp"
      - target: 443
        published: 8443
        protocol: tcp
        mode: host
      - target: 53
        protocol: udp
  worker:
    command: sh -c 'exec worker --price $$5'
    environment:
      DEBUG: yes
      RATIO: 1.50
      COUNT: 3
      UNSET:
      QUOTED: "a b"
    deploy:
      mode: global
      endpoint_mode: dnsrr
      <<: *defaults
    healthcheck:
      test: curl -f localhost || exit 1
    networks: [back]
    ports:
      - { target: 9100, published: 9100, mode: host }
  cron:
    command: [sleep, infinity]
    healthcheck: { test: ["NONE"] }
networks:
  front:
    driver: overlay
    attachable: true
    ipam:
      config:
        - subnet: 10.20.0.0/24
  back:
    driver_opts:
      encrypted: ""
  outside:
    external:
      name: shared-net
"#;

#[test]
fn every_supported_key_lands_in_the_service_options() {
    let plan = ok(FULL);

    let api = service(&plan, "api");
    assert_eq!(
        api.command,
        [
            "/usr/bin/env",
            "PORT=3000",
            "shoal",
            "whoami",
            "--name",
            "api server",
            "--port",
            "3000"
        ]
    );
    assert_eq!(api.env, ["MODE=prod", "EMPTY=", "EQUALS=a=b"]);
    assert_eq!((api.replicas, api.global), (Some(5), false));
    assert_eq!(api.endpoint_mode.as_deref(), Some("vip"));
    assert_eq!(
        api.constraints,
        ["node.labels.zone == east", "node.role==worker"]
    );
    assert_eq!(api.max_replicas, 2);
    assert_eq!(api.networks, ["web_front", "web_back"]);
    assert_eq!(
        api.publish,
        [
            "80",
            "8000:8080",
            "9000:7000/udp",
            "9001:7001/udp",
            "published=8443,target=443,protocol=tcp,mode=host",
            "target=53,protocol=udp,mode=ingress",
        ]
    );
    let p = &api.policies;
    assert_eq!(p.update.parallelism, Some(2));
    assert_eq!(p.update.delay_ms, Some(10_000));
    assert_eq!(p.update.failure_action.as_deref(), Some("rollback"));
    assert_eq!(p.update.monitor_ms, Some(90_000));
    assert_eq!(p.update.order.as_deref(), Some("start-first"));
    assert_eq!(p.rollback.parallelism, Some(0));
    assert_eq!(p.rollback.delay_ms, Some(500));
    assert_eq!(p.rollback.failure_action.as_deref(), Some("continue"));
    assert_eq!(p.rollback.monitor_ms, Some(2_500));
    assert_eq!(p.rollback.order.as_deref(), Some("stop-first"));
    assert_eq!(p.restart_condition.as_deref(), Some("on-failure"));
    assert_eq!(p.restart_delay_ms, Some(5_000));
    assert_eq!(p.restart_max_attempts, Some(3));
    assert_eq!(p.restart_window_ms, Some(120_000));
    assert_eq!(
        p.health_cmd.as_deref(),
        Some("curl -f 'http://localhost:3000/?a=1&b=2'")
    );
    assert_eq!(p.health_interval_ms, Some(90_000));
    assert_eq!(p.health_timeout_ms, Some(10_000));
    assert_eq!(p.health_retries, Some(3));
    assert_eq!(p.health_start_period_ms, Some(40_000));
    assert!(!p.no_healthcheck);

    let worker = service(&plan, "worker");
    assert_eq!(worker.command, ["sh", "-c", "exec worker --price $5"]);
    assert_eq!(
        worker.env,
        ["DEBUG=yes", "RATIO=1.50", "COUNT=3", "UNSET=", "QUOTED=a b"]
    );
    assert_eq!((worker.replicas, worker.global), (None, true));
    assert_eq!(worker.endpoint_mode.as_deref(), Some("dnsrr"));
    assert_eq!(worker.networks, ["web_back"]);
    assert_eq!(
        worker.publish,
        ["published=9100,target=9100,protocol=tcp,mode=host"]
    );
    // The merged `restart_policy` comes from the extension field.
    assert_eq!(
        worker.policies.restart_condition.as_deref(),
        Some("on-failure")
    );
    assert_eq!(worker.policies.restart_window_ms, Some(120_000));
    assert_eq!(
        worker.policies.health_cmd.as_deref(),
        Some("curl -f localhost || exit 1")
    );

    let cron = service(&plan, "cron");
    assert_eq!(cron.command, ["sleep", "infinity"]);
    assert!(cron.policies.no_healthcheck && cron.policies.health_cmd.is_none());
    assert_eq!(cron.networks, ["web_default"]);

    let nets: Vec<(&str, &str, bool)> = plan
        .networks
        .iter()
        .map(|n| (n.short.as_str(), n.options.name.as_str(), n.external))
        .collect();
    assert_eq!(
        nets,
        [
            ("front", "web_front", false),
            ("back", "web_back", false),
            ("default", "web_default", false)
        ]
    );
    let front = &plan.networks[0].options;
    assert_eq!(front.driver.as_deref(), Some("overlay"));
    assert!(front.attachable);
    assert_eq!(front.subnet, Some("10.20.0.0/24".parse().unwrap()));
    assert_eq!(plan.networks[1].options.options, ["encrypted"]);
    // `outside` is declared and unused: not created, and said so.
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(
        plan.warnings[0].starts_with("compose.yml:88:3: networks.outside: network `outside`"),
        "{:?}",
        plan.warnings
    );

    // Every value is one `service create` accepts.
    for s in &plan.services {
        for p in &s.options.publish {
            parse_publish(p).unwrap();
        }
        Constraint::parse_all(&s.options.constraints).unwrap();
    }
    let ports: Vec<_> = api
        .publish
        .iter()
        .map(|p| parse_publish(p).unwrap())
        .collect();
    assert_eq!(ports[4].mode, PublishMode::Host);
    assert_eq!(ports[5].protocol, Protocol::Udp);

    // The CLI sends the plan to the daemon as JSON.
    let json = serde_json::to_string(&plan).unwrap();
    let back: StackPlan = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

#[test]
fn errors_name_file_line_column_and_key_path() {
    let e = error("services:\n  api:\n    command: x\n    deploy:\n      replicas: three\n");
    assert_eq!(
        e.to_string(),
        "compose.yml:5:17: services.api.deploy.replicas: invalid type: string \"three\", \
         expected an integer"
    );
    assert_eq!((e.line, e.column), (5, 17));
}

#[test]
fn unknown_keys_are_located_and_near_misses_named() {
    let e = error("services:\n  api:\n    command: x\n    comand: y\n");
    assert_eq!(
        (e.line, e.column, e.path.as_str()),
        (4, 5, "services.api.comand")
    );
    assert!(e.message.contains("did you mean `command`?"), "{e}");

    let e =
        error("services:\n  api:\n    command: x\n    deploy: { update_config: { speed: 1 } }\n");
    assert_eq!(e.path, "services.api.deploy.update_config.speed");
    assert_eq!((e.line, e.column), (4, 32));
    assert!(e.message.contains("expected `parallelism`"), "{e}");

    let e = error("services:\n  api: { command: x }\nextras: 1\n");
    assert_eq!((e.line, e.column, e.path.as_str()), (3, 1, "extras"));
}

#[test]
fn wrong_types_are_located() {
    let text = "services:\n  api:\n    command: 5\n    ports: 80\n    environment: true\n";
    let e = errors(text);
    let got: Vec<(usize, usize, &str)> = e
        .iter()
        .map(|e| (e.line, e.column, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (3, 14, "services.api.command"),
            (4, 12, "services.api.ports"),
            (5, 18, "services.api.environment")
        ]
    );
    assert!(
        e[0].message
            .contains("invalid type: integer `5`, expected a string or a list")
    );
    assert!(e[2].message.contains("invalid type: boolean `true`"));
}

#[test]
fn bad_ports_are_located() {
    let text = r#"services:
  api:
    command: x
    ports:
      - "8080:0"
      - "garbage"
      - 70000
      - "127.0.0.1:80:80"
      - { target: 0 }
      - { published: 80 }
      - { target: 80, mode: bridge }
      - "80/sctp"
      - 0
"#;
    let e = errors(text);
    let got: Vec<(usize, usize, &str)> = e
        .iter()
        .map(|e| (e.line, e.column, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (5, 9, "services.api.ports[0]"),
            (6, 9, "services.api.ports[1]"),
            (7, 9, "services.api.ports[2]"),
            (8, 9, "services.api.ports[3]"),
            (9, 19, "services.api.ports[4].target"),
            (10, 9, "services.api.ports[5]"),
            (11, 29, "services.api.ports[6].mode"),
            (12, 9, "services.api.ports[7]"),
            (13, 9, "services.api.ports[8]"),
        ],
        "{}",
        ComposeErrors(e.clone())
    );
    assert!(e[0].message.contains("`0` is not a port"), "{}", e[0]);
    assert!(e[2].message.contains("from 0 to 65535"), "{}", e[2]);
    assert!(e[3].message.contains("every node's addresses"), "{}", e[3]);
    assert!(e[5].message.contains("needs a `target`"), "{}", e[5]);
    assert!(
        e[6].message.contains("expected `ingress` or `host`"),
        "{}",
        e[6]
    );
}

#[test]
fn undeclared_networks_are_located() {
    let text =
        "services:\n  api:\n    command: x\n    networks: [front, back]\nnetworks:\n  front:\n";
    let e = error(text);
    assert_eq!(
        e.to_string(),
        "compose.yml:4:23: services.api.networks[1]: service api: network `back` is not \
         declared in the top-level networks; declare it there (with `external: true` if it \
         exists already)"
    );
    let e =
        error("services:\n  api:\n    command: x\n    networks:\n      back: { aliases: [b] }\n");
    assert_eq!(
        (e.line, e.column, e.path.as_str()),
        (5, 7, "services.api.networks.back")
    );
}

#[test]
fn image_entrypoint_and_command_are_read_as_docker_reads_them() {
    let plan = ok(r#"services:
  web:
    image: 198.18.0.1:5000/demo/web:1
    entrypoint: /bin/busybox httpd
    command: ["-f", "-p", "80"]
    stop_signal: quit
    stop_grace_period: 1m30s
  api:
    image: busybox
    entrypoint: ""
  host:
    entrypoint: /bin/sleep
    command: "100"
"#);
    let by = |short: &str| {
        plan.services
            .iter()
            .find(|s| s.options.name.ends_with(&format!("_{short}")))
            .map(|s| s.options.clone())
            .unwrap()
    };
    let web = by("web");
    assert_eq!(web.image.as_deref(), Some("198.18.0.1:5000/demo/web:1"));
    assert_eq!(
        web.entrypoint,
        Some(vec!["/bin/busybox".into(), "httpd".into()])
    );
    assert_eq!(web.command, ["-f", "-p", "80"]);
    assert_eq!(web.policies.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(web.policies.stop_grace_ms, Some(90_000));
    // An empty entrypoint keeps the image's, and no command its CMD.
    let api = by("api");
    assert_eq!((api.entrypoint, api.command.len()), (None, 0));
    // Without an image, both run on the node, entrypoint first.
    let host = by("host");
    assert_eq!(
        (host.image, host.command),
        (None, vec!["/bin/sleep".into(), "100".into()])
    );
}

#[test]
fn bad_images_and_signals_are_refused_where_they_are_written() {
    let e = error("services:\n  api:\n    image: \"Nope Image\"\n");
    assert_eq!(
        (e.line, e.column, e.path.as_str()),
        (3, 12, "services.api.image")
    );
    let e = error("services:\n  api:\n    image: busybox\n    stop_signal: SIGNOPE\n");
    assert_eq!((e.line, e.path.as_str()), (4, "services.api.stop_signal"));
    assert!(e.message.contains("not a signal"), "{e}");
    // With neither image nor command, the service is told it needs one.
    let e = error("services:\n  api:\n    deploy: { replicas: 2 }\n");
    assert_eq!((e.line, e.column, e.path.as_str()), (2, 3, "services.api"));
    assert!(
        e.message.contains("needs an `image:` or a `command:`"),
        "{e}"
    );
}

#[test]
fn versions_other_than_3_are_refused() {
    for v in ["\"3\"", "\"3.9\"", "3.10", "3", "'3.x'"] {
        ok(&format!("version: {v}\nservices:\n  a: {{ command: x }}\n"));
    }
    ok("services:\n  a: { command: x }\n");
    for v in ["\"2.4\"", "\"4\"", "\"3.\"", "3.1a", "[3]"] {
        let e = error(&format!("version: {v}\nservices:\n  a: {{ command: x }}\n"));
        assert_eq!((e.line, e.column), (1, 10), "{v}");
        assert_eq!(e.path, "version");
    }
    let e = error("version: '2'\nservices:\n  a: { command: x }\n");
    assert!(e.message.contains("reads version 3 files"), "{e}");
}

#[test]
fn unsupported_top_level_keys_are_refused() {
    let text = "services:\n  a: { command: x }\nvolumes:\n  data:\nsecrets: {}\nconfigs: {}\n";
    let e = errors(text);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(got, [(3, "volumes"), (5, "secrets"), (6, "configs")]);
    assert!(
        e[0].message.contains("`volumes` is not supported"),
        "{}",
        e[0]
    );
}

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let text = r#"version: "3"
services:
  api:
    image: "not an image!"
    deploy: { replicas: -1, mode: sometimes }
    ports: ["99999:80"]
    networks: [nope]
  db:
    command: [postgres]
    environment: [ONLY_A_NAME]
    user: postgres
networks:
  other: { driver: bridge }
"#;
    let e = errors(text);
    let shown = ComposeErrors(e.clone()).to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 8, "{shown}");
    let at: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        at,
        [
            (4, "services.api.image"),
            (5, "services.api.deploy.replicas"),
            (5, "services.api.deploy.mode"),
            (6, "services.api.ports[0]"),
            (7, "services.api.networks[0]"),
            (10, "services.db.environment[0]"),
            (11, "services.db.user"),
            (13, "networks.other.driver"),
        ]
    );
    assert!(lines[1].starts_with("compose.yml:5:25: services.api.deploy.replicas: "));
}

#[test]
fn syntax_errors_are_located() {
    let e = error("services:\n  api:\n    command: x\n    command: y\n");
    assert_eq!((e.line, e.column, e.path.as_str()), (4, 5, "services.api"));
    assert!(e.message.contains("duplicate"), "{e}");
    let e = error("services:\n  api:\n    command: [x\n");
    assert_eq!(e.file, FILE);
    assert!(e.line >= 3, "{e}");
    let e = error("");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.contains("empty"), "{e}");
    let e = error("- a\n- b\n");
    assert!(e.message.contains("expected a map"), "{e}");
}

#[test]
fn bad_stack_names_are_refused_before_the_file_is_read() {
    let e = plan(FILE, EXAMPLE, "my stack").unwrap_err().0;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 0);
    assert!(
        e[0].to_string()
            .starts_with("compose.yml: stack name `my stack` is not valid"),
        "{}",
        e[0]
    );
    let long = "s".repeat(60);
    let e = plan(FILE, EXAMPLE, &long).unwrap_err().0;
    assert!(e.iter().all(|e| e.message.contains("at most 63")), "{e:?}");
    assert_eq!(e.len(), 2);
}

#[test]
fn environment_as_list_or_map() {
    let plan = ok(r#"services:
  a:
    command: x
    environment: ["A=1", "B=", "C=x=y"]
  b:
    command: x
    environment: { A: 1, B: "", C: ~, D: false, E: 0x1F, F: "$$HOME" }
"#);
    assert_eq!(service(&plan, "a").env, ["A=1", "B=", "C=x=y"]);
    assert_eq!(
        service(&plan, "b").env,
        ["A=1", "B=", "C=", "D=false", "E=0x1F", "F=$HOME"]
    );
    let e = errors(
        "services:\n  a:\n    command: x\n    environment: [\"A\", \"=1\", \"B=1\", \"B=2\", 5]\n",
    );
    let messages: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
    assert!(messages[0].contains("client's environment"), "{messages:?}");
    assert!(messages[1].contains("no name"), "{messages:?}");
    assert!(messages[2].contains("set twice"), "{messages:?}");
    assert!(
        messages[3].contains("invalid type: integer `5`"),
        "{messages:?}"
    );
    let e = error("services:\n  a:\n    command: x\n    environment: { A: [1] }\n");
    assert_eq!(e.path, "services.a.environment.A");
    let e = error("services:\n  a:\n    command: x\n    environment: { A: \"${TAG}\" }\n");
    assert!(e.message.contains("variable substitution"), "{e}");
}

#[test]
fn short_and_long_ports() {
    let plan = ok(r#"services:
  a:
    command: x
    ports:
      - 80
      - "8080"
      - "8000:8080"
      - "53:53/udp"
      - "3000-3002"
      - { target: 81 }
      - { target: "82", published: "8082", protocol: udp }
"#);
    assert_eq!(
        service(&plan, "a").publish,
        [
            "80",
            "8080",
            "8000:8080",
            "53:53/udp",
            "3000",
            "3001",
            "3002",
            "target=81,protocol=tcp,mode=ingress",
            "published=8082,target=82,protocol=udp,mode=ingress",
        ]
    );
}

#[test]
fn colliding_ports_are_refused() {
    let e = error(
        "services:\n  a:\n    command: x\n    ports: [\"80:80\"]\n  b:\n    command: x\n    ports: [\"80:81\"]\n",
    );
    assert_eq!((e.line, e.path.as_str()), (7, "services.b.ports[0]"));
    assert!(
        e.message
            .contains("already published by service `a` (line 4)"),
        "{e}"
    );
    // Host-mode ports of different services may share a number; UDP and
    // TCP never collide.
    ok(r#"services:
  a: { command: x, ports: [{ target: 80, published: 80, mode: host }, "53:53/udp"] }
  b: { command: x, ports: [{ target: 80, published: 80, mode: host }, "53:53"] }
"#);
    let e = error(
        "services:\n  a:\n    command: x\n    ports: [{ target: 80, published: 80, mode: host }, \"80:81\"]\n",
    );
    assert_eq!(e.path, "services.a.ports[1]");
}

#[test]
fn dnsrr_refuses_ingress_ports() {
    let e = error(
        "services:\n  a:\n    command: x\n    deploy: { endpoint_mode: dnsrr }\n    ports: [\"80:80\"]\n",
    );
    assert_eq!((e.line, e.column), (4, 30));
    assert_eq!(e.path, "services.a.deploy.endpoint_mode");
    ok(
        "services:\n  a:\n    command: x\n    deploy: { endpoint_mode: dnsrr }\n    ports: [{ target: 80, published: 80, mode: host }]\n",
    );
}

#[test]
fn services_without_networks_join_the_default_network() {
    let plan =
        ok("services:\n  a: { command: x }\n  b: { command: x, networks: [n] }\nnetworks:\n  n:\n");
    assert_eq!(service(&plan, "a").networks, ["web_default"]);
    assert_eq!(service(&plan, "b").networks, ["web_n"]);
    let shorts: Vec<&str> = plan.networks.iter().map(|n| n.short.as_str()).collect();
    assert_eq!(shorts, ["n", "default"]);
    assert!(!plan.networks[1].external);
    // A declared `default` is the one they join.
    let plan = ok(
        "services:\n  a: { command: x }\nnetworks:\n  default: { ipam: { config: [{ subnet: 10.9.0.0/16 }] } }\n",
    );
    assert_eq!(plan.networks.len(), 1);
    assert_eq!(
        plan.networks[0].options.subnet,
        Some("10.9.0.0/16".parse().unwrap())
    );
    assert_eq!(service(&plan, "a").networks, ["web_default"]);
    let plan = ok(
        "services:\n  a: { command: x }\nnetworks:\n  default: { external: { name: host-net } }\n",
    );
    assert_eq!(plan.networks[0].options.name, "host-net");
    assert!(plan.networks[0].external);
    // No service needs it: it is not in the plan.
    let plan = ok(EXAMPLE);
    assert!(plan.networks.iter().all(|n| n.short != "default"));
}

#[test]
fn merge_keys_aliases_and_extensions() {
    let plan = ok(r#"x-base: &base
  command: shoal whoami
  environment: &env { A: "1" }
  deploy: { replicas: 2 }
x-anything: [1, 2, { free: form }]
services:
  a:
    <<: *base
    x-note: ignored
  b:
    <<: *base
    command: [other]
    environment: *env
    deploy: { replicas: 4, x-mine: 1 }
"#);
    let a = service(&plan, "a");
    assert_eq!(
        (a.command.clone(), a.replicas),
        (strings(&["shoal", "whoami"]), Some(2))
    );
    assert_eq!(a.env, ["A=1"]);
    let b = service(&plan, "b");
    assert_eq!(
        (b.command.clone(), b.replicas),
        (strings(&["other"]), Some(4))
    );
    assert_eq!(b.env, ["A=1"]);
    // An error in merged content points at where it is written.
    let e = error(
        "x-d: &d\n  replicas: lots\nservices:\n  a:\n    command: x\n    deploy:\n      <<: *d\n",
    );
    assert_eq!((e.line, e.column), (2, 13));
    assert_eq!(e.path, "services.a.deploy.replicas");
}

#[test]
fn ignored_keys_warn_and_unsupported_ones_are_refused() {
    let plan = ok(r#"services:
  a:
    command: x
    build: .
    restart: always
    depends_on: [b]
    labels: { team: x }
    deploy:
      labels: { x: y }
      update_config: { max_failure_ratio: 0.3 }
  b:
    command: x
    networks: { n: { aliases: [bee] } }
networks:
  n: { labels: { a: b } }
"#);
    let w = &plan.warnings;
    assert_eq!(w.len(), 3, "{w:#?}");
    assert_eq!(
        w[0],
        "compose.yml:4:5: services.a: ignoring unsupported options: build, restart, depends_on, \
         labels"
    );
    assert!(w[1].contains("max_failure_ratio"), "{w:#?}");
    assert!(
        w.iter()
            .any(|w| w.contains("services.b.networks.n: ignoring unsupported options: aliases"))
    );
    // `deploy.labels` and network labels are the service's and network's.
    let a = &plan
        .services
        .iter()
        .find(|s| s.short == "a")
        .expect("a")
        .options;
    assert_eq!(a.labels.get("x").map(String::as_str), Some("y"));
    let n = &plan
        .networks
        .iter()
        .find(|n| n.short == "n")
        .expect("n")
        .options;
    assert_eq!(n.labels.get("a").map(String::as_str), Some("b"));

    for (key, says) in [
        ("volumes: [\"./data:/data\"]", "no volumes"),
        ("secrets: [pw]", "no secrets"),
        ("user: nobody", "image's user"),
        ("working_dir: /srv", "working directory"),
        ("hostname: h", "task name"),
        ("logging: { driver: syslog }", "log drivers"),
        (
            "deploy: { resources: { limits: { memory: 50M } } }",
            "CPU or memory",
        ),
        ("env_file: .env", "list the variables"),
    ] {
        let e = error(&format!("services:\n  a:\n    command: x\n    {key}\n"));
        assert!(
            e.message.contains("is not supported") && e.message.contains(says),
            "{key}: {e}"
        );
        assert_eq!(e.line, 4, "{key}: {e}");
    }
}

#[test]
fn commands_split_join_and_escape() {
    let plan = ok(r#"services:
  a:
    entrypoint: /bin/sh -c
    command: ["echo \"$$HOME\" 'x'"]
  b:
    command: >
      shoal whoami
      --port 80
"#);
    assert_eq!(
        service(&plan, "a").command,
        ["/bin/sh", "-c", "echo \"$HOME\" 'x'"]
    );
    assert_eq!(
        service(&plan, "b").command,
        ["shoal", "whoami", "--port", "80"]
    );
    let e = error("services:\n  a:\n    command: echo 'unclosed\n");
    assert!(e.message.contains("not closed"), "{e}");
    assert_eq!((e.line, e.column), (3, 14));
    let e = error("services:\n  a:\n    command: echo $HOME\n");
    assert!(e.message.contains("`$$`"), "{e}");
    let e = error("services:\n  a:\n    command: []\n");
    assert!(e.message.contains("empty"), "{e}");
}

#[test]
fn deploy_modes_and_choices() {
    let e = error("services:\n  a:\n    command: x\n    deploy: { mode: global, replicas: 2 }\n");
    assert_eq!(e.path, "services.a.deploy.replicas");
    assert!(e.message.contains("global"), "{e}");
    let e = error(
        "services:\n  a:\n    command: x\n    deploy: { mode: global, placement: { max_replicas_per_node: 1 } }\n",
    );
    assert_eq!(e.path, "services.a.deploy.placement.max_replicas_per_node");
    let e = error(
        "services:\n  a:\n    command: x\n    deploy: { rollback_config: { failure_action: rollback } }\n",
    );
    assert!(e.message.contains("expected `pause` or `continue`"), "{e}");
    let e = error(
        "services:\n  a:\n    command: x\n    deploy: { restart_policy: { condition: always } }\n",
    );
    assert!(e.message.contains("`none`, `on-failure` or `any`"), "{e}");
    let e =
        error("services:\n  a:\n    command: x\n    deploy: { restart_policy: { delay: 5 } }\n");
    assert!(e.message.contains("expected a duration"), "{e}");
    let e = error(
        "services:\n  a:\n    command: x\n    deploy: { update_config: { delay: 5 days } }\n",
    );
    assert!(e.message.contains("invalid duration `5 days`"), "{e}");
    let e = error(
        "services:\n  a:\n    command: x\n    deploy:\n      placement:\n        constraints: [\"node.color == red\"]\n",
    );
    assert_eq!(
        (e.line, e.path.as_str()),
        (6, "services.a.deploy.placement.constraints[0]")
    );
    assert!(e.message.contains("node.color"), "{e}");
    let e = error(
        "services:\n  a:\n    command: x\n    deploy: { update_config: { max_failure_ratio: 2 } }\n",
    );
    assert!(e.message.contains("from 0 to 1"), "{e}");
}

#[test]
fn placement_preferences_are_read_in_order_and_checked() {
    let plan = ok(
        "services:\n  a:\n    command: x\n    deploy:\n      placement:\n        preferences:\n          - spread: node.labels.zone\n          - { spread: node.labels.rack }\n",
    );
    assert_eq!(
        service(&plan, "a").preferences,
        ["spread=node.labels.zone", "spread=node.labels.rack"]
    );
    for (prefs, path, says) in [
        (
            "[{ spread: node.hostname }]",
            "preferences[0].spread",
            "only node labels",
        ),
        (
            "[{ spread: \"\" }]",
            "preferences[0].spread",
            "nothing to spread over",
        ),
        (
            "[{ pack: node.labels.zone }]",
            "preferences[0].pack",
            "unknown key `pack`",
        ),
        ("[{}]", "preferences[0]", "needs `spread"),
        (
            "spread=node.labels.zone",
            "preferences",
            "a list of preferences",
        ),
    ] {
        let e = error(&format!(
            "services:\n  a:\n    command: x\n    deploy: {{ placement: {{ preferences: {prefs} }} }}\n"
        ));
        assert_eq!(
            e.path,
            format!("services.a.deploy.placement.{path}"),
            "{prefs}: {e}"
        );
        assert!(e.message.contains(says), "{prefs}: {e}");
    }
}

#[test]
fn health_checks() {
    let check = |test: &str| {
        let text = format!("services:\n  a:\n    command: x\n    healthcheck:\n      {test}\n");
        plan(FILE, &text, "web").map(|p| p.services[0].options.policies.clone())
    };
    let p = check("test: [\"CMD-SHELL\", \"curl -f localhost\"]").unwrap();
    assert_eq!(p.health_cmd.as_deref(), Some("curl -f localhost"));
    let p = check("test: [\"CMD\", \"check\", \"it's ok\"]").unwrap();
    assert_eq!(p.health_cmd.as_deref(), Some(r"check 'it'\''s ok'"));
    let p = check("disable: true").unwrap();
    assert!(p.no_healthcheck);
    let p = check("{ test: [\"NONE\"], disable: true }").unwrap();
    assert!(p.no_healthcheck);
    for (bad, says) in [
        ("test: [\"CMD\"]", "needs a program"),
        ("test: [\"RUN\", \"x\"]", "CMD, CMD-SHELL or NONE"),
        ("test: [\"CMD-SHELL\", \"a\", \"b\"]", "exactly one"),
        ("test: [\"NONE\", \"x\"]", "nothing after"),
        ("test: \"  \"", "empty"),
        ("test: []", "empty"),
        ("{ test: x, disable: true }", "cannot both"),
        ("{ disable: true, interval: 5s }", "disabled"),
        ("interval: 5s", "needs a `test`"),
        ("{ test: x, interval: 0s }", "at least 1ms"),
        ("{ test: x, retries: -1 }", "from 0 to"),
    ] {
        let e = check(bad).unwrap_err();
        assert_eq!(e.0.len(), 1, "{bad}: {e}");
        assert!(e.0[0].message.contains(says), "{bad}: {e}");
        assert!(
            e.0[0].path.starts_with("services.a.healthcheck"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn networks_top_level() {
    let e = error(
        "services:\n  a: { command: x, networks: [n] }\nnetworks:\n  n: { external: true, driver: overlay }\n",
    );
    assert_eq!(e.path, "networks.n.driver");
    assert!(e.message.contains("external"), "{e}");
    let e = error(
        "services:\n  a: { command: x, networks: [n] }\nnetworks:\n  n: { ipam: { config: [{ subnet: 10.0.0.1/24 }] } }\n",
    );
    assert!(e.message.contains("did you mean `10.0.0.0/24`?"), "{e}");
    let e = error(
        "services:\n  a: { command: x, networks: [n] }\nnetworks:\n  n: { ipam: { config: [{ subnet: 10.0.0.0/24 }, { subnet: 10.1.0.0/24 }] } }\n",
    );
    assert!(e.message.contains("one subnet"), "{e}");
    let e = error(
        "services:\n  a: { command: x, networks: [n] }\nnetworks:\n  n: { driver_opts: { mtu: 1400 } }\n",
    );
    assert_eq!(e.path, "networks.n.driver_opts.mtu");
    let e = error(
        "services:\n  a: { command: x, networks: [n] }\nnetworks:\n  n: { internal: true }\n",
    );
    assert!(e.message.contains("internal"), "{e}");
    // A network with its own errors is still declared: no second error.
    let e =
        error("services:\n  a: { command: x, networks: [n] }\nnetworks:\n  n: { driver: host }\n");
    assert_eq!(e.path, "networks.n.driver");
    let plan = ok(
        "services:\n  a: { command: x, networks: [n, m] }\nnetworks:\n  n: { name: shared }\n  m: { external: true, name: pre-made }\n",
    );
    let names: Vec<(&str, bool)> = plan
        .networks
        .iter()
        .map(|n| (n.options.name.as_str(), n.external))
        .collect();
    assert_eq!(names, [("shared", false), ("pre-made", true)]);
    assert_eq!(service(&plan, "a").networks, ["shared", "pre-made"]);
}

#[test]
fn hostile_yaml_is_refused_not_obeyed() {
    // Nesting deeper than the parser's budget, and an alias bomb.
    let deep = format!("services: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(errors(&deep)[0].line > 0);
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
        let prev = ["a", "b", "c", "d", "e", "f", "g", "h"][i];
        bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    bomb.push_str("services: { s: { command: x, environment: [*i] } }\n");
    let e = errors(&bomb);
    assert!(e[0].line > 0, "{}", ComposeErrors(e.clone()));
}

/// A YAML tree made of the words the checks know, written in flow style.
#[derive(Debug, Clone)]
enum Shape {
    Scalar(&'static str),
    Seq(Vec<Shape>),
    Map(Vec<(&'static str, Shape)>),
}

impl Shape {
    fn write(&self, out: &mut String) {
        match self {
            Shape::Scalar(s) => out.push_str(s),
            Shape::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Shape::Map(entries) => {
                out.push('{');
                let mut seen = Vec::new();
                for (key, value) in entries {
                    if seen.contains(key) {
                        continue;
                    }
                    if !seen.is_empty() {
                        out.push_str(", ");
                    }
                    seen.push(key);
                    out.push_str(key);
                    out.push_str(": ");
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Compose-shaped documents: a `services` map of two services and a
/// `networks` map, each made of the keys and values the checks know, to
/// reach past the first `expected a map`.
fn composeish() -> impl Strategy<Value = String> {
    let scalar = prop::sample::select(vec![
        "x",
        "\"3\"",
        "\"80:80\"",
        "8080",
        "\"1-3\"",
        "1m30s",
        "-1",
        "0",
        "2",
        "70000",
        "true",
        "~",
        "'$$x'",
        "\"${X}\"",
        "10.0.0.0/24",
        "\"node.role==worker\"",
        "global",
        "replicated",
        "dnsrr",
        "vip",
        "host",
        "ingress",
        "udp",
        "CMD",
        "NONE",
        "CMD-SHELL",
        "n",
        "front",
        "default",
        "\"shoal whoami\"",
        "on-failure",
        "pause",
        "0.5",
    ]);
    let key = prop::sample::select(vec![
        "command",
        "entrypoint",
        "deploy",
        "replicas",
        "mode",
        "endpoint_mode",
        "placement",
        "constraints",
        "max_replicas_per_node",
        "update_config",
        "rollback_config",
        "restart_policy",
        "condition",
        "delay",
        "max_attempts",
        "window",
        "parallelism",
        "failure_action",
        "monitor",
        "order",
        "max_failure_ratio",
        "ports",
        "target",
        "published",
        "protocol",
        "environment",
        "A",
        "healthcheck",
        "test",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "disable",
        "networks",
        "front",
        "default",
        "aliases",
        "external",
        "name",
        "driver",
        "attachable",
        "ipam",
        "config",
        "subnet",
        "driver_opts",
        "encrypted",
        "image",
        "build",
        "user",
        "x-a",
    ]);
    let keys = key.clone();
    let shape = scalar
        .prop_map(Shape::Scalar)
        .prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Shape::Seq),
                prop::collection::vec((keys.clone(), inner), 0..6).prop_map(Shape::Map),
            ]
        });
    // Services start with a command, so that some documents pass.
    let service = prop::collection::vec((key, shape.clone()), 0..5).prop_map(|mut entries| {
        entries.insert(0, ("command", Shape::Scalar("x")));
        Shape::Map(entries)
    });
    (service.clone(), service, shape).prop_map(|(api, db, networks)| {
        let doc = Shape::Map(vec![
            ("version", Shape::Scalar("\"3\"")),
            ("services", Shape::Map(vec![("api", api), ("db", db)])),
            ("networks", networks),
        ]);
        let mut text = String::new();
        doc.write(&mut text);
        text
    })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*", stack in "[a-z_-]{0,70}") {
        let _ = plan(FILE, &text, &stack);
    }

    #[test]
    fn compose_shaped_garbage_never_panics(text in composeish()) {
        match plan(FILE, &text, "web") {
            Ok(p) => {
                for s in &p.services {
                    prop_assert!(!s.options.command.is_empty());
                    prop_assert_eq!(&s.options.name, &format!("web_{}", s.short));
                    for publish in &s.options.publish {
                        prop_assert!(parse_publish(publish).is_ok());
                    }
                    prop_assert!(Constraint::parse_all(&s.options.constraints).is_ok());
                    for n in &s.options.networks {
                        prop_assert!(p.networks.iter().any(|m| &m.options.name == n));
                    }
                }
            }
            Err(e) => {
                prop_assert!(!e.0.is_empty());
                let shown = e.to_string();
                prop_assert_eq!(shown.lines().count(), e.0.len());
            }
        }
    }
}

#[test]
fn labels_as_list_or_map_and_not_on_external_networks() {
    let plan = ok(r#"services:
  a:
    command: x
    deploy: { labels: ["tier=front", "canary"] }
networks:
  n: { labels: { a: b } }
"#);
    let a = &plan.services[0].options;
    assert_eq!(a.labels.get("tier").map(String::as_str), Some("front"));
    assert_eq!(a.labels.get("canary").map(String::as_str), Some(""));
    let e = error(
        r#"services:
  a: { command: x, networks: [n] }
networks:
  n: { external: true, labels: { a: b } }
"#,
    );
    assert_eq!((e.line, e.path.as_str()), (4, "networks.n.labels"), "{e}");
    assert!(e.message.contains("an external network"), "{e}");
}
