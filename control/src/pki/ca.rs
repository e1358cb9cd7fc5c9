//! The cluster CA: created by `swarm init`, kept by managers, used to
//! issue node certificates from CSRs.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::digest::{CaCertificate, CaDigest};
use super::operator_cert::OPERATOR_ORG_UNIT;
use super::{NodeCert, OperatorCert, PkiError};
use crate::ids::{NodeId, random_bytes};
use crate::role::Role;

/// How long the CA is valid: 20 years, Swarm's default.
pub const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// How long a node certificate is valid unless the cluster says otherwise
/// (`--cert-expiry`): 90 days, Swarm's default.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest certificate lifetime a cluster may ask for: a node renews
/// at two thirds of it, and needs a second or so for that.
pub const MIN_NODE_CERT_VALIDITY: Duration = Duration::from_secs(3);
/// Certificates start an hour in the past so a node whose clock is a bit
/// behind the CA's still accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

/// The cluster's certificate authority: its certificate and signing key.
pub struct ClusterCa {
    cert: CaCertificate,
    issuer: Issuer<'static, KeyPair>,
    cluster_name: String,
}

impl ClusterCa {
    /// A new self-signed CA (ECDSA P-256) for the cluster `cluster_name`,
    /// which also goes into every node certificate's organization.
    pub fn generate(cluster_name: &str) -> Result<ClusterCa, PkiError> {
        check_cluster_name(cluster_name)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(rcgen_err("generate the CA key"))?;
        let params = ca_params(cluster_name)?;
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_err("self-sign the CA certificate"))?;
        Ok(ClusterCa {
            cert: CaCertificate::from_der(cert.der().to_vec())?,
            issuer: Issuer::new(params, key),
            cluster_name: cluster_name.to_owned(),
        })
    }

    /// `next`'s key certified by this CA: the certificate that lets nodes
    /// still trusting only this CA accept certificates `next` issues,
    /// while a rotation replaces this CA by `next` (presented after a node
    /// certificate, it chains that certificate to this CA).
    pub fn cross_sign(&self, next: &ClusterCa) -> Result<CaCertificate, PkiError> {
        let params = ca_params(next.cluster_name())?;
        let cert = params
            .signed_by(next.issuer.key(), &self.issuer)
            .map_err(rcgen_err("cross-sign the new CA certificate"))?;
        CaCertificate::from_der(cert.der().to_vec())
    }

    /// Loads a CA written by [`ClusterCa::cert_pem`] and
    /// [`ClusterCa::key_pem`], checking that key and certificate match.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, PkiError> {
        let cert = CaCertificate::from_pem(cert_pem)?;
        let key = KeyPair::from_pem(key_pem).map_err(|source| PkiError::BadKey {
            what: "the CA key",
            source,
        })?;
        let bad = |reason: String| PkiError::BadCertificate {
            what: "the CA certificate",
            reason,
        };
        let (_, x509) = x509_parser::parse_x509_certificate(cert.der())
            .map_err(|e| bad(format!("it is not valid X.509 ({e})")))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch);
        }
        let cluster_name = x509
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .ok_or_else(|| bad("it names no cluster (organization)".into()))?
            .to_owned();
        let issuer = Issuer::from_ca_cert_der(&cert.der().to_vec().into(), key)
            .map_err(|e| bad(e.to_string()))?;
        Ok(ClusterCa {
            cert,
            issuer,
            cluster_name,
        })
    }

    /// The certificate alone, as handed to joining nodes.
    pub fn certificate(&self) -> &CaCertificate {
        &self.cert
    }

    /// The certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        self.cert.pem()
    }

    /// The signing key in PKCS#8 PEM; store it with
    /// [`write_private`](super::write_private).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// SHA-256 of the certificate's DER, as pinned by join tokens.
    pub fn digest(&self) -> CaDigest {
        self.cert.digest()
    }

    /// The cluster name in the CA's organization.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// Signs a certificate for `node_id` in `role` over the public key of
    /// `csr_pem`, valid for [`NODE_CERT_VALIDITY`] from now.
    pub fn issue(&self, node_id: &NodeId, role: Role, csr_pem: &str) -> Result<NodeCert, PkiError> {
        self.issue_for(node_id, role, csr_pem, NODE_CERT_VALIDITY)
    }

    /// [`issue`](Self::issue), valid for `validity` from now (at least
    /// [`MIN_NODE_CERT_VALIDITY`], at most [`CA_VALIDITY`]).
    ///
    /// Only the CSR's key is used: what the certificate says (id, role,
    /// cluster, usages) is decided here, so a node cannot ask for a role
    /// its token did not grant.
    pub fn issue_for(
        &self,
        node_id: &NodeId,
        role: Role,
        csr_pem: &str,
        validity: Duration,
    ) -> Result<NodeCert, PkiError> {
        let what = "issue the node certificate";
        // The node id as a DNS name lets rustls verify a peer by id; the
        // role name matches Swarm's certificates; the URI is the id in a
        // form no DNS name can be confused with.
        let sans = vec![
            SanType::DnsName(ia5(what, node_id.to_string())?),
            SanType::DnsName(ia5(what, role.org_unit().to_owned())?),
            SanType::URI(ia5(what, format!("shoal://node/{node_id}"))?),
        ];
        // Every node is both a client and a server of mTLS connections.
        let usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let der = self.sign(
            what,
            (node_id.as_str(), role.org_unit()),
            sans,
            usages,
            csr_pem,
            validity,
        )?;
        NodeCert::from_der(der)
    }

    /// Signs an operator certificate for `id` (see
    /// [`new_operator_id`](super::new_operator_id)) over the public key of
    /// `csr_pem`, valid for `validity` from now: organizational unit
    /// [`OPERATOR_ORG_UNIT`], a `shoal://operator/ID` URI as its only
    /// name, client authentication as its only usage, so that it can
    /// neither pass for a node nor serve.
    pub fn issue_operator(
        &self,
        id: &str,
        csr_pem: &str,
        validity: Duration,
    ) -> Result<OperatorCert, PkiError> {
        let what = "issue the operator certificate";
        super::operator_cert::check_id(id).map_err(|reason| PkiError::BadCertificate {
            what: "the operator id",
            reason,
        })?;
        let sans = vec![SanType::URI(ia5(what, format!("shoal://operator/{id}"))?)];
        let usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let der = self.sign(
            what,
            (id, OPERATOR_ORG_UNIT),
            sans,
            usages,
            csr_pem,
            validity,
        )?;
        OperatorCert::from_der(der)
    }

    /// A certificate over `csr_pem`'s key naming `(common name,
    /// organizational unit)` and this cluster, in DER. Only the CSR's key
    /// is used: what the certificate says is decided by the caller.
    fn sign(
        &self,
        what: &'static str,
        (cn, ou): (&str, &str),
        sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        csr_pem: &str,
        validity: Duration,
    ) -> Result<Vec<u8>, PkiError> {
        check_validity(validity)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::BadCsr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationalUnitName, ou);
        dn.push(DnType::OrganizationName, self.cluster_name.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + validity).into();
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|source| PkiError::Rcgen { what, source })?;
        Ok(cert.der().to_vec())
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cluster_name", &self.cluster_name)
            .field("digest", &self.digest())
            .finish_non_exhaustive()
    }
}

