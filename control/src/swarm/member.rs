//! A running swarm member: its credentials, the cluster API server, gossip,
//! and the state feed: Raft on managers, a stream from a manager on
//! workers. It also follows its own entry in the state: a promotion or
//! demotion renews its certificate and switches the feed; a removal makes
//! it leave.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ClientConfig;
use shoal_dataplane::tables::WgKey;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::channels::Channels;
use super::files::{Identity, NodeRecord, SwarmDir};
use super::gossip::{ClusterView, Gossip, LiveSet, Rejections};
use super::rpc::RenewRequest;
use super::service::{self, Service};
use super::transport::GrpcTransport;
use super::view::{Info, Liveness, RaftInfo};
use super::{SwarmConfig, SwarmError, leader};
use crate::agent::Agent;
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::api::{self, ServerTls};
use crate::consensus::{Consensus, ConsensusConfig, Peer};
use crate::image::ImageStore;
use crate::membership::{Member as GossipMember, MembershipConfig};
use crate::pki::{CaCertificate, NodeCert, NodeKey};
use crate::state::{ClusterState, NodeStatus, Trust};
use crate::{NodeId, Role};

pub(super) use super::lifecycle::{init, join};

/// How a member starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// After a restart, from its files.
    Resume,
    /// The first manager of a new swarm.
    Init,
    /// Just joined.
    Join,
}

/// How long to wait between attempts to reach managers.
pub(super) const RETRY: Duration = Duration::from_millis(500);

/// How long a demoted manager waits to be taken out of the Raft voters.
const LEAVE_RAFT_WAIT: Duration = Duration::from_secs(10);

/// The server name every manager's certificate carries.
pub(super) const ANY_MANAGER: &str = "swarm-manager";

/// Whom this node trusts (the cluster's CAs), its certificate and key,
/// and the client TLS made of them; replaced together when the
/// certificate is renewed or the cluster's CAs change.
#[derive(Clone)]
pub(super) struct Credentials(Arc<RwLock<Creds>>);

struct Creds {
    roots: Vec<CaCertificate>,
    /// While a CA rotation runs: the new CA cross-signed by the old.
    cross: Option<CaCertificate>,
    cert: NodeCert,
    key: NodeKey,
    client: Arc<ClientConfig>,
}

impl Creds {
    /// What follows the certificate in a handshake: the cross-signed CA
    /// when the certificate is the new CA's (nodes that trust only the old
    /// one yet need it), and the issuing CA (which a joining node pins).
    fn cas(&self) -> Vec<CaCertificate> {
        let cross = self
            .cross
            .iter()
            .filter(|c| self.cert.verify_issued_by(c).is_ok());
        cross
            .chain(self.cert.issuer_among(&self.roots))
            .cloned()
            .collect()
    }

    fn client_config(&self) -> Result<Arc<ClientConfig>, SwarmError> {
        api::client_config(&self.roots, &self.cert, &self.cas(), &self.key).map_err(api_error)
    }
}

