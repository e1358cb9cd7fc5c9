//! `shoal whoami`: a tiny server that says who answered, for demos, tests
//! and benchmarks. Over HTTP/1.1 (keep-alive, pipelined requests answered in
//! order) every request gets the traefik/whoami text: `Hostname:`, one `IP:`
//! per interface address, `RemoteAddr:`, then the request line and headers.
//! With `--udp` each datagram comes back prefixed by the `Hostname:` line.
//!
//! Parsing and answering are pure functions ([`parse_request`],
//! [`respond`]); the tokio loop around them only moves bytes.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Args)]
pub struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Serve UDP echo instead of HTTP.
    #[arg(long)]
    udp: bool,
    /// The name on the `Hostname:` line (default: this machine's hostname).
    #[arg(long)]
    name: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
}

/// The longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The most headers accepted in one request.
const MAX_HEADERS: usize = 100;
/// The largest request body accepted (and discarded).
const MAX_BODY: usize = 1 << 20;
/// How often the interface addresses are reread (tasks get their overlay
/// interface after the server starts).
const ADDRESS_REFRESH: Duration = Duration::from_secs(1);

pub fn run(args: Args) -> Result<()> {
    let name = match args.name {
        Some(name) => name,
        None => hostname(),
    };
    let addr = SocketAddr::new(args.bind, args.port);
    if args.udp {
        return udp_echo(addr, &name);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve_http(addr, name))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `Hostname:` and `IP:` lines, as served.
fn identity_lines(name: &str, ips: &[IpAddr]) -> String {
    let mut s = format!("Hostname: {name}\n");
    for ip in ips {
        s.push_str(&format!("IP: {ip}\n"));
    }
    s
}

fn interface_ips() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|ifs| ifs.iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

fn udp_echo(addr: SocketAddr, name: &str) -> Result<()> {
    let socket = UdpSocket::bind(addr).with_context(|| {
        format!("binding UDP {addr} (is the port in use? ports below 1024 need root)")
    })?;
    eprintln!("shoal whoami: UDP echo on {addr} as {name}");
    let prefix = format!("Hostname: {name}\n");
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            // An ICMP error from an earlier answer surfaces here; not fatal.
            Err(_) => continue,
        };
        let mut reply = Vec::with_capacity(prefix.len() + n);
        reply.extend_from_slice(prefix.as_bytes());
        reply.extend_from_slice(&buf[..n]);
        if let Err(e) = socket.send_to(&reply, peer) {
            eprintln!("shoal whoami: answering {peer}: {e}");
        }
    }
}

async fn serve_http(addr: SocketAddr, name: String) -> Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("binding TCP {addr} (is the port in use? ports below 1024 need root)")
    })?;
    eprintln!("shoal whoami: HTTP on {addr} as {name}");
    let identity = Arc::new(RwLock::new(Arc::new(identity_lines(
        &name,
        &interface_ips(),
    ))));
    {
        let identity = Arc::clone(&identity);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ADDRESS_REFRESH);
            loop {
                tick.tick().await;
                let ips = tokio::task::spawn_blocking(interface_ips)
                    .await
                    .unwrap_or_default();
                let fresh = identity_lines(&name, &ips);
                let mut current = identity.write().unwrap_or_else(|e| e.into_inner());
                if **current != fresh {
                    *current = Arc::new(fresh);
                }
            }
        });
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off, keep serving.
                eprintln!("shoal whoami: accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let identity = Arc::clone(&identity);
        tokio::spawn(async move {
            let _ = connection(stream, peer, &identity).await;
        });
    }
}

/// Answers the requests of one connection in order. All requests already
/// received are answered with one write.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    identity: &RwLock<Arc<String>>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let mut used = 0;
        let mut close = false;
        while !close {
            match parse_request(&buf[used..]) {
                Parse::Complete(request, len) => {
                    let lines = Arc::clone(&identity.read().unwrap_or_else(|e| e.into_inner()));
                    respond(&mut out, &lines, peer, &request);
                    close = !request.keep_alive;
                    used += len;
                }
                Parse::Partial => break,
                Parse::Invalid(why) => {
                    bad_request(&mut out, why);
                    close = true;
                }
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            return stream.shutdown().await;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// What [`parse_request`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// A whole request (head and body), and how many bytes it took.
    Complete(Request<'a>, usize),
    /// Not all of it has arrived yet.
    Partial,
    /// Not a request this server takes; answer 400 and close.
    Invalid(&'static str),
}

/// An HTTP/1.x request head. The body, if any, is skipped.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

/// Parses the request at the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Parse<'_> {
    // Robustness (RFC 9112 §2.2): empty lines before a request are ignored.
    let start = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(buf.len());
    let Some(head_len) = head_end(&buf[start..]) else {
        return if buf.len() > MAX_HEAD {
            Parse::Invalid("request head too large")
        } else {
            Parse::Partial
        };
    };
    if head_len > MAX_HEAD {
        return Parse::Invalid("request head too large");
    }
    let Ok(head) = std::str::from_utf8(&buf[start..start + head_len]) else {
        return Parse::Invalid("request head is not UTF-8");
    };
    let mut lines = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty());
    let Some(request_line) = lines.next() else {
        return Parse::Invalid("empty request");
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::Invalid("malformed request line");
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Parse::Invalid("malformed method");
    }
    if target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Parse::Invalid("malformed request target");
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Parse::Invalid("unsupported HTTP version");
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parse::Invalid("malformed header line");
        };
        if name.is_empty() || !name.bytes().all(is_token) {
            return Parse::Invalid("malformed header name");
        }
        if headers.len() == MAX_HEADERS {
            return Parse::Invalid("too many headers");
        }
        headers.push((name, value.trim_matches([' ', '\t'])));
    }
    let header = |wanted: &'static str| header_values(&headers, wanted);
    if version == "HTTP/1.1" && header("host").count() != 1 {
        return Parse::Invalid("HTTP/1.1 needs exactly one Host header");
    }
    if header("transfer-encoding").next().is_some() {
        return Parse::Invalid("request bodies with Transfer-Encoding are not supported");
    }
    let lengths: Vec<&str> = header("content-length").collect();
    let body_len = match (lengths.first(), lengths.get(1)) {
        (None, _) => 0,
        (Some(v), None) => match v.parse::<usize>() {
            Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) && n <= MAX_BODY => n,
            Ok(_) => return Parse::Invalid("request body too large"),
            Err(_) => return Parse::Invalid("malformed Content-Length"),
        },
        (Some(_), Some(_)) => return Parse::Invalid("more than one Content-Length"),
    };
    let has_token = |token: &str| {
        header("connection").any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let keep_alive = if version == "HTTP/1.1" {
        !has_token("close")
    } else {
        has_token("keep-alive")
    };
    let total = start + head_len + body_len;
    if buf.len() < total {
        return Parse::Partial;
    }
    Parse::Complete(
        Request {
            method,
            target,
            version,
            headers,
            keep_alive,
        },
        total,
    )
}

