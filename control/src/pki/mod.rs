//! The cluster's public key infrastructure, sans I/O except for
//! [`write_private`].
//!
//! A cluster has one CA ([`ClusterCa`]), kept by the managers. A joining
//! node makes its own key ([`NodeKey`]) and a CSR, presents a join token
//! ([`JoinToken`]) whose CA digest pins the CA it is about to trust and
//! whose secret decides its role, and gets back a [`NodeCert`] naming its
//! id and role. Later sessions put these into rustls for mTLS. An
//! operator's CLI gets an [`OperatorCert`] from the same CA, of a kind
//! no node certificate can pass for ([`Presented`]).

mod ca;
mod ct;
mod digest;
mod error;
mod files;
mod node_cert;
mod node_key;
mod operator_cert;
mod token;

pub use ca::{CA_VALIDITY, ClusterCa, MIN_NODE_CERT_VALIDITY, NODE_CERT_VALIDITY, check_validity};
pub use digest::{CaCertificate, CaDigest};
pub use error::PkiError;
pub use files::write_private;
pub use node_cert::NodeCert;
pub use node_key::NodeKey;
pub use operator_cert::{
    OPERATOR_ORG_UNIT, OperatorCert, Presented, check_id as check_operator_id, new_operator_id,
};
pub use token::{JoinToken, TokenError, Tokens};
