//! Self-tests of the netns harness: wiring, naming, cleanup (also after a
//! panic and after a killed test binary), process control, and `shoal
//! whoami` answering inside a host. Needs root; the whoami tests need the
//! binary (`cargo build --bin shoal`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_netns_tests::{
    Lab, SpawnOpts, http_get, netns_list, shoal_bin, teardown, udp_roundtrip, wait_until,
};

fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid` exists and is not a zombie waiting for its parent.
fn pid_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .is_some_and(|i| !stat[i + 1..].trim_start().starts_with(['Z', 'X']))
    })
}

/// The pids whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

#[test]
fn two_hosts_ping_each_other_over_the_bridge() {
    let mut lab = Lab::new("two_hosts_ping").unwrap();
    let a = lab.add_host("a").unwrap();
    let b = lab.add_host("b").unwrap();
    assert_eq!(a.underlay, Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(b.underlay, Ipv4Addr::new(198, 18, 0, 2));
    assert_ne!(a.netns, b.netns);
    assert_eq!(lab.hosts(), &[a.clone(), b.clone()]);
    lab.run_ok(&a.netns, &["ping", "-c1", "-W1", &b.underlay.to_string()])
        .unwrap();
    lab.run_ok(&b.netns, &["ping", "-c1", "-W1", &a.underlay.to_string()])
        .unwrap();
    let link = lab
        .run_ok(&a.netns, &["ip", "-o", "link", "show", "eth0"])
        .unwrap();
    assert!(link.contains("mtu 1500") && link.contains("UP"), "{link}");
    let lo = lab
        .run_ok(&a.netns, &["ip", "-o", "link", "show", "lo"])
        .unwrap();
    assert!(lo.contains("UP"), "{lo}");
    assert!(lab.dir().is_dir());
}

#[test]
fn namespaces_are_gone_after_drop() {
    let mut lab = Lab::new("gone_after_drop").unwrap();
    let host = lab.add_host("h").unwrap();
    let task = lab.add_netns("task").unwrap();
    let switch = lab.switch().to_string();
    let list = netns_list();
    for name in [&host.netns, &task, &switch] {
        assert!(list.contains(name), "{name} missing from {list:?}");
    }
    let dir = lab.dir().to_path_buf();
    drop(lab);
    let list = netns_list();
    for name in [&host.netns, &task, &switch] {
        assert!(!list.contains(name), "{name} still in {list:?}");
    }
    assert!(dir.is_dir(), "the lab directory stays for its logs");
}

#[test]
fn a_panicking_test_still_cleans_up() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let mut lab = Lab::new("panicking").unwrap();
        let host = lab.add_host("h").unwrap();
        let task = lab.add_netns("t").unwrap();
        let proc = lab.spawn(&task, &["sleep", "1000"]).unwrap();
        tx.send((lab.netns().to_vec(), host, proc.pid)).unwrap();
        panic!("boom");
    });
    assert!(result.is_err());
    let (names, host, pid) = rx.recv().unwrap();
    assert!(names.contains(&host.netns));
    let list = netns_list();
    for name in &names {
        assert!(!list.contains(name), "{name} survived the panic: {list:?}");
    }
    assert!(!pid_exists(pid), "the spawned process survived the panic");
}

#[test]
fn parallel_labs_do_not_collide() {
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let mut lab = Lab::new(&format!("parallel_{i}")).unwrap();
                let a = lab.add_host("a").unwrap();
                let b = lab.add_host("b").unwrap();
                lab.add_netns("web").unwrap();
                lab.run_ok(&a.netns, &["ping", "-c1", "-W1", &b.underlay.to_string()])
                    .unwrap();
                (lab.netns().to_vec(), lab.dir().to_path_buf())
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut dirs = Vec::new();
    for t in threads {
        let (names, dir) = t.join().unwrap();
        all.extend(names);
        dirs.push(dir);
    }
    let count = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), count, "namespace names collided");
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 4, "lab directories collided");
}

#[test]
fn spawned_processes_are_stopped_on_drop() {
    let mut lab = Lab::new("stopped_on_drop").unwrap();
    let task = lab.add_netns("t").unwrap();
    let mut polite = lab.spawn(&task, &["sleep", "1000"]).unwrap();
    // Ignores SIGTERM, and has a child in its process group.
    let stubborn = lab
        .spawn(&task, &["sh", "-c", "trap '' TERM; sleep 1000 & wait"])
        .unwrap();
    assert!(polite.is_running());
    let child = wait_until("the stubborn shell's child", Duration::from_secs(5), || {
        group_members(stubborn.pid)
            .into_iter()
            .find(|p| *p != stubborn.pid)
    })
    .unwrap();
    let started = Instant::now();
    drop(lab);
    let took = started.elapsed();
    assert!(!polite.is_running());
    assert!(!pid_exists(stubborn.pid));
    // The orphaned child is reaped by init, not by us: it may linger as a zombie.
    assert!(!pid_running(child), "the group member survived");
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL came before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
}

#[test]
fn terminate_reports_the_exit_and_output_is_captured() {
    let mut lab = Lab::new("terminate").unwrap();
    let task = lab.add_netns("t").unwrap();
    let mut proc = lab
        .spawn_env(
            &task,
            &["sh", "-c", "echo out $FOO; echo err >&2; exec sleep 1000"],
            &[("FOO", "bar")],
        )
        .unwrap();
    wait_until("output", Duration::from_secs(5), || {
        proc.stdout().contains("out bar").then_some(())
    })
    .unwrap();
    assert_eq!(proc.stderr().trim(), "err");
    let status = proc.terminate().unwrap();
    assert!(!status.success());
    assert!(!proc.is_running());
    let mut quick = lab.spawn(&task, &["sleep", "1000"]).unwrap();
    quick.kill9();
    assert!(!quick.is_running());
}

#[test]
fn run_times_out_and_in_netns_sees_the_namespace() {
    let mut lab = Lab::new("run_timeout").unwrap();
    let host = lab.add_host("h").unwrap();
    let err = lab
        .run_timeout(&host.netns, &["sleep", "30"], Duration::from_millis(200))
        .unwrap_err();
    assert!(err.to_string().contains("did not finish"), "{err}");
    let out = lab.run(&host.netns, &["sh", "-c", "exit 3"]).unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(lab.run_ok(&host.netns, &["false"]).is_err());
    let addrs = lab
        .in_netns(&host.netns, || {
            std::net::UdpSocket::bind("198.18.0.1:0").map(|s| s.local_addr().map(|a| a.ip()))
        })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(addrs, Ipv4Addr::new(198, 18, 0, 1));
    assert!(lab.in_netns("shl-no-such-netns", || ()).is_err());
    assert!(lab.spawn("shl-no-such-netns", &["true"]).is_err());
}

#[test]
fn persisted_labs_are_removed_by_teardown() {
    let mut lab = Lab::new("persisted").unwrap();
    let host = lab.add_host("h").unwrap();
    let log = lab.dir().join("detached.log");
    let proc = lab
        .spawn_opts(
            &host.netns,
            &["sleep", "1000"],
            &SpawnOpts {
                log: Some(log),
                detach: true,
                ..Default::default()
            },
        )
        .unwrap();
    let state = lab.persist();
    let json = serde_json::to_string(&state).unwrap();
    let state: shoal_netns_tests::LabState = serde_json::from_str(&json).unwrap();
    assert!(netns_list().contains(&host.netns));
    assert!(state.procs[0].is_alive());
    teardown(&state).unwrap();
    assert!(!netns_list().contains(&host.netns));
    assert!(!netns_list().contains(&state.switch));
    // Not reaped: this process is its parent and persisted it.
    assert!(
        !pid_running(proc.pid),
        "the detached process survived teardown"
    );
    // Twice is fine: pieces already gone are skipped.
    teardown(&state).unwrap();
}

#[test]
fn leftovers_of_dead_test_processes_are_swept() {
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let name = format!("shl{}x1-leftover", dead.id());
    Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    assert!(netns_list().contains(&name));
    let _lab = Lab::new("sweep").unwrap();
    assert!(!netns_list().contains(&name), "the leftover was not swept");
}

#[test]
fn whoami_answers_http_inside_a_host() {
    let bin = shoal_bin().display().to_string();
    let mut lab = Lab::new("whoami_http").unwrap();
    let server = lab.add_host("server").unwrap();
    let client = lab.add_host("client").unwrap();
    let proc = lab
        .spawn(
            &server.netns,
            &[&bin, "whoami", "--port", "8080", "--name", "web-1"],
        )
        .unwrap();
    let addr = SocketAddrV4::new(server.underlay, 8080);
    let body = lab
        .in_netns(&client.netns, move || {
            wait_until("whoami to answer", Duration::from_secs(10), || {
                http_get(addr, Duration::from_secs(1)).ok()
            })
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:#}; whoami said: {}", proc.stderr()));
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "Hostname: web-1", "{body}");
    assert!(lines.contains(&"IP: 198.18.0.1"), "{body}");
    assert!(lines.contains(&"IP: 127.0.0.1"), "{body}");
    assert!(body.contains("RemoteAddr: 198.18.0.2:"), "{body}");
    assert!(lines.contains(&"GET / HTTP/1.1"), "{body}");
    assert!(lines.contains(&"Host: 198.18.0.1:8080"), "{body}");

    // Pipelined keep-alive requests, then a bad one: answered in order, 400
    // last, and the server lives on.
    let raw = lab
        .in_netns(&client.netns, move || -> std::io::Result<String> {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\nBAD\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .unwrap()
        .unwrap();
    let one = raw.find("GET /one").unwrap();
    let two = raw.find("GET /two").unwrap();
    let bad = raw.find("HTTP/1.1 400").unwrap();
    assert!(one < two && two < bad, "{raw}");
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
    lab.in_netns(&client.netns, move || {
        http_get(addr, Duration::from_secs(2))
    })
    .unwrap()
    .unwrap();
}

#[test]
fn whoami_echoes_udp_inside_a_host() {
    let bin = shoal_bin().display().to_string();
    let mut lab = Lab::new("whoami_udp").unwrap();
    let server = lab.add_host("server").unwrap();
    let client = lab.add_host("client").unwrap();
    lab.spawn(
        &server.netns,
        &[
            &bin, "whoami", "--udp", "--port", "5353", "--name", "echo-1",
        ],
    )
    .unwrap();
    let addr = SocketAddrV4::new(server.underlay, 5353);
    let answer = lab
        .in_netns(&client.netns, move || {
            wait_until("the UDP echo", Duration::from_secs(10), || {
                udp_roundtrip(addr, b"ping", Duration::from_millis(300)).ok()
            })
        })
        .unwrap()
        .unwrap();
    assert_eq!(answer, b"Hostname: echo-1\nping");
}
