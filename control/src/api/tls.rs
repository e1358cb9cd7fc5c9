//! rustls configurations for node-to-node mutual TLS, all on the ring
//! provider (never the process default, so no other crate's choice can
//! change ours).
//!
//! A node trusts the cluster's roots: its CA, or while `swarm ca --rotate`
//! runs the old CA and the new. It presents its certificate followed by
//! the CA certificates that chain it to a root: the issuing CA, so a
//! joining node can pin it ([`pinned_client_config`](super::pinned_client_config)),
//! and during a rotation the new CA cross-signed by the old one, so nodes
//! that trust only the old CA yet accept certificates of the new.
//! Client certificates are optional at the TLS level, because a joining
//! node has none yet; when one is presented it must chain to the cluster
//! CA, and handlers decide per call whom they serve
//! ([`require_node`](super::require_node)). The server also offers
//! [`OPERATOR_ALPN`], by which an operator's CLI reaches the admin API
//! (see [`serve_with_operators`](super::serve_with_operators)).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ApiError;
use crate::pki::{CaCertificate, NodeCert, NodeKey};

/// gRPC runs over HTTP/2, negotiated by ALPN.
const ALPN_H2: &[u8] = b"h2";

/// What an operator's CLI offers by ALPN instead of HTTP/2: the admin API
/// (HTTP/1.1, as on the local socket) for an operator certificate. The
/// server hands such connections to the daemon's admin API and never to
/// the cluster protocol.
pub const OPERATOR_ALPN: &[u8] = b"shoal-operator/1";

/// The TLS configuration of a node's gRPC server.
///
/// `roots` are the CAs a client's certificate must chain to; `cas` follow
/// `cert` in what the server presents.
pub fn server_config(
    roots: &[CaCertificate],
    cert: &NodeCert,
    cas: &[CaCertificate],
    key: &NodeKey,
) -> Result<Arc<ServerConfig>, ApiError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(trust(roots)?, Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|e| ApiError::Trust(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ApiError::Settings)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(cert, cas), private_key(key)?)
        .map_err(|e| ApiError::Identity(e.to_string()))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), OPERATOR_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The TLS configuration of a node calling another: it presents its own
/// certificate followed by `cas`, and trusts only servers whose
/// certificate chains to one of `roots` and names the server name given
/// to [`connect`](super::connect).
pub fn client_config(
    roots: &[CaCertificate],
    cert: &NodeCert,
    cas: &[CaCertificate],
    key: &NodeKey,
) -> Result<Arc<ClientConfig>, ApiError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ApiError::Settings)?
        .with_root_certificates(trust(roots)?)
        .with_client_auth_cert(chain(cert, cas), private_key(key)?)
        .map_err(|e| ApiError::Identity(e.to_string()))?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// The TLS configuration of an operator's CLI: it presents `cert` (DER;
/// an operator certificate, or whatever the operator was given: the
/// manager judges it), offers only [`OPERATOR_ALPN`], and trusts only
/// servers whose certificate chains to one of `roots` (and names the
/// manager server name given when connecting).
pub fn operator_client_config(
    roots: &[CaCertificate],
    cert: &[u8],
    key: &NodeKey,
) -> Result<Arc<ClientConfig>, ApiError> {
    let chain = vec![CertificateDer::from(cert.to_vec())];
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ApiError::Settings)?
        .with_root_certificates(trust(roots)?)
        .with_client_auth_cert(chain, private_key(key)?)
        .map_err(|e| ApiError::Identity(e.to_string()))?;
    config.alpn_protocols = vec![OPERATOR_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// rustls with ring.
pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What every configuration offers by ALPN: HTTP/2 only.
pub(super) fn alpn() -> Vec<Vec<u8>> {
    vec![ALPN_H2.to_vec()]
}

/// A root store holding only the given CAs.
pub(super) fn roots(cas: &[CaCertificate]) -> Result<RootCertStore, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(CertificateDer::from(ca.der().to_vec()))?;
    }
    Ok(roots)
}

fn trust(cas: &[CaCertificate]) -> Result<Arc<RootCertStore>, ApiError> {
    if cas.is_empty() {
        return Err(ApiError::Trust("no CA certificate to trust".into()));
    }
    roots(cas)
        .map(Arc::new)
        .map_err(|e| ApiError::Trust(e.to_string()))
}

/// `cert` followed by `cas`, as sent in a handshake.
fn chain(cert: &NodeCert, cas: &[CaCertificate]) -> Vec<CertificateDer<'static>> {
    std::iter::once(cert.der())
        .chain(cas.iter().map(CaCertificate::der))
        .map(|der| CertificateDer::from(der.to_vec()))
        .collect()
}

fn private_key(key: &NodeKey) -> Result<PrivateKeyDer<'static>, ApiError> {
    PrivateKeyDer::from_pem_slice(key.private_key_pem().as_bytes())
        .map_err(|e| ApiError::Identity(e.to_string()))
}
