use proptest::prelude::*;

use super::*;

fn digest(b: u8) -> CaDigest {
    CaDigest::from_bytes([b; 32])
}

#[test]
fn round_trips_in_swarms_shape() {
    let t = JoinToken::generate(digest(7)).unwrap();
    let s = t.to_string();
    let parts: Vec<&str> = s.split('-').collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0], "SWMTKN");
    assert_eq!(parts[1], "1");
    assert_eq!(parts[2].len(), 50);
    assert_eq!(parts[3].len(), 25);
    assert_eq!(JoinToken::parse(&s).unwrap(), t);
    assert_eq!(JoinToken::parse(&format!("  {s}\n")).unwrap(), t);
    assert_eq!(t.ca_digest(), digest(7));
}

#[test]
fn debug_redacts_the_secret() {
    let t = JoinToken::generate(digest(1)).unwrap();
    let secret = t.to_string().rsplit('-').next().unwrap().to_owned();
    assert!(!format!("{t:?}").contains(&secret));
}

#[test]
fn rejects_malformed_tokens() {
    let good = JoinToken::generate(digest(3)).unwrap().to_string();
    let (head, secret) = good.rsplit_once('-').unwrap();
    let d = &head["SWMTKN-1-".len()..];
    let cases = [
        ("SWMTKN-1-abc".to_string(), "four parts"),
        (
            good.replacen("SWMTKN", "SWMTKM", 1),
            "starts with `SWMTKN-`",
        ),
        (good.replacen("-1-", "-2-", 1), "version `2`"),
        (
            format!("SWMTKN-1-{}-{secret}", &d[1..]),
            "49 characters instead of 50",
        ),
        (
            format!("{head}-{}", &secret[1..]),
            "24 characters instead of 25",
        ),
        (format!("{head}-{}A", &secret[1..]), "`A`"),
        (format!("SWMTKN-1-{}-{secret}", "z".repeat(50)), "too large"),
        (String::new(), "four parts"),
    ];
    for (token, expected) in cases {
        let err = JoinToken::parse(&token).unwrap_err().to_string();
        assert!(err.contains(expected), "{token:?}: {err}");
        assert!(err.contains("join-token"), "{err}");
    }
}

#[test]
fn role_of_distinguishes_roles_and_clusters() {
    let mut tokens = Tokens::generate(digest(9)).unwrap();
    assert_eq!(tokens.role_of(&tokens.worker.clone()), Ok(Role::Worker));
    assert_eq!(tokens.role_of(&tokens.manager.clone()), Ok(Role::Manager));
    assert_eq!(tokens.get(Role::Worker), &tokens.worker);

    let other = JoinToken::generate(digest(8)).unwrap();
    let err = tokens.role_of(&other).unwrap_err();
    assert_eq!(err, TokenError::WrongCluster);
    assert!(
        err.to_string()
            .starts_with("join token is for a different cluster")
    );

    let old_worker = tokens.worker.clone();
    let manager = tokens.manager.clone();
    tokens.rotate(Role::Worker).unwrap();
    assert_eq!(tokens.role_of(&old_worker), Err(TokenError::NotAccepted));
    assert_eq!(tokens.role_of(&tokens.worker.clone()), Ok(Role::Worker));
    assert_eq!(tokens.manager, manager, "rotating one role keeps the other");
    assert_eq!(tokens.worker.ca_digest(), digest(9));
}

#[test]
fn serde_uses_the_text_form() {
    let tokens = Tokens::generate(digest(2)).unwrap();
    let json = serde_json::to_string(&tokens).unwrap();
    assert!(json.contains("SWMTKN-1-"));
    let back: Tokens = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tokens);
    assert!(serde_json::from_str::<JoinToken>("\"SWMTKN-2-a-b\"").is_err());
}

proptest! {
    #[test]
    fn parse_never_panics(s in "\\PC{0,120}") {
        let _ = JoinToken::parse(&s);
    }

    #[test]
    fn parse_round_trips(d in any::<[u8; 32]>(), secret in any::<[u8; 16]>()) {
        let t = JoinToken { ca_digest: CaDigest::from_bytes(d), secret };
        prop_assert_eq!(JoinToken::parse(&t.to_string()), Ok(t));
    }

    #[test]
    fn near_miss_tokens_parse_but_are_not_accepted(flip in 0usize..25) {
        let tokens = Tokens::generate(digest(4)).unwrap();
        let s = tokens.worker.to_string();
        let (head, secret) = s.rsplit_once('-').unwrap();
        let mut chars: Vec<char> = secret.chars().collect();
        chars[flip] = if chars[flip] == '0' { '1' } else { '0' };
        let altered: String = chars.into_iter().collect();
        let presented = JoinToken::parse(&format!("{head}-{altered}")).unwrap();
        prop_assert_eq!(tokens.role_of(&presented), Err(TokenError::NotAccepted));
    }
}
