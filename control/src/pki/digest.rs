//! The cluster CA's certificate as a joining node sees it, and its digest.
//!
//! A join token carries the SHA-256 of the CA certificate's DER. The
//! joining node receives the certificate from a manager, computes the
//! digest here and compares it with the token's (see
//! [`JoinToken::pin`](super::JoinToken::pin)) before trusting it.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PkiError;
use crate::base36;

/// Characters of a digest in base36, as in Swarm's tokens.
pub(crate) const DIGEST_BASE36_LEN: usize = 50;

/// SHA-256 of a CA certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CaDigest([u8; 32]);

impl CaDigest {
    /// The digest of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> CaDigest {
        CaDigest(Sha256::digest(der).into())
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> CaDigest {
        CaDigest(bytes)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 50-character base36 form used in join tokens.
    pub fn to_base36(&self) -> String {
        base36::encode(&self.0, DIGEST_BASE36_LEN)
    }
}

/// Lower-case hex, the form `openssl x509 -fingerprint -sha256` shows
/// (without colons), so an operator can compare by eye.
impl fmt::Display for CaDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CaDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaDigest({self})")
    }
}

/// The cluster CA's certificate without its key: what every node holds
/// to verify its peers.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificate {
    der: Vec<u8>,
    pem: String,
}

impl CaCertificate {
    /// Parses a PEM certificate and checks that it is a CA.
    pub fn from_pem(pem: &str) -> Result<CaCertificate, PkiError> {
        let der = pem_to_der(pem, "CERTIFICATE", "the CA certificate")?;
        Self::from_der(der)
    }

    /// Parses a bundle of PEM certificates (a node's `ca.pem` holds two
    /// while a CA rotation runs), each a CA; at least one.
    pub fn bundle_from_pem(pem: &str) -> Result<Vec<CaCertificate>, PkiError> {
        let bad = |reason: String| PkiError::BadCertificate {
            what: "the CA certificates",
            reason,
        };
        let blocks = pem::parse_many(pem).map_err(|e| bad(format!("they are not PEM ({e})")))?;
        if blocks.is_empty() {
            return Err(bad("there is no certificate".into()));
        }
        blocks
            .into_iter()
            .map(|b| {
                if b.tag() == "CERTIFICATE" {
                    Self::from_der(b.into_contents())
                } else {
                    Err(bad(format!(
                        "a PEM block is a `{}`, not a `CERTIFICATE`",
                        b.tag()
                    )))
                }
            })
            .collect()
    }

    /// Checks that `der` is a CA certificate and wraps it.
    pub fn from_der(der: Vec<u8>) -> Result<CaCertificate, PkiError> {
        let bad = |reason: String| PkiError::BadCertificate {
            what: "the CA certificate",
            reason,
        };
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| bad(format!("it is not valid X.509 ({e})")))?;
        if !cert.is_ca() {
            return Err(bad(
                "it is not a CA certificate (basic constraints say so); use the `ca.pem` of a \
                 manager's state directory"
                    .into(),
            ));
        }
        let pem = pem_encode("CERTIFICATE", &der);
        Ok(CaCertificate { der, pem })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM encoding.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// SHA-256 of the DER encoding.
    pub fn digest(&self) -> CaDigest {
        CaDigest::of_der(&self.der)
    }
}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificate")
            .field("digest", &self.digest())
            .finish()
    }
}

/// Decodes one PEM block labelled `label`.
pub(crate) fn pem_to_der(pem: &str, label: &str, what: &'static str) -> Result<Vec<u8>, PkiError> {
    let block = pem::parse(pem).map_err(|e| PkiError::BadCertificate {
        what,
        reason: format!("it is not PEM ({e})"),
    })?;
    if block.tag() != label {
        return Err(PkiError::BadCertificate {
            what,
            reason: format!("the PEM block is a `{}`, not a `{label}`", block.tag()),
        });
    }
    Ok(block.into_contents())
}

/// PEM-encodes DER bytes with Unix line endings.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
