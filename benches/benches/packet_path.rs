//! Per-packet costs of the VTEP core: parse + decap, forwarding decision +
//! encap, TSO segmentation, checksum.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shoal_dataplane::overlay::fdb::Fdb;
use shoal_dataplane::overlay::{gso, vtep};
use shoal_dataplane::tables::Tables;
use shoal_dataplane::wire::{checksum, flow, virtio_net, vxlan};

/// The node of 10.10.0.12, and an underlay address no node has.
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 66);

fn tables() -> Tables {
    Tables::from_yaml_str(
        "node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: bench, vni: 4097, subnet: 10.10.0.0/24 }
endpoints:
  - { network: bench, ip: 10.10.0.11, node: 198.18.0.1, netns: t1 }
  - { network: bench, ip: 10.10.0.12, node: 198.18.0.2 }
",
    )
    .expect("tables")
}

/// An Ethernet/IPv4/TCP frame from 10.10.0.11 to 10.10.0.12 with `payload` bytes.
fn tcp_frame(payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[..6].copy_from_slice(&[2, 0x42, 10, 10, 0, 12]);
    f[6..12].copy_from_slice(&[2, 0x42, 10, 10, 0, 11]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + payload) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 10, 0, 11]);
    ip[16..20].copy_from_slice(&[10, 10, 0, 12]);
    let tcp = &mut f[34..54];
    tcp[..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10;
    f
}

fn bench(c: &mut Criterion) {
    let tables = tables();
    let fdb = Fdb::build(&tables, 1500, |_, ip| {
        (ip == Ipv4Addr::new(10, 10, 0, 11)).then_some(0)
    });
    let segment = fdb.segment(0);
    let mut out = Vec::with_capacity(128 * 1024);

    let frame = tcp_frame(1396);
    let mut datagram = vec![0u8; vxlan::HEADER_LEN];
    vtep::encap_header(4097, &mut datagram);
    datagram.extend_from_slice(&tcp_frame(1396));

    let mut g = c.benchmark_group("per packet (1464-byte frame)");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decap: parse VXLAN + forwarding decision", |b| {
        b.iter(|| vtep::from_underlay(&fdb, PEER, black_box(&datagram), &mut out))
    });
    g.bench_function(
        "decap: a datagram from no node in the tables, dropped",
        |b| b.iter(|| vtep::from_underlay(&fdb, STRANGER, black_box(&datagram), &mut out)),
    );
    g.bench_function("encap: forwarding decision + VXLAN header + copy", |b| {
        b.iter(|| {
            let verdict = vtep::from_port(segment, black_box(&frame), false, &mut out);
            out.clear();
            out.resize(vxlan::HEADER_LEN, 0);
            vtep::encap_header(segment.vni, &mut out);
            out.extend_from_slice(&frame);
            let hash = flow::parse_ipv4(&frame).map(|f| f.hash());
            (verdict, hash)
        })
    });
    g.bench_function("checksum of 1400 bytes", |b| {
        b.iter(|| checksum::sum(black_box(&frame[64..])))
    });
    g.finish();

    let tso = tcp_frame(64_000 - 54);
    let hdr = virtio_net::Repr {
        flags: virtio_net::F_NEEDS_CSUM,
        gso_type: virtio_net::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1398,
        csum_start: 34,
        csum_offset: 16,
    };
    let segments = (64_000 - 54usize).div_ceil(1398) as u64;
    let mut g = c.benchmark_group("TSO super-frame of 64 kB");
    g.throughput(Throughput::Elements(segments));
    g.bench_function(
        "segment into MTU frames with VXLAN headers (per segment)",
        |b| {
            let prefix = [0x08, 0, 0, 0, 0, 0x10, 0x01, 0];
            b.iter(|| gso::segment(&hdr, black_box(&tso), &prefix, &mut out).map(|s| s.count))
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
