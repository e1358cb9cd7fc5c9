//! Encrypted networks: their VXLAN datagrams travel between nodes inside
//! WireGuard (boringtun's Noise IK), one tunnel per pair of nodes.
//!
//! What rides the tunnel is the datagram exactly as the underlay would
//! have carried it: an IPv4 header and a UDP header (to the VXLAN port)
//! around the VXLAN datagram, since WireGuard carries IP packets. So a
//! task frame grows by the 50 bytes of VXLAN and [`OVERHEAD`] more.
//!
//! - Each node has a static Curve25519 key of its own ([`NodeKey`], made
//!   once and kept in the state directory); the tables list the other
//!   nodes' public keys by underlay address. A datagram is taken only from
//!   the node whose address it comes from, under that node's key.
//! - A preshared key of the cluster keyring is mixed into every handshake,
//!   so rotating the keyring (as Swarm rotates its network keys every 12
//!   hours) rekeys every tunnel. Each peer has one boringtun tunnel per
//!   preshared key (an epoch); the key id's parity is carried in the
//!   tunnel's session index, so the responder answers under the key the
//!   initiator used. A new key is used for new handshakes
//!   [`SWITCH_AFTER`] after it appears, when every node has it, and
//!   traffic stays on the old session until the new one is up.
//! - WireGuard itself renews session keys every two minutes, with forward
//!   secrecy; a peer that leaves the tables loses its tunnels at once.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::tables::{self, WgKey};
use crate::wire::checksum;

/// What the tunnel adds to a VXLAN datagram: the IPv4 and UDP headers
/// inside (28 bytes) and WireGuard's data header and tag (32).
pub const OVERHEAD: u16 = 60;
/// The UDP port WireGuard listens on by default.
pub const DEFAULT_PORT: u16 = 51820;
/// How long after a preshared key appears new handshakes use it: every
/// node has it by then.
pub const SWITCH_AFTER: Duration = Duration::from_secs(5);
/// The IPv4 and UDP headers around a VXLAN datagram inside the tunnel.
pub const INNER_HEADERS: usize = 28;
/// WireGuard's data message header and tag.
const WG_DATA: usize = 32;
/// Handshakes answered per second before cookies are asked for, over all
/// peers.
const HANDSHAKES_PER_SECOND: u64 = 1000;
/// The largest handshake message (an initiation).
pub const MAX_CONTROL: usize = 148;
const MSG_INIT: u8 = 1;
const MSG_RESPONSE: u8 = 2;
const MSG_COOKIE: u8 = 3;
const MSG_DATA: u8 = 4;

/// Why a datagram was not taken from, or could not go into, a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The sender is no node with a key in the tables.
    UnknownPeer,
    /// WireGuard refused it: not authentic, a replay, no session for it,
    /// or malformed.
    Refused,
    /// It decrypted to something other than a VXLAN datagram from the
    /// sender to this node.
    NotVxlan,
}

/// One tunnel with a peer, under one preshared key (or none).
struct Epoch {
    /// The preshared key's id and key.
    psk: Option<(u32, [u8; 32])>,
    /// The upper 24 bits of the session indexes this tunnel hands out;
    /// its lowest bit is the preshared key id's parity.
    index: u32,
    /// When this node learned the preshared key.
    learned: Instant,
    tunn: Mutex<Tunn>,
}

impl Epoch {
    fn lock(&self) -> MutexGuard<'_, Tunn> {
        self.tunn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settled(&self, now: Instant) -> bool {
        now.duration_since(self.learned) >= SWITCH_AFTER
    }
}

/// A peer's tunnels, newest preshared key first.
struct Peer {
    public: WgKey,
    epochs: Vec<Arc<Epoch>>,
}

