//! East-west load balancing in the userspace engine. A task's packet to a
//! service VIP gets a backend (Maglev for new flows, conntrack for the rest)
//! and its destination rewritten; the backend's replies get their source
//! rewritten back to the VIP before they reach the client. Both directions
//! are translated on the client's node, so any node's backends can serve.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::time::Instant;

use super::{Shared, Snapshot};
use crate::engine::stats::Volume;
use crate::lb::conntrack::{Conntrack, ConntrackError, Direction, FlowKey};
use crate::lb::{self, Selection};
use crate::overlay::fdb::SegmentId;
use crate::overlay::nat::{self, Side};
use crate::overlay::vtep::{self, DropReason, FromPort};
use crate::tables::Protocol;
use crate::wire::virtio_net;

/// Flows tracked per direction; the oldest go first beyond that.
const FLOWS: usize = 1 << 17;
/// Expired flows dropped per call of [`Flows::expire`].
const EXPIRE_BUDGET: usize = 64;

/// The conntrack of both directions, and the clock they run on.
pub struct Flows {
    epoch: Instant,
    tables: Mutex<Tables>,
}

struct Tables {
    /// Client flow (client -> VIP) -> backend.
    forward: Conntrack,
    /// Reply flow (backend -> client) -> the VIP it answers for.
    reply: Conntrack,
}

impl Flows {
    pub fn new() -> Result<Flows, ConntrackError> {
        Ok(Flows {
            epoch: Instant::now(),
            tables: Mutex::new(Tables {
                forward: Conntrack::new(FLOWS)?,
                reply: Conntrack::new(FLOWS)?,
            }),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Drops some expired flows; called between batches.
    pub fn expire(&self) {
        let now = self.now();
        if let Ok(mut t) = self.tables.lock() {
            t.forward.expire(now, EXPIRE_BUDGET);
            t.reply.expire(now, EXPIRE_BUDGET);
        }
    }

    /// For a scrape: every live client flow (protocol, VIP address, backend),
    /// and the entries of both tables. Copied out, so the lock is held only
    /// for the copy.
    pub fn tracked(&self) -> (Vec<(Protocol, SocketAddrV4, Ipv4Addr)>, [usize; 2]) {
        let now = self.now();
        let Ok(t) = self.tables.lock() else {
            return (Vec::new(), [0; 2]);
        };
        let flows = t
            .forward
            .iter(now)
            .map(|(k, e)| (k.proto, k.dst, e.backend))
            .collect();
        (flows, [t.forward.len(), t.reply.len()])
    }
}

/// The reply flow of a client flow that `backend` serves.
fn reply_key(client: &FlowKey, backend: Ipv4Addr) -> FlowKey {
    FlowKey {
        proto: client.proto,
        src: SocketAddrV4::new(backend, client.dst.port()),
        dst: client.src,
    }
}

/// Picks a backend for a frame a task sent to `vip` on segment `seg`,
/// rewrites the frame for it, counts it for the service and backend, and
/// says where it goes now. `hdr` is the frame's offload header.
pub fn balance(
    shared: &Shared,
    snapshot: &Snapshot,
    seg: SegmentId,
    vip: Ipv4Addr,
    frame: &mut [u8],
    hdr: &virtio_net::Repr,
) -> FromPort {
    let segment = snapshot.fdb.segment(seg);
    let (Some(service), Some((key, flags))) = (segment.vip(vip), nat::flow_of(frame)) else {
        return FromPort::Drop(DropReason::NoServicePort);
    };
    if !service.serves(key.proto, key.dst.port()) {
        return FromPort::Drop(DropReason::NoServicePort);
    }
    let now = shared.flows.now();
    let selection = {
        let Ok(mut t) = shared.flows.tables.lock() else {
            return FromPort::Drop(DropReason::NoBackend);
        };
        let Some(selection) = lb::select(&mut t.forward, &service.backends, &key, flags, now)
        else {
            return FromPort::Drop(DropReason::NoBackend);
        };
        match selection {
            Selection::Kept(backend) => {
                t.reply.lookup(&reply_key(&key, backend), now);
            }
            Selection::New(backend) => {
                t.reply.insert(reply_key(&key, backend), vip, flags, now);
            }
            Selection::Repicked { backend, previous } => {
                t.reply.remove(&reply_key(&key, previous));
                t.reply.insert(reply_key(&key, backend), vip, flags, now);
            }
        }
        selection
    };
    let backend = selection.backend();
    let Some(station) = segment.station(backend) else {
        return FromPort::Drop(DropReason::UnknownDestination);
    };
    if let Some(cell) = snapshot
        .services
        .vip(seg, vip)
        .and_then(|v| v.cell(key.proto, key.dst.port(), backend))
    {
        if !matches!(selection, Selection::Kept(_)) {
            cell.connection();
        }
        cell.traffic(Direction::Original, Volume::of_offloaded(hdr, frame));
    }
    let partial = hdr.flags & virtio_net::F_NEEDS_CSUM != 0;
    nat::rewrite(frame, key.proto, Side::Dst, backend, partial);
    nat::set_dst_mac(frame, station.mac.0);
    vtep::to_station(segment, backend)
}

/// Gives a backend's reply frame, about to reach its client on segment
/// `seg` of this node, the VIP as its source again, and counts it for the
/// service and backend. Frames of no tracked flow pass unchanged. `hdr` is
/// the frame's offload header ([`virtio_net::Repr::NONE`] for a frame off
/// the wire).
pub fn reverse(
    shared: &Shared,
    snapshot: &Snapshot,
    seg: SegmentId,
    frame: &mut [u8],
    hdr: &virtio_net::Repr,
) {
    if !snapshot.fdb.has_vips() {
        return;
    }
    let Some((key, flags)) = nat::flow_of(frame) else {
        return;
    };
    let now = shared.flows.now();
    let vip = {
        let Ok(mut t) = shared.flows.tables.lock() else {
            return;
        };
        let vip = match t.reply.observe(&key, Direction::Reply, flags, now) {
            Some(entry) => entry.backend,
            None => return,
        };
        // The client flow sees its replies too, so its TCP state (and with
        // it its timeout and reuse of its ports) follows the connection.
        let client = FlowKey {
            proto: key.proto,
            src: key.dst,
            dst: SocketAddrV4::new(vip, key.src.port()),
        };
        t.forward.observe(&client, Direction::Reply, flags, now);
        vip
    };
    if let Some(cell) = snapshot
        .services
        .vip(seg, vip)
        .and_then(|v| v.cell(key.proto, key.src.port(), *key.src.ip()))
    {
        cell.traffic(Direction::Reply, Volume::of_offloaded(hdr, frame));
    }
    let partial = hdr.flags & virtio_net::F_NEEDS_CSUM != 0;
    nat::rewrite(frame, key.proto, Side::Src, vip, partial);
}
