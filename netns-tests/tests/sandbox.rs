//! `shoal sandbox up` then `down`: a working cluster in between, and no
//! namespace, link or process left after.

use std::process::Command;

use shoal_netns_tests::swarm::task_pids_in;
use shoal_netns_tests::{netns_list, shoal_bin};

fn shoal(args: &[&str]) -> (bool, String) {
    shoal_on(None, args)
}

/// `shoal ARGS`, with `SHOAL_HOST` set to `host` if given; whether it
/// succeeded, and its output.
fn shoal_on(host: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(shoal_bin());
    if let Some(h) = host {
        cmd.env("SHOAL_HOST", h);
    }
    let out = cmd.args(args).output().expect("run shoal");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The pids of the tasks the sandbox's daemons started (from their logs,
/// read while the sandbox is up).
fn task_pids() -> Vec<u32> {
    task_pids_in(std::path::Path::new("/run/shoal-sandbox"))
}

/// The sandbox's daemons and tasks that still run (not zombies).
fn live_sandbox_processes(tasks: &[u32]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        let pid: Option<u32> = entry.file_name().to_str().and_then(|p| p.parse().ok());
        let task = pid.is_some_and(|p| tasks.contains(&p)) && cmdline.contains("whoami");
        // The demo images' servers, inside their containers.
        let container = cmdline.contains("httpd -f -h /www");
        if !zombie && (cmdline.contains("shoal-sandbox") || task || container) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn sandbox_up_then_down_leaves_nothing() {
    let (ok, out) = shoal(&["sandbox", "up", "--nodes", "2"]);
    let cleanup = scopeguard(|| {
        let _ = shoal(&["sandbox", "down"]);
    });
    assert!(ok, "sandbox up failed:\n{out}");
    assert!(out.contains("verify: Service converged"), "{out}");
    // The client (the third host) asks both nodes; tasks see its address.
    let answered = out
        .lines()
        .filter(|l| l.contains("-> http://198.18.0.") && l.contains("Hostname: web."))
        .filter(|l| l.contains("RemoteAddr: 198.18.0.3:"))
        .count();
    assert_eq!(answered, 2, "the mesh answers on every node:\n{out}");
    let (ok, status) = shoal(&["sandbox", "status"]);
    assert!(ok && status.contains("running"), "{status}");
    tutorial_stack();
    std::mem::forget(cleanup);

    let tasks = task_pids();
    assert!(!tasks.is_empty(), "the daemons logged no task starts");
    let (ok, out) = shoal(&["sandbox", "down"]);
    assert!(ok, "{out}");
    let left: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with("shoal-sbx"))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let left = live_sandbox_processes(&tasks);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(
        !std::path::Path::new("/run/shoal-sandbox").exists(),
        "state dir left"
    );
    let (ok, out) = shoal(&["sandbox", "down"]);
    assert!(
        ok && out.contains("no sandbox"),
        "a second down is a no-op: {out}"
    );
}

/// `shoal` on the sandbox's first node, as a user with `SHOAL_HOST` would.
fn on_n1(args: &[&str]) -> String {
    let (ok, text) = shoal_on(Some("unix:///run/shoal-sandbox/n1/state/shoal.sock"), args);
    assert!(ok, "shoal {args:?}: {text}");
    text
}

/// The Swarm tutorial's stack (seed 004) from the images `sandbox up`
/// pushed to its registry: a front of 3 replicas off the manager, which
/// asks the API service by name, answers through the mesh on every node.
fn tutorial_stack() {
    on_n1(&["network", "create", "-d", "overlay", "hellodocker-network"]);
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hellodocker-stack.yml"
    );
    let out = on_n1(&["stack", "deploy", "-c", file, "hellodocker-api"]);
    assert!(
        out.contains("Creating service hellodocker-api_nginx"),
        "{out}"
    );
    let services = on_n1(&["stack", "services", "hellodocker-api"]);
    assert!(
        services.contains("198.18.0.1:5000/kickscar/nginx:latest")
            && services.contains("198.18.0.1:5000/kickscar/hellodocker:latest"),
        "{services}"
    );
    for node in ["198.18.0.1", "198.18.0.2"] {
        let url = format!("http://{node}:8000/");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    "shoal-sbx-client",
                    "curl",
                    "-s",
                    "--max-time",
                    "5",
                    &url,
                ])
                .output()
                .expect("run curl");
            let last = String::from_utf8_lossy(&out.stdout).into_owned();
            if last.contains("front hellodocker-api_nginx.")
                && last.contains("hello from api hellodocker-api_api.")
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{url} did not answer from the front and the api: {last:?}\n{}",
                on_n1(&["stack", "ps", "hellodocker-api"])
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    // Every task runs off the manager, from its pinned image.
    let ps: serde_json::Value = serde_json::from_str(&on_n1(&[
        "stack",
        "ps",
        "--format",
        "json",
        "hellodocker-api",
    ]))
    .expect("stack ps as JSON");
    let running: Vec<&serde_json::Value> = ps
        .as_array()
        .expect("a list")
        .iter()
        .filter(|t| t["state"] == "running")
        .collect();
    assert_eq!(running.len(), 6, "{ps:#}");
    for t in running {
        assert_eq!(t["node"], "n2", "{t}");
        assert!(
            t["image"].as_str().is_some_and(|i| i.contains("@sha256:")),
            "{t}"
        );
    }
}

/// Runs `f` when dropped, so a failed assertion still tears the sandbox down.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
