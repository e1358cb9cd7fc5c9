//! The small languages inside compose strings: command lines (split as a
//! shell would, and quoted back), durations (`1m30s`), `$` escapes, and
//! the names a stack may use. Pure functions; errors are sentences.

/// Longest piece of user input a message repeats.
const QUOTE_MAX: usize = 80;

/// `s`, cut to [`QUOTE_MAX`] characters.
pub(super) fn cut(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// "`a`, `b` or `c`".
pub(super) fn one_of(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
    match quoted.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean".
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Compose's `$$` escape, read as `$`. `$NAME` and `${...}` would be
/// substituted from the client's environment by docker; shoal sees none,
/// so they are refused rather than passed on as text.
pub(super) fn unescape_dollars(s: &str) -> Result<String, String> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some(&n) if n == '{' || n == '_' || n.is_ascii_alphabetic() => {
                return Err(format!(
                    "`{}` asks for variable substitution, which shoal does not do: it sees no \
                     client environment; write the value, or `$$` for a literal `$`",
                    cut(s)
                ));
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

/// A Go-style duration (`10s`, `1m30s`, `500ms`, `1h`, `2.5s`, `0`) in
/// whole milliseconds.
pub(super) fn duration_ms(s: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!(
            "invalid duration `{}`: {why}; write e.g. `10s`, `1m30s` or `500ms`",
            cut(s)
        )
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.starts_with('-') {
        return Err(bad("it is negative"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number has no unit (ns, us, ms, s, m or h)"))?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(bad("a number has no unit (ns, us, ms, s, m or h)")),
            other => return Err(bad(&format!("unknown unit `{}`", cut(other)))),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(bad(&format!("`{}` is not a number", cut(number))));
        }
        let too_long = || bad("it is too long");
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_long())?
        };
        let mut ns = whole.checked_mul(unit_ns).ok_or_else(too_long)?;
        // Fraction digits beyond nanoseconds change nothing.
        let mut scale = unit_ns;
        for d in fraction.chars().take(24) {
            scale /= 10;
            ns += u128::from(d.to_digit(10).unwrap_or(0)) * scale;
        }
        total_ns = total_ns.checked_add(ns).ok_or_else(too_long)?;
        rest = tail;
    }
    u64::try_from(total_ns / 1_000_000).map_err(|_| bad("it is too long"))
}

/// Splits a command line as a POSIX shell would, without expanding
/// anything: whitespace separates words, `'...'` is literal, `"..."`
/// keeps `\"`, `\\`, `` \` `` and `\$` escapes, and `\` outside quotes
/// escapes the next character.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a `'` quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a `\"` quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a `\"` quote is not closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err("it ends with a lone `\\`".into()),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Joins words into a shell command line that [`split_command`] (and
/// `/bin/sh`) reads back as the same words.
pub(super) fn quote_command(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| quote_word(w)).collect();
    quoted.join(" ")
}

fn quote_word(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        return w.to_owned();
    }
    format!("'{}'", w.replace('\'', r"'\''"))
}

const NAME_RULE: &str = "use letters, digits, `-` and `_`, starting and ending with a letter or \
                         digit";

/// A stack's name: it prefixes every service and network name.
pub(super) fn check_stack_name(name: &str) -> Result<(), String> {
    if label_like(name) {
        Ok(())
    } else {
        Err(NAME_RULE.into())
    }
}

/// A service's short name in the file, and its full name (at most 63
/// characters: it is a DNS name).
pub(super) fn check_service_name(short: &str, full: &str) -> Result<(), String> {
    if !label_like(short) {
        return Err(format!(
            "service name `{}` is not valid: {NAME_RULE}",
            cut(short)
        ));
    }
    if full.len() > 63 {
        return Err(format!(
            "the service's full name `{}` is {} characters long; a DNS name has at most 63 \
             (shorten the stack or service name)",
            cut(full),
            full.len()
        ));
    }
    Ok(())
}

