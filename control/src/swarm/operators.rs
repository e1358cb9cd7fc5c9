//! Operators: people who drive a manager from another machine
//! (`shoal -H tcp://MANAGER:2377`) with an operator certificate.
//!
//! A manager issues the certificate over the CLI's CSR and records it in
//! the state (`swarm ca client-cert`); a revocation is recorded there too
//! (`swarm ca revoke-client`). The cluster API hands every connection
//! that asked for the operator protocol to [`gate`], which decides from
//! the certificate's kind and the state whether it may in, and passes it
//! on, with that verdict, to the daemon's admin API ([`OperatorSink`]):
//! the same requests as on the local socket, so every verb works remotely.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::SwarmError;
use super::lifecycle::{cert_expiry, cluster_ca, trusted_roots};
use super::member::Member;
use crate::api::{OperatorConnection, OperatorStream};
use crate::pki::{Presented, check_operator_id, new_operator_id};
use crate::state::{ClusterState, Command, Operator};

/// Operator connections waiting for the gate.
pub(super) const QUEUE: usize = 16;

/// Where the daemon's admin API takes operator connections.
#[derive(Clone)]
pub struct OperatorSink(pub mpsc::Sender<OperatorSession>);

impl std::fmt::Debug for OperatorSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorSink")
    }
}

/// An operator connection and the gate's verdict on it.
pub struct OperatorSession {
    /// The handshaken TLS stream, carrying HTTP/1.1 admin requests.
    pub stream: OperatorStream,
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The operator id, or the one-line reason it is refused, which the
    /// admin API answers every request with.
    pub access: Result<String, String>,
}

/// What `swarm ca client-cert` gets back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorReply {
    /// The operator id, for `revoke-client`.
    pub id: String,
    /// The certificate, PEM.
    pub cert: String,
    /// The CA certificates the cluster's managers chain to, PEM.
    pub ca: String,
    /// When the certificate expires, in seconds since the UNIX epoch.
    pub not_after: u64,
}

/// What to do when refused, for every refusal.
const MAKE_ONE: &str =
    "make an operator certificate on a manager with `shoal swarm ca client-cert --out DIR`";

/// Whether an operator connection may drive this node: `manager` says
/// whether this node is one, `state` is its replica of the cluster state.
pub(super) fn access(
    manager: bool,
    node: &str,
    state: &ClusterState,
    presented: Option<&Presented>,
) -> Result<String, String> {
    let op = match presented {
        None => return Err(format!("no client certificate was presented; {MAKE_ONE}")),
        Some(Presented::Node(cert)) => {
            return Err(format!(
                "the certificate presented is node `{}`'s (a {}), and a node certificate is not \
                 an operator certificate; {MAKE_ONE}",
                cert.node_id(),
                cert.role()
            ));
        }
        Some(Presented::Other(reason)) => return Err(format!("{reason}; {MAKE_ONE}")),
        Some(Presented::Operator(op)) => op,
    };
    if !manager {
        return Err(format!(
            "node `{node}` is not a manager; operators drive the swarm through a manager (give \
             one with -H tcp://MANAGER:2377)"
        ));
    }
    state.operator_access(op.id(), op.serial())?;
    Ok(op.id().to_owned())
}

/// Decides on each operator connection and hands it to `sink`.
pub(super) async fn gate(
    member: Arc<Member>,
    mut connections: mpsc::Receiver<OperatorConnection>,
    sink: OperatorSink,
) {
    while let Some(conn) = connections.recv().await {
        let manager = member.consensus().await.is_some();
        let state = member.local_state();
        let access = access(
            manager,
            member.node_id.as_str(),
            &state,
            conn.presented.as_ref(),
        );
        match &access {
            Ok(id) => tracing::debug!(addr = %conn.remote_addr, "operator {id} connected"),
            Err(why) => tracing::info!(addr = %conn.remote_addr, "operator refused: {why}"),
        }
        let session = OperatorSession {
            stream: conn.stream,
            remote_addr: conn.remote_addr,
            access,
        };
        if sink.0.send(session).await.is_err() {
            return;
        }
    }
}

