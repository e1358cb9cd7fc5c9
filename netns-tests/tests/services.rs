//! Services end to end, as the Swarm tutorials use them: a swarm of real
//! daemons, `shoal service ...` typed as a user would, tasks run by the
//! nodes' agents, and HTTP through the routing mesh from a client host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shoal_netns_tests::swarm::{
    Swarm, T, formed, is_running, logs, running_tasks, task_namespaces_left, task_pids,
};
use shoal_netns_tests::{Host, Lab, SwarmNode, http_get, wait_until, whoami_spray};

/// `service ps NAME --format json`.
fn service_ps(node: &SwarmNode, service: &str) -> Result<Vec<Value>> {
    let text = node.shoal_ok(&["service", "ps", service, "--format", "json"])?;
    let v: Value = serde_json::from_str(&text).context("service ps json")?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// `n` requests from `client` to `addr`: hostnames with counts, failures.
fn spray(
    lab: &Lab,
    client: &Host,
    addr: SocketAddrV4,
    n: usize,
) -> (BTreeMap<String, usize>, usize) {
    whoami_spray(lab, &client.netns, addr, n, Duration::from_secs(3))
}

/// Waits until the mesh on every node answers from exactly `want`.
fn wait_mesh(
    lab: &Lab,
    swarm: &Swarm,
    client: &Host,
    port: u16,
    want: &BTreeSet<String>,
) -> Result<()> {
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, port);
        let mut last = BTreeMap::new();
        let ok = wait_until(&format!("{addr} to answer from {want:?}"), T, || {
            let (seen, _) = spray(lab, client, addr, 30);
            last = seen.clone();
            (seen.keys().cloned().collect::<BTreeSet<_>>() == *want).then_some(())
        });
        if let Err(e) = ok {
            bail!("{e}; last answers: {last:?}\n{}", logs(swarm));
        }
    }
    Ok(())
}

