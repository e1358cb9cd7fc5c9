//! Data-plane counters, shared by the engine's threads and rendered in the
//! OpenMetrics text format for `/metrics`. Each is a [`ShardedCounter`]:
//! workers add to a slot of their own, a scrape sums the slots.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::stats::ShardedCounter as Counter;
use crate::overlay::vtep::DropReason;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// Counters of one engine. Increments are relaxed atomic adds to the
/// calling thread's slot.
#[derive(Debug)]
pub struct Counters {
    registry: Registry,
    pub vxlan_rx_packets: Counter,
    pub vxlan_rx_bytes: Counter,
    pub vxlan_tx_packets: Counter,
    pub vxlan_tx_bytes: Counter,
    pub task_rx_frames: Counter,
    pub task_tx_frames: Counter,
    pub arp_replies: Counter,
    pub icmp_errors: Counter,
    drops: Vec<Counter>,
}

impl Counters {
    pub fn new(engine: &'static str) -> Counters {
        let mut registry = Registry::with_prefix("shoal_dataplane");
        let packets = Family::<DirectionLabel, Counter>::default();
        let bytes = Family::<DirectionLabel, Counter>::default();
        let frames = Family::<DirectionLabel, Counter>::default();
        let drops = Family::<ReasonLabel, Counter>::default();
        let arp_replies = Counter::default();
        let icmp_errors = Counter::default();
        registry.register(
            "vxlan_packets",
            "VXLAN datagrams on the underlay, by direction",
            packets.clone(),
        );
        registry.register(
            "vxlan_bytes",
            "VXLAN payload bytes on the underlay, by direction",
            bytes.clone(),
        );
        registry.register(
            "task_frames",
            "Frames read from (rx) and written to (tx) task interfaces",
            frames.clone(),
        );
        registry.register(
            "arp_replies",
            "ARP requests answered from the tables",
            arp_replies.clone(),
        );
        registry.register(
            "icmp_errors",
            "ICMP errors originated by the VTEP (fragmentation needed)",
            icmp_errors.clone(),
        );
        registry.register("drops", "Frames dropped, by reason", drops.clone());
        let engine_info = prometheus_client::metrics::info::Info::new(vec![("engine", engine)]);
        registry.register("engine", "The data-plane engine in use", engine_info);
        // Each handle is taken in a statement of its own: the family's lock
        // guard lives until the end of the statement.
        let get = |family: &Family<DirectionLabel, Counter>, direction| -> Counter {
            let guard = family.get_or_create(&DirectionLabel { direction });
            guard.clone()
        };
        let drops = DropReason::ALL
            .iter()
            .map(|r| -> Counter {
                let guard = drops.get_or_create(&ReasonLabel { reason: r.name() });
                guard.clone()
            })
            .collect();
        Counters {
            vxlan_rx_packets: get(&packets, "rx"),
            vxlan_tx_packets: get(&packets, "tx"),
            vxlan_rx_bytes: get(&bytes, "rx"),
            vxlan_tx_bytes: get(&bytes, "tx"),
            task_rx_frames: get(&frames, "rx"),
            task_tx_frames: get(&frames, "tx"),
            arp_replies,
            icmp_errors,
            drops,
            registry,
        }
    }

    pub fn drop(&self, reason: DropReason) {
        self.drops[reason.index()].inc();
    }

    pub fn drops_inc_by(&self, reason: DropReason, n: u64) {
        self.drops[reason.index()].inc_by(n);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].get()
    }

    /// Appends all counters in the OpenMetrics text format, without the
    /// closing `# EOF`, so that other families can follow.
    pub fn encode(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }
}
