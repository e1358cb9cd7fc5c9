//! The cluster API's handlers (`shoal.cluster.Cluster`).
//!
//! Who may call what ([`access`](super::access)): `Join` and `Ping` need
//! no certificate (the token is the credential); every other call needs
//! the current certificate of a node still in the state; state reads and
//! writes and voter changes need a node that is a manager in the state;
//! Raft messages need a voter or learner. Calls only the leader can
//! answer are forwarded to it once (marked by [`FORWARDED`], so two
//! managers that disagree about the leader cannot bounce a call forever);
//! the mark is trusted only from a voter.
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
use super::access::{self, Need};
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

    /// The caller of `request`, if the state lets it make a call that
    /// needs `need`.
    fn caller<T>(&self, request: &Request<T>, need: Need) -> Result<Caller, Status> {
        let caller = match need {
            Need::Member => require_node(request)?,
            Need::Manager(action) => require_manager(request, action)?,
        };
        access::check(&self.member.local_state(), &caller, need)?;
        Ok(caller)
    }

    /// The caller of a Raft message, if it is a manager of the Raft
    /// membership.
    async fn raft_caller<T>(&self, request: &Request<T>) -> Result<Consensus, Status> {
        let caller = require_manager(request, "send Raft messages")?;
        let consensus = self.consensus().await?;
        access::check_raft(&consensus.members(), &caller)?;
        Ok(consensus)
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

/// The redacted states for `caller`, while it may have them: when it is
/// removed, its last message is the state without it (so that it leaves);
/// when its certificate is replaced, the stream ends with the refusal (it
/// calls again with the new one).
fn watch(
    states: tokio::sync::watch::Receiver<Arc<crate::state::ClusterState>>,
    caller: Caller,
) -> impl Stream<Item = Result<StateMessage, Status>> + Send {
    futures_util::stream::unfold(
        (WatchStream::new(states), caller, false),
        |(mut states, caller, done)| async move {
            if done {
                return None;
            }
            let state = states.next().await?;
            let item = match access::check(&state, &caller, Need::Member) {
                Ok(()) => Ok(StateMessage {
                    state: state.redacted(),
                }),
                Err(_) if state.node(&caller.node_id).is_none() => {
                    return Some((
                        Ok(StateMessage {
                            state: state.redacted(),
                        }),
                        (states, caller, true),
                    ));
                }
                Err(refused) => Err(refused),
            };
            let done = item.is_err();
            Some((item, (states, caller, done)))
        },
    )
}

#[tonic::async_trait]
impl Cluster for Service {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            peer: Caller::of(&request),
        }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let consensus = self.consensus().await?;
        // A bad token costs no Raft round: it is checked against this
        // manager's replica first, then (a rotation may be in flight)
        // against a linearizable read.
        self.member
            .check_token(&request.get_ref().token, &self.member.local_state())
            .map_err(Status::permission_denied)?;
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
        self.caller(&request, Need::Manager("change the cluster state"))?;
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
        self.caller(&request, Need::Manager("read the cluster state"))?;
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
        let caller = self.caller(&request, Need::Member)?;
        self.consensus().await?;
        Ok(Response::new(Box::pin(watch(
            self.member.watch_state(),
            caller,
        ))))
    }

    async fn renew_cert(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let caller = self.caller(&request, Need::Member)?;
        self.consensus().await?;
        self.member
            .renew(&caller.node_id, &request.get_ref().csr_pem)
            .await
            .map(|cert_pem| Response::new(RenewResponse { cert_pem }))
            .map_err(Status::failed_precondition)
    }

    async fn add_voter(&self, request: Request<VoterRequest>) -> Result<Response<Empty>, Status> {
        self.caller(&request, Need::Manager("add Raft voters"))?;
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
        self.caller(&request, Need::Manager("read task logs"))?;
        self.member
            .read_task_log(request.get_ref())
            .map(Response::new)
            .map_err(Status::internal)
    }

    async fn report_task(
        &self,
        request: Request<ReportTaskRequest>,
    ) -> Result<Response<Empty>, Status> {
        let caller = self.caller(&request, Need::Member)?;
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
        let caller = self.caller(&request, Need::Manager("leave as managers"))?;
        let node = &request.get_ref().node;
        let consensus = self.consensus().await?;
        // A voter forwards the leave of the manager that asked it; nobody
        // else may speak for another manager.
        let speaks_for_another = request.metadata().contains_key(FORWARDED)
            && consensus.voters().iter().any(|p| p.id == caller.node_id);
        if &caller.node_id != node && !speaks_for_another {
            return Err(Status::permission_denied(
                "a manager can only take itself out of the swarm; use `shoal node demote` for \
                 others",
            ));
        }
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
        let consensus = self.raft_caller(&request).await?;
        Ok(Response::new(
            consensus.handle_append_entries(request.into_inner()).await,
        ))
    }

    async fn raft_vote(
        &self,
        request: Request<VoteRequest<RaftId>>,
    ) -> Result<Response<Result<VoteResponse<RaftId>, RaftError<RaftId>>>, Status> {
        let consensus = self.raft_caller(&request).await?;
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
        let consensus = self.raft_caller(&request).await?;
        Ok(Response::new(
            consensus
                .handle_install_snapshot(request.into_inner())
                .await,
        ))
    }
}

#[cfg(test)]
mod tests;
