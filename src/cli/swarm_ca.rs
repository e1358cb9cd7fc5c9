//! `shoal swarm ca client-cert | revoke-client`: operator certificates,
//! with which `shoal -H tcp://MANAGER:2377` drives a swarm from a machine
//! that is not a node.
//!
//! The key is made here and never leaves this machine: the manager signs
//! a CSR. The files are docker's names (`ca.pem`, `cert.pem`, `key.pem`)
//! in a folder only the owner may enter.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use shoal_control::pki::{NodeKey, write_private};
use shoal_control::swarm::OperatorReply;

use crate::client::Daemon;
use crate::client::remote::default_tls_dir;

#[derive(clap::Subcommand)]
pub enum Action {
    /// Issue an operator certificate (with its key and the swarm's CA
    /// certificate) into a folder: what `shoal -H tcp://MANAGER:2377
    /// --tls-dir DIR` uses from a machine that is not a node. Prints its id.
    ClientCert {
        /// Where to write ca.pem, cert.pem and key.pem (default: --tls-dir,
        /// else ~/.shoal).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the id only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Revoke an operator certificate: every manager refuses it from now on.
    RevokeClient {
        /// The operator id that `client-cert` printed (op-...).
        id: String,
    },
}

#[derive(Serialize)]
struct ClientCertRequest<'a> {
    csr: &'a str,
}

#[derive(Serialize)]
struct RevokeRequest<'a> {
    id: &'a str,
}

pub fn run(daemon: &Daemon, action: Action, tls_dir: Option<&Path>) -> Result<()> {
    match action {
        Action::ClientCert { out, quiet } => {
            let dir = match out.or_else(|| tls_dir.map(Path::to_path_buf)) {
                Some(d) => d,
                None => default_tls_dir()?,
            };
            let key = NodeKey::generate()?;
            let csr = key.csr_pem_named("operator")?;
            let reply: OperatorReply =
                daemon.post("/swarm/ca/client-cert", &ClientCertRequest { csr: &csr })?;
            write_files(&dir, &reply, &key)?;
            if quiet {
                println!("{}", reply.id);
            } else {
                println!(
                    "Operator certificate {} written to {} (ca.pem, cert.pem, key.pem); it \
                     expires {}.",
                    reply.id,
                    dir.display(),
                    super::expires_in(reply.not_after)
                );
                println!("From another machine: shoal -H tcp://MANAGER:2377 --tls-dir DIR node ls");
                println!("To revoke it: shoal swarm ca revoke-client {}", reply.id);
            }
        }
        Action::RevokeClient { id } => {
            let id = super::path_part(&id, "operator id")?;
            let () = daemon.post("/swarm/ca/revoke-client", &RevokeRequest { id })?;
            println!("Operator certificate {id} revoked; every manager refuses it.");
        }
    }
    Ok(())
}

/// Writes the three files into `dir`, made (or narrowed) to 0700; each
/// file 0600.
fn write_files(dir: &Path, reply: &OperatorReply, key: &NodeKey) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {} to its owner", dir.display()))?;
    write_private(&dir.join("key.pem"), key.private_key_pem().as_bytes())?;
    write_private(&dir.join("cert.pem"), reply.cert.as_bytes())?;
    write_private(&dir.join("ca.pem"), reply.ca.as_bytes())?;
    Ok(())
}
