//! How Raft messages leave this manager: openraft's network traits on top
//! of a [`Transport`] the caller supplies (gRPC between daemons, an
//! in-process router in tests).
//!
//! A transport sends one request to one peer and returns the peer's
//! answer, or says why there was none. The receiving side hands the
//! request to [`Consensus::handle_append_entries`] and its siblings and
//! sends back their result, `Err` included: the remote [`RaftError`]
//! comes back as [`TransportError::Remote`].
//!
//! [`Consensus::handle_append_entries`]: super::Consensus::handle_append_entries

use std::error::Error;
use std::future::Future;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, RaftNetwork, RaftNetworkFactory};
use thiserror::Error;

use super::types::{Peer, RaftId, TypeConfig};

/// Why a Raft request got no answer from its peer, or what the peer's Raft
/// answered instead. `E` is the remote error: [`RaftError<RaftId>`] for
/// append-entries and vote, [`RaftError<RaftId, InstallSnapshotError>`]
/// for install-snapshot.
#[derive(Debug, Clone, Error)]
pub enum TransportError<E> {
    /// The peer could not be reached (connection refused, no route, TLS
    /// handshake failed...). Raft backs off before trying it again.
    #[error("manager unreachable: {0}")]
    Unreachable(String),
    /// The request was sent but the answer was lost (connection reset,
    /// malformed reply...). Raft retries at once.
    #[error("Raft message lost in transit: {0}")]
    Network(String),
    /// The request is over the transport's message size limit. Raft sends
    /// log entries again in smaller batches; a request it cannot split is
    /// treated as `Unreachable`.
    #[error("Raft message too large: {0}")]
    TooLarge(String),
    /// The peer's Raft handled the request and returned this error.
    #[error("the peer's Raft failed the request: {0}")]
    Remote(E),
}

/// How a transport fails append-entries and vote.
pub type RpcError = TransportError<RaftError<RaftId>>;
/// How a transport fails install-snapshot.
pub type SnapshotRpcError = TransportError<RaftError<RaftId, InstallSnapshotError>>;

/// Sends Raft requests to other managers. Cheap to clone: one clone goes to
/// every peer connection.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Sends log entries (or a heartbeat) to `to`.
    fn append_entries(
        &self,
        to: &Peer,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> impl Future<Output = Result<AppendEntriesResponse<RaftId>, RpcError>> + Send;

    /// Asks `to` for its vote.
    fn vote(
        &self,
        to: &Peer,
        req: VoteRequest<RaftId>,
    ) -> impl Future<Output = Result<VoteResponse<RaftId>, RpcError>> + Send;

    /// Sends `to` one chunk of a snapshot.
    fn install_snapshot(
        &self,
        to: &Peer,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> impl Future<Output = Result<InstallSnapshotResponse<RaftId>, SnapshotRpcError>> + Send;
}

/// openraft's connection factory over a [`Transport`].
pub(super) struct Network<T> {
    transport: T,
}

impl<T> Network<T> {
    pub(super) fn new(transport: T) -> Network<T> {
        Network { transport }
    }
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for Network<T> {
    type Network = Connection<T>;

    async fn new_client(&mut self, target: RaftId, node: &Peer) -> Connection<T> {
        Connection {
            transport: self.transport.clone(),
            target,
            peer: node.clone(),
        }
    }
}

/// openraft's connection to one peer.
pub(super) struct Connection<T> {
    transport: T,
    target: RaftId,
    peer: Peer,
}

impl<T> Connection<T> {
    /// Maps a transport failure to the openraft error that makes Raft back
    /// off (`Unreachable`), retry (`Network`), split the `entries` it sent
    /// (`PayloadTooLarge`) or act on the remote error.
    fn rpc_error<E: Error>(
        &self,
        e: TransportError<E>,
        entries: usize,
    ) -> RPCError<RaftId, Peer, E> {
        match e {
            TransportError::Unreachable(why) => Unreachable::from(AnyError::error(why)).into(),
            TransportError::Network(why) => NetworkError::from(AnyError::error(why)).into(),
            TransportError::TooLarge(why) if entries > 1 => {
                let half = u64::try_from(entries / 2).unwrap_or(u64::MAX);
                PayloadTooLarge::new_entries_hint(half)
                    .with_source_error(&AnyError::error(why))
                    .into()
            }
            TransportError::TooLarge(why) => Unreachable::from(AnyError::error(why)).into(),
            TransportError::Remote(e) => {
                RemoteError::new_with_node(self.target, self.peer.clone(), e).into()
            }
        }
    }
}

impl<T: Transport> RaftNetwork<TypeConfig> for Connection<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftId>, RPCError<RaftId, Peer, RaftError<RaftId>>> {
        let entries = rpc.entries.len();
        self.transport
            .append_entries(&self.peer, rpc)
            .await
            .map_err(|e| self.rpc_error(e, entries))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftId>,
        RPCError<RaftId, Peer, RaftError<RaftId, InstallSnapshotError>>,
    > {
        self.transport
            .install_snapshot(&self.peer, rpc)
            .await
            .map_err(|e| self.rpc_error(e, 0))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<RaftId>, RPCError<RaftId, Peer, RaftError<RaftId>>> {
        self.transport
            .vote(&self.peer, rpc)
            .await
            .map_err(|e| self.rpc_error(e, 0))
    }
}
