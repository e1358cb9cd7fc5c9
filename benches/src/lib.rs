//! netns macro-benchmarks: shoal and its peers on the same topology, in one
//! run, reported side by side as ratios (timings on a shared machine are
//! noisy; ratios measured together are not).

pub mod iperf;
pub mod topo;
