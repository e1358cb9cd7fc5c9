use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::*;
use crate::agent::executor::{Event, Executor, StopPolicy};
use crate::agent::plan::Exit;

fn runtime(root: &Path) -> Runtime {
    Runtime {
        program: DEFAULT_RUNTIME.into(),
        root: root.join("runc"),
        init: DEFAULT_INIT.into(),
    }
}

fn launch(task: &str, netns: PathBuf, dir: &Path, image_rootfs: &Path, argv: &[&str]) -> Launch {
    let task = TaskId::new(task).unwrap();
    Launch {
        task: task.clone(),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: vec!["PATH=/bin".into(), "GREETING=hi".into()],
        hostname: "web.1.abc".into(),
        netns,
        resolv_conf: None,
        log: dir.join(task.as_str()).join("log"),
        health: None,
        stop: StopPolicy {
            signal: crate::signal::SIGTERM,
            grace: Duration::from_secs(5),
        },
        container: Some(ContainerLaunch {
            image_rootfs: image_rootfs.to_path_buf(),
            dir: dir.join(task.as_str()),
            user: String::new(),
            working_dir: "/www".into(),
            runtime: runtime(dir),
        }),
    }
}

#[test]
fn the_spec_runs_the_command_under_init_in_the_tasks_namespace() {
    let dir = Path::new("/tmp/none");
    let l = launch(
        "t1",
        "/run/netns/shoal-t1".into(),
        dir,
        dir,
        &["/bin/httpd", "-f"],
    );
    let c = l.container.clone().unwrap();
    let files = BTreeMap::from([("/etc/resolv.conf", PathBuf::from("/run/shoal/resolv"))]);
    let spec = spec(&l, &c, Ids { uid: 101, gid: 102 }, 4096, &files).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["hostname"], "web.1.abc");
    assert_eq!(
        json["process"]["args"],
        serde_json::json!([
            "/.shoal-init",
            "-s",
            "-p",
            "SIGKILL",
            "--",
            "/bin/httpd",
            "-f"
        ])
    );
    assert_eq!(
        json["process"]["env"],
        serde_json::json!(["PATH=/bin", "HOSTNAME=web.1.abc", "GREETING=hi"])
    );
    assert_eq!(json["process"]["cwd"], "/www");
    assert_eq!(json["process"]["user"]["uid"], 101);
    assert_eq!(json["process"]["user"]["gid"], 102);
    assert_eq!(json["process"]["terminal"], false);
    assert_eq!(
        json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
    assert_eq!(json["process"]["rlimits"][0]["hard"], 4096);
    assert_eq!(json["root"]["path"], "rootfs");
    assert_eq!(json["linux"]["cgroupsPath"], "/shoal/shoal-t1");
    let ns = json["linux"]["namespaces"].as_array().unwrap();
    assert!(
        ns.iter()
            .any(|n| n["type"] == "network" && n["path"] == "/run/netns/shoal-t1"),
        "{ns:?}"
    );
    assert!(ns.iter().any(|n| n["type"] == "pid"));
    assert!(!json["linux"]["maskedPaths"].as_array().unwrap().is_empty());
    let mounts = json["mounts"].as_array().unwrap();
    let bound = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).cloned();
    assert_eq!(
        bound("/etc/resolv.conf").unwrap()["source"],
        "/run/shoal/resolv"
    );
    assert_eq!(bound("/.shoal-init").unwrap()["source"], DEFAULT_INIT);
    assert!(bound("/proc").is_some() && bound("/dev").is_some());
}

#[test]
fn users_resolve_through_the_images_files_as_docker_does() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.path().join("etc/group"), "root:x:0:\nwww:x:33:\n").unwrap();
    let r = |u: &str| resolve_user(root.path(), u);
    assert_eq!(r("").unwrap(), Ids { uid: 0, gid: 0 });
    assert_eq!(r("nginx").unwrap(), Ids { uid: 101, gid: 101 });
    assert_eq!(r("nginx:www").unwrap(), Ids { uid: 101, gid: 33 });
    assert_eq!(
        r("1000:1000").unwrap(),
        Ids {
            uid: 1000,
            gid: 1000
        }
    );
    assert_eq!(r("1000").unwrap(), Ids { uid: 1000, gid: 0 });
    let err = r("nobody").unwrap_err();
    assert!(err.contains("unable to find user nobody"), "{err}");
    assert!(
        r("nginx:nogroup")
            .unwrap_err()
            .contains("unable to find group")
    );

    // An image whose /etc/passwd is a link to the node's is not read.
    std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.path().join("etc/passwd")).unwrap();
    assert!(r("root").unwrap_err().contains("unable to find user root"));
}

