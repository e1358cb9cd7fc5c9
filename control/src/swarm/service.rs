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
//!
//! The state stream is also a heartbeat: every message, and one every
//! [`HEARTBEAT`] when nothing changes, carries the manager's Raft
//! [`Progress`], which workers compare with other managers' (`Progress`)
//! to leave one that went silent or fell behind.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::SwarmError;
use super::access::{self, Need};
use super::member::Member;
use super::rpc::{
    Empty, JoinRequest, JoinResponse, Progress, ProposeRequest, ProposeResponse, RenewRequest,
    RenewResponse, ReportTaskRequest, StateMessage, TaskLogsRequest, TaskLogsResponse,
    VoterRequest, WatchMessage,
};
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::api::cluster_proto::cluster_server::{Cluster, ClusterServer};
use crate::api::messages::{PingRequest, PingResponse};
use crate::api::{ConnectionInfo, Peer as Caller, require_manager, require_node};
use crate::consensus::{Consensus, Peer, RaftId, ReadError, TypeConfig, WriteError};
use crate::state::ClusterState;

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

/// The largest message a caller without a node certificate may send
/// (`Join`, `Ping`): a token, a CSR and a few addresses take a few KiB.
const MAX_UNAUTHENTICATED: usize = 64 << 10;

/// The server of `service`: a caller with a node certificate may send
/// messages up to [`MAX_MESSAGE`], one without (a node that is joining,
/// or anyone who can reach the port) only up to [`MAX_UNAUTHENTICATED`],
/// refused by its length prefix before it is read.
pub(super) fn server(service: Service) -> Server {
    let service = Arc::new(service);
    let limited = |max: usize| {
        ClusterServer::from_arc(service.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(MAX_MESSAGE)
    };
    Server {
        nodes: limited(MAX_MESSAGE),
        strangers: limited(MAX_UNAUTHENTICATED),
    }
}

/// The cluster API as served; see [`server`].
#[derive(Clone)]
pub(super) struct Server {
    nodes: ClusterServer<Service>,
    strangers: ClusterServer<Service>,
}

impl tower::Service<http::Request<Body>> for Server {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = <ClusterServer<Service> as tower::Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both servers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let known = request
            .extensions()
            .get::<ConnectionInfo>()
            .is_some_and(|c| c.peer.is_some());
        if known {
            self.nodes.call(request)
        } else {
            self.strangers.call(request)
        }
    }
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
    async fn caller<T>(&self, request: &Request<T>, need: Need) -> Result<Caller, Status> {
        let caller = match need {
            Need::Member => require_node(request)?,
            Need::Manager(action) => require_manager(request, action)?,
        };
        access::check(&*self.member.replica().await, &caller, need)?;
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

type StateStream = Pin<Box<dyn Stream<Item = Result<WatchMessage, Status>> + Send>>;

/// How often the state stream carries this manager's progress when the
/// state does not change: the stream's heartbeat.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the state stream follows: the states this manager learns, and
/// where its Raft stands.
struct Watched {
    states: WatchStream<Arc<ClusterState>>,
    progress: Box<dyn Fn() -> Progress + Send>,
    heartbeat: tokio::time::Interval,
    caller: Caller,
    done: bool,
}

/// The redacted states for `caller`, while it may have them, each with
/// this manager's progress, and the progress alone every [`HEARTBEAT`]
/// in between. When the caller is removed, its last message is the state
/// without it (so that it leaves); when its certificate is replaced, the
/// stream ends with the refusal (it calls again with the new one).
fn watch(
    states: tokio::sync::watch::Receiver<Arc<ClusterState>>,
    progress: impl Fn() -> Progress + Send + 'static,
    caller: Caller,
) -> impl Stream<Item = Result<WatchMessage, Status>> + Send {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watched = Watched {
        states: WatchStream::new(states),
        progress: Box::new(progress),
        heartbeat,
        caller,
        done: false,
    };
    futures_util::stream::unfold(watched, |mut w| async move {
        if w.done {
            return None;
        }
        let state = tokio::select! {
            // A change goes out before a heartbeat that is also due.
            biased;
            state = w.states.next() => Some(state?),
            _ = w.heartbeat.tick() => None,
        };
        let Some(state) = state else {
            let beat = WatchMessage {
                state: None,
                progress: (w.progress)(),
            };
            return Some((Ok(beat), w));
        };
        w.heartbeat.reset();
        let item = match access::check(&state, &w.caller, Need::Member) {
            Ok(()) => Ok(WatchMessage {
                state: Some(state.redacted()),
                progress: (w.progress)(),
            }),
            Err(_) if state.node(&w.caller.node_id).is_none() => {
                w.done = true;
                Ok(WatchMessage {
                    state: Some(state.redacted()),
                    progress: (w.progress)(),
                })
            }
            Err(refused) => {
                w.done = true;
                Err(refused)
            }
        };
        Some((item, w))
    })
}

/// Where `consensus` stands.
fn progress_of(consensus: &Consensus) -> Progress {
    let status = consensus.status();
    Progress {
        term: status.term,
        applied: status.commit_index,
    }
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
            .check_token(&request.get_ref().token, &*self.member.replica().await)
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
        self.caller(&request, Need::Manager("change the cluster state"))
            .await?;
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
        self.caller(&request, Need::Manager("read the cluster state"))
            .await?;
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
        let caller = self.caller(&request, Need::Member).await?;
        let consensus = self.consensus().await?;
        Ok(Response::new(Box::pin(watch(
            self.member.watch_state(),
            move || progress_of(&consensus),
            caller,
        ))))
    }

    async fn progress(&self, request: Request<Empty>) -> Result<Response<Progress>, Status> {
        self.caller(&request, Need::Member).await?;
        let consensus = self.consensus().await?;
        Ok(Response::new(progress_of(&consensus)))
    }

    async fn renew_cert(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let caller = self.caller(&request, Need::Member).await?;
        self.consensus().await?;
        self.member
            .renew(
                &caller.node_id,
                &request.get_ref().csr_pem,
                request.get_ref().tunnel_key,
            )
            .await
            .map(|cert_pem| Response::new(RenewResponse { cert_pem }))
            .map_err(Status::failed_precondition)
    }

    async fn add_voter(&self, request: Request<VoterRequest>) -> Result<Response<Empty>, Status> {
        self.caller(&request, Need::Manager("add Raft voters"))
            .await?;
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
        self.caller(&request, Need::Manager("read task logs"))
            .await?;
        self.member
            .read_task_log(request.get_ref())
            .map(Response::new)
            .map_err(Status::internal)
    }

    async fn report_task(
        &self,
        request: Request<ReportTaskRequest>,
    ) -> Result<Response<Empty>, Status> {
        let caller = self.caller(&request, Need::Member).await?;
        self.consensus().await?;
        let command = super::tasks::check_report(
            &*self.member.replica().await,
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
        let caller = self
            .caller(&request, Need::Manager("leave as managers"))
            .await?;
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
