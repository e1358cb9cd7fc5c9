//! A node's certificate, and the identity read back from it.
//!
//! Peers learn who they talk to from the certificate alone: its common
//! name is the node id and its organizational unit the role. Both are
//! parsed once, when the certificate enters, so the accessors cannot fail.

use std::fmt;
use std::time::{Duration, SystemTime};

use x509_parser::certificate::X509Certificate;

use super::digest::{CaCertificate, pem_encode, pem_to_der};
use super::{NodeKey, PkiError};
use crate::ids::NodeId;
use crate::role::Role;

const WHAT: &str = "the node certificate";

/// A certificate issued by the cluster CA to one node.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCert {
    der: Vec<u8>,
    pem: String,
    node_id: NodeId,
    role: Role,
    cluster_name: String,
    not_after: SystemTime,
    serial: String,
    public_key: Vec<u8>,
}

impl NodeCert {
    /// Parses a PEM node certificate.
    pub fn from_pem(pem: &str) -> Result<NodeCert, PkiError> {
        Self::from_der(pem_to_der(pem, "CERTIFICATE", WHAT)?)
    }

    /// Parses a DER node certificate.
    pub fn from_der(der: Vec<u8>) -> Result<NodeCert, PkiError> {
        let bad = |reason: String| PkiError::BadCertificate { what: WHAT, reason };
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| bad(format!("it is not valid X.509 ({e})")))?;
        let subject = x509.subject();
        let cn = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or_else(|| bad("it has no common name (the node id)".into()))?;
        let node_id = NodeId::new(cn).map_err(|e| bad(e.to_string()))?;
        let ou = subject
            .iter_organizational_unit()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or_else(|| bad("it has no organizational unit (the role)".into()))?;
        let role = Role::from_org_unit(ou).ok_or_else(|| {
            bad(format!(
                "its organizational unit `{ou}` is not `swarm-manager` or `swarm-worker`"
            ))
        })?;
        let cluster_name = subject
            .iter_organization()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let not_after = timestamp(x509.validity().not_after.timestamp());
        let serial = x509
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let public_key = x509.public_key().subject_public_key.data.to_vec();
        let pem = pem_encode("CERTIFICATE", &der);
        Ok(NodeCert {
            der,
            pem,
            node_id,
            role,
            cluster_name,
            not_after,
            serial,
            public_key,
        })
    }

    /// The node this certificate names.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The role this certificate grants.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The cluster name (organization) the CA wrote.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// When the certificate stops being valid; renew before then.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Its serial number, lowercase hex: unique per certificate the CA
    /// issues, so it tells a node's current certificate from older ones.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM encoding.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// True when this certificate is for `key`'s public key (a node checks
    /// this before writing a certificate next to its key).
    pub fn is_for_key(&self, key: &NodeKey) -> bool {
        self.public_key == key.public_key_raw()
    }

    /// True when both certificates are for the same public key.
    pub fn same_key_as(&self, other: &NodeCert) -> bool {
        self.public_key == other.public_key
    }

    /// The CA among `roots` that issued this certificate.
    pub fn issuer_among<'a>(&self, roots: &'a [CaCertificate]) -> Option<&'a CaCertificate> {
        roots.iter().find(|ca| self.verify_issued_by(ca).is_ok())
    }

    /// Checks the CA's signature on this certificate.
    pub fn verify_issued_by(&self, ca: &CaCertificate) -> Result<(), PkiError> {
        let not_ours = || PkiError::NotIssuedByCa {
            node: self.node_id.to_string(),
        };
        let (_, ca_x509) = x509_parser::parse_x509_certificate(ca.der()).map_err(|e| {
            PkiError::BadCertificate {
                what: "the CA certificate",
                reason: format!("it is not valid X.509 ({e})"),
            }
        })?;
        let (_, x509): (_, X509Certificate<'_>) =
            x509_parser::parse_x509_certificate(&self.der).map_err(|_| not_ours())?;
        x509.verify_signature(Some(ca_x509.public_key()))
            .map_err(|_| not_ours())
    }
}

pub(super) fn timestamp(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        // A certificate expiring before 1970 is simply expired.
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("node_id", &self.node_id)
            .field("role", &self.role)
            .field("cluster_name", &self.cluster_name)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}
