//! A node's own key pair and the CSR it sends when joining.
//!
//! The private key is made on the node and never leaves it: the CA only
//! sees the CSR, which proves possession of the key by its signature.

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use super::PkiError;
use crate::ids::NodeId;

/// A node's ECDSA P-256 key pair.
pub struct NodeKey {
    key: KeyPair,
}

impl NodeKey {
    /// A fresh key pair.
    pub fn generate() -> Result<NodeKey, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
            PkiError::Rcgen {
                what: "generate the node key",
                source,
            }
        })?;
        Ok(NodeKey { key })
    }

    /// Reads a key written by [`NodeKey::private_key_pem`].
    pub fn from_pem(pem: &str) -> Result<NodeKey, PkiError> {
        let key = KeyPair::from_pem(pem).map_err(|source| PkiError::BadKey {
            what: "the node key",
            source,
        })?;
        Ok(NodeKey { key })
    }

    /// The private key in PKCS#8 PEM; store it with
    /// [`write_private`](super::write_private).
    pub fn private_key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A PEM CSR naming `node_id`, signed by this key. The CA decides what
    /// the certificate says; the CSR's subject is only a courtesy.
    pub fn csr_pem(&self, node_id: &NodeId) -> Result<String, PkiError> {
        self.csr_pem_named(node_id.as_str())
    }

    /// A PEM CSR with the common name `name`, signed by this key: what an
    /// operator's CLI sends for an operator certificate (the same kind of
    /// key as a node's, made where it is used).
    pub fn csr_pem_named(&self, name: &str) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let what = "build the certificate signing request";
        params
            .serialize_request(&self.key)
            .and_then(|csr| csr.pem())
            .map_err(|source| PkiError::Rcgen { what, source })
    }

    /// The public key in DER (SubjectPublicKeyInfo's bit string), to check
    /// that a certificate was issued for this key.
    pub fn public_key_raw(&self) -> &[u8] {
        self.key.public_key_raw()
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeKey(<redacted>)")
    }
}
