//! Task interfaces for the eBPF engine: a veth pair whose task end (`ethN`,
//! with the task's MAC, MTU, address and default route) lives in the task's
//! namespace and whose node end, named by the engine, stays in the node's
//! namespace for the task program to sit on. Deleting the node end deletes
//! the pair.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::netns;

/// How the task end of a pair is set up.
#[derive(Debug, Clone)]
pub struct VethConfig {
    /// Name of the node end, in the caller's namespace.
    pub node_name: String,
    /// Name of the task end, in the task's namespace.
    pub task_name: String,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// Installs `default via <gateway>` when the namespace has none yet.
    pub default_gateway: Ipv4Addr,
}

/// MTU of the node end: a veth drops what exceeds its receiving end's MTU
/// before any program sees it, and a task that raised its own MTU past the
/// overlay's must get ICMP "fragmentation needed" from the task program,
/// not silence. The overlay's MTU is enforced by that program.
const NODE_END_MTU: u32 = 65_535;

/// Largest GSO frame the task may hand over: room is kept for the VXLAN
/// headers, so an encapsulated super-frame still fits an IPv4 length.
const TASK_GSO_MAX_SIZE: u32 = 65_536 - 128;

/// Runs `f` with a netlink handle on a thread and runtime of its own, so
/// callers may be plain threads or async tasks. The thread starts in the
/// caller's network namespace.
fn with_handle<T, F, Fut>(f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()?;
                rt.block_on(async move {
                    let (conn, handle, _) = rtnetlink::new_connection()?;
                    let task = tokio::spawn(conn);
                    let out = f(handle).await;
                    task.abort();
                    out
                })
            })
            .join()
            .map_err(|_| io::Error::other("netlink thread panicked"))?
    })
}

fn nl_err(what: &str) -> impl Fn(rtnetlink::Error) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {e}"))
}

/// Creates the pair described by `cfg`, its task end in the namespace at
/// `netns_path`, and returns the node end's ifindex. On failure nothing is
/// left behind.
pub fn create(netns_path: &Path, cfg: &VethConfig) -> io::Result<u32> {
    let ns = std::fs::File::open(netns_path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", netns_path.display())))?;
    let c = cfg.clone();
    let index = with_handle(|handle| async move {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(c.task_name.clone())
            .address(c.mac.to_vec())
            .mtu(u32::from(c.mtu))
            .setns_by_fd(ns.as_raw_fd())
            .append_extra_attribute(LinkAttribute::GsoMaxSize(TASK_GSO_MAX_SIZE))
            .build();
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(c.node_name.clone())
            .mtu(NODE_END_MTU)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl_err(&format!("creating veth {}", c.node_name)))?;
        index_of(&handle, &c.node_name).await
    })?;
    let result = configure_node_end(cfg, index).and_then(|()| {
        let c = cfg.clone();
        netns::run_in(netns_path, move || configure_task_end(&c))?
    });
    if let Err(e) = result {
        let _ = delete(index);
        return Err(e);
    }
    Ok(index)
}

async fn index_of(handle: &rtnetlink::Handle, name: &str) -> io::Result<u32> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {name} vanished"),
        )),
        Err(e) => Err(nl_err(name)(e)),
    }
}

fn configure_node_end(cfg: &VethConfig, index: u32) -> io::Result<()> {
    // The overlay carries IPv4 only; the node end has no address at all.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", cfg.node_name),
        "1",
    );
    with_handle(|handle| async move {
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err("bringing the node end up"))
    })
}

fn configure_task_end(cfg: &VethConfig) -> io::Result<()> {
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", cfg.task_name),
        "1",
    );
    let c = cfg.clone();
    with_handle(|handle| async move {
        let index = index_of(&handle, &c.task_name).await?;
        handle
            .address()
            .add(index, IpAddr::V4(c.ip), c.prefix_len)
            .execute()
            .await
            .map_err(nl_err("adding the task's address"))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err("bringing the task end up"))?;
        // Frames redirected from XDP into a veth are received by NAPI on the
        // other end, which runs only with GRO (or an XDP program) there. The
        // kernel makes the node end a redirect target only when GRO is
        // turned on while the task end is up.
        set_gro(&c.task_name, true)?;
        let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(c.default_gateway)
            .build();
        match handle.route().add(route).execute().await {
            Ok(()) => Ok(()),
            // A default route is already there (another network's interface).
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(nl_err("adding the default route")(e)),
        }
    })
}

/// Deletes the interface with index `index` (and so its veth peer).
pub fn delete(index: u32) -> io::Result<()> {
    with_handle(|handle| async move {
        match handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
            Err(e) => Err(nl_err("deleting a task interface")(e)),
        }
    })
}

/// The reaper of a crashed engine's task interfaces: waits until `input`
/// ends (its writer, the engine's process, closed it by exiting, however it
/// exited), then deletes every interface of this namespace whose name
/// starts with `prefix`. A veth pair, unlike a TAP, outlives the process
/// that made it.
pub fn reap_after_eof(mut input: impl io::Read, prefix: &str) -> io::Result<usize> {
    let mut sink = [0u8; 64];
    loop {
        match input.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let links = list(prefix)?;
    for (_, index) in &links {
        delete(*index)?;
    }
    Ok(links.len())
}

/// Names and indices of this namespace's interfaces whose name starts with
/// `prefix`.
pub fn list(prefix: &str) -> io::Result<Vec<(String, u32)>> {
    let prefix = prefix.to_string();
    with_handle(|handle| async move {
        let mut out = Vec::new();
        let mut links = handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(nl_err("listing links"))? {
            for attr in &link.attributes {
                if let LinkAttribute::IfName(name) = attr
                    && name.starts_with(&prefix)
                {
                    out.push((name.clone(), link.header.index));
                }
            }
        }
        Ok(out)
    })
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_SGRO: u32 = 0x0000_002c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
}

/// Turns generic receive offload on or off for `ifname` in the calling
/// thread's namespace (`ethtool -K IFNAME gro on|off`).
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    let bytes = ifname.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname} is too long"),
        ));
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: u32::from(on),
    };
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&mut value as *mut EthtoolValue).cast(),
    };
    for (d, s) in req.name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: SIOCETHTOOL reads an ifreq whose data points at an
    // ethtool_value; both outlive the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("turning GRO on for {ifname}: {e}"),
        ));
    }
    Ok(())
}