impl Peer {
    /// The tunnel a datagram from the peer belongs to, by the session
    /// index it names: ours in replies and data, the peer's (whose parity
    /// tells the preshared key) in an initiation.
    fn epoch_of(&self, datagram: &[u8]) -> Option<&Epoch> {
        let index = |at: usize| -> Option<u32> {
            let b = datagram.get(at..at + 4)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) >> 8)
        };
        match *datagram.first()? {
            MSG_INIT => {
                let parity = index(4)? & 1;
                self.epochs
                    .iter()
                    .find(|e| e.index & 1 == parity)
                    .map(|e| e.as_ref())
            }
            MSG_RESPONSE => self.by_index(index(8)?),
            MSG_COOKIE | MSG_DATA => self.by_index(index(4)?),
            _ => None,
        }
    }

    fn by_index(&self, index: u32) -> Option<&Epoch> {
        self.epochs
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.as_ref())
    }

    /// The tunnel to send on: the newest settled one with a session, else
    /// any with a session (a new key's handshake is still under way),
    /// else the newest settled one, which starts a handshake. Returned
    /// locked, with the newer settled tunnel that still needs a handshake,
    /// if any. Called for every sealed datagram: no allocation, and in the
    /// steady state one lock.
    fn sending(&self, now: Instant) -> Option<(MutexGuard<'_, Tunn>, Option<&Epoch>)> {
        let settled = |e: &&Arc<Epoch>| e.settled(now);
        let newest = self.epochs.iter().find(settled).map(|e| e.as_ref());
        let settled_first = self
            .epochs
            .iter()
            .filter(settled)
            .chain(self.epochs.iter().filter(|e| !settled(e)));
        for e in settled_first {
            let tunn = e.lock();
            if tunn.time_since_last_handshake().is_some() {
                let behind = newest.filter(|n| !std::ptr::eq(*n, e.as_ref()));
                return Some((tunn, behind));
            }
        }
        let e = newest.or(self.epochs.last().map(|e| e.as_ref()))?;
        Some((e.lock(), None))
    }
}

/// The tunnels of this node with every peer in the tables.
pub struct Tunnels {
    me: Ipv4Addr,
    vxlan_port: u16,
    peers: HashMap<Ipv4Addr, Peer>,
    /// When each preshared key id was learned.
    learned: HashMap<u32, Instant>,
    next_index: Arc<AtomicU32>,
    limiter: Arc<RateLimiter>,
    last_reset: Mutex<Instant>,
}

/// What [`Tunnels::open`] found in a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A VXLAN datagram, at this range of the output buffer.
    Vxlan(std::ops::Range<usize>),
    /// Handshake traffic or a keepalive: nothing to deliver.
    Nothing,
}

impl Tunnels {
    /// The tunnels `tunnel` asks for, keeping those of `previous` whose
    /// peer key and preshared key did not change (their sessions go on).
    /// The first keyring is used at once; a key added later after
    /// [`SWITCH_AFTER`].
    pub fn build(
        key: &NodeKey,
        me: Ipv4Addr,
        vxlan_port: u16,
        tunnel: &tables::Tunnel,
        previous: Option<&Tunnels>,
        now: Instant,
    ) -> Tunnels {
        let public = PublicKey::from(&key.secret);
        let limiter = match previous {
            Some(p) => p.limiter.clone(),
            None => Arc::new(RateLimiter::new(&public, HANDSHAKES_PER_SECOND)),
        };
        let next_index =
            previous.map_or_else(|| Arc::new(AtomicU32::new(1)), |p| p.next_index.clone());
        let long_ago = now.checked_sub(SWITCH_AFTER).unwrap_or(now);
        let learned: HashMap<u32, Instant> = tunnel
            .preshared
            .iter()
            .map(|k| {
                let at = match previous {
                    None => long_ago,
                    Some(p) => p.learned.get(&k.id).copied().unwrap_or(now),
                };
                (k.id, at)
            })
            .collect();
        let psks: Vec<Option<(u32, [u8; 32])>> = if tunnel.preshared.is_empty() {
            vec![None]
        } else {
            let mut v: Vec<_> = tunnel
                .preshared
                .iter()
                .map(|k| Some((k.id, k.key.0)))
                .collect();
            v.sort_by_key(|p| std::cmp::Reverse(p.map(|(id, _)| id)));
            v
        };
        let mut peers = HashMap::new();
        for (&addr, &peer_key) in &tunnel.peers {
            if addr == me {
                continue;
            }
            let old = previous
                .and_then(|p| p.peers.get(&addr))
                .filter(|p| p.public == peer_key);
            let epochs = psks
                .iter()
                .map(|&psk| {
                    if let Some(e) = old.and_then(|o| o.epochs.iter().find(|e| e.psk == psk)) {
                        return e.clone();
                    }
                    let parity = psk.map_or(0, |(id, _)| id & 1);
                    let counter = next_index.fetch_add(1, Ordering::Relaxed);
                    let index = ((counter << 1) | parity) & 0x00ff_ffff;
                    Arc::new(Epoch {
                        psk,
                        index,
                        learned: psk
                            .and_then(|(id, _)| learned.get(&id).copied())
                            .unwrap_or(long_ago),
                        tunn: Mutex::new(Tunn::new(
                            key.secret.clone(),
                            PublicKey::from(peer_key.0),
                            psk.map(|(_, k)| k),
                            None,
                            index,
                            Some(limiter.clone()),
                        )),
                    })
                })
                .collect();
            peers.insert(
                addr,
                Peer {
                    public: peer_key,
                    epochs,
                },
            );
        }
        Tunnels {
            me,
            vxlan_port,
            peers,
            learned,
            next_index,
            limiter,
            last_reset: Mutex::new(now),
        }
    }

