//! Looking up the underlay: which interface holds an address, and its MTU.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;

/// The underlay interface of this namespace that holds `addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayLink {
    pub name: String,
    pub index: u32,
    pub mtu: u16,
}

/// Finds the interface holding `addr` in the calling thread's namespace.
pub async fn find_underlay(addr: Ipv4Addr) -> io::Result<UnderlayLink> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let task = tokio::spawn(conn);
    let result = async {
        let mut addrs = handle.address().get().execute();
        let mut index = None;
        while let Some(msg) = addrs.try_next().await.map_err(io::Error::other)? {
            let holds = msg.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) if *ip == addr)
            });
            if holds {
                index = Some(msg.header.index);
                break;
            }
        }
        let index = index.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface holds the underlay address {addr}; `ip -br addr` lists this host's addresses"),
            )
        })?;
        let mut links = handle.link().get().match_index(index).execute();
        let link = links
            .try_next()
            .await
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other(format!("interface #{index} vanished")))?;
        let mut name = String::new();
        let mut mtu = 1500u16;
        for attr in link.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = n,
                LinkAttribute::Mtu(m) => mtu = u16::try_from(m).unwrap_or(u16::MAX),
                _ => {}
            }
        }
        Ok(UnderlayLink { name, index, mtu })
    }
    .await;
    task.abort();
    result
}
