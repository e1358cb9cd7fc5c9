//! Starting a task's process isolated the way `ip netns exec` isolates one:
//! in the task's network namespace, with its own hostname (UTS namespace) and
//! its own view of `/etc/resolv.conf` and `/sys` (mount namespace), as the
//! leader of a process group the executor signals as a whole.
//!
//! Everything that allocates or can fail slowly is prepared before the fork;
//! between fork and exec the child makes only raw system calls.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};

use super::netns::c_path;

/// Where and as what a task's process runs.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The network namespace file (`/var/run/netns/NAME`, `/proc/PID/ns/net`).
    pub netns: PathBuf,
    /// Truncated to 64 bytes, the kernel's limit.
    pub hostname: String,
    /// Bind-mounted read-only over `/etc/resolv.conf`; skipped if missing.
    pub resolv_conf: Option<PathBuf>,
}

/// The file-mode creation mask a task starts with: the usual 022 (as in
/// Docker), whatever stricter mask the daemon itself runs with.
pub const TASK_UMASK: libc::mode_t = 0o022;

/// Sets this process's file-mode creation mask to `mask`; returns the
/// previous one.
pub fn set_umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask takes an integer, always succeeds and touches no memory.
    unsafe { libc::umask(mask) }
}

/// Raises this process's soft limit on open descriptors to its hard limit
/// (a node's tasks, TAPs and connections all take descriptors); returns
/// the limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads one rlimit from the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Spawns `command` (already configured with args, env, stdio, cwd) as the
/// leader of a new process group, inside `iso.netns`, in new UTS and mount
/// namespaces with `iso.hostname` as hostname and (if given and existing)
/// `iso.resolv_conf` bind-mounted read-only over /etc/resolv.conf. `/sys` is
/// remounted to show the task's namespace, if the kernel allows it.
///
/// The child is SIGKILLed when the spawning *thread* exits
/// (`PR_SET_PDEATHSIG`), so callers must spawn from a thread that outlives the
/// child: a dedicated thread, not a short-lived or pooled one (for tokio,
/// not `spawn_blocking`).
///
/// Errors keep the kind of the failed system call and name the program and
/// namespace; a failure in the child before exec also names the step
/// (`...: entering the network namespace: Invalid argument (os error 22)`).
/// `command` carries the isolation from now on: spawn it once.
pub fn spawn_isolated(command: &mut Command, iso: &Isolation) -> io::Result<Child> {
    let setup = Setup::prepare(iso)?;
    let (report_rx, report_tx) = report_pipe()?;
    // SAFETY: the closure allocates nothing and makes only async-signal-safe
    // system calls on data prepared before the fork (see `Setup::enter`).
    unsafe {
        command.pre_exec(move || setup.enter(report_tx.as_raw_fd()));
    }
    command.spawn().map_err(|e| {
        let mut step = [0u8; 1];
        let failed = match File::from(report_rx).read(&mut step) {
            Ok(1) => Step::ALL.get(usize::from(step[0])),
            _ => None,
        };
        let program = command.get_program();
        let netns = iso.netns.display();
        let msg = match failed {
            Some(step) => format!(
                "starting {program:?} in network namespace {netns}: {}: {e}",
                step.describe()
            ),
            None => format!("starting {program:?} in network namespace {netns}: {e}"),
        };
        io::Error::new(e.kind(), msg)
    })
}

/// Spawns `command` as the leader of a new process group that is
/// SIGKILLed when the spawning thread exits, like [`spawn_isolated`] but
/// in the daemon's own namespaces: for an OCI runtime, which makes the
/// task's namespaces itself.
pub fn spawn_supervised(command: &mut Command) -> io::Result<Child> {
    let parent = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
    // SAFETY: the closure allocates nothing and makes only async-signal-safe
    // system calls on integers.
    unsafe {
        command.pre_exec(move || {
            libc::umask(TASK_UMASK);
            if libc::setpgid(0, 0) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("starting {:?}: {e}", command.get_program()),
        )
    })
}

/// Sends `signal` to the process group led by `pid` (a child spawned by
/// [`spawn_isolated`]); a group that is gone already is not an error. The
/// caller still has to reap the child.
pub fn signal_group(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // 0 and 1 would make kill() signal our own group or every process.
    let pgid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{pid} is not a task's process group"),
            )
        })?;
    // SAFETY: kill takes no pointers; `-pgid` names exactly one process group.
    if unsafe { libc::kill(-pgid, signal) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(io::Error::new(
                e.kind(),
                format!("signal {signal} to process group {pgid}: {e}"),
            ));
        }
    }
    Ok(())
}

/// What the child does between fork and exec, prepared before the fork.
struct Setup {
    parent: libc::pid_t,
    /// Opened close-on-exec: the task does not inherit it.
    netns: File,
    hostname: Vec<u8>,
    resolv_conf: Option<CString>,
    sysfs_flags: libc::c_ulong,
}

