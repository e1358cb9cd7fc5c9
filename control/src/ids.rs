//! Identifiers of cluster objects: nodes, networks, services and tasks.
//!
//! Ids are chosen by whoever proposes a command (so applying it stays
//! deterministic on every manager) and checked when they enter: from a
//! command, from JSON, or from a certificate's common name. A valid id is a
//! DNS label (`a-z`, `0-9`, `-`, at most 63 characters, no leading or
//! trailing `-`), because a node id is also a DNS name in its certificate.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::base36;

/// Length of a generated id, as Swarm's: 128 random bits in base36.
pub const GENERATED_ID_LEN: usize = 25;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "`{value}` is not a valid {kind} id: use 1 to 63 characters from a-z, 0-9 and `-`, \
     not starting or ending with `-`"
)]
pub struct IdError {
    /// Which kind of object the id was for.
    pub kind: &'static str,
    /// The rejected value (cut to 80 characters).
    pub value: String,
}

/// Why an id could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "the operating system's random number generator failed ({0}); shoal cannot create ids, \
     keys or secrets without it"
)]
pub struct RandomError(pub String);

/// Fills `buf` from the OS random number generator.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

fn is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                if is_valid(&s) {
                    Ok(Self(s))
                } else {
                    Err(IdError { kind: $kind, value: s.chars().take(80).collect() })
                }
            }

            /// A fresh random id (25 base36 characters, as Swarm's).
            pub fn generate() -> Result<Self, RandomError> {
                let mut bytes = [0u8; 16];
                random_bytes(&mut bytes)?;
                Ok(Self(base36::encode(&bytes, GENERATED_ID_LEN)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A node's id: its certificate's common name and its key in the state.
    NodeId,
    "node"
);
id_type!(
    /// A network's id.
    NetworkId,
    "network"
);
id_type!(
    /// A service's id.
    ServiceId,
    "service"
);
id_type!(
    /// A task's id.
    TaskId,
    "task"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_only() {
        assert!(NodeId::new("n1").is_ok());
        assert!(NodeId::new("a-b-9").is_ok());
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(NodeId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = ServiceId::generate().unwrap();
        let b = ServiceId::generate().unwrap();
        assert_eq!(a.as_str().len(), GENERATED_ID_LEN);
        assert!(ServiceId::new(a.as_str()).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn json_checks_ids() {
        let id: NodeId = serde_json::from_str("\"n1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"n1\"");
        let err = serde_json::from_str::<NodeId>("\"Bad Id\"").unwrap_err();
        assert!(err.to_string().contains("not a valid node id"), "{err}");
    }
}