impl Credentials {
    fn new(
        roots: Vec<CaCertificate>,
        cert: NodeCert,
        key: NodeKey,
    ) -> Result<Credentials, SwarmError> {
        let client = api::client_config(&roots, &cert, &[], &key).map_err(api_error)?;
        let mut creds = Creds {
            roots,
            cross: None,
            cert,
            key,
            client,
        };
        creds.client = creds.client_config()?;
        Ok(Credentials(Arc::new(RwLock::new(creds))))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Creds> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Creds> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client TLS configuration.
    pub(super) fn client(&self) -> Arc<ClientConfig> {
        self.read().client.clone()
    }

    /// The role the certificate grants.
    pub(super) fn role(&self) -> Role {
        self.read().cert.role()
    }

    /// When the certificate expires.
    pub(super) fn not_after(&self) -> SystemTime {
        self.read().cert.not_after()
    }

    /// The CAs this node trusts.
    pub(super) fn roots(&self) -> Vec<CaCertificate> {
        self.read().roots.clone()
    }

    /// True when `ca` issued this node's certificate.
    pub(super) fn issued_by(&self, ca: &CaCertificate) -> bool {
        self.read().cert.verify_issued_by(ca).is_ok()
    }

    /// The node's certificate.
    pub(super) fn cert(&self) -> NodeCert {
        self.read().cert.clone()
    }

    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, SwarmError> {
        let c = self.read();
        api::server_config(&c.roots, &c.cert, &c.cas(), &c.key).map_err(api_error)
    }

    pub(super) fn csr(&self, node: &NodeId) -> Result<String, SwarmError> {
        Ok(self.read().key.csr_pem(node)?)
    }

    fn replace_cert(&self, cert: NodeCert) -> Result<(), SwarmError> {
        let mut c = self.write();
        if !cert.is_for_key(&c.key) {
            return Err(SwarmError::Refused(
                "a manager sent a certificate for another key; not installed".into(),
            ));
        }
        if cert.issuer_among(&c.roots).is_none() {
            return Err(SwarmError::Refused(format!(
                "a manager sent a certificate for node {} that no CA this node trusts issued; not \
                 installed",
                cert.node_id()
            )));
        }
        let old = std::mem::replace(&mut c.cert, cert);
        match c.client_config() {
            Ok(client) => c.client = client,
            Err(e) => {
                c.cert = old;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Trusts `roots` and presents `cross` (see [`Creds::cas`]) from now
    /// on; false when that is what it does already. The certificate must
    /// stay trusted.
    fn set_trust(
        &self,
        roots: Vec<CaCertificate>,
        cross: Option<CaCertificate>,
    ) -> Result<bool, SwarmError> {
        let mut c = self.write();
        if c.roots == roots && c.cross == cross {
            return Ok(false);
        }
        if c.cert.issuer_among(&roots).is_none() {
            return Err(SwarmError::Refused(
                "the cluster no longer trusts the CA that issued this node's certificate; it \
                 needs a new one (`shoal swarm join` with a token of the swarm)"
                    .into(),
            ));
        }
        let old = (
            std::mem::replace(&mut c.roots, roots),
            std::mem::replace(&mut c.cross, cross),
        );
        match c.client_config() {
            Ok(client) => c.client = client,
            Err(e) => {
                (c.roots, c.cross) = old;
                return Err(e);
            }
        }
        Ok(true)
    }
}

pub(super) fn api_error(e: api::ApiError) -> SwarmError {
    SwarmError::Refused(e.to_string())
}

/// What one feed has shown so far; see [`Member::relay`].
#[derive(Default)]
pub(super) struct Relay {
    seen_self: bool,
}

/// Where this node's cluster state comes from.
enum Feed {
    /// Raft, on a manager; the task forwards its state to the member's.
    Manager(Consensus, JoinHandle<()>),
    /// A stream from a manager, on a worker.
    Worker(JoinHandle<()>),
    /// Stopped.
    None,
}

/// A running member.
pub(super) struct Member {
    pub(super) node_id: NodeId,
    pub(super) cluster_id: String,
    pub(super) addr: SocketAddr,
    pub(super) config: SwarmConfig,
    dir: SwarmDir,
    pub(super) creds: Credentials,
    /// The node's images: pulled for its tasks, resolved for pinning.
    pub(super) images: Arc<ImageStore>,
    server_tls: ServerTls,
    record: Mutex<NodeRecord>,
    feed: tokio::sync::Mutex<Feed>,
    state_tx: watch::Sender<Arc<ClusterState>>,
    live: watch::Receiver<Arc<LiveSet>>,
    gossip: Mutex<Option<Gossip>>,
    /// What gossip was last told of the cluster state.
    gossip_view: tokio::sync::Mutex<Option<ClusterView>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    agent: tokio::sync::Mutex<Option<Agent>>,
    channels: Channels,
    /// Held while the certificate is renewed (by the schedule, or for a
    /// role change).
    renewing: tokio::sync::Mutex<()>,
    /// Set when the member leaves on its own (removed from the swarm).
    pub(super) removed: watch::Sender<bool>,
}

impl Member {
    /// Starts serving, gossiping and following the state.
    pub(super) async fn start(
        config: &SwarmConfig,
        dir: SwarmDir,
        identity: Identity,
        how: Start,
    ) -> Result<Arc<Member>, SwarmError> {
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| SwarmError::Bind {
                what: "the cluster API",
                addr: config.listen_addr,
                source,
            })?;
        let socket = UdpSocket::bind(config.gossip_addr)
            .await
            .map_err(|source| SwarmError::Bind {
                what: "gossip",
                addr: config.gossip_addr,
                source,
            })?;
        let Identity {
            record,
            roots,
            cert,
            key,
        } = identity;
        let creds = Credentials::new(roots, cert, key)?;
        let images = Arc::new(
            ImageStore::open(&config.state_dir.join("images"), &config.registries)
                .map_err(|e| SwarmError::Refused(e.to_string()))?,
        );
        let channels = Channels::new(creds.clone());
        let server_tls = ServerTls::new(creds.server_config()?);
        let membership = MembershipConfig::new(config.detection)
            .map_err(|e| SwarmError::Refused(e.to_string()))?;
        let generation = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let gossip = Gossip::start(
            socket,
            GossipMember::new(record.node_id.clone(), record.gossip_addr, generation),
            membership,
            record.gossip_seeds.clone(),
        )
        .map_err(|e| SwarmError::Refused(format!("no random session for gossip: {e}")))?;
        let (state_tx, _) = watch::channel(Arc::new(ClusterState::new()));
        let member = Arc::new(Member {
            node_id: record.node_id.clone(),
            cluster_id: record.cluster_id.clone(),
            addr: record.addr,
            config: config.clone(),
            dir,
            creds,
            images,
            server_tls: server_tls.clone(),
            record: Mutex::new(record),
            feed: tokio::sync::Mutex::new(Feed::None),
            state_tx,
            live: gossip.live(),
            gossip: Mutex::new(Some(gossip)),
            gossip_view: tokio::sync::Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            agent: tokio::sync::Mutex::new(None),
            channels,
            renewing: tokio::sync::Mutex::new(()),
            removed: watch::channel(false).0,
        });
        let operators = config.operators.clone().map(|sink| {
            let (tx, rx) = tokio::sync::mpsc::channel(super::operators::QUEUE);
            member.spawn(tokio::spawn(super::operators::gate(
                member.clone(),
                rx,
                sink,
            )));
            tx
        });
        let server = {
            let svc = service::server(Service::new(member.clone()));
            let mut removed = member.removed.subscribe();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = removed.wait_for(|r| *r).await;
                };
                let served = api::serve_with_operators(listener, server_tls, svc, stop, operators);
                if let Err(e) = served.await {
                    tracing::error!("cluster API stopped: {e}");
                }
            })
        };
        member.spawn(server);
        if let Err(e) = member.start_feed(how).await {
            member.stop().await;
            return Err(e);
        }
        member.spawn(tokio::spawn(leader::run(member.clone())));
        member.spawn(tokio::spawn(leader::orchestrate(member.clone())));
        member.spawn(tokio::spawn(follow_self(member.clone())));
        member.spawn(tokio::spawn(renew_when_due(member.clone())));
        match member.start_agent() {
            Ok(agent) => *member.agent.lock().await = Some(agent),
            Err(e) => {
                member.stop().await;
                return Err(e);
            }
        }
        tracing::info!(
            "swarm member {} ({}) serving the cluster API on {} (advertised {})",
            member.node_id,
            member.creds.role(),
            config.listen_addr,
            member.addr
        );
        Ok(member)
    }

