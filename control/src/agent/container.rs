//! Image tasks: each runs from an OCI bundle made for it, through an OCI
//! runtime (runc) that the executor supervises like any task process.
//!
//! The bundle, under the task's directory, is `config.json` and `rootfs/`:
//! an overlay of the task's own writable layer (`upper/`) over the image's
//! shared root filesystem. The container joins the network namespace the
//! agent wired for the task, gets the task's name as hostname, shoal's
//! resolver as `/etc/resolv.conf`, docker's default capabilities and
//! masked paths, and runs under `tini -s -p SIGKILL` as its init: when the
//! runtime process dies (the daemon killed with -9), its init dies and the
//! kernel ends the whole container, so tasks still die with the daemon.
//!
//! [`spec`] is pure; [`prepare`], [`command`] and [`cleanup`] do the I/O.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    UserBuilder,
};
use shoal_dataplane::sys::mount;

use super::executor::Launch;
use crate::ids::TaskId;

/// Where the container's init is bind-mounted.
const INIT_PATH: &str = "/.shoal-init";
/// The init, from Debian's `tini` package: static, so it runs in any image.
pub const DEFAULT_INIT: &str = "/usr/bin/tini-static";
/// The runtime when none is chosen (and the one the tests use).
pub const DEFAULT_RUNTIME: &str = "runc";
/// The parent of every task's cgroup. It stays when the tasks go: other
/// daemons on the machine (a sandbox, the tests) may be creating theirs
/// under it at that moment, and removing it would make their runtime fail.
const CGROUP_PARENT: &str = "shoal";

/// Docker's default capability set.
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The runtime and the init image tasks run with.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The runtime's binary (`runc`).
    pub program: PathBuf,
    /// Its state folder (`--root`), private to this daemon.
    pub root: PathBuf,
    /// The static init bind-mounted into every container.
    pub init: PathBuf,
}

impl Runtime {
    /// The runtime on this daemon's state folder, with a minimal
    /// environment and no input.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--root")
            .arg(&self.root)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .current_dir("/")
            .stdin(Stdio::null());
        cmd
    }
}

/// `shoal daemon --runtime`: which OCI runtime runs image tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeChoice {
    /// crun where it works (it starts containers faster and smaller),
    /// else runc.
    #[default]
    Auto,
    /// runc.
    Runc,
    /// crun.
    Crun,
}

/// How the host's cgroups are mounted, as PID 1 sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v2 alone at `/sys/fs/cgroup`.
    Unified,
    /// v1 hierarchies plus a v2 one (`/sys/fs/cgroup/unified`).
    Hybrid,
    /// v1 alone.
    Legacy,
}

impl CgroupLayout {
    /// Reads a `/proc/PID/mountinfo`.
    pub fn of(mountinfo: &str) -> CgroupLayout {
        let mut v2_below = false;
        for line in mountinfo.lines() {
            let Some((fields, rest)) = line.split_once(" - ") else {
                continue;
            };
            let (Some(point), Some(fstype)) = (fields.split(' ').nth(4), rest.split(' ').next())
            else {
                continue;
            };
            if point == "/sys/fs/cgroup" && fstype == "cgroup2" {
                return CgroupLayout::Unified;
            }
            v2_below |= fstype == "cgroup2" && point.starts_with("/sys/fs/cgroup/");
        }
        if v2_below {
            CgroupLayout::Hybrid
        } else {
            CgroupLayout::Legacy
        }
    }
}

/// The runtime `choice` gives on a host with cgroups `layout`, where
/// `installed` says which programs are on the `PATH`, and why; an error
/// when the runtime asked for cannot run here.
pub fn choose_runtime(
    choice: RuntimeChoice,
    layout: CgroupLayout,
    installed: impl Fn(&str) -> bool,
) -> Result<(&'static str, String), String> {
    let crun = if !installed("crun") {
        Err("crun is not installed".to_owned())
    } else if layout == CgroupLayout::Hybrid {
        // crun 1.8: "cgroups in hybrid mode not supported".
        Err(
            "crun does not run containers on hosts with hybrid cgroups (v1 plus a v2 \
             hierarchy), and this host has them"
                .to_owned(),
        )
    } else {
        Ok(())
    };
    match (choice, crun) {
        (RuntimeChoice::Crun, Ok(())) => Ok(("crun", "asked for".into())),
        (RuntimeChoice::Crun, Err(why)) => Err(format!("--runtime crun: {why}; use runc")),
        (RuntimeChoice::Auto, Ok(())) => Ok((
            "crun",
            format!("crun is installed and works with {layout:?} cgroups"),
        )),
        (choice, crun) => {
            if !installed("runc") {
                return Err("runc is not installed (scripts/setup.sh installs it)".into());
            }
            let why = match crun {
                Err(why) if choice == RuntimeChoice::Auto => why,
                _ => "asked for".into(),
            };
            Ok(("runc", why))
        }
    }
}

