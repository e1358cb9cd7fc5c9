//! Processes the harness starts inside network namespaces: each runs in a
//! process group of its own (or a session of its own when detached), with its
//! output in files, and is stopped with SIGTERM, then SIGKILL on its group.
//! A [`ProcRecord`] describes one across process lifetimes (for `persist`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How long a process gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// How to start a process.
#[derive(Debug, Clone, Default)]
pub struct SpawnOpts {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// One file for stdout and stderr together (appended to); by default
    /// `NN-<netns>-<program>.stdout` and `.stderr` in the lab directory.
    pub log: Option<PathBuf>,
    /// Start it in a session of its own (through `setsid`), so that it
    /// outlives the terminal and the process that started it.
    pub detach: bool,
}

/// What the harness remembers of a process, serializable: enough to stop it
/// later from another process without hitting a reused pid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcRecord {
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    pub netns: String,
    pub argv: Vec<String>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl ProcRecord {
    /// Whether the process still runs (not a zombie, and not another
    /// process that got the same pid since).
    pub fn is_alive(&self) -> bool {
        record_alive(self)
    }
}

pub(crate) struct Shared {
    child: Child,
    status: Option<ExitStatus>,
}

impl Shared {
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
}

/// A process started by a [`crate::Lab`]. Dropping it does not stop it: the
/// lab stops every process it started when it is dropped.
pub struct Proc {
    pub pid: u32,
    record: ProcRecord,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("pid", &self.pid)
            .field("argv", &self.record.argv)
            .finish()
    }
}

impl Proc {
    /// Starts `args` inside the network namespace `netns`.
    pub(crate) fn spawn(
        netns: &str,
        args: &[&str],
        opts: &SpawnOpts,
        stdout: PathBuf,
        stderr: PathBuf,
    ) -> Result<Proc> {
        if args.is_empty() {
            bail!("nothing to run in network namespace `{netns}`: the argument list is empty");
        }
        if !shoal_dataplane::sys::netns::exists(netns) {
            bail!(
                "network namespace `{netns}` does not exist; create it with Lab::add_host or Lab::add_netns"
            );
        }
        let out = open_log(&stdout)?;
        let err = if stderr == stdout {
            out.try_clone()?
        } else {
            open_log(&stderr)?
        };
        let mut cmd = if opts.detach {
            let mut c = Command::new("setsid");
            c.arg("ip");
            c
        } else {
            use std::os::unix::process::CommandExt;
            let mut c = Command::new("ip");
            c.process_group(0);
            c
        };
        cmd.args(["netns", "exec", netns])
            .args(args)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().with_context(|| {
            format!(
                "starting `{}` in network namespace `{netns}`",
                args.join(" ")
            )
        })?;
        let pid = child.id();
        let record = ProcRecord {
            pid,
            start_time: start_time(pid).unwrap_or(0),
            netns: netns.to_string(),
            argv: args.iter().map(|a| a.to_string()).collect(),
            stdout,
            stderr,
        };
        Ok(Proc {
            pid,
            record,
            shared: Arc::new(Mutex::new(Shared {
                child,
                status: None,
            })),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Mutex<Shared>> {
        Arc::clone(&self.shared)
    }

    /// What a record of this process looks like (see [`crate::LabState`]).
    pub fn record(&self) -> &ProcRecord {
        &self.record
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.record.stdout)
    }

    /// Everything it wrote to stderr so far (the same as stdout when both go
    /// to one log file).
    pub fn stderr(&self) -> String {
        read_lossy(&self.record.stderr)
    }

    /// Whether it has not exited yet.
    pub fn is_running(&mut self) -> bool {
        lock(&self.shared).poll().is_none()
    }

    /// Its exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        lock(&self.shared).poll()
    }

    /// Sends `signal` to the process itself (not its group).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        signal::kill(Pid::from_raw(self.pid as i32), signal).with_context(|| {
            format!(
                "sending {signal} to `{}` (pid {})",
                self.record.argv.join(" "),
                self.pid
            )
        })
    }

    /// SIGTERM to its process group, up to [`TERM_GRACE`] to exit, then
    /// SIGKILL to the group. Returns how it exited.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        stop_children(&[self.shared()]);
        lock(&self.shared).poll().with_context(|| {
            format!(
                "`{}` (pid {}) survived SIGKILL",
                self.record.argv.join(" "),
                self.pid
            )
        })
    }

    /// SIGKILL to its process group, and reap it.
    pub fn kill9(&mut self) {
        let mut shared = lock(&self.shared);
        if shared.poll().is_none() {
            kill_group(self.pid, Signal::SIGKILL);
            shared.status = shared.child.wait().ok();
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_log(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Sends `signal` to one pid; a process that is already gone is fine.
pub(crate) fn kill_pid(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = signal::kill(Pid::from_raw(pid), signal);
    }
}

/// Sends `signal` to the process group `pgid`; a group that is gone is fine.
fn kill_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        let _ = signal::killpg(Pid::from_raw(pgid), signal);
    }
}

/// The start time of `pid` in clock ticks since boot, if it exists.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); the start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process of `record` still runs (not a zombie, not a reused pid).
pub(crate) fn record_alive(record: &ProcRecord) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", record.pid)) else {
        return false;
    };
    let zombie = stat
        .rfind(')')
        .is_some_and(|i| stat[i + 1..].trim_start().starts_with(['Z', 'X']));
    !zombie && (record.start_time == 0 || start_time(record.pid) == Some(record.start_time))
}

/// Stops processes this process started: SIGTERM to every group at once,
/// one shared grace period, SIGKILL to the groups still there, reap all.
pub(crate) fn stop_children(procs: &[Arc<Mutex<Shared>>]) {
    let running: Vec<&Arc<Mutex<Shared>>> =
        procs.iter().filter(|p| lock(p).poll().is_none()).collect();
    for p in &running {
        kill_group(lock(p).child.id(), Signal::SIGTERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && running.iter().any(|p| lock(p).poll().is_none()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &running {
        let mut shared = lock(p);
        if shared.poll().is_none() {
            kill_group(shared.child.id(), Signal::SIGKILL);
            shared.status = shared.child.wait().ok();
        }
    }
}

/// Stops processes known only by their records (started by another process,
/// e.g. a persisted sandbox), the same way as [`stop_children`].
pub(crate) fn stop_records(records: &[ProcRecord]) {
    let running: Vec<&ProcRecord> = records.iter().filter(|r| record_alive(r)).collect();
    for r in &running {
        kill_group(r.pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && running.iter().any(|r| record_alive(r)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for r in running.iter().filter(|r| record_alive(r)) {
        kill_group(r.pid, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_is_stable() {
        let me = std::process::id();
        let t = start_time(me).expect("own stat");
        assert_eq!(start_time(me), Some(t));
        let record = ProcRecord {
            pid: me,
            start_time: t,
            netns: String::new(),
            argv: vec![],
            stdout: PathBuf::new(),
            stderr: PathBuf::new(),
        };
        assert!(record_alive(&record));
        assert!(!record_alive(&ProcRecord {
            start_time: t + 1,
            ..record.clone()
        }));
    }
}
