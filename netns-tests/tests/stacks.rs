//! Stacks end to end: a compose file deployed into a 3-node swarm with
//! `shoal stack deploy`, reached through the routing mesh, redeployed with
//! one change, and removed without leftovers; and compose files with
//! mistakes refused with their line and column, nothing deployed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shoal_netns_tests::swarm::{
    T, formed, is_running, logs, running_tasks, task_namespaces_left, task_pids,
};
use shoal_netns_tests::{Lab, SwarmNode, wait_until, whoami_spray};

/// The compose file of the issue, with commands instead of images: `nginx`
/// serves HTTP on the mesh and asks `api` by its short name, printing who
/// answered; `api` also sits on a network the stack makes. `shoal` is the
/// binary under test (a task's own PATH may not have it).
fn compose(shoal: &str, api_replicas: u32) -> String {
    format!(
        r#"version: "3.8"
services:
  nginx:
    command:
      - bash
      - -c
      - >-
        printenv BACKEND_HOST;
        {shoal} whoami --port 80 &
        while true; do curl -sS -m 2 http://api:3000/ | grep Hostname; sleep 0.5; done
    deploy: {{ replicas: 3, placement: {{ constraints: [node.role != manager] }} }}
    environment: {{ BACKEND_HOST: "api:3000" }}
    networks: [ hellonet ]
    ports: [ "8080:80" ]
  api:
    command: shoal whoami --port 3000
    deploy: {{ replicas: {api_replicas} }}
    networks: [ hellonet, backend ]
networks:
  hellonet: {{ external: true }}
  backend: {{}}
"#
    )
}

fn write(lab: &Lab, name: &str, text: &str) -> Result<PathBuf> {
    let path = lab.dir().join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn json(node: &SwarmNode, args: &[&str]) -> Result<Vec<Value>> {
    let text = node.shoal_ok(args)?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{args:?}: {text}"))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn wait_running(node: &SwarmNode, service: &str, n: usize) -> Result<BTreeMap<String, String>> {
    let mut last = BTreeMap::new();
    let ok = wait_until(&format!("{service} to run {n} tasks"), T, || {
        last = running_tasks(node, service).ok()?;
        (last.len() == n).then(|| last.clone())
    });
    ok.with_context(|| format!("last: {last:?}"))
}

#[test]
fn a_stack_deploys_answers_on_the_mesh_updates_what_changed_and_leaves_nothing() -> Result<()> {
    let mut lab = Lab::new("stack-deploy")?;
    let swarm = formed(&mut lab, 1, 2)?;
    let client = lab.add_host("client")?;
    let m = swarm.manager(0);
    m.shoal_ok(&["network", "create", "-d", "overlay", "hellonet"])?;

    let bin = m.bin.to_str().context("binary path")?.to_owned();
    let file = write(&lab, "stack.yml", &compose(&bin, 3))?;
    let file = file.to_str().context("path")?;
    let out = m.shoal_ok(&["stack", "deploy", "-c", file, "hello"])?;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "Creating network hello_backend",
            "Creating service hello_nginx",
            "Creating service hello_api",
        ],
        "{out}"
    );
    let nginx = wait_running(m, "hello_nginx", 3)?;
    let api = wait_running(m, "hello_api", 3)?;
    let manager_name = &m.host.name;
    assert!(
        nginx.values().all(|node| node != manager_name),
        "node.role != manager: {nginx:?}"
    );

    // The mesh answers on every node, from all three nginx tasks.
    let want: BTreeSet<String> = nginx.keys().cloned().collect();
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, 8080);
        let mut last = BTreeMap::new();
        let ok = wait_until(&format!("{addr} to answer from {want:?}"), T, || {
            let (seen, _) = whoami_spray(&lab, &client.netns, addr, 30, Duration::from_secs(3));
            last = seen.clone();
            (seen.keys().cloned().collect::<BTreeSet<_>>() == want).then_some(())
        });
        if let Err(e) = ok {
            bail!("{e}; last answers: {last:?}\n{}", logs(&swarm));
        }
    }
    // nginx finds `api` by its short name and has its environment.
    let api_hosts: BTreeSet<String> = api.keys().cloned().collect();
    let mut last = String::new();
    let ok = wait_until("nginx to reach every api task by name", T, || {
        last = m
            .shoal_ok(&["service", "logs", "--no-task-ids", "hello_nginx"])
            .ok()?;
        let seen: BTreeSet<String> = last
            .lines()
            .filter_map(|l| l.strip_prefix("Hostname: "))
            .map(str::to_owned)
            .collect();
        (seen == api_hosts && last.lines().any(|l| l == "api:3000")).then_some(())
    });
    if let Err(e) = ok {
        bail!("{e}; api {api_hosts:?}; nginx's log:\n{last}");
    }

    // Listings.
    let stacks = json(m, &["stack", "ls", "--format", "json"])?;
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    assert_eq!(stacks[0]["name"], "hello");
    assert_eq!(stacks[0]["services"], 2);
    let services = json(m, &["stack", "services", "hello", "--format", "json"])?;
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["hello_api", "hello_nginx"]);
    let table = m.shoal_ok(&["stack", "ls"])?;
    assert!(
        table.starts_with("NAME") && table.contains("hello"),
        "{table}"
    );
    let ps = json(m, &["stack", "ps", "hello", "--format", "json"])?;
    assert_eq!(ps.len(), 6, "{ps:?}");

    // Redeploy with one change: only api is updated; nginx keeps its tasks.
    let nginx_ids: BTreeSet<String> = nginx.keys().cloned().collect();
    let file = write(&lab, "stack.yml", &compose(&bin, 5))?;
    let file = file.to_str().context("path")?;
    let out = m.shoal_ok(&["stack", "deploy", "-c", file, "hello"])?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with("Updating service hello_api (id: "),
        "{out}"
    );
    wait_running(m, "hello_api", 5)?;
    let nginx_after: BTreeSet<String> = running_tasks(m, "hello_nginx")?.into_keys().collect();
    assert_eq!(nginx_after, nginx_ids, "nginx was not touched");
    let out = m.shoal_ok(&["stack", "deploy", "-c", file, "hello"])?;
    assert!(out.contains("up to date"), "{out}");

    // Removal: services, then the network the stack made; the external one stays.
    let out = m.shoal_ok(&["stack", "rm", "hello"])?;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "Removing service hello_api",
            "Removing service hello_nginx",
            "Removing network hello_backend",
        ],
        "{out}"
    );
    let networks = json(m, &["network", "ls", "--format", "json"])?;
    let names: BTreeSet<&str> = networks.iter().filter_map(|n| n["name"].as_str()).collect();
    assert!(
        names.contains("hellonet") && !names.contains("hello_backend"),
        "{names:?}"
    );
    assert!(json(m, &["stack", "ls", "--format", "json"])?.is_empty());
    wait_until("task namespaces to go", T, || {
        task_namespaces_left(&lab).is_empty().then_some(())
    })?;
    let addr = SocketAddrV4::new(swarm.nodes[1].host.underlay, 8080);
    wait_until(&format!("{addr} to close"), T, || {
        let (seen, _) = whoami_spray(&lab, &client.netns, addr, 1, Duration::from_secs(1));
        seen.is_empty().then_some(())
    })?;
    let left: Vec<u32> = task_pids(&lab)
        .into_iter()
        .filter(|pid| is_running(*pid))
        .collect();
    assert!(left.is_empty(), "task processes left: {left:?}");
    Ok(())
}

