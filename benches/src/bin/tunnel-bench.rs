//! Encrypted overlay networks against plain ones and the kernel's VXLAN,
//! on the same two-host topology in one run: iperf3 TCP (1 and 4 streams)
//! and small-packet UDP. Encrypted networks ride WireGuard (boringtun) in
//! the userspace engine; Swarm's IPsec overlay is the comparison users
//! remember (moby/moby#33133: about 0.01x of plain).
//!
//! `cargo run --release -p shoal-benches --bin tunnel-bench [SECONDS]`
//! (root; build `--bin shoal` in release first).

use anyhow::Result;
use shoal_benches::iperf::{Test, measure};
use shoal_benches::topo::{TASK_IPS, kernel_pair, shoal_pair_with};

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
        let shoal = |encrypted: bool| -> Result<f64> {
            let mut s = shoal_pair_with(&["--dataplane", "userspace"], encrypted)?;
            s.lab.spawn(&s.tasks[1].clone(), &["iperf3", "-s"])?;
            std::thread::sleep(std::time::Duration::from_millis(300));
            measure(&s.lab, &s.tasks[0], TASK_IPS[1], test, seconds)
        };
        let plain = shoal(false)?;
        let encrypted = shoal(true)?;
        eprintln!(
            "{}: kernel {kernel:.2}, plain {plain:.2}, encrypted {encrypted:.2}",
            test.label()
        );
        rows.push((test.label(), kernel, plain, encrypted));
    }
    println!(
        "| overlay, 2 hosts, {seconds} s per run | kernel VXLAN | shoal plain | shoal encrypted | encrypted / plain | encrypted / kernel |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, kernel, plain, encrypted) in &rows {
        println!(
            "| {label} | {kernel:.2} | {plain:.2} | {encrypted:.2} | {:.2}x | {:.2}x |",
            encrypted / plain,
            encrypted / kernel
        );
    }
    Ok(())
}
