//! Raft among managers end to end, in one process (see [`cluster`]).

mod cluster;

use std::time::Duration;

use tokio::time::{Instant, sleep};

use self::cluster::{Cluster, eventually, fast, set_secret};
use super::{
    Consensus, ConsensusConfig, ConsensusError, MembershipError, Peer, RaftId, ReadError, RpcError,
    SnapshotRpcError, Transport, TransportError, TypeConfig, WriteError,
};
use crate::NodeId;
use crate::state::{Command, Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_managers_replicate_and_followers_point_to_the_leader() {
    let mut c = Cluster::voters(3, fast()).await;
    for i in 0..10 {
        assert_eq!(c.write(set_secret(i)).await, Outcome::Applied);
    }
    let leader = c.leader().await;
    assert_eq!(c.node(leader).voters().len(), 3);
    let state = c.node(leader).read().await.unwrap();
    assert_eq!(state.secret("s9"), Some(&[9u8][..]));
    c.converged(&state).await;

    let follower = (0..3).find(|&i| i != leader).unwrap();
    assert!(matches!(
        c.node(follower).write(set_secret(10)).await,
        Err(WriteError::NotLeader { leader: Some(_) })
    ));
    assert!(matches!(
        c.node(follower).read().await,
        Err(ReadError::NotLeader { leader: Some(_) })
    ));
    let status = c.node(follower).status();
    assert!(!status.is_leader);
    assert!(status.leader.is_some());

    // Adding a voter again changes nothing; initializing again is refused.
    let leader = c.leader().await;
    c.node(leader)
        .add_voter(c.peer(follower).clone())
        .await
        .unwrap();
    assert_eq!(c.node(leader).voters().len(), 3);
    assert!(matches!(
        c.node(leader).initialize().await,
        Err(ConsensusError::AlreadyInitialized)
    ));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_takes_over_and_the_old_one_catches_up() {
    let mut c = Cluster::voters(3, fast()).await;
    c.write(set_secret(1)).await;
    let old = c.leader().await;
    c.stop(old).await;

    let new = c.leader().await;
    assert_ne!(new, old);
    for i in 2..6 {
        c.write(set_secret(i)).await;
    }
    let state = c.node(new).read().await.unwrap();
    assert!(state.secret("s5").is_some());

    c.start(old).await;
    c.converged(&state).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_manager_cannot_commit_and_catches_up_when_healed() {
    let mut c = Cluster::voters(3, fast()).await;
    c.write(set_secret(1)).await;

    // The leader alone: its writes and reads time out; the others go on.
    let old = c.leader().await;
    c.cut(old);
    assert!(matches!(
        c.node(old).write(set_secret(2)).await,
        Err(WriteError::NoQuorum(_))
    ));
    assert!(matches!(
        c.node(old).read().await,
        Err(ReadError::NoQuorum(_))
    ));
    let new = c.leader().await;
    assert_ne!(new, old);
    c.write(set_secret(3)).await;
    c.heal(old);
    let state = c.node(c.leader().await).read().await.unwrap();
    c.converged(&state).await;

    // A follower alone never becomes leader and cannot write.
    let leader = c.leader().await;
    let alone = (0..3).find(|&i| i != leader).unwrap();
    c.cut(alone);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(
            !c.node(alone).status().is_leader,
            "a minority of one elected itself"
        );
        sleep(Duration::from_millis(20)).await;
    }
    assert!(c.node(alone).write(set_secret(4)).await.is_err());
    c.write(set_secret(5)).await;
    c.heal(alone);
    let state = c.node(c.leader().await).read().await.unwrap();
    assert!(state.secret("s5").is_some());
    c.converged(&state).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_cluster_restarts_with_its_state() {
    let mut c = Cluster::voters(3, fast()).await;
    for i in 0..5 {
        c.write(set_secret(i)).await;
    }
    let state = c.node(c.leader().await).read().await.unwrap();
    c.converged(&state).await;
    let term = c.node(0).status().term;

    c.stop_all().await;
    for i in 0..3 {
        c.start(i).await;
    }
    let leader = c.leader().await;
    assert_eq!(*c.node(leader).read().await.unwrap(), *state);
    assert!(c.node(leader).status().term >= term);
    assert_eq!(c.node(leader).voters().len(), 3);
    c.write(set_secret(9)).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_manager_leads_again_after_a_restart() {
    let mut c = Cluster::voters(1, fast()).await;
    c.write(set_secret(1)).await;
    let state = c.node(0).read().await.unwrap();
    c.stop(0).await;

    c.start(0).await;
    assert_eq!(c.leader().await, 0);
    assert_eq!(*c.node(0).read().await.unwrap(), *state);
    c.write(set_secret(2)).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_bring_rejoining_and_new_managers_up_to_date() {
    let config = ConsensusConfig {
        snapshot_every: 10,
        logs_kept_after_snapshot: 0,
        ..fast()
    };
    let mut c = Cluster::new(4, config).await;
    c.stop(3).await;
    c.node(0).initialize().await.unwrap();
    for i in 1..3 {
        c.node(0).add_voter(c.peer(i).clone()).await.unwrap();
    }
    c.write(set_secret(0)).await;
    c.stop(2).await;

    for i in 1..50 {
        c.write(set_secret(i)).await;
    }
    let leader = c.leader().await;
    eventually("the leader to purge its log", || {
        let metrics = c.node(leader).raft.metrics();
        let purged = metrics.borrow().purged.map(|l| l.index);
        purged >= Some(40)
    })
    .await;
    let state = c.node(leader).read().await.unwrap();

    // Manager 2 missed entries that are gone from the log: it needs the snapshot.
    c.start(2).await;
    c.converged(&state).await;
    assert!(c.node(2).raft.metrics().borrow().snapshot.is_some());

    // So does a manager that was never in the cluster.
    c.start(3).await;
    c.node(leader).add_voter(c.peer(3).clone()).await.unwrap();
    c.converged(&state).await;
    eventually("the new manager to see itself a voter", || {
        c.node(3).voters().len() == 4
    })
    .await;

    // A restart restores the snapshot and replays the rest of the log.
    c.stop(3).await;
    c.start(3).await;
    c.write(set_secret(99)).await;
    let state = c.node(c.leader().await).read().await.unwrap();
    c.converged(&state).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_command_is_reported_and_the_log_goes_on() {
    let mut c = Cluster::voters(1, fast()).await;
    let before = c.node(0).status().commit_index;
    let refused = c
        .node(0)
        .write(Command::RemoveSecret {
            name: "nope".into(),
        })
        .await;
    assert_eq!(
        refused,
        Err(WriteError::Refused("secret `nope` not found".into()))
    );
    // Metrics are reported a moment after the answer.
    eventually("the refused entry to count as applied", || {
        c.node(0).status().commit_index > before
    })
    .await;

    c.write(set_secret(1)).await;
    let state = c.node(0).read().await.unwrap();
    assert!(state.secret("s1").is_some());

    // Replaying the log after a restart refuses it again, the same way.
    c.stop(0).await;
    c.start(0).await;
    c.leader().await;
    assert_eq!(*c.node(0).read().await.unwrap(), *state);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_voters_shrinks_the_quorum_down_to_one() {
    let mut c = Cluster::voters(3, fast()).await;
    let leader = c.leader().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    assert!(matches!(
        c.node(others[0])
            .remove_voter(c.peer(others[1]).raft_id())
            .await,
        Err(MembershipError::NotLeader { .. })
    ));

    for &i in &others {
        c.node(leader)
            .remove_voter(c.peer(i).raft_id())
            .await
            .unwrap();
        c.stop(i).await;
    }
    eventually("the leader to be the only voter", || {
        c.node(leader).voters() == vec![c.peer(leader).clone()]
    })
    .await;
    // Alone, the leader is its own majority.
    c.node(leader).write(set_secret(1)).await.unwrap();
    assert_eq!(
        c.node(leader).remove_voter(c.peer(leader).raft_id()).await,
        Err(MembershipError::LastVoter)
    );
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_appends_are_sent_again_in_smaller_batches() {
    let mut c = Cluster::voters(3, fast()).await;
    let leader = c.leader().await;
    let behind = (0..3).find(|&i| i != leader).unwrap();
    c.stop(behind).await;
    for i in 0..30 {
        c.write(set_secret(i)).await;
    }
    c.limit_entries(4);
    c.start(behind).await;
    let state = c.node(c.leader().await).read().await.unwrap();
    c.converged(&state).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manager_that_cannot_be_reached_is_not_made_a_voter() {
    let config = ConsensusConfig {
        catch_up_timeout: Duration::from_secs(1),
        ..fast()
    };
    let mut c = Cluster::voters(1, config).await;
    let ghost = Peer {
        id: NodeId::new("ghost").unwrap(),
        addr: "127.0.0.1:7999".parse().unwrap(),
    };
    assert!(matches!(
        c.node(0).add_voter(ghost).await,
        Err(MembershipError::NotCaughtUp { .. })
    ));
    assert_eq!(c.node(0).voters(), vec![c.peer(0).clone()]);
    c.node(0).write(set_secret(1)).await.unwrap();
    c.stop_all().await;
}

/// A transport to nowhere, for managers that never talk to others.
#[derive(Clone)]
struct Offline;

impl Transport for Offline {
    async fn append_entries(
        &self,
        _: &Peer,
        _: openraft::raft::AppendEntriesRequest<TypeConfig>,
    ) -> Result<openraft::raft::AppendEntriesResponse<RaftId>, RpcError> {
        Err(TransportError::Unreachable("offline".into()))
    }

    async fn vote(
        &self,
        _: &Peer,
        _: openraft::raft::VoteRequest<RaftId>,
    ) -> Result<openraft::raft::VoteResponse<RaftId>, RpcError> {
        Err(TransportError::Unreachable("offline".into()))
    }

    async fn install_snapshot(
        &self,
        _: &Peer,
        _: openraft::raft::InstallSnapshotRequest<TypeConfig>,
    ) -> Result<openraft::raft::InstallSnapshotResponse<RaftId>, SnapshotRpcError> {
        Err(TransportError::Unreachable("offline".into()))
    }
}

#[tokio::test]
async fn a_data_directory_belongs_to_one_manager() {
    let dir = tempfile::tempdir().unwrap();
    let peer = |name: &str| Peer {
        id: NodeId::new(name).unwrap(),
        addr: "127.0.0.1:7000".parse().unwrap(),
    };
    let first = Consensus::open(dir.path(), peer("a"), fast(), Offline)
        .await
        .unwrap();
    first.shutdown().await.unwrap();

    let other = Consensus::open(dir.path(), peer("b"), fast(), Offline).await;
    assert!(matches!(other, Err(ConsensusError::WrongOwner { .. })));

    let backwards = ConsensusConfig {
        election_timeout_min: Duration::from_millis(700),
        ..fast()
    };
    let bad = Consensus::open(dir.path(), peer("a"), backwards, Offline).await;
    assert!(matches!(bad, Err(ConsensusError::Config(_))));
}
