//! [`ConsensusConfig`]: Raft's timing and log compaction, in shoal's terms,
//! and the openraft configuration made from it.

use std::time::Duration;

use openraft::{Config, SnapshotPolicy};

use super::error::ConsensusError;

/// How Raft among managers is timed and compacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsensusConfig {
    /// How often the leader sends heartbeats; also how long it waits for
    /// one append-entries answer.
    pub heartbeat_interval: Duration,
    /// Followers start an election after hearing nothing from the leader
    /// for a random time between these two. openraft first lets the old
    /// leader's lease (`election_timeout_max`) run out, so a dead leader is
    /// replaced after about `max + random(min..max)`: 1.35 to 1.8 s with
    /// the defaults, 450/900 ms (Swarm's 10-20 s elections, etcd's 1 s).
    /// Six heartbeats fit in the shortest timeout, so a busy leader is not
    /// deposed by one late heartbeat.
    pub election_timeout_min: Duration,
    /// See [`Self::election_timeout_min`].
    pub election_timeout_max: Duration,
    /// Take a snapshot every this many applied entries.
    pub snapshot_every: u64,
    /// How many entries stay in the log after a snapshot, so a follower a
    /// little behind catches up from the log rather than the snapshot.
    pub logs_kept_after_snapshot: u64,
    /// How long a write, a linearizable read or a membership change waits
    /// for a quorum before giving up.
    pub request_timeout: Duration,
    /// How long [`add_voter`](super::Consensus::add_voter) waits for the new
    /// manager to receive the log before making it a voter.
    pub catch_up_timeout: Duration,
}

impl Default for ConsensusConfig {
    fn default() -> ConsensusConfig {
        ConsensusConfig {
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(450),
            election_timeout_max: Duration::from_millis(900),
            snapshot_every: 1000,
            logs_kept_after_snapshot: 1000,
            request_timeout: Duration::from_secs(5),
            catch_up_timeout: Duration::from_secs(60),
        }
    }
}

/// Snapshot chunks stay well under gRPC's default 4 MiB message limit even
/// when a transport encodes bytes as a JSON array (about 3.5 bytes each).
const SNAPSHOT_CHUNK_BYTES: u64 = 512 << 10;

impl ConsensusConfig {
    /// The openraft configuration, checked.
    pub(super) fn to_openraft(&self) -> Result<Config, ConsensusError> {
        Config {
            cluster_name: "shoal".to_string(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
            install_snapshot_timeout: millis(self.request_timeout),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ConsensusError::Config(Box::new(e)))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