impl Member {
    /// `swarm ca client-cert`: an operator certificate over `csr` (the
    /// CLI's key stays with the CLI), recorded in the state.
    pub(super) async fn issue_operator(&self, csr: &str) -> Result<OperatorReply, SwarmError> {
        let state = self.read().await?;
        let ca = cluster_ca(&state).map_err(SwarmError::Refused)?;
        let roots = trusted_roots(&state).map_err(SwarmError::Refused)?;
        let id = new_operator_id()?;
        let cert = ca.issue_operator(&id, csr, cert_expiry(&state))?;
        let not_after = cert
            .not_after()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.write(Command::AddOperator(Operator {
            id: id.clone(),
            serial: cert.serial().to_owned(),
            not_after,
            revoked_ms: None,
        }))
        .await?;
        tracing::info!("issued operator certificate {id}");
        Ok(OperatorReply {
            id,
            cert: cert.pem().to_owned(),
            ca: roots.iter().map(|r| r.pem()).collect(),
            not_after,
        })
    }

    /// `swarm ca revoke-client`: every manager refuses the operator
    /// certificate `id` from the moment it applies this.
    pub(super) async fn revoke_operator(&self, id: &str) -> Result<(), SwarmError> {
        check_operator_id(id).map_err(SwarmError::Refused)?;
        self.write(Command::RevokeOperator {
            id: id.to_owned(),
            at_ms: crate::clock::now_ms(),
        })
        .await?;
        tracing::info!("revoked operator certificate {id}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ClusterCa, NODE_CERT_VALIDITY, NodeKey};
    use crate::{NodeId, Role};

    fn issued(ca: &ClusterCa, state: &mut ClusterState) -> crate::pki::OperatorCert {
        let key = NodeKey::generate().unwrap();
        let id = new_operator_id().unwrap();
        let cert = ca
            .issue_operator(&id, &key.csr_pem_named("ops").unwrap(), NODE_CERT_VALIDITY)
            .unwrap();
        state
            .apply(Command::AddOperator(Operator {
                id,
                serial: cert.serial().into(),
                not_after: 0,
                revoked_ms: None,
            }))
            .unwrap();
        cert
    }

    #[test]
    fn only_issued_unrevoked_operator_certificates_get_in_on_a_manager() {
        let ca = ClusterCa::generate("prod").unwrap();
        let mut state = ClusterState::new();
        let op = issued(&ca, &mut state);
        let presented = Presented::of(op.der());
        assert_eq!(
            access(true, "m1", &state, Some(&presented)),
            Ok(op.id().to_owned())
        );
        let err = access(false, "w1", &state, Some(&presented)).unwrap_err();
        assert!(err.contains("not a manager"), "{err}");

        state
            .apply(Command::RevokeOperator {
                id: op.id().into(),
                at_ms: 1,
            })
            .unwrap();
        let err = access(true, "m1", &state, Some(&presented)).unwrap_err();
        assert!(err.contains("revoked"), "{err}");

        // Signed by the CA but never recorded (made with a stolen key, or
        // in another swarm that shares nothing but the id).
        let key = NodeKey::generate().unwrap();
        let stray = ca
            .issue_operator(
                &new_operator_id().unwrap(),
                &key.csr_pem_named("x").unwrap(),
                NODE_CERT_VALIDITY,
            )
            .unwrap();
        let err = access(true, "m1", &state, Some(&Presented::of(stray.der()))).unwrap_err();
        assert!(err.contains("not one this swarm issued"), "{err}");
    }

    #[test]
    fn node_certificates_and_no_certificate_are_refused_as_operators() {
        let ca = ClusterCa::generate("prod").unwrap();
        let state = ClusterState::new();
        let key = NodeKey::generate().unwrap();
        let id = NodeId::new("m2").unwrap();
        for role in Role::ALL {
            let cert = ca.issue(&id, role, &key.csr_pem(&id).unwrap()).unwrap();
            let err = access(true, "m1", &state, Some(&Presented::of(cert.der()))).unwrap_err();
            assert!(err.contains(&format!("node `m2`'s (a {role})")), "{err}");
            assert!(err.contains("shoal swarm ca client-cert"), "{err}");
        }
        let err = access(true, "m1", &state, None).unwrap_err();
        assert!(err.contains("no client certificate"), "{err}");
    }
}
