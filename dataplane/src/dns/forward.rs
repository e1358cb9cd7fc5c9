//! Forwarding names that are not ours to the daemon's own upstream
//! resolvers, from sockets in the daemon's namespace (never the task's).
//!
//! A query goes out with a fresh random ID over UDP, one upstream after the
//! other with [`UPSTREAM_TIMEOUT`] each; a truncated answer is asked again
//! over TCP. The first answer whose ID and question match ours is returned,
//! whatever its response code; the caller answers SERVFAIL on an error.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{DnsError, LISTEN_ADDR};

/// How long one upstream gets to answer one query (UDP, or UDP then TCP).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The `nameserver` lines of a resolv.conf file, as port-53 addresses,
/// without our own 127.0.0.11 (which would loop). A missing file means no
/// upstreams, as for the C library.
pub fn upstreams_from_resolv_conf(path: &Path) -> Result<Vec<SocketAddr>, DnsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(DnsError::ReadFile {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    Ok(parse_resolv_conf(&text))
}

/// The upstreams named by resolv.conf text; lines that do not parse are
/// skipped, as the C library does.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // A link-local IPv6 address may carry a zone (`fe80::1%eth0`),
        // which `IpAddr` does not parse; such servers are skipped.
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let addr = SocketAddr::new(ip, 53);
        if ip != IpAddr::V4(*LISTEN_ADDR.ip()) && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver: /etc/resolv.conf of the daemon's namespace names none")]
    NoUpstreams,
    #[error("the query cannot be forwarded: it is shorter than a DNS header")]
    ShortQuery,
    #[error("no upstream resolver answered within {} s each; last problem: {last}", UPSTREAM_TIMEOUT.as_secs())]
    NoAnswer { last: String },
}

/// Sends `query` (a whole DNS message) to `upstreams` in turn and returns
/// the first matching answer.
pub async fn forward(upstreams: &[SocketAddr], query: &[u8]) -> Result<Message, ForwardError> {
    if upstreams.is_empty() {
        return Err(ForwardError::NoUpstreams);
    }
    let Some(tail) = query.get(2..) else {
        return Err(ForwardError::ShortQuery);
    };
    if tail.len() < 10 {
        return Err(ForwardError::ShortQuery);
    }
    let question = Message::from_vec(query)
        .ok()
        .and_then(|m| m.queries.first().cloned());
    let mut last = String::new();
    for &upstream in upstreams {
        let id = random_id();
        let mut out = Vec::with_capacity(query.len());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(tail);
        let asked = tokio::time::timeout(UPSTREAM_TIMEOUT, ask(upstream, &out, id, &question));
        match asked.await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = format!("{upstream}: {e}"),
            Err(_) => last = format!("{upstream}: timed out"),
        }
    }
    Err(ForwardError::NoAnswer { last })
}

/// One upstream: UDP, and TCP when the UDP answer is truncated.
async fn ask(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Option<hickory_proto::op::Query>,
) -> io::Result<Message> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let answer = loop {
        let n = socket.recv(&mut buf).await?;
        // Anything else on this connected socket (late answers to an
        // earlier query, garbage) is ignored; the timeout bounds the wait.
        if let Some(answer) = matching(buf.get(..n).unwrap_or_default(), id, question) {
            break answer;
        }
    };
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    ask_tcp(upstream, query, id, question).await
}

async fn ask_tcp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Option<hickory_proto::op::Query>,
) -> io::Result<Message> {
    let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    stream.write_all(&out).await?;
    let n = usize::from(stream.read_u16().await?);
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).await?;
    matching(&buf, id, question)
        .ok_or_else(|| io::Error::other("the TCP answer does not match the query"))
}

/// `bytes` parsed, if it is an answer to our query `id` about `question`.
fn matching(bytes: &[u8], id: u16, question: &Option<hickory_proto::op::Query>) -> Option<Message> {
    let answer = Message::from_vec(bytes).ok()?;
    let same_question = match question {
        Some(q) => answer.queries.first().is_some_and(|a| {
            a.query_type() == q.query_type()
                && a.query_class() == q.query_class()
                && a.name() == q.name()
        }),
        None => true,
    };
    (answer.metadata.id == id
        && answer.metadata.message_type == hickory_proto::op::MessageType::Response
        && same_question)
        .then_some(answer)
}

/// A query ID an off-path attacker cannot guess.
fn random_id() -> u16 {
    let mut b = [0u8; 2];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source (a very broken system): a time-based ID still
        // matches answers; only spoofing resistance is weaker.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        return (nanos ^ (nanos >> 16)) as u16;
    }
    u16::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch example.com\nnameserver 198.18.0.53\n\
                    nameserver   127.0.0.11\nnameserver 2001:db8::1\nnameserver fe80::1%eth0\n\
                    nameserver\nnameserver banana\nnameserver 198.18.0.53\noptions ndots:0\n";
        let got = parse_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "198.18.0.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:53".parse().unwrap(),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn missing_resolv_conf_means_no_upstreams() {
        let got = upstreams_from_resolv_conf(Path::new("/nonexistent/resolv.conf"));
        assert!(got.is_ok_and(|u| u.is_empty()));
    }

    #[tokio::test]
    async fn nothing_to_forward_to_or_with() {
        assert!(matches!(
            forward(&[], &[0u8; 12]).await,
            Err(ForwardError::NoUpstreams)
        ));
        let up = ["127.0.0.1:53".parse().unwrap()];
        assert!(matches!(
            forward(&up, &[0u8; 5]).await,
            Err(ForwardError::ShortQuery)
        ));
    }

    #[test]
    fn answers_must_match_id_and_question() {
        use hickory_proto::op::{MessageType, OpCode, Query};
        use hickory_proto::rr::{Name, RecordType};
        let q = Query::query(Name::from_ascii("example.test.").unwrap(), RecordType::A);
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(q.clone());
        let bytes = m.to_vec().unwrap();
        assert!(matching(&bytes, 7, &Some(q.clone())).is_some());
        assert!(matching(&bytes, 8, &Some(q.clone())).is_none());
        let other = Query::query(Name::from_ascii("other.test.").unwrap(), RecordType::A);
        assert!(matching(&bytes, 7, &Some(other)).is_none());
        assert!(matching(&bytes[..5], 7, &Some(q)).is_none());
    }
}
