//! A node's life in a swarm: forming it (`init`), joining it, leaving it,
//! and, while a member, serving the cluster API, gossiping, replicating
//! the state (managers) or following it (workers), and the leader's
//! duties. This is where the pure parts ([`crate::pki`], [`crate::state`],
//! [`crate::membership`]) meet the sockets ([`crate::api`],
//! [`crate::consensus`]).
//!
//! - [`Swarm`]: the daemon's handle; one operation at a time changes
//!   whether this node is a member;
//! - `member`: a running member (credentials, state feed, role changes);
//! - `service`: the cluster API's handlers;
//! - `leader`: the leader's loop over [`reconcile`]'s decisions;
//! - [`files`]: what a member keeps on disk;
//! - [`view`] and [`ops`]: what the admin API carries;
//! - `operators`: operator certificates, and the gate that lets operator
//!   connections through to the admin API.

mod access;
mod calls;
mod channels;
mod error;
pub mod files;
mod follow;
mod gossip;
mod leader;
mod lifecycle;
mod logs;
mod member;
mod metrics;
mod networks;
mod operators;
mod ops;
pub mod reconcile;
pub mod rpc;
mod service;
mod services;
mod stacks;
mod tasks;
mod transport;
pub mod view;
mod watchdog;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_dataplane::tables::WgKey;
use tokio::sync::{Mutex, RwLock};

pub use error::SwarmError;
pub use gossip::LiveSet;
pub use logs::{LogsRequest, TaskLog};
pub use metrics::SwarmMetrics;
pub use networks::{NetworkOptions, NetworkView};
pub use operators::{OperatorReply, OperatorSession, OperatorSink};
pub use ops::{
    CaOptions, CaReply, InitOptions, InitReply, JoinOptions, JoinReply, LeaveOptions, NodeChange,
    SwarmUpdate, TokenOptions, TokenReply,
};
pub use services::{
    Policies, ServiceChange, ServiceOptions, ServiceView, TaskView, UpdateOptions, parse_publish,
};
pub use stacks::{STACK_LABEL, StackDeploy, StackReport, StackView};
pub use view::{Info, ManagerStatus, NodeView};

use self::files::SwarmDir;
use self::member::Member;
use crate::ServiceId;

/// How a node runs in a swarm: the daemon's flags.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// The daemon's state directory.
    pub state_dir: PathBuf,
    /// This node's name in listings.
    pub hostname: String,
    /// The address other nodes reach this one at, unless `init` or `join`
    /// give one.
    pub advertise_ip: Option<IpAddr>,
    /// Where the cluster API listens.
    pub listen_addr: SocketAddr,
    /// Where gossip listens.
    pub gossip_addr: SocketAddr,
    /// How soon a dead node is declared down.
    pub detection: Duration,
    /// The data-plane engine in use, for `info` and the node record.
    pub dataplane: String,
    /// How this node reaches image registries.
    pub registries: crate::image::RegistryOptions,
    /// The OCI runtime that runs image tasks (`runc`, `crun`), see
    /// [`choose_runtime`](crate::agent::container::choose_runtime).
    pub runtime: PathBuf,
    /// Where the agent's tables go.
    pub tables: TablesSink,
    /// The public half of this node's WireGuard key (`tunnel.key` in the
    /// state directory), which the other nodes' encrypted tunnels to it
    /// use; recorded in its node entry.
    pub tunnel_key: Option<WgKey>,
    /// Where operator connections to the cluster API go (the daemon's
    /// admin API); without it they are closed.
    pub operators: Option<OperatorSink>,
}

/// The node's data plane, as the agent feeds it.
#[derive(Clone)]
pub struct TablesSink(pub Arc<dyn crate::agent::DataPlane>);

impl std::fmt::Debug for TablesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TablesSink")
    }
}

impl SwarmConfig {
    /// The advertised cluster API and gossip addresses.
    fn advertised(&self, ip: Option<IpAddr>) -> Result<(SocketAddr, SocketAddr), SwarmError> {
        let ip = ip
            .or(self.advertise_ip)
            .or_else(|| Some(self.listen_addr.ip()).filter(|ip| !ip.is_unspecified()))
            .ok_or(SwarmError::NoAdvertiseAddr)?;
        Ok((
            SocketAddr::new(ip, self.listen_addr.port()),
            SocketAddr::new(ip, self.gossip_addr.port()),
        ))
    }
}

/// The daemon's handle on its swarm membership. Cheap to clone.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

struct Inner {
    config: SwarmConfig,
    dir: SwarmDir,
    /// Held while init, join or leave change whether this node is a member.
    lifecycle: Mutex<()>,
    member: RwLock<Option<Arc<Member>>>,
}

