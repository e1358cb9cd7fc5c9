//! Deterministic simulations: N members, a fake clock and a network that
//! delivers, delays or drops datagrams, with no sockets and no sleeping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Event, Member, Membership, MembershipConfig, Output, Timer};
use crate::NodeId;

const LATENCY: Duration = Duration::from_millis(1);
/// The wall clock when a simulation starts.
const EPOCH_MS: u64 = 1_800_000_000_000;

enum Item {
    Datagram {
        to: SocketAddr,
        from: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        life: u32,
        timer: Timer,
    },
}

struct Node {
    membership: Membership,
    /// Bumped on restart, so the previous life's timers are dropped.
    life: u32,
    /// Nodes in different groups cannot talk (a partition).
    group: u8,
    /// A node whose traffic is dropped both ways (it "died").
    dead: bool,
}

struct Sim {
    now: Duration,
    nodes: Vec<Node>,
    queue: BTreeMap<(Duration, u64), Item>,
    seq: u64,
    /// Every event, with when and where it was reported.
    events: Vec<(Duration, usize, Event)>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 7946))
}

fn node_id(i: usize) -> NodeId {
    NodeId::new(format!("node-{i}")).unwrap()
}

impl Sim {
    /// `n` members that all join through member 0.
    fn new(n: usize, seed: u64) -> Self {
        let mut sim = Sim {
            now: Duration::ZERO,
            nodes: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            events: Vec::new(),
        };
        for i in 0..n {
            let me = Member::new(node_id(i), addr(i), 1);
            let membership =
                Membership::new(me, MembershipConfig::default(), seed * 100 + i as u64);
            sim.nodes.push(Node {
                membership,
                life: 0,
                group: 0,
                dead: false,
            });
            if i > 0 {
                let out = sim.nodes[i].membership.join(addr(0)).unwrap();
                sim.apply(i, out);
            }
        }
        sim
    }

    /// The simulated wall clock, in ms since the UNIX epoch.
    fn now_ms(&self) -> u64 {
        EPOCH_MS + self.now.as_millis() as u64
    }

    fn push(&mut self, after: Duration, item: Item) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), item);
    }

    fn apply(&mut self, node: usize, out: Output) {
        for (to, bytes) in out.send {
            self.push(
                LATENCY,
                Item::Datagram {
                    to,
                    from: node,
                    bytes,
                },
            );
        }
        let life = self.nodes[node].life;
        for (after, timer) in out.timers {
            self.push(after, Item::Timer { node, life, timer });
        }
        for event in out.events {
            self.events.push((self.now, node, event));
        }
    }

    fn index(&self, to: SocketAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.membership.identity().addr == to)
    }

    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), item) = entry.remove_entry();
            self.now = at;
            match item {
                Item::Datagram { to, from, bytes } => {
                    let Some(to) = self.index(to) else { continue };
                    let (a, b) = (&self.nodes[from], &self.nodes[to]);
                    if a.dead || b.dead || a.group != b.group {
                        continue;
                    }
                    let from = a.membership.identity().addr;
                    let now_ms = self.now_ms();
                    let out = self.nodes[to]
                        .membership
                        .handle_datagram(&bytes, from, now_ms);
                    self.apply(to, out);
                }
                Item::Timer { node, life, timer } => {
                    if life != self.nodes[node].life {
                        continue;
                    }
                    let out = self.nodes[node].membership.handle_timer(timer).unwrap();
                    self.apply(node, out);
                }
            }
        }
        self.now = end;
    }

    /// Whether every live, reachable member sees exactly the current
    /// identities of the others it can reach.
    fn converged(&self) -> bool {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].dead)
            .collect();
        live.iter().all(|&i| {
            let mut seen: Vec<Member> = self.nodes[i].membership.members().cloned().collect();
            let mut want: Vec<Member> = live
                .iter()
                .filter(|&&j| j != i && self.nodes[j].group == self.nodes[i].group)
                .map(|&j| self.nodes[j].membership.identity().clone())
                .collect();
            seen.sort_by_key(|m| m.addr);
            want.sort_by_key(|m| m.addr);
            seen == want
        })
    }

    /// Runs in 10 ms steps until converged; returns how long it took.
    fn run_until_converged(&mut self, limit: Duration) -> Duration {
        let start = self.now;
        while !self.converged() {
            assert!(self.now - start < limit, "no convergence within {limit:?}");
            self.run_for(Duration::from_millis(10));
        }
        self.now - start
    }

    /// When `observer` first reported `node` down at or after `since`.
    fn down_at(&self, observer: usize, node: usize, since: Duration) -> Option<Duration> {
        self.events.iter().find_map(|(at, who, e)| match e {
            Event::Down(m) if *who == observer && *at >= since && m.node == node_id(node) => {
                Some(*at)
            }
            _ => None,
        })
    }
}