/// A network name, by Docker's rule: 1 to 64 letters, digits, `-`, `_`
/// and `.`, starting with a letter or digit.
pub(super) fn check_network_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "network name `{}` is not valid: use 1 to 64 letters, digits, `-`, `_` and `.`, \
             starting with a letter or digit",
            cut(name)
        ))
    }
}

fn label_like(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_go_syntax() {
        for (s, ms) in [
            ("0", 0),
            ("10s", 10_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("2.5s", 2_500),
            (".5s", 500),
            ("1h2m3s4ms", 3_723_004),
            ("1500us", 1),
            ("999999ns", 0),
            ("+1s", 1_000),
        ] {
            assert_eq!(duration_ms(s), Ok(ms), "{s}");
        }
        for (s, says) in [
            ("", "empty"),
            ("10", "no unit"),
            ("-1s", "negative"),
            ("1d", "unknown unit `d`"),
            ("1..5s", "not a number"),
            ("s", "not a number"),
            ("99999999999999999999999999999999999999999h", "too long"),
            ("9999999999999999h", "too long"),
        ] {
            let e = duration_ms(s).unwrap_err();
            assert!(e.contains(says), "{s}: {e}");
        }
    }

    #[test]
    fn command_lines_split_like_a_shell() {
        let w = |s: &str| split_command(s).unwrap();
        assert_eq!(
            w("shoal whoami --port 80"),
            ["shoal", "whoami", "--port", "80"]
        );
        assert_eq!(
            w("  sh -c 'echo $HOME; ls'  "),
            ["sh", "-c", "echo $HOME; ls"]
        );
        assert_eq!(
            w(r#"a "b \"c\" \\ \n" d\ e"#),
            ["a", r#"b "c" \ \n"#, "d e"]
        );
        assert_eq!(w(r#"x'y'"z" '' """#), ["xyz", "", ""]);
        assert!(w("").is_empty());
        assert!(
            split_command("echo 'oops")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(
            split_command("echo \"oops")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(split_command("echo \\").unwrap_err().contains("lone"));
    }

    #[test]
    fn quoting_round_trips() {
        let words: Vec<String> = ["curl", "-f", "http://x/?a=1&b", "it's", "", "a b", "$HOME"]
            .map(String::from)
            .to_vec();
        let line = quote_command(&words);
        assert_eq!(
            line,
            r#"curl -f 'http://x/?a=1&b' 'it'\''s' '' 'a b' '$HOME'"#
        );
        assert_eq!(split_command(&line).unwrap(), words);
    }

    #[test]
    fn dollars_escape_and_refuse_substitution() {
        assert_eq!(unescape_dollars("a$$b $ 5$").unwrap(), "a$b $ 5$");
        assert_eq!(unescape_dollars("$$HOME").unwrap(), "$HOME");
        for s in ["$HOME", "${TAG}", "x-${A:-b}", "$_x"] {
            assert!(
                unescape_dollars(s).unwrap_err().contains("substitution"),
                "{s}"
            );
        }
    }

    #[test]
    fn names() {
        assert!(check_stack_name("web").is_ok());
        assert!(check_stack_name("my_stack-2").is_ok());
        for bad in ["", "-web", "web-", "we b", "web.x", "wéb"] {
            assert!(check_stack_name(bad).is_err(), "{bad}");
        }
        assert!(check_service_name("api", "web_api").is_ok());
        let long = "a".repeat(60);
        let e = check_service_name("api", &format!("{long}_api")).unwrap_err();
        assert!(e.contains("64 characters long"), "{e}");
        assert!(check_network_name("web_back.1").is_ok());
        assert!(check_network_name("_x").is_err());
        assert!(check_network_name(&"n".repeat(65)).is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(edit_distance("comand", "command"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("replicas", "replicas"), 0);
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(cut(&"é".repeat(100)).chars().count(), 83);
    }
}
