//! TLS for a joining node, which has neither the CA nor a certificate yet:
//! it trusts a manager only if the manager's chain carries the CA that the
//! join token pins (by SHA-256) and its certificate, issued by that CA,
//! names a manager. The CA accepted is kept ([`AcceptedCa`]) so the node
//! can store it and verify everyone with it from then on.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use thiserror::Error;

use super::ApiError;
use super::tls::{alpn, provider, roots};
use crate::Role;
use crate::pki::{CaCertificate, CaDigest, TokenError};

/// Why a server failed the join token's pin.
#[derive(Debug, Clone, Error)]
pub enum PinError {
    /// The server's chain has no certificate with the pinned digest.
    #[error(transparent)]
    Mismatch(TokenError),
    /// The server sent its certificate alone.
    #[error(
        "the server sent no CA certificate with its own, so it cannot be checked against the \
         join token; check that the address is a shoal manager's"
    )]
    NoCa,
    /// The pinned certificate is not a CA.
    #[error(
        "the certificate the join token pins is not usable as a CA ({0}); get a fresh token \
         with `shoal swarm join-token worker` on a manager"
    )]
    BadCa(String),
}

/// The CA certificate a pinned connection accepted, once one has.
#[derive(Debug, Clone, Default)]
pub struct AcceptedCa(Arc<Mutex<Option<CaCertificate>>>);

impl AcceptedCa {
    /// The accepted CA, or `None` before a handshake succeeded.
    pub fn get(&self) -> Option<CaCertificate> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, ca: CaCertificate) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(ca);
    }
}

/// The TLS configuration of a joining node: no client certificate, and a
/// server is trusted as described in the module docs, whatever server
/// name [`connect`](super::connect) is given.
pub fn pinned_client_config(pin: CaDigest) -> Result<(Arc<ClientConfig>, AcceptedCa), ApiError> {
    let provider = provider();
    let accepted = AcceptedCa::default();
    let verifier = PinnedVerifier {
        pin,
        provider: Arc::clone(&provider),
        accepted: accepted.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ApiError::Settings)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn();
    Ok((Arc::new(config), accepted))
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: CaDigest,
    provider: Arc<CryptoProvider>,
    accepted: AcceptedCa,
}

impl PinnedVerifier {
    /// The certificate after the leaf whose digest is the pin.
    fn pinned_ca(&self, intermediates: &[CertificateDer<'_>]) -> Result<CaCertificate, PinError> {
        let last = intermediates.last().ok_or(PinError::NoCa)?;
        let der = intermediates
            .iter()
            .find(|der| CaDigest::of_der(der) == self.pin)
            .ok_or_else(|| {
                PinError::Mismatch(TokenError::CaMismatch {
                    pinned: self.pin,
                    presented: CaDigest::of_der(last),
                })
            })?;
        CaCertificate::from_der(der.to_vec()).map_err(|e| PinError::BadCa(e.to_string()))
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = self.pinned_ca(intermediates).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        })?;
        let general = |e: &dyn std::fmt::Display| rustls::Error::General(e.to_string());
        let manager = ServerName::try_from(Role::Manager.org_unit()).map_err(|e| general(&e))?;
        WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(std::slice::from_ref(&ca))?),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| general(&e))?
        .verify_server_cert(end_entity, &[], &manager, ocsp_response, now)?;
        self.accepted.set(ca);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
