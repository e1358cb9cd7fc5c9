//! Service discovery end to end: the embedded resolver on 127.0.0.11 inside
//! task namespaces, answering from the tables of real daemons, forwarding
//! the rest to the daemon host's resolver (a tiny one in a third host), and
//! the `/etc/netns/<task>/resolv.conf` files it writes and removes.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{BLUE, Ep, RED, T, tables_for};
use shoal_netns_tests::{Host, Lab, wait_until};

/// What the test upstream answers for `example.test` (RFC 2544 space).
const EXAMPLE_ANSWER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

/// `web`: VIP on red, a backend on each host. `db`: dnsrr on red.
/// `secret`: VIP on blue only, while the blue task is there. `later` marks
/// web's h2 backend draining and drops the blue task's service.
fn services(later: bool) -> String {
    let state = if later { ", state: draining" } else { "" };
    let mut y = format!(
        "services:\n\
         \x20 - name: web\n\
         \x20   vips: {{ red: 10.10.0.100 }}\n\
         \x20   backends: [ {{ ip: 10.10.0.11 }}, {{ ip: 10.10.0.12{state} }} ]\n\
         \x20 - name: db\n\
         \x20   endpoint_mode: dnsrr\n\
         \x20   backends: [ {{ ip: 10.10.0.12 }}, {{ ip: 10.10.0.13 }} ]\n"
    );
    if !later {
        y.push_str(
            "  - name: secret\n    vips: { blue: 10.20.0.100 }\n    backends: [ { ip: 10.20.0.11 } ]\n",
        );
    }
    y
}

/// `dig` at the resolver inside `netns`; its stdout.
fn dig(lab: &Lab, netns: &str, args: &[&str]) -> String {
    let mut argv = vec!["dig", "@127.0.0.11", "+tries=1", "+time=3"];
    argv.extend_from_slice(args);
    let out = lab
        .run(netns, &argv)
        .expect("dig runs (apt-get install dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The A records of `name` as the resolver inside `netns` gives them, sorted.
fn a(lab: &Lab, netns: &str, name: &str) -> Vec<Ipv4Addr> {
    let out = dig(lab, netns, &["+short", name, "A"]);
    let mut ips: Vec<Ipv4Addr> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    ips.sort();
    ips
}

fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = list.iter().map(|s| ip(s)).collect();
    v.sort();
    v
}

fn resolv_conf(netns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(netns).join("resolv.conf")
}

/// A resolver on `<host>:53` that knows `example.test A` and answers
/// NXDOMAIN to everything else. Runs until `stop` is set.
fn start_upstream(lab: &Lab, host: &Host, stop: Arc<AtomicBool>) {
    let addr = (host.underlay, 53);
    let socket = lab
        .in_netns(&host.netns, move || UdpSocket::bind(addr))
        .expect("upstream namespace")
        .expect("upstream socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(answer) = answer(buf.get(..n).unwrap_or_default()) {
                let _ = socket.send_to(&answer, from);
            }
        }
    });
}

/// The test upstream's answer to one query, built by hand.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let question = query.get(12..at + 4)?;
    let qtype = query.get(at..at + 2)?;
    let known = labels.join(".") == "example.test" && qtype == [0, 1];
    let mut out = Vec::new();
    out.extend_from_slice(query.get(..2)?);
    out.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
    out.extend_from_slice(&[0, 1, 0, u8::from(known), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if known {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&EXAMPLE_ANSWER.octets());
    }
    Some(out)
}

