//! Shared pieces of the end-to-end scenarios: overlay topologies written as
//! embed-mode tables, and small assertions on counters.

#![allow(dead_code)]

use std::fmt::Write;
use std::net::Ipv4Addr;

use shoal_netns_tests::Host;

/// An overlay network of a scenario.
pub struct Net {
    pub name: &'static str,
    pub vni: u32,
    pub subnet: &'static str,
}

/// The overlay networks the scenarios use.
pub const RED: Net = Net {
    name: "red",
    vni: 4097,
    subnet: "10.10.0.0/24",
};
pub const BLUE: Net = Net {
    name: "blue",
    vni: 4098,
    subnet: "10.20.0.0/24",
};

/// How long a scenario waits for something that should happen at once.
pub const T: std::time::Duration = std::time::Duration::from_secs(10);

/// An endpoint of a scenario: `ip` on `net`, living on `host` (index into
/// the lab's hosts) in the task namespace `netns`.
pub struct Ep {
    pub net: &'static str,
    pub ip: Ipv4Addr,
    pub host: usize,
    pub netns: String,
}

/// The tables file for `hosts[me]`: the other hosts as peers, every
/// network, every endpoint, with `netns` only on the local ones.
pub fn tables_for(
    hosts: &[Host],
    me: usize,
    nets: &[Net],
    eps: &[Ep],
    extra_remote: &[(&str, Ipv4Addr, Ipv4Addr)],
) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "node: {{ name: {}, underlay: {} }}",
        hosts[me].name, hosts[me].underlay
    );
    // Every other host is a node of the cluster, also one that runs no
    // task: VXLAN from it is taken.
    let peers: Vec<String> = hosts
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != me)
        .map(|(_, h)| h.underlay.to_string())
        .collect();
    let _ = writeln!(y, "peers: [ {} ]", peers.join(", "));
    let _ = writeln!(y, "networks:");
    for n in nets {
        let _ = writeln!(
            y,
            "  - {{ name: {}, vni: {}, subnet: {} }}",
            n.name, n.vni, n.subnet
        );
    }
    let _ = writeln!(y, "endpoints:");
    for e in eps {
        let node = hosts[e.host].underlay;
        if e.host == me {
            let _ = writeln!(
                y,
                "  - {{ network: {}, ip: {}, node: {node}, netns: {} }}",
                e.net, e.ip, e.netns
            );
        } else {
            let _ = writeln!(
                y,
                "  - {{ network: {}, ip: {}, node: {node} }}",
                e.net, e.ip
            );
        }
    }
    for (net, ip, node) in extra_remote {
        let _ = writeln!(y, "  - {{ network: {net}, ip: {ip}, node: {node} }}");
    }
    y
}

/// The value of the counter `name` with label `label` in a Prometheus text
/// page (0 when absent).
pub fn counter(metrics: &str, name: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Waits until `shoal whoami` answers on 127.0.0.1:`port` inside `netns`
/// (HTTP, or UDP with `udp`), so a test never races a server's start.
pub fn wait_for_whoami(lab: &shoal_netns_tests::Lab, netns: &str, port: u16, udp: bool) {
    use std::net::SocketAddrV4;
    use std::time::Duration;
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    shoal_netns_tests::wait_until(
        &format!("whoami on {netns}:{port}"),
        Duration::from_secs(10),
        || {
            lab.in_netns(netns, move || {
                let t = Duration::from_millis(500);
                if udp {
                    shoal_netns_tests::udp_roundtrip(addr, b"up?", t).map(|_| ())
                } else {
                    shoal_netns_tests::http_get(addr, t).map(|_| ())
                }
            })
            .ok()?
            .ok()
        },
    )
    .expect("whoami starts");
}

/// Starts `shoal whoami` named `name` in `netns` on HTTP port 80 and UDP
/// port 9000, and waits until both answer.
pub fn start_whoami(lab: &mut shoal_netns_tests::Lab, netns: &str, name: &str) {
    let bin = shoal_netns_tests::shoal_bin();
    let bin = bin.to_str().expect("utf-8 path");
    lab.spawn(netns, &[bin, "whoami", "--port", "80", "--name", name])
        .expect("whoami");
    lab.spawn(
        netns,
        &[bin, "whoami", "--udp", "--port", "9000", "--name", name],
    )
    .expect("whoami");
    wait_for_whoami(lab, netns, 80, false);
    wait_for_whoami(lab, netns, 9000, true);
}
