//! Encrypted networks: their VXLAN datagrams travel between nodes inside
//! WireGuard (boringtun's Noise IK), one tunnel per pair of nodes.
//!
//! What rides the tunnel is the datagram exactly as the underlay would
//! have carried it: an IPv4 header and a UDP header (to the VXLAN port)
//! around the VXLAN datagram, since WireGuard carries IP packets. So a
//! task frame grows by the 50 bytes of VXLAN and [`OVERHEAD`] more.
//!
//! - Each node has a static Curve25519 key of its own ([`NodeKey`], made
//!   once and kept in the state directory); the tables list the other
//!   nodes' public keys by underlay address. A datagram is taken only from
//!   the node whose address it comes from, under that node's key.
//! - A preshared key of the cluster keyring is mixed into every handshake,
//!   so rotating the keyring (as Swarm rotates its network keys every 12
//!   hours) rekeys every tunnel. Each peer has one boringtun tunnel per
//!   preshared key (an epoch); the key id's parity is carried in the
//!   tunnel's session index, so the responder answers under the key the
//!   initiator used. A new key is used for new handshakes
//!   [`SWITCH_AFTER`] after it appears, when every node has it, and
//!   traffic stays on the old session until the new one is up.
//! - WireGuard itself renews session keys every two minutes, with forward
//!   secrecy; a peer that leaves the tables loses its tunnels at once.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use boringtun::x25519::{PublicKey, StaticSecret};

use crate::tables::WgKey;

/// What the tunnel adds to a VXLAN datagram: the IPv4 and UDP headers
/// inside (28 bytes) and WireGuard's data header and tag (32).
pub const OVERHEAD: u16 = 60;
/// The UDP port WireGuard listens on by default.
pub const DEFAULT_PORT: u16 = 51820;

/// This node's static key.
#[derive(Clone)]
pub struct NodeKey {
    secret: StaticSecret,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.public())
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> io::Result<NodeKey> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(NodeKey {
            secret: StaticSecret::from(bytes),
        })
    }

    /// The key in `path` (base64, as `wg genkey` writes it), made there
    /// (0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> io::Result<NodeKey> {
        match fs::read_to_string(path) {
            Ok(text) => {
                let key: WgKey = text.parse().map_err(|e: String| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                if fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
                }
                Ok(NodeKey {
                    secret: StaticSecret::from(key.0),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = NodeKey::generate()?;
                let tmp = path.with_extension("tmp");
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                writeln!(file, "{}", WgKey(key.secret.to_bytes()))?;
                file.sync_all()?;
                fs::rename(&tmp, path)?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// The public half, which the other nodes list.
    pub fn public(&self) -> WgKey {
        WgKey(PublicKey::from(&self.secret).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_key_is_made_once_private_and_kept() {
        let dir = tempfile_dir();
        let path = dir.join("tunnel.key");
        let made = NodeKey::load_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = NodeKey::load_or_create(&path).unwrap();
        assert_eq!(made.public(), again.public());
        fs::write(&path, "not a key\n").unwrap();
        let err = NodeKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("not a WireGuard key"), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "shoal-tunnel-key-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