fn tasks_resolve_services_and_forward_the_rest(engine: &str) {
    let mut lab = Lab::new(&format!("dns-{engine}")).expect("lab");
    let h1 = lab.add_host("h1").expect("host");
    let h2 = lab.add_host("h2").expect("host");
    let up = lab.add_host("up").expect("upstream host");
    let stop = Arc::new(AtomicBool::new(false));
    start_upstream(&lab, &up, stop.clone());
    // The daemons' own resolver: `ip netns exec` mounts this over
    // /etc/resolv.conf; the lab removes /etc/netns/<host> when dropped.
    for h in [&h1, &h2] {
        let dir = PathBuf::from("/etc/netns").join(&h.netns);
        std::fs::create_dir_all(&dir).expect("/etc/netns/<host>");
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {}\n", up.underlay),
        )
        .expect("host resolv.conf");
    }

    let mut eps = Vec::new();
    for (i, (net, addr, host)) in [
        ("red", "10.10.0.11", 0),
        ("red", "10.10.0.12", 1),
        ("red", "10.10.0.13", 0),
        ("blue", "10.20.0.11", 0),
    ]
    .into_iter()
    .enumerate()
    {
        let netns = lab.add_netns(&format!("t{i}")).expect("task netns");
        eps.push(Ep {
            net,
            ip: ip(addr),
            host,
            netns,
        });
    }
    let hosts = [h1.clone(), h2.clone()];
    let yaml = |me: usize, draining: bool, eps: &[Ep]| {
        tables_for(&hosts, me, &[RED, BLUE], eps, &[]) + &services(draining)
    };
    let engine_args = ["--dataplane", engine];
    let mut d1 = lab
        .start_daemon(&h1, &yaml(0, false, &eps), &engine_args)
        .expect("daemon h1");
    let _d2 = lab
        .start_daemon(&h2, &yaml(1, false, &eps), &engine_args)
        .expect("daemon h2");
    let red = eps[0].netns.clone();
    let blue = eps[3].netns.clone();

    // The resolver file of every task namespace (h2's daemon writes its
    // task's: the hosts share this machine's /etc).
    for t in [&red, &eps[1].netns, &eps[2].netns, &blue] {
        let text = std::fs::read_to_string(resolv_conf(t)).expect("task resolv.conf");
        assert!(
            text.contains("nameserver 127.0.0.11") && text.contains("ndots:0"),
            "{text}"
        );
    }

    // Service names.
    let vip = ips(&["10.10.0.100"]);
    let web_tasks = ips(&["10.10.0.11", "10.10.0.12"]);
    assert_eq!(a(&lab, &red, "web"), vip);
    assert_eq!(a(&lab, &red, "WEB."), vip);
    assert_eq!(a(&lab, &red, "web.red"), vip);
    assert_eq!(a(&lab, &red, "tasks.web"), web_tasks);
    assert_eq!(a(&lab, &red, "tasks.web.red"), web_tasks);
    assert_eq!(a(&lab, &red, "db"), ips(&["10.10.0.12", "10.10.0.13"]));
    assert_eq!(
        a(&lab, &red, "tasks.db"),
        ips(&["10.10.0.12", "10.10.0.13"])
    );
    // TCP too.
    assert_eq!(
        dig(&lab, &red, &["+tcp", "+short", "web"]).trim(),
        "10.10.0.100"
    );
    // A known name has no AAAA: NOERROR without answers, not NXDOMAIN.
    let aaaa = dig(&lab, &red, &["web", "AAAA"]);
    assert!(
        aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0"),
        "{aaaa}"
    );
    // Through the C library and the mounted resolv.conf.
    let getent = lab
        .run_ok(&red, &["getent", "ahostsv4", "web"])
        .expect("getent");
    assert!(getent.contains("10.10.0.100"), "{getent}");

    // Isolation: secret lives on blue only; red asks upstream, which
    // does not know it.
    assert_eq!(a(&lab, &blue, "secret"), ips(&["10.20.0.100"]));
    assert_eq!(a(&lab, &blue, "secret.blue"), ips(&["10.20.0.100"]));
    let hidden = dig(&lab, &red, &["secret"]);
    assert!(hidden.contains("status: NXDOMAIN"), "{hidden}");
    assert!(a(&lab, &blue, "web").is_empty());

    // Forwarding, from the daemon's namespace to its upstream.
    assert_eq!(a(&lab, &red, "example.test"), vec![EXAMPLE_ANSWER]);
    let unknown = dig(&lab, &red, &["nothing.example.test"]);
    assert!(unknown.contains("status: NXDOMAIN"), "{unknown}");

    // A draining backend leaves tasks.web at once; the blue task leaves the
    // tables and its resolver and file go.
    let eps_left: Vec<Ep> = eps
        .iter()
        .take(3)
        .map(|e| Ep {
            net: e.net,
            ip: e.ip,
            host: e.host,
            netns: e.netns.clone(),
        })
        .collect();
    d1.reload(&yaml(0, true, &eps_left)).expect("reload");
    wait_until(
        "tasks.web without the draining backend",
        Duration::from_secs(2),
        || (a(&lab, &red, "tasks.web") == ips(&["10.10.0.11"])).then_some(()),
    )
    .expect("answers follow the tables");
    assert_eq!(a(&lab, &red, "web"), vip);
    wait_until("the blue task's resolv.conf removed", T, || {
        (!resolv_conf(&blue).exists()).then_some(())
    })
    .expect("resolv.conf of a namespace without endpoints");

    // SIGTERM: every file written is removed.
    d1.proc.terminate().expect("daemon stops");
    assert!(!resolv_conf(&red).exists());
    assert!(!resolv_conf(&eps[2].netns).exists());
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_restarted_daemon_removes_files_of_a_crashed_one() {
    let mut lab = Lab::new("dns-crash").expect("lab");
    let h1 = lab.add_host("h1").expect("host");
    let eps: Vec<Ep> = (0..2)
        .map(|i| Ep {
            net: "red",
            ip: ip(&format!("10.10.0.{}", 11 + i)),
            host: 0,
            netns: lab.add_netns(&format!("t{i}")).expect("task netns"),
        })
        .collect();
    let hosts = [h1.clone()];
    let all = tables_for(&hosts, 0, &[RED], &eps, &[]);
    let mut d = lab.start_daemon(&h1, &all, &[]).expect("daemon");
    for e in &eps {
        assert!(resolv_conf(&e.netns).exists(), "{}", e.netns);
    }
    d.proc.kill9();
    assert!(resolv_conf(&eps[1].netns).exists(), "SIGKILL leaves files");

    // Restarted with only the first task: the second's file goes.
    let first = tables_for(&hosts, 0, &[RED], &eps[..1], &[]);
    let mut d = lab.start_daemon(&h1, &first, &[]).expect("daemon again");
    assert!(resolv_conf(&eps[0].netns).exists());
    assert!(!resolv_conf(&eps[1].netns).exists());
    assert!(
        !PathBuf::from("/etc/netns").join(&eps[1].netns).exists(),
        "the directory shoal created goes too"
    );
    d.proc.terminate().expect("daemon stops");
    assert!(!resolv_conf(&eps[0].netns).exists());
}

/// Service discovery once per engine: both must answer the same.
mod userspace {
    #[test]
    fn tasks_resolve_services_and_forward_the_rest() {
        super::tasks_resolve_services_and_forward_the_rest("userspace")
    }
}

mod ebpf {
    #[test]
    fn tasks_resolve_services_and_forward_the_rest() {
        super::tasks_resolve_services_and_forward_the_rest("ebpf")
    }
}
