//! The gossip driver: runs a [`Membership`] on a UDP socket and the tokio
//! clock, and publishes the set of live members.
//!
//! Datagrams and timers go in, [`Output`]s come out and are carried out
//! here; the live set is a `watch` channel that the node's status
//! reconciler reads. Every datagram is sealed with the cluster's gossip
//! keys ([`Sealer`]); until the first state brings the keyring and the
//! roster ([`ClusterHandle::set`]) this node neither sends nor accepts any. While this node knows no live member it re-announces
//! itself to its seeds every [`REANNOUNCE`], so a restarted node, or one on
//! the far side of a healed partition, rejoins without anyone's help.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::NodeId;
use crate::clock::now_ms;
use crate::membership::{
    Event, Member, Membership, MembershipConfig, Output, Roster, Sealer, Timer,
};

/// How often an isolated node announces itself to its seeds again.
pub const REANNOUNCE: Duration = Duration::from_secs(1);

/// The live members by node id, this node excluded.
pub type LiveSet = BTreeMap<NodeId, Member>;

/// Refused datagrams by reason, since start-up.
pub type Rejections = BTreeMap<&'static str, u64>;

/// What the cluster state tells gossip: who the members are and the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Every node (this one included) and its gossip address; the others
    /// are also the addresses announced to while isolated.
    pub roster: Roster,
    /// The gossip keyring: id and key.
    pub keys: Vec<(u32, [u8; 32])>,
}

#[derive(Debug)]
enum Control {
    Cluster(ClusterView),
    Leave(oneshot::Sender<()>),
}

/// Gives a running member what the cluster state says.
#[derive(Debug, Clone)]
pub struct ClusterHandle(mpsc::Sender<Control>);

impl ClusterHandle {
    /// Accept, announce to and seal for `view` from now on.
    pub async fn set(&self, view: ClusterView) {
        let _ = self.0.send(Control::Cluster(view)).await;
    }
}

/// A running gossip member.
#[derive(Debug)]
pub struct Gossip {
    control: mpsc::Sender<Control>,
    live: watch::Receiver<Arc<LiveSet>>,
    rejected: Arc<Mutex<Rejections>>,
    task: JoinHandle<()>,
}

impl Gossip {
    /// Starts gossiping on `socket` as `identity`, joining through `seeds`
    /// (other members' gossip addresses; empty for the first node) once
    /// [`ClusterHandle::set`] gave it the keys.
    pub fn start(
        socket: UdpSocket,
        identity: Member,
        config: MembershipConfig,
        seeds: Vec<SocketAddr>,
    ) -> Result<Gossip, getrandom::Error> {
        // Only the choice of peers to probe depends on it.
        let seed = getrandom::u64().unwrap_or(identity.generation);
        let mut session = [0u8; 16];
        getrandom::fill(&mut session)?;
        let (control, control_rx) = mpsc::channel(16);
        let (live_tx, live) = watch::channel(Arc::new(LiveSet::new()));
        let rejected = Arc::new(Mutex::new(Rejections::new()));
        let driver = Driver {
            membership: Membership::new(identity, config, seed),
            sealer: Sealer::new(session),
            rejected: rejected.clone(),
            socket,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            pending: BTreeMap::new(),
            seeds,
            live: LiveSet::new(),
            live_tx,
            joined: false,
        };
        let task = tokio::spawn(driver.run(control_rx));
        Ok(Gossip {
            control,
            live,
            rejected,
            task,
        })
    }

