//! Service VIPs, east-west: a task's connections to a VIP are balanced over
//! backends on every host, flows keep their backend, draining backends take
//! no new flows. Once per engine: both must pass the same scenario.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::Duration;

use common::{Ep, RED, T, start_whoami, tables_for};
use shoal_netns_tests::{Daemon, Lab, http_get, udp_roundtrip, wait_until};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 100);
const CLIENT: &str = "10.10.0.50";
const BACKENDS: [&str; 3] = ["10.10.0.11", "10.10.0.12", "10.10.0.13"];

struct Cluster {
    lab: Lab,
    daemons: Vec<Daemon>,
    base: Vec<String>,
    client: String,
}

/// The tables of every host with the service `web`; `draining` lists
/// backends to mark so, `gone` backends to leave out.
fn with_service(base: &str, draining: &[&str], gone: &[&str]) -> String {
    let mut y = format!(
        "{base}services:\n  - name: web\n    vips: {{ red: {VIP} }}\n    ports: [ {{ protocol: tcp, target: 80 }}, {{ protocol: udp, target: 9000 }} ]\n    backends:\n"
    );
    for b in BACKENDS.iter().filter(|b| !gone.contains(b)) {
        if draining.contains(b) {
            y += &format!("      - {{ ip: {b}, state: draining }}\n");
        } else {
            y += &format!("      - {{ ip: {b} }}\n");
        }
    }
    y
}

fn cluster(test: &str, engine: &str) -> Cluster {
    let mut lab = Lab::new(test).expect("lab");
    let hosts: Vec<_> = (1..=3)
        .map(|i| lab.add_host(&format!("h{i}")).expect("host"))
        .collect();
    let mut eps = Vec::new();
    for (i, ip) in BACKENDS.iter().enumerate() {
        let netns = lab.add_netns(&format!("web{}", i + 1)).expect("netns");
        eps.push(Ep {
            net: "red",
            ip: ip.parse().expect("ip"),
            host: i,
            netns,
        });
    }
    let client = lab.add_netns("client").expect("netns");
    eps.push(Ep {
        net: "red",
        ip: CLIENT.parse().expect("ip"),
        host: 0,
        netns: client.clone(),
    });
    let base: Vec<String> = (0..3)
        .map(|me| tables_for(&hosts, me, &[RED], &eps, &[]))
        .collect();
    let daemons = (0..3)
        .map(|me| {
            lab.start_daemon(
                &hosts[me],
                &with_service(&base[me], &[], &[]),
                &["--dataplane", engine],
            )
            .expect("daemon")
        })
        .collect();
    for (i, ep) in eps.iter().take(3).enumerate() {
        start_whoami(&mut lab, &ep.netns, &format!("web{}", i + 1));
    }
    Cluster {
        lab,
        daemons,
        base,
        client,
    }
}

fn hostname(body: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix("Hostname: "))
        .unwrap_or("?")
        .to_string()
}

/// `n` HTTP requests to the VIP from the client task, counted by backend.
fn spread(c: &Cluster, n: usize) -> HashMap<String, usize> {
    let vip = SocketAddrV4::new(VIP, 80);
    c.lab
        .in_netns(&c.client, move || {
            let mut seen = HashMap::new();
            for _ in 0..n {
                let body = http_get(vip, Duration::from_secs(3)).expect("HTTP to the VIP");
                *seen.entry(hostname(&body)).or_insert(0) += 1;
            }
            seen
        })
        .expect("client")
}

/// A keep-alive connection: one request, its backend's name.
fn ask(stream: &mut TcpStream) -> String {
    try_ask(stream).expect("request on the established connection")
}

fn try_ask(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut len = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(hostname(&String::from_utf8_lossy(&body)))
}

