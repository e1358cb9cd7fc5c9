//! netns macro-benchmarks: shoal and its peers on the same topology, in one
//! run, reported side by side as ratios (timings on a shared machine are
//! noisy; ratios measured together are not).

pub mod cpu;
pub mod iperf;
pub mod topo;

/// The count given as the first argument (rounds, seconds), `default`
/// without one; at least 1.
pub fn count_arg(what: &str, default: usize) -> anyhow::Result<usize> {
    let n = match std::env::args().nth(1) {
        None => default,
        Some(s) => s
            .parse()
            .map_err(|_| anyhow::anyhow!("{what} must be a number, not `{s}`"))?,
    };
    if n == 0 {
        anyhow::bail!("{what} must be at least 1");
    }
    Ok(n)
}