#[test]
fn five_members_converge_to_all_up() {
    let mut sim = Sim::new(5, 1);
    let took = sim.run_until_converged(Duration::from_secs(5));
    assert!(took <= Duration::from_secs(2), "took {took:?}");
    for i in 0..5 {
        let ups = sim
            .events
            .iter()
            .filter(|(_, who, e)| *who == i && matches!(e, Event::Up(_)))
            .count();
        assert_eq!(ups, 4, "node {i} saw {ups} members come up");
        assert!(
            sim.events
                .iter()
                .any(|(_, who, e)| *who == i && *e == Event::Joined)
        );
    }
}

#[test]
fn a_dead_member_is_down_everywhere_within_the_detection_bound() {
    let bound = Duration::from_millis(2500);
    let mut worst = Duration::ZERO;
    for seed in 0..8 {
        let mut sim = Sim::new(5, seed);
        sim.run_until_converged(Duration::from_secs(5));
        sim.run_for(Duration::from_millis(137 * seed));
        let died = sim.now;
        sim.nodes[3].dead = true;
        sim.run_for(bound);
        for observer in [0, 1, 2, 4] {
            let at = sim.down_at(observer, 3, died);
            let at =
                at.unwrap_or_else(|| panic!("seed {seed}: node {observer} never saw node 3 down"));
            worst = worst.max(at - died);
        }
    }
    assert!(worst <= bound, "worst detection {worst:?}");
}

#[test]
fn a_member_declared_down_comes_back_renewed_on_its_own() {
    let mut sim = Sim::new(5, 2);
    sim.run_until_converged(Duration::from_secs(5));
    let before = sim.nodes[3].membership.identity().clone();
    sim.nodes[3].dead = true;
    sim.run_for(Duration::from_secs(3));
    sim.nodes[3].dead = false;
    sim.run_until_converged(Duration::from_secs(10));

    let after = sim.nodes[3].membership.identity().clone();
    assert!(
        after.generation > before.generation,
        "{after:?} did not renew"
    );
    assert!(
        sim.events
            .iter()
            .any(|(_, who, e)| *who == 3 && matches!(e, Event::Rejoined(_)))
    );
    for observer in [0, 1, 2, 4] {
        let last = sim.events.iter().rev().find_map(|(_, who, e)| match e {
            Event::Up(m) | Event::Down(m) if *who == observer && m.node == before.node => Some(e),
            _ => None,
        });
        assert_eq!(
            last,
            Some(&Event::Up(after.clone())),
            "as seen by node {observer}"
        );
    }
}

#[test]
fn a_restarted_member_with_a_new_generation_replaces_its_old_life() {
    let mut sim = Sim::new(5, 3);
    sim.run_until_converged(Duration::from_secs(5));
    let old = sim.nodes[4].membership.identity().clone();
    let new = Member::new(old.node.clone(), old.addr, old.generation + 1000);
    sim.nodes[4].membership = Membership::new(new.clone(), MembershipConfig::default(), 99);
    sim.nodes[4].life += 1;
    let out = sim.nodes[4].membership.join(addr(1)).unwrap();
    sim.apply(4, out);
    sim.run_until_converged(Duration::from_secs(5));
    for observer in 0..4 {
        let replaced = Event::Replaced {
            old: old.clone(),
            new: new.clone(),
        };
        assert!(
            sim.events
                .iter()
                .any(|(_, who, e)| *who == observer && *e == replaced)
        );
    }
}

#[test]
fn a_healed_partition_rejoins_without_manual_steps() {
    let mut sim = Sim::new(5, 4);
    sim.run_until_converged(Duration::from_secs(5));
    let cut = sim.now;
    for i in [0, 1] {
        sim.nodes[i].group = 1;
    }
    // Each side sees the other side down...
    sim.run_until_converged(Duration::from_secs(5));
    assert!(sim.down_at(0, 4, cut).is_some() && sim.down_at(4, 0, cut).is_some());
    // ...and once the network heals, everyone is back with no join call.
    for i in [0, 1] {
        sim.nodes[i].group = 0;
    }
    let took = sim.run_until_converged(Duration::from_secs(30));
    assert!(took <= Duration::from_secs(15), "took {took:?}");
}