#[test]
fn the_swarm_tutorial_create_scale_and_remove_a_published_service() -> Result<()> {
    let mut lab = Lab::new("svc-tutorial")?;
    let swarm = formed(&mut lab, 1, 2)?;
    let client = lab.add_host("client")?;
    let m = swarm.manager(0);

    m.shoal_ok(&["network", "create", "-d", "overlay", "skynet"])?;
    let out = m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "http",
        "--network",
        "skynet",
        "--replicas",
        "2",
        "-p",
        "80:80",
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    assert!(out.contains("overall progress: 2 out of 2 tasks"), "{out}");
    assert!(out.contains("verify: Service converged"), "{out}");

    // HTTP to port 80 on every node's address reaches both replicas.
    let tasks = running_tasks(m, "http")?;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let want: BTreeSet<String> = tasks.keys().cloned().collect();
    wait_mesh(&lab, &swarm, &client, 80, &want)?;
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, 80);
        let (seen, failed) = spray(&lab, &client, addr, 100);
        assert_eq!(failed, 0, "{addr}: {seen:?}");
        for (h, n) in &seen {
            assert!(*n >= 20, "{addr}: {h} answered only {n} of 100: {seen:?}");
        }
    }

    // Scale to 5: spread over the 3 nodes; service ps, node ps agree.
    let out = m.shoal_ok(&["service", "scale", "http=5"])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let tasks = running_tasks(m, "http")?;
    assert_eq!(tasks.len(), 5, "{tasks:?}");
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for node in tasks.values() {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "spread over every node: {per_node:?}");
    assert!(per_node.values().all(|&n| n <= 2), "{per_node:?}");
    for node in &swarm.nodes {
        let name = node.host.name.as_str();
        let key = if name == "m1" { "self" } else { name };
        let text = m.shoal_ok(&["node", "ps", key, "--format", "json"])?;
        let listed: Vec<Value> = serde_json::from_str(&text)?;
        let here = listed
            .iter()
            .filter(|t| t["state"] == "running" && t["desired"] == "running")
            .count();
        assert_eq!(
            here,
            per_node.get(name).copied().unwrap_or(0),
            "node ps {key}"
        );
    }
    let ls = m.shoal_ok(&["service", "ls"])?;
    assert!(ls.contains("5/5"), "{ls}");
    assert!(ls.contains("*:80->80/tcp"), "{ls}");
    let want: BTreeSet<String> = tasks.keys().cloned().collect();
    wait_mesh(&lab, &swarm, &client, 80, &want)?;

    // Logs come from every node with docker's prefix.
    let text = m.shoal_ok(&["service", "logs", "http"])?;
    let prefixed = text
        .lines()
        .filter(|l| {
            l.starts_with("http.") && l.contains('@') && l.contains(" | shoal whoami: HTTP")
        })
        .count();
    assert_eq!(prefixed, 5, "{text}");

    // Listings as docker's: CURRENT STATE with its age, filters, `-q`,
    // and one task's logs by its id.
    let table = m.shoal_ok(&["service", "ps", "http"])?;
    let aged = table
        .lines()
        .filter(|l| l.matches("Running").count() == 2 && l.ends_with(" ago"))
        .count();
    assert_eq!(aged, 5, "{table}");
    let running = m.shoal_ok(&["service", "ps", "-q", "-f", "desired-state=running", "http"])?;
    let ids: Vec<&str> = running.lines().collect();
    assert_eq!(ids.len(), 5, "{running}");
    assert!(ids.iter().all(|id| id.len() == 12), "{running}");
    let on_w1 = m.shoal_ok(&[
        "node",
        "ps",
        "-q",
        "-f",
        "node=w1",
        "-f",
        "desired-state=running",
        "w1",
    ])?;
    assert_eq!(
        on_w1.lines().count(),
        per_node.get("w1").copied().unwrap_or(0),
        "{on_w1}"
    );
    let services = m.shoal_ok(&["service", "ls", "-q"])?;
    assert_eq!(services.lines().count(), 1, "{services}");
    let managers = m.shoal_ok(&["node", "ls", "-q", "-f", "role=manager"])?;
    assert_eq!(managers.lines().count(), 1, "{managers}");
    let workers = m.shoal_ok(&["node", "ls", "-f", "role=worker"])?;
    assert_eq!(
        workers.lines().count(),
        3,
        "a header and two workers: {workers}"
    );
    let bad = m.shoal(&["service", "ps", "-f", "foo=bar", "http"])?;
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && bad.stdout.is_empty(), "{said}");
    assert!(said.contains("invalid filter 'foo'"), "{said}");
    let one = m.shoal_ok(&["service", "logs", ids[0]])?;
    let lines: Vec<&str> = one.lines().collect();
    assert_eq!(lines.len(), 1, "{one}");
    assert!(
        lines[0].starts_with("http.") && lines[0].contains(&format!(".{}", ids[0])),
        "{one}"
    );

    // Remove: the port closes, and no namespace or process is left.
    m.shoal_ok(&["service", "rm", "http"])?;
    wait_until("task namespaces to go", T, || {
        task_namespaces_left(&lab).is_empty().then_some(())
    })?;
    for node in &swarm.nodes {
        let addr = SocketAddrV4::new(node.host.underlay, 80);
        wait_until(&format!("{addr} to close"), T, || {
            let (seen, _) = spray(&lab, &client, addr, 1);
            seen.is_empty().then_some(())
        })?;
    }
    let left = task_pids(&lab)
        .into_iter()
        .filter(|pid| is_running(*pid))
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "task processes left: {left:?}");

    // Placement preferences on the same swarm: zone a is m1 alone, zone b
    // is w1 and w2, and six tasks go three to each zone, not two a node.
    m.shoal_ok(&["node", "update", "--label-add", "zone=a", "m1"])?;
    for w in ["w1", "w2"] {
        m.shoal_ok(&["node", "update", "--label-add", "zone=b", w])?;
    }
    let out = m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "zoned",
        "--replicas",
        "6",
        "--placement-pref",
        "spread=node.labels.zone",
        "--",
        "sleep",
        "1000",
    ])?;
    assert!(out.contains("overall progress: 6 out of 6 tasks"), "{out}");
    let per = spread(m, "zoned")?;
    let zone_b = per.get("w1").copied().unwrap_or(0) + per.get("w2").copied().unwrap_or(0);
    assert_eq!((per.get("m1").copied(), zone_b), (Some(3), 3), "{per:?}");
    let inspect: Vec<Value> = serde_json::from_str(&m.shoal_ok(&["service", "inspect", "zoned"])?)?;
    assert_eq!(
        inspect[0]["spec"]["preferences"],
        serde_json::json!([{ "spread": "node.labels.zone" }]),
        "{inspect:?}"
    );
    // Removing it moves nothing (as docker), and inspect shows none.
    m.shoal_ok(&[
        "service",
        "update",
        "--placement-pref-rm",
        "spread=node.labels.zone",
        "zoned",
    ])?;
    let inspect: Vec<Value> = serde_json::from_str(&m.shoal_ok(&["service", "inspect", "zoned"])?)?;
    assert!(
        inspect[0]["spec"].get("preferences").is_none(),
        "{inspect:?}"
    );
    assert_eq!(spread(m, "zoned")?, per);
    Ok(())
}

