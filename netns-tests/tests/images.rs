//! Image services end to end: images built here, served by a registry on a
//! test host, pulled, pinned and run through runc by real daemons.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use shoal_netns_tests::registry::{Registry, busybox_files};
use shoal_netns_tests::swarm::{T, form, logs, running_tasks, wait_converged};
use shoal_netns_tests::{Host, Lab, SwarmNode, http_get, wait_until, whoami_spray};

/// An image whose task answers HTTP on port 80 with `Hostname: <task>` and
/// `version: <version>`, from its own writable layer.
fn push_web(registry: &Registry, tag: &str, version: &str) -> Result<String> {
    let script = format!(
        "printf 'Hostname: %s\\nversion: {version}\\n' \"$(/bin/busybox hostname)\" > \
         /www/index.html; exec /bin/busybox httpd -f -p 80 -h /www"
    );
    registry.push(
        "demo/web",
        tag,
        &busybox_files(&[("www/.keep", 0o644, Vec::new())])?,
        serde_json::json!({
            "Entrypoint": ["/bin/busybox", "sh", "-c"],
            "Cmd": [script],
            "ExposedPorts": {"80/tcp": {}},
        }),
    )
}

/// Waits until port 8080 on every node answers from exactly `want`, each
/// answer saying `version`.
fn wait_mesh(
    lab: &Lab,
    nodes: &[SwarmNode],
    client: &Host,
    want: &BTreeSet<String>,
    version: &str,
) -> Result<()> {
    for node in nodes {
        let to = std::net::SocketAddrV4::new(node.host.underlay, 8080);
        let mut last = BTreeMap::new();
        wait_until(&format!("{to} to answer from {want:?}"), T, || {
            let (seen, _) = whoami_spray(lab, &client.netns, to, 20, Duration::from_secs(2));
            last = seen.clone();
            (seen.keys().cloned().collect::<BTreeSet<_>>() == *want).then_some(())
        })
        .with_context(|| format!("last answers: {last:?}"))?;
        let body = lab.in_netns(&client.netns, move || http_get(to, Duration::from_secs(2)))??;
        anyhow::ensure!(
            body.contains(&format!("version: {version}")),
            "{to} answered {body}"
        );
    }
    Ok(())
}

fn inspect(node: &SwarmNode, service: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(&node.shoal_ok(&["service", "inspect", service])?)?;
    Ok(v[0].clone())
}

/// What every task of `nodes` logged (the runtime's errors included).
fn task_logs(nodes: &[SwarmNode]) -> String {
    let mut out = String::new();
    for n in nodes {
        let Ok(dirs) = std::fs::read_dir(n.state_dir.join("tasks")) else {
            continue;
        };
        for d in dirs.flatten() {
            let log = std::fs::read_to_string(d.path().join("log")).unwrap_or_default();
            out.push_str(&format!(
                "\n--- {} task {:?} ---\n{log}",
                n.host.name,
                d.file_name()
            ));
        }
    }
    out
}

