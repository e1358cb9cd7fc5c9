//! The deciding half of the userspace packet path. A frame enters with its
//! headers parsed once ([`crate::wire::flow`]); the VTEP routes it
//! ([`crate::overlay::vtep`]), the VIP and mesh conversations run on it
//! ([`super::vip`], [`super::mesh`]), and one complete [`Verdict`] leaves:
//! deliver here or to that node with this translation, hand a mesh reply to
//! the kernel, answer, or drop with a reason. No verdict is a question for
//! the engine, which only carries it out (`engine::userspace::pipeline`).
//! Sans-IO: the clock comes in as [`Context::now`].

use std::net::Ipv4Addr;

use super::conntrack::Direction;
use super::nat::Nat;
use super::shards::Shards;
use crate::overlay::fdb::{Fdb, Location, Segment, SegmentId};
use crate::overlay::vtep::{self, DropReason, FromPort, FromUnderlay};
use crate::tables::MacAddr;
use crate::wire::flow::{Flow, FlowKey, Frame, Malformed};

/// What a decision reads besides the frame.
pub struct Context<'a> {
    pub fdb: &'a Fdb,
    pub shards: &'a Shards,
    /// This node's underlay address.
    pub node: Ipv4Addr,
    /// Milliseconds on the engine's monotonic clock.
    pub now: u64,
}

/// What the service counters count a translated frame as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub segment: SegmentId,
    pub vip: Ipv4Addr,
    /// The service's (target) port.
    pub port: u16,
    pub backend: Ipv4Addr,
    pub dir: Direction,
    /// The frame opened a connection.
    pub opened: bool,
}

/// A rewrite of a frame on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub nat: Nat,
    /// The Ethernet addresses the frame gets (a backend's MAC as the
    /// destination; the gateway's as the source of a mesh client's frame).
    pub src_mac: Option<MacAddr>,
    pub dst_mac: Option<MacAddr>,
    pub hit: Option<Hit>,
}

/// Everything the engine must do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the answer the VTEP wrote (ARP reply, ICMP error) back to the
    /// sender: the task, or the remote VTEP encapsulated with the segment's
    /// VNI.
    Reply,
    /// Deliver the frame to a task here or encapsulate it to a node on
    /// `segment` (its VNI), with the translation applied first.
    Deliver {
        to: Location,
        segment: SegmentId,
        translation: Option<Translation>,
    },
    /// A backend's reply to a routing-mesh client whose flow entered at this
    /// node: translate it and hand it to the kernel, which routes it to the
    /// client.
    MeshExit(Translation),
    /// Nothing to do and nothing wrong.
    Ignore,
    Drop(DropReason),
}

impl Verdict {
    fn deliver(to: Location, segment: SegmentId) -> Verdict {
        Verdict::Deliver {
            to,
            segment,
            translation: None,
        }
    }

    /// The verdict on a frame the conversations have nothing to do with.
    fn routed(v: FromPort, seg: SegmentId) -> Verdict {
        match v {
            FromPort::Reply => Verdict::Reply,
            FromPort::Local(port) => Verdict::deliver(Location::Local(port), seg),
            FromPort::Remote(node) => Verdict::deliver(Location::Remote(node), seg),
            FromPort::Service(_) => Verdict::Drop(DropReason::NoServicePort),
            FromPort::Outside => Verdict::Drop(DropReason::NoRoute),
            FromPort::Ignore => Verdict::Ignore,
            FromPort::Drop(reason) => Verdict::Drop(reason),
        }
    }
}

/// A frame a task on segment `seg` sent. `offloaded` marks a TSO/USO
/// super-frame; an answer goes into `out`.
pub fn from_port(
    cx: &Context<'_>,
    seg: SegmentId,
    frame: &[u8],
    parsed: Result<Frame, Malformed>,
    offloaded: bool,
    out: &mut Vec<u8>,
) -> Verdict {
    let segment = cx.fdb.segment(seg);
    let routed = vtep::route_from_port(segment, frame, parsed, offloaded, out);
    let flow = match parsed {
        Ok(Frame::Ipv4(flow)) => flow,
        _ => return Verdict::routed(routed, seg),
    };
    match (routed, flow.key) {
        (FromPort::Service(vip), Some(key)) => balance(cx, seg, segment, vip, &flow, &key),
        (FromPort::Local(port), Some(key)) => Verdict::Deliver {
            to: Location::Local(port),
            segment: seg,
            translation: reverse(cx, seg, &flow, &key),
        },
        (FromPort::Outside, Some(key)) => mesh_reply(cx, seg, &flow, &key),
        _ => Verdict::routed(routed, seg),
    }
}

