//! The visualizer end to end: a swarm whose daemons run with `--web`, its
//! API read over HTTP from a client host, and the page in headless
//! Chromium on that host, following a scale-up without reloading.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shoal_netns_tests::cdp::{Browser, VIEWPORT, group_members};
use shoal_netns_tests::swarm::{T, form, logs, running_tasks, wait_converged};
use shoal_netns_tests::{Lab, SwarmNode, wait_until};

const WEB_PORT: u16 = 8088;

/// `GET path` on `ip:WEB_PORT` from inside `netns`: the status code and
/// the body.
fn get(lab: &Lab, netns: &str, ip: Ipv4Addr, path: &str) -> Result<(u16, String)> {
    let addr = SocketAddrV4::new(ip, WEB_PORT);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes();
    let text = lab.in_netns(netns, move || -> Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&request)?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })??;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET http://{addr}{path}: no end of headers in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET http://{addr}{path}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// What the page shows, read from its data attributes.
const READ_PAGE: &str = r#"(() => {
  const columns = [...document.querySelectorAll('section.node')];
  return {
    nodes: columns.filter((c) => !c.hasAttribute('data-unplaced')).map((c) => ({
      hostname: c.dataset.hostname, role: c.dataset.role, status: c.dataset.status,
      availability: c.dataset.availability, leader: c.dataset.leader,
    })),
    tasks: [...document.querySelectorAll('li.task')].map((t) => ({
      id: t.dataset.taskId, service: t.dataset.service, slot: t.dataset.slot,
      state: t.dataset.state, desired: t.dataset.desired,
      column: t.closest('section.node').dataset.hostname || null,
    })),
    connection: document.getElementById('conn').dataset.state,
    marker: window.__marker === undefined ? null : window.__marker,
  };
})()"#;

/// The running tasks the page shows, as [`running_tasks`] keys them
/// (`SERVICE.SLOT.ID`), with the hostname of the column each is in.
fn running_cards(page: &Value) -> BTreeMap<String, String> {
    page["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "running" && t["desired"] == "running")
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or("?").to_owned();
            (
                format!("{}.{}.{}", s("service"), s("slot"), s("id")),
                s("column"),
            )
        })
        .collect()
}

/// Waits until the page shows exactly the running tasks of `service` that
/// `service ps` on `m` lists, `n` of them; returns the page as last read.
fn wait_cards(browser: &mut Browser, m: &SwarmNode, service: &str, n: usize) -> Result<Value> {
    let mut last = (Value::Null, BTreeMap::new());
    let seen = wait_until(
        &format!(
            "the page to show the {n} running tasks of `{service}` where `service ps` puts them"
        ),
        T,
        || {
            let page = match browser.evaluate(READ_PAGE) {
                Ok(page) => page,
                Err(e) => return Some(Err(e)),
            };
            let listed = running_tasks(m, service).ok()?;
            let cards = running_cards(&page);
            last = (page.clone(), listed.clone());
            (listed.len() == n && cards == listed).then_some(Ok(page))
        },
    );
    match seen {
        Ok(page) => page,
        Err(e) => bail!(
            "{e}\npage: {:#}\nservice ps: {:?}\nerrors in the page: {:?}",
            last.0,
            last.1,
            browser.page_errors()
        ),
    }
}

