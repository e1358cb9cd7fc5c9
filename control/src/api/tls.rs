//! rustls configurations for node-to-node mutual TLS, all on the ring
//! provider (never the process default, so no other crate's choice can
//! change ours).
//!
//! A node serves with the chain [node certificate, CA certificate] so a
//! joining node can pin the CA ([`pinned_client_config`](super::pinned_client_config)).
//! Client certificates are optional at the TLS level, because a joining
//! node has none yet; when one is presented it must chain to the cluster
//! CA, and handlers decide per call whom they serve
//! ([`require_node`](super::require_node)).

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

/// The TLS configuration of a node's gRPC server.
pub fn server_config(
    ca: &CaCertificate,
    cert: &NodeCert,
    key: &NodeKey,
) -> Result<Arc<ServerConfig>, ApiError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(trust(ca)?, Arc::clone(&provider))
        .allow_unauthenticated()
        .build()
        .map_err(|e| ApiError::Trust(e.to_string()))?;
    let chain = vec![
        CertificateDer::from(cert.der().to_vec()),
        CertificateDer::from(ca.der().to_vec()),
    ];
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ApiError::Settings)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key(key)?)
        .map_err(|e| ApiError::Identity(e.to_string()))?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// The TLS configuration of a node calling another: it presents its own
/// certificate and trusts only servers whose certificate the cluster CA
/// issued for the name given to [`connect`](super::connect).
pub fn client_config(
    ca: &CaCertificate,
    cert: &NodeCert,
    key: &NodeKey,
) -> Result<Arc<ClientConfig>, ApiError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ApiError::Settings)?
        .with_root_certificates(trust(ca)?)
        .with_client_auth_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            private_key(key)?,
        )
        .map_err(|e| ApiError::Identity(e.to_string()))?;
    config.alpn_protocols = alpn();
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

/// A root store holding only the cluster CA.
pub(super) fn roots(ca: &CaCertificate) -> Result<RootCertStore, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec()))?;
    Ok(roots)
}

fn trust(ca: &CaCertificate) -> Result<Arc<RootCertStore>, ApiError> {
    roots(ca)
        .map(Arc::new)
        .map_err(|e| ApiError::Trust(e.to_string()))
}

fn private_key(key: &NodeKey) -> Result<PrivateKeyDer<'static>, ApiError> {
    PrivateKeyDer::from_pem_slice(key.private_key_pem().as_bytes())
        .map_err(|e| ApiError::Identity(e.to_string()))
}
