//! Small blocking clients for tests: an HTTP GET over TCP or a unix socket,
//! a UDP round trip, and polling until a condition holds. They use the
//! caller's network namespace, so call them inside [`crate::Lab::in_netns`].

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Calls `f` every 50 ms until it returns `Some`, for at most `timeout`.
/// The error names `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {:.1} s waiting for {what}",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /` on `addr` with `Connection: close`; returns the body of a 2xx
/// answer, or an error with the status line and body of any other.
pub fn http_get(addr: SocketAddrV4, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout)
        .with_context(|| format!("connecting to http://{addr}/"))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: shoal-netns-tests\r\nConnection: close\r\n\r\n"
    );
    exchange(&mut stream, request.as_bytes(), deadline)
        .with_context(|| format!("GET http://{addr}/"))
}

/// `GET path` over the unix socket at `socket` (the daemon's admin API);
/// returns the body of a 2xx answer.
pub fn unix_http_get(socket: &Path, path: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to unix socket {}", socket.display()))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\n\r\n");
    exchange(&mut stream, request.as_bytes(), deadline)
        .with_context(|| format!("GET {path} on {}", socket.display()))
}

trait Timed: Read + Write {
    fn set_timeouts(&self, t: Duration) -> std::io::Result<()>;
}

impl Timed for TcpStream {
    fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

impl Timed for UnixStream {
    fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

fn exchange(stream: &mut impl Timed, request: &[u8], deadline: Instant) -> Result<String> {
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_timeouts(remaining())?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        stream.set_timeouts(remaining())?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if Instant::now() >= deadline => {
                return Err(e).context("timed out reading the answer");
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    parse_response(&response)
}

/// Splits an HTTP/1.x response read to EOF; returns the (de-chunked) body
/// of a 2xx answer.
fn parse_response(response: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!(
            "incomplete HTTP answer ({} bytes): {text:?}",
            response.len()
        );
    };
    let status_line = head.lines().next().unwrap_or_default();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    if !(200..300).contains(&code) {
        bail!("answer `{status_line}`: {body}");
    }
    Ok(body)
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("truncated chunked body")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
            .with_context(|| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let data = rest.get(..size).context("truncated chunk")?;
        out.push_str(data);
        body = rest
            .get(size..)
            .unwrap_or_default()
            .trim_start_matches("\r\n");
    }
}

/// Sends `payload` to `addr` from an ephemeral port and returns the first
/// datagram that comes back.
pub fn udp_roundtrip(addr: SocketAddrV4, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let socket = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
    socket.set_read_timeout(Some(timeout))?;
    socket
        .send_to(payload, addr)
        .with_context(|| format!("sending a datagram to {addr}"))?;
    let mut buf = vec![0u8; 65536];
    let (n, _) = socket.recv_from(&mut buf).with_context(|| {
        format!(
            "no UDP answer from {addr} within {:.1} s",
            timeout.as_secs_f64()
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// The `Hostname:` line of a `shoal whoami` answer.
pub fn whoami_hostname(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("Hostname: "))
        .map(str::to_owned)
}

/// `n` HTTP requests, each on a new connection, from namespace `netns` to
/// `addr`: the whoami hostnames that answered, with counts, and how many
/// requests failed.
pub fn whoami_spray(
    lab: &crate::Lab,
    netns: &str,
    addr: SocketAddrV4,
    n: usize,
    timeout: Duration,
) -> (std::collections::BTreeMap<String, usize>, usize) {
    let bodies = lab
        .in_netns(netns, move || {
            (0..n)
                .map(|_| http_get(addr, timeout).ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut seen = std::collections::BTreeMap::new();
    let mut failed = n - bodies.len();
    for body in bodies {
        match body.as_deref().and_then(whoami_hostname) {
            Some(h) => *seen.entry(h).or_insert(0) += 1,
            None => failed += 1,
        }
    }
    (seen, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain).unwrap(), "hello");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), "hello world");
        let err = parse_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy").unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn wait_until_names_what_it_waited_for() {
        let err = wait_until("the moon", Duration::from_millis(120), || None::<()>).unwrap_err();
        assert!(err.to_string().contains("the moon"));
        let mut n = 0;
        assert_eq!(
            wait_until("three", Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            })
            .unwrap(),
            3
        );
    }
}
