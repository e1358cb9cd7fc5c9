//! Join tokens in Swarm's shape: `SWMTKN-1-<CA digest>-<secret>`.
//!
//! The digest (SHA-256 of the CA certificate, 50 base36 characters) lets a
//! joining node pin the CA before it trusts anything a manager sends; the
//! secret (128 random bits, 25 base36 characters) proves it may join, and
//! which of the two current secrets it matches decides its role. The token
//! does not name the role: as in Swarm, a leaked worker token says nothing
//! about the manager one. Tokens enter as text from the user or the wire
//! ([`JoinToken::parse`]) and leave as text ([`Display`](std::fmt::Display)).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ct::ct_eq;
use super::digest::{CaCertificate, CaDigest, DIGEST_BASE36_LEN};
use crate::base36::{self, Base36Error};
use crate::ids::{RandomError, random_bytes};
use crate::role::Role;

const PREFIX: &str = "SWMTKN";
const VERSION: &str = "1";
const SECRET_BASE36_LEN: usize = 25;

const FRESH_TOKEN: &str =
    "get a fresh one with `shoal swarm join-token worker` (or `manager`) on a manager";

/// Why a join token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// The token does not have four `-`-separated parts.
    #[error(
        "a join token has four parts, SWMTKN-1-<CA digest>-<secret>, and this one has {0}; copy \
         the whole token, or {FRESH_TOKEN}"
    )]
    Shape(usize),
    /// The first part is not `SWMTKN`.
    #[error("a join token starts with `SWMTKN-`, this one with `{0}`; {FRESH_TOKEN}")]
    Prefix(String),
    /// A version other than 1.
    #[error("join token version `{0}` is not supported (only `1` is); {FRESH_TOKEN}")]
    Version(String),
    /// A part has the wrong length.
    #[error(
        "the {part} of the join token has {found} characters instead of {expected}; it was cut \
         or altered when copied; {FRESH_TOKEN}"
    )]
    Length {
        /// "CA digest" or "secret".
        part: &'static str,
        /// Its length.
        found: usize,
        /// The length it must have.
        expected: usize,
    },
    /// A part is not base36 or too large.
    #[error("the {part} of the join token is malformed ({source}); {FRESH_TOKEN}")]
    Encoding {
        /// "CA digest" or "secret".
        part: &'static str,
        /// What is wrong.
        source: Base36Error,
    },
    /// The token pins another cluster's CA.
    #[error(
        "join token is for a different cluster: its CA digest does not match; get a fresh one \
         with `shoal swarm join-token worker` on a manager"
    )]
    WrongCluster,
    /// The CA certificate a manager presented is not the one the token pins.
    #[error(
        "the manager presented a CA certificate with digest {presented}, but the join token pins \
         {pinned}; check the manager's address (something else may be answering), or {FRESH_TOKEN}"
    )]
    CaMismatch {
        /// The digest in the token.
        pinned: CaDigest,
        /// The digest of the certificate received.
        presented: CaDigest,
    },
    /// The secret matches neither current token.
    #[error(
        "join token was not accepted: its secret matches neither the current worker nor the \
         current manager token (it may have been rotated); {FRESH_TOKEN}"
    )]
    NotAccepted,
    /// No randomness for a new secret.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    ca_digest: CaDigest,
    secret: [u8; 16],
}

impl JoinToken {
    /// A token with a fresh random secret for the CA whose digest is given.
    pub fn generate(ca_digest: CaDigest) -> Result<JoinToken, RandomError> {
        let mut secret = [0u8; 16];
        random_bytes(&mut secret)?;
        Ok(JoinToken { ca_digest, secret })
    }