impl Swarm {
    /// Starts the node: as the member it was before a restart, or outside
    /// any swarm until `init` or `join`.
    pub async fn start(config: SwarmConfig) -> Result<Swarm, SwarmError> {
        // Before anything is written: the node's key, and on managers the
        // CA's, live under the state directory.
        let tightened =
            crate::private_dir::claim(&config.state_dir).map_err(|source| SwarmError::Io {
                path: config.state_dir.clone(),
                source,
            })?;
        if tightened > 0 {
            tracing::info!(
                "made {tightened} entries under {} private (0700 folders, 0600 files)",
                config.state_dir.display()
            );
        }
        let dir = SwarmDir::new(&config.state_dir);
        let member = match dir.load()? {
            Some(identity) => {
                tracing::info!(
                    "resuming swarm {} as node {} ({})",
                    identity.record.cluster_id,
                    identity.record.node_id,
                    identity.cert.role()
                );
                Some(Member::start(&config, dir.clone(), identity, member::Start::Resume).await?)
            }
            None => {
                tracing::info!("not in a swarm; waiting for `shoal swarm init` or `join`");
                None
            }
        };
        Ok(Swarm {
            inner: Arc::new(Inner {
                config,
                dir,
                lifecycle: Mutex::new(()),
                member: RwLock::new(member),
            }),
        })
    }

    /// The running member; a member that left on its own (removed from
    /// the swarm by a manager) no longer counts.
    async fn member(&self) -> Result<Arc<Member>, SwarmError> {
        let member = self.inner.member.read().await.clone();
        match member {
            Some(m) if !*m.removed.borrow() => Ok(m),
            Some(_) => {
                *self.inner.member.write().await = None;
                Err(SwarmError::NotInSwarm)
            }
            None => Err(SwarmError::NotInSwarm),
        }
    }

    /// `shoal swarm init`.
    pub async fn init(&self, opts: InitOptions) -> Result<InitReply, SwarmError> {
        let _guard = self.inner.lifecycle.lock().await;
        if self.member().await.is_ok() {
            return Err(SwarmError::AlreadyInSwarm);
        }
        let (addr, gossip_addr) = self.inner.config.advertised(opts.advertise_addr)?;
        let cert_expiry = opts.cert_expiry.unwrap_or(crate::pki::NODE_CERT_VALIDITY);
        crate::pki::check_validity(cert_expiry)?;
        let (member, reply) = member::init(
            &self.inner.config,
            self.inner.dir.clone(),
            addr,
            gossip_addr,
            cert_expiry,
        )
        .await?;
        *self.inner.member.write().await = Some(member);
        Ok(reply)
    }

    /// `shoal swarm join`.
    pub async fn join(&self, opts: JoinOptions) -> Result<JoinReply, SwarmError> {
        let _guard = self.inner.lifecycle.lock().await;
        if let Ok(member) = self.member().await {
            // A node whose certificate expired while it was down comes
            // back with its id; any other is in a swarm already.
            if member.creds.not_after() > std::time::SystemTime::now() {
                return Err(SwarmError::AlreadyInSwarm);
            }
            return member.rejoin(&opts).await;
        }
        let (addr, gossip_addr) = self.inner.config.advertised(opts.advertise_addr)?;
        let (member, reply) = member::join(
            &self.inner.config,
            self.inner.dir.clone(),
            &opts,
            addr,
            gossip_addr,
        )
        .await?;
        *self.inner.member.write().await = Some(member);
        Ok(reply)
    }

    /// `shoal swarm update`.
    pub async fn update(&self, opts: SwarmUpdate) -> Result<(), SwarmError> {
        self.member().await?.update_swarm(opts).await
    }

    /// `shoal swarm ca`.
    pub async fn ca(&self, opts: CaOptions) -> Result<CaReply, SwarmError> {
        self.member().await?.ca(opts).await
    }

    /// `shoal swarm ca client-cert`: an operator certificate over `csr`.
    pub async fn issue_operator(&self, csr: &str) -> Result<OperatorReply, SwarmError> {
        self.member().await?.issue_operator(csr).await
    }

    /// `shoal swarm ca revoke-client`.
    pub async fn revoke_operator(&self, id: &str) -> Result<(), SwarmError> {
        self.member().await?.revoke_operator(id).await
    }

    /// `shoal swarm join-token`.
    pub async fn join_token(&self, opts: TokenOptions) -> Result<TokenReply, SwarmError> {
        self.member().await?.join_token(opts).await
    }

    /// `shoal swarm leave`.
    pub async fn leave(&self, opts: LeaveOptions) -> Result<(), SwarmError> {
        let _guard = self.inner.lifecycle.lock().await;
        let member = self.member().await?;
        member.leave(opts.force).await?;
        *self.inner.member.write().await = None;
        Ok(())
    }

