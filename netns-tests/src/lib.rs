//! Test hosts in network namespaces on one underlay bridge.
