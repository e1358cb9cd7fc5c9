use super::*;

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

fn tables_for(peers: &[(Ipv4Addr, &NodeKey)], psks: &[(u32, u8)]) -> tables::Tunnel {
    tables::Tunnel {
        peers: peers.iter().map(|(ip, k)| (*ip, k.public())).collect(),
        preshared: psks
            .iter()
            .map(|&(id, b)| tables::PresharedKey {
                id,
                key: WgKey([b; 32]),
            })
            .collect(),
    }
}

/// A VXLAN datagram with a recognisable body.
fn vxlan(body: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0x10, 0x01, 0];
    d.extend_from_slice(body);
    d
}

struct Node {
    ip: Ipv4Addr,
    tunnels: Tunnels,
    /// Datagrams it sent, to whom.
    sent: Vec<(Ipv4Addr, Vec<u8>)>,
    /// VXLAN datagrams it opened.
    got: Vec<Vec<u8>>,
}

impl Node {
    fn new(ip: Ipv4Addr, key: &NodeKey, tunnel: &tables::Tunnel) -> Node {
        Node {
            ip,
            tunnels: Tunnels::build(key, ip, 4789, tunnel, None, Instant::now()),
            sent: Vec::new(),
            got: Vec::new(),
        }
    }

    fn send(&mut self, to: Ipv4Addr, body: &[u8]) -> bool {
        let (mut scratch, mut out, mut control) = (Vec::new(), Vec::new(), Vec::new());
        let sealed = self
            .tunnels
            .seal(to, &vxlan(body), &mut scratch, &mut out, &mut |m| {
                control.push(m.to_vec())
            })
            .unwrap();
        for m in control {
            self.sent.push((to, m));
        }
        if sealed {
            self.sent.push((to, out));
        }
        sealed
    }

    fn receive(&mut self, from: Ipv4Addr, datagram: &[u8]) -> Result<(), Refusal> {
        let mut out = vec![0u8; datagram.len() + 64];
        let mut replies = Vec::new();
        let opened = self
            .tunnels
            .open(from, datagram, &mut out, &mut |m| replies.push(m.to_vec()))?;
        for m in replies {
            self.sent.push((from, m));
        }
        if let Opened::Vxlan(range) = opened {
            self.got.push(out[range].to_vec());
        }
        Ok(())
    }
}

/// Delivers what each sent to the other until both are quiet.
fn exchange(a: &mut Node, b: &mut Node) {
    for _ in 0..10 {
        let (to_b, to_a) = (std::mem::take(&mut a.sent), std::mem::take(&mut b.sent));
        if to_b.is_empty() && to_a.is_empty() {
            return;
        }
        for (to, d) in to_b {
            assert_eq!(to, b.ip);
            b.receive(a.ip, &d).unwrap();
        }
        for (to, d) in to_a {
            assert_eq!(to, a.ip);
            a.receive(b.ip, &d).unwrap();
        }
    }
    panic!("the nodes never went quiet");
}

fn pair(psks: &[(u32, u8)]) -> (Node, Node, NodeKey, NodeKey) {
    let (ka, kb) = (NodeKey::generate().unwrap(), NodeKey::generate().unwrap());
    let a = Node::new(A, &ka, &tables_for(&[(B, &kb)], psks));
    let b = Node::new(B, &kb, &tables_for(&[(A, &ka)], psks));
    (a, b, ka, kb)
}

#[test]
fn a_datagram_waits_for_the_handshake_then_arrives_sealed() {
    let (mut a, mut b, _, _) = pair(&[(1, 7)]);
    assert!(
        !a.send(B, b"GET /secret HTTP/1.1"),
        "no session yet: queued"
    );
    assert_eq!(a.sent.len(), 1, "a handshake initiation went out");
    exchange(&mut a, &mut b);
    assert_eq!(b.got, vec![vxlan(b"GET /secret HTTP/1.1")]);
    // Now sealed at once, and the plaintext is not on the wire.
    assert!(a.send(B, b"GET /secret HTTP/1.1"));
    let (_, wire) = a.sent.last().unwrap().clone();
    assert_eq!(
        wire.len(),
        8 + 20 + INNER_HEADERS + usize::from(WG_DATA as u16)
    );
    assert!(!wire.windows(6).any(|w| w == b"secret"));
    b.receive(A, &wire).unwrap();
    assert_eq!(b.got.len(), 2);
    // A replay is refused.
    assert_eq!(b.receive(A, &wire), Err(Refusal::Refused));
    // So is a corrupted one, and anything from a stranger.
    let mut bad = wire.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(b.receive(A, &bad), Err(Refusal::Refused));
    assert_eq!(b.receive(C, &wire), Err(Refusal::UnknownPeer));
}

#[test]
fn a_stranger_with_its_own_key_gets_no_session() {
    let (_, mut b, _, kb) = pair(&[]);
    // C claims A's address with a key of its own: its handshake fails.
    let kc = NodeKey::generate().unwrap();
    let mut c = Node::new(A, &kc, &tables_for(&[(B, &kb)], &[]));
    c.send(B, b"hello");
    let (_, init) = c.sent.pop().unwrap();
    assert_eq!(b.receive(A, &init), Err(Refusal::Refused));
    assert!(b.sent.is_empty(), "no answer to a stranger");
}

