//! An operator's certificate: what lets a person's CLI on another machine
//! (`shoal -H tcp://MANAGER:2377`) drive a manager, and nothing else.
//!
//! It comes from the same CA as node certificates, so the kind is written
//! into it where no node certificate can carry it: the organizational unit
//! is [`OPERATOR_ORG_UNIT`] (never a role), the only alternative name is a
//! `shoal://operator/ID` URI (no DNS name, so it cannot name a server), and
//! its only extended key usage is client authentication. [`Presented`]
//! sorts a certificate a peer showed into node, operator or neither, so
//! each side of port 2377 takes only its own kind.

use std::fmt;
use std::time::SystemTime;

use super::PkiError;
use super::digest::{pem_encode, pem_to_der};
use super::node_cert::{NodeCert, timestamp};
use crate::ids::random_bytes;

/// The organizational unit of every operator certificate.
pub const OPERATOR_ORG_UNIT: &str = "swarm-operator";

/// What an operator id starts with.
const ID_PREFIX: &str = "op-";

const WHAT: &str = "the operator certificate";

/// A certificate issued by the cluster CA to an operator.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorCert {
    der: Vec<u8>,
    pem: String,
    id: String,
    cluster_name: String,
    not_after: SystemTime,
    serial: String,
}

impl OperatorCert {
    /// Parses a PEM operator certificate.
    pub fn from_pem(pem: &str) -> Result<OperatorCert, PkiError> {
        Self::from_der(pem_to_der(pem, "CERTIFICATE", WHAT)?)
    }

    /// Parses a DER operator certificate; a node certificate, or any
    /// other, is refused with what it is instead.
    pub fn from_der(der: Vec<u8>) -> Result<OperatorCert, PkiError> {
        let bad = |reason: String| PkiError::BadCertificate { what: WHAT, reason };
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| bad(format!("it is not valid X.509 ({e})")))?;
        let subject = x509.subject();
        let ou = subject
            .iter_organizational_unit()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default();
        let cn = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default();
        if ou != OPERATOR_ORG_UNIT {
            return Err(bad(match crate::Role::from_org_unit(ou) {
                Some(role) => format!(
                    "it is the certificate of node `{cn}` (a {role}), not an operator's; make an \
                     operator certificate on a manager with `shoal swarm ca client-cert`"
                ),
                None => format!("its organizational unit `{ou}` is not `{OPERATOR_ORG_UNIT}`"),
            }));
        }
        check_id(cn).map_err(bad)?;
        let id = cn.to_owned();
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
        let pem = pem_encode("CERTIFICATE", &der);
        Ok(OperatorCert {
            der,
            pem,
            id,
            cluster_name,
            not_after,
            serial,
        })
    }

    /// The operator id (the common name), what `revoke-client` takes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cluster name (organization) the CA wrote.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// When the certificate stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Its serial number, lowercase hex.
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
}

impl fmt::Debug for OperatorCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorCert")
            .field("id", &self.id)
            .field("cluster_name", &self.cluster_name)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A fresh operator id: `op-` and 12 random hex digits.
pub fn new_operator_id() -> Result<String, PkiError> {
    let mut bytes = [0u8; 6];
    random_bytes(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{ID_PREFIX}{hex}"))
}

/// Whether `id` is an operator id as [`new_operator_id`] makes them.
pub fn check_id(id: &str) -> Result<(), String> {
    match id.strip_prefix(ID_PREFIX) {
        Some(hex) if hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(format!(
            "`{}` is not an operator id (op- and 12 hex digits, as `shoal swarm ca client-cert` \
             prints)",
            id.chars().take(80).collect::<String>()
        )),
    }
}

/// The kind of certificate a peer presented.
#[derive(Debug)]
pub enum Presented {
    /// A node's: it may speak the cluster protocol, never drive a manager.
    Node(NodeCert),
    /// An operator's: it may drive a manager, never act as a node.
    Operator(OperatorCert),
    /// Neither (why, in words).
    Other(String),
}

impl Presented {
    /// Sorts the leaf certificate `der` (already verified against the
    /// cluster CA by the TLS handshake).
    pub fn of(der: &[u8]) -> Presented {
        match NodeCert::from_der(der.to_vec()) {
            Ok(node) => Presented::Node(node),
            Err(_) => match OperatorCert::from_der(der.to_vec()) {
                Ok(op) => Presented::Operator(op),
                Err(e) => Presented::Other(e.to_string()),
            },
        }
    }
}
