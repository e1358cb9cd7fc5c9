//! Traffic counters of the packet path that scale with the workers: a
//! [`Cell`] holds one shard of counters per worker slot, each on a cache
//! line of its own, so the threads moving packets never write the same
//! line. A packet adds to its thread's shard with relaxed atomics; a scrape
//! sums the shards (as eBPF per-CPU maps are read).
//!
//! [`Volume`] says what a frame carried on the wire, TSO super-frames
//! included.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::lb::conntrack::Direction;
use crate::overlay::gso;
use crate::wire::virtio_net;

const ETH: usize = 14;

/// What one frame carried on the wire: IP packets and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Volume {
    pub packets: u64,
    pub bytes: u64,
}

impl Volume {
    /// One Ethernet frame: one packet, its IP bytes.
    pub fn of_frame(frame: &[u8]) -> Volume {
        Volume {
            packets: 1,
            bytes: frame.len().saturating_sub(ETH) as u64,
        }
    }

    /// A frame behind a virtio-net header: a TSO/USO super-frame counts as
    /// the MSS-sized packets it is cut into, each with its own headers.
    pub fn of_offloaded(hdr: &virtio_net::Repr, frame: &[u8]) -> Volume {
        let mss = usize::from(hdr.gso_size);
        if !gso::is_gso(hdr) || mss == 0 {
            return Volume::of_frame(frame);
        }
        let Some(headers) = headers_len(frame) else {
            return Volume::of_frame(frame);
        };
        let payload = frame.len().saturating_sub(headers);
        let packets = payload.div_ceil(mss).max(1);
        let ip_headers = headers - ETH;
        Volume {
            packets: packets as u64,
            bytes: (frame.len() - ETH + (packets - 1) * ip_headers) as u64,
        }
    }
}

/// Ethernet, IPv4 and TCP/UDP header bytes of `frame`, if they are there.
fn headers_len(frame: &[u8]) -> Option<usize> {
    let ip = frame.get(ETH..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let l4 = match ip.get(9)? {
        6 => usize::from(ip.get(ihl + 12)? >> 4) * 4,
        17 => 8,
        _ => return None,
    };
    let headers = ETH + ihl + l4;
    (ihl >= 20 && l4 >= 8 && headers <= frame.len()).then_some(headers)
}

/// One worker slot's counters; aligned so that no two slots share a cache
/// line.
#[repr(align(64))]
#[derive(Default)]
struct Shard {
    connections: AtomicU64,
    packets: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
}

/// Counters of one thing the packet path sees (a service port and backend):
/// connections opened, and packets and bytes each way.
pub struct Cell {
    shards: Box<[Shard]>,
}

/// A [`Cell`]'s counts, summed over its shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub connections: u64,
    /// Indexed by [`direction_index`].
    pub packets: [u64; 2],
    /// Indexed by [`direction_index`].
    pub bytes: [u64; 2],
}

impl Default for Cell {
    fn default() -> Cell {
        Cell {
            shards: (0..shard_count()).map(|_| Shard::default()).collect(),
        }
    }
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cell").field(&self.totals()).finish()
    }
}

impl Cell {
    fn shard(&self) -> &Shard {
        // `shards.len()` is a power of two.
        &self.shards[worker_slot() & (self.shards.len() - 1)]
    }

    /// A connection (flow) was opened to the backend.
    pub fn connection(&self) {
        self.shard().connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame went `dir` on one of the backend's connections.
    pub fn traffic(&self, dir: Direction, v: Volume) {
        let shard = self.shard();
        let d = direction_index(dir);
        shard.packets[d].fetch_add(v.packets, Ordering::Relaxed);
        shard.bytes[d].fetch_add(v.bytes, Ordering::Relaxed);
    }

    /// The sums over every shard.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            t.connections += s.connections.load(Ordering::Relaxed);
            for d in 0..2 {
                t.packets[d] += s.packets[d].load(Ordering::Relaxed);
                t.bytes[d] += s.bytes[d].load(Ordering::Relaxed);
            }
        }
        t
    }
}