#[test]
fn the_page_shows_every_node_and_task_and_follows_a_scale_up_live() -> Result<()> {
    let mut lab = Lab::new("visualizer")?;
    let web = format!("0.0.0.0:{WEB_PORT}");
    let mut swarm = form(&mut lab, 1, 2, &["--web", &web])?;
    wait_converged(&swarm, &[0], 3)?;
    let client = lab.add_host("client")?;
    let m = swarm.manager(0);
    let manager_ip = m.host.underlay;

    m.shoal_ok(&["network", "create", "-d", "overlay", "skynet"])?;
    let out = m.shoal_ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--network",
        "skynet",
        "--replicas",
        "2",
        "--",
        "shoal",
        "whoami",
        "--port",
        "80",
    ])?;
    assert!(out.contains("verify: Service converged"), "{out}");

    // The API, without a browser: a worker sends the reader to a manager.
    let worker = &swarm.nodes[1];
    for path in ["/", "/api/cluster", "/events"] {
        let (status, body) = get(&lab, &client.netns, worker.host.underlay, path)?;
        assert_eq!(status, 503, "{path} on a worker: {body}");
        assert!(
            body.contains("is a worker node")
                && body.contains(&format!("http://{manager_ip}:{WEB_PORT}/")),
            "{path} on a worker names the manager's page: {body}"
        );
    }
    // The manager's snapshot has every node and the running tasks.
    let (status, body) = get(&lab, &client.netns, manager_ip, "/api/cluster")?;
    assert_eq!(status, 200, "{body}");
    let snapshot: Value = serde_json::from_str(&body).context("/api/cluster as JSON")?;
    let nodes: Vec<(&str, &str, bool)> = snapshot["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["hostname"].as_str().unwrap_or("?"),
                n["role"].as_str().unwrap_or("?"),
                n["leader"] == true,
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("m1", "manager", true),
            ("w1", "worker", false),
            ("w2", "worker", false)
        ],
        "{body}"
    );
    let running: Vec<&Value> = snapshot["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "running" && t["service"] == "web")
        .collect();
    assert_eq!(running.len(), 2, "{body}");
    let (status, page) = get(&lab, &client.netns, manager_ip, "/")?;
    assert_eq!(status, 200);
    assert!(page.contains("<title>shoal visualizer</title>"), "{page}");

    // The page in Chromium on the client host.
    let mut browser = Browser::launch(&mut lab, &client.netns)?;
    let chromium = browser.pid();
    browser.navigate(&format!("http://{manager_ip}:{WEB_PORT}/"))?;
    let page = wait_cards(&mut browser, m, "web", 2).with_context(|| logs(&swarm))?;
    let columns: Vec<(&str, &str, &str, &str)> = page["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or("?");
            (s("hostname"), s("role"), s("status"), s("leader"))
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("m1", "manager", "ready", "true"),
            ("w1", "worker", "ready", "false"),
            ("w2", "worker", "ready", "false")
        ],
        "{page:#}"
    );
    assert_eq!(page["connection"], "live", "{page:#}");

    // Scale up: the new cards arrive over the event stream, without a
    // reload (the marker set in this document survives).
    browser.evaluate("window.__marker = 42")?;
    let out = m.shoal_ok(&["service", "scale", "web=5"])?;
    assert!(out.contains("verify: Service converged"), "{out}");
    let page = wait_cards(&mut browser, m, "web", 5).with_context(|| logs(&swarm))?;
    assert_eq!(page["marker"], 42, "the page was reloaded: {page:#}");
    let on: Vec<&str> = page["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["column"].as_str())
        .collect();
    for host in ["m1", "w1", "w2"] {
        assert!(on.contains(&host), "5 tasks spread over 3 nodes: {page:#}");
    }

    let png = browser.screenshot(&lab.dir().join("visualizer.png"))?;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let size = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert_eq!((size(16), size(20)), VIEWPORT, "the screenshot's size");
    // A blank page of that size compresses to a few kB; one with columns,
    // cards and text does not.
    assert!(
        png.len() > 20_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );

    // The manager restarts: the page loses its stream, reconnects by itself
    // and catches up (the manager's tasks died with it and are replaced),
    // still in the same document.
    assert_eq!(browser.evaluate("document.body.dataset.connections")?, "1");
    swarm.nodes[0].proc.terminate()?;
    let m = lab.restart_swarm_node(&swarm.nodes[0])?;
    wait_until("the page to reconnect", T, || {
        let connections = browser.evaluate("document.body.dataset.connections");
        connections.map(|c| c != "1").unwrap_or(false).then_some(())
    })?;
    let page = wait_cards(&mut browser, &m, "web", 5).with_context(|| logs(&swarm))?;
    assert_eq!(page["marker"], 42, "the page was reloaded: {page:#}");
    assert_eq!(page["connection"], "live", "{page:#}");
    assert_eq!(
        browser.page_errors(),
        &[] as &[String],
        "errors in the page"
    );

    // Chromium goes with its handle, every process of it.
    drop(browser);
    assert_eq!(
        group_members(chromium),
        Vec::<u32>::new(),
        "Chromium left processes"
    );
    Ok(())
}
