use std::time::SystemTime;

use super::*;
use crate::pki::{JoinToken, NodeKey, TokenError, Tokens};

fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

#[test]
fn issues_certificates_that_name_node_and_role() {
    let ca = ClusterCa::generate("prod").unwrap();
    let key = NodeKey::generate().unwrap();
    let csr = key.csr_pem(&node("n1")).unwrap();
    for role in Role::ALL {
        let cert = ca.issue(&node("n1"), role, &csr).unwrap();
        assert_eq!(cert.node_id(), &node("n1"));
        assert_eq!(cert.role(), role);
        assert_eq!(cert.cluster_name(), "prod");
        assert!(cert.is_for_key(&key));
        cert.verify_issued_by(ca.certificate()).unwrap();
        let left = cert.not_after().duration_since(SystemTime::now()).unwrap();
        assert!(
            left > NODE_CERT_VALIDITY - Duration::from_secs(3600) && left <= NODE_CERT_VALIDITY
        );

        let back = NodeCert::from_pem(cert.pem()).unwrap();
        assert_eq!(back, cert);
    }
}

#[test]
fn certificates_live_as_long_as_asked_within_bounds() {
    let ca = ClusterCa::generate("prod").unwrap();
    let key = NodeKey::generate().unwrap();
    let csr = key.csr_pem(&node("n1")).unwrap();
    let cert = ca
        .issue_for(&node("n1"), Role::Worker, &csr, Duration::from_secs(10))
        .unwrap();
    let left = cert.not_after().duration_since(SystemTime::now()).unwrap();
    assert!(
        left <= Duration::from_secs(10) && left > Duration::from_secs(8),
        "{left:?}"
    );
    for bad in [Duration::ZERO, Duration::from_secs(2), CA_VALIDITY * 2] {
        let err = ca
            .issue_for(&node("n1"), Role::Worker, &csr, bad)
            .unwrap_err();
        assert!(err.to_string().contains("at least 3s"), "{err}");
    }
}

#[test]
fn the_ca_decides_the_identity_not_the_csr() {
    let ca = ClusterCa::generate("prod").unwrap();
    let csr = NodeKey::generate()
        .unwrap()
        .csr_pem(&node("mallory"))
        .unwrap();
    let cert = ca.issue(&node("n7"), Role::Worker, &csr).unwrap();
    assert_eq!(cert.node_id(), &node("n7"));
}

#[test]
fn pem_round_trip_keeps_digest_and_signing_ability() {
    let ca = ClusterCa::generate("prod").unwrap();
    let loaded = ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    assert_eq!(loaded.digest(), ca.digest());
    assert_eq!(loaded.cluster_name(), "prod");
    let csr = NodeKey::generate().unwrap().csr_pem(&node("n2")).unwrap();
    let cert = loaded.issue(&node("n2"), Role::Manager, &csr).unwrap();
    cert.verify_issued_by(ca.certificate()).unwrap();
}

#[test]
fn refuses_a_key_from_another_ca() {
    let a = ClusterCa::generate("a").unwrap();
    let b = ClusterCa::generate("b").unwrap();
    let err = ClusterCa::from_pem(a.cert_pem(), &b.key_pem()).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch), "{err}");
    assert!(err.to_string().contains("restore both files"));
}

#[test]
fn refuses_garbage_and_non_ca_certificates() {
    let ca = ClusterCa::generate("prod").unwrap();
    assert!(ClusterCa::from_pem("not pem", &ca.key_pem()).is_err());
    assert!(ClusterCa::from_pem(ca.cert_pem(), "not a key").is_err());
    let csr = NodeKey::generate().unwrap().csr_pem(&node("n1")).unwrap();
    let leaf = ca.issue(&node("n1"), Role::Worker, &csr).unwrap();
    let err = CaCertificate::from_pem(leaf.pem()).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");
    let err = NodeCert::from_pem(ca.cert_pem()).unwrap_err();
    assert!(err.to_string().contains("node certificate"), "{err}");
}

#[test]
fn refuses_bad_csrs() {
    let ca = ClusterCa::generate("prod").unwrap();
    let err = ca.issue(&node("n1"), Role::Worker, "garbage").unwrap_err();
    assert!(matches!(err, PkiError::BadCsr(_)), "{err}");
    // A CSR whose signature does not match its key: flip a byte near the end.
    let csr = NodeKey::generate().unwrap().csr_pem(&node("n1")).unwrap();
    let der = pem::parse(&csr).unwrap().into_contents();
    let mut tampered = der.clone();
    let last = tampered.len() - 3;
    tampered[last] ^= 0x55;
    let tampered = crate::pki::digest::pem_encode("CERTIFICATE REQUEST", &tampered);
    assert!(ca.issue(&node("n1"), Role::Worker, &tampered).is_err());
}