fn a_vip_balances_over_backends_on_every_host_and_draining_keeps_flows(engine: &str) {
    let mut c = cluster(&format!("vip-{engine}"), engine);
    let vip = SocketAddrV4::new(VIP, 80);
    let client = c.client.clone();
    wait_until("the VIP to answer", T, || {
        c.lab
            .in_netns(&client, move || http_get(vip, Duration::from_secs(2)))
            .ok()?
            .ok()
    })
    .expect("VIP reachable");

    let seen = spread(&c, 300);
    for name in ["web1", "web2", "web3"] {
        let n = seen.get(name).copied().unwrap_or(0);
        assert!(n >= 60, "{name} got {n} of 300 requests: {seen:?}");
    }

    // By name: the task's resolver gives the VIP, and the balance is the same.
    let by_name = c
        .lab
        .run_ok(
            &client,
            &["sh", "-c", "for i in $(seq 300); do curl -s --max-time 3 http://web/ | grep '^Hostname:'; done"],
        )
        .expect("curl by service name");
    for name in ["web1", "web2", "web3"] {
        let n = by_name.lines().filter(|l| l.ends_with(name)).count();
        assert!(n >= 60, "{name} got {n} of 300 requests by name");
    }

    // UDP through the VIP reaches backends too.
    let udp = SocketAddrV4::new(VIP, 9000);
    let echoed = c
        .lab
        .in_netns(&client, move || {
            (0..30)
                .filter_map(|_| udp_roundtrip(udp, b"hi", Duration::from_secs(1)).ok())
                .map(|r| hostname(&String::from_utf8_lossy(&r)))
                .collect::<Vec<_>>()
        })
        .expect("udp client");
    assert_eq!(echoed.len(), 30, "every datagram answered: {echoed:?}");
    assert!(
        echoed
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= 2,
        "{echoed:?}"
    );

    // A long-lived connection keeps its backend while that backend drains.
    let mut stream = c
        .lab
        .in_netns(&client, move || {
            TcpStream::connect_timeout(&vip.into(), Duration::from_secs(3))
        })
        .expect("netns")
        .expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let first = ask(&mut stream);
    let drained = BACKENDS[first
        .trim_start_matches("web")
        .parse::<usize>()
        .expect("web<n>")
        - 1];
    for (d, base) in c.daemons.iter_mut().zip(&c.base) {
        d.reload(&with_service(base, &[drained], &[]))
            .expect("reload");
    }
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..5 {
        assert_eq!(
            ask(&mut stream),
            first,
            "the established flow keeps its draining backend"
        );
    }
    let seen = spread(&c, 60);
    assert!(
        !seen.contains_key(&first),
        "new connections avoid the draining backend: {seen:?}"
    );
    assert_eq!(seen.values().sum::<usize>(), 60);

    // Another backend leaves the service: on every node, new connections
    // stop going to it at once (the reload is read within half a second),
    // and the established flow goes on.
    let gone = *BACKENDS
        .iter()
        .find(|b| **b != drained)
        .expect("another backend");
    let gone_name = format!(
        "web{}",
        BACKENDS.iter().position(|b| *b == gone).expect("index") + 1
    );
    for (d, base) in c.daemons.iter_mut().zip(&c.base) {
        d.reload(&with_service(base, &[], &[gone])).expect("reload");
    }
    std::thread::sleep(Duration::from_secs(1));
    let seen = spread(&c, 60);
    assert!(
        !seen.contains_key(&gone_name),
        "a removed backend gets no new connections: {seen:?}"
    );
    assert!(
        seen.contains_key(&first),
        "the undrained backend is back: {seen:?}"
    );
    for _ in 0..5 {
        assert_eq!(
            ask(&mut stream),
            first,
            "the established flow outlives changes to other backends"
        );
    }
    // ...and a backend joining does not move it either.
    for (d, base) in c.daemons.iter_mut().zip(&c.base) {
        d.reload(&with_service(base, &[], &[])).expect("reload");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        ask(&mut stream),
        first,
        "the established flow outlives a backend joining"
    );
    assert!(
        spread(&c, 60).contains_key(&gone_name),
        "the joined backend takes new connections"
    );

    // Its own backend leaves: the flow ends at once (the backend it is
    // moved to answers with a reset), it does not hang.
    for (d, base) in c.daemons.iter_mut().zip(&c.base) {
        d.reload(&with_service(base, &[], &[drained]))
            .expect("reload");
    }
    std::thread::sleep(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let err = try_ask(&mut stream).expect_err("the flow of a removed backend ends");
    assert!(
        !matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "ended by a reset, not a timeout: {err} after {:?}",
        started.elapsed()
    );
}

mod userspace {
    #[test]
    fn a_vip_balances_over_backends_on_every_host_and_draining_keeps_flows() {
        super::a_vip_balances_over_backends_on_every_host_and_draining_keeps_flows("userspace")
    }
}

mod ebpf {
    #[test]
    fn a_vip_balances_over_backends_on_every_host_and_draining_keeps_flows() {
        super::a_vip_balances_over_backends_on_every_host_and_draining_keeps_flows("ebpf")
    }
}
