//! Errors of certificate and key handling.

use std::path::PathBuf;

use thiserror::Error;

use crate::ids::RandomError;

/// Why a certificate, key or CSR operation failed.
#[derive(Debug, Error)]
pub enum PkiError {
    /// rcgen could not build or sign something we asked for.
    #[error("could not {what}: {source}")]
    Rcgen {
        /// What we were doing, e.g. "generate the CA key".
        what: &'static str,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// A CSR from a joining node was malformed or its signature was wrong.
    #[error(
        "the joining node's certificate signing request was rejected ({0}); it must be a PEM \
         CSR signed by the node's own key, as `shoal swarm join` sends"
    )]
    BadCsr(rcgen::Error),
    /// A PEM or DER blob is not the certificate we expected.
    #[error("{what} is not usable: {reason}")]
    BadCertificate {
        /// Which certificate, e.g. "the CA certificate".
        what: &'static str,
        /// What is wrong with it and how to fix it.
        reason: String,
    },
    /// A private key could not be read.
    #[error(
        "{what} is not a valid PEM private key ({source}); restore it from a backup of the state directory"
    )]
    BadKey {
        /// Which key.
        what: &'static str,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// The CA key and certificate on disk are not a pair.
    #[error(
        "the CA key does not belong to the CA certificate; restore both files from the same \
         backup of the state directory"
    )]
    KeyMismatch,
    /// A node certificate was not signed by this cluster's CA.
    #[error(
        "the certificate of node `{node}` was not issued by this cluster's CA; the node must \
         leave (`shoal swarm leave --force`) and join again with a current token"
    )]
    NotIssuedByCa {
        /// The node the certificate names.
        node: String,
    },
    /// The cluster name cannot go into a certificate.
    #[error(
        "cluster name `{0}` cannot be used: give 1 to 64 printable characters without control \
         characters"
    )]
    ClusterName(String),
    /// A certificate lifetime out of bounds.
    #[error(
        "a node certificate cannot live {0:?}: give at least 3s (nodes renew at two thirds of \
         it) and at most 20 years (the CA's lifetime)"
    )]
    Validity(std::time::Duration),
    /// No randomness for keys or serial numbers.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Writing a private file failed.
    #[error("could not write `{}` ({source}); check that its directory exists and is writable by shoal", path.display())]
    Write {
        /// The file we tried to write.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