/// Mounts under `node`'s state directory.
fn mounts_of(node: &SwarmNode) -> Vec<String> {
    let dir = node.state_dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_image_service_runs_through_the_mesh_rolls_to_a_new_tag_and_fails_clearly() -> Result<()> {
    let mut lab = Lab::new("images")?;
    let registry_host = lab.add_host("registry")?;
    let registry = Registry::start(&registry_host, 5000)?;
    let d1 = push_web(&registry, "1", "v1")?;
    let d2 = push_web(&registry, "2", "v2")?;
    let insecure = registry.host();
    let mut swarm = form(&mut lab, 1, 2, &["--insecure-registry", &insecure])?;
    wait_converged(&swarm, &[0], 3)?;
    let client = lab.add_host("client")?;
    let image1 = format!("{insecure}/demo/web:1");
    let m1 = &swarm.nodes[0];
    let out = m1
        .shoal_ok(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            &image1,
        ])
        .with_context(|| format!("{}{}", logs(&swarm), task_logs(&swarm.nodes)))?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let spec = &inspect(m1, "web")?["spec"];
    assert_eq!(
        spec["image"],
        format!("{image1}@{d1}"),
        "pinned to the tag's digest"
    );
    let ls = m1.shoal_ok(&["service", "ls"])?;
    assert!(
        ls.contains("IMAGE") && ls.contains(&image1) && !ls.contains(&d1),
        "{ls}"
    );
    let tasks = running_tasks(m1, "web")?;
    assert_eq!(tasks.len(), 3);
    let want = tasks.keys().cloned().collect();
    wait_mesh(&lab, &swarm.nodes, &client, &want, "v1")
        .with_context(|| format!("{}{}", logs(&swarm), task_logs(&swarm.nodes)))?;

    // Scaled to 5, every node's mesh answers from all five; back to 3.
    let out = m1.shoal_ok(&["service", "scale", "web=5"])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let five = running_tasks(m1, "web")?;
    assert_eq!(five.len(), 5, "{five:?}");
    let want: BTreeSet<String> = five.keys().cloned().collect();
    wait_mesh(&lab, &swarm.nodes, &client, &want, "v1").with_context(|| task_logs(&swarm.nodes))?;
    m1.shoal_ok(&["service", "scale", "web=3"])?;
    let want: BTreeSet<String> = wait_until("3 running tasks", T, || {
        running_tasks(m1, "web").ok().filter(|t| t.len() == 3)
    })?
    .into_keys()
    .collect();
    wait_mesh(&lab, &swarm.nodes, &client, &want, "v1")?;

    // A rolling update to another tag replaces every task.
    let image2 = format!("{insecure}/demo/web:2");
    let out = m1
        .shoal_ok(&["service", "update", "--image", &image2, "web"])
        .with_context(|| logs(&swarm))?;
    assert!(out.contains("verify: Service converged"), "{out}");
    assert_eq!(
        inspect(m1, "web")?["spec"]["image"],
        format!("{image2}@{d2}")
    );
    let tasks = wait_until("3 new running tasks", T, || {
        running_tasks(m1, "web")
            .ok()
            .filter(|t| t.len() == 3 && t.keys().all(|k| !want.contains(k)))
    })
    .with_context(|| task_logs(&swarm.nodes))?;
    let want = tasks.keys().cloned().collect();
    wait_mesh(&lab, &swarm.nodes, &client, &want, "v2").with_context(|| logs(&swarm))?;
    // `service ps` shows the image each task runs; `--no-trunc` its digest,
    // the old tasks' as well as the new ones'.
    let ps = m1.shoal_ok(&["service", "ps", "web"])?;
    assert!(
        ps.contains("IMAGE") && ps.contains(&image2) && !ps.contains(&d2),
        "{ps}"
    );
    let ps = m1.shoal_ok(&["service", "ps", "--no-trunc", "web"])?;
    assert!(ps.contains(&format!("{image2}@{d2}")), "{ps}");
    assert!(ps.contains(&format!("{image1}@{d1}")), "{ps}");

    // An image the registry does not have: the service exists, its task
    // fails with docker's words.
    let ghost = format!("{insecure}/demo/ghost:1");
    m1.shoal_ok(&["service", "create", "--detach", "--name", "ghost", &ghost])?;
    let error = wait_until("the ghost task to fail", T, || {
        let ps = m1
            .shoal_ok(&["service", "ps", "--format", "json", "ghost"])
            .ok()?;
        let v: Value = serde_json::from_str(&ps).ok()?;
        v.as_array()?.iter().find_map(|t| {
            t["error"]
                .as_str()
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
        })
    })?;
    assert!(
        error.contains(&format!("No such image: {ghost}")),
        "{error}"
    );
    m1.shoal_ok(&["service", "rm", "ghost"])?;

    // A worker's daemon killed with -9 takes its containers with it, and
    // comes back clean.
    let w = 1;
    let w1 = swarm.nodes[w].host.name.clone();
    let lost: BTreeSet<String> = running_tasks(m1, "web")?
        .into_iter()
        .filter(|(_, node)| *node == w1)
        .map(|(task, _)| task)
        .collect();
    let pids = wait_until("containers on w1", T, || {
        let p = swarm.nodes[w].container_inits();
        (!p.is_empty()).then_some(p)
    })?;
    swarm.nodes[w].proc.kill9();
    wait_until("w1's containers to die", T, || {
        pids.iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            .then_some(())
    })?;
    swarm.nodes[w] = lab.restart_swarm_node(&swarm.nodes[w])?;
    wait_until("w1 to come back clean", T, || {
        let n = &swarm.nodes[w];
        let stale: Vec<String> = mounts_of(n)
            .into_iter()
            .filter(|m| !m.contains("/runtime/"))
            .collect();
        // Its new tasks mount their own layers; none of the old ones stays.
        let old = stale
            .iter()
            .any(|m| pids.iter().any(|p| m.contains(&p.to_string())));
        (!old).then_some(())
    })?;
    // Nor a cgroup of the killed containers (v1 hierarchies or v2).
    for task in &lost {
        let id = task.rsplit('.').next().unwrap_or(task);
        for root in ["pids/", "memory/", "unified/", ""] {
            let cgroup = format!("/sys/fs/cgroup/{root}shoal/shoal-{id}");
            wait_until(&format!("{cgroup} to go"), T, || {
                (!std::path::Path::new(&cgroup).exists()).then_some(())
            })?;
        }
    }
    wait_converged(&swarm, &[0], 3)?;
    // The state may list w1's old tasks as running until its new agent
    // reports them gone.
    let tasks = wait_until(
        "3 running tasks again, none of them w1's old ones",
        T,
        || {
            running_tasks(&swarm.nodes[0], "web")
                .ok()
                .filter(|t| t.len() == 3 && t.keys().all(|k| !lost.contains(k)))
        },
    )?;
    let want = tasks.keys().cloned().collect();
    wait_mesh(&lab, &swarm.nodes, &client, &want, "v2").with_context(|| logs(&swarm))?;
    drop(registry);
    Ok(())
}
