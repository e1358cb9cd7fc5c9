//! Calls from this member to the managers: reads and writes of the
//! cluster state (on a manager, through the leader), and any call a worker
//! makes, tried on each known manager in turn until one answers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tonic::transport::Channel;
use tonic::{Code, Status};

use super::SwarmError;
use super::member::{ANY_MANAGER, Member, RETRY};
use super::rpc::{ProposeRequest, ProposeResponse};
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::consensus::{ReadError, WriteError};
use crate::state::{ClusterState, Command, Outcome};

/// How long to keep trying managers: longer than an election.
const CALL_BUDGET: Duration = Duration::from_secs(10);

/// Statuses that mean "try another manager, or later".
fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

impl Member {
    /// Calls `f` on managers in turn until one answers; an answer that is a
    /// refusal ends the attempt with its message.
    pub(super) async fn call_managers<T, F, Fut>(&self, f: F) -> Result<T, SwarmError>
    where
        F: Fn(ClusterClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut last: Option<SwarmError> = None;
        let deadline = Instant::now() + CALL_BUDGET;
        while Instant::now() < deadline {
            for addr in self.managers().await {
                if Instant::now() >= deadline {
                    break;
                }
                if addr == self.addr {
                    continue;
                }
                let client = match self.channel(addr, ANY_MANAGER).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                };
                match f(client).await {
                    Ok(v) => return Ok(v),
                    Err(s) if retryable(&s) => {
                        self.drop_channel(addr);
                        last = Some(SwarmError::Unreachable {
                            addr,
                            reason: s.message().to_owned(),
                        });
                    }
                    // A spent certificate: this node is renewing (the call
                    // left before the new one was installed) or the manager
                    // has not applied the renewal yet. Dial again with
                    // whatever is current, a moment later.
                    Err(s) if s.code() == Code::Unauthenticated => {
                        self.drop_channel(addr);
                        last = Some(SwarmError::Refused(s.message().to_owned()));
                        break;
                    }
                    Err(s) => return Err(SwarmError::Refused(s.message().to_owned())),
                }
            }
            // An election takes about a second: look again soon.
            tokio::time::sleep(RETRY / 5).await;
        }
        Err(match last {
            Some(SwarmError::Unreachable { reason, .. }) => SwarmError::NoLeader(reason),
            Some(e) => e,
            None => SwarmError::NoLeader("no other manager is known".into()),
        })
    }

    /// Applies `cmd` through Raft, from any manager.
    pub(super) async fn write(&self, cmd: Command) -> Result<Outcome, SwarmError> {
        let consensus = self.consensus().await.ok_or(SwarmError::NotManager)?;
        match consensus.write(cmd.clone()).await {
            Ok(outcome) => Ok(outcome),
            Err(WriteError::Refused(m)) => Err(SwarmError::Refused(m)),
            Err(WriteError::NotLeader { .. }) => {
                let answer: ProposeResponse = self
                    .call_managers(|mut c| {
                        let command = cmd.clone();
                        async move {
                            c.propose(ProposeRequest { command })
                                .await
                                .map(tonic::Response::into_inner)
                        }
                    })
                    .await?;
                answer.result.map_err(SwarmError::Refused)
            }
            Err(e) => Err(SwarmError::NoLeader(e.to_string())),
        }
    }

    /// The current cluster state, from any manager (linearizable).
    pub(super) async fn read(&self) -> Result<Arc<ClusterState>, SwarmError> {
        let consensus = self.consensus().await.ok_or(SwarmError::NotManager)?;
        match consensus.read().await {
            Ok(state) => Ok(state),
            Err(ReadError::NotLeader { .. }) => {
                let msg = self
                    .call_managers(|mut c| async move {
                        c.read_state(super::rpc::Empty {})
                            .await
                            .map(tonic::Response::into_inner)
                    })
                    .await?;
                Ok(Arc::new(msg.state))
            }
            Err(e) => Err(SwarmError::NoLeader(e.to_string())),
        }
    }
}
