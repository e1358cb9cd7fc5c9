//! The replicated [`ClusterState`] as openraft's state machine.
//!
//! Committed entries come in through `apply`, in log order; each
//! [`Request`] goes to [`ClusterState::apply`], and a refusal is the
//! entry's [`Response`] (the entry still counts as applied). Every change
//! is published on a `watch` channel for the rest of the node.
//!
//! The state itself is not written on every apply: a snapshot (the JSON
//! of `{state, last_applied, membership}`) is kept in `raft.redb`, and on
//! open the state is restored from it; openraft then re-applies the
//! committed entries that follow it from the log.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::db::{Db, DbError, MetaReader as _, get_json, key, put_json, put_raw};
use super::types::{Peer, RaftId, Request, Response, TypeConfig};
use crate::state::{ClusterState, Outcome};

/// A snapshot's bytes, as written.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    state: &'a ClusterState,
    last_applied: Option<LogId<RaftId>>,
    membership: &'a StoredMembership<RaftId, Peer>,
}

/// A snapshot's bytes, as read.
#[derive(Deserialize)]
struct SnapshotIn {
    state: ClusterState,
    last_applied: Option<LogId<RaftId>>,
    membership: StoredMembership<RaftId, Peer>,
}

/// The state machine: the state, how far it got, and who it publishes to.
pub(super) struct StateMachine {
    db: Db,
    state: Arc<ClusterState>,
    last_applied: Option<LogId<RaftId>>,
    membership: StoredMembership<RaftId, Peer>,
    published: watch::Sender<Arc<ClusterState>>,
}

impl StateMachine {
    /// Restores the state machine from the snapshot in `db`, if any, and
    /// returns it with a receiver of the state it publishes.
    pub(super) async fn open(
        db: Db,
    ) -> Result<(StateMachine, watch::Receiver<Arc<ClusterState>>), DbError> {
        let stored = db
            .read(|txn| {
                let Some(bytes) = txn.get_raw(key::SNAPSHOT_DATA)? else {
                    return Ok(None);
                };
                Ok(Some(serde_json::from_slice::<SnapshotIn>(&bytes)?))
            })
            .await?;
        let snapshot = stored.unwrap_or_else(|| SnapshotIn {
            state: ClusterState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
        });
        let state = Arc::new(snapshot.state);
        let (published, receiver) = watch::channel(state.clone());
        let machine = StateMachine {
            db,
            state,
            last_applied: snapshot.last_applied,
            membership: snapshot.membership,
            published,
        };
        Ok((machine, receiver))
    }

    fn apply_one(&mut self, entry: Entry<TypeConfig>) -> (Response, bool) {
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => (Response(Ok(Outcome::Applied)), false),
            EntryPayload::Normal(Request(cmd)) => {
                let result = Arc::make_mut(&mut self.state).apply(cmd);
                let changed = result.is_ok();
                (Response(result.map_err(|e| e.to_string())), changed)
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                (Response(Ok(Outcome::Applied)), false)
            }
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<RaftId>>, StoredMembership<RaftId, Peer>), StorageError<RaftId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<RaftId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let mut changed = false;
        for entry in entries {
            let (response, this_changed) = self.apply_one(entry);
            responses.push(response);
            changed |= this_changed;
        }
        if changed {
            self.published.send_replace(self.state.clone());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<RaftId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftId, Peer>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<RaftId>> {
        let bytes = snapshot.into_inner();
        let io_error = |e: &dyn std::error::Error| {
            StorageError::from(StorageIOError::new(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                openraft::AnyError::error(e),
            ))
        };
        let received: SnapshotIn = serde_json::from_slice(&bytes).map_err(|e| io_error(&e))?;
        let stored_meta = meta.clone();
        self.db
            .write(move |txn| {
                put_json(txn, key::SNAPSHOT_META, &stored_meta)?;
                put_raw(txn, key::SNAPSHOT_DATA, &bytes)
            })
            .await
            .map_err(|e| io_error(&e))?;

        self.state = Arc::new(received.state);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.published.send_replace(self.state.clone());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<RaftId>> {
        let stored = self
            .db
            .read(|txn| {
                let meta: Option<SnapshotMeta<RaftId, Peer>> = get_json(txn, key::SNAPSHOT_META)?;
                let data = txn.get_raw(key::SNAPSHOT_DATA)?;
                Ok(meta.zip(data))
            })
            .await
            .map_err(|e| StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// A copy of the state machine at one point, to snapshot while applying
/// goes on.
pub(super) struct SnapshotBuilder {
    db: Db,
    state: Arc<ClusterState>,
    last_applied: Option<LogId<RaftId>>,
    membership: StoredMembership<RaftId, Peer>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<RaftId>> {
        let write_error = |e: &dyn std::error::Error| {
            StorageError::from(StorageIOError::new(
                ErrorSubject::Snapshot(None),
                ErrorVerb::Write,
                openraft::AnyError::error(e),
            ))
        };
        let data = serde_json::to_vec(&SnapshotOut {
            state: &self.state,
            last_applied: self.last_applied,
            membership: &self.membership,
        })
        .map_err(|e| write_error(&e))?;
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: snapshot_id(self.last_applied),
        };

        let (stored_meta, stored_data) = (meta.clone(), data.clone());
        self.db
            .write(move |txn| {
                // A snapshot installed from the leader meanwhile may be newer.
                let current: Option<SnapshotMeta<RaftId, Peer>> =
                    get_json(txn, key::SNAPSHOT_META)?;
                if current.is_some_and(|c| c.last_log_id > stored_meta.last_log_id) {
                    return Ok(());
                }
                put_json(txn, key::SNAPSHOT_META, &stored_meta)?;
                put_raw(txn, key::SNAPSHOT_DATA, &stored_data)
            })
            .await
            .map_err(|e| write_error(&e))?;

        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// A snapshot's id: its last log id and when it was made, so two
/// snapshots of the same point taken apart are told apart in transfer.
fn snapshot_id(last: Option<LogId<RaftId>>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    match last {
        Some(last) => format!("{}-{}-{nanos}", last.leader_id, last.index),
        None => format!("none-{nanos}"),
    }
}
