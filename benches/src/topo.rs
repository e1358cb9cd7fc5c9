//! The two-host overlay topologies that are compared: shoal's, and the
//! kernel's VXLAN device behind a bridge (Docker's overlay driver).

use anyhow::Result;
use shoal_dataplane::overlay::tunnel::NodeKey;
use shoal_dataplane::tables::WgKey;
use shoal_netns_tests::{Daemon, Lab};

/// Overlay addresses of the two tasks.
pub const TASK_IPS: [&str; 2] = ["10.10.0.11", "10.10.0.12"];

/// Two hosts running shoal, one task netns on each.
pub struct ShoalPair {
    pub lab: Lab,
    pub tasks: [String; 2],
    pub daemons: Vec<Daemon>,
}

pub fn shoal_pair(extra_args: &[&str]) -> Result<ShoalPair> {
    shoal_pair_with(extra_args, false)
}

/// [`shoal_pair`] with the network `encrypted` (WireGuard between the
/// hosts, a preshared key mixed in).
pub fn shoal_pair_with(extra_args: &[&str], encrypted: bool) -> Result<ShoalPair> {
    let mut lab = Lab::new("bench-shoal")?;
    let hosts = [lab.add_host("h1")?, lab.add_host("h2")?];
    let tasks = [lab.add_netns("t1")?, lab.add_netns("t2")?];
    // Each daemon's WireGuard key, made where it will find it.
    let keys = hosts
        .iter()
        .map(|h| {
            let state = lab.dir().join(&h.name).join("state");
            std::fs::create_dir_all(&state)?;
            Ok(NodeKey::load_or_create(&state.join("tunnel.key"))?.public())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut daemons = Vec::new();
    for me in 0..2 {
        let mut y = format!(
            "node: {{ name: {}, underlay: {} }}\nnetworks:\n  - {{ name: bench, vni: 4097, subnet: 10.10.0.0/24, encrypted: {encrypted} }}\n",
            hosts[me].name, hosts[me].underlay
        );
        if encrypted {
            let other = 1 - me;
            y += &format!(
                "tunnel:\n  peers: {{ {}: {} }}\n  preshared: [ {{ id: 1, key: {} }} ]\n",
                hosts[other].underlay,
                keys[other],
                WgKey([0x5a; 32])
            );
        }
        y += "endpoints:\n";
        for (i, ip) in TASK_IPS.iter().enumerate() {
            let node = hosts[i].underlay;
            if i == me {
                y += &format!(
                    "  - {{ network: bench, ip: {ip}, node: {node}, netns: {} }}\n",
                    tasks[i]
                );
            } else {
                y += &format!("  - {{ network: bench, ip: {ip}, node: {node} }}\n");
            }
        }
        daemons.push(lab.start_daemon(&hosts[me], &y, extra_args)?);
    }
    Ok(ShoalPair {
        lab,
        tasks,
        daemons,
    })
}

/// Two hosts with the kernel's VXLAN: task veth -> bridge -> vxlan, static
/// forwarding and neighbour entries, MTU 1450, as Docker's overlay does it.
pub struct KernelPair {
    pub lab: Lab,
    pub tasks: [String; 2],
}

pub fn kernel_pair() -> Result<KernelPair> {
    let mut lab = Lab::new("bench-kernel")?;
    let hosts = [lab.add_host("k1")?, lab.add_host("k2")?];
    let tasks = [lab.add_netns("t1")?, lab.add_netns("t2")?];
    let macs = ["02:42:0a:0a:00:0b", "02:42:0a:0a:00:0c"];
    for me in 0..2 {
        let (h, t, peer) = (
            &hosts[me].netns,
            &tasks[me],
            hosts[1 - me].underlay.to_string(),
        );
        lab.add_kernel_vtep(&hosts[me], "vx0", 4097, hosts[1 - me].underlay)?;
        let cmds: Vec<Vec<&str>> = vec![
            vec!["ip", "link", "add", "br0", "type", "bridge"],
            vec!["ip", "link", "set", "vx0", "master", "br0"],
            vec!["ip", "link", "set", "br0", "up"],
            vec![
                "bridge",
                "fdb",
                "add",
                macs[1 - me],
                "dev",
                "vx0",
                "dst",
                &peer,
                "static",
            ],
            vec![
                "ip", "link", "add", "vt", "type", "veth", "peer", "name", "eth0", "netns", t,
            ],
            vec![
                "ip", "link", "set", "vt", "master", "br0", "mtu", "1450", "up",
            ],
        ];
        for c in &cmds {
            lab.run_ok(h, c)?;
        }
        let addr = format!("{}/24", TASK_IPS[me]);
        let cmds: Vec<Vec<&str>> = vec![
            vec![
                "ip", "link", "set", "eth0", "address", macs[me], "mtu", "1450", "up",
            ],
            vec!["ip", "addr", "add", &addr, "dev", "eth0"],
            vec![
                "ip",
                "neigh",
                "add",
                TASK_IPS[1 - me],
                "lladdr",
                macs[1 - me],
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        ];
        for c in &cmds {
            lab.run_ok(t, c)?;
        }
    }
    Ok(KernelPair { lab, tasks })
}