#[test]
fn compose_mistakes_are_located_and_nothing_is_deployed() -> Result<()> {
    let mut lab = Lab::new("stack-bad")?;
    let swarm = formed(&mut lab, 1, 0)?;
    let m = swarm.manager(0);
    m.shoal_ok(&["network", "create", "-d", "overlay", "hellonet"])?;
    let good = compose("shoal", 1);
    let cases: [(&str, String, &[&str]); 5] = [
        (
            "unknown key",
            good.replace("    ports: [", "    portz: ["),
            &["14:5", "portz"],
        ),
        (
            "wrong type",
            good.replace("deploy: { replicas: 1 }", "deploy: { replicas: many }"),
            &["17:", "replicas"],
        ),
        (
            "bad port",
            good.replace("\"8080:80\"", "\"8080:eighty\""),
            &["14:", "ports"],
        ),
        (
            "unknown network",
            good.replace("[ hellonet, backend ]", "[ hellonet, nowhere ]"),
            &["18:", "nowhere"],
        ),
        (
            "bad image reference",
            good.replace(
                "    command: shoal whoami --port 3000",
                "    image: \"Api:Latest!\"",
            ),
            &["16:", "image"],
        ),
    ];
    for (what, text, says) in &cases {
        let file = write(&lab, "bad.yml", text)?;
        let out = m.shoal(&[
            "stack",
            "deploy",
            "-c",
            file.to_str().context("path")?,
            "bad",
        ])?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("bad.yml:"), "{what}: no file in {err}");
        for s in *says {
            assert!(err.contains(s), "{what}: {s:?} not in {err}");
        }
    }
    // An external network that does not exist: the manager refuses the
    // whole plan, so not even the stack's own network is created.
    let file = write(&lab, "bad.yml", &good.replace("hellonet", "othernet"))?;
    let out = m.shoal(&[
        "stack",
        "deploy",
        "-c",
        file.to_str().context("path")?,
        "bad",
    ])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("othernet") && err.contains("external"),
        "{err}"
    );
    assert!(json(m, &["stack", "ls", "--format", "json"])?.is_empty());
    assert!(json(m, &["service", "ls", "--format", "json"])?.is_empty());
    let networks = json(m, &["network", "ls", "--format", "json"])?;
    assert!(
        networks.iter().all(|n| n["name"] != "bad_backend"),
        "{networks:?}"
    );
    Ok(())
}
