//! Overlay throughput, shoal's two engines vs the kernel's VXLAN on the same
//! two-host topology in one run: iperf3 TCP (1 and 4 streams) and
//! small-packet UDP. The lab's switch ports behave like a NIC's wire (tx
//! checksum offload off, GRO on; `netns-tests/src/lab.rs`) for all three.
//!
//! `cargo run --release -p shoal-benches --bin overlay-bench [SECONDS]`
//! (root; build `--bin shoal` in release first).

use anyhow::Result;
use shoal_benches::cpu;
use shoal_benches::iperf::{Test, measure};
use shoal_benches::topo::{ShoalPair, TASK_IPS, kernel_pair, shoal_pair};

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
        // Each engine's CPU per VXLAN datagram sent, both nodes together:
        // the daemons' CPU time for userspace, the programs' run time for
        // ebpf (BPF_ENABLE_STATS while the run lasts).
        let shoal = |engine: &str| -> Result<(f64, f64)> {
            let mut s = shoal_pair(&["--dataplane", engine])?;
            s.lab.spawn(&s.tasks[1].clone(), &["iperf3", "-s"])?;
            std::thread::sleep(std::time::Duration::from_millis(300));
            let ebpf = engine == "ebpf";
            let _stats = if ebpf {
                Some(shoal_dataplane::engine::ebpf::run_time_stats()?)
            } else {
                None
            };
            let host = s.daemons[0].host.netns.clone();
            let cpu = |s: &ShoalPair| -> Result<u64> {
                if ebpf {
                    Ok(cpu::bpf_run_time(&s.lab, &host)?.0)
                } else {
                    cpu::daemons_cpu_ns(&s.daemons)
                }
            };
            let (cpu0, sent0) = (cpu(&s)?, cpu::vxlan_sent(&s.daemons)?);
            let rate = measure(&s.lab, &s.tasks[0], TASK_IPS[1], test, seconds)?;
            let (cpu1, sent1) = (cpu(&s)?, cpu::vxlan_sent(&s.daemons)?);
            let per_packet = (cpu1 - cpu0) as f64 / (sent1 - sent0).max(1) as f64;
            Ok((rate, per_packet))
        };
        let userspace = shoal("userspace")?;
        let ebpf = shoal("ebpf")?;
        eprintln!(
            "{}: kernel {kernel:.2}, userspace {:.2} ({:.0} ns/datagram), ebpf {:.2} ({:.0} ns/datagram)",
            test.label(),
            userspace.0,
            userspace.1,
            ebpf.0,
            ebpf.1
        );
        rows.push((test.label(), kernel, userspace, ebpf));
    }
    println!(
        "| overlay, 2 hosts, {seconds} s per run | kernel VXLAN | shoal userspace | ratio | shoal ebpf | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, kernel, userspace, ebpf) in &rows {
        println!(
            "| {label} | {kernel:.2} | {:.2} | {:.2}x | {:.2} | {:.2}x |",
            userspace.0,
            userspace.0 / kernel,
            ebpf.0,
            ebpf.0 / kernel
        );
    }
    println!();
    println!(
        "| CPU per VXLAN datagram, both nodes (ns) | userspace (daemons' CPU time) | ebpf (programs' run time) |"
    );
    println!("|---|---:|---:|");
    for (label, _, userspace, ebpf) in &rows {
        println!("| {label} | {:.0} | {:.0} |", userspace.1, ebpf.1);
    }
    Ok(())
}
