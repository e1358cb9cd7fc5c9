//! Running iperf3 between two namespaces and reading its JSON report.

use anyhow::{Context, Result, bail};
use shoal_netns_tests::Lab;

/// One iperf3 measurement.
#[derive(Debug, Clone, Copy)]
pub enum Test {
    /// TCP bulk transfer with this many parallel streams.
    Tcp { streams: u32 },
    /// UDP at full speed with payloads of this many bytes.
    Udp { len: u32 },
}

impl Test {
    pub fn label(&self) -> String {
        match self {
            Test::Tcp { streams: 1 } => "TCP, 1 stream (Gbit/s)".into(),
            Test::Tcp { streams } => format!("TCP, {streams} streams (Gbit/s)"),
            Test::Udp { len } => format!("UDP {len}-byte payloads (kpps received)"),
        }
    }
}

/// Runs `test` for `seconds` from `client_ns` to an iperf3 server at
/// `server_ip:5201` (already running) and returns Gbit/s (TCP) or thousands
/// of packets per second received (UDP).
pub fn measure(
    lab: &Lab,
    client_ns: &str,
    server_ip: &str,
    test: Test,
    seconds: u32,
) -> Result<f64> {
    let secs = seconds.to_string();
    let mut args = vec!["iperf3", "-c", server_ip, "-J", "-t", &secs, "--omit", "1"];
    let (streams, len);
    match test {
        Test::Tcp { streams: n } => {
            streams = n.to_string();
            args.extend(["-P", &streams]);
        }
        Test::Udp { len: l } => {
            len = l.to_string();
            args.extend(["-u", "-b", "0", "-l", &len]);
        }
    }
    let out = lab.run(client_ns, &args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&text).context("iperf3 JSON")?;
    if let Some(err) = json.get("error") {
        bail!("iperf3: {err}");
    }
    let end = &json["end"];
    match test {
        Test::Tcp { .. } => {
            let bps = end["sum_received"]["bits_per_second"]
                .as_f64()
                .context("bits_per_second")?;
            Ok(bps / 1e9)
        }
        Test::Udp { .. } => {
            let sum = &end["sum"];
            let packets = sum["packets"].as_f64().context("packets")?;
            let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
            let secs = sum["seconds"].as_f64().context("seconds")?;
            Ok((packets - lost) / secs / 1e3)
        }
    }
}
