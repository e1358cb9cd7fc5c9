//! Rules for user-chosen names.

use super::StateError;

const NETWORK_RULE: &str = "use 1 to 64 characters from letters, digits, `-`, `_` and `.`, \
                            starting with a letter or digit";
const SERVICE_RULE: &str = "use 1 to 63 characters from letters, digits, `-` and `_`, starting \
                            and ending with a letter or digit (it becomes a DNS name)";

/// Network and secret names: Docker's network-name rule.
pub(super) fn check_network_like(kind: &'static str, name: &str) -> Result<(), StateError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(())
        .ok_or_else(|| invalid(kind, name, NETWORK_RULE))
}

/// Service names: DNS labels, since tasks resolve services by name, with
/// `_` allowed as Docker does (a stack's services are `STACK_NAME`).
pub(super) fn check_service(name: &str) -> Result<(), StateError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    ok.then_some(())
        .ok_or_else(|| invalid("service", name, SERVICE_RULE))
}

fn invalid(kind: &'static str, name: &str, rule: &'static str) -> StateError {
    StateError::Name {
        kind,
        name: name.chars().take(80).collect(),
        rule,
    }
}