/// A counter that every packet-moving thread bumps: one cache line per
/// worker slot, summed when read. The engine's counters (`engine::counters`)
/// are these, so no two workers write one line per packet. Clones share the
/// count (as a prometheus-client `Counter`'s do), and it encodes as an
/// OpenMetrics counter.
#[derive(Clone)]
pub struct ShardedCounter {
    slots: std::sync::Arc<[Slot]>,
}

#[repr(align(64))]
#[derive(Default)]
struct Slot(AtomicU64);

impl Default for ShardedCounter {
    fn default() -> Self {
        ShardedCounter {
            slots: (0..shard_count()).map(|_| Slot::default()).collect(),
        }
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardedCounter({})", self.get())
    }
}

impl ShardedCounter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        let slot = &self.slots[worker_slot() & (self.slots.len() - 1)];
        slot.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over all slots.
    pub fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl prometheus_client::metrics::TypedMetric for ShardedCounter {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Counter;
}

impl prometheus_client::encoding::EncodeMetric for ShardedCounter {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}

/// Where a direction's counts sit in [`Totals`].
pub fn direction_index(dir: Direction) -> usize {
    match dir {
        Direction::Original => 0,
        Direction::Reply => 1,
    }
}

/// Shards per cell: the machine's parallelism rounded up to a power of two
/// (at most 64), so threads running at once rarely share one.
fn shard_count() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .min(64)
    })
}

/// The calling thread's slot: threads are numbered as they first count.
fn worker_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; ETH + 20 + 20 + payload];
        f[12] = 0x08;
        f[ETH] = 0x45;
        f[ETH + 9] = 6;
        f[ETH + 20 + 12] = 5 << 4;
        f
    }

    #[test]
    fn a_sharded_counter_sums_every_threads_counts_and_clones_share_them() {
        let c = ShardedCounter::default();
        let handle = c.clone();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        handle.inc();
                    }
                });
            }
        });
        c.inc_by(5);
        assert_eq!(c.get(), 4005);
        assert_eq!(handle.get(), 4005);
    }

    #[test]
    fn a_plain_frame_is_one_packet_of_its_ip_bytes() {
        let f = tcp_frame(100);
        assert_eq!(
            Volume::of_frame(&f),
            Volume {
                packets: 1,
                bytes: 140
            }
        );
        assert_eq!(Volume::of_offloaded(&virtio_net::Repr::NONE, &f).bytes, 140);
    }

    #[test]
    fn a_tso_super_frame_counts_as_the_packets_it_becomes() {
        let f = tcp_frame(3000);
        let hdr = virtio_net::Repr {
            gso_type: virtio_net::GSO_TCPV4,
            gso_size: 1400,
            ..virtio_net::Repr::NONE
        };
        // 1400 + 1400 + 200 bytes of payload, 40 bytes of headers each.
        assert_eq!(
            Volume::of_offloaded(&hdr, &f),
            Volume {
                packets: 3,
                bytes: 3000 + 3 * 40
            }
        );
        // Headers that do not parse: counted as the frame it is.
        let short = vec![0u8; 20];
        assert_eq!(Volume::of_offloaded(&hdr, &short).packets, 1);
    }

    #[test]
    fn threads_count_into_their_shards_and_totals_sum_them() {
        let cell = std::sync::Arc::new(Cell::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        cell.connection();
                        cell.traffic(
                            Direction::Original,
                            Volume {
                                packets: 2,
                                bytes: 100,
                            },
                        );
                        cell.traffic(
                            Direction::Reply,
                            Volume {
                                packets: 1,
                                bytes: 10,
                            },
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("counting thread");
        }
        assert_eq!(
            cell.totals(),
            Totals {
                connections: 4000,
                packets: [8000, 4000],
                bytes: [400_000, 40_000],
            }
        );
    }
}
