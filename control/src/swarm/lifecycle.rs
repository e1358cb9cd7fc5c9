//! Forming, joining and leaving a swarm, and the operator's node commands.
//!
//! The CA (certificate and key), the join tokens and the cluster id live
//! in the replicated state as secrets, so any manager can admit a node or
//! renew a certificate, and a new leader carries on where the old one
//! stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_dataplane::tables::WgKey;

use super::files::{Identity, NodeRecord, SwarmDir};
use super::member::{Member, Start};
use super::rpc::{JoinRequest, JoinResponse, VoterRequest};
use super::view::find_node;
use super::{
    CaOptions, CaReply, InitReply, JoinOptions, JoinReply, NodeChange, SwarmConfig, SwarmError,
    SwarmUpdate, TokenOptions, TokenReply,
};
use crate::api;
use crate::pki::{
    CaCertificate, ClusterCa, JoinToken, NODE_CERT_VALIDITY, NodeCert, NodeKey, Tokens,
    check_validity,
};
use crate::state::{
    Availability, CertRecord, ClusterState, Command, Node, NodeStatus, NodeUpdate, Rotation,
    SecretBytes, Trust,
};
use crate::{NodeId, Role};

const SECRET_TOKENS: &str = "swarm-tokens";
const SECRET_CA_CERT: &str = "swarm-ca-cert";
const SECRET_CA_KEY: &str = "swarm-ca-key";
const SECRET_CLUSTER_ID: &str = "swarm-cluster-id";
/// How long node certificates live, in seconds (`--cert-expiry`).
const SECRET_CERT_EXPIRY: &str = "swarm-cert-expiry";
/// The organization in every certificate of the cluster.
const CLUSTER_NAME: &str = "shoal";

fn secret(name: &str, value: impl Into<Vec<u8>>) -> Command {
    Command::SetSecret {
        name: name.into(),
        value: SecretBytes(value.into()),
    }
}

fn secret_text<'a>(state: &'a ClusterState, name: &str) -> Result<&'a str, String> {
    let bytes = state
        .secret(name)
        .ok_or_else(|| format!("the cluster state has no `{name}`; is this swarm initialized?"))?;
    std::str::from_utf8(bytes).map_err(|_| format!("the cluster secret `{name}` is damaged"))
}

/// The cluster CA, from the state.
pub(super) fn cluster_ca(state: &ClusterState) -> Result<ClusterCa, String> {
    ClusterCa::from_pem(
        secret_text(state, SECRET_CA_CERT)?,
        secret_text(state, SECRET_CA_KEY)?,
    )
    .map_err(|e| e.to_string())
}

/// How long the certificates issued now live, from the state.
pub(super) fn cert_expiry(state: &ClusterState) -> Duration {
    secret_text(state, SECRET_CERT_EXPIRY)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(NODE_CERT_VALIDITY, Duration::from_secs)
}

/// The join tokens, from the state.
fn tokens(state: &ClusterState) -> Result<Tokens, String> {
    serde_json::from_str(secret_text(state, SECRET_TOKENS)?)
        .map_err(|e| format!("the cluster's join tokens are damaged: {e}"))
}

/// The CAs the cluster trusts, from the state: what its trust names, or
/// in a state from before CA rotation, the CA.
pub(super) fn trusted_roots(state: &ClusterState) -> Result<Vec<CaCertificate>, String> {
    let trust = state.trust();
    if trust.root.is_empty() {
        return CaCertificate::from_pem(secret_text(state, SECRET_CA_CERT)?)
            .map(|ca| vec![ca])
            .map_err(|e| e.to_string());
    }
    trust
        .roots()
        .into_iter()
        .map(|pem| CaCertificate::from_pem(pem).map_err(|e| e.to_string()))
        .collect()
}

/// The state's trust naming `ca` alone.
fn trust_in(ca: &CaCertificate) -> Command {
    Command::SetTrust(Trust {
        root: ca.pem().to_owned(),
        rotation: None,
    })
}