/// Whether `validity` is a lifetime a node certificate may have.
pub fn check_validity(validity: Duration) -> Result<(), PkiError> {
    if (MIN_NODE_CERT_VALIDITY..=CA_VALIDITY).contains(&validity) {
        Ok(())
    } else {
        Err(PkiError::Validity(validity))
    }
}

/// Cluster names go into certificates' organization (at most 64
/// characters in X.520) and into messages.
fn check_cluster_name(name: &str) -> Result<(), PkiError> {
    let count = name.chars().count();
    if (1..=64).contains(&count) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(PkiError::ClusterName(name.chars().take(80).collect()))
    }
}

/// A random positive 128-bit serial, so re-issuing for the same key never
/// repeats a serial (RFC 5280 wants them unique per CA).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes)?;
    // Clear the top bit: serials are positive DER integers.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The distinguished name, usages and lifetime of a cluster CA
/// certificate, with a fresh serial.
fn ca_params(cluster_name: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "swarm-ca");
    dn.push(DnType::OrganizationName, cluster_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + CA_VALIDITY).into();
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// `s` as an IA5 string for an alternative name.
fn ia5(what: &'static str, s: String) -> Result<rcgen::string::Ia5String, PkiError> {
    s.try_into()
        .map_err(|source| PkiError::Rcgen { what, source })
}

fn rcgen_err(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}

#[cfg(test)]
mod tests;
