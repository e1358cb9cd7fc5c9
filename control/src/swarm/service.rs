//! The cluster API's handlers (`shoal.cluster.Cluster`).
//!
//! Who may call what: `Join` needs no certificate (the token is the
//! credential); every other call needs a node certificate from this
//! cluster's CA whose node is still a member; state reads and writes, Raft
//! and voter changes need a manager's. Calls only the leader can answer are
//! forwarded to it once (marked by [`FORWARDED`], so two managers that
//! disagree about the leader cannot bounce a call forever).
//!
//! Secrets (the CA key, the join tokens) never leave the managers: the
//! state stream, the one call that returns state to workers, carries
//! [`ClusterState::redacted`](crate::state::ClusterState::redacted); only
//! `ReadState`, between managers, carries the whole state.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::SwarmError;
use super::member::Member;
use super::rpc::{
    Empty, JoinRequest, JoinResponse, ProposeRequest, ProposeResponse, RenewRequest, RenewResponse,
    ReportTaskRequest, StateMessage, TaskLogsRequest, TaskLogsResponse, VoterRequest,
};
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::api::cluster_proto::cluster_server::{Cluster, ClusterServer};
use crate::api::messages::{PingRequest, PingResponse};
use crate::api::{Peer as Caller, require_manager, require_node};
use crate::consensus::{Consensus, Peer, RaftId, ReadError, TypeConfig, WriteError};

/// Metadata on a call one manager forwards to the leader.
const FORWARDED: &str = "x-shoal-forwarded";

/// The largest message: whole cluster states and snapshot chunks (JSON
/// encodes bytes as numbers, about 3.5x their size).
const MAX_MESSAGE: usize = 64 << 20;

