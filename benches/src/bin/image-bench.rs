//! Image tasks next to process tasks, on real daemons in network
//! namespaces (one manager, two workers, a client and a registry host
//! running Debian's docker-registry):
//! - create: `service create --replicas 10 -p PORT:80` to all 10 tasks
//!   answering through the mesh on the manager, for `-- shoal whoami`
//!   (process tasks), for the busybox whoami image when no node has it
//!   (each pulls it), and for the same image again (every node has it);
//! - pull: an image store pulling and unpacking images of about 10 MB and
//!   100 MB (one layer of random bytes besides busybox) from the registry;
//! - memory: what each running container costs beyond its own program:
//!   the proportional set size of its `runc run` supervisor and its init,
//!   next to the program's.
//!
//! `cargo run --release -p shoal-benches --bin image-bench [ROUNDS]`
//! (root; build `--bin shoal` in release first).

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use shoal_control::image::{ImageStore, RegistryOptions};
use shoal_netns_tests::registry::{Built, DockerRegistry, busybox_files, demo};
use shoal_netns_tests::swarm::{form, wait_converged};
use shoal_netns_tests::{Host, Lab, SwarmNode, wait_until, whoami_spray};

const T: Duration = Duration::from_secs(120);
const REPLICAS: usize = 10;

/// An image of busybox and `mb` megabytes of random bytes (which gzip
/// cannot shrink, so the download is that size too).
fn sized(mb: usize) -> Result<Built> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ mb as u64;
    let mut bytes = Vec::with_capacity(mb << 20);
    while bytes.len() < mb << 20 {
        // xorshift64: fast, and incompressible enough.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    Built::new(
        &busybox_files(&[("data/blob", 0o644, bytes)])?,
        serde_json::json!({"Cmd": ["/bin/busybox", "sleep", "3600"]}),
    )
}

/// Creates a service of `REPLICAS` tasks published on `port` and times it
/// to every task answering through the mesh on `m`.
fn create(lab: &Lab, m: &SwarmNode, client: &Host, port: u16, what: &[&str]) -> Result<Duration> {
    let replicas = REPLICAS.to_string();
    let published = format!("{port}:80");
    let name = format!("s{port}");
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--name",
        &name,
        "--replicas",
        &replicas,
        "-p",
        &published,
    ];
    args.extend_from_slice(what);
    let entry = SocketAddrV4::new(m.host.underlay, port);
    let started = Instant::now();
    m.shoal_ok(&args)?;
    let mut seen = BTreeSet::new();
    wait_until(&format!("{name}: all replicas to answer"), T, || {
        let (s, _) = whoami_spray(lab, &client.netns, entry, 20, Duration::from_millis(500));
        seen.extend(s.into_keys());
        (seen.len() == REPLICAS).then_some(())
    })?;
    Ok(started.elapsed())
}

/// Pulls `references` into a fresh store from `host`'s namespace; the
/// time of each.
fn pulls(lab: &Lab, host: &Host, insecure: &str, references: &[String]) -> Result<Vec<Duration>> {
    let dir = lab.dir().join("bench-store");
    let _ = std::fs::remove_dir_all(&dir);
    let options = RegistryOptions {
        insecure: vec![insecure.to_owned()],
    };
    let references = references.to_vec();
    lab.in_netns(&host.netns, move || -> Result<Vec<Duration>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let store = ImageStore::open(&dir, &options)?;
            let mut times = Vec::new();
            for r in &references {
                let started = Instant::now();
                store.pull(r, None).await?;
                times.push(started.elapsed());
            }
            let _ = std::fs::remove_dir_all(&dir);
            Ok(times)
        })
    })?
}

/// A process's proportional set size, in KiB.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// For every container of `nodes`: (runc + init PSS, program PSS) in KiB.
fn container_memory(nodes: &[SwarmNode]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for init in nodes.iter().flat_map(SwarmNode::container_inits) {
        let runc = parent_of(init).map_or(0, pss_kib);
        let program: u64 = children_of(init).into_iter().map(pss_kib).sum();
        out.push((runc + pss_kib(init), program));
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let rounds = shoal_benches::count_arg("ROUNDS", 3)?;
    let whoami = demo::whoami()?;
    let (ten, hundred) = (sized(10)?, sized(100)?);
    println!(
        "images: whoami {} KiB, 10 MB {} KiB, 100 MB {} KiB (compressed layer)",
        whoami.layer.len() >> 10,
        ten.layer.len() >> 10,
        hundred.layer.len() >> 10
    );
    for r in 1..=rounds {
        let mut lab = Lab::new(&format!("image-bench-{r}"))?;
        let registry_host = lab.add_host("registry")?;
        let registry = DockerRegistry::start(&mut lab, &registry_host, 5000, false)?;
        let insecure = registry.host();
        let swarm = form(&mut lab, 1, 2, &["--insecure-registry", &insecure])?;
        wait_converged(&swarm, &[0], 3)?;
        let client = lab.add_host("client")?;
        let image = registry.push(&lab, &registry_host, &whoami, "bench/whoami", "1")?;
        let ten_ref = registry.push(&lab, &registry_host, &ten, "bench/ten", "1")?;
        let hundred_ref = registry.push(&lab, &registry_host, &hundred, "bench/hundred", "1")?;
        let m = swarm.manager(0);

        let process = create(
            &lab,
            m,
            &client,
            8080,
            &["--", "shoal", "whoami", "--port", "80"],
        )?;
        let cold = create(&lab, m, &client, 8081, &[&image])?;
        let warm = create(&lab, m, &client, 8082, &[&image])?;
        let memory = container_memory(&swarm.nodes);
        let pulled = pulls(&lab, &client, &insecure, &[ten_ref, hundred_ref])
            .context("pulling the sized images")?;
        let n = memory.len().max(1) as u64;
        let (overhead, program) = memory.iter().fold((0, 0), |(a, b), (o, p)| (a + o, b + p));
        println!(
            "round {r}: create --replicas {REPLICAS} to all reachable: process tasks {}, image \
             (pulled by each node) {}, image (on every node) {}; pull+unpack 10 MB {}, 100 MB {}; \
             per container ({} running): runc + init {} KiB PSS, the program {} KiB PSS",
            ms(process),
            ms(cold),
            ms(warm),
            ms(pulled[0]),
            ms(pulled[1]),
            memory.len(),
            overhead / n,
            program / n,
        );
    }
    Ok(())
}
