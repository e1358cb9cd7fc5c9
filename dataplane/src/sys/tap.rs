//! Task interfaces for the userspace engine: a TAP device created inside the
//! task's network namespace, with TSO/USO offloads (`IFF_VNET_HDR`), its
//! address, MAC, MTU and default route. The engine keeps the descriptor;
//! closing it removes the interface, so a crashed daemon leaves none behind.

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use tun_rs::{DeviceBuilder, Layer, SyncDevice};

use super::netns;

/// How a task interface is set up inside its namespace.
#[derive(Debug, Clone)]
pub struct TapConfig {
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// Installs `default via <gateway>` when the namespace has no default
    /// route yet.
    pub default_gateway: Option<Ipv4Addr>,
    /// Queues (descriptors) of the multi-queue TAP; the kernel spreads the
    /// task's flows over them, so several threads can read.
    pub queues: usize,
}

/// Creates and configures the TAP described by `cfg` inside the network
/// namespace at `netns_path`, and returns one descriptor per queue. Each
/// reads and writes frames behind a 10-byte virtio-net header.
pub fn create_in(netns_path: &Path, cfg: TapConfig) -> io::Result<Vec<SyncDevice>> {
    netns::run_in(netns_path, move || create_here(&cfg))?
}

fn create_here(cfg: &TapConfig) -> io::Result<Vec<SyncDevice>> {
    let dev = DeviceBuilder::new()
        .name(cfg.name.clone())
        .layer(Layer::L2)
        .offload(true)
        .multi_queue(true)
        .mtu(cfg.mtu)
        .mac_addr(cfg.mac)
        .ipv4(cfg.ip, cfg.prefix_len, None)
        .enable(false)
        .build_sync()
        .map_err(|e| io::Error::new(e.kind(), format!("creating TAP {}: {e}", cfg.name)))?;
    // The overlay carries IPv4 only; IPv6 autoconfiguration would only send
    // router solicitations into the VTEP.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", cfg.name),
        "1",
    );
    // More queues attach by name, so it must happen here, in the namespace.
    let mut queues = vec![dev];
    for _ in 1..cfg.queues.max(1) {
        queues.push(queues[0].try_clone()?);
    }
    for q in &queues {
        q.set_nonblocking(true)?;
    }
    queues[0].enabled(true)?;
    if let Some(gateway) = cfg.default_gateway {
        add_default_route(gateway)?;
    }
    Ok(queues)
}

fn add_default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        match handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            // A default route is already there (another network's interface).
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(io::Error::other(format!(
                "adding default route via {gateway}: {e}"
            ))),
        }
    })
}