#[test]
fn bad_service_input_is_refused_and_nothing_is_created() -> Result<()> {
    let mut lab = Lab::new("svc-bad")?;
    let swarm = formed(&mut lab, 1, 0)?;
    let m = swarm.manager(0);
    let create = |extra: &[&str]| {
        let mut args = vec!["service", "create", "--detach"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sleep", "1000"]);
        m.shoal(&args)
    };
    for (args, says) in [
        (
            vec!["--name", "a", "--network", "nope"],
            "network `nope` not found",
        ),
        (
            vec!["--name", "a", "--constraint", "node.labels.zone=a"],
            "constraint",
        ),
        (vec!["--name", "a", "-p", "80:x"], "target port `x`"),
        (
            vec!["--name", "a", "--replicas", "-1"],
            "replicas must be 0 or more",
        ),
        (
            vec!["--name", "a", "--placement-pref", "foo"],
            "placement preference `foo`: not STRATEGY=ARG",
        ),
        (
            vec!["--name", "a", "--placement-pref", "spread="],
            "nothing to spread over",
        ),
        (
            vec!["--name", "a", "--placement-pref", "spread=node.hostname"],
            "only node labels",
        ),
    ] {
        let out = create(&args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    m.shoal_ok(&[
        "service", "create", "--detach", "--name", "web", "-p", "8080:80", "--", "sleep", "1000",
    ])?;
    let out = create(&["--name", "other", "-p", "8080:81"])?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("8080"),
        "{out:?}"
    );
    m.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "everywhere",
        "--mode",
        "global",
        "--",
        "sleep",
        "1000",
    ])?;
    let out = m.shoal(&["service", "scale", "everywhere=3"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replicated mode"),
        "{out:?}"
    );
    let out = m.shoal(&["service", "scale", "web=-2"])?;
    assert!(!out.status.success());
    let names: Vec<String> =
        serde_json::from_str::<Vec<Value>>(&m.shoal_ok(&["service", "ls", "--format", "json"])?)?
            .iter()
            .map(|s| s["name"].as_str().unwrap_or("?").to_owned())
            .collect();
    assert_eq!(names, ["everywhere", "web"]);
    Ok(())
}

/// Requests sent and failed by a client hammering one address until told
/// to stop.
struct Hammer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl Hammer {
    fn start(client: &Host, addr: SocketAddrV4) -> Hammer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let netns = shoal_dataplane::sys::netns::path_of(&client.netns);
        let thread = std::thread::spawn(move || {
            if shoal_dataplane::sys::netns::enter(&netns).is_err() {
                return (0, 0);
            }
            let (mut sent, mut failed) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                sent += 1;
                if http_get(addr, Duration::from_secs(2)).is_err() {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (sent, failed)
        });
        Hammer { stop, thread }
    }

    fn finish(self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// Running tasks of `service` per node hostname.
fn spread(node: &SwarmNode, service: &str) -> Result<BTreeMap<String, usize>> {
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for n in running_tasks(node, service)?.values() {
        *per.entry(n.clone()).or_default() += 1;
    }
    Ok(per)
}

#[test]
fn drained_and_dead_workers_lose_their_tasks_and_the_mesh_follows() -> Result<()> {
    let mut lab = Lab::new("svc-move")?;
    let mut swarm = formed(&mut lab, 1, 2)?;
    let client = lab.add_host("client")?;
    let m = swarm.manager(0);
    m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "-p",
        "8080:80",
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    let tasks = running_tasks(m, "web")?;
    wait_mesh(
        &lab,
        &swarm,
        &client,
        8080,
        &tasks.keys().cloned().collect(),
    )?;

    // Drain w1 while a client keeps asking through m1's published port.
    let entry = SocketAddrV4::new(m.host.underlay, 8080);
    let hammer = Hammer::start(&client, entry);
    m.shoal_ok(&["node", "update", "--availability", "drain", "w1"])?;
    wait_until("w1's tasks to move", T, || {
        let per = spread(m, "web").ok()?;
        (!per.contains_key("w1") && per.values().sum::<usize>() == 3).then_some(())
    })?;
    let tasks = running_tasks(m, "web")?;
    wait_mesh(
        &lab,
        &swarm,
        &client,
        8080,
        &tasks.keys().cloned().collect(),
    )?;
    let (sent, failed) = hammer.finish();
    eprintln!("drain: {failed} of {sent} requests through the mesh failed");
    assert!(sent > 0);

    // kill -9 w2's daemon (its tasks die with it): replacements run on m1,
    // and the mesh stops sending to the dead ones.
    let started = std::time::Instant::now();
    swarm.nodes[2].proc.kill9();
    wait_until("w2's tasks to be replaced on m1", T, || {
        let per = spread(swarm.manager(0), "web").ok()?;
        (per.get("m1") == Some(&3)).then_some(())
    })?;
    let m = swarm.manager(0);
    let tasks = running_tasks(m, "web")?;
    let want: BTreeSet<String> = tasks.keys().cloned().collect();
    for node in &swarm.nodes[..2] {
        let addr = SocketAddrV4::new(node.host.underlay, 8080);
        wait_until(&format!("{addr} to answer only from live tasks"), T, || {
            let (seen, failed) = spray(&lab, &client, addr, 30);
            (failed == 0 && seen.keys().cloned().collect::<BTreeSet<_>>() == want).then_some(())
        })?;
    }
    eprintln!(
        "worker killed: replacements running and the mesh updated after {:?}",
        started.elapsed()
    );
    swarm.nodes.truncate(2);
    Ok(())
}

#[test]
fn a_two_tier_app_finds_its_database_by_name() -> Result<()> {
    let mut lab = Lab::new("svc-tiers")?;
    let swarm = formed(&mut lab, 1, 1)?;
    let m = swarm.manager(0);
    m.shoal_ok(&["network", "create", "-d", "overlay", "appnet"])?;
    m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "db",
        "--network",
        "appnet",
        // Published, so its tasks also have addresses on `ingress`, which
        // DNS must never answer with.
        "--publish",
        "5432:5432",
        "--replicas",
        "2",
        "--",
        "shoal",
        "whoami",
        "--port",
        "5432",
    ])?;
    // The web tier asks `db` (its VIP) and `tasks.db` by name, and each
    // task's address backwards, from inside its own namespace, and writes
    // what it gets to its log.
    let script = "while true; do \
        getent hosts db | sed 's/^/vip /'; \
        getent ahostsv4 tasks.db | awk '{print \"task \" $1}' | sort -u; \
        for ip in $(getent ahostsv4 tasks.db | awk '{print $1}' | sort -u); do \
        getent hosts $ip | awk '{print \"ptr \" $2}'; done; \
        curl -sS -m 2 http://db:5432/ 2>&1 | grep -E 'Hostname|curl'; \
        sleep 0.2; done";
    m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--network",
        "appnet",
        // The asker on `ingress` too: it shares that network with db.
        "--publish",
        "8081:8081",
        "--",
        "bash",
        "-c",
        script,
    ])?;
    let db = running_tasks(m, "db")?;
    let db_ips: BTreeSet<String> = service_ps(m, "db")?
        .iter()
        .filter(|t| t["state"] == "running")
        .filter_map(|t| t["addresses"]["appnet"].as_str().map(str::to_owned))
        .collect();
    let vip =
        serde_json::from_str::<Vec<Value>>(&m.shoal_ok(&["service", "inspect", "db"])?)?[0]["vips"]
            ["appnet"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
    let mut last = String::new();
    let ok = wait_until("web to reach both db tasks by name", T, || {
        last = m
            .shoal_ok(&["service", "logs", "--no-task-ids", "web"])
            .ok()?;
        let hosts: BTreeSet<String> = last
            .lines()
            .filter_map(|l| l.strip_prefix("Hostname: "))
            .map(str::to_owned)
            .collect();
        let tasks: BTreeSet<String> = last
            .lines()
            .filter_map(|l| l.strip_prefix("task "))
            .map(str::to_owned)
            .collect();
        let vip_ok = last.lines().any(|l| l.starts_with(&format!("vip {vip} ")));
        let ptrs: BTreeSet<String> = last
            .lines()
            .filter_map(|l| l.strip_prefix("ptr "))
            .map(str::to_owned)
            .collect();
        let want_ptrs: BTreeSet<String> = db.keys().map(|h| format!("{h}.appnet")).collect();
        (hosts == db.keys().cloned().collect() && tasks == db_ips && vip_ok && ptrs == want_ptrs)
            .then_some(())
    });
    if let Err(e) = ok {
        bail!(
            "{e}; vip {vip}, db {db:?} at {db_ips:?}; web's log:\n{last}\n{}",
            logs(&swarm)
        );
    }
    Ok(())
}

