//! The handlers, called over real mTLS on 127.0.0.1 by clients holding
//! the certificates a real node would: one in-process manager made by
//! `swarm init`, and nodes that join it with a token.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use openraft::Vote;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use shoal_dataplane::tables::Tables;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::super::files::SwarmDir;
use super::super::member::ANY_MANAGER;
use super::super::rpc::{
    Empty, JoinRequest, ProposeRequest, RenewRequest, ReportTaskRequest, TaskLogsRequest,
    VoterRequest, WatchMessage,
};
use super::super::{
    CaOptions, InitOptions, NodeChange, Swarm, SwarmConfig, TablesSink, TokenOptions,
};
use super::client;
use crate::agent::DataPlane;
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::api::{self, client_config, pinned_client_config};
use crate::consensus::raft_id;
use crate::pki::{CaCertificate, JoinToken, NodeCert, NodeKey};
use crate::state::{ClusterState, Command, NodeUpdate, TaskUpdate};
use crate::{NodeId, Role, TaskId};

/// Tables go nowhere: these tests run no tasks.
struct NoTables;

#[async_trait::async_trait]
impl DataPlane for NoTables {
    async fn apply(&self, _: Option<&Tables>) -> Result<(), String> {
        Ok(())
    }
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    s.local_addr().unwrap().port()
}

/// A one-manager swarm on 127.0.0.1.
struct TestManager {
    swarm: Swarm,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl TestManager {
    async fn init() -> TestManager {
        TestManager::init_with(None).await
    }

    async fn init_with(cert_expiry: Option<Duration>) -> TestManager {
        let dir = tempfile::tempdir().unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()));
        let config = SwarmConfig {
            state_dir: dir.path().to_path_buf(),
            hostname: "m1".into(),
            advertise_ip: Some(Ipv4Addr::LOCALHOST.into()),
            listen_addr: addr,
            gossip_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port())),
            detection: Duration::from_secs(2),
            dataplane: "none".into(),
            registries: crate::image::RegistryOptions::default(),
            runtime: crate::agent::container::DEFAULT_RUNTIME.into(),
            tables: TablesSink(Arc::new(NoTables)),
            tunnel_key: None,
            operators: None,
        };
        let swarm = Swarm::start(config).await.unwrap();
        swarm
            .init(InitOptions {
                advertise_addr: None,
                cert_expiry,
            })
            .await
            .unwrap();
        TestManager { swarm, addr, dir }
    }

    async fn token(&self, role: Role) -> String {
        self.swarm
            .join_token(TokenOptions {
                role,
                rotate: false,
            })
            .await
            .unwrap()
            .token
    }

    /// The manager's own replica of the state.
    async fn state(&self) -> Arc<ClusterState> {
        self.swarm.member().await.unwrap().local_state()
    }

    /// The manager itself, with the credentials its files hold.
    fn own(&self) -> TestNode {
        let id = SwarmDir::new(self.dir.path()).load().unwrap().unwrap();
        TestNode {
            id: id.record.node_id,
            ca: id.roots[0].clone(),
            cert: id.cert,
            key: id.key,
        }
    }

    /// How many linearizable reads the manager's Raft was asked for.
    async fn reads(&self) -> u64 {
        let member = self.swarm.member().await.unwrap();
        member.consensus().await.unwrap().reads()
    }

    /// Joins a node with `token` through the real `Join` call.
    async fn join(&self, hostname: &str, token: &str) -> TestNode {
        let pin = JoinToken::parse(token).unwrap().ca_digest();
        let (tls, accepted) = pinned_client_config(pin).unwrap();
        let channel = api::connect(self.addr, tls, ANY_MANAGER).await.unwrap();
        let ca = accepted.get().unwrap();
        let id = NodeId::generate().unwrap();
        let key = NodeKey::generate().unwrap();
        let answer = client(channel)
            .join(JoinRequest {
                token: token.into(),
                node_id: id.clone(),
                hostname: hostname.into(),
                csr_pem: key.csr_pem(&id).unwrap(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port())),
                gossip_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port())),
                engine: "none".into(),
                rejoin: None,
                tunnel_key: None,
            })
            .await
            .unwrap()
            .into_inner();
        TestNode {
            id,
            ca,
            cert: NodeCert::from_pem(&answer.cert_pem).unwrap(),
            key,
        }
    }
}