/// The values of the headers named `wanted`, in order.
fn header_values<'a, 'h>(
    headers: &'h [(&'a str, &'a str)],
    wanted: &'static str,
) -> impl Iterator<Item = &'a str> + 'h {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(wanted))
        .map(|(_, v)| *v)
}

/// The length of the head at the start of `buf`, through its empty line.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|b| *b == b'\n') {
        let line = &buf[from..from + i];
        if line.is_empty() || line == b"\r" {
            return Some(from + i + 1);
        }
        from += i + 1;
    }
    None
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends the answer to `request`: `identity` (the `Hostname:` and `IP:`
/// lines), `RemoteAddr:`, then the request line and headers.
pub fn respond(out: &mut Vec<u8>, identity: &str, peer: SocketAddr, request: &Request<'_>) {
    let mut body = String::with_capacity(identity.len() + 256);
    body.push_str(identity);
    body.push_str(&format!(
        "RemoteAddr: {peer}\n{} {} {}\n",
        request.method, request.target, request.version
    ));
    for (name, value) in &request.headers {
        body.push_str(&format!("{name}: {value}\n"));
    }
    let connection = match (request.keep_alive, request.version) {
        (false, _) => "Connection: close\r\n",
        (true, "HTTP/1.0") => "Connection: keep-alive\r\n",
        (true, _) => "",
    };
    out.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if request.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Appends a 400 answer saying `why`; the connection closes after it.
pub fn bad_request(out: &mut Vec<u8>, why: &str) {
    let body = format!("bad request: {why}\n");
    out.extend_from_slice(
        format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse_request(buf) {
            Parse::Complete(r, n) => (r, n),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_get() {
        let buf = b"GET /x?y=1 HTTP/1.1\r\nHost: a.b\r\nUser-Agent:  curl \r\n\r\n";
        let (r, n) = complete(buf);
        assert_eq!(n, buf.len());
        assert_eq!(
            (r.method, r.target, r.version),
            ("GET", "/x?y=1", "HTTP/1.1")
        );
        assert_eq!(r.headers, vec![("Host", "a.b"), ("User-Agent", "curl")]);
        assert!(r.keep_alive);
    }

    #[test]
    fn waits_for_the_whole_request() {
        let buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..buf.len() {
            assert_eq!(parse_request(&buf[..cut]), Parse::Partial, "cut at {cut}");
        }
        assert_eq!(complete(buf).1, buf.len());
    }

    #[test]
    fn pipelined_requests_come_one_at_a_time() {
        let buf = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let (first, n) = complete(buf);
        assert_eq!(first.target, "/1");
        assert!(first.keep_alive);
        let (second, m) = complete(&buf[n..]);
        assert_eq!(second.target, "/2");
        assert!(!second.keep_alive);
        assert_eq!(n + m, buf.len());
    }

    #[test]
    fn keep_alive_follows_the_version() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(complete(b"\r\nGET / HTTP/1.1\nHost: a\n\n").0.keep_alive);
    }

    #[test]
    fn rejects_bad_requests() {
        let bad: &[&[u8]] = &[
            b"GET /\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"G\xffT / HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for buf in bad {
            assert!(
                matches!(parse_request(buf), Parse::Invalid(_)),
                "{:?} should be invalid",
                String::from_utf8_lossy(buf)
            );
        }
        assert!(matches!(
            parse_request(&vec![b'a'; MAX_HEAD + 1]),
            Parse::Invalid(_)
        ));
    }

    #[test]
    fn answers_like_traefik_whoami() {
        let identity = identity_lines(
            "web-1",
            &["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        );
        let (req, _) = complete(b"GET / HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n");
        let mut out = Vec::new();
        respond(&mut out, &identity, "10.0.0.9:4242".parse().unwrap(), &req);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            body,
            "Hostname: web-1\nIP: 127.0.0.1\nIP: ::1\nRemoteAddr: 10.0.0.9:4242\nGET / HTTP/1.1\nHost: 10.0.0.2\n"
        );
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("Content-Type: text/plain\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(!head.contains("Connection"));
    }

    #[test]
    fn bad_request_closes() {
        let mut out = Vec::new();
        bad_request(&mut out, "nope");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nbad request: nope\n"));
    }
}
