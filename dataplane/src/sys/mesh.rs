//! The OS side of the routing mesh in the userspace engine: a TUN device
//! that receives the packets sent to published ports, and the nftables
//! rules that steer them there. The kernel DNATs a packet for
//! `<node>:<published>` to [`MESH_ADDR`], routes it into the TUN, and
//! translates the replies shoal writes back into the TUN to
//! `<node>:<published>` again; the client's address is never touched.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use tun_rs::{DeviceBuilder, Layer, SyncDevice};

use crate::tables::Protocol;

/// The TUN device's name.
pub const MESH_DEV: &str = "shoal-mesh";
/// The node's side of the TUN link.
pub const MESH_LOCAL: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
/// The address published ports are translated to, routed into the TUN.
pub const MESH_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 2);
/// The nftables table shoal owns.
const TABLE: &str = "shoal";

/// Creates the mesh TUN with `queues` queues in the calling thread's
/// namespace (nonblocking,
/// frames behind a virtio-net header, TSO on),
/// turns on forwarding, and lets replies from the TUN through
/// reverse-path filtering.
pub fn create_tun(queues: usize) -> io::Result<Vec<SyncDevice>> {
    let dev = DeviceBuilder::new()
        .name(MESH_DEV)
        .layer(Layer::L3)
        .offload(true)
        .multi_queue(true)
        .mtu(1500)
        .ipv4(MESH_LOCAL, 32, Some(MESH_ADDR))
        .build_sync()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating the mesh device {MESH_DEV}: {e}"),
            )
        })?;
    let mut all = vec![dev];
    for _ in 1..queues.max(1) {
        all.push(all[0].try_clone()?);
    }
    for q in &all {
        q.set_nonblocking(true)?;
    }
    // Packets for published ports are forwarded into the TUN after DNAT.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| io::Error::new(e.kind(), format!("enabling IPv4 forwarding: {e}")))?;
    let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{MESH_DEV}/rp_filter"), "0");
    Ok(all)
}

/// Installs (atomically replacing) the DNAT rules for `ports` published on
/// `node`.
pub fn install_rules(node: Ipv4Addr, ports: &[(Protocol, u16)]) -> io::Result<()> {
    let mut rules = String::new();
    for (proto, port) in ports {
        rules += &format!("    ip daddr {node} {proto} dport {port} dnat to {MESH_ADDR}\n");
    }
    let script = format!(
        "add table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n{rules}  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n{rules}  }}\n}}\n"
    );
    nft(&script)
}

/// Whether a program on this node already listens on `port` (on `node`'s
/// address or on all addresses): binding it is refused.
pub fn port_in_use(node: Ipv4Addr, proto: Protocol, port: u16) -> bool {
    let addr = std::net::SocketAddrV4::new(node, port);
    let refused = |e: io::Error| e.kind() == io::ErrorKind::AddrInUse;
    match proto {
        Protocol::Tcp => std::net::TcpListener::bind(addr).err().is_some_and(refused),
        Protocol::Udp => std::net::UdpSocket::bind(addr).err().is_some_and(refused),
    }
}

/// Removes shoal's rules.
pub fn remove_rules() -> io::Result<()> {
    nft(&format!("add table ip {TABLE}\ndelete table ip {TABLE}\n"))
}

fn nft(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running nft (install nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft refused the mesh rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