#[test]
fn garbage_datagrams_are_counted_and_ignored() {
    let mut sim = Sim::new(3, 5);
    sim.run_until_converged(Duration::from_secs(5));
    let garbage: [&[u8]; 5] = [b"", b"\x01", b"\xff\xff\xff\xff", &[1; 64], &[0; 2000]];
    for bytes in garbage {
        let now_ms = sim.now_ms();
        let out = sim.nodes[0]
            .membership
            .handle_datagram(bytes, addr(1), now_ms);
        assert!(out.send.is_empty() && out.events.is_empty());
    }
    assert_eq!(sim.nodes[0].membership.rejected(), garbage.len() as u64);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.converged());
}

#[test]
fn leaving_is_seen_at_once() {
    let mut sim = Sim::new(4, 6);
    sim.run_until_converged(Duration::from_secs(5));
    let left = sim.now;
    let out = sim.nodes[2].membership.leave().unwrap();
    sim.apply(2, out);
    sim.run_for(Duration::from_millis(500));
    for observer in [0, 1, 3] {
        assert!(sim.down_at(observer, 2, left).is_some(), "node {observer}");
    }
}

/// A datagram as `src` would send it: a header and member updates.
fn forged(
    src: &Member,
    dst: &Member,
    message: foca::Message<Member>,
    updates: &[(Member, foca::State)],
) -> Vec<u8> {
    super::codec::datagram(src, dst, message, updates).unwrap()
}

impl Sim {
    /// Gives every member the roster of the simulated nodes.
    fn with_roster(mut self) -> Self {
        let roster: super::Roster = (0..self.nodes.len())
            .map(|i| (node_id(i), addr(i)))
            .collect();
        for n in &mut self.nodes {
            n.membership.set_roster(roster.clone());
        }
        self
    }
}

#[test]
fn forged_updates_from_outside_the_roster_change_nothing() {
    let mut sim = Sim::new(3, 7).with_roster();
    sim.run_until_converged(Duration::from_secs(5));
    let victim = sim.nodes[1].membership.identity().clone();
    let me = sim.nodes[0].membership.identity().clone();
    let evil_addr: SocketAddr = "10.9.9.9:7946".parse().unwrap();
    let evil = Member::new(NodeId::new("evil").unwrap(), evil_addr, 1);
    let forever = Member {
        generation: u64::MAX,
        ..victim.clone()
    };
    let attempts = [
        // An outsider, at its own address, says the victim is down for good.
        (
            evil_addr,
            forged(
                &evil,
                &me,
                foca::Message::Gossip,
                &[(forever.clone(), foca::State::Down)],
            ),
            "unknown_member",
        ),
        // The same, claiming to be the victim's address.
        (
            evil_addr,
            forged(&victim, &me, foca::Message::Announce, &[]),
            "spoofed_source",
        ),
        // A member that is in the roster but whose life is a day ahead.
        (
            victim.addr,
            forged(&forever, &me, foca::Message::Gossip, &[]),
            "future_generation",
        ),
        // An outsider's probe request would make us ping a third party.
        (
            victim.addr,
            forged(
                &victim,
                &me,
                foca::Message::PingReq {
                    target: evil.clone(),
                    probe_number: 1,
                },
                &[],
            ),
            "unknown_member",
        ),
    ];
    for (from, bytes, reason) in attempts {
        let before = sim.nodes[0].membership.rejections().get(reason).copied();
        let now_ms = sim.now_ms();
        let out = sim.nodes[0]
            .membership
            .handle_datagram(&bytes, from, now_ms);
        assert!(
            out.send.is_empty() && out.events.is_empty(),
            "{reason}: {out:?}"
        );
        let after = sim.nodes[0].membership.rejections().get(reason).copied();
        assert_eq!(after, Some(before.unwrap_or(0) + 1), "{reason}");
    }
    sim.run_for(Duration::from_secs(3));
    assert!(sim.converged());
    assert!(sim.down_at(0, 1, Duration::ZERO).is_none());
}

#[test]
fn a_members_updates_about_strangers_are_dropped_and_the_rest_applies() {
    let mut sim = Sim::new(3, 8).with_roster();
    sim.run_until_converged(Duration::from_secs(5));
    let me = sim.nodes[0].membership.identity().clone();
    let friend = sim.nodes[2].membership.identity().clone();
    let stranger = Member::new(
        NodeId::new("stranger").unwrap(),
        "10.9.9.8:7946".parse().unwrap(),
        1,
    );
    let bytes = forged(
        &friend,
        &me,
        foca::Message::Gossip,
        &[(stranger.clone(), foca::State::Alive)],
    );
    let now_ms = sim.now_ms();
    sim.nodes[0]
        .membership
        .handle_datagram(&bytes, friend.addr, now_ms);
    assert!(!sim.nodes[0].membership.members().any(|m| m == &stranger));
    assert_eq!(
        sim.nodes[0]
            .membership
            .rejections()
            .get("unknown_member_update"),
        Some(&1)
    );
}
