//! The one redb file a manager keeps its Raft data in, `raft.redb`: the
//! log by index in one table, and named records (vote, committed, purged,
//! snapshot, owner) as JSON in another.
//!
//! redb calls block on the disk, so they run on tokio's blocking pool; a
//! write transaction is committed with redb's default durability
//! (`Immediate`: on disk when `commit` returns) before the caller resumes.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::sync::watch;

use super::types::RaftId;

/// Log entries (JSON of `openraft::Entry`) by index.
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Named records, see [`key`].
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The names of the records in [`META`].
pub(super) mod key {
    /// The Raft id of the node the file belongs to.
    pub const OWNER: &str = "owner";
    /// The last vote cast.
    pub const VOTE: &str = "vote";
    /// The last log id known committed.
    pub const COMMITTED: &str = "committed";
    /// The last log id purged from [`super::LOG`].
    pub const PURGED: &str = "purged";
    /// The current snapshot's `SnapshotMeta`.
    pub const SNAPSHOT_META: &str = "snapshot.meta";
    /// The current snapshot's bytes (not JSON-wrapped: stored as is).
    pub const SNAPSHOT_DATA: &str = "snapshot.data";
}

/// A failure of the Raft database.
#[derive(Debug, Error)]
pub enum DbError {
    /// redb failed: the disk or the file.
    #[error(transparent)]
    Redb(#[from] redb::Error),
    /// A stored record does not decode: the file was damaged or written by
    /// an incompatible version.
    #[error("a stored Raft record is damaged: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The blocking task running the I/O died.
    #[error("the Raft storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> DbError {
                DbError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

/// A shared handle on `raft.redb`.
#[derive(Clone)]
pub(super) struct Db {
    inner: Arc<Open>,
}

/// The open file, and a sender whose receivers learn when it is closed.
struct Open {
    // Fields drop in order: the file is closed before `closed` tells.
    db: Database,
    closed: watch::Sender<()>,
}

impl Db {
    /// The database's file in `dir`.
    pub(super) fn path(dir: &Path) -> PathBuf {
        dir.join("raft.redb")
    }

    /// Opens or creates `raft.redb` in `dir`, with both tables present.
    pub(super) async fn open(dir: &Path) -> Result<Db, DbError> {
        let path = Db::path(dir);
        tokio::task::spawn_blocking(move || {
            // The log holds the cluster CA's key: the file is made (or
            // kept) 0600 before redb opens it with whatever mode it would.
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(redb::Error::from)?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(redb::Error::from)?;
            drop(file);
            let db = Database::create(path)?;
            let txn = db.begin_write()?;
            txn.open_table(LOG)?;
            txn.open_table(META)?;
            txn.commit()?;
            let (closed, _) = watch::channel(());
            Ok(Db {
                inner: Arc::new(Open { db, closed }),
            })
        })
        .await?
    }

    /// A receiver whose `changed()` fails once the last handle is dropped
    /// and the file is closed.
    pub(super) fn closed(&self) -> watch::Receiver<()> {
        self.inner.closed.subscribe()
    }

    /// Runs `f` in a read transaction.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&db.db.begin_read()?)).await?
    }

    /// Runs `f` in a write transaction and commits it durably.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.db.begin_write()?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        })
        .await?
    }

    /// Records `me` as the file's owner, or returns the other owner it
    /// already has.
    pub(super) async fn claim(&self, me: RaftId) -> Result<Option<RaftId>, DbError> {
        self.write(move |txn| match get_json::<RaftId>(txn, key::OWNER)? {
            Some(owner) if owner != me => Ok(Some(owner)),
            Some(_) => Ok(None),
            None => {
                put_json(txn, key::OWNER, &me)?;
                Ok(None)
            }
        })
        .await
    }
}

/// Something that can read [`META`]: a read or a write transaction.
pub(super) trait MetaReader {
    /// The raw bytes of record `name`.
    fn get_raw(&self, name: &str) -> Result<Option<Vec<u8>>, DbError>;
}

impl MetaReader for ReadTransaction {
    fn get_raw(&self, name: &str) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self
            .open_table(META)?
            .get(name)?
            .map(|v| v.value().to_vec()))
    }
}

impl MetaReader for WriteTransaction {
    fn get_raw(&self, name: &str) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self
            .open_table(META)?
            .get(name)?
            .map(|v| v.value().to_vec()))
    }
}

/// Record `name`, decoded from JSON.
pub(super) fn get_json<T: DeserializeOwned>(
    txn: &impl MetaReader,
    name: &str,
) -> Result<Option<T>, DbError> {
    match txn.get_raw(name)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// Sets record `name` to `value`'s JSON.
pub(super) fn put_json<T: Serialize>(
    txn: &WriteTransaction,
    name: &str,
    value: &T,
) -> Result<(), DbError> {
    put_raw(txn, name, &serde_json::to_vec(value)?)
}

/// Sets record `name` to `bytes`.
pub(super) fn put_raw(txn: &WriteTransaction, name: &str, bytes: &[u8]) -> Result<(), DbError> {
    txn.open_table(META)?.insert(name, bytes)?;
    Ok(())
}