    fn spawn(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Starts Raft (managers) or the state stream (workers).
    async fn start_feed(self: &Arc<Self>, how: Start) -> Result<(), SwarmError> {
        let mut feed = self.feed.lock().await;
        *feed = match self.creds.role() {
            Role::Manager => {
                let consensus = Consensus::open(
                    &self.dir.raft(),
                    self.peer(),
                    ConsensusConfig::default(),
                    GrpcTransport::new(self.channels.clone()),
                )
                .await
                .map_err(|e| SwarmError::Consensus(e.to_string()))?;
                if how == Start::Init {
                    consensus
                        .initialize()
                        .await
                        .map_err(|e| SwarmError::Consensus(e.to_string()))?;
                }
                let forward = {
                    let mut rx = consensus.watch();
                    let member = self.clone();
                    tokio::spawn(async move {
                        let mut relay = Relay::default();
                        loop {
                            let state = rx.borrow_and_update().clone();
                            member.relay(&mut relay, state);
                            if rx.changed().await.is_err() {
                                return;
                            }
                        }
                    })
                };
                let is_voter = consensus.voters().iter().any(|p| p.id == self.node_id);
                if !is_voter && how != Start::Init {
                    self.spawn(tokio::spawn(become_voter(self.clone())));
                }
                Feed::Manager(consensus, forward)
            }
            Role::Worker => Feed::Worker(tokio::spawn(super::follow::stream_state(self.clone()))),
        };
        Ok(())
    }

    async fn stop_feed(&self) {
        let old = std::mem::replace(&mut *self.feed.lock().await, Feed::None);
        match old {
            Feed::Manager(consensus, forward) => {
                forward.abort();
                if let Err(e) = consensus.shutdown().await {
                    tracing::warn!("stopping Raft: {e}");
                }
            }
            Feed::Worker(task) => task.abort(),
            Feed::None => {}
        }
    }

    /// This node as a Raft peer.
    pub(super) fn peer(&self) -> Peer {
        Peer {
            id: self.node_id.clone(),
            addr: self.addr,
        }
    }

    /// Raft, when this node is a manager.
    pub(super) async fn consensus(&self) -> Option<Consensus> {
        match &*self.feed.lock().await {
            Feed::Manager(c, _) => Some(c.clone()),
            _ => None,
        }
    }

    /// This node's copy of the state (a manager's replica, or the last
    /// state a worker was sent).
    pub(super) fn local_state(&self) -> Arc<ClusterState> {
        self.state_tx.borrow().clone()
    }

    /// The freshest state this node holds, for deciding who may do what:
    /// on a manager, what its Raft has applied (the member's copy,
    /// [`local_state`](Self::local_state), follows it a moment later, so
    /// a write that has returned may not show there yet); on a worker,
    /// the last state streamed to it.
    pub(super) async fn replica(&self) -> Arc<ClusterState> {
        match self.consensus().await {
            Some(c) => c.local_state(),
            None => self.local_state(),
        }
    }

    /// Publishes a state from a feed. A feed that starts from scratch (a
    /// manager replaying the log after a promotion) passes through states
    /// from before this node joined; they are held back until the feed
    /// has caught up to one that lists this node, so that only a real
    /// removal ever shows this node missing.
    pub(super) fn relay(&self, relay: &mut Relay, state: Arc<ClusterState>) {
        if state.node(&self.node_id).is_some() {
            relay.seen_self = true;
        } else if !relay.seen_self {
            return;
        }
        self.state_tx.send_replace(state);
    }

    /// Every state this node learns.
    pub(super) fn watch_state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state_tx.subscribe()
    }