/// The inner frame of a VXLAN datagram for segment `seg` that node `sender`
/// sent; an answer goes into `out`. The engine let it through
/// [`vtep::open`], which refuses senders that are no node; the mesh checks
/// again before it would send anything back to `sender`.
pub fn from_underlay(
    cx: &Context<'_>,
    seg: SegmentId,
    inner: &[u8],
    parsed: Result<Frame, Malformed>,
    sender: Ipv4Addr,
    out: &mut Vec<u8>,
) -> Verdict {
    let segment = cx.fdb.segment(seg);
    let routed = vtep::route_from_underlay(segment, inner, parsed, out);
    // TCP/UDP frames take part in the conversations; the rest only routes.
    let keyed = match parsed {
        Ok(Frame::Ipv4(flow @ Flow { key: Some(key), .. })) => Some((flow, key)),
        _ => None,
    };
    match (routed, keyed) {
        (FromUnderlay::Local(port), keyed) => {
            let translation = keyed.and_then(|(flow, key)| {
                // A client outside the overlay on its way to a published
                // port's target: its flow entered the cluster at the
                // sender, where the backend's replies must go back. Any
                // other frame from outside the subnet is no mesh flow and
                // its replies have no route.
                if !segment.subnet.contains(&flow.src)
                    && cx.fdb.is_node(sender)
                    && cx.fdb.is_mesh_target(seg, key.proto, key.dst)
                {
                    cx.shards
                        .of(key.src)
                        .mesh
                        .note_entry(&key, flow.flags, sender, cx.now);
                }
                reverse(cx, seg, &flow, &key)
            });
            Verdict::Deliver {
                to: Location::Local(port),
                segment: seg,
                translation,
            }
        }
        (FromUnderlay::Outside, Some((flow, key))) => {
            let nat = cx.shards.of(key.dst).mesh.exit(&key, flow.flags, cx.now);
            mesh_exit(cx, &key, nat)
        }
        (FromUnderlay::Outside, None) => Verdict::Drop(DropReason::NoRoute),
        (FromUnderlay::Reply { .. }, _) => Verdict::Reply,
        (FromUnderlay::Ignore, _) => Verdict::Ignore,
        (FromUnderlay::Drop(reason), _) => Verdict::Drop(reason),
    }
}

/// A client's packet for a published port, which the kernel handed to the
/// mesh device (its Ethernet header is a placeholder).
pub fn from_mesh(cx: &Context<'_>, flow: &Flow) -> Verdict {
    let Some(key) = flow.key else {
        return Verdict::Drop(DropReason::NoServicePort);
    };
    let Some(published) = cx.fdb.published(key.proto, key.dst.port()) else {
        return Verdict::Drop(DropReason::NoServicePort);
    };
    let segment = cx.fdb.segment(published.segment);
    let Some(vip) = segment.vip(published.vip) else {
        return Verdict::Drop(DropReason::NoServicePort);
    };
    let set = published.local.as_ref().unwrap_or(&vip.backends);
    let mut shard = cx.shards.of(key.src);
    let Some(entered) = shard
        .mesh
        .enter(set, &key, flow.flags, published.target, cx.now)
    else {
        return Verdict::Drop(DropReason::NoBackend);
    };
    let Some(station) = segment.station(entered.backend) else {
        return Verdict::Drop(DropReason::UnknownDestination);
    };
    if let Location::Local(_) = station.at {
        // The backend is here: its replies leave from here too.
        let translated = FlowKey {
            dst: entered.nat.to,
            ..key
        };
        shard
            .mesh
            .note_entry(&translated, flow.flags, cx.node, cx.now);
    }
    Verdict::Deliver {
        to: station.at,
        segment: published.segment,
        translation: Some(Translation {
            nat: entered.nat,
            src_mac: Some(segment.gateway_mac),
            dst_mac: Some(station.mac),
            hit: Some(Hit {
                segment: published.segment,
                vip: published.vip,
                port: published.target,
                backend: entered.backend,
                dir: Direction::Original,
                opened: entered.opened,
            }),
        }),
    }
}

