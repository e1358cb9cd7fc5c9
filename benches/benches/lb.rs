//! Costs of the load-balancing core: Maglev table builds (per tables
//! change), per-packet backend choice (flow hash + table index), conntrack
//! hits and inserts at 100k flows, and how much of the table a backend
//! removal moves (printed; ideal 1/N).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use shoal_dataplane::lb::conntrack::Conntrack;
use shoal_dataplane::lb::hash::flow_hash;
use shoal_dataplane::lb::maglev::{DEFAULT_TABLE_SIZE, Maglev, MaglevBackend};
use shoal_dataplane::tables::Protocol;
use shoal_dataplane::wire::flow::{FlowKey, TcpFlags};

fn backends(n: u32) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| MaglevBackend::new(Ipv4Addr::from(0x0a0a_0000 + i + 2).octets(), 1))
        .collect()
}

fn flow(n: u32) -> FlowKey {
    FlowKey {
        proto: Protocol::Tcp,
        src: SocketAddrV4::new(
            Ipv4Addr::from(0x0a00_0000 + (n >> 8)),
            1024 + (n & 0xff) as u16,
        ),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 100), 80),
    }
}

/// Share of slots whose backend changes when `backends[removed]` goes, and
/// the share of that beyond the removed backend's own slots.
fn disruption(n: u32) -> (f64, f64) {
    let before_b = backends(n);
    let removed = (n / 2) as usize;
    let mut after_b = before_b.clone();
    after_b.remove(removed);
    let before = Maglev::new(&before_b, DEFAULT_TABLE_SIZE).expect("table");
    let after = Maglev::new(&after_b, DEFAULT_TABLE_SIZE).expect("table");
    let (mut moved, mut extra) = (0u32, 0u32);
    for (&old, &new) in before.table().iter().zip(after.table()) {
        let (old, new) = (&before_b[old as usize].name, &after_b[new as usize].name);
        if old != new {
            moved += 1;
            if *old != before_b[removed].name {
                extra += 1;
            }
        }
    }
    let m = f64::from(DEFAULT_TABLE_SIZE);
    (f64::from(moved) / m, f64::from(extra) / m)
}

fn maglev(c: &mut Criterion) {
    for n in [10, 100, 1000] {
        let b = backends(n);
        c.bench_function(&format!("maglev_build/{n}_backends/M=65537"), |bench| {
            bench.iter(|| Maglev::new(black_box(&b), DEFAULT_TABLE_SIZE).expect("table"))
        });
    }
    for n in [10, 100] {
        let (moved, extra) = disruption(n);
        println!(
            "maglev_disruption/{n}_backends: removing 1 moves {:.2}% of slots (ideal {:.2}%), \
             {:.2}% between surviving backends",
            moved * 100.0,
            100.0 / f64::from(n),
            extra * 100.0
        );
    }

    let table = Maglev::new(&backends(100), DEFAULT_TABLE_SIZE).expect("table");
    let src = Ipv4Addr::new(10, 0, 0, 1);
    let vip = Ipv4Addr::new(10, 10, 0, 100);
    let mut port = 0u16;
    c.bench_function("maglev_lookup/flow_hash+index", |bench| {
        bench.iter(|| {
            port = port.wrapping_add(1);
            let h = flow_hash(0x5eed, black_box(src), vip, 6, black_box(port), 80);
            table.lookup(h)
        })
    });
}

fn conntrack(c: &mut Criterion) {
    const FLOWS: u32 = 100_000;
    let backend = Ipv4Addr::new(10, 10, 0, 2);
    let mut ct = Conntrack::new(FLOWS as usize).expect("capacity");
    for n in 0..FLOWS {
        ct.insert(flow(n), backend, TcpFlags::ACK, 0);
    }
    let mut n = 0;
    c.bench_function("conntrack/hit/100k", |bench| {
        bench.iter(|| {
            n = (n + 7919) % FLOWS;
            ct.lookup(black_box(&flow(n)), 1).map(|e| e.backend)
        })
    });
    // A full table: every insert of a new flow also evicts one.
    let mut next = FLOWS;
    c.bench_function("conntrack/miss+insert/100k_full", |bench| {
        bench.iter(|| {
            next = next.wrapping_add(1);
            let k = flow(next);
            if ct.lookup(&k, 2).is_none() {
                ct.insert(k, backend, TcpFlags::SYN, 2);
            }
        })
    });
    c.bench_function("conntrack/build/100k", |bench| {
        bench.iter_batched(
            || Conntrack::new(FLOWS as usize).expect("capacity"),
            |mut ct| {
                for n in 0..FLOWS {
                    ct.insert(flow(n), backend, TcpFlags::SYN, 0);
                }
                ct
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, maglev, conntrack);
criterion_main!(benches);
