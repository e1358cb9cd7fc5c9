//! The kernel's monotonic clock, as the eBPF programs read it
//! (`bpf_ktime_get_ns` is `CLOCK_MONOTONIC`): user space compares its
//! timestamps with theirs.

/// Milliseconds of `CLOCK_MONOTONIC`.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own;
    // CLOCK_MONOTONIC always exists on Linux, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}