/// Both nodes learn key 2 beside key 1, at `learned`.
fn rotate(a: &mut Node, b: &mut Node, ka: &NodeKey, kb: &NodeKey, learned: Instant) {
    let (ta, tb) = (
        tables_for(&[(B, kb)], &[(2, 9), (1, 7)]),
        tables_for(&[(A, ka)], &[(2, 9), (1, 7)]),
    );
    a.tunnels = Tunnels::build(ka, A, 4789, &ta, Some(&a.tunnels), learned);
    b.tunnels = Tunnels::build(kb, B, 4789, &tb, Some(&b.tunnels), learned);
}

#[test]
fn a_new_preshared_key_waits_until_every_node_has_it() {
    let (mut a, mut b, ka, kb) = pair(&[(1, 7)]);
    a.send(B, b"one");
    exchange(&mut a, &mut b);
    rotate(&mut a, &mut b, &ka, &kb, Instant::now());
    assert!(a.send(B, b"two"), "the old session carries on");
    assert_eq!(a.sent.len(), 1, "no handshake before the key settles");
    exchange(&mut a, &mut b);
    assert_eq!(b.got, vec![vxlan(b"one"), vxlan(b"two")]);
}

#[test]
fn rotating_the_preshared_key_moves_traffic_without_a_gap() {
    let (mut a, mut b, ka, kb) = pair(&[(1, 7)]);
    a.send(B, b"one");
    exchange(&mut a, &mut b);
    // Key 2, settled: the old session still carries this datagram, and a
    // handshake under key 2 starts beside it.
    rotate(
        &mut a,
        &mut b,
        &ka,
        &kb,
        Instant::now() - SWITCH_AFTER - Duration::from_secs(1),
    );
    assert!(a.send(B, b"two"));
    assert_eq!(a.sent.len(), 2, "data plus a handshake under key 2");
    exchange(&mut a, &mut b);
    // From now on key 2's session carries the traffic.
    assert!(a.send(B, b"three"));
    let (_, wire) = a.sent.last().unwrap().clone();
    let index = u32::from_le_bytes(wire[4..8].try_into().unwrap()) >> 8;
    assert_eq!(index & 1, 0, "sent under the even key id (2)");
    exchange(&mut a, &mut b);
    assert_eq!(b.got, vec![vxlan(b"one"), vxlan(b"two"), vxlan(b"three")]);
}

#[test]
fn a_removed_peer_is_cut_off_at_once() {
    let (mut a, mut b, ka, kb) = pair(&[(1, 7)]);
    a.send(B, b"one");
    exchange(&mut a, &mut b);
    assert!(a.send(B, b"two"));
    let (_, wire) = a.sent.pop().unwrap();
    b.tunnels = Tunnels::build(
        &kb,
        B,
        4789,
        &tables_for(&[], &[(1, 7)]),
        Some(&b.tunnels),
        Instant::now(),
    );
    assert_eq!(b.receive(A, &wire), Err(Refusal::UnknownPeer));
    // And A's tunnel to B goes once B leaves A's tables.
    a.tunnels = Tunnels::build(
        &ka,
        A,
        4789,
        &tables_for(&[], &[(1, 7)]),
        Some(&a.tunnels),
        Instant::now(),
    );
    assert!(!a.tunnels.has_peer(B));
}

#[test]
fn a_decrypted_packet_must_be_vxlan_from_the_sender_to_this_node() {
    let (_, b, _, _) = pair(&[]);
    let mut headers = [0u8; INNER_HEADERS];
    // As A would build it for B.
    let from_a = Tunnels::build(
        &NodeKey::generate().unwrap(),
        A,
        4789,
        &tables::Tunnel::default(),
        None,
        Instant::now(),
    );
    from_a.inner_headers(B, 12, &mut headers);
    let mut packet = headers.to_vec();
    packet.extend_from_slice(&[0u8; 12]);
    assert_eq!(
        b.tunnels.vxlan_in(A, &packet),
        Ok(INNER_HEADERS..INNER_HEADERS + 12)
    );
    assert_eq!(b.tunnels.vxlan_in(C, &packet), Err(Refusal::NotVxlan));
    packet[23] ^= 1;
    assert_eq!(b.tunnels.vxlan_in(A, &packet), Err(Refusal::NotVxlan));
    assert_eq!(checksum::finish(checksum::sum(&headers[..20])), 0);
}

#[test]
fn the_node_key_is_made_once_private_and_kept() {
    let dir = tempfile_dir();
    let path = dir.join("tunnel.key");
    let made = NodeKey::load_or_create(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = NodeKey::load_or_create(&path).unwrap();
    assert_eq!(made.public(), again.public());
    fs::write(&path, "not a key\n").unwrap();
    let err = NodeKey::load_or_create(&path).unwrap_err();
    assert!(err.to_string().contains("not a WireGuard key"), "{err}");
    let _ = fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "shoal-tunnel-key-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}