/// A network namespace for a test, removed when dropped.
struct TestNetns(String);

impl TestNetns {
    fn new(name: &str) -> TestNetns {
        let _ = shoal_dataplane::sys::netns::remove(name);
        shoal_dataplane::sys::netns::create(name).unwrap();
        let up = Command::new("ip")
            .args(["-n", name, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
        TestNetns(name.to_owned())
    }

    fn path(&self) -> PathBuf {
        shoal_dataplane::sys::netns::path_of(&self.0)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = shoal_dataplane::sys::netns::remove(&self.0);
    }
}

/// An image root with busybox (Debian's static build) and a web page.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("image");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("www/index.html"), "hello from an image\n").unwrap();
    root
}

fn http_get(netns: &Path) -> Option<String> {
    shoal_dataplane::sys::netns::run_in(netns, || {
        let mut s = std::net::TcpStream::connect_timeout(
            &"127.0.0.1:8080".parse().unwrap(),
            Duration::from_millis(500),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .ok()
    .flatten()
}

fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>, within: Duration) -> Event {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(e) = rx.try_recv() {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no executor event within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of the container's init, from the runtime.
fn init_pid(c: &ContainerLaunch, task: &TaskId) -> Option<u32> {
    let out = Command::new(&c.runtime.program)
        .arg("--root")
        .arg(&c.runtime.root)
        .args(["state", &container_id(task)])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// A folder with a busybox image in it, and a network namespace.
fn rig(netns: &str) -> (tempfile::TempDir, PathBuf, TestNetns) {
    let dir = tempfile::tempdir().unwrap();
    let image = busybox_rootfs(dir.path());
    (dir, image, TestNetns::new(netns))
}

/// A launch of `script` under busybox's shell.
fn shell(task: &str, ns: &TestNetns, dir: &Path, image: &Path, script: &str) -> Launch {
    launch(
        task,
        ns.path(),
        dir,
        image,
        &["/bin/busybox", "sh", "-c", script],
    )
}

fn executor() -> (Executor, tokio::sync::mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (Executor::start(tx).unwrap(), rx)
}

#[test]
fn an_image_task_serves_from_its_own_layer_and_leaves_nothing_behind() {
    let (dir, image, ns) = rig("shoal-ctest-run");
    let (executor, mut rx) = executor();
    let l = shell(
        "ctr1",
        &ns,
        dir.path(),
        &image,
        "echo written > /www/mine.html; echo \"$GREETING from $(/bin/busybox hostname)\"; \
             exec /bin/busybox httpd -f -p 127.0.0.1:8080 -h /www",
    );
    let c = l.container.clone().unwrap();
    executor.run(l.clone());
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(10)),
        Event::Started(l.task.clone())
    );
    let mut answer = None;
    wait_for("the container to answer HTTP", || {
        answer = http_get(&ns.path());
        answer.is_some()
    });
    assert!(answer.unwrap().contains("hello from an image"));
    let log = std::fs::read_to_string(&l.log).unwrap();
    assert!(log.contains("hi from web.1.abc"), "{log}");
    // The write went to the task's layer, not the image.
    assert!(!image.join("www/mine.html").exists());
    assert!(c.dir.join("upper/www/mine.html").exists());

    executor.stop(l.task.clone());
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(10)),
        Event::Exited(l.task.clone(), Exit::Stopped)
    );
    assert!(!c.dir.join("bundle").exists(), "the bundle stayed");
    assert!(!c.dir.join("upper").exists());
    assert!(
        l.log.exists(),
        "the log goes with the task's record, not its container"
    );
    let list = Command::new(DEFAULT_RUNTIME)
        .arg("--root")
        .arg(&c.runtime.root)
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).trim().is_empty());
    assert!(
        !Path::new("/sys/fs/cgroup/pids/shoal/shoal-ctr1").exists()
            && !Path::new("/sys/fs/cgroup/unified/shoal/shoal-ctr1").exists(),
        "the task's cgroup stayed"
    );
    executor.shutdown(Duration::ZERO);
}

