//! The handler behind a real hickory server on 127.0.0.1 (no namespaces,
//! no root), with a fake upstream resolver for forwarding.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::Handler;
use crate::dns::names::Names;
use crate::tables::Tables;

const TABLES: &str = r#"
node: { name: n1, underlay: 198.18.0.1 }
networks:
  - { name: red, vni: 4097, subnet: 10.10.0.0/24 }
endpoints:
  - { network: red, ip: 10.10.0.2, node: 198.18.0.1, netns: t1 }
  - { network: red, ip: 10.10.0.3, node: 198.18.0.2, name: web.2.bbb }
services:
  - name: web
    vips: { red: 10.10.0.100 }
    backends: [ { ip: 10.10.0.2 }, { ip: 10.10.0.3 } ]
"#;

/// What the fake upstream answers for `example.test`.
const FORWARDED: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);

/// A server for namespace `t1` on 127.0.0.1, forwarding to `upstreams`.
async fn server(upstreams: Vec<SocketAddr>) -> (Server<Handler>, SocketAddr) {
    let tables = Tables::from_yaml_str(TABLES).expect("test tables");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let mut server = Server::new(Handler {
        netns: "t1".into(),
        names: Arc::new(ArcSwap::from_pointee(Names::from_tables(&tables))),
        upstreams: upstreams.into(),
        turn: AtomicUsize::new(0),
    });
    server.register_socket(socket);
    (server, addr)
}

/// A fake upstream on 127.0.0.1 (UDP and TCP, same port): `example.test`
/// has an address; `big.test` comes back truncated over UDP and whole
/// over TCP; anything else is NXDOMAIN.
async fn upstream() -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let addr = tcp.local_addr().expect("addr");
    let udp = UdpSocket::bind(addr).await.expect("bind udp, same port");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            if let Some(out) = answer(&buf[..n], false) {
                let _ = udp.send_to(&out, from).await;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = tcp.accept().await {
            let Ok(len) = conn.read_u16().await else {
                continue;
            };
            let mut q = vec![0u8; usize::from(len)];
            if conn.read_exact(&mut q).await.is_err() {
                continue;
            }
            if let Some(out) = answer(&q, true) {
                let _ = conn.write_u16(out.len() as u16).await;
                let _ = conn.write_all(&out).await;
            }
        }
    });
    addr
}

fn answer(query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_available = true;
    let question = q.queries.first()?.clone();
    let name = question.name().to_ascii();
    m.add_query(question.clone());
    match name.as_str() {
        "example.test." => {
            m.add_answer(Record::from_rdata(
                question.name().clone(),
                60,
                RData::A(A(FORWARDED)),
            ));
        }
        "big.test." if !tcp => m.metadata.truncation = true,
        "big.test." => {
            for i in 0..40 {
                m.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(198, 19, 1, i))),
                ));
            }
        }
        _ => m.metadata.response_code = ResponseCode::NXDomain,
    }
    m.to_vec().ok()
}

/// Asks `server` about `name` over UDP.
async fn ask(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let mut q = Message::new(4242, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket
        .send_to(&q.to_vec().expect("encode"), server)
        .await
        .expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("recv");
    let m = Message::from_vec(&buf[..n]).expect("a DNS answer");
    assert_eq!(m.metadata.id, 4242);
    m
}

fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn answers_ours_and_forwards_the_rest() {
    let up = upstream().await;
    let (_server, addr) = server(vec![up]).await;

    let m = ask(addr, "Web.", RecordType::A).await;
    assert_eq!(addrs(&m), [Ipv4Addr::new(10, 10, 0, 100)]);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers[0].ttl, crate::dns::names::TTL);

    let m = ask(addr, "tasks.web.", RecordType::A).await;
    let mut got = addrs(&m);
    got.sort();
    assert_eq!(
        got,
        [Ipv4Addr::new(10, 10, 0, 2), Ipv4Addr::new(10, 10, 0, 3)]
    );

    // A task's address, backwards.
    let m = ask(addr, "3.0.10.10.in-addr.arpa.", RecordType::PTR).await;
    let names: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["web.2.bbb.red."]);

    let m = ask(addr, "web.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    let m = ask(addr, "example.test.", RecordType::A).await;
    assert_eq!(addrs(&m), [FORWARDED]);
    assert!(m.metadata.recursion_available);

    let m = ask(addr, "nothing.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // Truncated upstream answer: asked again over TCP, then relayed (and
    // truncated again for this 512-byte UDP client, as it must be).
    let m = ask(addr, "big.test.", RecordType::A).await;
    assert!(!addrs(&m).is_empty());
}

#[tokio::test]
async fn no_upstream_means_servfail() {
    let (_server, addr) = server(Vec::new()).await;
    let m = ask(addr, "example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn hostile_packets_do_not_stop_the_server() {
    let (_server, addr) = server(Vec::new()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 3],
        vec![0xff; 12],
        vec![0xff; 512],
        // A header claiming 65535 questions and nothing after it.
        vec![0, 1, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
        // A compression pointer to itself.
        vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
    ];
    let mut x: u32 = 0x1234_5678;
    for len in [13usize, 40, 300, 1400] {
        junk.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    for j in &junk {
        socket.send_to(j, addr).await.expect("send");
    }
    let m = ask(addr, "web.", RecordType::A).await;
    assert_eq!(addrs(&m), [Ipv4Addr::new(10, 10, 0, 100)]);
}
