//! A [`Lab`] is one test's world: a "switch" network namespace holding the
//! underlay bridge, test hosts (namespaces wired to it by veth), bare
//! namespaces for tasks, the processes started in them, and a directory for
//! their logs. Dropping the lab (also during a panic) stops the processes
//! and deletes the namespaces; [`Lab::persist`] hands them over as a
//! [`LabState`] that [`teardown`] removes later.
//!
//! Names are unique per lab: `shl<pid>x<n>-<name>`. Creating a lab first
//! sweeps namespaces of that form whose owning pid is dead.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::ip::{self, ip};
use crate::paths::target_dir;
use crate::proc::{self, Proc, ProcRecord, Shared, SpawnOpts};

/// How long [`Lab::run`] lets a command run.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The underlay bridge inside the switch namespace.
const BRIDGE: &str = "br0";
/// Where test hosts' underlay addresses come from (RFC 2544).
const UNDERLAY_NET: [u8; 3] = [198, 18, 0];

static NEXT_LAB: AtomicU32 = AtomicU32::new(1);

/// A test host: a network namespace with `eth0` on the underlay bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Short, hostname-like name given to [`Lab::add_host`].
    pub name: String,
    /// Full network namespace name.
    pub netns: String,
    /// The address of its `eth0` (a /24 on the bridge).
    pub underlay: Ipv4Addr,
}

/// A serializable record of everything a lab created, for [`teardown`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub prefix: String,
    pub dir: PathBuf,
    pub switch: String,
    /// Every namespace, in creation order (the switch first).
    pub netns: Vec<String>,
    pub hosts: Vec<Host>,
    pub procs: Vec<ProcRecord>,
}