#[test]
fn refuses_bad_cluster_names() {
    for bad in ["", "a\nb", &"x".repeat(65)] {
        let err = ClusterCa::generate(bad).unwrap_err();
        assert!(matches!(err, PkiError::ClusterName(_)), "{err}");
    }
}

#[test]
fn certificates_from_another_ca_do_not_verify() {
    let a = ClusterCa::generate("a").unwrap();
    let b = ClusterCa::generate("a").unwrap();
    let csr = NodeKey::generate().unwrap().csr_pem(&node("n1")).unwrap();
    let cert = b.issue(&node("n1"), Role::Worker, &csr).unwrap();
    let err = cert.verify_issued_by(a.certificate()).unwrap_err();
    assert!(
        err.to_string().contains("not issued by this cluster's CA"),
        "{err}"
    );
}

#[test]
fn node_key_survives_pem() {
    let key = NodeKey::generate().unwrap();
    let back = NodeKey::from_pem(&key.private_key_pem()).unwrap();
    assert_eq!(back.public_key_raw(), key.public_key_raw());
    assert!(!format!("{key:?}").contains("PRIVATE"));
}

/// The whole join handshake, minus the network.
#[test]
fn join_flow_pins_the_ca() {
    let ca = ClusterCa::generate("prod").unwrap();
    let tokens = Tokens::generate(ca.digest()).unwrap();
    let typed = tokens.manager.to_string();

    // Joining node: parse the token, receive the CA, pin it.
    let token = JoinToken::parse(&typed).unwrap();
    let received = CaCertificate::from_pem(ca.cert_pem()).unwrap();
    token.pin(&received).unwrap();
    let impostor = ClusterCa::generate("prod").unwrap();
    let err = token.pin(impostor.certificate()).unwrap_err();
    assert!(matches!(err, TokenError::CaMismatch { .. }), "{err}");

    // Manager: the token decides the role, then the CA issues.
    let role = tokens.role_of(&token).unwrap();
    let key = NodeKey::generate().unwrap();
    let cert = ca
        .issue(&node("n3"), role, &key.csr_pem(&node("n3")).unwrap())
        .unwrap();
    assert_eq!(cert.role(), Role::Manager);
    cert.verify_issued_by(&received).unwrap();
}

#[test]
fn operator_certificates_are_their_own_kind() {
    let ca = ClusterCa::generate("prod").unwrap();
    let key = NodeKey::generate().unwrap();
    let id = crate::pki::new_operator_id().unwrap();
    let csr = key.csr_pem_named("alice").unwrap();
    let op = ca.issue_operator(&id, &csr, NODE_CERT_VALIDITY).unwrap();
    assert_eq!(op.id(), id);
    assert_eq!(op.cluster_name(), "prod");
    assert!(matches!(
        crate::pki::Presented::of(op.der()),
        crate::pki::Presented::Operator(_)
    ));
    // An operator certificate is no node certificate, whatever its id.
    let err = NodeCert::from_der(op.der().to_vec()).unwrap_err();
    assert!(err.to_string().contains("organizational unit"), "{err}");
    assert_eq!(OperatorCert::from_pem(op.pem()).unwrap(), op);

    // And no node certificate passes for an operator's.
    for role in Role::ALL {
        let node_cert = ca.issue(&node("n1"), role, &csr).unwrap();
        assert!(matches!(
            crate::pki::Presented::of(node_cert.der()),
            crate::pki::Presented::Node(_)
        ));
        let err = OperatorCert::from_der(node_cert.der().to_vec()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("certificate of node `n1` (a {role})")),
            "{err}"
        );
    }
    // The CA certificate itself is neither.
    assert!(matches!(
        crate::pki::Presented::of(ca.certificate().der()),
        crate::pki::Presented::Other(_)
    ));
}

#[test]
fn operator_ids_are_checked_before_issuing() {
    let ca = ClusterCa::generate("prod").unwrap();
    let csr = NodeKey::generate().unwrap().csr_pem_named("x").unwrap();
    for bad in [
        "",
        "n1",
        "op-",
        "op-zzzzzzzzzzzz",
        "op-0123456789abc",
        "swarm-manager",
    ] {
        assert!(
            ca.issue_operator(bad, &csr, NODE_CERT_VALIDITY).is_err(),
            "{bad:?}"
        );
    }
    let a = crate::pki::new_operator_id().unwrap();
    let b = crate::pki::new_operator_id().unwrap();
    assert_ne!(a, b);
    crate::pki::check_operator_id(&a).unwrap();
}
