//! Raft messages between managers over the cluster API: the
//! [`Transport`](crate::consensus::Transport) that [`Consensus`] sends
//! through, over the node's shared [`Channels`], verifying each peer by its
//! node id.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::Channel;

use super::channels::Channels;
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::consensus::{Peer, RaftId, TransportError, TypeConfig};

/// Raft's transport over the cluster API.
#[derive(Clone)]
pub(super) struct GrpcTransport {
    channels: Channels,
}

impl GrpcTransport {
    pub(super) fn new(channels: Channels) -> GrpcTransport {
        GrpcTransport { channels }
    }

    /// A client to `to`, verified by its node id.
    async fn client<E>(&self, to: &Peer) -> Result<ClusterClient<Channel>, TransportError<E>> {
        self.channels
            .get(to.addr, to.id.as_str())
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))
    }

    /// Maps a failed call; the peer's channel is forgotten.
    fn failed<E>(&self, to: &Peer, status: tonic::Status) -> TransportError<E> {
        self.channels.forget(to.addr);
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                TransportError::Unreachable(status.message().to_owned())
            }
            // openraft sends the entries again in smaller batches.
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange => {
                TransportError::TooLarge(status.message().to_owned())
            }
            _ => TransportError::Network(status.message().to_owned()),
        }
    }
}

type Reply<T, E> = Result<T, TransportError<E>>;

impl crate::consensus::Transport for GrpcTransport {
    async fn append_entries(
        &self,
        to: &Peer,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Reply<AppendEntriesResponse<RaftId>, RaftError<RaftId>> {
        let mut client = self.client(to).await?;
        match client.raft_append(req).await {
            Ok(r) => r.into_inner().map_err(TransportError::Remote),
            Err(s) => Err(self.failed(to, s)),
        }
    }

    async fn vote(
        &self,
        to: &Peer,
        req: VoteRequest<RaftId>,
    ) -> Reply<VoteResponse<RaftId>, RaftError<RaftId>> {
        let mut client = self.client(to).await?;
        match client.raft_vote(req).await {
            Ok(r) => r.into_inner().map_err(TransportError::Remote),
            Err(s) => Err(self.failed(to, s)),
        }
    }

    async fn install_snapshot(
        &self,
        to: &Peer,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Reply<InstallSnapshotResponse<RaftId>, RaftError<RaftId, InstallSnapshotError>> {
        let mut client = self.client(to).await?;
        match client.raft_snapshot(req).await {
            Ok(r) => r.into_inner().map_err(TransportError::Remote),
            Err(s) => Err(self.failed(to, s)),
        }
    }
}
