//! Overlay throughput, shoal's two engines vs the kernel's VXLAN on the same
//! two-host topology in one run: iperf3 TCP (1 and 4 streams) and
//! small-packet UDP. The lab's switch ports behave like a NIC's wire (tx
//! checksum offload off, GRO on; `netns-tests/src/lab.rs`) for all three.
//!
//! `cargo run --release -p shoal-benches --bin overlay-bench [SECONDS]`
//! (root; build `--bin shoal` in release first).

use anyhow::Result;
use shoal_benches::iperf::{Test, measure};
use shoal_benches::topo::{TASK_IPS, kernel_pair, shoal_pair};

fn main() -> Result<()> {
    let seconds: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let tests = [
        Test::Tcp { streams: 1 },
        Test::Tcp { streams: 4 },
        Test::Udp { len: 64 },
    ];
    let mut rows = Vec::new();
    for test in tests {
        let kernel = {
            let mut k = kernel_pair()?;
            k.lab.spawn(&k.tasks[1].clone(), &["iperf3", "-s"])?;
            std::thread::sleep(std::time::Duration::from_millis(300));
            measure(&k.lab, &k.tasks[0], TASK_IPS[1], test, seconds)?
        };
        let shoal = |engine: &str| -> Result<f64> {
            let mut s = shoal_pair(&["--dataplane", engine])?;
            s.lab.spawn(&s.tasks[1].clone(), &["iperf3", "-s"])?;
            std::thread::sleep(std::time::Duration::from_millis(300));
            measure(&s.lab, &s.tasks[0], TASK_IPS[1], test, seconds)
        };
        let userspace = shoal("userspace")?;
        let ebpf = shoal("ebpf")?;
        eprintln!(
            "{}: kernel {kernel:.2}, userspace {userspace:.2}, ebpf {ebpf:.2}",
            test.label()
        );
        rows.push((test.label(), kernel, userspace, ebpf));
    }
    println!(
        "| overlay, 2 hosts, {seconds} s per run | kernel VXLAN | shoal userspace | ratio | shoal ebpf | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, kernel, userspace, ebpf) in rows {
        println!(
            "| {label} | {kernel:.2} | {userspace:.2} | {:.2}x | {ebpf:.2} | {:.2}x |",
            userspace / kernel,
            ebpf / kernel
        );
    }
    Ok(())
}