    /// The members gossip sees alive.
    pub(super) fn live(&self) -> watch::Receiver<Arc<LiveSet>> {
        self.live.clone()
    }

    /// Who leads, who votes, who is alive.
    pub(super) async fn liveness(&self) -> Liveness {
        let mut alive: BTreeSet<NodeId> = self.live.borrow().keys().cloned().collect();
        alive.insert(self.node_id.clone());
        let (leader, voters) = match self.consensus().await {
            Some(c) => {
                let s = c.status();
                (
                    s.leader.map(|p| p.id),
                    s.voters.into_iter().map(|p| p.id).collect(),
                )
            }
            None => (None, BTreeSet::new()),
        };
        Liveness {
            me: Some(self.node_id.clone()),
            leader,
            voters,
            alive,
        }
    }

    /// `shoal info`.
    pub(super) async fn info(&self) -> Info {
        let state = self.local_state();
        let live = self.liveness().await;
        let raft = self.consensus().await.map(|c| {
            let s = c.status();
            RaftInfo {
                term: s.term,
                applied: s.commit_index,
                voters: s.voters.len(),
            }
        });
        let managers = self
            .record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .managers
            .clone();
        Info {
            swarm: "active".into(),
            node_id: Some(self.node_id.clone()),
            hostname: self.config.hostname.clone(),
            role: Some(self.creds.role()),
            cluster_id: Some(self.cluster_id.clone()),
            addr: Some(self.addr),
            managers,
            nodes: state.nodes().len(),
            leader: live.leader,
            raft,
            dataplane: self.config.dataplane.clone(),
            cert_expiry: Some(unix_secs(self.creds.not_after())),
            tunnel_key: self.config.tunnel_key,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// A client to a node, over a shared channel.
    pub(super) async fn channel(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<ClusterClient<Channel>, SwarmError> {
        self.channels
            .get(addr, server_name)
            .await
            .map_err(|e| SwarmError::Unreachable {
                addr,
                reason: e.to_string(),
            })
    }

    /// Forgets the channels to a node after a failed call.
    pub(super) fn drop_channel(&self, addr: SocketAddr) {
        self.channels.forget(addr);
    }

    /// The managers to try, the leader first when known.
    pub(super) async fn managers(&self) -> Vec<SocketAddr> {
        let mut list = Vec::new();
        if let Some(c) = self.consensus().await
            && let Some(leader) = c.status().leader
        {
            list.push(leader.addr);
        }
        let state = self.local_state();
        list.extend(
            state
                .nodes()
                .values()
                .filter(|n| n.role == Role::Manager && n.status != NodeStatus::Down)
                .map(|n| n.addr),
        );
        list.extend(
            self.record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .managers
                .iter()
                .copied(),
        );
        let mut seen = BTreeSet::new();
        list.retain(|a| seen.insert(*a));
        list
    }

    /// Stops everything; the files stay for the next start.
    pub(super) async fn stop(&self) {
        if let Some(agent) = self.agent.lock().await.take() {
            agent.stop().await;
        }
        self.removed.send_replace(true);
        self.stop_feed().await;
        if let Some(g) = self
            .gossip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            g.stop();
        }
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }

    /// Leaves: tells gossip, stops, forgets the swarm's files.
    pub(super) async fn depart(&self) -> Result<(), SwarmError> {
        let gossip = self
            .gossip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(g) = gossip {
            g.leave().await;
        }
        self.stop().await;
        self.dir.remove()
    }

    /// Keeps `node.json`'s managers and gossip seeds current, and gossip's
    /// roster and keys with the state.
    async fn note_peers(&self, state: &ClusterState) {
        self.tell_gossip(state).await;
        let managers: Vec<SocketAddr> = state
            .nodes()
            .values()
            .filter(|n| n.role == Role::Manager)
            .map(|n| n.addr)
            .collect();
        let seeds: Vec<SocketAddr> = state
            .nodes()
            .values()
            .filter(|n| n.id != self.node_id)
            .map(|n| n.gossip_addr)
            .collect();
        if managers.is_empty() {
            return;
        }
        let record = {
            let mut r = self.record.lock().unwrap_or_else(PoisonError::into_inner);
            if r.managers == managers && r.gossip_seeds == seeds {
                return;
            }
            r.managers = managers;
            r.gossip_seeds = seeds;
            r.clone()
        };
        if let Err(e) = self.dir.save_record(&record) {
            tracing::warn!("saving the known managers: {e}");
        }
    }

    /// Gives gossip the state's nodes and gossip keys when they changed.
    async fn tell_gossip(&self, state: &ClusterState) {
        let view = ClusterView {
            roster: state
                .nodes()
                .values()
                .map(|n| (n.id.clone(), n.gossip_addr))
                .collect(),
            keys: state
                .gossip_keys()
                .iter()
                .filter_map(|k| Some((k.id, <[u8; 32]>::try_from(k.key.0.as_slice()).ok()?)))
                .collect(),
        };
        // A state from before this node was added to it (a worker's first
        // moments) would refuse everyone; wait for one that has it.
        if view.keys.is_empty() || !view.roster.contains_key(&self.node_id) {
            return;
        }
        let mut told = self.gossip_view.lock().await;
        if told.as_ref() == Some(&view) {
            return;
        }
        let handle = self
            .gossip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|g| g.cluster_handle());
        if let Some(handle) = handle {
            handle.set(view.clone()).await;
            *told = Some(view);
        }
    }

    /// Gossip datagrams refused so far, by reason.
    pub(super) fn gossip_rejected(&self) -> Rejections {
        self.gossip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Gossip::rejected)
            .unwrap_or_default()
    }