/// `swarm ca`'s answer, from the state.
fn ca_reply(state: &ClusterState) -> Result<CaReply, String> {
    let current = cluster_ca(state)?;
    let digest = current.digest().to_string();
    let pending: Vec<String> = state
        .nodes()
        .values()
        .filter(|n| !issued_by(n, &digest))
        .map(|n| match n.status {
            NodeStatus::Down => format!("{} (down)", n.hostname),
            _ => n.hostname.clone(),
        })
        .collect();
    Ok(CaReply {
        root_pem: current.cert_pem().to_owned(),
        digest,
        rotating: state.trust().rotation.is_some(),
        nodes: state.nodes().len(),
        renewed: state.nodes().len() - pending.len(),
        pending,
    })
}

/// True when the state records that the CA with `digest` (hex) issued
/// `node`'s current certificate.
fn issued_by(node: &Node, digest: &str) -> bool {
    node.cert.as_ref().and_then(|c| c.issuer.as_deref()) == Some(digest)
}

/// On the leader: ends a CA rotation once every node's certificate is
/// the new CA's, by trusting the new CA alone.
pub(super) fn rotation_end(state: &ClusterState) -> Option<Command> {
    let trust = state.trust();
    trust.rotation.as_ref()?;
    let digest = CaCertificate::from_pem(&trust.root)
        .ok()?
        .digest()
        .to_string();
    let done = state.nodes().values().all(|n| issued_by(n, &digest));
    done.then(|| {
        Command::SetTrust(Trust {
            root: trust.root.clone(),
            rotation: None,
        })
    })
}

/// What the state records of `cert`, issued by `ca`.
pub(super) fn cert_record(cert: &NodeCert, ca: &ClusterCa) -> CertRecord {
    let not_after_ms = cert
        .not_after()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    CertRecord {
        serial: cert.serial().to_owned(),
        not_after_ms,
        issuer: Some(ca.digest().to_string()),
    }
}

fn node_record(
    config: &SwarmConfig,
    id: NodeId,
    role: Role,
    addr: SocketAddr,
    gossip_addr: SocketAddr,
    cert: &NodeCert,
    ca: &ClusterCa,
) -> Node {
    Node {
        id,
        hostname: config.hostname.clone(),
        role,
        availability: Availability::Active,
        status: NodeStatus::Unknown,
        labels: Default::default(),
        addr,
        gossip_addr,
        engine: config.dataplane.clone(),
        cert: Some(cert_record(cert, ca)),
        tunnel_key: config.tunnel_key,
    }
}

/// `swarm init`: a CA, tokens, this node as the first manager and leader.
/// On any failure nothing stays behind.
pub(in crate::swarm) async fn init(
    config: &SwarmConfig,
    dir: SwarmDir,
    addr: SocketAddr,
    gossip_addr: SocketAddr,
    cert_expiry: Duration,
) -> Result<(Arc<Member>, InitReply), SwarmError> {
    let ca = ClusterCa::generate(CLUSTER_NAME)?;
    let tokens = Tokens::generate(ca.digest())?;
    let node_id = NodeId::generate().map_err(|e| SwarmError::Refused(e.to_string()))?;
    let cluster_id = NodeId::generate()
        .map_err(|e| SwarmError::Refused(e.to_string()))?
        .to_string();
    let key = NodeKey::generate()?;
    let cert = ca.issue_for(
        &node_id,
        Role::Manager,
        &key.csr_pem(&node_id)?,
        cert_expiry,
    )?;
    let first = node_record(
        config,
        node_id.clone(),
        Role::Manager,
        addr,
        gossip_addr,
        &cert,
        &ca,
    );
    let identity = Identity {
        record: NodeRecord {
            node_id: node_id.clone(),
            cluster_id: cluster_id.clone(),
            addr,
            gossip_addr,
            managers: vec![addr],
            gossip_seeds: Vec::new(),
        },
        roots: vec![ca.certificate().clone()],
        cert,
        key,
    };
    // A leftover Raft directory from an old swarm must not leak into this one.
    dir.remove()?;
    dir.save(&identity)?;
    let started = async {
        let member = Member::start(config, dir.clone(), identity, Start::Init).await?;
        let commands = [
            secret(SECRET_CLUSTER_ID, cluster_id.clone()),
            secret(SECRET_CA_CERT, ca.cert_pem()),
            secret(SECRET_CA_KEY, ca.key_pem()),
            secret(SECRET_CERT_EXPIRY, cert_expiry.as_secs().to_string()),
            trust_in(ca.certificate()),
            secret(
                SECRET_TOKENS,
                serde_json::to_vec(&tokens).map_err(|e| SwarmError::Refused(e.to_string()))?,
            ),
            Command::AddNode(first),
            Command::CreateNetwork(super::networks::ingress_spec()?),
        ];
        for cmd in commands {
            if let Err(e) = member.write(cmd).await {
                member.stop().await;
                return Err(e);
            }
        }
        Ok(member)
    };
    match started.await {
        Ok(member) => {
            tracing::info!("swarm initialized; node {node_id} is its first manager");
            Ok((
                member,
                InitReply {
                    node_id,
                    addr,
                    worker_token: tokens.worker.to_string(),
                },
            ))
        }
        Err(e) => {
            let _ = dir.remove();
            Err(e)
        }
    }
}