/// Whether `program` is an executable file in a folder of the `PATH`.
pub fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// What an image task runs beyond a process task's [`Launch`].
#[derive(Debug, Clone)]
pub struct ContainerLaunch {
    /// The image's shared root filesystem (never written).
    pub image_rootfs: PathBuf,
    /// The task's folder: the bundle and its writable layer go there.
    pub dir: PathBuf,
    /// `user[:group]` or `uid[:gid]`; empty for root.
    pub user: String,
    /// The working directory; empty for `/`.
    pub working_dir: String,
    /// The runtime.
    pub runtime: Runtime,
}

impl ContainerLaunch {
    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
}

/// Writes a file every user of the container may read (0644, whatever
/// the daemon's umask), as docker's `/etc/hosts`.
fn write_readable(path: &Path, text: &str) -> io::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
}

/// The runtime's name for a task's container.
pub fn container_id(task: &TaskId) -> String {
    format!("shoal-{task}")
}

/// A process's identity inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The `config.json` of a task's container. `argv` and `env` are final
/// (the image's merged with the service's); `netns` is the namespace the
/// agent wired; `files` are the host files bind-mounted read-only over the
/// container's (`/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`).
pub fn spec(
    launch: &Launch,
    c: &ContainerLaunch,
    ids: Ids,
    nofile: u64,
    files: &BTreeMap<&str, PathBuf>,
) -> Result<Spec, oci_spec::OciSpecError> {
    let mut args = vec![
        INIT_PATH.to_owned(),
        "-s".into(),
        "-p".into(),
        "SIGKILL".into(),
        "--".into(),
    ];
    args.extend(launch.argv.iter().cloned());
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPS.into_iter().collect();
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env(launch))
        .cwd(if c.working_dir.is_empty() {
            "/".into()
        } else {
            c.working_dir.clone()
        })
        .user(UserBuilder::default().uid(ids.uid).gid(ids.gid).build()?)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(nofile)
                .hard(nofile)
                .build()?,
        ])
        .no_new_privileges(false)
        .build()?;
    let mut mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts();
    let bind = |source: &Path, destination: &str| {
        MountBuilder::default()
            .destination(destination)
            .typ("bind")
            .source(source)
            .options(vec![
                "rbind".into(),
                "ro".into(),
                "nosuid".into(),
                "nodev".into(),
            ])
            .build()
    };
    mounts.push(bind(&c.runtime.init, INIT_PATH)?);
    for (destination, source) in files {
        mounts.push(bind(source, destination)?);
    }
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .chain(std::iter::once(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(launch.netns.clone())
            .build(),
    ))
    .collect::<Result<Vec<_>, _>>()?;
    let defaults = oci_spec::runtime::Linux::default();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(format!(
            "/{CGROUP_PARENT}/{}",
            container_id(&launch.task)
        )))
        .masked_paths(defaults.masked_paths().clone().unwrap_or_default())
        .readonly_paths(defaults.readonly_paths().clone().unwrap_or_default())
        .build()?;
    let mut spec = Spec::default();
    spec.set_hostname(Some(launch.hostname.chars().take(64).collect()))
        .set_process(Some(process))
        .set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()?,
        ))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux));
    Ok(spec)
}

