//! netns macro-benchmarks: shoal and its peers on the same topology, in one run.