/// `swarm join`: pins the CA by the token, gets a certificate, starts.
pub(in crate::swarm) async fn join(
    config: &SwarmConfig,
    dir: SwarmDir,
    opts: &JoinOptions,
    addr: SocketAddr,
    gossip_addr: SocketAddr,
) -> Result<(Arc<Member>, JoinReply), SwarmError> {
    let node_id = NodeId::generate().map_err(|e| SwarmError::Refused(e.to_string()))?;
    let key = NodeKey::generate()?;
    let request = JoinRequest {
        token: opts.token.trim().to_owned(),
        node_id: node_id.clone(),
        hostname: config.hostname.clone(),
        csr_pem: key.csr_pem(&node_id)?,
        addr,
        gossip_addr,
        engine: config.dataplane.clone(),
        rejoin: None,
        tunnel_key: config.tunnel_key,
    };
    let (ca, cert, answer) = ask_to_join(opts, request).await?;
    if !cert.is_for_key(&key) {
        return Err(SwarmError::Refused(
            "the manager answered with a certificate for another key; not joined".into(),
        ));
    }
    let role = cert.role();
    let mut roots = vec![ca];
    for pem in &answer.roots_pem {
        let root = CaCertificate::from_pem(pem)?;
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    let identity = Identity {
        record: NodeRecord {
            node_id: node_id.clone(),
            cluster_id: answer.cluster_id,
            addr,
            gossip_addr,
            managers: answer.managers,
            gossip_seeds: answer.gossip_seeds,
        },
        roots,
        cert,
        key,
    };
    dir.remove()?;
    dir.save(&identity)?;
    let member = match Member::start(config, dir.clone(), identity, Start::Join).await {
        Ok(m) => m,
        Err(e) => {
            let _ = dir.remove();
            return Err(e);
        }
    };
    if role == Role::Manager {
        member.wait_voter().await?;
    }
    tracing::info!("joined the swarm as {role} node {node_id}");
    Ok((
        member,
        JoinReply {
            node_id,
            role,
            rejoined: false,
        },
    ))
}

/// Sends `request` to the manager `opts` names, whose CA must be the one
/// the token pins; returns that CA, the certificate it issued (checked to
/// be signed by it, for the node asking) and the answer.
async fn ask_to_join(
    opts: &JoinOptions,
    request: JoinRequest,
) -> Result<(CaCertificate, NodeCert, JoinResponse), SwarmError> {
    let token = JoinToken::parse(&opts.token)?;
    let (tls, accepted) =
        api::pinned_client_config(token.ca_digest()).map_err(super::member::api_error)?;
    let unreachable = |reason: String| SwarmError::Unreachable {
        addr: opts.remote,
        reason,
    };
    let channel = api::connect(opts.remote, tls, super::member::ANY_MANAGER)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let ca = accepted
        .get()
        .ok_or_else(|| unreachable("the manager presented no CA certificate".into()))?;
    token.pin(&ca)?;
    let node_id = request.node_id.clone();
    let answer = super::service::client(channel)
        .join(request)
        .await
        .map_err(|s| SwarmError::Refused(s.message().to_owned()))?
        .into_inner();
    let cert = NodeCert::from_pem(&answer.cert_pem)?;
    cert.verify_issued_by(&ca)?;
    if cert.node_id() != &node_id {
        return Err(SwarmError::Refused(
            "the manager answered with a certificate for another node; not joined".into(),
        ));
    }
    Ok((ca, cert, answer))
}

impl Member {
    /// `swarm join` on a node whose certificate expired while it was down
    /// (it could not renew it, and no call is accepted with it): the token
    /// admits the same node again, with its id, key and files, and it
    /// carries on with a new certificate. Its place in the state (labels,
    /// tasks) is untouched.
    pub(super) async fn rejoin(&self, opts: &JoinOptions) -> Result<JoinReply, SwarmError> {
        let token = JoinToken::parse(&opts.token)?;
        if !self.creds.roots().iter().any(|ca| token.pin(ca).is_ok()) {
            return Err(SwarmError::Refused(format!(
                "this token is for another swarm, or for a CA this node does not know (rotated \
                 while it was away); this node belongs to swarm {} (its certificate expired): \
                 rejoin it with a token of that swarm, or leave it first with `shoal swarm leave \
                 --force` and join anew",
                self.cluster_id
            )));
        }
        let request = JoinRequest {
            token: opts.token.trim().to_owned(),
            node_id: self.node_id.clone(),
            hostname: self.config.hostname.clone(),
            csr_pem: self.creds.csr(&self.node_id)?,
            addr: self.addr,
            gossip_addr: self.gossip_addr(),
            engine: self.config.dataplane.clone(),
            rejoin: Some(self.creds.cert().pem().to_owned()),
            tunnel_key: self.config.tunnel_key,
        };
        let (_, cert, _) = ask_to_join(opts, request).await?;
        let role = cert.role();
        self.install(cert)?;
        tracing::info!("rejoined the swarm as {role} node {}", self.node_id);
        Ok(JoinReply {
            node_id: self.node_id.clone(),
            role,
            rejoined: true,
        })
    }

    /// The role a join token grants by the tokens in `state`, or why it
    /// grants none.
    pub(super) fn check_token(&self, token: &str, state: &ClusterState) -> Result<Role, String> {
        let token = JoinToken::parse(token).map_err(|e| e.to_string())?;
        if let Some(rotation) = &state.trust().rotation
            && CaCertificate::from_pem(&rotation.previous).is_ok_and(|ca| token.pin(&ca).is_ok())
        {
            return Err(
                "join token pins the swarm's previous CA, replaced by `shoal swarm ca --rotate`; \
                 get a fresh one with `shoal swarm join-token worker` (or `manager`) on a manager"
                    .into(),
            );
        }
        tokens(state)?.role_of(&token).map_err(|e| e.to_string())
    }

    /// On the leader: admits a joining node, or says why not. The token is
    /// checked against a linearizable read, so a rotated token is refused
    /// at once.
    pub(super) async fn admit(
        &self,
        req: JoinRequest,
        state: &ClusterState,
    ) -> Result<JoinResponse, String> {
        let role = self.check_token(&req.token, state)?;
        if req.hostname.is_empty() || req.hostname.len() > 253 {
            return Err("a node's hostname must have 1 to 253 characters".into());
        }
        if req.tunnel_key.is_some_and(|k| k.0 == [0; 32]) {
            return Err(format!(
                "node `{}` presents an all-zero tunnel key; remove `tunnel.key` from its state \
                 directory and restart its daemon to make a new one",
                req.node_id
            ));
        }
        let ca = cluster_ca(state)?;
        if let Some(node) = state.node(&req.node_id) {
            return self.readmit(req, node, role, &ca, state).await;
        }
        let cert = ca
            .issue_for(&req.node_id, role, &req.csr_pem, cert_expiry(state))
            .map_err(|e| e.to_string())?;
        let node = Node {
            id: req.node_id.clone(),
            hostname: req.hostname,
            role,
            availability: Availability::Active,
            status: NodeStatus::Unknown,
            labels: Default::default(),
            addr: req.addr,
            gossip_addr: req.gossip_addr,
            engine: req.engine,
            cert: Some(cert_record(&cert, &ca)),
            tunnel_key: req.tunnel_key,
        };
        self.write(Command::AddNode(node))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("node {} joined as {role}", req.node_id);
        self.welcome(role, &cert, state).await
    }

    /// Takes back a node the state still lists whose certificate expired
    /// while it was down. It proves it is that node with its last
    /// certificate (signed by the cluster CA, the one the state records)
    /// and a CSR for the same key, and brings a token for the role the
    /// state gives it. It gets a new certificate, and its tunnel key is
    /// recorded if it changed; nothing else in the state changes, so its
    /// labels, its tasks and their definitions stay.
    async fn readmit(
        &self,
        req: JoinRequest,
        node: &Node,
        role: Role,
        ca: &ClusterCa,
        state: &ClusterState,
    ) -> Result<JoinResponse, String> {
        let id = &req.node_id;
        let Some(last) = req.rejoin.as_deref() else {
            return Err(format!(
                "node `{id}` is already a member of this swarm; it rejoins by presenting its last \
                 certificate, which `shoal swarm join` on that node does"
            ));
        };
        let last = NodeCert::from_pem(last)
            .map_err(|e| format!("the last certificate of node `{id}`: {e}"))?;
        if last.issuer_among(&trusted_roots(state)?).is_none() {
            return Err(format!(
                "the last certificate of node `{id}` was not issued by a CA this swarm trusts; \
                 the CA may have been rotated since: remove the node (`shoal node rm`) and join \
                 it anew"
            ));
        }
        if last.node_id() != id {
            return Err(format!(
                "the certificate presented is node `{}`'s, not `{id}`'s",
                last.node_id()
            ));
        }
        if let Some(record) = &node.cert
            && record.serial != last.serial()
        {
            return Err(format!(
                "the certificate of node `{id}` with serial {} was replaced by a newer one \
                 (serial {}); only the newest lets it rejoin",
                last.serial(),
                record.serial
            ));
        }
        if node.role != role {
            return Err(format!(
                "node `{id}` is a {} in the cluster state; it rejoins with the {} join token",
                node.role, node.role
            ));
        }
        let cert = ca
            .issue_for(id, role, &req.csr_pem, cert_expiry(state))
            .map_err(|e| e.to_string())?;
        if !cert.same_key_as(&last) {
            return Err(format!(
                "the CSR is not for the key of node `{id}`'s certificate; a node rejoins with its \
                 own key"
            ));
        }
        self.write(Command::UpdateNode {
            id: id.clone(),
            update: NodeUpdate {
                cert: Some(cert_record(&cert, ca)),
                tunnel_key: req.tunnel_key.filter(|k| node.tunnel_key != Some(*k)),
                ..NodeUpdate::default()
            },
        })
        .await
        .map_err(|e| format!("recording the new certificate: {e}"))?;
        tracing::info!("node {id} rejoined as {role} with a new certificate");
        self.welcome(role, &cert, state).await
    }

    /// What a node admitted with `cert` is told.
    async fn welcome(
        &self,
        role: Role,
        cert: &NodeCert,
        state: &ClusterState,
    ) -> Result<JoinResponse, String> {
        let after = self.replica().await;
        Ok(JoinResponse {
            role,
            cert_pem: cert.pem().to_owned(),
            cluster_id: secret_text(state, SECRET_CLUSTER_ID)?.to_owned(),
            managers: after
                .nodes()
                .values()
                .filter(|n| n.role == Role::Manager)
                .map(|n| n.addr)
                .collect(),
            gossip_seeds: after.nodes().values().map(|n| n.gossip_addr).collect(),
            roots_pem: trusted_roots(state)?
                .iter()
                .map(|ca| ca.pem().to_owned())
                .collect(),
        })
    }

    /// A new certificate for `node` in the role the state gives it. Its
    /// serial is committed to the state before it is handed out: from then
    /// on only the new certificate is accepted. A `tunnel_key` the node
    /// reports is recorded with it.
    pub(super) async fn renew(
        &self,
        node: &NodeId,
        csr: &str,
        tunnel_key: Option<WgKey>,
    ) -> Result<String, String> {
        let state = self.replica().await;
        let role = state
            .node(node)
            .map(|n| n.role)
            .ok_or_else(|| format!("node `{node}` is not a member of this swarm"))?;
        let ca = cluster_ca(&state)?;
        let cert = ca
            .issue_for(node, role, csr, cert_expiry(&state))
            .map_err(|e| e.to_string())?;
        self.write(Command::UpdateNode {
            id: node.clone(),
            update: NodeUpdate {
                cert: Some(cert_record(&cert, &ca)),
                tunnel_key,
                ..NodeUpdate::default()
            },
        })
        .await
        .map_err(|e| format!("recording the new certificate: {e}"))?;
        Ok(cert.pem().to_owned())
    }

    /// Waits until this (manager) node is a Raft voter.
    async fn wait_voter(&self) -> Result<(), SwarmError> {
        for _ in 0..1200 {
            if let Some(c) = self.consensus().await
                && c.voters().iter().any(|p| p.id == self.node_id)
            {
                return Ok(());
            }
            tokio::time::sleep(super::member::RETRY / 10).await;
        }
        Err(SwarmError::Consensus(
            "joined, but the leader has not made this node a Raft voter within 60 s; it keeps \
             asking: check `shoal node ls` on a manager"
                .into(),
        ))
    }

    /// `swarm update`.
    pub(super) async fn update_swarm(&self, opts: SwarmUpdate) -> Result<(), SwarmError> {
        if let Some(expiry) = opts.cert_expiry {
            check_validity(expiry)?;
            self.write(secret(SECRET_CERT_EXPIRY, expiry.as_secs().to_string()))
                .await?;
            tracing::info!("node certificates now live {expiry:?} from their next renewal");
        }
        if opts.rotate_gossip_key {
            let cmd = super::leader::gossip_key()
                .map_err(|e| SwarmError::Refused(format!("no random gossip key: {e}")))?;
            self.write(cmd).await?;
            tracing::info!(
                "new gossip key; every node seals with it {:?} after it learns it",
                crate::membership::seal::SWITCH_AFTER
            );
        }
        Ok(())
    }

    /// `swarm ca`: the cluster's CA, and with `rotate` a new one. A
    /// rotation generates the new CA, certifies its key with the old one
    /// (cross-signing) and, in one change of the state, makes it the
    /// issuer, tells every node to trust both, and re-pins the join tokens
    /// (their secrets stay). Every node then renews its certificate with
    /// the new CA by itself; once all have, the leader drops the old CA
    /// ([`rotation_end`]).
    pub(super) async fn ca(&self, opts: CaOptions) -> Result<CaReply, SwarmError> {
        let state = self.read().await?;
        if !opts.rotate {
            return ca_reply(&state).map_err(SwarmError::Refused);
        }
        if state.trust().rotation.is_some() {
            let reply = ca_reply(&state).map_err(SwarmError::Refused)?;
            return Err(SwarmError::Refused(format!(
                "a CA rotation is already running: {} of {} nodes have certificates of the new \
                 CA (waiting for {}); see `shoal swarm ca`, and `shoal node rm` a node that will \
                 not come back",
                reply.renewed,
                reply.nodes,
                reply.pending.join(", ")
            )));
        }
        let old = cluster_ca(&state).map_err(SwarmError::Refused)?;
        let new = ClusterCa::generate(old.cluster_name())?;
        let cross = old.cross_sign(&new)?;
        let mut tokens = tokens(&state).map_err(SwarmError::Refused)?;
        tokens.repin(new.digest());
        let tokens = serde_json::to_vec(&tokens).map_err(|e| SwarmError::Refused(e.to_string()))?;
        self.write(Command::Batch(vec![
            secret(SECRET_CA_CERT, new.cert_pem()),
            secret(SECRET_CA_KEY, new.key_pem()),
            secret(SECRET_TOKENS, tokens),
            Command::SetTrust(Trust {
                root: new.cert_pem().to_owned(),
                rotation: Some(Rotation {
                    previous: old.cert_pem().to_owned(),
                    cross_signed: cross.pem().to_owned(),
                }),
            }),
        ]))
        .await?;
        tracing::info!(
            "CA rotation started: {} replaces {}; every node renews its certificate",
            new.digest(),
            old.digest()
        );
        // This manager's replica may not have applied the change yet.
        let after = self.read().await?;
        ca_reply(&after).map_err(SwarmError::Refused)
    }

    /// `swarm join-token`.
    pub(super) async fn join_token(&self, opts: TokenOptions) -> Result<TokenReply, SwarmError> {
        let state = self.read().await?;
        let mut tokens = tokens(&state).map_err(SwarmError::Refused)?;
        if opts.rotate {
            tokens
                .rotate(opts.role)
                .map_err(|e| SwarmError::Refused(e.to_string()))?;
            let bytes =
                serde_json::to_vec(&tokens).map_err(|e| SwarmError::Refused(e.to_string()))?;
            self.write(secret(SECRET_TOKENS, bytes)).await?;
        }
        Ok(TokenReply {
            role: opts.role,
            token: tokens.get(opts.role).to_string(),
            addr: self.addr,
        })
    }

    /// `node update`, `promote`, `demote`.
    pub(super) async fn update_node(
        &self,
        key: &str,
        change: NodeChange,
    ) -> Result<(), SwarmError> {
        let state = self.read().await?;
        let id = find_node(&state, key)
            .map_err(SwarmError::Refused)?
            .id
            .clone();
        let update = NodeUpdate {
            availability: change.availability,
            role: change.role,
            labels_add: change.labels_add,
            labels_rm: change.labels_rm,
            ..NodeUpdate::default()
        };
        self.write(Command::UpdateNode { id, update })
            .await
            .map(drop)
    }

    /// `node rm`.
    pub(super) async fn remove_node(&self, key: &str, force: bool) -> Result<(), SwarmError> {
        let state = self.read().await?;
        let id = find_node(&state, key)
            .map_err(SwarmError::Refused)?
            .id
            .clone();
        self.write(Command::RemoveNode { id, force })
            .await
            .map(drop)
    }

    /// `swarm leave`: a manager first stops being one (unless that breaks
    /// quorum, or it is the last, and `force` is not given).
    pub(super) async fn leave(&self, force: bool) -> Result<(), SwarmError> {
        if let Some(consensus) = self.consensus().await {
            let live = self.liveness().await;
            let total = consensus.voters().len();
            let reachable = consensus
                .voters()
                .iter()
                .filter(|p| live.alive.contains(&p.id))
                .count();
            if !force {
                if total <= 1 {
                    return Err(SwarmError::LastManager);
                }
                let (remaining, after) = (reachable.saturating_sub(1), total - 1);
                if remaining < after / 2 + 1 {
                    return Err(SwarmError::LeaveBreaksQuorum {
                        remaining,
                        total: after,
                    });
                }
            }
            if total > 1 {
                let demoted = self
                    .call_managers(|mut c| {
                        let node = self.node_id.clone();
                        async move { c.leave(VoterRequest { node }).await.map(drop) }
                    })
                    .await;
                if let Err(e) = demoted {
                    if !force {
                        return Err(e);
                    }
                    tracing::warn!("leaving without demotion (forced): {e}");
                }
            }
        }
        self.depart().await?;
        tracing::info!("left the swarm");
        Ok(())
    }

    /// On the leader: a manager leaves. It is demoted in the state (the
    /// leader's loop then removes it from the voters) and marked down.
    pub(super) async fn retire(&self, node: &NodeId) -> Result<(), SwarmError> {
        self.write(Command::UpdateNode {
            id: node.clone(),
            update: NodeUpdate {
                role: Some(Role::Worker),
                status: Some(NodeStatus::Down),
                ..NodeUpdate::default()
            },
        })
        .await?;
        let consensus = self.consensus().await.ok_or(SwarmError::NotManager)?;
        consensus
            .remove_voter(crate::consensus::raft_id(node))
            .await
            .map_err(|e| SwarmError::Consensus(e.to_string()))
    }

    /// On the leader: makes a manager node a voter.
    pub(super) async fn add_voter(&self, node: &NodeId) -> Result<(), SwarmError> {
        let consensus = self.consensus().await.ok_or(SwarmError::NotManager)?;
        if consensus.voters().iter().any(|p| &p.id == node) {
            return Ok(());
        }
        let state = consensus.local_state();
        let n = state.node(node).ok_or_else(|| {
            SwarmError::Refused(format!("node `{node}` is not a member of this swarm"))
        })?;
        if n.role != Role::Manager {
            return Err(SwarmError::Refused(format!(
                "node `{node}` is a worker; promote it with `shoal node promote` first"
            )));
        }
        consensus
            .add_voter(crate::consensus::Peer {
                id: node.clone(),
                addr: n.addr,
            })
            .await
            .map_err(|e| SwarmError::Consensus(e.to_string()))
    }
}
