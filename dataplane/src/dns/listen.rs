//! The resolver's sockets inside a task namespace: `lo` brought up (the
//! listen address lives there), then UDP and TCP bound to 127.0.0.11:53 on a
//! thread inside the namespace. The descriptors keep their namespace when
//! handed to tokio on the daemon's threads.

use std::io;
use std::net::{TcpListener, UdpSocket};

use crate::sys::netns;

use super::{DnsError, LISTEN_ADDR};

/// Loopback's interface index: the same in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// Binds the resolver's sockets inside network namespace `ns` (a name or a
/// path), non-blocking, ready for `from_std`.
pub fn bind_in(ns: &str) -> Result<(UdpSocket, TcpListener), DnsError> {
    let fail = |source: io::Error| DnsError::Listen {
        netns: ns.to_string(),
        source,
    };
    netns::run_in(&netns::path_of(ns), bind_here)
        .and_then(|r| r)
        .map_err(fail)
}

fn bind_here() -> io::Result<(UdpSocket, TcpListener)> {
    loopback_up()?;
    let udp = UdpSocket::bind(LISTEN_ADDR)?;
    udp.set_nonblocking(true)?;
    let tcp = TcpListener::bind(LISTEN_ADDR)?;
    tcp.set_nonblocking(true)?;
    Ok((udp, tcp))
}

/// Sets `lo` up in the calling thread's namespace (a no-op when it is).
fn loopback_up() -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let up = rtnetlink::LinkUnspec::new_with_index(LOOPBACK_IFINDEX)
            .up()
            .build();
        handle
            .link()
            .set(up)
            .execute()
            .await
            .map_err(|e| io::Error::other(format!("setting lo up: {e}")))
    })
}