/// The steps of `Setup::enter` that can fail; the child reports which one
/// by writing its index to a pipe, since std passes only the errno back.
#[derive(Clone, Copy)]
enum Step {
    ProcessGroup,
    DeathSignal,
    ParentGone,
    Netns,
    Unshare,
    Propagation,
    ResolvConf,
    ResolvConfReadOnly,
    Hostname,
}

impl Step {
    const ALL: [Step; 9] = [
        Step::ProcessGroup,
        Step::DeathSignal,
        Step::ParentGone,
        Step::Netns,
        Step::Unshare,
        Step::Propagation,
        Step::ResolvConf,
        Step::ResolvConfReadOnly,
        Step::Hostname,
    ];

    fn describe(self) -> &'static str {
        match self {
            Step::ProcessGroup => "joining a new process group",
            Step::DeathSignal => "setting the parent-death signal",
            Step::ParentGone => "the spawning process exited",
            Step::Netns => "entering the network namespace",
            Step::Unshare => "creating UTS and mount namespaces",
            Step::Propagation => "making mounts slaves of the host's",
            Step::ResolvConf => "bind-mounting resolv.conf over /etc/resolv.conf",
            Step::ResolvConfReadOnly => "making /etc/resolv.conf read-only",
            Step::Hostname => "setting the hostname",
        }
    }
}

/// The kernel's hostname limit (`__NEW_UTS_LEN`).
const HOSTNAME_MAX: usize = 64;

impl Setup {
    fn prepare(iso: &Isolation) -> io::Result<Setup> {
        let netns = File::open(&iso.netns).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("network namespace {}: {e}", iso.netns.display()),
            )
        })?;
        if iso.hostname.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("hostname {:?} contains a NUL byte", iso.hostname),
            ));
        }
        let mut end = iso.hostname.len().min(HOSTNAME_MAX);
        while !iso.hostname.is_char_boundary(end) {
            end -= 1;
        }
        let resolv_conf = match &iso.resolv_conf {
            Some(path) if path.exists() => Some(c_path(path)?),
            _ => None,
        };
        Ok(Setup {
            parent: libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?,
            netns,
            hostname: iso.hostname.as_bytes()[..end].to_vec(),
            resolv_conf,
            sysfs_flags: sysfs_flags(),
        })
    }

    /// Runs in the forked child: raw system calls only, no allocation.
    fn enter(&self, report: RawFd) -> io::Result<()> {
        let fail = |step: Step, err: io::Error| {
            let byte = step as u8;
            // SAFETY: write is async-signal-safe; `byte` outlives the call.
            let _ = unsafe { libc::write(report, (&raw const byte).cast(), 1) };
            err
        };
        let check = |step: Step, rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(fail(step, io::Error::last_os_error()))
            }
        };
        // SAFETY: umask takes an integer and cannot fail.
        unsafe { libc::umask(TASK_UMASK) };
        // SAFETY: setpgid takes only integers.
        check(Step::ProcessGroup, unsafe { libc::setpgid(0, 0) })?;
        // SAFETY: PR_SET_PDEATHSIG takes one integer argument.
        check(Step::DeathSignal, unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        })?;
        // The parent may have died before the death signal was armed.
        // SAFETY: getppid cannot fail and takes no arguments.
        if unsafe { libc::getppid() } != self.parent {
            return Err(fail(
                Step::ParentGone,
                io::Error::from_raw_os_error(libc::ESRCH),
            ));
        }
        // SAFETY: `self.netns` is an open descriptor.
        check(Step::Netns, unsafe {
            libc::setns(self.netns.as_raw_fd(), libc::CLONE_NEWNET)
        })?;
        // SAFETY: unshare takes only flags; this process has one thread.
        check(Step::Unshare, unsafe {
            libc::unshare(libc::CLONE_NEWUTS | libc::CLONE_NEWNS)
        })?;
        // SAFETY: null source, type and data are allowed for a propagation
        // change; the target is a string literal.
        check(Step::Propagation, unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            )
        })?;
        if let Some(source) = &self.resolv_conf {
            // SAFETY: `source` is owned by `self`; the rest as above.
            check(Step::ResolvConf, unsafe {
                libc::mount(
                    source.as_ptr(),
                    c"/etc/resolv.conf".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            })?;
            // SAFETY: as for the propagation change.
            check(Step::ResolvConfReadOnly, unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/etc/resolv.conf".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                )
            })?;
        }
        // A sysfs mounted now describes the namespace just entered. Stacked
        // over the old /sys rather than replacing it (as `ip netns exec`
        // does), a refusal leaves the task with the host's /sys, not none.
        // SAFETY: string literals and flags only.
        let _ = unsafe {
            libc::mount(
                c"sysfs".as_ptr(),
                c"/sys".as_ptr(),
                c"sysfs".as_ptr(),
                self.sysfs_flags,
                std::ptr::null(),
            )
        };
        // SAFETY: pointer and length describe `self.hostname`.
        check(Step::Hostname, unsafe {
            libc::sethostname(self.hostname.as_ptr().cast(), self.hostname.len())
        })
    }
}