/// What a joined node holds: its id, the CA, its certificate and key.
struct TestNode {
    id: NodeId,
    ca: CaCertificate,
    cert: NodeCert,
    key: NodeKey,
}

impl TestNode {
    async fn client(&self, to: SocketAddr) -> ClusterClient<Channel> {
        let tls =
            client_config(std::slice::from_ref(&self.ca), &self.cert, &[], &self.key).unwrap();
        client(api::connect(to, tls, ANY_MANAGER).await.unwrap())
    }

    /// The node with a certificate renewed through `RenewCert`.
    async fn renewed(&self, to: SocketAddr) -> TestNode {
        let csr_pem = self.key.csr_pem(&self.id).unwrap();
        let pem = self
            .client(to)
            .await
            .renew_cert(RenewRequest {
                csr_pem,
                tunnel_key: None,
            })
            .await
            .unwrap()
            .into_inner()
            .cert_pem;
        TestNode {
            id: self.id.clone(),
            ca: self.ca.clone(),
            cert: NodeCert::from_pem(&pem).unwrap(),
            key: NodeKey::from_pem(&self.key.private_key_pem()).unwrap(),
        }
    }
}

/// Every call of the cluster API but `Join` and `Ping`, made by `c`: each
/// one's name and what it answered (only whether it was refused counts).
async fn every_call(c: &mut ClusterClient<Channel>, me: &NodeId) -> Vec<(&'static str, Code)> {
    fn code<T>(r: Result<T, Status>) -> Code {
        r.map_or_else(|s| s.code(), |_| Code::Ok)
    }
    let id = raft_id(me);
    let vote = Vote::new(0, id);
    let harmless = Command::UpdateNode {
        id: me.clone(),
        update: NodeUpdate::default(),
    };
    vec![
        (
            "Propose",
            code(c.propose(ProposeRequest { command: harmless }).await),
        ),
        ("ReadState", code(c.read_state(Empty {}).await)),
        ("WatchState", code(c.watch_state(Empty {}).await)),
        ("Progress", code(c.progress(Empty {}).await)),
        (
            "RenewCert",
            code(
                c.renew_cert(RenewRequest {
                    csr_pem: NodeKey::generate().unwrap().csr_pem(me).unwrap(),
                    tunnel_key: None,
                })
                .await,
            ),
        ),
        (
            "AddVoter",
            code(c.add_voter(VoterRequest { node: me.clone() }).await),
        ),
        (
            "TaskLogs",
            code(
                c.task_logs(TaskLogsRequest {
                    task: TaskId::new("t1").unwrap(),
                    tail: None,
                    offset: None,
                })
                .await,
            ),
        ),
        (
            "ReportTask",
            code(
                c.report_task(ReportTaskRequest {
                    task: TaskId::new("t1").unwrap(),
                    update: TaskUpdate::default(),
                })
                .await,
            ),
        ),
        (
            "Leave",
            code(c.leave(VoterRequest { node: me.clone() }).await),
        ),
        (
            "RaftVote",
            code(c.raft_vote(VoteRequest::new(vote, None)).await),
        ),
        (
            "RaftAppend",
            code(
                c.raft_append(AppendEntriesRequest {
                    vote,
                    prev_log_id: None,
                    entries: Vec::new(),
                    leader_commit: None,
                })
                .await,
            ),
        ),
        (
            "RaftSnapshot",
            code(
                c.raft_snapshot(InstallSnapshotRequest {
                    vote,
                    meta: Default::default(),
                    offset: 0,
                    data: Vec::new(),
                    done: false,
                })
                .await,
            ),
        ),
    ]
}