#[test]
fn a_killed_runtime_takes_its_container_with_it() {
    let (dir, image, ns) = rig("shoal-ctest-kill");
    let l = launch(
        "ctr2",
        ns.path(),
        dir.path(),
        &image,
        &[
            "/bin/busybox",
            "httpd",
            "-f",
            "-p",
            "127.0.0.1:8080",
            "-h",
            "/www",
        ],
    );
    let c = l.container.clone().unwrap();
    prepare(&l, &c).unwrap();
    let mut runc = command(&l, &c);
    runc.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = shoal_dataplane::sys::process::spawn_supervised(&mut runc).unwrap();
    wait_for("the container to answer HTTP", || {
        http_get(&ns.path()).is_some()
    });
    let init = init_pid(&c, &l.task).expect("the runtime names the container's init");
    // As `kill -9` of the daemon does to its runtime processes.
    child.kill().unwrap();
    let _ = child.wait();
    wait_for("the container's init to die", || {
        !Path::new(&format!("/proc/{init}")).exists()
    });
    assert!(
        http_get(&ns.path()).is_none(),
        "the container still answers"
    );
    cleanup(&l.task, &c);
    assert!(!mount::is_mount_point(&c.dir.join("bundle/rootfs")));
}

#[test]
fn an_image_task_is_asked_to_stop_with_its_stop_signal() {
    let (dir, image, ns) = rig("shoal-ctest-sig");
    let (executor, mut rx) = executor();
    let mut l = shell(
        "ctrsig",
        &ns,
        dir.path(),
        &image,
        "trap 'echo got QUIT; exit 0' QUIT; trap '' TERM; echo ready; \
             while :; do /bin/busybox sleep 0.1; done",
    );
    // Long enough that a SIGKILL after the grace would fail the wait.
    l.stop = StopPolicy {
        signal: crate::signal::Signal::parse("SIGQUIT").unwrap().0,
        grace: Duration::from_secs(60),
    };
    executor.run(l.clone());
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(10)),
        Event::Started(l.task.clone())
    );
    wait_for("the task to be ready", || {
        std::fs::read_to_string(&l.log).is_ok_and(|log| log.contains("ready"))
    });
    executor.stop(l.task.clone());
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(20)),
        Event::Exited(l.task.clone(), Exit::Stopped)
    );
    let log = std::fs::read_to_string(&l.log).unwrap();
    assert!(log.contains("got QUIT"), "{log}");
    executor.shutdown(Duration::ZERO);
}

const HYBRID: &str = "\
25 1 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";

#[test]
fn the_runtime_is_crun_where_it_works_and_runc_otherwise() {
    let unified = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
    let legacy = "33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    assert_eq!(CgroupLayout::of(HYBRID), CgroupLayout::Hybrid);
    assert_eq!(CgroupLayout::of(unified), CgroupLayout::Unified);
    assert_eq!(CgroupLayout::of(legacy), CgroupLayout::Legacy);
    let both = |_: &str| true;
    let only_runc = |p: &str| p == "runc";
    use RuntimeChoice::*;
    assert_eq!(
        choose_runtime(Auto, CgroupLayout::Unified, both).unwrap().0,
        "crun"
    );
    assert_eq!(
        choose_runtime(Auto, CgroupLayout::Legacy, both).unwrap().0,
        "crun"
    );
    let (program, why) = choose_runtime(Auto, CgroupLayout::Hybrid, both).unwrap();
    assert_eq!(program, "runc");
    assert!(why.contains("hybrid"), "{why}");
    let (program, why) = choose_runtime(Auto, CgroupLayout::Unified, only_runc).unwrap();
    assert_eq!((program, why.as_str()), ("runc", "crun is not installed"));
    assert_eq!(
        choose_runtime(Runc, CgroupLayout::Unified, both).unwrap().0,
        "runc"
    );
    let e = choose_runtime(Crun, CgroupLayout::Hybrid, both).unwrap_err();
    assert!(e.contains("hybrid") && e.contains("use runc"), "{e}");
    assert!(choose_runtime(Crun, CgroupLayout::Unified, only_runc).is_err());
    assert!(choose_runtime(Auto, CgroupLayout::Unified, |_: &str| false).is_err());
    assert!(installed("sh") && !installed("no-such-program-here"));
}
