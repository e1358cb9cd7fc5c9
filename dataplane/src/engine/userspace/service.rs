//! East-west load balancing in the userspace engine. A task's packet to a
//! service VIP gets a backend (Maglev for new flows, conntrack for the rest)
//! and its destination rewritten; the backend's replies get their source
//! rewritten back to the VIP before they reach the client. Both directions
//! are translated on the client's node, so any node's backends can serve.

use std::net::SocketAddrV4;
use std::sync::Mutex;
use std::time::Instant;

use super::{Shared, Snapshot};
use crate::lb::conntrack::{Conntrack, ConntrackError, Direction, FlowKey};
use crate::lb::{self, Selection};
use crate::overlay::fdb::Segment;
use crate::overlay::nat::{self, Side};
use crate::overlay::vtep::{self, DropReason, FromPort};

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
}

/// The reply flow of a client flow that `backend` serves.
fn reply_key(client: &FlowKey, backend: std::net::Ipv4Addr) -> FlowKey {
    FlowKey {
        proto: client.proto,
        src: SocketAddrV4::new(backend, client.dst.port()),
        dst: client.src,
    }
}

/// Picks a backend for a frame a task sent to `vip` on `segment`, rewrites
/// the frame for it and says where it goes now. `partial` says the frame's
/// TCP/UDP checksum is a partial sum (an offloaded frame).
pub fn balance(
    shared: &Shared,
    segment: &Segment,
    vip: std::net::Ipv4Addr,
    frame: &mut [u8],
    partial: bool,
) -> FromPort {
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
    nat::rewrite(frame, key.proto, Side::Dst, backend, partial);
    nat::set_dst_mac(frame, station.mac.0);
    vtep::to_station(segment, backend)
}

/// Gives a backend's reply frame, about to reach its client on this node,
/// the VIP as its source again. Frames of no tracked flow pass unchanged.
pub fn reverse(shared: &Shared, snapshot: &Snapshot, frame: &mut [u8], partial: bool) {
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
    nat::rewrite(frame, key.proto, Side::Src, vip, partial);
}