#[test]
fn a_global_service_runs_on_every_active_node_also_those_that_join_later() -> Result<()> {
    let mut lab = Lab::new("svc-global")?;
    let swarm = formed(&mut lab, 1, 1)?;
    let m = swarm.manager(0);
    let out = m.shoal_ok(&[
        "service", "create", "--name", "agent", "--mode", "global", "--", "sleep", "1000",
    ])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    assert_eq!(
        spread(m, "agent")?,
        BTreeMap::from([("m1".into(), 1), ("w1".into(), 1)])
    );

    let host = lab.add_host("w2")?;
    let late = lab.start_swarm_node(&host, &[])?;
    let token = shoal_netns_tests::swarm::worker_token(m)?;
    late.shoal_ok(&[
        "swarm",
        "join",
        "--token",
        &token,
        &shoal_netns_tests::swarm::addr(m),
    ])?;
    wait_until("the global service to reach w2", T, || {
        (spread(m, "agent").ok()?.get("w2") == Some(&1)).then_some(())
    })?;
    m.shoal_ok(&["node", "update", "--availability", "drain", "w1"])?;
    wait_until("the global task to leave the drained node", T, || {
        let per = spread(m, "agent").ok()?;
        (per == BTreeMap::from([("m1".into(), 1), ("w2".into(), 1)])).then_some(())
    })?;
    let ls = m.shoal_ok(&["service", "ls"])?;
    assert!(ls.contains("global") && ls.contains("2/2"), "{ls}");
    Ok(())
}