    /// Whether `peer` has a key, so encrypted traffic can reach it.
    pub fn has_peer(&self, peer: Ipv4Addr) -> bool {
        self.peers.contains_key(&peer)
    }

    /// Seals the VXLAN datagram `vxlan` for `peer` into `out` (which it
    /// clears; `scratch` holds the plaintext) as a WireGuard data message,
    /// and returns whether it did:
    /// while no session is up the datagram waits in the tunnel (up to
    /// 256 of them) for the handshake, which goes to `control`, as does a
    /// handshake a newer preshared key needs.
    pub fn seal(
        &self,
        peer: Ipv4Addr,
        vxlan: &[u8],
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
        control: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, Refusal> {
        let p = self.peers.get(&peer).ok_or(Refusal::UnknownPeer)?;
        let now = Instant::now();
        let mut plain = [0u8; INNER_HEADERS];
        self.inner_headers(peer, vxlan.len(), &mut plain);
        out.clear();
        out.resize(INNER_HEADERS + vxlan.len() + WG_DATA.max(MAX_CONTROL), 0);
        let (mut tunn, behind) = p.sending(now).ok_or(Refusal::UnknownPeer)?;
        // boringtun encrypts from one slice.
        scratch.clear();
        scratch.extend_from_slice(&plain);
        scratch.extend_from_slice(vxlan);
        let sealed = match tunn.encapsulate(scratch, out) {
            TunnResult::WriteToNetwork(msg) if msg.first() == Some(&MSG_DATA) => Some(msg.len()),
            TunnResult::WriteToNetwork(msg) => {
                control(msg);
                None
            }
            TunnResult::Err(_) => return Err(Refusal::Refused),
            _ => None,
        };
        drop(tunn);
        if let Some(newer) = behind {
            let mut buf = [0u8; MAX_CONTROL];
            if let TunnResult::WriteToNetwork(msg) =
                newer.lock().format_handshake_initiation(&mut buf, false)
            {
                control(msg);
            }
        }
        match sealed {
            Some(len) => {
                out.truncate(len);
                Ok(true)
            }
            None => {
                out.clear();
                Ok(false)
            }
        }
    }

    /// Opens a datagram from `sender` into `out` (at least as long as
    /// the datagram): a VXLAN datagram from the sender to this node, or
    /// handshake traffic, whose answers (and datagrams that waited for
    /// the handshake) go to `reply`.
    pub fn open(
        &self,
        sender: Ipv4Addr,
        datagram: &[u8],
        out: &mut [u8],
        reply: &mut dyn FnMut(&[u8]),
    ) -> Result<Opened, Refusal> {
        let p = self.peers.get(&sender).ok_or(Refusal::UnknownPeer)?;
        let epoch = p.epoch_of(datagram).ok_or(Refusal::Refused)?;
        let mut tunn = epoch.lock();
        let len = match tunn.decapsulate(Some(IpAddr::V4(sender)), datagram, out) {
            TunnResult::WriteToTunnelV4(packet, src) if src == sender => packet.len(),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                return Err(Refusal::NotVxlan);
            }
            TunnResult::WriteToNetwork(msg) => {
                reply(msg);
                // Datagrams that waited for this handshake go now.
                while let TunnResult::WriteToNetwork(msg) = tunn.decapsulate(None, &[], out) {
                    reply(msg);
                }
                return Ok(Opened::Nothing);
            }
            TunnResult::Done => return Ok(Opened::Nothing),
            TunnResult::Err(_) => return Err(Refusal::Refused),
        };
        drop(tunn);
        self.vxlan_in(sender, &out[..len]).map(Opened::Vxlan)
    }