/// A client with shoal's message limits.
pub(super) fn client(channel: Channel) -> ClusterClient<Channel> {
    ClusterClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// The server of `service`, with shoal's message limits.
pub(super) fn server(service: Service) -> ClusterServer<Service> {
    ClusterServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// The handlers, over a running member.
pub(super) struct Service {
    member: Arc<Member>,
}

impl Service {
    pub(super) fn new(member: Arc<Member>) -> Service {
        Service { member }
    }

    async fn consensus(&self) -> Result<Consensus, Status> {
        self.member.consensus().await.ok_or_else(|| {
            Status::failed_precondition(format!(
                "node `{}` is not a manager (any more); call a manager",
                self.member.node_id
            ))
        })
    }

    /// The caller, if it is still a member.
    fn member_caller(&self, caller: Caller) -> Result<Caller, Status> {
        if self.member.local_state().node(&caller.node_id).is_some() {
            Ok(caller)
        } else {
            Err(Status::permission_denied(format!(
                "node `{}` is not a member of this swarm (it was removed, or never joined); join \
                 again with a token",
                caller.node_id
            )))
        }
    }

    /// A client to the leader for forwarding `request`, or why not.
    async fn leader<T>(
        &self,
        leader: Option<Peer>,
        request: &Request<T>,
    ) -> Result<ClusterClient<Channel>, Status> {
        let no_leader = |why: &str| {
            Status::unavailable(format!(
                "{}; a majority of managers must be reachable for a leader to be elected",
                SwarmError::NoLeader(why.into())
            ))
        };
        if request.metadata().contains_key(FORWARDED) {
            return Err(no_leader("managers disagree about who leads"));
        }
        let leader = leader.ok_or_else(|| no_leader("none is known yet"))?;
        if leader.id == self.member.node_id {
            return Err(no_leader("this manager just stopped leading"));
        }
        self.member
            .channel(leader.addr, leader.id.as_str())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }
}

/// Marks `body` as forwarded.
fn forwarded<T>(body: T) -> Request<T> {
    let mut r = Request::new(body);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

fn refused(e: impl std::fmt::Display) -> Status {
    Status::failed_precondition(e.to_string())
}

type StateStream = Pin<Box<dyn Stream<Item = Result<StateMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for Service {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            peer: Caller::of(&request),
        }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let consensus = self.consensus().await?;
        let state = match consensus.read().await {
            Ok(s) => s,
            Err(ReadError::NotLeader { leader }) => {
                let mut leader = self.leader(leader, &request).await?;
                return leader.join(forwarded(request.into_inner())).await;
            }
            Err(e) => return Err(Status::unavailable(e.to_string())),
        };
        self.member
            .admit(request.into_inner(), &state)
            .await
            .map(Response::new)
            .map_err(Status::permission_denied)
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        self.member_caller(require_manager(&request, "change the cluster state")?)?;
        let consensus = self.consensus().await?;
        let result = match consensus.write(request.get_ref().command.clone()).await {
            Ok(outcome) => Ok(outcome),
            Err(WriteError::Refused(m)) => Err(m),
            Err(WriteError::NotLeader { leader }) => {
                let mut leader = self.leader(leader, &request).await?;
                return leader.propose(forwarded(request.into_inner())).await;
            }
            Err(e) => return Err(Status::unavailable(e.to_string())),
        };
        Ok(Response::new(ProposeResponse { result }))
    }

    async fn read_state(&self, request: Request<Empty>) -> Result<Response<StateMessage>, Status> {
        self.member_caller(require_manager(&request, "read the cluster state")?)?;
        let consensus = self.consensus().await?;
        match consensus.read().await {
            Ok(state) => Ok(Response::new(StateMessage {
                state: (*state).clone(),
            })),
            Err(ReadError::NotLeader { leader }) => {
                let mut leader = self.leader(leader, &request).await?;
                leader.read_state(forwarded(Empty {})).await
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    type WatchStateStream = StateStream;

    async fn watch_state(&self, request: Request<Empty>) -> Result<Response<StateStream>, Status> {
        self.member_caller(require_node(&request)?)?;
        self.consensus().await?;
        let states = WatchStream::new(self.member.watch_state()).map(|state| {
            Ok(StateMessage {
                state: state.redacted(),
            })
        });
        Ok(Response::new(Box::pin(states)))
    }

    async fn renew_cert(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let caller = self.member_caller(require_node(&request)?)?;
        self.consensus().await?;
        self.member
            .renew(&caller.node_id, &request.get_ref().csr_pem)
            .map(|cert_pem| Response::new(RenewResponse { cert_pem }))
            .map_err(Status::failed_precondition)
    }

    async fn add_voter(&self, request: Request<VoterRequest>) -> Result<Response<Empty>, Status> {
        self.member_caller(require_manager(&request, "add Raft voters")?)?;
        let consensus = self.consensus().await?;
        let status = consensus.status();
        if !status.is_leader {
            let mut leader = self.leader(status.leader, &request).await?;
            return leader.add_voter(forwarded(request.into_inner())).await;
        }
        self.member
            .add_voter(&request.get_ref().node)
            .await
            .map(|()| Response::new(Empty {}))
            .map_err(refused)
    }

    async fn task_logs(
        &self,
        request: Request<TaskLogsRequest>,
    ) -> Result<Response<TaskLogsResponse>, Status> {
        self.member_caller(require_manager(&request, "read task logs")?)?;
        self.member
            .read_task_log(request.get_ref())
            .map(Response::new)
            .map_err(Status::internal)
    }

    async fn report_task(
        &self,
        request: Request<ReportTaskRequest>,
    ) -> Result<Response<Empty>, Status> {
        let caller = self.member_caller(require_node(&request)?)?;
        self.consensus().await?;
        let command = super::tasks::check_report(
            &self.member.local_state(),
            &caller.node_id,
            request.get_ref(),
        )
        .map_err(Status::permission_denied)?;
        match self.member.write(command).await {
            Ok(_) => Ok(Response::new(Empty {})),
            Err(SwarmError::Refused(m)) => Err(Status::failed_precondition(m)),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn leave(&self, request: Request<VoterRequest>) -> Result<Response<Empty>, Status> {
        let caller = self.member_caller(require_manager(&request, "leave as managers")?)?;
        let node = &request.get_ref().node;
        if &caller.node_id != node && !request.metadata().contains_key(FORWARDED) {
            return Err(Status::permission_denied(
                "a manager can only take itself out of the swarm; use `shoal node demote` for \
                 others",
            ));
        }
        let consensus = self.consensus().await?;
        let status = consensus.status();
        if !status.is_leader {
            let mut leader = self.leader(status.leader, &request).await?;
            return leader.leave(forwarded(request.into_inner())).await;
        }
        self.member
            .retire(node)
            .await
            .map(|()| Response::new(Empty {}))
            .map_err(refused)
    }

    async fn raft_append(
        &self,
        request: Request<AppendEntriesRequest<TypeConfig>>,
    ) -> Result<Response<Result<AppendEntriesResponse<RaftId>, RaftError<RaftId>>>, Status> {
        require_manager(&request, "send Raft messages")?;
        let consensus = self.consensus().await?;
        Ok(Response::new(
            consensus.handle_append_entries(request.into_inner()).await,
        ))
    }

    async fn raft_vote(
        &self,
        request: Request<VoteRequest<RaftId>>,
    ) -> Result<Response<Result<VoteResponse<RaftId>, RaftError<RaftId>>>, Status> {
        require_manager(&request, "send Raft messages")?;
        let consensus = self.consensus().await?;
        Ok(Response::new(
            consensus.handle_vote(request.into_inner()).await,
        ))
    }

    async fn raft_snapshot(
        &self,
        request: Request<InstallSnapshotRequest<TypeConfig>>,
    ) -> Result<
        Response<Result<InstallSnapshotResponse<RaftId>, RaftError<RaftId, InstallSnapshotError>>>,
        Status,
    > {
        require_manager(&request, "send Raft messages")?;
        let consensus = self.consensus().await?;
        Ok(Response::new(
            consensus
                .handle_install_snapshot(request.into_inner())
                .await,
        ))
    }
}

#[cfg(test)]
mod tests;