    /// `shoal node ls`.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, SwarmError> {
        let member = self.member().await?;
        let state = member.read().await?;
        Ok(NodeView::all(&state, &member.liveness().await))
    }

    /// `shoal node inspect`.
    pub async fn node(&self, key: &str) -> Result<NodeView, SwarmError> {
        let member = self.member().await?;
        let state = member.read().await?;
        let key = if key == "self" {
            member.node_id.as_str()
        } else {
            key
        };
        let node = view::find_node(&state, key).map_err(SwarmError::Refused)?;
        Ok(NodeView::of(node, &member.liveness().await))
    }

    /// `shoal node update`, `promote`, `demote`.
    pub async fn update_node(&self, key: &str, change: NodeChange) -> Result<(), SwarmError> {
        self.member().await?.update_node(key, change).await
    }

    /// `shoal node rm`.
    pub async fn remove_node(&self, key: &str, force: bool) -> Result<(), SwarmError> {
        self.member().await?.remove_node(key, force).await
    }

    /// `shoal network create`.
    pub async fn create_network(&self, o: NetworkOptions) -> Result<NetworkView, SwarmError> {
        self.member().await?.create_network(o).await
    }

    /// `shoal network ls`.
    pub async fn networks(&self) -> Result<Vec<NetworkView>, SwarmError> {
        self.member().await?.networks().await
    }

    /// `shoal network inspect`.
    pub async fn network(&self, key: &str) -> Result<NetworkView, SwarmError> {
        self.member().await?.network(key).await
    }

    /// `shoal network rm`.
    pub async fn remove_network(&self, key: &str) -> Result<(), SwarmError> {
        self.member().await?.remove_network(key).await
    }

    /// `shoal service create`.
    pub async fn create_service(&self, o: ServiceOptions) -> Result<ServiceView, SwarmError> {
        self.member().await?.create_service(o).await
    }

    /// `shoal service ls`.
    pub async fn services(&self) -> Result<Vec<ServiceView>, SwarmError> {
        self.member().await?.services().await
    }

    /// `shoal service inspect`.
    pub async fn service(&self, key: &str) -> Result<ServiceView, SwarmError> {
        self.member().await?.service(key).await
    }

    /// `shoal service ps`.
    pub async fn service_tasks(&self, key: &str) -> Result<Vec<TaskView>, SwarmError> {
        self.member().await?.service_tasks(key).await
    }

    /// `shoal node ps`.
    pub async fn node_tasks(&self, key: &str) -> Result<Vec<TaskView>, SwarmError> {
        self.member().await?.node_tasks(key).await
    }

    /// `shoal service scale`.
    pub async fn scale_service(&self, key: &str, replicas: u64) -> Result<(), SwarmError> {
        self.member().await?.scale_service(key, replicas).await
    }

    /// `shoal service update`.
    pub async fn update_service(&self, key: &str, change: ServiceChange) -> Result<(), SwarmError> {
        self.member().await?.update_service(key, change).await
    }

    /// `shoal service rollback`.
    pub async fn rollback_service(&self, key: &str) -> Result<(), SwarmError> {
        self.member().await?.rollback_service(key).await
    }

    /// `shoal service rm`.
    pub async fn remove_service(&self, key: &str) -> Result<ServiceId, SwarmError> {
        self.member().await?.remove_service(key).await
    }

    /// `shoal stack deploy`.
    pub async fn deploy_stack(&self, d: StackDeploy) -> Result<StackReport, SwarmError> {
        self.member().await?.deploy_stack(d).await
    }

    /// `shoal stack ls`.
    pub async fn stacks(&self) -> Result<Vec<StackView>, SwarmError> {
        self.member().await?.stacks().await
    }

    /// `shoal stack services`.
    pub async fn stack_services(&self, stack: &str) -> Result<Vec<ServiceView>, SwarmError> {
        self.member().await?.stack_services(stack).await
    }

    /// `shoal stack ps`.
    pub async fn stack_tasks(&self, stack: &str) -> Result<Vec<TaskView>, SwarmError> {
        self.member().await?.stack_tasks(stack).await
    }

    /// `shoal stack rm`.
    pub async fn remove_stack(&self, stack: &str) -> Result<StackReport, SwarmError> {
        self.member().await?.remove_stack(stack).await
    }

    /// `shoal service logs`.
    pub async fn service_logs(
        &self,
        key: &str,
        request: LogsRequest,
    ) -> Result<Vec<TaskLog>, SwarmError> {
        self.member().await?.service_logs(key, request).await
    }

    /// Every node as `node ls` lists it and the whole cluster state, from
    /// one linearizable read: what the visualizer draws.
    pub async fn cluster(
        &self,
    ) -> Result<(Vec<NodeView>, Arc<crate::state::ClusterState>), SwarmError> {
        let member = self.member().await?;
        let state = member.read().await?;
        Ok((NodeView::all(&state, &member.liveness().await), state))
    }

    /// `shoal info`.
    pub async fn info(&self) -> Info {
        match self.member().await {
            Ok(member) => member.info().await,
            Err(_) => Info {
                swarm: "inactive".into(),
                node_id: None,
                hostname: self.inner.config.hostname.clone(),
                role: None,
                cluster_id: None,
                addr: None,
                managers: Vec::new(),
                nodes: 0,
                leader: None,
                raft: None,
                dataplane: self.inner.config.dataplane.clone(),
                cert_expiry: None,
                tunnel_key: self.inner.config.tunnel_key,
                version: env!("CARGO_PKG_VERSION").into(),
            },
        }
    }

    /// Stops serving, keeping the membership for the next start.
    pub async fn shutdown(&self) {
        if let Some(member) = self.inner.member.write().await.take() {
            member.stop().await;
        }
    }
}
