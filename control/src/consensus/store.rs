//! The Raft log in redb: entries by index, the vote, the last committed
//! and the last purged log id.
//!
//! openraft calls these one at a time from its core task; each write is
//! committed to disk before it returns (and before `append`'s callback),
//! so a vote or an entry acknowledged to a peer survives a crash.
//! `committed` is saved too, so a restarted manager re-applies its
//! committed entries on top of the last snapshot by itself.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogId, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use redb::ReadableTable;

use super::db::{Db, DbError, LOG, get_json, key, put_json};
use super::types::{RaftId, TypeConfig};

/// The log store; clones share the database and serve as log readers for
/// the replication tasks.
#[derive(Clone)]
pub(super) struct LogStore {
    db: Db,
}

impl LogStore {
    pub(super) fn new(db: Db) -> LogStore {
        LogStore { db }
    }
}

/// Maps a database failure to openraft's error for `verb` on `subject`.
fn sto(
    subject: ErrorSubject<RaftId>,
    verb: ErrorVerb,
) -> impl FnOnce(DbError) -> StorageError<RaftId> {
    move |e| StorageIOError::new(subject, verb, &e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<RaftId>> {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        self.db
            .read(move |txn| {
                let log = txn.open_table(LOG)?;
                let mut entries = Vec::new();
                for item in log.range::<u64>(bounds)? {
                    let (_, value) = item?;
                    entries.push(serde_json::from_slice(value.value())?);
                }
                Ok(entries)
            })
            .await
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<RaftId>> {
        self.db
            .read(|txn| {
                let last_purged_log_id: Option<LogId<RaftId>> = get_json(txn, key::PURGED)?;
                let last = match txn.open_table(LOG)?.last()? {
                    Some((_, value)) => {
                        let entry: Entry<TypeConfig> = serde_json::from_slice(value.value())?;
                        Some(*entry.get_log_id())
                    }
                    None => last_purged_log_id,
                };
                Ok(LogState {
                    last_purged_log_id,
                    last_log_id: last,
                })
            })
            .await
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftId>) -> Result<(), StorageError<RaftId>> {
        let vote = *vote;
        self.db
            .write(move |txn| put_json(txn, key::VOTE, &vote))
            .await
            .map_err(sto(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftId>>, StorageError<RaftId>> {
        self.db
            .read(|txn| get_json(txn, key::VOTE))
            .await
            .map_err(sto(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<RaftId>>,
    ) -> Result<(), StorageError<RaftId>> {
        self.db
            .write(move |txn| put_json(txn, key::COMMITTED, &committed))
            .await
            .map_err(sto(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<RaftId>>, StorageError<RaftId>> {
        self.db
            .read(|txn| Ok(get_json::<Option<LogId<RaftId>>>(txn, key::COMMITTED)?.flatten()))
            .await
            .map_err(sto(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<RaftId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        self.db
            .write(move |txn| {
                let mut log = txn.open_table(LOG)?;
                for entry in &entries {
                    log.insert(
                        entry.get_log_id().index,
                        serde_json::to_vec(entry)?.as_slice(),
                    )?;
                }
                Ok(())
            })
            .await
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Write))?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<RaftId>) -> Result<(), StorageError<RaftId>> {
        self.db
            .write(move |txn| {
                txn.open_table(LOG)?
                    .retain_in(log_id.index.., |_, _| false)?;
                Ok(())
            })
            .await
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<RaftId>) -> Result<(), StorageError<RaftId>> {
        self.db
            .write(move |txn| {
                put_json(txn, key::PURGED, &log_id)?;
                txn.open_table(LOG)?
                    .retain_in(..=log_id.index, |_, _| false)?;
                Ok(())
            })
            .await
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::consensus::types::Request;
    use crate::state::Command;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Request(Command::RemoveSecret {
                name: format!("s{index}"),
            })),
        }
    }

    async fn open(dir: &std::path::Path) -> LogStore {
        LogStore::new(Db::open(dir).await.unwrap())
    }

    #[tokio::test]
    async fn log_vote_and_committed_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path()).await;
            store
                .blocking_append((1..=5).map(|i| entry(1, i)))
                .await
                .unwrap();
            store.save_vote(&Vote::new_committed(1, 7)).await.unwrap();
            store
                .save_committed(Some(LogId::new(CommittedLeaderId::new(1, 1), 4)))
                .await
                .unwrap();
        }
        let mut store = open(dir.path()).await;
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(Vote::new_committed(1, 7))
        );
        assert_eq!(
            store.read_committed().await.unwrap().map(|l| l.index),
            Some(4)
        );
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(5));
        assert_eq!(state.last_purged_log_id, None);
        let got = store.try_get_log_entries(2..4).await.unwrap();
        assert_eq!(got, vec![entry(1, 2), entry(1, 3)]);
    }

    #[tokio::test]
    async fn truncate_and_purge_leave_no_hole() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path()).await;
        store
            .blocking_append((1..=10).map(|i| entry(1, i)))
            .await
            .unwrap();

        store.truncate(*entry(1, 8).get_log_id()).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(7));

        store.purge(*entry(1, 3).get_log_id()).await.unwrap();
        let got = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(got.first().map(|e| e.log_id.index), Some(4));
        assert_eq!(got.len(), 4);

        store.purge(*entry(1, 7).get_log_id()).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(7));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(7));
        assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
    }
}