/// Whether `state`, as JSON, shows any of the cluster's secrets.
fn leaks(state: &ClusterState, tokens: &[&str]) -> Vec<String> {
    let json = serde_json::to_string(state).unwrap();
    let mut found: Vec<String> = state.secret_names().map(str::to_owned).collect();
    if json.contains("PRIVATE KEY") {
        found.push("a private key".into());
    }
    for t in tokens {
        let secret = t.rsplit('-').next().unwrap();
        if json.contains(secret) {
            found.push(format!("the token {t}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_streamed_the_state_without_any_secret() {
    let m = TestManager::init().await;
    let (wtoken, mtoken) = (m.token(Role::Worker).await, m.token(Role::Manager).await);
    let own = m.state().await;
    assert!(
        !leaks(&own, &[]).is_empty(),
        "the manager's replica holds the secrets the view must drop"
    );

    let worker = m.join("w1", &wtoken).await;
    assert_eq!(worker.cert.role(), Role::Worker);
    let mut c = worker.client(m.addr).await;
    let mut stream = c.watch_state(Empty {}).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap().state.unwrap();
    assert!(first.node(&worker.id).is_some(), "the stream is current");
    assert_eq!(leaks(&first, &[&wtoken, &mtoken]), Vec::<String>::new());

    // Later states are redacted too.
    m.swarm
        .update_node(
            worker.id.as_str(),
            NodeChange {
                labels_add: [("zone".to_owned(), "a".to_owned())].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let labelled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let Some(s) = stream.message().await.unwrap().unwrap().state else {
                continue;
            };
            if s.node(&worker.id)
                .is_some_and(|n| n.labels.contains_key("zone"))
            {
                return s;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(leaks(&labelled, &[&wtoken, &mtoken]), Vec::<String>::new());

    // The whole state is for managers only.
    let err = c.read_state(Empty {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    m.swarm.shutdown().await;
}

/// The stream's next message; a silent or ended stream fails the test.
async fn next(stream: &mut tonic::Streaming<WatchMessage>) -> WatchMessage {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream went silent")
        .unwrap()
        .expect("the stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_stream_beats_with_the_managers_raft_progress() {
    let m = TestManager::init().await;
    let w1 = m.join("w1", &m.token(Role::Worker).await).await;
    let mut c = w1.client(m.addr).await;
    let mut stream = c.watch_state(Empty {}).await.unwrap().into_inner();
    let first = next(&mut stream).await;
    assert!(first.state.is_some(), "the first message carries the state");
    assert!(first.progress.term >= 1, "{:?}", first.progress);

    // With nothing to send, the stream still speaks: the progress alone,
    // which is what `Progress` answers.
    let beat = loop {
        let msg = next(&mut stream).await;
        if msg.state.is_none() {
            break msg.progress;
        }
    };
    assert!(beat.applied >= first.progress.applied);
    let asked = c.progress(Empty {}).await.unwrap().into_inner();
    assert_eq!(asked.term, beat.term);
    assert!(asked.applied >= beat.applied);

    // A change comes with a progress past it.
    m.swarm
        .update_node(
            w1.id.as_str(),
            NodeChange {
                labels_add: [("zone".to_owned(), "a".to_owned())].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The change arrives, and the progress moves past where it stood.
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut labelled, mut moved) = (false, false);
        while !(labelled && moved) {
            let msg = next(&mut stream).await;
            labelled |= msg
                .state
                .as_ref()
                .and_then(|s| s.node(&w1.id))
                .is_some_and(|n| n.labels.contains_key("zone"));
            moved |= msg.progress.applied > asked.applied;
        }
    })
    .await
    .expect("the change or the progress past it never came");
    let after = c.progress(Empty {}).await.unwrap().into_inner();
    assert!(after.applied > asked.applied, "{after:?} after {asked:?}");
    m.swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_managers_old_certificate_loses_every_manager_power() {
    let m = TestManager::init().await;
    let own = m.own();
    let m2 = m.join("m2", &m.token(Role::Manager).await).await;
    assert_eq!(m2.cert.role(), Role::Manager);
    let mut c = m2.client(m.addr).await;
    let harmless = || ProposeRequest {
        command: Command::UpdateNode {
            id: m2.id.clone(),
            update: NodeUpdate::default(),
        },
    };
    // A manager may, so the refusals below are the demotion's doing.
    c.propose(harmless()).await.unwrap();
    c.read_state(Empty {}).await.unwrap();

    m.swarm
        .update_node(
            m2.id.as_str(),
            NodeChange {
                role: Some(Role::Worker),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let denied = |r: Result<(), Status>, call: &str| match r {
        Err(s) => {
            assert_eq!(s.code(), Code::PermissionDenied, "{call}: {s:?}");
            assert!(s.message().contains("worker"), "{call}: {}", s.message());
        }
        Ok(()) => panic!("{call} was allowed with a demoted manager's certificate"),
    };
    denied(c.propose(harmless()).await.map(drop), "Propose");
    denied(c.read_state(Empty {}).await.map(drop), "ReadState");
    denied(
        c.add_voter(VoterRequest {
            node: m2.id.clone(),
        })
        .await
        .map(drop),
        "AddVoter",
    );
    let vote = || VoteRequest::new(Vote::new(0, raft_id(&m2.id)), None);
    let err = c.raft_vote(vote()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "RaftVote: {err:?}");
    assert!(
        err.message().contains("not a Raft voter"),
        "{}",
        err.message()
    );
    // The same vote from a voter reaches Raft.
    let mut voter = own.client(m.addr).await;
    voter
        .raft_vote(VoteRequest::new(Vote::new(0, raft_id(&own.id)), None))
        .await
        .unwrap();

    // Renewed as the worker it now is, its old certificate is refused even
    // what a worker may do, and the new one is no manager's.
    let renewed = m2.renewed(m.addr).await;
    assert_eq!(renewed.cert.role(), Role::Worker);
    let err = c.watch_state(Empty {}).await.unwrap_err();
    assert!(err.message().contains("replaced"), "{}", err.message());
    let mut w = renewed.client(m.addr).await;
    w.watch_state(Empty {}).await.unwrap();
    assert_eq!(
        w.propose(harmless()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    m.swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_workers_certificate_is_refused_every_call() {
    let m = TestManager::init().await;
    let w1 = m.join("w1", &m.token(Role::Worker).await).await;
    let mut c = w1.client(m.addr).await;
    let mut stream = c.watch_state(Empty {}).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap().state.unwrap();
    assert!(first.node(&w1.id).is_some());

    m.swarm.remove_node(w1.id.as_str(), true).await.unwrap();
    // The open stream's last state is the one without it, then it ends.
    let mut last = None;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
    {
        if msg.state.is_some() {
            last = msg.state;
        }
    }
    assert!(last.is_some_and(|s| s.node(&w1.id).is_none()));

    let after = every_call(&mut c, &w1.id).await;
    let allowed: Vec<_> = after
        .iter()
        .filter(|(_, code)| *code != Code::PermissionDenied)
        .collect();
    assert!(
        allowed.is_empty(),
        "a removed node was answered: {allowed:?}"
    );
    assert_eq!(after.len(), 12);
    m.swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_rotated_token_is_refused_without_a_raft_read() {
    let m = TestManager::init().await;
    let token = m.token(Role::Worker).await;
    m.join("w1", &token).await;
    let pin = JoinToken::parse(&token).unwrap().ca_digest();
    let join = |token: String| async move {
        let (tls, _) = pinned_client_config(pin).unwrap();
        let channel = api::connect(m.addr, tls, ANY_MANAGER).await.unwrap();
        let id = NodeId::generate().unwrap();
        let key = NodeKey::generate().unwrap();
        client(channel)
            .join(JoinRequest {
                token,
                node_id: id.clone(),
                hostname: "w2".into(),
                csr_pem: key.csr_pem(&id).unwrap(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
                gossip_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 2)),
                engine: "none".into(),
                rejoin: None,
                tunnel_key: None,
            })
            .await
    };
    m.swarm
        .join_token(TokenOptions {
            role: Role::Worker,
            rotate: true,
        })
        .await
        .unwrap();
    let mut wrong = token.clone();
    wrong.replace_range(wrong.len() - 3.., "zzz");
    for (bad, says) in [
        (token.clone(), "not accepted"),
        (wrong, "not accepted"),
        ("SWMTKN-1-abc".to_owned(), "four parts"),
    ] {
        let before = m.reads().await;
        let err = join(bad.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{bad}: {err:?}");
        assert!(err.message().contains(says), "{bad}: {}", err.message());
        assert_eq!(err.message().lines().count(), 1, "{}", err.message());
        assert_eq!(m.reads().await, before, "{bad} cost a Raft read");
    }
    // A good one costs one (a rotation may be in flight elsewhere).
    let good = m.token(Role::Worker).await;
    let before = m.reads().await;
    join(good).await.unwrap();
    assert_eq!(m.reads().await - before, 1);
    m.swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_renews_its_own_certificate_before_it_expires() {
    let m = TestManager::init_with(Some(Duration::from_secs(3))).await;
    let first = m.own().cert;
    let left = first
        .not_after()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left <= Duration::from_secs(3), "{left:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let now = m.own().cert;
    assert_ne!(now.serial(), first.serial(), "not renewed");
    assert!(now.not_after() > std::time::SystemTime::now(), "it expired");
    let recorded = m
        .state()
        .await
        .node(&m.own().id)
        .unwrap()
        .cert
        .clone()
        .unwrap();
    assert_eq!(recorded.serial, now.serial(), "the state names the new one");
    // And its own calls work with it.
    m.own()
        .client(m.addr)
        .await
        .read_state(Empty {})
        .await
        .unwrap();

    let err = m
        .swarm
        .update(super::super::SwarmUpdate {
            cert_expiry: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least 3s"), "{err}");
    assert_eq!(err.to_string().lines().count(), 1);
    m.swarm.shutdown().await;
}

/// Polls `check` every 100 ms for up to 10 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_renews_every_node_then_trusts_the_new_ca_alone() {
    let m = TestManager::init().await;
    let old_token = m.token(Role::Worker).await;
    let w1 = m.join("w1", &old_token).await;
    let old_ca = m.own().ca;
    let reply = m.swarm.ca(CaOptions { rotate: true }).await.unwrap();
    assert!(reply.rotating);
    assert_eq!((reply.nodes, reply.pending.len()), (2, 2), "{reply:?}");
    let new_ca = CaCertificate::from_pem(&reply.root_pem).unwrap();
    assert_eq!(reply.digest, new_ca.digest().to_string());
    assert_ne!(new_ca, old_ca);

    let err = m.swarm.ca(CaOptions { rotate: true }).await.unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    assert_eq!(err.to_string().lines().count(), 1);

    // The manager renews by itself; the rotation waits for w1.
    let digest = reply.digest.clone();
    eventually("the manager renews with the new CA", || async {
        m.own().cert.verify_issued_by(&new_ca).is_ok()
    })
    .await;
    let state = m.state().await;
    let issuer = |id: &NodeId| state.node(id).unwrap().cert.clone().unwrap().issuer;
    assert_eq!(issuer(&m.own().id), Some(digest.clone()));
    let now = m.swarm.ca(CaOptions::default()).await.unwrap();
    assert!(now.rotating);
    assert_eq!(now.pending, ["w1"]);

    // The tokens changed: the old one no longer finds its CA.
    let new_token = m.token(Role::Worker).await;
    assert_ne!(new_token, old_token);
    let (tls, _) = pinned_client_config(JoinToken::parse(&old_token).unwrap().ca_digest()).unwrap();
    let err = api::connect(m.addr, tls, ANY_MANAGER).await.unwrap_err();
    assert!(err.to_string().contains("join token pins"), "{err}");

    // w1 still trusts only the old CA, and reaches the renewed manager
    // (which presents the cross-signed CA) to renew.
    let w1 = w1.renewed(m.addr).await;
    w1.cert.verify_issued_by(&new_ca).unwrap();
    eventually("the rotation ends", || async {
        !m.swarm.ca(CaOptions::default()).await.unwrap().rotating
    })
    .await;
    assert_eq!(m.state().await.trust().roots(), [new_ca.pem()]);
    eventually("the manager trusts the new CA alone", || async {
        SwarmDir::new(m.dir.path()).load().unwrap().unwrap().roots == [new_ca.clone()]
    })
    .await;
    // A node of the new CA, trusting it alone, joins and calls.
    let w2 = m.join("w2", &new_token).await;
    assert_eq!(w2.ca, new_ca);
    w2.cert.verify_issued_by(&new_ca).unwrap();
    let w2 = TestNode {
        ca: new_ca.clone(),
        ..w2
    };
    w2.renewed(m.addr).await;
    m.swarm.shutdown().await;
}

/// A `Join` of `node` (a new one, or one coming back with its last
/// certificate) with `token` and a CSR for `key`.
fn join_request(
    token: &str,
    node: &NodeId,
    key: &NodeKey,
    rejoin: Option<&NodeCert>,
) -> JoinRequest {
    JoinRequest {
        token: token.into(),
        node_id: node.clone(),
        hostname: "w".into(),
        csr_pem: key.csr_pem(node).unwrap(),
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
        gossip_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 2)),
        engine: "none".into(),
        rejoin: rejoin.map(|c| c.pem().to_owned()),
        tunnel_key: None,
    }
}

/// A client without a node certificate, as a joining node has.
async fn stranger(m: &TestManager, token: &str) -> ClusterClient<Channel> {
    let pin = JoinToken::parse(token).unwrap().ca_digest();
    let (tls, _) = pinned_client_config(pin).unwrap();
    client(api::connect(m.addr, tls, ANY_MANAGER).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_a_certificate_may_only_send_small_messages() {
    let m = TestManager::init().await;
    let token = m.token(Role::Worker).await;
    let id = NodeId::generate().unwrap();
    let mut big = join_request(&token, &id, &NodeKey::generate().unwrap(), None);
    big.hostname = "h".repeat(100 << 10);

    let before = m.reads().await;
    let err = stranger(&m, &token)
        .await
        .join(big.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{}", err.message());
    assert_eq!(
        m.reads().await,
        before,
        "a refused message cost a Raft read"
    );

    // A node of the swarm may send it: the handler, not the size, refuses.
    let err = m.own().client(m.addr).await.join(big).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("hostname"), "{}", err.message());
    m.swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_rejoins_with_its_last_certificate_its_key_and_a_token() {
    let m = TestManager::init().await;
    let (wtoken, mtoken) = (m.token(Role::Worker).await, m.token(Role::Manager).await);
    let w1 = m.join("w1", &wtoken).await;
    m.swarm
        .update_node(
            w1.id.as_str(),
            NodeChange {
                labels_add: [("zone".to_owned(), "a".to_owned())].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut c = stranger(&m, &wtoken).await;
    let refused = |r: Result<tonic::Response<_>, Status>, says: &str| {
        let err = r.map(drop).unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{says}: {err:?}");
        assert!(err.message().contains(says), "{says}: {}", err.message());
    };

    // Its id alone, another key, or the wrong role's token: refused.
    refused(
        c.join(join_request(&wtoken, &w1.id, &w1.key, None)).await,
        "already a member",
    );
    refused(
        c.join(join_request(
            &wtoken,
            &w1.id,
            &NodeKey::generate().unwrap(),
            Some(&w1.cert),
        ))
        .await,
        "not for the key",
    );
    refused(
        c.join(join_request(&mtoken, &w1.id, &w1.key, Some(&w1.cert)))
            .await,
        "worker join token",
    );
    let other = m.join("w2", &wtoken).await;
    refused(
        c.join(join_request(&wtoken, &w1.id, &w1.key, Some(&other.cert)))
            .await,
        "not `",
    );

    // With all three it gets a new certificate and keeps its place.
    let nodes = m.state().await.nodes().len();
    let answer = c
        .join(join_request(&wtoken, &w1.id, &w1.key, Some(&w1.cert)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.role, Role::Worker);
    let cert = NodeCert::from_pem(&answer.cert_pem).unwrap();
    assert_eq!(cert.node_id(), &w1.id);
    assert!(cert.is_for_key(&w1.key));
    assert_ne!(cert.serial(), w1.cert.serial());
    let state = m.state().await;
    assert_eq!(state.nodes().len(), nodes, "no node was added");
    let node = state.node(&w1.id).unwrap();
    assert_eq!(node.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(node.cert.as_ref().unwrap().serial, cert.serial());

    // The certificate it came back with is spent.
    refused(
        c.join(join_request(&wtoken, &w1.id, &w1.key, Some(&w1.cert)))
            .await,
        "replaced",
    );
    let back = TestNode {
        id: w1.id.clone(),
        ca: w1.ca.clone(),
        cert,
        key: NodeKey::from_pem(&w1.key.private_key_pem()).unwrap(),
    };
    back.client(m.addr)
        .await
        .watch_state(Empty {})
        .await
        .unwrap();
    m.swarm.shutdown().await;
}