/// A task's packet to `vip`: its backend, and the frame rewritten for it.
fn balance(
    cx: &Context<'_>,
    seg: SegmentId,
    segment: &Segment,
    vip: Ipv4Addr,
    flow: &Flow,
    key: &FlowKey,
) -> Verdict {
    let Some(service) = segment.vip(vip) else {
        return Verdict::Drop(DropReason::NoServicePort);
    };
    if !service.serves(key.proto, key.dst.port()) {
        return Verdict::Drop(DropReason::NoServicePort);
    }
    let balanced = cx
        .shards
        .of(key.src)
        .vip
        .balance(&service.backends, key, flow.flags, cx.now);
    let Some(balanced) = balanced else {
        return Verdict::Drop(DropReason::NoBackend);
    };
    let Some(station) = segment.station(balanced.backend) else {
        return Verdict::Drop(DropReason::UnknownDestination);
    };
    Verdict::Deliver {
        to: station.at,
        segment: seg,
        translation: Some(Translation {
            nat: balanced.nat,
            src_mac: None,
            dst_mac: Some(station.mac),
            hit: Some(Hit {
                segment: seg,
                vip,
                port: key.dst.port(),
                backend: balanced.backend,
                dir: Direction::Original,
                opened: balanced.opened,
            }),
        }),
    }
}

/// A frame about to reach a task on segment `seg`: the VIP back as its
/// source if it is a backend's reply to a client of a VIP.
fn reverse(cx: &Context<'_>, seg: SegmentId, flow: &Flow, key: &FlowKey) -> Option<Translation> {
    if !cx.fdb.has_vips() {
        return None;
    }
    let reversed = cx.shards.of(key.dst).vip.reverse(key, flow.flags, cx.now)?;
    Some(Translation {
        nat: reversed.nat,
        src_mac: None,
        dst_mac: None,
        hit: Some(Hit {
            segment: seg,
            vip: reversed.vip,
            port: key.src.port(),
            backend: *key.src.ip(),
            dir: Direction::Reply,
            opened: false,
        }),
    })
}

/// A task's frame to an address outside the overlay: a backend's reply to a
/// routing-mesh client goes back to the node the client's flow entered by
/// (or, if that is this one, out through the kernel); anything else has no
/// route.
fn mesh_reply(cx: &Context<'_>, seg: SegmentId, flow: &Flow, key: &FlowKey) -> Verdict {
    // One lock of the client's shard for both questions.
    let mut shard = cx.shards.of(key.dst);
    match shard.mesh.entry_of(key, flow.flags, cx.now) {
        None => Verdict::Drop(DropReason::NoRoute),
        Some(entry) if entry != cx.node => Verdict::deliver(Location::Remote(entry), seg),
        Some(_) => {
            let nat = shard.mesh.exit(key, flow.flags, cx.now);
            drop(shard);
            mesh_exit(cx, key, nat)
        }
    }
}

/// A backend's reply to a routing-mesh client that entered at this node,
/// with the translation the mesh conversation found for it (none: no mesh
/// flow knows it).
fn mesh_exit(cx: &Context<'_>, key: &FlowKey, nat: Option<Nat>) -> Verdict {
    let Some(nat) = nat else {
        return Verdict::Drop(DropReason::UnknownDestination);
    };
    let hit = cx.fdb.published(key.proto, nat.to.port()).map(|p| Hit {
        segment: p.segment,
        vip: p.vip,
        port: key.src.port(),
        backend: *key.src.ip(),
        dir: Direction::Reply,
        opened: false,
    });
    Verdict::MeshExit(Translation {
        nat,
        src_mac: None,
        dst_mac: None,
        hit,
    })
}

#[cfg(test)]
mod tests;