/// The flags for the task's sysfs: the usual ones, read-only if the host's is.
fn sysfs_flags() -> libc::c_ulong {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: the path is a string literal and `stat` has room for a statvfs.
    let rc = unsafe { libc::statvfs(c"/sys".as_ptr(), stat.as_mut_ptr()) };
    // SAFETY: statvfs filled `stat` in when it returned 0.
    if rc == 0 && unsafe { stat.assume_init() }.f_flag & libc::ST_RDONLY != 0 {
        flags | libc::MS_RDONLY
    } else {
        flags
    }
}

/// A close-on-exec, non-blocking pipe: (read end, write end). Non-blocking
/// because other children forked meanwhile may hold the write end open.
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing
    // else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::path::Path;
    use std::process::Stdio;

    use super::*;
    use crate::sys::netns::tests::ScratchNs;

    /// A file removed when the test ends, pass or fail.
    struct ScratchFile(PathBuf);

    impl ScratchFile {
        fn new(name: &str, contents: &str) -> Self {
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents).unwrap();
            ScratchFile(path)
        }
    }

    impl Drop for ScratchFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn isolation(ns: &ScratchNs, resolv_conf: Option<&Path>) -> Isolation {
        Isolation {
            netns: ns.path.clone(),
            hostname: "web.1.abc".into(),
            resolv_conf: resolv_conf.map(Path::to_path_buf),
        }
    }

    fn shell(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]).stdout(Stdio::piped());
        cmd
    }

    /// The process group of `pid`, from the field after the `(comm)` one.
    fn pgid_of(pid: u32) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(2).unwrap().parse().unwrap()
    }

    #[test]
    fn task_runs_in_its_namespaces_with_its_hostname_and_resolver() {
        let ns = ScratchNs::new();
        let resolv = ScratchFile::new(
            &format!("{}.resolv.conf", ns.name),
            "nameserver 127.0.0.11\n# shoal-marker\n",
        );
        let iso = isolation(&ns, Some(&resolv.0));
        let script = "cat /proc/sys/kernel/hostname; cat /etc/resolv.conf; \
                      readlink /proc/self/ns/net; ls /sys/class/net; \
                      ip -o link show lo; for fd in /proc/$$/fd/*; do readlink $fd; done; \
                      (echo x >> /etc/resolv.conf) 2>/dev/null || echo read-only";
        let out = spawn_isolated(&mut shell(script), &iso)
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert!(out.status.success());
        let out = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[..3],
            ["web.1.abc", "nameserver 127.0.0.11", "# shoal-marker"]
        );
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert!(lines[3].starts_with("net:["), "{out}");
        assert_ne!(lines[3], own.to_str().unwrap());
        assert_eq!(lines[4], "lo", "/sys shows the task's namespace: {out}");
        assert!(lines[5].contains("lo: <LOOPBACK,UP,LOWER_UP>"), "{out}");
        assert!(
            !lines[6..].iter().any(|l| l.starts_with("net:[")),
            "the task inherits no namespace descriptor: {out}"
        );
        assert_eq!(lines.last(), Some(&"read-only"), "{out}");

        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_ne!(host.trim(), "web.1.abc", "the host keeps its hostname");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains("/etc/resolv.conf"), "{mounts}");
    }

    #[test]
    fn long_hostnames_are_cut_and_missing_resolvers_skipped() {
        let ns = ScratchNs::new();
        let mut iso = isolation(&ns, Some(Path::new("/nonexistent/resolv.conf")));
        iso.hostname = "h".repeat(100);
        let out = spawn_isolated(&mut shell("cat /proc/sys/kernel/hostname"), &iso)
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            "h".repeat(64)
        );
    }

    #[test]
    fn task_leads_its_group_and_signal_group_reaches_it() {
        let ns = ScratchNs::new();
        let mut child =
            spawn_isolated(Command::new("sleep").arg("60"), &isolation(&ns, None)).unwrap();
        let pid = child.id();
        assert_eq!(pgid_of(pid), pid);
        signal_group(pid, libc::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        signal_group(pid, libc::SIGTERM).unwrap();
    }

    #[test]
    fn signal_group_refuses_our_group_and_everyone() {
        for pid in [0, 1, u32::MAX] {
            let err = signal_group(pid, libc::SIGTERM).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn failures_name_the_step() {
        let name = format!("shoal-test-{}-not-a-netns", std::process::id());
        let not_a_netns = ScratchFile::new(&name, "");
        let iso = Isolation {
            netns: not_a_netns.0.clone(),
            hostname: "t".into(),
            resolv_conf: None,
        };
        let err = spawn_isolated(&mut Command::new("true"), &iso).unwrap_err();
        assert_eq!(err.raw_os_error(), None);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(
            err.to_string().contains("entering the network namespace"),
            "{err}"
        );

        let iso = Isolation {
            netns: "/nonexistent/netns".into(),
            ..iso
        };
        let err = spawn_isolated(&mut Command::new("true"), &iso).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
    }
}