/// One test's world; see the module docs.
pub struct Lab {
    name: String,
    prefix: String,
    dir: PathBuf,
    switch: String,
    netns: Vec<String>,
    hosts: Vec<Host>,
    procs: Vec<(ProcRecord, Arc<Mutex<Shared>>)>,
    spawned: u32,
    armed: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Lab {
    /// A lab for the test `test_name`, with its output directory at
    /// `target/netns-tests/<test_name>-<pid>x<n>/`.
    pub fn new(test_name: &str) -> Result<Lab> {
        sweep();
        let id = format!(
            "{}x{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let dir = target_dir()
            .join("netns-tests")
            .join(format!("{}-{id}", sanitize(test_name)));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        Lab::with_names(test_name, &format!("shl{id}"), dir)
    }

    /// A lab whose namespaces are `<prefix>-switch`, `<prefix>-<name>` and
    /// whose files go to `dir` (for `shoal sandbox`: fixed, typeable names).
    /// Fails if `<prefix>-switch` exists already.
    pub fn with_names(name: &str, prefix: &str, dir: PathBuf) -> Result<Lab> {
        check_name(prefix)?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating lab directory {}", dir.display()))?;
        let mut lab = Lab {
            name: name.to_string(),
            prefix: prefix.to_string(),
            dir,
            switch: format!("{prefix}-switch"),
            netns: Vec::new(),
            hosts: Vec::new(),
            procs: Vec::new(),
            spawned: 0,
            armed: true,
        };
        let switch = lab.switch.clone();
        ip::netns_add(&switch)?;
        lab.netns.push(switch.clone());
        ip(&["-n", &switch, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", BRIDGE, "up"])?;
        Ok(lab)
    }

    /// Adds a test host: namespace `<prefix>-<name>` with `eth0` (MTU 1500,
    /// `198.18.0.<k>/24`, k counting hosts from 1) on the bridge.
    pub fn add_host(&mut self, name: &str) -> Result<Host> {
        check_name(name)?;
        if self.hosts.iter().any(|h| h.name == name) {
            bail!("this lab already has a host named `{name}`; host names must be unique");
        }
        let k = self.hosts.len() + 1;
        let Ok(last) = u8::try_from(k) else {
            bail!("a lab holds at most 254 hosts on its /24 underlay");
        };
        if last == 255 {
            bail!("a lab holds at most 254 hosts on its /24 underlay");
        }
        let underlay = Ipv4Addr::new(UNDERLAY_NET[0], UNDERLAY_NET[1], UNDERLAY_NET[2], last);
        let netns = self.new_netns(name)?;
        // The bridge side lives in the switch namespace, so its name only has
        // to be unique there (and at most 15 bytes).
        let port: String = format!("v{k}-{name}").chars().take(15).collect();
        let sw = self.switch.clone();
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ])?;
        ip(&[
            "-n", &sw, "link", "set", &port, "mtu", "1500", "master", BRIDGE, "up",
        ])?;
        // The switch hands frames on as a wire does: with their checksums
        // complete and cut to the MTU. A veth would otherwise pass "checksum
        // later" super-frames that no NIC ever delivers, which programs that
        // forward raw frames (XDP) cannot finish.
        self.run_ok(&sw, &["ethtool", "-K", &port, "tx", "off"])
            .with_context(|| format!("turning checksum offload off on {port}"))?;
        // And it takes frames a host's XDP program sends back out (an ARP
        // answer) as a wire does: a veth accepts an XDP redirect only into
        // a peer with NAPI, which GRO gives it once it is up.
        self.run_ok(&sw, &["ethtool", "-K", &port, "gro", "on"])
            .with_context(|| format!("turning GRO on on {port}"))?;
        ip(&["-n", &netns, "link", "set", "eth0", "mtu", "1500", "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{underlay}/24"),
            "dev",
            "eth0",
        ])?;
        let host = Host {
            name: name.to_string(),
            netns,
            underlay,
        };
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// Adds a bare namespace `<prefix>-<name>` (lo up), e.g. for a task, and
    /// returns its full name.
    pub fn add_netns(&mut self, name: &str) -> Result<String> {
        check_name(name)?;
        self.new_netns(name)
    }

    fn new_netns(&mut self, name: &str) -> Result<String> {
        let netns = format!("{}-{name}", self.prefix);
        if self.netns.contains(&netns) {
            bail!("this lab already has a network namespace `{netns}`");
        }
        ip::netns_add(&netns)?;
        self.netns.push(netns.clone());
        Ok(netns)
    }

    /// Starts `args` inside `netns` in its own process group, with stdout
    /// and stderr in files of the lab directory. The lab stops it on drop.
    pub fn spawn(&mut self, netns: &str, args: &[&str]) -> Result<Proc> {
        self.spawn_opts(netns, args, &SpawnOpts::default())
    }

    /// [`Lab::spawn`] with extra environment variables.
    pub fn spawn_env(&mut self, netns: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Proc> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.spawn_opts(
            netns,
            args,
            &SpawnOpts {
                env,
                ..SpawnOpts::default()
            },
        )
    }

    /// [`Lab::spawn`] with every option.
    pub fn spawn_opts(&mut self, netns: &str, args: &[&str], opts: &SpawnOpts) -> Result<Proc> {
        self.spawned += 1;
        let (stdout, stderr) = match &opts.log {
            Some(log) => (log.clone(), log.clone()),
            None => {
                let short = netns
                    .strip_prefix(&format!("{}-", self.prefix))
                    .unwrap_or(netns);
                let program = args
                    .first()
                    .and_then(|a| Path::new(a).file_name())
                    .and_then(|n| n.to_str());
                let base = format!("{:02}-{short}-{}", self.spawned, program.unwrap_or("proc"));
                (
                    self.dir.join(format!("{base}.stdout")),
                    self.dir.join(format!("{base}.stderr")),
                )
            }
        };
        let proc = Proc::spawn(netns, args, opts, stdout, stderr)?;
        self.procs.push((proc.record().clone(), proc.shared()));
        Ok(proc)
    }

    /// Runs `args` inside `netns` to completion (at most [`RUN_TIMEOUT`]).
    /// A non-zero exit is not an error; look at the status.
    pub fn run(&self, netns: &str, args: &[&str]) -> Result<Output> {
        self.run_timeout(netns, args, RUN_TIMEOUT)
    }

    /// [`Lab::run`], but an error unless it exits 0; returns its stdout.
    pub fn run_ok(&self, netns: &str, args: &[&str]) -> Result<String> {
        let out = self.run(netns, args)?;
        if !out.status.success() {
            bail!(
                "`{}` in network namespace `{netns}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// [`Lab::run`] with a timeout of its own; killed and an error on timeout.
    pub fn run_timeout(&self, netns: &str, args: &[&str], timeout: Duration) -> Result<Output> {
        if args.is_empty() {
            bail!("nothing to run in network namespace `{netns}`: the argument list is empty");
        }
        if !shoal_dataplane::sys::netns::exists(netns) {
            bail!(
                "network namespace `{netns}` does not exist; create it with Lab::add_host or Lab::add_netns"
            );
        }
        let what = || format!("`{}` in network namespace `{netns}`", args.join(" "));
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", what()))?;
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for {}", what()))?
            {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not finish within {:.0} s and was killed",
                    what(),
                    timeout.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    /// Runs `f` on a thread inside `netns` and returns its result.
    pub fn in_netns<T: Send + 'static>(
        &self,
        netns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        if !shoal_dataplane::sys::netns::exists(netns) {
            bail!(
                "network namespace `{netns}` does not exist; create it with Lab::add_host or Lab::add_netns"
            );
        }
        shoal_dataplane::sys::netns::run_in(&shoal_dataplane::sys::netns::path_of(netns), f)
            .with_context(|| format!("running code inside network namespace `{netns}`"))
    }

    /// Drops, inside `host`, every packet to or from the hosts `cut` (no
    /// FIN, no RST: as if they lost power), replacing what the last call
    /// dropped; an empty `cut` lets everything through again.
    pub fn cut_off(&self, host: &Host, cut: &[&Host]) -> Result<()> {
        let addrs: Vec<String> = cut.iter().map(|h| h.underlay.to_string()).collect();
        let (input, output) = if addrs.is_empty() {
            (String::new(), String::new())
        } else {
            let set = format!("{{ {} }}", addrs.join(", "));
            (
                format!("    ip saddr {set} drop\n"),
                format!("    ip daddr {set} drop\n"),
            )
        };
        let script = format!(
            "table inet cut\ndelete table inet cut\ntable inet cut {{\n  chain in {{ type \
             filter hook input priority 0; policy accept;\n{input}  }}\n  chain out {{ type \
             filter hook output priority 0; policy accept;\n{output}  }}\n}}\n"
        );
        let file = self.dir.join(format!("nft-cut-{}.conf", host.name));
        std::fs::write(&file, script)?;
        self.run_ok(&host.netns, &["nft", "-f", &file.display().to_string()])?;
        Ok(())
    }

    /// The lab's output directory (kept after the lab is gone).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hosts, in order of creation.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The name of the namespace holding the underlay bridge.
    pub fn switch(&self) -> &str {
        &self.switch
    }

    /// Every namespace of the lab, the switch first.
    pub fn netns(&self) -> &[String] {
        &self.netns
    }

    /// A record of everything the lab created so far.
    pub fn state(&self) -> LabState {
        LabState {
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            dir: self.dir.clone(),
            switch: self.switch.clone(),
            netns: self.netns.clone(),
            hosts: self.hosts.clone(),
            procs: self.procs.iter().map(|(r, _)| r.clone()).collect(),
        }
    }

    /// Disarms cleanup: namespaces and processes outlive the lab. Returns
    /// what [`teardown`] needs to remove them later.
    pub fn persist(mut self) -> LabState {
        self.armed = false;
        self.state()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let children: Vec<Arc<Mutex<Shared>>> =
            self.procs.iter().map(|(_, s)| Arc::clone(s)).collect();
        proc::stop_children(&children);
        delete_task_netns(&self.dir);
        if let Err(e) = delete_netns(&self.netns) {
            eprintln!("netns-tests: cleaning up lab `{}`: {e:#}", self.name);
        }
    }
}

/// Removes what a persisted lab created: stops its processes (SIGTERM, up
/// to 3 s, SIGKILL on their groups), then deletes its namespaces. Pieces
/// that are already gone are skipped. The directory is left alone.
pub fn teardown(state: &LabState) -> Result<()> {
    proc::stop_records(&state.procs);
    delete_task_netns(&state.dir);
    delete_netns(&state.netns)
}

/// The namespaces swarm daemons of the lab made for their tasks
/// (`shoal-<task id>`, one directory per task under
/// `<lab>/<host>/state/tasks`): a daemon stopped gracefully removes them
/// itself, one killed with -9 leaves them.
pub fn task_netns(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(hosts) = std::fs::read_dir(dir) else {
        return names;
    };
    for host in hosts.flatten() {
        let Ok(tasks) = std::fs::read_dir(host.path().join("state").join("tasks")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Some(id) = task.file_name().to_str() {
                names.push(format!("shoal-{id}"));
            }
        }
    }
    names
}

fn delete_task_netns(dir: &Path) {
    let existing = ip::netns_list();
    for name in task_netns(dir) {
        if existing.contains(&name)
            && let Err(e) = ip::netns_del(&name)
        {
            eprintln!("netns-tests: removing task namespace `{name}`: {e:#}");
        }
    }
}

/// Deletes namespaces in reverse creation order, trying all of them.
fn delete_netns(names: &[String]) -> Result<()> {
    let errors: Vec<String> = names
        .iter()
        .rev()
        .filter_map(|n| ip::netns_del(n).err())
        .map(|e| format!("{e:#}"))
        .collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// Deletes `shl<pid>x<n>-*` namespaces whose owning process is gone (left
/// by a test binary that was killed), with whatever still runs inside.
pub fn sweep() {
    for name in ip::netns_list() {
        if let Some(pid) = owner_pid(&name)
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && let Err(e) = ip::netns_del(&name)
        {
            eprintln!("netns-tests: removing leftover network namespace `{name}`: {e:#}");
        }
    }
}

/// The pid encoded in a lab namespace name `shl<pid>x<n>-...`.
fn owner_pid(name: &str) -> Option<u32> {
    let (id, _) = name.strip_prefix("shl")?.split_once('-')?;
    let (pid, n) = id.split_once('x')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Names go into namespace names, file names and `ip` arguments.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        bail!(
            "bad name `{name}`: use 1 to 48 letters, digits, `-`, `_` or `.`, not starting with `-` or `.`"
        );
    }
    Ok(())
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "lab".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_lab_names_only() {
        assert_eq!(owner_pid("shl1234x7-switch"), Some(1234));
        assert_eq!(owner_pid("shl1234x7-n1-web"), Some(1234));
        assert_eq!(owner_pid("shoal-sbx-n1"), None);
        assert_eq!(owner_pid("shl1234-n1"), None);
        assert_eq!(owner_pid("shlAx1-n1"), None);
        assert_eq!(owner_pid("shl12x-n1"), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("n1").is_ok());
        assert!(check_name("web_1.a-b").is_ok());
        for bad in ["", "-x", ".x", "a b", "a/b", &"x".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sanitize("mod::test name"), "mod__test_name");
    }
}