#[test]
fn a_rolling_update_replaces_tasks_pauses_on_failure_and_rolls_back() -> Result<()> {
    let mut lab = Lab::new("svc-update")?;
    let swarm = formed(&mut lab, 1, 1)?;
    let m = swarm.manager(0);
    m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "3",
        "--update-monitor",
        "1s",
        "--restart-delay",
        "500ms",
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    let before: BTreeSet<String> = running_tasks(m, "web")?.into_keys().collect();

    // A good update replaces every task, two at a time: slots 1 and 2
    // run the new spec while slot 3 has not started on it yet.
    let out = m.shoal_ok(&[
        "service",
        "update",
        "--env-add",
        "COLOR=blue",
        "--update-parallelism",
        "2",
        "web",
    ])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let first = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix));
    let batch = first("overall progress: 2 out of 3 tasks");
    let third = first("3/3:");
    assert!(
        batch.is_some()
            && third > batch
            && first("1/3: running").is_some_and(|i| Some(i) < third)
            && first("2/3: running").is_some_and(|i| Some(i) < third),
        "{out}"
    );
    assert_eq!(lines.first(), Some(&"web"), "{out}");
    assert!(
        lines.contains(&"overall progress: 0 out of 3 tasks"),
        "{out}"
    );
    let after: BTreeSet<String> = running_tasks(m, "web")?.into_keys().collect();
    assert_eq!(after.len(), 3);
    assert!(
        after.is_disjoint(&before),
        "every task replaced: {before:?} -> {after:?}"
    );
    // `--force` replaces them again though nothing else changes.
    let out = m.shoal_ok(&["service", "update", "--force", "web"])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let forced: BTreeSet<String> = running_tasks(m, "web")?.into_keys().collect();
    assert!(
        forced.len() == 3 && forced.is_disjoint(&after),
        "--force replaced every task: {after:?} -> {forced:?}"
    );
    let after = forced;

    // A failing command: the update pauses after the first task and says why.
    let out = m.shoal(&[
        "service",
        "update",
        "--update-parallelism",
        "1",
        "web",
        "--",
        "bash",
        "-c",
        "exit 3",
    ])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failing update converged?");
    assert!(err.contains("update paused"), "{err}");
    let still: BTreeSet<String> = running_tasks(m, "web")?.into_keys().collect();
    assert!(
        still.len() >= 2 && still.is_subset(&after),
        "{still:?} of {after:?}"
    );

    // Rollback brings back the previous command on every slot.
    let out = m.shoal_ok(&["service", "rollback", "web"])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    assert!(
        out.contains("rollback: manually requested rollback"),
        "{out}"
    );
    assert!(
        out.contains("overall progress: rolling back update: 3 out of 3 tasks"),
        "{out}"
    );
    let tasks = service_ps(m, "web")?;
    let live: Vec<&Value> = tasks.iter().filter(|t| t["desired"] == "running").collect();
    assert_eq!(live.len(), 3, "{tasks:?}");
    assert!(live.iter().all(|t| t["state"] == "running"), "{live:?}");
    let inspect: Vec<Value> = serde_json::from_str(&m.shoal_ok(&["service", "inspect", "web"])?)?;
    assert_eq!(inspect[0]["spec"]["command"][1], "whoami", "{inspect:?}");
    Ok(())
}

