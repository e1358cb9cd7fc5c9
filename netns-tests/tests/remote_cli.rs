//! The remote CLI: `shoal -H tcp://MANAGER:2377` from a test host that is
//! not a node, with an operator certificate made on a manager
//! (`shoal swarm ca client-cert`), the way Swarm tutorials drive a remote
//! manager with `docker -H`. Without a certificate, with a node's
//! certificate, with one of another CA or with a revoked one, the CLI is
//! refused with one line saying why.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, bail};
use shoal_control::pki::{ClusterCa, NODE_CERT_VALIDITY, NodeKey, new_operator_id};
use shoal_netns_tests::swarm::{T, form, logs, wait_converged};
use shoal_netns_tests::{Lab, SwarmNode, wait_until};

/// Runs `shoal -H tcp://<to>:2377 --tls-dir <tls> <args>` on `host`'s
/// namespace.
fn remote(
    lab: &Lab,
    netns: &str,
    bin: &Path,
    to: &SwarmNode,
    tls: &Path,
    args: &[&str],
) -> Result<Output> {
    let host = format!("tcp://{}:2377", to.host.underlay);
    let bin = bin.to_string_lossy();
    let tls = tls.to_string_lossy();
    let mut argv = vec![bin.as_ref(), "-H", &host, "--tls-dir", tls.as_ref()];
    argv.extend_from_slice(args);
    lab.run(netns, &argv)
}

/// The one-line refusal of a command that must fail.
fn refusal(out: &Output) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if out.status.success() {
        bail!(
            "the command succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    if stderr.lines().count() != 1 || !stderr.starts_with("shoal: ") {
        bail!("not a one-line reason: {stderr:?}");
    }
    Ok(stderr)
}

fn stdout_ok(out: &Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .permissions()
        .mode()
        & 0o7777)
}

/// Writes `ca`, `cert` and `key` (PEM) into `dir` under docker's names.
fn tls_dir(dir: PathBuf, ca: &str, cert: &str, key: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("ca.pem"), ca)?;
    std::fs::write(dir.join("cert.pem"), cert)?;
    std::fs::write(dir.join("key.pem"), key)?;
    Ok(dir)
}

#[test]
fn an_operator_drives_a_remote_manager_and_only_an_operator_does() -> Result<()> {
    let mut lab = Lab::new("remote-cli")?;
    let swarm = form(&mut lab, 2, 0, &[])?;
    wait_converged(&swarm, &[0], 2)?;
    let (m1, m2) = (&swarm.nodes[0], &swarm.nodes[1]);
    let bin = m1.bin.clone();
    // A machine that is no node of the swarm.
    let op = lab.add_host("op")?.netns;

    // An operator certificate, made on m1 through its local socket.
    let alice = lab.dir().join("alice");
    let id = m1
        .shoal_ok(&[
            "swarm",
            "ca",
            "client-cert",
            "-q",
            "--out",
            &alice.to_string_lossy(),
        ])?
        .trim()
        .to_owned();
    assert!(id.starts_with("op-"), "{id}");
    assert_eq!(mode(&alice)?, 0o700);
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        assert_eq!(mode(&alice.join(f))?, 0o600, "{f}");
    }

    // With it, every manager answers from the other machine.
    for manager in [m1, m2] {
        let ls = stdout_ok(&remote(&lab, &op, &bin, manager, &alice, &["node", "ls"])?)
            .with_context(|| logs(&swarm))?;
        assert!(ls.contains("m1") && ls.contains("m2"), "{ls}");
    }
    // SHOAL_HOST works as -H does, and so do writes through a follower:
    // a second operator, made remotely, revokes the first.
    let bob = lab.dir().join("bob");
    let host = format!("SHOAL_HOST=tcp://{}:2377", m2.host.underlay);
    let bob_id = stdout_ok(&lab.run(
        &op,
        &[
            "env",
            &host,
            &bin.to_string_lossy(),
            "--tls-dir",
            &alice.to_string_lossy(),
            "swarm",
            "ca",
            "client-cert",
            "-q",
            "--out",
            &bob.to_string_lossy(),
        ],
    )?)?
    .trim()
    .to_owned();
    assert_ne!(bob_id, id);

    // Without a certificate.
    let empty = lab.dir().join("empty");
    std::fs::create_dir_all(&empty)?;
    let why = refusal(&remote(&lab, &op, &bin, m1, &empty, &["node", "ls"])?)?;
    assert!(why.contains("no operator certificate in"), "{why}");
    assert!(why.contains("shoal swarm ca client-cert --out"), "{why}");

    // A node's own certificate is no operator's, even a manager's.
    let node_files = m2.state_dir.join("swarm");
    let read = |f: &str| std::fs::read_to_string(node_files.join(f));
    let as_node = tls_dir(
        lab.dir().join("as-node"),
        &read("ca.pem")?,
        &read("node.pem")?,
        &read("node-key.pem")?,
    )?;
    let why = refusal(&remote(&lab, &op, &bin, m1, &as_node, &["node", "ls"])?)?;
    assert!(
        why.contains("node certificate is not an operator certificate"),
        "{why}"
    );

    // An operator certificate of another CA.
    let other = ClusterCa::generate("elsewhere")?;
    let key = NodeKey::generate()?;
    let cert = other.issue_operator(
        &new_operator_id()?,
        &key.csr_pem_named("mallory")?,
        NODE_CERT_VALIDITY,
    )?;
    let foreign = tls_dir(
        lab.dir().join("foreign"),
        &std::fs::read_to_string(alice.join("ca.pem"))?,
        cert.pem(),
        &key.private_key_pem(),
    )?;
    let why = refusal(&remote(&lab, &op, &bin, m1, &foreign, &["node", "ls"])?)?;
    assert!(why.contains("not issued by this swarm's CA"), "{why}");

    // Revoked remotely with bob's certificate: refused by every manager.
    stdout_ok(&remote(
        &lab,
        &op,
        &bin,
        m1,
        &bob,
        &["swarm", "ca", "revoke-client", &id],
    )?)?;
    for manager in [m1, m2] {
        let mut last = String::new();
        let refused = wait_until("alice's certificate to be refused", T, || {
            let out = remote(&lab, &op, &bin, manager, &alice, &["node", "ls"]).ok()?;
            last = refusal(&out).ok()?;
            last.contains("was revoked").then_some(())
        });
        if let Err(e) = refused {
            bail!("{e}; last: {last}\n{}", logs(&swarm));
        }
    }
    // Bob's still works.
    stdout_ok(&remote(&lab, &op, &bin, m2, &bob, &["node", "ls"])?)?;
    Ok(())
}