/// The task's environment: `PATH` unless the image or service sets one,
/// `HOSTNAME`, then the rest in order (later entries win).
fn env(launch: &Launch) -> Vec<String> {
    let mut vars: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOSTNAME".into(), launch.hostname.clone()),
    ];
    for kv in &launch.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        match vars.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => vars.push((k.to_owned(), v.to_owned())),
        }
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Resolves `user[:group]` against the image's `/etc/passwd` and
/// `/etc/group` (numbers need no lookup), as docker does.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<Ids, String> {
    if user.is_empty() {
        return Ok(Ids { uid: 0, gid: 0 });
    }
    let (name, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_etc(rootfs, "passwd");
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == name || f[2] == name));
    let uid = match (name.parse::<u32>(), &entry) {
        (Ok(n), _) => n,
        (Err(_), Some(f)) => f[2]
            .parse()
            .map_err(|_| format!("user {name}: bad uid in /etc/passwd"))?,
        (Err(_), None) => {
            return Err(format!(
                "unable to find user {name}: no matching entries in passwd file"
            ));
        }
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read_etc(rootfs, "group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    Ok(Ids { uid, gid })
}

/// A file of the image's `/etc`, read only if it is a regular file (a
/// symbolic link in an image must not make the daemon read the node's).
fn read_etc(rootfs: &Path, name: &str) -> String {
    let path = rootfs.join("etc").join(name);
    let etc_ok = std::fs::symlink_metadata(rootfs.join("etc")).is_ok_and(|m| m.is_dir());
    match std::fs::symlink_metadata(&path) {
        Ok(m) if etc_ok && m.is_file() => std::fs::read_to_string(&path).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Makes the task's bundle: its writable layer mounted over the image's
/// root, its `/etc` files, `config.json`.
pub fn prepare(launch: &Launch, c: &ContainerLaunch) -> io::Result<PathBuf> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let bundle = c.bundle();
    let rootfs = bundle.join("rootfs");
    let (upper, work) = (c.dir.join("upper"), c.dir.join("work"));
    // A bundle left by an earlier attempt of the same task goes first.
    cleanup_files(c);
    for d in [&rootfs, &upper, &work] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)?;
    }
    // The container's root is its own: readable by its users.
    std::fs::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    mount::overlay(&c.image_rootfs, &upper, &work, &rootfs)?;
    let ids = resolve_user(&c.image_rootfs, &c.user).map_err(invalid)?;
    let etc = c.dir.join("etc");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&etc)?;
    let hostname = etc.join("hostname");
    write_readable(&hostname, &format!("{}\n", launch.hostname))?;
    let hosts = etc.join("hosts");
    write_readable(
        &hosts,
        &format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
            launch.hostname
        ),
    )?;
    let mut files = BTreeMap::from([("/etc/hostname", hostname), ("/etc/hosts", hosts)]);
    if let Some(resolv) = launch.resolv_conf.as_ref().filter(|p| p.exists()) {
        files.insert("/etc/resolv.conf", resolv.clone());
    }
    let nofile = nofile_hard_limit().min(1 << 20);
    let spec = spec(launch, c, ids, nofile, &files).map_err(|e| invalid(e.to_string()))?;
    spec.save(bundle.join("config.json"))
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bundle)
}

/// `runc run` of the task's container, in the foreground: its exit status
/// is the container's, and signals sent to it reach the container.
pub fn command(launch: &Launch, c: &ContainerLaunch) -> Command {
    let mut cmd = c.runtime.command();
    cmd.arg("run")
        .arg("--bundle")
        .arg(c.bundle())
        .arg(container_id(&launch.task));
    cmd
}

/// `argv` run inside the task's running container (a health check).
pub fn exec_command(task: &TaskId, c: &ContainerLaunch, argv: &[String]) -> Command {
    let mut cmd = c.runtime.command();
    cmd.arg("exec").arg(container_id(task)).args(argv);
    cmd
}

/// Removes what a task's container leaves: the runtime's record of it
/// (after a killed runtime), its cgroup, its root mount and writable
/// layer. The log stays.
pub fn cleanup(task: &TaskId, c: &ContainerLaunch) {
    let id = container_id(task);
    let _ = c
        .runtime
        .command()
        .args(["delete", "--force", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    cleanup_files(c);
}

/// Removes what a previous run's image tasks left under `dir` (the
/// runtime died with that daemon, its containers with their init): the
/// runtime's records, root mounts, writable layers, cgroups.
pub fn sweep(dir: &Path, runtime: &Runtime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(task) = entry.file_name().to_str().and_then(|s| TaskId::new(s).ok()) else {
            continue;
        };
        if !entry.path().join("bundle").exists() && !entry.path().join("upper").exists() {
            continue;
        }
        tracing::info!("removing the container of task {task}, left by a previous run");
        let c = ContainerLaunch {
            image_rootfs: PathBuf::new(),
            dir: entry.path(),
            user: String::new(),
            working_dir: String::new(),
            runtime: runtime.clone(),
        };
        cleanup(&task, &c);
    }
}

fn cleanup_files(c: &ContainerLaunch) {
    let rootfs = c.bundle().join("rootfs");
    if let Err(e) = mount::unmount(&rootfs) {
        tracing::warn!("{e}");
    }
    for d in [
        c.bundle(),
        c.dir.join("upper"),
        c.dir.join("work"),
        c.dir.join("etc"),
    ] {
        if mount::is_mount_point(&d.join("rootfs")) {
            continue;
        }
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", d.display()),
        }
    }
}

/// This process's hard limit on open files.
fn nofile_hard_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(1024)
}

#[cfg(test)]
mod tests;