#[test]
fn health_checks_gate_the_load_balancer_and_replace_unhealthy_tasks() -> Result<()> {
    let mut lab = Lab::new("svc-health")?;
    let swarm = formed(&mut lab, 1, 1)?;
    let client = lab.add_host("client")?;
    let m = swarm.manager(0);
    // Never healthy (but never unhealthy either): running, yet serving nothing.
    m.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "-p",
        "8081:80",
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "200ms",
        "--health-retries",
        "100000",
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    wait_until("web's tasks to run", T, || {
        (running_tasks(m, "web").ok()?.len() == 2).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let entry = SocketAddrV4::new(m.host.underlay, 8081);
    let (seen, failed) = spray(&lab, &client, entry, 10);
    assert!(
        seen.is_empty() && failed == 10,
        "unchecked tasks served: {seen:?}"
    );

    // A passing check: the new tasks serve once healthy.
    let out = m.shoal_ok(&["service", "update", "--health-cmd", "true", "web"])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let want: BTreeSet<String> = running_tasks(m, "web")?.into_keys().collect();
    wait_mesh(&lab, &swarm, &client, 8081, &want)?;

    // An unhealthy task is stopped and replaced.
    m.shoal_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "flaky",
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "--restart-delay",
        "100ms",
        "--",
        "sleep",
        "1000",
    ])?;
    wait_until("an unhealthy task to be replaced", T, || {
        let tasks = service_ps(m, "flaky").ok()?;
        let failed = tasks
            .iter()
            .any(|t| t["state"] == "failed" && t["error"] == "task: unhealthy");
        (failed && tasks.len() >= 2).then_some(())
    })?;
    Ok(())
}
