//! The command line as scripts use it: exit codes (0 ok, 1 error, 2
//! usage), completions, `version`, and JSON listings, against no daemon
//! or a socket that is not a daemon's.

use std::process::{Command, Output};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        // No daemon: a socket path that does not exist.
        .env("SHOAL_HOST", "unix:///nonexistent/shoal-cli-test.sock")
        .output()
        .expect("runs shoal")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn usage_mistakes_exit_2() {
    for args in [
        &["no-such-command"][..],
        &["service", "create"],
        &["service", "ls", "--format", "yaml"],
        &["service", "scale", "web"],
        &["service", "scale", "web=-1"],
        &["service", "ps", "bad/name"],
        &["stack", "deploy", "app"],
        &["stack", "ps", "a b"],
        &["swarm", "join", "--token", "x", "not-an-address"],
        &["completion", "tcsh"],
    ] {
        let o = shoal(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?} says why");
    }
}

#[test]
fn failures_exit_1_with_a_message() {
    for args in [
        &["service", "ls"][..],
        &["node", "ls", "--format", "json"],
        &["stack", "deploy", "-c", "/nonexistent/compose.yml", "app"],
    ] {
        let o = shoal(args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("shoal: "),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["--version"], &["service", "--help"]] {
        let o = shoal(args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    // Without a daemon `version` still shows the client and says why the
    // server is missing.
    let o = shoal(&["version"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    assert!(out.contains("not reachable"), "{out}");
    let o = shoal(&["version", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["client"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["server"].is_null());
}

#[test]
fn completions_cover_the_commands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef shoal"),
        ("fish", "complete -c shoal"),
    ] {
        let o = shoal(&["completion", shell]);
        assert_eq!(code(&o), 0, "{shell}: {}", stderr(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for word in ["service", "stack", "deploy", "compose-file", "replicas"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    // bash accepts the script, given on stdin: it is longer than one
    // argument may be (128 KiB).
    let o = shoal(&["completion", "bash"]);
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash runs");
    {
        use std::io::Write as _;
        let mut stdin = bash.stdin.take().expect("bash's stdin");
        stdin.write_all(&o.stdout).expect("the script goes to bash");
    }
    let check = bash.wait_with_output().expect("bash ends");
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn wrong_filters_are_refused_before_the_daemon_is_asked() {
    // No daemon listens: a refusal with exit 2 is the CLI's own.
    for (args, says) in [
        (
            &["service", "ps", "-f", "foo=bar", "web"][..],
            "invalid filter 'foo'",
        ),
        (
            &["node", "ps", "--filter", "desired-state=sleeping"],
            "Invalid desired-state filter: 'sleeping'",
        ),
        (
            &["stack", "ps", "-f", "nope", "app"],
            "bad format of filter (expected name=value)",
        ),
        (
            &["node", "ls", "-f", "role=boss"],
            "Invalid role filter: 'boss'",
        ),
        (&["node", "ls", "-f", "color=red"], "invalid filter 'color'"),
    ] {
        let o = shoal(args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?} lists nothing");
    }
    let o = shoal(&["service", "ls", "-q", "--format", "json"]);
    assert_eq!(code(&o), 2, "-q and --format conflict: {}", stderr(&o));
}