    /// The datagrams refused so far, by reason.
    pub fn rejected(&self) -> Rejections {
        self.rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The live members, updated as gossip learns of changes.
    pub fn live(&self) -> watch::Receiver<Arc<LiveSet>> {
        self.live.clone()
    }

    /// A handle that passes on the cluster state's roster and keys.
    pub fn cluster_handle(&self) -> ClusterHandle {
        ClusterHandle(self.control.clone())
    }

    /// Tells the other members this node leaves, then stops.
    pub async fn leave(self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
        self.task.abort();
    }

    /// Stops without telling anyone (the others detect it as a failure).
    pub fn stop(self) {
        self.task.abort();
    }
}

struct Driver {
    membership: Membership,
    sealer: Sealer,
    /// The sealer's refusals and the membership's, for the metrics.
    rejected: Arc<Mutex<Rejections>>,
    socket: UdpSocket,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_seq: u64,
    pending: BTreeMap<u64, Timer>,
    seeds: Vec<SocketAddr>,
    live: LiveSet,
    live_tx: watch::Sender<Arc<LiveSet>>,
    joined: bool,
}

impl Driver {
    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        let mut buf = vec![0u8; 65536];
        let mut announce = tokio::time::interval(REANNOUNCE);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.receive(&buf[..n], from).await,
                    Err(e) => tracing::debug!("gossip: receive failed: {e}"),
                },
                () = sleep_until(next_timer) => self.fire_due().await,
                _ = announce.tick() => {
                    if !self.joined || self.live.is_empty() {
                        self.announce().await;
                    }
                }
                msg = control.recv() => match msg {
                    Some(Control::Cluster(view)) => self.learn(view).await,
                    Some(Control::Leave(done)) => {
                        if let Ok(out) = self.membership.leave() {
                            self.carry_out(out).await;
                        }
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            }
        }
    }

    async fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        let now = now_ms();
        match self.sealer.open(datagram, now) {
            Ok(plain) => {
                let out = self.membership.handle_datagram(&plain, from, now);
                self.count(None);
                self.carry_out(out).await;
            }
            Err(why) => {
                tracing::debug!("gossip: refused a datagram from {from}: {}", why.label());
                self.count(Some(why.label()));
            }
        }
    }

    /// Publishes the refusals: the sealer's `sealing` one, if any, and the
    /// membership's.
    fn count(&self, sealing: Option<&'static str>) {
        let mut all = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reason) = sealing {
            *all.entry(reason).or_default() += 1;
        }
        for (reason, n) in self.membership.rejections() {
            all.insert(reason, *n);
        }
    }

    /// Takes the state's roster and keys. Nodes new to the roster are
    /// announced to at once (what this node heard of them before it knew
    /// them was dropped, and waiting for their probes would take
    /// seconds), and so is everyone when the first keys arrive (nothing
    /// could be said before).
    async fn learn(&mut self, view: ClusterView) {
        let me = self.membership.identity().addr;
        let first_keys = self.sealer.key_ids().is_empty();
        let newcomers: Vec<SocketAddr> = view
            .roster
            .values()
            .copied()
            .filter(|a| *a != me && (first_keys || !self.seeds.contains(a)))
            .collect();
        self.seeds = view.roster.values().copied().filter(|a| *a != me).collect();
        let before = self.sealer.key_ids();
        self.sealer.set_keys(view.keys, now_ms());
        if self.sealer.key_ids() != before {
            tracing::info!("gossip: keyring now {:?}", self.sealer.key_ids());
        }
        self.membership.set_roster(view.roster);
        for addr in newcomers {
            match self.membership.join(addr) {
                Ok(out) => self.carry_out(out).await,
                Err(e) => tracing::debug!("gossip: {e}"),
            }
        }
    }

    async fn announce(&mut self) {
        let me = self.membership.identity().addr;
        for seed in self.seeds.clone() {
            if seed == me {
                continue;
            }
            match self.membership.join(seed) {
                Ok(out) => self.carry_out(out).await,
                Err(e) => tracing::debug!("gossip: {e}"),
            }
        }
    }

    async fn fire_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, seq))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(timer) = self.pending.remove(&seq) {
                match self.membership.handle_timer(timer) {
                    Ok(out) => Box::pin(self.carry_out(out)).await,
                    Err(e) => tracing::debug!("gossip: {e}"),
                }
            }
        }
    }

    async fn carry_out(&mut self, out: Output) {
        let now = now_ms();
        for (to, payload) in out.send {
            // No key yet: nothing can be said to anyone.
            let Some(sealed) = self.sealer.seal(&payload, now) else {
                break;
            };
            if let Err(e) = self.socket.send_to(&sealed, to).await {
                tracing::debug!("gossip: sending to {to} failed: {e}");
            }
        }
        let now = Instant::now();
        for (delay, timer) in out.timers {
            self.timer_seq += 1;
            self.pending.insert(self.timer_seq, timer);
            self.timers.push(Reverse((now + delay, self.timer_seq)));
        }
        let mut changed = false;
        for event in out.events {
            changed |= self.note(event);
        }
        if changed {
            self.live_tx.send_replace(Arc::new(self.live.clone()));
        }
    }

    /// Records an event in the live set; true when the set changed.
    fn note(&mut self, event: Event) -> bool {
        match event {
            Event::Up(m) => {
                tracing::info!("gossip: {} is up at {}", m.node, m.addr);
                self.live.insert(m.node.clone(), m);
                true
            }
            Event::Down(m) => {
                // Only forget the life that died: a newer one may be up.
                if self
                    .live
                    .get(&m.node)
                    .is_some_and(|l| l.generation <= m.generation)
                {
                    tracing::info!("gossip: {} is down", m.node);
                    self.live.remove(&m.node);
                    return true;
                }
                false
            }
            Event::Replaced { new, .. } => {
                self.live.insert(new.node.clone(), new);
                true
            }
            Event::Joined => {
                self.joined = true;
                false
            }
            Event::Isolated => {
                self.joined = false;
                false
            }
            Event::Rejoined(me) => {
                tracing::warn!("gossip: this node was declared down; rejoined as {me:?}");
                false
            }
            Event::Defunct => {
                tracing::error!("gossip: this node's generation is exhausted; restart the daemon");
                false
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
