//! The handlers, called over real mTLS on 127.0.0.1 by clients holding
//! the certificates a real node would: one in-process manager made by
//! `swarm init`, and nodes that join it with a token.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use shoal_dataplane::tables::Tables;
use tonic::Code;
use tonic::transport::Channel;

use super::super::member::ANY_MANAGER;
use super::super::rpc::{Empty, JoinRequest};
use super::super::{InitOptions, Swarm, SwarmConfig, TablesSink, TokenOptions};
use super::client;
use crate::agent::DataPlane;
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::api::{self, client_config, pinned_client_config};
use crate::pki::{CaCertificate, JoinToken, NodeCert, NodeKey};
use crate::state::ClusterState;
use crate::{NodeId, Role};

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
    _dir: tempfile::TempDir,
}

impl TestManager {
    async fn init() -> TestManager {
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
            tables: TablesSink(Arc::new(NoTables)),
        };
        let swarm = Swarm::start(config).await.unwrap();
        swarm
            .init(InitOptions {
                advertise_addr: None,
            })
            .await
            .unwrap();
        TestManager {
            swarm,
            addr,
            _dir: dir,
        }
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
        let tls = client_config(&self.ca, &self.cert, &self.key).unwrap();
        client(api::connect(to, tls, ANY_MANAGER).await.unwrap())
    }
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
    let first = stream.message().await.unwrap().unwrap().state;
    assert!(first.node(&worker.id).is_some(), "the stream is current");
    assert_eq!(leaks(&first, &[&wtoken, &mtoken]), Vec::<String>::new());

    // Later states are redacted too.
    m.swarm
        .update_node(
            worker.id.as_str(),
            super::super::NodeChange {
                labels_add: [("zone".to_owned(), "a".to_owned())].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let labelled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = stream.message().await.unwrap().unwrap().state;
            if s.node(&worker.id).is_some_and(|n| n.labels.contains_key("zone")) {
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