    /// Parses `SWMTKN-1-<50 base36>-<25 base36>`; surrounding whitespace
    /// (a pasted newline) is ignored.
    pub fn parse(s: &str) -> Result<JoinToken, TokenError> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [prefix, version, digest, secret] = parts[..] else {
            return Err(TokenError::Shape(parts.len()));
        };
        if prefix != PREFIX {
            return Err(TokenError::Prefix(prefix.chars().take(12).collect()));
        }
        if version != VERSION {
            return Err(TokenError::Version(version.chars().take(12).collect()));
        }
        let ca_digest = CaDigest::from_bytes(decode_part("CA digest", digest, DIGEST_BASE36_LEN)?);
        let secret = decode_part("secret", secret, SECRET_BASE36_LEN)?;
        Ok(JoinToken { ca_digest, secret })
    }

    /// The digest of the CA certificate this token pins.
    pub fn ca_digest(&self) -> CaDigest {
        self.ca_digest
    }

    /// Checks that `ca`, received from a manager while joining, is the CA
    /// this token pins.
    pub fn pin(&self, ca: &CaCertificate) -> Result<(), TokenError> {
        let presented = ca.digest();
        if presented == self.ca_digest {
            Ok(())
        } else {
            Err(TokenError::CaMismatch {
                pinned: self.ca_digest,
                presented,
            })
        }
    }
}

fn decode_part<const N: usize>(
    part: &'static str,
    s: &str,
    expected: usize,
) -> Result<[u8; N], TokenError> {
    if s.len() != expected {
        return Err(TokenError::Length {
            part,
            found: s.chars().count(),
            expected,
        });
    }
    base36::decode(s).map_err(|source| TokenError::Encoding { part, source })
}

/// The token as the user copies it. This is the secret itself: print it
/// only where the user asked for it.
impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}-{VERSION}-{}-{}",
            self.ca_digest.to_base36(),
            base36::encode(&self.secret, SECRET_BASE36_LEN)
        )
    }
}

/// Redacts the secret, so tokens can sit in logged structures.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_digest", &self.ca_digest)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        JoinToken::parse(s)
    }
}

impl Serialize for JoinToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JoinToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        JoinToken::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The cluster's two current join tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Joins a node as a worker.
    pub worker: JoinToken,
    /// Joins a node as a manager.
    pub manager: JoinToken,
}

impl Tokens {
    /// Fresh worker and manager tokens for the CA whose digest is given.
    pub fn generate(ca_digest: CaDigest) -> Result<Tokens, RandomError> {
        Ok(Tokens {
            worker: JoinToken::generate(ca_digest)?,
            manager: JoinToken::generate(ca_digest)?,
        })
    }

    /// The current token for `role`.
    pub fn get(&self, role: Role) -> &JoinToken {
        match role {
            Role::Manager => &self.manager,
            Role::Worker => &self.worker,
        }
    }

    /// Replaces the token for `role` with a fresh secret; the old one stops
    /// working, the other role's token is untouched.
    pub fn rotate(&mut self, role: Role) -> Result<(), RandomError> {
        let slot = match role {
            Role::Manager => &mut self.manager,
            Role::Worker => &mut self.worker,
        };
        *slot = JoinToken::generate(slot.ca_digest)?;
        Ok(())
    }

    /// Makes both tokens pin `ca_digest` (the CA that replaced the one
    /// they pinned); their secrets stay, so the tokens differ only in the
    /// digest, as Swarm's do after `swarm ca --rotate`.
    pub fn repin(&mut self, ca_digest: CaDigest) {
        self.worker.ca_digest = ca_digest;
        self.manager.ca_digest = ca_digest;
    }

    /// The role a presented token grants, or why it grants none.
    pub fn role_of(&self, presented: &JoinToken) -> Result<Role, TokenError> {
        if presented.ca_digest != self.worker.ca_digest {
            return Err(TokenError::WrongCluster);
        }
        // Both comparisons always run, so timing does not tell which
        // secret a guess was closer to.
        let manager = ct_eq(&presented.secret, &self.manager.secret);
        let worker = ct_eq(&presented.secret, &self.worker.secret);
        match (manager, worker) {
            (true, _) => Ok(Role::Manager),
            (false, true) => Ok(Role::Worker),
            (false, false) => Err(TokenError::NotAccepted),
        }
    }
}

#[cfg(test)]
mod tests;