    /// Runs the tunnels' timers (rekeying, keepalives, retries, expiry);
    /// call it a few times a second. What must be sent goes to `send`.
    pub fn tick(&self, send: &mut dyn FnMut(Ipv4Addr, &[u8])) {
        let now = Instant::now();
        {
            let mut last = self
                .last_reset
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now.duration_since(*last) >= Duration::from_secs(1) {
                self.limiter.reset_count();
                *last = now;
            }
        }
        let mut buf = vec![0u8; 2048];
        for (&addr, peer) in &self.peers {
            for e in &peer.epochs {
                if let TunnResult::WriteToNetwork(msg) = e.lock().update_timers(&mut buf) {
                    send(addr, msg);
                }
            }
        }
    }

    /// The IPv4 and UDP headers of a VXLAN datagram of `len` bytes from
    /// this node to `peer`, as the underlay would carry it.
    fn inner_headers(&self, peer: Ipv4Addr, len: usize, out: &mut [u8; INNER_HEADERS]) {
        let total = (INNER_HEADERS + len) as u16;
        out[0] = 0x45;
        out[2..4].copy_from_slice(&total.to_be_bytes());
        out[6] = 0x40; // DF
        out[8] = 64;
        out[9] = 17;
        out[12..16].copy_from_slice(&self.me.octets());
        out[16..20].copy_from_slice(&peer.octets());
        let sum = checksum::finish(checksum::sum(&out[..20]));
        out[10..12].copy_from_slice(&sum.to_be_bytes());
        out[20..22].copy_from_slice(&self.vxlan_port.to_be_bytes());
        out[22..24].copy_from_slice(&self.vxlan_port.to_be_bytes());
        out[24..26].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    }

    /// Where the VXLAN datagram is in a decrypted packet: it must be UDP
    /// from `sender` to this node's VXLAN port.
    fn vxlan_in(&self, sender: Ipv4Addr, packet: &[u8]) -> Result<std::ops::Range<usize>, Refusal> {
        if packet.len() < INNER_HEADERS
            || packet[0] != 0x45
            || packet[9] != 17
            || packet[12..16] != sender.octets()
            || packet[16..20] != self.me.octets()
            || packet[22..24] != self.vxlan_port.to_be_bytes()
        {
            return Err(Refusal::NotVxlan);
        }
        let udp_len = usize::from(u16::from_be_bytes([packet[24], packet[25]]));
        if udp_len < 8 || 20 + udp_len > packet.len() {
            return Err(Refusal::NotVxlan);
        }
        Ok(INNER_HEADERS..20 + udp_len)
    }
}

/// This node's static key.
#[derive(Clone)]
pub struct NodeKey {
    secret: StaticSecret,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.public())
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> io::Result<NodeKey> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(NodeKey {
            secret: StaticSecret::from(bytes),
        })
    }

    /// The key in `path` (base64, as `wg genkey` writes it), made there
    /// (0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> io::Result<NodeKey> {
        match fs::read_to_string(path) {
            Ok(text) => {
                let key: WgKey = text.parse().map_err(|e: String| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                if fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
                }
                Ok(NodeKey {
                    secret: StaticSecret::from(key.0),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = NodeKey::generate()?;
                let tmp = path.with_extension("tmp");
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                writeln!(file, "{}", WgKey(key.secret.to_bytes()))?;
                file.sync_all()?;
                fs::rename(&tmp, path)?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// The public half, which the other nodes list.
    pub fn public(&self) -> WgKey {
        WgKey(PublicKey::from(&self.secret).to_bytes())
    }
}

#[cfg(test)]
mod tests;
