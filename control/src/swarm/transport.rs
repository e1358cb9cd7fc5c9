//! Raft messages between managers over the cluster API: the
//! [`Transport`](crate::consensus::Transport) that [`Consensus`] sends
//! through. One mTLS channel per peer, made on first use, verified by the
//! peer's node id, and remade after a failure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::Channel;

use super::member::Credentials;
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::consensus::{Peer, RaftId, TransportError, TypeConfig};

/// Raft's transport over the cluster API.
#[derive(Clone)]
pub(super) struct GrpcTransport {
    creds: Credentials,
    channels: Arc<Mutex<HashMap<SocketAddr, Channel>>>,
}

impl GrpcTransport {
    pub(super) fn new(creds: Credentials) -> GrpcTransport {
        GrpcTransport {
            creds,
            channels: Arc::default(),
        }
    }

    async fn client<E>(&self, to: &Peer) -> Result<ClusterClient<Channel>, TransportError<E>> {
        let cached = self
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&to.addr)
            .cloned();
        let channel = match cached {
            Some(c) => c,
            None => {
                let channel = crate::api::connect(to.addr, self.creds.client(), to.id.as_str())
                    .await
                    .map_err(|e| TransportError::Unreachable(e.to_string()))?;
                self.channels
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(to.addr, channel.clone());
                channel
            }
        };
        Ok(super::service::client(channel))
    }

    /// Maps a failed call: the channel is dropped so the next call dials
    /// again (the peer may have restarted with a new certificate).
    fn failed<E>(&self, to: &Peer, status: tonic::Status) -> TransportError<E> {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&to.addr);
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
