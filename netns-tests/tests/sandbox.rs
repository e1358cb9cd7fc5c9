//! `shoal sandbox up` then `down`: a working cluster in between, and no
//! namespace, link or process left after.

use std::process::Command;

use shoal_netns_tests::swarm::task_pids_in;
use shoal_netns_tests::{netns_list, shoal_bin};

fn shoal(args: &[&str]) -> (bool, String) {
    let out = Command::new(shoal_bin())
        .args(args)
        .output()
        .expect("run shoal");
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
        if !zombie && (cmdline.contains("shoal-sandbox") || task) {
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