    /// A new certificate for the role the state gives this node, installed:
    /// the files, the client and the server use it from now on. When the
    /// state records another tunnel key for this node, or none, the
    /// renewal reports this node's.
    async fn renew_own(self: &Arc<Self>) -> Result<NodeCert, SwarmError> {
        let _one_at_a_time = self.renewing.lock().await;
        let csr = self.creds.csr(&self.node_id)?;
        let tunnel_key = self.unrecorded_tunnel_key();
        // The leader issues its own; any other node asks a manager, since
        // a demoted manager may no longer write to the state itself.
        let leads = match self.consensus().await {
            Some(c) => c.status().is_leader,
            None => false,
        };
        let cert_pem = if leads {
            self.renew(&self.node_id, &csr, tunnel_key)
                .await
                .map_err(SwarmError::Refused)?
        } else {
            self.call_managers(|mut c| {
                let csr = csr.clone();
                async move {
                    c.renew_cert(RenewRequest {
                        csr_pem: csr,
                        tunnel_key,
                    })
                    .await
                    .map(|r| r.into_inner().cert_pem)
                }
            })
            .await?
        };
        let cert = NodeCert::from_pem(&cert_pem)?;
        self.install(cert.clone())?;
        Ok(cert)
    }

    /// This node's tunnel key, when the state it knows records another one
    /// for it or none.
    fn unrecorded_tunnel_key(&self) -> Option<WgKey> {
        let recorded = self
            .local_state()
            .node(&self.node_id)
            .and_then(|n| n.tunnel_key);
        self.config.tunnel_key.filter(|k| recorded != Some(*k))
    }

