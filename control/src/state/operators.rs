//! The operator certificates the cluster issued, and which are revoked.
//!
//! A manager records each operator certificate it issues
//! ([`Command::AddOperator`](super::Command::AddOperator)) and a revocation
//! marks it ([`Command::RevokeOperator`](super::Command::RevokeOperator));
//! every manager then answers [`ClusterState::operator_access`] the same
//! way, so a revoked certificate is refused by all of them.

use serde::{Deserialize, Serialize};

use super::command::Outcome;
use super::{ClusterState, StateError};

/// One operator certificate, as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Its id (the certificate's common name), `op-` and 12 hex digits.
    pub id: String,
    /// The certificate's serial, lowercase hex.
    pub serial: String,
    /// When it expires, in seconds since the UNIX epoch.
    pub not_after: u64,
    /// When it was revoked, in ms since the UNIX epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

impl ClusterState {
    /// The operator certificates issued, by id.
    pub fn operators(&self) -> &std::collections::BTreeMap<String, Operator> {
        &self.operators
    }

    /// Whether the operator certificate `id` with `serial` may drive a
    /// manager: it was issued here and is not revoked. The `Err` is the
    /// one-line refusal its CLI shows.
    pub fn operator_access(&self, id: &str, serial: &str) -> Result<(), String> {
        let remake = "make a new one on a manager with `shoal swarm ca client-cert --out DIR`";
        match self.operators.get(id) {
            Some(op) if op.revoked_ms.is_some() => Err(format!(
                "operator certificate {id} was revoked (`shoal swarm ca revoke-client`); {remake}"
            )),
            Some(op) if op.serial == serial => Ok(()),
            _ => Err(format!(
                "operator certificate {id} is not one this swarm issued; {remake}"
            )),
        }
    }

    pub(super) fn add_operator(&mut self, op: Operator) -> Result<Outcome, StateError> {
        if self.operators.contains_key(&op.id) {
            return Err(StateError::OperatorExists(op.id));
        }
        self.operators.insert(op.id.clone(), op);
        Ok(Outcome::Applied)
    }

    pub(super) fn revoke_operator(&mut self, id: &str, at_ms: u64) -> Result<Outcome, StateError> {
        let op = self
            .operators
            .get_mut(id)
            .ok_or_else(|| StateError::OperatorNotFound(id.to_owned()))?;
        // Revoking twice keeps the first time.
        op.revoked_ms.get_or_insert(at_ms);
        Ok(Outcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    fn op(id: &str, serial: &str) -> Operator {
        Operator {
            id: id.into(),
            serial: serial.into(),
            not_after: 2_000_000_000,
            revoked_ms: None,
        }
    }

    #[test]
    fn issued_operators_are_let_in_until_revoked() {
        let mut s = ClusterState::new();
        s.apply(Command::AddOperator(op("op-000000000001", "aa")))
            .unwrap();
        s.apply(Command::AddOperator(op("op-000000000002", "bb")))
            .unwrap();
        s.operator_access("op-000000000001", "aa").unwrap();
        // Another certificate with the same id (not this CA's issue).
        let err = s.operator_access("op-000000000001", "ff").unwrap_err();
        assert!(err.contains("not one this swarm issued"), "{err}");
        let err = s.operator_access("op-00000000000f", "aa").unwrap_err();
        assert!(err.contains("not one this swarm issued"), "{err}");

        s.apply(Command::RevokeOperator {
            id: "op-000000000001".into(),
            at_ms: 7,
        })
        .unwrap();
        let err = s.operator_access("op-000000000001", "aa").unwrap_err();
        assert!(err.contains("was revoked"), "{err}");
        assert!(err.contains("shoal swarm ca client-cert"), "{err}");
        // The other operator is untouched.
        s.operator_access("op-000000000002", "bb").unwrap();
        // A second revocation keeps the first time.
        s.apply(Command::RevokeOperator {
            id: "op-000000000001".into(),
            at_ms: 9,
        })
        .unwrap();
        assert_eq!(s.operators()["op-000000000001"].revoked_ms, Some(7));
    }

    #[test]
    fn unknown_and_duplicate_operators_are_refused_whole() {
        let mut s = ClusterState::new();
        let err = s
            .apply(Command::RevokeOperator {
                id: "op-000000000009".into(),
                at_ms: 1,
            })
            .unwrap_err();
        assert!(matches!(err, StateError::OperatorNotFound(_)), "{err}");
        s.apply(Command::AddOperator(op("op-000000000001", "aa")))
            .unwrap();
        let before = s.clone();
        let err = s
            .apply(Command::AddOperator(op("op-000000000001", "bb")))
            .unwrap_err();
        assert!(matches!(err, StateError::OperatorExists(_)), "{err}");
        assert_eq!(s, before);
    }

    #[test]
    fn states_from_before_operators_still_load() {
        let mut json: serde_json::Value = serde_json::to_value(ClusterState::new()).unwrap();
        json.as_object_mut().unwrap().remove("operators");
        let s: ClusterState = serde_json::from_value(json).unwrap();
        assert!(s.operators().is_empty());
    }
}
