//! What a swarm member keeps on disk, under `<state-dir>/swarm/`:
//! `node.json` (who it is and whom to call), `ca.pem`, `node.pem`,
//! `node-key.pem`, and `raft/` on managers; all 0600 in a 0700 folder.
//!
//! `node.json` is written last and removed first, so its presence is what
//! "this node is in a swarm" means: a join or init that fails half-way
//! leaves no member behind.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SwarmError;
use crate::NodeId;
use crate::pki::{CaCertificate, NodeCert, NodeKey, write_private};

/// The persistent part of a node's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster's id.
    pub cluster_id: String,
    /// Where other nodes reach this node's cluster API.
    pub addr: SocketAddr,
    /// Where this node receives gossip.
    pub gossip_addr: SocketAddr,
    /// Cluster API addresses of the managers, as last seen.
    pub managers: Vec<SocketAddr>,
    /// Gossip addresses of the other nodes, as last seen: whom a restarted
    /// node announces itself to.
    pub gossip_seeds: Vec<SocketAddr>,
}

/// Everything a member loads at start-up.
#[derive(Debug)]
pub struct Identity {
    /// `node.json`.
    pub record: NodeRecord,
    /// The CA certificates it trusts: the cluster CA, or the old and the
    /// new one while a CA rotation runs (`ca.pem`).
    pub roots: Vec<CaCertificate>,
    /// This node's certificate (its role is in it).
    pub cert: NodeCert,
    /// This node's private key.
    pub key: NodeKey,
}

/// The paths under `<state-dir>/swarm/`.
#[derive(Debug, Clone)]
pub struct SwarmDir {
    dir: PathBuf,
}

impl SwarmDir {
    /// The swarm directory of a daemon's state directory.
    pub fn new(state_dir: &Path) -> SwarmDir {
        SwarmDir {
            dir: state_dir.join("swarm"),
        }
    }

    /// Where Raft keeps its log and state machine.
    pub fn raft(&self) -> PathBuf {
        self.dir.join("raft")
    }

    fn record_path(&self) -> PathBuf {
        self.dir.join("node.json")
    }

    /// True when this node is a member of a swarm.
    pub fn is_member(&self) -> bool {
        self.record_path().exists()
    }

    /// Loads the identity, or `None` when this node is in no swarm.
    pub fn load(&self) -> Result<Option<Identity>, SwarmError> {
        let path = self.record_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let record: NodeRecord = serde_json::from_str(&text).map_err(|e| SwarmError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let read = |name: &str| {
            let p = self.dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| io(&p, e))
        };
        let roots = CaCertificate::bundle_from_pem(&read("ca.pem")?)?;
        let cert = NodeCert::from_pem(&read("node.pem")?)?;
        let key = NodeKey::from_pem(&read("node-key.pem")?)?;
        if !cert.is_for_key(&key) {
            return Err(SwarmError::Corrupt {
                path: self.dir.join("node.pem"),
                reason: "the certificate is not for node-key.pem".into(),
            });
        }
        Ok(Some(Identity {
            record,
            roots,
            cert,
            key,
        }))
    }

    /// Writes a new identity: keys and certificates first, `node.json`
    /// last.
    pub fn save(&self, id: &Identity) -> Result<(), SwarmError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io(&self.dir, e))?;
        write_private(
            &self.dir.join("node-key.pem"),
            id.key.private_key_pem().as_bytes(),
        )?;
        self.save_cert(&id.roots, &id.cert)?;
        self.save_record(&id.record)
    }

    /// Replaces the CA and node certificates (after a renewal or a change
    /// of the CAs the cluster trusts).
    pub fn save_cert(&self, roots: &[CaCertificate], cert: &NodeCert) -> Result<(), SwarmError> {
        let bundle: String = roots.iter().map(CaCertificate::pem).collect();
        write_atomic(&self.dir.join("ca.pem"), bundle.as_bytes())?;
        write_atomic(&self.dir.join("node.pem"), cert.pem().as_bytes())
    }

    /// Replaces `node.json` (when the managers or seeds change).
    pub fn save_record(&self, record: &NodeRecord) -> Result<(), SwarmError> {
        let text = serde_json::to_vec_pretty(record).map_err(|e| SwarmError::Corrupt {
            path: self.record_path(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.record_path(), &text)
    }

    /// Forgets the swarm: `node.json` first, then everything else.
    pub fn remove(&self) -> Result<(), SwarmError> {
        match std::fs::remove_file(self.record_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.record_path(), e)),
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.dir, e)),
        }
    }

    /// Removes the Raft data (after a demotion).
    pub fn remove_raft(&self) -> Result<(), SwarmError> {
        match std::fs::remove_dir_all(self.raft()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.raft(), e)),
        }
    }
}

/// Replaces `path` with `bytes`, mode 0600 like everything in the state
/// directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SwarmError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // A file left by an older version may be wider.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
    };
    write().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> SwarmError {
    SwarmError::Io {
        path: path.to_path_buf(),
        source,
    }
}