    /// Makes `cert` this node's certificate: the files, the client and the
    /// server use it from now on.
    pub(super) fn install(&self, cert: NodeCert) -> Result<(), SwarmError> {
        self.creds.replace_cert(cert)?;
        // The state now names the new certificate only.
        self.reconfigure()
    }

    /// Saves the credentials and makes the server and new channels use
    /// them.
    fn reconfigure(&self) -> Result<(), SwarmError> {
        {
            let c = self.creds.read();
            self.dir.save_cert(&c.roots, &c.cert)?;
        }
        self.server_tls.replace(self.creds.server_config()?);
        self.channels.clear();
        Ok(())
    }

    /// Follows the CAs the cluster trusts: trusts what the state says, and
    /// when the state's CA did not issue this node's certificate (a CA
    /// rotation started), gets one that it did.
    async fn follow_trust(self: &Arc<Self>, trust: &Trust) -> Result<(), SwarmError> {
        if trust.root.is_empty() {
            // A state from before CA rotation: keep the CA joined with.
            return Ok(());
        }
        let roots = trust
            .roots()
            .into_iter()
            .map(CaCertificate::from_pem)
            .collect::<Result<Vec<_>, _>>()?;
        let cross = trust
            .rotation
            .as_ref()
            .map(|r| CaCertificate::from_pem(&r.cross_signed))
            .transpose()?;
        let current = roots[0].clone();
        if self.creds.set_trust(roots, cross)? {
            tracing::info!(
                "this node now trusts the CA(s) {}",
                self.creds
                    .roots()
                    .iter()
                    .map(|r| r.digest().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.reconfigure()?;
        }
        if !self.creds.issued_by(&current) {
            // Nodes spread their renewals over a second.
            tokio::time::sleep(Duration::from_secs(1).mul_f64(jitter(1.0))).await;
            let cert = self.renew_own().await?;
            tracing::info!(
                "renewed this node's certificate with the cluster's new CA {} (serial {})",
                current.digest(),
                cert.serial()
            );
        }
        Ok(())
    }

    /// Where this node gossips.
    pub(super) fn gossip_addr(&self) -> SocketAddr {
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .gossip_addr
    }

    /// Gets a certificate for the role the state gives this node, and
    /// switches the state feed to match.
    async fn change_role(self: &Arc<Self>, role: Role) -> Result<(), SwarmError> {
        tracing::info!("this node is now a {role} in the cluster state; renewing its certificate");
        let cert = self.renew_own().await?;
        if cert.role() != role {
            return Err(SwarmError::Refused(format!(
                "asked for a {role} certificate and got a {} one; retrying",
                cert.role()
            )));
        }
        if role == Role::Worker {
            self.wait_out_of_raft().await;
        }
        self.stop_feed().await;
        if role == Role::Worker {
            self.dir.remove_raft()?;
        }
        self.start_feed(Start::Resume).await
    }

    /// A demoted manager keeps answering Raft until the leader has taken
    /// it out of the voters: stopping at once could leave the rest without
    /// the majority that removing it needs (with two managers, always).
    async fn wait_out_of_raft(&self) {
        let Some(consensus) = self.consensus().await else {
            return;
        };
        let deadline = tokio::time::Instant::now() + LEAVE_RAFT_WAIT;
        while tokio::time::Instant::now() < deadline {
            if !consensus.voters().iter().any(|p| p.id == self.node_id) {
                return;
            }
            tokio::time::sleep(RETRY / 5).await;
        }
        tracing::warn!(
            "still a Raft voter {LEAVE_RAFT_WAIT:?} after demotion; stopping Raft anyway"
        );
    }
}

/// A manager that is not a Raft voter yet (just joined or promoted) asks
/// the leader to add it, until it is one.
async fn become_voter(member: Arc<Member>) {
    loop {
        let Some(consensus) = member.consensus().await else {
            return;
        };
        if consensus.voters().iter().any(|p| p.id == member.node_id) {
            tracing::info!("this manager is a Raft voter");
            return;
        }
        let node = member.node_id.clone();
        let asked = member
            .call_managers(|mut c| {
                let node = node.clone();
                async move {
                    c.add_voter(super::rpc::VoterRequest { node })
                        .await
                        .map(drop)
                }
            })
            .await;
        if let Err(e) = asked {
            tracing::info!("asking to become a Raft voter: {e}; retrying");
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Follows this node's own entry in the state: role changes renew the
/// certificate; removal from the swarm makes the node leave. A node whose
/// entry lacks its tunnel key (it made a new one, or its entry is from
/// before encrypted networks) renews its certificate once, which reports
/// the key.
async fn follow_self(member: Arc<Member>) {
    let mut rx = member.watch_state();
    let mut seen = false;
    // Once per start: a leader that does not record the key (an older
    // version) must not make this node renew on every change.
    let mut key_reported = false;
    // The trust last followed, so that it is looked at only when it
    // changes.
    let mut trusted: Option<Trust> = None;
    loop {
        let state = rx.borrow_and_update().clone();
        match state.node(&member.node_id) {
            Some(node) => {
                seen = true;
                member.note_peers(&state).await;
                if trusted.as_ref() != Some(state.trust()) {
                    if let Err(e) = member.follow_trust(state.trust()).await {
                        tracing::warn!("following the cluster's CAs: {e}");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                    trusted = Some(state.trust().clone());
                }
                if node.role != member.creds.role()
                    && let Err(e) = member.change_role(node.role).await
                {
                    tracing::warn!("changing role: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                if !key_reported && member.unrecorded_tunnel_key().is_some() {
                    if let Err(e) = member.renew_own().await {
                        tracing::warn!("reporting this node's tunnel key: {e}; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                    tracing::info!("reported this node's tunnel key to the managers");
                    key_reported = true;
                }
            }
            None if seen => {
                tracing::warn!("this node was removed from the swarm; leaving");
                if let Err(e) = member.depart().await {
                    tracing::error!("leaving after removal: {e}");
                }
                return;
            }
            None => {}
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Renews this node's certificate when about two thirds of what was left
/// of its life have passed, a little earlier at random so that nodes that
/// joined together spread their renewals; after a failure it tries again
/// at two thirds of what is left then, well before the certificate
/// expires. A role change renews on its own ([`follow_self`]).
async fn renew_when_due(member: Arc<Member>) {
    loop {
        let left = member
            .creds
            .not_after()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let wait = left.mul_f64(2.0 / 3.0 - jitter(0.1));
        tokio::time::sleep(wait.max(RENEW_FLOOR)).await;
        let role = member.local_state().node(&member.node_id).map(|n| n.role);
        if role != Some(member.creds.role()) {
            // Being removed, or changing role: that renews by itself.
            continue;
        }
        let started = tokio::time::Instant::now();
        match member.renew_own().await {
            Ok(cert) => tracing::info!(
                "renewed this node's certificate in {:?}; it expires in {:?}",
                started.elapsed(),
                cert.not_after()
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
            ),
            Err(e) => tracing::warn!(
                "renewing this node's certificate, which expires in {left:?}: {e}; retrying"
            ),
        }
    }
}

/// The least time between two renewal attempts.
const RENEW_FLOOR: Duration = Duration::from_millis(200);

/// A random fraction in `[0, max)`.
fn jitter(max: f64) -> f64 {
    let mut b = [0u8; 2];
    if crate::ids::random_bytes(&mut b).is_err() {
        return 0.0;
    }
    f64::from(u16::from_le_bytes(b)) / 65536.0 * max
}

/// `t` in seconds since the Unix epoch.
pub(super) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
